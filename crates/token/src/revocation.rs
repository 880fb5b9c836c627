//! Revocation ids and revocation lists.

use core::fmt;
use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::codec::truncated_sha256;
use crate::error::Error;
use crate::hex;

const REVOCATION_DST: &[u8] = b"vouch-token/v1/revocation\0";

/// The revocation id of one block: the first 16 bytes of
/// SHA-256(`"vouch-token/v1/revocation\0"` ‖ block signature), shown as 32 hex digits.
///
/// Ed25519 signatures as ring verifies them are not malleable, so a block has one id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RevocationId([u8; 16]);

impl RevocationId {
    pub(crate) fn of_signature(sig: &[u8; 64]) -> Self {
        Self(truncated_sha256(REVOCATION_DST, sig))
    }

    /// Parses 32 hex digits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] unless the input is exactly 32 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, Error> {
        hex::decode_array(s.trim())
            .map(Self)
            .ok_or(Error::InvalidInput("revocation id must be 32 hex digits"))
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for RevocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for RevocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RevocationId({self})")
    }
}

impl Serialize for RevocationId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A revocation list the verifier consults for every block of every token.
///
/// Implemented for sets and vectors of ids, for `Arc`, and for any
/// `Fn(&RevocationId) -> bool` (for a list kept elsewhere).
pub trait Revocations: Send + Sync {
    /// True if the id is revoked.
    fn is_revoked(&self, id: &RevocationId) -> bool;
}

impl Revocations for BTreeSet<RevocationId> {
    fn is_revoked(&self, id: &RevocationId) -> bool {
        self.contains(id)
    }
}

impl Revocations for Vec<RevocationId> {
    fn is_revoked(&self, id: &RevocationId) -> bool {
        self.contains(id)
    }
}

impl<T: Revocations + ?Sized> Revocations for Arc<T> {
    fn is_revoked(&self, id: &RevocationId) -> bool {
        (**self).is_revoked(id)
    }
}

impl<F> Revocations for F
where
    F: Fn(&RevocationId) -> bool + Send + Sync,
{
    fn is_revoked(&self, id: &RevocationId) -> bool {
        self(id)
    }
}
