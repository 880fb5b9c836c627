//! Attacks over raw sockets against a server behind the signature layer and `vouch_tower::serve`:
//! relays to another server, absolute-form targets, duplicate fields, unsigned clients holding
//! bodies and heads, slow signed bodies, connection floods, one identity filling the replay
//! store. Each test is written the way the attack was made: bytes on a socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::support::now;
use axum::Router;
use axum::routing::post;
use http::Request;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use vouch_httpsig::coalesce::Coalescer;
use vouch_httpsig::{RequestView, SigningKey, mcp_content_digest, mcp_spec, sign};
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_token::KeyPair;
use vouch_tower::{Origin, ServeConfig, SignatureLayer, SignaturePipeline, VerifiedCaller, serve};

const AGENT: &str = "https://agents.example/agents/worker@agents.example";
const OTHER: &str = "https://agents.example/agents/other@agents.example";
const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
/// How long any one read waits before the test fails (a bound against hangs, not a timing).
const PATIENCE: Duration = Duration::from_secs(20);

fn seed_of(keyid: &str) -> [u8; 32] {
    if keyid == AGENT { [1; 32] } else { [2; 32] }
}

struct Server {
    addr: SocketAddr,
}

/// Builds the pipeline for a server at `addr` (both servers of the relay test trust the same
/// agent keys) and serves it with `serve`.
async fn spawn_with(
    store: ShardedReplayStore,
    layer: impl FnOnce(SignatureLayer) -> SignatureLayer,
    config: ServeConfig,
) -> Server {
    spawn_verifying_with(store, None, layer, config).await
}

/// [`spawn_with`], with Ed25519 verified through `coalescer` (`None`: the pipeline's own).
async fn spawn_verifying_with(
    store: ShardedReplayStore,
    coalescer: Option<Arc<Coalescer>>,
    layer: impl FnOnce(SignatureLayer) -> SignatureLayer,
    config: ServeConfig,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut resolver = StaticResolver::new();
    for keyid in [AGENT, OTHER] {
        resolver = resolver.with_ed25519(
            keyid,
            &KeyPair::from_seed(&seed_of(keyid)).unwrap().public_key(),
        );
    }
    let mut pipeline = SignaturePipeline::new(Origin::http(addr), resolver, store);
    if let Some(coalescer) = coalescer {
        pipeline = pipeline.coalescer(Some(coalescer));
    }
    let app = Router::new()
        .route(
            "/mcp",
            post(|caller: VerifiedCaller, body: String| async move {
                format!("{}|{}", caller.identity, body.len())
            }),
        )
        .layer(layer(SignatureLayer::new(pipeline)));
    tokio::spawn(async move { serve(listener, app, config).await.unwrap() });
    Server { addr }
}

async fn spawn() -> Server {
    spawn_with(
        ShardedReplayStore::new(100_000),
        |l| l,
        ServeConfig::default(),
    )
    .await
}

/// A request signed as `keyid` for `http://{authority}/mcp`, with `extra` fields added before
/// signing, as raw HTTP/1.1 bytes (origin-form target, `Host: authority`).
fn raw_signed(keyid: &str, authority: &str, body: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    raw_signed_by(seed_of(keyid), keyid, authority, body, extra)
}

/// [`raw_signed`], signed with the key of this seed whatever the keyid says.
fn raw_signed_by(
    seed: [u8; 32],
    keyid: &str,
    authority: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let mut builder = http::Request::post(format!("http://{authority}/mcp"))
        .header("content-type", "application/json")
        .header("content-digest", mcp_content_digest(body.as_bytes()));
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    let mut req = builder.body(body.as_bytes().to_vec()).unwrap();
    let key = SigningKey::ed25519_from_seed(&seed).unwrap();
    let spec = mcp_spec(&RequestView::of(&req), &key, keyid, None, now()).unwrap();
    sign(RequestView::of(&req), &spec, &key)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();
    serialize(&req, "/mcp", &[authority])
}

/// Writes `req` as raw bytes with `target` as the request target and these `Host` lines.
fn serialize(req: &Request<Vec<u8>>, target: &str, hosts: &[&str]) -> Vec<u8> {
    let mut out = format!("POST {target} HTTP/1.1\r\n").into_bytes();
    for h in hosts {
        out.extend_from_slice(format!("host: {h}\r\n").as_bytes());
    }
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", req.body().len()).as_bytes());
    out.extend_from_slice(req.body());
    out
}

/// Reads one response head and as much body as it declares; returns (status, body text).
async fn read_response<R: tokio::io::AsyncRead + Unpin>(stream: &mut R) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head[9..12].parse().unwrap();
            let length = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
                    .await
                    .expect("response body within the patience bound")
                    .unwrap();
                assert!(n > 0, "connection closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).to_string();
            return (status, body);
        }
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("a response within the patience bound")
            .unwrap();
        assert!(n > 0, "connection closed before a response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn exchange(addr: SocketAddr, bytes: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_response(&mut stream).await
}

fn reason(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["detail"]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// True when the server closed the connection (EOF or reset) within the patience bound.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut b = [0u8; 256];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut b)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_request_signed_for_one_server_is_refused_by_another_that_trusts_the_same_agent() {
    let a = spawn().await;
    let b = spawn().await;
    let for_a = raw_signed(AGENT, &a.addr.to_string(), BODY, &[]);

    // Relayed unchanged (Host still names A) to B: misdirected, before any key lookup.
    let (status, body) = exchange(b.addr, &for_a).await;
    assert_eq!((status, reason(&body).as_str()), (421, "unknown_origin"));

    // Relayed with Host rewritten to B: the signature covers A's authority, so it fails.
    let rewritten = String::from_utf8(for_a.clone())
        .unwrap()
        .replace(&format!("host: {}", a.addr), &format!("host: {}", b.addr));
    let (status, body) = exchange(b.addr, rewritten.as_bytes()).await;
    assert_eq!((status, reason(&body).as_str()), (401, "bad_signature"));

    // A itself accepts it, once.
    let (status, body) = exchange(a.addr, &for_a).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = exchange(a.addr, &for_a).await;
    assert_eq!((status, reason(&body).as_str()), (401, "replayed"));
}

#[tokio::test]
async fn absolute_form_targets_and_duplicate_hosts_must_name_the_configured_origin() {
    let a = spawn().await;
    let authority = a.addr.to_string();
    let mut req = http::Request::post(format!("http://{authority}/mcp"))
        .header("content-digest", mcp_content_digest(BODY.as_bytes()))
        .body(BODY.as_bytes().to_vec())
        .unwrap();
    let key = SigningKey::ed25519_from_seed(&seed_of(AGENT)).unwrap();
    let spec = mcp_spec(&RequestView::of(&req), &key, AGENT, None, now()).unwrap();
    sign(RequestView::of(&req), &spec, &key)
        .unwrap()
        .apply(req.headers_mut())
        .unwrap();

    let evil = serialize(&req, "http://evil.example/mcp", &[&authority]);
    let (status, body) = exchange(a.addr, &evil).await;
    assert_eq!((status, reason(&body).as_str()), (421, "unknown_origin"));

    let https = serialize(&req, &format!("https://{authority}/mcp"), &[&authority]);
    let (status, _) = exchange(a.addr, &https).await;
    assert_eq!(status, 421, "absolute form with another scheme");

    let twice = serialize(&req, "/mcp", &[&authority, &authority]);
    let (status, _) = exchange(a.addr, &twice).await;
    assert!(status == 421 || status == 400, "two Host fields: {status}");

    let none = serialize(&req, "/mcp", &[]);
    let (status, _) = exchange(a.addr, &none).await;
    assert!(status == 421 || status == 400, "no Host: {status}");

    // The same request in absolute form for the right origin is fine.
    let right = serialize(&req, &format!("http://{authority}/mcp"), &[&authority]);
    let (status, body) = exchange(a.addr, &right).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn duplicate_content_digest_lines_are_refused_even_when_signed() {
    let a = spawn().await;
    let wrong = mcp_content_digest(b"something else");
    // The signer covers both lines: a wrong digest, then (in the request) the right one.
    let raw = raw_signed(
        AGENT,
        &a.addr.to_string(),
        BODY,
        &[("content-digest", &wrong)],
    );
    let text = String::from_utf8(raw).unwrap();
    assert_eq!(text.matches("content-digest:").count(), 2, "{text}");
    let (status, body) = exchange(a.addr, text.as_bytes()).await;
    assert_eq!(status, 401, "{body}");
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn unsigned_clients_with_partial_bodies_are_answered_at_once_and_hold_no_memory() {
    const CLIENTS: usize = 64;
    const DECLARED: usize = 1 << 20;
    let a = spawn().await;
    let filler = Arc::new(vec![b'x'; DECLARED - 1]);
    let before = rss_kib();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut stream = TcpStream::connect(a.addr).await.unwrap();
        let head = format!(
            "POST /mcp HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {DECLARED}\r\n\r\n",
            a.addr
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let filler = filler.clone();
        // The body is sent in the background (the server may stop reading at any time).
        let writer = tokio::spawn(async move {
            let _ = write.write_all(&filler).await;
            write
        });
        let reader = tokio::spawn(async move { read_response(&mut read).await });
        clients.push((reader, writer));
    }
    for (reader, _) in &mut clients {
        let (code, body) = reader.await.unwrap();
        assert_eq!((code, reason(&body).as_str()), (401, "missing_signature"));
    }
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown <= 8 * 1024,
        "64 unsigned partial bodies grew the process by {grown} KiB"
    );
    for (_, writer) in clients {
        writer.abort();
    }
}

#[tokio::test]
async fn a_declared_body_over_the_cap_is_refused_before_anything_else() {
    let a = spawn_with(
        ShardedReplayStore::new(100_000),
        |l| l.max_body_bytes(1024),
        ServeConfig::default(),
    )
    .await;
    let mut stream = TcpStream::connect(a.addr).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: {}\r\ncontent-length: 1048576\r\n\r\n",
        a.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (status, body) = read_response(&mut stream).await;
    assert_eq!((status, reason(&body).as_str()), (413, "body_too_large"));
}

/// Reads one response head (up to the blank line) as lowercase text.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("a response head within the patience bound")
            .unwrap();
        assert!(n > 0, "connection closed before a response head: {buf:?}");
        buf.push(byte[0]);
    }
    String::from_utf8_lossy(&buf).to_ascii_lowercase()
}

#[tokio::test]
async fn a_refusal_that_leaves_the_body_unread_closes_the_connection_and_says_so() {
    // Found end to end: the refusal came without `Connection: close`, the server then dropped
    // the connection with the body unread, and a keep-alive client lost its next request.
    let a = spawn().await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let unsigned = format!(
        "POST /mcp HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        a.addr,
        body.len()
    );
    let mut stream = TcpStream::connect(a.addr).await.unwrap();
    stream.write_all(unsigned.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert!(closed(&mut stream).await);

    // Without a body there is nothing left unread: the connection carries the next request.
    let bodiless = format!(
        "POST /mcp HTTP/1.1\r\nhost: {}\r\ncontent-length: 0\r\n\r\n",
        a.addr
    );
    let mut stream = TcpStream::connect(a.addr).await.unwrap();
    for _ in 0..2 {
        stream.write_all(bodiless.as_bytes()).await.unwrap();
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("http/1.1 401"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut rest = vec![0u8; length];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut rest))
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn a_signed_slow_body_is_cut_at_the_body_timeout() {
    let a = spawn_with(
        ShardedReplayStore::new(100_000),
        |l| l.body_timeout(Duration::from_millis(300)),
        ServeConfig::default(),
    )
    .await;
    let raw = raw_signed(AGENT, &a.addr.to_string(), BODY, &[]);
    // Everything but the last 10 body bytes, then silence.
    let cut = raw.len() - 10;
    let mut stream = TcpStream::connect(a.addr).await.unwrap();
    stream.write_all(&raw[..cut]).await.unwrap();
    let (status, body) = read_response(&mut stream).await;
    assert_eq!((status, reason(&body).as_str()), (408, "body_timeout"));
    assert!(
        closed(&mut stream).await,
        "the connection is dropped after 408"
    );

    // The same signature with its whole body still works: nothing was recorded for it.
    let (status, body) = exchange(a.addr, &raw).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_partial_head_is_dropped_at_the_header_read_timeout() {
    let a = spawn_with(
        ShardedReplayStore::new(100_000),
        |l| l,
        ServeConfig::default().header_read_timeout(Duration::from_millis(300)),
    )
    .await;
    let mut stream = TcpStream::connect(a.addr).await.unwrap();
    stream
        .write_all(b"POST /mcp HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    assert!(closed(&mut stream).await, "partial head held open");
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_closed_at_once_and_others_still_served() {
    let a = spawn_with(
        ShardedReplayStore::new(100_000),
        |l| l,
        ServeConfig::default().max_connections(100, 4),
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let s = TcpStream::connect(a.addr).await.unwrap();
        held.push(s);
    }
    // Give the server time to accept the four before the fifth arrives (a bound, not a timing).
    let raw = raw_signed(AGENT, &a.addr.to_string(), BODY, &[]);
    let mut accepted = 0;
    for s in &mut held {
        s.write_all(&raw).await.unwrap();
        let (status, _) = read_response(s).await;
        if status == 200 || status == 401 {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 4);
    let mut fifth = TcpStream::connect(a.addr).await.unwrap();
    let _ = fifth
        .write_all(&raw_signed(AGENT, &a.addr.to_string(), BODY, &[]))
        .await;
    assert!(
        closed(&mut fifth).await,
        "fifth connection from one address"
    );
    drop(held);
    // Once they are gone, the address is served again.
    let mut ok = None;
    for _ in 0..50 {
        let mut s = TcpStream::connect(a.addr).await.unwrap();
        let raw = raw_signed(AGENT, &a.addr.to_string(), BODY, &[]);
        if s.write_all(&raw).await.is_ok() {
            let mut b = [0u8; 12];
            if let Ok(Ok(12)) = tokio::time::timeout(PATIENCE, s.read_exact(&mut b)).await {
                ok = Some(String::from_utf8_lossy(&b[9..12]).to_string());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ok.as_deref(), Some("200"));
}

#[tokio::test]
async fn one_identity_filling_its_replay_share_does_not_lock_out_another() {
    // A store of 100 live entries; each identity may hold at most 10.
    let store =
        ShardedReplayStore::with_config(vouch_keys::ReplayConfig::new(100).identity_share(10));
    let addr = spawn_with(store, |l| l, ServeConfig::default()).await.addr;
    let mut refused = None;
    for i in 0..100 {
        let (status, body) = exchange(addr, &raw_signed(AGENT, &addr.to_string(), BODY, &[])).await;
        if status != 200 {
            refused = Some((i, status, body));
            break;
        }
    }
    let (i, status, _) = refused.expect("the flooding identity is refused at its share");
    assert_eq!((i, status), (10, 429));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&raw_signed(AGENT, &addr.to_string(), BODY, &[]))
        .await
        .unwrap();
    let mut head = vec![0u8; 512];
    let n = stream.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_lowercase();
    assert!(head.contains("retry-after:"), "{head}");
    // Another identity is unaffected.
    for _ in 0..10 {
        let (status, body) = exchange(addr, &raw_signed(OTHER, &addr.to_string(), BODY, &[])).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// A server whose pipeline verifies through a coalescer the test can read; its address and the
/// coalescer.
async fn spawn_coalesced() -> (SocketAddr, Arc<Coalescer>) {
    let coalescer = Arc::new(Coalescer::new());
    let server = spawn_verifying_with(
        ShardedReplayStore::new(100_000),
        Some(Arc::clone(&coalescer)),
        |l| l,
        ServeConfig::default(),
    )
    .await;
    (server.addr, coalescer)
}

/// Writes every request on its own connection before reading any answer, without letting the
/// server run in between (blocking writes on this test's one thread), so that the server has them
/// all ready at once and verifies them in shared rounds.
async fn all_at_once(addr: SocketAddr, requests: &[Vec<u8>]) -> Vec<(u16, String)> {
    let mut streams = Vec::new();
    for bytes in requests {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut stream, bytes).unwrap();
        stream.set_nonblocking(true).unwrap();
        streams.push(TcpStream::from_std(stream).unwrap());
    }
    let mut answers = Vec::new();
    for stream in &mut streams {
        answers.push(read_response(stream).await);
    }
    answers
}

#[tokio::test]
async fn bad_signatures_of_one_identity_verified_in_the_same_rounds_as_anothers_refuse_only_themselves()
 {
    let (addr, coalescer) = spawn_coalesced().await;
    let authority = addr.to_string();
    // OTHER's requests are signed with AGENT's key: a valid signature under the wrong key.
    let requests: Vec<Vec<u8>> = (0..24)
        .map(|i| {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#);
            if i % 2 == 0 {
                raw_signed(AGENT, &authority, &body, &[])
            } else {
                raw_signed_by(seed_of(AGENT), OTHER, &authority, &body, &[])
            }
        })
        .collect();
    for round in 0..3 {
        let answers = all_at_once(addr, &requests[round * 8..round * 8 + 8]).await;
        for (i, (status, body)) in answers.iter().enumerate() {
            if i % 2 == 0 {
                assert_eq!(*status, 200, "{round} {i}: {body}");
                assert!(body.starts_with("worker@agents.example|"), "{body}");
            } else {
                assert_eq!(
                    (*status, reason(body)),
                    (401, "bad_signature".into()),
                    "{i}"
                );
            }
        }
    }
    // The signatures were verified in shared rounds, and the failing batches were split.
    let stats = coalescer.stats();
    assert_eq!(stats.submitted, 24, "{stats:?}");
    assert!(stats.rounds < 24, "{stats:?}");
    assert!(stats.failed_batches >= 1, "{stats:?}");
}

#[tokio::test]
async fn the_same_signed_request_on_many_connections_at_once_is_admitted_once() {
    let (addr, coalescer) = spawn_coalesced().await;
    let bytes = raw_signed(AGENT, &addr.to_string(), BODY, &[]);
    let answers = all_at_once(addr, &vec![bytes; 8]).await;
    let admitted = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(admitted, 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!((*status, reason(body)), (401, "replayed".into()));
    }
    // The copies were verified together: the batch accepts them all, the replay store decides.
    let stats = coalescer.stats();
    assert!(stats.batched_signatures >= 2, "{stats:?}");
}
