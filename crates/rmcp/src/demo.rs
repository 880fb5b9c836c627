//! The end-to-end demo: a real rmcp server behind vouch on 127.0.0.1, a root token attenuated for
//! a worker agent, one allowed call through the signing rmcp client, and every rejection a person
//! would want to see, one line each with the HTTP status and the reason.
//!
//! Run it with `cargo run --release -p vouch-rmcp --features demo --example demo` (or
//! `cargo xtask demo`).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolRequestParams, ClientConfig, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleServer, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use vouch_httpsig::SigningKey;
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_reqwest::SigningMiddleware;
use vouch_token::{KeyPair, Restriction, Token, Verifier};
use vouch_tower::{CapabilityPipeline, Origin, ServeConfig, SignaturePipeline};

use crate::{Protected, SigningClient};

const WORKER: &str = "https://agents.example/agents/worker@agents.example";
const THIEF: &str = "https://agents.example/agents/thief@agents.example";

/// The demo's arguments for `add`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

/// The demo's tools.
#[derive(Debug, Clone)]
struct DemoTools {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl DemoTools {
    #[tool(description = "Adds two numbers", annotations(read_only_hint = true))]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    #[tool(
        description = "Who is calling, as vouch verified it",
        annotations(read_only_hint = true)
    )]
    fn whoami(&self, ctx: RequestContext<RoleServer>) -> String {
        let who = crate::caller_identity(&ctx).map_or_else(|| "nobody".to_owned(), |c| c.identity);
        let tools = crate::grants(&ctx).map_or_else(Vec::new, |g| g.tools().to_vec());
        format!("{who}, granted {}", tools.join(", "))
    }

    #[tool(description = "Drops a table", annotations(destructive_hint = true))]
    fn drop_table(&self) -> String {
        "dropped".to_owned()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// One outcome: what was tried, what was expected, what happened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Outcome {
    /// What was tried.
    pub action: String,
    /// True if it should have been let through.
    pub expect_allowed: bool,
    /// What happened: the HTTP status, or 200 for a call the rmcp client completed.
    pub status: u16,
    /// The reason the server gave, or the tool's answer.
    pub detail: String,
}

impl Outcome {
    /// True if the outcome is the expected one.
    pub fn as_expected(&self) -> bool {
        self.expect_allowed == (self.status == 200)
    }
}

/// Everything the demo did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Report {
    /// The lines describing the setup.
    pub setup: Vec<String>,
    /// Each call and its outcome, in order.
    pub outcomes: Vec<Outcome>,
}

impl Report {
    /// True if every outcome is the expected one.
    pub fn all_as_expected(&self) -> bool {
        !self.outcomes.is_empty() && self.outcomes.iter().all(Outcome::as_expected)
    }

    /// The report as a person reads it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.setup {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
        for o in &self.outcomes {
            let verdict = match (o.expect_allowed, o.as_expected()) {
                (true, true) => "allowed ",
                (false, true) => "refused ",
                (_, false) => "UNEXPECTED",
            };
            let _ = writeln!(
                out,
                "  {verdict}  {:<48} {}  {}",
                o.action, o.status, o.detail
            );
        }
        let _ = writeln!(out);
        let good = self.outcomes.iter().filter(|o| o.as_expected()).count();
        let _ = writeln!(
            out,
            "{good}/{} outcomes as expected{}",
            self.outcomes.len(),
            if self.all_as_expected() {
                "."
            } else {
                ": FAILED"
            }
        );
        out
    }
}

/// Why the demo could not run at all (as opposed to an unexpected outcome, which the report
/// shows).
#[derive(Debug)]
#[non_exhaustive]
pub struct DemoError(pub String);

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "demo failed: {}", self.0)
    }
}

impl std::error::Error for DemoError {}

fn fail(what: &str) -> impl Fn(String) -> DemoError + '_ {
    move |e| DemoError(format!("{what}: {e}"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn key(seed: u8) -> Result<SigningKey, DemoError> {
    SigningKey::ed25519_from_seed(&[seed; 32]).map_err(|e| fail("signing key")(e.to_string()))
}

fn public(seed: u8) -> Result<vouch_token::PublicKey, DemoError> {
    KeyPair::from_seed(&[seed; 32])
        .map(|k| k.public_key())
        .map_err(|e| fail("key")(e.to_string()))
}

/// A signed (or unsigned) raw MCP request, for the calls the rmcp client would never make.
fn raw(
    http: &reqwest::Client,
    url: &str,
    signer: Option<(u8, &str)>,
    token: &str,
    body: &str,
) -> Result<reqwest::Request, DemoError> {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-mcpvault-token", token)
        .body(body.to_owned())
        .build()
        .map_err(|e| fail("request")(e.to_string()))?;
    if let Some((seed, keyid)) = signer {
        SigningMiddleware::new(key(seed)?, keyid)
            .sign_request(&mut req)
            .map_err(|e| fail("signing")(e.to_string()))?;
    }
    Ok(req)
}

async fn send(
    http: &reqwest::Client,
    action: &str,
    req: reqwest::Request,
) -> Result<Outcome, DemoError> {
    let res = http
        .execute(req)
        .await
        .map_err(|e| fail("send")(e.to_string()))?;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            let kind = v.pointer("/detail/error")?.as_str()?.to_owned();
            let why = v
                .pointer("/detail/detail")
                .and_then(Value::as_str)
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            Some(format!("{kind}{why}"))
        })
        .unwrap_or_else(|| "ok".to_owned());
    Ok(Outcome {
        action: action.to_owned(),
        expect_allowed: false,
        status,
        detail,
    })
}

fn tools_call(tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
           "params": {"name": tool, "arguments": {"a": 2, "b": 3}}})
    .to_string()
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"demo","version":"1.0"}}}"#;

/// Runs the demo against a server it starts on 127.0.0.1 and returns what happened.
///
/// # Errors
///
/// [`DemoError`] if the demo could not run (no loopback port, a broken key); an unexpected
/// outcome is not an error but shows in the [`Report`].
pub async fn run() -> Result<Report, DemoError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut report = Report::default();

    // The server: the worker and a thief both have resolvable keys and are on the allowlist.
    let root = KeyPair::from_seed(&[42; 32]).map_err(|e| fail("root key")(e.to_string()))?;
    let resolver = StaticResolver::new()
        .with_ed25519(WORKER, &public(1)?)
        .with_ed25519(THIEF, &public(2)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| fail("bind 127.0.0.1")(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| fail("local address")(e.to_string()))?;
    // The server's own origin: requests addressed to any other authority are refused (421).
    let signatures = SignaturePipeline::new(
        Origin::http(addr),
        resolver,
        ShardedReplayStore::new(100_000),
    )
    .allowlist(|identity: &str| identity.ends_with("@agents.example"));
    let app = Protected::new(
        signatures,
        CapabilityPipeline::new(Verifier::new(root.public_key())),
    )
    .tools(&DemoTools::tool_router().list_all())
    .serve(|| {
        Ok(DemoTools {
            tool_router: DemoTools::tool_router(),
        })
    });
    tokio::spawn(async move {
        if let Err(e) = crate::serve(listener, app, ServeConfig::default()).await {
            tracing::error!(%e, "demo server stopped");
        }
    });
    let url = format!("http://{addr}/mcp");
    report.setup.push(format!(
        "vouch demo: an rmcp server protected by vouch at {url}"
    ));

    // The tokens: a root token, attenuated for the worker agent.
    let root_token = Token::mint(
        &root,
        "auth.example",
        "team-a",
        Restriction::new()
            .tools(["add", "whoami", "drop_table"])
            .ttl(600),
    )
    .map_err(|e| fail("mint")(e.to_string()))?;
    let worker_token = root_token
        .attenuate(
            Restriction::new()
                .tools(["add", "whoami"])
                .holder(WORKER)
                .ttl(300),
        )
        .map_err(|e| fail("attenuate")(e.to_string()))?;
    let worker_b64 = worker_token.to_base64();
    report.setup.push(format!(
        "  root token   tools add, whoami, drop_table; 10 min; {} bytes",
        root_token.to_bytes().len()
    ));
    report.setup.push(format!(
        "  worker token attenuated offline: add, whoami only; bound to {WORKER}; 5 min; {} bytes",
        worker_token.to_bytes().len()
    ));

    // Allowed: the real rmcp client, signing every request.
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| fail("http client")(e.to_string()))?;
    let signing = SigningClient::new(http.clone(), key(1)?, WORKER)
        .with_token(&worker_b64)
        .map_err(|e| fail("token header")(e.to_string()))?;
    let client = ClientConfig::default()
        .serve(StreamableHttpClientTransport::with_client(
            signing,
            StreamableHttpClientTransportConfig::with_uri(url.as_str()),
        ))
        .await
        .map_err(|e| fail("rmcp client")(e.to_string()))?;
    for (tool, args) in [("add", json!({"a": 2, "b": 3})), ("whoami", json!({}))] {
        let mut params = CallToolRequestParams::new(tool);
        if let Value::Object(map) = args {
            params = params.with_arguments(map);
        }
        let (status, detail) = match client.call_tool(params).await {
            Ok(r) if r.is_error != Some(true) => (
                200,
                r.content
                    .iter()
                    .find_map(|c| c.as_text().map(|t| format!("= {}", t.text)))
                    .unwrap_or_default(),
            ),
            Ok(r) => (200, format!("tool error: {r:?}")),
            Err(e) => (0, e.to_string()),
        };
        report.outcomes.push(Outcome {
            action: format!("signed rmcp client calls {tool}"),
            expect_allowed: true,
            status,
            detail,
        });
    }
    let _ = client.cancel().await;

    // Refused: each on its own.
    let worker = Some((1, WORKER));
    report.outcomes.push(
        send(
            &http,
            "unsigned call",
            raw(&http, &url, None, &worker_b64, &tools_call("add"))?,
        )
        .await?,
    );
    let mut tampered = raw(&http, &url, worker, &worker_b64, &tools_call("add"))?;
    *tampered.body_mut() = Some(tools_call("drop_table").into());
    report
        .outcomes
        .push(send(&http, "tampered body (add → drop_table)", tampered).await?);
    let original = raw(&http, &url, worker, &worker_b64, INITIALIZE)?;
    let replay = original
        .try_clone()
        .ok_or_else(|| DemoError("cannot clone the request".into()))?;
    let mut first = send(&http, "signed initialize, sent once", original).await?;
    first.expect_allowed = true;
    report.outcomes.push(first);
    report
        .outcomes
        .push(send(&http, "the same signed request, replayed", replay).await?);
    report.outcomes.push(
        send(
            &http,
            "tool outside the token (drop_table)",
            raw(&http, &url, worker, &worker_b64, &tools_call("drop_table"))?,
        )
        .await?,
    );
    let expired = Token::mint_at(
        &root,
        "auth.example",
        "team-a",
        Restriction::new().tools(["add"]).ttl(60),
        now().saturating_sub(3600),
    )
    .map_err(|e| fail("mint")(e.to_string()))?
    .to_base64();
    report.outcomes.push(
        send(
            &http,
            "expired token",
            raw(&http, &url, worker, &expired, &tools_call("add"))?,
        )
        .await?,
    );
    report.outcomes.push(
        send(
            &http,
            "token stolen by another agent (holder binding)",
            raw(
                &http,
                &url,
                Some((2, THIEF)),
                &worker_b64,
                &tools_call("add"),
            )?,
        )
        .await?,
    );
    Ok(report)
}
