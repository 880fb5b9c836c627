//! Prometheus metrics: decisions, latency, upstream errors, live sessions, and gauges the caller
//! adds.
//!
//! Label values are bounded: the layer, the outcome, and a reason code from vouch-tower's fixed
//! set. Nothing from the network (identities, tool names, methods, paths) becomes a label: every
//! distinct label set is a time series held in memory for the life of the process, so a label a
//! client chooses would let any client grow the gateway's memory without limit.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tower_layer::Layer;
use tower_service::Service;
use vouch_tower::{AuditHook, Decision, SessionBindingLayer};

use crate::response::ErrorCode;

/// The path the metrics router serves.
pub const METRICS_PATH: &str = "/metrics";

/// The content type of the exposition (OpenMetrics text, as `prometheus-client` encodes it).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    layer: &'static str,
    outcome: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    kind: &'static str,
}

/// A gauge read when the metrics are scraped.
struct FnGauge(Box<dyn Fn() -> i64 + Send + Sync>);

impl fmt::Debug for FnGauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnGauge")
    }
}

impl EncodeMetric for FnGauge {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.encode_gauge(&(self.0)())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// The gateway's metrics, in a `prometheus-client` registry. Create one, add gauges with
/// [`gauge_fn`](Self::gauge_fn) (the replay store's size, say), hand a clone to
/// [`Gateway::metrics`](crate::Gateway::metrics), and serve [`router`](Self::router) on a
/// separate listener. Clones share the registry.
///
/// | Metric | Type | Labels |
/// |---|---|---|
/// | `vouch_gateway_decisions_total` | counter | `layer`, `outcome`, `reason` |
/// | `vouch_gateway_request_duration_seconds` | histogram | none |
/// | `vouch_gateway_upstream_errors_total` | counter | `kind` |
/// | `vouch_gateway_sessions` | gauge | none |
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<RwLock<Registry>>,
    decisions: Family<DecisionLabels, Counter>,
    duration: Histogram,
    upstream_errors: Family<UpstreamLabels, Counter>,
    /// The session bindings of the gateways these metrics are given to.
    sessions: Arc<RwLock<Vec<SessionBindingLayer>>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A reason code as a label value: vouch-tower's codes are short `snake_case` words from a
/// fixed set; anything else is counted as `other`, so the set stays bounded whatever happens.
fn reason_label(reason: &str) -> String {
    let code = !reason.is_empty()
        && reason.len() <= 40
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if code { reason } else { "other" }.to_owned()
}

/// The upstream error kinds the gateway answers with (`upstream_*` codes of its own 502 and
/// 504 answers).
fn upstream_kind(code: &str) -> Option<&'static str> {
    match code {
        "upstream_timeout" => Some("timeout"),
        "upstream_unavailable" => Some("unavailable"),
        "upstream_invalid" => Some("invalid"),
        _ => None,
    }
}

impl Metrics {
    /// A registry with the gateway's metrics, all at zero.
    pub fn new() -> Self {
        let decisions = Family::<DecisionLabels, Counter>::default();
        // 1 ms to about 33 s.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        let mut registry = Registry::default();
        registry.register(
            "vouch_gateway_decisions",
            "Decisions of the signature and capability layers, refusals of the rate limit and session binding",
            decisions.clone(),
        );
        registry.register(
            "vouch_gateway_request_duration_seconds",
            "Time from a request to the gateway's path until the response head",
            duration.clone(),
        );
        registry.register(
            "vouch_gateway_upstream_errors",
            "Requests the gateway answered 502 or 504 because of the upstream",
            upstream_errors.clone(),
        );
        let sessions = Arc::new(RwLock::new(Vec::<SessionBindingLayer>::new()));
        let bound = sessions.clone();
        registry.register(
            "vouch_gateway_sessions",
            "MCP sessions bound to the caller that created them",
            FnGauge(Box::new(move || {
                let n = bound.read().map_or(0, |layers| {
                    layers
                        .iter()
                        .map(SessionBindingLayer::len)
                        .fold(0_usize, usize::saturating_add)
                });
                i64::try_from(n).unwrap_or(i64::MAX)
            })),
        );
        Self {
            registry: Arc::new(RwLock::new(registry)),
            decisions,
            duration,
            upstream_errors,
            sessions,
        }
    }

    /// Counts the sessions `layer` holds in `vouch_gateway_sessions` (with those of any other
    /// gateway these metrics were given to).
    pub(crate) fn count_sessions(&self, layer: SessionBindingLayer) {
        if let Ok(mut layers) = self.sessions.write() {
            layers.push(layer);
        }
    }

    /// Records how long one request (or one authorization check) took to decide.
    #[cfg_attr(not(feature = "authz"), allow(dead_code))]
    pub(crate) fn observe_duration(&self, elapsed: std::time::Duration) {
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Adds a gauge named `name` (without labels) whose value `read` returns at each scrape,
    /// e.g. the entries of a `vouch_keys::ShardedReplayStore`. `read` runs on the scrape path:
    /// keep it cheap.
    #[must_use]
    pub fn gauge_fn(
        self,
        name: &str,
        help: &str,
        read: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> Self {
        if let Ok(mut registry) = self.registry.write() {
            registry.register(name, help, FnGauge(Box::new(read)));
        }
        self
    }

    /// The exposition in the OpenMetrics text format ([`METRICS_CONTENT_TYPE`]).
    ///
    /// # Errors
    ///
    /// [`fmt::Error`] if the registry could not be encoded (a gauge panicked while it was
    /// being registered).
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let registry = self.registry.read().map_err(|_| fmt::Error)?;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        Ok(text)
    }

    /// A router answering `GET` [`METRICS_PATH`] with [`encode`](Self::encode). Serve it on a
    /// listener of its own (not the gateway's), with [`vouch_tower::serve`].
    pub fn router(&self) -> Router {
        let metrics = self.clone();
        Router::new().route(
            METRICS_PATH,
            get(move || {
                let metrics = metrics.clone();
                async move {
                    match metrics.encode() {
                        Ok(text) => (StatusCode::OK, [(CONTENT_TYPE, METRICS_CONTENT_TYPE)], text),
                        Err(_) => (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
                            "metrics unavailable\n".to_owned(),
                        ),
                    }
                }
            }),
        )
    }
}

impl AuditHook for Metrics {
    fn record(&self, decision: &Decision<'_>) {
        let layer = match decision.layer {
            "signature" => "signature",
            "session" => "session",
            "rate_limit" => "rate_limit",
            "capability" => "capability",
            _ => "other",
        };
        let outcome = if decision.accepted {
            "accepted"
        } else {
            "refused"
        };
        self.decisions
            .get_or_create(&DecisionLabels {
                layer,
                outcome,
                reason: reason_label(decision.reason),
            })
            .inc();
    }
}

/// Two audit hooks, one after the other.
struct Both(Metrics, Arc<dyn AuditHook>);

/// The one audit hook the layers report to: `metrics`, `audit`, both, or none.
pub(crate) fn audit_hook(
    metrics: Option<Metrics>,
    audit: Option<Arc<dyn AuditHook>>,
) -> Option<Arc<dyn AuditHook>> {
    match (metrics, audit) {
        (Some(m), Some(a)) => Some(Arc::new(Both(m, a))),
        (Some(m), None) => Some(Arc::new(m)),
        (None, a) => a,
    }
}

impl AuditHook for Both {
    fn record(&self, decision: &Decision<'_>) {
        self.0.record(decision);
        self.1.record(decision);
    }
}

/// Times requests to `path` and counts the gateway's own upstream errors.
#[derive(Clone, Debug)]
pub(crate) struct TimingLayer {
    pub(crate) metrics: Metrics,
    pub(crate) path: Arc<str>,
}

impl<S> Layer<S> for TimingLayer {
    type Service = Timing<S>;

    fn layer(&self, inner: S) -> Timing<S> {
        Timing {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`TimingLayer`] makes.
#[derive(Clone, Debug)]
pub(crate) struct Timing<S> {
    inner: S,
    layer: TimingLayer,
}

impl<S> Service<Request<Body>> for Timing<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let timed = request.uri().path() == &*self.layer.path;
        let metrics = self.layer.metrics.clone();
        let start = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            if timed {
                metrics.duration.observe(start.elapsed().as_secs_f64());
                let status = response.status();
                if status == StatusCode::BAD_GATEWAY || status == StatusCode::GATEWAY_TIMEOUT {
                    let kind = response
                        .extensions()
                        .get::<ErrorCode>()
                        .and_then(|code| upstream_kind(code.0));
                    if let Some(kind) = kind {
                        metrics
                            .upstream_errors
                            .get_or_create(&UpstreamLabels { kind })
                            .inc();
                    }
                }
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_outside_the_code_shape_are_other() {
        assert_eq!(reason_label("bad_signature"), "bad_signature");
        assert_eq!(reason_label("https://evil.example/x"), "other");
        assert_eq!(reason_label(""), "other");
        assert_eq!(reason_label(&"a".repeat(41)), "other");
    }
}
