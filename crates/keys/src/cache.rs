//! A caching resolver: bounded, with TTLs, negative caching and single-flight.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::resolve::{KeyResolver, ResolveError, ResolveFuture, ResolvedKey};

/// Limits and lifetimes of a [`CachingResolver`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Most keyids held.
    pub max_entries: usize,
    /// Most bytes held (keyids and keys, estimated).
    pub max_bytes: usize,
    /// How long a resolved key is reused.
    pub ttl: Duration,
    /// How long a failure is remembered (so that a burst for a bad keyid fetches once).
    pub negative_ttl: Duration,
}

impl Default for CacheConfig {
    /// 10 000 entries, 4 MiB, keys for 5 minutes, failures for 30 seconds.
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 4 << 20,
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
        }
    }
}

impl CacheConfig {
    /// Sets the bounds.
    #[must_use]
    pub fn bounds(mut self, max_entries: usize, max_bytes: usize) -> Self {
        self.max_entries = max_entries;
        self.max_bytes = max_bytes;
        self
    }

    /// Sets the lifetimes.
    #[must_use]
    pub fn ttls(mut self, ttl: Duration, negative_ttl: Duration) -> Self {
        self.ttl = ttl;
        self.negative_ttl = negative_ttl;
        self
    }
}

/// Bytes counted per entry besides its keyid (an Ed25519 key and fingerprint take ~100).
const ENTRY_ALLOWANCE: usize = 256;

type Outcome = (Result<ResolvedKey, ResolveError>, Instant);

struct Entry {
    cell: Arc<OnceCell<Outcome>>,
    weight: usize,
    /// Insertion order, for evicting the oldest first.
    seq: u64,
}

struct State {
    entries: BTreeMap<String, Entry>,
    bytes: usize,
    seq: u64,
}

/// Wraps a resolver with a bounded cache.
///
/// A burst of requests for one unknown keyid makes one fetch: the first caller fetches, the
/// others wait for its result (single-flight). Results are kept for `ttl`, failures for
/// `negative_ttl`. When full, expired entries go first, then the oldest.
pub struct CachingResolver<R> {
    inner: R,
    config: CacheConfig,
    state: Mutex<State>,
}

impl<R: KeyResolver> CachingResolver<R> {
    /// Caches `inner` with `config`.
    pub fn new(inner: R, config: CacheConfig) -> Self {
        Self {
            inner,
            config,
            state: Mutex::new(State {
                entries: BTreeMap::new(),
                bytes: 0,
                seq: 0,
            }),
        }
    }

    /// Entries held (resolved, failed or in flight).
    pub fn len(&self) -> usize {
        self.state.lock().map_or(0, |s| s.entries.len())
    }

    /// True if nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cell for `keyid`: the cached one if still fresh, else a new one (which the caller
    /// fills).
    fn cell(&self, keyid: &str) -> Result<Arc<OnceCell<Outcome>>, ResolveError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| ResolveError::Fetch("cache lock poisoned".into()))?;
        let now = Instant::now();
        if let Some(entry) = state.entries.get(keyid) {
            let fresh = entry.cell.get().is_none_or(|(_, expires)| *expires > now);
            if fresh {
                return Ok(entry.cell.clone());
            }
        }
        if let Some(old) = state.entries.remove(keyid) {
            state.bytes = state.bytes.saturating_sub(old.weight);
        }
        // The keyid plus a fixed allowance for the key, its fingerprint and the entry itself.
        let weight = keyid.len() + ENTRY_ALLOWANCE;
        // Make room: expired entries first, then the oldest settled ones. In-flight entries stay.
        while state.entries.len() + 1 > self.config.max_entries
            || state.bytes + weight > self.config.max_bytes
        {
            let victim = state
                .entries
                .iter()
                .filter(|(_, e)| e.cell.get().is_some_and(|(_, exp)| *exp <= now))
                .map(|(k, _)| k.clone())
                .next()
                .or_else(|| {
                    state
                        .entries
                        .iter()
                        .filter(|(_, e)| e.cell.initialized())
                        .min_by_key(|(_, e)| e.seq)
                        .map(|(k, _)| k.clone())
                });
            let Some(victim) = victim else {
                // Everything held is in flight: resolve without caching rather than grow.
                return Ok(Arc::new(OnceCell::new()));
            };
            if let Some(e) = state.entries.remove(&victim) {
                state.bytes = state.bytes.saturating_sub(e.weight);
            }
        }
        let cell = Arc::new(OnceCell::new());
        state.seq += 1;
        let seq = state.seq;
        state.bytes += weight;
        state.entries.insert(
            keyid.to_owned(),
            Entry {
                cell: cell.clone(),
                weight,
                seq,
            },
        );
        Ok(cell)
    }

    async fn lookup(&self, keyid: &str) -> Result<ResolvedKey, ResolveError> {
        let cell = self.cell(keyid)?;
        let (result, _) = cell
            .get_or_init(|| async {
                let result = self.inner.resolve(keyid).await;
                let ttl = if result.is_ok() {
                    self.config.ttl
                } else {
                    self.config.negative_ttl
                };
                (result, Instant::now() + ttl)
            })
            .await;
        result.clone()
    }
}

impl<R: KeyResolver> KeyResolver for CachingResolver<R> {
    fn resolve<'a>(&'a self, keyid: &'a str) -> ResolveFuture<'a> {
        Box::pin(self.lookup(keyid))
    }
}

impl<R> core::fmt::Debug for CachingResolver<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CachingResolver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
