//! Redis-backed pin and replay stores, shared by several server replicas.
//!
//! Every operation is one atomic Redis command or script; any Redis error (down, timeout, out of
//! memory) is reported as unavailable, and callers fail closed. The connection manager
//! reconnects on its own when Redis comes back.
//!
//! At connect, both stores read Redis's `maxmemory-policy` and refuse a policy that could evict
//! what they must keep: an evicted replay entry re-admits that signature, an evicted pin lets
//! another key be pinned. With `noeviction`, a full Redis refuses writes instead, and the stores
//! answer unavailable (503).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, SetOptions};
use vouch_httpsig::{Error, ReplayFuture, ReplayGuard, ReplayKey};

use crate::pin::{PinStore, Pinned};
use crate::store::{StoreError, StoreFuture};

/// How long one Redis command may take before the store reports itself unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

async fn connect(url: &str) -> Result<ConnectionManager, StoreError> {
    let client =
        redis::Client::open(url).map_err(|e| StoreError::Unavailable(format!("redis url: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(RESPONSE_TIMEOUT)
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_number_of_retries(1);
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| StoreError::Unavailable(format!("redis: {e}")))
}

fn unavailable(e: &redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

/// Options for connecting a Redis store: each identity's share (replay store), and whether an
/// evicting `maxmemory-policy` is tolerated.
///
/// ```
/// use vouch_keys::RedisOptions;
///
/// let options = RedisOptions::new().identity_share(50_000);
/// assert_eq!(options.share(), 50_000);
/// assert_eq!(RedisOptions::default().share(), 10_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    share: u64,
    allow_evicting_policy: bool,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisOptions {
    /// The defaults: 10 000 live replay entries per identity (about 25 signed requests per
    /// second, sustained, under the default 300 s window), and only a policy that never evicts
    /// what the store keeps.
    pub fn new() -> Self {
        Self {
            share: DEFAULT_REDIS_SHARE,
            allow_evicting_policy: false,
        }
    }

    /// Lets each identity hold at most `entries` live replay entries (at least 1), across all
    /// replicas sharing the Redis. Over it, that identity alone is refused with
    /// [`Error::ReplayShareExceeded`]. Ignored by the pin store.
    #[must_use]
    pub fn identity_share(mut self, entries: u64) -> Self {
        self.share = entries.max(1);
        self
    }

    /// Connects even if Redis's `maxmemory-policy` may evict the store's keys, or cannot be
    /// read.
    ///
    /// **Dangerous.** Under an evicting policy, a Redis near its memory limit silently drops
    /// replay entries (and their signatures are accepted again) or pins (and another key can be
    /// pinned). Only for a Redis that can never reach its limit, and whose policy you cannot
    /// change.
    #[must_use]
    pub fn allow_evicting_policy(mut self, allow: bool) -> Self {
        self.allow_evicting_policy = allow;
        self
    }

    /// The most live replay entries one identity holds.
    pub fn share(&self) -> u64 {
        self.share
    }
}

/// The default share of the Redis replay store per identity.
const DEFAULT_REDIS_SHARE: u64 = 10_000;

/// Which keys a store sets: whether they expire (replay entries) or not (pins). Decides which
/// eviction policies are safe.
#[derive(Debug, Clone, Copy)]
enum Keys {
    Expiring,
    Persistent,
}

/// Redis's `maxmemory-policy`, from `INFO memory` (allowed where `CONFIG` is disabled) or else
/// `CONFIG GET`.
async fn eviction_policy(conn: &mut ConnectionManager) -> Result<String, String> {
    let info: Result<String, _> = redis::cmd("INFO").arg("memory").query_async(conn).await;
    if let Some(policy) = info.as_ref().ok().and_then(|info| {
        info.lines()
            .find_map(|line| line.strip_prefix("maxmemory_policy:"))
    }) {
        return Ok(policy.trim().to_owned());
    }
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(conn)
        .await
        .map_err(|e| {
            let info = info.err().map_or_else(
                || "INFO memory has no maxmemory_policy".to_owned(),
                |e| format!("INFO memory: {e}"),
            );
            format!("{info}; CONFIG GET maxmemory-policy: {e}")
        })?;
    config
        .get(1)
        .cloned()
        .ok_or_else(|| "CONFIG GET maxmemory-policy: no value".to_owned())
}

/// Refuses a policy that may evict the store's `keys`, unless the operator allowed it.
async fn check_policy(
    conn: &mut ConnectionManager,
    keys: Keys,
    allow_evicting: bool,
) -> Result<(), StoreError> {
    if allow_evicting {
        return Ok(());
    }
    let safe = |policy: &str| match keys {
        Keys::Expiring => policy == "noeviction",
        // Only the allkeys-* policies evict keys without a TTL.
        Keys::Persistent => policy == "noeviction" || policy.starts_with("volatile-"),
    };
    let hint = "set `maxmemory-policy noeviction` in redis.conf (a full Redis then refuses \
                writes, and vouch answers 503), or connect with \
                `RedisOptions::allow_evicting_policy(true)`";
    match eviction_policy(conn).await {
        Ok(policy) if safe(&policy) => Ok(()),
        Ok(policy) => Err(StoreError::Misconfigured(format!(
            "redis maxmemory-policy is {policy}, which can evict {} when memory runs short: {hint}",
            match keys {
                Keys::Expiring => "replay entries (and re-admit their signatures)",
                Keys::Persistent => "pins (and let another key be pinned)",
            }
        ))),
        Err(why) => Err(StoreError::Misconfigured(format!(
            "cannot read redis maxmemory-policy ({why}): allow INFO for this user, or {hint}"
        ))),
    }
}

/// Pins in Redis under `prefix` + identity.
#[derive(Clone)]
pub struct RedisPinStore {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisPinStore {
    /// Connects to `url` (`redis://host:port/db`), keys prefixed with `prefix`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if Redis cannot be reached; [`StoreError::Misconfigured`] if
    /// its `maxmemory-policy` is one of `allkeys-*` (which evict pins) or cannot be read (see
    /// [`RedisPinStore::connect_with`]).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, prefix, &RedisOptions::new()).await
    }

    /// Connects with `options` (only [`RedisOptions::allow_evicting_policy`] applies to pins).
    ///
    /// # Errors
    ///
    /// As [`RedisPinStore::connect`].
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        options: &RedisOptions,
    ) -> Result<Self, StoreError> {
        let mut conn = connect(url).await?;
        check_policy(&mut conn, Keys::Persistent, options.allow_evicting_policy).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, identity: &str) -> String {
        format!("{}pin:{identity}", self.prefix)
    }

    async fn check(&self, identity: &str, fingerprint: &str) -> Result<Pinned, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(identity);
        // SET NX pins atomically; if it did not, the pinned value decides. A reset racing in
        // between leaves nothing to compare with: try once more.
        for _ in 0..2 {
            let set: Option<String> = conn
                .set_options(
                    &key,
                    fingerprint,
                    SetOptions::default().conditional_set(redis::ExistenceCheck::NX),
                )
                .await
                .map_err(|e| unavailable(&e))?;
            if set.is_some() {
                return Ok(Pinned::New);
            }
            let pinned: Option<String> = conn.get(&key).await.map_err(|e| unavailable(&e))?;
            match pinned {
                Some(p) if p == fingerprint => return Ok(Pinned::Matched),
                Some(_) => {
                    return Err(StoreError::PinMismatch {
                        identity: identity.to_owned(),
                    });
                }
                None => continue,
            }
        }
        Err(StoreError::Unavailable("pin changed concurrently".into()))
    }
}

impl PinStore for RedisPinStore {
    fn get(&self, identity: &str) -> StoreFuture<'_, Option<String>> {
        let key = self.key(identity);
        let mut conn = self.conn.clone();
        Box::pin(async move { conn.get(&key).await.map_err(|e| unavailable(&e)) })
    }

    fn check_and_pin(&self, identity: &str, fingerprint: &str) -> StoreFuture<'_, Pinned> {
        let (identity, fingerprint) = (identity.to_owned(), fingerprint.to_owned());
        Box::pin(async move { self.check(&identity, &fingerprint).await })
    }

    fn reset(&self, identity: &str) -> StoreFuture<'_, bool> {
        let key = self.key(identity);
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let removed: u64 = conn.del(&key).await.map_err(|e| unavailable(&e))?;
            Ok(removed > 0)
        })
    }
}

impl core::fmt::Debug for RedisPinStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RedisPinStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Width of the time buckets the per-identity counters are kept in.
const BUCKET_SECS: u64 = 60;

/// The longest a signature can be kept (a year). A signature valid for longer (no `created` nor
/// `expires`, or a policy with a huge maximum age) is refused as unavailable rather than stored
/// without end.
const MAX_KEEP_SECS: u64 = 366 * 24 * 3600;

/// Checks and records one signature, atomically.
///
/// `KEYS[1]`: the replay entry; `KEYS[2]`: the signer's counters, a hash of bucket → entries.
/// `ARGV`: entry TTL (ms), the entry's bucket, the current bucket, the share, TTL of the
/// counters (ms, to the end of the entry's bucket).
///
/// Returns `{0, 0}` when recorded, `{1, 0}` for a replay (not counted), `{2, oldest}` when the
/// signer holds its share (`oldest`: its oldest live bucket). Counters of ended buckets are
/// deleted as they are met; the hash itself expires with its last bucket.
const SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {1, 0}
end
local current = tonumber(ARGV[3])
local held = 0
local oldest = -1
local counts = redis.call('HGETALL', KEYS[2])
for i = 1, #counts, 2 do
  local bucket = tonumber(counts[i])
  if bucket < current then
    redis.call('HDEL', KEYS[2], counts[i])
  else
    held = held + tonumber(counts[i + 1])
    if oldest < 0 or bucket < oldest then
      oldest = bucket
    end
  end
end
if held >= tonumber(ARGV[4]) then
  return {2, oldest}
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return {0, 0}
";

/// A replay store in Redis, shared by several replicas, with a share per identity.
///
/// Each check is one Lua script, atomic in Redis: refuse a replay (without counting it), refuse
/// an identity that holds its share ([`Error::ReplayShareExceeded`], answer 429), or record the
/// entry (`SET … PX ttl`, kept through `keep_until`) and count it. Each identity's live entries
/// are counted per 60-second bucket of `keep_until`, in one small hash per identity (about
/// seven fields under the default window), so the count is exact across replicas; a bucket's
/// count is dropped once the bucket has ended, up to 59 s after its entries expired.
///
/// The store's bound is Redis's `maxmemory` under `noeviction` (checked at connect): a full
/// Redis refuses the write, and the check fails closed with
/// [`Error::ReplayStoreUnavailable`], as it does when Redis cannot be reached.
///
/// Keys: `{prefix}replay:{64 hex}` per entry, `{prefix}share:{32 hex}` per identity (a hash of
/// the identity, so any identity makes a short key). On Redis Cluster the two keys of one check
/// would need one hash slot; this store uses a single node.
#[derive(Clone)]
pub struct RedisReplayStore {
    conn: ConnectionManager,
    prefix: String,
    share: u64,
    /// The script's SHA-1, as Redis names cached scripts.
    script_sha: String,
}

impl RedisReplayStore {
    /// Connects to `url`, keys prefixed with `prefix`, with [`RedisOptions::new`]: 10 000 live
    /// entries per identity, and only `maxmemory-policy noeviction`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if Redis cannot be reached; [`StoreError::Misconfigured`] if
    /// its `maxmemory-policy` is not `noeviction` (every replay entry has a TTL, so the
    /// `volatile-*` policies evict them too) or cannot be read.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, prefix, &RedisOptions::new()).await
    }

    /// Connects with `options`.
    ///
    /// # Errors
    ///
    /// As [`RedisReplayStore::connect`]; an evicting or unreadable policy is accepted with
    /// [`RedisOptions::allow_evicting_policy`].
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        options: &RedisOptions,
    ) -> Result<Self, StoreError> {
        let mut conn = connect(url).await?;
        check_policy(&mut conn, Keys::Expiring, options.allow_evicting_policy).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            share: options.share,
            script_sha: hex(ring::digest::digest(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                SCRIPT.as_bytes(),
            )
            .as_ref()),
        })
    }

    /// The most live entries one identity holds.
    pub fn share(&self) -> u64 {
        self.share
    }

    async fn check(
        &self,
        key: ReplayKey,
        owner: &str,
        keep_until: u64,
        now: u64,
    ) -> Result<(), Error> {
        let lifetime = keep_until.saturating_sub(now);
        if lifetime > MAX_KEEP_SECS {
            return Err(Error::ReplayStoreUnavailable(
                "signature valid for longer than the redis store keeps entries",
            ));
        }
        let current = now / BUCKET_SECS;
        let bucket = (keep_until / BUCKET_SECS).max(current);
        // Keep the entry through its last valid second, and the counters through the bucket's.
        let entry_ms = (lifetime + 1) * 1000;
        let bucket_ms = bucket
            .saturating_add(1)
            .saturating_mul(BUCKET_SECS)
            .saturating_sub(now)
            .max(1)
            .saturating_mul(1000);
        let keys = [self.entry_key(&key), self.share_key(owner)];
        let args = [entry_ms, bucket, current, self.share, bucket_ms];
        let (status, oldest) = self
            .run_script(&keys, &args)
            .await
            .map_err(|_| Error::ReplayStoreUnavailable("redis unreachable or refused the write"))?;
        match status {
            0 => Ok(()),
            1 => Err(Error::Replayed),
            2 => {
                let oldest = u64::try_from(oldest).unwrap_or(current);
                Err(Error::ReplayShareExceeded {
                    retry_after: oldest
                        .saturating_add(1)
                        .saturating_mul(BUCKET_SECS)
                        .saturating_sub(now)
                        .max(1),
                })
            }
            _ => Err(Error::ReplayStoreUnavailable("unexpected reply from redis")),
        }
    }

    /// Runs [`SCRIPT`] by its SHA-1 (`EVALSHA`), sending it whole (`EVAL`, which also caches it)
    /// only if Redis does not have it (after a restart or `SCRIPT FLUSH`).
    async fn run_script(
        &self,
        keys: &[String; 2],
        args: &[u64; 5],
    ) -> redis::RedisResult<(i64, i64)> {
        let mut conn = self.conn.clone();
        let call = |command: &str, script: &str| {
            let mut cmd = redis::cmd(command);
            cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
            cmd
        };
        match call("EVALSHA", &self.script_sha)
            .query_async(&mut conn)
            .await
        {
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                call("EVAL", SCRIPT).query_async(&mut conn).await
            }
            other => other,
        }
    }

    fn entry_key(&self, key: &ReplayKey) -> String {
        let mut name = format!("{}replay:", self.prefix);
        name.push_str(&hex(key.as_bytes()));
        name
    }

    fn share_key(&self, owner: &str) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, owner.as_bytes());
        let head = digest.as_ref().get(..16).unwrap_or_default();
        format!("{}share:{}", self.prefix, hex(head))
    }
}

fn hex(bytes: &[u8]) -> String {
    use core::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl ReplayGuard for RedisReplayStore {
    fn check_and_insert<'a>(
        &'a self,
        key: ReplayKey,
        owner: &'a str,
        keep_until: u64,
        now: u64,
    ) -> ReplayFuture<'a> {
        Box::pin(self.check(key, owner, keep_until, now))
    }
}

impl core::fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("prefix", &self.prefix)
            .field("share", &self.share)
            .finish_non_exhaustive()
    }
}
