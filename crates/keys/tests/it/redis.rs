//! The Redis stores against a real `redis-server` this harness starts on a free loopback port.
//! A missing `redis-server` is a failure with instructions, never a skip.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use vouch_httpsig::{Error, ReplayGuard};
use vouch_keys::{PinStore, Pinned, RedisPinStore, RedisReplayStore, StoreError};

use crate::support::{NOW, verified};

struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = Self { child: None, port };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}). The Redis tests need a real redis-server: \
                     install it with `apt-get install redis-server` (`cargo xtask ci` does this itself)"
                )
            });
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "redis-server did not listen on port {} within 5 s",
            self.port
        );
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_in_redis() {
    let server = RedisServer::start();
    let store = RedisPinStore::connect(&server.url(), "t1:").await.unwrap();
    assert_eq!(store.get("alice").await, Ok(None));
    assert_eq!(store.check_and_pin("alice", "k1").await, Ok(Pinned::New));
    assert_eq!(
        store.check_and_pin("alice", "k1").await,
        Ok(Pinned::Matched)
    );
    assert_eq!(
        store.check_and_pin("alice", "k2").await,
        Err(StoreError::PinMismatch {
            identity: "alice".into()
        })
    );
    // A second replica sees the same pin.
    let other = RedisPinStore::connect(&server.url(), "t1:").await.unwrap();
    assert_eq!(other.get("alice").await, Ok(Some("k1".into())));
    assert_eq!(other.reset("alice").await, Ok(true));
    assert_eq!(store.check_and_pin("alice", "k2").await, Ok(Pinned::New));
    // Racing first pins of one identity from both replicas: exactly one key wins.
    let (a, b) = tokio::join!(
        store.check_and_pin("bob", "from-a"),
        other.check_and_pin("bob", "from-b")
    );
    assert_eq!(
        usize::from(a.is_ok()) + usize::from(b.is_ok()),
        1,
        "{a:?} {b:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_verifiers_sharing_redis_accept_a_signature_once() {
    let server = RedisServer::start();
    let a = Arc::new(
        RedisReplayStore::connect(&server.url(), "t2:")
            .await
            .unwrap(),
    );
    let b = Arc::new(
        RedisReplayStore::connect(&server.url(), "t2:")
            .await
            .unwrap(),
    );
    for seed in 0..10u8 {
        let v = verified(seed);
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store: Arc<dyn ReplayGuard> = if i % 2 == 0 { a.clone() } else { b.clone() };
            let v = v.clone();
            tasks.push(tokio::spawn(async move {
                v.check_replay(&*store, "agent", NOW).await
            }));
        }
        let mut accepted = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => accepted += 1,
                Err(e) => assert_eq!(e, Error::Replayed),
            }
        }
        assert_eq!(accepted, 1, "signature {seed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_expire_after_their_window() {
    let server = RedisServer::start();
    let store = RedisReplayStore::connect(&server.url(), "t3:")
        .await
        .unwrap();
    let v = verified(1);
    // Kept through `keep_until`: with now == keep_until, one more second.
    store
        .check_and_insert(v.replay_key(), "agent", NOW, NOW)
        .await
        .unwrap();
    assert_eq!(
        store
            .check_and_insert(v.replay_key(), "agent", NOW, NOW)
            .await,
        Err(Error::Replayed)
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    store
        .check_and_insert(v.replay_key(), "agent", NOW + 1, NOW + 1)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_then_recovers() {
    let mut server = RedisServer::start();
    let replay = RedisReplayStore::connect(&server.url(), "t4:")
        .await
        .unwrap();
    let pins = RedisPinStore::connect(&server.url(), "t4:").await.unwrap();
    let before = verified(1);
    before.check_replay(&replay, "agent", NOW).await.unwrap();

    server.kill();
    let during = verified(2);
    let err = during
        .check_replay(&replay, "agent", NOW)
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(matches!(
        pins.check_and_pin("carol", "k").await,
        Err(StoreError::Unavailable(_))
    ));

    server.launch();
    // The connection manager reconnects on its own; give it a bounded number of tries.
    let mut recovered = false;
    for _ in 0..50 {
        match during.check_replay(&replay, "agent", NOW).await {
            Ok(()) => {
                recovered = true;
                break;
            }
            Err(e) => assert!(e.is_unavailable(), "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the store did not recover after Redis came back");
    assert_eq!(
        during.check_replay(&replay, "agent", NOW).await,
        Err(Error::Replayed)
    );
    assert_eq!(pins.check_and_pin("carol", "k").await, Ok(Pinned::New));
}
