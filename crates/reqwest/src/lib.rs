//! Client side of vouch for reqwest: a middleware that signs every outgoing request with vouch's
//! MCP signature profile, and one that attaches a capability token.
//!
//! The signing middleware also mirrors a JSON-RPC body's `method` into `Mcp-Method` and, for
//! the methods that carry one, its tool, prompt, resource or task into `Mcp-Name` (MCP
//! 2026-07-28, SEP-2243), unless the request already has them, and signs them with the rest:
//! an authorizer that does not read the body can then decide on them. `Mcp-Param-*` headers
//! need the tool's input schema, which the middleware does not have: set them on the request
//! (they are signed when present).
//!
//! Order matters: attach the token first, then sign, so that the signature covers the token
//! header (`ClientBuilder::new(client).with(TokenMiddleware::new(t)?).with(SigningMiddleware::new(k, id))`).
//!
//! With [`SigningMiddleware::verify_responses`], the middleware also checks that each answer is
//! signed by the server, for this very request (RFC 9421 §2.4, vouch's response profile), and
//! refuses an unsigned or mismatched answer with a [`ResponseError`].
//!
//! The token is sent [sealed](vouch_token::Token::seal): an unsealed token carries the secret
//! that attenuates it, and whoever receives it (the server, and anyone the server logs to) could
//! delegate it further. Keep your unsealed copy to attenuate it yourself; it is never sent.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next, Result};
use vouch_httpsig::{
    DEFAULT_TOKEN_HEADER, RequestView, SigningKey, mcp, mcp_content_digest, mcp_spec, sign,
};

mod verify;

pub use verify::{DEFAULT_MAX_RESPONSE_BYTES, ResponseError, ServerKey};
use vouch_token::Token;

/// Why a request could not be signed. It is not sent.
#[non_exhaustive]
#[derive(Debug)]
pub enum SignError {
    /// The body is a stream: its bytes cannot be digested before sending.
    StreamingBody,
    /// The URL is not a valid request target.
    BadUrl(String),
    /// Signing failed.
    Signature(vouch_httpsig::Error),
    /// The capability token does not decode, or cannot be sealed (its proof is not the secret
    /// of its last key).
    Token(vouch_token::Error),
}

impl std::fmt::Display for SignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::StreamingBody => f.write_str(
                "cannot sign a streaming body: its bytes are needed for the Content-Digest",
            ),
            Self::BadUrl(u) => write!(f, "cannot sign a request to {u}"),
            Self::Signature(e) => write!(f, "signing failed: {e}"),
            Self::Token(e) => write!(f, "unusable capability token: {e}"),
        }
    }
}

impl std::error::Error for SignError {}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs every request: `@method`, `@target-uri`, `content-digest` over the exact body bytes,
/// and `authorization`, `mcp-session-id`, `mcp-protocol-version`, the token header,
/// `mcp-method`, `mcp-name` and every `mcp-param-*` header when present; `created`, `nonce`,
/// `alg`, `keyid`. A `POST` whose body is a JSON-RPC request or notification gets the
/// `Mcp-Method` and `Mcp-Name` headers it lacks, derived from the body
/// ([`mcp_request_headers`]).
#[derive(Clone)]
pub struct SigningMiddleware {
    key: Arc<SigningKey>,
    keyid: String,
    token_header: Option<String>,
    responses: Option<verify::ResponseCheck>,
}

impl SigningMiddleware {
    /// Signs as `keyid` with `key`.
    pub fn new(key: SigningKey, keyid: impl Into<String>) -> Self {
        Self {
            key: Arc::new(key),
            keyid: keyid.into(),
            token_header: None,
            responses: None,
        }
    }

    /// Verifies every answer: it must carry a signature by `server` under vouch's response
    /// profile, bound to the request just sent (its method, target URI and signature), fresh
    /// (created within 300 s, at most 30 s ahead), and, unless it is an event stream, with a
    /// Content-Digest that matches the body. Anything else is refused with a
    /// [`ResponseError`] and never reaches the caller. The body is buffered to be checked, up
    /// to [`DEFAULT_MAX_RESPONSE_BYTES`] ([`SigningMiddleware::max_response_bytes`]); an event
    /// stream is checked on its head and handed on unread, its events not covered.
    #[must_use]
    pub fn verify_responses(mut self, server: ServerKey) -> Self {
        self.responses = Some(verify::ResponseCheck::new(server));
        self
    }

    /// The largest response body buffered to be checked (with
    /// [`SigningMiddleware::verify_responses`]); a larger one is refused.
    #[must_use]
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        if let Some(check) = &mut self.responses {
            check.max_body_bytes = max;
        }
        self
    }

    /// Checks `response`, the answer to `request` as it was sent (signed), when response
    /// verification is on; otherwise hands it back.
    ///
    /// # Errors
    ///
    /// [`ResponseError`]; the response must then not be used.
    pub async fn check_response(
        &self,
        request: &SentRequest,
        response: Response,
    ) -> std::result::Result<Response, ResponseError> {
        match &self.responses {
            Some(check) => check.check(request, response).await,
            None => Ok(response),
        }
    }

    /// The header the capability token travels in, if not `x-mcpvault-token`.
    #[must_use]
    pub fn token_header(mut self, header: impl Into<String>) -> Self {
        self.token_header = Some(header.into());
        self
    }

    /// Adds the Content-Digest and the signature headers to `req`.
    ///
    /// # Errors
    ///
    /// [`SignError`]; the request must then not be sent.
    pub fn sign_request(&self, req: &mut Request) -> std::result::Result<(), SignError> {
        let body = match req.body() {
            None => Vec::new(),
            Some(b) => b.as_bytes().ok_or(SignError::StreamingBody)?.to_vec(),
        };
        if req.method() == reqwest::Method::POST {
            for (name, value) in mcp_request_headers(&body) {
                if !req.headers().contains_key(&name) {
                    req.headers_mut().insert(name, value);
                }
            }
        }
        if !body.is_empty() && !req.headers().contains_key("content-digest") {
            let digest = HeaderValue::from_str(&mcp_content_digest(&body))
                .map_err(|_| SignError::BadUrl("digest".into()))?;
            req.headers_mut()
                .insert(HeaderName::from_static("content-digest"), digest);
        }
        let uri: http::Uri = req
            .url()
            .as_str()
            .parse()
            .map_err(|_| SignError::BadUrl(req.url().to_string()))?;
        let method = req.method().clone();
        let signature = {
            let view = RequestView::from_parts(&method, &uri, req.headers(), &body);
            let spec = mcp_spec(
                &view,
                &self.key,
                &self.keyid,
                self.token_header.as_deref(),
                unix_now(),
            )
            .map_err(SignError::Signature)?;
            sign(view, &spec, &self.key).map_err(SignError::Signature)?
        };
        signature
            .apply(req.headers_mut())
            .map_err(SignError::Signature)
    }
}

/// The MCP 2026-07-28 request headers (SEP-2243) a JSON-RPC `body` mirrors: `Mcp-Method`
/// for any message with a string `method`, and `Mcp-Name` (Base64-wrapped when it cannot travel
/// as plain header text) for the methods in [`vouch_httpsig::mcp::name_source`] whose body has
/// that field as a string. Nothing for a body that is not such a message, or whose method is
/// not a header value. The same as [`vouch_httpsig::mcp::request_headers`], which it calls.
pub fn mcp_request_headers(body: &[u8]) -> Vec<(HeaderName, HeaderValue)> {
    mcp::request_headers(body)
}

impl std::fmt::Debug for SigningMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningMiddleware")
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Middleware for SigningMiddleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        if let Err(e) = self.sign_request(&mut req) {
            tracing::error!(detail = %e, "request not sent: it could not be signed");
            return Err(reqwest_middleware::Error::middleware(e));
        }
        if self.responses.is_none() {
            return next.run(req, extensions).await;
        }
        let sent = SentRequest::of(&req);
        let response = next.run(req, extensions).await?;
        self.check_response(&sent, response).await.map_err(|e| {
            tracing::warn!(detail = %e, "answer refused: its signature does not check");
            reqwest_middleware::Error::middleware(e)
        })
    }
}

/// What a response signature binds to: the request as it was sent, signed (method, URL,
/// `Signature` field lines).
#[derive(Debug, Clone)]
pub struct SentRequest {
    method: http::Method,
    uri: Option<http::Uri>,
    signature: http::HeaderMap,
}

impl SentRequest {
    /// The signed request `req`, as it is about to be sent.
    pub fn of(req: &Request) -> Self {
        Self::from_parts(req.method(), req.url().as_str(), req.headers())
    }

    /// A signed request from its method, URL and headers.
    pub fn from_parts(method: &http::Method, url: &str, headers: &http::HeaderMap) -> Self {
        let mut signature = http::HeaderMap::new();
        for line in headers.get_all("signature") {
            signature.append("signature", line.clone());
        }
        Self {
            method: method.clone(),
            uri: url.parse().ok(),
            signature,
        }
    }
}

/// Attaches a capability token header to every request that does not carry one.
///
/// The token is sent sealed: [`TokenMiddleware::new`] and [`TokenMiddleware::with_header`] seal
/// an unsealed token once, when built, and send a sealed one as it is. An unsealed token holds
/// the secret that attenuates it; sealed, it still verifies and grants the same, but nobody who
/// receives it can delegate it further. Keep the unsealed token you were given to attenuate it
/// yourself: the middleware does not keep it.
#[derive(Clone)]
pub struct TokenMiddleware {
    header: HeaderName,
    value: HeaderValue,
}

impl TokenMiddleware {
    /// Attaches `token` (the base64url transport form), sealed, in `x-mcpvault-token`.
    ///
    /// # Errors
    ///
    /// [`SignError::Token`] if the token does not decode or cannot be sealed.
    pub fn new(token: &str) -> std::result::Result<Self, SignError> {
        Self::with_header(HeaderName::from_static(DEFAULT_TOKEN_HEADER), token)
    }

    /// Attaches `token`, sealed, in `header`.
    ///
    /// # Errors
    ///
    /// [`SignError::Token`] if the token does not decode or cannot be sealed.
    pub fn with_header(header: HeaderName, token: &str) -> std::result::Result<Self, SignError> {
        let token = decode(token)?;
        let sealed = if token.is_sealed() {
            token
        } else {
            token.seal().map_err(SignError::Token)?
        };
        Self::attach(header, &sealed)
    }

    /// Attaches `token` unsealed, as given, in `x-mcpvault-token`: the server receives the
    /// secret that attenuates it. Only for servers that must attenuate on your behalf.
    ///
    /// # Errors
    ///
    /// [`SignError::Token`] if the token does not decode.
    pub fn unsealed(token: &str) -> std::result::Result<Self, SignError> {
        Self::unsealed_with_header(HeaderName::from_static(DEFAULT_TOKEN_HEADER), token)
    }

    /// Attaches `token` unsealed, as given, in `header`. See [`TokenMiddleware::unsealed`]: only
    /// for servers that must attenuate on your behalf.
    ///
    /// # Errors
    ///
    /// [`SignError::Token`] if the token does not decode.
    pub fn unsealed_with_header(
        header: HeaderName,
        token: &str,
    ) -> std::result::Result<Self, SignError> {
        Self::attach(header, &decode(token)?)
    }

    fn attach(header: HeaderName, token: &Token) -> std::result::Result<Self, SignError> {
        // Decoding is canonical, so this is the text the token was given as (or its sealed form).
        let mut value = HeaderValue::from_str(&token.to_base64()).map_err(|_| {
            SignError::Token(vouch_token::Error::InvalidInput(
                "token is not a header value",
            ))
        })?;
        value.set_sensitive(true);
        Ok(Self { header, value })
    }

    /// The header the token travels in.
    pub fn header_name(&self) -> &HeaderName {
        &self.header
    }

    /// The token as sent (sealed unless built with [`TokenMiddleware::unsealed`]), marked
    /// sensitive.
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }
}

fn decode(token: &str) -> std::result::Result<Token, SignError> {
    Token::from_base64(token.trim()).map_err(SignError::Token)
}

impl std::fmt::Debug for TokenMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenMiddleware")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Middleware for TokenMiddleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        if !req.headers().contains_key(&self.header) {
            req.headers_mut()
                .insert(self.header.clone(), self.value.clone());
        }
        next.run(req, extensions).await
    }
}
