//! Keys a request presents itself: the `Signature-Agent` field's `data:` form
//! (draft-meunier-http-message-signatures-directory), as SEP-2752 §2.6.1 uses it.

use base64ct::{Base64, Base64Url, Base64UrlUnpadded, Encoding};

use vouch_token::PublicKey;

use crate::format::public_jwk;
use crate::https::key_from_document;
use crate::resolve::{ResolveError, ResolvedKey};

/// The largest `Signature-Agent` value read: 4 KiB (a JWKS of a few keys).
pub const MAX_SIGNATURE_AGENT_BYTES: usize = 4096;

/// The `data:` URL prefix of an inline HTTP Message Signatures Directory.
const DATA_PREFIX: &str = "data:application/http-message-signatures-directory+json;base64,";

/// The Ed25519 key that a `Signature-Agent` value carries inline for `keyid`: the value is a
/// structured-field string holding
/// `data:application/http-message-signatures-directory+json;base64,<JWKS>` (base64url or
/// base64, padded or not, each decoded strictly), and the JWKS key whose RFC 7638 thumbprint
/// (or `kid`) is `keyid` is returned. Such a key proves nothing by itself: the caller must
/// check that the signature verifies with it and that `keyid` is its thumbprint (SEP-2752:
/// `vouch_httpsig::KeyidRule::JwkThumbprint`).
///
/// `Ok(None)` when the value is not the `data:` form (a URL: not fetched here).
///
/// # Errors
///
/// [`ResolveError::Refused`] for a value over [`MAX_SIGNATURE_AGENT_BYTES`], a malformed value
/// or document, no key for `keyid`, or a weak key.
pub fn signature_agent_key(value: &[u8], keyid: &str) -> Result<Option<ResolvedKey>, ResolveError> {
    let refused = |why: &str| ResolveError::Refused(format!("signature-agent: {why}"));
    if value.len() > MAX_SIGNATURE_AGENT_BYTES {
        return Err(refused("value too large"));
    }
    let text = std::str::from_utf8(value).map_err(|_| refused("not text"))?;
    let inner = text
        .trim_matches(' ')
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|t| !t.contains(['"', '\\']))
        .ok_or_else(|| refused("not a structured-field string"))?;
    let Some(encoded) = inner.strip_prefix(DATA_PREFIX) else {
        return Ok(None);
    };
    let json = Base64UrlUnpadded::decode_vec(encoded)
        .or_else(|_| Base64Url::decode_vec(encoded))
        .or_else(|_| Base64::decode_vec(encoded))
        .map_err(|_| refused("data is not base64"))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&json).map_err(|_| refused("data is not JSON"))?;
    if doc.get("keys").is_none() {
        return Err(refused("data is not a JWKS"));
    }
    let key = key_from_document(&doc, Some(keyid)).map_err(|e| refused(&e.to_string()))?;
    ResolvedKey::ed25519(&key).map(Some)
}

/// A `Signature-Agent` value carrying `keys` inline: the structured-field string
/// `"data:application/http-message-signatures-directory+json;base64,<base64url JWKS>"`, each
/// key as its public JWK (with `kid` the thumbprint). What a SEP-2752 client that cannot host a
/// directory sends (§2.6.1); [`signature_agent_key`] reads it.
pub fn signature_agent_value(keys: &[PublicKey]) -> String {
    let jwks = serde_json::json!({"keys": keys.iter().map(public_jwk).collect::<Vec<_>>()});
    format!(
        "\"{DATA_PREFIX}{}\"",
        Base64UrlUnpadded::encode_string(jwks.to_string().as_bytes())
    )
}

#[cfg(test)]
mod tests;
