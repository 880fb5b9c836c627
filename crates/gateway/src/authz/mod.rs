//! The gateway's checks as an Envoy external authorizer (`ext_authz`), over gRPC and HTTP.
//!
//! An [`Authorizer`] is built from the same pieces as a [`Gateway`](crate::Gateway) and
//! [`build`](Authorizer::build)s an [`ExtAuthz`]: vouch-tower's [`Checkpoint`], which runs the
//! layers' checks in the gateway's order ([`vouch_tower::SignatureLayer`] → [`RateLimitLayer`]
//! → [`vouch_tower::CapabilityLayer`]), over the request Envoy describes in each check. A request the layers let through is allowed with the gateway's
//! `X-Vouch-*` fields set for the upstream and the client's signature and token removed; any
//! other answer of the layers is the denial, status, fields and body as the gateway sends them.
//!
//! In [headers-only mode](Authorizer::headers_only) the authorizer decides on the request head
//! alone, for a proxy that does not send (or cuts) the body: the signature must cover
//! `content-digest`, `Mcp-Method` and `Mcp-Name`, the decision comes from those signed
//! headers, and the upstream must run vouch-tower's `DigestCheckLayer`, which compares the
//! digest with the body and the headers with the message.
//!
//! Two of the gateway's checks have no place here:
//!
//! - session binding: an MCP session is bound when the upstream's *response* names it, and an
//!   authorizer never sees responses. Put the upstream's own session checks (or a vouch
//!   gateway) behind Envoy if sessions must be bound to their creator;
//! - `tools/list` filtering: a response rewrite, likewise out of an authorizer's reach.

mod grpc;
mod http_service;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use vouch_token::Facts;
use vouch_tower::{
    Admitted, AuditHook, CapabilityPipeline, Checkpoint, Denial, RateLimitLayer, SignaturePipeline,
    TOKEN_HEADER, VerifiedCaller,
};

use crate::forward::grants_value;
use crate::headers::{GRANTS_HEADER, IDENTITY_HEADER, KEYID_HEADER, strip_hop_by_hop};
use crate::metrics::{Metrics, audit_hook};
use crate::response::error;

use vouch_tower::{DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES};

/// The path prefix of HTTP-mode checks unless told otherwise: Envoy's `http_service` sends
/// each check to `path_prefix` + the original path, e.g. `/check/mcp`.
pub const DEFAULT_HTTP_PREFIX: &str = "/check";

/// The field Envoy sets to `true` on a check whose body it cut at `max_request_bytes`
/// (`with_request_body.allow_partial_message`). Such a check is refused (413): the signature
/// covers the whole body.
pub const PARTIAL_BODY_HEADER: HeaderName = HeaderName::from_static("x-envoy-auth-partial-body");

/// The field of an HTTP-mode `200` that lists, comma-separated, the fields Envoy removes from
/// the request before it goes upstream.
pub const HEADERS_TO_REMOVE_HEADER: HeaderName =
    HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// The largest denial body read back from the layers (theirs are a few hundred bytes).
const MAX_DENIAL_BYTES: usize = 64 << 10;

const SIGNATURE: HeaderName = HeaderName::from_static("signature");
const SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");

/// Why an authorizer could not be built or served.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthzError {
    /// The HTTP-mode path prefix does not start with `/`, ends with `/`, or is the health path.
    Prefix(String),
    /// A listener failed while serving.
    Serve(String),
}

impl std::fmt::Display for AuthzError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Prefix(prefix) => write!(f, "invalid HTTP check path prefix: {prefix:?}"),
            Self::Serve(why) => write!(f, "serving failed: {why}"),
        }
    }
}

impl std::error::Error for AuthzError {}

/// The configuration of an Envoy external authorizer running the gateway's checks
/// (`docs/deployments.md` has the Envoy side); [`build`](Self::build) makes the [`ExtAuthz`]
/// that serves checks.
///
/// Each check runs vouch-tower's [`Checkpoint`]: the layers' checks in the gateway's order
/// ([`vouch_tower::SignatureLayer`] → [`RateLimitLayer`] → [`vouch_tower::CapabilityLayer`]),
/// over the request Envoy describes. A request they
/// let through is allowed with the gateway's `X-Vouch-*` fields set for the upstream and the
/// client's signature and token removed; any other answer of the layers is the denial, with
/// the status, fields and body the gateway would have sent. The gateway's session binding and
/// `tools/list` filtering have no equivalent: both act on the upstream's response, which an
/// authorizer never sees.
///
/// ```no_run
/// use vouch_gateway::Authorizer;
/// use vouch_keys::{ShardedReplayStore, StaticResolver};
/// use vouch_token::{KeyPair, Verifier};
/// use vouch_tower::{CapabilityPipeline, Origin, ServeConfig, SignaturePipeline};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// # let root = KeyPair::generate()?;
/// # let agent = KeyPair::generate()?;
/// // How clients address Envoy: checks of requests for any other authority are denied (421).
/// let origin: Origin = "https://mcp.example".parse()?;
/// let resolver = StaticResolver::new()
///     .with_ed25519("https://agents.example/worker", &agent.public_key());
/// let authz = Authorizer::new(
///     SignaturePipeline::new(origin, resolver, ShardedReplayStore::new(100_000)),
///     CapabilityPipeline::new(Verifier::new(root.public_key())),
/// )
/// .operation("db_query", "read")
/// .build();
/// // gRPC (Envoy's grpc_service) and HTTP (http_service, path_prefix "/check").
/// let grpc = tokio::net::TcpListener::bind("127.0.0.1:9191").await?;
/// let http = tokio::net::TcpListener::bind("127.0.0.1:9192").await?;
/// let router = authz.http_router();
/// tokio::spawn(async move { vouch_tower::serve(http, router, ServeConfig::default()).await });
/// authz.serve_grpc(grpc, std::future::pending()).await?;
/// # Ok(())
/// # }
/// ```
pub struct Authorizer {
    signature: SignaturePipeline,
    /// `None` in identity-only mode.
    capability: Option<CapabilityPipeline>,
    rate_limit: RateLimitLayer,
    token_header: HeaderName,
    operations: BTreeMap<String, String>,
    max_body_bytes: usize,
    body_timeout: Duration,
    http_prefix: String,
    metrics: Option<Metrics>,
    audit: Option<Arc<dyn AuditHook>>,
    headers_only: bool,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("signature", &self.signature)
            .field("identity_only", &self.capability.is_none())
            .field("token_header", &self.token_header)
            .field("operations", &self.operations)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("http_prefix", &self.http_prefix)
            .field("headers_only", &self.headers_only)
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    /// An authorizer verifying signatures with `signature` (built with the public origin(s)
    /// clients address Envoy by: the original request's `:authority` must name one) and tokens
    /// with `capability`; each identity may make
    /// [`DEFAULT_RATE_PER_SECOND`](crate::DEFAULT_RATE_PER_SECOND) requests a second; bodies
    /// up to [`DEFAULT_MAX_BODY_BYTES`].
    pub fn new(signature: SignaturePipeline, capability: CapabilityPipeline) -> Self {
        let mut authorizer = Self::identity_only(signature);
        authorizer.capability = Some(capability.header(authorizer.token_header.clone()));
        authorizer
    }

    /// An authorizer that checks who is calling but not what they may do, as
    /// [`Gateway::identity_only`](crate::Gateway::identity_only): no token is asked for, the
    /// upstream gets [`IDENTITY_HEADER`] and [`KEYID_HEADER`] (a client-sent
    /// [`GRANTS_HEADER`] is removed), and messages are still parsed strictly (400 otherwise).
    pub fn identity_only(signature: SignaturePipeline) -> Self {
        Self {
            signature,
            capability: None,
            rate_limit: RateLimitLayer::default(),
            token_header: TOKEN_HEADER,
            operations: BTreeMap::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            http_prefix: DEFAULT_HTTP_PREFIX.to_owned(),
            metrics: None,
            audit: None,
            headers_only: false,
        }
    }

    /// Decides on the request head alone, for a proxy that does not send the body to the
    /// authorizer (Envoy without `with_request_body`) or cuts it (the Kubernetes Gateway API's
    /// `ExternalAuth` forwards at most 64 KiB): the signature is verified over the head
    /// ([`vouch_tower::SignatureLayer::headers_only`]: it must cover `content-digest` and every `Mcp-Method`,
    /// `Mcp-Name` and `Mcp-Param-*` header present), the digest is trusted only as "to be
    /// checked by the upstream", and the capability check decides on the signed `Mcp-Method` /
    /// `Mcp-Name` ([`vouch_tower::CapabilityLayer::headers_only`]; a `POST` without them is refused 400
    /// `HeaderMismatch`, as it cannot be decided) with the token from its header. A partial or
    /// absent body is not refused. In identity-only mode no message is read.
    ///
    /// **The upstream must run [`vouch_tower::DigestCheckLayer`]**: without it, a request whose
    /// head was allowed can carry any body. Keep `Content-Digest` and the `Mcp-*` headers on
    /// the way upstream (the authorizer does not remove them).
    #[must_use]
    pub fn headers_only(mut self) -> Self {
        self.headers_only = true;
        self
    }

    /// The header carrying the token (default [`TOKEN_HEADER`]), for the capability check and
    /// for removal before the request goes upstream.
    #[must_use]
    pub fn token_header(mut self, header: HeaderName) -> Self {
        self.capability = self.capability.map(|c| c.header(header.clone()));
        self.token_header = header;
        self
    }

    /// The operation a call to `tool` performs (default `execute`), for the capability check.
    #[must_use]
    pub fn operation(mut self, tool: impl Into<String>, operation: impl Into<String>) -> Self {
        let (tool, operation) = (tool.into(), operation.into());
        self.capability = self
            .capability
            .map(|c| c.operation(tool.clone(), operation.clone()));
        self.operations.insert(tool, operation);
        self
    }

    /// The per-identity rate limit (default: as the gateway's).
    #[must_use]
    pub fn rate_limit(mut self, layer: RateLimitLayer) -> Self {
        self.rate_limit = layer;
        self
    }

    /// The largest body a check may carry (default [`DEFAULT_MAX_BODY_BYTES`]; larger: 413).
    /// Envoy's `with_request_body.max_request_bytes` should not exceed it. The gRPC message
    /// limit is this plus room for the request head.
    #[must_use]
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// How long an HTTP-mode check's body may take to arrive (default
    /// [`DEFAULT_BODY_TIMEOUT`]; slower: 408).
    #[must_use]
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The path prefix of HTTP-mode checks (Envoy's `http_service.path_prefix`; default
    /// [`DEFAULT_HTTP_PREFIX`]).
    ///
    /// # Errors
    ///
    /// [`AuthzError::Prefix`] if `prefix` does not start with `/`, is `/` alone or ends with
    /// `/`, or is [`HEALTH_PATH`](crate::HEALTH_PATH) (which the HTTP listener answers itself).
    pub fn http_prefix(mut self, prefix: impl Into<String>) -> Result<Self, AuthzError> {
        let prefix = prefix.into();
        if !prefix.starts_with('/')
            || prefix.ends_with('/')
            || prefix == crate::HEALTH_PATH
            || prefix.contains(['?', '#'])
        {
            return Err(AuthzError::Prefix(prefix));
        }
        self.http_prefix = prefix;
        Ok(self)
    }

    /// Records the decisions and the time each check took in `metrics` (the gateway's
    /// [`Metrics`]: `vouch_gateway_decisions_total`, `vouch_gateway_request_duration_seconds`).
    #[must_use]
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Reports every decision of the layers (and the refusal of a partial body) to `hook`,
    /// besides the [`metrics`](Self::metrics) if set.
    #[must_use]
    pub fn audit(mut self, hook: impl AuditHook + 'static) -> Self {
        self.audit = Some(Arc::new(hook));
        self
    }

    /// The authorizer, ready to serve checks: vouch-tower's [`Checkpoint`] over the layers,
    /// built once and shared by every listener (one rate limiter, one replay store).
    pub fn build(self) -> ExtAuthz {
        let hook = audit_hook(self.metrics.clone(), self.audit);
        let identity_only = self.capability.is_none();
        let mut checkpoint = Checkpoint::builder(self.signature)
            .rate_limit(self.rate_limit)
            .max_body_bytes(self.max_body_bytes)
            .body_timeout(self.body_timeout);
        if let Some(pipeline) = self.capability {
            checkpoint = checkpoint.tokens(pipeline);
        }
        if self.headers_only {
            checkpoint = checkpoint.headers_only();
        }
        if let Some(hook) = hook {
            checkpoint = checkpoint.audit(hook);
        }
        ExtAuthz {
            inner: Arc::new(Inner {
                checkpoint: checkpoint.build(),
                token_header: self.token_header,
                identity_only,
                headers_only: self.headers_only,
                max_body_bytes: self.max_body_bytes,
                http_prefix: self.http_prefix,
                metrics: self.metrics,
            }),
        }
    }
}

/// A built authorizer (see [`Authorizer`]): [`check`](Self::check) decides on one request,
/// [`serve_grpc`](Self::serve_grpc) serves Envoy's gRPC `Authorization/Check`,
/// [`http_router`](Self::http_router) its HTTP mode. Clones share everything.
#[derive(Clone)]
pub struct ExtAuthz {
    inner: Arc<Inner>,
}

struct Inner {
    /// The layers' checks.
    checkpoint: Checkpoint,
    token_header: HeaderName,
    identity_only: bool,
    headers_only: bool,
    max_body_bytes: usize,
    http_prefix: String,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for ExtAuthz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtAuthz")
            .field("token_header", &self.inner.token_header)
            .field("identity_only", &self.inner.identity_only)
            .field("headers_only", &self.inner.headers_only)
            .field("max_body_bytes", &self.inner.max_body_bytes)
            .field("http_prefix", &self.inner.http_prefix)
            .finish_non_exhaustive()
    }
}

/// What the authorizer decided about one request.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Let the request through, with the fields changed as [`Allowed`] says.
    Allow(Allowed),
    /// Refuse it: send the client [`Denied`]'s answer.
    Deny(Denied),
}

/// An allowed request: who signed it, what the token grants, and how its fields change on the
/// way upstream.
#[derive(Debug, Clone)]
pub struct Allowed(Box<AllowedParts>);

#[derive(Debug, Clone)]
struct AllowedParts {
    caller: VerifiedCaller,
    grants: Option<Facts>,
    set: HeaderMap,
    remove: Vec<HeaderName>,
}

impl Allowed {
    /// The verified signer.
    pub fn caller(&self) -> &VerifiedCaller {
        &self.0.caller
    }

    /// What the verified token grants; `None` in identity-only mode.
    pub fn grants(&self) -> Option<&Facts> {
        self.0.grants.as_ref()
    }

    /// The fields to set on the request, replacing every value the client sent:
    /// [`IDENTITY_HEADER`], [`KEYID_HEADER`] and (unless identity-only) [`GRANTS_HEADER`], in
    /// the gateway's encoding.
    pub fn headers_to_set(&self) -> &HeaderMap {
        &self.0.set
    }

    /// The fields to remove from the request, sorted: the token header, `signature`,
    /// `signature-input`, [`GRANTS_HEADER`] in identity-only mode, and every other `x-vouch-*`
    /// field the client sent. Never one of [`headers_to_set`](Self::headers_to_set): Envoy
    /// removes after it sets.
    pub fn headers_to_remove(&self) -> &[HeaderName] {
        &self.0.remove
    }
}

/// A denied request: the answer for the client, as the gateway would have sent it.
#[derive(Debug, Clone)]
pub struct Denied {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Denied {
    /// The status: 400, 401, 403, 408, 413, 421, 429, 500 or 503.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The answer's fields (`Content-Type`, `WWW-Authenticate` on 401, `Retry-After` on 429);
    /// no `Content-Length`.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The JSON body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The answer as an HTTP response.
    pub fn into_response(self) -> Response<Body> {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }

    /// One of the gateway's own answers (`{"detail": {"error": code}}`).
    async fn own(status: StatusCode, code: &'static str) -> Self {
        let (parts, body) = error(status, code).into_parts();
        let body = match Limited::new(body, MAX_DENIAL_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                tracing::error!(detail = %e, "a denial's body could not be read");
                Bytes::new()
            }
        };
        let mut headers = parts.headers;
        headers.remove(CONTENT_LENGTH);
        Self {
            status: parts.status,
            headers,
            body,
        }
    }

    /// The fields without the hop-by-hop ones (for Envoy's gRPC denial, which is a local
    /// reply of Envoy's own).
    fn end_to_end_headers(&self) -> HeaderMap {
        let mut headers = self.headers.clone();
        strip_hop_by_hop(&mut headers);
        headers
    }
}

impl From<Denial> for Denied {
    fn from(denial: Denial) -> Self {
        let (status, headers, body) = denial.into_parts();
        Self {
            status,
            headers,
            body,
        }
    }
}

/// True if Envoy says the body it sent was cut short.
fn is_partial(headers: &HeaderMap) -> bool {
    headers
        .get_all(PARTIAL_BODY_HEADER)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
}

impl ExtAuthz {
    /// Decides on one request, as the client sent it to Envoy: its method, its origin-form
    /// target (path and query), its fields with `Host` set to the original `:authority`, and
    /// its whole body (in [headers-only mode](Authorizer::headers_only): its head; any body is
    /// ignored). A request carrying [`PARTIAL_BODY_HEADER`]`: true` is denied 413 before
    /// anything else, except in headers-only mode (the signature covers the body's digest, and the capability check reads
    /// the JSON-RPC message). Every other answer comes from vouch-tower's layers, as the
    /// gateway's: 421 another authority, 401 unsigned / bad or replayed signature / missing or
    /// invalid token (with `WWW-Authenticate`), 413, 408, 429 (with `Retry-After`), 403 outside
    /// the grants, 400 an ambiguous message, 503 a failing replay or pin store.
    pub async fn check<B>(&self, request: Request<B>) -> Verdict
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let start = Instant::now();
        let verdict = self.decide(request).await;
        if let Some(metrics) = &self.inner.metrics {
            metrics.observe_duration(start.elapsed());
        }
        verdict
    }

    async fn decide<B>(&self, request: Request<B>) -> Verdict
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request = if self.inner.headers_only {
            // The body is the upstream's to check: whatever part of it came is not looked at.
            let (mut parts, _) = request.into_parts();
            parts.headers.remove(PARTIAL_BODY_HEADER);
            Request::from_parts(parts, Body::empty())
        } else {
            request.map(Body::new)
        };
        if is_partial(request.headers()) {
            tracing::info!(
                "check with a partial body refused: the signature covers the whole body"
            );
            let (parts, _) = request.into_parts();
            return Verdict::Deny(self.inner.checkpoint.too_large(&parts).into());
        }
        let client_vouch: Vec<HeaderName> = request
            .headers()
            .keys()
            .filter(|name| name.as_str().starts_with("x-vouch-"))
            .cloned()
            .collect();
        match self.inner.checkpoint.check(request).await {
            Ok(admitted) => match self.allowed(admitted, client_vouch) {
                Some(allowed) => Verdict::Allow(allowed),
                None => {
                    Verdict::Deny(Denied::own(StatusCode::INTERNAL_SERVER_ERROR, "internal").await)
                }
            },
            Err(denial) => Verdict::Deny(denial.into()),
        }
    }

    /// The fields to set and remove for an allowed request; `None` (logged) if the verified
    /// caller or grants do not fit in a field.
    fn allowed(&self, admitted: Admitted, client_vouch: Vec<HeaderName>) -> Option<Allowed> {
        let (caller, grants, _) = admitted.into_parts();
        let mut set = HeaderMap::new();
        let (Ok(identity), Ok(keyid)) = (
            HeaderValue::from_str(&caller.identity),
            HeaderValue::from_str(&caller.keyid),
        ) else {
            tracing::error!("verified caller does not fit in a header");
            return None;
        };
        set.insert(IDENTITY_HEADER, identity);
        set.insert(KEYID_HEADER, keyid);
        let mut remove = vec![self.inner.token_header.clone(), SIGNATURE, SIGNATURE_INPUT];
        match &grants {
            Some(grants) => {
                let Some(value) = grants_value(grants) else {
                    tracing::error!("grants do not fit in a header");
                    return None;
                };
                set.insert(GRANTS_HEADER, value);
            }
            None => remove.push(GRANTS_HEADER),
        }
        // Envoy applies removals after it sets: a name set here must not be removed.
        remove.extend(
            client_vouch
                .into_iter()
                .filter(|name| !set.contains_key(name)),
        );
        remove.retain(|name| !set.contains_key(name));
        remove.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        remove.dedup();
        Some(Allowed(Box::new(AllowedParts {
            caller,
            grants: grants.map(|g| g.facts().clone()),
            set,
            remove,
        })))
    }
}
