//! Envoy's gRPC `envoy.service.auth.v3.Authorization/Check`: the check request made back into
//! the client's request, and the verdict into a `CheckResponse`.
//!
//! Envoy's `headers` attribute is a map: a field the client sent on several lines arrives once,
//! its values joined with `,`. That is the field's combined value (RFC 9110 §5.3), which is
//! also what RFC 9421 signs for a repeated field, so a signature over it verifies only if the
//! client signed the same lines. Two `Content-Digest` or `Signature-Input` lines become one
//! dictionary with a repeated key, which vouch-httpsig refuses; two `Host` values (or a `Host`
//! that disagrees with `:authority`) are refused as misdirected. With Envoy's
//! `encode_raw_headers: true` the lines arrive one by one in `header_map` and are used as they
//! are.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue as EnvoyHeaderValue, HeaderValueOption, HttpResponse,
    HttpStatus, HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Full;

use super::{AuthzError, Denied, ExtAuthz, PARTIAL_BODY_HEADER, Verdict};

/// Room for the request head (fields, path) in a check message, besides the body.
const HEAD_ALLOWANCE: usize = 256 << 10;

/// The largest HTTP/2 header list a check's gRPC request may have (Envoy's are small).
const MAX_HEADER_LIST: u32 = 64 << 10;

/// Checks served at once on one connection from Envoy.
const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// How long one check may take before it is answered with a gRPC error (Envoy then applies
/// `status_on_error`; its own `timeout` is usually shorter).
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// The gRPC `Authorization` service over an [`ExtAuthz`].
pub(super) struct Grpc(pub(super) ExtAuthz);

#[tonic::async_trait]
impl Authorization for Grpc {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let verdict = match to_request(request.into_inner()) {
            Ok(request) => self.0.check(request.map(Full::new)).await,
            Err(why) => {
                tracing::warn!(why, "check request refused");
                Verdict::Deny(Denied::own(StatusCode::BAD_REQUEST, "bad_request").await)
            }
        };
        Ok(tonic::Response::new(to_response(verdict)))
    }
}

/// The client's request, as Envoy describes it in `check`; `Err` names what is missing or
/// malformed.
pub(super) fn to_request(check: CheckRequest) -> Result<Request<Bytes>, &'static str> {
    let http = check
        .attributes
        .and_then(|a| a.request)
        .and_then(|r| r.http)
        .ok_or("no HTTP request attributes")?;
    let method = Method::from_bytes(http.method.as_bytes()).map_err(|_| "invalid method")?;
    // Origin-form only: Envoy's `path` is the `:path` pseudo-header, path and query.
    if !http.path.starts_with('/') {
        return Err("path not in origin form");
    }
    let target = PathAndQuery::try_from(http.path.as_str()).map_err(|_| "invalid path")?;

    let mut headers = HeaderMap::new();
    // Every authority the check names; more than one distinct value is refused (421) by the
    // signature layer, which accepts exactly one Host.
    let mut authorities: Vec<String> = Vec::new();
    if !http.host.is_empty() {
        authorities.push(http.host.clone());
    }
    let mut add = |name: &str, value: &[u8]| -> Result<(), &'static str> {
        if name == ":authority" || name.eq_ignore_ascii_case("host") {
            let value = std::str::from_utf8(value).map_err(|_| "invalid authority")?;
            if !authorities.iter().any(|a| a == value) {
                authorities.push(value.to_owned());
            }
            return Ok(());
        }
        if name.starts_with(':') {
            // Pseudo-headers: method and path are taken from their attributes.
            return Ok(());
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| "invalid field name")?;
        let value = HeaderValue::from_bytes(value).map_err(|_| "invalid field value")?;
        headers.append(name, value);
        Ok(())
    };
    match http.header_map {
        // `encode_raw_headers: true`: each line as received.
        Some(map) if !map.headers.is_empty() => {
            for field in map.headers {
                let value = if field.raw_value.is_empty() {
                    field.value.into_bytes()
                } else {
                    field.raw_value
                };
                add(&field.key, &value)?;
            }
        }
        _ => {
            for (name, value) in &http.headers {
                add(name, value.as_bytes())?;
            }
        }
    }
    for authority in authorities {
        let value = HeaderValue::from_str(&authority).map_err(|_| "invalid authority")?;
        headers.append(HOST, value);
    }

    // `pack_as_bytes: true` puts the body in `raw_body`; otherwise it is the UTF-8 `body`.
    let body = if http.raw_body.is_empty() {
        Bytes::from(http.body.into_bytes())
    } else {
        Bytes::from(http.raw_body)
    };
    // A declared size larger than what arrived: the body was not sent whole (no
    // `with_request_body`, or cut at `max_request_bytes`).
    if usize::try_from(http.size).is_ok_and(|size| size > body.len()) {
        tracing::warn!(
            size = http.size,
            received = body.len(),
            "check without the whole body: configure Envoy's with_request_body (pack_as_bytes, max_request_bytes no less than the largest body)"
        );
        headers.insert(PARTIAL_BODY_HEADER, HeaderValue::from_static("true"));
    }

    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = Uri::from(target);
    *request.headers_mut() = headers;
    Ok(request)
}

fn header(name: &str, value: &str) -> HeaderValueOption {
    #[allow(
        deprecated,
        reason = "`append` is deprecated in favour of `append_action`"
    )]
    HeaderValueOption {
        header: Some(EnvoyHeaderValue {
            key: name.to_owned(),
            value: value.to_owned(),
            raw_value: Vec::new(),
        }),
        append: None,
        // Replaces every value the client sent (the default appends: a forged value would
        // survive next to the real one).
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: false,
    }
}

fn options(headers: &HeaderMap) -> Vec<HeaderValueOption> {
    headers
        .iter()
        .filter_map(|(name, value)| Some(header(name.as_str(), value.to_str().ok()?)))
        .collect()
}

/// The gRPC status code Envoy reads a denial by (any code but OK denies; the HTTP status is
/// the `denied_response`'s).
fn rpc_code(status: StatusCode) -> tonic::Code {
    match status {
        StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        _ => tonic::Code::PermissionDenied,
    }
}

/// The `CheckResponse` for `verdict`.
pub(super) fn to_response(verdict: Verdict) -> CheckResponse {
    match verdict {
        Verdict::Allow(allowed) => CheckResponse {
            status: Some(rpc::Status {
                code: tonic::Code::Ok as i32,
                message: String::new(),
                details: Vec::new(),
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers: options(allowed.headers_to_set()),
                headers_to_remove: allowed
                    .headers_to_remove()
                    .iter()
                    .map(|name| name.as_str().to_owned())
                    .collect(),
                ..OkHttpResponse::default()
            })),
            dynamic_metadata: None,
        },
        Verdict::Deny(denied) => {
            let status = denied.status();
            let code = HttpStatusCode::try_from(i32::from(status.as_u16()))
                .unwrap_or(HttpStatusCode::Forbidden);
            CheckResponse {
                status: Some(rpc::Status {
                    code: rpc_code(status) as i32,
                    message: String::new(),
                    details: Vec::new(),
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus { code: code as i32 }),
                    headers: options(&denied.end_to_end_headers()),
                    body: String::from_utf8_lossy(denied.body()).into_owned(),
                })),
                dynamic_metadata: None,
            }
        }
    }
}

impl ExtAuthz {
    /// Serves Envoy's gRPC `envoy.service.auth.v3.Authorization/Check` (HTTP/2 without TLS,
    /// as Envoy's `envoy_grpc` cluster with `http2_protocol_options` speaks it) on `listener`
    /// until `shutdown` resolves, then lets the checks in flight finish. A check message may
    /// hold [`max_body_bytes`](super::Authorizer::max_body_bytes) of body plus 256 KiB of head;
    /// a larger one is answered with a gRPC error (`RESOURCE_EXHAUSTED`), which Envoy turns
    /// into its `status_on_error`.
    ///
    /// # Errors
    ///
    /// [`AuthzError::Serve`] if the server fails.
    pub async fn serve_grpc(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), AuthzError> {
        let limit = self.inner.max_body_bytes.saturating_add(HEAD_ALLOWANCE);
        let service = AuthorizationServer::new(Grpc(self.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        // `Server::tcp_nodelay` applies only to the listeners tonic binds itself: set it on the
        // incoming stream, or each answer waits ~40 ms on Nagle (45 checks/s at 1 connection).
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .http2_max_header_list_size(MAX_HEADER_LIST)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .timeout(CHECK_TIMEOUT)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| AuthzError::Serve(e.to_string()))
    }
}
