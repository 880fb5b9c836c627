//! `vouch gateway` in front of an unprotected rmcp server against the same server inside
//! vouch-rmcp's `Protected`, in one run (issue 13: the gateway ≥ 0.8 × `Protected`'s req/s; the
//! latency it adds).
//!
//! The tool server is `rmcp_throughput`'s (one `add` tool, stateless JSON mode), and so are the
//! load generator, the signing identity and the token (`vouch_bench::rmcp_load`). Both protected
//! servers are configured alike: the same signature pipeline (one agent key, a replay store
//! whose per-identity share is the whole store), the same capability pipeline and operations
//! (`add` is `read`), no per-identity rate limit (the gateway's cannot be removed: it is set far
//! above the load), no session binding (the server is stateless), no metrics or audit hook.
//! Both are served by `vouch_tower::serve` with its default limits, and both answer to the same
//! public origin, [`PUBLIC_ORIGIN`], so the very same pre-signed requests (each with its own
//! nonce) go to each; every server starts with an empty replay store.
//!
//! Layout, all in this process on 127.0.0.1: `Protected` on one thread (a current-thread tokio
//! runtime); the gateway and its upstream on one thread too (one current-thread runtime serving
//! two listeners; the gateway forwards over loopback through its pooled keep-alive connections),
//! so both sides get the same one server thread; the load generator on another thread. With
//! `VOUCH_BENCH_UPSTREAM_THREAD=1` the upstream gets a thread of its own instead (three busy
//! threads then share the machine).
//!
//! The whole comparison runs twice: with the gateway reaching its upstream over loopback TCP (the
//! figure against the goal, at the top level of the JSON), then over a Unix domain socket
//! (`Gateway::upstream_unix_socket`, the sidecar shape; under `"unix"` in the JSON). `Protected`
//! is the same in both.
//!
//! Throughput and latency are measured at `CONNECTIONS` connections, then latency again at one
//! connection (one request in flight: the round trip without queueing). Each is measured in
//! rounds that alternate the two sides (and which goes first), on fresh servers each time, so
//! that whatever else the machine does at the time weighs on both alike; the rounds are pooled.
//! Besides req/s, the CPU time the server threads used per request (`/proc/self/task/*/schedstat`
//! of the `protected` thread, and of the `gateway` and `upstream` threads, over every request
//! answered, warmup included): when other work shares the machine, req/s says how much CPU the
//! server thread got, the CPU per request what it cost; their ratio Protected/gateway is what
//! the req/s ratio is on an otherwise idle machine with the server thread saturated.
//! Prints req/s and p50/p99 of each, the ratios gateway/`Protected`, the latency the gateway
//! adds and the CPU per request, and writes them to `target/vouch-bench/gateway-throughput.json`
//! for `cargo xtask bench`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench: a broken fixture is a failed run"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use vouch_bench::rmcp_load::{
    self, Load, Measured, Prepared, listener, on_one_thread, protected, serve_on_one_thread,
    signatures, signed_requests, unprotected, unsigned_requests,
};
use vouch_tower::{Origin, ServeConfig};

/// How clients address both protected servers (as if behind a port forward): the `Host` they
/// send and the `@authority` they sign.
const PUBLIC_ORIGIN: &str = "http://localhost:9421";
/// The throughput runs: connections, rounds (`Protected` and the gateway alternating, in
/// alternating order, each on fresh servers), warmup and measuring window of each.
const CONNECTIONS: usize = 16;
const ROUNDS: usize = 3;
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(2);
/// The latency runs, at one connection.
const LATENCY_ROUNDS: usize = 2;
const LATENCY_MEASURE: Duration = Duration::from_millis(1500);
/// Pre-signed requests: more than either server can serve in one warmup + measure.
const SIGNED_REQUESTS: usize = 60_000;
/// Replay store capacity: every nonce of one run fits.
const REPLAY_CAPACITY: usize = SIGNED_REQUESTS * 2;

fn public_origin() -> Origin {
    PUBLIC_ORIGIN.parse().unwrap()
}

/// `vouch_tower::serve` with its default limits, for `listener`.
async fn serve(listener: std::net::TcpListener, app: axum::Router) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    vouch_tower::serve(listener, app, ServeConfig::default())
        .await
        .unwrap();
}

/// A fresh `Protected` server on one thread; its address.
fn start_protected() -> SocketAddr {
    let (l, addr) = listener();
    let app = protected(signatures(public_origin(), REPLAY_CAPACITY));
    on_one_thread("protected", move || serve(l, app));
    addr
}

/// How the gateway reaches its upstream, and where the upstream runs.
#[derive(Debug, Clone, Copy)]
struct Transport {
    /// Over a Unix domain socket (`Gateway::upstream_unix_socket`) rather than loopback TCP.
    unix: bool,
    /// The upstream on a thread of its own rather than the gateway's.
    upstream_thread: bool,
}

/// The upstream's listener: loopback TCP, or a Unix socket.
enum UpstreamListener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl UpstreamListener {
    /// Serves the unprotected server (`axum::serve`) on the current runtime.
    async fn serve(self) {
        match self {
            Self::Tcp(l) => {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                axum::serve(l, unprotected()).await.unwrap();
            }
            Self::Unix(l) => {
                let l = tokio::net::UnixListener::from_std(l).unwrap();
                axum::serve(l, unprotected()).await.unwrap();
            }
        }
    }
}

/// A fresh socket path for an upstream (any earlier file removed).
fn socket_path() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("vouch-bench-{}-{n}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// A fresh unprotected upstream and a fresh gateway in front of it: the gateway's address.
fn start_gateway(transport: Transport) -> SocketAddr {
    let (upstream_listener, app) = if transport.unix {
        let path = socket_path();
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        l.set_nonblocking(true).unwrap();
        let app = rmcp_load::gateway_unix(&path, public_origin(), REPLAY_CAPACITY);
        (UpstreamListener::Unix(l), app)
    } else {
        let (l, upstream) = listener();
        let app = rmcp_load::gateway(upstream, public_origin(), REPLAY_CAPACITY);
        (UpstreamListener::Tcp(l), app)
    };
    let (l, addr) = listener();
    if transport.upstream_thread {
        on_one_thread("upstream", move || upstream_listener.serve());
        on_one_thread("gateway", move || serve(l, app));
    } else {
        on_one_thread("gateway", move || async move {
            tokio::spawn(upstream_listener.serve());
            serve(l, app).await;
        });
    }
    addr
}

/// The server threads' CPU time over some runs, and the requests they answered (warmup
/// included).
#[derive(Debug, Default, Clone, Copy)]
struct Cpu {
    used: Duration,
    requests: usize,
}

impl Cpu {
    fn us_per_request(self) -> f64 {
        self.used.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
}

/// One run of `load` against the server at `addr`, with the CPU its threads (`threads`, by
/// name) used, added to `cpu`.
fn sample(
    addr: SocketAddr,
    signed: &Arc<Vec<Prepared>>,
    load: Load,
    threads: &[&str],
    cpu: &mut Cpu,
) -> rmcp_load::Samples {
    let used = || {
        threads
            .iter()
            .map(|t| rmcp_load::thread_cpu(t))
            .sum::<Duration>()
    };
    let before = used();
    let samples = rmcp_load::sample(addr, signed, false, load);
    cpu.used += used().saturating_sub(before);
    cpu.requests += samples.sent;
    samples
}

/// What [`compare`] measured.
struct Compared {
    protected: Measured,
    gateway: Measured,
    /// Each round's gateway/`Protected` req/s.
    ratios: Vec<f64>,
    protected_cpu: Cpu,
    gateway_cpu: Cpu,
}

/// `rounds` runs of `load` against fresh `Protected` servers and fresh gateways, alternating
/// (and alternating which goes first), with the same signed requests.
fn compare(
    signed: &Arc<Vec<Prepared>>,
    rounds: usize,
    load: Load,
    transport: Transport,
) -> Compared {
    let (mut p, mut g, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pc, mut gc) = (Cpu::default(), Cpu::default());
    let gateway_threads: &[&str] = &["gateway", "upstream"];
    for round in 0..rounds {
        let mut protected = || sample(start_protected(), signed, load, &["protected"], &mut pc);
        let mut gateway = || {
            sample(
                start_gateway(transport),
                signed,
                load,
                gateway_threads,
                &mut gc,
            )
        };
        let (pr, gr) = if round % 2 == 0 {
            let pr = protected();
            (pr, gateway())
        } else {
            let gr = gateway();
            (protected(), gr)
        };
        let (pm, gm) = (
            Measured::of(std::slice::from_ref(&pr)),
            Measured::of(std::slice::from_ref(&gr)),
        );
        ratios.push(gm.rps / pm.rps);
        p.push(pr);
        g.push(gr);
    }
    Compared {
        protected: Measured::of(&p),
        gateway: Measured::of(&g),
        ratios,
        protected_cpu: pc,
        gateway_cpu: gc,
    }
}

fn row(name: &str, m: &Measured) {
    println!(
        "  {name:<30} {:>9.0} {:>9} {:>9} {:>9}",
        m.rps, m.p50_us, m.p99_us, m.requests
    );
}

fn added(gateway: &Measured, protected: &Measured) -> (i64, i64) {
    let d = |g: u64, p: u64| i64::try_from(g).unwrap() - i64::try_from(p).unwrap();
    (
        d(gateway.p50_us, protected.p50_us),
        d(gateway.p99_us, protected.p99_us),
    )
}

fn rounds(ratios: &[f64]) -> String {
    ratios
        .iter()
        .map(|r| format!("{r:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One transport's comparison, printed; its JSON fields (`protected`, `gateway`, their `_1`
/// latency runs, and the CPU per request of each side's server threads).
fn report(
    name: &str,
    signed: &Arc<Vec<Prepared>>,
    transport: Transport,
    throughput: Load,
    latency: Load,
) -> serde_json::Value {
    let many = compare(signed, ROUNDS, throughput, transport);
    let one = compare(signed, LATENCY_ROUNDS, latency, transport);
    let ratio = many.gateway.rps / many.protected.rps;
    let (added_p50, added_p99) = added(&many.gateway, &many.protected);
    let (added_p50_1, added_p99_1) = added(&one.gateway, &one.protected);
    let (p_cpu, g_cpu) = (
        many.protected_cpu.us_per_request(),
        many.gateway_cpu.us_per_request(),
    );
    println!();
    println!("gateway -> upstream over {name}");
    println!(
        "{CONNECTIONS} connections ({ROUNDS} rounds of {} s each, pooled)",
        MEASURE.as_secs_f64()
    );
    row("Protected", &many.protected);
    row("gateway -> upstream", &many.gateway);
    println!(
        "  gateway/Protected req/s: {ratio:.3} (goal >= 0.8; rounds: {})",
        rounds(&many.ratios)
    );
    println!("  added by the gateway: p50 {added_p50:+} µs, p99 {added_p99:+} µs");
    println!(
        "  server threads' CPU per request (warmup included): Protected {p_cpu:.1} µs, \
         gateway + upstream {g_cpu:.1} µs; Protected/gateway {:.3}",
        p_cpu / g_cpu
    );
    println!(
        "1 connection ({LATENCY_ROUNDS} rounds of {} s each, pooled)",
        LATENCY_MEASURE.as_secs_f64()
    );
    row("Protected", &one.protected);
    row("gateway -> upstream", &one.gateway);
    println!(
        "  added by the gateway: p50 {added_p50_1:+} µs, p99 {added_p99_1:+} µs (req/s ratio {:.3}; rounds: {})",
        one.gateway.rps / one.protected.rps,
        rounds(&one.ratios)
    );
    serde_json::json!({
        "protected": many.protected.json(),
        "gateway": many.gateway.json(),
        "protected_1": one.protected.json(),
        "gateway_1": one.gateway.json(),
        "protected_cpu_us": p_cpu,
        "gateway_cpu_us": g_cpu,
    })
}

fn main() {
    // `cargo bench -- FILTER`: run only if the filter matches this bench.
    if rmcp_load::filtered_out("gateway_throughput") {
        return;
    }
    let upstream_thread = std::env::var_os("VOUCH_BENCH_UPSTREAM_THREAD").is_some_and(|v| v == "1");
    let layout = if upstream_thread {
        "Protected on one thread; gateway on one thread, its upstream on another"
    } else {
        "Protected on one thread; gateway and its upstream together on one thread"
    };
    let throughput = Load::new(CONNECTIONS, WARMUP, MEASURE);
    let latency = Load::new(1, WARMUP, LATENCY_MEASURE);

    // The upstream alone (unsigned requests), for reference.
    let (plain_listener, plain) = listener();
    serve_on_one_thread("unprotected", plain_listener, unprotected());
    let unsigned = Arc::new(unsigned_requests(&plain.to_string()));
    let upstream = rmcp_load::run(plain, &unsigned, true, throughput);

    eprintln!("signing {SIGNED_REQUESTS} requests for {PUBLIC_ORIGIN} before the clock starts ...");
    let signed: Arc<Vec<Prepared>> = Arc::new(signed_requests(&public_origin(), SIGNED_REQUESTS));

    println!();
    println!("rmcp tools/call, stateless JSON: vouch gateway -> unprotected rmcp vs Protected");
    println!("layout: {layout}; the load generator on its own thread; all in one process");
    println!(
        "  {:<30} {:>9} {:>9} {:>9} {:>9}",
        "", "req/s", "p50 µs", "p99 µs", "requests"
    );
    row("upstream alone (no vouch)", &upstream);
    let tcp = report(
        "loopback TCP (127.0.0.1)",
        &signed,
        Transport {
            unix: false,
            upstream_thread,
        },
        throughput,
        latency,
    );
    let unix = report(
        "a Unix domain socket (Gateway::upstream_unix_socket)",
        &signed,
        Transport {
            unix: true,
            upstream_thread,
        },
        throughput,
        latency,
    );

    let mut json = serde_json::json!({
        "connections": CONNECTIONS,
        "seconds": MEASURE.as_secs_f64() * ROUNDS as f64,
        "layout": layout,
        "upstream": upstream.json(),
        "unix": unix,
    });
    // The loopback TCP figures at the top level, as before.
    if let (Some(json), serde_json::Value::Object(tcp)) = (json.as_object_mut(), tcp) {
        json.extend(tcp);
    }
    rmcp_load::write_result("gateway-throughput.json", &json);
}
