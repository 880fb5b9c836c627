//! The `GrantGuard` on a transport without HTTP (an in-memory stdio pair): the token travels in
//! `params._meta.token` and the same grants are enforced.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolRequestParams, ClientConfig, PaginatedRequestParams, RequestMetaObject,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use vouch_httpsig::SigningKey;
use vouch_rmcp::{FORBIDDEN_CODE, GrantGuard, OperationMap, UNAUTHORIZED_CODE};
use vouch_token::{Access, KeyPair, Restriction, Token};

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

/// A server whose one tool counts its runs, so that a test can see it never ran.
#[derive(Debug, Clone)]
struct Counted {
    runs: Arc<AtomicUsize>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Counted {
    #[tool(description = "Drops a table", annotations(destructive_hint = true))]
    fn drop_table(&self) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        "dropped".to_owned()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Counted {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// Appends an attenuation block with `payload` (docs/token-format.md section 4) to `token`,
/// signed with the token's proof key, as a holder following the format can: `attenuate` refuses
/// to write a block that is not a narrowing, so this builds the bytes by hand (section 3) and
/// signs them (section 5).
fn hand_sign_block(token: &Token, payload: &[u8]) -> Token {
    let bytes = token.to_bytes();
    // An unsealed token ends with its proof: 0x00 and the seed of the last block's next key.
    let (head, proof) = bytes.split_at(bytes.len() - 33);
    assert_eq!(proof[0], 0x00, "the token is sealed");
    let signer: [u8; 32] = proof[1..].try_into().unwrap();
    let root_key_id = &head[1..9];
    let index = head[9];
    let prev_signature = &head[head.len() - 64..];
    let next = KeyPair::from_seed(&[0x42; 32]).unwrap();
    let next_key = next.public_key();
    let payload_len = u32::try_from(payload.len()).unwrap();

    let mut message = b"vouch-token/v1/block\0".to_vec();
    message.push(0x01);
    message.extend_from_slice(root_key_id);
    message.extend_from_slice(&u32::from(index).to_be_bytes());
    message.extend_from_slice(prev_signature);
    message.extend_from_slice(&payload_len.to_be_bytes());
    message.extend_from_slice(payload);
    message.extend_from_slice(next_key.as_bytes());
    let signature = SigningKey::ed25519_from_seed(&signer)
        .unwrap()
        .sign(&message)
        .unwrap();

    let mut forged = head.to_vec();
    forged[9] = index + 1;
    // A payload under 128 bytes: its length is a one-byte varint.
    forged.push(u8::try_from(payload_len).unwrap());
    assert!(forged.last() < Some(&0x80));
    forged.extend_from_slice(payload);
    forged.extend_from_slice(next_key.as_bytes());
    forged.extend_from_slice(&signature);
    forged.push(0x00);
    forged.extend_from_slice(next.seed());
    Token::from_bytes(&forged).unwrap()
}

/// A block that may be signed but never produced by `attenuate`: `drop_table: [execute]`.
/// Intersected with the root's `drop_table: [read]`, it leaves drop_table no operation at all.
/// `Facts::allows` once read that as "every operation" and the destructive tool ran on stdio;
/// the guard now answers what the verifier decides for the tool and its operation.
#[tokio::test]
async fn hand_signed_block_emptying_the_operations_does_not_run_the_tool() {
    let root_token = Token::mint(
        &root(),
        "auth.example",
        "team-a",
        Restriction::new()
            .tools(["drop_table"])
            .operations("drop_table", ["read"])
            .ttl(600),
    )
    .unwrap();
    let mut payload = vec![0x06, 0x01, 0x0a];
    payload.extend_from_slice(b"drop_table");
    payload.extend_from_slice(&[0x01, 0x03]);
    let forged = hand_sign_block(&root_token, &payload);
    assert_eq!(forged.depth(), 1);
    // The verifier refuses every operation on drop_table: as not granted, or the whole chain
    // as malformed (vouch-token may refuse a chain whose operations intersect to nothing).
    let mut expected = None;
    for op in ["read", "write", "execute"] {
        let access = Access::now().tool("drop_table").operation(op);
        let err = verifier().verify(&forged, &access).unwrap_err();
        let code = if err.is_forbidden() {
            FORBIDDEN_CODE
        } else {
            UNAUTHORIZED_CODE
        };
        assert!(expected.is_none_or(|e| e == code), "{op}: {err}");
        expected = Some(code);
    }
    let expected = expected.unwrap();

    let runs = Arc::new(AtomicUsize::new(0));
    let server = Counted {
        runs: runs.clone(),
        tool_router: Counted::tool_router(),
    };
    let operations = OperationMap::from_tools(&Counted::tool_router().list_all());
    assert_eq!(operations.operation("drop_table"), "write");
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let guard = GrantGuard::new(server, operations).with_verifier(verifier());
    tokio::spawn(async move {
        let running = guard.serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    let client = ClientConfig::default().serve(client_io).await.unwrap();

    let err = call(&client, "drop_table", Some(&forged.to_base64()))
        .await
        .unwrap_err();
    assert_eq!(runs.load(Ordering::SeqCst), 0, "drop_table ran");
    assert_eq!(err.code, expected, "{err:?}");
    if expected == FORBIDDEN_CODE {
        assert_eq!(err.message, "forbidden");
        assert_eq!(
            err.data,
            Some(json!({ "error": "tool_not_granted", "tool": "drop_table" }))
        );
        // Nor is it listed.
        assert_eq!(
            list(&client, Some(&forged.to_base64())).await.unwrap(),
            Vec::<String>::new()
        );
    } else {
        assert_eq!(err.data, Some(json!({ "error": "invalid_token" })));
    }
    client.cancel().await.unwrap();
}
