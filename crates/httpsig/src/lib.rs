//! RFC 9421 HTTP Message Signatures and RFC 9530 Content-Digest, on `http` types, with a
//! verification policy.
//!
//! This is the identity half of vouch: an MCP client signs every request, and a server proves who
//! sent it. The crate has no async runtime and no HTTP framework: it works on
//! [`http::Request`] parts and the exact body bytes.
//!
//! - [`sign`] a message as a [`SignatureSpec`] says; [`mcp_spec`] is vouch's MCP profile,
//!   [`envoys_spec`] the envoys client's, [`sep2752_spec`] SEP-2752's (each with its
//!   [`VerifyPolicy`]).
//! - [`Verifier::prepare`] applies a [`VerifyPolicy`] (required components and parameters,
//!   algorithms, time window, Content-Digest over the body bytes), then [`Prepared::verify`]
//!   checks the signature with the resolved key, then [`Verified::check_replay`] refuses replays.
//!   Under load, [`Prepared::verify_coalesced`] verifies Ed25519 signatures in batches with the
//!   requests verifying at the same moment ([`coalesce`]), with the same verdicts.
//! - [`Verifier::prepare_head`] does the policy from the request head alone, so that the
//!   signature is verified before the body is read; the [`BodyCheck`] it returns hashes the body
//!   as it streams in and compares it with the signed Content-Digest (see below).
//! - Web Bot Auth: [`VerifyPolicy::web_bot_auth`] and [`web_bot_auth_spec`] (tag, thumbprint
//!   keyid, `Signature-Agent` covered and parsed into a [`SignatureAgent`] before any key is
//!   fetched), and [`directory_spec`] for a key directory's signed response.
//! - Responses: [`mcp_response_spec`] signs an answer bound to the request it answers (RFC 9421
//!   §2.4: `@status`, `content-digest`, the request's `@method;req`, `@target-uri;req` and its
//!   signature by `;req;key`), and [`VerifyPolicy::mcp_response`] checks it on the client.
//! - Algorithms: ed25519 (default), ecdsa-p256-sha256, ecdsa-p384-sha384, hmac-sha256,
//!   rsa-pss-sha512, rsa-v1_5-sha256, on ring, but for Ed25519 verification: that follows vouch's
//!   one rule, ZIP-215 (`vouch_token::ed25519`, the rule tokens and batches use), and weak
//!   Ed25519 keys are refused when loaded.
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
//! # fn block_on(f: impl std::future::Future<Output = Result<(), Error>>) -> Result<(), Error> {
//! #     let mut f = std::pin::pin!(f);
//! #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
//! #     match f.as_mut().poll(&mut cx) {
//! #         std::task::Poll::Ready(r) => r,
//! #         std::task::Poll::Pending => unreachable!("the memory store never waits"),
//! #     }
//! # }
//! block_on(verified.check_replay(&replay, "agent-a", now))?;
//! // The same request again is a replay.
//! let again = verifier.prepare(RequestView::of(&request), now)?.verify(&key.verifying_key()?)?;
//! assert_eq!(block_on(again.check_replay(&replay, "agent-a", now)), Err(Error::Replayed));
//! # Ok(()) }
//! ```
//!
//! A server that streams the body verifies the head first, and binds the body afterwards:
//!
//! ```
//! use vouch_httpsig::*;
//! # fn main() -> Result<(), Error> {
//! # let key = SigningKey::ed25519_from_seed(&[7; 32])?;
//! # let now = 1_700_000_000;
//! # let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
//! # let mut parts = http::Request::post("https://mcp.example/mcp")
//! #     .header("content-digest", mcp_content_digest(body))
//! #     .body(())
//! #     .unwrap()
//! #     .into_parts()
//! #     .0;
//! # let spec = mcp_spec(&RequestView::new(&parts, body), &key, "agent-a", None, now)?;
//! # sign(RequestView::new(&parts, body), &spec, &key)?.apply(&mut parts.headers)?;
//! let verifier = Verifier::new(VerifyPolicy::mcp());
//! // The head: policy, Content-Digest parsed, signature base built. No body byte yet.
//! let (prepared, mut body_check) = verifier.prepare_head(RequestView::new(&parts, &[]), now)?;
//! let verified = prepared.verify(&key.verifying_key()?)?;
//! // The body, chunk by chunk, as it arrives; nothing is buffered.
//! for chunk in body.chunks(8) {
//!     body_check.update(chunk);
//! }
//! body_check.finish()?;
//! // Only now is the request whole: record it (see `Verified::check_replay`) and act on it.
//! # let _ = verified;
//! # Ok(()) }
//! ```
//!
//! The profile (components, parameters, windows) is described in `docs/signature-profile.md` in
//! the repository, and each check's purpose in `docs/threat-model.md`.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod alg;
mod base;
pub mod coalesce;
mod component;
mod der;
mod digest;
mod error;
pub mod mcp;
mod message;
mod params;
mod policy;
mod replay;
mod sf;
mod sign;
mod verify;
mod web_bot_auth;

pub use alg::{Algorithm, SigningKey, VerifyingKey};
pub use component::Component;
pub use digest::{BodyCheck, DigestAlgorithm, content_digest, verify_content_digest};
pub use error::Error;
pub use message::{Message, RequestView, ResponseView};
pub use params::Params;
pub use policy::{
    AlgParam, DEFAULT_TOKEN_HEADER, DigestRule, KeyidRule, RESPONSE_LABEL, VerifyPolicy,
    is_event_stream, media_type_is,
};
pub use replay::{MemoryReplayGuard, ReplayFuture, ReplayGuard, ReplayKey};
pub use sign::{
    Signature, SignatureSpec, envoys_spec, mcp_content_digest, mcp_response_spec, mcp_spec,
    random_nonce, sep2752_spec, sign,
};
pub use verify::{Prepared, Verified, Verifier};
pub use web_bot_auth::{
    AgentKind, DIRECTORY_MEDIA_TYPE, DIRECTORY_PATH, DIRECTORY_TAG, MAX_LIFETIME,
    SIGNATURE_AGENT_HEADER, SignatureAgent, WEB_BOT_AUTH_TAG, directory_spec, ed25519_thumbprint,
    signature_agent_value, web_bot_auth_spec,
};

/// Hooks for fuzzing. Not part of the stable API.
#[doc(hidden)]
pub mod internal {
    use crate::{Message, RequestView, Verifier, VerifyPolicy};

    /// Fuzz entry point: `value NUL body`, a Content-Digest value checked against a body. Must
    /// never panic.
    pub fn fuzz_content_digest(data: &[u8]) {
        let mut parts = data.splitn(2, |&b| b == 0);
        let (value, body) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let _ = crate::verify_content_digest(
            value,
            body,
            &[
                crate::DigestAlgorithm::Sha256,
                crate::DigestAlgorithm::Sha512,
            ],
        );
    }

    /// Fuzz entry point: an MCP header value decoded (`=?base64?…?=` or plain), and every
    /// value round-tripped through [`mcp::encode_value`](crate::mcp::encode_value): decoding
    /// what was encoded gives the value back. Must never panic.
    pub fn fuzz_mcp_header_value(data: &[u8]) {
        if let Ok(text) = std::str::from_utf8(data) {
            if let Some(decoded) = crate::mcp::decode_value(text) {
                let again = crate::mcp::encode_value(&decoded);
                assert_eq!(crate::mcp::decode_value(&again), Some(decoded));
            }
            let encoded = crate::mcp::encode_value(text);
            assert_eq!(crate::mcp::decode_value(&encoded).as_deref(), Some(text));
        }
    }

    /// Fuzz entry point: `Signature-Input NUL Signature` values, parsed. Must never panic.
    pub fn fuzz_signature_headers(data: &[u8]) {
        let mut parts = data.splitn(2, |&b| b == 0);
        let (input, signature) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
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

    /// The seed of the key [`fuzz_verify_request`] trusts.
    pub const FUZZ_KEY_SEED: [u8; 32] = [7; 32];
    /// The time [`fuzz_verify_request`] verifies at.
    pub const FUZZ_NOW: u64 = 1_700_000_000;

    /// Fuzz entry point: verify an arbitrary request under the MCP policy, trusting the key with
    /// seed [`FUZZ_KEY_SEED`]. The input is `METHOD URI\n`, then `name: value\n` lines, a blank
    /// line and the body. Must never panic. Returns whether the request verified.
    pub fn fuzz_verify_request(data: &[u8]) -> bool {
        let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (
                data.get(..i).unwrap_or_default(),
                data.get(i + 2..).unwrap_or_default(),
            ),
            None => (data, &[][..]),
        };
        let mut lines = head.split(|&b| b == b'\n');
        let start = lines.next().unwrap_or_default();
        let mut parts = start.splitn(2, |&b| b == b' ');
        let (Some(method), Some(uri)) = (parts.next(), parts.next()) else {
            return false;
        };
        let (Ok(method), Ok(uri)) = (http::Method::from_bytes(method), http::Uri::try_from(uri))
        else {
            return false;
        };
        let mut map = http::HeaderMap::new();
        for line in lines {
            let mut kv = line.splitn(2, |&b| b == b':');
            if let (Some(n), Some(v)) = (kv.next(), kv.next()) {
                let v = v.strip_prefix(b" ").unwrap_or(v);
                if let (Ok(n), Ok(v)) = (
                    http::HeaderName::from_bytes(n),
                    http::HeaderValue::from_bytes(v),
                ) {
                    map.append(n, v);
                }
            }
        }
        let Ok(key) =
            crate::SigningKey::ed25519_from_seed(&FUZZ_KEY_SEED).and_then(|k| k.verifying_key())
        else {
            return false;
        };
        let view = RequestView::from_parts(&method, &uri, &map, body);
        let verifier = Verifier::new(VerifyPolicy::mcp());
        // The head-first path too, with the body in two pieces: it must not panic either.
        if let Ok((_, mut check)) = verifier.prepare_head(Message::from(view), FUZZ_NOW) {
            let (a, b) = body.split_at(body.len() / 2);
            check.update(a);
            check.update(b);
            let _ = check.finish();
        }
        verifier
            .prepare(Message::from(view), FUZZ_NOW)
            .and_then(|p| p.verify(&key))
            .is_ok()
    }
}
