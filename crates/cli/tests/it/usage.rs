//! Exit status 2: bad usage and unreadable input; and the help every command carries.

use crate::support::Scratch;

#[test]
fn every_command_has_help_with_examples() {
    let s = Scratch::new();
    for command in [
        vec!["keygen"],
        vec!["pubkey"],
        vec!["mint"],
        vec!["attenuate"],
        vec!["seal"],
        vec!["verify"],
        vec!["inspect"],
        vec!["sign"],
        vec!["check"],
        vec!["pin", "reset"],
        vec!["demo"],
    ] {
        let mut args = command.clone();
        args.push("--help");
        let help = s.run(&args).ok();
        assert!(
            help.contains("Example"),
            "{command:?} --help should show examples:\n{help}"
        );
    }
    let top = s.run(&["--help"]).ok();
    for command in [
        "keygen",
        "mint",
        "attenuate",
        "verify",
        "sign",
        "check",
        "pin",
        "demo",
    ] {
        assert!(top.contains(command), "{command} is listed:\n{top}");
    }
}

#[test]
fn bad_usage_exits_2() {
    let s = Scratch::new();
    let root = s.keygen("root.pem");
    let token = s.run(&["mint", "--key", "root.pem"]).ok();
    let token = token.trim();
    let run = |args: &[&str]| s.run(args);
    // clap: unknown command, unknown flag, missing argument, bad value, --op without --tool.
    for args in [
        vec!["frobnicate"],
        vec!["mint", "--key", "root.pem", "--frob"],
        vec!["verify", "--token", token],
        vec!["keygen", "--format", "der"],
        vec![
            "verify", "--token", token, "--pubkey", &root, "--op", "read",
        ],
        vec!["mint", "--key", "root.pem", "--max-depth", "x"],
        vec![],
    ] {
        let r = run(&args);
        assert_eq!(r.status, 2, "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
    }
    // Ours: unreadable files, malformed values, inputs that are not what they claim.
    run(&["mint", "--key", "missing.pem"]).usage("missing.pem");
    run(&["mint", "--key", "root.pem", "--op", "db_query"]).usage("TOOL:OP");
    run(&["mint", "--key", "root.pem", "--limit", "db_query:max_rows"]).usage("TOOL:KEY=N");
    run(&[
        "mint",
        "--key",
        "root.pem",
        "--limit",
        "db_query:max_rows=-1",
    ])
    .usage("TOOL:KEY=N");
    run(&["mint", "--key", "root.pem", "--max-depth", "16"]).usage("max depth");
    run(&["mint", "--key", "root.pem", "--tools", "a,,b"]).usage("names must be");
    run(&["verify", "--token", "not-a-token!", "--pubkey", &root]).usage("not a vouch token");
    run(&["inspect", "--token", "AAAA"]).usage("not a vouch token");
    run(&["verify", "--token", token, "--pubkey", "nothing-here"]).usage("public key");
    run(&["seal", "--token", "-"]).usage("not a vouch token");
    run(&["check", "--pubkey", &root, "missing.http"]).usage("missing.http");
    run(&["check", "--pubkey", &root, "--alg", "rot13", "-"]).usage("unknown --alg");
    run(&["check", "--pubkey", &root, "--require", "@method", "-"]).usage("not a raw HTTP");
}

#[test]
fn raw_requests_are_parsed_strictly() {
    let s = Scratch::new();
    s.keygen("k.pem");
    for (request, reason) in [
        (
            "POST /mcp HTTP/1.1\r\nHost: a.example\r\n  folded\r\n\r\n",
            "folding",
        ),
        (
            "POST /mcp HTTP/1.1\r\nHost: a.example\n\r\n",
            "mixed line endings",
        ),
        (
            "POST /mcp HTTP/1.1\nHost : a.example\n\n",
            "no whitespace before the colon",
        ),
        ("POST /mcp HTTP/1.1\nX: 1\n\n", "exactly one Host"),
        (
            "POST /mcp HTTP/1.1\nHost: a\nHost: b\n\n",
            "exactly one Host",
        ),
        (
            "POST /mcp HTTP/1.1\nHost: a\nContent-Length: 5\n\nabc",
            "Content-Length says 5",
        ),
        (
            "POST /mcp HTTP/1.1\nHost: a\nContent-Length: 2\n\nabc",
            "does not cover",
        ),
        ("POST /mcp HTTP/1.1\nHost: a\n\nabc", "no Content-Length"),
        (
            "POST /mcp HTTP/1.1\nHost: a\nContent-Length: 1, 1\n\na",
            "single decimal",
        ),
        (
            "POST /mcp HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n",
            "Transfer-Encoding",
        ),
        ("POST http://a/mcp HTTP/1.1\nHost: a\n\n", "origin-form"),
        ("POST /mcp HTTP/2\nHost: a\n\n", "HTTP/1.1"),
        ("POST  /mcp HTTP/1.1\nHost: a\n\n", "request line"),
        ("POST /mcp HTTP/1.1\nHost: a\n", "no blank line"),
        ("POST /mcp HTTP/1.1\nHost: a\rb\n\n", "bare CR"),
        ("", "no request line"),
    ] {
        let file = s.write("bad.http", request);
        s.run(&["sign", "--key", "k.pem", "--keyid", "k", &file])
            .usage(reason);
    }
    // One line ending after the body is tolerated and written back.
    let file = s.write(
        "ok.http",
        "POST /mcp HTTP/1.1\nHost: a\nContent-Length: 3\n\nabc\n",
    );
    let signed = s
        .run(&["sign", "--key", "k.pem", "--keyid", "k", &file])
        .ok();
    assert!(signed.ends_with("\n\nabc\n"), "{signed}");
}
