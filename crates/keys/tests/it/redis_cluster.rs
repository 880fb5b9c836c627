//! The Redis stores against a real Redis Cluster: three masters, each a `redis-server` child
//! process this harness starts on free loopback ports (and its cluster bus on port + 10 000),
//! slots assigned with `CLUSTER ADDSLOTS` and nodes joined with `CLUSTER MEET` (no `redis-cli`).
//! A missing `redis-server` is a failure with instructions, never a skip. Every wait is bounded.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vouch_httpsig::{Error, ReplayGuard as _};
use vouch_keys::{
    PinStore, Pinned, RedisOptions, RedisPinStore, RedisReplayStore, RedisUrl, StoreError,
    is_redis_url,
};

use crate::redis::RedisServer;
use crate::support::{NOW, replay_keys};

const SLOTS: usize = 16_384;
const MASTERS: usize = 3;

struct Node {
    port: u16,
    dir: PathBuf,
    /// Extra `redis-server` arguments.
    extra: Vec<String>,
    child: Option<Child>,
}

impl Node {
    fn launch(&mut self, node_timeout: Duration) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(self.dir.join("nodes.conf"))
            .args([
                "--cluster-node-timeout",
                &node_timeout.as_millis().to_string(),
            ])
            .args(["--save", "", "--dir"])
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}). The Redis Cluster tests need a real \
                     redis-server: install it with `apt-get install redis-server` \
                     (`cargo xtask ci` does this itself)"
                )
            });
        self.child = Some(child);
        let port = self.port;
        let child = self.child.as_mut().unwrap();
        wait_for(Duration::from_secs(5), "redis-server to listen", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("redis-server on port {port} exited at start: {status}");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn connection(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(1))
            .unwrap()
    }
}

struct RedisCluster {
    nodes: Vec<Node>,
    node_timeout: Duration,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Three masters with the default configuration and a 5 s node timeout.
    fn start() -> Self {
        Self::start_with(Duration::from_secs(5), [&[], &[], &[]])
    }

    /// Three masters, master `i` started with the arguments `extra[i]`; `node_timeout` is how
    /// long a silent master takes to be failed.
    fn start_with(node_timeout: Duration, extra: [&[&str]; MASTERS]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut ports = Vec::new();
        let mut nodes = Vec::new();
        for (i, extra) in extra.into_iter().enumerate() {
            let port = free_cluster_port(&ports);
            ports.push(port);
            let node_dir = dir.path().join(format!("node{i}"));
            std::fs::create_dir(&node_dir).unwrap();
            let mut node = Node {
                port,
                dir: node_dir,
                extra: extra.iter().map(|a| (*a).to_owned()).collect(),
                child: None,
            };
            node.launch(node_timeout);
            nodes.push(node);
        }
        let cluster = Self {
            nodes,
            node_timeout,
            _dir: dir,
        };
        let mut conns: Vec<redis::Connection> =
            cluster.nodes.iter().map(Node::connection).collect();
        for (i, conn) in conns.iter_mut().enumerate() {
            // Distinct epochs, as `redis-cli --cluster create` sets them.
            redis::cmd("CLUSTER")
                .arg("SET-CONFIG-EPOCH")
                .arg(i + 1)
                .exec(conn)
                .unwrap();
            let slots: Vec<usize> = (i * SLOTS / MASTERS..(i + 1) * SLOTS / MASTERS).collect();
            redis::cmd("CLUSTER")
                .arg("ADDSLOTS")
                .arg(slots)
                .exec(conn)
                .unwrap();
        }
        for node in &cluster.nodes[1..] {
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(node.port)
                .exec(&mut conns[0])
                .unwrap();
        }
        cluster.wait_state(&[0, 1, 2], "ok");
        cluster
    }

    /// The cluster's URL, naming the first two masters as seeds (the third is discovered).
    fn url(&self) -> String {
        format!(
            "redis+cluster://127.0.0.1:{},127.0.0.1:{}",
            self.nodes[0].port, self.nodes[1].port
        )
    }

    /// Master `i`'s `cluster_state`.
    fn state_of(&self, i: usize) -> String {
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut self.nodes[i].connection())
            .unwrap();
        info.lines()
            .find_map(|l| l.trim().strip_prefix("cluster_state:"))
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits (bounded) until each of `nodes` reports `cluster_state:<state>`.
    fn wait_state(&self, nodes: &[usize], state: &str) {
        let want = format!("cluster_state:{state}");
        let within = self.node_timeout * 4 + Duration::from_secs(10);
        wait_for(within, &want, || {
            nodes.iter().all(|&i| {
                let Ok(client) =
                    redis::Client::open(format!("redis://127.0.0.1:{}/", self.nodes[i].port))
                else {
                    return false;
                };
                let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1))
                else {
                    return false;
                };
                redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query::<String>(&mut conn)
                    .is_ok_and(|info| info.lines().any(|l| l.trim() == want))
            })
        });
    }

    /// The hash tags of the keys master `i` holds.
    fn tags_on(&self, i: usize) -> BTreeSet<String> {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut self.nodes[i].connection())
            .unwrap();
        keys.iter()
            .filter_map(|k| {
                let (_, rest) = k.split_once('{')?;
                Some(rest.split_once('}')?.0.to_owned())
            })
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

/// A free loopback port whose cluster bus port (+ 10 000) is free too.
fn free_cluster_port(taken: &[u16]) -> u16 {
    for _ in 0..500 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if taken
            .iter()
            .any(|&t| t == port || t + 10_000 == port || t == bus)
        {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair (port, port + 10000) on 127.0.0.1");
}

fn wait_for(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < within,
            "waited {within:?} for {what} in vain"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cluster_urls_are_recognised_and_parsed_strictly() {
    for url in [
        "redis://127.0.0.1:6379/0",
        "rediss://cache.example:6380",
        "redis+unix:///run/redis.sock",
        "unix:///run/redis.sock",
        "redis+cluster://10.0.0.1:7000",
        "REDIS+CLUSTER://10.0.0.1:7000",
        "rediss+cluster://10.0.0.1:7000,10.0.0.2:7000",
    ] {
        assert!(is_redis_url(url), "{url}");
    }
    for not in [
        "memory",
        "memory:100",
        "pins.json",
        "/var/lib/pins",
        "http://x",
        "redis:",
    ] {
        assert!(!is_redis_url(not), "{not}");
    }

    let url =
        RedisUrl::parse("redis+cluster://user:p%40ss@a.example:7000,10.0.0.2,[::1]:7002/").unwrap();
    assert!(url.is_cluster());
    assert_eq!(
        url.nodes(),
        ["a.example:7000", "10.0.0.2:6379", "[::1]:7002"]
    );
    // No TLS in this build: recognised, but refused.
    for tls in ["rediss://127.0.0.1:6380", "rediss+cluster://127.0.0.1:7000"] {
        assert!(matches!(
            RedisUrl::parse(tls),
            Err(StoreError::Misconfigured(why)) if why.contains("TLS")
        ));
    }
    assert!(!format!("{url:?}").contains("p%40ss"));
    assert!(!format!("{url:?}").contains("p@ss"));
    assert!(
        !RedisUrl::parse("redis://127.0.0.1:6379/3")
            .unwrap()
            .is_cluster()
    );
    assert!("redis+cluster://127.0.0.1:7000".parse::<RedisUrl>().is_ok());

    for bad in [
        "redis+cluster://",
        "redis+cluster:///",
        "redis+cluster://10.0.0.1:7000,",
        "redis+cluster://,10.0.0.1:7000",
        "redis+cluster://10.0.0.1:7000,,10.0.0.2:7000",
        "redis+cluster://10.0.0.1:7000/0",
        "redis+cluster://10.0.0.1:7000?protocol=resp3",
        "redis+cluster://10.0.0.1:7000#x",
        "redis+cluster://10.0.0.1:0",
        "redis+cluster://10.0.0.1:65536",
        "redis+cluster://10.0.0.1:+7000",
        "redis+cluster://10.0.0.1:",
        "redis+cluster://10.0.0.1:7000:1",
        "redis+cluster://:7000",
        "redis+cluster://a b:7000",
        "redis+cluster://[::1",
        "redis+cluster://[::1]7000",
        "redis+cluster://[zz]:7000",
        "redis+cluster://::1:7000",
        "redis+cluster://us er@10.0.0.1:7000",
        "redis+cluster://u%4@10.0.0.1:7000",
        "redis+unix+cluster://x",
        "redis+sentinel://10.0.0.1:26379",
        "redis://",
        "pins.json",
        "",
    ] {
        let err = RedisUrl::parse(bad).unwrap_err();
        assert!(matches!(err, StoreError::Misconfigured(_)), "{bad}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_no_cluster_or_to_the_wrong_kind_fails() {
    // Nobody listening: unavailable, within the connect deadline.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let err = RedisReplayStore::connect(&format!("redis+cluster://127.0.0.1:{port}"), "u1:")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(6));

    // A single server named as a cluster.
    let single = RedisServer::start();
    let as_cluster = single.url().replace("redis://", "redis+cluster://");
    let as_cluster = as_cluster.trim_end_matches('/');
    let err = RedisPinStore::connect(as_cluster, "u1:").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Misconfigured(why) if why.contains("redis://")),
        "{err}"
    );
    // A malformed URL is refused before connecting; so is a prefix with a hash tag.
    assert!(matches!(
        RedisReplayStore::connect("redis+cluster://127.0.0.1:1,", "u1:").await,
        Err(StoreError::Misconfigured(_))
    ));
    assert!(matches!(
        RedisReplayStore::connect(&single.url(), "u1:{tenant}:").await,
        Err(StoreError::Misconfigured(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_a_cluster_accept_each_signature_once_on_every_master() {
    let cluster = RedisCluster::start();
    let a = Arc::new(
        RedisReplayStore::connect(&cluster.url(), "c1:")
            .await
            .unwrap(),
    );
    let b = Arc::new(
        RedisReplayStore::connect(&cluster.url(), "c1:")
            .await
            .unwrap(),
    );
    // Many identities, so that their hash tags land on every master; each signature sent eight
    // times at once through both replicas.
    let identities = 48;
    let keys = replay_keys(identities);
    let mut tasks = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        for i in 0..8 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let key = *key;
            tasks.push(tokio::spawn(async move {
                (
                    n,
                    store
                        .check_and_insert(key, &format!("agent-{n}"), NOW + 300, NOW)
                        .await,
                )
            }));
        }
    }
    let mut accepted = vec![0; identities];
    for t in tasks {
        match t.await.unwrap() {
            (n, Ok(())) => accepted[n] += 1,
            (_, Err(e)) => assert_eq!(e, Error::Replayed),
        }
    }
    assert_eq!(accepted, vec![1; identities]);
    let per_master: Vec<usize> = (0..MASTERS).map(|i| cluster.tags_on(i).len()).collect();
    assert!(per_master.iter().all(|&n| n > 0), "{per_master:?}");
    assert_eq!(per_master.iter().sum::<usize>(), identities);

    // One node of the cluster named as a single server is refused: it holds a third of it.
    let node = format!("redis://127.0.0.1:{}/", cluster.nodes[2].port);
    for err in [
        RedisReplayStore::connect(&node, "c1:").await.unwrap_err(),
        RedisPinStore::connect(&node, "c1:").await.unwrap_err(),
    ] {
        assert!(
            matches!(&err, StoreError::Misconfigured(why) if why.contains("redis+cluster://")),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_share_of_each_identity_holds_across_replicas_on_a_cluster() {
    let cluster = RedisCluster::start();
    let options = RedisOptions::new().identity_share(7);
    let a = Arc::new(
        RedisReplayStore::connect_with(&cluster.url(), "c2:", &options)
            .await
            .unwrap(),
    );
    let b = Arc::new(
        RedisReplayStore::connect_with(&cluster.url(), "c2:", &options)
            .await
            .unwrap(),
    );
    let identities = 9;
    let per_identity = 20;
    let keys = replay_keys(identities * per_identity);
    let mut tasks = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        let store = if n % 2 == 0 { a.clone() } else { b.clone() };
        let (owner, key) = (n % identities, *key);
        tasks.push(tokio::spawn(async move {
            let result = store
                .check_and_insert(key, &format!("mallory-{owner}"), NOW + 300, NOW)
                .await;
            (owner, key, result)
        }));
    }
    let mut accepted = vec![Vec::new(); identities];
    for t in tasks {
        match t.await.unwrap() {
            (owner, key, Ok(())) => accepted[owner].push(key),
            (_, _, Err(Error::ReplayShareExceeded { retry_after })) => {
                assert_eq!(retry_after, (NOW + 300) / 60 * 60 + 60 - NOW);
            }
            (_, _, Err(e)) => panic!("{e}"),
        }
    }
    assert!(accepted.iter().all(|keys| keys.len() == 7), "{accepted:?}");
    // Over the share, a replay is still a replay (and not counted), through either replica.
    for (owner, keys) in accepted.iter().enumerate() {
        for key in keys {
            assert_eq!(
                b.check_and_insert(*key, &format!("mallory-{owner}"), NOW + 300, NOW)
                    .await,
                Err(Error::Replayed)
            );
        }
    }
    // The identities were spread over more than one master.
    let masters_used = (0..MASTERS)
        .filter(|&i| !cluster.tags_on(i).is_empty())
        .count();
    assert!(masters_used > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_are_shared_across_replicas_on_a_cluster() {
    let cluster = RedisCluster::start();
    let a = RedisPinStore::connect(&cluster.url(), "c3:").await.unwrap();
    let b = RedisPinStore::connect(&cluster.url(), "c3:").await.unwrap();
    for n in 0..30 {
        let identity = format!("agent-{n}@example.org");
        assert_eq!(
            a.check_and_pin(&identity, &format!("k{n}")).await,
            Ok(Pinned::New)
        );
        assert_eq!(b.get(&identity).await, Ok(Some(format!("k{n}"))));
        assert_eq!(
            b.check_and_pin(&identity, &format!("k{n}")).await,
            Ok(Pinned::Matched)
        );
        assert_eq!(
            b.check_and_pin(&identity, "another").await,
            Err(StoreError::PinMismatch {
                identity: identity.clone()
            })
        );
        assert_eq!(b.reset(&identity).await, Ok(true));
        assert_eq!(a.get(&identity).await, Ok(None));
        // Racing first pins from both replicas: exactly one key wins.
        let race = format!("race-{n}");
        let (x, y) = tokio::join!(a.check_and_pin(&race, "x"), b.check_and_pin(&race, "y"));
        assert_eq!(
            usize::from(x.is_ok()) + usize::from(y.is_ok()),
            1,
            "{x:?} {y:?}"
        );
    }
    // The pins are spread over the masters.
    for i in 0..MASTERS {
        let keys: u64 = redis::cmd("DBSIZE")
            .query(&mut cluster.nodes[i].connection())
            .unwrap();
        assert!(keys > 0, "master {i} holds no pin");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_policy_on_any_cluster_master_is_refused() {
    // Only the last master (not a seed, found by discovery) evicts. The policy is read where
    // INFO is disabled (the first master) or CONFIG is (the second).
    let cluster = RedisCluster::start_with(
        Duration::from_secs(5),
        [
            &["--rename-command", "INFO", ""],
            &["--rename-command", "CONFIG", ""],
            &["--maxmemory-policy", "allkeys-lru"],
        ],
    );
    let evicting = format!("127.0.0.1:{}", cluster.nodes[2].port);
    let err = RedisReplayStore::connect(&cluster.url(), "c4:")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Misconfigured(why)
            if why.contains("allkeys-lru") && why.contains(&evicting)),
        "{err}"
    );
    assert!(matches!(
        RedisPinStore::connect(&cluster.url(), "c4:").await,
        Err(StoreError::Misconfigured(_))
    ));
    // The operator's explicit choice.
    let allowed = RedisOptions::new().allow_evicting_policy(true);
    RedisReplayStore::connect_with(&cluster.url(), "c4:", &allowed)
        .await
        .unwrap();

    // volatile-* evicts replay entries (they all have a TTL), not pins.
    let mut last = cluster.nodes[2].connection();
    let set = |policy: &str, conn: &mut redis::Connection| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(policy)
            .exec(conn)
            .unwrap();
    };
    set("volatile-lru", &mut last);
    let err = RedisReplayStore::connect(&cluster.url(), "c4:")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Misconfigured(why) if why.contains("volatile-lru")),
        "{err}"
    );
    RedisPinStore::connect(&cluster.url(), "c4:").await.unwrap();

    set("noeviction", &mut last);
    RedisReplayStore::connect(&cluster.url(), "c4:")
        .await
        .unwrap();
    RedisPinStore::connect(&cluster.url(), "c4:").await.unwrap();
}

/// The hash tag of `identity`'s replay keys: the first 128 bits of SHA-256 over it, in hex.
fn tag(identity: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, identity.as_bytes()).as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks `keys[n]` for `agent-n`, all at once; each check is bounded by the store's timeout.
async fn check_all(
    store: &Arc<RedisReplayStore>,
    keys: &[vouch_httpsig::ReplayKey],
) -> Vec<Result<(), Error>> {
    let tasks: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(n, key)| {
            let (store, key) = (store.clone(), *key);
            tokio::spawn(async move {
                store
                    .check_and_insert(key, &format!("agent-{n}"), NOW + 300, NOW)
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_loses_a_master_fails_closed_then_recovers() {
    // The master to be killed writes every command to its append-only file before answering,
    // so that what it accepted survives its restart.
    let mut cluster = RedisCluster::start_with(
        Duration::from_secs(1),
        [
            &[],
            &["--appendonly", "yes", "--appendfsync", "always"],
            &[],
        ],
    );
    let a = Arc::new(
        RedisReplayStore::connect(&cluster.url(), "c5:")
            .await
            .unwrap(),
    );
    let b = Arc::new(
        RedisReplayStore::connect(&cluster.url(), "c5:")
            .await
            .unwrap(),
    );
    let pins = RedisPinStore::connect(&cluster.url(), "c5:").await.unwrap();
    let identities = 30;
    let before = replay_keys(identities);
    let during = replay_keys(identities);
    assert!(check_all(&a, &before).await.iter().all(Result::is_ok));
    // Which identities the master to be killed serves (by the documented key layout).
    let victim_tags = cluster.tags_on(1);
    let on_victim: Vec<bool> = (0..identities)
        .map(|n| victim_tags.contains(&tag(&format!("agent-{n}"))))
        .collect();
    let victims = on_victim.iter().filter(|&&v| v).count();
    assert!(victims > 0 && victims < identities, "{victims}");
    assert_eq!(victims, victim_tags.len());

    cluster.nodes[1].kill();
    let started = Instant::now();
    let unavailable = |r: &Result<(), Error>| r.as_ref().is_err_and(Error::is_unavailable);
    // The victim's identities are refused as unavailable, replays and new signatures alike;
    // the others' replays are still refused: nothing is accepted again.
    let replays = check_all(&b, &before).await;
    let fresh = check_all(&b, &during).await;
    // Bounded: each check ends within the store's response timeout.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    for n in 0..identities {
        if on_victim[n] {
            assert!(unavailable(&replays[n]), "{n}: {:?}", replays[n]);
            assert!(unavailable(&fresh[n]), "{n}: {:?}", fresh[n]);
        } else {
            assert!(
                replays[n] == Err(Error::Replayed) || unavailable(&replays[n]),
                "{n}: {:?}",
                replays[n]
            );
            assert!(
                fresh[n].is_ok() || unavailable(&fresh[n]),
                "{n}: {:?}",
                fresh[n]
            );
        }
    }
    // Until the live masters agree the victim has failed (a node timeout or more), they still
    // serve their own identities.
    let served = on_victim.iter().position(|&v| !v).unwrap();
    let probe = replay_keys(1)[0];
    let probing = Instant::now();
    while cluster.state_of(0) == "ok" {
        let result = a
            .check_and_insert(probe, &format!("agent-{served}"), NOW + 300, NOW)
            .await;
        match result {
            Ok(()) => break,
            Err(e) => assert!(e.is_unavailable(), "{e}"),
        }
        assert!(
            probing.elapsed() < Duration::from_secs(5),
            "a live master's identity was refused while the cluster was up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Pins on the dead master are unavailable too, never a new pin.
    let started = Instant::now();
    let pinning: Vec<_> = (0..30)
        .map(|n| {
            let pins = pins.clone();
            tokio::spawn(async move { pins.check_and_pin(&format!("p-{n}"), "k").await })
        })
        .collect();
    let mut pinned = Vec::new();
    for t in pinning {
        pinned.push(t.await.unwrap());
    }
    assert!(
        pinned
            .iter()
            .all(|r| r == &Ok(Pinned::New) || matches!(r, Err(StoreError::Unavailable(_))))
    );
    assert!(pinned.iter().any(Result::is_err));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // A replica connecting now cannot check the dead master's policy: unavailable.
    let err = RedisReplayStore::connect(&cluster.url(), "c5:")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");

    // Once the live masters agree the victim has failed, the whole cluster refuses.
    cluster.wait_state(&[0, 2], "fail");
    let down = check_all(&a, &during).await;
    assert!(down.iter().all(unavailable), "{down:?}");
    let down = check_all(&a, &before).await;
    assert!(down.iter().all(unavailable), "{down:?}");

    // The master comes back with its data; the stores reconnect on their own, and nothing
    // recorded before or during the outage is accepted again.
    cluster.nodes[1].launch(cluster.node_timeout);
    cluster.wait_state(&[0, 1, 2], "ok");
    // Every replica reconnects: the entries from before the outage (the victim's from its
    // append-only file) are replays through either.
    for store in [&a, &b] {
        let started = Instant::now();
        loop {
            let results = check_all(store, &before).await;
            assert!(!results.iter().any(Result::is_ok), "{results:?}");
            if results.iter().all(|r| r == &Err(Error::Replayed)) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the stores did not recover with the cluster: {results:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for n in 0..identities {
        let (after, retried) = answer(&b, during[n], &format!("agent-{n}")).await;
        if on_victim[n] {
            // Refused during the outage, never recorded: accepted now, once (or already
            // recorded by an attempt that timed out).
            assert!(
                after == Ok(()) || (retried && after == Err(Error::Replayed)),
                "{n}"
            );
        } else if fresh[n].is_ok() {
            // Accepted during the outage: a replay now.
            assert_eq!(after, Err(Error::Replayed), "{n}");
        } else {
            // Timed out during the outage: recorded or not.
            assert!(after.is_ok() || after == Err(Error::Replayed), "{n}");
        }
    }
    for (n, key) in during.iter().enumerate() {
        assert_eq!(
            answer(&a, *key, &format!("agent-{n}")).await.0,
            Err(Error::Replayed)
        );
    }
}

/// Checks `key` for `owner` until the store answers other than unavailable (bounded), and
/// whether an attempt timed out first (and may have recorded the key all the same).
async fn answer(
    store: &RedisReplayStore,
    key: vouch_httpsig::ReplayKey,
    owner: &str,
) -> (Result<(), Error>, bool) {
    for attempt in 0..20 {
        match store.check_and_insert(key, owner, NOW + 300, NOW).await {
            Err(e) if e.is_unavailable() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return (other, attempt > 0),
        }
    }
    panic!("the store stayed unavailable for {owner}");
}
