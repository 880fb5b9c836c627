use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::scalar::Scalar;

use super::*;

/// Other encodings of small-order points: y = p and y = p + 1 with either sign bit, and the sign
/// bit set for x = 0.
const SMALL_ORDER_NON_CANONICAL: [[u8; 32]; 6] = [
    hex32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
    hex32("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
    hex32("0100000000000000000000000000000000000000000000000000000000000080"),
    hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
];

fn real_key(seed: u8) -> [u8; 32] {
    *crate::KeyPair::from_seed(&[seed; 32])
        .unwrap()
        .public_key()
        .as_bytes()
}

#[test]
fn the_small_order_table_is_the_eight_torsion_points() {
    let mut ours = SMALL_ORDER.to_vec();
    let mut theirs: Vec<[u8; 32]> = EIGHT_TORSION.iter().map(|p| p.compress().0).collect();
    ours.sort_unstable();
    theirs.sort_unstable();
    assert_eq!(ours, theirs);
}

#[test]
fn small_order_points_are_weak_in_every_encoding() {
    for (i, b) in SMALL_ORDER.iter().enumerate() {
        assert_eq!(obviously_weak(b), Some(Weakness::SmallOrder), "point {i}");
        assert_eq!(weakness(b), Some(Weakness::SmallOrder), "point {i}");
    }
    for (i, b) in SMALL_ORDER_NON_CANONICAL.iter().enumerate() {
        // Each decodes (curve25519-dalek takes it) to a point of small order.
        let point = CompressedEdwardsY(*b).decompress().unwrap();
        assert!(point.is_small_order(), "encoding {i}");
        assert_ne!(point.compress().0, *b, "encoding {i}");
        assert_eq!(
            obviously_weak(b),
            Some(Weakness::NonCanonical),
            "encoding {i}"
        );
        assert_eq!(weakness(b), Some(Weakness::NonCanonical), "encoding {i}");
    }
}

#[test]
fn every_y_at_or_above_p_is_non_canonical() {
    // y = p + k for k in 0..19 are all the values from p to 2^255 - 1.
    for k in 0u8..19 {
        for sign in [0, 0x80] {
            let mut b = P;
            b[0] += k;
            b[31] |= sign;
            assert_eq!(obviously_weak(&b), Some(Weakness::NonCanonical), "p + {k}");
            assert_eq!(weakness(&b), Some(Weakness::NonCanonical), "p + {k}");
        }
    }
    let mut below = P;
    below[0] -= 1;
    assert!(!y_at_least_p(&below));
}

#[test]
fn a_mixed_order_point_is_weak_but_not_obviously() {
    for (i, torsion) in EIGHT_TORSION.iter().enumerate().skip(1) {
        let real = CompressedEdwardsY(real_key(7)).decompress().unwrap();
        let mixed = (real + torsion).compress().0;
        assert_eq!(obviously_weak(&mixed), None, "torsion {i}");
        assert_eq!(weakness(&mixed), Some(Weakness::MixedOrder), "torsion {i}");
    }
    // The integration tests' fixed mixed-order key: the base point plus a point of order 8.
    let fixed = (ED25519_BASEPOINT_POINT + EIGHT_TORSION[1]).compress().0;
    assert_eq!(
        fixed,
        hex32("98519eadf35b995233b51b5cd23e9cc5a28b639b5a4af0ec903cb960d81b7819")
    );
}

#[test]
fn non_points_are_weak() {
    let not_a_point = hex32("0200000000000000000000000000000000000000000000000000000000000000");
    assert!(CompressedEdwardsY(not_a_point).decompress().is_none());
    assert_eq!(obviously_weak(&not_a_point), None);
    assert_eq!(weakness(&not_a_point), Some(Weakness::NotAPoint));
}

#[test]
fn real_keys_and_prime_order_points_are_fit() {
    for seed in 0..16 {
        let b = real_key(seed);
        assert_eq!(weakness(&b), None, "seed {seed}");
    }
    for k in [1u64, 2, 8, 1 << 40] {
        let b = (ED25519_BASEPOINT_POINT * Scalar::from(k)).compress().0;
        assert_eq!(weakness(&b), None, "{k}·B");
    }
}

#[test]
fn the_variable_time_subgroup_check_agrees_with_curve25519_dalek() {
    // Points of prime order, and each of them plus each point of small order.
    for k in [1u64, 2, 3, 8, 1 << 20, u64::MAX] {
        let p = ED25519_BASEPOINT_POINT * Scalar::from(k);
        for (i, t) in EIGHT_TORSION.iter().enumerate() {
            let q = p + t;
            assert_eq!(torsion_free(&q), q.is_torsion_free(), "{k}·B + T{i}");
            assert_eq!(torsion_free(&q), i == 0, "{k}·B + T{i}");
        }
    }
    for (i, t) in EIGHT_TORSION.iter().enumerate() {
        assert_eq!(torsion_free(t), t.is_torsion_free(), "T{i}");
    }
}

#[test]
fn every_key_found_fit_re_encodes_to_its_bytes() {
    // `weakness` skips the re-encoding: the byte check must already have caught what it would.
    let mut candidates: Vec<[u8; 32]> = (0..16).map(real_key).collect();
    for y in 0u8..=255 {
        for sign in [0, 0x80] {
            let mut b = [0u8; 32];
            b[0] = y;
            b[31] = sign;
            candidates.push(b);
            let mut top = P;
            top[0] = top[0].wrapping_sub(y);
            top[31] |= sign;
            candidates.push(top);
        }
    }
    let mut fit = 0;
    for b in candidates {
        if weakness(&b).is_none() {
            fit += 1;
            let point = CompressedEdwardsY(b).decompress().unwrap();
            assert_eq!(point.compress().0, b);
        }
    }
    assert!(fit >= 16, "{fit}");
}
