//! vouch-httpsig: sign and verify a 1 KiB MCP tools/call request (Ed25519, Content-Digest,
//! replay check), next to a bare ring Ed25519 verify of a message of the same size.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::hint::black_box;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use base64ct::Encoding as _;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ring::signature::KeyPair as _;
use vouch_httpsig::*;

const NOW: u64 = 1_700_000_000;
const KEYID: &str = "https://agents.example/agents/worker@example.com";

/// A JSON-RPC tools/call of exactly 1024 bytes.
fn body_1k() -> Vec<u8> {
    let head = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"db_query","arguments":{"sql":""#;
    let tail = r#""}}}"#;
    let mut s = String::from(head);
    while s.len() + tail.len() < 1024 {
        s.push('x');
    }
    s.push_str(tail);
    assert_eq!(s.len(), 1024);
    s.into_bytes()
}

fn signed(key: &SigningKey, body: &[u8]) -> http::Request<Vec<u8>> {
    let mut req = http::Request::post("https://mcp.example/mcp")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-06-18")
        .header("mcp-session-id", "3f1c0b9e-5a57-4f6e-9d1e-0c8f2b7a6d11")
        .header("content-digest", mcp_content_digest(body))
        .body(body.to_vec())
        .unwrap();
    let spec = mcp_spec(&RequestView::of(&req), key, KEYID, None, NOW).unwrap();
    sign(RequestView::of(&req), &spec, key)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    req
}

fn ready<T>(f: impl Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("memory replay guard is always ready"),
    }
}

fn full_verify(
    verifier: &Verifier,
    key: &VerifyingKey,
    req: &http::Request<Vec<u8>>,
    guard: &MemoryReplayGuard,
) {
    let verified = verifier
        .prepare(RequestView::of(req), NOW)
        .unwrap()
        .verify(key)
        .unwrap();
    ready(verified.check_replay(guard, "agent", NOW)).unwrap();
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::ed25519_from_seed(&[7; 32]).unwrap();
    let vk = key.verifying_key().unwrap();
    let body = body_1k();
    let verifier = Verifier::new(VerifyPolicy::mcp());
    let requests = [signed(&key, &body)];

    // Bare ring Ed25519 verify of a 1 KiB message.
    let ring_key = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
    let msg = vec![0x5a; 1024];
    let sig = ring_key.sign(&msg);
    let public = ring_key.public_key().as_ref().to_vec();

    let mut g = c.benchmark_group("httpsig_1k_tools_call");
    g.bench_function("ring_ed25519_verify_1k", |b| {
        b.iter(|| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public)
                .verify(black_box(&msg), sig.as_ref())
                .unwrap()
        })
    });
    // The same under vouch's rule (ZIP-215, ed25519-zebra), which every Ed25519 verify now uses.
    let public32: [u8; 32] = public.as_slice().try_into().unwrap();
    g.bench_function("zip215_ed25519_verify_1k", |b| {
        b.iter(|| {
            assert!(vouch_token::ed25519::verify(
                &public32,
                black_box(&msg),
                sig.as_ref()
            ))
        })
    });
    let decoded = vouch_token::ed25519::DecodedKey::decode(&public32).unwrap();
    g.bench_function("zip215_ed25519_verify_1k_decoded_key", |b| {
        b.iter(|| assert!(decoded.verify(black_box(&msg), sig.as_ref())))
    });
    // One request, as the bare verify uses one message (same cache conditions), and a fresh
    // replay store per iteration so that its check-and-insert succeeds every time.
    let one = &requests[0];
    g.bench_function("vouch_verify_full", |b| {
        b.iter_batched(
            || MemoryReplayGuard::new(64),
            |guard| full_verify(&verifier, &vk, black_box(one), &guard),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("vouch_prepare_only", |b| {
        b.iter(|| {
            black_box(
                verifier
                    .prepare(RequestView::of(black_box(one)), NOW)
                    .unwrap(),
            )
        })
    });
    // The head-first path a streaming server takes: the head, then the body in 256-byte chunks.
    g.bench_function("vouch_prepare_head_then_body", |b| {
        b.iter(|| {
            let (prepared, mut body) = verifier
                .prepare_head(RequestView::of(black_box(one)), NOW)
                .unwrap();
            for chunk in one.body().chunks(256) {
                body.update(chunk);
            }
            body.finish().unwrap();
            black_box(prepared)
        })
    });
    let prepared = verifier.prepare(RequestView::of(one), NOW).unwrap();
    g.bench_function("ring_ed25519_verify_base", |b| {
        b.iter(|| {
            assert!(vk.verify(black_box(prepared.base()), &{
                let s = one.headers()["signature"].to_str().unwrap();
                let b64 = &s[6..s.len() - 1];
                base64ct::Base64::decode_vec(b64).unwrap()
            }))
        })
    });
    g.bench_function("vouch_sign", |b| {
        b.iter(|| black_box(signed(&key, black_box(&body))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(60);
    targets = bench
}
criterion_main!(benches);
