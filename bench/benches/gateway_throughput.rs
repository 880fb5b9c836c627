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
//! Throughput and latency are measured at `CONNECTIONS` connections, then latency again at one
//! connection (one request in flight: the round trip without queueing). Each is measured in
//! rounds that alternate the two sides (and which goes first), on fresh servers each time, so
//! that whatever else the machine does at the time weighs on both alike; the rounds are pooled.
//! Prints req/s and p50/p99 of each, the ratio gateway/`Protected` and the latency the gateway adds, and writes them to
//! `target/vouch-bench/gateway-throughput.json` for `cargo xtask bench`.

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

/// A fresh unprotected upstream and a fresh gateway in front of it: the gateway's address.
fn start_gateway(upstream_thread: bool) -> SocketAddr {
    let (upstream_listener, upstream) = listener();
    let (l, addr) = listener();
    let app = rmcp_load::gateway(upstream, public_origin(), REPLAY_CAPACITY);
    if upstream_thread {
        serve_on_one_thread("upstream", upstream_listener, unprotected());
        on_one_thread("gateway", move || serve(l, app));
    } else {
        on_one_thread("gateway", move || async move {
            let upstream_listener = tokio::net::TcpListener::from_std(upstream_listener).unwrap();
            tokio::spawn(async move {
                axum::serve(upstream_listener, unprotected()).await.unwrap();
            });
            serve(l, app).await;
        });
    }
    addr
}

/// `rounds` runs of `load` against fresh `Protected` servers and fresh gateways, alternating
/// (and alternating which goes first), with the same signed requests; (`Protected`, gateway,
/// each round's gateway/`Protected` req/s).
fn compare(
    signed: &Arc<Vec<Prepared>>,
    rounds: usize,
    load: Load,
    upstream_thread: bool,
) -> (Measured, Measured, Vec<f64>) {
    let (mut p, mut g, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (pr, gr) = if round % 2 == 0 {
            let pr = rmcp_load::sample(start_protected(), signed, false, load);
            (
                pr,
                rmcp_load::sample(start_gateway(upstream_thread), signed, false, load),
            )
        } else {
            let gr = rmcp_load::sample(start_gateway(upstream_thread), signed, false, load);
            (
                rmcp_load::sample(start_protected(), signed, false, load),
                gr,
            )
        };
        let (pm, gm) = (
            Measured::of(std::slice::from_ref(&pr)),
            Measured::of(std::slice::from_ref(&gr)),
        );
        ratios.push(gm.rps / pm.rps);
        p.push(pr);
        g.push(gr);
    }
    (Measured::of(&p), Measured::of(&g), ratios)
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
    let (protected, gateway, ratios) = compare(&signed, ROUNDS, throughput, upstream_thread);
    let (protected_1, gateway_1, ratios_1) =
        compare(&signed, LATENCY_ROUNDS, latency, upstream_thread);

    let ratio = gateway.rps / protected.rps;
    let (added_p50, added_p99) = added(&gateway, &protected);
    let (added_p50_1, added_p99_1) = added(&gateway_1, &protected_1);
    println!();
    println!("rmcp tools/call, stateless JSON: vouch gateway -> unprotected rmcp vs Protected");
    println!("layout: {layout}; the load generator on its own thread; all on 127.0.0.1");
    println!(
        "  {:<30} {:>9} {:>9} {:>9} {:>9}",
        "", "req/s", "p50 µs", "p99 µs", "requests"
    );
    println!(
        "{CONNECTIONS} connections ({ROUNDS} rounds of {} s each, pooled)",
        MEASURE.as_secs_f64()
    );
    row("upstream alone (no vouch)", &upstream);
    row("Protected", &protected);
    row("gateway -> upstream", &gateway);
    println!(
        "  gateway/Protected req/s: {ratio:.3} (goal >= 0.8; rounds: {})",
        rounds(&ratios)
    );
    println!("  added by the gateway: p50 {added_p50:+} µs, p99 {added_p99:+} µs");
    println!(
        "1 connection ({LATENCY_ROUNDS} rounds of {} s each, pooled)",
        LATENCY_MEASURE.as_secs_f64()
    );
    row("Protected", &protected_1);
    row("gateway -> upstream", &gateway_1);
    println!(
        "  added by the gateway: p50 {added_p50_1:+} µs, p99 {added_p99_1:+} µs (req/s ratio {:.3}; rounds: {})",
        gateway_1.rps / protected_1.rps,
        rounds(&ratios_1)
    );

    let json = serde_json::json!({
        "connections": CONNECTIONS,
        "seconds": MEASURE.as_secs_f64() * ROUNDS as f64,
        "layout": layout,
        "upstream": upstream.json(),
        "protected": protected.json(),
        "gateway": gateway.json(),
        "protected_1": protected_1.json(),
        "gateway_1": gateway_1.json(),
    });
    rmcp_load::write_result("gateway-throughput.json", &json);
}
