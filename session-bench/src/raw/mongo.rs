//! Raw mongo baseline (in progress).
