//! Forwarding: the header contract, refusals before the upstream, upstream failures.

use std::time::Duration;

use base64ct::{Base64UrlUnpadded, Encoding as _};
use http::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use vouch_tower::{RateLimitLayer, TOKEN_HEADER};

use crate::*;

#[tokio::test]
async fn allowed_call_reaches_the_upstream_with_the_verified_headers() {
    let up = upstream().await;
    let gw = gateway(&up.url("/mcp"), |g| g).await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::OK);
    let body: Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(body["result"]["ok"], true);
    assert_eq!(up.calls(), 1);

    let head = up.last_head();
    assert_eq!(head["x-vouch-keyid"], AGENT);
    assert!(!head["x-vouch-identity"].is_empty());
    assert_eq!(head["host"], up.addr.unwrap().to_string().as_str());
    let grants = Base64UrlUnpadded::decode_vec(head["x-vouch-grants"].to_str().unwrap()).unwrap();
    let facts: Value = serde_json::from_slice(&grants).unwrap();
    assert_eq!(facts["tools"], serde_json::json!(["db_query", "search"]));
    assert_eq!(facts["tool_wildcard"], false);
    assert_eq!(facts["subject"], "agent-a");
}

/// Writes `request` on a raw socket with `extra` lines (names in the case given) after its
/// fields; the response status.
async fn raw_status(addr: std::net::SocketAddr, request: &Request<Vec<u8>>, extra: &[&str]) -> u16 {
    let mut out =
        format!("POST /mcp HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n").into_bytes();
    for (name, value) in request.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for line in extra {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", request.body().len()).as_bytes());
    out.extend_from_slice(request.body());
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&out).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut buf))
        .await
        .expect("a response within the patience bound")
        .unwrap();
    std::str::from_utf8(&buf[9..12]).unwrap().parse().unwrap()
}

#[tokio::test]
async fn client_sent_vouch_headers_never_reach_the_upstream() {
    let up = upstream().await;
    let gw = gateway(&up.url("/mcp"), |g| g).await;
    let request = signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    );
    let status = raw_status(
        gw,
        &request,
        &[
            "X-Vouch-Identity: admin@evil.example",
            "x-VoUcH-GrAnTs: eyJ0b29sX3dpbGRjYXJkIjp0cnVlfQ",
            "X-VOUCH-KEYID: https://evil.example/admin",
            "X-Vouch-Extra: 1",
        ],
    )
    .await;
    assert_eq!(status, 200);
    let head = up.last_head();
    assert_eq!(head.get_all("x-vouch-identity").iter().count(), 1);
    assert_ne!(head["x-vouch-identity"], "admin@evil.example");
    assert_eq!(head.get_all("x-vouch-grants").iter().count(), 1);
    assert_ne!(head["x-vouch-grants"], "eyJ0b29sX3dpbGRjYXJkIjp0cnVlfQ");
    assert_eq!(head.get_all("x-vouch-keyid").iter().count(), 1);
    assert_eq!(head["x-vouch-keyid"], AGENT);
    assert!(head.get("x-vouch-extra").is_none());
}

#[tokio::test]
async fn client_sent_forwarding_claims_never_reach_the_upstream() {
    let up = upstream().await;
    let gw = gateway(&up.url("/mcp"), |g| g).await;
    let request = signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    );
    let claims = [
        "X-Forwarded-For: 10.0.0.1",
        "x-forwarded-proto: https",
        "X-Forwarded-Host: admin.internal",
        "Forwarded: for=10.0.0.1;proto=https",
        "X-Real-IP: 10.0.0.1",
        "X-Client-IP: 10.0.0.1",
    ];
    assert_eq!(raw_status(gw, &request, &claims).await, 200);
    let head = up.last_head();
    for name in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "x-real-ip",
        "x-client-ip",
    ] {
        assert!(
            !head.contains_key(name),
            "{name} reached the upstream: {head:?}"
        );
    }
}

#[tokio::test]
async fn signature_and_token_are_not_forwarded() {
    let up = upstream().await;
    let gw = gateway(&up.url("/mcp"), |g| g).await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::OK);
    let head = up.last_head();
    assert!(head.get("signature").is_none());
    assert!(head.get("signature-input").is_none());
    assert!(head.get(TOKEN_HEADER).is_none());
    // What the signature covered and the upstream needs is kept.
    assert!(head.get("content-digest").is_some());
    assert_eq!(head["content-type"], "application/json");
}

#[tokio::test]
async fn the_token_is_forwarded_when_asked() {
    let up = upstream().await;
    let gw = gateway(&up.url("/mcp"), |g| g.forward_token(true)).await;
    let token = token();
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::OK);
    let head = up.last_head();
    assert_eq!(head[TOKEN_HEADER], token.as_str());
    assert!(head.get("signature").is_none());
    assert!(head.get("signature-input").is_none());
}

#[tokio::test]
async fn hop_by_hop_fields_are_stripped_both_ways() {
    let up = upstream().await;
    let gw = gateway(&up.url("/mcp"), |g| g).await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[
            ("connection", "keep-alive, x-client-hop"),
            ("x-client-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic eDp5"),
            ("proxy-foo", "1"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("x-kept", "1"),
        ],
    ))
    .await;
    assert_status(&response, StatusCode::OK);
    // The upstream's own hop-by-hop fields do not reach the client.
    assert!(response.headers().get("x-upstream-hop").is_none());
    assert!(response.headers().get("keep-alive").is_none());
    let head = up.last_head();
    for name in [
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "proxy-foo",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(head.get(name).is_none(), "{name} forwarded: {head:?}");
    }
    // The upstream connection's own Connection field, if any, names nothing of the client's.
    if let Some(c) = head.get("connection") {
        assert!(!c.to_str().unwrap().contains("x-client-hop"));
    }
    assert_eq!(head["x-kept"], "1");
}

#[tokio::test]
async fn call_outside_the_grants_is_refused_without_contacting_the_upstream() {
    let up = upstream().await;
    let gw = gateway(&up.url("/mcp"), |g| g).await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("drop_table")),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::FORBIDDEN);
    assert_eq!(error_code(response).await, "forbidden");
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn unsigned_request_is_refused_without_contacting_the_upstream() {
    let up = upstream().await;
    let gw = gateway(&up.url("/mcp"), |g| g).await;
    let mut request = signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    );
    request.headers_mut().remove("signature");
    request.headers_mut().remove("signature-input");
    let response = send(request).await;
    assert_status(&response, StatusCode::UNAUTHORIZED);
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn requests_without_a_token_are_refused_without_contacting_the_upstream() {
    let up = upstream().await;
    let gw = gateway(&up.url("/mcp"), |g| g).await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        None,
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(response).await, "missing_token");
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn each_identity_is_rate_limited() {
    let up = upstream().await;
    let one = std::num::NonZeroU32::MIN;
    let gw = gateway(&up.url("/mcp"), |g| {
        g.rate_limit(RateLimitLayer::per_second(one, one))
    })
    .await;
    let body = message("tools/call", Some("search"));
    // Eight requests at once against one request per second with a burst of one: however slow
    // the machine, they cannot all be a second apart.
    let requests: Vec<_> = (0..8)
        .map(|_| signed(gw, &body, Some(&token()), &[]))
        .collect();
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|r| tokio::spawn(async move { send(r).await.status() }))
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let ok = answers.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = answers
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(ok >= 1 && limited >= 1, "{ok} passed, {limited} limited");
    assert_eq!(ok + limited, 8);
    assert_eq!(
        up.calls(),
        ok,
        "a limited request never reaches the upstream"
    );
}

#[tokio::test]
async fn upstream_down_is_502() {
    // A port that was just free: nothing listens on it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    let gw = gateway(&format!("http://{dead}/mcp"), |g| g).await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::BAD_GATEWAY);
    assert_eq!(error_code(response).await, "upstream_unavailable");
}

#[tokio::test]
async fn hanging_upstream_is_504_after_the_configured_timeout() {
    let up = upstream().await;
    let gw = gateway(&up.url("/hang"), |g| {
        g.upstream_timeout(Duration::from_millis(300))
    })
    .await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(error_code(response).await, "upstream_timeout");
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn healthz_answers_without_a_signature() {
    let up = upstream().await;
    let gw = gateway(&up.url("/mcp"), |g| g).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let response = client
        .get(format!("http://{gw}/healthz").parse().unwrap())
        .await
        .unwrap();
    assert_status(&response, StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(body, serde_json::json!({"status": "ok"}));
    assert_eq!(up.calls(), 0);
}

#[test]
fn only_http_and_https_upstreams_are_accepted() {
    use vouch_gateway::Error;
    let build = |url: &str| {
        Gateway::new(
            url,
            SignaturePipeline::new(
                "http://gw.example".parse().unwrap(),
                StaticResolver::new(),
                ShardedReplayStore::new(10),
            ),
            CapabilityPipeline::new(Verifier::new(root().public_key())),
        )
    };
    assert!(build("http://127.0.0.1:8000/mcp").is_ok());
    assert!(build("https://up.example/mcp").is_ok());
    for bad in [
        "ftp://up.example/mcp",
        "/mcp",
        "http://user@up.example/",
        "not a url",
    ] {
        assert!(matches!(build(bad), Err(Error::Upstream(_))), "{bad}");
    }
    let g = build("http://127.0.0.1:8000/mcp").unwrap();
    assert!(matches!(g.path("/healthz"), Err(Error::Path(_))));
}

#[tokio::test]
async fn signatures_are_verified_through_the_pipelines_coalescer() {
    let up = upstream().await;
    let coalescer = std::sync::OnceLock::new();
    let gw = spawn_gateway(|signature| {
        coalescer.get_or_init(|| {
            signature
                .coalescing()
                .cloned()
                .expect("coalesced by default")
        });
        Gateway::new(
            &up.url("/mcp"),
            signature,
            CapabilityPipeline::new(Verifier::new(root().public_key())),
        )
        .unwrap()
    })
    .await;
    let coalescer = coalescer.get().unwrap();
    let call = || search_call(gw);
    assert_status(&send(call()).await, StatusCode::OK);
    assert_eq!(coalescer.stats().submitted, 1);
    let response = send(with_bad_signature(call())).await;
    assert_status(&response, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(response).await, "invalid_signature");
    assert_eq!(coalescer.stats().submitted, 2);
    assert_eq!(up.calls(), 1);
}
