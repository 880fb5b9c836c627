//! The capability layer, the `Grants` extractor and the `require_tool` guard.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response as AxumResponse};
use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use vouch_token::Facts;

use crate::audit::{AuditHook, Decision};
use crate::capability::{CapabilityPipeline, CapabilityRejection};
use crate::checked::{Check, Checked, Decide};
use crate::pipeline::Rejection;
use crate::pipeline::VerifiedCaller;
use crate::response::{Denial, rejection_response};
use crate::signature::{DEFAULT_MAX_BODY_BYTES, unix_now};

/// What the verified token grants this request, in the request extensions (and an axum
/// extractor). Dereferences to the token's [`Facts`].
#[derive(Debug, Clone)]
pub struct Grants {
    facts: Facts,
}

impl Grants {
    /// Grants from facts a verifier produced. For adapters that verify the token themselves
    /// (the rmcp stdio guard); the layers build these for HTTP requests.
    pub fn new(facts: Facts) -> Self {
        Self { facts }
    }

    /// The verified facts.
    pub fn facts(&self) -> &Facts {
        &self.facts
    }
}

impl std::ops::Deref for Grants {
    type Target = Facts;

    fn deref(&self) -> &Facts {
        &self.facts
    }
}

fn capability_denial(rejection: &CapabilityRejection) -> Denial {
    Denial::json(rejection.status(), &rejection.body())
}

fn capability_response(rejection: &CapabilityRejection) -> Response<Body> {
    capability_denial(rejection).into_response()
}

impl IntoResponse for CapabilityRejection {
    fn into_response(self) -> AxumResponse {
        capability_response(&self)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Grants {
    type Rejection = CapabilityRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(CapabilityRejection::MissingToken)
    }
}

/// A tower layer enforcing capability tokens on MCP JSON-RPC traffic. Put it inside the
/// [`SignatureLayer`](crate::SignatureLayer) so that holder-bound tokens are checked against the
/// verified signer.
#[derive(Clone)]
pub struct CapabilityLayer {
    pipeline: Arc<CapabilityPipeline>,
    max_body_bytes: usize,
    audit: Option<Arc<dyn AuditHook>>,
    headers_only: bool,
}

impl core::fmt::Debug for CapabilityLayer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CapabilityLayer")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("headers_only", &self.headers_only)
            .finish_non_exhaustive()
    }
}

impl CapabilityLayer {
    /// A layer around `pipeline`.
    pub fn new(pipeline: CapabilityPipeline) -> Self {
        Self {
            pipeline: Arc::new(pipeline),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            audit: None,
            headers_only: false,
        }
    }

    /// Decides on the request head alone ([`CapabilityPipeline::authorize_head`]): the method
    /// and tool from the signed `Mcp-Method` and `Mcp-Name` headers, the token from its header;
    /// the body is not read for the decision. Only for an authorizer whose upstream runs the
    /// [`DigestCheckLayer`](crate::DigestCheckLayer), behind a
    /// [`SignatureLayer::headers_only`](crate::SignatureLayer::headers_only).
    #[must_use]
    pub fn headers_only(mut self) -> Self {
        self.headers_only = true;
        self
    }

    /// Reports every decision to `hook`.
    #[must_use]
    pub fn audit(mut self, hook: impl AuditHook + 'static) -> Self {
        self.audit = Some(Arc::new(hook));
        self
    }

    /// The body cap (413 above it).
    #[must_use]
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }
}

impl<S> Layer<S> for CapabilityLayer {
    type Service = CapabilityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Checked::new(inner, self.clone())
    }
}

/// The service [`CapabilityLayer`] makes.
pub type CapabilityService<S> = Checked<S, CapabilityLayer>;

/// The capability layer's message check without a token: a non-empty body must be one
/// JSON-RPC message read one way only ([`jsonrpc::parse`](crate::jsonrpc::parse): no batch, no
/// duplicate key, UTF-8), else 400 with a JSON-RPC error, and the MCP request headers must
/// agree with it ([`mcp_headers::check`](crate::mcp_headers::check), else 400
/// `HeaderMismatch`), as [`CapabilityLayer`] answers. For
/// a server that checks who calls but not what they may do (a gateway without token roots),
/// so that what is logged and what runs behind it read the same message.
#[derive(Clone, Debug)]
pub struct StrictMessageLayer {
    max_body_bytes: usize,
}

impl Default for StrictMessageLayer {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl StrictMessageLayer {
    /// The body cap (413 above it).
    #[must_use]
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }
}

impl<S> Layer<S> for StrictMessageLayer {
    type Service = Checked<S, StrictMessageLayer>;

    fn layer(&self, inner: S) -> Self::Service {
        Checked::new(inner, self.clone())
    }
}

impl Check for StrictMessageLayer {
    const SPAN: &'static str = "message";

    fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    fn unreadable(&self, _parts: &Parts, rejection: &Rejection) -> Response<Body> {
        rejection_response(rejection, "Signature")
    }

    fn decide<'a>(&'a self, parts: &'a mut Parts, body: &'a Bytes) -> Decide<'a> {
        Box::pin(async move {
            if body.is_empty() {
                return crate::mcp_headers::check(&parts.headers, None).map_err(|error| {
                    capability_denial(&CapabilityRejection::HeaderMismatch { error, id: None })
                });
            }
            let identity = parts
                .extensions
                .get::<VerifiedCaller>()
                .map(|c| &c.identity);
            let message = crate::jsonrpc::parse(body).map_err(|e| {
                tracing::info!(?identity, error = %e, "ambiguous message refused");
                capability_denial(&CapabilityRejection::BadRequest(e))
            })?;
            crate::mcp_headers::check(&parts.headers, Some(&message)).map_err(|error| {
                tracing::info!(?identity, detail = %error, "MCP headers disagree with the message");
                let id = message.id().cloned();
                capability_denial(&CapabilityRejection::HeaderMismatch { error, id })
            })
        })
    }
}

impl Check for CapabilityLayer {
    const SPAN: &'static str = "capability";

    fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    fn unreadable(&self, _parts: &Parts, rejection: &Rejection) -> Response<Body> {
        rejection_response(rejection, "Signature")
    }

    fn decide<'a>(&'a self, parts: &'a mut Parts, body: &'a Bytes) -> Decide<'a> {
        Box::pin(async move {
            let caller = parts.extensions.get::<VerifiedCaller>().cloned();
            // One reading of the body serves the decision and the audit record alike.
            let (tool, decision) = if self.headers_only {
                let (tool, decision) =
                    self.pipeline
                        .decide_head(parts, caller.as_ref(), unix_now());
                (tool.map(std::borrow::Cow::Owned), decision)
            } else {
                self.pipeline
                    .decide(parts, body, caller.as_ref(), unix_now())
            };
            if let Some(hook) = &self.audit {
                hook.record(&Decision {
                    layer: "capability",
                    accepted: decision.is_ok(),
                    identity: caller.as_ref().map(|c| c.identity.as_str()),
                    reason: decision
                        .as_ref()
                        .map_or_else(CapabilityRejection::code, |_| "ok"),
                    method: parts.method.as_str(),
                    tool: tool.as_deref(),
                });
            }
            match decision {
                Ok(facts) => {
                    parts.extensions.insert(Grants { facts });
                    Ok(())
                }
                Err(rejection) => Err(capability_denial(&rejection)),
            }
        })
    }
}

/// A guard for plain routes: refuses (403) a request whose [`Grants`] do not include `tool`
/// (with `operation`, if given), like the seed's `require_tool` decorator. Use it inside the
/// [`CapabilityLayer`].
pub fn require_tool(tool: impl Into<String>, operation: Option<&str>) -> RequireToolLayer {
    RequireToolLayer {
        tool: Arc::from(tool.into()),
        operation: operation.map(Arc::from),
    }
}

/// The layer [`require_tool`] makes.
#[derive(Clone, Debug)]
pub struct RequireToolLayer {
    tool: Arc<str>,
    operation: Option<Arc<str>>,
}

impl<S> Layer<S> for RequireToolLayer {
    type Service = RequireTool<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireTool {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RequireToolLayer`] makes.
#[derive(Clone, Debug)]
pub struct RequireTool<S> {
    inner: S,
    layer: RequireToolLayer,
}

impl<S, B> Service<Request<B>> for RequireTool<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let layer = self.layer.clone();
        let decision = match request.extensions().get::<Grants>() {
            None => Err(CapabilityRejection::MissingToken),
            Some(g) => {
                let granted = match layer.operation.as_deref() {
                    Some(op) => g.allows(&layer.tool, op),
                    None => g.grants_tool(&layer.tool),
                };
                if granted {
                    Ok(())
                } else {
                    Err(CapabilityRejection::Forbidden(format!(
                        "tool {:?} not granted",
                        &*layer.tool
                    )))
                }
            }
        };
        match decision {
            Ok(()) => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move { inner.call(request).await })
            }
            Err(rejection) => Box::pin(std::future::ready(Ok(capability_response(&rejection)))),
        }
    }
}
