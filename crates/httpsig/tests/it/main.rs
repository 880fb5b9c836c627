//! Integration tests for vouch-httpsig, built as one binary.

// Test helpers outside #[test] functions may panic on a broken fixture: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod components;
mod corpus;
mod cross;
mod duplicates;
mod head_first;
mod mcp_headers;
mod rejections;
mod responses;
mod sep2752;
mod support;
mod vectors;
mod weak_keys;
mod web_bot_auth;
mod zip215;
