//! RFC 9530 `Content-Digest` over the exact body bytes, checkable as the body streams in.

use core::fmt;

use base64ct::{Base64, Encoding};
use ring::digest::{Context, SHA256, SHA512, digest};
use sfv::{BareItem, ListEntry};
use subtle::{Choice, ConstantTimeEq};

use crate::error::Error;
use crate::params::{DictionaryError, unique_dictionary};

/// A digest algorithm of the HTTP Digest Algorithm Values registry that this crate supports.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// `sha-256`.
    Sha256,
    /// `sha-512`.
    Sha512,
}

/// The longest digest of any [`DigestAlgorithm`], in bytes.
const MAX_DIGEST_LEN: usize = 64;

impl DigestAlgorithm {
    /// The registered name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha-256",
            Self::Sha512 => "sha-512",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha-256" => Some(Self::Sha256),
            "sha-512" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            Self::Sha256 => &SHA256,
            Self::Sha512 => &SHA512,
        }
    }

    fn hash(self, body: &[u8]) -> ring::digest::Digest {
        digest(self.ring(), body)
    }
}

/// The common case, parsed without the general dictionary parser: exactly one member
/// `sha-256=:…:` or `sha-512=:…:` with canonical base64 of the right length. Anything else
/// (including two members, which cannot pass the base64 decoder) goes through the
/// structured-field parser.
fn single_member(value: &[u8]) -> Option<(DigestAlgorithm, [u8; MAX_DIGEST_LEN])> {
    let text = core::str::from_utf8(value).ok()?;
    let (name, rest) = text.split_once("=:")?;
    let b64 = rest.strip_suffix(':')?;
    let alg = DigestAlgorithm::from_name(name)?;
    let mut expected = [0u8; MAX_DIGEST_LEN];
    let len = Base64::decode(b64, &mut expected).ok()?.len();
    (len == alg.ring().output_len()).then_some((alg, expected))
}

/// The `Content-Digest` field value for `body`, one member per algorithm, in the order given.
///
/// ```
/// use vouch_httpsig::{DigestAlgorithm, content_digest};
/// assert_eq!(
///     content_digest(b"", &[DigestAlgorithm::Sha256]),
///     "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
/// );
/// ```
pub fn content_digest(body: &[u8], algorithms: &[DigestAlgorithm]) -> String {
    algorithms
        .iter()
        .map(|a| {
            format!(
                "{}=:{}:",
                a.name(),
                Base64::encode_string(a.hash(body).as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a received `Content-Digest` value against the body bytes as received.
///
/// The value may be several field lines joined with `", "`. A member name that appears twice
/// (whether or not its algorithm is supported) is refused: RFC 9651 would keep the last one,
/// which lets a wrong digest sit next to a right one. Members with algorithms outside `accepted`
/// are otherwise ignored (RFC 9530 §2); at least one accepted member must be present, and every
/// accepted member must match, compared in constant time.
///
/// # Errors
///
/// [`Error::Malformed`] if the value is not a dictionary of byte sequences or names an
/// algorithm twice, [`Error::DigestUnsupported`] if no accepted algorithm is present,
/// [`Error::DigestMismatch`] if any accepted member differs from the body's digest.
pub fn verify_content_digest(
    value: &[u8],
    body: &[u8],
    accepted: &[DigestAlgorithm],
) -> Result<(), Error> {
    let mut check = BodyCheck::digest(value, accepted)?;
    check.update(body);
    check.finish()
}

/// One accepted Content-Digest member: the digest it claims, and the body's digest so far.
struct Member {
    expected: [u8; MAX_DIGEST_LEN],
    running: Context,
}

impl Member {
    /// A member claiming `expected` (the algorithm's output length, checked by the caller).
    fn new(alg: DigestAlgorithm, expected: [u8; MAX_DIGEST_LEN]) -> Self {
        Self {
            expected,
            running: Context::new(alg.ring()),
        }
    }

    /// Whether the body's digest equals the claimed one, in constant time.
    fn matches(self) -> Choice {
        let actual = self.running.finish();
        // The length is the algorithm's output length (checked when the member was parsed);
        // were it not, the empty slice would not match: fail closed.
        let expected = self
            .expected
            .get(..actual.as_ref().len())
            .unwrap_or_default();
        actual.as_ref().ct_eq(expected)
    }
}

/// What the body must satisfy.
#[allow(
    clippy::large_enum_variant,
    reason = "the digest variant is the common one; boxing it would allocate on every request"
)]
enum Rule {
    /// Nothing: the policy does not bind the body to the signature.
    Unconstrained,
    /// No body: the signature covers no Content-Digest, so any body byte is unsigned.
    Empty {
        /// Whether a non-empty chunk was seen.
        seen_bytes: bool,
    },
    /// Every accepted member of the covered Content-Digest must match (at least one present).
    Digest {
        sha256: Option<Member>,
        sha512: Option<Member>,
    },
}

/// What the body of a message must satisfy, as decided from its head by
/// [`Verifier::prepare_head`](crate::Verifier::prepare_head): feed it the body with
/// [`BodyCheck::update`] as the bytes arrive, then call [`BodyCheck::finish`].
///
/// It holds one of:
///
/// - the members of the covered `Content-Digest` the policy accepts (sha-256, sha-512), each
///   with a running hash: every one must match the body;
/// - "the body must be empty", under [`DigestRule::WithBody`](crate::DigestRule::WithBody) when
///   the signature covers no present Content-Digest: any body byte fails with
///   [`Error::DigestMissing`];
/// - "unconstrained", under [`DigestRule::WhenCovered`](crate::DigestRule::WhenCovered) when no
///   Content-Digest is covered.
///
/// Nothing is allocated and nothing is buffered: each chunk is hashed and dropped.
#[must_use = "the body is only checked by `BodyCheck::finish`"]
pub struct BodyCheck {
    rule: Rule,
}

impl BodyCheck {
    /// No constraint on the body.
    pub(crate) fn unconstrained() -> Self {
        Self {
            rule: Rule::Unconstrained,
        }
    }

    /// The body must be empty.
    pub(crate) fn empty() -> Self {
        Self {
            rule: Rule::Empty { seen_bytes: false },
        }
    }

    /// The body must match the `Content-Digest` value `value` (field lines joined with `", "`),
    /// in every member whose algorithm is in `accepted`. Parses the value; hashes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] if the value is not a dictionary, names an algorithm twice, or an
    /// accepted member is not a byte sequence; [`Error::DigestUnsupported`] if no accepted
    /// algorithm is present; [`Error::DigestMismatch`] if an accepted member has the wrong
    /// length for its algorithm (no body can match it).
    pub(crate) fn digest(value: &[u8], accepted: &[DigestAlgorithm]) -> Result<Self, Error> {
        let mut sha256 = None;
        let mut sha512 = None;
        let mut wrong_length = false;
        let mut slot = |alg: DigestAlgorithm, expected: [u8; MAX_DIGEST_LEN]| match alg {
            DigestAlgorithm::Sha256 => sha256 = Some(Member::new(alg, expected)),
            DigestAlgorithm::Sha512 => sha512 = Some(Member::new(alg, expected)),
        };
        match single_member(value) {
            Some((alg, expected)) if accepted.contains(&alg) => slot(alg, expected),
            _ => {
                let dict = unique_dictionary(value).map_err(|e| match e {
                    DictionaryError::Syntax => {
                        Error::Malformed("content-digest is not a structured dictionary")
                    }
                    DictionaryError::RepeatedKey => {
                        Error::Malformed("content-digest names an algorithm twice")
                    }
                })?;
                for (name, entry) in &dict {
                    let Some(alg) = DigestAlgorithm::from_name(name.as_str()) else {
                        continue;
                    };
                    if !accepted.contains(&alg) {
                        continue;
                    }
                    let ListEntry::Item(item) = entry else {
                        return Err(Error::Malformed("content-digest member is not an item"));
                    };
                    let BareItem::ByteSequence(claimed) = &item.bare_item else {
                        return Err(Error::Malformed(
                            "content-digest member is not a byte sequence",
                        ));
                    };
                    if claimed.len() != alg.ring().output_len() {
                        // No body can match; decided after the other members' form is checked.
                        wrong_length = true;
                        continue;
                    }
                    let mut expected = [0u8; MAX_DIGEST_LEN];
                    expected
                        .iter_mut()
                        .zip(claimed)
                        .for_each(|(slot, byte)| *slot = *byte);
                    slot(alg, expected);
                }
            }
        }
        if wrong_length {
            return Err(Error::DigestMismatch);
        }
        if sha256.is_none() && sha512.is_none() {
            return Err(Error::DigestUnsupported);
        }
        Ok(Self {
            rule: Rule::Digest { sha256, sha512 },
        })
    }

    /// Hashes the next piece of the body (pieces in order, each byte once). Cheap when the body
    /// is unconstrained or must be empty.
    pub fn update(&mut self, chunk: &[u8]) {
        match &mut self.rule {
            Rule::Unconstrained => {}
            Rule::Empty { seen_bytes } => *seen_bytes |= !chunk.is_empty(),
            Rule::Digest { sha256, sha512 } => {
                for member in [sha256, sha512].into_iter().flatten() {
                    member.running.update(chunk);
                }
            }
        }
    }

    /// True if the body must be empty: a server can refuse a request that announces a body
    /// (a non-zero `Content-Length`, chunked transfer coding) without reading it.
    pub fn expects_empty_body(&self) -> bool {
        matches!(self.rule, Rule::Empty { .. })
    }

    /// Checks the body fed to [`BodyCheck::update`].
    ///
    /// # Errors
    ///
    /// [`Error::DigestMismatch`] if any accepted Content-Digest member differs from the body's
    /// digest (every member is computed and compared, in constant time), or
    /// [`Error::DigestMissing`] if the body had to be empty and was not.
    pub fn finish(self) -> Result<(), Error> {
        match self.rule {
            Rule::Unconstrained | Rule::Empty { seen_bytes: false } => Ok(()),
            Rule::Empty { seen_bytes: true } => Err(Error::DigestMissing),
            Rule::Digest { sha256, sha512 } => {
                let all = [sha256, sha512]
                    .into_iter()
                    .flatten()
                    .fold(Choice::from(1), |all, member| all & member.matches());
                if bool::from(all) {
                    Ok(())
                } else {
                    Err(Error::DigestMismatch)
                }
            }
        }
    }
}

impl fmt::Debug for BodyCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::Unconstrained => f.write_str("BodyCheck::Unconstrained"),
            Rule::Empty { seen_bytes } => f
                .debug_struct("BodyCheck::Empty")
                .field("seen_bytes", seen_bytes)
                .finish(),
            Rule::Digest { sha256, sha512 } => {
                let names = [
                    sha256.as_ref().map(|_| DigestAlgorithm::Sha256.name()),
                    sha512.as_ref().map(|_| DigestAlgorithm::Sha512.name()),
                ];
                f.debug_struct("BodyCheck::Digest")
                    .field("algorithms", &names.iter().flatten().collect::<Vec<_>>())
                    .finish()
            }
        }
    }
}
