//! vouch-keys: replay check-and-insert (sharded memory, Redis on loopback), pin lookup, cached
//! resolver hit. The Redis bench starts its own `redis-server`; without one it fails loudly.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::Duration;

use std::future::Future;
use std::task::{Context, Poll, Waker};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use vouch_httpsig::{ReplayGuard, RequestView, SigningKey, Verifier, VerifyPolicy, mcp_spec, sign};
use vouch_keys::*;
use vouch_token::KeyPair;

const NOW: u64 = 1_700_000_000;

/// Distinct replay keys, from real verified signatures.
fn replay_keys(n: usize) -> Vec<vouch_httpsig::ReplayKey> {
    let key = SigningKey::ed25519_from_seed(&[4; 32]).unwrap();
    let verifier = Verifier::new(VerifyPolicy::mcp());
    (0..n)
        .map(|_| {
            let mut req = http::Request::get("https://mcp.example/mcp")
                .body(Vec::new())
                .unwrap();
            let spec = mcp_spec(&RequestView::of(&req), &key, "agent", None, NOW).unwrap();
            sign(RequestView::of(&req), &spec, &key)
                .unwrap()
                .apply(req.headers_mut())
                .unwrap();
            verifier
                .prepare(RequestView::of(&req), NOW)
                .unwrap()
                .verify(&key.verifying_key().unwrap())
                .unwrap()
                .replay_key()
        })
        .collect()
}

/// Polls a future that completes without waiting (memory stores, cache hits).
fn ready<T>(f: impl Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("expected a ready future"),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let keys = replay_keys(4096);
    let mut g = c.benchmark_group("keys");

    // 4096 distinct signatures inserted into a fresh store per iteration; reported per insert.
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("replay_memory_insert", |b| {
        b.iter_batched_ref(
            || ShardedReplayStore::new(1 << 20),
            |store| {
                for k in &keys {
                    ready(store.check_and_insert(*k, "agent", NOW + 300, NOW)).unwrap();
                }
            },
            BatchSize::PerIteration,
        )
    });
    let full = ShardedReplayStore::new(1 << 20);
    for k in &keys {
        ready(full.check_and_insert(*k, "agent", NOW + 300, NOW)).unwrap();
    }
    g.bench_function("replay_memory_refuse_replay", |b| {
        b.iter(|| {
            for k in &keys {
                assert!(
                    ready(full.check_and_insert(black_box(*k), "agent", NOW + 300, NOW)).is_err()
                );
            }
        })
    });
    g.throughput(Throughput::Elements(1));

    let pins = MemoryPinStore::new(100_000);
    for n in 0..10_000 {
        ready(pins.check_and_pin(
            &format!("https://agents.example/agents/a{n}@example.com"),
            "fp",
        ))
        .unwrap();
    }
    g.bench_function("pin_check_memory_10k_pins", |b| {
        b.iter(|| {
            ready(pins.check_and_pin(
                black_box("https://agents.example/agents/a5000@example.com"),
                "fp",
            ))
            .unwrap()
        })
    });

    let public = KeyPair::from_seed(&[1; 32]).unwrap().public_key();
    let cached = CachingResolver::new(
        StaticResolver::new().with_ed25519("agent-a", &public),
        CacheConfig::default(),
    );
    rt.block_on(cached.resolve("agent-a")).unwrap();
    g.bench_function("resolver_cached_hit", |b| {
        b.iter(|| ready(cached.resolve(black_box("agent-a"))).unwrap())
    });

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("the Redis bench needs redis-server ({e}); `apt-get install redis-server`")
        });
    let url = format!("redis://127.0.0.1:{port}/");
    let redis = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            rt.block_on(RedisReplayStore::connect(&url, "bench:")).ok()
        })
        .expect("redis-server did not come up");
    let mut j = 0usize;
    g.bench_function("replay_redis_round_trip", |b| {
        b.iter(|| {
            j += 1;
            // The first 4096 are inserts, later ones refused replays: one SET NX PX round trip
            // over loopback either way.
            let _ =
                rt.block_on(redis.check_and_insert(keys[j % keys.len()], "agent", NOW + 300, NOW));
        })
    });
    g.finish();
    let _ = server.kill();
    let _ = server.wait();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40);
    targets = bench
}
criterion_main!(benches);
