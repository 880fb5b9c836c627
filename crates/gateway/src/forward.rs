//! The innermost service: one verified, authorized request forwarded to the upstream, and its
//! response streamed back.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use base64ct::{Base64UrlUnpadded, Encoding as _};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use tower_service::Service;
use vouch_httpsig::{Component, RequestView, SigningKey, mcp_content_digest, mcp_spec, sign};
use vouch_tower::{Grants, VerifiedCaller};

use crate::filter::SseFilter;
use crate::headers::{
    GRANTS_HEADER, IDENTITY_HEADER, KEYID_HEADER, scrub_request, strip_hop_by_hop,
};
use crate::response::error;
use vouch_tower::tools_list::{ToolsListFilter, listing_id};

/// Where requests go: an `http://` or `https://` URL, split once.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    pub(crate) path: PathAndQuery,
}

impl Upstream {
    /// The upstream URL for a request with `query` (the upstream's own query wins if it has
    /// one).
    pub(crate) fn uri(&self, query: Option<&str>) -> Result<Uri, http::Error> {
        let path_and_query = match (self.path.query(), query) {
            (None, Some(q)) => PathAndQuery::try_from(format!("{}?{q}", self.path.path()))?,
            _ => self.path.clone(),
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }
}

const CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");

/// The gateway's own key, to sign forwarded requests for the upstream.
pub(crate) struct UpstreamSigner {
    pub(crate) key: SigningKey,
    pub(crate) keyid: String,
}

impl std::fmt::Debug for UpstreamSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSigner")
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

impl UpstreamSigner {
    /// Signs `request` (absolute upstream URI, final fields, the exact body) in place: a fresh
    /// `Content-Digest` when there is a body, then `Signature-Input` and `Signature`.
    pub(crate) fn sign(
        &self,
        request: &mut Request<Body>,
        body: &[u8],
        token_header: &HeaderName,
    ) -> Result<(), vouch_httpsig::Error> {
        if !body.is_empty() || request.headers().contains_key(CONTENT_DIGEST) {
            let digest = HeaderValue::from_str(&mcp_content_digest(body))
                .map_err(|_| vouch_httpsig::Error::Malformed("content-digest"))?;
            request.headers_mut().insert(CONTENT_DIGEST, digest);
        }
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let view =
            RequestView::from_parts(request.method(), request.uri(), request.headers(), body);
        let mut spec = mcp_spec(
            &view,
            &self.key,
            &self.keyid,
            Some(token_header.as_str()),
            created,
        )?;
        // Every X-Vouch field sent (an identity-only gateway sends no grants).
        for name in [IDENTITY_HEADER, KEYID_HEADER, GRANTS_HEADER] {
            if request.headers().contains_key(&name) {
                spec = spec.cover(Component::new(name.as_str())?);
            }
        }
        let signature = sign(view, &spec, &self.key)?;
        signature.apply(request.headers_mut())
    }
}

/// Everything the forwarding service needs, configured once.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) upstream: Upstream,
    pub(crate) token_header: HeaderName,
    pub(crate) forward_token: bool,
    pub(crate) head_timeout: Duration,
    pub(crate) operations: Arc<BTreeMap<String, String>>,
    pub(crate) max_filtered_bytes: usize,
    pub(crate) signer: Option<UpstreamSigner>,
    /// No capability layer in front (vouch-tower's `StrictMessageLayer` instead): no grants to
    /// forward or filter by.
    pub(crate) identity_only: bool,
}

/// The forwarding service.
#[derive(Clone, Debug)]
pub(crate) struct Forward {
    pub(crate) config: Arc<Config>,
    /// Shared: a clone for each request is one reference count, not a copy of the client's
    /// connector and pool handles.
    pub(crate) client: Arc<UpstreamClient>,
}

/// The HTTP/1.1 client for the upstream, with its pool of keep-alive connections: over TCP
/// (TLS for `https://`), or over a Unix domain socket.
#[derive(Clone, Debug)]
pub(crate) enum UpstreamClient {
    /// TCP, to the upstream URL's host and port.
    Network(Client<HttpsConnector<HttpConnector>, Body>),
    /// The Unix domain socket the gateway was given.
    #[cfg(unix)]
    Unix(Client<UnixConnector, Body>),
}

impl UpstreamClient {
    /// Sends `request` (absolute upstream URI) on a pooled or new connection.
    pub(crate) fn request(&self, request: Request<Body>) -> ResponseFuture {
        match self {
            Self::Network(client) => client.request(request),
            #[cfg(unix)]
            Self::Unix(client) => client.request(request),
        }
    }
}

/// Connects to one Unix domain socket, whatever the request's authority (the pool still keys
/// connections by it: there is only one).
#[cfg(unix)]
#[derive(Clone, Debug)]
pub(crate) struct UnixConnector {
    path: Arc<std::path::Path>,
}

#[cfg(unix)]
impl Service<Uri> for UnixConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let path = self.path.clone();
        Box::pin(async move {
            tokio::net::UnixStream::connect(&*path)
                .await
                .map(hyper_util::rt::TokioIo::new)
        })
    }
}

/// How the forwarder reaches the upstream.
#[derive(Clone, Debug)]
pub(crate) enum Transport {
    /// TCP to the upstream URL's host and port; TLS for `https://` with this configuration.
    Network(Box<rustls::ClientConfig>),
    /// The Unix domain socket at this path (`http://` upstream URLs only).
    #[cfg(unix)]
    Unix(Arc<std::path::Path>),
}

impl Forward {
    /// The forwarder, reaching the upstream by `transport` (HTTP/1.1 only).
    pub(crate) fn new(config: Config, transport: Transport) -> Self {
        let builder = Client::builder(TokioExecutor::new());
        let client = match transport {
            Transport::Network(tls) => {
                let mut http = HttpConnector::new();
                http.set_nodelay(true);
                // The scheme is the configured upstream's, never the client's.
                http.enforce_http(false);
                let connector = HttpsConnectorBuilder::new()
                    .with_tls_config(*tls)
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http);
                UpstreamClient::Network(builder.build(connector))
            }
            #[cfg(unix)]
            Transport::Unix(path) => UpstreamClient::Unix(builder.build(UnixConnector { path })),
        };
        Self {
            config: Arc::new(config),
            client: Arc::new(client),
        }
    }
}

/// The TLS client configuration for `https://` upstreams: rustls on ring, TLS 1.2 and 1.3,
/// servers verified against `roots`.
pub(crate) fn tls_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, String> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

impl Service<Request<Body>> for Forward {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.forward(request).await) })
    }
}

/// The value of `X-Vouch-Grants`: base64url without padding of the facts' JSON.
pub(crate) fn grants_value(grants: &Grants) -> Option<HeaderValue> {
    let json = serde_json::to_vec(grants.facts()).ok()?;
    HeaderValue::from_str(&Base64UrlUnpadded::encode_string(&json)).ok()
}

fn is_media_type(headers: &http::HeaderMap, wanted: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(wanted))
}

impl Forward {
    async fn forward(self, request: Request<Body>) -> Response<Body> {
        let config = &self.config;
        let (parts, body) = request.into_parts();
        let caller = parts.extensions.get::<VerifiedCaller>();
        let grants = parts.extensions.get::<Grants>();
        let (Some(caller), true) = (caller, grants.is_some() || config.identity_only) else {
            // The router always puts the layers in front; without them, nothing is forwarded.
            tracing::error!("request reached the forwarder without a verified caller and grants");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal");
        };
        // The signature layer has read the body into memory, bounded: collecting is a move.
        let Ok(collected) = body.collect().await else {
            return error(StatusCode::BAD_REQUEST, "unreadable_body");
        };
        let bytes: Bytes = collected.to_bytes();
        let lister = grants.and_then(|grants| {
            listing_id(&bytes).map(|id| {
                ToolsListFilter::new(
                    id,
                    grants.facts().clone(),
                    config.operations.clone(),
                    config.max_filtered_bytes,
                )
            })
        });

        let mut headers = parts.headers;
        scrub_request(&mut headers, &config.token_header, config.forward_token);
        // Identity-only: no grants, so no grants field.
        let facts = grants.map(grants_value);
        let (Ok(identity), Ok(keyid), None | Some(Some(_)), Ok(host)) = (
            HeaderValue::from_str(&caller.identity),
            HeaderValue::from_str(&caller.keyid),
            &facts,
            HeaderValue::from_str(config.upstream.authority.as_str()),
        ) else {
            tracing::error!("verified caller or grants do not fit in a header");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal");
        };
        headers.insert(HOST, host);
        headers.insert(IDENTITY_HEADER, identity);
        headers.insert(KEYID_HEADER, keyid);
        if let Some(Some(facts)) = facts {
            headers.insert(GRANTS_HEADER, facts);
        }
        headers.remove(CONTENT_LENGTH);
        if !bytes.is_empty() {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        }
        let Ok(uri) = config.upstream.uri(parts.uri.query()) else {
            return error(StatusCode::BAD_REQUEST, "bad_request");
        };
        let mut upstream_request = Request::new(Body::from(bytes.clone()));
        *upstream_request.method_mut() = parts.method;
        *upstream_request.uri_mut() = uri;
        *upstream_request.headers_mut() = headers;
        if let Some(signer) = &config.signer
            && let Err(e) = signer.sign(&mut upstream_request, &bytes, &config.token_header)
        {
            tracing::error!(error = %e, "forwarded request not signed");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal");
        }

        let sent = tokio::time::timeout(config.head_timeout, self.client.request(upstream_request));
        let response = match sent.await {
            Err(_) => {
                tracing::warn!("upstream did not answer in time");
                return error(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout");
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "upstream unavailable");
                return error(StatusCode::BAD_GATEWAY, "upstream_unavailable");
            }
            Ok(Ok(response)) => response,
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let Some(lister) = lister else {
            return Response::from_parts(parts, Body::new(body));
        };
        if is_media_type(&parts.headers, "text/event-stream") {
            parts.headers.remove(CONTENT_LENGTH);
            let filtered = SseFilter::new(body, lister);
            return Response::from_parts(parts, Body::new(filtered));
        }
        if is_media_type(&parts.headers, "application/json") {
            let read = Limited::new(body, config.max_filtered_bytes).collect();
            let filtered = match tokio::time::timeout(config.head_timeout, read).await {
                Ok(Ok(all)) => lister.filter_json(&all.to_bytes()),
                _ => {
                    tracing::warn!("tools/list response not read");
                    return error(StatusCode::BAD_GATEWAY, "upstream_unavailable");
                }
            };
            let Ok(filtered) = filtered else {
                tracing::warn!("tools/list response is not JSON");
                return error(StatusCode::BAD_GATEWAY, "upstream_invalid");
            };
            parts.headers.remove(CONTENT_LENGTH);
            return Response::from_parts(parts, Body::from(filtered));
        }
        if !parts.status.is_success() {
            return Response::from_parts(parts, Body::new(body));
        }
        // A listing in a form the gateway cannot filter is not passed on.
        tracing::warn!("tools/list response neither JSON nor SSE");
        error(StatusCode::BAD_GATEWAY, "upstream_invalid")
    }
}
