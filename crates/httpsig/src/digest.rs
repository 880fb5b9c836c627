//! RFC 9530 `Content-Digest` over the exact body bytes.

use base64ct::{Base64, Encoding};
use ring::digest::{SHA256, SHA512, digest};
use sfv::{BareItem, Dictionary, ListEntry, Parser};
use subtle::ConstantTimeEq;

use crate::error::Error;

/// A digest algorithm of the HTTP Digest Algorithm Values registry that this crate supports.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// `sha-256`.
    Sha256,
    /// `sha-512`.
    Sha512,
}

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

    fn hash(self, body: &[u8]) -> ring::digest::Digest {
        match self {
            Self::Sha256 => digest(&SHA256, body),
            Self::Sha512 => digest(&SHA512, body),
        }
    }
}

/// The common case, parsed without the general dictionary parser: exactly one member
/// `sha-256=:…:` or `sha-512=:…:` with canonical base64 of the right length. Anything else goes
/// through the structured-field parser.
fn single_member(value: &[u8]) -> Option<(DigestAlgorithm, Vec<u8>)> {
    let text = core::str::from_utf8(value).ok()?;
    let (name, rest) = text.split_once("=:")?;
    let b64 = rest.strip_suffix(':')?;
    let alg = DigestAlgorithm::from_name(name)?;
    let want = match alg {
        DigestAlgorithm::Sha256 => 32,
        DigestAlgorithm::Sha512 => 64,
    };
    let bytes = Base64::decode_vec(b64).ok()?;
    (bytes.len() == want).then_some((alg, bytes))
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
/// Members with algorithms outside `accepted` are ignored (RFC 9530 §2); at least one accepted
/// member must be present, and every accepted member must match, compared in constant time.
///
/// # Errors
///
/// [`Error::Malformed`] if the value is not a dictionary of byte sequences,
/// [`Error::DigestUnsupported`] if no accepted algorithm is present, [`Error::DigestMismatch`] if
/// any accepted member differs from the body's digest.
pub fn verify_content_digest(
    value: &[u8],
    body: &[u8],
    accepted: &[DigestAlgorithm],
) -> Result<(), Error> {
    if let Some((alg, expected)) = single_member(value)
        && accepted.contains(&alg)
    {
        let actual = alg.hash(body);
        return if bool::from(actual.as_ref().ct_eq(&expected)) {
            Ok(())
        } else {
            Err(Error::DigestMismatch)
        };
    }
    let dict: Dictionary = Parser::new(value)
        .parse()
        .map_err(|_| Error::Malformed("content-digest is not a structured dictionary"))?;
    let mut checked = 0usize;
    let mut all_match = true;
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
        let BareItem::ByteSequence(expected) = &item.bare_item else {
            return Err(Error::Malformed(
                "content-digest member is not a byte sequence",
            ));
        };
        let actual = alg.hash(body);
        all_match &= bool::from(actual.as_ref().ct_eq(expected));
        checked += 1;
    }
    match (checked, all_match) {
        (0, _) => Err(Error::DigestUnsupported),
        (_, false) => Err(Error::DigestMismatch),
        _ => Ok(()),
    }
}
