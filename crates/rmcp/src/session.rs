//! Binds each MCP session to the signer that created it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{HeaderName, Method, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;
use vouch_tower::VerifiedCaller;

const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");

/// How many sessions are remembered by default.
pub const DEFAULT_SESSION_CAPACITY: usize = 10_000;
/// How long a session may sit unused before its binding may be dropped to make room.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

#[derive(Debug)]
struct Binding {
    identity: String,
    thumbprint: String,
    last_used: Instant,
}

#[derive(Debug)]
struct Sessions {
    capacity: usize,
    idle: Duration,
    map: Mutex<BTreeMap<String, Binding>>,
}

/// Who signed a request: the identity and the key that proved it.
struct Caller<'a> {
    identity: &'a str,
    thumbprint: &'a str,
}

impl<'a> From<&'a VerifiedCaller> for Caller<'a> {
    fn from(c: &'a VerifiedCaller) -> Self {
        Self {
            identity: &c.identity,
            thumbprint: &c.thumbprint,
        }
    }
}

/// What the binding decided about a request.
enum Verdict {
    /// No session yet: the response may create one, bound to this caller.
    New,
    /// The caller's own session.
    Owner,
    /// Refused, with the status and the reason.
    Refuse(StatusCode, &'static str),
}

impl Sessions {
    fn check(&self, session: &str, caller: &Caller<'_>) -> Verdict {
        let Ok(mut map) = self.map.lock() else {
            return Verdict::Refuse(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
        };
        match map.get_mut(session) {
            // A session this layer never bound (or dropped): rmcp's own answer to an unknown
            // session, so that the client starts a new one.
            None => Verdict::Refuse(StatusCode::NOT_FOUND, "session_not_found"),
            Some(b) if b.identity == caller.identity && b.thumbprint == caller.thumbprint => {
                b.last_used = Instant::now();
                Verdict::Owner
            }
            Some(b) => {
                tracing::warn!(
                    caller = %caller.identity,
                    owner = %b.identity,
                    "MCP session used by another identity: refused"
                );
                Verdict::Refuse(StatusCode::FORBIDDEN, "session_bound_to_another_caller")
            }
        }
    }

    fn bind(&self, session: &str, caller: &Caller<'_>) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.contains_key(session) {
            // rmcp's session ids are random; a repeat is not ours to rebind.
            tracing::error!("MCP session id issued twice: keeping the first binding");
            return;
        }
        if map.len() >= self.capacity {
            let now = Instant::now();
            map.retain(|_, b| now.duration_since(b.last_used) < self.idle);
        }
        if map.len() >= self.capacity {
            // Still full of live sessions: the least recently used one loses its binding, and
            // with it the session (its next request gets 404 and starts over).
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, b)| b.last_used)
                .map(|(k, _)| k.clone())
            {
                tracing::warn!("MCP session bindings full: dropping the least recently used");
                map.remove(&oldest);
            }
        }
        if self.capacity > 0 {
            map.insert(
                session.to_owned(),
                Binding {
                    identity: caller.identity.to_owned(),
                    thumbprint: caller.thumbprint.to_owned(),
                    last_used: Instant::now(),
                },
            );
        }
    }

    fn unbind(&self, session: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(session);
        }
    }

    fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }
}

/// A tower layer that binds each `Mcp-Session-Id` to the verified caller (identity and key) whose
/// request created it, and refuses the session to anyone else (403). Put it inside the
/// [`SignatureLayer`](vouch_tower::SignatureLayer): it needs the [`VerifiedCaller`], and refuses
/// (401) a request that has none.
///
/// Memory is bounded: at most `capacity` sessions are remembered; when full, sessions idle
/// longer than `idle` are forgotten first, then the least recently used. A forgotten session is
/// answered 404, as rmcp answers an unknown session, so the client starts a new one.
#[derive(Debug, Clone)]
pub struct SessionBindingLayer {
    sessions: Arc<Sessions>,
}

impl Default for SessionBindingLayer {
    fn default() -> Self {
        Self::new(DEFAULT_SESSION_CAPACITY, DEFAULT_SESSION_IDLE)
    }
}

impl SessionBindingLayer {
    /// Remembers at most `capacity` sessions; `idle` is how long one may sit unused before it
    /// may be forgotten to make room.
    pub fn new(capacity: usize, idle: Duration) -> Self {
        Self {
            sessions: Arc::new(Sessions {
                capacity,
                idle,
                map: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// How many sessions are bound now.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True if no session is bound.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<S> Layer<S> for SessionBindingLayer {
    type Service = SessionBinding<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionBinding {
            inner,
            sessions: self.sessions.clone(),
        }
    }
}

/// The service [`SessionBindingLayer`] makes.
#[derive(Debug, Clone)]
pub struct SessionBinding<S> {
    inner: S,
    sessions: Arc<Sessions>,
}

fn refusal(status: StatusCode, reason: &'static str) -> Response<Body> {
    let kind = match status {
        StatusCode::UNAUTHORIZED => "invalid_signature",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        _ => "unavailable",
    };
    let body = serde_json::json!({"detail": {"error": kind, "detail": reason}});
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

impl<S, B> Service<Request<B>> for SessionBinding<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
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
        let sessions = self.sessions.clone();
        Box::pin(async move {
            let Some(caller) = request.extensions().get::<VerifiedCaller>().cloned() else {
                tracing::error!("session binding without a verified caller: refused");
                return Ok(refusal(StatusCode::UNAUTHORIZED, "missing_signature"));
            };
            let session = match request.headers().get(&SESSION_HEADER) {
                None => None,
                Some(v) => match v.to_str() {
                    Ok(s) => Some(s.to_owned()),
                    Err(_) => return Ok(refusal(StatusCode::NOT_FOUND, "session_not_found")),
                },
            };
            let verdict = session
                .as_deref()
                .map_or(Verdict::New, |s| sessions.check(s, &Caller::from(&caller)));
            let deleting = request.method() == Method::DELETE;
            match verdict {
                Verdict::Refuse(status, reason) => Ok(refusal(status, reason)),
                Verdict::Owner => {
                    let response = inner.call(request).await?;
                    if deleting
                        && response.status().is_success()
                        && let Some(s) = session.as_deref()
                    {
                        sessions.unbind(s);
                    }
                    Ok(response)
                }
                Verdict::New => {
                    let response = inner.call(request).await?;
                    if let Some(created) = response
                        .headers()
                        .get(&SESSION_HEADER)
                        .and_then(|v| v.to_str().ok())
                    {
                        sessions.bind(created, &Caller::from(&caller));
                    }
                    Ok(response)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use super::*;

    const ALICE: Caller<'static> = Caller {
        identity: "alice@a.example",
        thumbprint: "key-a",
    };
    const ALICE_OTHER_KEY: Caller<'static> = Caller {
        identity: "alice@a.example",
        thumbprint: "key-b",
    };
    const BOB: Caller<'static> = Caller {
        identity: "bob@b.example",
        thumbprint: "key-c",
    };

    fn status(v: Verdict) -> Option<(StatusCode, &'static str)> {
        match v {
            Verdict::Refuse(s, r) => Some((s, r)),
            Verdict::Owner | Verdict::New => None,
        }
    }

    fn sessions(capacity: usize, idle: Duration) -> Sessions {
        Sessions {
            capacity,
            idle,
            map: Mutex::new(BTreeMap::new()),
        }
    }

    #[test]
    fn only_the_creator_with_the_same_key_may_use_a_session() {
        let s = sessions(10, DEFAULT_SESSION_IDLE);
        s.bind("s1", &ALICE);
        assert!(status(s.check("s1", &ALICE)).is_none());
        assert_eq!(
            status(s.check("s1", &BOB)),
            Some((StatusCode::FORBIDDEN, "session_bound_to_another_caller"))
        );
        assert_eq!(
            status(s.check("s1", &ALICE_OTHER_KEY)),
            Some((StatusCode::FORBIDDEN, "session_bound_to_another_caller")),
            "same identity, another key"
        );
        assert_eq!(
            status(s.check("unknown", &ALICE)),
            Some((StatusCode::NOT_FOUND, "session_not_found"))
        );
        // A second binding of the same id never rebinds it.
        s.bind("s1", &BOB);
        assert!(status(s.check("s1", &ALICE)).is_none());
        s.unbind("s1");
        assert_eq!(
            status(s.check("s1", &ALICE)),
            Some((StatusCode::NOT_FOUND, "session_not_found"))
        );
    }

    #[test]
    fn memory_is_bounded_idle_first_then_least_recently_used() {
        let s = sessions(2, Duration::ZERO);
        s.bind("s1", &ALICE);
        s.bind("s2", &ALICE);
        s.bind("s3", &ALICE);
        // Idle for zero seconds counts as idle: both old ones are dropped to make room.
        assert_eq!(s.len(), 1);
        assert!(status(s.check("s3", &ALICE)).is_none());

        let s = sessions(2, Duration::from_secs(3600));
        s.bind("s1", &ALICE);
        s.bind("s2", &ALICE);
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            status(s.check("s1", &ALICE)).is_none(),
            "s1 is now the most recent"
        );
        s.bind("s3", &ALICE);
        assert_eq!(s.len(), 2);
        assert!(status(s.check("s1", &ALICE)).is_none());
        assert_eq!(
            status(s.check("s2", &ALICE)),
            Some((StatusCode::NOT_FOUND, "session_not_found")),
            "the least recently used binding was dropped"
        );

        let s = sessions(0, DEFAULT_SESSION_IDLE);
        s.bind("s1", &ALICE);
        assert_eq!(
            s.len(),
            0,
            "capacity 0 remembers nothing, so every session is refused"
        );
    }

    #[derive(Clone)]
    struct Ok200;

    impl Service<Request<Body>> for Ok200 {
        type Response = Response<Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Response<Body>, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<Body>) -> Self::Future {
            std::future::ready(Ok(Response::new(Body::empty())))
        }
    }

    #[tokio::test]
    async fn a_request_without_a_verified_caller_is_refused() {
        let mut service = SessionBindingLayer::default().layer(Ok200);
        let response = service.call(Request::new(Body::empty())).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}
