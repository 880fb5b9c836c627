//! The signature layer: verifies every request (but exempt paths) before the inner service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Limited};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;

use crate::audit::{AuditHook, Decision};
use crate::pipeline::{Rejection, SignaturePipeline};
use crate::response::rejection_response;

/// Largest body the layer reads unless configured otherwise: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tower layer that verifies the RFC 9421 signature of every request, reading the body (up to a
/// cap) to check its Content-Digest and handing the same bytes on to the inner service, with the
/// [`VerifiedCaller`](crate::VerifiedCaller) in the request extensions.
#[derive(Clone)]
pub struct SignatureLayer {
    pipeline: Arc<SignaturePipeline>,
    max_body_bytes: usize,
    exempt: Arc<[String]>,
    audit: Option<Arc<dyn AuditHook>>,
}

impl core::fmt::Debug for SignatureLayer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignatureLayer")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("exempt", &self.exempt)
            .finish_non_exhaustive()
    }
}

impl SignatureLayer {
    /// A layer around `pipeline`, reading bodies up to [`DEFAULT_MAX_BODY_BYTES`].
    pub fn new(pipeline: SignaturePipeline) -> Self {
        Self {
            pipeline: Arc::new(pipeline),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            exempt: Arc::from(Vec::new()),
            audit: None,
        }
    }

    /// Reports every decision to `hook` (for example a [`SigningStats`](crate::SigningStats)).
    #[must_use]
    pub fn audit(mut self, hook: impl AuditHook + 'static) -> Self {
        self.audit = Some(Arc::new(hook));
        self
    }

    /// The body cap; a larger body is answered 413.
    #[must_use]
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// Paths served without a signature (exact match, e.g. `/health`).
    #[must_use]
    pub fn exempt_paths<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.exempt = paths.into_iter().map(Into::into).collect();
        self
    }
}

impl<S> Layer<S> for SignatureLayer {
    type Service = SignatureService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SignatureService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`SignatureLayer`] makes.
#[derive(Clone, Debug)]
pub struct SignatureService<S> {
    inner: S,
    layer: SignatureLayer,
}

impl<S> SignatureService<S> {
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

/// Reads a body up to `max` bytes: 413 above it, 401 if it cannot be read.
pub(crate) async fn read_body<B>(body: B, max: usize) -> Result<Bytes, Rejection>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            let too_large = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            tracing::info!(too_large, "request body not read");
            Err(if too_large {
                Rejection::PayloadTooLarge
            } else {
                Rejection::Unauthorized {
                    reason: "unreadable_body",
                }
            })
        }
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn map_body<B>(response: Response<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    response.map(Body::new)
}

impl<S, B, ResBody> Service<Request<B>> for SignatureService<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
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
        // The clone that was polled ready serves this call; a fresh clone stays for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let span = tracing::info_span!("vouch.signature", method = %request.method(), path = %request.uri().path());
        Box::pin(
            async move {
                let (mut parts, body) = request.into_parts();
                if layer.exempt.iter().any(|p| p == parts.uri.path()) {
                    let request = Request::from_parts(parts, Body::new(body));
                    return inner.call(request).await.map(map_body);
                }
                let method = parts.method.clone();
                let report = |accepted: bool, identity: Option<&str>, reason: &str| {
                    if let Some(hook) = &layer.audit {
                        hook.record(&Decision {
                            layer: "signature",
                            accepted,
                            identity,
                            reason,
                            method: method.as_str(),
                            tool: None,
                        });
                    }
                };
                let bytes = match read_body(body, layer.max_body_bytes).await {
                    Ok(bytes) => bytes,
                    Err(rejection) => {
                        report(false, None, rejection.reason());
                        return Ok(rejection_response(&rejection, &layer.pipeline.challenge()));
                    }
                };
                match layer.pipeline.verify(&parts, &bytes, unix_now()).await {
                    Ok(caller) => {
                        report(true, Some(&caller.identity), "ok");
                        parts.extensions.insert(caller);
                        let request = Request::from_parts(parts, Body::from(bytes));
                        inner.call(request).await.map(map_body)
                    }
                    Err(rejection) => {
                        report(false, None, rejection.reason());
                        Ok(rejection_response(&rejection, &layer.pipeline.challenge()))
                    }
                }
            }
            .instrument(span),
        )
    }
}
