//! RFC 9421 Appendix B, RFC 9530 and envoys 0.3.0 vectors, from data files, each named on failure.

use base64ct::{Base64, Encoding};
use vouch_httpsig::*;

use crate::support::{json, parse};

fn policy_accepting_anything() -> VerifyPolicy {
    VerifyPolicy::mcp()
        .require_exactly(Vec::new())
        .required_params(false, false, false)
        .digest_rule(DigestRule::WhenCovered)
        .algorithms(&Algorithm::ALL)
        .window(u64::MAX / 4, 0)
}

fn verifying_key(keys: &serde_json::Value, key: &str, alg: Algorithm) -> VerifyingKey {
    let k = &keys[key];
    if let Some(secret) = k["secret_base64"].as_str() {
        return VerifyingKey::hmac_sha256(&Base64::decode_vec(secret).unwrap());
    }
    VerifyingKey::from_pem(k["public_pem"].as_str().unwrap(), Some(alg)).unwrap()
}

fn signing_key(keys: &serde_json::Value, key: &str, alg: Algorithm) -> Option<SigningKey> {
    let k = &keys[key];
    if let Some(secret) = k["secret_base64"].as_str() {
        return Some(SigningKey::hmac_sha256(
            &Base64::decode_vec(secret).unwrap(),
        ));
    }
    SigningKey::from_pem(k["private_pem"].as_str()?, Some(alg)).ok()
}

/// Runs `check` on each RFC case, naming the case on failure.
fn each_rfc_case(check: impl Fn(&serde_json::Value, &serde_json::Value, Message<'_>)) {
    let v = json("rfc9421-appendix-b.json");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    let req = parse(v["request"].as_str().unwrap());
    let resp = parse(v["response"].as_str().unwrap());
    for case in cases {
        let mut headers = if case["message"] == "request" {
            req.headers.clone()
        } else {
            resp.headers.clone()
        };
        headers.insert(
            "signature-input",
            case["signature_input"].as_str().unwrap().parse().unwrap(),
        );
        headers.insert(
            "signature",
            case["signature"].as_str().unwrap().parse().unwrap(),
        );
        let message: Message<'_> = if case["message"] == "request" {
            RequestView::from_parts(&req.method, &req.uri, &headers, &req.body)
                .with_scheme("https")
                .into()
        } else {
            ResponseView::from_parts(resp.status, &headers, &resp.body).into()
        };
        let name = case["name"].as_str().unwrap();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&v, case, message)));
        if let Err(e) = result {
            panic!(
                "RFC 9421 {name}: {}",
                e.downcast_ref::<String>().cloned().unwrap_or_default()
            );
        }
    }
}

#[test]
fn rfc9421_bases_match_and_signatures_verify() {
    each_rfc_case(|v, case, message| {
        let alg = Algorithm::from_name(case["alg"].as_str().unwrap()).unwrap();
        let verifier =
            Verifier::new(policy_accepting_anything().label(case["label"].as_str().unwrap()));
        let prepared = verifier.prepare(message, 1_618_884_473).unwrap();
        assert_eq!(
            String::from_utf8_lossy(prepared.base()),
            case["signature_base"].as_str().unwrap(),
            "signature base"
        );
        let key = verifying_key(&v["keys"], case["key"].as_str().unwrap(), alg);
        prepared.verify(&key).unwrap();
    });
}

#[test]
fn rfc9421_deterministic_signatures_are_reproduced() {
    let mut reproduced = Vec::new();
    each_rfc_case(|v, case, message| {
        if !case["deterministic"].as_bool().unwrap() {
            return;
        }
        let alg = Algorithm::from_name(case["alg"].as_str().unwrap()).unwrap();
        let key = signing_key(&v["keys"], case["key"].as_str().unwrap(), alg).unwrap();
        let verifier =
            Verifier::new(policy_accepting_anything().label(case["label"].as_str().unwrap()));
        let prepared = verifier.prepare(message, 1_618_884_473).unwrap();
        let ours = key.sign(prepared.base()).unwrap();
        let expected = case["signature"].as_str().unwrap();
        let label = case["label"].as_str().unwrap();
        assert_eq!(
            format!("{label}=:{}:", Base64::encode_string(&ours)),
            expected
        );
    });
    // Recompute the list outside the closure to check both ran.
    let v = json("rfc9421-appendix-b.json");
    for case in v["cases"].as_array().unwrap() {
        if case["deterministic"].as_bool().unwrap() {
            reproduced.push(case["name"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(reproduced, ["B.2.5", "B.2.6"]);
}

#[test]
fn rfc9421_b26_signed_from_scratch_by_vouch() {
    // Sign the test request with vouch's signer and the spec B.2.6 states: same input, same bytes.
    let v = json("rfc9421-appendix-b.json");
    let req = parse(v["request"].as_str().unwrap());
    let key = SigningKey::from_pem(
        v["keys"]["test-key-ed25519"]["private_pem"]
            .as_str()
            .unwrap(),
        None,
    )
    .unwrap();
    let spec = SignatureSpec::new("sig-b26")
        .cover_names(&[
            "date",
            "@method",
            "@path",
            "@authority",
            "content-type",
            "content-length",
        ])
        .unwrap()
        .created(1_618_884_473)
        .keyid("test-key-ed25519");
    let view = RequestView::from_parts(&req.method, &req.uri, &req.headers, &req.body)
        .with_scheme("https");
    let sig = sign(view, &spec, &key).unwrap();
    let case = &v["cases"][5];
    assert_eq!(case["name"], "B.2.6");
    assert_eq!(
        sig.input_member(),
        case["signature_input"].as_str().unwrap()
    );
    assert_eq!(sig.signature_member(), case["signature"].as_str().unwrap());
    assert_eq!(
        String::from_utf8_lossy(sig.base()),
        case["signature_base"].as_str().unwrap()
    );
}

#[test]
fn rsa_v15_is_deterministic_and_verifies() {
    // RFC 9421 has no rsa-v1_5-sha256 example. ring refuses test-key-rsa's private key (its
    // primes differ in length), so sign with the RSA material of test-key-rsa-pss, twice.
    let v = json("rfc9421-appendix-b.json");
    let keys = &v["keys"];
    assert!(signing_key(keys, "test-key-rsa", Algorithm::RsaV15Sha256).is_none());
    let key = signing_key(keys, "test-key-rsa-pss", Algorithm::RsaV15Sha256).unwrap();
    let base = v["cases"][5]["signature_base"].as_str().unwrap().as_bytes();
    let a = key.sign(base).unwrap();
    assert_eq!(a, key.sign(base).unwrap());
    assert!(verifying_key(keys, "test-key-rsa-pss", Algorithm::RsaV15Sha256).verify(base, &a));
    assert!(!verifying_key(keys, "test-key-rsa-pss", Algorithm::RsaPssSha512).verify(base, &a));
    assert!(!verifying_key(keys, "test-key-rsa", Algorithm::RsaV15Sha256).verify(base, &a));
    // PSS with the PSS test key (rsassa-pss PKCS#8) signs and verifies, randomized.
    let pss = signing_key(keys, "test-key-rsa-pss", Algorithm::RsaPssSha512).unwrap();
    let s1 = pss.sign(base).unwrap();
    assert_ne!(s1, pss.sign(base).unwrap());
    assert!(verifying_key(keys, "test-key-rsa-pss", Algorithm::RsaPssSha512).verify(base, &s1));
}

#[test]
fn rfc9530_digests() {
    let v = json("rfc9530-digests.json");
    for d in v["vectors"].as_array().unwrap() {
        let name = d["name"].as_str().unwrap();
        let body = d["body"].as_str().unwrap().as_bytes();
        for (alg, field) in [
            (DigestAlgorithm::Sha256, "sha-256"),
            (DigestAlgorithm::Sha512, "sha-512"),
        ] {
            let Some(expected) = d[field].as_str() else {
                continue;
            };
            let header = format!("{field}=:{expected}:");
            assert_eq!(content_digest(body, &[alg]), header, "{name} {field}");
            verify_content_digest(header.as_bytes(), body, &[alg])
                .unwrap_or_else(|e| panic!("{name} {field}: {e}"));
        }
    }
    // Several members: all supported ones must match.
    let body = b"{\"hello\": \"world\"}";
    let both = content_digest(body, &[DigestAlgorithm::Sha256, DigestAlgorithm::Sha512]);
    verify_content_digest(
        both.as_bytes(),
        body,
        &[DigestAlgorithm::Sha256, DigestAlgorithm::Sha512],
    )
    .unwrap();
}

#[test]
fn envoys_vectors_verify_under_the_envoys_profile() {
    let v = json("envoys-0.3.0.json");
    let seed: [u8; 32] = hex(v["private_key_seed_hex"].as_str().unwrap())
        .try_into()
        .unwrap();
    let key = SigningKey::ed25519_from_seed(&seed)
        .unwrap()
        .verifying_key()
        .unwrap();
    let vectors = v["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 3);
    for vec in vectors {
        let id = vec["id"].as_str().unwrap();
        let body = vec["body_bytes_utf8"]
            .as_str()
            .unwrap_or("")
            .as_bytes()
            .to_vec();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "content-digest",
            vec["content_digest"].as_str().unwrap().parse().unwrap(),
        );
        headers.insert(
            "signature-input",
            vec["signature_input"].as_str().unwrap().parse().unwrap(),
        );
        headers.insert(
            "signature",
            vec["signature_header"].as_str().unwrap().parse().unwrap(),
        );
        let method = http::Method::from_bytes(vec["method"].as_str().unwrap().as_bytes()).unwrap();
        let uri: http::Uri = vec["path"].as_str().unwrap().parse().unwrap();
        let mut view = RequestView::from_parts(&method, &uri, &headers, &body).with_scheme("https");
        if let Some(authority) = vec["authority"].as_str() {
            view = view.with_authority(authority);
        }
        let created = vec["created"].as_u64().unwrap();
        let prepared = Verifier::new(VerifyPolicy::envoys())
            .prepare(view, created + 1)
            .unwrap_or_else(|e| panic!("envoys {id}: {e}"));
        assert_eq!(
            String::from_utf8_lossy(prepared.base()),
            vec["signature_base"].as_str().unwrap(),
            "envoys {id}"
        );
        assert_eq!(prepared.keyid(), vec["keyid"].as_str(), "envoys {id}");
        prepared
            .verify(&key)
            .unwrap_or_else(|e| panic!("envoys {id}: {e}"));
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn rfc9421_section_2_4_responses_bound_to_the_request() {
    // The two published examples of §2.4: a 503 response signed over components of the
    // request it answers (`;req`). The bases byte for byte, the published ECDSA signatures
    // verified; then the same signature against a changed request fails.
    let v = json("rfc9421-appendix-b.json");
    let req = parse(v["request"].as_str().unwrap());
    let resp = parse(v["request_response_response"].as_str().unwrap());
    let cases = v["request_response_cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for (i, case) in cases.iter().enumerate() {
        let name = case["name"].as_str().unwrap();
        let mut headers = resp.headers.clone();
        headers.insert(
            "signature-input",
            case["signature_input"].as_str().unwrap().parse().unwrap(),
        );
        headers.insert(
            "signature",
            case["signature"].as_str().unwrap().parse().unwrap(),
        );
        let request = RequestView::from_parts(&req.method, &req.uri, &req.headers, &req.body)
            .with_scheme("https");
        let view =
            ResponseView::from_parts(resp.status, &headers, &resp.body).with_request(request);
        let verifier = Verifier::new(policy_accepting_anything().label("reqres"));
        let prepared = verifier
            .prepare(view, 1_618_884_479)
            .unwrap_or_else(|e| panic!("{i} {name}: {e}"));
        assert_eq!(
            String::from_utf8_lossy(prepared.base()),
            case["signature_base"].as_str().unwrap(),
            "{i} {name}: signature base"
        );
        let key = verifying_key(
            &v["keys"],
            case["key"].as_str().unwrap(),
            Algorithm::EcdsaP256Sha256,
        );
        prepared
            .verify(&key)
            .unwrap_or_else(|e| panic!("{i} {name}: {e}"));

        // The same response read against another request: the request is covered.
        let put = http::Method::PUT;
        let other =
            RequestView::from_parts(&put, &req.uri, &req.headers, &req.body).with_scheme("https");
        let view = ResponseView::from_parts(resp.status, &headers, &resp.body).with_request(other);
        let prepared = verifier.prepare(view, 1_618_884_479).unwrap();
        assert_eq!(
            prepared.verify(&key).unwrap_err(),
            Error::BadSignature,
            "{i} {name}"
        );

        // Without the request, a `;req` component has no value.
        let orphan = ResponseView::from_parts(resp.status, &headers, &resp.body);
        assert!(
            matches!(
                verifier.prepare(orphan, 1_618_884_479),
                Err(Error::Unsupported(_))
            ),
            "{i} {name}"
        );
    }
}

#[test]
fn rfc9421_b24_signed_from_scratch_by_vouch() {
    // B.2.4 with vouch's signer: the same Signature-Input and base byte for byte. ECDSA is
    // randomized, so the signature differs from the RFC's; it verifies with the public key.
    let v = json("rfc9421-appendix-b.json");
    let case = &v["cases"][3];
    assert_eq!(case["name"], "B.2.4");
    let resp = parse(v["response"].as_str().unwrap());
    let pem = v["keys"]["test-key-ecc-p256"]["private_pkcs8_pem"]
        .as_str()
        .unwrap();
    let key = SigningKey::from_pem(pem, None).unwrap();
    assert_eq!(key.algorithm(), Algorithm::EcdsaP256Sha256);
    let spec = SignatureSpec::new("sig-b24")
        .cover_names(&[
            "@status",
            "content-type",
            "content-digest",
            "content-length",
        ])
        .unwrap()
        .created(1_618_884_473)
        .keyid("test-key-ecc-p256");
    let view = ResponseView::from_parts(resp.status, &resp.headers, &resp.body);
    let sig = sign(view, &spec, &key).unwrap();
    assert_eq!(
        sig.input_member(),
        case["signature_input"].as_str().unwrap()
    );
    assert_eq!(
        String::from_utf8_lossy(sig.base()),
        case["signature_base"].as_str().unwrap()
    );
    assert_ne!(sig.signature_member(), case["signature"].as_str().unwrap());
    let public = verifying_key(&v["keys"], "test-key-ecc-p256", Algorithm::EcdsaP256Sha256);
    assert!(public.verify(sig.base(), sig.value()));
    // And it verifies through the verifier, as a response with the headers applied.
    let mut headers = resp.headers.clone();
    sig.apply(&mut headers).unwrap();
    let view = ResponseView::from_parts(resp.status, &headers, &resp.body);
    Verifier::new(policy_accepting_anything().label("sig-b24"))
        .prepare(view, 1_618_884_473)
        .unwrap()
        .verify(&public)
        .unwrap();
}
