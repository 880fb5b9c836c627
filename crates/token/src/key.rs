//! Ed25519 keys, root key ids and root key sets.

use core::fmt;
use std::collections::BTreeMap;
use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use zeroize::Zeroizing;

use crate::codec::truncated_sha256;
use crate::error::Error;
use crate::hex;
use crate::point;

const ROOT_KEY_ID_DST: &[u8] = b"vouch-token/v1/root-key-id\0";

/// An Ed25519 key pair: a root key that mints tokens, or the ephemeral key a token carries.
///
/// The 32-byte seed is wiped from memory when the key pair is dropped. (ring's own expanded copy
/// of the key is not; that is a limitation of ring.)
pub struct KeyPair {
    seed: Zeroizing<[u8; 32]>,
    inner: Ed25519KeyPair,
}

impl KeyPair {
    /// Generates a new key pair from the system random number generator.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] if the system random number generator fails.
    pub fn generate() -> Result<Self, Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(seed.as_mut())
            .map_err(|_| Error::Random)?;
        Self::from_seed(&seed)
    }

    /// Builds the key pair for a 32-byte Ed25519 seed (the RFC 8032 private key).
    ///
    /// # Errors
    ///
    /// None in practice: every 32-byte string is a valid seed. The `Result` guards against a
    /// future ring rejecting one.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, Error> {
        let inner = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| Error::InvalidInput("rejected ed25519 seed"))?;
        Ok(Self {
            seed: Zeroizing::new(*seed),
            inner,
        })
    }

    /// Builds the key pair for a seed and checks that it matches the expected public key.
    pub(crate) fn from_seed_checked(seed: &[u8; 32], public: &PublicKey) -> Option<Self> {
        let inner = Ed25519KeyPair::from_seed_and_public_key(seed, &public.0).ok()?;
        Some(Self {
            seed: Zeroizing::new(*seed),
            inner,
        })
    }

    /// The 32-byte seed. Treat it as the secret it is.
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.inner.public_key().as_ref());
        PublicKey(out)
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.inner.sign(msg).as_ref());
        out
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub(crate) [u8; 32]);

impl PublicKey {
    /// Wraps 32 raw bytes. Nothing is checked here: a weak key (see [`PublicKey::weakness`]) is
    /// refused where it would become trusted.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hexadecimal digits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] unless the input is exactly 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, Error> {
        hex::decode_array(s.trim())
            .map(Self)
            .ok_or(Error::InvalidInput("public key must be 64 hex digits"))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hexadecimal.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// Why this key must not be trusted to verify anything, or `None` if it is fit: it must be
    /// the canonical encoding of a curve point in the prime-order subgroup, other than the
    /// identity. The reasons are "not a curve point", "not canonically encoded", "of small
    /// order" and "not in the prime-order subgroup".
    ///
    /// No [`KeyPair`] has a weak public key; one can only be made from bytes. Ed25519 verifiers
    /// (ring's, and vouch's cofactored ZIP-215 rule, [`crate::ed25519`]) verify under weak keys,
    /// and under the identity point the signature `R = identity, S = 0` verifies for every
    /// message, so vouch checks this wherever a key becomes trusted: a root
    /// key when a [`Verifier`](crate::Verifier) looks it up (and when [`RootKeySet::insert`]
    /// adds it), a block's next key when the token is decoded and checked.
    ///
    /// This decodes the point and multiplies it by the group order (in variable time: the key
    /// is public): about four fifths of the cost of a signature verification.
    pub fn weakness(&self) -> Option<&'static str> {
        point::weakness(&self.0).map(point::Weakness::reason)
    }

    /// The id a token uses to name this key as its root.
    pub fn root_key_id(&self) -> RootKeyId {
        RootKeyId(truncated_sha256(ROOT_KEY_ID_DST, &self.0))
    }

    /// Verifies a signature by vouch's one rule (ZIP-215, [`crate::ed25519`]).
    pub(crate) fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        crate::ed25519::verify(&self.0, msg, sig)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The 8-byte id of a root key, carried in every token: the first 8 bytes of
/// SHA-256(`"vouch-token/v1/root-key-id\0"` ‖ public key).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RootKeyId(pub(crate) [u8; 8]);

impl RootKeyId {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Debug for RootKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootKeyId({})", hex::encode(&self.0))
    }
}

impl fmt::Display for RootKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

/// Where a verifier finds the root public key a token names.
///
/// Implemented for a single [`PublicKey`], for [`RootKeySet`] (several keys, for rotation), and
/// through `Arc` for shared providers. A verifier never trusts a weak key (see
/// [`PublicKey::weakness`]) a provider returns.
pub trait RootKeys: Send + Sync {
    /// The public key with this id, if trusted.
    fn root_key(&self, id: &RootKeyId) -> Option<PublicKey>;
}

impl RootKeys for PublicKey {
    fn root_key(&self, id: &RootKeyId) -> Option<PublicKey> {
        (self.root_key_id() == *id).then_some(*self)
    }
}

impl<T: RootKeys + ?Sized> RootKeys for Arc<T> {
    fn root_key(&self, id: &RootKeyId) -> Option<PublicKey> {
        (**self).root_key(id)
    }
}

/// A set of trusted root public keys, looked up by [`RootKeyId`].
///
/// Hold the old and the new key during a rotation: tokens minted under either verify.
///
/// ```
/// use vouch_token::{KeyPair, RootKeySet, Verifier};
/// # fn main() -> Result<(), vouch_token::Error> {
/// let (old, new) = (KeyPair::generate()?, KeyPair::generate()?);
/// let mut roots = RootKeySet::new();
/// roots.insert(old.public_key())?.insert(new.public_key())?;
/// let verifier = Verifier::new(roots);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct RootKeySet {
    keys: BTreeMap<RootKeyId, PublicKey>,
}

impl RootKeySet {
    /// An empty set; it trusts nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set of these keys.
    ///
    /// # Errors
    ///
    /// As [`RootKeySet::insert`], for the first key refused.
    pub fn from_keys(keys: impl IntoIterator<Item = PublicKey>) -> Result<Self, Error> {
        let mut set = Self::new();
        for key in keys {
            set.insert(key)?;
        }
        Ok(set)
    }

    /// Adds a trusted key. Adding a key the set already holds changes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] if the key is weak (see [`PublicKey::weakness`]), or if another
    /// key in the set has the same [`RootKeyId`]: tokens name their root by this 8-byte id, so
    /// two keys under one id cannot both be trusted, and the set keeps the one it had.
    pub fn insert(&mut self, key: PublicKey) -> Result<&mut Self, Error> {
        self.insert_as(key.root_key_id(), key)
    }

    /// Adds a key under a given id: tests use it to make two keys collide.
    pub(crate) fn insert_as(&mut self, id: RootKeyId, key: PublicKey) -> Result<&mut Self, Error> {
        if key.weakness().is_some() {
            return Err(Error::InvalidInput("root key is a weak ed25519 public key"));
        }
        match self.keys.get(&id) {
            Some(held) if *held != key => Err(Error::InvalidInput(
                "root key id collides with another key in the set",
            )),
            Some(_) => Ok(self),
            None => {
                self.keys.insert(id, key);
                Ok(self)
            }
        }
    }

    /// Removes a key; tokens minted under it stop verifying. False if the set does not hold it.
    pub fn remove(&mut self, key: &PublicKey) -> bool {
        let id = key.root_key_id();
        if self.keys.get(&id) != Some(key) {
            return false;
        }
        self.keys.remove(&id).is_some()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if the set trusts no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl RootKeys for RootKeySet {
    fn root_key(&self, id: &RootKeyId) -> Option<PublicKey> {
        self.keys.get(id).copied()
    }
}

#[cfg(test)]
mod tests;
