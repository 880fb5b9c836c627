//! RFC 9421 Ed25519 signatures are verified by vouch's one rule (ZIP-215, cofactored), the rule
//! token chains and batches use, not by ring's (cofactorless). The two differ only on
//! signatures whose `R` has a small-order component, which only the key's owner can make; under
//! a weak key (refused at load) they would differ on more.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::scalar::Scalar;
use ring::signature::{ED25519, UnparsedPublicKey};
use vouch_httpsig::{SigningKey, VerifyingKey};
use vouch_token::ed25519::{Batch, verify};

/// A key `a·B` and a signature over `message` whose `R` is `r·B + T`, `T` of order 8:
/// `S = r + k·a`, so `[8][S]B = [8]R + [8][k]A` holds and `[S]B = R + [k]A` does not.
fn torsioned_signature(message: &[u8]) -> ([u8; 32], [u8; 64]) {
    let a = Scalar::from_bytes_mod_order([11; 32]);
    let public = (ED25519_BASEPOINT_POINT * a).compress().to_bytes();
    let r = Scalar::from_bytes_mod_order([5; 32]);
    let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[2])
        .compress()
        .to_bytes();
    let mut h = ring::digest::Context::new(&ring::digest::SHA512);
    h.update(&big_r);
    h.update(&public);
    h.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&h.finish().as_ref().try_into().unwrap());
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&big_r);
    sig[32..].copy_from_slice(s.as_bytes());
    (public, sig)
}

#[test]
fn message_signatures_follow_the_cofactored_rule_single_and_batch_alike() {
    let message = b"\"@method\": POST\n\"@signature-params\": (\"@method\")";
    let (public, sig) = torsioned_signature(message);
    // The key is fit: it loads.
    let key = VerifyingKey::try_ed25519(public).unwrap();
    // ring refuses the signature; vouch's rule accepts it, alone and in a batch.
    assert!(
        UnparsedPublicKey::new(&ED25519, &public)
            .verify(message, &sig)
            .is_err()
    );
    assert!(key.verify(message, &sig));
    assert!(verify(&public, message, &sig));
    let mut batch = Batch::new();
    batch.add(&public, message, &sig);
    assert!(batch.verify());
    // Not for another message.
    assert!(!key.verify(b"another", &sig));
}

#[test]
fn an_ordinary_signature_verifies_under_both_rules() {
    let signer = SigningKey::ed25519_from_seed(&[3; 32]).unwrap();
    let sig = signer.sign(b"base").unwrap();
    let key = signer.verifying_key().unwrap();
    assert!(key.verify(b"base", &sig));
    assert!(!key.verify(b"bass", &sig));
    assert!(
        UnparsedPublicKey::new(&ED25519, key.public_bytes())
            .verify(b"base", &sig)
            .is_ok()
    );
    // Keys built from bytes verify the same way as the signer's own.
    let public: [u8; 32] = key.public_bytes().try_into().unwrap();
    assert!(VerifyingKey::ed25519(public).verify(b"base", &sig));
    assert!(
        VerifyingKey::try_ed25519(public)
            .unwrap()
            .verify(b"base", &sig)
    );
    // A signature of the wrong length never verifies.
    assert!(!key.verify(b"base", &sig[..63]));
}
