//! The rmcp load run shared by `benches/rmcp_throughput.rs` and `benches/gateway_throughput.rs`:
//! the tool server (one `add` tool, stateless JSON mode), the signing client's requests, and the
//! load generator.
//!
//! The load generator runs on its own thread (a current-thread tokio runtime) and keeps a number
//! of HTTP/1.1 keep-alive connections busy over loopback, each sending the next request of a
//! prepared list as soon as the previous answer is in. Requests are prepared (and signed) before
//! the clock starts, so the client's signing is not counted. Every response must be 200 with the
//! right sum, or the run fails. Latency is measured per request from just before it is sent to
//! its last body byte; requests that start during the warmup are not counted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a bench fixture: a broken fixture is a failed run"
)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use vouch_httpsig::{RequestView, SigningKey, mcp_content_digest, mcp_spec, sign};
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_rmcp::{OperationMap, Protected};
use vouch_token::{KeyPair, Restriction, Token, Verifier};
use vouch_tower::{CapabilityPipeline, Origin, SignaturePipeline};

/// The load generator's signing identity (keyid).
pub const AGENT: &str = "https://agents.example/agents/load@agents.example";

/// The seed of the agent's Ed25519 key.
const AGENT_SEED: [u8; 32] = [1; 32];

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

/// rmcp's configuration for the tool server: stateless, JSON responses, no SSE keep-alive.
pub fn config() -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
}

/// The token issuer's root key.
pub fn root() -> KeyPair {
    KeyPair::from_seed(&[42; 32]).unwrap()
}

/// The operation each tool of the server needs, from its annotations (`add` is `read`).
pub fn operations() -> OperationMap {
    OperationMap::from_tools(&Adder::tool_router().list_all())
}

/// The tool server without vouch, at `/mcp`.
pub fn unprotected() -> axum::Router {
    let service: StreamableHttpService<Adder, LocalSessionManager> =
        StreamableHttpService::new(|| Ok(adder()), Arc::default(), config());
    axum::Router::new().route_service("/mcp", service)
}

/// The signature pipeline both protected servers use: reached at `origin`, resolving the agent's
/// key, with a replay store of `capacity` nonces whose per-identity share is the whole store
/// (one load-generating identity on purpose).
pub fn signatures(origin: Origin, capacity: usize) -> SignaturePipeline {
    let agent = KeyPair::from_seed(&AGENT_SEED).unwrap().public_key();
    SignaturePipeline::new(
        origin,
        StaticResolver::new().with_ed25519(AGENT, &agent),
        ShardedReplayStore::with_config(
            vouch_keys::ReplayConfig::new(capacity).identity_share(capacity),
        ),
    )
}

/// The capability pipeline both protected servers use: tokens from [`root`].
pub fn capabilities() -> CapabilityPipeline {
    CapabilityPipeline::new(Verifier::new(root().public_key()))
}

/// `vouch gateway`'s router in front of the unprotected server at `upstream`, configured as
/// [`protected`] is: the same signatures, token and operations, no session binding, and a rate
/// limit far above what one server thread can serve (never limits, but is checked per request).
pub fn gateway(upstream: SocketAddr, origin: Origin, capacity: usize) -> axum::Router {
    configured(
        vouch_gateway::Gateway::new(
            &format!("http://{upstream}/mcp"),
            signatures(origin, capacity),
            capabilities(),
        )
        .expect("an http:// upstream"),
    )
}

/// [`gateway`], reaching the unprotected server over the Unix domain socket at `socket`
/// (`Host: localhost`, which rmcp admits by default).
#[cfg(unix)]
pub fn gateway_unix(socket: &std::path::Path, origin: Origin, capacity: usize) -> axum::Router {
    configured(
        vouch_gateway::Gateway::new(
            "http://localhost/mcp",
            signatures(origin, capacity),
            capabilities(),
        )
        .expect("an http:// upstream")
        .upstream_unix_socket(socket)
        .expect("a socket path"),
    )
}

/// The settings [`gateway`] and [`gateway_unix`] share.
fn configured(gateway: vouch_gateway::Gateway) -> axum::Router {
    let unlimited = std::num::NonZeroU32::new(1_000_000).unwrap_or(std::num::NonZeroU32::MIN);
    let mut gateway = gateway
        .rate_limit(vouch_tower::RateLimitLayer::per_second(
            unlimited, unlimited,
        ))
        .session_binding(None);
    for (tool, operation) in operations().iter() {
        gateway = gateway.operation(tool, operation);
    }
    gateway.into_router()
}

/// The tool server inside vouch-rmcp's `Protected`, at `/mcp`: no session binding (stateless)
/// and no per-identity rate limit (one load-generating identity on purpose).
pub fn protected(signatures: SignaturePipeline) -> axum::Router {
    Protected::new(signatures, capabilities())
        .tools(&Adder::tool_router().list_all())
        .config(config())
        .session_binding(None)
        .rate_limit(None)
        .serve(|| Ok(adder()))
}

/// A listener on a free port of 127.0.0.1 (non-blocking, for tokio), and its address.
pub fn listener() -> (std::net::TcpListener, SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Runs `task()` on a new thread called `name` (what `perf report --sort comm` shows), in a
/// current-thread tokio runtime of its own.
pub fn on_one_thread<F, Fut>(name: &str, task: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(task());
        })
        .unwrap();
}

/// Serves `app` on `listener` with `axum::serve`, on a thread of its own called `name`.
pub fn serve_on_one_thread(name: &str, listener: std::net::TcpListener, app: axum::Router) {
    on_one_thread(name, move || async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}

fn body(i: usize) -> Bytes {
    let (a, b) = (i % 1000, 7);
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"add","arguments":{{"a":{a},"b":{b}}}}}}}"#
    ))
}

fn base_headers(authority: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_str(authority).unwrap());
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

/// One prepared request: its head, its body, and the sum the answer must carry.
pub type Prepared = (HeaderMap, Bytes, usize);

/// 1 000 unsigned `tools/call` requests addressed (`Host`) to `authority`, to cycle through.
pub fn unsigned_requests(authority: &str) -> Vec<Prepared> {
    (0..1000)
        .map(|i| (base_headers(authority), body(i), i % 1000 + 7))
        .collect()
}

/// `n` signed `tools/call` requests for `origin` (`Host` and the signed `@authority`), each
/// with its own nonce and the same token (`add`, attenuated to the agent as holder) in
/// `x-mcpvault-token`, signed by the agent now.
pub fn signed_requests(origin: &Origin, n: usize) -> Vec<Prepared> {
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
    let key = SigningKey::ed25519_from_seed(&AGENT_SEED).unwrap();
    let uri: http::Uri = format!("{origin}/mcp").parse().unwrap();
    let method = http::Method::POST;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (0..n)
        .map(|i| {
            let body = body(i);
            let mut headers = base_headers(origin.authority());
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

/// How long a load run warms up and measures, and over how many connections.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Load {
    /// Concurrent keep-alive connections, each with one request in flight.
    pub connections: usize,
    /// Requests started before this are sent but not counted.
    pub warmup: Duration,
    /// Requests started in this window after the warmup are counted.
    pub measure: Duration,
}

impl Load {
    /// `connections` connections, warming up for `warmup`, measuring for `measure`.
    pub fn new(connections: usize, warmup: Duration, measure: Duration) -> Self {
        Self {
            connections,
            warmup,
            measure,
        }
    }
}

/// What one load run measured.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Measured {
    /// Requests counted.
    pub requests: usize,
    /// Requests counted per second of the measuring window.
    pub rps: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
}

impl Measured {
    /// `{"rps", "p50_us", "p99_us"}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"rps": self.rps, "p50_us": self.p50_us, "p99_us": self.p99_us})
    }
}

/// One connection's loop: take the next request, send it, check the answer, record latency
/// while the clock is running.
async fn connection(
    addr: SocketAddr,
    requests: Arc<Vec<Prepared>>,
    next: Arc<AtomicUsize>,
    cycle: bool,
    start: Instant,
    load: Load,
) -> (Vec<u32>, usize) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut latencies = Vec::new();
    let mut answered = 0;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= load.warmup + load.measure {
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
        answered += 1;
        if elapsed >= load.warmup {
            latencies.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        }
    }
    (latencies, answered)
}

/// The latencies (µs) of the requests one load run counted, and how long it counted them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Samples {
    /// One per counted request, µs.
    pub latencies_us: Vec<u32>,
    /// The measuring window.
    pub measured_for: Duration,
    /// Requests answered in the whole run, warmup included.
    pub sent: usize,
}

impl Measured {
    /// Requests per second over all the windows of `runs` together, and the percentiles of all
    /// their latencies pooled.
    pub fn of(runs: &[Samples]) -> Self {
        let mut latencies: Vec<u32> = runs
            .iter()
            .flat_map(|r| r.latencies_us.iter().copied())
            .collect();
        let seconds: f64 = runs.iter().map(|r| r.measured_for.as_secs_f64()).sum();
        assert!(!latencies.is_empty(), "no request was counted");
        latencies.sort_unstable();
        let pct = |p: f64| u64::from(latencies[((latencies.len() as f64 - 1.0) * p) as usize]);
        Self {
            requests: latencies.len(),
            rps: latencies.len() as f64 / seconds,
            p50_us: pct(0.50),
            p99_us: pct(0.99),
        }
    }
}

/// Runs `load` against the server at `addr` from this thread, with `requests` in order (each
/// once, or cycling through them if `cycle`); what it counted. Panics if the requests run out
/// before the measuring window ends, or on any wrong answer.
pub fn sample(addr: SocketAddr, requests: &Arc<Vec<Prepared>>, cycle: bool, load: Load) -> Samples {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let (latencies, sent): (Vec<u32>, usize) = rt.block_on(async {
        let tasks: Vec<_> = (0..load.connections)
            .map(|_| {
                tokio::spawn(connection(
                    addr,
                    requests.clone(),
                    next.clone(),
                    cycle,
                    start,
                    load,
                ))
            })
            .collect();
        let (mut all, mut sent) = (Vec::new(), 0);
        for t in tasks {
            let (l, n) = t.await.unwrap();
            all.extend(l);
            sent += n;
        }
        (all, sent)
    });
    let measured_for = start
        .elapsed()
        .saturating_sub(load.warmup)
        .min(load.measure);
    assert!(
        measured_for >= load.measure,
        "ran out of prepared requests before the measurement ended; prepare more"
    );
    Samples {
        latencies_us: latencies,
        measured_for,
        sent,
    }
}

/// [`sample`], summed up.
pub fn run(addr: SocketAddr, requests: &Arc<Vec<Prepared>>, cycle: bool, load: Load) -> Measured {
    Measured::of(&[sample(addr, requests, cycle, load)])
}

/// Whether `cargo bench -- FILTER` leaves the bench `name` out (a filter that `name` does not
/// contain).
pub fn filtered_out(name: &str) -> bool {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .any(|f| !name.contains(f.as_str()))
}

/// Writes `value` to `target/vouch-bench/<file>`, for `cargo xtask bench`.
pub fn write_result(file: &str, value: &serde_json::Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("vouch-bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), value.to_string()).unwrap();
}

/// The CPU time this process's threads called `name` have used so far, user and kernel
/// (`/proc/self/task/*/schedstat`, in nanoseconds; Linux only, zero elsewhere). Threads of
/// earlier runs keep their names but sit idle, so the difference between two reads is what the
/// current one used.
pub fn thread_cpu(name: &str) -> Duration {
    cpu_of(|comm| comm == name)
}

/// The CPU time the live threads of this process whose name `which` accepts have used so far
/// (as [`thread_cpu`]).
pub fn cpu_of(which: impl Fn(&str) -> bool) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut ns = 0;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !which(comm.trim_end()) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(ns)
}
