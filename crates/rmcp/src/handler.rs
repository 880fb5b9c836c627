//! The `ServerHandler` wrapper that enforces grants inside rmcp, for every transport.
//!
//! Every method of rmcp's `ServerHandler` that answers or receives a client message, and what
//! the [`GrantGuard`] asks of it. "A token" means grants from the HTTP layers or, on stdio, a
//! token in `params._meta.token` that verifies now; without one a request is refused with
//! [`UNAUTHORIZED_CODE`] before the wrapped handler runs.
//!
//! | Message | Method | Grants | Why |
//! |---------|--------|--------|-----|
//! | `initialize` | `initialize` | exempt | the handshake comes before any request can carry a token; it answers the server's info and capabilities, no handler data |
//! | `server/discover` | `discover` | exempt | the same, for the 2026-07-28 lifecycle |
//! | `ping` | `ping` | exempt | liveness only; MCP allows it before `initialize` (rmcp answers that one itself) |
//! | `tools/list` | `list_tools` | a token; the list is filtered | lists only the tools whose operation the token grants: on stdio each is decided by [`Verifier::authorize`], over HTTP by the verified grants |
//! | `tools/call` | `call_tool` | a token granting the tool and its operation | runs a tool. On stdio [`Verifier::authorize`], given the tool and its operation, decides; over HTTP the [`CapabilityLayer`](vouch_tower::CapabilityLayer) did, and the guard checks the grants again |
//! | `prompts/list`, `prompts/get` | `list_prompts`, `get_prompt` | a token | server content |
//! | `resources/list`, `resources/templates/list`, `resources/read`, `resources/directory/read` | `list_resources`, `list_resource_templates`, `read_resource`, `read_resource_directory` | a token | server data |
//! | `subscriptions/listen` | `listen` | a token, before `listen` runs | streams change notifications, `resources/updated` for the URIs the client names included. rmcp acknowledges first (below) |
//! | ″ | `accepted_subscription_filter` | none possible | rmcp asks it with no request context, so before the token can be seen |
//! | `resources/subscribe`, `resources/unsubscribe` | `subscribe`, `unsubscribe` | a token | the pre-2026-07-28 form of the above |
//! | `completion/complete` | `complete` | a token | completions come from server data (argument values, resource names) |
//! | `logging/setLevel` | `set_level` | a token | changes what the server sends the peer |
//! | `tasks/get`, `tasks/update`, `tasks/cancel` | `get_task`, `update_task`, `cancel_task` | a token | task state, input to a running task, cancellation |
//! | `skills/list`, `skills/get` | `list_skills`, `get_skill` | a token | server content |
//! | any other request | `on_custom_request` | a token | application code |
//! | `notifications/initialized` | `on_initialized` | exempt | lifecycle, carries nothing |
//! | `notifications/cancelled` | `on_cancelled` | exempt | cancels one of the sender's own requests on this connection (rmcp matches the id first); refusing it would leave work running |
//! | `notifications/progress` | `on_progress` | exempt | progress of a request the server sent this peer |
//! | `notifications/roots/list_changed` | `on_roots_list_changed` | exempt | a hint; the roots arrive as the answer to the server's own `roots/list`, the peer's word, which no guard sees: a handler must not take roots as authority |
//! | any other notification | `on_custom_notification` | a token; dropped without one | application code; a notification has no response to carry an error |
//!
//! The other methods (`get_info`, `supported_protocol_versions`, `negotiate_initialize`,
//! `get_tool`) answer no message of their own; rmcp calls them while handling the ones above,
//! and the guard forwards them.
//!
//! **`subscriptions/listen` and the acknowledgment.** rmcp 3.11 gives a `ServerHandler` no hook
//! between a `subscriptions/listen` request and its `notifications/subscriptions/acknowledged`:
//! it asks `accepted_subscription_filter` (no request context, so no token), sends the
//! acknowledgment, and only then calls `listen` with the request. The guard refuses there, so a
//! caller without a token gets [`UNAUTHORIZED_CODE`] and no notification from the handler, but
//! it has received the acknowledgment, which carries the filter it asked for intersected with
//! what the handler accepts and the server's capabilities. A handler's
//! `accepted_subscription_filter` must therefore reveal nothing an anonymous peer may not learn
//! (do not narrow resource URIs by existence or by permission there; decide in `listen`), and do
//! no work. Over HTTP the [`CapabilityLayer`](vouch_tower::CapabilityLayer) refuses the request
//! before rmcp sees it. On stdio `listen` cannot find the grants with [`grants`](crate::grants())
//! (rmcp's subscription context is read-only); the request's `_meta.token` is there.

use std::borrow::Cow;
use std::sync::Arc;

#[allow(
    deprecated,
    reason = "the wrapper delegates logging/setLevel like every other method"
)]
use rmcp::model::SetLevelRequestParams;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CancelTaskParams,
    CancelledNotificationParam, CompleteRequestParams, CompleteResult, CustomNotification,
    CustomRequest, CustomResult, DiscoverResult, ErrorCode, Extensions, GetPromptRequestParams,
    GetPromptResponse, GetSkillRequestParams, GetSkillResult, GetTaskParams, GetTaskResult,
    InitializeRequestParams, InitializeResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListSkillsResult, ListToolsResult, NotificationMetaObject,
    PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion,
    ReadResourceDirectoryRequestParams, ReadResourceDirectoryResult, ReadResourceRequestParams,
    ReadResourceResponse, ServerConfig, SubscribeRequestParams, SubscriptionFilter, Tool,
    UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::Value;
use vouch_token::{Access, Token, VerifiedToken, Verifier};
use vouch_tower::Grants;

use crate::grants::OperationMap;

/// The JSON-RPC error code for a request without a valid capability token (HTTP 401's peer).
pub const UNAUTHORIZED_CODE: ErrorCode = ErrorCode(-32001);
/// The JSON-RPC error code for a tool or operation the token does not grant (HTTP 403's peer).
pub const FORBIDDEN_CODE: ErrorCode = ErrorCode(-32003);

/// The `_meta` key a stdio client puts its capability token under (`params._meta.token`).
pub const META_TOKEN_KEY: &str = "token";

/// Wraps an rmcp [`ServerHandler`] so that `tools/list` shows only the tools the caller's token
/// grants and `tools/call` outside the grants is refused with an MCP error
/// ([`FORBIDDEN_CODE`]); every other request but `initialize`, `server/discover` and `ping`,
/// and every notification but the protocol's own, needs a verified token too (the module
/// source, `handler.rs`, has a table of each method and why). Everything else is delegated
/// unchanged.
///
/// Where the grants come from:
/// - over HTTP, from the [`CapabilityLayer`](vouch_tower::CapabilityLayer) in front of rmcp (the
///   [`Protected`](crate::Protected) builder wires both);
/// - on transports without an HTTP layer (stdio), from the token in the request's
///   `params._meta.token`, verified on every request with the [`Verifier`] given to
///   [`GrantGuard::with_verifier`]. There is no signature there, so a holder-bound token is
///   refused. [`Verifier::authorize`], given the tool and its operation, decides `tools/call`
///   and each tool `tools/list` shows.
///
/// A request with no grants from either source is refused ([`UNAUTHORIZED_CODE`]), and a
/// notification dropped: the guard fails closed. On stdio a refused `subscriptions/listen` has
/// already been acknowledged by rmcp (see the module source).
#[derive(Clone)]
pub struct GrantGuard<H> {
    inner: H,
    operations: Arc<OperationMap>,
    verifier: Option<Arc<Verifier>>,
}

/// Where a message's grants came from.
enum Admission {
    /// The HTTP layers verified the token (and, for `tools/call`, the tool and operation).
    Http(Grants),
    /// The guard verified the token in `params._meta.token`.
    Stdio {
        token: Box<VerifiedToken>,
        grants: Grants,
    },
}

impl<H> GrantGuard<H> {
    /// Guards `inner`, judging each tool by the operation `operations` gives it.
    pub fn new(inner: H, operations: OperationMap) -> Self {
        Self {
            inner,
            operations: Arc::new(operations),
            verifier: None,
        }
    }

    /// Verifies a token in `params._meta.token` when no HTTP layer supplied grants (stdio).
    #[must_use]
    pub fn with_verifier(mut self, verifier: Verifier) -> Self {
        self.verifier = Some(Arc::new(verifier));
        self
    }

    /// The wrapped handler.
    pub fn get_ref(&self) -> &H {
        &self.inner
    }

    /// The grants for a message: those the HTTP layers put in `extensions`, or else (stdio)
    /// the token in `_meta`, verified now, for `call` (a tool and its operation) if given.
    ///
    /// A refusal is the error to answer with: [`UNAUTHORIZED_CODE`] for a missing or invalid
    /// token, [`FORBIDDEN_CODE`] for a `call` the token does not grant.
    fn verify(
        &self,
        extensions: &Extensions,
        token: Option<&Value>,
        call: Option<(&str, &str)>,
    ) -> Result<Admission, McpError> {
        if let Some(g) = http_grants(extensions) {
            return Ok(Admission::Http(g));
        }
        let Some(verifier) = self.verifier.as_deref() else {
            tracing::info!("MCP message refused: no verified capability token");
            return Err(unauthorized("missing_token"));
        };
        let text = token.and_then(Value::as_str).ok_or_else(|| {
            tracing::info!("MCP message refused: no token in params._meta.token");
            unauthorized("missing_token")
        })?;
        let checked = Token::from_base64(text)
            .and_then(|t| verifier.check(&t))
            .map_err(|e| {
                tracing::info!(code = e.code(), detail = %e, "MCP message refused: token invalid");
                unauthorized("invalid_token")
            })?;
        let mut access = Access::now();
        if let Some((tool, operation)) = call {
            access = access.tool(tool).operation(operation);
        }
        let facts = verifier.authorize(&checked, &access).map_err(|e| {
            tracing::info!(code = e.code(), detail = %e, "MCP message refused");
            match call {
                Some((tool, _)) if e.is_forbidden() => forbidden(tool),
                _ => unauthorized("invalid_token"),
            }
        })?;
        Ok(Admission::Stdio {
            token: Box::new(checked),
            grants: Grants::new(facts),
        })
    }

    /// [`verify`](Self::verify) for a request; grants verified here go into the context so
    /// that [`grants`](crate::grants()) finds them inside the handler.
    fn admit(
        &self,
        ctx: &mut RequestContext<RoleServer>,
        call: Option<(&str, &str)>,
    ) -> Result<Admission, McpError> {
        let admission = self.verify(&ctx.extensions, ctx.meta.get(META_TOKEN_KEY), call)?;
        if let Admission::Stdio { grants, .. } = &admission {
            ctx.extensions.insert(grants.clone());
        }
        Ok(admission)
    }

    /// Whether `tool` shows in this caller's `tools/list`.
    fn lists(&self, admission: &Admission, now: Access<'_>, tool: &str) -> bool {
        let operation = self.operations.operation(tool);
        match admission {
            Admission::Http(grants) => grants.allows(tool, operation),
            Admission::Stdio { token, .. } => self.verifier.as_deref().is_some_and(|v| {
                v.authorize(token, &now.tool(tool).operation(operation))
                    .is_ok()
            }),
        }
    }
}

/// The token in a notification's `params._meta`. rmcp 3.11 moves a notification's extensions
/// into the context before its `_meta`, so `context.meta` is empty and the `_meta` object is
/// among the extensions; both places are read.
fn notification_token(context: &NotificationContext<RoleServer>) -> Option<&Value> {
    context.meta.get(META_TOKEN_KEY).or_else(|| {
        context
            .extensions
            .get::<NotificationMetaObject>()
            .and_then(|meta| meta.get(META_TOKEN_KEY))
    })
}

/// The grants the HTTP layers verified: in `extensions`, or in the HTTP request parts rmcp put
/// there (as [`grants`](crate::grants()) looks them up).
fn http_grants(extensions: &Extensions) -> Option<Grants> {
    extensions.get::<Grants>().cloned().or_else(|| {
        extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Grants>())
            .cloned()
    })
}

impl<H> std::fmt::Debug for GrantGuard<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantGuard")
            .field("operations", &self.operations)
            .field("stdio_tokens", &self.verifier.is_some())
            .finish_non_exhaustive()
    }
}

fn unauthorized(reason: &'static str) -> McpError {
    McpError::new(
        UNAUTHORIZED_CODE,
        "unauthorized",
        Some(serde_json::json!({ "error": reason })),
    )
}

fn forbidden(tool: &str) -> McpError {
    McpError::new(
        FORBIDDEN_CODE,
        "forbidden",
        Some(serde_json::json!({ "error": "tool_not_granted", "tool": tool })),
    )
}

impl<H: ServerHandler> ServerHandler for GrantGuard<H> {
    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), McpError> {
        self.inner.ping(context).await
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        self.inner.initialize(request, context).await
    }

    fn negotiate_initialize(
        &self,
        request: &InitializeRequestParams,
    ) -> Result<InitializeResult, McpError> {
        self.inner.negotiate_initialize(request)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        self.inner.supported_protocol_versions()
    }

    async fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, McpError> {
        self.inner.discover(context).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        self.admit(&mut context, None)?;
        self.inner.complete(request, context).await
    }

    #[allow(deprecated, reason = "delegates the deprecated method")]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.admit(&mut context, None)?;
        self.inner.set_level(request, context).await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        self.admit(&mut context, None)?;
        self.inner.get_prompt(request, context).await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.admit(&mut context, None)?;
        self.inner.list_prompts(request, context).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.admit(&mut context, None)?;
        self.inner.list_resources(request, context).await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.admit(&mut context, None)?;
        self.inner.list_resource_templates(request, context).await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.admit(&mut context, None)?;
        self.inner.read_resource(request, context).await
    }

    /// Forwarded unguarded: rmcp gives no request, so no token (see the module docs).
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.inner.accepted_subscription_filter(requested)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let request = context.request_context();
        self.verify(&request.extensions, request.meta.get(META_TOKEN_KEY), None)?;
        self.inner.listen(context).await
    }

    #[allow(deprecated, reason = "delegates the legacy method")]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.admit(&mut context, None)?;
        self.inner.subscribe(request, context).await
    }

    #[allow(deprecated, reason = "delegates the legacy method")]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.admit(&mut context, None)?;
        self.inner.unsubscribe(request, context).await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let operation = self.operations.operation(&request.name);
        // On stdio the verifier has decided, with the tool and its operation. Over HTTP the
        // capability layer did; the grants are checked again here.
        if let Admission::Http(grants) =
            self.admit(&mut context, Some((&request.name, operation)))?
            && !grants.allows(&request.name, operation)
        {
            tracing::info!(tool = %request.name, operation, "tools/call refused: not granted");
            return Err(forbidden(&request.name));
        }
        self.inner.call_tool(request, context).await
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let admission = self.admit(&mut context, None)?;
        let mut result = self.inner.list_tools(request, context).await?;
        let now = Access::now();
        result
            .tools
            .retain(|tool| self.lists(&admission, now, &tool.name));
        // The list depends on the token: no cache may serve it to anyone else.
        if result.cache_scope.is_some() {
            result.cache_scope = Some(CacheScope::Private);
        }
        Ok(result)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.get_tool(name)
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        self.admit(&mut context, None)?;
        self.inner.on_custom_request(request, context).await
    }

    async fn on_cancelled(
        &self,
        notification: CancelledNotificationParam,
        context: NotificationContext<RoleServer>,
    ) {
        self.inner.on_cancelled(notification, context).await;
    }

    async fn on_progress(
        &self,
        notification: ProgressNotificationParam,
        context: NotificationContext<RoleServer>,
    ) {
        self.inner.on_progress(notification, context).await;
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.inner.on_initialized(context).await;
    }

    async fn on_roots_list_changed(&self, context: NotificationContext<RoleServer>) {
        self.inner.on_roots_list_changed(context).await;
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        mut context: NotificationContext<RoleServer>,
    ) {
        let token = notification_token(&context).cloned();
        match self.verify(&context.extensions, token.as_ref(), None) {
            Ok(Admission::Stdio { grants, .. }) => {
                context.extensions.insert(grants);
            }
            Ok(Admission::Http(_)) => {}
            Err(_) => {
                tracing::info!(method = %notification.method, "MCP notification dropped");
                return;
            }
        }
        self.inner
            .on_custom_notification(notification, context)
            .await;
    }

    fn get_info(&self) -> ServerConfig {
        self.inner.get_info()
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        self.admit(&mut context, None)?;
        self.inner.get_task(request, context).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.admit(&mut context, None)?;
        self.inner.update_task(request, context).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.admit(&mut context, None)?;
        self.inner.cancel_task(request, context).await
    }

    async fn list_skills(
        &self,
        request: Option<PaginatedRequestParams>,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, McpError> {
        self.admit(&mut context, None)?;
        self.inner.list_skills(request, context).await
    }

    async fn get_skill(
        &self,
        request: GetSkillRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<GetSkillResult, McpError> {
        self.admit(&mut context, None)?;
        self.inner.get_skill(request, context).await
    }

    async fn read_resource_directory(
        &self,
        request: ReadResourceDirectoryRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceDirectoryResult, McpError> {
        self.admit(&mut context, None)?;
        self.inner.read_resource_directory(request, context).await
    }
}
