//! Metrics: decisions, latency, the replay gauge and upstream errors, scraped as text.

use std::sync::Arc;

use http::StatusCode;
use http::header::CONTENT_TYPE;
use vouch_gateway::{METRICS_CONTENT_TYPE, Metrics};

use crate::*;

/// `GET /metrics` from `metrics`' own router on its own listener: the content type and text.
async fn scrape(metrics: &Metrics) -> (String, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = metrics.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let request = Request::get(format!("http://{addr}/metrics"))
        .body(Vec::new())
        .unwrap();
    let response = send(request).await;
    assert_status(&response, StatusCode::OK);
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, text(response).await)
}

#[tokio::test]
async fn decisions_latency_and_replay_entries_are_exposed() {
    let up = upstream().await;
    let store = Arc::new(ShardedReplayStore::new(10_000));
    let held = store.clone();
    let metrics = Metrics::new().gauge_fn(
        "vouch_gateway_replay_entries",
        "Entries in the replay store",
        move || i64::try_from(held.len()).unwrap_or(i64::MAX),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    let agent = KeyPair::from_seed(&[1; 32]).unwrap().public_key();
    let app = Gateway::new(
        &up.url("/mcp"),
        SignaturePipeline::new(
            Origin::http(gw),
            StaticResolver::new().with_ed25519(AGENT, &agent),
            store,
        ),
        CapabilityPipeline::new(Verifier::new(root().public_key())),
    )
    .unwrap()
    .metrics(metrics.clone())
    .into_router();
    tokio::spawn(async move {
        vouch_tower::serve(listener, app, ServeConfig::default())
            .await
            .unwrap()
    });

    let body = message("tools/call", Some("search"));
    let allowed = send(signed(gw, &body, Some(&token()), &[])).await;
    assert_status(&allowed, StatusCode::OK);
    let mut unsigned = signed(gw, &body, Some(&token()), &[]);
    unsigned.headers_mut().remove("signature");
    unsigned.headers_mut().remove("signature-input");
    let refused = send(unsigned).await;
    assert_status(&refused, StatusCode::UNAUTHORIZED);

    let (content_type, text) = scrape(&metrics).await;
    assert_eq!(content_type, METRICS_CONTENT_TYPE);
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        r#"vouch_gateway_decisions_total{layer="signature",outcome="accepted",reason="ok"} 1"#,
        r#"vouch_gateway_decisions_total{layer="capability",outcome="accepted",reason="ok"} 1"#,
        "vouch_gateway_request_duration_seconds_count 2",
        "vouch_gateway_replay_entries 1",
    ] {
        assert!(lines.contains(&expected), "{expected} not in:\n{text}");
    }
    let refusals: Vec<&&str> = lines
        .iter()
        .filter(|l| {
            l.starts_with(r#"vouch_gateway_decisions_total{layer="signature",outcome="refused","#)
        })
        .collect();
    assert_eq!(refusals.len(), 1, "{text}");
    assert!(refusals[0].ends_with("} 1"), "{text}");
    assert!(
        !text.contains("capability\",outcome=\"refused"),
        "the refused request never reached the capability layer:\n{text}"
    );
    assert!(
        !text.contains(AGENT) && !text.contains("search"),
        "no identity or tool in labels:\n{text}"
    );
}

#[tokio::test]
async fn upstream_down_counts_an_upstream_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    let metrics = Metrics::new();
    let gw = gateway(&format!("http://{dead}/mcp"), |g| {
        g.metrics(metrics.clone())
    })
    .await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::BAD_GATEWAY);
    let text = metrics.encode().unwrap();
    assert!(
        text.lines()
            .any(|l| l == r#"vouch_gateway_upstream_errors_total{kind="unavailable"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn live_sessions_and_session_refusals_are_exposed() {
    use crate::sessions::{OTHER, open, search, session_gateway, session_upstream};

    let up = session_upstream(false).await;
    let metrics = Metrics::new();
    let gw = session_gateway(
        &up,
        vouch_tower::SessionBindingLayer::default().max_per_identity(2),
        |g| g.metrics(metrics.clone()),
    )
    .await;
    let scrape_lines = || async {
        let (_, text) = scrape(&metrics).await;
        text
    };
    assert!(
        scrape_lines()
            .await
            .lines()
            .any(|l| l == "vouch_gateway_sessions 0"),
        "the gauge is there before any session"
    );

    let first = open(gw, AGENT).await.unwrap();
    open(gw, AGENT).await.unwrap();
    assert_eq!(
        open(gw, AGENT).await.unwrap_err().status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        search(gw, OTHER, &first).await.status,
        StatusCode::FORBIDDEN
    );

    let text = scrape_lines().await;
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "vouch_gateway_sessions 2",
        r#"vouch_gateway_decisions_total{layer="session",outcome="refused",reason="session_limit_per_identity"} 1"#,
        r#"vouch_gateway_decisions_total{layer="session",outcome="refused",reason="session_bound_to_another_caller"} 1"#,
    ] {
        assert!(lines.contains(&expected), "{expected} not in:\n{text}");
    }
}

#[tokio::test]
async fn rate_limit_refusals_are_counted() {
    use std::num::NonZeroU32;
    let up = upstream().await;
    let metrics = Metrics::new();
    let one = NonZeroU32::new(1).unwrap();
    let gw = gateway(&up.url("/mcp"), |g| {
        g.rate_limit(vouch_tower::RateLimitLayer::per_second(one, one))
            .metrics(metrics.clone())
    })
    .await;
    let call = || search_call(gw);
    assert_status(&send(call()).await, StatusCode::OK);
    assert_status(&send(call()).await, StatusCode::TOO_MANY_REQUESTS);
    let (_, text) = scrape(&metrics).await;
    let expected = r#"vouch_gateway_decisions_total{layer="rate_limit",outcome="refused",reason="rate_limited"} 1"#;
    assert!(
        text.lines().any(|l| l == expected),
        "{expected} not in:\n{text}"
    );
    assert_eq!(up.calls(), 1);
}
