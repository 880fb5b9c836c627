//! The sharded replay store: one acceptance per signature, a share per identity, expiry by
//! whole buckets, fail closed when full.

use std::sync::Arc;

use vouch_httpsig::{Error, ReplayGuard, ReplayKey};
use vouch_keys::{ReplayConfig, ShardedReplayStore};

use crate::support::{NOW, ready, replay_keys, verified};

/// The default bucket width.
const BUCKET: u64 = 60;

/// The signature lifetime the fixtures use: signed at `now`, valid for the default 300 s.
fn insert(store: &ShardedReplayStore, key: ReplayKey, owner: &str, now: u64) -> Result<(), Error> {
    ready(store.check_and_insert(key, owner, now + 300, now))
}

/// The first second at which the bucket holding `keep_until` has been dropped.
fn dropped_at(keep_until: u64) -> u64 {
    (keep_until / BUCKET + 1) * BUCKET
}

/// The reported attack: one identity sends validly signed requests until the store is full, and
/// from then on everyone is refused. Now that identity is refused alone, once it holds its share.
#[test]
fn one_identity_flooding_the_store_is_refused_alone() {
    let store = ShardedReplayStore::new(1_000);
    let keys = replay_keys(1_100);
    let (flood, others) = keys.split_at(1_000);
    let mut refused = None;
    for (n, key) in flood.iter().enumerate() {
        if let Err(e) = ready(store.check_and_insert(*key, "mallory", NOW + 300, NOW)) {
            refused = Some((n, e));
            break;
        }
    }
    let (accepted, error) = refused.expect("the flood was never refused");
    // The default share is a tenth of the capacity.
    assert_eq!(accepted, 100);
    assert!(
        matches!(error, Error::ReplayShareExceeded { retry_after } if retry_after >= 1),
        "{error:?}"
    );
    for key in others {
        ready(store.check_and_insert(*key, "bob", NOW + 300, NOW)).unwrap();
    }
    assert_eq!(store.len(), 200);
    assert_eq!(store.identities(), 2);
}

#[test]
fn the_default_share_is_a_tenth_with_a_floor_for_small_stores() {
    assert_eq!(ReplayConfig::new(100_000).share(), 10_000);
    assert_eq!(ReplayConfig::new(1_000).share(), 100);
    assert_eq!(ReplayConfig::new(500).share(), 100);
    assert_eq!(ReplayConfig::new(16).share(), 16);
    assert_eq!(ReplayConfig::new(0).capacity(), 1);
    assert_eq!(ReplayConfig::new(100).identity_share(0).share(), 1);
    assert_eq!(ReplayConfig::new(100).identity_share(1_000).share(), 100);
    assert_eq!(ReplayConfig::new(100).bucket_secs(0).bucket_width(), 1);
    assert_eq!(ShardedReplayStore::new(100_000).config().share(), 10_000);
}

#[test]
fn expiry_gives_an_identity_its_share_back_at_retry_after() {
    let store = ShardedReplayStore::with_config(ReplayConfig::new(1_000).identity_share(20));
    let keys = replay_keys(42);
    for key in &keys[..20] {
        insert(&store, *key, "mallory", NOW).unwrap();
    }
    let Err(Error::ReplayShareExceeded { retry_after }) = insert(&store, keys[20], "mallory", NOW)
    else {
        panic!("mallory was not refused over its share");
    };
    assert_eq!(NOW + retry_after, dropped_at(NOW + 300));
    // Still refused one second before; someone else is not.
    assert!(matches!(
        insert(&store, keys[20], "mallory", NOW + retry_after - 1),
        Err(Error::ReplayShareExceeded { retry_after: 1 })
    ));
    insert(&store, keys[21], "bob", NOW + retry_after - 1).unwrap();
    // At retry_after the bucket is dropped: the share is back, and the old entries are gone.
    let later = NOW + retry_after;
    for key in &keys[22..42] {
        insert(&store, *key, "mallory", later).unwrap();
    }
    assert!(matches!(
        insert(&store, keys[20], "mallory", later),
        Err(Error::ReplayShareExceeded { .. })
    ));
    // Shards not used since keep their ended buckets until `expire` (or their next request).
    store.expire(later);
    assert_eq!((store.len(), store.identities()), (21, 2));
}

#[test]
fn a_replay_is_refused_and_not_counted() {
    let store = ShardedReplayStore::with_config(ReplayConfig::new(1_000).identity_share(3));
    let keys = replay_keys(4);
    insert(&store, keys[0], "agent", NOW).unwrap();
    for _ in 0..10 {
        assert_eq!(insert(&store, keys[0], "agent", NOW), Err(Error::Replayed));
        // Whoever presents it.
        assert_eq!(insert(&store, keys[0], "other", NOW), Err(Error::Replayed));
    }
    insert(&store, keys[1], "agent", NOW).unwrap();
    insert(&store, keys[2], "agent", NOW).unwrap();
    assert!(matches!(
        insert(&store, keys[3], "agent", NOW),
        Err(Error::ReplayShareExceeded { .. })
    ));
    // An identity at its share still hears that a replay is a replay.
    assert_eq!(insert(&store, keys[0], "agent", NOW), Err(Error::Replayed));
    assert_eq!(store.len(), 3);
    assert_eq!(store.identities(), 1);
}

#[test]
fn replays_are_refused_whichever_bucket_they_land_in() {
    let store = ShardedReplayStore::new(1_000);
    let keys = replay_keys(2);
    // One nonce signed again with another `created` has another keep_until, in another bucket.
    ready(store.check_and_insert(keys[0], "agent", NOW + 300, NOW)).unwrap();
    for keep_until in [NOW, NOW + 60, NOW + 299, NOW + 600, NOW + 3_600, u64::MAX] {
        assert_eq!(
            ready(store.check_and_insert(keys[0], "agent", keep_until, NOW)),
            Err(Error::Replayed),
            "keep_until {keep_until}"
        );
    }
    // And the other way round: a later bucket first, then an earlier one.
    ready(store.check_and_insert(keys[1], "agent", NOW + 900, NOW)).unwrap();
    assert_eq!(
        ready(store.check_and_insert(keys[1], "agent", NOW + 10, NOW)),
        Err(Error::Replayed)
    );
    // Still refused after the first buckets were dropped, while its own bucket lives.
    assert_eq!(
        ready(store.check_and_insert(keys[1], "agent", NOW + 900, NOW + 800)),
        Err(Error::Replayed)
    );
}

#[test]
fn entries_expire_with_their_bucket() {
    let store = ShardedReplayStore::new(100);
    let v = verified(4);
    ready(v.check_replay(&store, "agent", NOW)).unwrap();
    // Still refused at the last second it could pass, and until its bucket ends.
    for now in [v.keep_until(), dropped_at(v.keep_until()) - 1] {
        assert_eq!(
            ready(store.check_and_insert(v.replay_key(), "agent", v.keep_until(), now)),
            Err(Error::Replayed)
        );
    }
    // Past the window the signature itself is rejected as too old; the entry may then go.
    let later = dropped_at(v.keep_until());
    ready(store.check_and_insert(v.replay_key(), "agent", later + 300, later)).unwrap();
    assert_eq!(store.len(), 1);
}

#[test]
fn a_signature_whose_bucket_is_already_dropped_is_too_old() {
    // A request verified a little earlier reaches the store after a later request has dropped
    // the bucket its signature would go in: the store cannot tell a replay, so it refuses.
    let store = ShardedReplayStore::with_config(
        ReplayConfig::new(1_000)
            .identity_share(1_000)
            .bucket_secs(1),
    );
    // Bucket width 1 s; one shard's clock moves on to NOW + 10.
    ready(store.check_and_insert(replay_keys(1)[0], "agent", NOW + 10, NOW + 10)).unwrap();
    // Of 256 keys, one lands in that shard with probability 1 - (15/16)^256 > 1 - 10^-7.
    let keys = replay_keys(256);
    let mut too_old = 0;
    for key in &keys {
        match ready(store.check_and_insert(*key, "agent", NOW + 5, NOW + 4)) {
            Err(Error::TooOld) => too_old += 1,
            other => other.unwrap(),
        }
    }
    // About one key in 16 lands in the shard whose clock moved on.
    assert!(too_old > 0, "no shard refused");
    assert!(too_old < 256);
}

#[test]
fn a_full_store_fails_closed_never_evicts_and_recovers() {
    let store = ShardedReplayStore::new(1_000);
    let keys = replay_keys(1_200);
    // Eleven identities of a hundred entries each: the last one finds the store full.
    let mut accepted = Vec::new();
    let mut unavailable = 0;
    for (n, key) in keys[..1_100].iter().enumerate() {
        let owner = format!("agent-{}", n / 100);
        match insert(&store, *key, &owner, NOW) {
            Ok(()) => accepted.push(*key),
            Err(e) => {
                assert!(e.is_unavailable(), "{e}");
                unavailable += 1;
            }
        }
    }
    assert_eq!((accepted.len(), unavailable), (1_000, 100));
    assert_eq!(store.len(), 1_000);
    // Every accepted signature is still refused as a replay: nothing live was evicted.
    for key in &accepted {
        assert_eq!(insert(&store, *key, "agent-0", NOW), Err(Error::Replayed));
    }
    // Once their bucket has ended, the store takes new entries again.
    let later = dropped_at(NOW + 300);
    for key in &keys[1_100..] {
        insert(&store, *key, "agent-10", later).unwrap();
    }
    assert_eq!(store.len(), 100);
}

#[test]
fn concurrent_identical_requests_are_accepted_once() {
    let store = Arc::new(ShardedReplayStore::new(10_000));
    for _ in 0..20 {
        let v = verified(4);
        let accepted: usize = (0..16)
            .map(|_| {
                let (s, v) = (store.clone(), v.clone());
                std::thread::spawn(move || ready(v.check_replay(&*s, "agent", NOW)).is_ok())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum();
        assert_eq!(accepted, 1);
    }
}

#[test]
fn concurrent_floods_cannot_exceed_the_share() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 100;
    let keys = Arc::new(replay_keys(THREADS * PER_THREAD));
    for round in 0..5 {
        // Room for everyone: only the share limits mallory.
        let store = Arc::new(ShardedReplayStore::with_config(
            ReplayConfig::new(10_000).identity_share(37),
        ));
        let barrier = Arc::new(std::sync::Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (store, keys, barrier) = (store.clone(), keys.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut mine = (0, 0);
                    for key in &keys[t * PER_THREAD..(t + 1) * PER_THREAD] {
                        // Every other thread is a well-behaved identity of its own.
                        let owner = if t % 2 == 0 {
                            "mallory".to_owned()
                        } else {
                            format!("b{t}")
                        };
                        match insert(&store, *key, &owner, NOW) {
                            Ok(()) => mine.0 += 1,
                            Err(Error::ReplayShareExceeded { .. }) => mine.1 += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    (t, mine)
                })
            })
            .collect();
        let mut mallory = 0;
        for h in handles {
            let (t, (accepted, refused)) = h.join().unwrap();
            if t % 2 == 0 {
                mallory += accepted;
            } else {
                assert_eq!((accepted, refused), (37, PER_THREAD - 37), "round {round}");
            }
        }
        assert_eq!(mallory, 37, "round {round}");
        assert_eq!(store.len(), 37 * (1 + THREADS / 2));
    }
}

#[test]
fn metrics_count_entries_identities_and_bytes() {
    let store = ShardedReplayStore::new(100_000);
    assert!(store.is_empty());
    let keys = replay_keys(20_000);
    for (n, key) in keys.iter().enumerate() {
        insert(&store, *key, &format!("agent-{}", n % 10), NOW).unwrap();
    }
    assert_eq!(store.len(), 20_000);
    assert_eq!(store.identities(), 10);
    let per_entry = store.bytes() / store.len();
    assert!((17..=48).contains(&per_entry), "{per_entry} B per entry");
    // Dropping whole buckets frees them.
    store.expire(dropped_at(NOW + 300));
    assert_eq!((store.len(), store.identities()), (0, 0));
    assert!(store.bytes() < 16 * 1024, "{} B left", store.bytes());
}

/// vouch-httpsig's simple store shares itself out the same way.
#[test]
fn the_simple_memory_guard_has_a_share_per_identity_too() {
    use vouch_httpsig::MemoryReplayGuard;
    assert_eq!(MemoryReplayGuard::new(100_000).share(), 10_000);
    assert_eq!(MemoryReplayGuard::new(16).share(), 16);
    let guard = MemoryReplayGuard::new(1_000).identity_share(3);
    let keys = replay_keys(8);
    for key in &keys[..3] {
        ready(guard.check_and_insert(*key, "mallory", NOW + 300, NOW)).unwrap();
    }
    // A replay is a replay, and not counted.
    assert_eq!(
        ready(guard.check_and_insert(keys[0], "bob", NOW + 300, NOW)),
        Err(Error::Replayed)
    );
    assert_eq!(
        ready(guard.check_and_insert(keys[3], "mallory", NOW + 300, NOW + 100)),
        Err(Error::ReplayShareExceeded { retry_after: 201 })
    );
    ready(guard.check_and_insert(keys[4], "bob", NOW + 300, NOW)).unwrap();
    // Once mallory's entries have expired, its share is back.
    ready(guard.check_and_insert(keys[3], "mallory", NOW + 601, NOW + 301)).unwrap();
    // Full: everyone is refused, with 503.
    let tiny = MemoryReplayGuard::new(2);
    ready(tiny.check_and_insert(keys[5], "a", NOW + 300, NOW)).unwrap();
    ready(tiny.check_and_insert(keys[6], "b", NOW + 300, NOW)).unwrap();
    let full = ready(tiny.check_and_insert(keys[7], "c", NOW + 300, NOW)).unwrap_err();
    assert!(full.is_unavailable(), "{full}");
}
