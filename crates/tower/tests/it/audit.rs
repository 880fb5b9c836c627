//! Audit hook and signing statistics, and upgrade requests (which must be verified too).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::now;
use axum::body::Body;
use http::{Request, StatusCode};
use tower::{ServiceBuilder, ServiceExt as _};
use vouch_httpsig::{RequestView, SigningKey, mcp_content_digest, mcp_spec, sign};
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_token::{KeyPair, Restriction, Token, Verifier};
use vouch_tower::*;

fn keyid(n: u8) -> String {
    format!("https://agents.example/agents/agent{n}@agents.example")
}

fn resolver() -> StaticResolver {
    (0..8u8).fold(StaticResolver::new(), |r, n| {
        r.with_ed25519(
            keyid(n),
            &KeyPair::from_seed(&[n; 32]).unwrap().public_key(),
        )
    })
}

fn signed(n: u8, body: &str, token: Option<&str>) -> Request<Body> {
    let body = body.as_bytes().to_vec();
    let mut b = http::Request::post("http://mcp.example/mcp").header("host", "mcp.example");
    if let Some(t) = token {
        b = b.header("x-mcpvault-token", t);
    }
    if !body.is_empty() {
        b = b.header("content-digest", mcp_content_digest(&body));
    }
    let mut req = b.body(body.clone()).unwrap();
    let key = SigningKey::ed25519_from_seed(&[n; 32]).unwrap();
    let spec = mcp_spec(&RequestView::of(&req), &key, &keyid(n), None, now()).unwrap();
    sign(RequestView::of(&req), &spec, &key)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    let (mut parts, body) = req.into_parts();
    parts.uri = "/mcp".parse().unwrap();
    Request::from_parts(parts, Body::from(body))
}

type Log = Arc<Mutex<Vec<String>>>;

fn recorder(log: Log) -> impl AuditHook {
    move |d: &Decision<'_>| {
        log.lock().unwrap().push(format!(
            "{} {} {} {} {}",
            d.layer,
            d.accepted,
            d.identity.unwrap_or("-"),
            d.reason,
            d.tool.unwrap_or("-")
        ));
    }
}

#[tokio::test]
async fn every_decision_is_audited_once_non_json_bodies_included() {
    let root = KeyPair::from_seed(&[20; 32]).unwrap();
    let token = Token::mint(
        &root,
        "auth",
        "agent",
        Restriction::new().tools(["add"]).ttl(60),
    )
    .unwrap()
    .to_base64();
    let log: Log = Arc::default();
    let inner_calls = Arc::new(AtomicUsize::new(0));
    let calls = inner_calls.clone();
    let svc = ServiceBuilder::new()
        .layer(
            SignatureLayer::new(SignaturePipeline::new(
                crate::origin(),
                resolver(),
                ShardedReplayStore::new(100),
            ))
            .audit(recorder(log.clone())),
        )
        .layer(
            CapabilityLayer::new(CapabilityPipeline::new(Verifier::new(root.public_key())))
                .audit(recorder(log.clone())),
        )
        .service(tower::service_fn(move |_req: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty())) }
        }));
    let call = |body: &str| {
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"TOOL"}}"#
            .replace("TOOL", body)
    };
    assert_eq!(
        svc.clone()
            .oneshot(signed(1, &call("add"), Some(&token)))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        svc.clone()
            .oneshot(signed(1, &call("rm"), Some(&token)))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        svc.clone()
            .oneshot(signed(1, "definitely not json", Some(&token)))
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    let unsigned = Request::post("/mcp")
        .header("host", "mcp.example")
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(
        svc.clone().oneshot(unsigned).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let id = "agent1@agents.example";
    assert_eq!(
        *log.lock().unwrap(),
        [
            format!("signature true {id} ok -"),
            format!("capability true {id} ok add"),
            format!("signature true {id} ok -"),
            format!("capability false {id} forbidden rm"),
            format!("signature true {id} ok -"),
            format!("capability false {id} bad_request -"),
            "signature false - missing_signature -".to_owned(),
        ]
    );
    assert_eq!(inner_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_exactly_under_concurrent_requests() {
    let stats = Arc::new(SigningStats::new());
    let svc = ServiceBuilder::new()
        .layer(
            SignatureLayer::new(SignaturePipeline::new(
                crate::origin(),
                resolver(),
                ShardedReplayStore::new(10_000),
            ))
            .audit(stats.clone()),
        )
        .service(tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        }));
    let mut tasks = Vec::new();
    for i in 0..64u8 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let req = if i % 4 == 3 {
                Request::post("/mcp")
                    .header("host", "mcp.example")
                    .body(Body::empty())
                    .unwrap()
            } else {
                signed(i % 4, "", None)
            };
            svc.oneshot(req).await.unwrap().status()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let snap = stats.snapshot();
    assert_eq!(snap.verified_requests, 48);
    assert_eq!(snap.rejected_requests, 16);
    assert_eq!(snap.distinct_identities, 3);
    assert_eq!(snap.by_address["agent0@agents.example"], 16);
    let json = serde_json::to_value(&snap).unwrap();
    assert!(json.get("by_address").is_some() && json.get("verified_requests").is_some());
}

#[tokio::test]
async fn upgrade_requests_are_verified_too() {
    let inner_calls = Arc::new(AtomicUsize::new(0));
    let calls = inner_calls.clone();
    let svc = ServiceBuilder::new()
        .layer(SignatureLayer::new(SignaturePipeline::new(
            crate::origin(),
            resolver(),
            ShardedReplayStore::new(100),
        )))
        .service(tower::service_fn(move |_req: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty())) }
        }));
    let upgrade = Request::get("/mcp")
        .header("host", "mcp.example")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        svc.clone().oneshot(upgrade).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        inner_calls.load(Ordering::SeqCst),
        0,
        "an unsigned upgrade never reaches the inner service"
    );
}

#[tokio::test]
async fn each_identity_is_rate_limited_with_retry_after() {
    use std::num::NonZeroU32;
    // The refusals the layer reports: (layer, identity, reason).
    let refused = Arc::new(Mutex::new(Vec::<(String, String, String)>::new()));
    let refusals = {
        let refused = refused.clone();
        move |d: &Decision<'_>| {
            assert!(!d.accepted, "only refusals are reported");
            refused.lock().unwrap().push((
                d.layer.to_owned(),
                d.identity.unwrap_or_default().to_owned(),
                d.reason.to_owned(),
            ));
        }
    };
    let svc = ServiceBuilder::new()
        .layer(SignatureLayer::new(SignaturePipeline::new(
            crate::origin(),
            resolver(),
            ShardedReplayStore::new(1000),
        )))
        .layer(
            RateLimitLayer::per_second(NonZeroU32::new(1).unwrap(), NonZeroU32::new(3).unwrap())
                .audit(refusals.clone()),
        )
        .service(tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        }));
    for _ in 0..3 {
        assert_eq!(
            svc.clone()
                .oneshot(signed(1, "", None))
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    let limited = svc.clone().oneshot(signed(1, "", None)).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    {
        let refused = refused.lock().unwrap();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].0, "rate_limit");
        assert!(!refused[0].1.is_empty());
        assert_eq!(refused[0].2, "rate_limited");
    }
    // Another identity has its own bucket.
    assert_eq!(
        svc.clone()
            .oneshot(signed(2, "", None))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // Without the signature layer in front, the limiter refuses rather than letting through.
    let bare = ServiceBuilder::new()
        .layer(RateLimitLayer::per_second(
            NonZeroU32::new(1).unwrap(),
            NonZeroU32::new(1).unwrap(),
        ))
        .service(tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        }));
    assert_eq!(
        bare.oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}
