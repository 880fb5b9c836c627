//! `vouch authz`: the built binary as Envoy's external authorizer, its HTTP mode spoken over a
//! raw socket the way Envoy's `http_service` speaks it.

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{KillOnDrop, Scratch, send, setup};

/// How clients address Envoy in these tests.
const ORIGIN: &str = "http://127.0.0.1:10000";

/// A running `vouch authz`; killed when dropped.
struct Running {
    child: KillOnDrop,
    line: String,
}

impl Running {
    /// Starts `vouch authz args...` and waits for its startup line.
    fn start(s: &Scratch, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vouch"))
            .arg("authz")
            .args(args)
            .current_dir(s.path(""))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        Self {
            child: KillOnDrop(child),
            line,
        }
    }

    /// The port the startup line names for `mode` (`grpc` or `http`).
    fn port(&self, mode: &str) -> u16 {
        let at = self
            .line
            .find(&format!("{mode} 127.0.0.1:"))
            .unwrap_or_else(|| panic!("no {mode} listener in {:?}", self.line));
        self.line[at + mode.len() + 11..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    }
}

/// A `tools/call` of `tool` to `/mcp` at [`ORIGIN`], signed by agent-a, as Envoy's HTTP mode
/// sends its check: to `/check/mcp`, with the original `Host`.
fn http_check(s: &Scratch, tool: &str, token: &str, signed: bool) -> Vec<u8> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    );
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:10000\r\nContent-Type: application/json\r\nX-MCPVault-Token: {token}\r\nX-Vouch-Identity: admin@evil.example\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let request = if signed {
        let file = s.write("call.http", request);
        let run = s.run(&[
            "sign",
            "--key",
            "agent.pem",
            "--keyid",
            "agent-a",
            "--scheme",
            "http",
            &file,
        ]);
        assert_eq!(run.status, 0, "{run:?}");
        String::from_utf8(run.stdout).unwrap()
    } else {
        request
    };
    request
        .replacen("POST /mcp ", "POST /check/mcp ", 1)
        .into_bytes()
}

#[test]
fn the_startup_line_names_both_listeners_and_the_origin() {
    let s = Scratch::new();
    let (root, agent, _) = setup(&s);
    let authz = Running::start(
        &s,
        &[
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--origin",
            ORIGIN,
            "--root",
            &root,
            "--agent",
            &agent,
        ],
    );
    let (grpc, http) = (authz.port("grpc"), authz.port("http"));
    assert_eq!(
        authz.line.trim_end(),
        format!("vouch authz: grpc 127.0.0.1:{grpc}, http 127.0.0.1:{http}, origin {ORIGIN}")
    );
    // Both listen once the line is out.
    TcpStream::connect(("127.0.0.1", grpc)).unwrap();
    let (status, response) = send(
        http,
        b"GET /healthz HTTP/1.1\r\nHost: authz\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{response}");
    assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");
}

#[test]
fn an_http_mode_check_is_allowed_or_denied_as_the_gateway_would() {
    let s = Scratch::new();
    let (root, agent, token) = setup(&s);
    let authz = Running::start(
        &s,
        &[
            "--http",
            "127.0.0.1:0",
            "--origin",
            ORIGIN,
            "--root",
            &root,
            "--agent",
            &agent,
        ],
    );
    assert!(
        authz.line.starts_with("vouch authz: http 127.0.0.1:"),
        "only the HTTP listener: {:?}",
        authz.line
    );
    let port = authz.port("http");

    let (status, response) = send(port, &http_check(&s, "echo", &token, true));
    assert_eq!(status, 200, "{response}");
    let head = response.to_ascii_lowercase();
    assert!(
        head.contains("\r\nx-vouch-identity: agent-a\r\n"),
        "{response}"
    );
    assert!(
        head.contains("\r\nx-vouch-keyid: agent-a\r\n"),
        "{response}"
    );
    assert!(head.contains("\r\nx-vouch-grants: "), "{response}");
    assert!(
        head.contains(
            "\r\nx-envoy-auth-headers-to-remove: signature, signature-input, x-mcpvault-token\r\n"
        ),
        "{response}"
    );

    // Unsigned: 401 with the challenge and the gateway's JSON.
    let (status, response) = send(port, &http_check(&s, "echo", &token, false));
    assert_eq!(status, 401, "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("www-authenticate: signature"),
        "{response}"
    );
    assert!(
        response.contains(r#""detail":"missing_signature""#),
        "{response}"
    );
    // Outside the grants: 403.
    let (status, response) = send(port, &http_check(&s, "drop_db", &token, true));
    assert_eq!(status, 403, "{response}");
    assert!(response.contains(r#""error":"forbidden""#), "{response}");
}

#[test]
fn the_config_file_sets_the_listeners_and_identity_only_needs_no_token() {
    let s = Scratch::new();
    let (_, agent, _) = setup(&s);
    let config = s.write(
        "authz.toml",
        format!(
            "http = \"127.0.0.1:0\"\nhttp-prefix = \"/authz\"\norigin = [\"{ORIGIN}\"]\nagent = [\"{agent}\"]\nreplay = \"memory:1000\"\n"
        ),
    );
    let authz = Running::start(&s, &["--config", &config]);
    let port = authz.port("http");
    let request = String::from_utf8(http_check(&s, "drop_db", "", true))
        .unwrap()
        .replacen("/check/mcp", "/authz/mcp", 1);
    let (status, response) = send(port, request.as_bytes());
    assert_eq!(status, 200, "{response}");
    let head = response.to_ascii_lowercase();
    assert!(
        head.contains("\r\nx-vouch-identity: agent-a\r\n"),
        "{response}"
    );
    assert!(!head.contains("\r\nx-vouch-grants:"), "{response}");
    assert!(
        head.contains("x-envoy-auth-headers-to-remove: signature, signature-input, x-mcpvault-token, x-vouch-grants\r\n"),
        "{response}"
    );
}

#[test]
fn configuration_errors_exit_2_naming_the_field() {
    let s = Scratch::new();
    let root = s.keygen("root.pem");
    s.run(&["authz", "--root", &root])
        .usage("--origin is required");
    s.run(&["authz", "--origin", ORIGIN, "--grpc", "nowhere"])
        .usage("--grpc \"nowhere\"");
    s.run(&["authz", "--origin", ORIGIN, "--http", "127.0.0.1"])
        .usage("--http \"127.0.0.1\"");
    s.run(&["authz", "--origin", "mcp.example"])
        .usage("--origin");
    s.run(&["authz", "--origin", ORIGIN, "--audience", "a"])
        .usage("--audience needs --root");
    s.run(&[
        "authz",
        "--origin",
        ORIGIN,
        "--http",
        "127.0.0.1:0",
        "--http-prefix",
        "check",
    ])
    .usage("--http-prefix");
    // The gateway's upstream and forwarding keys are not authz settings, nor unknown ones.
    for key in [
        "upstream = \"http://127.0.0.1:1/mcp\"",
        "listen = \"127.0.0.1:0\"",
        "forward-token = true",
        "upstream-socket = \"/run/mcp.sock\"",
        "bogus_key = 1",
    ] {
        let config = s.write("authz.toml", format!("origin = [\"{ORIGIN}\"]\n{key}\n"));
        let name = key.split(' ').next().unwrap();
        s.run(&["authz", "--config", &config]).usage(name);
    }
    let config = s.write(
        "typo.toml",
        format!("origin = [\"{ORIGIN}\"]\nrate = \"fast\"\n"),
    );
    s.run(&["authz", "--config", &config]).usage("key \"rate\"");
    // And the authorizer's keys are not gateway settings.
    let config = s.write(
        "gateway.toml",
        "upstream = \"http://127.0.0.1:1/mcp\"\ngrpc = \"127.0.0.1:9191\"\n",
    );
    s.run(&["gateway", "--config", &config, "--root", &root])
        .usage("grpc");
    let config = s.write(
        "gateway.toml",
        "upstream = \"http://127.0.0.1:1/mcp\"\nheaders-only = true\n",
    );
    s.run(&["gateway", "--config", &config, "--root", &root])
        .usage("headers-only");
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_authorizer_with_status_0() {
    let s = Scratch::new();
    let root = s.keygen("root.pem");
    let mut authz = Running::start(
        &s,
        &[
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--origin",
            ORIGIN,
            "--root",
            &root,
        ],
    );
    let killed = Command::new("kill")
        .args(["-TERM", &authz.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(authz.child.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn the_sep2752_profile_admits_a_thumbprint_and_refuses_in_the_seps_form() {
    let s = Scratch::new();
    let agent = s.keygen("agent.pem");
    let thumbprint = s
        .run(&["pubkey", "--key", "agent.pem", "--format", "jwk"])
        .json()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let authz = Running::start(
        &s,
        &[
            "--http",
            "127.0.0.1:0",
            "--origin",
            ORIGIN,
            "--agent",
            &format!("{thumbprint}={agent}"),
            "--profile",
            "sep2752",
        ],
    );
    let port = authz.port("http");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:10000\r\nContent-Type: application/json\r\nMCP-Protocol-Version: 2026-03-26\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let file = s.write("list.http", &request);
    let signed = s
        .run(&[
            "sign",
            "--key",
            "agent.pem",
            "--profile",
            "sep2752",
            "--scheme",
            "http",
            &file,
        ])
        .ok()
        .replacen("POST /mcp ", "POST /check/mcp ", 1);
    let (status, response) = send(port, signed.as_bytes());
    assert_eq!(status, 200, "{response}");
    assert!(
        response.to_ascii_lowercase().contains(&format!(
            "\r\nx-vouch-identity: {}\r\n",
            thumbprint.to_ascii_lowercase()
        )),
        "{response}"
    );

    // Unsigned: 401 with Accept-Signature and a JSON-RPC error.
    let unsigned = request.replacen("POST /mcp ", "POST /check/mcp ", 1);
    let (status, response) = send(port, unsigned.as_bytes());
    assert_eq!(status, 401, "{response}");
    assert!(
        response.to_ascii_lowercase().contains(
            r#"accept-signature: sig1=("@method" "@target-uri" "content-digest" "mcp-protocol-version");created;nonce"#
        ),
        "{response}"
    );
    assert!(response.contains(r#""jsonrpc":"2.0""#), "{response}");
    assert!(
        response.contains(r#""reason":"missing_signature""#),
        "{response}"
    );
}

#[test]
fn signature_agent_keys_admit_a_key_the_request_carries_only_when_enabled() {
    let s = Scratch::new();
    s.keygen("agent.pem");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:10000\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let file = s.write("list.http", &request);
    let signed = s
        .run(&[
            "sign",
            "--key",
            "agent.pem",
            "--profile",
            "sep2752",
            "--inline-signature-agent",
            "--scheme",
            "http",
            &file,
        ])
        .ok()
        .replacen("POST /mcp ", "POST /check/mcp ", 1);
    assert!(
        signed.contains(
            "\r\nSignature-Agent: \"data:application/http-message-signatures-directory+json;base64,"
        ),
        "{signed}"
    );
    for (enabled, expected) in [(true, 200), (false, 401)] {
        let mut args = vec![
            "--http",
            "127.0.0.1:0",
            "--origin",
            ORIGIN,
            "--profile",
            "sep2752",
        ];
        if enabled {
            args.push("--signature-agent-keys");
        }
        let authz = Running::start(&s, &args);
        let (status, response) = send(authz.port("http"), signed.as_bytes());
        assert_eq!(status, expected, "enabled {enabled}: {response}");
    }
    // Only with the sep2752 profile.
    s.run(&[
        "authz",
        "--http",
        "127.0.0.1:0",
        "--origin",
        ORIGIN,
        "--signature-agent-keys",
    ])
    .usage("--signature-agent-keys");
}

/// The head of a signed 2026-07-28 `tools/call` of `tool` (its Mcp-Method and Mcp-Name signed
/// with it), as Envoy's HTTP mode sends a check without `with_request_body`: no body.
fn head_check(s: &Scratch, tool: &str, token: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    );
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:10000\r\nContent-Type: application/json\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: {tool}\r\nX-MCPVault-Token: {token}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let file = s.write("head.http", request);
    let run = s.run(&[
        "sign",
        "--key",
        "agent.pem",
        "--keyid",
        "agent-a",
        "--scheme",
        "http",
        &file,
    ]);
    assert_eq!(run.status, 0, "{run:?}");
    let signed = String::from_utf8(run.stdout).unwrap();
    let (head, _) = signed.split_once("\r\n\r\n").unwrap();
    let head: Vec<&str> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
        .collect();
    format!("{}\r\nContent-Length: 0\r\n\r\n", head.join("\r\n"))
        .replacen("POST /mcp ", "POST /check/mcp ", 1)
        .into_bytes()
}

#[test]
fn headers_only_decides_on_the_signed_head() {
    let s = Scratch::new();
    let (root, agent, token) = setup(&s);
    let args = [
        "--http",
        "127.0.0.1:0",
        "--origin",
        ORIGIN,
        "--root",
        &root,
        "--agent",
        &agent,
    ];
    let mut with_flag = args.to_vec();
    with_flag.push("--headers-only");
    let authz = Running::start(&s, &with_flag);
    assert!(
        authz.line.contains("headers only"),
        "the startup line says so: {:?}",
        authz.line
    );
    let port = authz.port("http");
    let (status, response) = send(port, &head_check(&s, "echo", &token));
    assert_eq!(status, 200, "{response}");
    let (status, response) = send(port, &head_check(&s, "drop_db", &token));
    assert_eq!(status, 403, "{response}");
    // A check without the MCP headers cannot be decided on the head.
    let (status, response) = send(port, &http_check(&s, "echo", &token, true));
    assert_eq!(status, 400, "{response}");
    assert!(response.contains("-32020"), "{response}");

    // The same from the config file.
    let config = s.write(
        "authz.toml",
        format!("http = \"127.0.0.1:0\"\norigin = [\"{ORIGIN}\"]\nagent = [\"{agent}\"]\nroot = [\"{root}\"]\nheaders-only = true\n"),
    );
    let from_file = Running::start(&s, &["--config", &config]);
    assert!(
        from_file.line.contains("headers only"),
        "{:?}",
        from_file.line
    );
    let (status, response) = send(from_file.port("http"), &head_check(&s, "echo", &token));
    assert_eq!(status, 200, "{response}");

    // Without the flag the same head is refused: the signed digest names a body not sent.
    let full = Running::start(&s, &args);
    let (status, response) = send(full.port("http"), &head_check(&s, "echo", &token));
    assert_eq!(status, 401, "{response}");
}
