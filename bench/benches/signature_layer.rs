//! The signature layer alone (issue 17): verified requests per second per core with 16
//! concurrent signed requests, Ed25519 verified one signature at a time vs through the
//! pipeline's coalescer, in one run.
//!
//! Each run gives a fresh `SignaturePipeline` (the rmcp bench's: the agent's key, a replay store
//! holding every nonce) the same signed MCP `tools/call` requests (head and body, each with its
//! own nonce): 16 tasks on one thread (a current-thread tokio runtime, one core) take the next
//! request and run the whole decision on it (`SignaturePipeline::verify`: origin, policy,
//! signature base, key, signature, Content-Digest over the body, replay store) until all are
//! done. Every request must verify, or the run fails. Both modes run three times, alternating;
//! the figures are the sums. CPU time is the verifying thread's own (`/proc/self/task`), so the
//! rate per CPU second is the rate per core; wall-clock rates are printed too. The same runs on
//! a two-worker runtime are reported for comparison (per CPU second of both workers).
//!
//! Writes `target/vouch-bench/signature-layer.json` for `cargo xtask bench`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a bench"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::request::Parts;
use vouch_bench::rmcp_load::{self, signatures, signed_requests, thread_cpu};
use vouch_tower::Origin;

const CONCURRENT: usize = 16;
const REQUESTS: usize = 24_000;
const ROUNDS: usize = 3;

type Signed = Arc<Vec<(Parts, bytes::Bytes)>>;

/// The verifying thread's name (what its CPU time is read by).
fn thread(coalesced: bool) -> &'static str {
    if coalesced {
        "sig-coalesced"
    } else {
        "sig-single"
    }
}

/// Runs the requests through a fresh pipeline on a thread called `name` with `workers` runtime
/// threads (0: a current-thread runtime); wall time and the CPU time of the runtime's threads.
fn run(
    name: &'static str,
    workers: usize,
    concurrent: usize,
    coalesced: bool,
    requests: &Signed,
) -> (Duration, Duration, f64) {
    let origin = Origin::http(([127, 0, 0, 1], 1).into());
    let mut pipeline = signatures(origin, REQUESTS * 2);
    if !coalesced {
        pipeline = pipeline.coalescer(None);
    }
    let requests = Arc::clone(requests);
    let coalescer = pipeline.coalescing().cloned();
    let (wall, cpu) = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let rt = if workers == 0 {
                tokio::runtime::Builder::new_current_thread().build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .thread_name(name)
                    .build()
            }
            .unwrap();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let next = Arc::new(AtomicUsize::new(0));
            let cpu = thread_cpu(name);
            let start = Instant::now();
            rt.block_on(async {
                let tasks: Vec<_> = (0..concurrent)
                    .map(|_| {
                        let (pipeline, requests, next) =
                            (pipeline.clone(), Arc::clone(&requests), Arc::clone(&next));
                        tokio::spawn(async move {
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                let Some((parts, body)) = requests.get(i) else {
                                    break;
                                };
                                let caller = pipeline.verify(parts, body, now).await;
                                assert!(caller.is_ok(), "request {i}: {caller:?}");
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
            let wall = start.elapsed();
            (wall, thread_cpu(name) - cpu)
        })
        .unwrap()
        .join()
        .unwrap();
    let batch = coalescer.map_or(1.0, |c| {
        let s = c.stats();
        s.batched_signatures as f64 / s.batches.max(1) as f64
    });
    (wall, cpu, batch)
}

fn main() {
    if rmcp_load::filtered_out("signature_layer") {
        return;
    }
    let origin = Origin::http(([127, 0, 0, 1], 1).into());
    eprintln!("signing {REQUESTS} requests before the clock starts ...");
    let requests: Signed = Arc::new(
        signed_requests(&origin, REQUESTS)
            .into_iter()
            .map(|(headers, body, _)| {
                let (mut parts, ()) = http::Request::post("/mcp").body(()).unwrap().into_parts();
                parts.headers = headers;
                (parts, body)
            })
            .collect(),
    );
    let mut json = serde_json::Map::new();
    println!();
    println!(
        "signature layer alone, {CONCURRENT} concurrent requests, {REQUESTS} requests x {ROUNDS} \
         rounds per mode"
    );
    println!(
        "{:<34} {:>12} {:>12} {:>14}",
        "", "req/s wall", "req/CPU-s", "CPU µs / req"
    );
    for (runtime, workers) in [("one_thread", 0usize), ("two_workers", 2)] {
        let mut totals = [(Duration::ZERO, Duration::ZERO); 2];
        let mut batches = Vec::new();
        for _ in 0..ROUNDS {
            for (m, coalesced) in [false, true].into_iter().enumerate() {
                let (wall, cpu, batch) =
                    run(thread(coalesced), workers, CONCURRENT, coalesced, &requests);
                if coalesced {
                    batches.push(batch);
                }
                totals[m].0 += wall;
                totals[m].1 += cpu;
            }
        }
        let n = (REQUESTS * ROUNDS) as f64;
        let mut rates = Vec::new();
        for ((mode, (wall, cpu)), key) in ["one at a time", "coalesced"]
            .iter()
            .zip(totals)
            .zip(["one_at_a_time", "coalesced"])
        {
            let per_wall = n / wall.as_secs_f64();
            let per_cpu = n / cpu.as_secs_f64();
            println!(
                "{:<34} {per_wall:>12.0} {per_cpu:>12.0} {:>14.1}",
                format!("{runtime}, {mode}"),
                cpu.as_secs_f64() * 1e6 / n
            );
            json.insert(
                format!("{runtime}_{key}"),
                serde_json::json!({"rps_wall": per_wall, "rps_per_cpu_second": per_cpu}),
            );
            rates.push((per_wall, per_cpu));
        }
        let (ratio_wall, ratio_cpu) = (rates[1].0 / rates[0].0, rates[1].1 / rates[0].1);
        let batch = batches.iter().sum::<f64>() / batches.len() as f64;
        println!(
            "{runtime}: coalesced / one at a time: {ratio_cpu:.2}x per core, {ratio_wall:.2}x wall \
             (mean batch {batch:.1})"
        );
        json.insert(
            format!("{runtime}_ratio"),
            serde_json::json!({"per_core": ratio_cpu, "wall": ratio_wall, "mean_batch": batch}),
        );
    }
    // One request at a time: what the coalescer's yield adds to a request's latency when
    // nothing else is ready.
    let mut alone = [Duration::ZERO; 2];
    for _ in 0..ROUNDS {
        for (m, coalesced) in [false, true].into_iter().enumerate() {
            alone[m] += run(thread(coalesced), 0, 1, coalesced, &requests).0;
        }
    }
    let [single_us, coalesced_us] =
        alone.map(|wall| wall.as_secs_f64() * 1e6 / (REQUESTS * ROUNDS) as f64);
    println!(
        "one request at a time: {single_us:.1} µs per request one at a time, {coalesced_us:.1} µs \
         coalesced ({:+.1} µs)",
        coalesced_us - single_us
    );
    json.insert(
        "one_at_a_time_latency_us".into(),
        serde_json::json!({"one_at_a_time": single_us, "coalesced": coalesced_us}),
    );
    rmcp_load::write_result("signature-layer.json", &serde_json::Value::Object(json));
}
