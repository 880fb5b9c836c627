//! Redis-backed pin and replay stores, shared by several server replicas: one Redis server, or
//! a Redis Cluster.
//!
//! Every operation is one atomic Redis command or script; any Redis error (down, timeout, out of
//! memory, a cluster that lost a master) is reported as unavailable, and callers fail closed. Each
//! command is bounded by a response timeout (500 ms, redirections and retries included), so a
//! request never hangs on Redis. The connection reconnects on its own when Redis comes back (a
//! single server: the connection manager; a cluster: the cluster connection, which also follows
//! `MOVED` redirections and refreshes its slot map).
//!
//! At connect, both stores read Redis's `maxmemory-policy` (on a cluster: on every master) and
//! refuse a policy that could evict what they must keep: an evicted replay entry re-admits that
//! signature, an evicted pin lets another key be pinned. With `noeviction`, a full Redis refuses
//! writes instead, and the stores answer unavailable (503).
//!
//! The URL forms are [`RedisUrl`]'s.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    AsyncCommands as _, ConnectionAddr, ConnectionInfo, IntoConnectionInfo as _, SetOptions, Value,
};
use vouch_httpsig::{Error, ReplayFuture, ReplayGuard, ReplayKey};

use crate::pin::{PinStore, Pinned};
use crate::store::{StoreError, StoreFuture};

/// How long one Redis command may take before the store reports itself unavailable (on a
/// cluster, redirections and retries included).
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long connecting to one node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `connect` may take in all (connecting, discovering a cluster, the policy checks).
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// How often a cluster command is retried (after a redirection, a reconnection, `TRYAGAIN`),
/// within [`RESPONSE_TIMEOUT`].
const CLUSTER_RETRIES: u32 = 3;

/// True if `s` names a Redis store by its scheme: `redis://`, `rediss://`, `redis+unix://`,
/// `unix://`, `redis+cluster://` or `rediss+cluster://` (in any case). Whether the rest is
/// well formed is [`RedisUrl::parse`]'s business: a command line can tell a Redis URL from a
/// file name with this, and report a malformed URL from `parse` or `connect`.
///
/// ```
/// use vouch_keys::is_redis_url;
///
/// assert!(is_redis_url("redis://127.0.0.1:6379/0"));
/// assert!(is_redis_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000"));
/// assert!(!is_redis_url("/var/lib/vouch/pins.json"));
/// assert!(!is_redis_url("memory:1000"));
/// ```
pub fn is_redis_url(s: &str) -> bool {
    s.split_once("://")
        .is_some_and(|(scheme, _)| Scheme::of(scheme).is_some())
}

/// The schemes of [`RedisUrl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// `redis`, `rediss`, `redis+unix`, `unix`: the `redis` crate reads the URL.
    Single,
    /// `redis+cluster` (`tls: false`) or `rediss+cluster` (`tls: true`).
    Cluster { tls: bool },
}

impl Scheme {
    fn of(scheme: &str) -> Option<Self> {
        let is = |name: &str| scheme.eq_ignore_ascii_case(name);
        if is("redis") || is("rediss") || is("redis+unix") || is("unix") {
            Some(Self::Single)
        } else if is("redis+cluster") {
            Some(Self::Cluster { tls: false })
        } else if is("rediss+cluster") {
            Some(Self::Cluster { tls: true })
        } else {
            None
        }
    }
}

/// Where a Redis store lives: one server, or a Redis Cluster named by seed nodes.
/// [`RedisReplayStore::connect`] and [`RedisPinStore::connect`] parse their URL with it; parse it
/// first to report a malformed URL without connecting ([`is_redis_url`] only looks at the
/// scheme).
///
/// - One server: `redis://[user:password@]host[:port][/db]`, `redis+unix:///path` or
///   `unix:///path`, as the `redis` crate reads them. `rediss://` (TLS) is recognised, but
///   refused as long as vouch builds the `redis` crate without TLS, as it does today.
/// - A Redis Cluster: `redis+cluster://[user:password@]host[:port][,host[:port]…][/]` (TLS:
///   `rediss+cluster://`, refused as `rediss://` is), its seed nodes separated by commas (port
///   6379 if left out), from which the cluster's other nodes are discovered. No database (a
///   cluster has only 0) and no query. The credentials apply to every node. An IPv6 address is
///   written in brackets.
///
/// Its `Debug` shows the nodes, never the credentials.
///
/// ```
/// use vouch_keys::RedisUrl;
///
/// let cluster = RedisUrl::parse("redis+cluster://:secret@10.0.0.1:7000,10.0.0.2,[::1]:7002")?;
/// assert!(cluster.is_cluster());
/// assert_eq!(cluster.nodes(), ["10.0.0.1:7000", "10.0.0.2:6379", "[::1]:7002"]);
/// assert!(!format!("{cluster:?}").contains("secret"));
///
/// let single = RedisUrl::parse("redis://127.0.0.1:6379/2")?;
/// assert!(!single.is_cluster());
///
/// assert!(RedisUrl::parse("redis+cluster://10.0.0.1:7000/3").is_err()); // no database
/// assert!(RedisUrl::parse("redis+cluster://10.0.0.1:7000,").is_err()); // empty node
/// assert!(RedisUrl::parse("/var/lib/vouch/pins.json").is_err());
/// # Ok::<(), vouch_keys::StoreError>(())
/// ```
#[derive(Clone)]
pub struct RedisUrl {
    /// One node for a single server; the seed nodes of a cluster.
    nodes: Vec<ConnectionInfo>,
    cluster: bool,
}

impl RedisUrl {
    /// Parses `url`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Misconfigured`], saying what is wrong, if `url` is not one of the forms
    /// above.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::Misconfigured(format!("redis url: {why}"));
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad(
                "expected redis://, rediss://, redis+unix://, unix://, \
                            redis+cluster:// or rediss+cluster://",
            ));
        };
        match Scheme::of(scheme) {
            Some(Scheme::Single) => {
                let node = url
                    .into_connection_info()
                    .map_err(|e| bad(&e.to_string()))?;
                Ok(Self {
                    nodes: vec![node],
                    cluster: false,
                })
            }
            Some(Scheme::Cluster { tls }) => {
                let node_scheme = if tls { "rediss" } else { "redis" };
                let nodes = cluster_nodes(rest, node_scheme).map_err(|why| {
                    bad(&format!(
                        "{why} (expected {scheme}://[user:password@]host[:port][,host[:port]...])"
                    ))
                })?;
                Ok(Self {
                    nodes,
                    cluster: true,
                })
            }
            None => Err(bad(&format!("unknown scheme {scheme:?}"))),
        }
    }

    /// True for a Redis Cluster URL.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The nodes named: the server (`host:port`, or a socket's path), or the cluster's seed
    /// nodes.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| match &n.addr {
                ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. }
                    if host.contains(':') =>
                {
                    format!("[{host}]:{port}")
                }
                addr => addr.to_string(),
            })
            .collect()
    }
}

impl core::str::FromStr for RedisUrl {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        Self::parse(s)
    }
}

impl core::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RedisUrl")
            .field("cluster", &self.cluster)
            .field("nodes", &self.nodes())
            .finish()
    }
}

/// The seed nodes of a cluster URL after its `scheme://`, each as a `node_scheme://` URL with
/// the credentials (read by the `redis` crate, as for a single server).
fn cluster_nodes(rest: &str, node_scheme: &str) -> Result<Vec<ConnectionInfo>, String> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if let Some(c) = rest.chars().find(|c| matches!(c, '/' | '?' | '#')) {
        return Err(format!(
            "a cluster URL has no database, path or query (found {c:?})"
        ));
    }
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, rest),
    };
    if let Some(userinfo) = userinfo {
        check_userinfo(userinfo)?;
    }
    let credentials = userinfo.map_or_else(String::new, |u| format!("{u}@"));
    hosts
        .split(',')
        .map(|node| {
            let (host, port) = host_port(node)?;
            format!("{node_scheme}://{credentials}{host}:{port}/")
                .as_str()
                .into_connection_info()
                .map_err(|e| format!("node {node:?}: {e}"))
        })
        .collect()
}

/// Checks the `user:password` part: RFC 3986 userinfo (unreserved, percent-encoded, sub-delims,
/// `:`).
fn check_userinfo(userinfo: &str) -> Result<(), String> {
    let bytes = userinfo.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
            if hex.len() != 2 || !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err("a % in the credentials is not followed by two hex digits".into());
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b)) {
            return Err("the credentials hold a character that must be percent-encoded".into());
        }
        i += 1;
    }
    Ok(())
}

/// One seed node, `host[:port]` (`[v6]:port` for an IPv6 address): the host as it goes in a URL,
/// and the port (6379 when left out).
fn host_port(node: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(v6) = node.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("node {node:?}: no ] after the IPv6 address"))?;
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("node {node:?}: not an IPv6 address"));
        }
        let port =
            match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| {
                    format!("node {node:?}: expected :port after the IPv6 address")
                })?),
            };
        (node.get(..addr.len() + 2).unwrap_or(node), port)
    } else {
        let (host, port) = match node.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (node, None),
        };
        if host.is_empty() {
            return Err(if node.is_empty() {
                "empty node (two commas, or a comma at an end)".to_owned()
            } else {
                format!("node {node:?}: no host")
            });
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(format!("node {node:?}: not a host name or address"));
        }
        (host, port)
    };
    let port = match port {
        None => 6379,
        Some(p) => Some(p)
            .filter(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("node {node:?}: the port is not a number from 1 to 65535"))?,
    };
    Ok((host, port))
}

/// A connection to one server or to a cluster; both reconnect on their own.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(Arc<Cluster>),
}

/// `operation` cut at [`RESPONSE_TIMEOUT`]: the connection manager's own response timeout
/// does not cover its reconnecting (a request to a Redis that just went away waited 1.28 s), and
/// a request must never wait longer than its bound on Redis.
async fn bounded<T>(
    operation: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(RESPONSE_TIMEOUT, operation).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer from Redis in time",
        ))),
    }
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => Box::pin(bounded(c.req_packed_command(cmd))),
            Self::Cluster(c) => Box::pin(async move {
                let result = c.current().req_packed_command(cmd).await;
                c.observe(result.as_ref().err());
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => Box::pin(bounded(c.req_packed_commands(cmd, offset, count))),
            Self::Cluster(c) => Box::pin(async move {
                let result = c.current().req_packed_commands(cmd, offset, count).await;
                c.observe(result.as_ref().err());
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(_) => 0,
        }
    }
}

/// How long a cluster connection may answer nothing but timeouts before it is replaced.
const STALL: Duration = Duration::from_secs(3);

/// A Redis Cluster connection that is replaced when it stops answering.
///
/// The `redis` crate's cluster connection (0.32) can stall for good: while it recovers from a
/// node going away, it stops polling the requests in flight, and one of them holding its map of
/// connections blocks the recovery; every request then times out, even once the cluster is back
/// (found by `a_cluster_that_loses_a_master_fails_closed_then_recovers` under load). When the
/// requests have done nothing but time out for [`STALL`], a new connection is made in the
/// background, and replaces the old one once it is up. Until then, requests fail closed.
struct Cluster {
    client: ClusterClient,
    conn: Mutex<ClusterConnection>,
    health: Mutex<Health>,
}

struct Health {
    /// When a request last had an answer (a reply or an error from Redis, not a timeout).
    answered: Instant,
    /// When a replacement was last started.
    replaced: Instant,
    replacing: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cluster {
    async fn connect(client: ClusterClient) -> redis::RedisResult<Arc<Self>> {
        let conn = client.get_async_connection().await?;
        let now = Instant::now();
        Ok(Arc::new(Self {
            client,
            conn: Mutex::new(conn),
            health: Mutex::new(Health {
                answered: now,
                replaced: now,
                replacing: false,
            }),
        }))
    }

    /// The connection in use (a handle: the connection's requests go through one task).
    fn current(&self) -> ClusterConnection {
        lock(&self.conn).clone()
    }

    /// Notes how a request ended; replaces a connection that only times out.
    fn observe(self: &Arc<Self>, error: Option<&redis::RedisError>) {
        let now = Instant::now();
        let mut health = lock(&self.health);
        if !error.is_some_and(redis::RedisError::is_timeout) {
            health.answered = now;
            return;
        }
        if health.replacing
            || now.duration_since(health.answered) < STALL
            || now.duration_since(health.replaced) < STALL
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        health.replacing = true;
        health.replaced = now;
        drop(health);
        let this = Arc::clone(self);
        runtime.spawn(async move {
            let fresh =
                tokio::time::timeout(CONNECT_DEADLINE, this.client.get_async_connection()).await;
            if let Ok(Ok(conn)) = fresh {
                *lock(&this.conn) = conn;
                lock(&this.health).answered = Instant::now();
            }
            lock(&this.health).replacing = false;
        });
    }
}

/// Connects to `url` and checks the eviction policy for `keys`, within [`CONNECT_DEADLINE`].
async fn open(url: &str, keys: Keys, allow_evicting: bool) -> Result<Conn, StoreError> {
    let url = RedisUrl::parse(url)?;
    tokio::time::timeout(CONNECT_DEADLINE, async {
        let mut conn = connect(&url).await?;
        check_policy(&mut conn, keys, allow_evicting).await?;
        Ok(conn)
    })
    .await
    .unwrap_or_else(|_| {
        Err(StoreError::Unavailable(format!(
            "redis: connecting to {} took over {} s",
            url.nodes().join(","),
            CONNECT_DEADLINE.as_secs()
        )))
    })
}

async fn connect(url: &RedisUrl) -> Result<Conn, StoreError> {
    if url.cluster {
        let client = ClusterClient::builder(url.nodes.clone())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(10)
            .max_retry_wait(100)
            .build()
            .map_err(|e| StoreError::Misconfigured(format!("redis url: {e}")))?;
        let conn = Cluster::connect(client).await.map_err(|e| {
            if e.to_string().contains("cluster support disabled") {
                StoreError::Misconfigured(format!(
                    "redis cluster: a node is not part of a Redis Cluster ({e}): name a single \
                     server with redis://host:port"
                ))
            } else {
                StoreError::Unavailable(format!("redis cluster: {e}"))
            }
        })?;
        return Ok(Conn::Cluster(conn));
    }
    let node = url
        .nodes
        .first()
        .cloned()
        .ok_or_else(|| StoreError::Misconfigured("redis url: no server".into()))?;
    let client = redis::Client::open(node)
        .map_err(|e| StoreError::Misconfigured(format!("redis url: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(RESPONSE_TIMEOUT)
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_number_of_retries(1);
    let mut conn = ConnectionManager::new_with_config(client, config)
        .await
        .map(Conn::Single)
        .map_err(|e| StoreError::Unavailable(format!("redis: {e}")))?;
    refuse_cluster_node(&mut conn).await?;
    Ok(conn)
}

/// A single-server URL naming a node of a Redis Cluster would see only that node's slots:
/// refused, with the URL to use (when `INFO` tells).
async fn refuse_cluster_node(conn: &mut Conn) -> Result<(), StoreError> {
    let info: Result<String, _> = redis::cmd("INFO").arg("cluster").query_async(conn).await;
    if info.is_ok_and(|info| info.lines().any(|l| l.trim() == "cluster_enabled:1")) {
        return Err(StoreError::Misconfigured(
            "this Redis is a node of a Redis Cluster: name the cluster with \
             redis+cluster://host:port[,host:port...]"
                .into(),
        ));
    }
    Ok(())
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

/// Why a node's policy is unknown.
enum PolicyUnknown {
    /// The node did not answer (down, timeout, cluster down): unavailable.
    Unreachable(String),
    /// The node answered, but neither `INFO` nor `CONFIG GET` told: misconfigured.
    Unreadable(String),
}

fn unreachable(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_cluster_error()
}

/// The policy in an `INFO memory` reply.
fn policy_in_info(info: &redis::RedisResult<String>) -> Option<String> {
    let info = info.as_ref().ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("maxmemory_policy:"))
        .map(|policy| policy.trim().to_owned())
}

/// The policy in a `CONFIG GET maxmemory-policy` reply, asked because `INFO memory` did not tell.
fn policy_in_config(
    info: &redis::RedisResult<String>,
    config: redis::RedisResult<Vec<String>>,
) -> Result<String, PolicyUnknown> {
    let config = config.map_err(|e| {
        let why = format!(
            "{}; CONFIG GET maxmemory-policy: {e}",
            info.as_ref().err().map_or_else(
                || "INFO memory has no maxmemory_policy".to_owned(),
                |e| format!("INFO memory: {e}"),
            )
        );
        if unreachable(&e) {
            PolicyUnknown::Unreachable(why)
        } else {
            PolicyUnknown::Unreadable(why)
        }
    })?;
    config.get(1).cloned().ok_or_else(|| {
        PolicyUnknown::Unreadable("CONFIG GET maxmemory-policy: no value".to_owned())
    })
}

/// A single server's `maxmemory-policy`, from `INFO memory` (allowed where `CONFIG` is disabled)
/// or else `CONFIG GET`.
async fn server_policy(conn: &mut Conn) -> Result<String, PolicyUnknown> {
    let info = redis::cmd("INFO").arg("memory").query_async(conn).await;
    if let Some(policy) = policy_in_info(&info) {
        return Ok(policy);
    }
    let config = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(conn)
        .await;
    policy_in_config(&info, config)
}

/// A cluster master, from `CLUSTER SLOTS`.
struct Master {
    /// `host:port`, for messages.
    address: String,
    /// Its node ID.
    id: String,
    /// One slot it serves, to route commands to it.
    slot: u16,
}

/// The masters of a cluster.
async fn masters(conn: &mut ClusterConnection) -> Result<Vec<Master>, StoreError> {
    let slots = conn
        .route_command(
            redis::cmd("CLUSTER").arg("SLOTS"),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await
        .map_err(|e| StoreError::Unavailable(format!("redis cluster: CLUSTER SLOTS: {e}")))?;
    parse_masters(&slots).ok_or_else(|| {
        StoreError::Unavailable("redis cluster: CLUSTER SLOTS: unexpected reply".into())
    })
}

/// `CLUSTER SLOTS` answers `[[start, end, [host, port, id, …], replicas…], …]`.
fn parse_masters(slots: &Value) -> Option<Vec<Master>> {
    let Value::Array(ranges) = slots else {
        return None;
    };
    let mut masters: Vec<Master> = Vec::new();
    for range in ranges {
        let Value::Array(range) = range else {
            return None;
        };
        let slot: u16 = redis::from_redis_value(range.first()?).ok()?;
        let Value::Array(master) = range.get(2)? else {
            return None;
        };
        let host: String = redis::from_redis_value(master.first()?).ok()?;
        let port: u16 = redis::from_redis_value(master.get(1)?).ok()?;
        let id: String = redis::from_redis_value(master.get(2)?).ok()?;
        if !masters.iter().any(|m| m.id == id) {
            masters.push(Master {
                address: format!("{host}:{port}"),
                id,
                slot,
            });
        }
    }
    (!masters.is_empty()).then_some(masters)
}

/// Sends `cmd` to `master`, in a pipeline after `CLUSTER MYID` (one connection): `Err` if the
/// master cannot be reached, else its reply or error. The cluster connection sends a command
/// for a master it cannot reach to another node (for a redirection to bring it back), which
/// would answer for itself: the node ID tells.
async fn on_master<T: redis::FromRedisValue>(
    conn: &mut ClusterConnection,
    master: &Master,
    cmd: &redis::Cmd,
) -> Result<redis::RedisResult<T>, String> {
    let mut pipe = redis::pipe();
    pipe.cmd("CLUSTER").arg("MYID").add_command(cmd.clone());
    let route = SingleNodeRoutingInfo::SpecificNode(Route::new(master.slot, SlotAddr::Master));
    let replies = match conn.route_pipeline(&pipe, 0, 2, route).await {
        Ok(replies) => replies,
        Err(e) if unreachable(&e) => return Err(e.to_string()),
        // CLUSTER MYID does not fail on a cluster node: the command did.
        Err(e) => return Ok(Err(e)),
    };
    let mut replies = replies.into_iter();
    let id: Option<String> = replies
        .next()
        .and_then(|id| redis::from_owned_redis_value(id).ok());
    if id.as_deref() != Some(master.id.as_str()) {
        return Err("another node answered".into());
    }
    Ok(replies.next().map_or_else(
        || Err((redis::ErrorKind::ResponseError, "no reply").into()),
        redis::from_owned_redis_value,
    ))
}

/// A cluster master's `maxmemory-policy`, as [`server_policy`] reads it.
async fn master_policy(
    conn: &mut ClusterConnection,
    master: &Master,
) -> Result<String, PolicyUnknown> {
    let info = on_master(conn, master, redis::cmd("INFO").arg("memory"))
        .await
        .map_err(PolicyUnknown::Unreachable)?;
    if let Some(policy) = policy_in_info(&info) {
        return Ok(policy);
    }
    let config = on_master(
        conn,
        master,
        redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy"),
    )
    .await
    .map_err(PolicyUnknown::Unreachable)?;
    policy_in_config(&info, config)
}

/// Refuses a policy that may evict the store's `keys` (on a cluster: on any master), unless the
/// operator allowed it.
async fn check_policy(conn: &mut Conn, keys: Keys, allow_evicting: bool) -> Result<(), StoreError> {
    if allow_evicting {
        return Ok(());
    }
    match conn {
        Conn::Single(_) => judge(keys, server_policy(conn).await, ""),
        Conn::Cluster(cluster) => {
            let c = &mut cluster.current();
            for master in masters(c).await? {
                let policy = master_policy(c, &master).await;
                judge(
                    keys,
                    policy,
                    &format!(" on cluster master {}", master.address),
                )?;
            }
            Ok(())
        }
    }
}

/// Accepts a `policy` that never evicts `keys`; `on` names the node (a cluster's master).
fn judge(keys: Keys, policy: Result<String, PolicyUnknown>, on: &str) -> Result<(), StoreError> {
    let safe = |policy: &str| match keys {
        Keys::Expiring => policy == "noeviction",
        // Only the allkeys-* policies evict keys without a TTL.
        Keys::Persistent => policy == "noeviction" || policy.starts_with("volatile-"),
    };
    let hint = "set `maxmemory-policy noeviction` in redis.conf (a full Redis then refuses \
                writes, and vouch answers 503), or connect with \
                `RedisOptions::allow_evicting_policy(true)`";
    match policy {
        Ok(policy) if safe(&policy) => Ok(()),
        Ok(policy) => Err(StoreError::Misconfigured(format!(
            "redis maxmemory-policy is {policy}{on}, which can evict {} when memory runs short: \
             {hint}",
            match keys {
                Keys::Expiring => "replay entries (and re-admit their signatures)",
                Keys::Persistent => "pins (and let another key be pinned)",
            }
        ))),
        Err(PolicyUnknown::Unreachable(why)) => Err(StoreError::Unavailable(format!(
            "redis{on}: cannot read maxmemory-policy: {why}"
        ))),
        Err(PolicyUnknown::Unreadable(why)) => Err(StoreError::Misconfigured(format!(
            "cannot read redis maxmemory-policy{on} ({why}): allow INFO (on a cluster, and \
             CLUSTER MYID) for this user, or {hint}"
        ))),
    }
}

/// Pins in Redis under `prefix` + identity.
#[derive(Clone)]
pub struct RedisPinStore {
    conn: Conn,
    prefix: String,
}

impl RedisPinStore {
    /// Connects to `url` (one server, `redis://host:port/db`, or a cluster,
    /// `redis+cluster://host:port,host:port`: see [`RedisUrl`]), keys prefixed with
    /// `prefix`: one key per identity, `<prefix>pin:<identity>`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if Redis (any master of a cluster) cannot be reached;
    /// [`StoreError::Misconfigured`] if `url` is malformed, names one node of a cluster as a
    /// single server, or if `maxmemory-policy` (on any master) is one of `allkeys-*` (which evict
    /// pins) or cannot be read (see [`RedisPinStore::connect_with`]).
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
        let conn = open(url, Keys::Persistent, options.allow_evicting_policy).await?;
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
/// Keys, for the identity hash `h` (32 hex digits: the first 128 bits of SHA-256 over the
/// identity, so any identity makes a short key): `<prefix>{h}:r:<64 hex>` per entry (its
/// [`ReplayKey`]), `<prefix>{h}:s` per identity (the counters). The braces are a Redis Cluster
/// hash tag: both keys of one check are in one slot, as a script needs, and the identities are
/// spread over the masters. The layout is the same on a single server. An entry is thus kept
/// under its identity: a [`ReplayKey`] checked again under another owner is a new entry (in
/// vouch, the owner is the identity the keyid claims, and the replay key covers the keyid).
///
/// On a cluster, an identity whose slot's master is down is refused as unavailable (503); the
/// other identities are served until the cluster itself reports itself down
/// (`cluster-require-full-coverage`, the default), and then everyone is refused. The entries of
/// a master that restarts without persistence (or fails over to a replica that had not received
/// them) are lost: their signatures can be replayed once, within their window. The
/// `maxmemory-policy` is checked on the masters of the time of connecting: configure their
/// replicas alike, since a promoted replica is not checked again.
#[derive(Clone)]
pub struct RedisReplayStore {
    conn: Conn,
    prefix: String,
    share: u64,
    /// The script's SHA-1, as Redis names cached scripts.
    script_sha: String,
}

impl RedisReplayStore {
    /// Connects to `url` (one server, `redis://host:port/db`, or a cluster,
    /// `redis+cluster://host:port,host:port`: see [`RedisUrl`]), keys prefixed with
    /// `prefix` (which may not hold `{` or `}`), with [`RedisOptions::new`]: 10 000 live entries
    /// per identity, and only `maxmemory-policy noeviction`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if Redis (any master of a cluster) cannot be reached;
    /// [`StoreError::Misconfigured`] if `url` is malformed, names one node of a cluster as a
    /// single server, `prefix` holds a brace, or if `maxmemory-policy` (on any master) is not
    /// `noeviction` (every replay entry has a TTL, so the `volatile-*` policies evict them too) or
    /// cannot be read.
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
        if prefix.contains(['{', '}']) {
            return Err(StoreError::Misconfigured(format!(
                "redis key prefix {prefix:?}: no {{ or }} (the store sets its own hash tags)"
            )));
        }
        let conn = open(url, Keys::Expiring, options.allow_evicting_policy).await?;
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
        let keys = self.keys(&key, owner);
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

    /// The entry's key and the counters' key, under one hash tag: the owner's hash.
    fn keys(&self, key: &ReplayKey, owner: &str) -> [String; 2] {
        let digest = ring::digest::digest(&ring::digest::SHA256, owner.as_bytes());
        let tag = hex(digest.as_ref().get(..16).unwrap_or_default());
        let base = format!("{}{{{tag}}}:", self.prefix);
        [
            format!("{base}r:{}", hex(key.as_bytes())),
            format!("{base}s"),
        ]
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
