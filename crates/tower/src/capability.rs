//! The capability check: which tool a JSON-RPC message calls, and whether the token grants it.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex};

use http::HeaderName;
use http::request::Parts;
use serde_json::Value;
use vouch_token::{Access, DEFAULT_MAX_TOKEN_BYTES, Facts, Token, VerifiedToken, Verifier};

use crate::jsonrpc;
use crate::mcp_headers::{self, HeaderMismatch};
use crate::pipeline::VerifiedCaller;

/// The header the MCPVault seed carries tokens in.
pub const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-mcpvault-token");

/// Why the capability check refused (the seed's error table).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilityRejection {
    /// 401 `missing_token`: no token in the header nor in `params._meta.token`.
    MissingToken,
    /// 401 `invalid_token`: expired, bad signature, malformed, revoked, unknown root, wrong
    /// audience, holder mismatch, delegated too deep.
    InvalidToken(String),
    /// 403 `forbidden`: the token does not grant the tool or the operation.
    Forbidden(String),
    /// 400 `bad_request`: the body is not one acceptable JSON-RPC message (see
    /// [`jsonrpc`](crate::jsonrpc)); decided before the token is looked at.
    BadRequest(jsonrpc::Error),
    /// 400 `header_mismatch`: the MCP request headers disagree with the message, or (deciding
    /// on the headers alone) are missing; see [`mcp_headers`](crate::mcp_headers). Decided
    /// before the token is looked at. Answered with the JSON-RPC error `HeaderMismatch`
    /// (`-32020`) and the request's `id`.
    HeaderMismatch {
        /// What disagrees.
        error: HeaderMismatch,
        /// The request's `id`, if it was read.
        id: Option<Value>,
    },
}

impl CapabilityRejection {
    /// The HTTP status.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::MissingToken | Self::InvalidToken(_) => http::StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => http::StatusCode::FORBIDDEN,
            Self::BadRequest(_) => http::StatusCode::BAD_REQUEST,
            Self::HeaderMismatch { error, .. } => error.status(),
        }
    }

    /// The error code of the JSON body (`missing_token`, `invalid_token`, `forbidden`,
    /// `bad_request`, `header_mismatch`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidToken(_) => "invalid_token",
            Self::Forbidden(_) => "forbidden",
            Self::BadRequest(_) => "bad_request",
            Self::HeaderMismatch { .. } => "header_mismatch",
        }
    }

    /// The JSON body: `{"detail": {"error": …, "detail": …}}` (no detail for `missing_token`),
    /// except for `bad_request`, which answers with a JSON-RPC error:
    /// `{"jsonrpc": "2.0", "id": null, "error": {"code": -32700 or -32600, "message": …}}`
    /// (the message could not be read, so neither could its `id`), and `header_mismatch`,
    /// which answers with MCP's `HeaderMismatch` JSON-RPC error (see
    /// [`HeaderMismatch::body`]).
    pub fn body(&self) -> Value {
        match self {
            Self::MissingToken => serde_json::json!({"detail": {"error": "missing_token"}}),
            Self::InvalidToken(d) => {
                serde_json::json!({"detail": {"error": "invalid_token", "detail": d}})
            }
            Self::Forbidden(d) => {
                serde_json::json!({"detail": {"error": "forbidden", "detail": d}})
            }
            Self::BadRequest(e) => serde_json::json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": {"code": e.code(), "message": e.to_string()},
            }),
            Self::HeaderMismatch { error, id } => error.body(id.as_ref()),
        }
    }
}

/// Bytes of token text a cache allows per entry unless told otherwise: typical tokens take 200
/// to 900 bytes of text; the largest a verifier accepts, [`DEFAULT_MAX_TOKEN_BYTES`], about 11 KiB.
const DEFAULT_BYTES_PER_ENTRY: usize = 2048;

/// The least share of a cache each identity gets by default (in tokens), for small caches.
const SHARE_FLOOR: usize = 16;

/// The text (base64) of the largest token a verifier accepts: an identity's share of the bytes
/// always holds at least one.
const MAX_TOKEN_TEXT: usize = DEFAULT_MAX_TOKEN_BYTES.div_ceil(3) * 4;

/// The most shards (locks) a cache is split into.
const MAX_SHARDS: usize = 16;

/// Tokens a shard holds at least, if the cache is split.
const MIN_SHARD_ENTRIES: usize = 1024;

/// The bytes at the end of a token's text that pick its shard.
const SHARD_KEY_BYTES: usize = 32;

/// The owner of the tokens cached for requests without a verified caller: one shared bucket.
const ANONYMOUS: OwnerId = 0;

type OwnerId = u64;

#[allow(
    clippy::disallowed_types,
    reason = "lookup tables, never serialized nor iterated; keyed SipHash (RandomState) resists \
              flooding"
)]
type Map<K, V> = std::collections::HashMap<K, V>;

/// Verified tokens, kept so that a token's signatures are checked once. Revocation, time,
/// audience, holder and grants are still decided on every request.
///
/// Keyed by the token text itself (hashed with a per-process random key, compared in full on a
/// hit, so no collision can hand one token another's verification). No entry outlives its token:
/// an expired one is never served, and is dropped at the next lookup or insert.
///
/// Any token holder can attenuate endless distinct valid tokens offline, so the cache is bounded
/// per identity (the verified signer's [`identity`](VerifiedCaller::identity); requests without
/// a verified caller share one bucket) as well as in total, in tokens and in bytes of token text:
///
/// - an identity holds at most its [`share`](Self::share) of the tokens and
///   [`share_bytes`](Self::share_bytes) of the bytes; over it, that identity's own oldest tokens
///   go, never another's;
/// - when the cache is full, the oldest token of the identity holding the most goes (most
///   tokens, or most bytes if the bytes are what is full), so an identity loses tokens to others
///   only while it holds at least as much as each of them;
/// - expired tokens go before any of these.
///
/// Eviction is only a cache miss: the token is verified again on its next use, never refused.
/// Each eviction pops one entry from an ordered index (a B-tree: logarithmic, never a scan), and
/// an entry is evicted once, so an insert into a full cache costs the same whatever its
/// capacity. Large caches (from 2 048 tokens with the default share) are split into up to 16
/// shards (locks) by a keyed hash of the token text; each shard has its part of every bound, and
/// applies these rules to the tokens it holds.
///
/// A server that verifies tokens without the signature layer in front has no verified callers:
/// every token lands in the one shared bucket, so give it the whole cache with
/// [`with_share`](Self::with_share)`(capacity)`.
pub struct TokenCache {
    limits: Limits,
    shard_of: std::hash::RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens and `capacity` × 2 KiB of token text; each identity
    /// may hold a tenth of both (at least 16 tokens and one token of the largest size a verifier
    /// accepts, at most the whole cache).
    pub fn new(capacity: usize) -> Self {
        let share = (capacity / 10).max(SHARE_FLOOR).min(capacity);
        Self::build(
            capacity,
            capacity.saturating_mul(DEFAULT_BYTES_PER_ENTRY),
            share,
        )
    }

    /// At most `per_identity` tokens for any one identity (clamped to 1 ..= the capacity), and
    /// the same part of the bytes (but always room for one token of the largest size a verifier
    /// accepts). Empties the cache: configure it before use.
    #[must_use]
    pub fn with_share(self, per_identity: usize) -> Self {
        Self::build(self.limits.entries, self.limits.bytes, per_identity)
    }

    /// At most `max_bytes` of token text in all; each identity's part of it follows its
    /// [`share`](Self::share) of the tokens. Empties the cache: configure it before use.
    #[must_use]
    pub fn with_max_bytes(self, max_bytes: usize) -> Self {
        Self::build(self.limits.entries, max_bytes, self.limits.share)
    }

    fn build(entries: usize, bytes: usize, share: usize) -> Self {
        let limits = Limits::new(entries, bytes, share);
        let n = limits.shard_count();
        Self {
            limits,
            shard_of: std::hash::RandomState::new(),
            shards: (0..n)
                .map(|i| Mutex::new(Shard::new(limits.part(n, i))))
                .collect(),
        }
    }

    fn shard(&self, text: &str) -> Option<&Mutex<Shard>> {
        if let [only] = &*self.shards {
            return Some(only);
        }
        // A token ends with its proof (a fresh seed or a seal), different for every token: its
        // tail spreads tokens as well as the whole text would, for one hash of a few bytes.
        let bytes = text.as_bytes();
        let tail = bytes
            .get(bytes.len().saturating_sub(SHARD_KEY_BYTES)..)
            .unwrap_or(bytes);
        let n = u64::try_from(self.shards.len()).ok()?;
        let i = self.shard_of.hash_one(tail).checked_rem(n)?;
        self.shards.get(usize::try_from(i).ok()?)
    }

    fn get(&self, text: &str, now: u64) -> Option<Arc<VerifiedToken>> {
        self.shard(text)?.lock().ok()?.get(text, now)
    }

    fn insert(&self, identity: Option<&str>, text: &str, verified: Arc<VerifiedToken>, now: u64) {
        if let Some(Ok(mut shard)) = self.shard(text).map(Mutex::lock) {
            shard.insert(identity, text, verified, now);
        }
    }

    fn sum(&self, f: impl Fn(&Shard) -> usize) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().map(|s| f(&s)))
            .sum()
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.sum(|s| s.entries.len())
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of token text held.
    pub fn bytes(&self) -> usize {
        self.sum(|s| s.bytes)
    }

    /// The most tokens held.
    pub fn capacity(&self) -> usize {
        self.limits.entries
    }

    /// The most bytes of token text held.
    pub fn max_bytes(&self) -> usize {
        self.limits.bytes
    }

    /// The most tokens held for one identity.
    pub fn share(&self) -> usize {
        self.shards
            .len()
            .saturating_mul(self.limits.share / self.shards.len().max(1))
    }

    /// The most bytes of token text held for one identity.
    pub fn share_bytes(&self) -> usize {
        self.shards
            .len()
            .saturating_mul(self.limits.share_bytes / self.shards.len().max(1))
    }

    /// For tests and benches only: caches `verified` as the check of `text`, for `identity`.
    /// Nothing ties the two together here; the pipeline caches only what its verifier checked.
    #[doc(hidden)]
    pub fn insert_unchecked(
        &self,
        identity: Option<&str>,
        text: &str,
        verified: Arc<VerifiedToken>,
        now: u64,
    ) {
        self.insert(identity, text, verified, now);
    }

    /// For tests: the tokens and bytes of token text held for `identity`.
    #[doc(hidden)]
    pub fn held_by(&self, identity: Option<&str>) -> (usize, usize) {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().and_then(|s| s.held_by(identity)))
            .fold((0, 0), |(n, b), (n2, b2)| (n + n2, b + b2))
    }

    /// For tests: the entries eviction has looked at so far, each one popped from an ordered
    /// index (never found by a scan).
    #[doc(hidden)]
    pub fn eviction_steps(&self) -> u64 {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().map(|s| s.steps))
            .sum()
    }
}

impl std::fmt::Debug for TokenCache {
    /// The bounds and the size; never the tokens (they are bearer credentials).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity())
            .field("max_bytes", &self.max_bytes())
            .field("share", &self.share())
            .field("share_bytes", &self.share_bytes())
            .field("shards", &self.shards.len())
            .field("len", &self.len())
            .field("bytes", &self.bytes())
            .finish()
    }
}

/// The bounds of a cache, or of one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    entries: usize,
    bytes: usize,
    share: usize,
    share_bytes: usize,
}

impl Limits {
    fn new(entries: usize, bytes: usize, share: usize) -> Self {
        let share = share.clamp(1, entries.max(1));
        // bytes × share / entries, exactly (share ≤ entries, so it is at most bytes).
        let wide = |n: usize| u128::try_from(n).unwrap_or(u128::MAX);
        let proportional = wide(bytes)
            .checked_mul(wide(share))
            .and_then(|b| b.checked_div(wide(entries.max(1))))
            .and_then(|b| usize::try_from(b).ok())
            .unwrap_or(bytes);
        Self {
            entries,
            bytes,
            share,
            share_bytes: proportional.max(MAX_TOKEN_TEXT).min(bytes),
        }
    }

    /// Shards of at least [`MIN_SHARD_ENTRIES`] tokens, each identity's part of which is at
    /// least [`SHARE_FLOOR`] tokens and one token of the largest size.
    fn shard_count(&self) -> usize {
        MAX_SHARDS
            .min(self.entries / MIN_SHARD_ENTRIES)
            .min(self.share / SHARE_FLOOR)
            .min(self.share_bytes / MAX_TOKEN_TEXT)
            .max(1)
    }

    /// Shard `i` of `n`: the totals split exactly, the shares rounded down (so that an
    /// identity's tokens over all shards stay within its share).
    fn part(&self, n: usize, i: usize) -> Self {
        let split = |total: usize| total / n + usize::from(i < total % n);
        Self {
            entries: split(self.entries),
            bytes: split(self.bytes),
            share: self.share / n,
            share_bytes: self.share_bytes / n,
        }
    }
}

#[derive(Debug)]
struct Entry {
    verified: Arc<VerifiedToken>,
    expires_at: u64,
    seq: u64,
    owner: OwnerId,
    cost: usize,
}

/// One identity's tokens in a shard, oldest first.
#[derive(Debug)]
struct Owner {
    name: Option<Arc<str>>,
    by_age: BTreeMap<u64, Arc<str>>,
    bytes: usize,
}

/// One lock's worth of the cache. Every index is updated eagerly on every insert and removal
/// (no stale nodes), so memory follows the entries held.
#[derive(Debug)]
struct Shard {
    limits: Limits,
    entries: Map<Arc<str>, Entry>,
    /// (expires_at, seq) → token: the expired come first.
    by_expiry: BTreeMap<(u64, u64), Arc<str>>,
    owner_ids: Map<Arc<str>, OwnerId>,
    owners: Map<OwnerId, Owner>,
    /// (tokens held, owner) and (bytes held, owner), for owners holding any: the largest last.
    by_count: BTreeSet<(usize, OwnerId)>,
    by_bytes: BTreeSet<(usize, OwnerId)>,
    bytes: usize,
    next_seq: u64,
    next_owner: OwnerId,
    steps: u64,
}

impl Shard {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            entries: Map::default(),
            by_expiry: BTreeMap::new(),
            owner_ids: Map::default(),
            owners: Map::default(),
            by_count: BTreeSet::new(),
            by_bytes: BTreeSet::new(),
            bytes: 0,
            next_seq: 0,
            next_owner: ANONYMOUS + 1,
            steps: 0,
        }
    }

    fn get(&mut self, text: &str, now: u64) -> Option<Arc<VerifiedToken>> {
        self.purge_expired(now);
        self.entries
            .get(text)
            .filter(|e| e.expires_at > now)
            .map(|e| e.verified.clone())
    }

    fn owner_of(&self, identity: Option<&str>) -> Option<OwnerId> {
        match identity {
            None => Some(ANONYMOUS).filter(|id| self.owners.contains_key(id)),
            Some(name) => self.owner_ids.get(name).copied(),
        }
    }

    fn held_by(&self, identity: Option<&str>) -> Option<(usize, usize)> {
        let owner = self.owners.get(&self.owner_of(identity)?)?;
        Some((owner.by_age.len(), owner.bytes))
    }

    fn insert(
        &mut self,
        identity: Option<&str>,
        text: &str,
        verified: Arc<VerifiedToken>,
        now: u64,
    ) {
        self.purge_expired(now);
        let expires_at = verified.expires_at();
        let cost = text.len();
        if expires_at <= now || self.limits.entries == 0 || cost > self.limits.share_bytes {
            return;
        }
        if self.entries.contains_key(text) {
            return;
        }
        // Over its share: the identity's own oldest tokens go, never another's.
        if let Some(id) = self.owner_of(identity) {
            while self.owners.get(&id).is_some_and(|o| {
                o.by_age.len() >= self.limits.share
                    || o.bytes.saturating_add(cost) > self.limits.share_bytes
            }) {
                if !self.evict_oldest(id) {
                    return;
                }
            }
        }
        // Full: the oldest token of whoever holds the most.
        loop {
            let largest = if self.entries.len() >= self.limits.entries {
                self.by_count.last().copied()
            } else if self.bytes.saturating_add(cost) > self.limits.bytes {
                self.by_bytes.last().copied()
            } else {
                break;
            };
            match largest {
                Some((_, id)) if self.evict_oldest(id) => {}
                _ => return,
            }
        }

        let owner = self.owner_or_new(identity);
        let text: Arc<str> = Arc::from(text);
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        self.by_expiry.insert((expires_at, seq), text.clone());
        self.bytes = self.bytes.saturating_add(cost);
        if let Some(o) = self.owners.get_mut(&owner) {
            let before = (o.by_age.len(), o.bytes);
            o.by_age.insert(seq, text.clone());
            o.bytes = o.bytes.saturating_add(cost);
            let after = (o.by_age.len(), o.bytes);
            self.reindex(owner, before, after);
        }
        self.entries.insert(
            text,
            Entry {
                verified,
                expires_at,
                seq,
                owner,
                cost,
            },
        );
    }

    fn owner_or_new(&mut self, identity: Option<&str>) -> OwnerId {
        let Some(name) = identity else {
            self.owners.entry(ANONYMOUS).or_insert_with(|| Owner {
                name: None,
                by_age: BTreeMap::new(),
                bytes: 0,
            });
            return ANONYMOUS;
        };
        if let Some(&id) = self.owner_ids.get(name) {
            return id;
        }
        let id = self.next_owner;
        self.next_owner = id.wrapping_add(1);
        let name: Arc<str> = Arc::from(name);
        self.owner_ids.insert(name.clone(), id);
        self.owners.insert(
            id,
            Owner {
                name: Some(name),
                by_age: BTreeMap::new(),
                bytes: 0,
            },
        );
        id
    }

    /// Drops every expired token: each is popped once, so this costs one step per token ever
    /// inserted, whatever the cache's size.
    fn purge_expired(&mut self, now: u64) {
        while let Some((&(expires_at, _), text)) = self.by_expiry.first_key_value() {
            if expires_at > now {
                break;
            }
            let text = text.clone();
            self.steps = self.steps.saturating_add(1);
            if !self.remove(&text) {
                // Not held (never happens: every index is updated with the entries); drop it.
                self.by_expiry.pop_first();
            }
        }
    }

    /// Drops the oldest token of `owner`. False if it holds none.
    fn evict_oldest(&mut self, owner: OwnerId) -> bool {
        let Some(text) = self
            .owners
            .get(&owner)
            .and_then(|o| o.by_age.first_key_value())
            .map(|(_, text)| text.clone())
        else {
            return false;
        };
        self.steps = self.steps.saturating_add(1);
        self.remove(&text)
    }

    fn remove(&mut self, text: &str) -> bool {
        let Some(e) = self.entries.remove(text) else {
            return false;
        };
        self.by_expiry.remove(&(e.expires_at, e.seq));
        self.bytes = self.bytes.saturating_sub(e.cost);
        let Some(o) = self.owners.get_mut(&e.owner) else {
            return true;
        };
        let before = (o.by_age.len(), o.bytes);
        o.by_age.remove(&e.seq);
        o.bytes = o.bytes.saturating_sub(e.cost);
        let after = (o.by_age.len(), o.bytes);
        let gone = o.by_age.is_empty().then(|| o.name.clone());
        self.reindex(e.owner, before, after);
        if let Some(name) = gone {
            self.owners.remove(&e.owner);
            if let Some(name) = name {
                self.owner_ids.remove(&name);
            }
        }
        true
    }

    /// Moves `owner` in the largest-holder indexes from `before` to `after` (tokens, bytes).
    fn reindex(&mut self, owner: OwnerId, before: (usize, usize), after: (usize, usize)) {
        if before.0 > 0 {
            self.by_count.remove(&(before.0, owner));
            self.by_bytes.remove(&(before.1, owner));
        }
        if after.0 > 0 {
            self.by_count.insert((after.0, owner));
            self.by_bytes.insert((after.1, owner));
        }
    }
}

/// Everything the capability check needs, configured once.
#[derive(Clone, Debug)]
pub struct CapabilityPipeline {
    verifier: Verifier,
    header: HeaderName,
    operations: Arc<BTreeMap<String, String>>,
    default_operation: String,
    cache: Arc<TokenCache>,
}

impl CapabilityPipeline {
    /// Checks tokens with `verifier`; tools map to `execute` unless told otherwise; caches up to
    /// 10 000 verified tokens.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            header: TOKEN_HEADER,
            operations: Arc::new(BTreeMap::new()),
            default_operation: "execute".to_owned(),
            cache: Arc::new(TokenCache::new(10_000)),
        }
    }

    /// Adds an audience of the verifier (see [`Verifier::with_audience`]; call again for
    /// several): tokens restricted to other audiences are refused. A token without any audience restriction is still accepted,
    /// so mint tokens with an audience to keep them from being valid at every server.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.verifier = self.verifier.with_audience(audience);
        self
    }

    /// The header carrying the token.
    #[must_use]
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// The operation a call to `tool` performs (default: `execute`).
    #[must_use]
    pub fn operation(mut self, tool: impl Into<String>, operation: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.operations).insert(tool.into(), operation.into());
        self
    }

    /// The verified-token cache size, with the other bounds at their defaults (see
    /// [`TokenCache::new`]).
    #[must_use]
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache = Arc::new(TokenCache::new(capacity));
        self
    }

    /// The verified-token cache, configured (see [`TokenCache`]).
    #[must_use]
    pub fn token_cache(mut self, cache: TokenCache) -> Self {
        self.cache = Arc::new(cache);
        self
    }

    /// The cache (for metrics and tests).
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// Decides one MCP request: reads the JSON-RPC message once, strictly (see
    /// [`jsonrpc::parse`]; an empty body is no message), checks the MCP 2026-07-28 request
    /// headers against it ([`mcp_headers::check`]), finds the token (header first, then
    /// `params._meta.token`), derives the grant the message needs (`tools/call` needs its tool
    /// and the tool's operation; other methods only a valid token), and verifies, with the
    /// signer as the holder.
    ///
    /// # Errors
    ///
    /// The [`CapabilityRejection`] to answer with: [`BadRequest`](CapabilityRejection::BadRequest)
    /// for a body [`jsonrpc::parse`] refuses and
    /// [`HeaderMismatch`](CapabilityRejection::HeaderMismatch) for headers that disagree with
    /// it, both before the token is looked at.
    pub fn authorize(
        &self,
        parts: &Parts,
        body: &[u8],
        caller: Option<&VerifiedCaller>,
        now: u64,
    ) -> Result<Facts, CapabilityRejection> {
        self.decide(parts, body, caller, now).1
    }

    /// [`authorize`](Self::authorize), also handing back the tool the message calls (for the
    /// audit record), from the same single reading of the body.
    pub(crate) fn decide<'b>(
        &self,
        parts: &Parts,
        body: &'b [u8],
        caller: Option<&VerifiedCaller>,
        now: u64,
    ) -> (Option<Cow<'b, str>>, Result<Facts, CapabilityRejection>) {
        // The body is judged first: a malformed message is refused before any token decision.
        let message = if body.is_empty() {
            None
        } else {
            match jsonrpc::parse(body) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::info!(code = e.code(), detail = %e, "message refused");
                    return (None, Err(CapabilityRejection::BadRequest(e)));
                }
            }
        };
        if let Err(error) = mcp_headers::check(&parts.headers, message.as_ref()) {
            tracing::info!(detail = %error, "MCP headers disagree with the message");
            let id = message.as_ref().and_then(|m| m.id().cloned());
            return (None, Err(CapabilityRejection::HeaderMismatch { error, id }));
        }
        // The headers, when present, equal the body: deciding on the body decides on them.
        let tool = message.as_ref().and_then(jsonrpc::Message::tool);
        let token = message.as_ref().and_then(jsonrpc::Message::token);
        let result = self.grant(parts, token, tool, caller, now);
        (message.and_then(jsonrpc::Message::into_tool), result)
    }

    /// Decides one MCP request on its head alone, for an authorizer that does not see the body
    /// (`vouch authz --headers-only`): the method and tool come from the `Mcp-Method` and
    /// `Mcp-Name` headers ([`mcp_headers::read_head`]), which the signature must cover, and the
    /// token from the token header only. A `POST` without `Mcp-Method` cannot be decided and
    /// is refused; a `GET` or `DELETE` (the 2025-06-18 SSE stream and session end) needs a
    /// valid token, as with an empty body. The server behind must compare the signed
    /// Content-Digest with the body, and the headers with the message
    /// ([`DigestCheckLayer`](crate::DigestCheckLayer)).
    ///
    /// # Errors
    ///
    /// The [`CapabilityRejection`] to answer with:
    /// [`HeaderMismatch`](CapabilityRejection::HeaderMismatch) (missing, duplicated or
    /// malformed headers) before the token is looked at.
    pub fn authorize_head(
        &self,
        parts: &Parts,
        caller: Option<&VerifiedCaller>,
        now: u64,
    ) -> Result<Facts, CapabilityRejection> {
        self.decide_head(parts, caller, now).1
    }

    /// [`authorize_head`](Self::authorize_head), also handing back the tool (for the audit
    /// record).
    pub(crate) fn decide_head(
        &self,
        parts: &Parts,
        caller: Option<&VerifiedCaller>,
        now: u64,
    ) -> (Option<String>, Result<Facts, CapabilityRejection>) {
        if matches!(parts.method, http::Method::GET | http::Method::DELETE)
            && !parts.headers.contains_key(vouch_httpsig::mcp::MCP_METHOD)
        {
            return (None, self.grant(parts, None, None, caller, now));
        }
        let head = match mcp_headers::read_head(&parts.headers) {
            Ok(head) => head,
            Err(error) => {
                tracing::info!(detail = %error, "request cannot be decided on its headers");
                return (
                    None,
                    Err(CapabilityRejection::HeaderMismatch { error, id: None }),
                );
            }
        };
        let tool = (head.method == "tools/call").then_some(head.name).flatten();
        let result = self.grant(parts, None, tool.as_deref(), caller, now);
        (tool, result)
    }

    /// Verifies the token (the header's, else `body_token`) for `tool` (`None`: any valid
    /// token will do).
    fn grant(
        &self,
        parts: &Parts,
        body_token: Option<&str>,
        tool: Option<&str>,
        caller: Option<&VerifiedCaller>,
        now: u64,
    ) -> Result<Facts, CapabilityRejection> {
        let token_text = match parts.headers.get(&self.header) {
            Some(h) => h.to_str().map_err(|_| {
                CapabilityRejection::InvalidToken("token header is not text".into())
            })?,
            None => body_token.ok_or(CapabilityRejection::MissingToken)?,
        };
        let checked = self.checked(token_text, caller, now)?;
        let mut access = Access::at(now);
        if let Some(c) = caller {
            access = access.caller(&c.keyid);
        }
        if let Some(t) = tool {
            let operation = self
                .operations
                .get(t)
                .map_or(self.default_operation.as_str(), String::as_str);
            access = access.tool(t).operation(operation);
        }
        self.verifier.authorize(&checked, &access).map_err(|e| {
            tracing::info!(code = e.code(), detail = %e, "token refused");
            if e.is_forbidden() {
                CapabilityRejection::Forbidden(e.to_string())
            } else {
                CapabilityRejection::InvalidToken(e.to_string())
            }
        })
    }

    fn checked(
        &self,
        text: &str,
        caller: Option<&VerifiedCaller>,
        now: u64,
    ) -> Result<Arc<VerifiedToken>, CapabilityRejection> {
        if let Some(hit) = self.cache.get(text, now) {
            return Ok(hit);
        }
        let invalid = |e: vouch_token::Error| {
            tracing::info!(code = e.code(), detail = %e, "token invalid");
            CapabilityRejection::InvalidToken(e.to_string())
        };
        let token = Token::from_base64(text).map_err(invalid)?;
        let checked = Arc::new(self.verifier.check(&token).map_err(invalid)?);
        // Cached on the signer's share (requests without one share a bucket).
        let identity = caller.map(|c| c.identity.as_str());
        self.cache.insert(identity, text, checked.clone(), now);
        Ok(checked)
    }
}

#[cfg(test)]
mod tests {
    //! The shard's indexes against its entries, over random inserts, lookups and time.

    use std::sync::OnceLock;

    use proptest::prelude::*;
    use vouch_token::{KeyPair, Restriction};

    use super::*;

    const T0: u64 = 1_000_000;

    /// Verified tokens expiring 10, 50 and 1000 seconds after `T0`.
    fn tokens() -> &'static [Arc<VerifiedToken>] {
        static TOKENS: OnceLock<Vec<Arc<VerifiedToken>>> = OnceLock::new();
        TOKENS.get_or_init(|| {
            let root = KeyPair::from_seed(&[11; 32]).unwrap();
            let verifier = Verifier::new(root.public_key());
            [10, 50, 1000]
                .into_iter()
                .map(|ttl| {
                    let r = Restriction::new().tools(["t"]).ttl(ttl);
                    let token = Token::mint_at(&root, "a", "b", r, T0).unwrap();
                    Arc::new(verifier.check(&token).unwrap())
                })
                .collect()
        })
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert {
            who: u8,
            text: u8,
            size: usize,
            ttl: usize,
        },
        Get {
            text: u8,
            size: usize,
        },
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..5u8, 0..30u8, 0..4usize, 0..3usize)
                .prop_map(|(who, text, size, ttl)| Op::Insert { who, text, size, ttl }),
            2 => (0..30u8, 0..4usize).prop_map(|(text, size)| Op::Get { text, size }),
            1 => (0..30u64).prop_map(Op::Wait),
        ]
    }

    fn text(id: u8, size: usize) -> String {
        format!("{id}:{}", "x".repeat([0, 10, 40, 90][size % 4]))
    }

    fn identity(who: u8) -> Option<String> {
        (who > 0).then(|| format!("agent-{who}"))
    }

    /// Every index agrees with the entries, and every bound holds.
    fn check(s: &Shard, now: u64) {
        let l = s.limits;
        assert!(s.entries.len() <= l.entries && s.bytes <= l.bytes);
        assert_eq!(s.by_expiry.len(), s.entries.len(), "no stale expiry nodes");
        assert_eq!(s.bytes, s.entries.values().map(|e| e.cost).sum::<usize>());
        for (text, e) in &s.entries {
            assert!(e.expires_at > now, "an expired token is kept");
            assert_eq!(e.cost, text.len());
            assert_eq!(s.by_expiry.get(&(e.expires_at, e.seq)), Some(text));
            let o = &s.owners[&e.owner];
            assert_eq!(o.by_age.get(&e.seq), Some(text));
        }
        let mut count = BTreeSet::new();
        let mut bytes = BTreeSet::new();
        for (&id, o) in &s.owners {
            assert!(!o.by_age.is_empty(), "no empty owners");
            assert!(o.by_age.len() <= l.share && o.bytes <= l.share_bytes);
            let held: Vec<&Entry> = o.by_age.values().map(|t| &s.entries[t]).collect();
            assert!(held.iter().all(|e| e.owner == id));
            assert_eq!(o.bytes, held.iter().map(|e| e.cost).sum::<usize>());
            match &o.name {
                Some(name) => assert_eq!(s.owner_ids.get(name), Some(&id)),
                None => assert_eq!(id, ANONYMOUS),
            }
            count.insert((o.by_age.len(), id));
            bytes.insert((o.bytes, id));
        }
        assert_eq!(
            s.owner_ids.len() + usize::from(s.owners.contains_key(&ANONYMOUS)),
            s.owners.len()
        );
        assert_eq!((count, bytes), (s.by_count.clone(), s.by_bytes.clone()));
    }

    /// The texts an owner holds, oldest first.
    fn held(s: &Shard, identity: Option<&str>) -> Vec<Arc<str>> {
        s.owner_of(identity)
            .and_then(|id| s.owners.get(&id))
            .map(|o| o.by_age.values().cloned().collect())
            .unwrap_or_default()
    }

    proptest! {
        #[test]
        fn indexes_agree_and_others_lose_only_their_oldest_when_full(
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            // Every bound binds now and then: 8 tokens, 200 bytes, 3 tokens or 120 bytes each.
            let mut s = Shard::new(Limits { entries: 8, bytes: 200, share: 3, share_bytes: 120 });
            let mut now = T0;
            for op in ops {
                match op {
                    // Time alone drops nothing: the next lookup or insert does.
                    Op::Wait(secs) => now += secs,
                    Op::Get { text: id, size } => {
                        let t = text(id, size);
                        let before = s.entries.get(t.as_str()).filter(|e| e.expires_at > now)
                            .map(|e| e.verified.clone());
                        let got = s.get(&t, now);
                        prop_assert_eq!(got.is_some(), before.is_some());
                        if let (Some(got), Some(before)) = (got, before) {
                            prop_assert!(Arc::ptr_eq(&got, &before));
                        }
                        check(&s, now);
                    }
                    Op::Insert { who, text: id, size, ttl } => {
                        let who = identity(who);
                        let t = text(id, size);
                        s.purge_expired(now);
                        check(&s, now);
                        let names: Vec<Option<String>> = (0..5).map(identity).collect();
                        let before: Vec<Vec<Arc<str>>> =
                            names.iter().map(|n| held(&s, n.as_deref())).collect();
                        let full = s.entries.len() >= s.limits.entries
                            || s.bytes + t.len() > s.limits.bytes;
                        let new = !s.entries.contains_key(t.as_str());
                        let token = tokens()[ttl].clone();
                        s.insert(who.as_deref(), &t, token.clone(), now);
                        check(&s, now);
                        let fits = token.expires_at() > now && t.len() <= s.limits.share_bytes;
                        prop_assert_eq!(s.entries.contains_key(t.as_str()), fits || !new);
                        let after: Vec<Vec<Arc<str>>> =
                            names.iter().map(|n| held(&s, n.as_deref())).collect();
                        let size = |texts: &[Arc<str>]| {
                            (texts.len(), texts.iter().map(|t| t.len()).sum::<usize>())
                        };
                        for ((n, was), now_held) in names.iter().zip(&before).zip(&after) {
                            let kept: Vec<&Arc<str>> =
                                now_held.iter().filter(|t| was.contains(t)).collect();
                            // Whatever went, went oldest first.
                            let lost = was.len() - kept.len();
                            prop_assert!(was.iter().skip(lost).eq(kept));
                            if n == &who || lost == 0 {
                                continue;
                            }
                            prop_assert!(full, "{n:?} lost a token to {who:?} with room left");
                            // And only while it held the most (in tokens or in bytes): at least
                            // what anyone holds now, the newcomer's token aside.
                            let (count, bytes) = size(was);
                            let others = names.iter().zip(&after).filter(|(m, _)| *m != n);
                            let (mut most_count, mut most_bytes) = (0, 0);
                            for (m, texts) in others {
                                let (mut c, mut b) = size(texts);
                                if m == &who && texts.iter().any(|x| **x == *t) {
                                    (c, b) = (c - 1, b - t.len());
                                }
                                (most_count, most_bytes) = (most_count.max(c), most_bytes.max(b));
                            }
                            prop_assert!(
                                count >= most_count || bytes >= most_bytes,
                                "{n:?} ({count}, {bytes}) gave way while not the largest"
                            );
                        }
                    }
                }
            }
        }
    }
}
