//! `conformance_suite!` expands to one test per behaviour, here on the
//! reference store, directly and through `Arc<dyn SessionStore>`.

mod common;

use common::RefFactory;
use session_conformance::conformance_suite;

conformance_suite!(RefFactory::default());

mod through_dyn {
    use super::RefFactory;
    use session_conformance::{Dyn, conformance_suite};

    conformance_suite!(Dyn(RefFactory::default()));
}
