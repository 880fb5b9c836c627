//! The signature layer: verifies every request (but exempt paths) before the inner service.

use std::sync::Arc;

use axum_core::body::Body;
use bytes::Bytes;
use http::Response;
use http::request::Parts;
use http_body_util::{BodyExt as _, Limited};
use tower_layer::Layer;

use crate::audit::{AuditHook, Decision};
use crate::checked::{Check, Checked, Decide};
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
        Checked::new(inner, self.clone())
    }
}

/// The service [`SignatureLayer`] makes.
pub type SignatureService<S> = Checked<S, SignatureLayer>;

impl SignatureLayer {
    fn report(&self, parts: &Parts, accepted: bool, identity: Option<&str>, reason: &str) {
        if let Some(hook) = &self.audit {
            hook.record(&Decision {
                layer: "signature",
                accepted,
                identity,
                reason,
                method: parts.method.as_str(),
                tool: None,
            });
        }
    }
}

impl Check for SignatureLayer {
    const SPAN: &'static str = "signature";

    fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    fn exempt(&self, parts: &Parts) -> bool {
        self.exempt.iter().any(|p| p == parts.uri.path())
    }

    fn unreadable(&self, parts: &Parts, rejection: &Rejection) -> Response<Body> {
        self.report(parts, false, None, rejection.reason());
        rejection_response(rejection, &self.pipeline.challenge())
    }

    fn decide<'a>(&'a self, parts: &'a mut Parts, body: &'a Bytes) -> Decide<'a> {
        Box::pin(async move {
            match self.pipeline.verify(parts, body, unix_now()).await {
                Ok(caller) => {
                    self.report(parts, true, Some(&caller.identity), "ok");
                    parts.extensions.insert(caller);
                    Ok(())
                }
                Err(rejection) => {
                    self.report(parts, false, None, rejection.reason());
                    Err(rejection_response(&rejection, &self.pipeline.challenge()))
                }
            }
        })
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
