//! Signature algorithms and keys (RFC 9421 §3.3), on ring; Ed25519 verification by vouch's one
//! rule (ZIP-215, `vouch_token::ed25519`).

use core::fmt;

use base64ct::{Base64UrlUnpadded, Encoding};

use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair as _};
use zeroize::Zeroizing;

use vouch_token::ed25519::{self, DecodedKey, Weakness};

use crate::der;
use crate::error::Error;

/// An algorithm from the HTTP Signature Algorithms registry.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// EdDSA over Curve25519 (`ed25519`): vouch's default.
    Ed25519,
    /// ECDSA over P-256 with SHA-256 (`ecdsa-p256-sha256`), signature as `r ‖ s`.
    EcdsaP256Sha256,
    /// ECDSA over P-384 with SHA-384 (`ecdsa-p384-sha384`), signature as `r ‖ s`.
    EcdsaP384Sha384,
    /// HMAC with SHA-256 (`hmac-sha256`), a shared secret.
    HmacSha256,
    /// RSASSA-PSS with SHA-512 (`rsa-pss-sha512`).
    RsaPssSha512,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (`rsa-v1_5-sha256`).
    RsaV15Sha256,
}

impl Algorithm {
    /// Every algorithm this crate verifies.
    pub const ALL: [Self; 6] = [
        Self::Ed25519,
        Self::EcdsaP256Sha256,
        Self::EcdsaP384Sha384,
        Self::HmacSha256,
        Self::RsaPssSha512,
        Self::RsaV15Sha256,
    ];

    /// The registered name, as in the `alg` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Self::EcdsaP384Sha384 => "ecdsa-p384-sha384",
            Self::HmacSha256 => "hmac-sha256",
            Self::RsaPssSha512 => "rsa-pss-sha512",
            Self::RsaV15Sha256 => "rsa-v1_5-sha256",
        }
    }

    /// Looks a registered name up.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Checks that 32 bytes are an Ed25519 public key fit to verify with: a curve point, canonically
/// encoded, in the prime-order subgroup (which also rules out the eight points of small order).
/// The check is vouch-token's, the one every Ed25519 key in vouch goes through.
///
/// Ed25519 verifiers check none of this. vouch's rule is the cofactored one (ZIP-215): with a
/// small-order key, a signature whose `R` is a small-order point and whose `S` is 0 verifies for
/// every message. A mixed-order key (a real key plus a small-order point) lets its owner make
/// signatures that verify under one reading of RFC 8032 and not another. Returns the key decoded
/// for verification.
fn check_ed25519(public: &[u8; 32]) -> Result<DecodedKey, Error> {
    if let Some(weak) = ed25519::weakness(public) {
        return Err(Error::Key(match weak {
            Weakness::NotAPoint => "ed25519 public key is not a curve point",
            Weakness::NonCanonical => "ed25519 public key is not canonically encoded",
            Weakness::SmallOrder => "ed25519 public key is of small order",
            Weakness::MixedOrder => "ed25519 public key is not in the prime-order subgroup",
            _ => "ed25519 public key is weak",
        }));
    }
    DecodedKey::decode(public).ok_or(Error::Key("ed25519 public key is not a curve point"))
}

/// A key that verifies signatures of one algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    alg: Algorithm,
    /// Ed25519: 32 bytes; ECDSA: the uncompressed point; RSA: PKCS#1 RSAPublicKey DER;
    /// HMAC: the secret.
    bytes: Zeroizing<Vec<u8>>,
    /// Ed25519: the key decoded once, if it passed [`check_ed25519`]. `None` for a weak key
    /// built by the infallible [`VerifyingKey::ed25519`]: it verifies nothing.
    ed25519: Option<DecodedKey>,
}

impl VerifyingKey {
    /// An Ed25519 public key from its 32 raw bytes, refusing weak keys: bytes that are not a
    /// curve point, a non-canonical encoding, a point of small order, or a point outside the
    /// prime-order subgroup. No key pair has such a key: it comes from an attacker or a broken
    /// encoder.
    ///
    /// # Errors
    ///
    /// [`Error::Key`] naming what is wrong with the key.
    pub fn try_ed25519(public: [u8; 32]) -> Result<Self, Error> {
        let decoded = check_ed25519(&public)?;
        Ok(Self::ed25519_decoded(public, Some(decoded)))
    }

    /// An Ed25519 public key from its 32 raw bytes, for a key already checked (a
    /// `vouch_token::KeyPair`'s, or one that came through vouch-keys). Prefer
    /// [`VerifyingKey::try_ed25519`], which says why a key is refused: a weak key given here (see
    /// there) is not refused, but the key built from it verifies no signature at all.
    pub fn ed25519(public: [u8; 32]) -> Self {
        Self::ed25519_decoded(public, check_ed25519(&public).ok())
    }

    /// The raw bytes and decoded key of an Ed25519 key fit to verify with, for batching; `None`
    /// for another algorithm or a weak key (which verifies nothing).
    pub(crate) fn ed25519_batchable(&self) -> Option<([u8; 32], DecodedKey)> {
        let key = self.ed25519?;
        let public = <[u8; 32]>::try_from(&self.bytes[..]).ok()?;
        Some((public, key))
    }

    fn ed25519_decoded(public: [u8; 32], ed25519: Option<DecodedKey>) -> Self {
        Self {
            alg: Algorithm::Ed25519,
            bytes: Zeroizing::new(public.to_vec()),
            ed25519,
        }
    }

    /// An HMAC-SHA256 shared secret.
    pub fn hmac_sha256(secret: &[u8]) -> Self {
        Self {
            alg: Algorithm::HmacSha256,
            bytes: Zeroizing::new(secret.to_vec()),
            ed25519: None,
        }
    }

    /// A public key from PEM: `PUBLIC KEY` (SubjectPublicKeyInfo) or `RSA PUBLIC KEY` (PKCS#1).
    /// RSA keys serve two algorithms, so they need `rsa_alg` (PSS or v1.5); other key types decide
    /// their algorithm themselves.
    ///
    /// # Errors
    ///
    /// [`Error::Key`] for anything that is not such a key.
    pub fn from_pem(pem: &str, rsa_alg: Option<Algorithm>) -> Result<Self, Error> {
        let (label, bytes) = der::pem(pem)?;
        match label.as_str() {
            "PUBLIC KEY" => Self::from_spki_der(&bytes, rsa_alg),
            "RSA PUBLIC KEY" => Self::rsa(bytes, rsa_alg),
            _ => Err(Error::Key(
                "expected a PUBLIC KEY or RSA PUBLIC KEY PEM block",
            )),
        }
    }

    /// A public key from SubjectPublicKeyInfo DER. See [`VerifyingKey::from_pem`]. Ed25519 keys
    /// are checked as [`VerifyingKey::try_ed25519`] checks them.
    ///
    /// # Errors
    ///
    /// [`Error::Key`] for an unsupported, malformed or weak key.
    pub fn from_spki_der(spki: &[u8], rsa_alg: Option<Algorithm>) -> Result<Self, Error> {
        let (alg, key) = der::spki(spki)?;
        if alg.oid == der::OID_ED25519 {
            let raw: [u8; 32] = key
                .try_into()
                .map_err(|_| Error::Key("ed25519 key is not 32 bytes"))?;
            return Self::try_ed25519(raw);
        }
        if alg.oid == der::OID_EC_PUBLIC_KEY {
            let alg = match alg.curve {
                Some(c) if c == der::OID_P256 => Algorithm::EcdsaP256Sha256,
                Some(c) if c == der::OID_P384 => Algorithm::EcdsaP384Sha384,
                _ => return Err(Error::Key("unsupported elliptic curve")),
            };
            return Ok(Self {
                alg,
                bytes: Zeroizing::new(key.to_vec()),
                ed25519: None,
            });
        }
        if alg.oid == der::OID_RSA || alg.oid == der::OID_RSA_PSS {
            return Self::rsa(key.to_vec(), rsa_alg);
        }
        Err(Error::Key("unsupported public key algorithm"))
    }

    fn rsa(pkcs1: Vec<u8>, rsa_alg: Option<Algorithm>) -> Result<Self, Error> {
        match rsa_alg {
            Some(alg @ (Algorithm::RsaPssSha512 | Algorithm::RsaV15Sha256)) => Ok(Self {
                alg,
                bytes: Zeroizing::new(pkcs1),
                ed25519: None,
            }),
            _ => Err(Error::Key(
                "an RSA key needs rsa-pss-sha512 or rsa-v1_5-sha256",
            )),
        }
    }

    /// The algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The RFC 7638 JWK thumbprint of this public key: base64url (no padding) of the SHA-256 of
    /// its canonical JWK (`{"crv","kty","x"}` for Ed25519 as RFC 8037 defines it,
    /// `{"crv","kty","x","y"}` for P-256 and P-384). `None` for RSA keys (not computed here)
    /// and HMAC secrets (which have no public form).
    ///
    /// SEP-2752 requires the `keyid` to be this value ([`KeyidRule::JwkThumbprint`]).
    ///
    /// [`KeyidRule::JwkThumbprint`]: crate::KeyidRule::JwkThumbprint
    pub fn jwk_thumbprint(&self) -> Option<String> {
        let b64 = |b: &[u8]| Base64UrlUnpadded::encode_string(b);
        let canonical = match self.alg {
            Algorithm::Ed25519 => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                b64(&self.bytes)
            ),
            Algorithm::EcdsaP256Sha256 | Algorithm::EcdsaP384Sha384 => {
                let (crv, n) = if self.alg == Algorithm::EcdsaP256Sha256 {
                    ("P-256", 32)
                } else {
                    ("P-384", 48)
                };
                // The uncompressed point: 0x04, x, y.
                let (x, y) = match self.bytes.split_first() {
                    Some((4, xy)) if xy.len() == 2 * n => xy.split_at(n),
                    _ => return None,
                };
                format!(
                    r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
                    b64(x),
                    b64(y)
                )
            }
            Algorithm::RsaPssSha512 | Algorithm::RsaV15Sha256 | Algorithm::HmacSha256 => {
                return None;
            }
        };
        Some(b64(ring::digest::digest(
            &ring::digest::SHA256,
            canonical.as_bytes(),
        )
        .as_ref()))
    }

    /// The raw public key bytes (for HMAC: nothing, the secret stays inside).
    pub fn public_bytes(&self) -> &[u8] {
        match self.alg {
            Algorithm::HmacSha256 => &[],
            _ => &self.bytes,
        }
    }

    /// Checks `signature` over `message`. HMAC is compared in constant time. Ed25519 follows
    /// vouch's one rule, ZIP-215 (`vouch_token::ed25519`), the rule its tokens and batches use;
    /// a weak Ed25519 key (see [`VerifyingKey::ed25519`]) verifies nothing.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let params: &dyn sig::VerificationAlgorithm = match self.alg {
            Algorithm::Ed25519 => {
                return self
                    .ed25519
                    .is_some_and(|key| key.verify(message, signature));
            }
            Algorithm::EcdsaP256Sha256 => &sig::ECDSA_P256_SHA256_FIXED,
            Algorithm::EcdsaP384Sha384 => &sig::ECDSA_P384_SHA384_FIXED,
            Algorithm::RsaPssSha512 => &sig::RSA_PSS_2048_8192_SHA512,
            Algorithm::RsaV15Sha256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::HmacSha256 => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.bytes);
                return ring::hmac::verify(&key, message, signature).is_ok();
            }
        };
        sig::UnparsedPublicKey::new(params, &self.bytes[..])
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A key that makes signatures.
pub struct SigningKey {
    inner: Inner,
}

enum Inner {
    Ed25519(sig::Ed25519KeyPair),
    Ecdsa(sig::EcdsaKeyPair, Algorithm),
    Rsa(sig::RsaKeyPair, Algorithm),
    Hmac(ring::hmac::Key, Zeroizing<Vec<u8>>),
}

impl SigningKey {
    /// An Ed25519 key from its 32-byte seed (the RFC 8032 private key).
    ///
    /// # Errors
    ///
    /// [`Error::Key`] if ring rejects the seed (it does not for 32 bytes).
    pub fn ed25519_from_seed(seed: &[u8; 32]) -> Result<Self, Error> {
        sig::Ed25519KeyPair::from_seed_unchecked(seed)
            .map(|k| Self {
                inner: Inner::Ed25519(k),
            })
            .map_err(|_| Error::Key("rejected ed25519 seed"))
    }

    /// An HMAC-SHA256 shared secret.
    pub fn hmac_sha256(secret: &[u8]) -> Self {
        Self {
            inner: Inner::Hmac(
                ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
                Zeroizing::new(secret.to_vec()),
            ),
        }
    }

    /// A private key from PEM: `PRIVATE KEY` (PKCS#8 v1 or v2: Ed25519, EC P-256/P-384, RSA, RSA-PSS)
    /// or `RSA PRIVATE KEY` (PKCS#1). RSA keys need `rsa_alg`.
    ///
    /// # Errors
    ///
    /// [`Error::Key`] for anything else.
    pub fn from_pem(pem: &str, rsa_alg: Option<Algorithm>) -> Result<Self, Error> {
        let (label, bytes) = der::pem(pem)?;
        let bytes = Zeroizing::new(bytes);
        match label.as_str() {
            "PRIVATE KEY" => Self::from_pkcs8_der(&bytes, rsa_alg),
            "RSA PRIVATE KEY" => Self::rsa(&bytes, rsa_alg),
            _ => Err(Error::Key(
                "expected a PRIVATE KEY or RSA PRIVATE KEY PEM block",
            )),
        }
    }

    /// A private key from PKCS#8 DER. See [`SigningKey::from_pem`].
    ///
    /// # Errors
    ///
    /// [`Error::Key`] for an unsupported or malformed key.
    pub fn from_pkcs8_der(der_bytes: &[u8], rsa_alg: Option<Algorithm>) -> Result<Self, Error> {
        let (alg, key) = der::pkcs8(der_bytes)?;
        if alg.oid == der::OID_ED25519 {
            // Accepts v1 (no public key, as in RFC 9421 B.1.4) and v2 documents.
            return sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der_bytes)
                .map(|k| Self {
                    inner: Inner::Ed25519(k),
                })
                .map_err(|_| Error::Key("rejected ed25519 PKCS#8 key"));
        }
        if alg.oid == der::OID_EC_PUBLIC_KEY {
            let (params, alg) = match alg.curve {
                Some(c) if c == der::OID_P256 => (
                    &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                    Algorithm::EcdsaP256Sha256,
                ),
                Some(c) if c == der::OID_P384 => (
                    &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
                    Algorithm::EcdsaP384Sha384,
                ),
                _ => return Err(Error::Key("unsupported elliptic curve")),
            };
            return sig::EcdsaKeyPair::from_pkcs8(params, der_bytes, &SystemRandom::new())
                .map(|k| Self {
                    inner: Inner::Ecdsa(k, alg),
                })
                .map_err(|_| Error::Key("rejected EC PKCS#8 key"));
        }
        if alg.oid == der::OID_RSA || alg.oid == der::OID_RSA_PSS {
            // The privateKey octet string is a PKCS#1 RSAPrivateKey.
            return Self::rsa(key, rsa_alg);
        }
        Err(Error::Key("unsupported private key algorithm"))
    }

    fn rsa(pkcs1: &[u8], rsa_alg: Option<Algorithm>) -> Result<Self, Error> {
        let alg = match rsa_alg {
            Some(a @ (Algorithm::RsaPssSha512 | Algorithm::RsaV15Sha256)) => a,
            _ => {
                return Err(Error::Key(
                    "an RSA key needs rsa-pss-sha512 or rsa-v1_5-sha256",
                ));
            }
        };
        sig::RsaKeyPair::from_der(pkcs1)
            .map(|k| Self {
                inner: Inner::Rsa(k, alg),
            })
            .map_err(|_| Error::Key("rejected RSA key"))
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match &self.inner {
            Inner::Ed25519(_) => Algorithm::Ed25519,
            Inner::Ecdsa(_, a) | Inner::Rsa(_, a) => *a,
            Inner::Hmac(..) => Algorithm::HmacSha256,
        }
    }

    /// The key that verifies this key's signatures.
    ///
    /// # Errors
    ///
    /// [`Error::Key`] if the public key cannot be encoded (RSA).
    pub fn verifying_key(&self) -> Result<VerifyingKey, Error> {
        let (alg, bytes) = match &self.inner {
            Inner::Ed25519(k) => (Algorithm::Ed25519, k.public_key().as_ref().to_vec()),
            Inner::Ecdsa(k, a) => (*a, k.public_key().as_ref().to_vec()),
            Inner::Rsa(k, a) => (*a, k.public_key().as_ref().to_vec()),
            Inner::Hmac(_, secret) => (Algorithm::HmacSha256, secret.to_vec()),
        };
        // A key pair's own public key: Ed25519 ones are the base point times a scalar, in the
        // prime-order subgroup by construction, so only decoded.
        let ed25519 = match <[u8; 32]>::try_from(&bytes[..]) {
            Ok(public) if alg == Algorithm::Ed25519 => DecodedKey::decode(&public),
            _ => None,
        };
        Ok(VerifyingKey {
            alg,
            bytes: Zeroizing::new(bytes),
            ed25519,
        })
    }

    /// Signs `message`. Ed25519, HMAC and RSA v1.5 are deterministic; ECDSA and PSS are not.
    ///
    /// # Errors
    ///
    /// [`Error::Key`] if ring fails (random number generator failure).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        match &self.inner {
            Inner::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
            Inner::Hmac(k, _) => Ok(ring::hmac::sign(k, message).as_ref().to_vec()),
            Inner::Ecdsa(k, _) => k
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::Key("ecdsa signing failed")),
            Inner::Rsa(k, alg) => {
                let padding: &dyn sig::RsaEncoding = match alg {
                    Algorithm::RsaPssSha512 => &sig::RSA_PSS_SHA512,
                    _ => &sig::RSA_PKCS1_SHA256,
                };
                let mut out = vec![0u8; k.public().modulus_len()];
                k.sign(padding, &SystemRandom::new(), message, &mut out)
                    .map_err(|_| Error::Key("rsa signing failed"))?;
                Ok(out)
            }
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.algorithm())
            .finish_non_exhaustive()
    }
}
