//! vouch-tower: the capability check on a cached token (goal: a cache hit ≤ 2 µs) next to the
//! same check on a cold token.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use vouch_token::{KeyPair, Restriction, Token, Verifier};
use vouch_tower::CapabilityPipeline;

fn bench(c: &mut Criterion) {
    let root = KeyPair::from_seed(&[11; 32]).unwrap();
    let base = Token::mint(
        &root,
        "auth-server",
        "agent-a",
        Restriction::new()
            .tools(["db_query", "file_read", "search"])
            .operations("db_query", ["read", "write"])
            .limit("db_query", "max_rows", 100)
            .ttl(3600),
    )
    .unwrap();
    // The three-block reference token.
    let token = base
        .attenuate(
            Restriction::new()
                .tools(["db_query"])
                .operations("db_query", ["read"])
                .limit("db_query", "max_rows", 50),
        )
        .unwrap()
        .attenuate(Restriction::new().limit("db_query", "max_rows", 10))
        .unwrap()
        .to_base64();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // An empty body (an SSE GET, say): the check is token-only, no JSON parsing measured.
    let parts = http::Request::get("/mcp")
        .header("x-mcpvault-token", &token)
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let pipeline = CapabilityPipeline::new(Verifier::new(root.public_key()));
    pipeline.authorize(&parts, b"", None, now).unwrap();

    let mut g = c.benchmark_group("capability");
    g.bench_function("cached_token_hit", |b| {
        b.iter(|| {
            pipeline
                .authorize(black_box(&parts), b"", None, now)
                .unwrap()
        })
    });
    g.bench_function("cold_token", |b| {
        b.iter_batched(
            || CapabilityPipeline::new(Verifier::new(root.public_key())),
            |p| p.authorize(black_box(&parts), b"", None, now).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2)).sample_size(40);
    targets = bench
}
criterion_main!(benches);
