//! vouch-keys: replay check-and-insert (sharded memory, Redis on loopback), pin lookup, cached
//! resolver hit. The Redis bench starts its own `redis-server`; without one it fails loudly.
//!
//! `replay_memory_insert_1m_live` measures one insert into a sharded store holding about a
//! million live entries, in a steady state: simulated time advances with the inserts, so that
//! old buckets expire as new entries come in. Before it runs, the store's bytes per live entry
//! (from `ShardedReplayStore::bytes`, and the process RSS growth as a cross-check) are printed
//! and written to `target/vouch-bench/replay-store.json` for `cargo xtask bench`.

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
use vouch_httpsig::{
    Algorithm, ReplayGuard, ReplayKey, RequestView, SigningKey, Verifier, VerifyPolicy, mcp_spec,
    sign,
};
use vouch_keys::*;
use vouch_token::KeyPair;

const NOW: u64 = 1_700_000_000;

/// Inserts per simulated second in the steady-state replay bench: with signatures kept 300 s,
/// plus up to a 60 s bucket, about a million entries are live.
const RATE: u64 = 3_000;
/// Distinct keys the steady-state bench cycles through: a key comes back after
/// `KEY_POOL / RATE` = 433 simulated seconds, when its old entry's bucket (at most 360 s) is
/// gone, so every insert is a fresh one.
const KEY_POOL: usize = 1_300_000;
/// Identities the steady-state inserts are spread over.
const IDENTITIES: usize = 1_000;
/// The goal for the replay store's memory, in bytes per live entry.
const BYTES_GOAL: usize = 48;

/// Distinct replay keys from really signed and verified requests, HMAC-signed (fast) on every
/// core.
fn many_replay_keys(n: usize) -> Vec<ReplayKey> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = n.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let count = per.min(n.saturating_sub(t * per));
                scope.spawn(move || hmac_replay_keys(count))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn hmac_replay_keys(n: usize) -> Vec<ReplayKey> {
    let key = SigningKey::hmac_sha256(b"bench secret");
    let verifying = key.verifying_key().unwrap();
    let verifier = Verifier::new(VerifyPolicy::mcp().algorithms(&[Algorithm::HmacSha256]));
    let template = http::Request::get("https://mcp.example/mcp")
        .body(Vec::new())
        .unwrap();
    (0..n)
        .map(|_| {
            let mut req = template.clone();
            let spec = mcp_spec(&RequestView::of(&req), &key, "agent", None, NOW).unwrap();
            sign(RequestView::of(&req), &spec, &key)
                .unwrap()
                .apply(req.headers_mut())
                .unwrap();
            verifier
                .prepare(RequestView::of(&req), NOW)
                .unwrap()
                .verify(&verifying)
                .unwrap()
                .replay_key()
        })
        .collect()
}

/// The process's resident memory, in bytes (Linux; None elsewhere).
fn rss_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<usize>()
        .ok()?;
    Some(kb * 1024)
}

/// A sharded store in a steady state of about a million live entries.
struct SteadyState {
    store: ShardedReplayStore,
    keys: Vec<ReplayKey>,
    owners: Vec<String>,
    tick: u64,
}

impl SteadyState {
    fn new(keys: Vec<ReplayKey>) -> Self {
        Self {
            store: ShardedReplayStore::new(2_000_000),
            keys,
            owners: (0..IDENTITIES)
                .map(|i| format!("https://agents.example/agents/a{i}@agents.example"))
                .collect(),
            tick: 0,
        }
    }

    /// One fresh signature, `tick / RATE` simulated seconds in.
    fn insert_next(&mut self) {
        let n = usize::try_from(self.tick).unwrap();
        let now = NOW + self.tick / RATE;
        let key = self.keys[n % self.keys.len()];
        let owner = &self.owners[n % self.owners.len()];
        ready(self.store.check_and_insert(key, owner, now + 300, now)).unwrap();
        self.tick += 1;
    }
}

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

    eprintln!("signing {KEY_POOL} requests for the replay store at 1 M live entries ...");
    let pool = many_replay_keys(KEY_POOL);
    let rss_before = rss_bytes();
    let mut steady = SteadyState::new(pool);
    // One full cycle of the key pool: every bucket of the window is filled, older ones dropped.
    for _ in 0..KEY_POOL {
        steady.insert_next();
    }
    let live = steady.store.len();
    let bytes = steady.store.bytes();
    let per_entry = bytes as f64 / live as f64;
    let rss_per_entry = rss_bytes()
        .zip(rss_before)
        .map(|(after, before)| after.saturating_sub(before) as f64 / live as f64);
    eprintln!(
        "replay store: {live} live entries, {} identities, {bytes} B estimated = {per_entry:.1} B \
         per live entry (goal <= {BYTES_GOAL}); process RSS grew {} B per live entry",
        steady.store.identities(),
        rss_per_entry.map_or("(unknown)".to_owned(), |r| format!("{r:.1}"))
    );
    let json = serde_json::json!({
        "live_entries": live,
        "identities": steady.store.identities(),
        "bytes": bytes,
        "bytes_per_entry": per_entry,
        "rss_bytes_per_entry": rss_per_entry,
        "goal_bytes_per_entry": BYTES_GOAL,
        "bench": "keys/replay_memory_insert_1m_live",
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("vouch-bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("replay-store.json"), json.to_string()).unwrap();
    g.bench_function("replay_memory_insert_1m_live", |b| {
        b.iter(|| steady.insert_next())
    });
    drop(steady);

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
