//! The signatures of a token (every block's, and the seal's) are verified as one batch, under
//! the same rule as one at a time. A batch that fails is verified one at a time, so a token is
//! refused with exactly the error the one-at-a-time check gives.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::scalar::Scalar;
use vouch_token::internal::{check_signatures, check_signatures_one_by_one, hand_signed_bytes};
use vouch_token::{Error, PublicKey, Restriction, Token, Verifier};

use crate::support::{NOW, key, mint, reference_root};

fn three_blocks(sealed: bool) -> Token {
    let t = mint(&key(1), reference_root())
        .attenuate_at(Restriction::new().tools(["db_query", "search"]), NOW)
        .unwrap()
        .attenuate_at(Restriction::new().tools(["db_query"]), NOW)
        .unwrap();
    assert_eq!(t.depth(), 2);
    if sealed { t.seal().unwrap() } else { t }
}

/// Byte ranges of each block's signature, and of the seal, in the encoded token.
fn signature_ranges(bytes: &[u8], sealed: bool) -> Vec<std::ops::Range<usize>> {
    // Header: version, root key id (8), block count (1); each block: payload length (1 or 2
    // bytes, a varint), payload, next key (32), signature (64); then the proof.
    let mut at = 10;
    let mut out = Vec::new();
    for _ in 0..bytes[9] {
        let (len, n) = if bytes[at] < 0x80 {
            (usize::from(bytes[at]), 1)
        } else {
            (
                usize::from(bytes[at] & 0x7f) | usize::from(bytes[at + 1]) << 7,
                2,
            )
        };
        at += n + len + 32;
        out.push(at..at + 64);
        at += 64;
    }
    if sealed {
        out.push(at + 1..at + 65);
    }
    out
}

#[test]
fn the_ranges_are_the_signatures() {
    for sealed in [false, true] {
        let t = three_blocks(sealed);
        let bytes = t.to_bytes();
        let ranges = signature_ranges(&bytes, sealed);
        assert_eq!(ranges.len(), 3 + usize::from(sealed));
        // The revocation id of each block is a hash of its signature: the ranges are right if
        // a flip inside one changes that block's id only.
        for (i, r) in ranges.iter().take(3).enumerate() {
            let mut b = bytes.clone();
            b[r.start + 40] ^= 1;
            let ids = Token::from_bytes(&b).unwrap().revocation_ids();
            let orig = t.revocation_ids();
            for j in 0..3 {
                assert_eq!(ids[j] == orig[j], i != j, "block {i}, id {j}");
            }
        }
        if sealed {
            assert_eq!(ranges[3].end, bytes.len());
        }
    }
}

#[test]
fn a_tampered_signature_in_a_batch_of_three_or_four_is_refused_as_one_at_a_time_refuses_it() {
    let root = key(1).public_key();
    let verifier = Verifier::new(root);
    for sealed in [false, true] {
        let t = three_blocks(sealed);
        assert_eq!(check_signatures(&t, &root), Ok(()));
        let bytes = t.to_bytes();
        for (which, range) in signature_ranges(&bytes, sealed).into_iter().enumerate() {
            // In R, in S's low bytes (S stays below ℓ), in S's top byte (S ≥ ℓ).
            for offset in [0, 5, 31, 32, 47, 63] {
                let mut b = bytes.clone();
                b[range.start + offset] ^= 0x10;
                let token = Token::from_bytes(&b).unwrap();
                let one_by_one = check_signatures_one_by_one(&token, &root);
                assert_eq!(one_by_one, Err(Error::BadSignature), "{which} {offset}");
                assert_eq!(
                    check_signatures(&token, &root),
                    one_by_one,
                    "{which} {offset}"
                );
                assert_eq!(verifier.check(&token).unwrap_err(), Error::BadSignature);
            }
        }
    }
}

#[test]
fn every_bit_flip_gets_the_one_at_a_time_verdict() {
    let root = key(1).public_key();
    let mut decoded = 0;
    for sealed in [false, true] {
        let bytes = three_blocks(sealed).to_bytes();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let Ok(token) = Token::from_bytes(&b) else {
                    continue;
                };
                decoded += 1;
                assert_eq!(
                    check_signatures(&token, &root),
                    check_signatures_one_by_one(&token, &root),
                    "byte {i} bit {bit} sealed {sealed}"
                );
            }
        }
    }
    assert!(decoded > 1000, "{decoded}");
}

/// A next key outside the prime-order subgroup, `a·B + T` with `T` of order 8, whose owner knows
/// `a`: it signs the seal so that the cofactored equation holds. The batch passes; the key check
/// that follows it refuses the token.
fn sealed_under_a_mixed_order_key(also_break_block: Option<usize>) -> (Token, PublicKey) {
    let root = mint(&key(1), reference_root())
        .attenuate_at(Restriction::new().tools(["search"]), NOW)
        .unwrap();
    let a = Scalar::from_bytes_mod_order([42; 32]);
    let point = ED25519_BASEPOINT_POINT * a + EIGHT_TORSION[1];
    let next = point.compress().to_bytes();
    let mut bytes = hand_signed_bytes(&root, Restriction::new(), NOW, next, [0; 64]).unwrap();
    let n = bytes.len();
    let last_signature: [u8; 64] = bytes[n - 129..n - 65].try_into().unwrap();
    // The seal message (token-format.md §5).
    let mut msg = b"vouch-token/v1/seal\0".to_vec();
    msg.push(1);
    msg.extend_from_slice(&bytes[1..9]);
    msg.extend_from_slice(&3u32.to_be_bytes());
    msg.extend_from_slice(&last_signature);
    // R = r·B, S = r + k·a with k = SHA-512(R ‖ A ‖ M).
    let r = Scalar::from_bytes_mod_order([7; 32]);
    let big_r = (ED25519_BASEPOINT_POINT * r).compress().to_bytes();
    let mut h = ring::digest::Context::new(&ring::digest::SHA512);
    h.update(&big_r);
    h.update(&next);
    h.update(&msg);
    let k = Scalar::from_bytes_mod_order_wide(&h.finish().as_ref().try_into().unwrap());
    let s = r + k * a;
    bytes[n - 64..n - 32].copy_from_slice(&big_r);
    bytes[n - 32..].copy_from_slice(s.as_bytes());
    if let Some(i) = also_break_block {
        let ranges = signature_ranges(&bytes, true);
        bytes[ranges[i].start + 3] ^= 1;
    }
    (
        Token::from_bytes(&bytes).unwrap(),
        PublicKey::from_bytes(next),
    )
}

#[test]
fn a_mixed_order_next_key_is_refused_even_when_every_signature_verifies() {
    let root = key(1).public_key();
    let (token, next) = sealed_under_a_mixed_order_key(None);
    // The seal verifies under the cofactored rule: the signatures alone would pass.
    assert_eq!(
        next.weakness(),
        Some("not in the prime-order subgroup"),
        "the key is mixed-order"
    );
    let bytes = token.to_bytes();
    let seal = &bytes[bytes.len() - 64..];
    let n = bytes.len();
    let mut msg = b"vouch-token/v1/seal\0".to_vec();
    msg.push(1);
    msg.extend_from_slice(&bytes[1..9]);
    msg.extend_from_slice(&3u32.to_be_bytes());
    msg.extend_from_slice(&bytes[n - 129..n - 65]);
    assert!(vouch_token::ed25519::verify(next.as_bytes(), &msg, seal));
    for result in [
        check_signatures(&token, &root),
        check_signatures_one_by_one(&token, &root),
        Verifier::new(root).check(&token).map(drop),
    ] {
        match result {
            Err(Error::Malformed(m)) => {
                assert_eq!(m.reason(), "next key is not in the prime-order subgroup");
            }
            other => panic!("expected malformed, got {other:?}"),
        }
    }
}

#[test]
fn with_a_mixed_order_key_and_a_bad_signature_the_first_failure_in_chain_order_is_reported() {
    let root = key(1).public_key();
    // Block 0 broken: bad signature, before the key is reached.
    let (token, _) = sealed_under_a_mixed_order_key(Some(0));
    assert_eq!(
        check_signatures_one_by_one(&token, &root),
        Err(Error::BadSignature)
    );
    assert_eq!(check_signatures(&token, &root), Err(Error::BadSignature));
    // The block naming the key verifies, the seal after it is broken: the key is refused first.
    let (token, _) = sealed_under_a_mixed_order_key(Some(3));
    for result in [
        check_signatures(&token, &root),
        check_signatures_one_by_one(&token, &root),
    ] {
        match result {
            Err(Error::Malformed(m)) => {
                assert_eq!(m.reason(), "next key is not in the prime-order subgroup");
            }
            other => panic!("expected malformed, got {other:?}"),
        }
    }
}
