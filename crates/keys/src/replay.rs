//! A sharded, bounded in-memory replay store for vouch-httpsig's `ReplayGuard`, with a share per
//! signer so that one identity cannot fill it and lock everyone else out.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vouch_httpsig::{Error, ReplayFuture, ReplayGuard, ReplayKey};

/// Number of key shards and of owner shards (independent locks).
const SHARDS: usize = 16;

/// The default width of an expiry bucket, in seconds.
const DEFAULT_BUCKET_SECS: u64 = 60;

/// The default share never goes below this many entries (or the whole store, if smaller).
const MIN_DEFAULT_SHARE: usize = 100;

/// hashbrown's control-byte group width: extra control bytes every table allocates.
const GROUP_WIDTH: usize = 16;

/// How a [`ShardedReplayStore`] is sized: its capacity, each identity's share of it, and the
/// width of its expiry buckets.
///
/// ```
/// use vouch_keys::{ReplayConfig, ShardedReplayStore};
///
/// let config = ReplayConfig::new(200_000).identity_share(5_000);
/// assert_eq!(config.capacity(), 200_000);
/// assert_eq!(ReplayConfig::new(100_000).share(), 10_000);
/// let store = ShardedReplayStore::with_config(config);
/// assert!(store.is_empty());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayConfig {
    capacity: usize,
    share: usize,
    bucket_secs: u64,
}

impl ReplayConfig {
    /// A store holding at most `capacity` live entries (at least 1), with the default share
    /// ([`ReplayConfig::default_share`]) and 60-second expiry buckets.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            share: Self::default_share(capacity),
            bucket_secs: DEFAULT_BUCKET_SECS,
        }
    }

    /// The default share of a store of `capacity` entries: a tenth of it, but at least 100
    /// entries (or the whole store if it is smaller), so that tiny stores in tests and tools
    /// still take a burst from one signer.
    ///
    /// With a tenth, no identity can take more than 10% of the store, and it takes ten
    /// identities at their share to fill it. An identity's share is also its rate limit: it can
    /// keep at most `share` signatures live, and each lives for the time window (300 s maximum
    /// age plus 30 s future skew by default) plus up to one bucket, so 10 000 entries allow about
    /// 25 signed requests per second, sustained. Size the capacity for the number of identities
    /// you serve, or raise one signer's headroom with [`ReplayConfig::identity_share`].
    pub fn default_share(capacity: usize) -> usize {
        (capacity / 10).max(capacity.min(MIN_DEFAULT_SHARE)).max(1)
    }

    /// Lets each identity hold at most `entries` live entries (clamped to 1..=capacity). Over
    /// it, that identity alone is refused with [`Error::ReplayShareExceeded`].
    #[must_use]
    pub fn identity_share(mut self, entries: usize) -> Self {
        self.share = entries.clamp(1, self.capacity);
        self
    }

    /// Sets the width of the expiry buckets (at least 1 s; default 60 s).
    ///
    /// Entries are grouped by the bucket their `keep_until` falls in, and a whole bucket is
    /// dropped once its last second has passed: an entry is kept (and counts against its
    /// identity's share) up to `secs - 1` seconds after it expires. Each check probes every live
    /// bucket, about `window / secs + 1` of them (7 for the default 330 s window), so make
    /// buckets wider for policies with a longer maximum age.
    #[must_use]
    pub fn bucket_secs(mut self, secs: u64) -> Self {
        self.bucket_secs = secs.max(1);
        self
    }

    /// The most live entries the store holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The most live entries one identity holds.
    pub fn share(&self) -> usize {
        self.share
    }

    /// The width of an expiry bucket, in seconds.
    pub fn bucket_width(&self) -> u64 {
        self.bucket_secs
    }
}

/// A replay store in memory, split in 16 locked shards so that concurrent requests rarely wait
/// on each other, with a share per identity.
///
/// - **Bounded.** It holds at most [`ReplayConfig::capacity`] entries. When it is full of live
///   entries a new signature is refused with [`Error::ReplayStoreUnavailable`] (answer 503):
///   evicting a live entry would let that signature replay.
/// - **A share per identity.** No identity (the `owner` the server verified) holds more than
///   [`ReplayConfig::share`] live entries (by default a tenth of the capacity). Over its
///   share, that identity alone is refused with [`Error::ReplayShareExceeded`] (answer 429, with
///   `Retry-After` set to the seconds until its oldest entries are dropped). The count is exact
///   under concurrency: an identity's slot is reserved under its owner shard's lock before the
///   key is stored, and given back if the store turns out to be full. A replay is answered
///   [`Error::Replayed`] and never counted.
/// - **Expiry in O(1).** Entries are grouped in time buckets by `keep_until /`
///   [`ReplayConfig::bucket_width`], and a bucket is dropped whole (one deallocation) once its
///   last second has passed; no request scans the store. A key is looked up in every live bucket
///   of its shard (a handful), since one nonce signed again with a new `created` lands in
///   another bucket and must still be refused.
/// - **Compact.** Each entry is the first 128 bits of the SHA-256 replay key in a hash set:
///   16 bytes plus one control byte, at a load factor between 7/16 and 7/8, so 19 to 39 bytes
///   per live entry; see [`ShardedReplayStore::bytes`]. Two distinct signatures collide on 128
///   bits with probability at most `live / 2^128` per insert (about 3·10⁻³³ with a million
///   live entries), and a collision only refuses a fresh signature as a replay: it never admits
///   one. Grinding a nonce to collide with a given live key takes about `2^128 / live` hashes.
/// - **HashDoS.** Shard choice and the hash sets use std's keyed SipHash ([`RandomState`]), so
///   a signer grinding nonces can neither pile its keys in one shard nor in one probe chain.
///
/// A signature whose `keep_until` falls in a bucket this shard has already dropped (it expired
/// by the clock of a later request) is refused with [`Error::TooOld`]: the store may have
/// forgotten it, so it cannot tell a replay.
///
/// ```
/// use vouch_keys::ShardedReplayStore;
///
/// // 100 000 entries, each identity at most 10 000 of them.
/// let store = ShardedReplayStore::new(100_000);
/// assert_eq!(store.config().share(), 10_000);
/// assert_eq!((store.len(), store.identities()), (0, 0));
/// ```
#[derive(Debug)]
pub struct ShardedReplayStore {
    config: ReplayConfig,
    /// Entries held in all key shards (live, and expired ones in buckets not dropped yet).
    held: AtomicUsize,
    /// The last bucket all key shards were expired at (a full store sweeps once per bucket).
    swept: AtomicU64,
    /// Picks a key's shard.
    key_router: RandomState,
    /// Picks an owner's shard.
    owner_router: RandomState,
    /// The hasher of every key set (unrelated to `key_router`, whose bits would otherwise be
    /// the same in every key of one shard).
    set_hasher: RandomState,
    keys: Box<[Mutex<KeyShard>]>,
    owners: Box<[Mutex<OwnerShard>]>,
}

impl ShardedReplayStore {
    /// A store holding at most `capacity` live entries, with the default share per identity
    /// ([`ReplayConfig::new`]).
    pub fn new(capacity: usize) -> Self {
        Self::with_config(ReplayConfig::new(capacity))
    }

    /// A store sized by `config`.
    pub fn with_config(config: ReplayConfig) -> Self {
        Self {
            config,
            held: AtomicUsize::new(0),
            swept: AtomicU64::new(0),
            key_router: RandomState::new(),
            owner_router: RandomState::new(),
            set_hasher: RandomState::new(),
            keys: (0..SHARDS).map(|_| Mutex::default()).collect(),
            owners: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// How the store is sized.
    pub fn config(&self) -> &ReplayConfig {
        &self.config
    }

    /// Entries held, for metrics (a gauge). Expired buckets are dropped when their shard is
    /// next used, so this may include up to a bucket's worth of expired entries.
    pub fn len(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// True if the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Estimated heap bytes the store holds, for metrics (a gauge): the key tables as hashbrown
    /// lays them out (16 bytes and one control byte per slot), the bucket lists, and the
    /// per-identity counters. Divide by [`ShardedReplayStore::len`] for bytes per entry. Takes
    /// each shard's lock in turn.
    pub fn bytes(&self) -> usize {
        let keys: usize = self
            .keys
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.bytes()))
            .sum();
        let owners: usize = self
            .owners
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.bytes()))
            .sum();
        let shards = SHARDS
            * (core::mem::size_of::<Mutex<KeyShard>>() + core::mem::size_of::<Mutex<OwnerShard>>());
        keys + owners + shards
    }

    /// Identities holding entries, for metrics (a gauge). Takes each owner shard's lock in turn.
    pub fn identities(&self) -> usize {
        self.owners
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.held.len()))
            .sum()
    }

    fn check(&self, key: ReplayKey, owner: &str, keep_until: u64, now: u64) -> Result<(), Error> {
        let key = prefix(&key)?;
        let width = self.config.bucket_secs;
        let current = now / width;
        let bucket = keep_until / width;
        if self.len() >= self.config.capacity
            && self.swept.fetch_max(current, Ordering::AcqRel) < current
        {
            // Full by the count: first drop what has ended in every shard, once per bucket (no
            // lock is held here).
            self.expire_all(current);
        }
        let mut keys = lock(pick(&self.keys, &self.key_router, &key)?)?;
        self.forget(keys.expire(current));
        if keys.contains(key) {
            return Err(Error::Replayed);
        }
        if bucket < keys.frontier {
            return Err(Error::TooOld);
        }
        if self.len() >= self.config.capacity {
            return Err(Error::ReplayStoreUnavailable("replay store full"));
        }
        // Lock order: a key shard, then an owner shard; never the other way round.
        let owners = pick(&self.owners, &self.owner_router, owner)?;
        let reserved = lock(owners)?.reserve(owner, bucket, now, &self.config)?;
        let capacity = self.config.capacity;
        let admitted = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < capacity).then_some(n + 1)
            });
        if admitted.is_err() {
            lock(owners)?.release(owner, reserved);
            return Err(Error::ReplayStoreUnavailable("replay store full"));
        }
        keys.insert(bucket, key, &self.set_hasher);
        Ok(())
    }

    /// Drops every bucket that has ended by `now`, in all shards, and the counts of the
    /// identities that no longer hold anything.
    ///
    /// The store does this on its own, lazily: a shard drops its ended buckets when a request
    /// next uses it, and all shards do when the store looks full. Call this from a timer if
    /// [`ShardedReplayStore::len`], [`ShardedReplayStore::bytes`] and
    /// [`ShardedReplayStore::identities`] should be exact while the store is idle, or to give
    /// memory back sooner. It takes each lock in turn and touches only bucket lists, never
    /// individual entries.
    pub fn expire(&self, now: u64) {
        let current = now / self.config.bucket_secs;
        self.expire_all(current);
        for shard in &self.owners {
            if let Ok(mut shard) = shard.lock() {
                shard.expire(current);
            }
        }
    }

    /// Drops the ended buckets of every key shard.
    fn expire_all(&self, current: u64) {
        for shard in &self.keys {
            if let Ok(mut shard) = shard.lock() {
                self.forget(shard.expire(current));
            }
        }
    }

    fn forget(&self, entries: usize) {
        if entries > 0 {
            self.held.fetch_sub(entries, Ordering::AcqRel);
        }
    }
}

impl ReplayGuard for ShardedReplayStore {
    fn check_and_insert<'a>(
        &'a self,
        key: ReplayKey,
        owner: &'a str,
        keep_until: u64,
        now: u64,
    ) -> ReplayFuture<'a> {
        Box::pin(std::future::ready(self.check(key, owner, keep_until, now)))
    }
}

/// The stored part of a replay key: its first 128 bits.
fn prefix(key: &ReplayKey) -> Result<u128, Error> {
    key.as_bytes()
        .first_chunk::<16>()
        .map(|head| u128::from_le_bytes(*head))
        .ok_or(Error::ReplayStoreUnavailable(
            "replay key shorter than 16 bytes",
        ))
}

/// The shard `value` belongs to, by a keyed hash.
fn pick<'a, T, V: core::hash::Hash + ?Sized>(
    shards: &'a [Mutex<T>],
    router: &RandomState,
    value: &V,
) -> Result<&'a Mutex<T>, Error> {
    // Any bits of the hash pick a shard: truncating it to usize is fine.
    let index = router.hash_one(value) as usize % SHARDS;
    shards
        .get(index)
        .ok_or(Error::ReplayStoreUnavailable("no shard"))
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, Error> {
    m.lock()
        .map_err(|_| Error::ReplayStoreUnavailable("lock poisoned"))
}

#[allow(
    clippy::disallowed_types,
    reason = "a hash set for speed at a million entries; keyed SipHash (RandomState) against HashDoS"
)]
type KeySet = std::collections::HashSet<u128, RandomState>;

/// The keys of one shard whose `keep_until` falls in one bucket.
#[derive(Debug)]
struct KeyBucket {
    index: u64,
    keys: KeySet,
}

/// One key shard: its live buckets, oldest first.
#[derive(Debug, Default)]
struct KeyShard {
    /// Buckets below this index have been dropped.
    frontier: u64,
    buckets: Vec<KeyBucket>,
}

impl KeyShard {
    /// Drops the buckets that ended before bucket `current`; returns how many entries went.
    fn expire(&mut self, current: u64) -> usize {
        if current <= self.frontier {
            return 0;
        }
        self.frontier = current;
        let gone = self
            .buckets
            .iter()
            .take_while(|b| b.index < current)
            .count();
        self.buckets.drain(..gone).map(|b| b.keys.len()).sum()
    }

    fn contains(&self, key: u128) -> bool {
        self.buckets.iter().any(|b| b.keys.contains(&key))
    }

    fn insert(&mut self, index: u64, key: u128, hasher: &RandomState) {
        match self.buckets.binary_search_by_key(&index, |b| b.index) {
            Ok(found) => {
                if let Some(bucket) = self.buckets.get_mut(found) {
                    bucket.keys.insert(key);
                }
            }
            Err(at) => {
                let mut keys = KeySet::with_hasher(hasher.clone());
                keys.insert(key);
                self.buckets.insert(at, KeyBucket { index, keys });
            }
        }
    }

    fn bytes(&self) -> usize {
        self.buckets.capacity() * core::mem::size_of::<KeyBucket>()
            + self
                .buckets
                .iter()
                .map(|b| table_bytes(b.keys.capacity(), core::mem::size_of::<u128>()))
                .sum::<usize>()
    }
}

/// The heap bytes of a hashbrown table with room for `capacity` items of `slot` bytes: a power
/// of two of slots, at most 7/8 full (or one free slot below 8), one control byte per slot plus
/// a group.
fn table_bytes(capacity: usize, slot: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let slots = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        capacity.saturating_mul(8).div_ceil(7).next_power_of_two()
    };
    slots * (slot + 1) + GROUP_WIDTH
}

/// How many entries each identity of one owner shard holds, per bucket.
#[derive(Debug, Default)]
struct OwnerBucket {
    index: u64,
    counts: BTreeMap<Arc<str>, usize>,
}

/// One owner shard: live entries per identity, and the same per bucket so that a dropped bucket
/// gives its entries back without a scan.
#[derive(Debug, Default)]
struct OwnerShard {
    frontier: u64,
    held: BTreeMap<Arc<str>, usize>,
    buckets: Vec<OwnerBucket>,
}

impl OwnerShard {
    fn expire(&mut self, current: u64) {
        if current <= self.frontier {
            return;
        }
        self.frontier = current;
        let gone = self
            .buckets
            .iter()
            .take_while(|b| b.index < current)
            .count();
        let Self { held, buckets, .. } = self;
        for bucket in buckets.drain(..gone) {
            for (owner, n) in bucket.counts {
                if let Some(h) = held.get_mut(&owner) {
                    *h = h.saturating_sub(n);
                    if *h == 0 {
                        held.remove(&owner);
                    }
                }
            }
        }
    }

    /// Counts one more entry for `owner` in `bucket`, or refuses it over its share. Returns the
    /// bucket it was counted in.
    fn reserve(
        &mut self,
        owner: &str,
        bucket: u64,
        now: u64,
        config: &ReplayConfig,
    ) -> Result<u64, Error> {
        self.expire(now / config.bucket_secs);
        let bucket = bucket.max(self.frontier);
        let (name, held) = match self.held.get_key_value(owner) {
            Some((name, held)) => (name.clone(), *held),
            None => (Arc::from(owner), 0),
        };
        if held >= config.share {
            // The identity's oldest bucket is dropped once its last second has passed.
            let oldest = self
                .buckets
                .iter()
                .find(|b| b.counts.contains_key(owner))
                .map_or(self.frontier, |b| b.index);
            let retry_after = oldest
                .saturating_add(1)
                .saturating_mul(config.bucket_secs)
                .saturating_sub(now)
                .max(1);
            return Err(Error::ReplayShareExceeded { retry_after });
        }
        let at = match self.buckets.binary_search_by_key(&bucket, |b| b.index) {
            Ok(found) => found,
            Err(at) => {
                self.buckets.insert(
                    at,
                    OwnerBucket {
                        index: bucket,
                        counts: BTreeMap::new(),
                    },
                );
                at
            }
        };
        if let Some(b) = self.buckets.get_mut(at) {
            *b.counts.entry(name.clone()).or_insert(0) += 1;
        }
        *self.held.entry(name).or_insert(0) += 1;
        Ok(bucket)
    }

    /// Gives back an entry [`OwnerShard::reserve`] counted in `bucket` (unless that bucket has
    /// been dropped since, which gave it back already).
    fn release(&mut self, owner: &str, bucket: u64) {
        let Ok(at) = self.buckets.binary_search_by_key(&bucket, |b| b.index) else {
            return;
        };
        let Some(b) = self.buckets.get_mut(at) else {
            return;
        };
        match b.counts.get_mut(owner) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                b.counts.remove(owner);
            }
            None => return,
        }
        match self.held.get_mut(owner) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.held.remove(owner);
            }
            None => {}
        }
    }

    fn bytes(&self) -> usize {
        // A B-tree entry is a key and a value in a node of up to 11, about two-thirds full;
        // each identity's name is one `Arc<str>` allocation (two counters and the text).
        let entry = (core::mem::size_of::<Arc<str>>() + core::mem::size_of::<usize>()) * 3 / 2;
        let names: usize = self
            .held
            .keys()
            .map(|n| 2 * core::mem::size_of::<usize>() + n.len())
            .sum();
        let counted: usize = self.buckets.iter().map(|b| b.counts.len()).sum();
        self.buckets.capacity() * core::mem::size_of::<OwnerBucket>()
            + (self.held.len() + counted) * entry
            + names
    }
}
