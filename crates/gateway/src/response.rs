//! The gateway's own answers.

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};

/// `{"detail": {"error": code}}` with `status`.
pub(crate) fn error(status: StatusCode, code: &str) -> Response<Body> {
    let body = serde_json::json!({"detail": {"error": code}}).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
