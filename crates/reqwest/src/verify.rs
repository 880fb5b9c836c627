//! Checking the server's signature on each answer (RFC 9421 §2.4, vouch's response profile).

use std::sync::Arc;

use reqwest::Response;
use vouch_httpsig::{RequestView, ResponseView, Verifier, VerifyPolicy, VerifyingKey};
use vouch_keys::KeyResolver;

use crate::SentRequest;

/// Largest response body buffered to be checked unless configured otherwise: 4 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 << 20;

/// The label vouch's request profile signs under ([`vouch_httpsig::mcp_spec`]).
const REQUEST_LABEL: &str = "sig1";

/// The key a server's answers must be signed with.
#[derive(Clone)]
pub struct ServerKey(Source);

#[derive(Clone)]
enum Source {
    Fixed(Arc<VerifyingKey>),
    Pinned {
        resolver: Arc<dyn KeyResolver>,
        fingerprint: String,
    },
}

impl ServerKey {
    /// This key, configured: the answer's `keyid` is not looked up.
    pub fn fixed(key: VerifyingKey) -> Self {
        Self(Source::Fixed(Arc::new(key)))
    }

    /// The key the answer's `keyid` resolves to through `resolver`, accepted only if its
    /// fingerprint (RFC 7638 JWK thumbprint) is `fingerprint`: the server may publish its key
    /// where it likes, and a key swapped there is refused.
    pub fn pinned(resolver: impl KeyResolver + 'static, fingerprint: impl Into<String>) -> Self {
        Self(Source::Pinned {
            resolver: Arc::new(resolver),
            fingerprint: fingerprint.into(),
        })
    }

    async fn key(&self, keyid: Option<&str>) -> Result<Arc<VerifyingKey>, ResponseError> {
        match &self.0 {
            Source::Fixed(key) => Ok(key.clone()),
            Source::Pinned {
                resolver,
                fingerprint,
            } => {
                let keyid = keyid.ok_or(ResponseError::Rejected(
                    vouch_httpsig::Error::MissingParameter("keyid"),
                ))?;
                let resolved = resolver.resolve(keyid).await.map_err(|e| {
                    tracing::info!(%keyid, detail = %e, "server key did not resolve");
                    ResponseError::KeyNotPinned
                })?;
                if resolved.fingerprint() != fingerprint {
                    tracing::warn!(%keyid, "server key differs from the pinned one");
                    return Err(ResponseError::KeyNotPinned);
                }
                Ok(Arc::new(resolved.key().clone()))
            }
        }
    }
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::Fixed(key) => f
                .debug_tuple("ServerKey::Fixed")
                .field(&key.algorithm())
                .finish(),
            Source::Pinned { fingerprint, .. } => f
                .debug_struct("ServerKey::Pinned")
                .field("fingerprint", fingerprint)
                .finish_non_exhaustive(),
        }
    }
}

/// Why an answer was refused. The response is dropped.
#[non_exhaustive]
#[derive(Debug)]
pub enum ResponseError {
    /// The answer carries no signature of vouch's response profile (a server that does not
    /// sign, or a refusal the server could not bind to the request, such as a 401).
    Unsigned {
        /// The answer's status code, for the error message.
        status: u16,
    },
    /// The answer's signature does not check: a policy failure (not bound to this request,
    /// stale, a component missing, the body's digest), or a bad signature.
    Rejected(vouch_httpsig::Error),
    /// The signing key is not the pinned one, or did not resolve.
    KeyNotPinned,
    /// The request's URL could not be read back to bind the answer to it.
    BadRequest,
    /// The body is larger than the middleware buffers to check.
    TooLarge,
    /// The body could not be read.
    Body(reqwest::Error),
}

impl std::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unsigned { status } => write!(
                f,
                "response refused: it is not signed by the server (HTTP {status})"
            ),
            Self::Rejected(e) => write!(f, "response refused: its signature does not check: {e}"),
            Self::KeyNotPinned => {
                f.write_str("response refused: it is not signed with the pinned server key")
            }
            Self::BadRequest => f.write_str("response refused: the request URL is not a URI"),
            Self::TooLarge => f.write_str("response refused: its body is larger than the cap"),
            Self::Body(e) => write!(f, "response refused: its body could not be read: {e}"),
        }
    }
}

impl std::error::Error for ResponseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Rejected(e) => Some(e),
            Self::Body(e) => Some(e),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub(crate) struct ResponseCheck {
    server: ServerKey,
    pub(crate) max_body_bytes: usize,
    verifier: Verifier,
}

impl ResponseCheck {
    pub(crate) fn new(server: ServerKey) -> Self {
        Self {
            server,
            max_body_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            verifier: Verifier::new(VerifyPolicy::mcp_response(REQUEST_LABEL)),
        }
    }

    pub(crate) async fn check(
        &self,
        request: &SentRequest,
        mut response: Response,
    ) -> Result<Response, ResponseError> {
        let uri = request.uri.as_ref().ok_or(ResponseError::BadRequest)?;
        let sent = RequestView::from_parts(&request.method, uri, &request.signature, &[]);
        if vouch_httpsig::is_event_stream(response.headers()) {
            // Signed over the head only: check it and hand the stream on unread.
            let view = ResponseView::from_parts(response.status(), response.headers(), &[])
                .with_request(sent);
            self.verify(view, response.status()).await?;
            return Ok(response);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(ResponseError::Body)? {
            if body.len().saturating_add(chunk.len()) > self.max_body_bytes {
                return Err(ResponseError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let view = ResponseView::from_parts(response.status(), response.headers(), &body)
            .with_request(sent);
        self.verify(view, response.status()).await?;
        // The same answer, its body now in memory (its URL and extensions kept).
        use reqwest::ResponseBuilderExt as _;
        let mut rebuilt = http::Response::builder()
            .status(response.status())
            .version(response.version())
            .url(response.url().clone())
            .body(body)
            .map_err(|_| ResponseError::BadRequest)?;
        *rebuilt.headers_mut() = std::mem::take(response.headers_mut());
        rebuilt
            .extensions_mut()
            .extend(std::mem::take(response.extensions_mut()));
        Ok(Response::from(rebuilt))
    }

    async fn verify(
        &self,
        view: ResponseView<'_>,
        status: http::StatusCode,
    ) -> Result<(), ResponseError> {
        let prepared = self
            .verifier
            .prepare(view, crate::unix_now())
            .map_err(|e| match e {
                vouch_httpsig::Error::NoSignature => ResponseError::Unsigned {
                    status: status.as_u16(),
                },
                e => ResponseError::Rejected(e),
            })?;
        let key = self.server.key(prepared.keyid()).await?;
        prepared.verify(&key).map_err(ResponseError::Rejected)?;
        Ok(())
    }
}
