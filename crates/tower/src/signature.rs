//! The signature layer: verifies every request (but exempt paths) before the inner service.
//!
//! The head is verified first (origin, policy, key, signature); only then is the body read,
//! bounded by size and by time, hashed as it arrives, compared with the signed digest, and the
//! signature recorded in the replay store. An unsigned or badly signed request is answered
//! without reading its body, so it holds no body memory.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_core::body::Body;
use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Limited};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;

use crate::audit::{AuditHook, Decision};
use crate::pipeline::{
    HeadVerified, RefusalStyle, Rejection, SignaturePipeline, SignedRequest, VerifiedCaller,
};
use crate::response::{Denial, rejection_denial, sep2752_denial};

/// Largest body the layer reads unless configured otherwise: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// How long the whole body may take to arrive unless configured otherwise: 10 seconds.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tower layer that verifies the RFC 9421 signature of every request and hands the body
/// bytes on to the inner service, with the [`VerifiedCaller`](crate::VerifiedCaller) and the
/// [`SignedRequest`](crate::SignedRequest) in the request extensions.
///
/// Order: a declared `Content-Length` over the cap is refused at once (413); the head is
/// verified ([`SignaturePipeline::verify_head`]: 421, 401, 503) before any body byte is read;
/// the body is then read up to the cap (413) within the body timeout (408), hashed as it
/// arrives, compared with the signed Content-Digest (401), and the signature recorded in the
/// replay store (401 replayed, 429 over the caller's share, 503).
///
/// The body timeout runs on tokio's timer: serve from a runtime with time enabled (as
/// `#[tokio::main]`, `axum::serve` and [`serve`](crate::serve) all have).
///
/// The layer runs in the same two steps as a [`Checkpoint`](crate::Checkpoint) (which calls
/// them): the head, then the body; so both refuse the same requests with the same answers.
#[derive(Clone)]
pub struct SignatureLayer {
    pipeline: Arc<SignaturePipeline>,
    max_body_bytes: usize,
    body_timeout: Duration,
    exempt: Arc<[String]>,
    audit: Option<Arc<dyn AuditHook>>,
    headers_only: bool,
}

impl core::fmt::Debug for SignatureLayer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignatureLayer")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("body_timeout", &self.body_timeout)
            .field("exempt", &self.exempt)
            .field("headers_only", &self.headers_only)
            .finish_non_exhaustive()
    }
}

impl SignatureLayer {
    /// A layer around `pipeline`, reading bodies up to [`DEFAULT_MAX_BODY_BYTES`] within
    /// [`DEFAULT_BODY_TIMEOUT`].
    pub fn new(pipeline: SignaturePipeline) -> Self {
        Self {
            pipeline: Arc::new(pipeline),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            exempt: Arc::from(Vec::new()),
            audit: None,
            headers_only: false,
        }
    }

    /// Verifies the head alone and hands the body on unread, for an authorizer that does not
    /// see the body (Envoy without `with_request_body`, a Gateway API `ExternalAuth` that cuts
    /// bodies): the signature must cover `content-digest` (except on a `GET`, `HEAD` or
    /// `DELETE` without one), which is trusted only as "to be checked by the upstream"
    /// ([`HeadVerified::finish_headers_only`]). The upstream must run a
    /// [`DigestCheckLayer`](crate::DigestCheckLayer): without it, a signed head carries any body.
    #[must_use]
    pub fn headers_only(mut self) -> Self {
        self.headers_only = true;
        self
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

    /// How long the whole body may take to arrive, counted from the end of the head's
    /// verification; a slower body is answered 408 and the connection dropped.
    #[must_use]
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
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

    fn refuse(&self, parts: &Parts, rejection: &Rejection, has_body: bool) -> Denial {
        self.report(parts, false, None, rejection.reason());
        let challenge = self.pipeline.challenge();
        match self.pipeline.style() {
            RefusalStyle::Sep2752 => sep2752_denial(
                rejection,
                &challenge,
                &self.pipeline.accept_signature(&parts.headers, has_body),
            ),
            _ => rejection_denial(rejection, &challenge),
        }
    }

    /// A refusal that leaves (part of) the body on the connection: the server will not read it
    /// either, so the connection cannot carry another request. Say so, or a keep-alive client
    /// would send its next request on a connection about to close.
    fn refuse_unread(&self, parts: &Parts, rejection: &Rejection, has_body: bool) -> Denial {
        let denial = self.refuse(parts, rejection, has_body);
        if has_body { denial.close() } else { denial }
    }

    /// Step 1, on the head alone: a declared `Content-Length` over the cap (413), then
    /// [`SignaturePipeline::verify_head`] (421, 401, 503). Nothing is read, nothing recorded.
    pub(crate) async fn head(&self, parts: &Parts, has_body: bool) -> Result<HeadVerified, Denial> {
        if declared_length(parts).is_some_and(|n| n > self.max_body_bytes as u64) {
            tracing::info!("declared body larger than the cap");
            return Err(self.refuse_unread(parts, &Rejection::PayloadTooLarge, has_body));
        }
        self.pipeline
            .verify_head(parts, unix_now())
            .await
            .map_err(|rejection| self.refuse_unread(parts, &rejection, has_body))
    }

    /// The answer to a body that could not be read whole: over the cap (413, the rest left
    /// unread), too slow (408), broken (401).
    pub(crate) fn body_failed(
        &self,
        parts: &Parts,
        head: &HeadVerified,
        rejection: &Rejection,
        has_body: bool,
    ) -> Denial {
        if *rejection == Rejection::Timeout {
            tracing::info!(identity = %head.caller().identity, "body timed out");
            // The timeout's own answer closes the connection.
            return self.refuse(parts, rejection, has_body);
        }
        self.refuse_unread(parts, rejection, has_body)
    }

    /// Reads the body up to the cap within the body timeout, hashing it into `head`.
    pub(crate) async fn read<B>(
        &self,
        parts: &Parts,
        body: B,
        head: &mut HeadVerified,
        has_body: bool,
    ) -> Result<Bytes, Denial>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let read = read_hashed(body, head, self.max_body_bytes);
        let rejection = match tokio::time::timeout(self.body_timeout, read).await {
            Ok(Ok(bytes)) => return Ok(bytes),
            Ok(Err(rejection)) => rejection,
            Err(_) => Rejection::Timeout,
        };
        Err(self.body_failed(parts, head, &rejection, has_body))
    }

    /// Step 2, once the whole body went through [`HeadVerified::update`]: the digest and the
    /// replay store ([`HeadVerified::finish`]); reports the decision.
    pub(crate) async fn finish(
        &self,
        parts: &Parts,
        head: HeadVerified,
        has_body: bool,
    ) -> Result<(VerifiedCaller, SignedRequest), Denial> {
        let signed = head.signed_request().clone();
        match head.finish(unix_now()).await {
            Ok(caller) => {
                self.report(parts, true, Some(&caller.identity), "ok");
                Ok((caller, signed))
            }
            Err(rejection) => Err(self.refuse(parts, &rejection, has_body)),
        }
    }

    /// Step 2 in headers-only mode ([`HeadVerified::finish_headers_only`]); reports the
    /// decision.
    pub(crate) async fn finish_headers_only(
        &self,
        parts: &Parts,
        head: HeadVerified,
        has_body: bool,
    ) -> Result<VerifiedCaller, Denial> {
        match head.finish_headers_only(parts, unix_now()).await {
            Ok(caller) => {
                self.report(parts, true, Some(&caller.identity), "ok");
                Ok(caller)
            }
            Err(rejection) => Err(self.refuse_unread(parts, &rejection, has_body)),
        }
    }

    /// True if this layer is in headers-only mode.
    pub(crate) fn is_headers_only(&self) -> bool {
        self.headers_only
    }

    /// The body cap.
    pub(crate) fn body_cap(&self) -> usize {
        self.max_body_bytes
    }

    /// The body timeout.
    pub(crate) fn body_deadline(&self) -> Duration {
        self.body_timeout
    }

    /// The refusal of a body over the cap, before anything else is checked (a proxy says it
    /// cut the body): as for a declared length over the cap.
    pub(crate) fn refuse_too_large(&self, parts: &Parts, has_body: bool) -> Denial {
        tracing::info!("body larger than the cap");
        self.refuse_unread(parts, &Rejection::PayloadTooLarge, has_body)
    }

    /// The whole decision; on success the request goes on with its body in memory.
    async fn decide<B>(&self, request: Request<B>) -> Result<Request<Body>, Denial>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = request.into_parts();
        let has_body = body.size_hint().exact() != Some(0);
        let mut head = self.head(&parts, has_body).await?;
        if self.headers_only {
            let caller = self.finish_headers_only(&parts, head, has_body).await?;
            parts.extensions.insert(caller);
            return Ok(Request::from_parts(parts, Body::new(body)));
        }
        let bytes = self.read(&parts, body, &mut head, has_body).await?;
        let (caller, signed) = self.finish(&parts, head, has_body).await?;
        parts.extensions.insert(caller);
        parts.extensions.insert(signed);
        Ok(Request::from_parts(parts, Body::from(bytes)))
    }
}

/// The `Content-Length` the head declares, if it is one well-formed number.
fn declared_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reads the body up to `max` bytes, feeding each piece to the digest as it arrives.
async fn read_hashed<B>(body: B, head: &mut HeadVerified, max: usize) -> Result<Bytes, Rejection>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            tracing::info!(detail = %e.into(), "request body not read");
            Rejection::Unauthorized {
                reason: "unreadable_body",
            }
        })?;
        let Ok(chunk) = frame.into_data() else {
            // Trailers are not covered by the signature profile; they are dropped.
            continue;
        };
        total = total.saturating_add(chunk.len());
        if total > max {
            tracing::info!("request body larger than the cap");
            return Err(Rejection::PayloadTooLarge);
        }
        head.update(&chunk);
        // One chunk (the common case) is passed on without a copy.
        match (&mut first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(f), None) => {
                let mut joined = BytesMut::with_capacity(f.len() + chunk.len());
                joined.extend_from_slice(f);
                joined.extend_from_slice(&chunk);
                rest = Some(joined);
            }
            (Some(_), Some(joined)) => joined.extend_from_slice(&chunk),
        }
    }
    Ok(match (first, rest) {
        (_, Some(joined)) => joined.freeze(),
        (Some(one), None) => one,
        (None, None) => Bytes::new(),
    })
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
        let span = tracing::info_span!("vouch", layer = "signature", method = %request.method(), path = %request.uri().path());
        Box::pin(
            async move {
                if layer.exempt.iter().any(|p| p == request.uri().path()) {
                    return inner.call(request.map(Body::new)).await.map(map_body);
                }
                match layer.decide(request).await {
                    Ok(request) => inner.call(request).await.map(map_body),
                    Err(denial) => Ok(denial.into_response()),
                }
            }
            .instrument(span),
        )
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
