//! Binds each MCP session to the signer that created it, and bounds how many sessions there are
//! (see [`SessionBindingLayer`]).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use rmcp::transport::streamable_http_server::session::SessionManager as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tower_layer::Layer;
use tower_service::Service;
use vouch_tower::VerifiedCaller;

const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");

/// How many sessions may be bound at once, all identities together, by default.
pub const DEFAULT_SESSION_CAPACITY: usize = 10_000;
/// How many sessions one identity may hold at once by default.
pub const DEFAULT_SESSIONS_PER_IDENTITY: usize = 16;
/// How long a session may sit unused before it is reclaimed by default.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

/// The most idle sessions one request reclaims: bounds the work a request does for others.
const SWEEP_BATCH: usize = 16;
/// The most sessions checked against rmcp when a limit is reached.
const PROBE_BATCH: usize = 16;
/// The longest `Retry-After` a refusal suggests, in seconds: places may free up sooner than
/// the idle time (a `DELETE`, rmcp's keep-alive), so clients should look again.
const MAX_RETRY_AFTER: u64 = 60;

/// The rmcp session manager that closes the sessions a dropped binding leaves behind.
#[derive(Clone)]
struct Manager(Arc<LocalSessionManager>);

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalSessionManager")
    }
}

impl Manager {
    /// Closes `session` in rmcp. Failures are logged: the session is unbound either way.
    async fn close(&self, session: &str) {
        let id: Arc<str> = Arc::from(session);
        if let Err(e) = self.0.close_session(&id).await {
            tracing::warn!(error = %e, "closing an unbound MCP session failed");
        }
    }

    /// Whether rmcp still has `session`; true when unsure.
    async fn has(&self, session: &str) -> bool {
        let id: Arc<str> = Arc::from(session);
        self.0.has_session(&id).await.unwrap_or(true)
    }

    /// How many sessions rmcp holds, bound or not.
    async fn live(&self) -> usize {
        self.0.sessions.read().await.len()
    }
}

#[derive(Debug)]
struct Binding {
    identity: String,
    thumbprint: String,
    last_used: Instant,
    /// This binding's key in [`Table::by_use`].
    tick: u64,
    /// Closes the rmcp session when the binding is dropped.
    manager: Option<Manager>,
}

/// One identity's places: bound sessions and reservations in flight.
#[derive(Debug, Default)]
struct Slots {
    sessions: BTreeSet<String>,
    reserved: usize,
}

impl Slots {
    fn used(&self) -> usize {
        self.sessions.len().saturating_add(self.reserved)
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    capacity: usize,
    per_identity: usize,
    idle: Duration,
}

/// A binding that was dropped: its rmcp session is to be closed.
#[derive(Debug)]
struct Dropped {
    session: String,
    manager: Option<Manager>,
}

/// Which limit refused a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// The identity holds its limit of sessions: 429.
    Identity,
    /// All places are taken: 503.
    Total,
}

/// A new session refused, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    limit: Limit,
    retry_after: u64,
}

/// The bookkeeping, under one lock.
#[derive(Debug)]
struct Table {
    limits: Limits,
    bindings: BTreeMap<String, Binding>,
    /// Session ids by last use, oldest first (keys are a counter bumped on every use).
    by_use: BTreeMap<u64, String>,
    identities: BTreeMap<String, Slots>,
    /// Reservations in flight, all identities together.
    reserved: usize,
    ticks: u64,
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

/// Seconds until `last_used` has been idle for `idle`, between 1 and [`MAX_RETRY_AFTER`].
fn retry_after(idle: Duration, last_used: Instant, now: Instant) -> u64 {
    let left = idle.saturating_sub(now.saturating_duration_since(last_used));
    let secs = left
        .as_secs()
        .saturating_add(u64::from(left.subsec_nanos() > 0));
    secs.clamp(1, MAX_RETRY_AFTER)
}

impl Table {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            bindings: BTreeMap::new(),
            by_use: BTreeMap::new(),
            identities: BTreeMap::new(),
            reserved: 0,
            ticks: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        self.ticks = self.ticks.wrapping_add(1);
        self.ticks
    }

    /// Checks that `caller` owns `session`, and marks it used.
    fn touch(&mut self, session: &str, caller: &Caller<'_>, now: Instant) -> Verdict {
        let tick = self.tick();
        match self.bindings.get_mut(session) {
            // A session this layer never bound (or dropped): rmcp's own answer to an unknown
            // session, so that the client starts a new one.
            None => Verdict::Refuse(StatusCode::NOT_FOUND, "session_not_found"),
            Some(b) if b.identity == caller.identity && b.thumbprint == caller.thumbprint => {
                let key = self
                    .by_use
                    .remove(&b.tick)
                    .unwrap_or_else(|| session.to_owned());
                b.tick = tick;
                b.last_used = now;
                self.by_use.insert(tick, key);
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

    /// Drops up to `max` bindings idle for at least the idle time, oldest first.
    fn sweep(&mut self, now: Instant, max: usize) -> Vec<Dropped> {
        let mut dropped = Vec::new();
        while dropped.len() < max {
            let Some((&tick, session)) = self.by_use.first_key_value() else {
                break;
            };
            match self.bindings.get(session) {
                Some(b) if b.tick == tick => {
                    if now.saturating_duration_since(b.last_used) < self.limits.idle {
                        break;
                    }
                    let session = session.clone();
                    if let Some(d) = self.unbind(&session) {
                        dropped.push(d);
                    }
                }
                // An index entry without its binding: never made, but never loop on it.
                _ => {
                    self.by_use.pop_first();
                }
            }
        }
        if !dropped.is_empty() {
            tracing::info!(count = dropped.len(), "idle MCP sessions reclaimed");
        }
        dropped
    }

    /// Takes a place for a session `identity` may create, or says which limit refuses it.
    fn reserve(&mut self, identity: &str, now: Instant) -> Result<(), Refusal> {
        let mine = self.identities.get(identity);
        if mine.map_or(0, Slots::used) >= self.limits.per_identity {
            let retry_after = mine
                .and_then(|s| {
                    s.sessions
                        .iter()
                        .filter_map(|id| self.bindings.get(id))
                        .map(|b| b.last_used)
                        .min()
                })
                .map_or(1, |oldest| retry_after(self.limits.idle, oldest, now));
            return Err(Refusal {
                limit: Limit::Identity,
                retry_after,
            });
        }
        if self.bindings.len().saturating_add(self.reserved) >= self.limits.capacity {
            return Err(Refusal {
                limit: Limit::Total,
                retry_after: self.total_retry_after(now),
            });
        }
        self.reserved = self.reserved.saturating_add(1);
        let slots = self.identities.entry(identity.to_owned()).or_default();
        slots.reserved = slots.reserved.saturating_add(1);
        Ok(())
    }

    /// `Retry-After` when all places are taken: when the least recently used becomes idle.
    fn total_retry_after(&self, now: Instant) -> u64 {
        self.by_use
            .first_key_value()
            .and_then(|(_, id)| self.bindings.get(id))
            .map_or(1, |b| retry_after(self.limits.idle, b.last_used, now))
    }

    /// Gives back a place [`Table::reserve`] took.
    fn release(&mut self, identity: &str) {
        self.reserved = self.reserved.saturating_sub(1);
        if let Some(slots) = self.identities.get_mut(identity) {
            slots.reserved = slots.reserved.saturating_sub(1);
            if slots.used() == 0 {
                self.identities.remove(identity);
            }
        }
    }

    /// Turns a place [`Table::reserve`] took into the binding of `session`.
    fn bind(&mut self, session: &str, caller: &Caller<'_>, manager: Option<Manager>, now: Instant) {
        self.release(caller.identity);
        if self.bindings.contains_key(session) {
            // rmcp's session ids are random; a repeat is not ours to rebind.
            tracing::error!("MCP session id issued twice: keeping the first binding");
            return;
        }
        let tick = self.tick();
        self.by_use.insert(tick, session.to_owned());
        self.identities
            .entry(caller.identity.to_owned())
            .or_default()
            .sessions
            .insert(session.to_owned());
        self.bindings.insert(
            session.to_owned(),
            Binding {
                identity: caller.identity.to_owned(),
                thumbprint: caller.thumbprint.to_owned(),
                last_used: now,
                tick,
                manager,
            },
        );
    }

    /// Drops the binding of `session`, if any.
    fn unbind(&mut self, session: &str) -> Option<Dropped> {
        let b = self.bindings.remove(session)?;
        self.by_use.remove(&b.tick);
        if let Some(slots) = self.identities.get_mut(&b.identity) {
            slots.sessions.remove(session);
            if slots.used() == 0 {
                self.identities.remove(&b.identity);
            }
        }
        Some(Dropped {
            session: session.to_owned(),
            manager: b.manager,
        })
    }

    /// The sessions that count against the limit that refused `identity`, to check against
    /// rmcp: the identity's own, or the least recently used of all.
    fn probes(&self, limit: Limit, identity: &str) -> Vec<(String, Manager)> {
        let with_manager = |id: &String| {
            self.bindings
                .get(id)
                .and_then(|b| b.manager.clone())
                .map(|m| (id.clone(), m))
        };
        match limit {
            Limit::Identity => self.identities.get(identity).map_or_else(Vec::new, |s| {
                s.sessions
                    .iter()
                    .filter_map(with_manager)
                    .take(PROBE_BATCH)
                    .collect()
            }),
            Limit::Total => self
                .by_use
                .values()
                .filter_map(with_manager)
                .take(PROBE_BATCH)
                .collect(),
        }
    }
}

struct Sessions {
    table: Mutex<Table>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Sessions");
        if let Some(t) = self.lock() {
            d.field("limits", &t.limits)
                .field("bound", &t.bindings.len())
                .field("reserved", &t.reserved);
        }
        d.finish_non_exhaustive()
    }
}

impl Sessions {
    /// The table; `None` if a panic poisoned it (then every session request is refused).
    fn lock(&self) -> Option<MutexGuard<'_, Table>> {
        self.table.lock().ok()
    }
}

/// A place taken for a session being created; given back when dropped unless turned into a
/// binding.
#[derive(Debug)]
struct Reservation {
    sessions: Arc<Sessions>,
    identity: String,
    held: bool,
}

impl Reservation {
    fn bind(mut self, session: &str, thumbprint: &str, manager: Option<Manager>) {
        if let Some(mut table) = self.sessions.lock() {
            let caller = Caller {
                identity: &self.identity,
                thumbprint,
            };
            table.bind(session, &caller, manager, Instant::now());
            self.held = false;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held
            && let Some(mut table) = self.sessions.lock()
        {
            table.release(&self.identity);
        }
    }
}

/// Closes the rmcp sessions of dropped bindings, one after the other.
async fn close_all(dropped: Vec<Dropped>) {
    for d in dropped {
        if let Some(m) = d.manager {
            m.close(&d.session).await;
        }
    }
}

/// A tower layer that binds each `Mcp-Session-Id` to the verified caller (identity and key) whose
/// request created it, refuses the session to anyone else (403), and bounds the sessions each
/// identity and all identities together may hold. Put it inside the
/// [`SignatureLayer`](vouch_tower::SignatureLayer): it needs the [`VerifiedCaller`], and refuses
/// (401) a request that has none. A session it does not know (never bound, or reclaimed) is
/// answered 404, as rmcp answers an unknown session, so the client starts a new one. Clones
/// share the bookkeeping.
///
/// # Limits
///
/// Every rmcp session holds memory (tens of KiB: channels, caches, the handler) until it is
/// closed, so sessions are what an agent spends of the server's memory. Two limits keep one
/// agent from spending everyone's:
///
/// - **Per identity**, [`DEFAULT_SESSIONS_PER_IDENTITY`] by default
///   ([`max_per_identity`](Self::max_per_identity)): a verified identity may hold at most this
///   many sessions, whichever keys it signs with. A new session over it is refused with
///   `429 Too Many Requests`; the identity's sessions, and everyone else's, are left alone.
/// - **In total**, [`DEFAULT_SESSION_CAPACITY`] by default ([`new`](Self::new)): a new session
///   over it is refused with `503 Service Unavailable`. Live sessions are never evicted to make
///   room.
///
/// Both refusals carry a `Retry-After` (when the oldest session that counts against the limit
/// becomes idle, at most 60 s) and the JSON body the other layers answer with:
/// `{"detail": {"error": "too_many_sessions", "detail": "session_limit_per_identity"}}`, and
/// `{"detail": {"error": "unavailable", "detail": "session_capacity_full"}}`.
///
/// A session unused for the idle time, [`DEFAULT_SESSION_IDLE`] by default, is reclaimed: its
/// binding is dropped and its rmcp session closed. Requests reclaim idle sessions a few at a
/// time from the oldest end of an index ordered by last use, so no request scans the whole
/// table. At a limit, the sessions that count against it are first checked against rmcp: those
/// rmcp has closed on its own (its session keep-alive, 5 minutes by default; a crashed worker)
/// free their place. So does a request rmcp answers 404, and a successful `DELETE`.
///
/// # Why refuse rather than close the identity's oldest session
///
/// Over its limit, an identity's new session is refused; its least recently used session is
/// not closed to make room. A refused `initialize` never reaches rmcp, so a flood of them costs
/// the server next to nothing, where closing the oldest would build and tear down a session for
/// each. And the refusal is explicit, where closing would silently end a session the agent may
/// still be using from another process: the client sees 429 and can end the sessions it no
/// longer needs (`DELETE`, which rmcp's client sends when it closes). A client that crashed
/// without closing gets its places back when rmcp closes the abandoned sessions or when they
/// are reclaimed as idle, whichever comes first.
///
/// # Closing the rmcp sessions
///
/// Give the layer the [`LocalSessionManager`] the rmcp service uses
/// ([`session_manager`](Self::session_manager)); `Protected::serve` does. With it, a session
/// reclaimed as idle is closed in rmcp too, by the request that reclaimed it (a lock and a
/// message to the session's worker, awaited alongside the request's own work; a new session
/// waits for it, since it makes the room); sessions are checked against rmcp at a limit; and
/// the sessions rmcp holds, bound or not, count against the total. Without it, reclaimed
/// sessions stay in rmcp until rmcp's keep-alive closes them.
///
/// # Concurrent `initialize`s
///
/// rmcp names a new session in its response, so the binding can only be made afterwards. A
/// request without a session id therefore takes a place (for its identity and in the total)
/// before it reaches rmcp; the place becomes the binding if rmcp answers with a session, and is
/// given back otherwise, also when the request is dropped. Parallel `initialize`s from one
/// identity never get it more than its limit. It also means that requests without a session id
/// (stateless requests) hold a place while in flight: an identity's sessions and its
/// session-less requests in flight together stay within its limit.
#[derive(Clone)]
pub struct SessionBindingLayer {
    sessions: Arc<Sessions>,
    manager: Option<Manager>,
}

impl std::fmt::Debug for SessionBindingLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBindingLayer")
            .field("sessions", &self.sessions)
            .field("closes_rmcp_sessions", &self.manager.is_some())
            .finish()
    }
}

impl Default for SessionBindingLayer {
    fn default() -> Self {
        Self::new(DEFAULT_SESSION_CAPACITY, DEFAULT_SESSION_IDLE)
    }
}

impl SessionBindingLayer {
    /// Holds at most `capacity` sessions in total ([`DEFAULT_SESSIONS_PER_IDENTITY`] per
    /// identity); `idle` is how long one may sit unused before it is reclaimed. A `capacity`
    /// of 0 refuses every session; an `idle` of zero reclaims every session on the next request.
    pub fn new(capacity: usize, idle: Duration) -> Self {
        Self {
            sessions: Arc::new(Sessions {
                table: Mutex::new(Table::new(Limits {
                    capacity,
                    per_identity: DEFAULT_SESSIONS_PER_IDENTITY,
                    idle,
                })),
            }),
            manager: None,
        }
    }

    /// At most `max` sessions per identity (default [`DEFAULT_SESSIONS_PER_IDENTITY`]); a new
    /// session over it is refused with 429. Applies to every clone.
    #[must_use]
    pub fn max_per_identity(self, max: usize) -> Self {
        if let Some(mut table) = self.sessions.lock() {
            table.limits.per_identity = max;
        }
        self
    }

    /// The session manager of the rmcp service behind this layer (the same `Arc`): the
    /// sessions whose binding is dropped are closed in it, and the sessions it holds count
    /// against the total. Without it, a dropped binding's rmcp session stays until rmcp's own
    /// keep-alive closes it.
    #[must_use]
    pub fn session_manager(mut self, manager: Arc<LocalSessionManager>) -> Self {
        self.manager = Some(Manager(manager));
        self
    }

    /// How many sessions are bound now.
    pub fn len(&self) -> usize {
        self.sessions.lock().map_or(0, |t| t.bindings.len())
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
            manager: self.manager.clone(),
        }
    }
}

/// The service [`SessionBindingLayer`] makes.
#[derive(Clone)]
pub struct SessionBinding<S> {
    inner: S,
    sessions: Arc<Sessions>,
    manager: Option<Manager>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for SessionBinding<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBinding")
            .field("inner", &self.inner)
            .field("sessions", &self.sessions)
            .field("closes_rmcp_sessions", &self.manager.is_some())
            .finish()
    }
}

fn refusal(status: StatusCode, reason: &'static str) -> Response<Body> {
    let kind = match status {
        StatusCode::UNAUTHORIZED => "invalid_signature",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::TOO_MANY_REQUESTS => "too_many_sessions",
        _ => "unavailable",
    };
    let body = serde_json::json!({"detail": {"error": kind, "detail": reason}});
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl Refusal {
    fn response(self) -> Response<Body> {
        let mut response = match self.limit {
            Limit::Identity => refusal(StatusCode::TOO_MANY_REQUESTS, "session_limit_per_identity"),
            Limit::Total => refusal(StatusCode::SERVICE_UNAVAILABLE, "session_capacity_full"),
        };
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            HeaderValue::from(self.retry_after.max(1)),
        );
        response
    }
}

/// Takes a place for a new session of `identity`. At a limit, first forgets the sessions rmcp
/// has closed on its own, then refuses.
async fn admit(
    sessions: &Arc<Sessions>,
    identity: &str,
    manager: Option<&Manager>,
) -> Result<Reservation, Response<Body>> {
    let mut probed = false;
    loop {
        let (refusal, probes) = {
            let Some(mut table) = sessions.lock() else {
                return Err(refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                ));
            };
            match table.reserve(identity, Instant::now()) {
                Ok(()) => break,
                Err(r) if probed => (r, Vec::new()),
                Err(r) => (r, table.probes(r.limit, identity)),
            }
        };
        probed = true;
        let mut gone = Vec::new();
        for (session, m) in probes {
            if !m.has(&session).await {
                gone.push(session);
            }
        }
        if gone.is_empty() {
            tracing::info!(%identity, limit = ?refusal.limit, "new MCP session refused");
            return Err(refusal.response());
        }
        let Some(mut table) = sessions.lock() else {
            return Err(refusal.response());
        };
        tracing::info!(
            count = gone.len(),
            "sessions rmcp closed on its own: unbound"
        );
        for session in gone {
            // rmcp no longer has them: nothing left to close.
            table.unbind(&session);
        }
    }
    let reservation = Reservation {
        sessions: sessions.clone(),
        identity: identity.to_owned(),
        held: true,
    };
    if let Some(m) = manager {
        // Sessions rmcp holds without a binding (a request dropped while rmcp was creating its
        // session) count against the total too.
        let live = m.live().await;
        let Some(table) = sessions.lock() else {
            return Err(refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
            ));
        };
        if live >= table.limits.capacity {
            let r = Refusal {
                limit: Limit::Total,
                retry_after: table.total_retry_after(Instant::now()),
            };
            drop(table);
            tracing::warn!(live, "rmcp holds its session capacity: new session refused");
            return Err(r.response());
        }
    }
    Ok(reservation)
}

impl<S, B> Service<Request<B>> for SessionBinding<S>
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
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let sessions = self.sessions.clone();
        let manager = self.manager.clone();
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
            let now = Instant::now();
            let (verdict, reclaimed) = {
                let Some(mut table) = sessions.lock() else {
                    return Ok(refusal(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "store_unavailable",
                    ));
                };
                let reclaimed = table.sweep(now, SWEEP_BATCH);
                let verdict = session.as_deref().map_or(Verdict::New, |s| {
                    table.touch(s, &Caller::from(&caller), now)
                });
                (verdict, reclaimed)
            };
            let deleting = request.method() == Method::DELETE;
            let closing = close_all(reclaimed);
            match verdict {
                Verdict::Refuse(status, reason) => {
                    closing.await;
                    Ok(refusal(status, reason))
                }
                Verdict::Owner => {
                    // The reclaimed sessions close while this request is served.
                    let (response, ()) =
                        futures_util::future::join(inner.call(request), closing).await;
                    let response = response?;
                    // Ended by the client (DELETE), or no longer known to rmcp (404): the rmcp
                    // session is gone, the binding goes too.
                    let ended = deleting && response.status().is_success();
                    if (ended || response.status() == StatusCode::NOT_FOUND)
                        && let Some(s) = session.as_deref()
                        && let Some(mut table) = sessions.lock()
                    {
                        table.unbind(s);
                    }
                    Ok(response)
                }
                Verdict::New => {
                    // The reclaimed sessions are closed first: they make the room.
                    closing.await;
                    let reservation =
                        match admit(&sessions, &caller.identity, manager.as_ref()).await {
                            Ok(r) => r,
                            Err(response) => return Ok(response),
                        };
                    let response = inner.call(request).await?;
                    if let Some(created) = response
                        .headers()
                        .get(&SESSION_HEADER)
                        .and_then(|v| v.to_str().ok())
                    {
                        reservation.bind(created, &caller.thumbprint, manager);
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

    fn table(capacity: usize, per_identity: usize, idle: Duration) -> Table {
        Table::new(Limits {
            capacity,
            per_identity,
            idle,
        })
    }

    /// Reserves and binds `session` for `caller` at `now`.
    fn open(
        t: &mut Table,
        session: &str,
        caller: &Caller<'_>,
        now: Instant,
    ) -> Result<(), Refusal> {
        t.reserve(caller.identity, now)?;
        t.bind(session, caller, None, now);
        Ok(())
    }

    /// Every index agrees with the bindings.
    fn assert_consistent(t: &Table) {
        assert_eq!(t.by_use.len(), t.bindings.len());
        for (tick, id) in &t.by_use {
            assert_eq!(t.bindings[id].tick, *tick);
        }
        let bound: usize = t.identities.values().map(|s| s.sessions.len()).sum();
        let reserved: usize = t.identities.values().map(|s| s.reserved).sum();
        assert_eq!(bound, t.bindings.len());
        assert_eq!(reserved, t.reserved);
        assert!(
            t.identities.values().all(|s| s.used() > 0),
            "no empty entries"
        );
        for (id, b) in &t.bindings {
            assert!(t.identities[&b.identity].sessions.contains(id));
        }
    }

    #[test]
    fn only_the_creator_with_the_same_key_may_use_a_session() {
        let now = Instant::now();
        let mut t = table(10, 10, DEFAULT_SESSION_IDLE);
        open(&mut t, "s1", &ALICE, now).unwrap();
        assert!(status(t.touch("s1", &ALICE, now)).is_none());
        assert_eq!(
            status(t.touch("s1", &BOB, now)),
            Some((StatusCode::FORBIDDEN, "session_bound_to_another_caller"))
        );
        assert_eq!(
            status(t.touch("s1", &ALICE_OTHER_KEY, now)),
            Some((StatusCode::FORBIDDEN, "session_bound_to_another_caller")),
            "same identity, another key"
        );
        assert_eq!(
            status(t.touch("unknown", &ALICE, now)),
            Some((StatusCode::NOT_FOUND, "session_not_found"))
        );
        // A second binding of the same id never rebinds it, and gives its place back.
        open(&mut t, "s1", &BOB, now).unwrap();
        assert!(status(t.touch("s1", &ALICE, now)).is_none());
        assert!(!t.identities.contains_key(BOB.identity));
        assert!(t.unbind("s1").is_some());
        assert_eq!(
            status(t.touch("s1", &ALICE, now)),
            Some((StatusCode::NOT_FOUND, "session_not_found"))
        );
        assert!(t.unbind("s1").is_none());
        assert_consistent(&t);
        assert!(t.identities.is_empty());
    }

    #[test]
    fn an_identity_at_its_limit_is_refused_429_and_no_one_else_loses_a_session() {
        let now = Instant::now();
        let mut t = table(100, 2, Duration::from_secs(90));
        open(&mut t, "b1", &BOB, now).unwrap();
        open(&mut t, "a1", &ALICE, now).unwrap();
        open(&mut t, "a2", &ALICE, now + Duration::from_secs(10)).unwrap();
        let later = now + Duration::from_secs(20);
        assert_eq!(
            t.reserve(ALICE.identity, later),
            Err(Refusal {
                limit: Limit::Identity,
                // a1 becomes idle 70 s from now; Retry-After is capped.
                retry_after: MAX_RETRY_AFTER,
            })
        );
        // Another key of the same identity counts as the same identity.
        assert_eq!(
            t.reserve(ALICE_OTHER_KEY.identity, later)
                .map_err(|r| r.limit),
            Err(Limit::Identity)
        );
        assert!(status(t.touch("b1", &BOB, later)).is_none());
        open(&mut t, "b2", &BOB, later).unwrap();
        assert_eq!(t.bindings.len(), 4);
        // Ending one of Alice's sessions gives her a place back.
        t.unbind("a1");
        open(&mut t, "a3", &ALICE, later).unwrap();
        assert_consistent(&t);

        let soon = now + Duration::from_secs(85);
        assert_eq!(
            t.reserve(ALICE.identity, soon).map_err(|r| r.retry_after),
            Err(15),
            "a2 becomes idle in 15 s"
        );
    }

    #[test]
    fn reservations_count_until_bound_or_released() {
        let now = Instant::now();
        let mut t = table(3, 2, DEFAULT_SESSION_IDLE);
        t.reserve(ALICE.identity, now).unwrap();
        t.reserve(ALICE.identity, now).unwrap();
        assert_eq!(
            t.reserve(ALICE.identity, now),
            Err(Refusal {
                limit: Limit::Identity,
                retry_after: 1,
            }),
            "two in flight, none bound yet"
        );
        t.reserve(BOB.identity, now).unwrap();
        assert_eq!(
            t.reserve(BOB.identity, now).map_err(|r| r.limit),
            Err(Limit::Total)
        );
        assert_consistent(&t);
        t.bind("a1", &ALICE, None, now);
        t.release(ALICE.identity);
        t.release(BOB.identity);
        assert_eq!(t.reserved, 0);
        assert_eq!(t.bindings.len(), 1);
        assert_consistent(&t);
        assert_eq!(
            t.identities.len(),
            1,
            "Bob's entry is gone with his last place"
        );
    }

    #[test]
    fn when_full_new_sessions_are_refused_503_and_live_ones_are_kept() {
        let now = Instant::now();
        let mut t = table(2, 5, Duration::from_secs(30));
        open(&mut t, "a1", &ALICE, now).unwrap();
        open(&mut t, "b1", &BOB, now + Duration::from_secs(5)).unwrap();
        assert_eq!(
            t.reserve(BOB.identity, now + Duration::from_secs(10)),
            Err(Refusal {
                limit: Limit::Total,
                retry_after: 20,
            }),
            "a1, the least recently used, becomes idle in 20 s"
        );
        assert!(
            t.sweep(now + Duration::from_secs(10), SWEEP_BATCH)
                .is_empty()
        );
        assert_eq!(t.bindings.len(), 2);

        let mut t = table(0, 5, DEFAULT_SESSION_IDLE);
        assert_eq!(
            t.reserve(ALICE.identity, now).map_err(|r| r.limit),
            Err(Limit::Total)
        );
        let mut t = table(5, 0, DEFAULT_SESSION_IDLE);
        assert_eq!(
            t.reserve(ALICE.identity, now).map_err(|r| r.limit),
            Err(Limit::Identity)
        );
        assert_consistent(&t);
    }

    #[test]
    fn idle_sessions_are_reclaimed_oldest_first_a_batch_at_a_time() {
        let now = Instant::now();
        let idle = Duration::from_secs(60);
        let mut t = table(100, 100, idle);
        for i in 0..40_u64 {
            let caller = if i % 2 == 0 { &ALICE } else { &BOB };
            open(
                &mut t,
                &format!("s{i:02}"),
                caller,
                now + Duration::from_secs(i),
            )
            .unwrap();
        }
        // s00 is used again: it is now the most recent.
        assert!(status(t.touch("s00", &ALICE, now + Duration::from_secs(50))).is_none());
        // At 60 + 30 s, s01..s30 are idle (30 of them), s00 and s31.. are not.
        let at = now + idle + Duration::from_secs(30);
        let first: Vec<String> = t
            .sweep(at, SWEEP_BATCH)
            .into_iter()
            .map(|d| d.session)
            .collect();
        let expected: Vec<String> = (1..=16).map(|i| format!("s{i:02}")).collect();
        assert_eq!(first, expected, "the oldest first, at most a batch");
        let second = t.sweep(at, SWEEP_BATCH);
        assert_eq!(second.len(), 14);
        assert!(t.sweep(at, SWEEP_BATCH).is_empty(), "the rest are not idle");
        assert!(t.bindings.contains_key("s00"));
        assert_eq!(t.bindings.len(), 10);
        assert_consistent(&t);

        // An idle time of zero reclaims everything on the next request.
        let mut t = table(10, 10, Duration::ZERO);
        open(&mut t, "s1", &ALICE, now).unwrap();
        assert_eq!(t.sweep(now, SWEEP_BATCH).len(), 1);
        assert_consistent(&t);
    }

    #[test]
    fn probes_are_the_sessions_counting_against_the_limit() {
        let now = Instant::now();
        let m = Manager(Arc::new(LocalSessionManager::default()));
        let mut t = table(100, 100, DEFAULT_SESSION_IDLE);
        for (i, caller) in [&ALICE, &BOB, &ALICE].into_iter().enumerate() {
            t.reserve(caller.identity, now).unwrap();
            t.bind(&format!("s{i}"), caller, Some(m.clone()), now);
        }
        t.reserve(ALICE.identity, now).unwrap();
        t.bind("unmanaged", &ALICE, None, now);
        let ids = |v: Vec<(String, Manager)>| v.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
        assert_eq!(ids(t.probes(Limit::Identity, ALICE.identity)), ["s0", "s2"]);
        assert_eq!(
            ids(t.probes(Limit::Total, ALICE.identity)),
            ["s0", "s1", "s2"]
        );
        assert!(t.probes(Limit::Identity, "nobody").is_empty());
    }

    #[test]
    fn retry_after_is_between_one_second_and_the_cap() {
        let now = Instant::now();
        let idle = Duration::from_secs(30);
        assert_eq!(retry_after(idle, now, now), 30);
        assert_eq!(
            retry_after(idle, now, now + Duration::from_millis(29_500)),
            1
        );
        assert_eq!(retry_after(idle, now, now + Duration::from_secs(31)), 1);
        assert_eq!(
            retry_after(Duration::from_secs(3600), now, now),
            MAX_RETRY_AFTER
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

    #[tokio::test]
    async fn a_dropped_request_gives_its_place_back() {
        let layer = SessionBindingLayer::new(10, DEFAULT_SESSION_IDLE).max_per_identity(1);
        let reservation = admit(&layer.sessions, ALICE.identity, None).await.unwrap();
        let refused = admit(&layer.sessions, ALICE.identity, None)
            .await
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[http::header::RETRY_AFTER], "1");
        drop(reservation);
        let reservation = admit(&layer.sessions, ALICE.identity, None).await.unwrap();
        reservation.bind("s1", ALICE.thumbprint, None);
        assert_eq!(layer.len(), 1);
        assert_consistent(&layer.sessions.lock().unwrap());
    }
}
