//! The `ServerHandler` wrapper that enforces grants inside rmcp, for every transport.

use std::borrow::Cow;
use std::sync::Arc;

#[allow(
    deprecated,
    reason = "the wrapper delegates logging/setLevel like every other method"
)]
use rmcp::model::SetLevelRequestParams;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, CancelledNotificationParam,
    CompleteRequestParams, CompleteResult, CustomNotification, CustomRequest, CustomResult,
    DiscoverResult, ErrorCode, GetPromptRequestParams, GetPromptResponse, GetSkillRequestParams,
    GetSkillResult, GetTaskParams, GetTaskResult, InitializeRequestParams, InitializeResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListSkillsResult,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion,
    ReadResourceDirectoryRequestParams, ReadResourceDirectoryResult, ReadResourceRequestParams,
    ReadResourceResponse, ServerConfig, SubscribeRequestParams, SubscriptionFilter, Tool,
    UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use vouch_token::{Access, Token, Verifier};
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
/// ([`FORBIDDEN_CODE`]); every other request but `initialize`, `server/discover` and `ping`
/// needs a verified token too. Everything else is delegated unchanged.
///
/// Where the grants come from:
/// - over HTTP, from the [`CapabilityLayer`](vouch_tower::CapabilityLayer) in front of rmcp (the
///   [`Protected`](crate::Protected) builder wires both);
/// - on transports without an HTTP layer (stdio), from the token in the request's
///   `params._meta.token`, verified on every request with the [`Verifier`] given to
///   [`GrantGuard::with_verifier`]. There is no signature there, so a holder-bound token is
///   refused.
///
/// A request with no grants from either source is refused ([`UNAUTHORIZED_CODE`]): the guard
/// fails closed.
#[derive(Clone)]
pub struct GrantGuard<H> {
    inner: H,
    operations: Arc<OperationMap>,
    verifier: Option<Arc<Verifier>>,
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

    /// The grants for this request; on stdio, verified now and put in the context so that
    /// [`grants`](crate::grants) finds them inside the tool.
    fn admit(&self, ctx: &mut RequestContext<RoleServer>) -> Result<Grants, McpError> {
        if let Some(g) = crate::grants(ctx) {
            return Ok(g);
        }
        let Some(verifier) = self.verifier.as_deref() else {
            tracing::info!("MCP request refused: no verified capability token");
            return Err(unauthorized("missing_token"));
        };
        let text = ctx
            .meta
            .get(META_TOKEN_KEY)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| {
                tracing::info!("MCP request refused: no token in params._meta.token");
                unauthorized("missing_token")
            })?;
        let facts = Token::from_base64(text)
            .and_then(|t| verifier.verify(&t, &Access::now()))
            .map_err(|e| {
                tracing::info!(code = e.code(), detail = %e, "MCP request refused: token invalid");
                unauthorized("invalid_token")
            })?;
        let grants = Grants::new(facts);
        ctx.extensions.insert(grants.clone());
        Ok(grants)
    }
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
        self.admit(&mut context)?;
        self.inner.complete(request, context).await
    }

    #[allow(deprecated, reason = "delegates the deprecated method")]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.admit(&mut context)?;
        self.inner.set_level(request, context).await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        self.admit(&mut context)?;
        self.inner.get_prompt(request, context).await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.admit(&mut context)?;
        self.inner.list_prompts(request, context).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.admit(&mut context)?;
        self.inner.list_resources(request, context).await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.admit(&mut context)?;
        self.inner.list_resource_templates(request, context).await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.admit(&mut context)?;
        self.inner.read_resource(request, context).await
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.inner.accepted_subscription_filter(requested)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        self.inner.listen(context).await
    }

    #[allow(deprecated, reason = "delegates the legacy method")]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.admit(&mut context)?;
        self.inner.subscribe(request, context).await
    }

    #[allow(deprecated, reason = "delegates the legacy method")]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.admit(&mut context)?;
        self.inner.unsubscribe(request, context).await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let grants = self.admit(&mut context)?;
        let operation = self.operations.operation(&request.name);
        if !grants.allows(&request.name, operation) {
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
        let grants = self.admit(&mut context)?;
        let mut result = self.inner.list_tools(request, context).await?;
        result
            .tools
            .retain(|tool| grants.allows(&tool.name, self.operations.operation(&tool.name)));
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
        self.admit(&mut context)?;
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
        context: NotificationContext<RoleServer>,
    ) {
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
        self.admit(&mut context)?;
        self.inner.get_task(request, context).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.admit(&mut context)?;
        self.inner.update_task(request, context).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.admit(&mut context)?;
        self.inner.cancel_task(request, context).await
    }

    async fn list_skills(
        &self,
        request: Option<PaginatedRequestParams>,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, McpError> {
        self.admit(&mut context)?;
        self.inner.list_skills(request, context).await
    }

    async fn get_skill(
        &self,
        request: GetSkillRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<GetSkillResult, McpError> {
        self.admit(&mut context)?;
        self.inner.get_skill(request, context).await
    }

    async fn read_resource_directory(
        &self,
        request: ReadResourceDirectoryRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceDirectoryResult, McpError> {
        self.admit(&mut context)?;
        self.inner.read_resource_directory(request, context).await
    }
}
