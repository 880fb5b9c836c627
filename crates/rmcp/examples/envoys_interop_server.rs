//! The server side of `cargo xtask interop`'s MCP check: an rmcp server behind vouch that accepts
//! the envoys signature profile, for a Python client using `envoys-mcp`.
//!
//! ```text
//! cargo run -p vouch-rmcp --example envoys_interop_server -- OUT.json
//! ```
//!
//! Writes `{"url", "token", "outsider_token"}` to OUT.json once listening, then serves until
//! killed. Two envoys identities have keys the server resolves: the RFC 8032 test 1 key as
//! `test@rfc8032-vec1.example` (allowlisted) and seed `[7; 32]` as `outsider@elsewhere.example`
//! (not allowlisted). Each gets a token bound to its own keyid.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use vouch_httpsig::VerifyPolicy;
use vouch_keys::{ShardedReplayStore, StaticResolver};
use vouch_rmcp::{Origin, Protected, ServeConfig, serve};
use vouch_token::{KeyPair, Restriction, Token, Verifier};
use vouch_tower::{CapabilityPipeline, SignaturePipeline};

const ALLOWED: &str = "https://envoys.me/agents/test@rfc8032-vec1.example";
const OUTSIDER: &str = "https://envoys.me/agents/outsider@elsewhere.example";
const RFC8032_TEST1_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(Debug, Clone)]
struct Tools {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Tools {
    #[tool(description = "Adds two numbers", annotations(read_only_hint = true))]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    #[tool(
        description = "The verified caller",
        annotations(read_only_hint = true)
    )]
    fn whoami(&self, ctx: RequestContext<RoleServer>) -> String {
        vouch_rmcp::caller_identity(&ctx).map_or_else(|| "nobody".to_owned(), |c| c.identity)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

fn seed_from_hex(hex: &str) -> Result<[u8; 32], Box<dyn std::error::Error>> {
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        let pair = hex.get(2 * i..2 * i + 2).ok_or("short seed")?;
        *byte = u8::from_str_radix(pair, 16)?;
    }
    Ok(seed)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: envoys_interop_server OUT.json")?;
    let allowed = KeyPair::from_seed(&seed_from_hex(RFC8032_TEST1_SEED)?)?;
    let outsider = KeyPair::from_seed(&[7; 32])?;
    let root = KeyPair::from_seed(&[42; 32])?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let origin = Origin::http(listener.local_addr()?);
    let signatures = SignaturePipeline::new(
        origin.clone(),
        StaticResolver::new()
            .with_ed25519(ALLOWED, &allowed.public_key())
            .with_ed25519(OUTSIDER, &outsider.public_key()),
        ShardedReplayStore::new(100_000),
    )
    .policy(VerifyPolicy::envoys())
    .allowlist(|identity: &str| identity == "test@rfc8032-vec1.example");
    let app = Protected::new(
        signatures,
        CapabilityPipeline::new(Verifier::new(root.public_key())),
    )
    .tools(&Tools::tool_router().list_all())
    .serve(|| {
        Ok(Tools {
            tool_router: Tools::tool_router(),
        })
    });

    let mint = |holder: &str| -> Result<String, vouch_token::Error> {
        Ok(Token::mint(
            &root,
            "interop",
            "envoys",
            Restriction::new().tools(["add", "whoami"]).ttl(600),
        )?
        .attenuate(Restriction::new().holder(holder))?
        .to_base64())
    };
    let url = format!("{origin}/mcp");
    let config = serde_json::json!({
        "url": url,
        "token": mint(ALLOWED)?,
        "outsider_token": mint(OUTSIDER)?,
    });
    // Written whole, then renamed: whoever waits for the file never reads half of it.
    let partial = format!("{out}.partial");
    std::fs::write(&partial, config.to_string())?;
    std::fs::rename(&partial, &out)?;
    eprintln!("envoys interop server at {url}");
    serve(listener, app, ServeConfig::default()).await?;
    Ok(())
}
