//! Integration tests for vouch-token, built as one binary.

mod chain;
mod decode;
mod props;
mod samples;
mod support;
