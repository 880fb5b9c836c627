//! The vouch side of the interop run with the Python `envoys` 0.3.0 package
//! (`cargo xtask interop` drives it; see `xtask/interop/envoys_interop.py` for the other side).
//!
//! `verify FILE`: verifies every request envoys signed, under vouch's envoys profile, with the
//! real clock; then requires that the same request is refused as a replay and that a copy with
//! one body (or path) byte changed is refused. `sign FILE`: signs requests with vouch's envoys
//! profile for envoys to verify. Both use the RFC 8032 test seed. Exit 1 on any failure.

#![allow(
    clippy::indexing_slicing,
    reason = "a test harness: serde_json::Value indexing yields Null, and body edits are on non-empty bodies"
)]

use std::process::ExitCode;

use base64ct::{Base64, Encoding};
use serde_json::{Value, json};
use vouch_httpsig::*;

const SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];
const KEYID: &str = "https://envoys.me/agents/test@rfc8032-vec1.example";
const AUTHORITY: &str = "127.0.0.1:8080";

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn request(r: &Value, body: &[u8], path: &str) -> Fallible<http::Request<Vec<u8>>> {
    let mut builder = http::Request::builder()
        .method(r["method"].as_str().ok_or("method")?)
        .uri(path);
    for h in r["headers"].as_array().ok_or("headers")? {
        builder = builder.header(h[0].as_str().ok_or("name")?, h[1].as_str().ok_or("value")?);
    }
    Ok(builder.body(body.to_vec())?)
}

fn check(
    key: &VerifyingKey,
    req: &http::Request<Vec<u8>>,
    authority: &str,
    guard: &MemoryReplayGuard,
) -> Result<Verified, Error> {
    let view = RequestView::of(req)
        .with_scheme("http")
        .with_authority(authority);
    let verified = Verifier::new(VerifyPolicy::envoys())
        .prepare(view, now())?
        .verify(key)?;
    let outcome = {
        let mut f = std::pin::pin!(verified.check_replay(guard, "envoys", now()));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => Err(Error::ReplayStoreUnavailable("pending")),
        }
    };
    outcome?;
    Ok(verified)
}

fn verify(path: &str) -> Fallible<bool> {
    let input: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let public: [u8; 32] = hex(input["public_key_hex"].as_str().ok_or("public_key_hex")?)
        .try_into()
        .map_err(|_| "public key is not 32 bytes")?;
    let key = VerifyingKey::try_ed25519(public)?;
    let guard = MemoryReplayGuard::new(1024);
    let mut all = true;
    let requests = input["requests"].as_array().ok_or("requests")?;
    for r in requests {
        let id = r["id"].as_str().unwrap_or("?");
        let body = Base64::decode_vec(r["body_b64"].as_str().unwrap_or(""))?;
        let uri = r["path"].as_str().ok_or("path")?;
        let authority = r["authority"].as_str().unwrap_or(AUTHORITY);
        let req = request(r, &body, uri)?;
        match check(&key, &req, authority, &guard) {
            Ok(_) => println!("ok {id}"),
            Err(e) => {
                println!("FAIL {id}: {e}");
                all = false;
                continue;
            }
        }
        match check(&key, &req, authority, &guard) {
            Err(Error::Replayed) => println!("ok {id} replay-rejected"),
            other => {
                println!("FAIL {id}: replay gave {other:?}");
                all = false;
            }
        }
        let tampered = if body.is_empty() {
            // Change the path, which envoys covers (its profile leaves the query uncovered).
            let (p, q) = uri
                .split_once('?')
                .map_or((uri, None), |(p, q)| (p, Some(q)));
            let moved = match q {
                Some(q) => format!("{p}x?{q}"),
                None => format!("{p}x"),
            };
            request(r, &body, &moved)?
        } else {
            let mut b = body.clone();
            let last = b.len() - 2;
            b[last] ^= 0x01;
            request(r, &b, uri)?
        };
        match check(&key, &tampered, authority, &MemoryReplayGuard::new(4)) {
            Err(_) => println!("ok {id} tampered-rejected"),
            Ok(_) => {
                println!("FAIL {id}: tampered copy accepted");
                all = false;
            }
        }
    }
    if requests.len() < 3 {
        println!("FAIL: only {} requests in {path}", requests.len());
        all = false;
    }
    Ok(all)
}

fn sign_all(path: &str) -> Fallible<bool> {
    let key = SigningKey::ed25519_from_seed(&SEED)?;
    let public = hex_encode(key.verifying_key()?.public_bytes());
    let large = format!(
        "{{\"task\":\"summarize\",\"text\":\"{}\"}}",
        "y".repeat(5000)
    );
    let cases: [(&str, &str, &str, &str); 4] = [
        ("vouch-get-no-body", "GET", "/api/health", ""),
        (
            "vouch-post-json",
            "POST",
            "/api/task",
            r#"{"task":"summarize","url":"https://example.com/doc"}"#,
        ),
        (
            "vouch-post-unicode",
            "POST",
            "/mcp",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"échange"}}"#,
        ),
        ("vouch-post-large-sha512", "POST", "/api/task", &large),
    ];
    let mut out = Vec::new();
    for (id, method, path_, body) in cases {
        let body = body.as_bytes();
        // envoys' rule: sha-512 for bodies of 4096 bytes or more.
        let alg = if body.len() >= 4096 {
            DigestAlgorithm::Sha512
        } else {
            DigestAlgorithm::Sha256
        };
        let mut builder = http::Request::builder()
            .method(method)
            .uri(path_)
            .header("host", AUTHORITY);
        builder = builder.header("content-digest", content_digest(body, &[alg]));
        if !body.is_empty() {
            builder = builder.header("content-type", "application/json");
        }
        let mut req = builder.body(body.to_vec())?;
        let spec = envoys_spec(KEYID, now())?;
        sign(RequestView::of(&req), &spec, &key)?.apply(req.headers_mut())?;
        let headers: Vec<Value> = req
            .headers()
            .iter()
            .map(|(n, v)| json!([n.as_str(), v.to_str().unwrap_or("")]))
            .collect();
        out.push(json!({
            "id": id, "method": method, "path": path_, "authority": AUTHORITY,
            "headers": headers, "body_b64": Base64::encode_string(body),
        }));
    }
    let doc = json!({ "public_key_hex": public, "requests": out });
    std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    println!(
        "signed {} requests into {path}",
        doc["requests"].as_array().map_or(0, Vec::len)
    );
    Ok(true)
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| {
            s.get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("verify"), Some(p)) => verify(p),
        (Some("sign"), Some(p)) => sign_all(p),
        _ => {
            eprintln!("usage: envoys_interop sign OUT.json | verify IN.json");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("envoys_interop: {e}");
            ExitCode::from(2)
        }
    }
}
