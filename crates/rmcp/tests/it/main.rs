//! Integration tests for vouch-rmcp, built as one binary.

// Test helpers outside #[test] functions may panic on a broken fixture: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(feature = "demo")]
mod demo;
mod end_to_end;
mod generations;
mod guard;
mod guard_methods;
mod sessions;
mod signed_responses;
mod signing_client;
mod support;
