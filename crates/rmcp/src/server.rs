//! One builder from an rmcp server to an axum `Router` with every vouch layer in order.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{Request, Response};
use rmcp::ServerHandler;
use rmcp::model::Tool;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tower_layer::Layer as _;
use tower_service::Service;
use vouch_httpsig::SigningKey;
use vouch_tower::{
    AuditHook, CapabilityLayer, CapabilityPipeline, Decision, RateLimitLayer, ResponseSigningLayer,
    SessionBindingLayer, SignatureLayer, SignaturePipeline,
};

use crate::grants::OperationMap;
use crate::handler::GrantGuard;
use crate::session::SessionBindingExt as _;

/// The rmcp server type [`Protected::serve`] builds: the handler behind a [`GrantGuard`].
pub type GuardedService<H> = StreamableHttpService<GrantGuard<H>, LocalSessionManager>;

/// Protects an rmcp Streamable HTTP server with vouch.
///
/// Requests pass, in this order: the [`SignatureLayer`] (origin, RFC 9421 signature, digest,
/// time window, replay, key, pin, allowlist; the verified caller goes into the request), the
/// [`ResponseSigningLayer`] when [`Protected::sign_responses`] is set (it signs what comes back
/// through every layer after it), the per-identity [`RateLimitLayer`] (on by default, [`DEFAULT_RATE_PER_SECOND`](crate::DEFAULT_RATE_PER_SECOND) requests per
/// second with bursts of [`DEFAULT_RATE_BURST`](crate::DEFAULT_RATE_BURST)), the [`SessionBindingLayer`] (a session belongs to the signer that created it), the
/// [`CapabilityLayer`] (a valid token on every request; `tools/call` of a tool or operation it
/// does not grant is refused with 403), and rmcp. [`Protected::serve`] also wraps the handler
/// in a [`GrantGuard`], which filters `tools/list` to the granted tools. Inside tools,
/// [`caller_identity`](crate::caller_identity) and [`grants`](crate::grants) give the verified
/// caller and grants.
///
/// ```no_run
/// # use rmcp::{ServerHandler, model::ServerConfig};
/// # #[derive(Clone)] struct Tools;
/// # impl ServerHandler for Tools { fn get_info(&self) -> ServerConfig { ServerConfig::default() } }
/// # fn build(signatures: vouch_tower::SignaturePipeline, verifier: vouch_token::Verifier) {
/// // `signatures` was built for this server's public origin, e.g.
/// // SignaturePipeline::new("https://mcp.example".parse()?, resolver, replay).
/// let app: axum::Router = vouch_rmcp::Protected::new(
///     signatures,
///     vouch_tower::CapabilityPipeline::new(verifier),
/// )
/// .serve(|| Ok(Tools));
/// # }
/// ```
#[derive(Clone)]
pub struct Protected {
    signatures: SignaturePipeline,
    capabilities: CapabilityPipeline,
    operations: OperationMap,
    config: StreamableHttpServerConfig,
    path: String,
    sessions: Option<SessionBindingLayer>,
    session_manager: Option<Arc<LocalSessionManager>>,
    max_body_bytes: Option<usize>,
    body_timeout: Option<std::time::Duration>,
    rate_limit: Option<RateLimitLayer>,
    response_signing: Option<ResponseSigningLayer>,
    audit: Option<Arc<dyn AuditHook>>,
}

impl std::fmt::Debug for Protected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protected")
            .field("signatures", &self.signatures)
            .field("capabilities", &self.capabilities)
            .field("operations", &self.operations)
            .field("path", &self.path)
            .field("sessions", &self.sessions)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("body_timeout", &self.body_timeout)
            .field("rate_limit", &self.rate_limit.is_some())
            .field("response_signing", &self.response_signing)
            .field("audit", &self.audit.is_some())
            .finish_non_exhaustive()
    }
}

impl Protected {
    /// Signatures checked by `signatures` (which knows this server's public origins), tokens by
    /// `capabilities`; served at `/mcp` with rmcp's default configuration (session mode,
    /// loopback hosts only), session binding on, and each identity rate limited.
    pub fn new(signatures: SignaturePipeline, capabilities: CapabilityPipeline) -> Self {
        Self {
            signatures,
            capabilities,
            operations: OperationMap::new(),
            config: StreamableHttpServerConfig::default(),
            path: "/mcp".to_owned(),
            sessions: Some(SessionBindingLayer::default()),
            session_manager: None,
            max_body_bytes: None,
            body_timeout: None,
            rate_limit: Some(RateLimitLayer::default()),
            response_signing: None,
            audit: None,
        }
    }

    /// Sets the token verifier's audience to this server's (first) origin, e.g.
    /// `https://mcp.example`, so that a token minted for another server is refused here even
    /// when both trust the same root. Opt-in. A token minted without any audience stays valid
    /// everywhere its root is trusted, so mint tokens with an audience (docs/token-format.md).
    #[must_use]
    pub fn audience_from_origin(mut self) -> Self {
        if let Some(origin) = self.signatures.origins().first() {
            self.capabilities = self.capabilities.audience(origin.to_string());
        }
        self
    }

    /// The per-identity rate limit (default: [`DEFAULT_RATE_PER_SECOND`](crate::DEFAULT_RATE_PER_SECOND) per second, bursts of
    /// [`DEFAULT_RATE_BURST`](crate::DEFAULT_RATE_BURST)), or `None` to serve without one.
    #[must_use]
    pub fn rate_limit(mut self, layer: Option<RateLimitLayer>) -> Self {
        self.rate_limit = layer;
        self
    }

    /// How long a request body may take to arrive (default: the signature layer's, 10 s).
    #[must_use]
    pub fn body_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.body_timeout = Some(timeout);
        self
    }

    /// The operation each tool needs, from their annotations (`read` for read-only tools,
    /// `write` for destructive ones, `execute` otherwise), e.g. `Server::tool_router().list_all()`.
    /// Without it every tool is `execute`.
    #[must_use]
    pub fn tools(self, tools: &[Tool]) -> Self {
        self.operations(OperationMap::from_tools(tools))
    }

    /// The operation each tool needs, given outright (overrides included).
    #[must_use]
    pub fn operations(mut self, operations: OperationMap) -> Self {
        self.operations = operations;
        self
    }

    /// rmcp's server configuration: session or stateless mode, JSON responses, allowed hosts.
    #[must_use]
    pub fn config(mut self, config: StreamableHttpServerConfig) -> Self {
        self.config = config;
        self
    }

    /// The path the MCP endpoint is served at (default `/mcp`).
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The session binding (default: [`SessionBindingLayer::default`]: at most
    /// [`DEFAULT_SESSIONS_PER_IDENTITY`](crate::DEFAULT_SESSIONS_PER_IDENTITY) sessions per
    /// identity and [`DEFAULT_SESSION_CAPACITY`](crate::DEFAULT_SESSION_CAPACITY) in total), or
    /// `None` to serve without it (stateless servers have no sessions to bind). For other
    /// limits: `SessionBindingLayer::new(capacity, idle).max_per_identity(n)`.
    #[must_use]
    pub fn session_binding(mut self, layer: Option<SessionBindingLayer>) -> Self {
        self.sessions = layer;
        self
    }

    /// The rmcp session manager [`serve`](Self::serve) builds its service with (default: a new
    /// [`LocalSessionManager::default`]), e.g. one with another session keep-alive. `serve` also
    /// gives it to the session binding, which closes the rmcp sessions whose binding it drops.
    #[must_use]
    pub fn session_manager(mut self, manager: Arc<LocalSessionManager>) -> Self {
        self.session_manager = Some(manager);
        self
    }

    /// The most body bytes the layers read (default: the layers' default, 1 MiB).
    #[must_use]
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = Some(max);
        self
    }

    /// Signs every answer to a verified request with the server's `key`, as `keyid`, bound to
    /// that request (RFC 9421 §2.4; see [`ResponseSigningLayer`]), so that a client can check
    /// that the answer comes from this server and answers its request
    /// (`SigningClient::verify_responses`, `SigningMiddleware::verify_responses`). Off by
    /// default. Event streams are signed over their head only: for signed bodies, serve JSON
    /// responses (`StreamableHttpServerConfig::default().with_json_response(true)` in
    /// [`config`](Self::config)).
    #[must_use]
    pub fn sign_responses(mut self, key: SigningKey, keyid: impl Into<String>) -> Self {
        self.response_signing = Some(ResponseSigningLayer::new(key, keyid));
        self
    }

    /// The response signing layer as configured (to set its body cap), or `None` for none.
    #[must_use]
    pub fn response_signing(mut self, layer: Option<ResponseSigningLayer>) -> Self {
        self.response_signing = layer;
        self
    }

    /// Sees every decision of the signature and capability layers.
    #[must_use]
    pub fn audit(mut self, hook: impl AuditHook + 'static) -> Self {
        self.audit = Some(Arc::new(hook));
        self
    }

    /// Serves the handlers `factory` makes (one per session, or per request when stateless),
    /// each behind a [`GrantGuard`], with every layer in front. The session binding closes
    /// the rmcp sessions whose binding it drops, in the service's own session manager.
    pub fn serve<H, F>(mut self, factory: F) -> Router
    where
        H: ServerHandler,
        F: Fn() -> Result<H, std::io::Error> + Send + Sync + 'static,
    {
        let operations = self.operations.clone();
        let factory = Arc::new(factory);
        let manager = self.session_manager.take().unwrap_or_default();
        self.sessions = self
            .sessions
            .map(|layer| layer.session_manager(manager.clone()));
        let service: GuardedService<H> = StreamableHttpService::new(
            move || factory().map(|h| GrantGuard::new(h, operations.clone())),
            manager,
            self.config.clone(),
        );
        self.protect(service)
    }

    /// Puts the layers in front of an rmcp service built elsewhere. `tools/list` is filtered
    /// only if its handler is a [`GrantGuard`] (built with the same [`OperationMap`]);
    /// `tools/call` is enforced by the layer either way.
    ///
    /// The session binding closes the rmcp sessions whose binding it drops only if it was
    /// given the service's session manager: pass
    /// `SessionBindingLayer::default().session_manager(manager.clone())` (the same `Arc` the
    /// service uses; [`SessionBindingExt`](crate::SessionBindingExt) in scope) to
    /// [`session_binding`](Self::session_binding). Otherwise those sessions
    /// are the caller's to close (rmcp's keep-alive closes them once idle).
    pub fn protect<S, ResBody>(self, service: S) -> Router
    where
        S: Service<Request<Body>, Response = Response<ResBody>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut capabilities = self.capabilities;
        for (tool, operation) in self.operations.iter() {
            capabilities = capabilities.operation(tool, operation);
        }
        let mut capability_layer = CapabilityLayer::new(capabilities);
        let mut signature_layer = SignatureLayer::new(self.signatures);
        if let Some(max) = self.max_body_bytes {
            capability_layer = capability_layer.max_body_bytes(max);
            signature_layer = signature_layer.max_body_bytes(max);
        }
        if let Some(timeout) = self.body_timeout {
            signature_layer = signature_layer.body_timeout(timeout);
        }
        if let Some(hook) = self.audit {
            let h = hook.clone();
            capability_layer = capability_layer.audit(move |d: &Decision<'_>| h.record(d));
            signature_layer = signature_layer.audit(move |d: &Decision<'_>| hook.record(d));
        }
        let checked = capability_layer.layer(service);
        let path = self.path;
        let router = match (self.rate_limit, self.sessions) {
            (Some(rate), Some(sessions)) => {
                Router::new().route_service(&path, rate.layer(sessions.layer(checked)))
            }
            (Some(rate), None) => Router::new().route_service(&path, rate.layer(checked)),
            (None, Some(sessions)) => Router::new().route_service(&path, sessions.layer(checked)),
            (None, None) => Router::new().route_service(&path, checked),
        };
        // Right inside the signature layer: every answer to a verified request is signed, the
        // refusals of the layers after it included.
        let router = match self.response_signing {
            Some(layer) => router.route_layer(layer),
            None => router,
        };
        router.route_layer(signature_layer)
    }
}
