//! Raw redis baseline (in progress).
