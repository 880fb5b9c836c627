//! Every request and notification the `GrantGuard` sees on stdio, sent as raw JSON-RPC lines the
//! way any client (or attacker) can: without a token each one that needs grants is refused
//! before the handler runs, the exempt ones are not, and with a valid token all of them reach
//! the handler.

use std::sync::{Arc, Mutex};
use std::time::Duration;

#[allow(
    deprecated,
    reason = "the recorder implements logging/setLevel like every method"
)]
use rmcp::model::SetLevelRequestParams;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CancelTaskParams,
    CancelledNotificationParam, CompleteRequestParams, CompleteResult, CustomNotification,
    CustomRequest, CustomResult, ErrorCode, GetPromptRequestParams, GetPromptResponse,
    GetSkillRequestParams, GetSkillResult, GetTaskParams, GetTaskResult, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListSkillsResult, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ReadResourceDirectoryRequestParams,
    ReadResourceDirectoryResult, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig, SubscribeRequestParams, SubscriptionFilter, Tool,
    UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{
    AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines, ReadHalf, WriteHalf,
};
use vouch_rmcp::{FORBIDDEN_CODE, GrantGuard, OperationMap, UNAUTHORIZED_CODE};

use crate::support::{root_token, verifier};

/// What the recorder answers a request it has no real result for: proof the handler ran.
const HANDLER_RAN: ErrorCode = ErrorCode(-32042);

/// A handler that implements every `ServerHandler` method and records each call.
#[derive(Debug, Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn saw(&self, what: impl Into<String>) {
        self.seen.lock().unwrap().push(what.into());
    }

    fn ran<T>(&self, method: &str) -> Result<T, McpError> {
        self.saw(method);
        Err(McpError::new(HANDLER_RAN, method.to_owned(), None))
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Notifications are handled on tasks of their own: waits until `what` is recorded.
    async fn wait_for(&self, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.seen().iter().any(|s| s == what) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} not seen: {:?}",
                self.seen()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn forget(&self) {
        self.seen.lock().unwrap().clear();
    }
}

fn tool(name: &'static str) -> Tool {
    Tool::new(name, name, Arc::new(serde_json::Map::new()))
}

#[allow(deprecated, reason = "implements the deprecated methods too")]
impl ServerHandler for Recorder {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_logging()
                .enable_completions()
                .enable_prompts()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_tasks()
                .enable_skills_with_directory_read()
                .build(),
        )
    }

    async fn ping(&self, _: RequestContext<RoleServer>) -> Result<(), McpError> {
        self.saw("ping");
        Ok(())
    }

    async fn complete(
        &self,
        _: CompleteRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        self.ran("completion/complete")
    }

    async fn set_level(
        &self,
        _: SetLevelRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.ran("logging/setLevel")
    }

    async fn get_prompt(
        &self,
        _: GetPromptRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        self.ran("prompts/get")
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.ran("prompts/list")
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.ran("resources/list")
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.ran("resources/templates/list")
    }

    async fn read_resource(
        &self,
        _: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.ran("resources/read")
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.saw("accepted_subscription_filter");
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    /// Sends one `resources/updated` per accepted URI, then ends the subscription gracefully.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        self.saw("subscriptions/listen");
        for uri in context.accepted().resource_subscriptions.iter().flatten() {
            context
                .sink()
                .notify_resource_updated(uri.clone())
                .await
                .unwrap();
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        _: SubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.ran("resources/subscribe")
    }

    async fn unsubscribe(
        &self,
        _: UnsubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.ran("resources/unsubscribe")
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.ran(&format!("tools/call {}", request.name))
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.saw("tools/list");
        let mut list = ListToolsResult::with_all_items(vec![tool("add"), tool("secret")]);
        // Wrong for a list that depends on the caller: the guard must correct it.
        list.cache_scope = Some(CacheScope::Public);
        Ok(list)
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        self.ran(&request.method)
    }

    async fn on_cancelled(
        &self,
        _: CancelledNotificationParam,
        _: NotificationContext<RoleServer>,
    ) {
        self.saw("notifications/cancelled");
    }

    async fn on_progress(&self, _: ProgressNotificationParam, _: NotificationContext<RoleServer>) {
        self.saw("notifications/progress");
    }

    async fn on_initialized(&self, _: NotificationContext<RoleServer>) {
        self.saw("notifications/initialized");
    }

    async fn on_roots_list_changed(&self, _: NotificationContext<RoleServer>) {
        self.saw("notifications/roots/list_changed");
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _: NotificationContext<RoleServer>,
    ) {
        let n = notification
            .params
            .as_ref()
            .and_then(|p| p.get("n"))
            .cloned();
        self.saw(format!(
            "{} n={}",
            notification.method,
            n.unwrap_or(Value::Null)
        ));
    }

    async fn get_task(
        &self,
        _: GetTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        self.ran("tasks/get")
    }

    async fn update_task(
        &self,
        _: UpdateTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.ran("tasks/update")
    }

    async fn cancel_task(
        &self,
        _: CancelTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.ran("tasks/cancel")
    }

    async fn list_skills(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, McpError> {
        self.ran("skills/list")
    }

    async fn get_skill(
        &self,
        _: GetSkillRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetSkillResult, McpError> {
        self.ran("skills/get")
    }

    async fn read_resource_directory(
        &self,
        _: ReadResourceDirectoryRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceDirectoryResult, McpError> {
        self.ran("resources/directory/read")
    }
}

/// The two lifecycles: `initialize` first (every protocol version before 2026-07-28), or
/// every request carrying the protocol version and client capabilities in `_meta`
/// (2026-07-28, the only one with `subscriptions/listen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Initialize,
    Inline,
}

/// A client speaking newline-delimited JSON-RPC to a guarded `Recorder` over an in-memory pipe.
struct Wire {
    lines: Lines<BufReader<ReadHalf<DuplexStream>>>,
    tx: WriteHalf<DuplexStream>,
    lifecycle: Lifecycle,
    next_id: u64,
}

/// A response, and the notifications the server sent while it was pending.
#[derive(Debug)]
struct Reply {
    notifications: Vec<Value>,
    outcome: Result<Value, Value>,
}

impl Reply {
    fn error_code(&self) -> Option<ErrorCode> {
        let error = self.outcome.as_ref().err()?;
        Some(ErrorCode(i32::try_from(error["code"].as_i64()?).ok()?))
    }
}

fn client_capabilities() -> Value {
    json!({ "extensions": { "io.modelcontextprotocol/tasks": {} } })
}

impl Wire {
    async fn open(lifecycle: Lifecycle) -> (Self, Recorder) {
        let recorder = Recorder::default();
        let guard =
            GrantGuard::new(recorder.clone(), OperationMap::new()).with_verifier(verifier());
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            if let Ok(running) = guard.serve(server_io).await {
                let _ = running.waiting().await;
            }
        });
        let (rx, tx) = tokio::io::split(client_io);
        let mut wire = Self {
            lines: BufReader::new(rx).lines(),
            tx,
            lifecycle,
            next_id: 1,
        };
        if lifecycle == Lifecycle::Initialize {
            // No token: the handshake is exempt.
            let init = json!({
                "protocolVersion": "2025-11-25",
                "capabilities": client_capabilities(),
                "clientInfo": { "name": "raw", "version": "0" },
            });
            let reply = wire.request("initialize", init, None).await;
            assert!(reply.outcome.is_ok(), "initialize: {reply:?}");
            wire.notify("notifications/initialized", json!({}), None)
                .await;
            recorder.wait_for("notifications/initialized").await;
        }
        (wire, recorder)
    }

    /// `params` with `_meta`: the token, and on the inline lifecycle the protocol fields.
    fn params(&self, mut params: Value, token: Option<&str>) -> Value {
        let meta = params
            .as_object_mut()
            .unwrap()
            .entry("_meta")
            .or_insert_with(|| json!({}));
        if self.lifecycle == Lifecycle::Inline {
            meta["io.modelcontextprotocol/protocolVersion"] = json!("2026-07-28");
            meta["io.modelcontextprotocol/clientCapabilities"] = client_capabilities();
            meta["io.modelcontextprotocol/clientInfo"] = json!({ "name": "raw", "version": "0" });
        }
        if let Some(token) = token {
            meta["token"] = json!(token);
        }
        params
    }

    async fn send(&mut self, message: &Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.tx.write_all(line.as_bytes()).await.unwrap();
        self.tx.flush().await.unwrap();
    }

    async fn receive(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(5), self.lines.next_line())
            .await
            .expect("no message from the server within 5 s")
            .unwrap()
            .expect("the server closed the pipe");
        serde_json::from_str(&line).unwrap()
    }

    async fn request(&mut self, method: &str, params: Value, token: Option<&str>) -> Reply {
        let id = self.next_id;
        self.next_id += 1;
        let params = self.params(params, token);
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await;
        let mut notifications = Vec::new();
        loop {
            let message = self.receive().await;
            if message.get("id") == Some(&json!(id)) {
                let outcome = match message.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(message["result"].clone()),
                };
                return Reply {
                    notifications,
                    outcome,
                };
            }
            assert!(
                message.get("id").is_none(),
                "unexpected message while {method} was pending: {message}"
            );
            notifications.push(message);
        }
    }

    async fn notify(&mut self, method: &str, params: Value, token: Option<&str>) {
        let params = self.params(params, token);
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }))
            .await;
    }
}

/// Whether a method needs grants, and on which lifecycle it exists.
struct Method {
    name: &'static str,
    params: Value,
    needs_grants: bool,
    lifecycles: &'static [Lifecycle],
}

const BOTH: &[Lifecycle] = &[Lifecycle::Initialize, Lifecycle::Inline];

fn requests() -> Vec<Method> {
    let gated = |name, params, lifecycles| Method {
        name,
        params,
        needs_grants: true,
        lifecycles,
    };
    vec![
        Method {
            name: "ping",
            params: json!({}),
            needs_grants: false,
            lifecycles: &[Lifecycle::Initialize],
        },
        Method {
            name: "server/discover",
            params: json!({}),
            needs_grants: false,
            lifecycles: &[Lifecycle::Inline],
        },
        gated(
            "completion/complete",
            json!({ "ref": { "type": "ref/prompt", "name": "p" },
                    "argument": { "name": "a", "value": "b" } }),
            BOTH,
        ),
        gated("logging/setLevel", json!({ "level": "info" }), BOTH),
        gated("prompts/get", json!({ "name": "p" }), BOTH),
        gated("prompts/list", json!({}), BOTH),
        gated("resources/list", json!({}), BOTH),
        gated("resources/templates/list", json!({}), BOTH),
        gated("resources/read", json!({ "uri": "file:///a" }), BOTH),
        gated(
            "subscriptions/listen",
            json!({ "notifications": { "resourceSubscriptions": ["file:///a"] } }),
            &[Lifecycle::Inline],
        ),
        gated(
            "resources/subscribe",
            json!({ "uri": "file:///a" }),
            &[Lifecycle::Initialize],
        ),
        gated(
            "resources/unsubscribe",
            json!({ "uri": "file:///a" }),
            &[Lifecycle::Initialize],
        ),
        gated(
            "tools/call",
            json!({ "name": "add", "arguments": {} }),
            BOTH,
        ),
        gated("tools/list", json!({}), BOTH),
        gated("tasks/get", json!({ "taskId": "t" }), BOTH),
        gated(
            "tasks/update",
            json!({ "taskId": "t", "inputResponses": {} }),
            BOTH,
        ),
        gated("tasks/cancel", json!({ "taskId": "t" }), BOTH),
        gated("skills/list", json!({}), BOTH),
        gated(
            "skills/get",
            json!({ "uri": "skill://demo/SKILL.md" }),
            BOTH,
        ),
        gated(
            "resources/directory/read",
            json!({ "uri": "file:///dir/" }),
            BOTH,
        ),
        gated("x-vouch/custom", json!({}), BOTH),
    ]
}

/// What rmcp sends for a `subscriptions/listen` before a `ServerHandler` (the guard) sees the
/// request: the acknowledgment, of the filter `accepted_subscription_filter` returned. No
/// handler data is in it, only what the client asked for that the server supports.
fn acknowledgment_only(reply: &Reply) -> bool {
    match reply.notifications.as_slice() {
        [ack] => ack["method"] == "notifications/subscriptions/acknowledged",
        _ => false,
    }
}

/// rmcp asks `accepted_subscription_filter` before the guard can see the token.
const UNGUARDED: &[&str] = &["accepted_subscription_filter"];

/// The handler's record of a method: `tools/call` records the tool, `listen` its filter first.
fn recorded_as(method: &str) -> Vec<&str> {
    match method {
        "tools/call" => vec!["tools/call add"],
        "subscriptions/listen" => vec!["accepted_subscription_filter", "subscriptions/listen"],
        "server/discover" => vec![],
        other => vec![other],
    }
}

#[tokio::test]
async fn every_request_without_a_token_is_refused_unless_exempt() {
    let garbage = "not a token";
    for lifecycle in [Lifecycle::Initialize, Lifecycle::Inline] {
        let (mut wire, recorder) = Wire::open(lifecycle).await;
        recorder.forget();
        for m in requests()
            .iter()
            .filter(|m| m.lifecycles.contains(&lifecycle))
        {
            for token in [None, Some(garbage)] {
                let reply = wire.request(m.name, m.params.clone(), token).await;
                let what = format!("{lifecycle:?} {} token={token:?}: {reply:?}", m.name);
                if m.needs_grants {
                    assert_eq!(reply.error_code(), Some(UNAUTHORIZED_CODE), "{what}");
                    if m.name == "subscriptions/listen" {
                        assert!(acknowledgment_only(&reply), "{what}");
                        assert_eq!(recorder.seen(), UNGUARDED, "{what}");
                        recorder.forget();
                    } else {
                        assert_eq!(reply.notifications, Vec::<Value>::new(), "{what}");
                        assert_eq!(recorder.seen(), Vec::<String>::new(), "{what}");
                    }
                } else {
                    assert!(reply.outcome.is_ok(), "{what}");
                    assert_eq!(recorder.seen(), recorded_as(m.name), "{what}");
                    recorder.forget();
                }
            }
        }
    }
}

#[tokio::test]
async fn every_request_with_a_valid_token_reaches_the_handler() {
    let token = root_token().to_base64();
    for lifecycle in [Lifecycle::Initialize, Lifecycle::Inline] {
        let (mut wire, recorder) = Wire::open(lifecycle).await;
        recorder.forget();
        for m in requests()
            .iter()
            .filter(|m| m.lifecycles.contains(&lifecycle))
        {
            let reply = wire.request(m.name, m.params.clone(), Some(&token)).await;
            let what = format!("{lifecycle:?} {}: {reply:?}", m.name);
            match reply.error_code() {
                None => {}
                Some(code) => assert_eq!(code, HANDLER_RAN, "{what}"),
            }
            assert_eq!(recorder.seen(), recorded_as(m.name), "{what}");
            recorder.forget();
        }
    }
}

/// A stdio client with no token gets no subscription: the handler's `listen` never runs, no
/// notification of it arrives (`resources/updated` included), and the request ends with the
/// unauthorized error. rmcp has sent its acknowledgment before any `ServerHandler` sees the
/// request; this test pins that, and fails once rmcp lets the guard refuse first.
#[tokio::test]
async fn listen_without_a_token_is_refused_before_the_handler_listens() {
    let (mut wire, recorder) = Wire::open(Lifecycle::Inline).await;
    let filter = json!({ "notifications": {
        "toolsListChanged": true,
        "resourceSubscriptions": ["file:///etc/passwd", "file:///a"],
    } });
    for token in [None, Some("not a token")] {
        let reply = wire
            .request("subscriptions/listen", filter.clone(), token)
            .await;
        assert_eq!(reply.error_code(), Some(UNAUTHORIZED_CODE), "{reply:?}");
        assert!(acknowledgment_only(&reply), "{reply:?}");
    }
    // Nothing arrives later either: the next response is the next message.
    let reply = wire.request("server/discover", json!({}), None).await;
    assert!(reply.outcome.is_ok(), "{reply:?}");
    assert_eq!(reply.notifications, Vec::<Value>::new());
    assert_eq!(recorder.seen(), [UNGUARDED, UNGUARDED].concat());

    // With a token: acknowledged, then the updates for the URIs named, then the final result.
    let token = root_token().to_base64();
    let reply = wire
        .request("subscriptions/listen", filter, Some(&token))
        .await;
    assert!(reply.outcome.is_ok(), "{reply:?}");
    let methods: Vec<&str> = reply
        .notifications
        .iter()
        .map(|n| n["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        [
            "notifications/subscriptions/acknowledged",
            "notifications/resources/updated",
            "notifications/resources/updated",
        ]
    );
}

/// `tools/list` hides what the token does not grant on both lifecycles, and no cache may share
/// the list between callers.
#[tokio::test]
async fn tools_list_is_filtered_on_both_lifecycles() {
    let narrow = root_token()
        .attenuate(vouch_token::Restriction::new().tools(["add"]))
        .unwrap()
        .to_base64();
    for lifecycle in [Lifecycle::Initialize, Lifecycle::Inline] {
        let (mut wire, _) = Wire::open(lifecycle).await;
        let reply = wire.request("tools/list", json!({}), Some(&narrow)).await;
        let result = reply.outcome.unwrap();
        let names: Vec<&str> = result["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["add"], "{lifecycle:?}");
        assert_eq!(result["cacheScope"], "private", "{lifecycle:?}");
        let reply = wire
            .request("tools/call", json!({ "name": "secret" }), Some(&narrow))
            .await;
        assert_eq!(reply.error_code(), Some(FORBIDDEN_CODE), "{lifecycle:?}");
    }
}

/// Client notifications: the protocol's own are exempt; a custom one runs application code
/// and needs grants (it has no response, so a refused one is dropped).
#[tokio::test]
async fn notifications_exempt_and_gated() {
    let token = root_token().to_base64();
    let (mut wire, recorder) = Wire::open(Lifecycle::Initialize).await;
    let exempt = [
        ("notifications/cancelled", json!({ "requestId": 999 })),
        (
            "notifications/progress",
            json!({ "progressToken": "p", "progress": 1 }),
        ),
        ("notifications/roots/list_changed", json!({})),
    ];
    for (method, params) in exempt {
        wire.notify(method, params, None).await;
    }
    wire.notify("x-vouch/note", json!({ "n": 1 }), None).await;
    wire.notify("x-vouch/note", json!({ "n": 2 }), Some("not a token"))
        .await;
    wire.notify("x-vouch/note", json!({ "n": 3 }), Some(&token))
        .await;
    recorder.wait_for("x-vouch/note n=3").await;
    // The refused ones were sent first; give a late one the time to show up.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut seen = recorder.seen();
    seen.sort();
    assert_eq!(
        seen,
        [
            "notifications/cancelled",
            "notifications/initialized",
            "notifications/progress",
            "notifications/roots/list_changed",
            "x-vouch/note n=3",
        ]
    );
}
