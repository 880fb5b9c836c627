//! A walk through the capability token: an authorization server mints a root token for agent-a,
//! agent-a narrows it for a worker, and an MCP server checks calls against it.
//!
//! Run it with `cargo run -p vouch-token --example walkthrough`. Each line shows a call and the
//! server's answer; the program exits non-zero if any answer is not the expected one.

use std::process::ExitCode;

use vouch_token::{Access, Error, KeyPair, Restriction, Token, Verifier};

const WORKER: &str = "https://agents.example/agents/worker@example.com";

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("walkthrough failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, Error> {
    let root = KeyPair::generate()?;
    let token = Token::mint(
        &root,
        "auth-server",
        "agent-a",
        Restriction::new()
            .tools(["db_query", "file_read", "search"])
            .operations("db_query", ["read", "write"])
            .operations("file_read", ["read"])
            .limit("db_query", "max_rows", 100)
            .ttl(3600),
    )?;
    println!(
        "root token   {} bytes, rights: db_query (read, write; max_rows 100), file_read (read), search",
        token.to_bytes().len()
    );

    let worker = token.attenuate(
        Restriction::new()
            .tools(["db_query"])
            .operations("db_query", ["read"])
            .limit("db_query", "max_rows", 10)
            .holder(WORKER)
            .ttl(600),
    )?;
    println!(
        "worker token {} bytes, rights: db_query (read; max_rows 10), bound to {WORKER}",
        worker.to_bytes().len()
    );

    let wire = worker.to_base64();
    let server = Verifier::new(root.public_key());
    let received = Token::from_base64(&wire)?;
    let now = Access::now();
    let later = Access::at(now_secs() + 601);

    let calls: [(&str, Access<'_>, Option<&str>); 6] = [
        (
            "worker: db_query read",
            now.caller(WORKER).tool("db_query").operation("read"),
            None,
        ),
        (
            "worker: db_query write",
            now.caller(WORKER).tool("db_query").operation("write"),
            Some("operation_not_granted"),
        ),
        (
            "worker: search",
            now.caller(WORKER).tool("search"),
            Some("tool_not_granted"),
        ),
        (
            "thief with the worker's token",
            now.caller("https://evil.example/agents/thief")
                .tool("db_query")
                .operation("read"),
            Some("holder_mismatch"),
        ),
        (
            "worker, 601 s later",
            later.caller(WORKER).tool("db_query").operation("read"),
            Some("expired"),
        ),
        (
            "agent-a's own token: db_query write",
            now.tool("db_query").operation("write"),
            None,
        ),
    ];
    let mut all_as_expected = true;
    for (i, (what, access, expected)) in calls.iter().enumerate() {
        let presented = if i == calls.len() - 1 {
            &token
        } else {
            &received
        };
        let outcome = server.verify(presented, access);
        let (shown, code) = match &outcome {
            Ok(facts) => (
                format!(
                    "allowed (max_rows {:?})",
                    facts.limit("db_query", "max_rows")
                ),
                None,
            ),
            Err(e) => (
                format!("{} {e}", if e.is_forbidden() { "403" } else { "401" }),
                Some(e.code()),
            ),
        };
        let ok = code == *expected;
        all_as_expected &= ok;
        println!("{} {what:<40} -> {shown}", if ok { "ok  " } else { "FAIL" });
    }

    let widen = worker.attenuate(Restriction::new().limit("db_query", "max_rows", 1000));
    let refused = matches!(widen, Err(Error::Refused(_)));
    all_as_expected &= refused;
    match widen {
        Err(e) => println!(
            "{} worker widens max_rows to 1000           -> refused: {e}",
            if refused { "ok  " } else { "FAIL" }
        ),
        Ok(_) => println!("FAIL worker widens max_rows to 1000           -> accepted"),
    }
    Ok(all_as_expected)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
