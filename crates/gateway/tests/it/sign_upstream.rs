//! `sign_upstream`: a vouch-protected rmcp server behind the gateway, trusting only the
//! gateway's key.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use vouch_gateway::Gateway;

use axum::body::Body;
use axum::extract::State;
use axum::routing::post;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::StreamableHttpServerConfig;
use rmcp::{RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use vouch_httpsig::SigningKey;
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_rmcp::Protected;
use vouch_token::{KeyPair, Verifier};
use vouch_tower::{CapabilityPipeline, Origin, SignaturePipeline};

use crate::*;

/// The gateway's keyid, as the upstream knows it.
const GATEWAY: &str = "https://gateway.example/agents/gateway@gateway.example";
const GATEWAY_SEED: [u8; 32] = [5; 32];

#[derive(Debug, Clone)]
struct Tools {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Tools {
    #[tool(description = "Searches; answers who the upstream saw and what it may do")]
    fn search(&self, ctx: RequestContext<RoleServer>) -> String {
        let caller = vouch_rmcp::caller_identity(&ctx);
        let grants = vouch_rmcp::grants(&ctx);
        json!({
            "identity": caller.as_ref().map(|c| c.identity.clone()),
            "keyid": caller.as_ref().map(|c| c.keyid.clone()),
            "tools": grants.as_ref().map(|g| g.tools().to_vec()),
        })
        .to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// A vouch-protected rmcp server (stateless, JSON responses) whose signature pipeline resolves
/// the gateway's and the agent's keys but admits only the gateway; its address. Its origin is
/// `http://<origin>`, or its own address.
async fn protected_upstream(origin: Option<SocketAddr>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let resolver = StaticResolver::new()
        .with_ed25519(
            GATEWAY,
            &KeyPair::from_seed(&GATEWAY_SEED).unwrap().public_key(),
        )
        .with_ed25519(AGENT, &KeyPair::from_seed(&[1; 32]).unwrap().public_key());
    let signatures = SignaturePipeline::new(
        Origin::http(origin.unwrap_or(addr)),
        resolver,
        ShardedReplayStore::new(10_000),
    )
    .allowlist(|identity: &str| identity == "gateway@gateway.example");
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None);
    let app = Protected::new(
        signatures,
        CapabilityPipeline::new(Verifier::new(root().public_key())),
    )
    .tools(&Tools::tool_router().list_all())
    .config(config)
    .session_binding(None)
    .serve(|| {
        Ok(Tools {
            tool_router: Tools::tool_router(),
        })
    });
    tokio::spawn(async move {
        vouch_rmcp::serve(listener, app, vouch_rmcp::ServeConfig::default())
            .await
            .unwrap()
    });
    addr
}

/// A gateway in front of `upstream`, signing for it with the gateway's key and forwarding the
/// token.
async fn signing_gateway(upstream: SocketAddr) -> SocketAddr {
    gateway(&format!("http://{upstream}/mcp"), |g| {
        g.sign_upstream(
            SigningKey::ed25519_from_seed(&GATEWAY_SEED).unwrap(),
            GATEWAY,
        )
        .forward_token(true)
    })
    .await
}

/// The tool's text from a JSON-RPC `tools/call` response.
fn tool_text(body: &str) -> Value {
    let response: Value = serde_json::from_str(body).unwrap();
    let text = response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no tool result: {body}"));
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn a_signed_call_through_the_gateway_reaches_the_protected_upstream() {
    let upstream = protected_upstream(None).await;
    let gw = signing_gateway(upstream).await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    ))
    .await;
    let status = response.status();
    let body = text(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = tool_text(&body);
    // The upstream verified the gateway's signature and the client's token.
    assert_eq!(seen["keyid"], GATEWAY);
    assert_eq!(seen["identity"], "gateway@gateway.example");
    assert_eq!(seen["tools"], json!(["db_query", "search"]));
}

#[tokio::test]
async fn a_direct_call_to_the_upstream_is_refused_unsigned_or_signed_by_the_client() {
    let upstream = protected_upstream(None).await;
    let token = token();

    let mut unsigned = signed(
        upstream,
        &message("tools/call", Some("search")),
        Some(&token),
        &[],
    );
    unsigned.headers_mut().remove("signature");
    unsigned.headers_mut().remove("signature-input");
    let response = send(unsigned).await;
    assert_status(&response, StatusCode::UNAUTHORIZED);

    // The client's own key, which the upstream resolves, for the upstream's origin: a valid
    // signature, but not the gateway's.
    let response = send(signed(
        upstream,
        &message("tools/call", Some("search")),
        Some(&token),
        &[],
    ))
    .await;
    assert_status(&response, StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(body["detail"]["detail"], "not_allowed", "{body}");
}

/// What the tampering relay changes in each request it passes on.
type Tamper = Arc<Mutex<Option<(HeaderName, HeaderValue)>>>;

async fn relay(
    State((upstream, tamper)): State<(SocketAddr, Tamper)>,
    request: Request<Body>,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    if let Some((name, value)) = tamper.lock().unwrap().clone() {
        parts.headers.insert(name, value);
    }
    parts.uri = format!("http://{upstream}/mcp").parse().unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Response::from_parts(parts, Body::from(body))
}

/// A relay at `listener` passing requests on to `upstream` (Host and all), altering a field
/// when told; the switch.
fn tampering_relay(listener: tokio::net::TcpListener, upstream: SocketAddr) -> Tamper {
    let tamper = Tamper::default();
    let app = axum::Router::new()
        .route("/mcp", post(relay))
        .with_state((upstream, tamper.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    tamper
}

#[tokio::test]
async fn the_upstream_refuses_vouch_fields_altered_in_transit() {
    // gateway -> relay -> upstream: the gateway signs for the relay's URL, which the upstream
    // takes as its own origin.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = listener.local_addr().unwrap();
    let upstream = protected_upstream(Some(relay)).await;
    let tamper = tampering_relay(listener, upstream);
    let gw = signing_gateway(relay).await;
    let call = || search_call(gw);

    // Passed on unchanged: accepted.
    let response = send(call()).await;
    assert_status(&response, StatusCode::OK);
    assert_eq!(tool_text(&text(response).await)["keyid"], GATEWAY);

    for (name, value) in [
        ("x-vouch-identity", "admin@agents.example"),
        ("x-vouch-keyid", "https://agents.example/admin"),
        ("x-vouch-grants", "eyJ0b29sX3dpbGRjYXJkIjp0cnVlfQ"),
        ("x-mcpvault-token", "forged"),
    ] {
        *tamper.lock().unwrap() = Some((
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
        let response = send(call()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{name} altered"
        );
        let body: Value = serde_json::from_str(&text(response).await).unwrap();
        assert_eq!(body["detail"]["detail"], "bad_signature", "{name}: {body}");
    }
}

#[tokio::test]
async fn an_identity_only_gateway_signs_without_a_grants_field() {
    let upstream = protected_upstream(None).await;
    let gw = crate::spawn_gateway(|signature| {
        Gateway::identity_only(&format!("http://{upstream}/mcp"), signature)
            .unwrap()
            .sign_upstream(
                SigningKey::ed25519_from_seed(&GATEWAY_SEED).unwrap(),
                GATEWAY,
            )
            .forward_token(true)
    })
    .await;
    let response = send(signed(
        gw,
        &message("tools/call", Some("search")),
        Some(&token()),
        &[],
    ))
    .await;
    let status = response.status();
    let body = text(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = tool_text(&body);
    assert_eq!(seen["keyid"], GATEWAY);
    assert_eq!(seen["tools"], json!(["db_query", "search"]));
}
