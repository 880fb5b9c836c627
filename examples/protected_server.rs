//! A protected rmcp server: every request signed (RFC 9421), every call under a capability
//! token, tools that see who calls and what they may do.
//!
//! ```text
//! cargo run -p vouch-examples --example protected_server -- 127.0.0.1:8080
//! ```
//!
//! It trusts one root key (seed `[42; 32]`, as `signing_client` mints with) and one agent key
//! (seed `[1; 32]`); real deployments load keys with `vouch_keys` and resolve agents over HTTPS.
//! It signs every answer with its own key (seed `[7; 32]`, which `signing_client` pins), bound
//! to the request it answers (RFC 9421 §2.4), and serves JSON responses so that the bodies are
//! signed too (event streams are signed over their head only).

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::StreamableHttpServerConfig;
use rmcp::{RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use vouch_httpsig::SigningKey;
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_rmcp::{Origin, Protected, ServeConfig, serve};
use vouch_token::{KeyPair, Verifier};
use vouch_tower::{CapabilityPipeline, SignaturePipeline};

const AGENT: &str = "https://agents.example/agents/worker@agents.example";
/// The keyid the server signs its answers under.
const SERVER_KEYID: &str = "https://mcp.example/.well-known/vouch-server-key";

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct Query {
    sql: String,
}

#[derive(Debug, Clone)]
struct Db {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Db {
    #[tool(
        description = "Runs a read-only query",
        annotations(read_only_hint = true)
    )]
    fn db_query(
        &self,
        Parameters(Query { sql }): Parameters<Query>,
        ctx: RequestContext<RoleServer>,
    ) -> String {
        // Authorize per call with the verified grants: the token's row limit.
        let max_rows = vouch_rmcp::grants(&ctx)
            .and_then(|g| g.limit("db_query", "max_rows"))
            .unwrap_or(0);
        let caller = vouch_rmcp::caller_identity(&ctx).map_or_else(String::new, |c| c.identity);
        format!("{caller} ran {sql:?}, at most {max_rows} rows")
    }

    #[tool(description = "Drops a table", annotations(destructive_hint = true))]
    fn drop_table(&self) -> String {
        "dropped".to_owned()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Db {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Usage: protected_server [ADDR [ORIGIN]]; the origin is the URL clients address this
    // server by (scheme, host, port), `http://ADDR` by default.
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let origin = match std::env::args().nth(2) {
        Some(o) => o.parse()?,
        None => Origin::http(listener.local_addr()?),
    };
    let root = KeyPair::from_seed(&[42; 32])?;
    let agent = KeyPair::from_seed(&[1; 32])?;
    let signatures = SignaturePipeline::new(
        origin.clone(),
        StaticResolver::new().with_ed25519(AGENT, &agent.public_key()),
        ShardedReplayStore::new(100_000),
    )
    .allowlist(|identity: &str| identity.ends_with("@agents.example"));
    let app = Protected::new(
        signatures,
        CapabilityPipeline::new(Verifier::new(root.public_key())),
    )
    .tools(&Db::tool_router().list_all())
    .config(StreamableHttpServerConfig::default().with_json_response(true))
    .sign_responses(SigningKey::ed25519_from_seed(&[7; 32])?, SERVER_KEYID)
    .serve(|| {
        Ok(Db {
            tool_router: Db::tool_router(),
        })
    });
    println!("protected MCP server at {origin}/mcp");
    // Header-read timeout, connection caps: never bare axum::serve on an exposed port.
    serve(listener, app, ServeConfig::default()).await?;
    Ok(())
}
