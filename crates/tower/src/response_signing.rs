//! The response signing layer: signs every answer to a verified request, bound to that request
//! (RFC 9421 §2.4).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use bytes::Bytes;
use http::response::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use tower_layer::Layer;
use tower_service::Service;
use vouch_httpsig::{ResponseView, SigningKey, mcp_content_digest, mcp_response_spec, sign};

use crate::pipeline::SignedRequest;
use crate::signature::{BoxError, unix_now};

/// Largest response body the layer buffers to digest unless configured otherwise: 4 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 << 20;

/// A tower layer that signs the response to every verified request with the server's key,
/// under vouch's response profile ([`vouch_httpsig::mcp_response_spec`]): `@status`,
/// `content-type`, `content-digest` of the body, `mcp-session-id` when present, and the
/// request's `@method;req`, `@target-uri;req` and `"signature";req;key="<label>"`, which bind
/// the answer to the one request it answers; `created`, `alg` and `keyid`.
///
/// Put it inside the [`SignatureLayer`](crate::SignatureLayer) (which leaves the
/// [`SignedRequest`] it verified in the request extensions) and outside everything else, so
/// that refusals by the inner layers are signed too. A request without a [`SignedRequest`]
/// (an exempt path, or a refusal by the signature layer itself) is answered unsigned: there is
/// no request signature to bind to, and a client that verifies responses refuses it. Any
/// signature the inner service set is removed from it all the same.
///
/// - Any `Signature`, `Signature-Input` and `Content-Digest` the inner service set are removed
///   first: this layer is the only signer of the answer, and it digests the body itself (a
///   gateway's upstream cannot smuggle a signature or a digest through).
/// - A body is buffered to be digested, up to [`DEFAULT_MAX_RESPONSE_BYTES`]
///   ([`ResponseSigningLayer::max_body_bytes`]); a larger body, or one that fails, is replaced
///   by an unsigned 500 and logged: a signed answer with an unbound body is never sent.
/// - An event stream (`Content-Type: text/event-stream`) is signed over its head only, with no
///   Content-Digest, and streamed as it comes: its events are not covered by the signature.
///   Serve JSON responses (rmcp's `json_response`) where the body must be signed.
#[derive(Clone)]
pub struct ResponseSigningLayer {
    key: Arc<SigningKey>,
    keyid: Arc<str>,
    max_body_bytes: usize,
}

impl core::fmt::Debug for ResponseSigningLayer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ResponseSigningLayer")
            .field("keyid", &self.keyid)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl ResponseSigningLayer {
    /// Signs as `keyid` with `key`, buffering bodies up to [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub fn new(key: SigningKey, keyid: impl Into<String>) -> Self {
        Self {
            key: Arc::new(key),
            keyid: Arc::from(keyid.into()),
            max_body_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// The largest response body buffered to be digested; a larger one is answered 500.
    #[must_use]
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// The keyid responses are signed under.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// Signs `response`, the answer to `request`.
    async fn sign<B>(&self, request: &SignedRequest, response: Response<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = response.into_parts();
        for name in ["signature", "signature-input", "content-digest"] {
            parts.headers.remove(name);
        }
        if vouch_httpsig::is_event_stream(&parts.headers) {
            return match self.apply(&mut parts, &[], request) {
                Ok(()) => Response::from_parts(parts, Body::new(body)),
                Err(()) => internal_error(),
            };
        }
        let bytes = match Limited::new(body, self.max_body_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                tracing::error!(
                    detail = %e,
                    max = self.max_body_bytes,
                    "response body not signed (larger than the cap, or unreadable): answering 500"
                );
                return internal_error();
            }
        };
        let Ok(digest) = HeaderValue::from_str(&mcp_content_digest(&bytes)) else {
            return internal_error();
        };
        parts.headers.insert("content-digest", digest);
        match self.apply(&mut parts, &bytes, request) {
            Ok(()) => Response::from_parts(parts, Body::from(bytes)),
            Err(()) => internal_error(),
        }
    }

    fn apply(&self, parts: &mut Parts, body: &[u8], request: &SignedRequest) -> Result<(), ()> {
        let signature = {
            let view = ResponseView::new(parts, body).with_request(request.view());
            mcp_response_spec(&view, &self.key, &self.keyid, request.label(), unix_now())
                .and_then(|spec| sign(view, &spec, &self.key))
        };
        signature.and_then(|s| s.apply(&mut parts.headers)).map_err(
            |e| tracing::error!(detail = %e, "response could not be signed: answering 500"),
        )
    }
}

/// The answer when a response cannot be signed: 500, unsigned, no detail.
fn internal_error() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

impl<S> Layer<S> for ResponseSigningLayer {
    type Service = ResponseSigningService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseSigningService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`ResponseSigningLayer`] makes.
#[derive(Clone, Debug)]
pub struct ResponseSigningService<S> {
    inner: S,
    layer: ResponseSigningLayer,
}

impl<S> ResponseSigningService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for ResponseSigningService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let signed = request.extensions().get::<SignedRequest>().cloned();
        Box::pin(async move {
            let response = inner.call(request).await?;
            Ok(match signed {
                Some(signed) => layer.sign(&signed, response).await,
                None => {
                    tracing::debug!("no verified request signature: response not signed");
                    let (mut parts, body) = response.into_parts();
                    for name in ["signature", "signature-input"] {
                        parts.headers.remove(name);
                    }
                    Response::from_parts(parts, Body::new(body))
                }
            })
        })
    }
}
