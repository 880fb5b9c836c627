//! The `GrantGuard` on a transport without HTTP (an in-memory stdio pair): the token travels in
//! `params._meta.token` and the same grants are enforced.

use rmcp::model::{CallToolRequestParams, ClientConfig, PaginatedRequestParams, RequestMetaObject};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use vouch_rmcp::{FORBIDDEN_CODE, GrantGuard, OperationMap, UNAUTHORIZED_CODE};
use vouch_token::{Restriction, Token};

use crate::support::{Tools, WORKER, root, root_token, verifier, worker_token};

type Client = RunningService<RoleClient, ClientConfig>;

async fn stdio_pair() -> Client {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let guard = GrantGuard::new(
        Tools::new(),
        OperationMap::from_tools(&Tools::tool_router().list_all()),
    )
    .with_verifier(verifier());
    tokio::spawn(async move {
        let running = guard.serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    ClientConfig::default().serve(client_io).await.unwrap()
}

fn meta(token: Option<&str>) -> Option<RequestMetaObject> {
    token.map(|t| {
        let mut m = RequestMetaObject::new();
        m.insert("token".to_owned(), Value::String(t.to_owned()));
        m
    })
}

async fn call(client: &Client, tool: &str, token: Option<&str>) -> Result<String, rmcp::ErrorData> {
    let mut params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(json!({"a": 20, "b": 22}).as_object().unwrap().clone());
    params.meta = meta(token);
    match client.call_tool(params).await {
        Ok(result) => Ok(result
            .content
            .iter()
            .find_map(|c| c.as_text().map(|t| t.text.clone()))
            .unwrap()),
        Err(rmcp::ServiceError::McpError(e)) => Err(e),
        Err(other) => panic!("not an MCP error: {other}"),
    }
}

async fn list(client: &Client, token: Option<&str>) -> Result<Vec<String>, rmcp::ErrorData> {
    let mut params = PaginatedRequestParams::default();
    params.meta = meta(token);
    match client.list_tools(Some(params)).await {
        Ok(result) => {
            let mut names: Vec<String> = result.tools.iter().map(|t| t.name.to_string()).collect();
            names.sort();
            Ok(names)
        }
        Err(rmcp::ServiceError::McpError(e)) => Err(e),
        Err(other) => panic!("not an MCP error: {other}"),
    }
}

/// An unbound narrowing of the root token (stdio has no signer to bind to).
fn stdio_token() -> String {
    root_token()
        .attenuate(
            Restriction::new()
                .tools(["add", "whoami", "db_query"])
                .limit("db_query", "max_rows", 7),
        )
        .unwrap()
        .to_base64()
}

#[tokio::test]
async fn granted_tool_runs_and_sees_the_grants() {
    let client = stdio_pair().await;
    let token = stdio_token();
    assert_eq!(call(&client, "add", Some(&token)).await.unwrap(), "42");
    assert_eq!(
        call(&client, "db_query", Some(&token)).await.unwrap(),
        "7 rows"
    );
    let who: Value =
        serde_json::from_str(&call(&client, "whoami", Some(&token)).await.unwrap()).unwrap();
    assert_eq!(who["identity"], Value::Null, "no signature on stdio");
    assert_eq!(who["max_rows"], 7);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn tools_list_is_filtered() {
    let client = stdio_pair().await;
    assert_eq!(
        list(&client, Some(&stdio_token())).await.unwrap(),
        ["add", "db_query", "whoami"]
    );
    assert_eq!(
        list(&client, Some(&root_token().to_base64()))
            .await
            .unwrap(),
        ["add", "db_query", "drop_table", "whoami"]
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn tool_outside_the_grants_is_an_mcp_error() {
    let client = stdio_pair().await;
    let err = call(&client, "drop_table", Some(&stdio_token()))
        .await
        .unwrap_err();
    assert_eq!(err.code, FORBIDDEN_CODE);
    // Operation: drop_table is destructive (write); a token for read and execute only refuses it.
    let no_write = root_token()
        .attenuate(Restriction::new().operations("drop_table", ["read", "execute"]))
        .unwrap()
        .to_base64();
    let err = call(&client, "drop_table", Some(&no_write))
        .await
        .unwrap_err();
    assert_eq!(err.code, FORBIDDEN_CODE);
    assert_eq!(
        call(&client, "drop_table", Some(&root_token().to_base64()))
            .await
            .unwrap(),
        "dropped"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn missing_invalid_expired_and_holder_bound_tokens_are_refused() {
    let client = stdio_pair().await;
    let expired = Token::mint_at(&root(), "i", "s", Restriction::new().ttl(60), 1_000_000)
        .unwrap()
        .to_base64();
    let mut tampered = stdio_token();
    tampered.replace_range(40..41, if &tampered[40..41] == "A" { "B" } else { "A" });
    for (token, why) in [
        (None, "no token"),
        (Some("not a token"), "garbage"),
        (Some(expired.as_str()), "expired"),
        (Some(tampered.as_str()), "tampered"),
        // Bound to a signer, and stdio has no signature to prove it.
        (Some(&*worker_token(WORKER)), "holder-bound"),
    ] {
        let err = call(&client, "add", token).await.unwrap_err();
        assert_eq!(err.code, UNAUTHORIZED_CODE, "{why}");
        let err = list(&client, token).await.unwrap_err();
        assert_eq!(err.code, UNAUTHORIZED_CODE, "{why}");
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_guard_without_grants_or_verifier_fails_closed() {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let guard = GrantGuard::new(Tools::new(), OperationMap::new());
    tokio::spawn(async move {
        let running = guard.serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    let client = ClientConfig::default().serve(client_io).await.unwrap();
    let err = call(&client, "add", Some(&root_token().to_base64()))
        .await
        .unwrap_err();
    assert_eq!(err.code, UNAUTHORIZED_CODE);
    client.cancel().await.unwrap();
}

#[test]
fn operations_default_from_annotations_and_can_be_overridden() {
    let map = OperationMap::from_tools(&Tools::tool_router().list_all());
    assert_eq!(map.operation("add"), "read");
    assert_eq!(map.operation("drop_table"), "write");
    assert_eq!(map.operation("db_query"), "execute");
    assert_eq!(map.operation("unknown"), "execute");
    let map = map.with("db_query", "read");
    assert_eq!(map.operation("db_query"), "read");
}
