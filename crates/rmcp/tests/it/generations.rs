//! Both MCP protocol generations end to end, a real rmcp client with the signing client against
//! a real rmcp server behind vouch on 127.0.0.1: 2025-06-18 with `initialize` and sessions, and
//! 2026-07-28 stateless with `server/discover` and the `Mcp-Method` / `Mcp-Name` headers.
//! Raw signed HTTP for the header/body mismatches an honest client never sends: refused with
//! MCP's HeaderMismatch (400, JSON-RPC -32020) before any grant decision.

use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt as _, RoleClient, ServiceExt as _};
use serde_json::{Value, json};
use vouch_reqwest::SigningMiddleware;
use vouch_rmcp::SigningClient;

use crate::support::{Mode, Server, WORKER, http_client, signing_key, spawn, worker_token};

type Client = RunningService<RoleClient, ClientConfig>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generation {
    /// 2025-06-18: `initialize`, a session id, no MCP request headers from rmcp.
    Sessions,
    /// 2026-07-28: `server/discover`, no session, `Mcp-Method` / `Mcp-Name` on every POST.
    Stateless,
}

async fn connect(server: &Server, generation: Generation) -> Client {
    let token = worker_token(WORKER);
    let client = SigningClient::new(http_client(), signing_key(WORKER), WORKER)
        .with_token(&token)
        .unwrap();
    let transport = StreamableHttpClientTransport::with_client(
        client,
        StreamableHttpClientTransportConfig::with_uri(server.url.as_str()),
    );
    match generation {
        Generation::Sessions => ClientConfig::default()
            .with_protocol_version(ProtocolVersion::V_2025_06_18)
            .serve(transport)
            .await
            .unwrap(),
        Generation::Stateless => ClientConfig::default()
            .serve_with_lifecycle(
                transport,
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
            )
            .await
            .unwrap(),
    }
}

async fn call(client: &Client, tool: &str, args: Value) -> Result<String, String> {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    if let Value::Object(map) = args {
        params = params.with_arguments(map);
    }
    let result = client.call_tool(params).await.map_err(|e| e.to_string())?;
    result
        .content
        .iter()
        .find_map(|c| c.as_text().map(|t| t.text.clone()))
        .ok_or_else(|| format!("no text in {result:?}"))
}

async fn allowed_and_refused(generation: Generation) {
    let mode = match generation {
        Generation::Sessions => Mode::Session,
        Generation::Stateless => Mode::StatelessJson,
    };
    let server = spawn(mode).await;
    let client = connect(&server, generation).await;
    let version = client.peer_info().map(|info| info.protocol_version.clone());
    let expected = match generation {
        Generation::Sessions => ProtocolVersion::V_2025_06_18,
        Generation::Stateless => ProtocolVersion::V_2026_07_28,
    };
    assert_eq!(version, Some(expected), "negotiated version");

    assert_eq!(
        call(&client, "add", json!({"a": 2, "b": 3})).await.unwrap(),
        "5"
    );
    let whoami: Value =
        serde_json::from_str(&call(&client, "whoami", json!({})).await.unwrap()).unwrap();
    assert_eq!(whoami["identity"], "worker@agents.example");
    // Not in the worker's token: refused by the capability layer.
    let refused = call(&client, "drop_table", json!({})).await;
    assert!(refused.is_err(), "drop_table ran: {refused:?}");

    let seen = server.seen();
    let capability: Vec<_> = seen.iter().filter(|s| s.layer == "capability").collect();
    assert!(
        capability
            .iter()
            .any(|s| !s.accepted && s.reason == "forbidden"),
        "{capability:?}"
    );
    // No header ever disagreed with its body, in either generation (rmcp's own headers for
    // 2026-07-28, the signing client's for 2025-06-18).
    assert!(
        capability.iter().all(|s| s.reason != "header_mismatch"),
        "{capability:?}"
    );
    // Sessions exist only in the session generation.
    match generation {
        Generation::Sessions => assert_eq!(server.sessions.len(), 1),
        Generation::Stateless => assert_eq!(server.sessions.len(), 0),
    }
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_2025_06_18_allowed_and_refused() {
    allowed_and_refused(Generation::Sessions).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_2026_07_28_allowed_and_refused() {
    allowed_and_refused(Generation::Stateless).await;
}

// ---- raw signed HTTP: what an honest client never sends ---------------------------------------

fn meta_2026() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

fn tools_call(tool: &str, generation: Generation) -> String {
    let mut params = json!({"name": tool, "arguments": {"a": 1, "b": 2}});
    if generation == Generation::Stateless {
        params["_meta"] = meta_2026();
    }
    json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params}).to_string()
}

/// A POST of `body` with `headers`, signed by the worker with vouch's profile (which keeps the
/// MCP headers given and signs them).
fn signed(url: &str, headers: &[(&str, &str)], body: &str) -> reqwest::Request {
    let mut req = http_client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-mcpvault-token", worker_token(WORKER))
        .body(body.to_owned())
        .build()
        .unwrap();
    for (n, v) in headers {
        let name = http::HeaderName::from_bytes(n.as_bytes()).unwrap();
        req.headers_mut().append(name, v.parse().unwrap());
    }
    SigningMiddleware::new(signing_key(WORKER), WORKER)
        .sign_request(&mut req)
        .unwrap();
    req
}

async fn send(req: reqwest::Request) -> (u16, Value, Option<String>) {
    let res = http_client().execute(req).await.unwrap();
    let status = res.status().as_u16();
    let session = res
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    // A JSON answer, or the first JSON event of an SSE one.
    let body = serde_json::from_str(&text)
        .ok()
        .or_else(|| {
            text.lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .find_map(|d| serde_json::from_str(d).ok())
        })
        .unwrap_or(Value::String(text.clone()));
    (status, body, session)
}

/// A 2025-06-18 session opened by raw `initialize`; the headers a later request needs.
async fn legacy_session(server: &Server) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})
    .to_string();
    let (status, _, session) = send(signed(&server.url, &[], &init)).await;
    assert_eq!(status, 200);
    let session = session.expect("a session id");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let (status, _, _) = send(signed(&server.url, &headers, &initialized)).await;
    assert_eq!(status, 202);
    session
}

fn assert_header_mismatch(server: &Server, (status, body, _): &(u16, Value, Option<String>)) {
    assert_eq!(*status, 400, "{body}");
    assert_eq!(body["error"]["code"], -32020, "{body}");
    assert_eq!(body["id"], 9, "{body}");
    let last = server
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.layer == "capability")
        .unwrap();
    assert_eq!(
        (last.accepted, last.reason.as_str()),
        (false, "header_mismatch")
    );
}

async fn mismatches_are_refused_before_the_grant(generation: Generation) {
    let mode = match generation {
        Generation::Sessions => Mode::Session,
        Generation::Stateless => Mode::StatelessJson,
    };
    let server = spawn(mode).await;
    let session;
    let base: Vec<(&str, &str)> = match generation {
        Generation::Sessions => {
            session = legacy_session(&server).await;
            vec![
                ("mcp-session-id", session.as_str()),
                ("mcp-protocol-version", "2025-06-18"),
            ]
        }
        Generation::Stateless => vec![("mcp-protocol-version", "2026-07-28")],
    };
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut h = base.clone();
        h.extend_from_slice(extra);
        h
    };

    // The honest request passes (add is granted).
    let (status, body, _) = send(signed(
        &server.url,
        &with(&[("mcp-method", "tools/call"), ("mcp-name", "add")]),
        &tools_call("add", generation),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["content"][0]["text"], "3", "{body}");

    // The header names a granted tool, the body one the token does not grant: a grant
    // decision would say 403; the mismatch is refused first.
    let swapped = send(signed(
        &server.url,
        &with(&[("mcp-method", "tools/call"), ("mcp-name", "add")]),
        &tools_call("drop_table", generation),
    ))
    .await;
    assert_header_mismatch(&server, &swapped);

    // Mcp-Method disagrees.
    let method = send(signed(
        &server.url,
        &with(&[("mcp-method", "tools/list"), ("mcp-name", "add")]),
        &tools_call("add", generation),
    ))
    .await;
    assert_header_mismatch(&server, &method);

    // A duplicated Mcp-Name line, both values equal to the body's.
    let twice = send(signed(
        &server.url,
        &with(&[
            ("mcp-method", "tools/call"),
            ("mcp-name", "add"),
            ("mcp-name", "add"),
        ]),
        &tools_call("add", generation),
    ))
    .await;
    assert_header_mismatch(&server, &twice);

    if generation == Generation::Stateless {
        // Mcp-Method and Mcp-Name stripped in transit (a middlebox that drops them): the
        // signature covered them, so it no longer verifies.
        let mut bare = signed(&server.url, &base, &tools_call("add", generation));
        bare.headers_mut().remove("mcp-method");
        bare.headers_mut().remove("mcp-name");
        let (status, body, _) = send(bare).await;
        assert_eq!(status, 401, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_2025_06_18_mismatches_are_refused_before_the_grant() {
    mismatches_are_refused_before_the_grant(Generation::Sessions).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_2026_07_28_mismatches_are_refused_before_the_grant() {
    mismatches_are_refused_before_the_grant(Generation::Stateless).await;
}
