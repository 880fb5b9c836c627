//! Integration tests for vouch-reqwest, built as one binary.

// Test helpers outside #[test] functions may panic on a broken fixture: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod end_to_end;
mod mcp_headers;
mod responses;

/// reqwest (with rustls and no default provider) needs a process-wide crypto provider: every
/// test that builds a client installs it first, so that no test depends on another running
/// before it.
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
