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
    self, Load, listener, serve_on_one_thread, signatures, signed_requests, unprotected,
    unsigned_requests,
};
use vouch_tower::Origin;

const CONNECTIONS: usize = 16;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);
/// Pre-signed protected requests: more than the protected server can serve in warmup + measure.
const SIGNED_REQUESTS: usize = 120_000;

/// Connections of the latency runs: one request in flight at a time.
const ONE: usize = 1;

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

    // The same protected server twice: Ed25519 verified one signature at a time, and through
    // the pipeline's coalescer (the default), each measured under load and at one connection.
    let mut protected = Vec::new();
    for (name, coalesced) in [("one_at_a_time", false), ("coalesced", true)] {
        let (guarded_listener, guarded) = listener();
        let origin = Origin::http(guarded);
        let mut pipeline = signatures(origin.clone(), SIGNED_REQUESTS * 4);
        if !coalesced {
            pipeline = pipeline.coalescer(None);
        }
        let coalescer = pipeline.coalescing().cloned();
        serve_on_one_thread(name, guarded_listener, rmcp_load::protected(pipeline));
        eprintln!("signing {SIGNED_REQUESTS} requests before the clock starts ...");
        let requests = Arc::new(signed_requests(&origin, SIGNED_REQUESTS));
        let loaded = rmcp_load::run(guarded, &requests, false, load);
        let requests = Arc::new(signed_requests(&origin, SIGNED_REQUESTS / 2));
        let one = rmcp_load::run(guarded, &requests, false, Load::new(ONE, WARMUP, MEASURE));
        let batch = coalescer.map(|c| {
            let s = c.stats();
            s.batched_signatures as f64 / s.batches.max(1) as f64
        });
        protected.push((name, loaded, one, batch));
    }

    println!();
    println!("rmcp tools/call, stateless JSON, server on one thread");
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "", "req/s", "p50 µs", "p99 µs", "requests", "p50 µs (1)"
    );
    println!(
        "{:<26} {:>10.0} {:>10} {:>10} {:>10}",
        "unprotected",
        unprotected.rps,
        unprotected.p50_us,
        unprotected.p99_us,
        unprotected.requests
    );
    for (name, m, one, _) in &protected {
        println!(
            "{:<26} {:>10.0} {:>10} {:>10} {:>10} {:>12}",
            format!("protected, {name}"),
            m.rps,
            m.p50_us,
            m.p99_us,
            m.requests,
            one.p50_us
        );
    }
    let [
        (_, single, single_one, _),
        (_, coalesced, coalesced_one, batch),
    ] = &protected[..]
    else {
        unreachable!("two protected runs")
    };
    println!(
        "protected/unprotected ({CONNECTIONS} connections): one at a time {:.3}, coalesced {:.3} \
         (mean batch {:.1}); p50 at one connection: {} µs vs {} µs",
        single.rps / unprotected.rps,
        coalesced.rps / unprotected.rps,
        batch.unwrap_or(0.0),
        single_one.p50_us,
        coalesced_one.p50_us,
    );
    let json = serde_json::json!({
        "connections": CONNECTIONS,
        "seconds": MEASURE.as_secs(),
        "unprotected": unprotected.json(),
        "protected": coalesced.json(),
        "protected_one_at_a_time": single.json(),
        "one_connection": {
            "coalesced": coalesced_one.json(),
            "one_at_a_time": single_one.json(),
        },
        "mean_batch": batch,
    });
    rmcp_load::write_result("rmcp-throughput.json", &json);
}
