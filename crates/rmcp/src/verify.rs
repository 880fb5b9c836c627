//! The verifying HTTP client behind [`SigningClient::verify_responses`]: it sends the signed
//! requests itself, so that it sees each answer's headers, checks the server's signature on
//! them, and only then hands rmcp what the answer says.

#![allow(
    clippy::disallowed_types,
    reason = "rmcp's StreamableHttpClient trait takes std HashMaps of headers"
)]

use std::borrow::Cow;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, ErrorData, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    AuthRequiredError, HttpStatusError, InsufficientScopeError, SseError, StreamableHttpClient,
    StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sse_stream::{Sse, SseStream};
use vouch_httpsig::{is_event_stream, media_type_is};
use vouch_reqwest::{ResponseError, SentRequest, SigningMiddleware};

#[cfg(doc)]
use crate::SigningClient;

type Headers = HashMap<HeaderName, HeaderValue>;
type Error = StreamableHttpError<reqwest::Error>;

/// The largest SSE event accepted on a `GET` stream when rmcp does not say: rmcp's own default,
/// 16 MiB.
const DEFAULT_MAX_SSE_EVENT_SIZE: usize = 16 << 20;

/// What the client asks for; what rmcp's own clients send.
const ACCEPT: &str = "text/event-stream, application/json";

/// The headers this client sets itself: a custom header of the same name is refused, as rmcp's
/// clients refuse it.
const RESERVED: [&str; 3] = ["accept", "mcp-session-id", "last-event-id"];

/// The largest `Retry-After` kept from a refusal.
const MAX_RETRY_AFTER: usize = 128;

/// An rmcp [`StreamableHttpClient`] over a `reqwest::Client` that checks the server's signature
/// on every answer before rmcp reads it: what [`SigningClient::verify_responses`] wraps (it is
/// not built on its own, since it checks answers to requests the [`SigningClient`] signed).
///
/// Each answer must be signed with the configured or pinned server key under vouch's response
/// profile, bound to the request it answers (its method, target URI and signature, `;req`), and
/// fresh. A JSON answer is read whole, up to the smaller of rmcp's JSON response limit and the
/// signer's [`max_response_bytes`](SigningClient::max_response_bytes), and its Content-Digest
/// checked, before it is parsed. An event stream (`text/event-stream`) is checked on its head
/// (status and headers) only: its events are not covered by the signature. An answer that is
/// unsigned, signed with another key, signed for another request or whose body does not match
/// its digest fails the call, with the detail in `tracing`; rmcp never sees it.
#[derive(Clone)]
pub struct VerifyingHttpClient {
    http: reqwest::Client,
    checker: Arc<SigningMiddleware>,
}

impl VerifyingHttpClient {
    /// Sends with `http`, checks answers with `checker` (a signer with response verification on).
    pub(crate) fn new(http: reqwest::Client, checker: Arc<SigningMiddleware>) -> Self {
        Self { http, checker }
    }

    /// The `reqwest::Client` requests go through.
    pub fn get_ref(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends the request (its signature and token among `custom`) and checks the answer. Only
    /// the answer's headers are read when it is an event stream; otherwise the body is read (up
    /// to `max_body`) and its digest checked.
    #[allow(clippy::too_many_arguments, reason = "the parts of one request")]
    async fn exchange(
        &self,
        method: Method,
        uri: &str,
        session_id: Option<&str>,
        last_event_id: Option<&str>,
        auth_header: Option<&str>,
        custom: Headers,
        body: Option<Vec<u8>>,
        max_body: usize,
    ) -> Result<reqwest::Response, Error> {
        let mut builder = self
            .http
            .request(method, uri)
            .header(header::ACCEPT, ACCEPT);
        if let Some(bearer) = auth_header {
            builder = builder.bearer_auth(bearer);
        }
        for (name, value) in custom {
            if RESERVED.contains(&name.as_str()) {
                return Err(StreamableHttpError::ReservedHeaderConflict(
                    name.to_string(),
                ));
            }
            builder = builder.header(name, value);
        }
        if let Some(id) = session_id {
            builder = builder.header("mcp-session-id", id);
        }
        if let Some(id) = last_event_id {
            builder = builder.header("last-event-id", id);
        }
        if let Some(body) = body {
            builder = builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let request = builder.build()?;
        let sent = SentRequest::of(&request);
        let response = self.http.execute(request).await?;
        if response
            .content_length()
            .is_some_and(|len| len > u64::try_from(max_body).unwrap_or(u64::MAX))
            && !is_event_stream(response.headers())
        {
            tracing::warn!(
                status = response.status().as_u16(),
                max = max_body,
                "answer refused: its body is larger than the limit"
            );
            return Err(StreamableHttpError::ResponseBodyTooLarge { max_size: max_body });
        }
        self.checker
            .check_response(&sent, response)
            .await
            .map_err(refused)
    }
}

impl std::fmt::Debug for VerifyingHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingHttpClient")
            .field("checker", &self.checker)
            .finish_non_exhaustive()
    }
}

/// The error rmcp sees for an answer whose signature does not check: one coarse message, the
/// detail in `tracing`.
fn refused(e: ResponseError) -> Error {
    tracing::warn!(detail = %e, "MCP answer refused: its signature does not check");
    StreamableHttpError::UnexpectedServerResponse(Cow::Borrowed(
        "answer refused: not signed by the server for this request",
    ))
}

fn is_json(headers: &HeaderMap) -> bool {
    media_type_is(headers, "application/json")
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The error for a 401 or 403 that carries a challenge, as rmcp classifies it (its OAuth client
/// reacts to these); `None` for other answers.
fn challenge(status: StatusCode, headers: &HeaderMap) -> Option<Error> {
    if !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return None;
    }
    let value = headers.get(header::WWW_AUTHENTICATE)?;
    let Ok(text) = value.to_str() else {
        return Some(StreamableHttpError::UnexpectedServerResponse(
            Cow::Borrowed("WWW-Authenticate is not text"),
        ));
    };
    Some(if status == StatusCode::UNAUTHORIZED {
        StreamableHttpError::AuthRequired(AuthRequiredError::new(text.to_owned()))
    } else {
        StreamableHttpError::InsufficientScope(InsufficientScopeError::new(
            text.to_owned(),
            scope_of(text),
        ))
    })
}

/// The `scope` parameter of a challenge, quoted or not.
fn scope_of(challenge: &str) -> Option<String> {
    let at = challenge.to_ascii_lowercase().find("scope=")?;
    let rest = challenge.get(at + "scope=".len()..)?;
    let value = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?,
        None => rest.split([',', ' ']).next()?,
    };
    (!value.is_empty()).then(|| value.to_owned())
}

/// Rate limits and server errors, kept as their status (and a bounded `Retry-After`).
fn status_error(status: StatusCode, headers: &HeaderMap) -> Option<Error> {
    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
        return None;
    }
    let retry_after = headers
        .get(header::RETRY_AFTER)
        .filter(|v| v.len() <= MAX_RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Some(HttpStatusError::new(status.as_u16(), retry_after).into())
}

/// The body of a checked answer (already in memory: the check read it), within `max`.
async fn body_of(response: reqwest::Response, max: usize) -> Result<Bytes, Error> {
    let body = response.bytes().await?;
    if body.len() > max {
        tracing::warn!(max, "answer refused: its body is larger than the limit");
        return Err(StreamableHttpError::ResponseBodyTooLarge { max_size: max });
    }
    Ok(body)
}

/// Short, lossy text of a body, for an error message.
fn preview(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body.get(..max.min(body.len())).unwrap_or_default());
    text.into_owned()
}

/// An answer to `server/discover` refused by a server that predates it (a 4xx other than 401
/// and 403, without a session), turned into the JSON-RPC error rmcp expects so that it falls
/// back to `initialize`, as its own clients do.
fn discover_refused(
    message: &ClientJsonRpcMessage,
    session_was_attached: bool,
    status: StatusCode,
    body: &[u8],
) -> Option<StreamableHttpPostResponse> {
    if session_was_attached
        || !status.is_client_error()
        || matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
    {
        return None;
    }
    let ClientJsonRpcMessage::Request(request) = message else {
        return None;
    };
    if !matches!(request.request, ClientRequest::DiscoverRequest(_)) {
        return None;
    }
    let error = match serde_json::from_slice::<ServerJsonRpcMessage>(body) {
        Ok(ServerJsonRpcMessage::Error(e)) => e.error,
        _ => {
            ErrorData::invalid_request(format!("server/discover refused with HTTP {status}"), None)
        }
    };
    Some(StreamableHttpPostResponse::Json(
        ServerJsonRpcMessage::error(error, Some(request.id.clone())),
        None,
    ))
}

/// Parses an event stream, refusing an event larger than `max` bytes (counted on the wire,
/// before parsing).
fn event_stream(
    response: reqwest::Response,
    max: usize,
) -> BoxStream<'static, Result<Sse, SseError>> {
    let bytes = EventSizeLimit {
        inner: response.bytes_stream().boxed(),
        max,
        event: 0,
        line: 0,
        after_cr: false,
        failed: false,
    };
    SseStream::from_bytes_stream(bytes).boxed()
}

/// Why an event stream was cut.
#[derive(Debug)]
enum StreamError {
    Body(reqwest::Error),
    EventTooLarge(usize),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Body(e) => write!(f, "event stream failed: {e}"),
            Self::EventTooLarge(max) => write!(f, "SSE event larger than {max} bytes"),
        }
    }
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Body(e) => Some(e),
            Self::EventTooLarge(_) => None,
        }
    }
}

/// The bytes of an event stream, cut with an error once one event (the lines up to a blank
/// line) exceeds `max` bytes, so that the parser never buffers more.
struct EventSizeLimit {
    inner: BoxStream<'static, reqwest::Result<Bytes>>,
    max: usize,
    /// Bytes of the current event so far (line terminators not counted).
    event: usize,
    /// Bytes of the current line so far.
    line: usize,
    /// The last byte was a CR: a LF right after it ends the same line.
    after_cr: bool,
    failed: bool,
}

impl EventSizeLimit {
    fn observe(&mut self, chunk: &[u8]) -> Result<(), StreamError> {
        for &byte in chunk {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    if self.line == 0 {
                        self.event = 0;
                    }
                    self.line = 0;
                    self.after_cr = byte == b'\r';
                }
                _ => {
                    self.line = self.line.saturating_add(1);
                    self.event = self.event.saturating_add(1);
                    if self.event > self.max {
                        return Err(StreamError::EventTooLarge(self.max));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Stream for EventSizeLimit {
    type Item = Result<Bytes, StreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => match self.observe(&chunk) {
                Ok(()) => Poll::Ready(Some(Ok(chunk))),
                Err(e) => {
                    tracing::warn!(detail = %e, "event stream cut");
                    self.failed = true;
                    Poll::Ready(Some(Err(e)))
                }
            },
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(StreamError::Body(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl StreamableHttpClient for VerifyingHttpClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: Headers,
    ) -> Result<StreamableHttpPostResponse, Error> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: Headers,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: Headers,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Error> {
        // The bytes the signer digested (`SigningClient::sign_post`).
        let body = serde_json::to_vec(&message).map_err(StreamableHttpError::Deserialize)?;
        let max_json = limits.max_json_response_size;
        let response = self
            .exchange(
                Method::POST,
                &uri,
                session_id.as_deref(),
                None,
                auth_header.as_deref(),
                custom_headers,
                Some(body),
                max_json,
            )
            .await?;
        let status = response.status();
        if let Some(e) = challenge(status, response.headers()) {
            return Err(e);
        }
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == StatusCode::NOT_FOUND && session_id.is_some() {
            return Err(StreamableHttpError::SessionExpired);
        }
        let awaits_no_response = !matches!(message, ClientJsonRpcMessage::Request(_));
        let session = session_of(response.headers());
        if !status.is_success() {
            let json = is_json(response.headers());
            let retry = status_error(status, response.headers());
            let body = if is_event_stream(response.headers()) {
                Bytes::new()
            } else {
                body_of(response, max_json).await?
            };
            let auth_failure = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
            if json
                && !auth_failure
                && status != StatusCode::TOO_MANY_REQUESTS
                && let Ok(error @ ServerJsonRpcMessage::Error(_)) =
                    serde_json::from_slice::<ServerJsonRpcMessage>(&body)
            {
                if let Some(answer) =
                    discover_refused(&message, session_id.is_some(), status, &body)
                {
                    return Ok(answer);
                }
                return Ok(StreamableHttpPostResponse::Json(error, session));
            }
            if let Some(answer) = discover_refused(&message, session_id.is_some(), status, &body) {
                return Ok(answer);
            }
            if let Some(e) = retry {
                return Err(e);
            }
            return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                format!(
                    "HTTP {status}: {}",
                    preview(&body, limits.max_error_response_size)
                ),
            )));
        }
        if is_event_stream(response.headers()) {
            return Ok(StreamableHttpPostResponse::Sse(
                event_stream(response, limits.max_sse_event_size),
                session,
            ));
        }
        if is_json(response.headers()) {
            let body = body_of(response, max_json).await?;
            if body.is_empty() && awaits_no_response {
                return Ok(StreamableHttpPostResponse::Accepted);
            }
            return match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
                Ok(parsed) => Ok(StreamableHttpPostResponse::Json(parsed, session)),
                Err(e) if awaits_no_response => {
                    tracing::debug!(detail = %e, "unusable JSON answer to a notification ignored");
                    Ok(StreamableHttpPostResponse::Accepted)
                }
                Err(e) => {
                    tracing::warn!(detail = %e, "JSON answer is not a JSON-RPC message");
                    Err(StreamableHttpError::Deserialize(e))
                }
            };
        }
        if awaits_no_response {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        Err(StreamableHttpError::UnexpectedContentType(content_type))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: Headers,
    ) -> Result<(), Error> {
        let response = self
            .exchange(
                Method::DELETE,
                &uri,
                Some(&session_id),
                None,
                auth_header.as_deref(),
                custom_headers,
                None,
                StreamableHttpResponseLimits::default().max_error_response_size,
            )
            .await?;
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            tracing::debug!("the server does not delete sessions");
            return Ok(());
        }
        if let Some(e) = challenge(status, response.headers()) {
            return Err(e);
        }
        if !status.is_success() {
            return Err(status_error(status, response.headers()).unwrap_or(
                StreamableHttpError::UnexpectedServerResponse(Cow::Owned(format!("HTTP {status}"))),
            ));
        }
        Ok(())
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: Headers,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            DEFAULT_MAX_SSE_EVENT_SIZE,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: Headers,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let response = self
            .exchange(
                Method::GET,
                &uri,
                session_id.as_deref(),
                last_event_id.as_deref(),
                auth_header.as_deref(),
                custom_headers,
                None,
                StreamableHttpResponseLimits::default().max_error_response_size,
            )
            .await?;
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if let Some(e) = challenge(status, response.headers()) {
            return Err(e);
        }
        if status == StatusCode::NOT_FOUND && session_id.is_some() {
            return Err(StreamableHttpError::SessionExpired);
        }
        if !status.is_success() {
            return Err(status_error(status, response.headers()).unwrap_or(
                StreamableHttpError::UnexpectedServerResponse(Cow::Owned(format!("HTTP {status}"))),
            ));
        }
        if !is_event_stream(response.headers()) {
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            return Err(StreamableHttpError::UnexpectedContentType(content_type));
        }
        Ok(event_stream(response, max_sse_event_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max: usize) -> EventSizeLimit {
        EventSizeLimit {
            inner: futures_util::stream::empty().boxed(),
            max,
            event: 0,
            line: 0,
            after_cr: false,
            failed: false,
        }
    }

    #[test]
    fn an_event_is_counted_up_to_its_blank_line() {
        let mut l = limit(10);
        assert!(
            l.observe(b"data: 12\r\n\r\ndata: 34\n\ndata: 5\r\r")
                .is_ok()
        );
        assert!(l.observe(b"data: 1\n").is_ok());
        // The same event goes on: 7 + 6 bytes.
        assert!(matches!(
            l.observe(b"id: 12\n\n"),
            Err(StreamError::EventTooLarge(10))
        ));
    }

    #[test]
    fn a_crlf_is_one_line_end_not_a_blank_line() {
        let mut l = limit(10);
        assert!(l.observe(b"data: 1\r").is_ok());
        // Had the LF been a blank line, the event would have ended at 7 bytes.
        assert!(matches!(
            l.observe(b"\nid: 2"),
            Err(StreamError::EventTooLarge(10))
        ));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn challenges_become_rmcp_auth_errors() {
        let bearer = headers(&[("www-authenticate", r#"Bearer scope="tools:call""#)]);
        assert!(matches!(
            challenge(StatusCode::UNAUTHORIZED, &bearer),
            Some(StreamableHttpError::AuthRequired(_))
        ));
        let Some(StreamableHttpError::InsufficientScope(e)) =
            challenge(StatusCode::FORBIDDEN, &bearer)
        else {
            panic!("403 with a challenge is not an insufficient scope");
        };
        assert_eq!(e.get_required_scope(), Some("tools:call"));
        // Without a challenge, or on another status, it is not an auth error.
        assert!(challenge(StatusCode::UNAUTHORIZED, &HeaderMap::new()).is_none());
        assert!(challenge(StatusCode::NOT_FOUND, &bearer).is_none());
    }

    #[test]
    fn rate_limits_and_server_errors_keep_their_status() {
        let retry = headers(&[("retry-after", "7")]);
        let Some(StreamableHttpError::HttpStatus(e)) =
            status_error(StatusCode::TOO_MANY_REQUESTS, &retry)
        else {
            panic!("429 is not a status error");
        };
        assert_eq!((e.status, e.retry_after.as_deref()), (429, Some("7")));
        assert!(status_error(StatusCode::BAD_GATEWAY, &HeaderMap::new()).is_some());
        assert!(status_error(StatusCode::BAD_REQUEST, &retry).is_none());
    }

    #[test]
    fn a_refused_discover_falls_back_only_without_a_session() {
        let discover: ClientJsonRpcMessage = serde_json::from_str(
            r#"{"jsonrpc":"2.0","id":5,"method":"server/discover","params":{}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            discover_refused(&discover, false, StatusCode::NOT_FOUND, b"not here"),
            Some(StreamableHttpPostResponse::Json(
                ServerJsonRpcMessage::Error(_),
                None
            ))
        ));
        assert!(discover_refused(&discover, true, StatusCode::NOT_FOUND, b"").is_none());
        assert!(discover_refused(&discover, false, StatusCode::UNAUTHORIZED, b"").is_none());
        assert!(discover_refused(&discover, false, StatusCode::BAD_GATEWAY, b"").is_none());
    }

    #[test]
    fn media_types_are_read_from_a_single_content_type() {
        assert!(is_json(&headers(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )])));
        assert!(is_event_stream(&headers(&[(
            "content-type",
            "text/event-stream"
        )])));
        let mut two = headers(&[("content-type", "application/json")]);
        two.append(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        assert!(!is_json(&two) && !is_event_stream(&two));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn scopes_are_read_quoted_or_bare() {
        assert_eq!(
            scope_of(r#"Bearer error="insufficient_scope", scope="a b""#).as_deref(),
            Some("a b")
        );
        assert_eq!(scope_of("Bearer scope=read, x=y").as_deref(), Some("read"));
        assert_eq!(scope_of("Bearer realm=x"), None);
    }
}
