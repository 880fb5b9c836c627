//! The checkpoint: each denial path of both steps, and the same answers (status, fields, body)
//! as the tower layers composed in the gateway's order, for the same requests.

use std::num::NonZeroU32;
use std::sync::Arc;

use crate::support::{now, root};
use axum::body::Body;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt as _};
use vouch_httpsig::{RequestView, SigningKey, mcp_content_digest, mcp_spec, sign};
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_token::{KeyPair, Restriction, Token, Verifier};
use vouch_tower::*;

const AGENT: &str = "agent-a";
const OTHER: &str = "agent-b";

fn token(tools: &[&str]) -> String {
    let r = Restriction::new().tools(tools.iter().copied()).ttl(3600);
    Token::mint(&root(), "auth-server", "agent", r)
        .unwrap()
        .to_base64()
}

fn call(tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
           "params": {"name": tool, "arguments": {}}})
    .to_string()
}

/// A request signed by `seed` as `keyid` for `host`, with `body`, `token` in its header and
/// `extra` fields (added after signing, so not covered).
fn signed(seed: u8, keyid: &str, host: &str, body: &str, token: Option<&str>) -> Request<Bytes> {
    let body = Bytes::from(body.to_owned());
    let mut b = Request::post(format!("http://{host}/mcp"))
        .header("host", host)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .header("content-digest", mcp_content_digest(&body));
    if let Some(t) = token {
        b = b.header("x-mcpvault-token", t);
    }
    let mut req = b.body(body).unwrap();
    let key = SigningKey::ed25519_from_seed(&[seed; 32]).unwrap();
    let spec = mcp_spec(&RequestView::of(&req), &key, keyid, None, now()).unwrap();
    sign(RequestView::of(&req), &spec, &key)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    let (mut parts, body) = req.into_parts();
    parts.uri = "/mcp".parse().unwrap();
    Request::from_parts(parts, body)
}

fn resolver() -> StaticResolver {
    StaticResolver::new()
        .with_ed25519(AGENT, &KeyPair::from_seed(&[1; 32]).unwrap().public_key())
        .with_ed25519(OTHER, &KeyPair::from_seed(&[2; 32]).unwrap().public_key())
}

fn pipeline() -> SignaturePipeline {
    SignaturePipeline::new(crate::origin(), resolver(), ShardedReplayStore::new(1000))
        .allowlist(|identity: &str| identity != "banned")
}

fn tokens() -> CapabilityPipeline {
    CapabilityPipeline::new(Verifier::new(root().public_key()))
}

fn rate() -> RateLimitLayer {
    RateLimitLayer::per_second(NonZeroU32::new(1).unwrap(), NonZeroU32::new(3).unwrap())
}

const CAP: usize = 4096;

fn checkpoint(identity_only: bool) -> Checkpoint {
    let mut b = Checkpoint::builder(pipeline())
        .rate_limit(rate())
        .max_body_bytes(CAP);
    if !identity_only {
        b = b.tokens(tokens());
    }
    b.build()
}

/// The layers in the gateway's order, over a terminal that answers 200 "passed".
fn stack(
    identity_only: bool,
) -> impl tower::Service<
    Request<Body>,
    Response = http::Response<Body>,
    Error = std::convert::Infallible,
> + Clone {
    let terminal = tower::service_fn(|_: Request<Body>| async move {
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("passed")))
    });
    let signature = SignatureLayer::new(pipeline()).max_body_bytes(CAP);
    let message = if identity_only {
        tower::util::Either::Right(StrictMessageLayer::default().max_body_bytes(CAP))
    } else {
        tower::util::Either::Left(CapabilityLayer::new(tokens()).max_body_bytes(CAP))
    };
    ServiceBuilder::new()
        .layer(signature)
        .layer(rate())
        .layer(message)
        .service(terminal)
}

/// The checkpoint's two steps over `request`.
async fn run(c: &Checkpoint, request: Request<Bytes>) -> Result<Admitted, Denial> {
    let (parts, body) = request.into_parts();
    c.head(parts).await?.finish(body).await
}

async fn denial(c: &Checkpoint, request: Request<Bytes>) -> Denial {
    run(c, request).await.expect_err("should be denied")
}

fn body_json(d: &Denial) -> Value {
    serde_json::from_slice(d.body()).unwrap()
}

/// Each request, sent once to the checkpoint and once to the layers, gets the same answer.
#[tokio::test]
async fn denials_are_the_layers_answers() {
    let ok = token(&["search"]);
    let cases: Vec<(&str, Request<Bytes>, u16)> = vec![
        (
            "unsigned",
            {
                let mut r = signed(1, AGENT, "mcp.example", &call("search"), Some(&ok));
                r.headers_mut().remove("signature");
                r
            },
            401,
        ),
        (
            "wrong host",
            signed(1, AGENT, "evil.example", &call("search"), Some(&ok)),
            421,
        ),
        (
            "tampered body",
            {
                let (p, _) =
                    signed(1, AGENT, "mcp.example", &call("search"), Some(&ok)).into_parts();
                Request::from_parts(p, Bytes::from(call("delete")))
            },
            401,
        ),
        (
            "not allowed",
            signed(1, "banned", "mcp.example", &call("search"), Some(&ok)),
            401,
        ),
        (
            "unknown key",
            signed(3, "nobody", "mcp.example", &call("search"), Some(&ok)),
            401,
        ),
        (
            "missing token",
            signed(1, AGENT, "mcp.example", &call("search"), None),
            401,
        ),
        (
            "invalid token",
            signed(1, AGENT, "mcp.example", &call("search"), Some("garbage")),
            401,
        ),
        (
            "outside grants",
            signed(1, AGENT, "mcp.example", &call("delete"), Some(&ok)),
            403,
        ),
        (
            "duplicate keys",
            signed(
                1,
                AGENT,
                "mcp.example",
                r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/list"}"#,
                Some(&ok),
            ),
            400,
        ),
        (
            "batch",
            signed(1, AGENT, "mcp.example", "[]", Some(&ok)),
            400,
        ),
    ];
    for (name, request, status) in cases {
        let c = checkpoint(false);
        let (parts, body) = request.into_parts();
        let from_layers = stack(false)
            .oneshot(Request::from_parts(parts.clone(), Body::from(body.clone())))
            .await
            .unwrap();
        let d = denial(&c, Request::from_parts(parts, body)).await;
        assert_eq!(d.status().as_u16(), status, "{name}: {d:?}");
        let (lp, lb) = from_layers.into_parts();
        let lb = lb.collect().await.unwrap().to_bytes();
        assert_eq!(lp.status, d.status(), "{name}");
        let mut headers = lp.headers.clone();
        headers.remove(http::header::CONTENT_LENGTH);
        assert_eq!(&headers, d.headers(), "{name}");
        assert_eq!(&lb, d.body(), "{name}");
    }
}

#[tokio::test]
async fn an_allowed_call_carries_the_caller_and_grants() {
    let c = checkpoint(false);
    let admitted = run(
        &c,
        signed(
            1,
            AGENT,
            "mcp.example",
            &call("search"),
            Some(&token(&["search"])),
        ),
    )
    .await
    .unwrap();
    assert_eq!(admitted.caller().identity, AGENT);
    assert!(admitted.grants().unwrap().grants_tool("search"));
    assert!(admitted.signed_request().is_some());
}

#[tokio::test]
async fn identity_only_asks_no_token_but_reads_strictly() {
    let c = checkpoint(true);
    assert!(c.identity_only());
    let admitted = run(&c, signed(1, AGENT, "mcp.example", &call("search"), None))
        .await
        .unwrap();
    assert!(admitted.grants().is_none());
    let d = denial(
        &c,
        signed(1, AGENT, "mcp.example", r#"{"a":1,"a":2}"#, None),
    )
    .await;
    assert_eq!(d.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_replay_is_refused_and_the_first_recorded_only_at_finish() {
    let c = checkpoint(false);
    let ok = token(&["search"]);
    let request = signed(1, AGENT, "mcp.example", &call("search"), Some(&ok));
    let (parts, body) = request.into_parts();
    // A head whose body never comes leaves no trace: the same request passes afterwards.
    let abandoned = c.head(parts.clone()).await.unwrap();
    let d = abandoned.timed_out();
    assert_eq!(d.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(d.headers()["connection"], "close");
    c.head(parts.clone())
        .await
        .unwrap()
        .finish(body.clone())
        .await
        .unwrap();
    let d = c.head(parts).await.unwrap().finish(body).await.unwrap_err();
    assert_eq!(d.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body_json(&d)["detail"]["detail"], "replayed");
}

#[tokio::test]
async fn a_declared_body_over_the_cap_is_refused_on_the_head() {
    let c = checkpoint(false);
    let (mut parts, _) = signed(1, AGENT, "mcp.example", "{}", None).into_parts();
    parts
        .headers
        .insert("content-length", http::HeaderValue::from(CAP + 1));
    let d = c.head(parts).await.unwrap_err();
    assert_eq!(d.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(d.headers()["connection"], "close", "the body stays unread");
}

#[tokio::test]
async fn a_body_the_host_found_too_large_is_413() {
    let c = checkpoint(false);
    let (parts, _) = signed(1, AGENT, "mcp.example", "{}", None).into_parts();
    let pending = c.head(parts.clone()).await.unwrap();
    assert_eq!(pending.caller().identity, AGENT);
    let d = pending.too_large();
    assert_eq!(d.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body_json(&d)["detail"]["error"], "payload_too_large");
    let d = c.too_large(&parts);
    assert_eq!(d.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn one_flooding_identity_does_not_limit_another() {
    let c = checkpoint(true);
    let mut limited = None;
    for _ in 0..10 {
        if let Err(d) = run(&c, signed(1, AGENT, "mcp.example", &call("search"), None)).await {
            limited = Some(d);
            break;
        }
    }
    let d = limited.expect("the burst of 3 is exceeded");
    assert_eq!(d.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(d.headers().contains_key("retry-after"));
    run(&c, signed(2, OTHER, "mcp.example", &call("search"), None))
        .await
        .expect("another identity keeps passing");
}

#[tokio::test]
async fn check_reads_the_whole_request() {
    let c = checkpoint(false);
    let (parts, body) = signed(
        1,
        AGENT,
        "mcp.example",
        &call("search"),
        Some(&token(&["search"])),
    )
    .into_parts();
    let admitted = c
        .check(Request::from_parts(parts, Body::from(body)))
        .await
        .unwrap();
    assert_eq!(admitted.caller().identity, AGENT);
    let big = "x".repeat(CAP + 1);
    let (parts, body) = signed(1, AGENT, "mcp.example", &big, None).into_parts();
    let d = c
        .check(Request::from_parts(parts, Body::from(body)))
        .await
        .unwrap_err();
    assert_eq!(d.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn every_step_reports_to_the_audit_hook() {
    let stats = Arc::new(SigningStats::new());
    let c = Checkpoint::builder(pipeline())
        .tokens(tokens())
        .audit(stats.clone())
        .build();
    let ok = token(&["search"]);
    run(
        &c,
        signed(1, AGENT, "mcp.example", &call("search"), Some(&ok)),
    )
    .await
    .unwrap();
    let mut unsigned = signed(1, AGENT, "mcp.example", &call("search"), Some(&ok));
    unsigned.headers_mut().remove("signature-input");
    run(&c, unsigned).await.unwrap_err();
    let snapshot = stats.snapshot();
    assert_eq!(
        (snapshot.verified_requests, snapshot.rejected_requests),
        (1, 1)
    );
    assert_eq!(snapshot.by_address.get(AGENT), Some(&1));
}

/// A request of `method` in `session`, signed by `seed` as `keyid` (the session id covered).
fn in_session(seed: u8, keyid: &str, method: http::Method, session: &str) -> Request<Bytes> {
    let body = if method == http::Method::POST {
        Bytes::from(call("search"))
    } else {
        Bytes::new()
    };
    let mut b = Request::builder()
        .method(method)
        .uri("http://mcp.example/mcp")
        .header("host", "mcp.example")
        .header("mcp-session-id", session)
        .header("content-length", body.len());
    if !body.is_empty() {
        b = b
            .header("content-type", "application/json")
            .header("content-digest", mcp_content_digest(&body));
    }
    let mut req = b.body(body).unwrap();
    let key = SigningKey::ed25519_from_seed(&[seed; 32]).unwrap();
    let spec = mcp_spec(&RequestView::of(&req), &key, keyid, None, now()).unwrap();
    sign(RequestView::of(&req), &spec, &key)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    *req.uri_mut() = "/mcp".parse().unwrap();
    req
}

fn naming(session: &'static str) -> http::HeaderMap {
    let mut named = http::HeaderMap::new();
    named.insert("mcp-session-id", http::HeaderValue::from_static(session));
    named
}

#[tokio::test]
async fn sessions_are_bound_to_their_creator() {
    use http::Method;
    let layer =
        SessionBindingLayer::new(10, std::time::Duration::from_secs(600)).max_per_identity(1);
    let c = Checkpoint::builder(pipeline())
        .sessions(layer.clone())
        .build();
    let open = |seed, keyid| signed(seed, keyid, "mcp.example", &call("search"), None);
    // agent-a opens a session; the server names it in its answer.
    let mut admitted = run(&c, open(1, AGENT)).await.unwrap();
    admitted
        .take_session()
        .unwrap()
        .answered(StatusCode::OK, &naming("s1"));
    assert!(admitted.take_session().is_none(), "one ticket per request");
    assert_eq!(layer.len(), 1);
    // Its own session passes; anyone else's use of it is 403; an unknown one 404.
    let mut own = run(&c, in_session(1, AGENT, Method::POST, "s1"))
        .await
        .unwrap();
    own.take_session()
        .unwrap()
        .answered(StatusCode::OK, &http::HeaderMap::new());
    let d = denial(&c, in_session(2, OTHER, Method::POST, "s1")).await;
    assert_eq!(d.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        body_json(&d)["detail"]["detail"],
        "session_bound_to_another_caller"
    );
    let d = denial(&c, in_session(1, AGENT, Method::POST, "s9")).await;
    assert_eq!(d.status(), StatusCode::NOT_FOUND);
    // Over its limit of one session, agent-a's new session is refused; agent-b's is not.
    let d = denial(&c, open(1, AGENT)).await;
    assert_eq!(d.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(d.headers().contains_key("retry-after"));
    // A ticket dropped unanswered gives its place back.
    drop(run(&c, open(2, OTHER)).await.unwrap());
    let mut again = run(&c, open(2, OTHER)).await.unwrap();
    again
        .take_session()
        .unwrap()
        .answered(StatusCode::OK, &naming("s2"));
    assert_eq!(layer.len(), 2);
    // A successful DELETE ends the session and its binding.
    let mut deleted = run(&c, in_session(1, AGENT, Method::DELETE, "s1"))
        .await
        .unwrap();
    deleted
        .take_session()
        .unwrap()
        .answered(StatusCode::OK, &http::HeaderMap::new());
    assert_eq!(layer.len(), 1);
    let d = denial(&c, in_session(1, AGENT, Method::POST, "s1")).await;
    assert_eq!(d.status(), StatusCode::NOT_FOUND);
}

/// A replay store that is down.
struct Down;

impl vouch_httpsig::ReplayGuard for Down {
    fn check_and_insert<'a>(
        &'a self,
        _: vouch_httpsig::ReplayKey,
        _: &'a str,
        _: u64,
        _: u64,
    ) -> vouch_httpsig::ReplayFuture<'a> {
        Box::pin(std::future::ready(Err(
            vouch_httpsig::Error::ReplayStoreUnavailable("redis unreachable"),
        )))
    }
}

#[tokio::test]
async fn a_failing_replay_store_is_503_never_a_pass() {
    let pipeline = SignaturePipeline::new(crate::origin(), resolver(), Down);
    let c = Checkpoint::builder(pipeline).build();
    let request = signed(1, AGENT, "mcp.example", &call("search"), None);
    let (parts, body) = request.into_parts();
    // The head does not touch the store; the body step does.
    let pending = c.head(parts).await.unwrap();
    let d = pending.finish(body).await.unwrap_err();
    assert_eq!(d.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body_json(&d)["detail"]["error"], "unavailable");
}
