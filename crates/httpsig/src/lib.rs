//! RFC 9421 HTTP Message Signatures and RFC 9530 Content-Digest, on `http` types, with a
//! verification policy.
//!
//! This is the identity half of vouch: an MCP client signs every request, and a server proves who
//! sent it. The crate has no async runtime and no HTTP framework: it works on
//! [`http::Request`] parts and the exact body bytes.
//!
//! - [`sign`] a message as a [`SignatureSpec`] says; [`mcp_spec`] is vouch's MCP profile.
//! - [`Verifier::prepare`] applies a [`VerifyPolicy`] (required components and parameters,
//!   algorithms, time window, Content-Digest over the body bytes), then [`Prepared::verify`]
//!   checks the signature with the resolved key, then [`Verified::check_replay`] refuses replays.
//! - Algorithms: ed25519 (default), ecdsa-p256-sha256, ecdsa-p384-sha384, hmac-sha256,
//!   rsa-pss-sha512, rsa-v1_5-sha256, all on ring.
//!
//! ```
//! use vouch_httpsig::*;
//! # fn main() -> Result<(), Error> {
//! let key = SigningKey::ed25519_from_seed(&[7; 32])?;
//! let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}"#.to_vec();
//! let mut request = http::Request::post("https://mcp.example/mcp?session=1")
//!     .header("content-digest", mcp_content_digest(&body))
//!     .body(body)
//!     .unwrap();
//! let now = 1_700_000_000;
//! let spec = mcp_spec(&RequestView::of(&request), &key, "https://agents.example/a", None, now)?;
//! sign(RequestView::of(&request), &spec, &key)?.apply(request.headers_mut())?;
//!
//! let verifier = Verifier::new(VerifyPolicy::mcp());
//! let replay = MemoryReplayGuard::new(10_000);
//! let verified = verifier
//!     .prepare(RequestView::of(&request), now)?
//!     .verify(&key.verifying_key()?)?;
//! # let block_on = |f| -> Result<(), Error> { let mut f = std::pin::pin!(f);
//! #   match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
//! #     std::task::Poll::Ready(r) => r, std::task::Poll::Pending => unreachable!() } };
//! # use std::future::Future;
//! block_on(verified.check_replay(&replay, now))?;
//! // The same request again is a replay.
//! let again = verifier.prepare(RequestView::of(&request), now)?.verify(&key.verifying_key()?)?;
//! assert_eq!(block_on(again.check_replay(&replay, now)), Err(Error::Replayed));
//! # Ok(()) }
//! ```
//!
//! The profile (components, parameters, windows) is described in `docs/signature-profile.md` in
//! the repository, and each check's purpose in `docs/threat-model.md`.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod alg;
mod base;
mod component;
mod der;
mod digest;
mod error;
mod message;
mod params;
mod policy;
mod replay;
mod sign;
mod verify;

pub use alg::{Algorithm, SigningKey, VerifyingKey};
pub use component::Component;
pub use digest::{DigestAlgorithm, content_digest, verify_content_digest};
pub use error::Error;
pub use message::{Message, RequestView, ResponseView};
pub use params::Params;
pub use policy::{DEFAULT_TOKEN_HEADER, DigestRule, VerifyPolicy};
pub use replay::{MemoryReplayGuard, ReplayFuture, ReplayGuard, ReplayKey};
pub use sign::{
    Signature, SignatureSpec, envoys_spec, mcp_content_digest, mcp_spec, random_nonce, sign,
};
pub use verify::{Prepared, Verified, Verifier};

/// Hooks for fuzzing. Not part of the stable API.
#[doc(hidden)]
pub mod internal {
    use crate::{Message, RequestView, Verifier, VerifyPolicy, VerifyingKey};

    /// Fuzz entry point: parse a Content-Digest value against a body. Must never panic.
    pub fn fuzz_content_digest(value: &[u8], body: &[u8]) {
        let _ = crate::verify_content_digest(
            value,
            body,
            &[
                crate::DigestAlgorithm::Sha256,
                crate::DigestAlgorithm::Sha512,
            ],
        );
    }

    /// Fuzz entry point: parse Signature-Input and Signature values. Must never panic.
    pub fn fuzz_signature_headers(input: &[u8], signature: &[u8]) {
        let mut headers = http::HeaderMap::new();
        if let (Ok(i), Ok(s)) = (
            http::HeaderValue::from_bytes(input),
            http::HeaderValue::from_bytes(signature),
        ) {
            headers.insert("signature-input", i);
            headers.insert("signature", s);
        }
        let limits = crate::params::ParseLimits {
            max_header_bytes: 8192,
            max_signatures: 8,
        };
        let _ = crate::params::received(&headers, &limits);
    }

    /// Fuzz entry point: verify an arbitrary request (method, URI, headers, body) under the MCP
    /// policy with a fixed key. Must never panic, and a request with no valid signature by that
    /// key must never verify.
    pub fn fuzz_verify_request(
        method: &str,
        uri: &str,
        headers: &[(&[u8], &[u8])],
        body: &[u8],
    ) -> bool {
        let (Ok(method), Ok(uri)) = (
            http::Method::from_bytes(method.as_bytes()),
            uri.parse::<http::Uri>(),
        ) else {
            return false;
        };
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name),
                http::HeaderValue::from_bytes(value),
            ) {
                map.append(n, v);
            }
        }
        let view = RequestView::from_parts(&method, &uri, &map, body)
            .with_scheme("https")
            .with_authority("mcp.example");
        let verifier = Verifier::new(VerifyPolicy::mcp());
        let key = VerifyingKey::ed25519([0x11; 32]);
        verifier
            .prepare(Message::from(view), 1_700_000_000)
            .and_then(|p| p.verify(&key))
            .is_ok()
    }
}
