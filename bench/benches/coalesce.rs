//! vouch-httpsig's `Coalescer` (issue 17): the cost per signature of 16 concurrent Ed25519
//! verifications on a two-worker tokio runtime, each task verifying its own signature one at a
//! time vs all of them through the coalescer; and the cost of a batch of 16 holding one bad
//! signature against a good one.
//!
//! The concurrent benches measure the CPU time of every thread of the process (from
//! `/proc/self/task/*/schedstat`): the cost per core. Wall time is measured too. The ratios are
//! printed at the end. The whole signature layer under the same load is `benches/signature_layer.rs`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::cell::Cell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use vouch_httpsig::coalesce::Coalescer;
use vouch_httpsig::{SigningKey, VerifyingKey};

const CONCURRENT: usize = 16;

/// A signature base of the size of an MCP request's (about 400 bytes), distinct per request.
fn base(i: usize) -> Vec<u8> {
    let mut b = format!(
        "\"@method\": POST\n\"@target-uri\": https://mcp.example/mcp\n\"content-digest\": \
         sha-256=:{i:043}=:\n\"mcp-session-id\": 3f1c0b9e-5a57-4f6e-9d1e-0c8f2b7a6d11\n"
    )
    .into_bytes();
    b.resize(400, b'x');
    b
}

type Signed = Arc<Vec<(VerifyingKey, Vec<u8>, Vec<u8>)>>;

fn signed(bad: Option<usize>) -> Signed {
    Arc::new(
        (0..CONCURRENT)
            .map(|i| {
                let k = SigningKey::ed25519_from_seed(&[u8::try_from(i).unwrap() + 1; 32]).unwrap();
                let m = base(i);
                let mut s = k.sign(&m).unwrap();
                if bad == Some(i) {
                    s[40] ^= 1;
                }
                (k.verifying_key().unwrap(), m, s)
            })
            .collect(),
    )
}

/// CPU time used so far by every live thread of this process.
fn cpu_time() -> Duration {
    vouch_bench::rmcp_load::cpu_of(|_| true)
}

/// 16 tasks, each verifying its own signature `iters` times back to back (a closed loop, as 16
/// connections sending requests), all joined.
async fn closed_loop(items: &Signed, coalescer: Option<&Arc<Coalescer>>, iters: u64) {
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|i| {
            let items = Arc::clone(items);
            let coalescer = coalescer.cloned();
            tokio::spawn(async move {
                let (k, m, s) = &items[i];
                for _ in 0..iters {
                    let ok = match &coalescer {
                        Some(c) => c.verify(k, m.clone(), s).await,
                        None => k.verify(m, s),
                    };
                    assert!(ok);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Running totals of one bench: (measured time, rounds).
#[derive(Default)]
struct Total(Cell<(Duration, u64)>);

impl Total {
    fn add(&self, d: Duration, iters: u64) {
        let (t, n) = self.0.get();
        self.0.set((t + d, n + iters));
    }

    /// Mean µs per signature.
    fn per_signature(&self) -> f64 {
        let (t, n) = self.0.get();
        t.as_secs_f64() * 1e6 / (n as f64 * CONCURRENT as f64)
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let items = signed(None);
    let coalescer = Arc::new(Coalescer::new());
    let mut g = c.benchmark_group("coalesce_16_concurrent");
    let totals: [Total; 4] = Default::default();
    for (idx, (name, via)) in [
        ("one_at_a_time_cpu", None),
        ("coalesced_cpu", Some(&coalescer)),
    ]
    .into_iter()
    .enumerate()
    {
        let total = &totals[idx];
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = cpu_time();
                rt.block_on(closed_loop(&items, via, iters));
                let d = cpu_time() - start;
                total.add(d, iters);
                d
            })
        });
    }
    for (idx, (name, via)) in [
        ("one_at_a_time_wall", None),
        ("coalesced_wall", Some(&coalescer)),
    ]
    .into_iter()
    .enumerate()
    {
        let total = &totals[2 + idx];
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                rt.block_on(closed_loop(&items, via, iters));
                let d = start.elapsed();
                total.add(d, iters);
                d
            })
        });
    }
    g.finish();

    // A batch of 16 with one bad signature (first or last), against a good one.
    let good = signed(None);
    let refs = |s: &Signed| -> Vec<(VerifyingKey, Vec<u8>, Vec<u8>)> { s.to_vec() };
    let cases = [
        ("good", refs(&good)),
        ("one_bad_first", refs(&signed(Some(0)))),
        ("one_bad_last", refs(&signed(Some(CONCURRENT - 1)))),
    ];
    let single = Coalescer::new();
    let mut g = c.benchmark_group("coalesce_batch_of_16");
    let batch_totals: [Total; 3] = Default::default();
    for ((name, items), total) in cases.iter().zip(&batch_totals) {
        let args: Vec<(&VerifyingKey, &[u8], &[u8])> = items
            .iter()
            .map(|(k, m, s)| (k, m.as_slice(), s.as_slice()))
            .collect();
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(single.verify_all(black_box(&args)));
                }
                let d = start.elapsed();
                total.add(d, iters);
                d
            })
        });
    }
    g.finish();

    // The raw batch, by size: the cost model behind the choice of splitting (see the module
    // documentation of vouch_httpsig::coalesce).
    let raw: Vec<([u8; 32], Vec<u8>, [u8; 64])> = good
        .iter()
        .map(|(k, m, s)| {
            (
                k.public_bytes().try_into().unwrap(),
                m.clone(),
                s.as_slice().try_into().unwrap(),
            )
        })
        .collect();
    let mut g = c.benchmark_group("coalesce_raw_batch");
    for n in [1, 2, 4, 8, 16] {
        g.bench_function(format!("size_{n}"), |b| {
            b.iter(|| {
                let mut batch = vouch_token::ed25519::Batch::new();
                for (p, m, s) in &raw[..n] {
                    batch.add(p, m, s);
                }
                assert!(batch.verify());
            })
        });
    }
    g.finish();

    let s = coalescer.stats();
    let [one_cpu, co_cpu, one_wall, co_wall] = totals.each_ref().map(Total::per_signature);
    let [good, first, last] = batch_totals.each_ref().map(Total::per_signature);
    println!(
        "\ncoalesce, mean over the run, µs per signature with {CONCURRENT} concurrent \
         verifications:\n  CPU:  one at a time {one_cpu:.1}, coalesced {co_cpu:.1}: \
         coalesced verifies {:.2}x as many per core\n  wall: one at a time {one_wall:.1}, \
         coalesced {co_wall:.1} ({:.2}x)\n  coalescer: {} rounds, {} batches of {:.1} on average, \
         {} single verifies\nbatch of {CONCURRENT} with one bad signature: \
         {:.2}x a good one (bad first), {:.2}x (bad last)",
        one_cpu / co_cpu,
        one_wall / co_wall,
        s.rounds,
        s.batches,
        s.batched_signatures as f64 / s.batches.max(1) as f64,
        s.singles,
        first / good,
        last / good,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
