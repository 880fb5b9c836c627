//! The upstream half of a headers-only authorizer: the body against the signed Content-Digest,
//! and the MCP request headers against the message.

use axum_core::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Response};
use tower_layer::Layer;
use vouch_httpsig::{DigestAlgorithm, verify_content_digest};

use crate::capability::CapabilityRejection;
use crate::checked::{Check, Checked, Decide};
use crate::pipeline::Rejection;
use crate::response::{Denial, rejection_response};
use crate::signature::DEFAULT_MAX_BODY_BYTES;

/// Checks what a headers-only authorizer could not: that the body is the one the signature's
/// `Content-Digest` names, and that the MCP request headers it decided on agree with the
/// message.
///
/// `vouch authz --headers-only` (or [`SignatureLayer::headers_only`](crate::SignatureLayer::headers_only)
/// with [`CapabilityLayer::headers_only`](crate::CapabilityLayer::headers_only)) verifies the
/// signature over the head and decides on the signed `Mcp-Method` / `Mcp-Name`, trusting the
/// signed `Content-Digest` only as a promise. Put this layer in front of the MCP server behind
/// that authorizer, so that the promise is kept: the body is read up to a cap (413 above it),
///
/// - a body without a `Content-Digest`, or one that does not match it, is refused with 400
///   `digest_missing` / `digest_mismatch` (sha-256 and sha-512 accepted; a `Content-Digest` on
///   an empty body must match it too);
/// - a non-empty body must be one JSON-RPC message read one way only (400 JSON-RPC
///   parse error / invalid request, as the [`CapabilityLayer`](crate::CapabilityLayer));
/// - the `Mcp-Method` / `Mcp-Name` headers must agree with it (400 `HeaderMismatch`, JSON-RPC
///   code `-32020`; see [`mcp_headers`](crate::mcp_headers)).
///
/// An attacker who gets a signed request past the authorizer and swaps its body (or its
/// headers' meaning) is stopped here. The layer checks no signature itself: the authorizer did.
#[derive(Clone, Debug)]
pub struct DigestCheckLayer {
    max_body_bytes: usize,
    algorithms: Vec<DigestAlgorithm>,
}

impl Default for DigestCheckLayer {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            algorithms: vec![DigestAlgorithm::Sha256, DigestAlgorithm::Sha512],
        }
    }
}

impl DigestCheckLayer {
    /// The layer with a [`DEFAULT_MAX_BODY_BYTES`] cap, accepting sha-256 and sha-512.
    pub fn new() -> Self {
        Self::default()
    }

    /// The body cap (413 above it).
    #[must_use]
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// The digest algorithms accepted (at least one listed member must be one of them).
    #[must_use]
    pub fn algorithms(mut self, algorithms: &[DigestAlgorithm]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }
}

impl<S> Layer<S> for DigestCheckLayer {
    type Service = Checked<S, DigestCheckLayer>;

    fn layer(&self, inner: S) -> Self::Service {
        Checked::new(inner, self.clone())
    }
}

/// Every `Content-Digest` line, joined as one dictionary (as the signature covered them).
fn content_digest(headers: &HeaderMap) -> Option<Vec<u8>> {
    let mut lines = headers.get_all("content-digest").iter();
    let mut joined = lines.next()?.as_bytes().to_vec();
    for line in lines {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(line.as_bytes());
    }
    Some(joined)
}

fn refuse(code: &'static str) -> Denial {
    Denial::json(
        http::StatusCode::BAD_REQUEST,
        &serde_json::json!({"detail": {"error": code}}),
    )
}

impl Check for DigestCheckLayer {
    const SPAN: &'static str = "digest";

    fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    fn unreadable(&self, _parts: &Parts, rejection: &Rejection) -> Response<Body> {
        rejection_response(rejection, "Signature")
    }

    fn decide<'a>(&'a self, parts: &'a mut Parts, body: &'a Bytes) -> Decide<'a> {
        Box::pin(async move {
            match content_digest(&parts.headers) {
                None if !body.is_empty() => {
                    tracing::info!("body without a Content-Digest refused");
                    return Err(refuse("digest_missing"));
                }
                None => {}
                Some(value) => {
                    if let Err(e) = verify_content_digest(&value, body, &self.algorithms) {
                        tracing::warn!(detail = %e, "body does not match the signed Content-Digest");
                        return Err(refuse("digest_mismatch"));
                    }
                }
            }
            let message = if body.is_empty() {
                None
            } else {
                match crate::jsonrpc::parse(body) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        tracing::info!(error = %e, "ambiguous message refused");
                        let rejection = CapabilityRejection::BadRequest(e);
                        return Err(Denial::json(rejection.status(), &rejection.body()));
                    }
                }
            };
            crate::mcp_headers::check(&parts.headers, message.as_ref()).map_err(|error| {
                tracing::warn!(detail = %error, "MCP headers disagree with the message");
                let id = message.as_ref().and_then(|m| m.id().cloned());
                let rejection = CapabilityRejection::HeaderMismatch { error, id };
                Denial::json(rejection.status(), &rejection.body())
            })
        })
    }
}
