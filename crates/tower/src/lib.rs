//! Server adapters for vouch: tower layers and axum extractors.
//!
//! The decision logic is framework-agnostic ([`SignaturePipeline::verify`]: request parts and
//! body bytes in, a [`VerifiedCaller`] or a [`Rejection`] out); [`SignatureLayer`] is a thin tower
//! wrapper around it, and [`VerifiedCaller`] is an axum extractor.
//!
//! This crate grows issue by issue: the signature layer is here; the capability layer, rate
//! limiting, audit and stats follow.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod extract;
mod pipeline;
mod response;
mod signature;

pub use extract::MissingCaller;
pub use pipeline::{AllowAll, Allowlist, Rejection, SignaturePipeline, VerifiedCaller};
pub use signature::{DEFAULT_MAX_BODY_BYTES, SignatureLayer, SignatureService};
