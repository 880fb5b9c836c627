//! The fixture: a real rmcp server with tools, behind vouch, on 127.0.0.1.

use std::sync::{Arc, Mutex};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::StreamableHttpServerConfig;
use rmcp::{RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde_json::json;
use vouch_httpsig::SigningKey;
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_rmcp::{Origin, Protected, SessionBindingLayer};
use vouch_token::{KeyPair, Restriction, Token, Verifier};
use vouch_tower::{CapabilityPipeline, Decision, SignaturePipeline};

pub(crate) const WORKER: &str = "https://agents.example/agents/worker@agents.example";
pub(crate) const OTHER: &str = "https://agents.example/agents/other@agents.example";
/// Has a key the server resolves, but is not on the allowlist.
pub(crate) const OUTSIDER: &str = "https://elsewhere.example/agents/mallory@elsewhere.example";

pub(crate) fn root() -> KeyPair {
    KeyPair::from_seed(&[9; 32]).unwrap()
}

pub(crate) fn seed_of(keyid: &str) -> [u8; 32] {
    match keyid {
        WORKER => [1; 32],
        OTHER => [2; 32],
        _ => [3; 32],
    }
}

pub(crate) fn signing_key(keyid: &str) -> SigningKey {
    SigningKey::ed25519_from_seed(&seed_of(keyid)).unwrap()
}

/// The root token: four tools, `db_query` limited to 50 rows.
pub(crate) fn root_token() -> Token {
    Token::mint(
        &root(),
        "auth.example",
        "team-a",
        Restriction::new()
            .tools(["add", "whoami", "db_query", "drop_table"])
            .limit("db_query", "max_rows", 50)
            .ttl(600),
    )
    .unwrap()
}

/// The worker's token: bound to `holder`, without `drop_table`, at most 10 rows.
pub(crate) fn worker_token(holder: &str) -> String {
    root_token()
        .attenuate(
            Restriction::new()
                .holder(holder)
                .tools(["add", "whoami", "db_query"])
                .limit("db_query", "max_rows", 10),
        )
        .unwrap()
        .to_base64()
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct AddArgs {
    pub(crate) a: i64,
    pub(crate) b: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Tools {
    tool_router: ToolRouter<Self>,
}

impl Tools {
    pub(crate) fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router(vis = "pub(crate)")]
impl Tools {
    #[tool(description = "Adds two numbers", annotations(read_only_hint = true))]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    #[tool(
        description = "Who is calling and what they may do",
        annotations(read_only_hint = true)
    )]
    fn whoami(&self, ctx: RequestContext<RoleServer>) -> String {
        let caller = vouch_rmcp::caller_identity(&ctx);
        let grants = vouch_rmcp::grants(&ctx);
        json!({
            "identity": caller.as_ref().map(|c| c.identity.clone()),
            "keyid": caller.as_ref().map(|c| c.keyid.clone()),
            "tools": grants.as_ref().map(|g| g.tools().to_vec()),
            "max_rows": grants.as_ref().and_then(|g| g.limit("db_query", "max_rows")),
        })
        .to_string()
    }

    #[tool(description = "Runs a query")]
    fn db_query(&self, ctx: RequestContext<RoleServer>) -> String {
        let rows = vouch_rmcp::grants(&ctx)
            .and_then(|g| g.limit("db_query", "max_rows"))
            .unwrap_or(0);
        format!("{rows} rows")
    }

    #[tool(description = "Drops a table", annotations(destructive_hint = true))]
    fn drop_table(&self) -> String {
        "dropped".to_owned()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// rmcp's default: a session per client, SSE responses.
    Session,
    /// No sessions, JSON responses.
    StatelessJson,
}

/// One decision of a vouch layer, as the audit hook saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) layer: &'static str,
    pub(crate) method: String,
    pub(crate) accepted: bool,
    pub(crate) reason: String,
    pub(crate) identity: Option<String>,
}

pub(crate) struct Server {
    pub(crate) url: String,
    /// The coalescer the server's signature pipeline verifies Ed25519 with.
    pub(crate) coalescer: std::sync::Arc<vouch_httpsig::coalesce::Coalescer>,
    pub(crate) sessions: SessionBindingLayer,
    pub(crate) seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub(crate) fn verifier() -> Verifier {
    Verifier::new(root().public_key())
}

pub(crate) async fn spawn(mode: Mode) -> Server {
    let mut resolver = StaticResolver::new();
    for keyid in [WORKER, OTHER, OUTSIDER] {
        resolver = resolver.with_ed25519(
            keyid,
            &KeyPair::from_seed(&seed_of(keyid)).unwrap().public_key(),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let signatures = SignaturePipeline::new(
        Origin::http(addr),
        resolver,
        ShardedReplayStore::new(10_000),
    )
    .allowlist(|identity: &str| identity.ends_with("@agents.example"));
    let coalescer = signatures
        .coalescing()
        .cloned()
        .expect("coalesced by default");
    let config = match mode {
        Mode::Session => StreamableHttpServerConfig::default(),
        Mode::StatelessJson => StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true),
    };
    let sessions = SessionBindingLayer::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = Protected::new(signatures, CapabilityPipeline::new(verifier()))
        .tools(&Tools::tool_router().list_all())
        .config(config.with_sse_keep_alive(None))
        .session_binding(Some(sessions.clone()))
        .audit(move |d: &Decision<'_>| {
            record.lock().unwrap().push(Seen {
                layer: d.layer,
                method: d.method.to_owned(),
                accepted: d.accepted,
                reason: d.reason.to_owned(),
                identity: d.identity.map(str::to_owned),
            });
        })
        .serve(|| Ok(Tools::new()));
    tokio::spawn(async move {
        vouch_rmcp::serve(listener, app, vouch_rmcp::ServeConfig::default())
            .await
            .unwrap()
    });
    Server {
        url: format!("http://{addr}/mcp"),
        coalescer,
        sessions,
        seen,
    }
}

pub(crate) fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}
