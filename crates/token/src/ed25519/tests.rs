use ring::signature::{Ed25519KeyPair, KeyPair as _};

use super::*;

fn pair(seed: u8) -> ([u8; 32], Ed25519KeyPair) {
    let k = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
    let public = <[u8; 32]>::try_from(k.public_key().as_ref()).unwrap();
    (public, k)
}

fn sign(k: &Ed25519KeyPair, m: &[u8]) -> [u8; 64] {
    <[u8; 64]>::try_from(k.sign(m).as_ref()).unwrap()
}

#[test]
fn an_empty_batch_verifies() {
    assert!(Batch::new().is_empty());
    assert!(Batch::new().verify());
}

#[test]
fn a_batch_accepts_good_signatures_and_refuses_any_bad_one() {
    let keys: Vec<_> = (1..=5).map(pair).collect();
    let msgs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 * usize::from(i)]).collect();
    let sigs: Vec<_> = keys
        .iter()
        .zip(&msgs)
        .map(|((_, k), m)| sign(k, m))
        .collect();
    let mut good = Batch::new();
    for ((p, _), (m, s)) in keys.iter().zip(msgs.iter().zip(&sigs)) {
        assert!(verify(p, m, s));
        good.add(p, m, s);
    }
    assert_eq!(good.len(), 5);
    assert!(good.verify());
    // One bad signature anywhere, by a flipped bit in R or in S, or a message swapped.
    for bad in 0..5 {
        for byte in [0, 31, 32, 40] {
            let mut batch = Batch::new();
            for (i, ((p, _), (m, s))) in keys.iter().zip(msgs.iter().zip(&sigs)).enumerate() {
                let mut s = *s;
                if i == bad {
                    s[byte] ^= 1;
                    assert!(!verify(p, m, &s), "single, {bad} {byte}");
                }
                batch.add(p, m, &s);
            }
            assert!(!batch.verify(), "batch, {bad} {byte}");
        }
    }
    // The same key twice (ed25519-zebra groups signatures by key).
    let (p, k) = &keys[0];
    let mut twice = Batch::new();
    twice.add(p, b"a", &sign(k, b"a"));
    twice.add(p, b"b", &sign(k, b"a"));
    assert!(!twice.verify());
}

#[test]
fn a_signature_of_the_wrong_length_or_under_a_non_point_never_verifies() {
    let (p, k) = pair(9);
    let s = sign(&k, b"m");
    assert!(verify(&p, b"m", &s));
    assert!(!verify(&p, b"m", &s[..63]));
    assert!(!verify(&p, b"m", &[&s[..], &[0]].concat()));
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    assert!(DecodedKey::decode(&not_a_point).is_none());
    assert!(!verify(&not_a_point, b"m", &s));
    let mut batch = Batch::new();
    batch.add(&not_a_point, b"m", &s);
    assert!(!batch.verify());
}

#[test]
fn a_decoded_key_verifies_as_the_bytes_do() {
    let (p, k) = pair(4);
    let key = DecodedKey::decode(&p).unwrap();
    let s = sign(&k, b"hello");
    assert!(key.verify(b"hello", &s));
    assert!(!key.verify(b"hellp", &s));
    assert!(format!("{key:?}").contains(&crate::hex::encode(&p)));
}

#[test]
fn coefficients_come_from_the_system_generator_and_more_are_drawn_when_asked() {
    use rand_core::RngCore as _;
    let mut c = Coefficients::new(32);
    assert!(!c.failed);
    let (a, b) = (c.next_u64(), c.next_u64());
    let mut rest = [0u8; 16];
    c.fill_bytes(&mut rest);
    // Past the 32 bytes drawn up front.
    let more = c.next_u64();
    assert!(!c.failed);
    // 64-bit draws from a working generator: a repeat (or all zeros) means a broken buffer.
    assert!(a != b && b != more && a != more, "{a} {b} {more}");
    assert_ne!(rest, [0; 16]);
}
