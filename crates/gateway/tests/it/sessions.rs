//! Session binding through the gateway: an upstream that issues `Mcp-Session-Id` on
//! `initialize` and records every request and `DELETE`; agents that try each other's sessions,
//! open far more than their share, and leave sessions idle.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::routing::any;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::{Value, json};
use vouch_gateway::{Gateway, IDENTITY_HEADER};
use vouch_httpsig::{RequestView, SigningKey, mcp_content_digest, mcp_spec, sign};
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_token::{KeyPair, Verifier};
use vouch_tower::{
    CapabilityPipeline, Origin, ServeConfig, SessionBindingLayer, SignaturePipeline, TOKEN_HEADER,
};

use crate::{AGENT, PATIENCE, now, root, send, text, token};

/// The second agent: another identity, another key.
pub(crate) const OTHER: &str = "https://agents.example/agents/other@agents.example";

/// The signing key of `keyid` (one of [`AGENT`] and [`OTHER`]).
fn seed_of(keyid: &str) -> [u8; 32] {
    if keyid == AGENT { [1; 32] } else { [2; 32] }
}

/// The gateway's keyid and key, when it signs for the upstream.
const GATEWAY: &str = "https://gateway.example/agents/gateway@gateway.example";
const GATEWAY_SEED: [u8; 32] = [5; 32];

/// One request the upstream received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: Method,
    pub(crate) session: Option<String>,
    pub(crate) identity: Option<String>,
    /// For a `DELETE`, when the upstream checks the gateway's signature: the verified
    /// identity, or the refusal's reason.
    pub(crate) verified: Option<Result<String, String>>,
}

/// An MCP upstream with sessions: `initialize` gets a new `Mcp-Session-Id` (`up-1`, `up-2`, …),
/// every other request is answered `{"ok": true}`, a `DELETE` 200.
#[derive(Clone)]
pub(crate) struct SessionUpstream {
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    issued: Arc<AtomicUsize>,
    /// Checks the signature of each `DELETE` (the gateway's key, for the upstream's origin).
    verifier: Option<Arc<SignaturePipeline>>,
}

impl SessionUpstream {
    pub(crate) fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The `initialize`s that reached the upstream.
    pub(crate) fn initializes(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }

    pub(crate) fn deletes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == Method::DELETE)
            .collect()
    }

    /// The requests the upstream saw in `session`.
    pub(crate) fn in_session(&self, session: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.session.as_deref() == Some(session))
            .collect()
    }
}

async fn mcp(State(up): State<SessionUpstream>, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let header =
        |headers: &HeaderMap, name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let verified = match (&up.verifier, parts.method == Method::DELETE) {
        (Some(pipeline), true) => Some(
            pipeline
                .verify(&parts, &body, now())
                .await
                .map(|caller| caller.identity)
                .map_err(|r| r.reason().to_owned()),
        ),
        _ => None,
    };
    let rpc = message["method"].as_str().map(str::to_owned);
    up.seen.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        session: header(&parts.headers, "mcp-session-id"),
        identity: header(&parts.headers, IDENTITY_HEADER.as_str()),
        verified,
    });
    if parts.method == Method::DELETE {
        return Response::new(Body::empty());
    }
    let mut response = Response::builder().header("content-type", "application/json");
    if rpc.as_deref() == Some("initialize") {
        let n = up.issued.fetch_add(1, Ordering::SeqCst) + 1;
        response = response.header("mcp-session-id", format!("up-{n}"));
    }
    let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": {"ok": true}});
    response.body(Body::from(answer.to_string())).unwrap()
}

/// The upstream, checking `DELETE` signatures if `verify`.
pub(crate) async fn session_upstream(verify: bool) -> SessionUpstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let verifier = verify.then(|| {
        Arc::new(SignaturePipeline::new(
            Origin::http(addr),
            StaticResolver::new().with_ed25519(
                GATEWAY,
                &KeyPair::from_seed(&GATEWAY_SEED).unwrap().public_key(),
            ),
            ShardedReplayStore::new(1_000),
        ))
    });
    let up = SessionUpstream {
        addr,
        seen: Arc::default(),
        issued: Arc::default(),
        verifier,
    };
    let app = axum::Router::new()
        .route("/mcp", any(mcp))
        .with_state(up.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    up
}

/// A gateway in front of `up` that knows both agents, with `sessions` as its binding, adjusted
/// by `tune`; its address.
pub(crate) async fn session_gateway(
    up: &SessionUpstream,
    sessions: SessionBindingLayer,
    tune: impl FnOnce(Gateway) -> Gateway,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut resolver = StaticResolver::new();
    for keyid in [AGENT, OTHER] {
        resolver = resolver.with_ed25519(
            keyid,
            &KeyPair::from_seed(&seed_of(keyid)).unwrap().public_key(),
        );
    }
    let app = tune(
        Gateway::new(
            &up.url(),
            SignaturePipeline::new(
                Origin::http(addr),
                resolver,
                ShardedReplayStore::new(10_000),
            ),
            CapabilityPipeline::new(Verifier::new(root().public_key())),
        )
        .unwrap()
        .session_binding(Some(sessions)),
    )
    .into_router();
    tokio::spawn(async move {
        vouch_tower::serve(listener, app, ServeConfig::default())
            .await
            .unwrap()
    });
    addr
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1.0"}}}"#;
const SEARCH: &str =
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search","arguments":{}}}"#;

/// A request to the gateway at `gw` signed by `keyid`, with the token, in `session` if given
/// (the session id covered by the signature, as the MCP profile requires).
pub(crate) fn request_as(
    gw: SocketAddr,
    keyid: &str,
    method: Method,
    session: Option<&str>,
    body: &str,
) -> Request<Vec<u8>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{gw}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header(TOKEN_HEADER, token());
    if !body.is_empty() {
        builder = builder
            .header("content-type", "application/json")
            .header("content-digest", mcp_content_digest(body.as_bytes()));
    }
    if let Some(s) = session {
        builder = builder
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-06-18");
    }
    let mut req = builder.body(body.as_bytes().to_vec()).unwrap();
    let key = SigningKey::ed25519_from_seed(&seed_of(keyid)).unwrap();
    let spec = mcp_spec(
        &RequestView::of(&req),
        &key,
        keyid,
        Some(TOKEN_HEADER.as_str()),
        now(),
    )
    .unwrap();
    sign(RequestView::of(&req), &spec, &key)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    req
}

/// The gateway's answer: status, `Mcp-Session-Id`, `Retry-After`, JSON body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) session: Option<String>,
    pub(crate) retry_after: Option<u64>,
    pub(crate) body: Value,
}

impl Answer {
    async fn of(response: Response<Incoming>) -> Self {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let session = header("mcp-session-id");
        let retry_after = header("retry-after").map(|v| v.parse().unwrap());
        let status = response.status();
        let text = text(response).await;
        Self {
            status,
            session,
            retry_after,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    /// The refusal's `detail.detail` code.
    pub(crate) fn reason(&self) -> &str {
        self.body["detail"]["detail"].as_str().unwrap_or("")
    }
}

/// Sends `method` with `body` as `keyid`, in `session` if given.
pub(crate) async fn call(
    gw: SocketAddr,
    keyid: &str,
    method: Method,
    session: Option<&str>,
    body: &str,
) -> Answer {
    Answer::of(send(request_as(gw, keyid, method, session, body)).await).await
}

/// Opens a session as `keyid`: the session id, or the refusal.
pub(crate) async fn open(gw: SocketAddr, keyid: &str) -> Result<String, Answer> {
    let answer = call(gw, keyid, Method::POST, None, INITIALIZE).await;
    match (&answer.status, &answer.session) {
        (&StatusCode::OK, Some(session)) => Ok(session.clone()),
        _ => Err(answer),
    }
}

/// Calls `search` in `session` as `keyid`.
pub(crate) async fn search(gw: SocketAddr, keyid: &str, session: &str) -> Answer {
    call(gw, keyid, Method::POST, Some(session), SEARCH).await
}

#[tokio::test]
async fn a_session_used_by_another_identity_is_refused_and_never_reaches_the_upstream() {
    let up = session_upstream(false).await;
    let gw = session_gateway(&up, SessionBindingLayer::default(), |g| g).await;
    let mine = open(gw, AGENT).await.unwrap();
    assert_eq!(
        up.in_session(&mine).len(),
        0,
        "initialize has no session yet"
    );

    // The other agent signs validly, holds a valid token, and names the session.
    let stolen = search(gw, OTHER, &mine).await;
    assert_eq!(stolen.status, StatusCode::FORBIDDEN, "{}", stolen.body);
    assert_eq!(stolen.reason(), "session_bound_to_another_caller");
    let ended = call(gw, OTHER, Method::DELETE, Some(&mine), "").await;
    assert_eq!(ended.status, StatusCode::FORBIDDEN, "{}", ended.body);
    assert!(
        up.in_session(&mine).is_empty(),
        "neither request was forwarded: {:?}",
        up.seen()
    );

    // The owner's session is untouched and still works, as the owner.
    let used = search(gw, AGENT, &mine).await;
    assert_eq!(used.status, StatusCode::OK, "{}", used.body);
    let forwarded = up.in_session(&mine);
    assert_eq!(forwarded.len(), 1);
    assert_eq!(
        forwarded[0].identity.as_deref(),
        Some("worker@agents.example")
    );
    // A session id the gateway never saw issued is not forwarded either.
    let made_up = search(gw, OTHER, "up-999").await;
    assert_eq!(made_up.status, StatusCode::NOT_FOUND, "{}", made_up.body);
    assert!(up.in_session("up-999").is_empty());
}

#[tokio::test]
async fn one_identity_over_its_cap_gets_429_and_another_keeps_its_sessions() {
    const CAP: usize = 2;
    let up = session_upstream(false).await;
    let gw = session_gateway(
        &up,
        SessionBindingLayer::default().max_per_identity(CAP),
        |g| g,
    )
    .await;
    let theirs = open(gw, OTHER).await.unwrap();

    let mut mine = Vec::new();
    let mut refused = 0;
    for _ in 0..5 * CAP {
        match open(gw, AGENT).await {
            Ok(session) => mine.push(session),
            Err(answer) => {
                assert_eq!(
                    answer.status,
                    StatusCode::TOO_MANY_REQUESTS,
                    "{}",
                    answer.body
                );
                assert_eq!(answer.reason(), "session_limit_per_identity");
                assert!(answer.session.is_none());
                let retry = answer.retry_after.expect("a Retry-After");
                assert!((1..=60).contains(&retry), "Retry-After: {retry}");
                refused += 1;
            }
        }
    }
    assert_eq!(mine.len(), CAP, "the agent got its share, no more");
    assert_eq!(refused, 4 * CAP);
    assert_eq!(
        up.initializes(),
        CAP + 1,
        "a refused initialize never reaches the upstream"
    );

    // The other identity's earlier session still works, and it can open another.
    let used = search(gw, OTHER, &theirs).await;
    assert_eq!(used.status, StatusCode::OK, "{}", used.body);
    let second = open(gw, OTHER).await.unwrap();
    assert_eq!(search(gw, OTHER, &second).await.status, StatusCode::OK);
    // The capped agent's own sessions were left alone too.
    for session in &mine {
        assert_eq!(search(gw, AGENT, session).await.status, StatusCode::OK);
    }
    // Ending one (DELETE, forwarded) gives the agent a place back.
    let ended = call(gw, AGENT, Method::DELETE, Some(&mine[0]), "").await;
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.body);
    assert_eq!(up.deletes().len(), 1);
    assert!(open(gw, AGENT).await.is_ok());
}

/// Waits until the upstream has seen a `DELETE` of `session`.
async fn deleted(up: &SessionUpstream, session: &str) -> Seen {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(d) = up
            .deletes()
            .into_iter()
            .find(|d| d.session.as_deref() == Some(session))
        {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no DELETE of {session} reached the upstream: {:?}",
            up.seen()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn an_idle_session_is_reclaimed_and_deleted_upstream(signing: bool) -> Seen {
    // Long enough that opening the session (one request) never takes it.
    let idle = Duration::from_millis(800);
    let up = session_upstream(signing).await;
    let gw = session_gateway(&up, SessionBindingLayer::new(100, idle), |g| {
        if signing {
            g.sign_upstream(
                SigningKey::ed25519_from_seed(&GATEWAY_SEED).unwrap(),
                GATEWAY,
            )
        } else {
            g
        }
    })
    .await;
    let old = open(gw, AGENT).await.unwrap();
    assert_eq!(search(gw, AGENT, &old).await.status, StatusCode::OK);
    assert!(up.deletes().is_empty());

    tokio::time::sleep(idle + Duration::from_millis(300)).await;
    // Any request reclaims idle sessions; here another agent's initialize.
    let fresh = open(gw, OTHER).await.unwrap();
    let delete = deleted(&up, &old).await;
    assert_eq!(
        up.deletes().len(),
        1,
        "only the idle session: {:?}",
        up.seen()
    );
    assert_ne!(fresh, old);

    // The reclaimed session is gone for its owner too, and that is not forwarded.
    let before = up.seen().len();
    let gone = search(gw, AGENT, &old).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.body);
    assert_eq!(gone.reason(), "session_not_found");
    assert_eq!(up.seen().len(), before);
    delete
}

#[tokio::test]
async fn an_idle_session_is_reclaimed_and_a_delete_reaches_the_upstream() {
    let delete = an_idle_session_is_reclaimed_and_deleted_upstream(false).await;
    assert_eq!(
        delete.identity, None,
        "the gateway's own request, for no caller"
    );
}

#[tokio::test]
async fn the_delete_of_a_reclaimed_session_is_signed_when_the_gateway_signs() {
    let delete = an_idle_session_is_reclaimed_and_deleted_upstream(true).await;
    assert_eq!(
        delete.verified,
        Some(Ok("gateway@gateway.example".to_owned())),
        "the upstream verified the gateway's signature"
    );
}
