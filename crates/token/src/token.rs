//! The token: a signed chain of blocks plus a proof.

use core::fmt;

use base64ct::{Base64UrlUnpadded, Encoding};
use zeroize::Zeroizing;

use crate::block::{Body, MAX_DEPTH};
use crate::codec::{Reader, Writer};
use crate::ed25519;
use crate::error::{Error, Malformed, Refusal};
use crate::key::{KeyPair, PublicKey, RootKeyId};
use crate::point;
use crate::revocation::RevocationId;
use crate::rights::{self, DEFAULT_MAX_DEPTH, Restriction, Rights};

/// The format version this crate writes and reads.
pub const VERSION: u8 = 1;

/// Largest encoded token accepted by [`Token::from_bytes`] and [`Token::from_base64`], in bytes
/// (before base64).
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

const BLOCK_DST: &[u8] = b"vouch-token/v1/block\0";
const SEAL_DST: &[u8] = b"vouch-token/v1/seal\0";
const PROOF_SECRET: u8 = 0;
const PROOF_SEALED: u8 = 1;

/// An attenuable capability token.
///
/// A token is a chain of blocks. Block 0 (the authority) is signed by the root key and grants
/// rights; every later block narrows them and is signed by the ephemeral key the block before it
/// named. The token ends with a proof: the secret of the last named key, which lets the holder
/// add a block ([`Token::attenuate`]), or, once [sealed](Token::seal), a signature by that key
/// instead, after which nobody can add a block.
///
/// The encoded token is a bearer credential (and, unsealed, carries a secret): treat it as one.
/// Its `Debug` output does not show the proof.
#[derive(Clone)]
pub struct Token {
    pub(crate) root_key_id: RootKeyId,
    pub(crate) blocks: Vec<Block>,
    pub(crate) proof: Proof,
}

/// One signed block: the payload bytes exactly as signed, their decoded form, the next key and
/// the signature.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub(crate) payload: Vec<u8>,
    pub(crate) body: Body,
    pub(crate) next_key: PublicKey,
    pub(crate) signature: [u8; 64],
}

#[derive(Clone)]
pub(crate) enum Proof {
    /// The seed of the last block's next key.
    Secret(Zeroizing<[u8; 32]>),
    /// A signature by the last block's next key over the seal message.
    Sealed([u8; 64]),
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Token {
    /// Mints a root token signed by `root`, for `subject`, issued by `issuer`, valid from now.
    ///
    /// ```
    /// use vouch_token::{KeyPair, Restriction, Token};
    /// # fn main() -> Result<(), vouch_token::Error> {
    /// let root = KeyPair::generate()?;
    /// let token = Token::mint(
    ///     &root,
    ///     "auth-server",
    ///     "agent-a",
    ///     Restriction::new()
    ///         .tools(["db_query", "search"])
    ///         .operations("db_query", ["read"])
    ///         .ttl(3600),
    /// )?;
    /// assert_eq!(token.depth(), 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a missing expiry or a bad name, [`Error::Refused`] for an
    /// inconsistent restriction (operations on a tool outside the tool list, an empty validity
    /// window), [`Error::Random`] if no ephemeral key can be generated.
    pub fn mint(
        root: &KeyPair,
        issuer: impl Into<String>,
        subject: impl Into<String>,
        restriction: Restriction,
    ) -> Result<Self, Error> {
        Self::mint_at(root, issuer, subject, restriction, unix_now())
    }

    /// [`Token::mint`] with an explicit clock (Unix seconds) for the TTL.
    ///
    /// # Errors
    ///
    /// As [`Token::mint`].
    pub fn mint_at(
        root: &KeyPair,
        issuer: impl Into<String>,
        subject: impl Into<String>,
        restriction: Restriction,
        now: u64,
    ) -> Result<Self, Error> {
        Self::mint_with(
            root,
            issuer.into(),
            subject.into(),
            restriction,
            now,
            &KeyPair::generate()?,
        )
    }

    pub(crate) fn mint_with(
        root: &KeyPair,
        issuer: String,
        subject: String,
        restriction: Restriction,
        now: u64,
        next: &KeyPair,
    ) -> Result<Self, Error> {
        for s in [&issuer, &subject] {
            if s.is_empty() || s.len() > crate::codec::MAX_STR {
                return Err(Error::InvalidInput(
                    "issuer and subject must be 1 to 1024 bytes",
                ));
            }
        }
        let mut caveats = restriction.resolve(now)?;
        caveats.max_depth.get_or_insert(DEFAULT_MAX_DEPTH);
        rights::check_authority(&caveats)?;
        let body = Body {
            issuer: Some(issuer),
            subject: Some(subject),
            caveats,
        };
        let root_key_id = root.public_key().root_key_id();
        let block = Block::sign(root, root_key_id, 0, None, body, next.public_key());
        let token = Self {
            root_key_id,
            blocks: vec![block],
            proof: Proof::Secret(Zeroizing::new(*next.seed())),
        };
        token.check_size()?;
        Ok(token)
    }

    /// Adds a block that narrows this token, for handing to a delegate.
    ///
    /// Needs no key but the one the token itself carries. The new token's rights are the
    /// intersection of this token's and the restriction's; a restriction that would widen a
    /// right, or could never be satisfied, is refused rather than producing a token that
    /// silently fails.
    ///
    /// This does not verify the token (no root key is needed to attenuate); verify first if the
    /// token came from someone else.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] (with the [`Refusal`]) for a sealed token, a used-up delegation depth or
    /// a widening or unsatisfiable restriction; [`Error::InvalidInput`] for a bad name;
    /// [`Error::BadSignature`] if the token's proof does not match its last key.
    pub fn attenuate(&self, restriction: Restriction) -> Result<Self, Error> {
        self.attenuate_at(restriction, unix_now())
    }

    /// [`Token::attenuate`] with an explicit clock (Unix seconds) for the TTL.
    ///
    /// # Errors
    ///
    /// As [`Token::attenuate`].
    pub fn attenuate_at(&self, restriction: Restriction, now: u64) -> Result<Self, Error> {
        self.attenuate_with(restriction, now, &KeyPair::generate()?)
    }

    pub(crate) fn attenuate_with(
        &self,
        restriction: Restriction,
        now: u64,
        next: &KeyPair,
    ) -> Result<Self, Error> {
        let signer = self.proof_key()?;
        let caveats = restriction.resolve(now)?;
        self.rights()?.check_attenuation(&caveats)?;
        let index = self.blocks.len();
        let prev = self.blocks.last().map(|b| &b.signature);
        let body = Body {
            issuer: None,
            subject: None,
            caveats,
        };
        let block = Block::sign(
            &signer,
            self.root_key_id,
            index,
            prev,
            body,
            next.public_key(),
        );
        let mut blocks = self.blocks.clone();
        blocks.push(block);
        let token = Self {
            root_key_id: self.root_key_id,
            blocks,
            proof: Proof::Secret(Zeroizing::new(*next.seed())),
        };
        token.check_size()?;
        Ok(token)
    }

    /// Appends a block signed with the proof key and skips every attenuation check: what any
    /// holder can do by hand. For tests and fuzzing only (see `internal`); the result is not
    /// checked in any way, and may not even decode.
    pub(crate) fn append_unchecked(
        &self,
        restriction: Restriction,
        now: u64,
        next_key: PublicKey,
        proof: Proof,
    ) -> Result<Self, Error> {
        let signer = self.proof_key()?;
        let body = Body {
            issuer: None,
            subject: None,
            caveats: restriction.resolve(now)?,
        };
        let prev = self.blocks.last().map(|b| &b.signature);
        let block = Block::sign(
            &signer,
            self.root_key_id,
            self.blocks.len(),
            prev,
            body,
            next_key,
        );
        let mut blocks = self.blocks.clone();
        blocks.push(block);
        Ok(Self {
            root_key_id: self.root_key_id,
            blocks,
            proof,
        })
    }

    /// Replaces the proof with a final signature, so that nobody can attenuate the token further.
    ///
    /// # Errors
    ///
    /// [`Refusal::Sealed`] if already sealed; [`Error::BadSignature`] if the proof does not match.
    pub fn seal(&self) -> Result<Self, Error> {
        let signer = self.proof_key()?;
        let last = self.last_block()?;
        let sig = signer.sign(&seal_message(
            self.root_key_id,
            self.blocks.len(),
            &last.signature,
        ));
        Ok(Self {
            root_key_id: self.root_key_id,
            blocks: self.blocks.clone(),
            proof: Proof::Sealed(sig),
        })
    }

    /// True once [`Token::seal`] has been applied.
    pub fn is_sealed(&self) -> bool {
        matches!(self.proof, Proof::Sealed(_))
    }

    /// Number of attenuation blocks (0 for a root token).
    pub fn depth(&self) -> usize {
        self.blocks.len().saturating_sub(1)
    }

    /// The id of the root key that signed the authority block.
    pub fn root_key_id(&self) -> RootKeyId {
        self.root_key_id
    }

    /// One revocation id per block, authority first. Revoking any of them revokes this token and
    /// every token attenuated from the block's holder onwards.
    pub fn revocation_ids(&self) -> Vec<RevocationId> {
        self.blocks
            .iter()
            .map(|b| RevocationId::of_signature(&b.signature))
            .collect()
    }

    /// The binary encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(VERSION);
        w.bytes(&self.root_key_id.0);
        // At most MAX_DEPTH + 1 blocks, checked when built or decoded.
        w.u8(u8::try_from(self.blocks.len()).unwrap_or(u8::MAX));
        for b in &self.blocks {
            w.len(b.payload.len());
            w.bytes(&b.payload);
            w.bytes(b.next_key.as_bytes());
            w.bytes(&b.signature);
        }
        match &self.proof {
            Proof::Secret(seed) => {
                w.u8(PROOF_SECRET);
                w.bytes(seed.as_ref());
            }
            Proof::Sealed(sig) => {
                w.u8(PROOF_SEALED);
                w.bytes(sig);
            }
        }
        w.into_inner()
    }

    /// The transport form: base64url without padding, fit for an HTTP header.
    pub fn to_base64(&self) -> String {
        Base64UrlUnpadded::encode_string(&self.to_bytes())
    }

    /// Decodes the binary form strictly, with the default size cap. No signature is checked.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for anything but a canonical token of a supported version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Self::from_bytes_with_cap(bytes, DEFAULT_MAX_TOKEN_BYTES)
    }

    /// Decodes the binary form strictly, refusing more than `max_bytes`.
    ///
    /// # Errors
    ///
    /// As [`Token::from_bytes`].
    pub fn from_bytes_with_cap(bytes: &[u8], max_bytes: usize) -> Result<Self, Error> {
        if bytes.len() > max_bytes {
            return Err(Malformed("token too large").into());
        }
        let mut r = Reader::new(bytes);
        if r.u8()? != VERSION {
            return Err(Malformed("unsupported version").into());
        }
        let root_key_id = RootKeyId(r.array()?);
        let n = usize::from(r.u8()?);
        if n == 0 {
            return Err(Malformed("no blocks").into());
        }
        if n > usize::from(MAX_DEPTH) + 1 {
            return Err(Malformed("too many blocks").into());
        }
        let mut blocks = Vec::with_capacity(n);
        for i in 0..n {
            let len = r.len()?;
            let payload = r.take(len)?.to_vec();
            let body = Body::decode(&payload, i == 0)?;
            let next_key = PublicKey(r.array()?);
            // The byte-level half of the key check; the rest is done once a signature vouches
            // for the key (`check_signatures`), so that no curve arithmetic runs on bytes nobody
            // signed.
            if let Some(weak) = point::obviously_weak(next_key.as_bytes()) {
                return Err(Malformed(weak.next_key_reason()).into());
            }
            let signature = r.array()?;
            blocks.push(Block {
                payload,
                body,
                next_key,
                signature,
            });
        }
        let proof = match r.u8()? {
            PROOF_SECRET => Proof::Secret(Zeroizing::new(r.array()?)),
            PROOF_SEALED => Proof::Sealed(r.array()?),
            _ => return Err(Malformed("unknown proof kind").into()),
        };
        r.finish()?;
        Ok(Self {
            root_key_id,
            blocks,
            proof,
        })
    }

    /// Decodes the transport form (strict base64url, no padding) with the default size cap.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for bad base64 or a malformed token.
    pub fn from_base64(s: &str) -> Result<Self, Error> {
        Self::from_base64_with_cap(s, DEFAULT_MAX_TOKEN_BYTES)
    }

    /// Decodes the transport form, refusing a token of more than `max_bytes` (before base64).
    ///
    /// # Errors
    ///
    /// As [`Token::from_base64`].
    pub fn from_base64_with_cap(s: &str, max_bytes: usize) -> Result<Self, Error> {
        // Refuse before decoding: 4 characters carry 3 bytes.
        if s.len() / 4 * 3 > max_bytes.saturating_add(3) {
            return Err(Malformed("token too large").into());
        }
        let bytes = Base64UrlUnpadded::decode_vec(s).map_err(|_| Malformed("bad base64"))?;
        Self::from_bytes_with_cap(&bytes, max_bytes)
    }

    /// The rights the blocks add up to, without checking any signature.
    pub(crate) fn rights(&self) -> Result<Rights, Malformed> {
        Rights::of(self.blocks.iter().map(|b| &b.body))
    }

    fn last_block(&self) -> Result<&Block, Error> {
        self.blocks.last().ok_or(Malformed("no blocks").into())
    }

    /// The key the proof holds, checked against the last block's next key.
    fn proof_key(&self) -> Result<KeyPair, Error> {
        let Proof::Secret(seed) = &self.proof else {
            return Err(Refusal::Sealed.into());
        };
        let last = self.last_block()?;
        KeyPair::from_seed_checked(seed, &last.next_key).ok_or(Error::BadSignature)
    }

    /// Checks every signature and the proof against the root key (which the caller checked is
    /// not weak), and that every next key that verifies something is not weak.
    ///
    /// The signatures (every block's, and the seal's) are verified as one batch, under the same
    /// rule as one at a time ([`crate::ed25519`]). If the batch fails, they are verified one at a
    /// time, in order, so that the error is the one a single verification gives.
    pub(crate) fn check_signatures(&self, root: &PublicKey) -> Result<(), Error> {
        if self.signature_count() >= 2 && self.batch_verifies(root) {
            self.check_keys_and_proof()
        } else {
            self.check_one_by_one(root)
        }
    }

    /// Block signatures, plus the seal's when sealed.
    fn signature_count(&self) -> usize {
        self.blocks.len() + usize::from(self.is_sealed())
    }

    /// True if every signature of the chain (and the seal) verifies, in one batch.
    pub(crate) fn batch_verifies(&self, root: &PublicKey) -> bool {
        let mut batch = ed25519::Batch::new();
        let mut signer = root;
        let mut prev: Option<&[u8; 64]> = None;
        for (i, b) in self.blocks.iter().enumerate() {
            let msg = block_message(self.root_key_id, i, prev, &b.payload, &b.next_key);
            batch.add(signer.as_bytes(), &msg, &b.signature);
            signer = &b.next_key;
            prev = Some(&b.signature);
        }
        if let (Proof::Sealed(sig), Some(last)) = (&self.proof, self.blocks.last()) {
            let msg = seal_message(self.root_key_id, self.blocks.len(), &last.signature);
            batch.add(last.next_key.as_bytes(), &msg, sig);
        }
        batch.verify()
    }

    /// What [`Token::check_one_by_one`] checks besides the signatures, for a chain whose
    /// signatures all verified: the same checks in the same order, so the same first error.
    fn check_keys_and_proof(&self) -> Result<(), Error> {
        for (i, b) in self.blocks.iter().enumerate() {
            if self.next_key_needs_check(i)
                && let Some(weak) = point::weakness(b.next_key.as_bytes())
            {
                return Err(Malformed(weak.next_key_reason()).into());
            }
        }
        let last = self.last_block()?;
        match &self.proof {
            Proof::Secret(seed) => KeyPair::from_seed_checked(seed, &last.next_key)
                .map(drop)
                .ok_or(Error::BadSignature),
            // Its signature was in the batch.
            Proof::Sealed(_) => Ok(()),
        }
    }

    /// Whether block `i`'s next key must be checked for weakness: every one but the last when
    /// the proof is a seed (the key it matches is derived from a seed, so it is a multiple of
    /// the base point).
    fn next_key_needs_check(&self, i: usize) -> bool {
        let last = i + 1 == self.blocks.len();
        !(last && matches!(self.proof, Proof::Secret(_)))
    }

    /// Every signature one at a time, in chain order, each next key checked once the signature
    /// that vouches for it has verified and before it verifies anything.
    pub(crate) fn check_one_by_one(&self, root: &PublicKey) -> Result<(), Error> {
        let mut signer = *root;
        let mut prev: Option<&[u8; 64]> = None;
        for (i, b) in self.blocks.iter().enumerate() {
            let msg = block_message(self.root_key_id, i, prev, &b.payload, &b.next_key);
            if !signer.verify(&msg, &b.signature) {
                return Err(Error::BadSignature);
            }
            if self.next_key_needs_check(i)
                && let Some(weak) = point::weakness(b.next_key.as_bytes())
            {
                return Err(Malformed(weak.next_key_reason()).into());
            }
            signer = b.next_key;
            prev = Some(&b.signature);
        }
        let last = self.last_block()?;
        let ok = match &self.proof {
            Proof::Secret(seed) => KeyPair::from_seed_checked(seed, &last.next_key).is_some(),
            Proof::Sealed(sig) => last.next_key.verify(
                &seal_message(self.root_key_id, self.blocks.len(), &last.signature),
                sig,
            ),
        };
        if ok { Ok(()) } else { Err(Error::BadSignature) }
    }

    fn check_size(&self) -> Result<(), Error> {
        if self.to_bytes().len() > DEFAULT_MAX_TOKEN_BYTES {
            return Err(Error::InvalidInput("token would exceed the 8 KiB size cap"));
        }
        Ok(())
    }
}

impl Block {
    fn sign(
        signer: &KeyPair,
        root_key_id: RootKeyId,
        index: usize,
        prev: Option<&[u8; 64]>,
        body: Body,
        next_key: PublicKey,
    ) -> Self {
        let payload = body.encode();
        let msg = block_message(root_key_id, index, prev, &payload, &next_key);
        Self {
            signature: signer.sign(&msg),
            payload,
            body,
            next_key,
        }
    }
}

/// The bytes block `index` is signed over: domain, version, root key id, index, previous
/// signature (none for block 0), payload length and payload, next key.
fn block_message(
    root_key_id: RootKeyId,
    index: usize,
    prev: Option<&[u8; 64]>,
    payload: &[u8],
    next_key: &PublicKey,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(BLOCK_DST.len() + 1 + 8 + 4 + 64 + 4 + payload.len() + 32);
    m.extend_from_slice(BLOCK_DST);
    m.push(VERSION);
    m.extend_from_slice(&root_key_id.0);
    m.extend_from_slice(&u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes());
    if let Some(p) = prev {
        m.extend_from_slice(p);
    }
    m.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    m.extend_from_slice(payload);
    m.extend_from_slice(next_key.as_bytes());
    m
}

/// The bytes the seal signature covers: domain, version, root key id, block count, last signature.
fn seal_message(root_key_id: RootKeyId, blocks: usize, last_signature: &[u8; 64]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SEAL_DST.len() + 1 + 8 + 4 + 64);
    m.extend_from_slice(SEAL_DST);
    m.push(VERSION);
    m.extend_from_slice(&root_key_id.0);
    m.extend_from_slice(&u32::try_from(blocks).unwrap_or(u32::MAX).to_be_bytes());
    m.extend_from_slice(last_signature);
    m
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("root_key_id", &self.root_key_id)
            .field("blocks", &self.blocks.len())
            .field("sealed", &self.is_sealed())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
