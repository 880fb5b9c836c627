//! Integration tests for vouch-tower, built as one binary.

// Test helpers outside #[test] functions may panic on a broken fixture: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod attacks;
mod audit;
mod capability;
mod checkpoint;
mod jsonrpc;
mod mcp_headers;
mod patterns;
mod response_signing;
mod sep2752;
mod signature;
mod support;
mod token_cache;

/// The origin the tests' requests are addressed to (`Host: mcp.example`, over http).
pub(crate) fn origin() -> vouch_tower::Origin {
    "http://mcp.example".parse().unwrap()
}
