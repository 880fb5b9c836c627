//! The capability check: which tool a JSON-RPC message calls, and whether the token grants it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::HeaderName;
use http::request::Parts;
use serde_json::Value;
use vouch_token::{Access, Facts, Token, VerifiedToken, Verifier};

use crate::jsonrpc;
use crate::pipeline::VerifiedCaller;

/// The header the MCPVault seed carries tokens in.
pub const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-mcpvault-token");

/// Why the capability check refused (the seed's error table).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilityRejection {
    /// 401 `missing_token`: no token in the header nor in `params._meta.token`.
    MissingToken,
    /// 401 `invalid_token`: expired, bad signature, malformed, revoked, unknown root, wrong
    /// audience, holder mismatch, delegated too deep.
    InvalidToken(String),
    /// 403 `forbidden`: the token does not grant the tool or the operation.
    Forbidden(String),
    /// 400 `bad_request`: the body is not one acceptable JSON-RPC message (see
    /// [`jsonrpc`](crate::jsonrpc)); decided before the token is looked at.
    BadRequest(jsonrpc::Error),
}

impl CapabilityRejection {
    /// The HTTP status.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::MissingToken | Self::InvalidToken(_) => http::StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => http::StatusCode::FORBIDDEN,
            Self::BadRequest(_) => http::StatusCode::BAD_REQUEST,
        }
    }

    /// The error code of the JSON body (`missing_token`, `invalid_token`, `forbidden`,
    /// `bad_request`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidToken(_) => "invalid_token",
            Self::Forbidden(_) => "forbidden",
            Self::BadRequest(_) => "bad_request",
        }
    }

    /// The JSON body: `{"detail": {"error": …, "detail": …}}` (no detail for `missing_token`),
    /// except for `bad_request`, which answers with a JSON-RPC error:
    /// `{"jsonrpc": "2.0", "id": null, "error": {"code": -32700 or -32600, "message": …}}`
    /// (the message could not be read, so neither could its `id`).
    pub fn body(&self) -> Value {
        match self {
            Self::MissingToken => serde_json::json!({"detail": {"error": "missing_token"}}),
            Self::InvalidToken(d) => {
                serde_json::json!({"detail": {"error": "invalid_token", "detail": d}})
            }
            Self::Forbidden(d) => {
                serde_json::json!({"detail": {"error": "forbidden", "detail": d}})
            }
            Self::BadRequest(e) => serde_json::json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": {"code": e.code(), "message": e.to_string()},
            }),
        }
    }
}

/// Verified tokens, kept so that a token's signatures are checked once: bounded, keyed by the
/// token text itself (hashed with a per-process random key, compared in full on a hit, so no
/// collision can hand one token another's verification), each entry living no longer than the
/// token itself. Revocation, time, audience, holder and grants are still decided on every hit.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    #[allow(
        clippy::disallowed_types,
        reason = "a lookup table, never serialized; keyed SipHash (RandomState) resists flooding"
    )]
    entries: Mutex<std::collections::HashMap<Arc<str>, Arc<VerifiedToken>>>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(Default::default()),
        }
    }

    fn get(&self, token: &str, now: u64) -> Option<Arc<VerifiedToken>> {
        let entries = self.entries.lock().ok()?;
        entries.get(token).filter(|t| t.expires_at() > now).cloned()
    }

    fn insert(&self, token: &str, verified: Arc<VerifiedToken>, now: u64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity {
            entries.retain(|_, t| t.expires_at() > now);
        }
        if entries.len() >= self.capacity {
            // Full of live tokens: drop the one that expires first (it is only a cache).
            if let Some(k) = entries
                .iter()
                .min_by_key(|(_, t)| t.expires_at())
                .map(|(k, _)| k.clone())
            {
                entries.remove(&k);
            }
        }
        if self.capacity > 0 {
            entries.insert(Arc::from(token), verified);
        }
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything the capability check needs, configured once.
#[derive(Clone, Debug)]
pub struct CapabilityPipeline {
    verifier: Verifier,
    header: HeaderName,
    operations: Arc<BTreeMap<String, String>>,
    default_operation: String,
    cache: Arc<TokenCache>,
}

impl CapabilityPipeline {
    /// Checks tokens with `verifier`; tools map to `execute` unless told otherwise; caches up to
    /// 10 000 verified tokens.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            header: TOKEN_HEADER,
            operations: Arc::new(BTreeMap::new()),
            default_operation: "execute".to_owned(),
            cache: Arc::new(TokenCache::new(10_000)),
        }
    }

    /// Sets the verifier's audience (see [`Verifier::with_audience`]): tokens restricted to
    /// other audiences are refused. A token without any audience restriction is still accepted,
    /// so mint tokens with an audience to keep them from being valid at every server.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.verifier = self.verifier.with_audience(audience);
        self
    }

    /// The header carrying the token.
    #[must_use]
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// The operation a call to `tool` performs (default: `execute`).
    #[must_use]
    pub fn operation(mut self, tool: impl Into<String>, operation: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.operations).insert(tool.into(), operation.into());
        self
    }

    /// The verified-token cache size.
    #[must_use]
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache = Arc::new(TokenCache::new(capacity));
        self
    }

    /// The cache (for metrics and tests).
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// Decides one MCP request: reads the JSON-RPC message once, strictly (see
    /// [`jsonrpc::parse`]; an empty body is no message), finds the token (header first, then
    /// `params._meta.token`), derives the grant the message needs (`tools/call` needs its tool
    /// and the tool's operation; other methods only a valid token), and verifies, with the
    /// signer as the holder.
    ///
    /// # Errors
    ///
    /// The [`CapabilityRejection`] to answer with: [`BadRequest`](CapabilityRejection::BadRequest)
    /// for a body [`jsonrpc::parse`] refuses, before the token is looked at.
    pub fn authorize(
        &self,
        parts: &Parts,
        body: &[u8],
        caller: Option<&VerifiedCaller>,
        now: u64,
    ) -> Result<Facts, CapabilityRejection> {
        self.decide(parts, body, caller, now).1
    }

    /// [`authorize`](Self::authorize), also handing back the tool the message calls (for the
    /// audit record), from the same single reading of the body.
    pub(crate) fn decide<'b>(
        &self,
        parts: &Parts,
        body: &'b [u8],
        caller: Option<&VerifiedCaller>,
        now: u64,
    ) -> (Option<Cow<'b, str>>, Result<Facts, CapabilityRejection>) {
        // The body is judged first: a malformed message is refused before any token decision.
        let message = if body.is_empty() {
            None
        } else {
            match jsonrpc::parse(body) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::info!(code = e.code(), detail = %e, "message refused");
                    return (None, Err(CapabilityRejection::BadRequest(e)));
                }
            }
        };
        let result = self.grant(parts, message.as_ref(), caller, now);
        (message.and_then(jsonrpc::Message::into_tool), result)
    }

    fn grant(
        &self,
        parts: &Parts,
        message: Option<&jsonrpc::Message<'_>>,
        caller: Option<&VerifiedCaller>,
        now: u64,
    ) -> Result<Facts, CapabilityRejection> {
        let token_text = match parts.headers.get(&self.header) {
            Some(h) => h.to_str().map_err(|_| {
                CapabilityRejection::InvalidToken("token header is not text".into())
            })?,
            None => message
                .and_then(jsonrpc::Message::token)
                .ok_or(CapabilityRejection::MissingToken)?,
        };
        let tool = message.and_then(jsonrpc::Message::tool);
        let checked = self.checked(token_text, now)?;
        let mut access = Access::at(now);
        if let Some(c) = caller {
            access = access.caller(&c.keyid);
        }
        if let Some(t) = tool {
            let operation = self
                .operations
                .get(t)
                .map_or(self.default_operation.as_str(), String::as_str);
            access = access.tool(t).operation(operation);
        }
        self.verifier.authorize(&checked, &access).map_err(|e| {
            tracing::info!(code = e.code(), detail = %e, "token refused");
            if e.is_forbidden() {
                CapabilityRejection::Forbidden(e.to_string())
            } else {
                CapabilityRejection::InvalidToken(e.to_string())
            }
        })
    }

    fn checked(&self, text: &str, now: u64) -> Result<Arc<VerifiedToken>, CapabilityRejection> {
        if let Some(hit) = self.cache.get(text, now) {
            return Ok(hit);
        }
        let invalid = |e: vouch_token::Error| {
            tracing::info!(code = e.code(), detail = %e, "token invalid");
            CapabilityRejection::InvalidToken(e.to_string())
        };
        let token = Token::from_base64(text).map_err(invalid)?;
        let checked = Arc::new(self.verifier.check(&token).map_err(invalid)?);
        self.cache.insert(text, checked.clone(), now);
        Ok(checked)
    }
}
