//! Writes the seed corpus of the httpsig fuzz targets under `fuzz/corpus/`.
//!
//! Run `cargo run -p vouch-httpsig --example fuzz_seeds`; the seeds are committed, and the
//! `corpus` test replays them.

use std::path::PathBuf;

use vouch_httpsig::internal::{FUZZ_KEY_SEED, FUZZ_NOW};
use vouch_httpsig::{Error, RequestView, SigningKey, mcp_content_digest, mcp_spec, sign};

fn signed_request() -> Result<Vec<u8>, Error> {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}"#;
    let mut req = http::Request::post("https://mcp.example/mcp?x=1")
        .header("content-type", "application/json")
        .header("content-digest", mcp_content_digest(body))
        .header("mcp-session-id", "session-1")
        .body(body.to_vec())
        .map_err(|_| Error::Malformed("request"))?;
    let key = SigningKey::ed25519_from_seed(&FUZZ_KEY_SEED)?;
    let spec = mcp_spec(
        &RequestView::of(&req),
        &key,
        "https://agents.example/agents/a@example.com",
        None,
        FUZZ_NOW,
    )?;
    sign(RequestView::of(&req), &spec, &key)?.apply(req.headers_mut())?;
    let mut out = format!("{} {}\n", req.method(), req.uri()).into_bytes();
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(req.body());
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let request = signed_request()?;
    let text = String::from_utf8(request.clone())?;
    let header = |name: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
            .unwrap_or_default()
    };
    let seeds: [(&str, &str, Vec<u8>); 4] = [
        ("httpsig_verify_request", "seed-mcp-tools-call", request),
        ("httpsig_signature_headers", "seed-mcp", [header("signature-input"), header("signature")].join("\0").into_bytes()),
        ("httpsig_content_digest", "seed-sha256", format!("{}\0{{}}", mcp_content_digest(b"{}")).into_bytes()),
        ("httpsig_content_digest", "seed-two-members", b"sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:, sha-512=:z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==:\0".to_vec()),
    ];
    for (target, name, bytes) in seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
    }
    println!("wrote seeds under {}", root.display());
    Ok(())
}
