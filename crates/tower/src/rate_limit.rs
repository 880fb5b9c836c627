//! Per-identity rate limiting, keyed by the verified caller (governor's GCRA token bucket).

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower_layer::Layer;
use tower_service::Service;

use crate::audit::{AuditHook, Decision};
use crate::pipeline::{Rejection, VerifiedCaller};
use crate::response::{Denial, rejection_response};

/// Requests per second each identity may make through a [`RateLimitLayer::default`].
pub const DEFAULT_RATE_PER_SECOND: u32 = 50;
/// The burst each identity may make through a [`RateLimitLayer::default`].
pub const DEFAULT_RATE_BURST: u32 = 100;

/// Identities tracked before idle ones are pruned.
const PRUNE_ABOVE: usize = 100_000;

/// Limits each verified identity to `per_second` requests, with bursts up to `burst`; answers
/// 429 with `Retry-After`. Put it inside the signature layer: a request without a
/// [`VerifiedCaller`] is refused (401) rather than let through unlimited.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
    audit: Option<Arc<dyn AuditHook>>,
}

impl RateLimitLayer {
    /// `per_second` requests per identity, bursts of `burst`.
    pub fn per_second(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        Self {
            limiter: Arc::new(RateLimiter::keyed(
                Quota::per_second(per_second).allow_burst(burst),
            )),
            audit: None,
        }
    }

    /// Reports every refusal to `hook`, as a [`Decision`] of layer `"rate_limit"` with reason
    /// `rate_limited` (requests let through are not reported: the signature layer has already
    /// reported them).
    #[must_use]
    pub fn audit(mut self, hook: impl AuditHook + 'static) -> Self {
        self.audit = Some(Arc::new(hook));
        self
    }
}

impl Default for RateLimitLayer {
    /// [`DEFAULT_RATE_PER_SECOND`] requests per identity, bursts of [`DEFAULT_RATE_BURST`]: what
    /// vouch-rmcp's `Protected` and the gateway apply unless told otherwise.
    fn default() -> Self {
        Self::per_second(
            NonZeroU32::new(DEFAULT_RATE_PER_SECOND).unwrap_or(NonZeroU32::MIN),
            NonZeroU32::new(DEFAULT_RATE_BURST).unwrap_or(NonZeroU32::MIN),
        )
    }
}

impl core::fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RateLimitLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            audit: self.audit.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] makes.
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
    audit: Option<Arc<dyn AuditHook>>,
}

impl<S> core::fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RateLimit").finish_non_exhaustive()
    }
}

fn too_many(retry_after_secs: u64) -> Denial {
    let body =
        serde_json::json!({"detail": {"error": "rate_limited", "detail": "too many requests"}});
    let mut denial = Denial::json(StatusCode::TOO_MANY_REQUESTS, &body);
    denial.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_secs.max(1)),
    );
    denial
}

/// Takes one request of `identity`'s quota, or refuses (429) and reports the refusal.
fn admit(
    limiter: &DefaultKeyedRateLimiter<String>,
    audit: Option<&dyn AuditHook>,
    identity: &str,
    method: &str,
) -> Result<(), Denial> {
    if limiter.len() > PRUNE_ABOVE {
        limiter.retain_recent();
    }
    if let Err(not_until) = limiter.check_key(&identity.to_owned()) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        tracing::info!(%identity, wait_ms = wait.as_millis() as u64, "rate limited");
        if let Some(hook) = audit {
            hook.record(&Decision {
                layer: "rate_limit",
                accepted: false,
                identity: Some(identity),
                reason: "rate_limited",
                method,
                tool: None,
            });
        }
        return Err(too_many(wait.as_secs_f64().ceil() as u64));
    }
    Ok(())
}

impl RateLimitLayer {
    /// Takes one request of `identity`'s quota, or the 429 answer (reported to the audit hook).
    pub(crate) fn admit(&self, identity: &str, method: &str) -> Result<(), Denial> {
        admit(&self.limiter, self.audit.as_deref(), identity, method)
    }
}

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let Some(identity) = request
            .extensions()
            .get::<VerifiedCaller>()
            .map(|c| c.identity.clone())
        else {
            tracing::warn!("rate limit layer saw a request without a verified caller: refusing");
            let rejection = Rejection::Unauthorized {
                reason: "missing_signature",
            };
            return Box::pin(std::future::ready(Ok(rejection_response(
                &rejection,
                "Signature",
            ))));
        };
        if let Err(denial) = admit(
            &self.limiter,
            self.audit.as_deref(),
            &identity,
            request.method().as_str(),
        ) {
            return Box::pin(std::future::ready(Ok(denial.into_response())));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { inner.call(request).await })
    }
}
