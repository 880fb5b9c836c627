//! Which 32-byte strings are Ed25519 public keys fit to verify with.
//!
//! ring verifies under any encoding that decodes to a curve point. Under a point of small order,
//! the signature `R = small-order point, S = 0` verifies for many messages; under the identity,
//! for every message. A point with a small-order component (outside the prime-order subgroup)
//! lets its owner make signatures that verify under one reading of RFC 8032 and not another. And
//! a non-canonical encoding gives one key two spellings. vouch refuses all of them.
//!
//! Two checks: [`obviously_weak`] looks at the bytes alone (no curve arithmetic, so decoding
//! stays cheap) and catches the non-canonical encodings and the eight small-order points;
//! [`weakness`] decodes the point and also catches non-points and mixed-order points.
//!
//! Under vouch's verification rule (ZIP-215, cofactored: see [`crate::ed25519`]) a small-order
//! key would verify signatures over any message, so these checks are what keeps such keys out.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity as _;

/// What is wrong with an Ed25519 public key (see [`crate::ed25519::weakness`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weakness {
    /// No curve point has this y coordinate.
    NotAPoint,
    /// y ≥ p, or x = 0 with the sign bit set: another spelling of a point.
    NonCanonical,
    /// One of the eight points of order 1, 2, 4 or 8.
    SmallOrder,
    /// On the curve, but with a small-order component: outside the prime-order subgroup.
    MixedOrder,
}

impl Weakness {
    /// What is wrong, as a phrase after "the key is".
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotAPoint => "not a curve point",
            Self::NonCanonical => "not canonically encoded",
            Self::SmallOrder => "of small order",
            Self::MixedOrder => "not in the prime-order subgroup",
        }
    }

    /// The same, for a block's next key.
    pub(crate) fn next_key_reason(self) -> &'static str {
        match self {
            Self::NotAPoint => "next key is not a curve point",
            Self::NonCanonical => "next key is not canonically encoded",
            Self::SmallOrder => "next key is of small order",
            Self::MixedOrder => "next key is not in the prime-order subgroup",
        }
    }
}

/// 32 bytes from 64 hex digits, at compile time.
#[expect(
    clippy::indexing_slicing,
    clippy::panic,
    reason = "evaluated on constants at compile time: a bad literal fails the build"
)]
const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lowercase hex digit"),
        }
    }
    let s = s.as_bytes();
    assert!(s.len() == 64, "not 64 hex digits");
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(s[2 * i]) << 4) | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

/// The canonical encodings of the eight points of small order: the identity (0, 1), (0, -1) of
/// order 2, (±sqrt(-1), 0) of order 4, and four points of order 8.
pub(crate) const SMALL_ORDER: [[u8; 32]; 8] = [
    hex32("0100000000000000000000000000000000000000000000000000000000000000"),
    hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32("0000000000000000000000000000000000000000000000000000000000000000"),
    hex32("0000000000000000000000000000000000000000000000000000000000000080"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
];

/// p = 2^255 - 19, little-endian.
const P: [u8; 32] = hex32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");

/// y (the encoding without the sign bit of x) compared with p, as little-endian integers.
fn y_at_least_p(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    y[31] &= 0x7f;
    // Compare from the most significant byte down.
    y.iter().rev().cmp(P.iter().rev()).is_ge()
}

/// The byte-level check: a non-canonical encoding (y ≥ p, or the sign bit set for x = 0, which
/// is y = 1 or y = p - 1) or one of the eight small-order points. Cheap enough for every key of
/// every token decoded, before any signature is checked.
pub(crate) fn obviously_weak(bytes: &[u8; 32]) -> Option<Weakness> {
    if y_at_least_p(bytes) {
        return Some(Weakness::NonCanonical);
    }
    let sign = bytes[31] & 0x80 != 0;
    let mut y = *bytes;
    y[31] &= 0x7f;
    // The two points with x = 0 are the identity (y = 1) and (0, -1) (y = p - 1).
    let x_is_zero = y == SMALL_ORDER[0] || y == SMALL_ORDER[1];
    if sign && x_is_zero {
        return Some(Weakness::NonCanonical);
    }
    if SMALL_ORDER.contains(bytes) {
        return Some(Weakness::SmallOrder);
    }
    None
}

/// The full check: a canonically encoded curve point in the prime-order subgroup, other than the
/// identity. Decompresses the point and multiplies it by the group order ℓ (in variable time:
/// keys are public), so callers run it once per key and only on keys a signature vouches for.
pub(crate) fn weakness(bytes: &[u8; 32]) -> Option<Weakness> {
    if let Some(w) = obviously_weak(bytes) {
        return Some(w);
    }
    let Some(point) = CompressedEdwardsY(*bytes).decompress() else {
        return Some(Weakness::NotAPoint);
    };
    // Decompression reduces y modulo p and takes the sign of x = 0 as given. The byte check
    // refused both: y < p here, and x = 0 only for y = ±1, whose signed spellings it refused.
    // (The tests check that re-encoding gives the bytes back for every key this accepts.)
    if point.is_small_order() {
        return Some(Weakness::SmallOrder);
    }
    if !torsion_free(&point) {
        return Some(Weakness::MixedOrder);
    }
    None
}

/// ℓ·P = identity, in variable time: ℓ·P = (ℓ − 1)·P + P, where ℓ − 1 is the canonical scalar −1,
/// multiplied with a width-5 NAF (curve25519-dalek's `vartime_double_scalar_mul_basepoint`, the
/// base point's scalar 0). curve25519-dalek's own `is_torsion_free` does the same product in
/// constant time: the whole key check took 36 µs that way on the development machine, 29 µs
/// this way.
fn torsion_free(point: &EdwardsPoint) -> bool {
    let minus_one = -Scalar::ONE;
    let l_minus_1_p =
        EdwardsPoint::vartime_double_scalar_mul_basepoint(&minus_one, point, &Scalar::ZERO);
    (l_minus_1_p + point).is_identity()
}

#[cfg(test)]
mod tests;
