//! The one Ed25519 verification rule of vouch, single and batch: ZIP-215.
//!
//! RFC 8032 leaves verifiers a choice (cofactored or not, which encodings to take), and
//! implementations differ on crafted inputs ("Taming the many EdDSAs", Chalkias et al., 2020).
//! One consequence: the usual batch equation can accept a set of signatures that a one-at-a-time
//! verifier such as ring's refuses, or the other way round. vouch verifies every Ed25519
//! signature — token blocks and seals, RFC 9421 message signatures — under one rule, the one
//! [ZIP-215](https://zips.z.cash/zip-0215) specifies, for which a batch accepts exactly what
//! single verification accepts:
//!
//! - `A` (the public key) and `R` (the first half of the signature) must decode to curve points;
//!   non-canonical encodings are accepted, and `k = SHA-512(R ‖ A ‖ M)` hashes the bytes as
//!   received;
//! - `S` (the second half) must be canonical: an integer below the group order ℓ;
//! - the equation is the cofactored one, `[8][S]B = [8]R + [8][k]A`.
//!
//! [`verify`] is the single check, and [`Batch`] checks many signatures in one multi-scalar
//! multiplication, with random 128-bit coefficients from the operating system (ring's
//! `SystemRandom`). Both are ed25519-zebra's implementation of the rule.
//!
//! Under a cofactored rule a key of small order verifies signatures over any message, so this
//! module does not decide which keys to trust: vouch refuses small-order, mixed-order and
//! non-canonical public keys where they are loaded (see [`weakness`] and
//! [`PublicKey::weakness`](crate::PublicKey::weakness)), before any signature is checked
//! against them.

use ed25519_zebra::batch;
use ed25519_zebra::{Signature, VerificationKey, VerificationKeyBytes};
use ring::rand::{SecureRandom, SystemRandom};

pub use crate::point::Weakness;

/// Verifies `signature` (64 bytes, `R ‖ S`) over `message` under `public`, by the ZIP-215
/// rule. False for a signature of another length or a key that is not a curve point.
///
/// This does not judge the key: check it with [`weakness`] where it is loaded.
pub fn verify(public: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    DecodedKey::decode(public).is_some_and(|key| key.verify(message, signature))
}

/// Why 32 bytes must not be trusted as an Ed25519 public key, or `None` if they are fit: the
/// canonical encoding of a point of the prime-order subgroup, other than the identity.
///
/// This decodes the point and multiplies it by the group order ℓ, in variable time (the key is
/// public): 29 µs on the development machine, against 37 µs for a signature verification.
pub fn weakness(public: &[u8; 32]) -> Option<Weakness> {
    crate::point::weakness(public)
}

/// A public key decoded once, for verifying many signatures under the ZIP-215 rule without
/// decoding it each time.
#[derive(Clone, Copy)]
pub struct DecodedKey(VerificationKey);

impl DecodedKey {
    /// Decodes a public key; `None` if the bytes are not a curve point. As ZIP-215 says, a
    /// non-canonical encoding of a point is taken as that point (and hashed as received); the
    /// key is not judged here (see [`weakness`]).
    pub fn decode(public: &[u8; 32]) -> Option<Self> {
        VerificationKey::try_from(VerificationKeyBytes::from(*public))
            .ok()
            .map(Self)
    }

    /// Verifies `signature` (64 bytes) over `message` under this key, as [`verify`] does.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        self.0
            .verify(&Signature::from_bytes(&bytes), message)
            .is_ok()
    }
}

impl core::fmt::Debug for DecodedKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("DecodedKey")
            .field(&crate::hex::encode(self.0.as_ref()))
            .finish()
    }
}

/// Several signatures verified at once, under the same rule as [`verify`].
///
/// [`Batch::verify`] is true exactly when [`verify`] is true for every signature added (but for
/// a chance of 2⁻¹²⁸ per batch, the cost of an attacker guessing the random coefficients). A
/// false result does not say which signature failed: verify them one at a time to find out.
///
/// ```
/// use ring::signature::{Ed25519KeyPair, KeyPair as _};
/// use vouch_token::ed25519::Batch;
///
/// let (a, b) = (Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap(),
///               Ed25519KeyPair::from_seed_unchecked(&[2; 32]).unwrap());
/// let public = |k: &Ed25519KeyPair| <[u8; 32]>::try_from(k.public_key().as_ref()).unwrap();
/// let sign = |k: &Ed25519KeyPair, m: &[u8]| <[u8; 64]>::try_from(k.sign(m).as_ref()).unwrap();
///
/// let mut batch = Batch::new();
/// batch.add(&public(&a), b"one", &sign(&a, b"one"));
/// batch.add(&public(&b), b"two", &sign(&b, b"two"));
/// assert!(batch.verify());
///
/// let mut bad = Batch::new();
/// bad.add(&public(&a), b"one", &sign(&a, b"one"));
/// bad.add(&public(&b), b"two", &sign(&b, b"three"));
/// assert!(!bad.verify());
/// ```
#[derive(Default)]
pub struct Batch {
    queue: batch::Verifier,
    len: usize,
}

impl Batch {
    /// An empty batch (which verifies).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `signature` over `message` under `public`. The message is hashed here and not kept.
    pub fn add(&mut self, public: &[u8; 32], message: &[u8], signature: &[u8; 64]) {
        self.queue.queue((
            VerificationKeyBytes::from(*public),
            Signature::from_bytes(signature),
            message,
        ));
        self.len += 1;
    }

    /// Number of signatures added.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no signature was added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True if every signature added verifies (see [`Batch`]). Also false if the operating
    /// system's random number generator fails: a batch is never checked with coefficients an
    /// attacker could predict, and the one-at-a-time check then decides.
    pub fn verify(self) -> bool {
        if self.len == 0 {
            return true;
        }
        // ed25519-zebra draws 16 bytes per signature: fetch them all in one call.
        let mut rng = Coefficients::new(self.len.saturating_mul(16));
        if rng.failed {
            return false;
        }
        let ok = self.queue.verify(&mut rng).is_ok();
        ok && !rng.failed
    }
}

impl core::fmt::Debug for Batch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Batch")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// The batch's random coefficients: bytes from ring's `SystemRandom`, drawn up front, more drawn
/// if the batch asks for more. A failure of the generator is recorded, never hidden.
struct Coefficients {
    bytes: Vec<u8>,
    at: usize,
    failed: bool,
}

impl Coefficients {
    fn new(n: usize) -> Self {
        let mut bytes = vec![0u8; n];
        let failed = SystemRandom::new().fill(&mut bytes).is_err();
        Self {
            bytes,
            at: 0,
            failed,
        }
    }
}

impl rand_core::RngCore for Coefficients {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let end = self.at.saturating_add(dest.len());
        match self.bytes.get(self.at..end) {
            Some(src) => {
                dest.copy_from_slice(src);
                self.at = end;
            }
            None => {
                if SystemRandom::new().fill(dest).is_err() {
                    self.failed = true;
                }
            }
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for Coefficients {}

#[cfg(test)]
mod tests;
