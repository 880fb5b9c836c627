//! SEP-2752: the SEP's example (what of it can be checked), round trips of `sep2752_spec` under
//! `VerifyPolicy::sep2752`, and a rejection for each thing the profile requires.

use http::{HeaderMap, Method, Uri};
use vouch_httpsig::*;

use crate::support::{json, parse, ready};

const NOW: u64 = 1_747_641_600;

fn vector() -> serde_json::Value {
    json("sep2752.json")
}

fn cnf_key(v: &serde_json::Value) -> VerifyingKey {
    let x = v["sep"]["cnf_jwk"]["x"].as_str().unwrap();
    let raw: [u8; 32] = <base64ct::Base64UrlUnpadded as base64ct::Encoding>::decode_vec(x)
        .unwrap()
        .try_into()
        .unwrap();
    VerifyingKey::try_ed25519(raw).unwrap()
}

#[test]
fn the_examples_head_passes_the_profile_and_its_base_is_as_derived() {
    let v = vector();
    let raw = parse(v["sep"]["request"].as_str().unwrap());
    let view =
        RequestView::from_parts(&raw.method, &raw.uri, &raw.headers, &[]).with_scheme("https");
    let (prepared, _) = Verifier::new(VerifyPolicy::sep2752())
        .prepare_head(view, NOW)
        .unwrap();
    assert_eq!(
        std::str::from_utf8(prepared.base()).unwrap(),
        v["derived"]["signature_base"].as_str().unwrap()
    );
    assert_eq!(
        prepared.params().tag.as_deref(),
        Some("agent-instance-9f3e")
    );
    assert_eq!(prepared.params().alg, None);
}

#[test]
fn the_examples_keyid_is_the_thumbprint_of_the_cnf_jwk() {
    let v = vector();
    let thumbprint = cnf_key(&v).jwk_thumbprint().unwrap();
    assert_eq!(
        thumbprint,
        v["derived"]["cnf_jwk_thumbprint"].as_str().unwrap()
    );
    let raw = parse(v["sep"]["request"].as_str().unwrap());
    let input = raw.headers["signature-input"].to_str().unwrap();
    assert!(input.contains(&format!("keyid=\"{thumbprint}\"")));
    // The thumbprint code against RFC 8037 Appendix A.3.
    let a3 = &v["derived"]["rfc8037_a3"];
    let raw: [u8; 32] =
        <base64ct::Base64UrlUnpadded as base64ct::Encoding>::decode_vec(a3["x"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
    assert_eq!(
        VerifyingKey::try_ed25519(raw)
            .unwrap()
            .jwk_thumbprint()
            .unwrap(),
        a3["thumbprint"].as_str().unwrap()
    );
}

#[test]
fn the_p256_thumbprint_matches_an_independent_computation() {
    let check = &vector()["derived"]["p256_check"];
    let der = <base64ct::Base64 as base64ct::Encoding>::decode_vec(
        check["pkcs8_der_base64"].as_str().unwrap(),
    )
    .unwrap();
    let key = SigningKey::from_pkcs8_der(&der, None).unwrap();
    assert_eq!(key.algorithm(), Algorithm::EcdsaP256Sha256);
    assert_eq!(
        key.verifying_key().unwrap().jwk_thumbprint().unwrap(),
        check["thumbprint"].as_str().unwrap()
    );
}

#[test]
fn the_examples_content_digest_is_not_of_its_body() {
    let v = vector();
    let raw = parse(v["sep"]["request"].as_str().unwrap());
    let view = RequestView::from_parts(&raw.method, &raw.uri, &raw.headers, &raw.body)
        .with_scheme("https");
    let err = Verifier::new(VerifyPolicy::sep2752())
        .prepare(view, NOW)
        .unwrap_err();
    assert_eq!(err, Error::DigestMismatch);
    let d = &v["derived"];
    assert_eq!(
        mcp_content_digest(&raw.body),
        d["body_content_digest"].as_str().unwrap()
    );
    assert_eq!(
        mcp_content_digest(d["content_digest_is_of"].as_str().unwrap().as_bytes()),
        raw.headers["content-digest"].to_str().unwrap()
    );
}

#[test]
fn the_examples_signature_does_not_verify_with_the_cnf_key() {
    let v = vector();
    assert_eq!(v["can_verify"], false);
    let raw = parse(v["sep"]["request"].as_str().unwrap());
    let view =
        RequestView::from_parts(&raw.method, &raw.uri, &raw.headers, &[]).with_scheme("https");
    let (prepared, _) = Verifier::new(VerifyPolicy::sep2752())
        .prepare_head(view, NOW)
        .unwrap();
    assert_eq!(
        prepared.verify(&cnf_key(&v)).unwrap_err(),
        Error::BadSignature
    );
}

#[test]
fn accept_signature_is_the_seps_given_its_tag() {
    let v = vector();
    let raw = parse(v["sep"]["request"].as_str().unwrap());
    let policy =
        VerifyPolicy::sep2752().required_tag(v["sep"]["accept_signature_tag"].as_str().unwrap());
    assert_eq!(
        policy.accept_signature("sig1", &raw.headers, true),
        v["sep"]["accept_signature"].as_str().unwrap()
    );
    // Without the MCP headers (an initialize request), nothing asks for them; content-digest
    // stays, even without a body.
    assert_eq!(
        VerifyPolicy::sep2752().accept_signature("sig1", &HeaderMap::new(), false),
        r#"sig1=("@method" "@target-uri" "content-digest");created;nonce"#
    );
    // vouch's MCP profile asks for content-digest only with a body.
    assert_eq!(
        VerifyPolicy::mcp().accept_signature("sig1", &HeaderMap::new(), false),
        r#"sig1=("@method" "@target-uri");created;nonce"#
    );
}

#[test]
fn the_policy_is_the_seps_numbers() {
    let v = vector();
    let p = VerifyPolicy::sep2752();
    assert_eq!(
        p.allowed_algorithms(),
        &[
            Algorithm::Ed25519,
            Algorithm::EcdsaP256Sha256,
            Algorithm::EcdsaP384Sha384
        ]
    );
    let f = &v["sep"]["freshness"];
    let max_age = f["max_age"].as_u64().unwrap();
    let skew = f["future_skew"].as_u64().unwrap();
    // Exactly at both edges: accepted; one second past either: refused.
    for (created, ok) in [
        (NOW - max_age, true),
        (NOW - max_age - 1, false),
        (NOW + skew, true),
        (NOW + skew + 1, false),
    ] {
        let r = Request::new().created(created).send(NOW);
        assert_eq!(r.is_ok(), ok, "created {created}: {r:?}");
    }
}

// ---- Round trips and rejections, on requests signed here. ----

fn ed25519() -> SigningKey {
    SigningKey::ed25519_from_seed(&[9; 32]).unwrap()
}

fn p256() -> SigningKey {
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    SigningKey::from_pkcs8_der(pkcs8.as_ref(), None).unwrap()
}

/// Builds the spec a test signs with.
type SpecFn = dyn Fn(&RequestView<'_>, &SigningKey) -> SignatureSpec;

/// Parameters set on a spec that covers the SEP's components.
type ParamsFn = fn(SignatureSpec, &SigningKey) -> SignatureSpec;

/// A request to sign and verify under the sep2752 policy, with knobs for each way to get it
/// wrong.
struct Request {
    key: SigningKey,
    body: Vec<u8>,
    session: bool,
    token: bool,
    digest_header: bool,
    spec: Option<Box<SpecFn>>,
    created: u64,
    policy: VerifyPolicy,
}

impl Request {
    fn new() -> Self {
        Self {
            key: ed25519(),
            body: br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"swap"}}"#
                .to_vec(),
            session: true,
            token: false,
            digest_header: true,
            spec: None,
            created: NOW,
            policy: VerifyPolicy::sep2752(),
        }
    }

    fn created(mut self, created: u64) -> Self {
        self.created = created;
        self
    }

    /// Signs with `spec` instead of `sep2752_spec`.
    fn spec(
        mut self,
        spec: impl Fn(&RequestView<'_>, &SigningKey) -> SignatureSpec + 'static,
    ) -> Self {
        self.spec = Some(Box::new(spec));
        self
    }

    fn thumbprint(key: &SigningKey) -> String {
        key.verifying_key().unwrap().jwk_thumbprint().unwrap()
    }

    /// The SEP's components and parameters, built by hand (for variations).
    fn by_hand(
        components: &[&str],
    ) -> impl Fn(&RequestView<'_>, &SigningKey) -> SignatureSpec + 'static {
        let components: Vec<String> = components.iter().map(|c| (*c).to_owned()).collect();
        move |_, key| {
            let names: Vec<&str> = components.iter().map(String::as_str).collect();
            SignatureSpec::new("sig1")
                .cover_names(&names)
                .unwrap()
                .created(NOW)
                .nonce(random_nonce().unwrap())
                .keyid(Self::thumbprint(key))
                .tag("agent-instance-9f3e")
        }
    }

    fn build(&self) -> (Method, Uri, HeaderMap) {
        let method = Method::POST;
        let uri: Uri = "https://server.example.com/mcp".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "server.example.com".parse().unwrap());
        headers.insert("mcp-protocol-version", "2026-03-26".parse().unwrap());
        if self.session {
            headers.insert("mcp-session-id", "sess_abc123".parse().unwrap());
        }
        if self.token {
            headers.insert("x-mcpvault-token", "v1.token".parse().unwrap());
        }
        if self.digest_header {
            headers.insert(
                "content-digest",
                mcp_content_digest(&self.body).parse().unwrap(),
            );
        }
        let view = RequestView::from_parts(&method, &uri, &headers, &self.body);
        let spec = match &self.spec {
            Some(f) => f(&view, &self.key),
            None => sep2752_spec(&view, &self.key, None, self.created).unwrap(),
        };
        let signature = sign(view, &spec, &self.key).unwrap();
        signature.apply(&mut headers).unwrap();
        (method, uri, headers)
    }

    /// Verifies with the signer's own key.
    fn send(&self, now: u64) -> Result<Verified, Error> {
        self.send_to(now, &self.key.verifying_key().unwrap())
    }

    fn send_to(&self, now: u64, key: &VerifyingKey) -> Result<Verified, Error> {
        let (method, uri, headers) = self.build();
        let view = RequestView::from_parts(&method, &uri, &headers, &self.body);
        Verifier::new(self.policy.clone())
            .prepare(view, now)?
            .verify(key)
    }
}

#[test]
fn round_trip_ed25519_with_a_session() {
    let verified = Request::new().send(NOW).unwrap();
    assert_eq!(
        verified.params.keyid.as_deref(),
        Some(Request::thumbprint(&ed25519()).as_str())
    );
    // The first-contact tag is the keyid.
    assert_eq!(verified.params.tag, verified.params.keyid);
    assert_eq!(verified.params.alg, None);
    let covered: Vec<String> = verified
        .components()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        covered,
        [
            "\"@method\"",
            "\"@target-uri\"",
            "\"content-digest\"",
            "\"mcp-protocol-version\"",
            "\"mcp-session-id\""
        ]
    );
}

#[test]
fn a_token_header_is_covered_as_the_policy_requires() {
    let mut request = Request::new();
    request.token = true;
    let (_, _, headers) = request.build();
    let input = headers.get("signature-input").unwrap().to_str().unwrap();
    assert!(input.contains("\"x-mcpvault-token\""), "{input}");
    request.send(NOW).unwrap();
    // Signed by hand without it, the policy refuses the request.
    let mut bare = Request::new().spec(Request::by_hand(&[
        "@method",
        "@target-uri",
        "content-digest",
        "mcp-protocol-version",
        "mcp-session-id",
    ]));
    bare.token = true;
    assert!(bare.send(NOW).is_err());
}

#[test]
fn round_trip_ecdsa_p256_without_a_session_and_with_an_empty_body() {
    let mut r = Request::new();
    r.key = p256();
    r.session = false;
    r.body = Vec::new();
    let verified = r.send(NOW).unwrap();
    assert_eq!(verified.algorithm(), Algorithm::EcdsaP256Sha256);
    assert_eq!(verified.components().len(), 4);
}

#[test]
fn a_stable_tag_is_carried() {
    let r = Request::new()
        .spec(|view, key| sep2752_spec(view, key, Some("agent-instance-9f3e"), NOW).unwrap());
    assert_eq!(
        r.send(NOW).unwrap().params.tag.as_deref(),
        Some("agent-instance-9f3e")
    );
}

#[test]
fn a_replay_is_refused() {
    let r = Request::new();
    let (method, uri, headers) = r.build();
    let guard = MemoryReplayGuard::new(16);
    let verifier = Verifier::new(VerifyPolicy::sep2752());
    let key = r.key.verifying_key().unwrap();
    for expected in [Ok(()), Err(Error::Replayed)] {
        let view = RequestView::from_parts(&method, &uri, &headers, &r.body);
        let verified = verifier.prepare(view, NOW).unwrap().verify(&key).unwrap();
        assert_eq!(
            ready(verified.check_replay(&guard, "client", NOW)),
            expected
        );
    }
}

#[test]
fn each_required_component_is_required() {
    for (missing, covered) in [
        (
            "@method",
            &[
                "@target-uri",
                "content-digest",
                "mcp-protocol-version",
                "mcp-session-id",
            ][..],
        ),
        (
            "@target-uri",
            &[
                "@method",
                "@path",
                "@authority",
                "content-digest",
                "mcp-protocol-version",
                "mcp-session-id",
            ],
        ),
        (
            "mcp-protocol-version",
            &["@method", "@target-uri", "content-digest", "mcp-session-id"],
        ),
        (
            "mcp-session-id",
            &[
                "@method",
                "@target-uri",
                "content-digest",
                "mcp-protocol-version",
            ],
        ),
    ] {
        let err = Request::new()
            .spec(Request::by_hand(covered))
            .send(NOW)
            .unwrap_err();
        assert_eq!(
            err,
            Error::MissingComponent(format!("\"{missing}\"")),
            "without {missing}"
        );
    }
    // The same hand-built spec with everything passes, so the rejections above are the
    // missing component's.
    Request::new()
        .spec(Request::by_hand(&[
            "@method",
            "@target-uri",
            "content-digest",
            "mcp-protocol-version",
            "mcp-session-id",
        ]))
        .send(NOW)
        .unwrap();
}

#[test]
fn content_digest_is_required_even_for_an_empty_body() {
    let mut r = Request::new().spec(Request::by_hand(&[
        "@method",
        "@target-uri",
        "mcp-protocol-version",
    ]));
    r.session = false;
    r.body = Vec::new();
    r.digest_header = false;
    assert_eq!(r.send(NOW).unwrap_err(), Error::DigestMissing);
    // vouch's MCP profile accepts the same request: it binds a body only when there is one.
    r.policy = VerifyPolicy::mcp();
    r.send(NOW).unwrap();
}

#[test]
fn each_required_parameter_is_required() {
    let all = [
        "@method",
        "@target-uri",
        "content-digest",
        "mcp-protocol-version",
        "mcp-session-id",
    ];
    let cases: [(&str, ParamsFn); 4] = [
        ("created", |s, k| {
            s.nonce(random_nonce().unwrap())
                .keyid(Request::thumbprint(k))
                .tag("t")
        }),
        ("nonce", |s, k| {
            s.created(NOW).keyid(Request::thumbprint(k)).tag("t")
        }),
        ("keyid", |s, _| {
            s.created(NOW).nonce(random_nonce().unwrap()).tag("t")
        }),
        ("tag", |s, k| {
            s.created(NOW)
                .nonce(random_nonce().unwrap())
                .keyid(Request::thumbprint(k))
        }),
    ];
    for (missing, params) in cases {
        let err = Request::new()
            .spec(move |_, key| params(SignatureSpec::new("sig1").cover_names(&all).unwrap(), key))
            .send(NOW)
            .unwrap_err();
        assert_eq!(err, Error::MissingParameter(missing), "without {missing}");
    }
}

#[test]
fn a_short_or_non_base64url_nonce_is_refused() {
    for (nonce, ok) in [
        ("V8wA3pX2qF7nL1cR", true),         // the SEP's: 12 bytes
        ("AAECAwQFBgcICQoLDA0ODw==", true), // 16 bytes, padded
        ("AAECAwQFBgcICQo", false),         // 11 bytes
        ("V8wA3pX2qF7nL1c+", false),        // standard base64, not base64url
        ("not a nonce at all!", false),
    ] {
        let r = Request::new().spec(move |_, key| {
            SignatureSpec::new("sig1")
                .cover_names(&[
                    "@method",
                    "@target-uri",
                    "content-digest",
                    "mcp-protocol-version",
                    "mcp-session-id",
                ])
                .unwrap()
                .created(NOW)
                .nonce(nonce)
                .keyid(Request::thumbprint(key))
                .tag("t")
        });
        let result = r.send(NOW);
        assert_eq!(result.is_ok(), ok, "nonce {nonce:?}: {result:?}");
        if !ok {
            assert!(
                matches!(result, Err(Error::Malformed(_))),
                "nonce {nonce:?}"
            );
        }
    }
}

#[test]
fn a_keyid_that_is_not_the_keys_thumbprint_is_refused() {
    let other = Request::thumbprint(&p256());
    for keyid in [
        "agent-a".to_owned(),
        "https://agents.example/a".to_owned(),
        // Thumbprint-shaped but 33 bytes / not base64url.
        format!("{}A", Request::thumbprint(&ed25519())),
        Request::thumbprint(&ed25519()).replace(|c: char| c.is_ascii_alphanumeric(), "+"),
        // The right form, another key's.
        other,
    ] {
        let k = keyid.clone();
        let r = Request::new().spec(move |_, _| {
            SignatureSpec::new("sig1")
                .cover_names(&[
                    "@method",
                    "@target-uri",
                    "content-digest",
                    "mcp-protocol-version",
                    "mcp-session-id",
                ])
                .unwrap()
                .created(NOW)
                .nonce(random_nonce().unwrap())
                .keyid(k.clone())
                .tag("t")
        });
        assert_eq!(
            r.send(NOW).unwrap_err(),
            Error::KeyidMismatch,
            "keyid {keyid:?}"
        );
    }
}

#[test]
fn an_alg_parameter_is_ignored_not_trusted() {
    // A client that sends alg anyway (against the SEP), even a wrong one: the key decides.
    let r = Request::new().spec(|_, key| {
        SignatureSpec::new("sig1")
            .cover_names(&[
                "@method",
                "@target-uri",
                "content-digest",
                "mcp-protocol-version",
                "mcp-session-id",
            ])
            .unwrap()
            .created(NOW)
            .nonce(random_nonce().unwrap())
            .keyid(Request::thumbprint(key))
            .tag("t")
            .alg(&SigningKey::hmac_sha256(
                b"0123456789abcdef0123456789abcdef",
            ))
    });
    let verified = r.send(NOW).unwrap();
    assert_eq!(verified.algorithm(), Algorithm::Ed25519);
    assert_eq!(verified.params.alg.as_deref(), Some("hmac-sha256"));
    // Under vouch's MCP profile the same signature is refused.
    let mut r = r;
    r.policy = VerifyPolicy::mcp();
    assert!(r.send(NOW).is_err());
}

#[test]
fn algorithms_outside_the_sep_are_refused() {
    // An HMAC key: its "signature" verifies under the MCP profile's mechanics, never here.
    let secret = b"0123456789abcdef0123456789abcdef";
    let r = Request::new().spec(|_, _| {
        SignatureSpec::new("sig1")
            .cover_names(&[
                "@method",
                "@target-uri",
                "content-digest",
                "mcp-protocol-version",
                "mcp-session-id",
            ])
            .unwrap()
            .created(NOW)
            .nonce(random_nonce().unwrap())
            .keyid("A".repeat(43))
            .tag("t")
    });
    let mut r = r;
    r.key = SigningKey::hmac_sha256(secret);
    let err = r
        .send_to(NOW, &VerifyingKey::hmac_sha256(secret))
        .unwrap_err();
    assert_eq!(err, Error::AlgorithmNotAllowed("hmac-sha256".to_owned()));
    // And sep2752_spec refuses to sign with such a key at all.
    let (method, uri, headers) = Request::new().build();
    let view = RequestView::from_parts(&method, &uri, &headers, &[]);
    assert!(matches!(
        sep2752_spec(&view, &SigningKey::hmac_sha256(secret), None, NOW),
        Err(Error::Key(_))
    ));
}

#[test]
fn a_tampered_header_fails() {
    let r = Request::new();
    let (method, uri, mut headers) = r.build();
    headers.insert("mcp-session-id", "sess_other".parse().unwrap());
    let view = RequestView::from_parts(&method, &uri, &headers, &r.body);
    let err = Verifier::new(VerifyPolicy::sep2752())
        .prepare(view, NOW)
        .unwrap()
        .verify(&r.key.verifying_key().unwrap())
        .unwrap_err();
    assert_eq!(err, Error::BadSignature);
}
