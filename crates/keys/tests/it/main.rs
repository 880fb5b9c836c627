//! Integration tests for vouch-keys, built as one binary.

// Test helpers outside #[test] functions may panic on a broken fixture: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod directory;
mod formats;
mod https;
mod pins;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod redis_cluster;
mod replay;
mod resolve;
mod support;
mod weak_keys;
