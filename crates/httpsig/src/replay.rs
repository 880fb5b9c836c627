//! Replay protection: one atomic check-and-insert per verified signature.

use core::fmt;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::error::Error;

/// What identifies a signature for replay purposes.
///
/// With a nonce: SHA-256 over (keyid, nonce). Without: SHA-256 over (keyid, signature base). Never
/// the base64 text, so re-encodings of one signature are the same replay; and not the signature
/// bytes either, since ECDSA and PSS signatures can be re-randomized over the same base.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplayKey(pub(crate) [u8; 32]);

impl ReplayKey {
    pub(crate) fn derive(keyid: &str, nonce: Option<&str>, base: &[u8]) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        match nonce {
            Some(n) => {
                ctx.update(b"vouch-httpsig/replay/nonce\0");
                ctx.update(&(keyid.len() as u64).to_be_bytes());
                ctx.update(keyid.as_bytes());
                ctx.update(n.as_bytes());
            }
            None => {
                ctx.update(b"vouch-httpsig/replay/base\0");
                ctx.update(&(keyid.len() as u64).to_be_bytes());
                ctx.update(keyid.as_bytes());
                ctx.update(base);
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Self(out)
    }

    /// The raw 32 bytes (for a store's key).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplayKey(")?;
        for b in self.0.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// The future a [`ReplayGuard`] returns.
pub type ReplayFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// A replay store: records each verified signature until it can no longer pass the time window.
///
/// `check_and_insert` must be atomic: of several concurrent calls with one key, exactly one
/// succeeds. It returns [`Error::Replayed`] for a key already present,
/// [`Error::ReplayShareExceeded`] when `owner` already holds its share of the store (answer 429:
/// one identity must not be able to fill the store and lock everyone else out), and
/// [`Error::ReplayStoreUnavailable`] when it cannot record the key (full, unreachable): the
/// request must then be refused, never let through.
pub trait ReplayGuard: Send + Sync {
    /// Records `key`, signed by `owner` (the verified identity), until Unix second `keep_until`
    /// (inclusive), or refuses it. `now` is the verifier's clock, for expiring old entries.
    fn check_and_insert<'a>(
        &'a self,
        key: ReplayKey,
        owner: &'a str,
        keep_until: u64,
        now: u64,
    ) -> ReplayFuture<'a>;
}

/// A shared store: the server uses it while something else (metrics, tests) reads its size.
impl<T: ReplayGuard + ?Sized> ReplayGuard for std::sync::Arc<T> {
    fn check_and_insert<'a>(
        &'a self,
        key: ReplayKey,
        owner: &'a str,
        keep_until: u64,
        now: u64,
    ) -> ReplayFuture<'a> {
        (**self).check_and_insert(key, owner, keep_until, now)
    }
}

/// A simple bounded in-memory replay store (one lock), with a share per identity. For tests and
/// single small processes; vouch-keys has the sharded and Redis stores.
///
/// When full of live entries it refuses new ones ([`Error::ReplayStoreUnavailable`]) rather
/// than evicting a live entry, which would let that signature replay. No identity holds more
/// than its share of the store (by default a tenth of it, at least 100 entries or the whole
/// store if smaller, as vouch-keys' `ReplayConfig::default_share`): over it, that identity alone
/// is refused with [`Error::ReplayShareExceeded`], and a replay is never counted. When the store
/// is full, everyone is refused with [`Error::ReplayStoreUnavailable`] first.
///
/// Expired entries go in expiry order (a B-tree index, no scan of the store).
#[derive(Debug)]
pub struct MemoryReplayGuard {
    capacity: usize,
    share: usize,
    state: Mutex<MemoryState>,
}

/// What the guard holds, under its one lock.
#[derive(Debug, Default)]
struct MemoryState {
    /// Every entry and the last second it is kept.
    entries: BTreeMap<ReplayKey, u64>,
    /// The same entries in expiry order, with their identity.
    expiry: BTreeMap<(u64, ReplayKey), Arc<str>>,
    /// Per identity: entries held, by the second they expire.
    owners: BTreeMap<Arc<str>, Held>,
}

/// One identity's entries.
#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_expiry: BTreeMap<u64, usize>,
}

impl MemoryReplayGuard {
    /// A store holding at most `capacity` live entries, each identity at most a tenth of them
    /// (but at least 100, or all of them if fewer).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            share: (capacity / 10).max(capacity.min(100)).max(1),
            state: Mutex::new(MemoryState::default()),
        }
    }

    /// Lets each identity hold at most `entries` live entries (at least 1).
    #[must_use]
    pub fn identity_share(mut self, entries: usize) -> Self {
        self.share = entries.max(1);
        self
    }

    /// The most live entries one identity holds.
    pub fn share(&self) -> usize {
        self.share
    }

    fn check_now(
        &self,
        key: ReplayKey,
        owner: &str,
        keep_until: u64,
        now: u64,
    ) -> Result<(), Error> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| Error::ReplayStoreUnavailable("lock poisoned"))?;
        state.expire(now);
        if state.entries.contains_key(&key) {
            return Err(Error::Replayed);
        }
        if state.entries.len() >= self.capacity {
            return Err(Error::ReplayStoreUnavailable("replay store full"));
        }
        let (name, held) = match state.owners.get_key_value(owner) {
            Some((name, held)) => (name.clone(), held),
            None => (Arc::from(owner), &Held::default()),
        };
        if held.total >= self.share {
            let oldest = held.by_expiry.keys().next().copied().unwrap_or(now);
            return Err(Error::ReplayShareExceeded {
                retry_after: oldest.saturating_add(1).saturating_sub(now).max(1),
            });
        }
        state.entries.insert(key, keep_until);
        state.expiry.insert((keep_until, key), name.clone());
        let held = state.owners.entry(name).or_default();
        held.total += 1;
        *held.by_expiry.entry(keep_until).or_insert(0) += 1;
        Ok(())
    }
}

impl MemoryState {
    /// Drops the entries that expired before `now`.
    fn expire(&mut self, now: u64) {
        while let Some(entry) = self.expiry.first_entry() {
            let &(until, key) = entry.key();
            if until >= now {
                break;
            }
            let owner = entry.remove();
            self.entries.remove(&key);
            if let Some(held) = self.owners.get_mut(&owner) {
                held.total = held.total.saturating_sub(1);
                if let Some(n) = held.by_expiry.get_mut(&until) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        held.by_expiry.remove(&until);
                    }
                }
                if held.total == 0 {
                    self.owners.remove(&owner);
                }
            }
        }
    }
}

impl ReplayGuard for MemoryReplayGuard {
    fn check_and_insert<'a>(
        &'a self,
        key: ReplayKey,
        owner: &'a str,
        keep_until: u64,
        now: u64,
    ) -> ReplayFuture<'a> {
        Box::pin(std::future::ready(
            self.check_now(key, owner, keep_until, now),
        ))
    }
}
