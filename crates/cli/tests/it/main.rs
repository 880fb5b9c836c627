//! Tests of the `vouch` binary, run as a user runs it: a process, arguments, stdin, exit status.

// Test helpers outside #[test] functions may panic on a broken fixture: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(feature = "authz")]
mod authz;
#[cfg(feature = "demo")]
mod demo;
#[cfg(feature = "gateway")]
mod gateway;
mod keys_and_pins;
mod requests;
mod support;
mod tokens;
mod usage;
mod web_bot_auth;
