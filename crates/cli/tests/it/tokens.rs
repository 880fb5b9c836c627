//! Tokens: keygen → mint → attenuate → verify → inspect, and every refusal.

use base64ct::{Base64UrlUnpadded, Encoding as _};
use serde_json::json;

use crate::support::Scratch;

/// A root key, a root token, and a worker token attenuated from it, bound to `worker`.
struct Chain {
    s: Scratch,
    root_hex: String,
    root: String,
    worker: String,
}

fn chain() -> Chain {
    let s = Scratch::new();
    let root_hex = s.keygen("root.pem");
    let root = s
        .run(&[
            "mint",
            "--key",
            "root.pem",
            "--issuer",
            "auth-server",
            "--subject",
            "agent-a",
            "--tools",
            "db_query,search",
            "--op",
            "db_query:read",
            "--op",
            "db_query:write",
            "--limit",
            "db_query:max_rows=100",
            "--ttl",
            "3600",
        ])
        .ok()
        .trim()
        .to_owned();
    let worker = s
        .run(&[
            "attenuate",
            "--token",
            &root,
            "--pubkey",
            &root_hex,
            "--tools",
            "db_query",
            "--op",
            "db_query:read",
            "--limit",
            "db_query:max_rows=10",
            "--bind",
            "https://agents.example/worker",
        ])
        .ok()
        .trim()
        .to_owned();
    Chain {
        s,
        root_hex,
        root,
        worker,
    }
}

impl Chain {
    fn verify(&self, token: &str, extra: &[&str]) -> crate::support::Run {
        let mut args = vec!["verify", "--token", token, "--pubkey", &self.root_hex];
        args.extend_from_slice(extra);
        self.s.run(&args)
    }
}

const WORKER: &str = "https://agents.example/worker";

#[test]
fn keygen_mint_attenuate_verify_inspect() {
    let c = chain();
    // The root grants both tools, with both operations on db_query.
    let root = c
        .verify(&c.root, &["--tool", "db_query", "--op", "write"])
        .json();
    assert_eq!(root["tools"], json!(["db_query", "search"]));
    assert_eq!(root["issuer"], "auth-server");
    assert_eq!(root["subject"], "agent-a");
    assert_eq!(
        root["resource_limits"],
        json!([["db_query", "max_rows", 100]])
    );
    assert_eq!(root["delegation_depth"], 0);

    // The worker token is narrower, and only its holder may use it.
    let facts = c
        .verify(
            &c.worker,
            &["--tool", "db_query", "--op", "read", "--caller", WORKER],
        )
        .json();
    assert_eq!(facts["tools"], json!(["db_query"]));
    assert_eq!(facts["tool_wildcard"], false);
    assert_eq!(facts["operations"], json!([["db_query", "read"]]));
    assert_eq!(
        facts["resource_limits"],
        json!([["db_query", "max_rows", 10]])
    );
    assert_eq!(facts["holder"], WORKER);
    assert_eq!(facts["delegation_depth"], 1);
    assert_eq!(facts["revocation_ids"].as_array().unwrap().len(), 2);
    assert_eq!(facts["expires_at"], root["expires_at"]);

    // The key file works as --pubkey too, and so does a public key file in another format.
    let jwk =
        c.s.run(&["pubkey", "--key", "root.pem", "--format", "jwk"])
            .ok();
    let jwk_file = c.s.write("root.jwk", jwk);
    for pubkey in ["root.pem", jwk_file.as_str()] {
        c.s.run(&[
            "verify", "--token", &c.worker, "--pubkey", pubkey, "--caller", WORKER,
        ])
        .ok();
    }

    // inspect shows the claims without checking; text and JSON agree.
    let text = c.s.run(&["inspect", "--token", &c.worker]).ok();
    for needle in [
        "2 block(s), not sealed",
        "block 0 (authority)",
        "issuer: auth-server",
        "tools: db_query, search",
        "limits: db_query:max_rows=100",
        "block 1 (attenuation)",
        "holder: https://agents.example/worker",
        "limits: db_query:max_rows=10",
        facts["revocation_ids"][1].as_str().unwrap(),
    ] {
        assert!(
            text.contains(needle),
            "inspect should show {needle:?}:\n{text}"
        );
    }
    let inspected = c.s.run(&["inspect", "--token", &c.worker, "--json"]).json();
    assert_eq!(inspected["sealed"], false);
    assert_eq!(inspected["blocks"].as_array().unwrap().len(), 2);
    assert_eq!(inspected["effective"], facts);

    // Tokens and keys come from stdin with `-`.
    let from_stdin = c.s.run_stdin(
        &[
            "verify", "--token", "-", "--pubkey", "root.pem", "--caller", WORKER,
        ],
        format!("{}\n", c.worker).as_bytes(),
    );
    assert_eq!(
        from_stdin.json(),
        c.verify(&c.worker, &["--caller", WORKER]).json()
    );
}

#[test]
fn sealing_keeps_the_rights_and_ends_delegation() {
    let c = chain();
    let sealed = c.s.run(&["seal", "--token", &c.worker]).ok();
    let sealed = sealed.trim();
    assert_ne!(sealed, c.worker);
    let facts = c.verify(sealed, &["--caller", WORKER]).json();
    assert_eq!(facts["tools"], json!(["db_query"]));
    let inspected = c.s.run(&["inspect", "--token", sealed, "--json"]).json();
    assert_eq!(inspected["sealed"], true);
    // Sealed: no further attenuation, and no second seal.
    c.s.run(&[
        "attenuate",
        "--token",
        sealed,
        "--pubkey",
        &c.root_hex,
        "--tools",
        "db_query",
    ])
    .rejected("sealed");
    c.s.run(&["seal", "--token", sealed]).rejected("sealed");
}

#[test]
fn attenuation_cannot_widen() {
    let c = chain();
    for (what, extra) in [
        ("a tool the parent lacks", vec!["--tools", "db_query,shell"]),
        (
            "an operation the parent lacks",
            vec!["--op", "db_query:write"],
        ),
        ("a larger limit", vec!["--limit", "db_query:max_rows=50"]),
    ] {
        let mut args = vec!["attenuate", "--token", &c.worker, "--pubkey", &c.root_hex];
        args.extend(extra);
        let run = c.s.run(&args);
        assert_eq!(run.status, 1, "{what}: {run:?}");
        run.rejected("attenuation refused");
    }
    // Narrowing further is fine.
    let narrower =
        c.s.run(&[
            "attenuate",
            "--token",
            &c.worker,
            "--pubkey",
            &c.root_hex,
            "--limit",
            "db_query:max_rows=5",
            "--max-depth",
            "0",
        ])
        .ok();
    let facts = c.verify(narrower.trim(), &["--caller", WORKER]).json();
    assert_eq!(
        facts["resource_limits"],
        json!([["db_query", "max_rows", 5]])
    );
    // ...until the delegation cap says no more.
    c.s.run(&[
        "attenuate",
        "--token",
        narrower.trim(),
        "--pubkey",
        &c.root_hex,
        "--tools",
        "db_query",
    ])
    .rejected("refused");
}

#[test]
fn attenuate_verifies_against_the_root_key_first() {
    let c = chain();
    let other = c.s.keygen("other.pem");
    c.s.run(&[
        "attenuate",
        "--token",
        &c.root,
        "--pubkey",
        &other,
        "--tools",
        "search",
    ])
    .rejected("unknown_root_key");
    // An expired token is not worth narrowing.
    let expired = c.s.run(&["mint", "--key", "root.pem", "--ttl", "0"]).ok();
    c.s.run(&[
        "attenuate",
        "--token",
        expired.trim(),
        "--pubkey",
        &c.root_hex,
        "--tools",
        "search",
    ])
    .rejected("expired");
}

#[test]
fn verify_rejects_what_the_token_does_not_allow() {
    let c = chain();
    let expires_at = c.verify(&c.root, &[]).json()["expires_at"]
        .as_u64()
        .unwrap();
    c.verify(&c.worker, &["--tool", "search", "--caller", WORKER])
        .rejected("tool_not_granted");
    c.verify(
        &c.worker,
        &["--tool", "db_query", "--op", "write", "--caller", WORKER],
    )
    .rejected("operation_not_granted");
    let after = (expires_at + 1).to_string();
    c.verify(&c.root, &["--now", &after]).rejected("expired");
    let just_before = (expires_at - 1).to_string();
    c.verify(&c.root, &["--now", &just_before]).ok();
    // Holder binding: no caller, or another caller.
    c.verify(&c.worker, &[]).rejected("holder_mismatch");
    c.verify(&c.worker, &["--caller", "https://agents.example/thief"])
        .rejected("holder_mismatch");
    // Another root key.
    let other = c.s.keygen("other.pem");
    c.s.run(&["verify", "--token", &c.root, "--pubkey", &other])
        .rejected("unknown_root_key");
}

#[test]
fn verify_rejects_a_tampered_token() {
    let c = chain();
    let mut bytes = Base64UrlUnpadded::decode_vec(&c.root).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    let tampered = Base64UrlUnpadded::encode_string(&bytes);
    c.verify(&tampered, &[]).rejected("bad_signature");
    // A signed block changed: the root signature no longer holds.
    let mut bytes = Base64UrlUnpadded::decode_vec(&c.root).unwrap();
    let i = bytes
        .windows(7)
        .position(|w| w == b"agent-a")
        .expect("the subject is in the token");
    bytes[i + 6] = b'b';
    let tampered = Base64UrlUnpadded::encode_string(&bytes);
    c.verify(&tampered, &[]).rejected("bad_signature");
}

#[test]
fn audiences_are_enforced() {
    let s = Scratch::new();
    let root = s.keygen("root.pem");
    let token = s
        .run(&[
            "mint",
            "--key",
            "root.pem",
            "--audience",
            "https://mcp.example",
        ])
        .ok();
    let token = token.trim();
    s.run(&[
        "verify",
        "--token",
        token,
        "--pubkey",
        &root,
        "--audience",
        "https://mcp.example",
    ])
    .ok();
    s.run(&[
        "verify",
        "--token",
        token,
        "--pubkey",
        &root,
        "--audience",
        "https://other.example",
    ])
    .rejected("wrong_audience");
    s.run(&["verify", "--token", token, "--pubkey", &root])
        .rejected("wrong_audience");
    // No --tools: every tool.
    let facts = s
        .run(&[
            "verify",
            "--token",
            token,
            "--pubkey",
            &root,
            "--audience",
            "https://mcp.example",
            "--tool",
            "anything",
        ])
        .json();
    assert_eq!(facts["tool_wildcard"], true);
}
