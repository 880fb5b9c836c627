//! Signed requests: sign then check for each profile and digest, the RFC 9421 B.2.6 example,
//! and every way check rejects.

use serde_json::json;

use crate::support::{Scratch, vector};

const POST: &str = "POST /mcp?session=1 HTTP/1.1\r\nHost: mcp.example:8443\r\nContent-Type: application/json\r\nMcp-Protocol-Version: 2025-06-18\r\nContent-Length: 46\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}";
const GET: &str = "GET /mcp HTTP/1.1\nHost: mcp.example\nAccept: text/event-stream\n\n";

const B26_COMPONENTS: &str =
    r#""date" "@method" "@path" "@authority" "content-type" "content-length""#;

/// A scratch directory with an agent key and its public key.
fn setup() -> (Scratch, String) {
    let s = Scratch::new();
    let public = s.keygen("agent.pem");
    s.write("post.http", POST);
    s.write("get.http", GET);
    (s, public)
}

/// Runs `vouch sign` as agent-a with its key.
fn sign_run(s: &Scratch, request: &str, extra: &[&str]) -> crate::support::Run {
    let mut args = vec!["sign", "--key", "agent.pem", "--keyid", "agent-a"];
    args.extend_from_slice(extra);
    args.push(request);
    s.run(&args)
}

/// The request signed by agent-a.
fn sign(s: &Scratch, request: &str, extra: &[&str]) -> Vec<u8> {
    let run = sign_run(s, request, extra);
    run.ok();
    run.stdout
}

fn check(s: &Scratch, public: &str, signed: &[u8], extra: &[&str]) -> crate::support::Run {
    s.write("signed.http", signed);
    let mut args = vec!["check", "--pubkey", public];
    args.extend_from_slice(extra);
    args.push("signed.http");
    s.run(&args)
}

fn header<'a>(signed: &'a str, name: &str) -> Option<&'a str> {
    signed
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

#[test]
fn mcp_profile_round_trips_with_each_digest() {
    let (s, public) = setup();
    for (digest, prefix) in [("sha-256", "sha-256=:"), ("sha-512", "sha-512=:")] {
        let signed = sign(&s, "post.http", &["--digest", digest]);
        let text = String::from_utf8(signed.clone()).unwrap();
        // The request is printed back as it was, with CRLF, plus three fields.
        assert!(text.starts_with("POST /mcp?session=1 HTTP/1.1\r\nHost: mcp.example:8443\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}"));
        assert!(header(&text, "Content-Digest").unwrap().starts_with(prefix));
        let input = header(&text, "Signature-Input").unwrap();
        assert!(
            input.starts_with(
                r#"sig1=("@method" "@target-uri" "content-digest" "mcp-protocol-version");created="#
            ),
            "{input}"
        );
        assert!(input.contains(";nonce=\"") && input.contains(r#";alg="ed25519";keyid="agent-a""#));
        let verified = check(&s, &public, &signed, &["--require-nonce"]).json();
        assert_eq!(verified["keyid"], "agent-a");
        assert_eq!(verified["label"], "sig1");
        assert_eq!(verified["alg"], "ed25519");
        assert_eq!(
            verified["covered"],
            json!([
                "\"@method\"",
                "\"@target-uri\"",
                "\"content-digest\"",
                "\"mcp-protocol-version\""
            ])
        );
        // Signed for https: as http the target URI differs.
        check(&s, &public, &signed, &["--scheme", "http"]).rejected("bad_signature");
    }
    // The MCP profile covers the digest of a body, so it cannot sign a body without one...
    sign_run(&s, "post.http", &["--digest", "none"]).usage("content-digest");
    // ...and check refuses a body whose signature does not cover a digest.
    let signed = sign(
        &s,
        "post.http",
        &[
            "--digest",
            "none",
            "--nonce",
            "n1",
            "--components",
            r#""@method" "@target-uri" "mcp-protocol-version""#,
        ],
    );
    assert!(header(std::str::from_utf8(&signed).unwrap(), "Content-Digest").is_none());
    check(&s, &public, &signed, &[]).rejected("digest_missing");
    // Without a body, no digest is needed; with --digest one is still added and covered.
    let signed = sign(&s, "get.http", &["--digest", "none", "--scheme", "http"]);
    let verified = check(&s, &public, &signed, &["--scheme", "http"]).json();
    assert_eq!(
        verified["covered"],
        json!(["\"@method\"", "\"@target-uri\""])
    );
    let signed = sign(&s, "get.http", &[]);
    let verified = check(&s, &public, &signed, &[]).json();
    assert_eq!(
        verified["covered"],
        json!(["\"@method\"", "\"@target-uri\"", "\"content-digest\""])
    );
}

#[test]
fn envoys_profile_round_trips_with_each_digest() {
    let (s, public) = setup();
    let envoys = r#""@method" "@path" "content-digest""#;
    for digest in ["sha-256", "sha-512"] {
        let signed = sign(
            &s,
            "post.http",
            &["--profile", "envoys", "--digest", digest],
        );
        let text = String::from_utf8(signed.clone()).unwrap();
        let input = header(&text, "Signature-Input").unwrap();
        assert!(
            input.starts_with(
                r#"sig1=("@method" "@path" "content-digest");keyid="agent-a";created="#
            ),
            "{input}"
        );
        assert!(
            input.contains(";nonce=") && !input.contains("alg="),
            "{input}"
        );
        let verified = check(
            &s,
            &public,
            &signed,
            &["--require", envoys, "--require-nonce"],
        )
        .json();
        assert_eq!(verified["keyid"], "agent-a");
        // The MCP profile wants the target URI, which the envoys profile does not cover.
        check(&s, &public, &signed, &[]).rejected("missing_component");
        // check --profile envoys applies the envoys policy itself.
        let verified = check(&s, &public, &signed, &["--profile", "envoys"]).json();
        assert_eq!(verified["covered"][1], "\"@path\"");
    }
    // An MCP-profile signature does not cover @path: the envoys policy refuses it.
    let mcp = sign(&s, "post.http", &[]);
    check(&s, &public, &mcp, &["--profile", "envoys"]).rejected("missing_component");
    // --directory belongs to web-bot-auth.
    s.write("signed.http", &mcp);
    s.run(&["check", "--directory", "x.json", "signed.http"])
        .usage("--directory is for --profile web-bot-auth");
    // The envoys profile covers content-digest, so it cannot sign without one.
    sign_run(
        &s,
        "post.http",
        &["--profile", "envoys", "--digest", "none"],
    )
    .usage("content-digest");
}

#[test]
fn explicit_components_sign_exactly_what_is_named() {
    let (s, public) = setup();
    let signed = sign(
        &s,
        "post.http",
        &[
            "--components",
            r#""@method" "@authority" "@query-param";name="session""#,
            "--label",
            "mine",
            "--created",
            "1700000000",
            "--expires",
            "1700000100",
            "--tag",
            "cli-test",
            "--alg",
            "ed25519",
        ],
    );
    let text = String::from_utf8(signed.clone()).unwrap();
    assert_eq!(
        header(&text, "Signature-Input").unwrap(),
        r#"mine=("@method" "@authority" "@query-param";name="session");created=1700000000;expires=1700000100;alg="ed25519";keyid="agent-a";tag="cli-test""#
    );
    let require = [
        "--require",
        r#""@method" "@authority" "@query-param";name="session""#,
        "--now",
        "1700000050",
    ];
    let verified = check(&s, &public, &signed, &require).json();
    assert_eq!(verified["tag"], "cli-test");
    assert_eq!(verified["expires"], 1_700_000_100);
    assert_eq!(verified["nonce"], serde_json::Value::Null);
    // No nonce was given, so --require-nonce rejects it.
    let mut strict = require.to_vec();
    strict.push("--require-nonce");
    check(&s, &public, &signed, &strict).rejected("nonce");
    // Past expires.
    check(
        &s,
        &public,
        &signed,
        &["--require", require[1], "--now", "1700000100"],
    )
    .rejected("expired");
}

#[test]
fn rfc9421_b26_is_reproduced_and_checked() {
    let s = Scratch::new();
    let expected = std::fs::read(vector("rfc9421-b26-signed.http")).unwrap();
    let run = s.run(&[
        "sign",
        "--key",
        &vector("rfc9421-ed25519.pem"),
        "--keyid",
        "test-key-ed25519",
        "--label",
        "sig-b26",
        "--created",
        "1618884473",
        "--digest",
        "none",
        "--components",
        B26_COMPONENTS,
        &vector("rfc9421-b2-request.http"),
    ]);
    assert_eq!(
        run.ok().as_bytes(),
        expected,
        "byte for byte as RFC 9421 B.2.6"
    );

    let public = vector("rfc9421-ed25519.pub.pem");
    let b26 = vector("rfc9421-b26-signed.http");
    let check = |now: &str, extra: &[&str]| {
        let mut args = vec![
            "check",
            "--pubkey",
            &public,
            "--now",
            now,
            "--require",
            B26_COMPONENTS,
        ];
        args.extend_from_slice(extra);
        args.push(&b26);
        s.run(&args)
    };
    let verified = check("1618884480", &[]).json();
    assert_eq!(verified["keyid"], "test-key-ed25519");
    assert_eq!(verified["label"], "sig-b26");
    assert_eq!(verified["created"], 1_618_884_473);
    assert_eq!(verified["alg"], "ed25519");
    check(
        "1618884480",
        &[
            "--keyid",
            "test-key-ed25519",
            "--label",
            "sig-b26",
            "--alg",
            "ed25519",
        ],
    )
    .ok();
    // Too old for the window, from the future, another keyid, another label, a nonce required.
    check("1618884773", &["--max-age", "300"]).ok();
    check("1618884774", &["--max-age", "300"]).rejected("too_old");
    check("1618884400", &[]).rejected("created_in_future");
    check("1618884480", &["--keyid", "someone-else"]).rejected("keyid_mismatch");
    check("1618884480", &["--label", "sig1"]).rejected("no_signature");
    check("1618884480", &["--require-nonce"]).rejected("nonce");
    // The MCP profile's own requirements are not met by this example.
    s.run(&[
        "check",
        "--pubkey",
        &vector("rfc9421-ed25519.pub.pem"),
        "--now",
        "1618884480",
        &vector("rfc9421-b26-signed.http"),
    ])
    .rejected("missing_component");
}

#[test]
fn check_rejects_tampering_and_wrong_keys() {
    let (s, public) = setup();
    let signed = String::from_utf8(sign(&s, "post.http", &[])).unwrap();
    check(&s, &public, signed.as_bytes(), &[]).ok();

    // The body changed (same length): the digest no longer matches.
    let tampered = signed.replace("tools/list", "tools/lisp");
    check(&s, &public, tampered.as_bytes(), &[]).rejected("digest_mismatch");
    // A covered header changed.
    let tampered = signed.replace("2025-06-18", "2025-03-26");
    check(&s, &public, tampered.as_bytes(), &[]).rejected("bad_signature");
    // Another authority.
    let tampered = signed.replace("Host: mcp.example:8443", "Host: evil.example:8443");
    check(&s, &public, tampered.as_bytes(), &[]).rejected("bad_signature");
    // A header added after signing that the profile requires to be covered.
    let tampered = signed.replace("Host:", "Authorization: Bearer x\r\nHost:");
    check(&s, &public, tampered.as_bytes(), &[]).rejected("missing_component");
    // Another key.
    let other = s.keygen("other.pem");
    check(&s, &other, signed.as_bytes(), &[]).rejected("bad_signature");
    // An RSA key where the signature says ed25519 is a usage error of --alg.
    check(&s, &public, signed.as_bytes(), &["--alg", "rsa-pss-sha512"])
        .usage("does not fit the key");
    // Unsigned.
    check(&s, &public, POST.as_bytes(), &[]).rejected("no_signature");
    // Too old against now.
    check(&s, &public, signed.as_bytes(), &["--now", "4000000000"]).rejected("too_old");
}

#[test]
fn an_uncovered_digest_must_still_match_the_body() {
    let s = Scratch::new();
    let b26 = std::fs::read_to_string(vector("rfc9421-b26-signed.http")).unwrap();
    // Change the body and its Content-Length-free parts the signature does not cover: the
    // signature holds, the Content-Digest does not.
    let changed = b26.replace(r#"{"hello": "world"}"#, r#"{"hello": "WORLD"}"#);
    let file = s.write("changed.http", changed);
    s.run(&[
        "check",
        "--pubkey",
        &vector("rfc9421-ed25519.pub.pem"),
        "--now",
        "1618884480",
        "--require",
        B26_COMPONENTS,
        &file,
    ])
    .rejected("digest_mismatch");
}

#[test]
fn sign_and_check_read_stdin() {
    let (s, public) = setup();
    let signed = s
        .run_stdin(
            &["sign", "--key", "agent.pem", "--keyid", "agent-a", "-"],
            POST.as_bytes(),
        )
        .ok();
    let verified = s
        .run_stdin(&["check", "--pubkey", &public, "-"], signed.as_bytes())
        .json();
    assert_eq!(verified["keyid"], "agent-a");
}

#[test]
fn a_second_signature_needs_its_own_label() {
    let (s, public) = setup();
    let signed = sign(&s, "post.http", &[]);
    s.write("once.http", &signed);
    sign_run(&s, "once.http", &["--digest", "none"])
        .usage("already has a signature labelled \"sig1\"");
    let twice = sign(&s, "once.http", &["--digest", "none", "--label", "sig2"]);
    check(&s, &public, &twice, &["--label", "sig2"]).json();
    check(&s, &public, &twice, &["--label", "sig1"]).json();
}

#[test]
fn sep2752_profile_round_trips_and_refuses_what_the_sep_forbids() {
    let (s, public) = setup();
    let thumbprint = s
        .run(&["pubkey", "--key", "agent.pem", "--format", "jwk"])
        .json()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let sep = |request: &str, extra: &[&str]| {
        let mut args = vec!["sign", "--key", "agent.pem", "--profile", "sep2752"];
        args.extend_from_slice(extra);
        args.push(request);
        s.run(&args)
    };
    let signed = sep(
        "post.http",
        &["--tag", "agent-instance-9f3e", "--created", "1700000000"],
    );
    let signed = signed.ok().into_bytes();
    let text = String::from_utf8(signed.clone()).unwrap();
    let input = header(&text, "Signature-Input").unwrap();
    assert!(
        input.starts_with(
            r#"sig1=("@method" "@target-uri" "content-digest" "mcp-protocol-version");created=1700000000;nonce=""#
        ),
        "{input}"
    );
    assert!(
        input.ends_with(&format!(
            r#";keyid="{thumbprint}";tag="agent-instance-9f3e""#
        )),
        "{input}"
    );
    assert!(!input.contains("alg="), "{input}");
    let verified = check(
        &s,
        &public,
        &signed,
        &["--profile", "sep2752", "--now", "1700000300"],
    )
    .json();
    assert_eq!(verified["keyid"], thumbprint.as_str());
    assert_eq!(verified["tag"], "agent-instance-9f3e");
    assert_eq!(verified["alg"], "ed25519");
    // 301 s later it is too old; 61 s early it is in the future.
    check(
        &s,
        &public,
        &signed,
        &["--profile", "sep2752", "--now", "1700000301"],
    )
    .rejected("too_old");
    check(
        &s,
        &public,
        &signed,
        &["--profile", "sep2752", "--now", "1699999939"],
    )
    .rejected("created_in_future");

    // Without a body, content-digest is still covered; the tag defaults to the keyid.
    let signed = sep("get.http", &["--scheme", "http"]).ok().into_bytes();
    let verified = check(
        &s,
        &public,
        &signed,
        &["--profile", "sep2752", "--scheme", "http"],
    )
    .json();
    assert_eq!(
        verified["covered"],
        json!(["\"@method\"", "\"@target-uri\"", "\"content-digest\""])
    );
    assert_eq!(verified["tag"], thumbprint.as_str());

    // The keyid is the thumbprint: another one is refused at signing...
    sep("post.http", &["--keyid", "agent-a"]).usage("JWK thumbprint");
    // ...and a request signed by vouch's MCP profile is refused by the sep2752 check (no tag,
    // keyid not a thumbprint).
    let mcp = sign(&s, "post.http", &[]);
    check(&s, &public, &mcp, &["--profile", "sep2752"]).rejected("missing_parameter");
    let mcp_with_tag = sign(&s, "post.http", &["--tag", "t"]);
    check(&s, &public, &mcp_with_tag, &["--profile", "sep2752"]).rejected("keyid_mismatch");
    // Without --profile sep2752, sign still needs --keyid.
    s.run(&["sign", "--key", "agent.pem", "post.http"])
        .usage("--keyid");
}

const SECTION_2_4_COMPONENTS: &str = r#""@status" "content-digest" "content-type" "@authority";req "@method";req "@path";req "content-digest";req"#;

#[test]
fn rfc9421_section_2_4_response_is_checked_against_its_request() {
    let s = Scratch::new();
    let public = vector("rfc9421-ecc-p256.pub.pem");
    let response = vector("rfc9421-2.4-response.http");
    let check = |request: &str, extra: &[&str]| {
        let mut args = vec![
            "check",
            "--pubkey",
            &public,
            "--now",
            "1618884480",
            "--label",
            "reqres",
            "--require",
            SECTION_2_4_COMPONENTS,
            "--request",
            request,
        ];
        args.extend_from_slice(extra);
        args.push(&response);
        s.run(&args)
    };
    let request = vector("rfc9421-b2-request.http");
    let verified = check(&request, &[]).json();
    assert_eq!(verified["keyid"], "test-key-ecc-p256");
    assert_eq!(verified["label"], "reqres");
    assert_eq!(verified["alg"], "ecdsa-p256-sha256");
    assert_eq!(verified["covered"][3], r#""@authority";req"#);
    // The same response against another request: the request is covered.
    let text = std::fs::read_to_string(&request).unwrap();
    let put = s.write("put.http", text.replacen("POST", "PUT", 1));
    check(&put, &[]).rejected("bad_signature");
    // Under vouch's own response profile it is not enough: it is not bound to the request's
    // signature (and the request has none).
    s.run(&[
        "check",
        "--pubkey",
        &public,
        "--now",
        "1618884480",
        "--label",
        "reqres",
        "--request",
        &request,
        &response,
    ])
    .rejected("missing_component");
    // --request-label needs --request.
    s.run(&[
        "check",
        "--pubkey",
        &public,
        "--request-label",
        "sig1",
        &response,
    ])
    .usage("--request-label needs --request");
    // A response file that is not one.
    s.run(&[
        "check",
        "--pubkey",
        &public,
        "--request",
        &request,
        &request,
    ])
    .usage("response");
}
