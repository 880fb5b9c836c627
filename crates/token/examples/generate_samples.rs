//! Writes the golden token samples to `crates/token/tests/samples/samples.json`.
//!
//! Run `cargo run -p vouch-token --example generate_samples` after a deliberate format change;
//! the `samples` test fails until the committed file matches what this program produces.
//!
//! Every input is fixed (keys, ephemeral keys, clock), and Ed25519 signatures are deterministic,
//! so the output is byte-for-byte reproducible.

use serde_json::{Value, json};
use vouch_token::internal::{attenuate_with_next_key, mint_with_next_key};
use vouch_token::{Access, Error, KeyPair, Restriction, Token, Verifier};

/// Mint time of every sample: 2023-11-14T22:13:20Z.
const NOW: u64 = 1_700_000_000;

fn key(byte: u8) -> Result<KeyPair, Error> {
    KeyPair::from_seed(&[byte; 32])
}

/// What a sample asks the verifier, and with what configuration.
struct Check {
    at: u64,
    tool: Option<&'static str>,
    operation: Option<&'static str>,
    caller: Option<&'static str>,
    audience: Option<&'static str>,
}

const AT_NOW: Check = Check {
    at: NOW + 60,
    tool: None,
    operation: None,
    caller: None,
    audience: None,
};

fn sample(name: &str, about: &str, root: &KeyPair, token: &Token, check: &Check) -> Value {
    let mut verifier = Verifier::new(root.public_key());
    if let Some(a) = check.audience {
        verifier = verifier.with_audience(a);
    }
    let mut access = Access::at(check.at);
    if let Some(c) = check.caller {
        access = access.caller(c);
    }
    if let Some(t) = check.tool {
        access = access.tool(t);
    }
    if let Some(o) = check.operation {
        access = access.operation(o);
    }
    let expect = match verifier.verify(token, &access) {
        Ok(facts) => json!({ "facts": facts }),
        Err(e) => json!({ "error": e.code() }),
    };
    json!({
        "name": name,
        "about": about,
        "root_public_key": root.public_key().to_hex(),
        "token": token.to_base64(),
        "bytes": token.to_bytes().len(),
        "verify": {
            "at": check.at,
            "tool": check.tool,
            "operation": check.operation,
            "caller": check.caller,
            "audience": check.audience,
        },
        "expect": expect,
    })
}

/// Builds every sample. Shared with the `samples` test, which compares it to the committed file.
///
/// # Errors
///
/// Any error from minting or attenuating, which would be a bug in the generator.
pub fn build_samples() -> Result<Value, Error> {
    let root = key(1)?;
    let reference = Restriction::new()
        .tools(["db_query", "file_read", "search"])
        .operations("db_query", ["read", "write"])
        .operations("file_read", ["read"])
        .limit("db_query", "max_rows", 100)
        .ttl(3600);
    let authority = mint_with_next_key(&root, "auth-server", "agent-a", reference, NOW, &key(11)?)?;
    let second = attenuate_with_next_key(
        &authority,
        Restriction::new()
            .tools(["db_query"])
            .operations("db_query", ["read"])
            .limit("db_query", "max_rows", 50)
            .ttl(1800),
        NOW,
        &key(12)?,
    )?;
    let third = attenuate_with_next_key(
        &second,
        Restriction::new()
            .holder("https://agents.example/agents/worker@example.com")
            .limit("db_query", "max_rows", 10),
        NOW,
        &key(13)?,
    )?;
    let sealed = third.seal()?;
    let wildcard = mint_with_next_key(
        &root,
        "auth-server",
        "agent-b",
        Restriction::new()
            .audience(["https://mcp.example"])
            .not_before(NOW + 30)
            .max_depth(1)
            .operations("deploy", ["execute", "rollback"])
            .ttl(600),
        NOW,
        &key(14)?,
    )?;
    let worker = Some("https://agents.example/agents/worker@example.com");
    let read = Check {
        tool: Some("db_query"),
        operation: Some("read"),
        caller: worker,
        ..AT_NOW
    };
    let samples = vec![
        sample(
            "authority",
            "the reference MCP-shaped root token, one block",
            &root,
            &authority,
            &Check {
                tool: Some("db_query"),
                operation: Some("write"),
                ..AT_NOW
            },
        ),
        sample(
            "two-blocks",
            "attenuated to db_query read, max_rows 50, 30 minutes",
            &root,
            &second,
            &Check {
                tool: Some("db_query"),
                operation: Some("read"),
                ..AT_NOW
            },
        ),
        sample(
            "three-blocks",
            "further bound to a holder, max_rows 10",
            &root,
            &third,
            &read,
        ),
        sample(
            "three-blocks-sealed",
            "the three-block token, sealed",
            &root,
            &sealed,
            &read,
        ),
        sample(
            "write-denied",
            "the three-block token asked for a write",
            &root,
            &third,
            &Check {
                operation: Some("write"),
                ..read
            },
        ),
        sample(
            "holder-mismatch",
            "the three-block token presented by another signer",
            &root,
            &third,
            &Check {
                caller: Some("https://agents.example/agents/thief@example.com"),
                ..read
            },
        ),
        sample(
            "expired",
            "the two-block token after its 30 minutes",
            &root,
            &second,
            &Check {
                at: NOW + 1800,
                ..AT_NOW
            },
        ),
        sample(
            "wildcard-audience",
            "every tool, custom operation, audience, not-before, depth 1",
            &root,
            &wildcard,
            &Check {
                at: NOW + 30,
                tool: Some("deploy"),
                operation: Some("rollback"),
                audience: Some("https://mcp.example"),
                ..AT_NOW
            },
        ),
        sample(
            "wrong-audience",
            "the audience-bound token at another server",
            &root,
            &wildcard,
            &Check {
                at: NOW + 30,
                audience: Some("https://other.example"),
                ..AT_NOW
            },
        ),
        sample(
            "unknown-root",
            "the authority token against another root key",
            &key(2)?,
            &authority,
            &AT_NOW,
        ),
    ];
    Ok(json!({
        "format": "vouch-token v1",
        "generator": "crates/token/examples/generate_samples.rs",
        "samples": samples,
    }))
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/samples/samples.json");
    let text = serde_json::to_string_pretty(&build_samples()?)? + "\n";
    std::fs::write(path, text)?;
    println!("wrote {path}");
    Ok(())
}
