//! The signature layer against a mock inner service: every row of its error table, exempt paths,
//! the body cap, 503 on store failure, allowlist before any key fetch, pin after allowlist, and
//! the axum extractors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::now;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use tower::{ServiceBuilder, ServiceExt as _};
use vouch_httpsig::{
    Error, ReplayFuture, ReplayGuard, ReplayKey, RequestView, SigningKey, mcp_content_digest,
    mcp_spec, sign,
};
use vouch_keys::{
    KeyResolver, MemoryPinStore, PinStore, ResolveFuture, ShardedReplayStore, StaticResolver,
};
use vouch_token::KeyPair;
use vouch_tower::*;

const AGENT: &str = "https://agents.example/agents/worker@agents.example";

fn seed_key(seed: u8) -> SigningKey {
    SigningKey::ed25519_from_seed(&[seed; 32]).unwrap()
}

fn public(seed: u8) -> vouch_token::PublicKey {
    KeyPair::from_seed(&[seed; 32]).unwrap().public_key()
}

/// A request as a client sends it (absolute URI), signed by `seed` as `keyid`; the server side
/// sees the relative URI with a Host header.
fn signed(seed: u8, keyid: &str, body: &str) -> Request<Body> {
    let body = body.as_bytes().to_vec();
    let mut req = http::Request::post("http://mcp.example/mcp")
        .header("host", "mcp.example")
        .header("content-type", "application/json")
        .header("content-digest", mcp_content_digest(&body))
        .body(body.clone())
        .unwrap();
    let key = seed_key(seed);
    let spec = mcp_spec(&RequestView::of(&req), &key, keyid, None, now()).unwrap();
    sign(RequestView::of(&req), &spec, &key)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    let (mut parts, body) = req.into_parts();
    parts.uri = "/mcp".parse().unwrap();
    Request::from_parts(parts, Body::from(body))
}

/// Counts resolutions, to prove the allowlist decides before any fetch.
struct Counting(StaticResolver, Arc<AtomicUsize>);

impl KeyResolver for Counting {
    fn resolve<'a>(&'a self, keyid: &'a str) -> ResolveFuture<'a> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.resolve(keyid)
    }
}

struct Failing;

impl ReplayGuard for Failing {
    fn check_and_insert<'a>(
        &'a self,
        _: ReplayKey,
        _: &'a str,
        _: u64,
        _: u64,
    ) -> ReplayFuture<'a> {
        Box::pin(std::future::ready(Err(Error::ReplayStoreUnavailable(
            "redis unreachable",
        ))))
    }
}

fn resolver() -> StaticResolver {
    StaticResolver::new()
        .with_ed25519(AGENT, &public(1))
        .with_ed25519("thief", &public(2))
}

/// The inner service: echoes the verified identity and the body it received.
fn app(
    layer: SignatureLayer,
) -> impl tower::Service<
    Request<Body>,
    Response = http::Response<Body>,
    Error = std::convert::Infallible,
> + Clone {
    ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(|req: Request<Body>| async move {
            let caller = req
                .extensions()
                .get::<VerifiedCaller>()
                .map(|c| c.identity.clone());
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let text = format!(
                "{}|{}",
                caller.unwrap_or_else(|| "anonymous".into()),
                String::from_utf8_lossy(&body)
            );
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::from(text)))
        }))
}

fn layer(pipeline: SignaturePipeline) -> SignatureLayer {
    SignatureLayer::new(pipeline)
}

async fn call(
    svc: &mut (
             impl tower::Service<
        Request<Body>,
        Response = http::Response<Body>,
        Error = std::convert::Infallible,
    > + Clone
         ),
    req: Request<Body>,
) -> (StatusCode, http::HeaderMap, String) {
    let res = svc.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap(),
    )
}

fn detail(body: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["detail"].clone()
}

#[tokio::test]
async fn a_signed_request_reaches_the_inner_service_with_its_caller_and_body() {
    let mut svc = app(layer(SignaturePipeline::new(
        crate::origin(),
        resolver(),
        ShardedReplayStore::new(1000),
    )));
    let (status, _, body) = call(
        &mut svc,
        signed(1, AGENT, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        r#"worker@agents.example|{"jsonrpc":"2.0","id":1,"method":"ping"}"#
    );
}

#[tokio::test]
async fn every_rejection_row() {
    let mut svc = app(layer(SignaturePipeline::new(
        crate::origin(),
        resolver(),
        ShardedReplayStore::new(1000),
    )));

    let unsigned = Request::post("/mcp")
        .header("host", "mcp.example")
        .body(Body::from("{}"))
        .unwrap();
    let (status, headers, body) = call(&mut svc, unsigned).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        detail(&body),
        serde_json::json!({"error": "invalid_signature", "detail": "missing_signature"})
    );
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Signature")
    );
    assert_eq!(headers["content-type"], "application/json");

    let mut tampered = signed(1, AGENT, r#"{"a":1}"#);
    *tampered.body_mut() = Body::from(r#"{"a":2}"#);
    let (status, _, body) = call(&mut svc, tampered).await;
    assert_eq!(
        (status, detail(&body)["detail"].as_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "digest_mismatch")
    );

    let (status, _, body) = call(&mut svc, signed(2, AGENT, "{}")).await;
    assert_eq!(
        (status, detail(&body)["detail"].as_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "bad_signature"),
        "wrong key"
    );

    let (status, _, body) = call(&mut svc, signed(1, "https://nowhere.example/k", "{}")).await;
    assert_eq!(
        (status, detail(&body)["detail"].as_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "unknown_key")
    );

    let req = signed(1, AGENT, "{}");
    let copy = clone_request(&req).await;
    assert_eq!(call(&mut svc, req).await.0, StatusCode::OK);
    let (status, _, body) = call(&mut svc, copy).await;
    assert_eq!(
        (status, detail(&body)["detail"].as_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "replayed")
    );

    let mut moved = signed(1, AGENT, "{}");
    moved
        .headers_mut()
        .insert("host", "other.example".parse().unwrap());
    let (status, _, body) = call(&mut svc, moved).await;
    assert_eq!(
        (status, detail(&body)["detail"].as_str().unwrap()),
        (StatusCode::MISDIRECTED_REQUEST, "unknown_origin"),
        "relayed to another host"
    );
}

async fn clone_request(req: &Request<Body>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(req.method().clone())
        .uri(req.uri().clone());
    for (k, v) in req.headers() {
        builder = builder.header(k, v);
    }
    // The body of `signed` requests is `{}` in the replay case.
    builder.body(Body::from("{}")).unwrap()
}

#[tokio::test]
async fn exempt_paths_and_the_body_cap() {
    let base = layer(SignaturePipeline::new(
        crate::origin(),
        resolver(),
        ShardedReplayStore::new(1000),
    ));
    let mut svc = app(base.clone().exempt_paths(["/health"]).max_body_bytes(64));
    let health = Request::get("/health").body(Body::empty()).unwrap();
    let (status, _, body) = call(&mut svc, health).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous|"));
    let big = signed(1, AGENT, &format!("{{\"pad\":\"{}\"}}", "x".repeat(100)));
    let (status, _, body) = call(&mut svc, big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(detail(&body)["error"], "payload_too_large");
}

#[tokio::test]
async fn a_failing_replay_store_answers_503_never_a_pass() {
    let mut svc = app(layer(SignaturePipeline::new(
        crate::origin(),
        resolver(),
        Failing,
    )));
    let (status, _, body) = call(&mut svc, signed(1, AGENT, "{}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(detail(&body)["error"], "unavailable");
}

#[tokio::test]
async fn the_allowlist_decides_before_any_key_fetch() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let allow = |identity: &str| identity == "worker@agents.example";
    let pipeline = SignaturePipeline::new(
        crate::origin(),
        Counting(resolver(), fetches.clone()),
        ShardedReplayStore::new(1000),
    )
    .allowlist(allow);
    let mut svc = app(layer(pipeline));
    let (status, _, body) = call(&mut svc, signed(2, "thief", "{}")).await;
    assert_eq!(
        (status, detail(&body)["detail"].as_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "not_allowed")
    );
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        0,
        "no key was fetched for a refused identity"
    );
    assert_eq!(
        call(&mut svc, signed(1, AGENT, "{}")).await.0,
        StatusCode::OK
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn keys_are_pinned_only_after_verification_and_a_new_key_is_refused() {
    let pins = Arc::new(MemoryPinStore::new(100));
    let pipeline =
        SignaturePipeline::new(crate::origin(), resolver(), ShardedReplayStore::new(1000))
            .pins(SharedPins(pins.clone()));
    let mut svc = app(layer(pipeline));
    // A forged request (wrong key) for the agent's identity pins nothing.
    assert_eq!(
        call(&mut svc, signed(2, AGENT, "{}")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(pins.get("worker@agents.example").await, Ok(None));
    assert_eq!(
        call(&mut svc, signed(1, AGENT, "{}")).await.0,
        StatusCode::OK
    );
    assert!(pins.get("worker@agents.example").await.unwrap().is_some());
    // The resolver now serves another key for the same identity (a rotated or hijacked key):
    // refused until an operator resets the pin.
    let rotated = StaticResolver::new().with_ed25519(AGENT, &public(3));
    let mut svc = app(layer(
        SignaturePipeline::new(crate::origin(), rotated, ShardedReplayStore::new(1000))
            .pins(SharedPins(pins.clone())),
    ));
    let (status, _, body) = call(&mut svc, signed(3, AGENT, "{}")).await;
    assert_eq!(
        (status, detail(&body)["detail"].as_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "key_not_pinned")
    );
    pins.reset("worker@agents.example").await.unwrap();
    assert_eq!(
        call(&mut svc, signed(3, AGENT, "{}")).await.0,
        StatusCode::OK
    );
}

/// Lets two pipelines share one pin store in the test.
struct SharedPins(Arc<MemoryPinStore>);

impl PinStore for SharedPins {
    fn get(&self, identity: &str) -> vouch_keys::StoreFuture<'_, Option<String>> {
        self.0.get(identity)
    }
    fn check_and_pin(
        &self,
        identity: &str,
        fingerprint: &str,
    ) -> vouch_keys::StoreFuture<'_, vouch_keys::Pinned> {
        self.0.check_and_pin(identity, fingerprint)
    }
    fn reset(&self, identity: &str) -> vouch_keys::StoreFuture<'_, bool> {
        self.0.reset(identity)
    }
}

#[tokio::test]
async fn axum_extractors() {
    use axum::Router;
    use axum::routing::post;
    let router = Router::new()
        .route(
            "/mcp",
            post(|caller: VerifiedCaller| async move { caller.identity }),
        )
        .route(
            "/maybe",
            post(|caller: Option<VerifiedCaller>| async move {
                caller.map_or("none".into(), |c| c.keyid)
            }),
        );
    let (status, _, body) = {
        let res = router
            .clone()
            .oneshot(Request::post("/mcp").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (p, b) = res.into_parts();
        (
            p.status,
            p.headers,
            String::from_utf8(b.collect().await.unwrap().to_bytes().to_vec()).unwrap(),
        )
    };
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "no layer ran: the extractor refuses"
    );
    assert_eq!(detail(&body)["error"], "invalid_signature");
    let res = router
        .clone()
        .oneshot(Request::post("/maybe").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "none");

    let protected = ServiceBuilder::new()
        .layer(layer(SignaturePipeline::new(
            crate::origin(),
            resolver(),
            ShardedReplayStore::new(1000),
        )))
        .service(router);
    let res = protected
        .clone()
        .oneshot(signed(1, AGENT, "{}"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "worker@agents.example"
    );
}
