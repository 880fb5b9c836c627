//! Server adapters for vouch: tower layers and axum extractors.
//!
//! The decision logic is framework-agnostic ([`SignaturePipeline::verify`]: request parts and
//! body bytes in, a [`VerifiedCaller`] or a [`Rejection`] out); [`SignatureLayer`] is a thin tower
//! wrapper around it, and [`VerifiedCaller`] is an axum extractor.
//!
//! The same split holds for capability tokens: [`CapabilityPipeline::authorize`] decides,
//! [`CapabilityLayer`] wraps it, [`Grants`] is the extractor and [`require_tool`] the guard for
//! plain routes. [`RateLimitLayer`] limits each verified identity; [`SessionBindingLayer`] binds
//! each MCP session to the signer that created it and bounds the sessions each identity holds,
//! closing them in the server through a [`SessionStore`]; an [`AuditHook`] sees every decision
//! and [`SigningStats`] counts them. [`ResponseSigningLayer`] signs each answer to a verified
//! request with the server's key, bound to that request (RFC 9421 §2.4).
//!
//! MCP 2026-07-28 requests mirror their method and tool in `Mcp-Method` / `Mcp-Name` headers;
//! [`mcp_headers`] checks them against the message (the capability layer refuses a mismatch
//! with MCP's `HeaderMismatch` before any grant decision). An authorizer that does not see the
//! body can decide on those signed headers alone ([`SignatureLayer::headers_only`],
//! [`CapabilityLayer::headers_only`]) when the upstream runs a [`DigestCheckLayer`].
//!
//! [`tools_list`] narrows `tools/list` answers (JSON or SSE) to the tools a token grants,
//! without I/O, for hosts that see the upstream's answer (the gateway, the Python middleware).
//!
//! Hosts that are not a tower stack (an external authorizer, a Python ASGI middleware) run the
//! same layers' checks through a [`Checkpoint`]: [`Checkpoint::head`] on the request head
//! before any body byte is read, then [`Pending::finish`] with the body, giving an
//! [`Admitted`] caller and grants or the [`Denial`] the layers would have answered.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod audit;
mod capability;
mod capability_layer;
mod checked;
mod checkpoint;
mod digest_check;
mod extract;
pub mod jsonrpc;
pub mod mcp_headers;
mod origin;
mod pipeline;
mod rate_limit;
mod response;
mod response_signing;
mod serve;
mod session;
mod signature;
pub mod tools_list;

pub use audit::{AuditHook, Decision, SigningStats, StatsSnapshot};
pub use capability::{CapabilityPipeline, CapabilityRejection, TOKEN_HEADER, TokenCache};
pub use capability_layer::{
    CapabilityLayer, CapabilityService, Grants, RequireTool, RequireToolLayer, StrictMessageLayer,
    require_tool,
};
pub use checked::{Check, Checked};
pub use checkpoint::{Admitted, Checkpoint, CheckpointBuilder, Pending};
pub use digest_check::DigestCheckLayer;
pub use extract::MissingCaller;
pub use origin::{Origin, OriginError};
pub use pipeline::{
    AllowAll, Allowlist, HeadVerified, Patterns, RefusalStyle, Rejection, SignaturePipeline,
    SignedRequest, VerifiedCaller,
};
pub use rate_limit::{DEFAULT_RATE_BURST, DEFAULT_RATE_PER_SECOND, RateLimit, RateLimitLayer};
pub use response::Denial;
pub use response_signing::{
    DEFAULT_MAX_RESPONSE_BYTES, ResponseSigningLayer, ResponseSigningService,
};
pub use serve::{ServeConfig, serve};
pub use session::{
    DEFAULT_SESSION_CAPACITY, DEFAULT_SESSION_IDLE, DEFAULT_SESSIONS_PER_IDENTITY, SessionBinding,
    SessionBindingLayer, SessionFuture, SessionStore, SessionTicket,
};
pub use signature::{
    DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES, SignatureLayer, SignatureService,
};
