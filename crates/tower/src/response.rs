//! The error answers the layers send (the seed's JSON shape), as [`Denial`]s.

use axum_core::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::pipeline::Rejection;

/// A refusal, as the layers answer it: a status, a few fields and a JSON body.
///
/// The tower layers turn it into their response ([`Denial::into_response`]); a
/// [`Checkpoint`](crate::Checkpoint) hands it to hosts that write their own responses (an
/// external authorizer, a Python ASGI middleware), so every host sends the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial(Box<Answer>);

/// What a [`Denial`] holds (boxed: a refusal is the rare path, and a `Result` stays small).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Denial {
    /// A JSON `body` with `status` and `Content-Type: application/json`.
    pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Self(Box::new(Answer {
            status,
            headers,
            body: Bytes::from(body.to_string()),
        }))
    }

    /// The status: 400, 401, 403, 408, 413, 421, 429 or 503.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The fields: `Content-Type`, and as the case may be `WWW-Authenticate` (401),
    /// `Accept-Signature` (401 under SEP-2752), `Retry-After` (429) and `Connection: close` (a
    /// body left unread, or a body timeout). Never `Content-Length`.
    pub fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }

    /// The JSON body.
    pub fn body(&self) -> &Bytes {
        &self.0.body
    }

    /// The status, fields and body.
    pub fn into_parts(self) -> (StatusCode, HeaderMap, Bytes) {
        let Answer {
            status,
            headers,
            body,
        } = *self.0;
        (status, headers, body)
    }

    /// The answer as an HTTP response.
    pub fn into_response(self) -> Response<Body> {
        let (status, headers, body) = self.into_parts();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    pub(crate) fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.0.headers
    }

    /// With `Connection: close`: the connection cannot carry another request.
    pub(crate) fn close(mut self) -> Self {
        self.0
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        self
    }
}

/// `{"detail": {"error": kind, "detail": reason}}` with the status, and the
/// `WWW-Authenticate: Signature` challenge on 401.
pub(crate) fn rejection_denial(rejection: &Rejection, challenge: &str) -> Denial {
    let kind = match rejection {
        Rejection::Unauthorized { .. } => "invalid_signature",
        Rejection::Misdirected => "misdirected_request",
        Rejection::Timeout => "request_timeout",
        Rejection::PayloadTooLarge => "payload_too_large",
        Rejection::TooManyRequests { .. } => "rate_limited",
        Rejection::Unavailable => "unavailable",
    };
    let body = json!({"detail": {"error": kind, "detail": rejection.reason()}});
    let mut denial = Denial::json(rejection.status(), &body);
    if let Rejection::TooManyRequests { retry_after } = rejection {
        denial.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from((*retry_after).max(1)),
        );
    }
    if matches!(rejection, Rejection::Timeout) {
        // The rest of a slow body is not worth waiting for: end the connection.
        denial = denial.close();
    }
    if rejection.status() == StatusCode::UNAUTHORIZED
        && let Ok(v) = HeaderValue::from_str(challenge)
    {
        denial.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    denial
}

/// [`rejection_denial`] as a response.
pub(crate) fn rejection_response(rejection: &Rejection, challenge: &str) -> Response<Body> {
    rejection_denial(rejection, challenge).into_response()
}

/// A refusal in SEP-2752's form: as [`rejection_denial`], but a 401 also carries
/// `Accept-Signature` and its body is a JSON-RPC error.
pub(crate) fn sep2752_denial(
    rejection: &Rejection,
    challenge: &str,
    accept_signature: &str,
) -> Denial {
    let mut denial = rejection_denial(rejection, challenge);
    if rejection.status() != StatusCode::UNAUTHORIZED {
        return denial;
    }
    let body = json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": SEP2752_ERROR_CODE,
            "message": "invalid_signature",
            "data": {"reason": rejection.reason()},
        },
    });
    denial.0.body = Bytes::from(body.to_string());
    if let Ok(v) = HeaderValue::from_str(accept_signature) {
        denial
            .headers_mut()
            .insert(http::HeaderName::from_static("accept-signature"), v);
    }
    denial
}

/// The JSON-RPC error code of a SEP-2752 refusal (in the range JSON-RPC reserves for
/// implementation-defined server errors; SEP-2752 names none).
pub(crate) const SEP2752_ERROR_CODE: i64 = -32001;
