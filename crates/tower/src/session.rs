//! Binds each MCP session to the signer that created it, and bounds how many sessions there are
//! (see [`SessionBindingLayer`]). MCP over HTTP, not any one server: vouch-rmcp puts it in front
//! of rmcp, vouch-gateway in front of its upstream; each tells it how to close a session through
//! a [`SessionStore`].

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum_core::body::Body;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::audit::{AuditHook, Decision};
use crate::pipeline::VerifiedCaller;
use crate::response::Denial;

/// The MCP session header (Streamable HTTP transport).
const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");

/// How many sessions may be bound at once, all identities together, by default.
pub const DEFAULT_SESSION_CAPACITY: usize = 10_000;
/// How many sessions one identity may hold at once by default.
pub const DEFAULT_SESSIONS_PER_IDENTITY: usize = 16;
/// How long a session may sit unused before it is reclaimed by default.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

/// The most idle sessions one request reclaims: bounds the work a request does for others.
const SWEEP_BATCH: usize = 16;
/// The most sessions checked against the server when a limit is reached.
const PROBE_BATCH: usize = 16;
/// The longest `Retry-After` a refusal suggests, in seconds: places may free up sooner than
/// the idle time (a `DELETE`, the server's own expiry), so clients should look again.
const MAX_RETRY_AFTER: u64 = 60;

/// The future a [`SessionStore`] method returns.
pub type SessionFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The sessions of the MCP server behind a [`SessionBindingLayer`]: how the layer closes the
/// session of a binding it drops, and what it asks the server when a limit is reached.
///
/// The layer awaits these futures on the request path (the request that reclaimed a session
/// waits for its close): keep them quick. An implementation that makes a network request should
/// bound it, or hand it to a task and return.
///
/// vouch-rmcp implements it for rmcp's session manager, vouch-gateway for its upstream (an HTTP
/// `DELETE`).
pub trait SessionStore: Send + Sync {
    /// Ends `session` in the server. Failures are the implementation's to log: the binding is
    /// gone either way.
    fn close<'a>(&'a self, session: &'a str) -> SessionFuture<'a, ()>;

    /// Whether the server still has `session`; `true` when it cannot tell. A session the server
    /// no longer has frees its place at a limit, without waiting to be reclaimed as idle.
    fn contains<'a>(&'a self, session: &'a str) -> SessionFuture<'a, bool>;

    /// How many sessions the server holds now, bound or not; `None` when it cannot tell. When
    /// known, they count against the layer's total, so sessions the server keeps without a
    /// binding (a request dropped while its session was being created) cannot exceed it.
    fn live(&self) -> SessionFuture<'_, Option<usize>>;
}

/// The store that closes the sessions a dropped binding leaves behind.
#[derive(Clone)]
struct Store(Arc<dyn SessionStore>);

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionStore")
    }
}

impl Store {
    async fn close(&self, session: &str) {
        self.0.close(session).await;
    }

    async fn has(&self, session: &str) -> bool {
        self.0.contains(session).await
    }

    async fn live(&self) -> Option<usize> {
        self.0.live().await
    }
}

#[derive(Debug)]
struct Binding {
    identity: String,
    thumbprint: String,
    last_used: Instant,
    /// This binding's key in [`Table::by_use`].
    tick: u64,
    /// Closes the session in the server when the binding is dropped.
    store: Option<Store>,
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

/// A binding that was dropped: its session is to be closed in the server.
#[derive(Debug)]
struct Dropped {
    session: String,
    store: Option<Store>,
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
            // A session this layer never bound (or dropped): the transport's answer to an
            // unknown session, so that the client starts a new one.
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
    fn bind(&mut self, session: &str, caller: &Caller<'_>, store: Option<Store>, now: Instant) {
        self.release(caller.identity);
        if self.bindings.contains_key(session) {
            // Servers issue random session ids; a repeat is not ours to rebind.
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
                store,
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
            store: b.store,
        })
    }

    /// The sessions that count against the limit that refused `identity`, to check against
    /// the server: the identity's own, or the least recently used of all.
    fn probes(&self, limit: Limit, identity: &str) -> Vec<(String, Store)> {
        let with_store = |id: &String| {
            self.bindings
                .get(id)
                .and_then(|b| b.store.clone())
                .map(|m| (id.clone(), m))
        };
        match limit {
            Limit::Identity => self.identities.get(identity).map_or_else(Vec::new, |s| {
                s.sessions
                    .iter()
                    .filter_map(with_store)
                    .take(PROBE_BATCH)
                    .collect()
            }),
            Limit::Total => self
                .by_use
                .values()
                .filter_map(with_store)
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
    fn bind(mut self, session: &str, thumbprint: &str, store: Option<Store>) {
        if let Some(mut table) = self.sessions.lock() {
            let caller = Caller {
                identity: &self.identity,
                thumbprint,
            };
            table.bind(session, &caller, store, Instant::now());
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

/// Closes the sessions of dropped bindings in the server, one after the other.
async fn close_all(dropped: Vec<Dropped>) {
    for d in dropped {
        if let Some(m) = d.store {
            m.close(&d.session).await;
        }
    }
}

/// A tower layer that binds each `Mcp-Session-Id` to the verified caller (identity and key) whose
/// request created it, refuses the session to anyone else (403), and bounds the sessions each
/// identity and all identities together may hold. Put it inside the
/// [`SignatureLayer`](crate::SignatureLayer): it needs the [`VerifiedCaller`], and refuses
/// (401) a request that has none. A session it does not know (never bound, or reclaimed) is
/// answered 404, as MCP servers answer an unknown session, so the client starts a new one.
/// Clones share the bookkeeping.
///
/// # Limits
///
/// Every MCP session holds server memory (for rmcp, tens of KiB: channels, caches, the handler)
/// until it is closed, so sessions are what an agent spends of the server's memory. Two limits
/// keep one agent from spending everyone's:
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
/// binding is dropped and the session closed in the server. Requests reclaim idle sessions a
/// few at a time from the oldest end of an index ordered by last use, so no request scans the
/// whole table. At a limit, the sessions that count against it are first checked against the
/// server: those it has closed on its own (rmcp's session keep-alive, 5 minutes by default; a
/// crashed worker) free their place. So does a request the server answers 404, and a
/// successful `DELETE`.
///
/// # Why refuse rather than close the identity's oldest session
///
/// Over its limit, an identity's new session is refused; its least recently used session is
/// not closed to make room. A refused `initialize` never reaches the server, so a flood of them
/// costs the server next to nothing, where closing the oldest would build and tear down a
/// session for each. And the refusal is explicit, where closing would silently end a session
/// the agent may still be using from another process: the client sees 429 and can end the
/// sessions it no longer needs (`DELETE`, which MCP clients send when they close). A client
/// that crashed without closing gets its places back when the server closes the abandoned
/// sessions or when they are reclaimed as idle, whichever comes first.
///
/// # Closing the server's sessions
///
/// Give the layer the server's sessions as a [`SessionStore`]
/// ([`session_store`](Self::session_store)); vouch-rmcp's `Protected::serve` and vouch-gateway
/// do. With it, a session reclaimed as idle is closed in the server too, by the request that
/// reclaimed it (awaited alongside the request's own work; a new session waits for it, since it
/// makes the room); sessions are checked against the server at a limit; and the sessions the
/// server holds, bound or not, count against the total when it can tell how many. Without it,
/// reclaimed sessions stay in the server until it expires them itself.
///
/// # Concurrent `initialize`s
///
/// The server names a new session in its response, so the binding can only be made afterwards.
/// A request without a session id therefore takes a place (for its identity and in the total)
/// before it reaches the server; the place becomes the binding if the server answers with a
/// session, and is given back otherwise, also when the request is dropped. Parallel
/// `initialize`s from one identity never get it more than its limit. It also means that
/// requests without a session id (stateless requests) hold a place while in flight: an
/// identity's sessions and its session-less requests in flight together stay within its limit.
///
/// # Audit
///
/// With an [`audit`](Self::audit) hook, every refusal is reported as a [`Decision`] of layer
/// `"session"` (reasons `session_not_found`, `session_bound_to_another_caller`,
/// `session_limit_per_identity`, `session_capacity_full`, `missing_signature`,
/// `store_unavailable`). Requests let through are not reported: the signature layer already
/// reports each of them.
#[derive(Clone)]
pub struct SessionBindingLayer {
    sessions: Arc<Sessions>,
    store: Option<Store>,
    audit: Option<Arc<dyn AuditHook>>,
}

impl std::fmt::Debug for SessionBindingLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBindingLayer")
            .field("sessions", &self.sessions)
            .field("closes_sessions", &self.store.is_some())
            .field("audit", &self.audit.is_some())
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
            store: None,
            audit: None,
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

    /// The sessions of the server behind this layer: the sessions whose binding is dropped are
    /// closed in it, and the sessions it holds count against the total. Without it, a dropped
    /// binding's session stays in the server until the server expires it. Sessions bound from
    /// then on are closed through `store`; those bound before keep the store they were bound
    /// with.
    #[must_use]
    pub fn session_store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(Store(store));
        self
    }

    /// Reports every refusal to `hook` (see [Audit](Self#audit)).
    #[must_use]
    pub fn audit(mut self, hook: impl AuditHook + 'static) -> Self {
        self.audit = Some(Arc::new(hook));
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
            store: self.store.clone(),
            audit: self.audit.clone(),
        }
    }
}

/// The service [`SessionBindingLayer`] makes.
#[derive(Clone)]
pub struct SessionBinding<S> {
    inner: S,
    sessions: Arc<Sessions>,
    store: Option<Store>,
    audit: Option<Arc<dyn AuditHook>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for SessionBinding<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBinding")
            .field("inner", &self.inner)
            .field("sessions", &self.sessions)
            .field("closes_sessions", &self.store.is_some())
            .field("audit", &self.audit.is_some())
            .finish()
    }
}

/// Why the layer answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// A status and a reason code.
    Plain(StatusCode, &'static str),
    /// A new session over a limit.
    Limit(Refusal),
}

impl Refused {
    const NOT_FOUND: Self = Self::Plain(StatusCode::NOT_FOUND, "session_not_found");
    const UNAVAILABLE: Self = Self::Plain(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");

    fn status(self) -> StatusCode {
        match self {
            Self::Plain(status, _) => status,
            Self::Limit(Refusal {
                limit: Limit::Identity,
                ..
            }) => StatusCode::TOO_MANY_REQUESTS,
            Self::Limit(Refusal {
                limit: Limit::Total,
                ..
            }) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Self::Plain(_, reason) => reason,
            Self::Limit(Refusal {
                limit: Limit::Identity,
                ..
            }) => "session_limit_per_identity",
            Self::Limit(Refusal {
                limit: Limit::Total,
                ..
            }) => "session_capacity_full",
        }
    }

    /// `{"detail": {"error": kind, "detail": reason}}`, with `Retry-After` over a limit.
    fn denial(self) -> Denial {
        let status = self.status();
        let kind = match status {
            StatusCode::UNAUTHORIZED => "invalid_signature",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::TOO_MANY_REQUESTS => "too_many_sessions",
            _ => "unavailable",
        };
        let body = serde_json::json!({"detail": {"error": kind, "detail": self.reason()}});
        let mut denial = Denial::json(status, &body);
        if let Self::Limit(r) = self {
            denial.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(r.retry_after.max(1)),
            );
        }
        denial
    }
}

/// Takes a place for a new session of `identity`. At a limit, first forgets the sessions the
/// server has closed on its own, then refuses.
async fn admit(
    sessions: &Arc<Sessions>,
    identity: &str,
    store: Option<&Store>,
) -> Result<Reservation, Refused> {
    let mut probed = false;
    loop {
        let (refusal, probes) = {
            let Some(mut table) = sessions.lock() else {
                return Err(Refused::UNAVAILABLE);
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
            return Err(Refused::Limit(refusal));
        }
        let Some(mut table) = sessions.lock() else {
            return Err(Refused::Limit(refusal));
        };
        tracing::info!(
            count = gone.len(),
            "sessions the server closed on its own: unbound"
        );
        for session in gone {
            // The server no longer has them: nothing left to close.
            table.unbind(&session);
        }
    }
    let reservation = Reservation {
        sessions: sessions.clone(),
        identity: identity.to_owned(),
        held: true,
    };
    if let Some(m) = store
        && let Some(live) = m.live().await
    {
        // Sessions the server holds without a binding (a request dropped while the server was
        // creating its session) count against the total too.
        let Some(table) = sessions.lock() else {
            return Err(Refused::UNAVAILABLE);
        };
        if live >= table.limits.capacity {
            let r = Refusal {
                limit: Limit::Total,
                retry_after: table.total_retry_after(Instant::now()),
            };
            drop(table);
            tracing::warn!(
                live,
                "the server holds its session capacity: new session refused"
            );
            return Err(Refused::Limit(r));
        }
    }
    Ok(reservation)
}

/// A request the session binding let through (see [`SessionBindingLayer::enter`]): tell it the
/// server's answer with [`answered`](Self::answered). Dropped unanswered, it gives back the
/// place a new session took.
#[must_use = "the server's answer binds or unbinds the session: call answered"]
pub struct SessionTicket {
    sessions: Arc<Sessions>,
    pass: Pass,
}

impl std::fmt::Debug for SessionTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pass = match &self.pass {
            Pass::Owner { .. } => "owner",
            Pass::New { .. } => "new",
        };
        f.debug_struct("SessionTicket")
            .field("pass", &pass)
            .finish_non_exhaustive()
    }
}

/// Why a request was let through.
enum Pass {
    /// The caller's own session.
    Owner { session: String, deleting: bool },
    /// No session yet: a place is reserved for the one the server may create.
    New {
        reservation: Reservation,
        thumbprint: String,
        store: Option<Store>,
    },
}

impl SessionTicket {
    /// The server answered the request with `status` and these fields: a new session it names
    /// (`Mcp-Session-Id`) is bound to the caller; a session it ended (a successful `DELETE`) or
    /// no longer knows (404) is unbound.
    pub fn answered(self, status: StatusCode, headers: &HeaderMap) {
        match self.pass {
            Pass::Owner { session, deleting } => {
                // Ended by the client (DELETE), or no longer known to the server (404): the
                // session is gone, the binding goes too.
                let ended = deleting && status.is_success();
                if (ended || status == StatusCode::NOT_FOUND)
                    && let Some(mut table) = self.sessions.lock()
                {
                    table.unbind(&session);
                }
            }
            Pass::New {
                reservation,
                thumbprint,
                store,
            } => {
                if let Some(created) = headers.get(&SESSION_HEADER).and_then(|v| v.to_str().ok()) {
                    reservation.bind(created, &thumbprint, store);
                }
            }
        }
    }
}

impl SessionBindingLayer {
    /// The binding's decision on a request of `caller` (`None`: refused 401) with `method` and
    /// these fields, before the server sees it, for hosts that are not a tower stack (a
    /// [`Checkpoint`](crate::Checkpoint)): the caller's own session, or a place reserved for a
    /// new one, or the refusal (403 another caller's session, 404 unknown, 429 / 503 over a
    /// limit). Idle sessions it reclaims are closed in the server first.
    ///
    /// # Errors
    ///
    /// The [`Denial`] to answer with (reported to the audit hook).
    pub async fn enter(
        &self,
        caller: Option<&VerifiedCaller>,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<SessionTicket, Denial> {
        let (ticket, reclaimed) = enter(
            &self.sessions,
            self.store.as_ref(),
            self.audit.as_deref(),
            caller,
            method,
            headers,
        )
        .await?;
        close_all(reclaimed).await;
        Ok(ticket)
    }
}

/// The binding's decision; for the caller's own session, the reclaimed sessions are handed
/// back to be closed while the request is served.
async fn enter(
    sessions: &Arc<Sessions>,
    store: Option<&Store>,
    audit: Option<&dyn AuditHook>,
    caller: Option<&VerifiedCaller>,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(SessionTicket, Vec<Dropped>), Denial> {
    let refuse = |identity: Option<&str>, refused: Refused| {
        if let Some(hook) = audit {
            hook.record(&Decision {
                layer: "session",
                accepted: false,
                identity,
                reason: refused.reason(),
                method: method.as_str(),
                tool: None,
            });
        }
        refused.denial()
    };
    let Some(caller) = caller else {
        tracing::error!("session binding without a verified caller: refused");
        return Err(refuse(
            None,
            Refused::Plain(StatusCode::UNAUTHORIZED, "missing_signature"),
        ));
    };
    let identity = Some(caller.identity.as_str());
    let session = match headers.get(&SESSION_HEADER) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(s) => Some(s.to_owned()),
            Err(_) => return Err(refuse(identity, Refused::NOT_FOUND)),
        },
    };
    let now = Instant::now();
    let (verdict, reclaimed) = {
        let Some(mut table) = sessions.lock() else {
            return Err(refuse(identity, Refused::UNAVAILABLE));
        };
        let reclaimed = table.sweep(now, SWEEP_BATCH);
        let verdict = session
            .as_deref()
            .map_or(Verdict::New, |s| table.touch(s, &Caller::from(caller), now));
        (verdict, reclaimed)
    };
    match (verdict, session) {
        (Verdict::Refuse(status, reason), _) => {
            close_all(reclaimed).await;
            Err(refuse(identity, Refused::Plain(status, reason)))
        }
        (Verdict::Owner, Some(session)) => {
            let pass = Pass::Owner {
                session,
                deleting: method == Method::DELETE,
            };
            let ticket = SessionTicket {
                sessions: sessions.clone(),
                pass,
            };
            Ok((ticket, reclaimed))
        }
        (Verdict::New | Verdict::Owner, _) => {
            // The reclaimed sessions are closed first: they make the room.
            close_all(reclaimed).await;
            let reservation = admit(sessions, &caller.identity, store)
                .await
                .map_err(|refused| refuse(identity, refused))?;
            let pass = Pass::New {
                reservation,
                thumbprint: caller.thumbprint.clone(),
                store: store.cloned(),
            };
            let ticket = SessionTicket {
                sessions: sessions.clone(),
                pass,
            };
            Ok((ticket, Vec::new()))
        }
    }
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
        let store = self.store.clone();
        let audit = self.audit.clone();
        Box::pin(async move {
            let caller = request.extensions().get::<VerifiedCaller>().cloned();
            let entered = enter(
                &sessions,
                store.as_ref(),
                audit.as_deref(),
                caller.as_ref(),
                request.method(),
                request.headers(),
            )
            .await;
            let (ticket, reclaimed) = match entered {
                Ok(entered) => entered,
                Err(denial) => return Ok(denial.into_response()),
            };
            // The reclaimed sessions close while this request is served.
            let (response, ()) = tokio::join!(inner.call(request), close_all(reclaimed));
            let response = response?;
            ticket.answered(response.status(), response.headers());
            Ok(response)
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
        let m = Store(Arc::new(Recorder::default()));
        let mut t = table(100, 100, DEFAULT_SESSION_IDLE);
        for (i, caller) in [&ALICE, &BOB, &ALICE].into_iter().enumerate() {
            t.reserve(caller.identity, now).unwrap();
            t.bind(&format!("s{i}"), caller, Some(m.clone()), now);
        }
        t.reserve(ALICE.identity, now).unwrap();
        t.bind("unmanaged", &ALICE, None, now);
        let ids = |v: Vec<(String, Store)>| v.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
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
        let refused = refused.denial();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[http::header::RETRY_AFTER], "1");
        drop(reservation);
        let reservation = admit(&layer.sessions, ALICE.identity, None).await.unwrap();
        reservation.bind("s1", ALICE.thumbprint, None);
        assert_eq!(layer.len(), 1);
        assert_consistent(&layer.sessions.lock().unwrap());
    }

    /// A server's sessions as a test controls them: records closes, forgets the sessions in
    /// `gone`, reports `live`.
    #[derive(Default)]
    struct Recorder {
        closed: Mutex<Vec<String>>,
        gone: Mutex<BTreeSet<String>>,
        live: Mutex<Option<usize>>,
    }

    impl SessionStore for Recorder {
        fn close<'a>(&'a self, session: &'a str) -> SessionFuture<'a, ()> {
            Box::pin(async move { self.closed.lock().unwrap().push(session.to_owned()) })
        }

        fn contains<'a>(&'a self, session: &'a str) -> SessionFuture<'a, bool> {
            Box::pin(async move { !self.gone.lock().unwrap().contains(session) })
        }

        fn live(&self) -> SessionFuture<'_, Option<usize>> {
            Box::pin(async move { *self.live.lock().unwrap() })
        }
    }

    /// A server that answers a request without a session with a new one, `s1`, `s2`, ….
    #[derive(Clone, Default)]
    struct Issuer(Arc<std::sync::atomic::AtomicUsize>);

    impl Service<Request<Body>> for Issuer {
        type Response = Response<Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Response<Body>, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<Body>) -> Self::Future {
            let mut response = Response::new(Body::empty());
            if !request.headers().contains_key(SESSION_HEADER) {
                let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                response
                    .headers_mut()
                    .insert(SESSION_HEADER, format!("s{n}").parse().unwrap());
            }
            std::future::ready(Ok(response))
        }
    }

    /// A request from `caller` (as the signature layer leaves it), in `session` if given.
    fn from(caller: &Caller<'_>, session: Option<&str>) -> Request<Body> {
        let mut request = Request::post("/mcp").body(Body::empty()).unwrap();
        request.extensions_mut().insert(VerifiedCaller {
            identity: caller.identity.to_owned(),
            keyid: format!("https://keys.example/{}", caller.thumbprint),
            thumbprint: caller.thumbprint.to_owned(),
            algorithm: vouch_httpsig::Algorithm::Ed25519,
            created: None,
            tag: None,
        });
        if let Some(s) = session {
            request
                .headers_mut()
                .insert(SESSION_HEADER, s.parse().unwrap());
        }
        request
    }

    /// Sends `request` through `service`: the status and the new session, if any.
    async fn call(
        service: &mut SessionBinding<Issuer>,
        request: Request<Body>,
    ) -> (StatusCode, Option<String>) {
        let response = service.call(request).await.unwrap();
        let session = response
            .headers()
            .get(SESSION_HEADER)
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status(), session)
    }

    #[tokio::test]
    async fn a_reclaimed_session_is_closed_through_the_store() {
        let store = Arc::new(Recorder::default());
        let layer = SessionBindingLayer::new(10, Duration::ZERO).session_store(store.clone());
        let mut service = layer.layer(Issuer::default());
        let (status, first) = call(&mut service, from(&ALICE, None)).await;
        assert_eq!((status, first.as_deref()), (StatusCode::OK, Some("s1")));
        // Idle at once: the next request, anyone's, reclaims it and closes it in the server.
        let (status, second) = call(&mut service, from(&BOB, None)).await;
        assert_eq!((status, second.as_deref()), (StatusCode::OK, Some("s2")));
        assert_eq!(*store.closed.lock().unwrap(), ["s1"]);
        assert_eq!(layer.len(), 1);
        let (status, _) = call(&mut service, from(&ALICE, Some("s1"))).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "a reclaimed session is unknown"
        );
    }

    #[tokio::test]
    async fn sessions_the_store_no_longer_has_free_their_place() {
        let store = Arc::new(Recorder::default());
        let layer = SessionBindingLayer::default()
            .max_per_identity(1)
            .session_store(store.clone());
        let mut service = layer.layer(Issuer::default());
        assert_eq!(
            call(&mut service, from(&ALICE, None)).await.0,
            StatusCode::OK
        );
        assert_eq!(
            call(&mut service, from(&ALICE, None)).await.0,
            StatusCode::TOO_MANY_REQUESTS,
            "the server still has s1"
        );
        store.gone.lock().unwrap().insert("s1".to_owned());
        let (status, session) = call(&mut service, from(&ALICE, None)).await;
        assert_eq!((status, session.as_deref()), (StatusCode::OK, Some("s2")));
        assert_eq!(layer.len(), 1);
        assert!(
            store.closed.lock().unwrap().is_empty(),
            "the server had closed s1 itself"
        );
    }

    #[tokio::test]
    async fn the_servers_live_count_counts_against_the_total_when_known() {
        let store = Arc::new(Recorder::default());
        let layer = SessionBindingLayer::new(2, DEFAULT_SESSION_IDLE).session_store(store.clone());
        let mut service = layer.layer(Issuer::default());
        *store.live.lock().unwrap() = Some(2);
        assert_eq!(
            call(&mut service, from(&ALICE, None)).await.0,
            StatusCode::SERVICE_UNAVAILABLE,
            "the server holds two unbound sessions"
        );
        assert!(layer.is_empty());
        *store.live.lock().unwrap() = None;
        assert_eq!(
            call(&mut service, from(&ALICE, None)).await.0,
            StatusCode::OK,
            "unknown: only the bindings count"
        );
    }

    #[tokio::test]
    async fn refusals_are_reported_as_session_decisions() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let layer =
            SessionBindingLayer::default()
                .max_per_identity(1)
                .audit(move |d: &Decision<'_>| {
                    record.lock().unwrap().push((
                        d.layer,
                        d.accepted,
                        d.reason.to_owned(),
                        d.identity.map(str::to_owned),
                    ));
                });
        let mut service = layer.layer(Issuer::default());
        let (_, session) = call(&mut service, from(&ALICE, None)).await;
        let session = session.unwrap();
        assert_eq!(
            call(&mut service, from(&ALICE, Some(&session))).await.0,
            StatusCode::OK
        );
        assert!(
            seen.lock().unwrap().is_empty(),
            "requests let through are not reported"
        );
        assert_eq!(
            call(&mut service, from(&BOB, Some(&session))).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(&mut service, from(&ALICE, None)).await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
        let bob = Some(BOB.identity.to_owned());
        let alice = Some(ALICE.identity.to_owned());
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (
                    "session",
                    false,
                    "session_bound_to_another_caller".to_owned(),
                    bob
                ),
                (
                    "session",
                    false,
                    "session_limit_per_identity".to_owned(),
                    alice
                ),
            ]
        );
    }
}
