//! The sharded replay store: one acceptance per signature, expiry, fail closed when full.

use std::sync::Arc;

use vouch_httpsig::{Error, ReplayGuard};
use vouch_keys::ShardedReplayStore;

use crate::support::{NOW, ready, verified};

/// A freshly signed and verified request (a new nonce each time).

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
fn entries_expire_with_the_window() {
    let store = ShardedReplayStore::new(100);
    let v = verified(4);
    ready(v.check_replay(&store, "agent", NOW)).unwrap();
    assert_eq!(
        ready(store.check_and_insert(v.replay_key(), "agent", v.keep_until(), v.keep_until())),
        Err(Error::Replayed)
    );
    // Past the window the signature itself is rejected as too old; the entry may then go.
    ready(store.check_and_insert(
        v.replay_key(),
        "agent",
        v.keep_until() + 400,
        v.keep_until() + 1,
    ))
    .unwrap();
}

#[test]
fn a_full_store_fails_closed_and_recovers_as_entries_expire() {
    let store = ShardedReplayStore::new(16);
    let mut refused = 0;
    let mut accepted = Vec::new();
    for _ in 0..64 {
        let v = verified(4);
        match ready(v.check_replay(&store, "agent", NOW)) {
            Ok(()) => accepted.push(v),
            Err(e) => {
                assert!(e.is_unavailable(), "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "a 16-entry store refused nothing out of 64");
    assert!(store.len() <= 16 + 15, "bounded");
    // Every accepted signature is still refused as a replay: nothing live was evicted.
    for v in &accepted {
        assert_eq!(
            ready(v.check_replay(&store, "agent", NOW)),
            Err(Error::Replayed)
        );
    }
    // Once the window has passed, the store takes new entries again.
    let later = accepted[0].keep_until() + 1;
    let fresh = verified(4);
    ready(store.check_and_insert(fresh.replay_key(), "agent", later + 300, later)).unwrap();
}
