//! The signing MCP client: an rmcp [`StreamableHttpClient`] that signs every request.

#![allow(
    clippy::disallowed_types,
    reason = "rmcp's StreamableHttpClient trait takes std HashMaps of headers"
)]

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::stream::BoxStream;
use http::{HeaderName, HeaderValue, Method};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;
use vouch_httpsig::SigningKey;
use vouch_reqwest::{ServerKey, SignError, SigningMiddleware, TokenMiddleware};

use crate::VerifyingHttpClient;

type Headers = HashMap<HeaderName, HeaderValue>;

/// The headers signing adds (the MCP request headers when rmcp did not send them, for the
/// 2025-06-18 generation); the signer copies these into rmcp's custom headers.
const SIGNED_HEADERS: [&str; 5] = [
    "content-digest",
    "signature-input",
    "signature",
    "mcp-method",
    "mcp-name",
];

/// An rmcp [`StreamableHttpClient`] that signs every request rmcp makes (initialize or
/// `server/discover`, notifications, tool calls, the SSE `GET`, the session `DELETE`) with
/// vouch's MCP signature profile (the one [`vouch_reqwest::SigningMiddleware`] uses) and
/// attaches a capability token.
///
/// Both protocol generations are signed alike. With 2026-07-28 (stateless, no session id)
/// rmcp sends `Mcp-Method`, `Mcp-Name` and the `Mcp-Param-*` headers its tool schemas call for;
/// the signature covers them. With 2025-06-18 (sessions) rmcp sends none: the client adds
/// `Mcp-Method` and `Mcp-Name`, derived from the message
/// ([`vouch_reqwest::mcp_request_headers`]), and signs them too, so that an authorizer deciding
/// on headers alone works with both.
///
/// It wraps another client, by default rmcp's own `reqwest::Client` implementation, and hands it
/// the signature as extra headers, so rmcp keeps its response handling (SSE parsing, size
/// limits, error classification). The wrapped client must send the message as
/// `serde_json::to_vec(message)` to the URI it is given, as rmcp's reqwest and Unix-socket
/// clients do: the Content-Digest is computed over those bytes.
///
/// rmcp's client reads the answers itself and takes any answer. To check that each one is signed
/// by the server for the request it answers, use [`SigningClient::verify_responses`]: the
/// requests then go through a [`VerifyingHttpClient`] instead.
///
/// Composes with rmcp's OAuth client: `AuthClient::new(SigningClient::new(..), manager)` hands
/// the bearer token to this client, which covers the `Authorization` header with the signature.
///
/// The capability token is sent [sealed](vouch_token::Token::seal): an unsealed token carries the
/// secret that attenuates it, which the server (and anyone the server logs to) would receive.
/// Keep your unsealed token to attenuate it yourself; the client never sends it, unless built
/// with [`SigningClient::with_unsealed_token`].
///
/// ```no_run
/// # fn demo(key: vouch_httpsig::SigningKey, token: &str) -> Result<(), Box<dyn std::error::Error>> {
/// use rmcp::transport::StreamableHttpClientTransport;
/// use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
/// use vouch_rmcp::SigningClient;
///
/// let client = SigningClient::new(reqwest::Client::new(), key, "worker@agents.example")
///     .with_token(token)?;
/// let transport = StreamableHttpClientTransport::with_client(
///     client,
///     StreamableHttpClientTransportConfig::with_uri("https://tools.example/mcp"),
/// );
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SigningClient<C = reqwest::Client> {
    inner: C,
    signer: Arc<SigningMiddleware>,
    token: Option<TokenMiddleware>,
}

impl<C> SigningClient<C> {
    /// Signs as `keyid` with `key`, sending through `inner`.
    pub fn new(inner: C, key: SigningKey, keyid: impl Into<String>) -> Self {
        Self {
            inner,
            signer: Arc::new(SigningMiddleware::new(key, keyid)),
            token: None,
        }
    }

    /// Attaches `token` (base64url), sealed, in `x-mcpvault-token` on every request. An unsealed
    /// token is sealed once, here; a sealed one is sent as it is.
    ///
    /// # Errors
    ///
    /// [`SignError::Token`] if the token does not decode or cannot be sealed.
    pub fn with_token(self, token: &str) -> Result<Self, SignError> {
        Ok(self.attach(TokenMiddleware::new(token)?))
    }

    /// Attaches `token`, sealed, in `header` on every request.
    ///
    /// # Errors
    ///
    /// [`SignError::Token`] if the token does not decode or cannot be sealed.
    pub fn with_token_header(self, header: HeaderName, token: &str) -> Result<Self, SignError> {
        Ok(self.attach(TokenMiddleware::with_header(header, token)?))
    }

    /// Attaches `token` unsealed, as given, in `x-mcpvault-token` on every request: the server
    /// receives the secret that attenuates it. Only for servers that must attenuate on your
    /// behalf; otherwise use [`SigningClient::with_token`].
    ///
    /// # Errors
    ///
    /// [`SignError::Token`] if the token does not decode.
    pub fn with_unsealed_token(self, token: &str) -> Result<Self, SignError> {
        Ok(self.attach(TokenMiddleware::unsealed(token)?))
    }

    fn attach(mut self, token: TokenMiddleware) -> Self {
        self.signer = Arc::new(
            SigningMiddleware::clone(&self.signer)
                .token_header(token.header_name().as_str().to_owned()),
        );
        self.token = Some(token);
        self
    }

    /// The wrapped client.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }
}

impl SigningClient<reqwest::Client> {
    /// Verifies every answer: it must be signed by `server` under vouch's response profile,
    /// bound to the request it answers (`;req`: its method, target URI and signature) and
    /// fresh, or the call fails. An unsigned answer, one signed with another key or for another
    /// request, or one whose body does not match its Content-Digest never reaches rmcp; the
    /// detail goes to `tracing`.
    ///
    /// The client then sends through a [`VerifyingHttpClient`] over the same `reqwest::Client`
    /// instead of rmcp's own implementation: it reads each answer's head, checks it, reads a
    /// JSON body whole (up to rmcp's JSON response limit and
    /// [`max_response_bytes`](SigningClient::max_response_bytes), 4 MiB by default) and checks
    /// its digest before parsing it. An event stream (`text/event-stream`, the SSE answers of
    /// session mode and the `GET` stream) is checked on its head only: the signature does not
    /// cover its events, which is what vouch's response profile signs for streams.
    ///
    /// The server must sign its answers ([`Protected::sign_responses`](crate::Protected::sign_responses)).
    /// Refusals it cannot bind to a request (a 401 from the signature layer) are unsigned and
    /// fail the call like any other unsigned answer.
    ///
    /// ```no_run
    /// # fn demo(key: vouch_httpsig::SigningKey, server: vouch_httpsig::VerifyingKey, token: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// use vouch_reqwest::ServerKey;
    /// use vouch_rmcp::SigningClient;
    ///
    /// let client = SigningClient::new(reqwest::Client::new(), key, "worker@agents.example")
    ///     .with_token(token)?
    ///     .verify_responses(ServerKey::fixed(server));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn verify_responses(self, server: ServerKey) -> SigningClient<VerifyingHttpClient> {
        let signer = Arc::new(SigningMiddleware::clone(&self.signer).verify_responses(server));
        SigningClient {
            inner: VerifyingHttpClient::new(self.inner, signer.clone()),
            signer,
            token: self.token,
        }
    }
}

impl SigningClient<VerifyingHttpClient> {
    /// The largest answer body read to be checked (default
    /// [`vouch_reqwest::DEFAULT_MAX_RESPONSE_BYTES`], 4 MiB); a larger one fails the call. rmcp's
    /// own JSON response limit applies too: the smaller wins.
    #[must_use]
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        let signer = Arc::new(SigningMiddleware::clone(&self.signer).max_response_bytes(max));
        self.inner = VerifyingHttpClient::new(self.inner.get_ref().clone(), signer.clone());
        self.signer = signer;
        self
    }
}

impl<C> SigningClient<C> {
    /// Computes the signature headers for one request and adds them (and the token) to `headers`.
    fn sign<E>(
        &self,
        method: Method,
        uri: &str,
        session_id: Option<&str>,
        auth_header: Option<&str>,
        headers: &mut Headers,
        body: Vec<u8>,
    ) -> Result<(), StreamableHttpError<E>>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let fail = |e: SignError| {
            tracing::error!(detail = %e, "MCP request not sent: it could not be signed");
            StreamableHttpError::Io(std::io::Error::other(e))
        };
        let url = reqwest::Url::parse(uri).map_err(|_| fail(SignError::BadUrl(uri.to_owned())))?;
        let mut request = reqwest::Request::new(method, url);
        let map = request.headers_mut();
        for (name, value) in headers.iter() {
            map.insert(name.clone(), value.clone());
        }
        if let Some(token) = &self.token
            && !map.contains_key(token.header_name())
        {
            let (name, value) = (token.header_name(), token.header_value());
            map.insert(name.clone(), value.clone());
            headers.insert(name.clone(), value.clone());
        }
        if let Some(id) = session_id {
            let value = HeaderValue::from_str(id)
                .map_err(|_| fail(SignError::BadUrl("session id is not a header value".into())))?;
            map.insert(HeaderName::from_static("mcp-session-id"), value);
        }
        if let Some(bearer) = auth_header {
            // What reqwest's `bearer_auth` sends.
            let value = HeaderValue::from_str(&format!("Bearer {bearer}"))
                .map_err(|_| fail(SignError::BadUrl("bearer is not a header value".into())))?;
            map.insert(http::header::AUTHORIZATION, value);
        }
        if !body.is_empty() {
            *request.body_mut() = Some(body.into());
        }
        self.signer.sign_request(&mut request).map_err(fail)?;
        for name in SIGNED_HEADERS {
            if let Some(value) = request.headers().get(name) {
                headers.insert(HeaderName::from_static(name), value.clone());
            }
        }
        Ok(())
    }
}

impl<C> SigningClient<C> {
    /// Signs a `POST` of `message`, over the bytes rmcp's reqwest client sends for it.
    fn sign_post<E>(
        &self,
        uri: &str,
        message: &ClientJsonRpcMessage,
        session_id: Option<&str>,
        auth_header: Option<&str>,
        headers: &mut Headers,
    ) -> Result<(), StreamableHttpError<E>>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let body = serde_json::to_vec(message).map_err(StreamableHttpError::Deserialize)?;
        self.sign(Method::POST, uri, session_id, auth_header, headers, body)
    }
}

impl<C> std::fmt::Debug for SigningClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningClient")
            .field("signer", &self.signer)
            .field(
                "token",
                &self.token.as_ref().map(TokenMiddleware::header_name),
            )
            .finish_non_exhaustive()
    }
}

impl<C> StreamableHttpClient for SigningClient<C>
where
    C: StreamableHttpClient + Sync,
{
    type Error = C::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        mut custom_headers: Headers,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.sign_post(
            &uri,
            &message,
            session_id.as_deref(),
            auth_header.as_deref(),
            &mut custom_headers,
        )?;
        self.inner
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        mut custom_headers: Headers,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.sign_post(
            &uri,
            &message,
            session_id.as_deref(),
            auth_header.as_deref(),
            &mut custom_headers,
        )?;
        self.inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        mut custom_headers: Headers,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.sign_post(
            &uri,
            &message,
            session_id.as_deref(),
            auth_header.as_deref(),
            &mut custom_headers,
        )?;
        self.inner
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        mut custom_headers: Headers,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.sign(
            Method::DELETE,
            &uri,
            Some(&session_id),
            auth_header.as_deref(),
            &mut custom_headers,
            Vec::new(),
        )?;
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        mut custom_headers: Headers,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.sign(
            Method::GET,
            &uri,
            session_id.as_deref(),
            auth_header.as_deref(),
            &mut custom_headers,
            Vec::new(),
        )?;
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        mut custom_headers: Headers,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.sign(
            Method::GET,
            &uri,
            session_id.as_deref(),
            auth_header.as_deref(),
            &mut custom_headers,
            Vec::new(),
        )?;
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}
