//! Throughput of a real rmcp server (one `add` tool, stateless JSON mode), unprotected and
//! protected by vouch (signature + cached capability token), in one run: protected twice, with
//! Ed25519 verified one signature at a time and through the signature pipeline's coalescer (the
//! default, issue 17), each also at one connection for its median latency.
//!
//! The server runs on one thread (a current-thread tokio runtime); a load generator on another
//! thread keeps `CONNECTIONS` HTTP/1.1 keep-alive connections busy over loopback with requests
//! signed before the clock starts, so the client's signing is not counted. Every protected
//! request has its own nonce (the replay cache would refuse a repeat), and every response must be
//! 200 with the right sum, or the run fails. The server, the requests and the load generator are
//! in `vouch_bench::rmcp_load`.
//!
//! Prints req/s and p50/p99 latency for each, and writes them to
//! `target/vouch-bench/rmcp-throughput.json` for `cargo xtask bench`.

#![allow(
    missing_docs,
    clippy::indexing_slicing,
    reason = "a bench: a broken fixture is a failed run"
)]

use std::sync::Arc;
use std::time::Duration;

use vouch_bench::rmcp_load::{
    self, Load, Measured, listener, serve_on_one_thread, signatures, signed_requests, unprotected,
    unsigned_requests,
};
use vouch_tower::Origin;

const CONNECTIONS: usize = 16;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(3);
/// The three servers are measured in turn, this many times, and each figure pools its rounds:
/// a ratio is then not one five-second window's luck.
const ROUNDS: usize = 2;
/// Pre-signed protected requests per loaded window: more than a protected server can serve in
/// warmup + measure.
const SIGNED_REQUESTS: usize = 75_000;
/// Connections of the latency runs: one request in flight at a time.
const ONE: usize = 1;
/// Pre-signed requests for a window at one connection.
const ONE_REQUESTS: usize = 30_000;

fn main() {
    // `cargo bench -- FILTER`: run only if the filter matches this bench.
    if rmcp_load::filtered_out("rmcp_throughput") {
        return;
    }
    let load = Load::new(CONNECTIONS, WARMUP, MEASURE);
    let (plain_listener, plain) = listener();
    serve_on_one_thread("unprotected", plain_listener, unprotected());
    let plain_requests = Arc::new(unsigned_requests(&plain.to_string()));

    // The same protected server twice: Ed25519 verified one signature at a time, and through
    // the pipeline's coalescer (the default).
    let servers: Vec<_> = [("one_at_a_time", false), ("coalesced", true)]
        .into_iter()
        .map(|(name, coalesced)| {
            let (guarded_listener, guarded) = listener();
            let origin = Origin::http(guarded);
            let capacity = SIGNED_REQUESTS * ROUNDS + ONE_REQUESTS;
            let mut pipeline = signatures(origin.clone(), capacity);
            if !coalesced {
                pipeline = pipeline.coalescer(None);
            }
            let coalescer = pipeline.coalescing().cloned();
            serve_on_one_thread(name, guarded_listener, rmcp_load::protected(pipeline));
            (name, guarded, origin, coalescer)
        })
        .collect();

    let mut plain_runs = Vec::new();
    let mut loaded_runs = vec![Vec::new(); servers.len()];
    let mut one_runs = vec![Vec::new(); servers.len()];
    let mut batches = vec![None; servers.len()];
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS} ...", round + 1);
        plain_runs.push(rmcp_load::sample(plain, &plain_requests, true, load));
        for (i, (_, addr, origin, coalescer)) in servers.iter().enumerate() {
            let before = coalescer.as_ref().map(|c| c.stats());
            let requests = Arc::new(signed_requests(origin, SIGNED_REQUESTS));
            loaded_runs[i].push(rmcp_load::sample(*addr, &requests, false, load));
            // The mean batch under load (not the one-connection runs).
            if let (Some(c), Some(before)) = (coalescer, before) {
                let after = c.stats();
                let (sum, n) = batches[i].unwrap_or((0, 0));
                batches[i] = Some((
                    sum + after.batched_signatures - before.batched_signatures,
                    n + after.batches - before.batches,
                ));
            }
        }
        for (i, (_, addr, origin, _)) in servers.iter().enumerate() {
            let requests = Arc::new(signed_requests(origin, ONE_REQUESTS));
            let one = Load::new(ONE, WARMUP, MEASURE);
            one_runs[i].push(rmcp_load::sample(*addr, &requests, false, one));
        }
    }
    let unprotected = Measured::of(&plain_runs);
    let protected: Vec<_> = servers
        .iter()
        .enumerate()
        .map(|(i, (name, ..))| {
            let batch = batches[i].map(|(sum, n)| sum as f64 / n.max(1) as f64);
            (
                *name,
                Measured::of(&loaded_runs[i]),
                Measured::of(&one_runs[i]),
                batch,
            )
        })
        .collect();

    println!();
    println!(
        "rmcp tools/call, stateless JSON, server on one thread, {CONNECTIONS} connections \
         ({ROUNDS} rounds of {}s)",
        MEASURE.as_secs()
    );
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
        unreachable!("two protected servers")
    };
    println!(
        "protected/unprotected: one at a time {:.3}, coalesced {:.3} (mean batch {:.1}); \
         p50 at one connection: {} µs one at a time, {} µs coalesced",
        single.rps / unprotected.rps,
        coalesced.rps / unprotected.rps,
        batch.unwrap_or(0.0),
        single_one.p50_us,
        coalesced_one.p50_us,
    );
    let json = serde_json::json!({
        "connections": CONNECTIONS,
        "seconds": MEASURE.as_secs() * ROUNDS as u64,
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
