//! TLS through rustls (feature `rustls`).

use std::sync::Arc;

use session_core::{Error, Result};

use crate::BACKEND;

/// rustls with the `ring` provider and the Mozilla root certificates of
/// `webpki-roots`.
pub(crate) fn default_config() -> Result<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::config(BACKEND, format!("TLS settings: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
