//! The service of a layer that decides on the whole body (the capability layer): read the body
//! up to a cap, let the layer decide, and hand the same bytes on to the inner service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum_core::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use tower_service::Service;
use tracing::Instrument as _;

use crate::pipeline::Rejection;
use crate::response::Denial;
use crate::signature::{BoxError, map_body, read_body};

/// A boxed decision.
pub(crate) type Decide<'a> = Pin<Box<dyn Future<Output = Result<(), Denial>> + Send + 'a>>;

mod sealed {
    #[expect(
        unnameable_types,
        reason = "sealed: implemented by this crate's layers only"
    )]
    pub trait Sealed {}
}

/// What a body-reading vouch layer decides about a request; implemented by
/// [`CapabilityLayer`](crate::CapabilityLayer), [`StrictMessageLayer`](crate::StrictMessageLayer)
/// and [`DigestCheckLayer`](crate::DigestCheckLayer) only.
pub trait Check: sealed::Sealed + Clone + Send + Sync + 'static {
    /// The tracing span name.
    #[doc(hidden)]
    const SPAN: &'static str;

    /// The most body bytes read.
    #[doc(hidden)]
    fn max_body_bytes(&self) -> usize;

    /// Requests let through without a decision (exempt paths).
    #[doc(hidden)]
    fn exempt(&self, _parts: &Parts) -> bool {
        false
    }

    /// The answer when the body cannot be read (too large, broken).
    #[doc(hidden)]
    fn unreadable(&self, parts: &Parts, rejection: &Rejection) -> Response<Body>;

    /// Decides; on success it may add to `parts.extensions`.
    #[doc(hidden)]
    fn decide<'a>(&'a self, parts: &'a mut Parts, body: &'a Bytes) -> Decide<'a>;
}

impl sealed::Sealed for crate::CapabilityLayer {}
impl sealed::Sealed for crate::StrictMessageLayer {}
impl sealed::Sealed for crate::DigestCheckLayer {}

/// The service a vouch layer makes: `inner`, behind the layer's check.
#[derive(Clone, Debug)]
pub struct Checked<S, C> {
    inner: S,
    check: C,
}

impl<S, C> Checked<S, C> {
    pub(crate) fn new(inner: S, check: C) -> Self {
        Self { inner, check }
    }

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

impl<S, C, B, ResBody> Service<Request<B>> for Checked<S, C>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    C: Check,
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
        let check = self.check.clone();
        let span = tracing::info_span!("vouch", layer = C::SPAN, method = %request.method(), path = %request.uri().path());
        Box::pin(
            async move {
                let (mut parts, body) = request.into_parts();
                if check.exempt(&parts) {
                    return inner
                        .call(Request::from_parts(parts, Body::new(body)))
                        .await
                        .map(map_body);
                }
                let bytes = match read_body(body, check.max_body_bytes()).await {
                    Ok(bytes) => bytes,
                    Err(rejection) => return Ok(check.unreadable(&parts, &rejection)),
                };
                if let Err(denial) = check.decide(&mut parts, &bytes).await {
                    return Ok(denial.into_response());
                }
                inner
                    .call(Request::from_parts(parts, Body::from(bytes)))
                    .await
                    .map(map_body)
            }
            .instrument(span),
        )
    }
}
