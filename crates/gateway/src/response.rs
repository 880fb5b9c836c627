//! The gateway's own answers.

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};

/// The code of an answer the gateway made itself, as a response extension (for the metrics).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ErrorCode(pub(crate) &'static str);

/// `{"detail": {"error": code}}` with `status`.
pub(crate) fn error(status: StatusCode, code: &'static str) -> Response<Body> {
    let body = serde_json::json!({"detail": {"error": code}}).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.extensions_mut().insert(ErrorCode(code));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
