//! The capability layer: each row of the seed's error table, both token transports, holder
//! binding with the signature layer, the Grants extractor, require_tool, and the cache.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::support::{now, root};
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt as _};
use vouch_httpsig::{RequestView, SigningKey, mcp_content_digest, mcp_spec, sign};
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_token::{KeyPair, Restriction, RevocationId, Token, Verifier};
use vouch_tower::*;

fn token(r: Restriction) -> String {
    Token::mint(&root(), "auth-server", "agent-a", r)
        .unwrap()
        .to_base64()
}

fn reference() -> Restriction {
    Restriction::new()
        .tools(["db_query", "search"])
        .operations("db_query", ["read"])
        .limit("db_query", "max_rows", 100)
        .ttl(3600)
}

fn call_body(tool: &str, meta_token: Option<&str>) -> String {
    let mut params = json!({"name": tool, "arguments": {}});
    if let Some(t) = meta_token {
        params["_meta"] = json!({"token": t});
    }
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}).to_string()
}

fn request(body: &str, header_token: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/mcp").header("host", "mcp.example");
    if let Some(t) = header_token {
        b = b.header("x-mcpvault-token", t);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

type Revoked = Arc<Mutex<BTreeSet<RevocationId>>>;

fn pipeline(revoked: Revoked) -> CapabilityPipeline {
    let verifier = Verifier::new(root().public_key())
        .with_audience("https://mcp.example")
        .with_revocations(move |id: &RevocationId| revoked.lock().unwrap().contains(id));
    CapabilityPipeline::new(verifier)
        .operation("db_query", "read")
        .operation("search", "read")
}

/// The inner service answers with the granted max_rows.
fn app(
    p: CapabilityPipeline,
) -> impl tower::Service<
    Request<Body>,
    Response = http::Response<Body>,
    Error = std::convert::Infallible,
> + Clone {
    ServiceBuilder::new()
        .layer(CapabilityLayer::new(p))
        .service(tower::service_fn(|req: Request<Body>| async move {
            let grants = req.extensions().get::<Grants>().cloned().unwrap();
            let rows = grants
                .limit("db_query", "max_rows")
                .map_or("none".into(), |v| v.to_string());
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::from(rows)))
        }))
}

async fn send(
    svc: &(
         impl tower::Service<
        Request<Body>,
        Response = http::Response<Body>,
        Error = std::convert::Infallible,
    > + Clone
     ),
    req: Request<Body>,
) -> (StatusCode, String) {
    let res = svc.clone().oneshot(req).await.unwrap();
    let status = res.status();
    (
        status,
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap(),
    )
}

fn error_of(body: &str) -> (String, Option<String>) {
    let v: Value = serde_json::from_str(body).unwrap();
    (
        v["detail"]["error"].as_str().unwrap().to_owned(),
        v["detail"]["detail"].as_str().map(str::to_owned),
    )
}

#[tokio::test]
async fn the_error_table() {
    let revoked: Revoked = Arc::default();
    let svc = app(pipeline(revoked.clone()));
    let good = token(reference());

    let (status, body) = send(&svc, request(&call_body("db_query", None), Some(&good))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "100"));
    let (status, body) = send(&svc, request(&call_body("db_query", Some(&good)), None)).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "100"),
        "token in params._meta.token"
    );

    let (status, body) = send(&svc, request(&call_body("db_query", None), None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"detail": {"error": "missing_token"}})
    );

    let expired = Token::mint_at(&root(), "auth-server", "agent-a", reference(), now() - 7200)
        .unwrap()
        .to_base64();
    let other_root = Token::mint(
        &KeyPair::from_seed(&[12; 32]).unwrap(),
        "x",
        "y",
        reference(),
    )
    .unwrap()
    .to_base64();
    let elsewhere = token(reference().audience(["https://other.example"]));
    let mut tampered = good.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (name, t) in [
        ("expired", expired),
        ("unknown root", other_root),
        ("wrong audience", elsewhere),
        ("tampered", tampered),
        ("malformed", "!!!".to_owned()),
    ] {
        let (status, body) = send(&svc, request(&call_body("db_query", None), Some(&t))).await;
        assert_eq!(
            (status, error_of(&body).0.as_str()),
            (StatusCode::UNAUTHORIZED, "invalid_token"),
            "{name}: {body}"
        );
        assert!(error_of(&body).1.is_some(), "{name} has a detail");
    }

    let (status, body) = send(&svc, request(&call_body("shell", None), Some(&good))).await;
    assert_eq!(
        (status, error_of(&body).0.as_str()),
        (StatusCode::FORBIDDEN, "forbidden"),
        "tool not granted"
    );
    let write_only = token(
        Restriction::new()
            .tools(["db_query"])
            .operations("db_query", ["write"])
            .ttl(60),
    );
    let (status, body) = send(
        &svc,
        request(&call_body("db_query", None), Some(&write_only)),
    )
    .await;
    assert_eq!(
        (status, error_of(&body).0.as_str()),
        (StatusCode::FORBIDDEN, "forbidden"),
        "operation not granted"
    );

    // Other methods need only a valid token.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    assert_eq!(
        send(&svc, request(&list, Some(&good))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&svc, request(&list, None)).await.0,
        StatusCode::UNAUTHORIZED
    );

    for (bad, code) in [
        ("not json", -32700),
        ("[1,2]", -32600),
        (r#"{"method":"tools/list"}"#, -32600),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            -32600,
        ),
    ] {
        let (status, body) = send(&svc, request(bad, Some(&good))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(json_rpc_error(&body), code, "{bad}: {body}");
    }

    // Revocation is consulted on every request, cached token or not.
    let parsed = Token::from_base64(&good).unwrap();
    revoked.lock().unwrap().insert(parsed.revocation_ids()[0]);
    let (status, body) = send(&svc, request(&call_body("db_query", None), Some(&good))).await;
    assert_eq!(
        (status, error_of(&body).0.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token"),
        "revoked after caching"
    );
}

/// The code of a 400's JSON-RPC error body, checking its shape.
fn json_rpc_error(body: &str) -> i64 {
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["jsonrpc"], "2.0", "{body}");
    assert_eq!(v["id"], Value::Null, "{body}");
    assert!(v["error"]["message"].as_str().is_some(), "{body}");
    assert_eq!(v.as_object().unwrap().len(), 3, "{body}");
    v["error"]["code"].as_i64().unwrap()
}

fn call(params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}"#)
}

#[tokio::test]
async fn ambiguous_messages_are_refused_before_the_token_is_looked_at() {
    let svc = app(pipeline(Arc::default()));
    let good = token(reference());
    let invalid = [
        // Duplicates the parser behind us might resolve the other way.
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"shell"}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{"name":"shell"}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell"},"params":{"name":"db_query"}}"#.to_owned(),
        call(r#"{"name":"shell","name":"db_query"}"#),
        call(r#"{"name":"db_query","name":"shell"}"#),
        call(&format!(
            r#"{{"name":"db_query","_meta":{{"token":"{good}"}},"_meta":{{"token":"{good}"}}}}"#
        )),
        call(&format!(
            r#"{{"name":"db_query","_meta":{{"token":"{good}","token":"{good}"}}}}"#
        )),
        call(r#"{"name":"shell","na\u006de":"db_query"}"#),
        // One message per request, and it is an object.
        format!("[{}]", call_body("db_query", None)),
        r#""tools/call""#.to_owned(),
        "42".to_owned(),
        "null".to_owned(),
    ];
    let mut not_utf8 = call_body("db_query", None).into_bytes();
    let inside_a_string = {
        let mut b = call(r#"{"name":"db_query","arguments":{"q":"XX"}}"#).into_bytes();
        let at = b.windows(2).position(|w| w == b"XX").unwrap();
        b.splice(at..at + 2, [0xff, 0xfe]);
        b
    };
    not_utf8.push(0xff);
    // Two messages in one body: a streaming parser behind us could act on the second.
    let two = format!(
        "{}{}",
        call_body("db_query", None),
        call_body("shell", None)
    );
    let parse_errors = [
        not_utf8,
        inside_a_string,
        b"{\"jsonrpc\":".to_vec(),
        two.into_bytes(),
    ];

    let cases = invalid
        .into_iter()
        .map(|b| (b.into_bytes(), -32600))
        .chain(parse_errors.into_iter().map(|b| (b, -32700)));
    for (body, code) in cases {
        let shown = String::from_utf8_lossy(&body).into_owned();
        for header in [Some(good.as_str()), None, Some("!!!")] {
            let mut b = Request::post("/mcp").header("host", "mcp.example");
            if let Some(t) = header {
                b = b.header("x-mcpvault-token", t);
            }
            let (status, answer) = send(&svc, b.body(Body::from(body.clone())).unwrap()).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{shown} (token {header:?})"
            );
            assert_eq!(json_rpc_error(&answer), code, "{shown}: {answer}");
        }
    }
}

#[tokio::test]
async fn a_duplicate_tool_name_is_refused_even_when_the_last_is_granted() {
    let svc = app(pipeline(Arc::default()));
    let good = token(reference());
    // serde_json keeps the last name (granted), a first-key parser behind us would run `shell`.
    let smuggled = call(r#"{"name":"shell","arguments":{},"name":"db_query"}"#);
    let (status, body) = send(&svc, request(&smuggled, Some(&good))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(json_rpc_error(&body), -32600);
    let escaped = call(r#"{"name":"shell","arguments":{},"n\u0061me":"db_query"}"#);
    let (status, body) = send(&svc, request(&escaped, Some(&good))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The same call, once, is fine; duplicates inside the arguments are the tool's business.
    let once = call(r#"{"name":"db_query","arguments":{"q":1,"q":2}}"#);
    let (status, body) = send(&svc, request(&once, Some(&good))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "100"));
}

#[tokio::test]
async fn the_header_wins_over_meta_and_tokens_are_cached() {
    let p = pipeline(Arc::default());
    let svc = app(p.clone());
    let narrow = token(reference().limit("db_query", "max_rows", 5));
    let wide = token(reference());
    let (status, body) = send(
        &svc,
        request(&call_body("db_query", Some(&wide)), Some(&narrow)),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "5"));
    for _ in 0..5 {
        send(&svc, request(&call_body("db_query", None), Some(&narrow))).await;
    }
    assert_eq!(
        p.cache().len(),
        1,
        "one verified token cached, checked once"
    );
}

fn signer(seed: u8) -> SigningKey {
    SigningKey::ed25519_from_seed(&[seed; 32]).unwrap()
}

fn signed(seed: u8, keyid: &str, body: &str, token: &str) -> Request<Body> {
    let body = body.as_bytes().to_vec();
    let mut req = http::Request::post("http://mcp.example/mcp")
        .header("host", "mcp.example")
        .header("x-mcpvault-token", token)
        .header("content-digest", mcp_content_digest(&body))
        .body(body.clone())
        .unwrap();
    let key = signer(seed);
    let spec = mcp_spec(&RequestView::of(&req), &key, keyid, None, now()).unwrap();
    sign(RequestView::of(&req), &spec, &key)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    let (mut parts, body) = req.into_parts();
    parts.uri = "/mcp".parse().unwrap();
    Request::from_parts(parts, Body::from(body))
}

#[tokio::test]
async fn holder_bound_tokens_need_their_signer() {
    let worker = "https://agents.example/agents/worker@agents.example";
    let thief = "https://agents.example/agents/thief@agents.example";
    let pk = |s: u8| KeyPair::from_seed(&[s; 32]).unwrap().public_key();
    let resolver = StaticResolver::new()
        .with_ed25519(worker, &pk(1))
        .with_ed25519(thief, &pk(2));
    let sig = SignatureLayer::new(SignaturePipeline::new(
        crate::origin(),
        resolver,
        ShardedReplayStore::new(1000),
    ));
    let svc = ServiceBuilder::new()
        .layer(sig)
        .layer(CapabilityLayer::new(pipeline(Arc::default())))
        .service(tower::service_fn(|req: Request<Body>| async move {
            let who = req
                .extensions()
                .get::<VerifiedCaller>()
                .unwrap()
                .identity
                .clone();
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::from(who)))
        }));
    let bound = Token::from_base64(&token(reference()))
        .unwrap()
        .attenuate(Restriction::new().holder(worker))
        .unwrap()
        .to_base64();
    let body = call_body("db_query", None);
    let (status, who) = send(&svc, signed(1, worker, &body, &bound)).await;
    assert_eq!(
        (status, who.as_str()),
        (StatusCode::OK, "worker@agents.example")
    );
    let (status, body) = send(&svc, signed(2, thief, &body, &bound)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a stolen token signed by another agent"
    );
    assert!(error_of(&body).1.unwrap().contains("holder"));
}

#[tokio::test]
async fn grants_extractor_and_require_tool_guard() {
    use axum::Router;
    use axum::routing::post;
    let good = token(reference());
    let router = Router::new()
        .route(
            "/db",
            post(|g: Grants| async move { g.limit("db_query", "max_rows").unwrap().to_string() })
                .route_layer(require_tool("db_query", Some("read"))),
        )
        .route(
            "/files",
            post(|| async { "files" }).route_layer(require_tool("file_read", None)),
        )
        .layer(CapabilityLayer::new(pipeline(Arc::default())));
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let req = |path: &str| {
        Request::post(path)
            .header("x-mcpvault-token", &good)
            .body(Body::from(list.clone()))
            .unwrap()
    };
    let (status, body) = send(&router, req("/db")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "100"));
    let (status, body) = send(&router, req("/files")).await;
    assert_eq!(
        (status, error_of(&body).0.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    // Without the layer the extractor refuses with missing_token.
    let bare = Router::new().route(
        "/db",
        post(|g: Grants| async move { g.issuer().to_owned() }),
    );
    let (status, body) = send(&bare, Request::post("/db").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (status, error_of(&body).0.as_str()),
        (StatusCode::UNAUTHORIZED, "missing_token")
    );
}
