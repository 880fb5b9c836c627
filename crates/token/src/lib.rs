//! Attenuable Ed25519 capability tokens for MCP servers.
//!
//! A root token names the tools an agent may call (or all of them), the operations allowed on
//! each, resource limits, an expiry, the issuer and subject, and how many times it may be
//! delegated. Any holder can [attenuate](Token::attenuate) it for a sub-agent, offline, and the
//! result can only be narrower. A server [verifies](Verifier::verify) the whole chain with the
//! root public key alone.
//!
//! ```
//! use vouch_token::{Access, KeyPair, Restriction, Token, Verifier};
//!
//! # fn main() -> Result<(), vouch_token::Error> {
//! // The authorization server mints a root token for agent-a.
//! let root = KeyPair::generate()?;
//! let token = Token::mint(
//!     &root,
//!     "auth-server",
//!     "agent-a",
//!     Restriction::new()
//!         .tools(["db_query", "file_read", "search"])
//!         .operations("db_query", ["read", "write"])
//!         .limit("db_query", "max_rows", 100)
//!         .ttl(3600),
//! )?;
//!
//! // agent-a narrows it for a worker, without asking anyone.
//! let worker = token.attenuate(
//!     Restriction::new()
//!         .tools(["db_query"])
//!         .operations("db_query", ["read"])
//!         .limit("db_query", "max_rows", 10)
//!         .holder("https://agents.example/worker"),
//! )?;
//! let header_value = worker.to_base64();
//!
//! // The MCP server verifies it with the root public key alone.
//! let verifier = Verifier::new(root.public_key());
//! let received = Token::from_base64(&header_value)?;
//! let access = Access::now()
//!     .caller("https://agents.example/worker")
//!     .tool("db_query")
//!     .operation("read");
//! let facts = verifier.verify(&received, &access)?;
//! assert_eq!(facts.limit("db_query", "max_rows"), Some(10));
//!
//! // Writing was granted to agent-a, but not to the worker.
//! let write = access.operation("write");
//! assert!(verifier.verify(&received, &write).unwrap_err().is_forbidden());
//! # Ok(()) }
//! ```
//!
//! The byte format is specified in `docs/token-format.md` in the repository.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod block;
mod codec;
pub mod ed25519;
mod error;
mod hex;
mod inspect;
mod key;
mod op;
mod point;
mod revocation;
mod rights;
mod token;
mod verify;

pub use error::{Error, Malformed, Refusal};
pub use inspect::{BlockView, Inspection};
pub use key::{KeyPair, PublicKey, RootKeyId, RootKeySet, RootKeys};
pub use op::Op;
pub use revocation::{RevocationId, Revocations};
pub use rights::{DEFAULT_MAX_DEPTH, Restriction};
pub use token::{DEFAULT_MAX_TOKEN_BYTES, Token, VERSION};
pub use verify::{Access, Facts, VerifiedToken, Verifier};

/// Hooks for fuzzing and for generating golden samples. Not part of the stable API.
#[doc(hidden)]
pub mod internal {
    use zeroize::Zeroizing;

    use crate::token::Proof;
    use crate::{Access, Error, KeyPair, PublicKey, Restriction, Token, Verifier};

    /// Mints with a chosen next key, so that the output is deterministic.
    ///
    /// # Errors
    ///
    /// As [`Token::mint`].
    pub fn mint_with_next_key(
        root: &KeyPair,
        issuer: &str,
        subject: &str,
        restriction: Restriction,
        now: u64,
        next: &KeyPair,
    ) -> Result<Token, Error> {
        Token::mint_with(root, issuer.into(), subject.into(), restriction, now, next)
    }

    /// Attenuates with a chosen next key, so that the output is deterministic.
    ///
    /// # Errors
    ///
    /// As [`Token::attenuate`].
    pub fn attenuate_with_next_key(
        token: &Token,
        restriction: Restriction,
        now: u64,
        next: &KeyPair,
    ) -> Result<Token, Error> {
        token.attenuate_with(restriction, now, next)
    }

    /// Appends a block signed with the token's proof key, skipping every attenuation check, as
    /// any holder can by hand; the new block names `next`'s public key and the proof is `next`'s
    /// seed. The result is decoded from its bytes, as a verifier would receive it.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] for a sealed token, [`Error::InvalidInput`] for a bad name,
    /// [`Error::Malformed`] if the block does not decode (an empty operation list).
    pub fn hand_sign(
        token: &Token,
        restriction: Restriction,
        now: u64,
        next: &KeyPair,
    ) -> Result<Token, Error> {
        let proof = Proof::Secret(Zeroizing::new(*next.seed()));
        let forged = token.append_unchecked(restriction, now, next.public_key(), proof)?;
        Token::from_bytes(&forged.to_bytes())
    }

    /// The bytes of `token` with one more hand-signed block (as [`hand_sign`]) that names any 32
    /// bytes as its next key, sealed with `seal` taken as given. Not decoded: for next keys and
    /// seals that no key pair makes.
    ///
    /// # Errors
    ///
    /// As [`hand_sign`], but for [`Error::Malformed`].
    pub fn hand_signed_bytes(
        token: &Token,
        restriction: Restriction,
        now: u64,
        next_key: [u8; 32],
        seal: [u8; 64],
    ) -> Result<Vec<u8>, Error> {
        let next = PublicKey::from_bytes(next_key);
        let forged = token.append_unchecked(restriction, now, next, Proof::Sealed(seal))?;
        Ok(forged.to_bytes())
    }

    /// The signature check of [`Verifier::check`] (one batch, then one at a time if the batch
    /// fails), against `root` taken as trusted.
    ///
    /// # Errors
    ///
    /// [`Error::BadSignature`], [`Error::Malformed`] for a weak next key.
    pub fn check_signatures(token: &Token, root: &PublicKey) -> Result<(), Error> {
        token.check_signatures(root)
    }

    /// The same check with every signature verified one at a time, in chain order: what
    /// [`check_signatures`] must agree with.
    ///
    /// # Errors
    ///
    /// As [`check_signatures`].
    pub fn check_signatures_one_by_one(token: &Token, root: &PublicKey) -> Result<(), Error> {
        token.check_one_by_one(root)
    }

    /// Fuzz entry point: decode arbitrary bytes; whatever decodes must re-encode to the same
    /// bytes (the encoding is canonical) and must inspect without error.
    pub fn fuzz_decode(data: &[u8]) {
        if let Ok(token) = Token::from_bytes(data) {
            assert_eq!(token.to_bytes(), data, "decode/encode is not canonical");
            assert!(token.inspect().is_ok(), "a decoded token must inspect");
            let text = token.to_base64();
            let again = Token::from_base64(&text).map(|t| t.to_bytes());
            assert_eq!(again.ok().as_deref(), Some(data), "base64 round trip");
        }
    }

    /// Fuzz entry point: decode arbitrary bytes and verify them against the golden samples'
    /// root key (seed `[1; 32]`), so that mutated samples reach the checks after the signatures.
    /// Returns whether the token verified.
    pub fn fuzz_decode_verify(data: &[u8]) -> bool {
        let Ok(root) = KeyPair::from_seed(&[1; 32]) else {
            return false;
        };
        let Ok(token) = Token::from_bytes(data) else {
            return false;
        };
        let verifier = Verifier::new(root.public_key());
        let access = Access::at(1_700_000_060).tool("db_query").operation("read");
        verifier.verify(&token, &access).is_ok()
    }
}

/// The workspace README's example, compiled and run as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct WorkspaceReadme;
