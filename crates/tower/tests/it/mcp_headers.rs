//! MCP 2026-07-28 request headers: the capability layer refuses a header/body mismatch with
//! MCP's HeaderMismatch before any grant decision, and the headers-only split (an authorizer
//! that sees the head, an upstream `DigestCheckLayer` that sees the body) holds against a body
//! swapped after the authorizer said yes.

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt as _};
use vouch_httpsig::{RequestView, SigningKey, mcp_content_digest, mcp_spec, sign};
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_token::{KeyPair, Restriction, Token, Verifier};
use vouch_tower::*;

const AGENT: &str = "https://agents.example/agents/worker@agents.example";

fn root() -> KeyPair {
    KeyPair::from_seed(&[21; 32]).unwrap()
}

fn token(tools: &[&str]) -> String {
    Token::mint(
        &root(),
        "auth",
        "agent",
        Restriction::new().tools(tools.iter().copied()).ttl(600),
    )
    .unwrap()
    .to_base64()
}

fn capabilities() -> CapabilityPipeline {
    CapabilityPipeline::new(Verifier::new(root().public_key()))
}

fn call(tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call",
           "params": {"name": tool, "arguments": {}}})
    .to_string()
}

/// A request with `headers` and `body`, signed by the agent (when `sign_it`) with vouch's MCP
/// profile, relative target as a server sees it.
fn request(headers: &[(&str, &str)], body: &str, sign_it: bool) -> Request<Body> {
    let body = body.as_bytes().to_vec();
    let mut b = http::Request::post("http://mcp.example/mcp").header("host", "mcp.example");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    if !body.is_empty() {
        b = b.header("content-digest", mcp_content_digest(&body));
    }
    let mut req = b.body(body).unwrap();
    if sign_it {
        let key = SigningKey::ed25519_from_seed(&[5; 32]).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let spec = mcp_spec(&RequestView::of(&req), &key, AGENT, None, now).unwrap();
        sign(RequestView::of(&req), &spec, &key)
            .unwrap()
            .apply(req.headers_mut())
            .unwrap();
    }
    let (mut parts, body) = req.into_parts();
    parts.uri = "/mcp".parse().unwrap();
    Request::from_parts(parts, Body::from(body))
}

type Svc =
    tower::util::BoxCloneService<Request<Body>, http::Response<Body>, std::convert::Infallible>;

/// The terminal: answers 200 with the body it was handed (what the MCP server would run).
fn terminal() -> Svc {
    tower::util::BoxCloneService::new(tower::service_fn(|req: Request<Body>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::from(body)))
    }))
}

async fn send(svc: &Svc, req: Request<Body>) -> (StatusCode, Value) {
    let res = svc.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn assert_header_mismatch((status, body): &(StatusCode, Value), id: Value) {
    assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], -32020, "{body}");
    assert_eq!(body["id"], id, "{body}");
}

#[tokio::test]
async fn a_mismatch_is_refused_before_any_grant_decision() {
    let svc = Svc::new(
        ServiceBuilder::new()
            .layer(CapabilityLayer::new(capabilities()))
            .service(terminal()),
    );
    let good = token(&["search"]);
    let tok = ("x-mcpvault-token", good.as_str());
    let ok = send(
        &svc,
        request(
            &[tok, ("mcp-method", "tools/call"), ("mcp-name", "search")],
            &call("search"),
            false,
        ),
    )
    .await;
    assert_eq!(ok.0, StatusCode::OK);

    // The header names a granted tool, the body another: refused as a mismatch, not a 403.
    let swapped = send(
        &svc,
        request(
            &[tok, ("mcp-method", "tools/call"), ("mcp-name", "search")],
            &call("drop_table"),
            false,
        ),
    )
    .await;
    assert_header_mismatch(&swapped, json!(42));
    // Before the token: no token at all still answers the mismatch, not 401.
    let no_token = send(
        &svc,
        request(&[("mcp-method", "tools/list")], &call("search"), false),
    )
    .await;
    assert_header_mismatch(&no_token, json!(42));
    // Duplicated lines.
    let twice = send(
        &svc,
        request(
            &[
                tok,
                ("mcp-method", "tools/call"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "search"),
            ],
            &call("search"),
            false,
        ),
    )
    .await;
    assert_header_mismatch(&twice, json!(42));
    // A 2026-07-28 request without Mcp-Method.
    let bare = send(
        &svc,
        request(
            &[tok, ("mcp-protocol-version", "2026-07-28")],
            &call("search"),
            false,
        ),
    )
    .await;
    assert_header_mismatch(&bare, json!(42));
    // The legacy generation without the headers is decided on the body, as before.
    let legacy = send(
        &svc,
        request(
            &[tok, ("mcp-protocol-version", "2025-06-18")],
            &call("drop_table"),
            false,
        ),
    )
    .await;
    assert_eq!(legacy.0, StatusCode::FORBIDDEN);
    // A matching header for an ungranted tool is the usual 403.
    let forbidden = send(
        &svc,
        request(
            &[
                tok,
                ("mcp-method", "tools/call"),
                ("mcp-name", "drop_table"),
            ],
            &call("drop_table"),
            false,
        ),
    )
    .await;
    assert_eq!(forbidden.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_identity_only_message_check_refuses_a_mismatch_too() {
    let svc = Svc::new(
        ServiceBuilder::new()
            .layer(StrictMessageLayer::default())
            .service(terminal()),
    );
    let res = send(
        &svc,
        request(
            &[("mcp-method", "tools/call"), ("mcp-name", "search")],
            &call("drop_table"),
            false,
        ),
    )
    .await;
    assert_header_mismatch(&res, json!(42));
    let ok = send(
        &svc,
        request(
            &[("mcp-method", "tools/call"), ("mcp-name", "search")],
            &call("search"),
            false,
        ),
    )
    .await;
    assert_eq!(ok.0, StatusCode::OK);
}

/// The authorizer's stack in headers-only mode: it never looks at the body.
fn authorizer() -> Svc {
    let resolver = StaticResolver::new()
        .with_ed25519(AGENT, &KeyPair::from_seed(&[5; 32]).unwrap().public_key());
    let signatures =
        SignaturePipeline::new(crate::origin(), resolver, ShardedReplayStore::new(1000));
    Svc::new(
        ServiceBuilder::new()
            .layer(SignatureLayer::new(signatures).headers_only())
            .layer(CapabilityLayer::new(capabilities()).headers_only())
            .service(tower::service_fn(|_req: Request<Body>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("{}")))
            })),
    )
}

/// The head of `req` alone, as Envoy without `with_request_body` sends it for a check.
fn head_of(req: &Request<Body>) -> Request<Body> {
    let mut head = Request::new(Body::empty());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.headers_mut() = req.headers().clone();
    head
}

async fn split(
    req: Request<Body>,
    upstream_body: Option<String>,
) -> ((StatusCode, Value), Option<(StatusCode, Value)>) {
    let verdict = send(&authorizer(), head_of(&req)).await;
    if verdict.0 != StatusCode::OK {
        return (verdict, None);
    }
    let upstream = Svc::new(
        ServiceBuilder::new()
            .layer(DigestCheckLayer::new())
            .service(terminal()),
    );
    let (parts, body) = req.into_parts();
    let body = match upstream_body {
        Some(b) => Body::from(b),
        None => body,
    };
    let answer = send(&upstream, Request::from_parts(parts, body)).await;
    (verdict, Some(answer))
}

#[tokio::test]
async fn the_headers_only_split() {
    let good = token(&["search"]);
    let tok = ("x-mcpvault-token", good.as_str());
    let mcp = |name: &'static str| {
        [
            tok,
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", name),
        ]
    };

    // An honest call: allowed on the head, and the upstream runs the body it was signed for.
    let (verdict, answer) = split(request(&mcp("search"), &call("search"), true), None).await;
    assert_eq!(verdict.0, StatusCode::OK);
    let (status, ran) = answer.unwrap();
    assert_eq!(
        (status, ran["params"]["name"].as_str()),
        (StatusCode::OK, Some("search"))
    );

    // Refused on the head: the header names a tool the token does not grant.
    let (verdict, answer) =
        split(request(&mcp("drop_table"), &call("drop_table"), true), None).await;
    assert_eq!(verdict.0, StatusCode::FORBIDDEN);
    assert!(answer.is_none());

    // The attacker swaps the body after the authorizer said yes: the digest no longer matches.
    let (verdict, answer) = split(
        request(&mcp("search"), &call("search"), true),
        Some(call("drop_table")),
    )
    .await;
    assert_eq!(verdict.0, StatusCode::OK);
    let (status, body) = answer.unwrap();
    assert_eq!(
        (status, body["detail"]["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("digest_mismatch"))
    );

    // A signer who lies: the signed header says search, the signed body drop_table. The head
    // passes; the upstream refuses the mismatch.
    let (verdict, answer) = split(request(&mcp("search"), &call("drop_table"), true), None).await;
    assert_eq!(verdict.0, StatusCode::OK);
    assert_header_mismatch(&answer.unwrap(), json!(42));

    // Without the MCP headers the head cannot be decided.
    let (verdict, _) = split(request(&[tok], &call("search"), true), None).await;
    assert_header_mismatch(&verdict, Value::Null);

    // An unsigned request, or one whose MCP header was added after signing, fails the head.
    let (verdict, _) = split(request(&mcp("search"), &call("search"), false), None).await;
    assert_eq!(verdict.0, StatusCode::UNAUTHORIZED);
    let mut late = request(&[tok, ("mcp-method", "tools/call")], &call("search"), true);
    late.headers_mut()
        .insert("mcp-name", "search".parse().unwrap());
    let (verdict, _) = split(late, None).await;
    assert_eq!(verdict.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn headers_only_needs_a_covered_digest() {
    // A POST signed without content-digest (built by hand) is refused on the head.
    let key = SigningKey::ed25519_from_seed(&[5; 32]).unwrap();
    let good = token(&["search"]);
    let mut req = http::Request::post("http://mcp.example/mcp")
        .header("host", "mcp.example")
        .header("x-mcpvault-token", good.as_str())
        .header("mcp-method", "tools/call")
        .header("mcp-name", "search")
        .body(Vec::new())
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let spec = mcp_spec(&RequestView::of(&req), &key, AGENT, None, now).unwrap();
    sign(RequestView::of(&req), &spec, &key)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    let (mut parts, _) = req.into_parts();
    parts.uri = "/mcp".parse().unwrap();
    let (status, body) = send(&authorizer(), Request::from_parts(parts, Body::empty())).await;
    assert_eq!(
        (status, body["detail"]["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("incomplete_signature"))
    );
}

#[tokio::test]
async fn the_digest_check_alone() {
    let upstream = Svc::new(
        ServiceBuilder::new()
            .layer(DigestCheckLayer::new())
            .service(terminal()),
    );
    // No digest on a body.
    let mut req = request(&[], &call("search"), false);
    req.headers_mut().remove("content-digest");
    let (status, body) = send(&upstream, req).await;
    assert_eq!(
        (status, body["detail"]["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("digest_missing"))
    );
    // A digest that names another body, and one for an empty body on a non-empty one.
    for digest in [mcp_content_digest(b"{}"), mcp_content_digest(b"")] {
        let mut req = request(&[], &call("search"), false);
        req.headers_mut()
            .insert("content-digest", digest.parse().unwrap());
        let (status, body) = send(&upstream, req).await;
        assert_eq!(
            (status, body["detail"]["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("digest_mismatch"))
        );
    }
    // A body that is not one unambiguous message.
    let smuggled = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"drop_table"}}"#;
    let (status, body) = send(&upstream, request(&[], smuggled, false)).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32600))
    );
    // Too large.
    let small = Svc::new(
        ServiceBuilder::new()
            .layer(DigestCheckLayer::new().max_body_bytes(16))
            .service(terminal()),
    );
    let (status, _) = send(&small, request(&[], &call("search"), false)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // An empty body without a digest passes (a GET or DELETE), with the headers still checked.
    let (status, _) = send(&upstream, Request::get("/mcp").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(
        &upstream,
        Request::get("/mcp")
            .header("mcp-method", "tools/list")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn headers_only_needs_the_mcp_headers_signed_whatever_the_policy() {
    // A lax policy (no when-present headers) would accept a signature that leaves Mcp-Name
    // out; the headers-only check still refuses it, as the decision rests on it.
    let resolver = StaticResolver::new()
        .with_ed25519(AGENT, &KeyPair::from_seed(&[5; 32]).unwrap().public_key());
    let lax = vouch_httpsig::VerifyPolicy::mcp().require_exactly(
        ["@method", "@target-uri"]
            .iter()
            .map(|n| vouch_httpsig::Component::new(n).unwrap())
            .collect(),
    );
    let signatures =
        SignaturePipeline::new(crate::origin(), resolver, ShardedReplayStore::new(100)).policy(lax);
    let svc = Svc::new(
        ServiceBuilder::new()
            .layer(SignatureLayer::new(signatures).headers_only())
            .layer(CapabilityLayer::new(capabilities()).headers_only())
            .service(terminal()),
    );
    let good = token(&["search"]);
    let mut req = request(
        &[
            ("x-mcpvault-token", good.as_str()),
            ("mcp-method", "tools/call"),
        ],
        &call("search"),
        true,
    );
    // Added after signing: not covered.
    req.headers_mut()
        .insert("mcp-name", "search".parse().unwrap());
    let (status, body) = send(&svc, head_of(&req)).await;
    assert_eq!(
        (status, body["detail"]["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("incomplete_signature"))
    );
}
