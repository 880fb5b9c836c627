//! The upstream's MCP sessions, as vouch-tower's session binding sees them: a session whose
//! binding is dropped (reclaimed as idle) is ended with an HTTP `DELETE` to the upstream.

use std::sync::Arc;

use axum::body::Body;
use http::header::HOST;
use http::{HeaderName, HeaderValue, Method, Request};
use tokio::sync::Semaphore;
use vouch_tower::{SessionFuture, SessionStore};

use crate::forward::Forward;

/// The MCP session header.
const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");

/// The most `DELETE`s in flight at once; past it, a reclaimed session is left to the upstream's
/// own expiry (a slow upstream must not pile up tasks).
const MAX_CLOSING: usize = 64;

/// The upstream's sessions: closing one sends a `DELETE` of the upstream URL with its
/// `Mcp-Session-Id` (signed like forwarded requests when the gateway signs them), in a task of
/// its own, bounded by the upstream timeout, so the request that reclaimed the session does not
/// wait for the upstream. Whether the upstream still has a session, and how many it holds, the
/// gateway cannot tell.
pub(crate) struct UpstreamSessions {
    forward: Forward,
    closing: Arc<Semaphore>,
}

impl UpstreamSessions {
    /// Sessions closed through `forward`'s upstream URL, client, signer and timeout.
    pub(crate) fn new(forward: Forward) -> Self {
        Self {
            forward,
            closing: Arc::new(Semaphore::new(MAX_CLOSING)),
        }
    }

    /// The `DELETE` that ends `session`, signed if the gateway signs; `None` (logged) if it
    /// cannot be built.
    fn request(&self, session: &str) -> Option<Request<Body>> {
        let config = &self.forward.config;
        let (Ok(uri), Ok(id), Ok(host)) = (
            config.upstream.uri(None),
            HeaderValue::from_str(session),
            HeaderValue::from_str(config.upstream.authority.as_str()),
        ) else {
            tracing::error!("the DELETE of a reclaimed MCP session could not be built");
            return None;
        };
        let mut request = Request::new(Body::empty());
        *request.method_mut() = Method::DELETE;
        *request.uri_mut() = uri;
        request.headers_mut().insert(HOST, host);
        request.headers_mut().insert(SESSION_HEADER, id);
        if let Some(signer) = &config.signer
            && let Err(e) = signer.sign(&mut request, &[], &config.token_header)
        {
            tracing::error!(error = %e, "the DELETE of a reclaimed MCP session not signed");
            return None;
        }
        Some(request)
    }
}

impl SessionStore for UpstreamSessions {
    fn close<'a>(&'a self, session: &'a str) -> SessionFuture<'a, ()> {
        let Ok(permit) = self.closing.clone().try_acquire_owned() else {
            tracing::warn!("too many MCP session DELETEs in flight: left to the upstream");
            return Box::pin(std::future::ready(()));
        };
        let Some(request) = self.request(session) else {
            return Box::pin(std::future::ready(()));
        };
        let client = self.forward.client.clone();
        let timeout = self.forward.config.head_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, client.request(request)).await {
                Err(_) => tracing::warn!("upstream did not answer the DELETE of an MCP session"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the DELETE of an MCP session did not reach the upstream");
                }
                Ok(Ok(response))
                    if response.status().is_success()
                        || response.status() == http::StatusCode::NOT_FOUND =>
                {
                    tracing::debug!("reclaimed MCP session ended upstream");
                }
                Ok(Ok(response)) => tracing::warn!(
                    status = response.status().as_u16(),
                    "upstream refused the DELETE of an MCP session"
                ),
            }
        });
        Box::pin(std::future::ready(()))
    }

    fn contains<'a>(&'a self, _session: &'a str) -> SessionFuture<'a, bool> {
        // Asking would cost a request to the upstream: unknown.
        Box::pin(std::future::ready(true))
    }

    fn live(&self) -> SessionFuture<'_, Option<usize>> {
        Box::pin(std::future::ready(None))
    }
}
