//! Ed25519 key formats: PKCS#8 PEM (v1 and v2), SPKI PEM, hex, the MCPVault JSON key file, JWK
//! (with its RFC 7638 thumbprint) and did:key.

use std::io::Write as _;
use std::path::Path;

use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use serde_json::{Value, json};
use vouch_httpsig::VerifyingKey;
use vouch_token::{KeyPair, PublicKey};
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::Error;

/// PKCS#8 v1 (RFC 8410) prefix of an Ed25519 private key; the 32-byte seed follows.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// PKCS#8 v2 (RFC 5958 OneAsymmetricKey) prefix; seed, then `[1]` with the public key.
const PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const PKCS8_V2_PUBLIC: [u8; 3] = [0x81, 0x21, 0x00];
/// SubjectPublicKeyInfo prefix of an Ed25519 public key; the 32-byte key follows.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// The multicodec prefix of an Ed25519 public key in did:key.
const MULTICODEC_ED25519: [u8; 2] = [0xed, 0x01];

/// A file format for Ed25519 keys.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// PEM: `PRIVATE KEY` (PKCS#8 v1) for private keys, `PUBLIC KEY` (SPKI) for public keys.
    Pem,
    /// PKCS#8 v2 PEM, which also carries the public key.
    PemV2,
    /// JWK (`kty` OKP, `crv` Ed25519), with `kid` set to the RFC 7638 thumbprint.
    Jwk,
    /// The MCPVault key file: `{"private_key": hex, "public_key": hex}`; public keys as hex.
    Hex,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = Base64::encode_string(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn unpem(text: &str) -> Option<(String, Zeroizing<Vec<u8>>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = text.get(start + 11..)?;
    let (label, rest) = rest.split_once("-----")?;
    let end = rest.find(&format!("-----END {label}-----"))?;
    let body: String = rest
        .get(..end)?
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = Base64::decode_vec(&body).ok()?;
    Some((label.to_owned(), Zeroizing::new(der)))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn b64url32(s: &str) -> Option<[u8; 32]> {
    Base64UrlUnpadded::decode_vec(s).ok()?.try_into().ok()
}

/// [`b64url32`] for a secret: every copy is wiped when dropped.
fn secret_b64url32(s: &str) -> Option<Zeroizing<[u8; 32]>> {
    let bytes = Zeroizing::new(Base64UrlUnpadded::decode_vec(s).ok()?);
    let mut out = Zeroizing::new([0u8; 32]);
    if bytes.len() != out.len() {
        return None;
    }
    out.copy_from_slice(&bytes);
    Some(out)
}

/// [`hex32`] for a secret, decoded straight into memory wiped when dropped.
fn secret_hex32(s: &str) -> Option<Zeroizing<[u8; 32]>> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = Zeroizing::new([0u8; 32]);
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A parsed JSON key file whose secret members (`d`, `private_key`) are wiped when dropped.
struct SecretJson(Value);

impl Drop for SecretJson {
    fn drop(&mut self) {
        if let Value::Object(map) = &mut self.0 {
            for member in ["d", "private_key"] {
                if let Some(Value::String(secret)) = map.get_mut(member) {
                    secret.zeroize();
                }
            }
        }
    }
}

/// PKCS#8 v1 DER of an Ed25519 seed.
pub fn pkcs8_v1_der(key: &KeyPair) -> Zeroizing<Vec<u8>> {
    let mut der = Zeroizing::new(PKCS8_V1_PREFIX.to_vec());
    der.extend_from_slice(key.seed());
    der
}

/// PKCS#8 v2 DER: the seed and the public key.
pub fn pkcs8_v2_der(key: &KeyPair) -> Zeroizing<Vec<u8>> {
    let mut der = Zeroizing::new(PKCS8_V2_PREFIX.to_vec());
    der.extend_from_slice(key.seed());
    der.extend_from_slice(&PKCS8_V2_PUBLIC);
    der.extend_from_slice(key.public_key().as_bytes());
    der
}

/// The seed of an Ed25519 PKCS#8 document, v1 or v2 (a v2 public key must match).
///
/// # Errors
///
/// [`Error::Format`] if the document is not an Ed25519 PKCS#8 key.
pub fn from_pkcs8_der(der: &[u8]) -> Result<KeyPair, Error> {
    let bad = || Error::format("not an Ed25519 PKCS#8 key");
    let (prefix, rest) = der.split_at_checked(16).ok_or_else(bad)?;
    let (seed, tail) = rest.split_at_checked(32).ok_or_else(bad)?;
    let seed: [u8; 32] = seed.try_into().map_err(|_| bad())?;
    let key = KeyPair::from_seed(&seed).map_err(|e| Error::format(e.to_string()))?;
    if prefix == PKCS8_V1_PREFIX && tail.is_empty() {
        return Ok(key);
    }
    if prefix == PKCS8_V2_PREFIX {
        let public = tail.strip_prefix(&PKCS8_V2_PUBLIC[..]).ok_or_else(bad)?;
        if public != key.public_key().as_bytes() {
            return Err(Error::format(
                "PKCS#8 v2 public key does not match the private key",
            ));
        }
        return Ok(key);
    }
    Err(bad())
}

/// The RFC 7638 JWK thumbprint of an Ed25519 public key (base64url SHA-256 of the canonical JWK).
pub fn jwk_thumbprint(key: &PublicKey) -> String {
    let x = Base64UrlUnpadded::encode_string(key.as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    Base64UrlUnpadded::encode_string(digest.as_ref())
}

/// The public JWK, with `kid` set to the thumbprint.
pub fn public_jwk(key: &PublicKey) -> Value {
    json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": Base64UrlUnpadded::encode_string(key.as_bytes()),
        "kid": jwk_thumbprint(key),
    })
}

/// `did:key:z6Mk…` for an Ed25519 public key.
pub fn did_key(key: &PublicKey) -> String {
    let mut bytes = MULTICODEC_ED25519.to_vec();
    bytes.extend_from_slice(key.as_bytes());
    format!("did:key:z{}", bs58::encode(bytes).into_string())
}

/// The key to verify with, unless `key` is weak: not a curve point, not canonically encoded, of
/// small order, or outside the prime-order subgroup (see
/// [`VerifyingKey::try_ed25519`](vouch_httpsig::VerifyingKey::try_ed25519)). Every public key this
/// crate reads from text or resolves goes through here; `Err` says what is wrong with the key.
pub(crate) fn check_public(key: &PublicKey) -> Result<VerifyingKey, String> {
    VerifyingKey::try_ed25519(*key.as_bytes()).map_err(|e| match e {
        vouch_httpsig::Error::Key(why) => why.to_owned(),
        other => other.to_string(),
    })
}

fn checked(key: PublicKey) -> Result<PublicKey, Error> {
    check_public(&key).map_err(Error::Format)?;
    Ok(key)
}

/// Parses `did:key:z…` (Ed25519 only), refusing a weak key.
///
/// # Errors
///
/// [`Error::Format`] for anything else, or a weak key.
pub fn from_did_key(s: &str) -> Result<PublicKey, Error> {
    from_did_key_unchecked(s).and_then(checked)
}

fn from_did_key_unchecked(s: &str) -> Result<PublicKey, Error> {
    let z = s
        .trim()
        .strip_prefix("did:key:z")
        .ok_or_else(|| Error::format("not a did:key in base58btc"))?;
    let z = z.split('#').next().unwrap_or(z);
    let bytes = bs58::decode(z)
        .into_vec()
        .map_err(|_| Error::format("did:key is not base58btc"))?;
    let raw = bytes
        .strip_prefix(&MULTICODEC_ED25519[..])
        .ok_or_else(|| Error::format("did:key is not an Ed25519 key"))?;
    let raw: [u8; 32] = raw
        .try_into()
        .map_err(|_| Error::format("did:key Ed25519 key is not 32 bytes"))?;
    Ok(PublicKey::from_bytes(raw))
}

/// Encodes a private key (with its public half where the format has room).
pub fn encode_private(key: &KeyPair, format: KeyFormat) -> Zeroizing<String> {
    Zeroizing::new(match format {
        KeyFormat::Pem => pem("PRIVATE KEY", &pkcs8_v1_der(key)),
        KeyFormat::PemV2 => pem("PRIVATE KEY", &pkcs8_v2_der(key)),
        KeyFormat::Jwk => {
            let public = key.public_key();
            let jwk = json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": Base64UrlUnpadded::encode_string(public.as_bytes()),
                "d": Base64UrlUnpadded::encode_string(key.seed()),
                "kid": jwk_thumbprint(&public),
            });
            format!("{jwk:#}\n")
        }
        KeyFormat::Hex => format!(
            "{:#}\n",
            json!({
                "private_key": hex_encode(key.seed()),
                "public_key": key.public_key().to_hex(),
            })
        ),
    })
}

/// Encodes a public key.
pub fn encode_public(key: &PublicKey, format: KeyFormat) -> String {
    match format {
        KeyFormat::Pem | KeyFormat::PemV2 => {
            let mut der = SPKI_PREFIX.to_vec();
            der.extend_from_slice(key.as_bytes());
            pem("PUBLIC KEY", &der)
        }
        KeyFormat::Jwk => format!("{:#}\n", public_jwk(key)),
        KeyFormat::Hex => format!("{}\n", key.to_hex()),
    }
}

/// Parses a private key in any format vouch reads: PKCS#8 PEM v1/v2, JWK with `d`, or the
/// MCPVault JSON key file. A bare 64-digit hex string is refused: it cannot be told apart from a
/// public key, and reading a public key as a seed would silently make another key.
///
/// # Errors
///
/// [`Error::Format`] saying what is wrong.
pub fn parse_private(text: &str) -> Result<KeyPair, Error> {
    let trimmed = text.trim_start();
    if trimmed.starts_with("-----BEGIN") {
        let (label, der) = unpem(trimmed).ok_or_else(|| Error::format("malformed PEM"))?;
        if label != "PRIVATE KEY" {
            return Err(Error::format(format!(
                "PEM block is {label:?}, not PRIVATE KEY"
            )));
        }
        return from_pkcs8_der(&der);
    }
    if trimmed.starts_with('{') {
        let secret = SecretJson(
            serde_json::from_str(trimmed)
                .map_err(|e| Error::format(format!("invalid JSON: {e}")))?,
        );
        let v = &secret.0;
        let key = if let Some(d) = v.get("d").and_then(Value::as_str) {
            check_jwk_type(v)?;
            let seed = secret_b64url32(d)
                .ok_or_else(|| Error::format("JWK d is not 32 bytes of base64url"))?;
            KeyPair::from_seed(&seed).map_err(|e| Error::format(e.to_string()))?
        } else if let Some(p) = v.get("private_key").and_then(Value::as_str) {
            let seed =
                secret_hex32(p).ok_or_else(|| Error::format("private_key is not 64 hex digits"))?;
            KeyPair::from_seed(&seed).map_err(|e| Error::format(e.to_string()))?
        } else {
            return Err(Error::format(
                "JSON has neither a JWK \"d\" nor a \"private_key\"",
            ));
        };
        let claimed = v
            .get("x")
            .and_then(Value::as_str)
            .map(|x| b64url32(x).ok_or_else(|| Error::format("JWK x is not 32 bytes of base64url")))
            .or_else(|| {
                v.get("public_key").and_then(Value::as_str).map(|p| {
                    hex32(p).ok_or_else(|| Error::format("public_key is not 64 hex digits"))
                })
            })
            .transpose()?;
        if claimed.is_some_and(|c| &c != key.public_key().as_bytes()) {
            return Err(Error::format(
                "the public key does not match the private key",
            ));
        }
        return Ok(key);
    }
    if hex32(trimmed).is_some() {
        return Err(Error::format(
            "bare hex is ambiguous (public or private?); give a private key as PEM, JWK or {\"private_key\": hex}",
        ));
    }
    Err(Error::format("not a PEM or JSON private key"))
}

fn check_jwk_type(v: &Value) -> Result<(), Error> {
    if v.get("kty").and_then(Value::as_str) != Some("OKP")
        || v.get("crv").and_then(Value::as_str) != Some("Ed25519")
    {
        return Err(Error::format("JWK is not kty OKP, crv Ed25519"));
    }
    Ok(())
}

/// Parses a public key in any format vouch reads: SPKI PEM, a private key of any format (its
/// public half), JWK, the MCPVault JSON key file, did:key, or 64 hex digits. A weak key (small
/// order, mixed order, non-canonical encoding) is refused: no key pair has one.
///
/// # Errors
///
/// [`Error::Format`] saying what is wrong.
pub fn parse_public(text: &str) -> Result<PublicKey, Error> {
    parse_public_unchecked(text).and_then(checked)
}

/// [`parse_public`] without the weak-key check, for callers that make it themselves.
pub(crate) fn parse_public_unchecked(text: &str) -> Result<PublicKey, Error> {
    let trimmed = text.trim();
    if trimmed.starts_with("did:key:") {
        return from_did_key_unchecked(trimmed);
    }
    if trimmed.starts_with("-----BEGIN") {
        let (label, der) = unpem(trimmed).ok_or_else(|| Error::format("malformed PEM"))?;
        return match label.as_str() {
            "PUBLIC KEY" => {
                let raw = der
                    .strip_prefix(&SPKI_PREFIX[..])
                    .ok_or_else(|| Error::format("not an Ed25519 SubjectPublicKeyInfo"))?;
                let raw: [u8; 32] = raw
                    .try_into()
                    .map_err(|_| Error::format("Ed25519 public key is not 32 bytes"))?;
                Ok(PublicKey::from_bytes(raw))
            }
            "PRIVATE KEY" => Ok(from_pkcs8_der(&der)?.public_key()),
            other => Err(Error::format(format!(
                "PEM block is {other:?}, not PUBLIC KEY"
            ))),
        };
    }
    if trimmed.starts_with('{') {
        let v: Value = serde_json::from_str(trimmed)
            .map_err(|e| Error::format(format!("invalid JSON: {e}")))?;
        if v.get("d").is_some() || v.get("private_key").is_some() {
            return Ok(parse_private(trimmed)?.public_key());
        }
        if let Some(x) = v.get("x").and_then(Value::as_str) {
            check_jwk_type(&v)?;
            return b64url32(x)
                .map(PublicKey::from_bytes)
                .ok_or_else(|| Error::format("JWK x is not 32 bytes of base64url"));
        }
        if let Some(p) = v.get("public_key").and_then(Value::as_str) {
            return hex32(p)
                .map(PublicKey::from_bytes)
                .ok_or_else(|| Error::format("public_key is not 64 hex digits"));
        }
        return Err(Error::format("JSON has no JWK \"x\" nor \"public_key\""));
    }
    hex32(trimmed)
        .map(PublicKey::from_bytes)
        .ok_or_else(|| Error::format("not a PEM, JSON, did:key or 64-digit hex public key"))
}

/// Reads a private key file (any format [`parse_private`] reads).
///
/// # Errors
///
/// [`Error::File`] naming the file and what is wrong.
pub fn load_private(path: &Path) -> Result<KeyPair, Error> {
    let text = Zeroizing::new(read(path)?);
    parse_private(&text).map_err(|e| e.in_file(path))
}

/// Reads a public key file (any format [`parse_public`] reads).
///
/// # Errors
///
/// [`Error::File`] naming the file and what is wrong.
pub fn load_public(path: &Path) -> Result<PublicKey, Error> {
    parse_public(&read(path)?).map_err(|e| e.in_file(path))
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Writes a private key file, readable by its owner only (mode 0600 on Unix), refusing to
/// overwrite an existing file.
///
/// # Errors
///
/// [`Error::File`] if the file exists or cannot be written.
pub fn save_private(path: &Path, key: &KeyPair, format: KeyFormat) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::File {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(encode_private(key, format).as_bytes())
        .map_err(io)?;
    file.sync_all().map_err(io)
}
