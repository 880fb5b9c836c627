//! The rmcp client of `cargo xtask ci gateway` (`xtask/gateway/e2e.py`): vouch-rmcp's
//! `SigningClient` against a running `vouch gateway`.
//!
//! ```text
//! cargo run -p vouch-rmcp --example gateway_client -- URL KEYFILE KEYID TOKEN_FILE FORBIDDEN_TOOL
//! ```
//!
//! KEYFILE is a private key in any format `vouch keygen` writes; TOKEN_FILE holds a vouch token
//! (sent sealed, in `x-mcpvault-token`). The client initializes a session, lists the tools, calls
//! `whoami`, then calls FORBIDDEN_TOOL (which the token must not grant); a second session sends
//! `X-Vouch-Identity: admin@evil` on every request and calls `whoami` again. It prints one JSON
//! object on stdout:
//!
//! ```json
//! {"tools": ["slow_count", "whoami"], "whoami": "...", "forbidden": "HTTP 403 ...",
//!  "forged_whoami": "..."}
//! ```
//!
//! `forbidden` is the error the call failed with (or `"allowed: ..."` if it did not fail). The
//! caller decides what is right; the exit status is 1 only when something could not run at all
//! (bad arguments, no session).

use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ServiceExt, service::ServiceError};
use vouch_httpsig::SigningKey;
use vouch_rmcp::SigningClient;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Every MCP exchange is bounded: the harness never waits on a stuck client.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

struct Args {
    url: String,
    /// The key's seed: a `SigningKey` is made for each session (it is not `Clone`).
    seed: [u8; 32],
    keyid: String,
    token: String,
    forbidden: String,
}

fn args() -> Result<Args, Error> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let [url, key, keyid, token, forbidden] = argv.as_slice() else {
        return Err("usage: gateway_client URL KEYFILE KEYID TOKEN_FILE FORBIDDEN_TOOL".into());
    };
    let pair = vouch_keys::load_private(std::path::Path::new(key))?;
    Ok(Args {
        url: url.clone(),
        seed: *pair.seed(),
        keyid: keyid.clone(),
        token: std::fs::read_to_string(token)?.trim().to_owned(),
        forbidden: forbidden.clone(),
    })
}

/// An rmcp session through the gateway, signing with `key`; `forged` adds a client-chosen
/// `X-Vouch-Identity` to every request (outside the signature).
async fn connect(
    args: &Args,
    forged: Option<&str>,
) -> Result<RunningService<RoleClient, ClientConfig>, Error> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(identity) = forged {
        headers.insert("x-vouch-identity", identity.parse()?);
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .build()?;
    let key = SigningKey::ed25519_from_seed(&args.seed)?;
    let signing = SigningClient::new(http, key, args.keyid.clone()).with_token(&args.token)?;
    let transport = StreamableHttpClientTransport::with_client(
        signing,
        StreamableHttpClientTransportConfig::with_uri(args.url.as_str()),
    );
    Ok(tokio::time::timeout(STEP_TIMEOUT, ClientConfig::default().serve(transport)).await??)
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

async fn call(
    client: &RunningService<RoleClient, ClientConfig>,
    tool: &str,
) -> Result<Result<CallToolResult, ServiceError>, Error> {
    let params = CallToolRequestParams::new(tool.to_owned());
    Ok(tokio::time::timeout(STEP_TIMEOUT, client.call_tool(params)).await?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = args()?;
    // reqwest is built without a TLS provider of its own (the gateway is plain http, but the
    // client cannot be built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();

    let client = connect(&args, None).await?;
    let listed = tokio::time::timeout(STEP_TIMEOUT, client.list_all_tools()).await??;
    let mut tools: Vec<String> = listed.iter().map(|t| t.name.to_string()).collect();
    tools.sort();
    let whoami = match call(&client, "whoami").await? {
        Ok(r) if r.is_error != Some(true) => text(&r),
        Ok(r) => format!("tool error: {}", text(&r)),
        Err(e) => format!("error: {e}"),
    };
    // Last on this session: a refused request may end the client's transport.
    let forbidden = match call(&client, &args.forbidden).await? {
        Ok(r) => format!("allowed: {}", text(&r)),
        Err(e) => e.to_string(),
    };
    let _ = tokio::time::timeout(STEP_TIMEOUT, client.cancel()).await;

    let forged = connect(&args, Some("admin@evil")).await?;
    let forged_whoami = match call(&forged, "whoami").await? {
        Ok(r) if r.is_error != Some(true) => text(&r),
        Ok(r) => format!("tool error: {}", text(&r)),
        Err(e) => format!("error: {e}"),
    };
    let _ = tokio::time::timeout(STEP_TIMEOUT, forged.cancel()).await;

    println!(
        "{}",
        serde_json::json!({
            "tools": tools,
            "whoami": whoami,
            "forbidden": forbidden,
            "forged_whoami": forged_whoami,
        })
    );
    Ok(())
}
