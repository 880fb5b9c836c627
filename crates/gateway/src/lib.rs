//! `vouch gateway`: vouch's signatures and capability tokens in front of any MCP server.
//!
//! A [`Gateway`] is a reverse proxy for one MCP endpoint. Every request to the gateway's path is
//! verified by vouch-tower's layers, outermost first: [`SignatureLayer`]
//! (RFC 9421, built with the gateway's public [`Origin`](vouch_tower::Origin)), a per-identity
//! [`RateLimitLayer`], the [`SessionBindingLayer`] (an `Mcp-Session-Id` belongs to the caller
//! whose request created it; sessions bounded per identity), the [`CapabilityLayer`] (a
//! `tools/call` outside the token's grants is answered 403 without contacting the upstream);
//! only then is it forwarded to the upstream, with the verified identity, keyid and grants in
//! [`X-Vouch-*` headers](IDENTITY_HEADER) and without the client's signature, token or
//! hop-by-hop fields. Responses stream back as they arrive; `tools/list` results are narrowed
//! to the tools the token grants (JSON and SSE). `GET /healthz` answers `{"status":"ok"}`
//! without a signature.
//!
//! ```no_run
//! use vouch_gateway::Gateway;
//! use vouch_keys::{ShardedReplayStore, StaticResolver};
//! use vouch_token::{KeyPair, Verifier};
//! use vouch_tower::{CapabilityPipeline, Origin, ServeConfig, SignaturePipeline};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! # let root = KeyPair::generate()?;
//! # let agent = KeyPair::generate()?;
//! // How clients address the gateway: requests for any other authority are refused (421).
//! let origin: Origin = "https://gateway.example".parse()?;
//! let resolver = StaticResolver::new()
//!     .with_ed25519("https://agents.example/worker", &agent.public_key());
//! let app = Gateway::new(
//!     "http://127.0.0.1:8000/mcp", // the MCP server behind it (FastMCP, say)
//!     SignaturePipeline::new(origin, resolver, ShardedReplayStore::new(100_000)),
//!     CapabilityPipeline::new(Verifier::new(root.public_key())),
//! )?
//! .into_router();
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! vouch_tower::serve(listener, app, ServeConfig::default()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! The header contract with the upstream is in `docs/gateway.md`.
//!
//! With the `authz` feature, [`Authorizer`] runs the same checks as an Envoy external
//! authorizer (`ext_authz`, over gRPC and HTTP) for deployments where Envoy is the proxy: see
//! `docs/deployments.md`.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "authz")]
mod authz;
mod filter;
mod forward;
mod headers;
mod metrics;
mod response;
mod session;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::header::CONTENT_TYPE;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderName, Uri};
use vouch_tower::{
    CapabilityLayer, CapabilityPipeline, RateLimitLayer, ResponseSigningLayer, SessionBindingLayer,
    SignatureLayer, SignaturePipeline, StrictMessageLayer, TOKEN_HEADER,
};

#[cfg(feature = "authz")]
#[cfg_attr(docsrs, doc(cfg(feature = "authz")))]
pub use authz::{
    Allowed, Authorizer, AuthzError, DEFAULT_HTTP_PREFIX, Denied, ExtAuthz,
    HEADERS_TO_REMOVE_HEADER, PARTIAL_BODY_HEADER, Verdict,
};
pub use headers::{GRANTS_HEADER, IDENTITY_HEADER, KEYID_HEADER};
pub use metrics::{METRICS_CONTENT_TYPE, METRICS_PATH, Metrics};

use forward::{Config, Forward, Transport, Upstream, UpstreamSigner};

/// The path the gateway serves unless told otherwise.
pub const DEFAULT_PATH: &str = "/mcp";

/// The health path, served without a signature.
pub const HEALTH_PATH: &str = "/healthz";

/// How long the upstream may take to answer with a response head unless configured otherwise.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// The per-identity rate limit the gateway applies by default (defined in vouch-tower).
pub use vouch_tower::{DEFAULT_RATE_BURST, DEFAULT_RATE_PER_SECOND};
/// The session binding's limits the gateway applies by default (defined in vouch-tower).
pub use vouch_tower::{
    DEFAULT_SESSION_CAPACITY, DEFAULT_SESSION_IDLE, DEFAULT_SESSIONS_PER_IDENTITY,
};

/// The largest `tools/list` response (JSON) or SSE event the gateway holds to filter: 8 MiB.
pub const DEFAULT_MAX_FILTERED_BYTES: usize = 8 << 20;

/// Why a gateway could not be built.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The upstream is not an absolute `http://` or `https://` URL with a host.
    Upstream(String),
    /// The TLS client for `https://` upstreams could not be configured.
    Tls(String),
    /// The gateway's path does not start with `/`, or is the health path.
    Path(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Upstream(why) => write!(f, "invalid upstream: {why}"),
            Self::Tls(why) => write!(f, "upstream TLS: {why}"),
            Self::Path(path) => write!(f, "invalid gateway path: {path:?}"),
        }
    }
}

impl std::error::Error for Error {}

/// A reverse proxy for one MCP endpoint, behind vouch's layers; [`into_router`](Self::into_router)
/// makes the axum [`Router`] to serve with [`vouch_tower::serve`].
pub struct Gateway {
    upstream: Upstream,
    path: String,
    signature: SignaturePipeline,
    /// `None` in identity-only mode.
    capability: Option<CapabilityPipeline>,
    rate_limit: RateLimitLayer,
    sessions: Option<SessionBindingLayer>,
    /// For `https://` upstreams.
    tls: rustls::ClientConfig,
    /// Connect to this Unix domain socket instead of the upstream URL's host.
    #[cfg(unix)]
    unix_socket: Option<Arc<std::path::Path>>,
    token_header: HeaderName,
    forward_token: bool,
    head_timeout: Duration,
    operations: BTreeMap<String, String>,
    max_filtered_bytes: usize,
    sign_upstream: Option<UpstreamSigner>,
    response_signing: Option<ResponseSigningLayer>,
    tune_signature: Option<Box<dyn FnOnce(SignatureLayer) -> SignatureLayer + Send>>,
    metrics: Option<Metrics>,
    audit: Option<Arc<dyn vouch_tower::AuditHook>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("upstream", &self.upstream)
            .field("unix_socket", &self.unix_socket())
            .field("path", &self.path)
            .field("token_header", &self.token_header)
            .field("forward_token", &self.forward_token)
            .field("head_timeout", &self.head_timeout)
            .field("operations", &self.operations)
            .field("sign_upstream", &self.sign_upstream)
            .field("response_signing", &self.response_signing)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway forwarding to `upstream` (an `http://` or `https://` URL, e.g.
    /// `http://127.0.0.1:8000/mcp`; see [`upstream_roots`](Self::upstream_roots) for TLS), with requests verified by `signature` (built with the
    /// gateway's public origin: how clients address the gateway, not the upstream) and
    /// authorized by `capability`. Serves [`DEFAULT_PATH`]; each identity may make
    /// [`DEFAULT_RATE_PER_SECOND`] requests a second (bursts of [`DEFAULT_RATE_BURST`]); the
    /// upstream has [`DEFAULT_UPSTREAM_TIMEOUT`] to answer; the token is not forwarded.
    ///
    /// # Errors
    ///
    /// [`Error::Upstream`] if `upstream` is not an absolute `http://` or `https://` URL with a
    /// host and no userinfo.
    pub fn new(
        upstream: &str,
        signature: SignaturePipeline,
        capability: CapabilityPipeline,
    ) -> Result<Self, Error> {
        let mut gateway = Self::identity_only(upstream, signature)?;
        gateway.capability = Some(capability.header(gateway.token_header.clone()));
        Ok(gateway)
    }

    /// A gateway that checks who is calling but not what they may do: every request must be
    /// signed by an admitted signer (the `signature` pipeline's resolver, allowlist and pins),
    /// and no capability token is asked for. The upstream gets [`IDENTITY_HEADER`] and
    /// [`KEYID_HEADER`] but no [`GRANTS_HEADER`], and `tools/list` is not filtered. Messages
    /// are still parsed as strictly as [`new`](Self::new)'s capability layer does (one JSON-RPC
    /// object, no duplicate keys: 400 otherwise), so the upstream never sees one the gateway
    /// read differently; a token header, if sent, is still removed.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn identity_only(upstream: &str, signature: SignaturePipeline) -> Result<Self, Error> {
        let uri: Uri = upstream
            .parse()
            .map_err(|e: http::uri::InvalidUri| Error::Upstream(e.to_string()))?;
        let scheme = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => s.clone(),
            _ => return Err(Error::Upstream("the scheme must be http or https".into())),
        };
        let Some(authority) = uri.authority().cloned() else {
            return Err(Error::Upstream("no host".into()));
        };
        if authority.as_str().contains('@') {
            return Err(Error::Upstream("userinfo is not supported".into()));
        }
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        Ok(Self {
            upstream: Upstream {
                scheme,
                authority,
                path,
            },
            tls: forward::tls_config(web_pki_roots()).map_err(Error::Tls)?,
            #[cfg(unix)]
            unix_socket: None,
            path: DEFAULT_PATH.to_owned(),
            signature,
            capability: None,
            rate_limit: RateLimitLayer::default(),
            sessions: Some(SessionBindingLayer::default()),
            token_header: TOKEN_HEADER,
            forward_token: false,
            head_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            operations: BTreeMap::new(),
            max_filtered_bytes: DEFAULT_MAX_FILTERED_BYTES,
            sign_upstream: None,
            response_signing: None,
            tune_signature: None,
            metrics: None,
            audit: None,
        })
    }

    /// The certificate authorities an `https://` upstream's certificate is verified against, in
    /// place of the default, the Mozilla root store (webpki-roots): for an upstream with a
    /// private CA. The connection is rustls on ring, TLS 1.2 or 1.3, HTTP/1.1; the server name
    /// checked is the upstream URL's host.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] if rustls cannot be configured.
    pub fn upstream_roots(mut self, roots: rustls::RootCertStore) -> Result<Self, Error> {
        self.tls = forward::tls_config(roots).map_err(Error::Tls)?;
        Ok(self)
    }

    /// Connects to the upstream over the Unix domain socket at `path` instead of TCP: for an
    /// upstream beside the gateway (a sidecar), whose socket's file permissions say who may
    /// serve it. The upstream URL still gives everything else: the `Host` sent, the path (and
    /// query) requested, and, with [`sign_upstream`](Self::sign_upstream), the `@authority`
    /// and `@target-uri` signed; its host is not resolved or connected to. Connections are
    /// pooled and kept alive as over TCP; if the socket cannot be connected to, the request is
    /// answered 502 (`upstream_unavailable`).
    ///
    /// # Errors
    ///
    /// [`Error::Upstream`] if the upstream URL is `https://` (no TLS over the socket) or `path`
    /// is empty.
    #[cfg(unix)]
    #[cfg_attr(docsrs, doc(cfg(unix)))]
    pub fn upstream_unix_socket(
        mut self,
        path: impl Into<std::path::PathBuf>,
    ) -> Result<Self, Error> {
        let path = path.into();
        if self.upstream.scheme != Scheme::HTTP {
            return Err(Error::Upstream(
                "a Unix socket upstream needs an http:// upstream URL".into(),
            ));
        }
        if path.as_os_str().is_empty() {
            return Err(Error::Upstream("empty Unix socket path".into()));
        }
        self.unix_socket = Some(Arc::from(path));
        Ok(self)
    }

    /// The Unix domain socket the upstream is reached by, if any.
    fn unix_socket(&self) -> Option<&std::path::Path> {
        #[cfg(unix)]
        return self.unix_socket.as_deref();
        #[cfg(not(unix))]
        return None;
    }

    /// The path the gateway serves (exactly; default [`DEFAULT_PATH`]). Requests to it are
    /// forwarded to the upstream URL, with their query string if the upstream URL has none.
    ///
    /// # Errors
    ///
    /// [`Error::Path`] if `path` does not start with `/` or is [`HEALTH_PATH`].
    pub fn path(mut self, path: impl Into<String>) -> Result<Self, Error> {
        let path = path.into();
        if !path.starts_with('/') || path == HEALTH_PATH {
            return Err(Error::Path(path));
        }
        self.path = path;
        Ok(self)
    }

    /// Forwards the token header to the upstream (default: removed; the MCP authorization spec
    /// forbids passing tokens through). A token in `params._meta.token` is part of the body and
    /// always reaches the upstream.
    #[must_use]
    pub fn forward_token(mut self, forward: bool) -> Self {
        self.forward_token = forward;
        self
    }

    /// The header carrying the token, for the capability check and for stripping (default
    /// [`TOKEN_HEADER`]). Set it here rather than on the [`CapabilityPipeline`], so both agree.
    #[must_use]
    pub fn token_header(mut self, header: HeaderName) -> Self {
        self.capability = self.capability.map(|c| c.header(header.clone()));
        self.token_header = header;
        self
    }

    /// The operation a call to `tool` performs (default `execute`), for the capability check
    /// and for filtering `tools/list`. Set it here rather than on the [`CapabilityPipeline`], so
    /// both agree.
    #[must_use]
    pub fn operation(mut self, tool: impl Into<String>, operation: impl Into<String>) -> Self {
        let (tool, operation) = (tool.into(), operation.into());
        self.capability = self
            .capability
            .map(|c| c.operation(tool.clone(), operation.clone()));
        self.operations.insert(tool, operation);
        self
    }

    /// How long the upstream may take to answer with a response head (default
    /// [`DEFAULT_UPSTREAM_TIMEOUT`]); later it is answered 504. A `tools/list` JSON body must
    /// also arrive within it. Streamed bodies have no time limit.
    #[must_use]
    pub fn upstream_timeout(mut self, timeout: Duration) -> Self {
        self.head_timeout = timeout;
        self
    }

    /// The per-identity rate limit (default: [`DEFAULT_RATE_PER_SECOND`], bursts of
    /// [`DEFAULT_RATE_BURST`]).
    #[must_use]
    pub fn rate_limit(mut self, layer: RateLimitLayer) -> Self {
        self.rate_limit = layer;
        self
    }

    /// The MCP session binding (default: [`SessionBindingLayer::default`]): each
    /// `Mcp-Session-Id` the upstream issues is bound to the verified caller whose request
    /// created it and refused (403) to anyone else, each identity may hold
    /// [`DEFAULT_SESSIONS_PER_IDENTITY`] sessions (429 past it) and all together
    /// [`DEFAULT_SESSION_CAPACITY`] (503), and a session unused for [`DEFAULT_SESSION_IDLE`] is
    /// reclaimed and ended upstream with a `DELETE` (signed if the gateway signs). `None` serves
    /// without it; a stateless upstream issues no session ids, so the binding costs it nothing
    /// but a place per identity for each request in flight. For other limits:
    /// `SessionBindingLayer::new(capacity, idle).max_per_identity(n)`; the gateway sets its
    /// session store and audit hook.
    #[must_use]
    pub fn session_binding(mut self, layer: Option<SessionBindingLayer>) -> Self {
        self.sessions = layer;
        self
    }

    /// The largest `tools/list` JSON response or SSE event held to be filtered (default
    /// [`DEFAULT_MAX_FILTERED_BYTES`]); a larger one ends the response.
    #[must_use]
    pub fn max_filtered_bytes(mut self, max: usize) -> Self {
        self.max_filtered_bytes = max;
        self
    }

    /// Records the gateway's metrics in `metrics` (see [`Metrics`]): the decisions of the
    /// signature and capability layers and the session binding's refusals, the latency of
    /// requests to the gateway's path, its own upstream errors, and the sessions bound. The
    /// layers' audit hooks are the gateway's, set in [`into_router`](Self::into_router): use
    /// [`audit`](Self::audit) rather than [`tune_signature_layer`](Self::tune_signature_layer)
    /// to see the decisions too.
    #[must_use]
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Reports every decision of the signature and capability layers, and every refusal of the
    /// session binding, to `hook` (a log line, say), besides the [`metrics`](Self::metrics) if
    /// set.
    #[must_use]
    pub fn audit(mut self, hook: impl vouch_tower::AuditHook + 'static) -> Self {
        self.audit = Some(Arc::new(hook));
        self
    }

    /// Signs every forwarded request with `key` as `keyid` (default: forwarded unsigned), so
    /// that the upstream can verify that it came through the gateway and that the `X-Vouch-*`
    /// fields were not altered on the way: vouch's MCP profile
    /// ([`mcp_spec`](vouch_httpsig::mcp_spec)) for the upstream URL (`@target-uri` has the
    /// upstream's authority), with a fresh `created` and `nonce`, covering `content-digest`
    /// (recomputed over the forwarded body) whenever there is a body, `authorization`,
    /// `mcp-session-id`, `mcp-protocol-version` and the token header when forwarded, and
    /// [`IDENTITY_HEADER`], [`KEYID_HEADER`] and [`GRANTS_HEADER`]. A vouch-protected upstream
    /// verifies it with a `SignaturePipeline` built for the upstream's origin that resolves
    /// `keyid` to this key's public key.
    #[must_use]
    pub fn sign_upstream(
        mut self,
        key: vouch_httpsig::SigningKey,
        keyid: impl Into<String>,
    ) -> Self {
        self.sign_upstream = Some(UpstreamSigner {
            key,
            keyid: keyid.into(),
        });
        self
    }

    /// Signs every answer to a verified request with the gateway's `key`, as `keyid`, bound to
    /// that request (RFC 9421 §2.4, [`ResponseSigningLayer`]): clients check that the answer
    /// comes from this gateway and answers their request. Default: off.
    ///
    /// The upstream is not trusted with the answer's signature: any `Signature`,
    /// `Signature-Input` and `Content-Digest` it sends are removed, and the gateway digests the
    /// body it forwards (after narrowing `tools/list`) itself. JSON bodies are buffered to be
    /// digested, up to [`DEFAULT_MAX_RESPONSE_BYTES`](vouch_tower::DEFAULT_MAX_RESPONSE_BYTES)
    /// (a larger one is answered 500; set another cap with
    /// [`response_signing`](Self::response_signing)). Event streams, which the gateway forwards
    /// as they arrive, are signed over their head only: their events are not covered.
    /// Without this option, the upstream's response fields pass through unchanged.
    #[must_use]
    pub fn sign_responses(
        mut self,
        key: vouch_httpsig::SigningKey,
        keyid: impl Into<String>,
    ) -> Self {
        self.response_signing = Some(ResponseSigningLayer::new(key, keyid));
        self
    }

    /// The response signing layer as configured, or `None` for none (see
    /// [`sign_responses`](Self::sign_responses)).
    #[must_use]
    pub fn response_signing(mut self, layer: Option<ResponseSigningLayer>) -> Self {
        self.response_signing = layer;
        self
    }

    /// Adjusts the signature layer (body cap and timeout, audit hook) before it is used; the
    /// health path is exempted after `tune` runs (in place of any exempt paths it set).
    #[must_use]
    pub fn tune_signature_layer(
        mut self,
        tune: impl FnOnce(SignatureLayer) -> SignatureLayer + Send + 'static,
    ) -> Self {
        self.tune_signature = Some(Box::new(tune));
        self
    }

    /// The axum router: the gateway's path behind the layers, forwarded; [`HEALTH_PATH`]
    /// without a signature. Serve it with [`vouch_tower::serve`].
    pub fn into_router(self) -> Router {
        #[cfg(unix)]
        let transport = match self.unix_socket {
            Some(path) => Transport::Unix(path),
            None => Transport::Network(Box::new(self.tls)),
        };
        #[cfg(not(unix))]
        let transport = Transport::Network(Box::new(self.tls));
        let forward = Forward::new(
            Config {
                upstream: self.upstream,
                token_header: self.token_header,
                forward_token: self.forward_token,
                head_timeout: self.head_timeout,
                operations: Arc::new(self.operations),
                max_filtered_bytes: self.max_filtered_bytes,
                signer: self.sign_upstream,
                identity_only: self.capability.is_none(),
            },
            transport,
        );
        let hook = metrics::audit_hook(self.metrics.clone(), self.audit);
        // Innermost first: the capability check (unless identity-only), the session binding,
        // then the rate limit (the order vouch-rmcp's `Protected` uses).
        let mut proxied = Router::new().route_service(&self.path, forward.clone());
        if let Some(pipeline) = self.capability {
            let mut capability = CapabilityLayer::new(pipeline);
            if let Some(hook) = &hook {
                capability = capability.audit(hook.clone());
            }
            proxied = proxied.route_layer(capability);
        } else {
            // Identity-only: no token, but the message is read as strictly.
            proxied = proxied.route_layer(StrictMessageLayer::default());
        }
        if let Some(mut sessions) = self.sessions {
            sessions = sessions.session_store(Arc::new(session::UpstreamSessions::new(forward)));
            if let Some(hook) = &hook {
                sessions = sessions.audit(hook.clone());
            }
            if let Some(metrics) = &self.metrics {
                metrics.count_sessions(sessions.clone());
            }
            proxied = proxied.route_layer(sessions);
        }
        let rate_limit = match &hook {
            Some(hook) => self.rate_limit.audit(hook.clone()),
            None => self.rate_limit,
        };
        let mut proxied = proxied.route_layer(rate_limit);
        // Right inside the signature layer: the answers of every layer after it are signed.
        if let Some(layer) = self.response_signing {
            proxied = proxied.route_layer(layer);
        }
        let mut signature = SignatureLayer::new(self.signature);
        if let Some(tune) = self.tune_signature {
            signature = tune(signature);
        }
        if let Some(hook) = hook {
            signature = signature.audit(hook);
        }
        let timing = self.metrics.map(|metrics| metrics::TimingLayer {
            metrics,
            path: Arc::from(self.path.as_str()),
        });
        let router = proxied
            .route(
                HEALTH_PATH,
                get(|| async { ([(CONTENT_TYPE, "application/json")], r#"{"status":"ok"}"#) }),
            )
            .layer(signature.exempt_paths([HEALTH_PATH]));
        match timing {
            Some(timing) => router.layer(timing),
            None => router,
        }
    }
}

/// The Mozilla root store, for `https://` upstreams unless [`Gateway::upstream_roots`] says
/// otherwise.
fn web_pki_roots() -> rustls::RootCertStore {
    rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned())
}
