//! A signing MCP client: mints a root token, attenuates it for this agent, then calls the
//! `protected_server` example with every request signed and every answer checked: it must be
//! signed with the server key the client expects, for the request it answers (RFC 9421 §2.4).
//!
//! ```text
//! cargo run -p vouch-examples --example protected_server &
//! cargo run -p vouch-examples --example signing_client -- http://127.0.0.1:8080/mcp
//! ```

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use vouch_httpsig::SigningKey;
use vouch_reqwest::ServerKey;
use vouch_rmcp::SigningClient;
use vouch_token::{KeyPair, Restriction, Token};

const AGENT: &str = "https://agents.example/agents/worker@agents.example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080/mcp".to_owned());

    // The authority mints; the agent narrows it for itself, offline.
    let root = KeyPair::from_seed(&[42; 32])?;
    let token = Token::mint(
        &root,
        "auth.example",
        "team-a",
        Restriction::new()
            .tools(["db_query", "drop_table"])
            .limit("db_query", "max_rows", 1000)
            .ttl(3600),
    )?
    .attenuate(
        Restriction::new()
            .tools(["db_query"])
            .limit("db_query", "max_rows", 50)
            .holder(AGENT)
            .ttl(300),
    )?;

    // Every answer must be signed with the server's key (seed [7; 32], known beforehand), for
    // the very request it answers: an unsigned, foreign, replayed or altered answer fails the
    // call.
    let server = ServerKey::fixed(SigningKey::ed25519_from_seed(&[7; 32])?.verifying_key()?);
    let client = SigningClient::new(
        reqwest::Client::new(),
        SigningKey::ed25519_from_seed(&[1; 32])?,
        AGENT,
    )
    .with_token(&token.to_base64())?
    .verify_responses(server);
    let mcp = ClientConfig::default()
        .serve(StreamableHttpClientTransport::with_client(
            client,
            StreamableHttpClientTransportConfig::with_uri(url),
        ))
        .await?;
    println!("initialized: the server's answers are signed by its key");
    let tools = mcp.list_all_tools().await?;
    println!(
        "tools this token sees: {:?}",
        tools.iter().map(|t| t.name.as_ref()).collect::<Vec<_>>()
    );
    let args = serde_json::json!({"sql": "select * from orders"});
    let result = mcp
        .call_tool(
            CallToolRequestParams::new("db_query")
                .with_arguments(args.as_object().cloned().unwrap_or_default()),
        )
        .await?;
    println!(
        "db_query: {:?}",
        result
            .content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| &t.text)
    );
    match mcp
        .call_tool(CallToolRequestParams::new("drop_table"))
        .await
    {
        Ok(r) => println!("drop_table: unexpectedly allowed: {r:?}"),
        Err(e) => println!("drop_table: refused ({e})"),
    }
    mcp.cancel().await?;
    Ok(())
}
