//! vouch for the official Rust MCP SDK, [rmcp](https://docs.rs/rmcp).
//!
//! **Server.** [`Protected`] turns an rmcp handler into an axum `Router` behind every vouch layer:
//! RFC 9421 signatures, session binding, capability tokens, and a [`GrantGuard`] that filters
//! `tools/list`. Inside a tool, [`caller_identity`] is who signed the request and [`grants`] what
//! their token allows, resource limits included. On stdio, where there is no HTTP signature,
//! [`GrantGuard::with_verifier`] reads the token from `params._meta.token` and enforces the
//! same grants.
//!
//! **Client.** [`SigningClient`] is an rmcp `StreamableHttpClient` that signs every request
//! rmcp makes and attaches the capability token; it composes with rmcp's OAuth `AuthClient`.
//! With [`SigningClient::verify_responses`] it also checks the server's signature on every
//! answer (a server signing with [`Protected::sign_responses`]) and fails the call on an
//! unsigned or mismatched one.
//!
//! The tool → operation mapping ([`OperationMap`]) defaults from MCP tool annotations:
//! `readOnlyHint` → `read`, `destructiveHint` → `write`, otherwise `execute`.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
#[cfg(feature = "demo")]
#[cfg_attr(docsrs, doc(cfg(feature = "demo")))]
pub mod demo;
mod grants;
mod handler;
mod server;
mod session;
mod verify;

pub use client::SigningClient;
pub use grants::{DEFAULT_OPERATION, OperationMap, caller_identity, grants};
pub use handler::{FORBIDDEN_CODE, GrantGuard, META_TOKEN_KEY, UNAUTHORIZED_CODE};
pub use server::{GuardedService, Protected};
pub use session::SessionBindingExt;
pub use verify::VerifyingHttpClient;
/// The per-identity rate limit `Protected` applies by default (defined in vouch-tower).
pub use vouch_tower::{DEFAULT_RATE_BURST, DEFAULT_RATE_PER_SECOND};
/// The session binding `Protected` applies by default (defined in vouch-tower; give it rmcp's
/// session manager with [`SessionBindingExt::session_manager`]).
pub use vouch_tower::{
    DEFAULT_SESSION_CAPACITY, DEFAULT_SESSION_IDLE, DEFAULT_SESSIONS_PER_IDENTITY, SessionBinding,
    SessionBindingLayer,
};
/// Serving with a header-read timeout and connection caps (re-exported from vouch-tower):
/// use it instead of bare `axum::serve` for a server exposed to the network.
pub use vouch_tower::{Origin, ServeConfig, serve};
