//! The error responses the layers answer with (the seed's JSON shape).

use axum_core::body::Body;
use http::{HeaderValue, Response, header};
use serde_json::json;

use crate::pipeline::Rejection;

/// A JSON body with `status`.
pub(crate) fn json_response(status: http::StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `{"detail": {"error": kind, "detail": reason}}` with the status, and the
/// `WWW-Authenticate: Signature` challenge on 401.
pub(crate) fn rejection_response(rejection: &Rejection, challenge: &str) -> Response<Body> {
    let kind = match rejection {
        Rejection::Unauthorized { .. } => "invalid_signature",
        Rejection::Misdirected => "misdirected_request",
        Rejection::Timeout => "request_timeout",
        Rejection::PayloadTooLarge => "payload_too_large",
        Rejection::TooManyRequests { .. } => "rate_limited",
        Rejection::Unavailable => "unavailable",
    };
    let body = json!({"detail": {"error": kind, "detail": rejection.reason()}});
    let mut response = json_response(rejection.status(), &body);
    if let Rejection::TooManyRequests { retry_after } = rejection {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from((*retry_after).max(1)),
        );
    }
    if matches!(rejection, Rejection::Timeout) {
        // The rest of a slow body is not worth waiting for: end the connection.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if rejection.status() == http::StatusCode::UNAUTHORIZED
        && let Ok(v) = HeaderValue::from_str(challenge)
    {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

/// A refusal in SEP-2752's form: as [`rejection_response`], but a 401 also carries
/// `Accept-Signature` and its body is a JSON-RPC error.
pub(crate) fn sep2752_response(
    rejection: &Rejection,
    challenge: &str,
    accept_signature: &str,
) -> Response<Body> {
    let mut response = rejection_response(rejection, challenge);
    if rejection.status() != http::StatusCode::UNAUTHORIZED {
        return response;
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
    *response.body_mut() = Body::from(body.to_string());
    if let Ok(v) = HeaderValue::from_str(accept_signature) {
        response
            .headers_mut()
            .insert(http::HeaderName::from_static("accept-signature"), v);
    }
    response
}

/// The JSON-RPC error code of a SEP-2752 refusal (in the range JSON-RPC reserves for
/// implementation-defined server errors; SEP-2752 names none).
pub(crate) const SEP2752_ERROR_CODE: i64 = -32001;
