//! Session limits against a real rmcp server and real signed requests: one identity opening
//! session after session must not push anyone else out, nor grow the server without bound, and
//! a dropped binding must not leave its rmcp session behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::Method;
use rmcp::transport::streamable_http_server::session::SessionManager as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::Value;
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_reqwest::SigningMiddleware;
use vouch_rmcp::{
    DEFAULT_SESSION_IDLE, GrantGuard, OperationMap, Protected, SessionBindingExt as _,
    SessionBindingLayer,
};
use vouch_token::KeyPair;
use vouch_tower::{CapabilityPipeline, Origin, SignaturePipeline};

use crate::support::{
    OTHER, Tools, WORKER, http_client, seed_of, signing_key, verifier, worker_token,
};

/// The per-identity limit most tests use.
const CAP: usize = 4;

/// How the binding learns the rmcp session manager.
#[derive(Debug, Clone, Copy)]
enum Wiring {
    /// `Protected::session_manager(..).serve(..)`.
    Serve,
    /// A service built here, `Protected::protect`, and `SessionBindingLayer::session_manager`.
    Protect,
}

struct Fixture {
    url: String,
    manager: Arc<LocalSessionManager>,
    bindings: SessionBindingLayer,
}

impl Fixture {
    /// How many sessions rmcp holds in memory.
    async fn live(&self) -> usize {
        self.manager.sessions.read().await.len()
    }

    async fn rmcp_has(&self, session: &str) -> bool {
        self.manager.has_session(&Arc::from(session)).await.unwrap()
    }
}

async fn spawn_with(layer: SessionBindingLayer, wiring: Wiring) -> Fixture {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut resolver = StaticResolver::new();
    for keyid in [WORKER, OTHER] {
        resolver = resolver.with_ed25519(
            keyid,
            &KeyPair::from_seed(&seed_of(keyid)).unwrap().public_key(),
        );
    }
    let signatures = SignaturePipeline::new(
        Origin::http(addr),
        resolver,
        ShardedReplayStore::new(100_000),
    )
    .allowlist(|identity: &str| identity.ends_with("@agents.example"));
    let tools = Tools::tool_router().list_all();
    let config = StreamableHttpServerConfig::default().with_sse_keep_alive(None);
    let manager = Arc::new(LocalSessionManager::default());
    let protected = Protected::new(signatures, CapabilityPipeline::new(verifier()))
        .tools(&tools)
        .config(config.clone());
    let app = match wiring {
        Wiring::Serve => protected
            .session_binding(Some(layer.clone()))
            .session_manager(manager.clone())
            .serve(|| Ok(Tools::new())),
        Wiring::Protect => {
            let operations = OperationMap::from_tools(&tools);
            let service = StreamableHttpService::new(
                move || Ok(GrantGuard::new(Tools::new(), operations.clone())),
                manager.clone(),
                config,
            );
            protected
                .session_binding(Some(layer.clone().session_manager(manager.clone())))
                .protect(service)
        }
    };
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Fixture {
        url: format!("http://{addr}/mcp"),
        manager,
        bindings: layer,
    }
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1.0"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const ADD: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}"#;

#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    session: Option<String>,
    retry_after: Option<u64>,
}

impl Answer {
    /// `(error, detail)` of a refusal's JSON body.
    fn refusal(&self) -> (&str, &str) {
        let field = |name: &str| {
            self.body
                .pointer(&format!("/detail/{name}"))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        (field("error"), field("detail"))
    }
}

/// A request signed as `keyid`, with its own token, in `session` if given.
async fn send(url: &str, keyid: &str, method: Method, session: Option<&str>, body: &str) -> Answer {
    let mut req = http_client()
        .request(method, url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-mcpvault-token", worker_token(keyid))
        .body(body.to_owned())
        .build()
        .unwrap();
    if let Some(s) = session {
        req.headers_mut()
            .insert("mcp-session-id", s.parse().unwrap());
        req.headers_mut()
            .insert("mcp-protocol-version", "2025-06-18".parse().unwrap());
    }
    SigningMiddleware::new(signing_key(keyid), keyid)
        .sign_request(&mut req)
        .unwrap();
    let res = http_client().execute(req).await.unwrap();
    let status = res.status().as_u16();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let session = header("mcp-session-id");
    let retry_after = header("retry-after").map(|v| v.parse().unwrap());
    let text = res.text().await.unwrap();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        session,
        retry_after,
    }
}

/// Opens a session as `keyid` (`initialize`, then `notifications/initialized`), or the refusal.
async fn open(f: &Fixture, keyid: &str) -> Result<String, Answer> {
    let init = send(&f.url, keyid, Method::POST, None, INITIALIZE).await;
    let Some(session) = init.session.clone().filter(|_| init.status == 200) else {
        return Err(init);
    };
    let done = send(&f.url, keyid, Method::POST, Some(&session), INITIALIZED).await;
    assert_eq!(done.status, 202, "{}", done.body);
    Ok(session)
}

/// Calls the `add` tool in `session`.
async fn add(f: &Fixture, keyid: &str, session: &str) -> Answer {
    send(&f.url, keyid, Method::POST, Some(session), ADD).await
}

#[track_caller]
fn assert_ok(a: &Answer) {
    assert_eq!(a.status, 200, "{}", a.body);
}

async fn one_identity_opening_ten_times_its_cap_hurts_no_one_else(wiring: Wiring) {
    // Room for 16 sessions in all: without a per-identity limit, the worker's flood would
    // push the other agent's session out (404) and keep every rmcp session alive.
    let f = spawn_with(
        SessionBindingLayer::new(16, DEFAULT_SESSION_IDLE).max_per_identity(CAP),
        wiring,
    )
    .await;
    let theirs = open(&f, OTHER).await.unwrap();

    let mut mine = Vec::new();
    for _ in 0..10 * CAP {
        match open(&f, WORKER).await {
            Ok(session) => mine.push(session),
            Err(refused) => {
                assert_eq!(refused.status, 429, "{}", refused.body);
                assert_eq!(
                    refused.refusal(),
                    ("too_many_sessions", "session_limit_per_identity")
                );
                let retry = refused.retry_after.expect("a Retry-After");
                assert!((1..=60).contains(&retry), "Retry-After: {retry}");
            }
        }
    }
    assert_eq!(mine.len(), CAP, "the worker got its limit, no more");

    // The other agent's session still works, and it can open another one.
    assert_ok(&add(&f, OTHER, &theirs).await);
    let second = open(&f, OTHER).await.unwrap();
    assert_ok(&add(&f, OTHER, &second).await);
    // The worker's own sessions were left alone too.
    for session in &mine {
        assert_ok(&add(&f, WORKER, session).await);
    }
    // Memory stays bounded: rmcp holds exactly the bound sessions.
    assert_eq!(f.live().await, CAP + 2);
    assert_eq!(f.bindings.len(), CAP + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_opening_ten_times_its_cap_hurts_no_one_else_served() {
    one_identity_opening_ten_times_its_cap_hurts_no_one_else(Wiring::Serve).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_opening_ten_times_its_cap_hurts_no_one_else_protected() {
    one_identity_opening_ten_times_its_cap_hurts_no_one_else(Wiring::Protect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_cap_refuses_new_sessions_with_503_and_keeps_the_live_ones() {
    let f = spawn_with(
        SessionBindingLayer::new(3, DEFAULT_SESSION_IDLE).max_per_identity(2),
        Wiring::Serve,
    )
    .await;
    let live = [
        (WORKER, open(&f, WORKER).await.unwrap()),
        (WORKER, open(&f, WORKER).await.unwrap()),
        (OTHER, open(&f, OTHER).await.unwrap()),
    ];

    let refused = open(&f, OTHER).await.unwrap_err();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.refusal(), ("unavailable", "session_capacity_full"));
    assert!(refused.retry_after.is_some_and(|s| s >= 1));
    assert!(refused.session.is_none());
    // The worker is at its own limit: that is its 429, before the total.
    assert_eq!(open(&f, WORKER).await.unwrap_err().status, 429);

    for (keyid, session) in &live {
        assert_ok(&add(&f, keyid, session).await);
    }
    assert_eq!(
        f.live().await,
        3,
        "no session was built for a refused initialize"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_reclaimed_and_closed_in_rmcp() {
    // Long enough that opening a session (two requests) never takes it, even on a busy machine.
    let idle = Duration::from_millis(1500);
    let f = spawn_with(SessionBindingLayer::new(100, idle), Wiring::Serve).await;
    let old = open(&f, WORKER).await.unwrap();
    assert!(f.rmcp_has(&old).await);

    tokio::time::sleep(idle + Duration::from_millis(200)).await;
    // Any request reclaims idle sessions; here another agent's initialize.
    let fresh = open(&f, OTHER).await.unwrap();

    assert!(
        !f.rmcp_has(&old).await,
        "the reclaimed session is closed in rmcp"
    );
    assert!(f.rmcp_has(&fresh).await);
    assert_eq!(f.live().await, 1);
    assert_eq!(f.bindings.len(), 1);
    let gone = add(&f, WORKER, &old).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_rmcp_closed_on_its_own_free_their_places() {
    let f = spawn_with(
        SessionBindingLayer::default().max_per_identity(1),
        Wiring::Serve,
    )
    .await;
    let first = open(&f, WORKER).await.unwrap();
    assert_eq!(open(&f, WORKER).await.unwrap_err().status, 429);

    // rmcp ends the session on its own (its keep-alive, a crashed handler): the next
    // initialize finds the place free, without waiting for the idle time.
    f.manager
        .close_session(&Arc::from(first.as_str()))
        .await
        .unwrap();
    let second = open(&f, WORKER).await.unwrap();
    assert_eq!(f.bindings.len(), 1);
    assert_eq!(add(&f, WORKER, &first).await.status, 404);

    // A request rmcp answers 404 (session unknown) drops the binding as well.
    f.manager
        .close_session(&Arc::from(second.as_str()))
        .await
        .unwrap();
    assert_eq!(add(&f, WORKER, &second).await.status, 404);
    assert!(f.bindings.is_empty());
    let third = open(&f, WORKER).await.unwrap();
    assert_ok(&add(&f, WORKER, &third).await);
    assert_eq!(f.live().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ends_the_session_and_frees_its_place() {
    let f = spawn_with(
        SessionBindingLayer::default().max_per_identity(1),
        Wiring::Protect,
    )
    .await;
    let session = open(&f, WORKER).await.unwrap();
    let deleted = send(&f.url, WORKER, Method::DELETE, Some(&session), "").await;
    assert!((200..300).contains(&deleted.status), "{}", deleted.body);
    assert!(f.bindings.is_empty());
    assert_eq!(f.live().await, 0);
    let again = open(&f, WORKER).await.unwrap();
    assert_ok(&add(&f, WORKER, &again).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_initializes_from_one_identity_never_exceed_the_cap() {
    let f = Arc::new(
        spawn_with(
            SessionBindingLayer::default().max_per_identity(CAP),
            Wiring::Serve,
        )
        .await,
    );
    // Watch rmcp's session count while the initializes race.
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (f, done, most) = (f.clone(), done.clone(), most.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                most.fetch_max(f.live().await, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    let racers: Vec<_> = (0..6 * CAP)
        .map(|_| {
            let url = f.url.clone();
            tokio::spawn(async move { send(&url, WORKER, Method::POST, None, INITIALIZE).await })
        })
        .collect();
    let mut created = 0;
    for racer in racers {
        let answer = racer.await.unwrap();
        match answer.status {
            200 => {
                assert!(answer.session.is_some());
                created += 1;
            }
            429 => assert!(answer.session.is_none()),
            other => panic!("{other}: {}", answer.body),
        }
    }
    done.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    assert_eq!(created, CAP);
    assert!(
        most.load(Ordering::Relaxed) <= CAP,
        "rmcp held {} sessions at once",
        most.load(Ordering::Relaxed)
    );
    assert_eq!(f.live().await, CAP);
    assert_eq!(f.bindings.len(), CAP);
}
