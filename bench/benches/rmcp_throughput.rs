//! Throughput of a real rmcp server (one `add` tool, stateless JSON mode), unprotected and
//! protected by vouch (signature + cached capability token), in one run.
//!
//! The server runs on one thread (a current-thread tokio runtime); a load generator on another
//! thread keeps `CONNECTIONS` HTTP/1.1 keep-alive connections busy over loopback with requests
//! signed before the clock starts, so the client's signing is not counted. Every protected
//! request has its own nonce (the replay cache would refuse a repeat), and every response must be
//! 200 with the right sum, or the run fails.
//!
//! Prints req/s and p50/p99 latency for both, and writes them to
//! `target/vouch-bench/rmcp-throughput.json` for `cargo xtask bench`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a bench: a broken fixture is a failed run"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use vouch_httpsig::{RequestView, SigningKey, mcp_content_digest, mcp_spec, sign};
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_rmcp::Protected;
use vouch_token::{KeyPair, Restriction, Token, Verifier};
use vouch_tower::{CapabilityPipeline, SignaturePipeline};

const AGENT: &str = "https://agents.example/agents/load@agents.example";
const CONNECTIONS: usize = 16;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);
/// Pre-signed protected requests: more than the protected server can serve in warmup + measure.
const SIGNED_REQUESTS: usize = 90_000;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(Debug, Clone)]
struct Adder {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Adder {
    #[tool(description = "Adds two numbers", annotations(read_only_hint = true))]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Adder {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

fn adder() -> Adder {
    Adder {
        tool_router: Adder::tool_router(),
    }
}

fn config() -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
}

fn root() -> KeyPair {
    KeyPair::from_seed(&[42; 32]).unwrap()
}

fn app(protected: bool, addr: std::net::SocketAddr) -> axum::Router {
    if !protected {
        let service: StreamableHttpService<Adder, LocalSessionManager> =
            StreamableHttpService::new(|| Ok(adder()), Default::default(), config());
        return axum::Router::new().route_service("/mcp", service);
    }
    let agent = KeyPair::from_seed(&[1; 32]).unwrap().public_key();
    let signatures = SignaturePipeline::new(
        vouch_tower::Origin::http(addr),
        StaticResolver::new().with_ed25519(AGENT, &agent),
        // One load-generating identity on purpose: its share is the whole store.
        ShardedReplayStore::with_config(
            vouch_keys::ReplayConfig::new(SIGNED_REQUESTS * 2).identity_share(SIGNED_REQUESTS * 2),
        ),
    );
    Protected::new(
        signatures,
        CapabilityPipeline::new(Verifier::new(root().public_key())),
    )
    .tools(&Adder::tool_router().list_all())
    .config(config())
    .session_binding(None)
    // One load-generating identity on purpose: no per-identity rate limit here.
    .rate_limit(None)
    .serve(|| Ok(adder()))
}

/// Serves `app(addr)` on one thread; returns its address.
fn serve_on_one_thread(
    app: impl FnOnce(std::net::SocketAddr) -> axum::Router,
) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app(addr);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    addr
}

fn body(i: usize) -> Bytes {
    let (a, b) = (i % 1000, 7);
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"add","arguments":{{"a":{a},"b":{b}}}}}}}"#
    ))
}

fn base_headers(addr: std::net::SocketAddr) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_str(&addr.to_string()).unwrap());
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "accept",
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    h.insert(
        "mcp-protocol-version",
        HeaderValue::from_static("2025-06-18"),
    );
    h
}

/// The requests one run cycles through: (headers, body, expected sum).
type Prepared = Vec<(HeaderMap, Bytes, usize)>;

fn unsigned_requests(addr: std::net::SocketAddr) -> Prepared {
    (0..1000)
        .map(|i| (base_headers(addr), body(i), i % 1000 + 7))
        .collect()
}

fn signed_requests(addr: std::net::SocketAddr) -> Prepared {
    let token = Token::mint(
        &root(),
        "bench",
        "load",
        Restriction::new().tools(["add"]).ttl(3600),
    )
    .unwrap()
    .attenuate(Restriction::new().holder(AGENT))
    .unwrap()
    .to_base64();
    let key = SigningKey::ed25519_from_seed(&[1; 32]).unwrap();
    let uri: http::Uri = format!("http://{addr}/mcp").parse().unwrap();
    let method = http::Method::POST;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (0..SIGNED_REQUESTS)
        .map(|i| {
            let body = body(i);
            let mut headers = base_headers(addr);
            headers.insert("x-mcpvault-token", HeaderValue::from_str(&token).unwrap());
            headers.insert(
                "content-digest",
                HeaderValue::from_str(&mcp_content_digest(&body)).unwrap(),
            );
            let signature = {
                let view = RequestView::from_parts(&method, &uri, &headers, &body);
                let spec = mcp_spec(&view, &key, AGENT, None, now).unwrap();
                sign(view, &spec, &key).unwrap()
            };
            signature.apply(&mut headers).unwrap();
            (headers, body, i % 1000 + 7)
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Measured {
    requests: usize,
    rps: f64,
    p50_us: u64,
    p99_us: u64,
}

/// One connection's loop: take the next request, send it, check the answer, record latency
/// while the clock is running.
async fn connection(
    addr: std::net::SocketAddr,
    requests: Arc<Prepared>,
    next: Arc<AtomicUsize>,
    cycle: bool,
    start: Instant,
) -> Vec<u32> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut latencies = Vec::new();
    loop {
        let elapsed = start.elapsed();
        if elapsed >= WARMUP + MEASURE {
            break;
        }
        let mut i = next.fetch_add(1, Ordering::Relaxed);
        if cycle {
            i %= requests.len();
        } else if i >= requests.len() {
            break;
        }
        let (headers, body, sum) = &requests[i];
        let mut req = Request::post("/mcp").body(Full::new(body.clone())).unwrap();
        *req.headers_mut() = headers.clone();
        let sent = Instant::now();
        sender.ready().await.unwrap();
        let res = sender.send_request(req).await.unwrap();
        let status = res.status();
        let text = res.into_body().collect().await.unwrap().to_bytes();
        let took = sent.elapsed();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&text));
        let needle = format!("\"text\":\"{sum}\"");
        assert!(
            std::str::from_utf8(&text).unwrap().contains(&needle),
            "wrong answer: {}",
            String::from_utf8_lossy(&text)
        );
        if elapsed >= WARMUP {
            latencies.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        }
    }
    latencies
}

fn load(addr: std::net::SocketAddr, requests: Prepared, cycle: bool) -> Measured {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut latencies: Vec<u32> = rt.block_on(async {
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                tokio::spawn(connection(
                    addr,
                    requests.clone(),
                    next.clone(),
                    cycle,
                    start,
                ))
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let measured_for = start.elapsed().saturating_sub(WARMUP).min(MEASURE);
    assert!(
        measured_for >= MEASURE,
        "ran out of pre-signed requests before the measurement ended; raise SIGNED_REQUESTS"
    );
    latencies.sort_unstable();
    let pct = |p: f64| u64::from(latencies[((latencies.len() as f64 - 1.0) * p) as usize]);
    Measured {
        requests: latencies.len(),
        rps: latencies.len() as f64 / measured_for.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

fn main() {
    // `cargo bench -- FILTER`: run only if the filter matches this bench.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if filter
        .iter()
        .any(|f| !"rmcp_throughput".contains(f.as_str()))
    {
        return;
    }
    let plain = serve_on_one_thread(|a| app(false, a));
    let unprotected = load(plain, unsigned_requests(plain), true);
    let guarded = serve_on_one_thread(|a| app(true, a));
    eprintln!("signing {SIGNED_REQUESTS} requests before the clock starts ...");
    let requests = signed_requests(guarded);
    let protected = load(guarded, requests, false);

    println!();
    println!("rmcp tools/call, stateless JSON, server on one thread, {CONNECTIONS} connections");
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>10}",
        "", "req/s", "p50 µs", "p99 µs", "requests"
    );
    for (name, m) in [("unprotected", unprotected), ("protected", protected)] {
        println!(
            "{name:<14} {:>10.0} {:>10} {:>10} {:>10}",
            m.rps, m.p50_us, m.p99_us, m.requests
        );
    }
    println!(
        "protected/unprotected: {:.3}",
        protected.rps / unprotected.rps
    );
    let json = serde_json::json!({
        "connections": CONNECTIONS,
        "seconds": MEASURE.as_secs(),
        "unprotected": {"rps": unprotected.rps, "p50_us": unprotected.p50_us, "p99_us": unprotected.p99_us},
        "protected": {"rps": protected.rps, "p50_us": protected.p50_us, "p99_us": protected.p99_us},
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("vouch-bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rmcp-throughput.json"), json.to_string()).unwrap();
}
