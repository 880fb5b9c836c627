//! Integration tests for vouch-token, built as one binary.

// Test helpers outside #[test] functions may panic on a broken fixture: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod batch;
mod chain;
mod corpus;
mod decode;
mod props;
mod samples;
mod support;
mod weak_keys;
mod zip215;
