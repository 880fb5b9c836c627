//! Pin stores: first key wins, a rotated key is refused until reset, files survive reopening.

use std::sync::Arc;

use vouch_keys::{FilePinStore, MemoryPinStore, PinStore, Pinned, StoreError};

use crate::support::ready;

fn pin_rules(store: &dyn PinStore) {
    assert_eq!(ready(store.get("alice")), Ok(None));
    assert_eq!(
        ready(store.check_and_pin("alice", "key-1")),
        Ok(Pinned::New)
    );
    assert_eq!(
        ready(store.check_and_pin("alice", "key-1")),
        Ok(Pinned::Matched)
    );
    assert_eq!(
        ready(store.check_and_pin("alice", "key-2")),
        Err(StoreError::PinMismatch {
            identity: "alice".into()
        }),
        "a rotated key is refused"
    );
    assert_eq!(
        ready(store.get("alice")),
        Ok(Some("key-1".into())),
        "the refused key did not replace the pin"
    );
    assert_eq!(
        ready(store.check_and_pin("bob", "key-2")),
        Ok(Pinned::New),
        "pins are per identity"
    );
    assert_eq!(ready(store.reset("alice")), Ok(true));
    assert_eq!(ready(store.reset("alice")), Ok(false));
    assert_eq!(
        ready(store.check_and_pin("alice", "key-2")),
        Ok(Pinned::New),
        "after a reset the new key pins"
    );
}

#[test]
fn memory_store_rules_and_bound() {
    pin_rules(&MemoryPinStore::new(100));
    let small = MemoryPinStore::new(1);
    assert_eq!(ready(small.check_and_pin("a", "k")), Ok(Pinned::New));
    assert!(
        matches!(
            ready(small.check_and_pin("b", "k")),
            Err(StoreError::Unavailable(_))
        ),
        "full: refuse, never evict"
    );
    assert_eq!(
        ready(small.check_and_pin("a", "k")),
        Ok(Pinned::Matched),
        "existing pins still check"
    );
}

#[test]
fn file_store_rules_and_durability() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pins.json");
    pin_rules(&FilePinStore::open(&path).unwrap());
    // A new process sees what the old one pinned.
    let reopened = FilePinStore::open(&path).unwrap();
    assert_eq!(ready(reopened.get("alice")), Ok(Some("key-2".into())));
    assert_eq!(ready(reopened.get("bob")), Ok(Some("key-2".into())));
    assert_eq!(
        ready(reopened.check_and_pin("bob", "key-3")),
        Err(StoreError::PinMismatch {
            identity: "bob".into()
        })
    );
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["pins.json"]);
}

#[test]
fn corrupt_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pins.json");
    for corrupt in ["{not json", "[1, 2]", "{\"alice\": 5}"] {
        std::fs::write(&path, corrupt).unwrap();
        match FilePinStore::open(&path) {
            Err(StoreError::Corrupt(why)) => assert!(why.contains("pins.json"), "{why}"),
            other => panic!("{corrupt:?}: expected corrupt, got {other:?}"),
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            corrupt,
            "never silently reset"
        );
    }
}

#[test]
fn concurrent_writers_in_one_process_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pins.json");
    let store = Arc::new(FilePinStore::open(&path).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    assert_eq!(
                        ready(s.check_and_pin(&format!("id-{t}-{i}"), "k")),
                        Ok(Pinned::New)
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let reopened = FilePinStore::open(&path).unwrap();
    for t in 0..8 {
        for i in 0..10 {
            assert_eq!(
                ready(reopened.get(&format!("id-{t}-{i}"))),
                Ok(Some("k".into()))
            );
        }
    }
    // Racing pins of one identity with different keys: exactly one wins.
    let wins: usize = (0..8)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                ready(s.check_and_pin("contested", &format!("key-{t}"))).is_ok()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| usize::from(h.join().unwrap()))
        .sum();
    assert_eq!(wins, 1);
}

mod order {
    use vouch_httpsig::{RequestView, SigningKey, Verifier, VerifyPolicy, mcp_spec, sign};
    use vouch_keys::{
        MemoryPinStore, PinCheckError, PinStore, Pinned, ResolvedKey, StoreError, verify_and_pin,
    };
    use vouch_token::KeyPair;

    use crate::support::ready;

    const NOW: u64 = 1_700_000_000;
    const VICTIM: &str = "https://agents.example/agents/victim@example.com";

    fn signed_by(seed: u8) -> http::Request<Vec<u8>> {
        let key = SigningKey::ed25519_from_seed(&[seed; 32]).unwrap();
        let mut req = http::Request::get("https://mcp.example/mcp")
            .body(Vec::new())
            .unwrap();
        let spec = mcp_spec(&RequestView::of(&req), &key, VICTIM, None, NOW).unwrap();
        sign(RequestView::of(&req), &spec, &key)
            .unwrap()
            .apply(req.headers_mut())
            .unwrap();
        req
    }

    fn resolved(seed: u8) -> ResolvedKey {
        ResolvedKey::ed25519(&KeyPair::from_seed(&[seed; 32]).unwrap().public_key()).unwrap()
    }

    fn check(
        req: &http::Request<Vec<u8>>,
        key: &ResolvedKey,
        admit: bool,
        pins: &MemoryPinStore,
    ) -> Result<Pinned, PinCheckError> {
        let prepared = Verifier::new(VerifyPolicy::mcp())
            .prepare(RequestView::of(req), NOW)
            .unwrap();
        ready(verify_and_pin(prepared, key, VICTIM, |_| admit, pins)).map(|(_, p)| p)
    }

    #[test]
    fn a_pin_is_made_only_after_verification_and_admission() {
        let pins = MemoryPinStore::new(10);
        // The attacker signs with key 66 but the resolver (say, a stale cache or a spoof that got
        // through) hands over the victim's key 1: the signature fails, nothing is pinned.
        let forged = signed_by(66);
        assert!(matches!(
            check(&forged, &resolved(1), true, &pins),
            Err(PinCheckError::Signature(_))
        ));
        // A valid signature by a caller the allowlist refuses: nothing is pinned either.
        assert_eq!(
            check(&signed_by(66), &resolved(66), false, &pins),
            Err(PinCheckError::NotAdmitted)
        );
        assert_eq!(ready(pins.get(VICTIM)), Ok(None));
        // The victim, verified and admitted, pins its key.
        assert_eq!(
            check(&signed_by(1), &resolved(1), true, &pins),
            Ok(Pinned::New)
        );
        // Afterwards another key for that identity is refused even with a valid signature.
        assert_eq!(
            check(&signed_by(66), &resolved(66), true, &pins),
            Err(PinCheckError::Pin(StoreError::PinMismatch {
                identity: VICTIM.into()
            }))
        );
        assert_eq!(
            check(&signed_by(1), &resolved(1), true, &pins),
            Ok(Pinned::Matched)
        );
    }
}
