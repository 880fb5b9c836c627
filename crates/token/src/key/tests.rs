use super::*;

fn key(b: u8) -> PublicKey {
    KeyPair::from_seed(&[b; 32]).unwrap().public_key()
}

/// Two keys whose 8-byte ids collide: the second is refused and the first stays trusted under
/// the id. (A real collision takes about 2^32 key generations; `insert_as` stands in for one.)
#[test]
fn a_root_key_id_collision_is_refused() {
    let (first, second) = (key(1), key(2));
    let id = second.root_key_id();
    let mut set = RootKeySet::new();
    set.insert_as(id, first).unwrap();
    assert_eq!(
        set.insert(second).unwrap_err(),
        Error::InvalidInput("root key id collides with another key in the set")
    );
    assert_eq!(set.root_key(&id), Some(first), "the first key was replaced");
    assert_eq!(set.len(), 1);
    // Removing the other key does not remove the one trusted under its id.
    assert!(!set.remove(&second));
    assert_eq!(set.root_key(&id), Some(first));
}

#[test]
fn inserting_a_key_twice_is_not_a_collision() {
    let mut set = RootKeySet::from_keys([key(1), key(2)]).unwrap();
    set.insert(key(1)).unwrap().insert(key(2)).unwrap();
    assert_eq!(set.len(), 2);
    assert!(set.remove(&key(1)));
    assert!(!set.remove(&key(1)));
    assert_eq!(set.root_key(&key(2).root_key_id()), Some(key(2)));
}
