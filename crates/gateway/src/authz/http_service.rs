//! Envoy's HTTP mode (`http_service`): Envoy sends each check as an HTTP request to
//! `path_prefix` + the original path, with the original method, `Host`, the fields its
//! `allowed_headers` lets through and the buffered body. A `200` allows the request (its
//! fields matching `allowed_upstream_headers` are set upstream, and the fields named in
//! `x-envoy-auth-headers-to-remove` removed); any other answer goes to the client.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::header::CONTENT_TYPE;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri};

use super::{Denied, ExtAuthz, HEADERS_TO_REMOVE_HEADER, Verdict};
use crate::HEALTH_PATH;
use crate::response::error;

impl ExtAuthz {
    /// The HTTP-mode router: every request under the path prefix
    /// ([`Authorizer::http_prefix`](super::Authorizer::http_prefix)) is a check of the request
    /// it describes (the prefix removed from its path), answered `200` with the fields to set
    /// and [`HEADERS_TO_REMOVE_HEADER`] when allowed, or with the denial; `GET /healthz`
    /// answers `{"status":"ok"}`; anything else 404. Serve it with [`vouch_tower::serve`]
    /// (HTTP/1.1, as Envoy's `http_service` speaks by default).
    pub fn http_router(&self) -> Router {
        let authz = self.clone();
        Router::new()
            .route(
                HEALTH_PATH,
                get(|| async { ([(CONTENT_TYPE, "application/json")], r#"{"status":"ok"}"#) }),
            )
            .fallback(move |request: Request<Body>| {
                let authz = authz.clone();
                async move { authz.http_check(request).await }
            })
    }

    async fn http_check(&self, request: Request<Body>) -> Response<Body> {
        let (mut parts, body) = request.into_parts();
        let Some(original) = parts
            .uri
            .path()
            .strip_prefix(self.inner.http_prefix.as_str())
            .filter(|rest| rest.starts_with('/'))
        else {
            return error(StatusCode::NOT_FOUND, "not_found");
        };
        let target = match parts.uri.query() {
            Some(query) => PathAndQuery::try_from(format!("{original}?{query}")),
            None => PathAndQuery::try_from(original),
        };
        let Ok(target) = target else {
            return error(StatusCode::BAD_REQUEST, "bad_request");
        };
        parts.uri = Uri::from(target);
        match self.check(Request::from_parts(parts, body)).await {
            Verdict::Allow(allowed) => {
                let mut response = Response::new(Body::empty());
                *response.headers_mut() = allowed.headers_to_set().clone();
                let remove = allowed
                    .headers_to_remove()
                    .iter()
                    .map(http::HeaderName::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Ok(remove) = HeaderValue::from_str(&remove) {
                    response
                        .headers_mut()
                        .insert(HEADERS_TO_REMOVE_HEADER, remove);
                }
                response
            }
            Verdict::Deny(denied) => Denied::into_response(denied),
        }
    }
}
