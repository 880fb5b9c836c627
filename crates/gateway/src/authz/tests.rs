#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use bytes::Bytes;
use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::grpc::{to_request, to_response};
use super::{Denied, Verdict};

fn check(http: attribute_context::HttpRequest) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                time: None,
                http: Some(http),
            }),
            ..Default::default()
        }),
    }
}

fn http(headers: &[(&str, &str)]) -> attribute_context::HttpRequest {
    attribute_context::HttpRequest {
        method: "POST".into(),
        path: "/mcp?x=1".into(),
        host: "mcp.example".into(),
        size: 2,
        raw_body: b"{}".to_vec(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    }
}

#[test]
fn a_check_becomes_the_clients_request() {
    let request = to_request(check(http(&[
        (":method", "POST"),
        (":path", "/mcp?x=1"),
        (":authority", "mcp.example"),
        (":scheme", "https"),
        ("content-type", "application/json"),
    ])))
    .unwrap();
    assert_eq!(request.method(), http::Method::POST);
    assert_eq!(request.uri(), "/mcp?x=1");
    assert_eq!(request.body(), &Bytes::from_static(b"{}"));
    let headers = request.headers();
    assert_eq!(
        headers.len(),
        2,
        "pseudo-headers are not fields: {headers:?}"
    );
    assert_eq!(headers["host"], "mcp.example");
    assert_eq!(headers["content-type"], "application/json");
    assert!(!headers.contains_key(super::PARTIAL_BODY_HEADER));
}

#[test]
fn disagreeing_authorities_become_two_host_fields() {
    let request = to_request(check(http(&[(":authority", "evil.example")]))).unwrap();
    let hosts: Vec<&HeaderValue> = request.headers().get_all("host").iter().collect();
    assert_eq!(hosts, ["mcp.example", "evil.example"]);
}

#[test]
fn a_short_body_is_marked_partial() {
    let mut short = http(&[]);
    short.size = 100;
    let request = to_request(check(short)).unwrap();
    assert_eq!(request.headers()[super::PARTIAL_BODY_HEADER], "true");
}

#[test]
fn malformed_checks_are_refused() {
    assert!(to_request(CheckRequest::default()).is_err());
    let mut bad = http(&[]);
    bad.method = "GE T".into();
    assert!(to_request(check(bad)).is_err());
    let mut bad = http(&[]);
    bad.path = "mcp".into();
    assert!(to_request(check(bad)).is_err());
    assert!(to_request(check(http(&[("bad name", "x")]))).is_err());
    assert!(to_request(check(http(&[("x-a", "line\nbreak")]))).is_err());
}

fn denial(status: StatusCode) -> (i32, i32, HeaderMap) {
    let mut headers = HeaderMap::new();
    headers.insert("connection", HeaderValue::from_static("close"));
    headers.insert("retry-after", HeaderValue::from_static("3"));
    let response = to_response(Verdict::Deny(Denied {
        status,
        headers,
        body: Bytes::from_static(b"{}"),
    }));
    let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
        panic!("not a denial");
    };
    let mut fields = HeaderMap::new();
    for option in denied.headers {
        let h = option.header.unwrap();
        fields.insert(
            http::HeaderName::from_bytes(h.key.as_bytes()).unwrap(),
            HeaderValue::from_str(&h.value).unwrap(),
        );
    }
    (
        response.status.unwrap().code,
        denied.status.unwrap().code,
        fields,
    )
}

#[test]
fn denials_keep_their_status_and_drop_hop_by_hop_fields() {
    let (rpc, status, fields) = denial(StatusCode::UNAUTHORIZED);
    assert_eq!((rpc, status), (tonic::Code::Unauthenticated as i32, 401));
    assert!(!fields.contains_key("connection"), "{fields:?}");
    assert_eq!(fields["retry-after"], "3");
    for code in [400, 403, 408, 413, 421, 429, 500, 503] {
        let (rpc, status, _) = denial(StatusCode::from_u16(code).unwrap());
        assert_eq!(rpc, tonic::Code::PermissionDenied as i32);
        assert_eq!(status, i32::from(code));
    }
    // A status Envoy's enum does not know is denied as 403 rather than refused by Envoy.
    let (_, status, _) = denial(StatusCode::IM_A_TEAPOT);
    assert_eq!(status, 403);
}
