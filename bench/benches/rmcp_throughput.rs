//! Throughput of a real rmcp server (one `add` tool, stateless JSON mode), unprotected and
//! protected by vouch (signature + cached capability token), in one run.
//!
//! The server runs on one thread (a current-thread tokio runtime); a load generator on another
//! thread keeps `CONNECTIONS` HTTP/1.1 keep-alive connections busy over loopback with requests
//! signed before the clock starts, so the client's signing is not counted. Every protected
//! request has its own nonce (the replay cache would refuse a repeat), and every response must be
//! 200 with the right sum, or the run fails. The server, the requests and the load generator are
//! in `vouch_bench::rmcp_load`.
//!
//! Prints req/s and p50/p99 latency for both, and writes them to
//! `target/vouch-bench/rmcp-throughput.json` for `cargo xtask bench`.

#![allow(missing_docs, reason = "a bench")]

use std::sync::Arc;
use std::time::Duration;

use vouch_bench::rmcp_load::{
    self, Load, listener, protected, serve_on_one_thread, signatures, signed_requests, unprotected,
    unsigned_requests,
};
use vouch_tower::Origin;

const CONNECTIONS: usize = 16;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);
/// Pre-signed protected requests: more than the protected server can serve in warmup + measure.
const SIGNED_REQUESTS: usize = 90_000;

fn main() {
    // `cargo bench -- FILTER`: run only if the filter matches this bench.
    if rmcp_load::filtered_out("rmcp_throughput") {
        return;
    }
    let load = Load::new(CONNECTIONS, WARMUP, MEASURE);
    let (plain_listener, plain) = listener();
    serve_on_one_thread("unprotected", plain_listener, unprotected());
    let requests = Arc::new(unsigned_requests(&plain.to_string()));
    let unprotected = rmcp_load::run(plain, &requests, true, load);

    let (guarded_listener, guarded) = listener();
    let origin = Origin::http(guarded);
    serve_on_one_thread(
        "protected",
        guarded_listener,
        protected(signatures(origin.clone(), SIGNED_REQUESTS * 2)),
    );
    eprintln!("signing {SIGNED_REQUESTS} requests before the clock starts ...");
    let requests = Arc::new(signed_requests(&origin, SIGNED_REQUESTS));
    let protected = rmcp_load::run(guarded, &requests, false, load);

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
        "unprotected": unprotected.json(),
        "protected": protected.json(),
    });
    rmcp_load::write_result("rmcp-throughput.json", &json);
}
