//! Raw sled baseline (in progress).
