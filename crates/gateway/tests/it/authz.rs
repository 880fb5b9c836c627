//! The authorizer (feature `authz`): Envoy's gRPC `Authorization/Check` called through a real
//! tonic client, and its HTTP mode over a socket, both on 127.0.0.1, with checks built from
//! requests the agent signed for the origin Envoy is addressed by.

use std::net::SocketAddr;
use std::num::NonZeroU32;

use base64ct::{Base64UrlUnpadded, Encoding as _};
use bytes::Bytes;
use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, HeaderAppendAction, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap as EnvoyHeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};
use http::{Request, StatusCode};
use serde_json::Value;
use vouch_gateway::{Authorizer, ExtAuthz};
use vouch_httpsig::{
    ReplayFuture, ReplayGuard, ReplayKey, RequestView, SigningKey, mcp_content_digest, mcp_spec,
    sign,
};
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_token::{KeyPair, Verifier};
use vouch_tower::{
    CapabilityPipeline, Origin, RateLimitLayer, ServeConfig, SignaturePipeline, TOKEN_HEADER,
};

use crate::{AGENT, message, now, root, send, signed_for, text, token, with_bad_signature};

/// How clients address Envoy (the checks' `:authority`).
const AUTHORITY: &str = "mcp.example:10000";

fn origin() -> Origin {
    format!("http://{AUTHORITY}").parse().unwrap()
}

fn identity() -> String {
    vouch_keys::address_claim(AGENT).unwrap().address
}

/// A signature pipeline for [`origin`] trusting [`AGENT`], with `replay`.
fn pipeline(replay: impl ReplayGuard + 'static) -> SignaturePipeline {
    let agent = KeyPair::from_seed(&[1; 32]).unwrap().public_key();
    SignaturePipeline::new(
        origin(),
        StaticResolver::new().with_ed25519(AGENT, &agent),
        replay,
    )
}

/// An authorizer with tokens under [`root`], adjusted by `tune`.
fn authorizer(tune: impl FnOnce(Authorizer) -> Authorizer) -> ExtAuthz {
    tune(Authorizer::new(
        pipeline(ShardedReplayStore::new(10_000)),
        CapabilityPipeline::new(Verifier::new(root().public_key())),
    ))
    .build()
}

/// Serves `authz`'s gRPC service on 127.0.0.1; a connected client.
async fn grpc(authz: &ExtAuthz) -> AuthorizationClient<tonic::transport::Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = authz.clone();
    tokio::spawn(async move {
        served
            .serve_grpc(listener, std::future::pending())
            .await
            .unwrap();
    });
    AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

/// Serves `authz`'s HTTP mode on 127.0.0.1; its address.
async fn http_mode(authz: &ExtAuthz) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = authz.http_router();
    tokio::spawn(async move {
        vouch_tower::serve(listener, router, ServeConfig::default())
            .await
            .unwrap()
    });
    addr
}

/// A `tools/call` of `tool` with the token, signed for [`AUTHORITY`].
fn call(tool: &str, extra: &[(&str, &str)]) -> Request<Vec<u8>> {
    signed_for(
        AUTHORITY,
        &message("tools/call", Some(tool)),
        Some(&token()),
        extra,
    )
}

/// The check Envoy makes for `request` (`headers` as a map, repeated fields joined with `,`,
/// pseudo-headers included; the body in `raw_body`, as with `pack_as_bytes: true`).
fn check_of(request: &Request<Vec<u8>>) -> CheckRequest {
    let authority = request.uri().authority().unwrap().as_str().to_owned();
    let path = request.uri().path_and_query().unwrap().as_str().to_owned();
    let mut headers: Vec<(String, String)> = vec![
        (":method".into(), request.method().as_str().into()),
        (":path".into(), path.clone()),
        (":authority".into(), authority.clone()),
        (":scheme".into(), "http".into()),
        ("x-request-id".into(), "7334df4a".into()),
    ];
    for name in request.headers().keys() {
        let joined = request
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(",");
        headers.push((name.as_str().to_owned(), joined));
    }
    let body = request.body().clone();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                time: None,
                http: Some(attribute_context::HttpRequest {
                    method: request.method().as_str().into(),
                    path,
                    host: authority,
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    size: i64::try_from(body.len()).unwrap(),
                    headers: headers.into_iter().collect(),
                    raw_body: body,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    }
}

/// The same check with the fields in `header_map`, one line each (`encode_raw_headers: true`).
fn raw_check_of(request: &Request<Vec<u8>>) -> CheckRequest {
    let mut check = check_of(request);
    let http = check
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .unwrap();
    let mut lines = vec![HeaderValue {
        key: ":authority".into(),
        value: String::new(),
        raw_value: AUTHORITY.as_bytes().to_vec(),
    }];
    for (name, value) in request.headers() {
        lines.push(HeaderValue {
            key: name.as_str().into(),
            value: String::new(),
            raw_value: value.as_bytes().to_vec(),
        });
    }
    http.headers.clear();
    http.header_map = Some(EnvoyHeaderMap { headers: lines });
    check
}

fn http_of(check: &mut CheckRequest) -> &mut attribute_context::HttpRequest {
    check
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .unwrap()
}

async fn ask(
    client: &mut AuthorizationClient<tonic::transport::Channel>,
    check: CheckRequest,
) -> CheckResponse {
    tokio::time::timeout(crate::PATIENCE, client.check(check))
        .await
        .expect("an answer within the patience bound")
        .unwrap()
        .into_inner()
}

fn ok(response: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(response.status.as_ref().unwrap().code, 0, "{response:?}");
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("not allowed: {other:?}"),
    }
}

/// A denial: its HTTP status, its fields (lowercase name → value) and its JSON body.
fn denied(response: &CheckResponse) -> (u16, Vec<(String, String)>, Value) {
    assert_ne!(response.status.as_ref().unwrap().code, 0, "{response:?}");
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("not denied: {response:?}");
    };
    let status = u16::try_from(denied.status.as_ref().unwrap().code).unwrap();
    let headers = denied
        .headers
        .iter()
        .map(|h| {
            let h = h.header.as_ref().unwrap();
            (h.key.clone(), h.value.clone())
        })
        .collect();
    let body = serde_json::from_str(&denied.body).unwrap_or(Value::Null);
    (status, headers, body)
}

/// The fields set: name → value, each with the overwrite action.
fn set_fields(ok: &OkHttpResponse) -> Vec<(String, String)> {
    ok.headers
        .iter()
        .map(|option| {
            assert_eq!(
                option.append_action,
                HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                "a forged value must not survive next to the real one: {option:?}"
            );
            let h = option.header.as_ref().unwrap();
            (h.key.clone(), h.value.clone())
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn an_allowed_call_sets_the_vouch_fields_and_removes_the_signature_and_token() {
    let authz = authorizer(|a| a);
    let mut client = grpc(&authz).await;
    let response = ask(&mut client, check_of(&call("search", &[]))).await;
    let ok = ok(&response);
    let set = set_fields(ok);
    let names: Vec<&str> = set.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["x-vouch-identity", "x-vouch-keyid", "x-vouch-grants"],
        "{set:?}"
    );
    assert_eq!(field(&set, "x-vouch-identity"), Some(identity().as_str()));
    assert_eq!(field(&set, "x-vouch-keyid"), Some(AGENT));
    let grants: Value = serde_json::from_slice(
        &Base64UrlUnpadded::decode_vec(field(&set, "x-vouch-grants").unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        grants["tools"],
        serde_json::json!(["db_query", "search"]),
        "{grants}"
    );
    assert_eq!(
        ok.headers_to_remove,
        ["signature", "signature-input", "x-mcpvault-token"],
        "{ok:?}"
    );
}

#[tokio::test]
async fn an_unsigned_request_is_denied_401_with_the_challenge_and_the_gateways_body() {
    let authz = authorizer(|a| a);
    let mut client = grpc(&authz).await;
    let mut request = call("search", &[]);
    request.headers_mut().remove("signature");
    request.headers_mut().remove("signature-input");
    let (status, headers, body) = denied(&ask(&mut client, check_of(&request)).await);
    assert_eq!(status, 401);
    assert!(
        field(&headers, "www-authenticate").is_some_and(|v| v.starts_with("Signature ")),
        "{headers:?}"
    );
    assert_eq!(field(&headers, "content-type"), Some("application/json"));
    assert_eq!(
        body,
        serde_json::json!({"detail": {"error": "invalid_signature", "detail": "missing_signature"}})
    );
}

#[tokio::test]
async fn a_call_outside_the_grants_is_denied_403() {
    let authz = authorizer(|a| a);
    let mut client = grpc(&authz).await;
    let (status, _, body) = denied(&ask(&mut client, check_of(&call("drop_table", &[]))).await);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["detail"]["error"], "forbidden", "{body}");
    // Without a token at all: 401 missing_token.
    let request = signed_for(AUTHORITY, &message("tools/call", Some("search")), None, &[]);
    let (status, _, body) = denied(&ask(&mut client, check_of(&request)).await);
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn another_authority_is_denied_421() {
    let authz = authorizer(|a| a);
    let mut client = grpc(&authz).await;
    // Signed for another server that trusts the same agent, relayed through this Envoy.
    let relayed = signed_for(
        "other.example",
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    );
    let (status, _, body) = denied(&ask(&mut client, check_of(&relayed)).await);
    assert_eq!(status, 421, "{body}");
    assert_eq!(body["detail"]["error"], "misdirected_request", "{body}");
    // `host` and `:authority` that disagree: two authorities, refused.
    let mut check = check_of(&call("search", &[]));
    http_of(&mut check).host = "other.example".into();
    let (status, _, _) = denied(&ask(&mut client, check).await);
    assert_eq!(status, 421);
}

#[tokio::test]
async fn the_same_check_twice_is_a_replay() {
    let authz = authorizer(|a| a);
    let mut client = grpc(&authz).await;
    let check = check_of(&call("search", &[]));
    ok(&ask(&mut client, check.clone()).await);
    let (status, _, body) = denied(&ask(&mut client, check).await);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["detail"]["detail"], "replayed", "{body}");
}

#[tokio::test]
async fn a_partial_body_is_denied_413() {
    let authz = authorizer(|a| a);
    let mut client = grpc(&authz).await;
    // Envoy's flag (allow_partial_message cut the body at max_request_bytes).
    let request = call("search", &[("x-envoy-auth-partial-body", "true")]);
    let (status, _, body) = denied(&ask(&mut client, check_of(&request)).await);
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"detail": {"error": "payload_too_large", "detail": "body_too_large"}})
    );
    // A declared size larger than the bytes sent: the body was not sent whole.
    let mut check = check_of(&call("search", &[]));
    let http = http_of(&mut check);
    http.raw_body.truncate(10);
    let (status, _, _) = denied(&ask(&mut client, check).await);
    assert_eq!(status, 413);
    // The flag said false: an ordinary check.
    let request = call("search", &[("x-envoy-auth-partial-body", "false")]);
    ok(&ask(&mut client, check_of(&request)).await);
}

#[tokio::test]
async fn a_covered_digest_without_the_body_is_denied() {
    let authz = authorizer(|a| a);
    let mut client = grpc(&authz).await;
    // Envoy without with_request_body: no body, size unknown.
    let mut check = check_of(&call("search", &[]));
    let http = http_of(&mut check);
    http.raw_body.clear();
    http.size = -1;
    let (status, _, body) = denied(&ask(&mut client, check).await);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["detail"]["detail"], "digest_mismatch", "{body}");
    // Another body than the one signed.
    let mut check = check_of(&call("search", &[]));
    http_of(&mut check).raw_body = message("tools/call", Some("drop_table")).into_bytes();
    http_of(&mut check).size = -1;
    let (status, _, body) = denied(&ask(&mut client, check).await);
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn a_body_over_the_cap_is_denied_413() {
    let authz = authorizer(|a| a.max_body_bytes(64));
    let mut client = grpc(&authz).await;
    let (status, _, body) = denied(&ask(&mut client, check_of(&call("search", &[]))).await);
    assert_eq!(status, 413, "{body}");
}

#[tokio::test]
async fn client_sent_vouch_fields_are_overwritten_or_removed() {
    let authz = authorizer(|a| a);
    let mut client = grpc(&authz).await;
    // Added after signing (uncovered), and covered: neither reaches the upstream as sent.
    let request = call(
        "search",
        &[
            ("x-vouch-identity", "admin@evil.example"),
            ("x-vouch-admin", "yes"),
            ("X-Vouch-Grants", "e30"),
        ],
    );
    let response = ask(&mut client, check_of(&request)).await;
    let ok = ok(&response);
    let set = set_fields(ok);
    assert_eq!(field(&set, "x-vouch-identity"), Some(identity().as_str()));
    assert_ne!(field(&set, "x-vouch-grants"), Some("e30"));
    // Set with the overwrite action (above); a name set is never removed, since Envoy removes
    // after it sets. Every other client x-vouch-* field is removed.
    assert_eq!(
        ok.headers_to_remove,
        [
            "signature",
            "signature-input",
            "x-mcpvault-token",
            "x-vouch-admin"
        ],
        "{ok:?}"
    );
}

#[tokio::test]
async fn joined_repeated_fields_are_refused() {
    let authz = authorizer(|a| a);
    let mut client = grpc(&authz).await;
    let body = message("tools/call", Some("search"));
    let other = message("tools/call", Some("drop_table"));
    // A second Content-Digest line (for another body) after the signed one: Envoy's map
    // joins them into one dictionary with a repeated key.
    let request = call(
        "search",
        &[("content-digest", &mcp_content_digest(other.as_bytes()))],
    );
    let (status, _, answer) = denied(&ask(&mut client, check_of(&request)).await);
    assert_eq!(status, 401, "{answer}");
    // The same, each line on its own (encode_raw_headers): refused the same way.
    let (status, _, _) = denied(&ask(&mut client, raw_check_of(&request)).await);
    assert_eq!(status, 401);
    // Both lines signed by the client, in either order: a first-wins reader would take one
    // body's digest, a last-wins reader the other's; the repeated key is refused either way.
    for lines in [[&body, &other], [&other, &body]] {
        let mut two = Request::post(format!("http://{AUTHORITY}/mcp"))
            .header("content-type", "application/json")
            .header("content-digest", mcp_content_digest(lines[0].as_bytes()))
            .header("content-digest", mcp_content_digest(lines[1].as_bytes()))
            .header(TOKEN_HEADER, token())
            .body(body.as_bytes().to_vec())
            .unwrap();
        let key = SigningKey::ed25519_from_seed(&[1; 32]).unwrap();
        let spec = mcp_spec(
            &RequestView::of(&two),
            &key,
            AGENT,
            Some("x-mcpvault-token"),
            now(),
        )
        .unwrap();
        sign(RequestView::of(&two), &spec, &key)
            .unwrap()
            .apply(two.headers_mut())
            .unwrap();
        // Line by line (encode_raw_headers): the signature is over these very lines, so a
        // first-wins or last-wins digest reader would allow one of the two orders; the
        // repeated key is refused as malformed.
        let (status, _, answer) = denied(&ask(&mut client, raw_check_of(&two)).await);
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["detail"]["detail"], "bad_signature", "{answer}");
        // Joined by Envoy with "," where the signer combined the lines with ", ": the
        // signature base differs, refused before the digest is looked at.
        let (status, _, answer) = denied(&ask(&mut client, check_of(&two)).await);
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["detail"]["detail"], "bad_signature", "{answer}");
    }
    // A second Signature-Input with the same label.
    let signed = call("search", &[]);
    let input = signed.headers()["signature-input"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut twice = signed_for(AUTHORITY, &body, Some(&token()), &[]);
    twice
        .headers_mut()
        .append("signature-input", input.parse().unwrap());
    let (status, _, _) = denied(&ask(&mut client, check_of(&twice)).await);
    assert_eq!(status, 401);
    // Two Host values.
    let mut check = check_of(&call("search", &[]));
    http_of(&mut check)
        .headers
        .insert("host".into(), format!("{AUTHORITY},{AUTHORITY}"));
    let (status, _, _) = denied(&ask(&mut client, check).await);
    assert_eq!(status, 421);
}

#[tokio::test]
async fn raw_header_lines_are_checked_as_they_are() {
    let authz = authorizer(|a| a);
    let mut client = grpc(&authz).await;
    let response = ask(&mut client, raw_check_of(&call("search", &[]))).await;
    let set = set_fields(ok(&response));
    assert_eq!(field(&set, "x-vouch-keyid"), Some(AGENT));
}

#[tokio::test]
async fn over_the_rate_is_denied_429_with_retry_after() {
    let one = NonZeroU32::new(1).unwrap();
    let authz = authorizer(|a| a.rate_limit(RateLimitLayer::per_second(one, one)));
    let mut client = grpc(&authz).await;
    ok(&ask(&mut client, check_of(&call("search", &[]))).await);
    let (status, headers, body) = denied(&ask(&mut client, check_of(&call("search", &[]))).await);
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["detail"]["error"], "rate_limited", "{body}");
    let wait: u64 = field(&headers, "retry-after").unwrap().parse().unwrap();
    assert!(wait >= 1, "{headers:?}");
}

/// A replay store that cannot be reached.
struct Down;

impl ReplayGuard for Down {
    fn check_and_insert<'a>(
        &'a self,
        _key: ReplayKey,
        _owner: &'a str,
        _keep_until: u64,
        _now: u64,
    ) -> ReplayFuture<'a> {
        Box::pin(async { Err(vouch_httpsig::Error::ReplayStoreUnavailable("down")) })
    }
}

#[tokio::test]
async fn a_failing_replay_store_denies_503() {
    let authz = Authorizer::new(
        pipeline(Down),
        CapabilityPipeline::new(Verifier::new(root().public_key())),
    )
    .build();
    let mut client = grpc(&authz).await;
    let (status, _, body) = denied(&ask(&mut client, check_of(&call("search", &[]))).await);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["detail"]["error"], "unavailable", "{body}");
}

#[tokio::test]
async fn identity_only_asks_for_no_token_and_removes_client_grants() {
    let authz = Authorizer::identity_only(pipeline(ShardedReplayStore::new(1000))).build();
    let mut client = grpc(&authz).await;
    let request = signed_for(
        AUTHORITY,
        &message("tools/call", Some("drop_table")),
        None,
        &[("x-vouch-grants", "e30")],
    );
    let response = ask(&mut client, check_of(&request)).await;
    let ok = ok(&response);
    let set = set_fields(ok);
    let names: Vec<&str> = set.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["x-vouch-identity", "x-vouch-keyid"], "{set:?}");
    assert_eq!(
        ok.headers_to_remove,
        [
            "signature",
            "signature-input",
            "x-mcpvault-token",
            "x-vouch-grants"
        ]
    );
    // Still strict about the message: two names for the tool.
    let ambiguous = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"drop_table"}}"#;
    let request = signed_for(AUTHORITY, ambiguous, None, &[]);
    let (status, _, body) = denied(&ask(&mut client, check_of(&request)).await);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], -32600, "{body}");
    // And unsigned is still 401.
    let mut request = signed_for(AUTHORITY, &message("tools/list", None), None, &[]);
    request.headers_mut().remove("signature");
    let (status, _, _) = denied(&ask(&mut client, check_of(&request)).await);
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_check_without_http_attributes_is_denied_400() {
    let authz = authorizer(|a| a);
    let mut client = grpc(&authz).await;
    let (status, _, body) = denied(&ask(&mut client, CheckRequest::default()).await);
    assert_eq!(status, 400, "{body}");
    // A path that is not origin-form.
    let mut check = check_of(&call("search", &[]));
    http_of(&mut check).path = "http://mcp.example:10000/mcp".into();
    let (status, _, _) = denied(&ask(&mut client, check).await);
    assert_eq!(status, 400);
}

/// `request` as Envoy's HTTP mode sends it to the authorizer at `addr` (path prefix `/check`,
/// the original `Host`).
fn as_http_check(addr: SocketAddr, request: &Request<Vec<u8>>) -> Request<Vec<u8>> {
    let path = request.uri().path_and_query().unwrap().as_str();
    let mut check = Request::builder()
        .method(request.method())
        .uri(format!("http://{addr}/check{path}"))
        .body(request.body().clone())
        .unwrap();
    *check.headers_mut() = request.headers().clone();
    check
        .headers_mut()
        .insert("host", AUTHORITY.parse().unwrap());
    check
        .headers_mut()
        .insert("x-envoy-internal", "true".parse().unwrap());
    check
}

#[tokio::test]
async fn http_mode_allows_with_the_fields_to_set_and_remove() {
    let authz = authorizer(|a| a);
    let addr = http_mode(&authz).await;
    let request = call(
        "search",
        &[
            ("x-vouch-identity", "admin@evil.example"),
            ("x-vouch-admin", "1"),
        ],
    );
    let response = send(as_http_check(addr, &request)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["x-vouch-identity"], identity().as_str());
    assert_eq!(headers["x-vouch-keyid"], AGENT);
    assert!(headers.contains_key("x-vouch-grants"), "{headers:?}");
    assert_eq!(
        headers["x-envoy-auth-headers-to-remove"],
        "signature, signature-input, x-mcpvault-token, x-vouch-admin"
    );
    assert_eq!(text(response).await, "");
}

#[tokio::test]
async fn http_mode_denies_as_the_gateway() {
    let authz = authorizer(|a| a);
    let addr = http_mode(&authz).await;
    let mut unsigned = call("search", &[]);
    unsigned.headers_mut().remove("signature");
    let response = send(as_http_check(addr, &unsigned)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    let body: Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(body["detail"]["detail"], "missing_signature", "{body}");

    let response = send(as_http_check(addr, &call("drop_table", &[]))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let partial = call("search", &[("x-envoy-auth-partial-body", "true")]);
    let response = send(as_http_check(addr, &partial)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // The same request checked twice.
    let once = call("search", &[]);
    let response = send(as_http_check(addr, &once)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = send(as_http_check(addr, &once)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Another Host than the origin's.
    let mut elsewhere = as_http_check(addr, &call("search", &[]));
    elsewhere
        .headers_mut()
        .insert("host", "other.example".parse().unwrap());
    let response = send(elsewhere).await;
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
}

#[tokio::test]
async fn http_mode_serves_health_and_nothing_outside_the_prefix() {
    let authz = authorizer(|a| a.http_prefix("/authz").unwrap());
    let addr = http_mode(&authz).await;
    let health = Request::get(format!("http://{addr}/healthz"))
        .body(Vec::new())
        .unwrap();
    let response = send(health).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, r#"{"status":"ok"}"#);
    // The default prefix is not served when another is set.
    let response = send(as_http_check(addr, &call("search", &[]))).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // Under /authz it is a check.
    let request = call("search", &[]);
    let mut check = as_http_check(addr, &request);
    *check.uri_mut() = format!("http://{addr}/authz/mcp").parse().unwrap();
    let response = send(check).await;
    assert_eq!(response.status(), StatusCode::OK);
    // /authzmcp is not under /authz.
    let mut check = as_http_check(addr, &call("search", &[]));
    *check.uri_mut() = format!("http://{addr}/authzmcp").parse().unwrap();
    assert_eq!(send(check).await.status(), StatusCode::NOT_FOUND);
}

#[test]
fn bad_prefixes_are_refused() {
    for prefix in ["", "check", "/", "/check/", "/healthz", "/a?b"] {
        let built =
            Authorizer::identity_only(pipeline(ShardedReplayStore::new(10))).http_prefix(prefix);
        assert!(built.is_err(), "{prefix:?}");
    }
}

/// The body is taken from `raw_body`; a check with only the UTF-8 `body` (no `pack_as_bytes`)
/// is checked the same.
#[tokio::test]
async fn the_utf8_body_serves_when_raw_body_is_empty() {
    let authz = authorizer(|a| a);
    let mut client = grpc(&authz).await;
    let mut check = check_of(&call("search", &[]));
    let http = http_of(&mut check);
    http.body = String::from_utf8(std::mem::take(&mut http.raw_body)).unwrap();
    ok(&ask(&mut client, check).await);
    let _ = Bytes::new();
}

// ---- headers-only mode ------------------------------------------------------------------------

/// A 2026-07-28 `tools/call` whose MCP headers name `header_tool` and whose body calls
/// `body_tool`, all signed by the agent for [`AUTHORITY`] (a signer who lies when they differ).
fn mcp_call(header_tool: &str, body_tool: &str) -> Request<Vec<u8>> {
    let body = message("tools/call", Some(body_tool));
    let mut req = Request::post(format!("http://{AUTHORITY}/mcp"))
        .header("content-type", "application/json")
        .header("content-digest", mcp_content_digest(body.as_bytes()))
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", header_tool)
        .header(TOKEN_HEADER, token())
        .body(body.into_bytes())
        .unwrap();
    let key = SigningKey::ed25519_from_seed(&[1; 32]).unwrap();
    let spec = mcp_spec(&RequestView::of(&req), &key, AGENT, None, now()).unwrap();
    sign(RequestView::of(&req), &spec, &key)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    req
}

/// The check Envoy without `with_request_body` makes: the head, no body, the declared size.
fn head_check_of(request: &Request<Vec<u8>>) -> CheckRequest {
    let mut check = check_of(request);
    http_of(&mut check).raw_body.clear();
    check
}

/// What the upstream behind the authorizer answers with vouch-tower's `DigestCheckLayer`: its
/// status and JSON body.
async fn upstream(request: Request<Vec<u8>>) -> (StatusCode, Value) {
    use tower_layer::Layer as _;
    use tower_service::Service as _;
    let terminal = axum::Router::new().fallback(|| async { "{}" });
    let mut svc = vouch_tower::DigestCheckLayer::new().layer(terminal);
    let response = svc
        .call(request.map(|b| http_body_util::Full::new(Bytes::from(b))))
        .await
        .unwrap();
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn headers_only_decides_on_the_signed_mcp_headers() {
    let authz = authorizer(Authorizer::headers_only);
    let mut client = grpc(&authz).await;

    let allowed = ask(&mut client, head_check_of(&mcp_call("search", "search"))).await;
    let ok = ok(&allowed);
    // Content-Digest and the Mcp-* headers go on to the upstream, which needs them.
    for kept in ["content-digest", "mcp-method", "mcp-name"] {
        assert!(
            !ok.headers_to_remove.iter().any(|h| h == kept),
            "{kept} removed: {ok:?}"
        );
    }
    let grants = field(&set_fields(ok), "x-vouch-grants").map(str::to_owned);
    assert!(grants.is_some());

    // The signed Mcp-Name names a tool outside the grants.
    let (status, _, body) = denied(
        &ask(
            &mut client,
            head_check_of(&mcp_call("drop_table", "drop_table")),
        )
        .await,
    );
    assert_eq!(
        (status, body["detail"]["error"].as_str()),
        (403, Some("forbidden"))
    );

    // No Mcp-Method: the head cannot be decided.
    let bare = signed_for(
        AUTHORITY,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    );
    let (status, _, body) = denied(&ask(&mut client, head_check_of(&bare)).await);
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32020)),
        "{body}"
    );

    // An Mcp-Name added after signing (by a middlebox, say) is not covered: refused.
    let mut late = signed_for(
        AUTHORITY,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    );
    late.headers_mut()
        .insert("mcp-method", "tools/call".parse().unwrap());
    late.headers_mut()
        .insert("mcp-name", "search".parse().unwrap());
    let (status, _, _) = denied(&ask(&mut client, head_check_of(&late)).await);
    assert_eq!(status, 401);

    // HTTP mode, with a partial body (the Gateway API cuts bodies): decided on the head.
    let addr = http_mode(&authz).await;
    let request = mcp_call("search", "search");
    let mut check = Request::post(format!("http://{addr}/check/mcp"))
        .header("host", AUTHORITY)
        .header("x-envoy-auth-partial-body", "true");
    for (name, value) in request.headers() {
        check = check.header(name, value);
    }
    let response = send(check.body(b"{\"jsonrpc\"".to_vec()).unwrap()).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        text(response).await
    );
}

#[tokio::test]
async fn headers_only_with_the_upstream_digest_check_holds_against_a_swapped_body() {
    let authz = authorizer(Authorizer::headers_only);
    let mut client = grpc(&authz).await;
    // The authorizer says yes to the head of an honest call...
    let honest = mcp_call("search", "search");
    ok(&ask(&mut client, head_check_of(&honest)).await);
    // ...and the upstream runs it.
    let (status, _) = upstream(honest.clone()).await;
    assert_eq!(status, StatusCode::OK);
    // The same head again (a captured check replayed): the nonce is spent.
    let (status, _, body) = denied(&ask(&mut client, head_check_of(&honest)).await);
    assert_eq!(
        (status, body["detail"]["detail"].as_str()),
        (401, Some("replayed"))
    );
    // An attacker swaps the body on the way: the upstream refuses it.
    let mut swapped = honest;
    *swapped.body_mut() = message("tools/call", Some("drop_table")).into_bytes();
    let (status, body) = upstream(swapped).await;
    assert_eq!(
        (status, body["detail"]["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("digest_mismatch"))
    );
    // A signer who lies (header search, body drop_table, both signed): allowed on the head,
    // refused upstream as a mismatch.
    let liar = mcp_call("search", "drop_table");
    ok(&ask(&mut client, head_check_of(&liar)).await);
    let (status, body) = upstream(liar).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32020))
    );
}

#[tokio::test]
async fn without_headers_only_the_mismatch_is_refused_by_the_authorizer() {
    let authz = authorizer(|a| a);
    let mut client = grpc(&authz).await;
    let (status, _, body) =
        denied(&ask(&mut client, check_of(&mcp_call("search", "drop_table"))).await);
    assert_eq!(
        (status, body["error"]["code"].as_i64(), body["id"].as_i64()),
        (400, Some(-32020), Some(7))
    );
    ok(&ask(&mut client, check_of(&mcp_call("search", "search"))).await);
}

#[tokio::test]
async fn identity_only_headers_only_checks_the_signer_alone() {
    let authz = Authorizer::identity_only(pipeline(ShardedReplayStore::new(100)))
        .headers_only()
        .build();
    let mut client = grpc(&authz).await;
    // No message is read: a head-only check of a signed call passes on the signature.
    ok(&ask(
        &mut client,
        head_check_of(&mcp_call("search", "drop_table")),
    )
    .await);
    // An unsigned one does not.
    let mut unsigned = mcp_call("search", "search");
    unsigned.headers_mut().remove("signature");
    let (status, _, _) = denied(&ask(&mut client, head_check_of(&unsigned)).await);
    assert_eq!(status, 401);
}

#[tokio::test]
async fn concurrent_checks_are_verified_through_the_pipelines_coalescer_each_with_its_own_verdict()
{
    let signatures = pipeline(ShardedReplayStore::new(10_000));
    let coalescer = signatures
        .coalescing()
        .cloned()
        .expect("coalesced by default");
    let authz = Authorizer::new(
        signatures,
        CapabilityPipeline::new(Verifier::new(root().public_key())),
    )
    .build();
    let client = grpc(&authz).await;
    let checks: Vec<_> = (0..12)
        .map(|i| {
            let mut client = client.clone();
            let request = if i % 3 == 0 {
                with_bad_signature(call("search", &[]))
            } else {
                call("search", &[])
            };
            tokio::spawn(async move { (i, ask(&mut client, check_of(&request)).await) })
        })
        .collect();
    for check in checks {
        let (i, response) = check.await.unwrap();
        if i % 3 == 0 {
            let (status, _, body) = denied(&response);
            assert_eq!(
                (status, body["detail"]["detail"].as_str()),
                (401, Some("bad_signature"))
            );
        } else {
            ok(&response);
        }
    }
    assert_eq!(coalescer.stats().submitted, 12);
}
