//! `vouch gateway`: the built binary in front of an upstream this test runs.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{KillOnDrop, Scratch, send, setup};

/// A free port on 127.0.0.1 (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An MCP server stand-in: answers every request 200 with a JSON-RPC result and records each
/// request head it received (lowercased).
struct Upstream {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    fn start() -> Self {
        Self::start_slow(Duration::ZERO)
    }

    /// Answers each request after `delay`.
    fn start_slow(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || answer(stream, &seen, delay));
            }
        });
        Self { port, heads }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Answers one request on `stream` (TCP or a Unix socket).
fn answer(stream: impl std::io::Read + std::io::Write, seen: &Mutex<Vec<String>>, delay: Duration) {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    seen.lock().unwrap().push(head);
    std::thread::sleep(delay);
    let json = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    let _ = reader.get_mut().write_all(response.as_bytes());
}

/// A running `vouch gateway`; killed when dropped.
struct Running {
    child: KillOnDrop,
    port: u16,
}

impl Running {
    /// Starts the gateway and waits for its startup line.
    fn start(s: &Scratch, args: &[&str]) -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vouch"))
            .arg("gateway")
            .args(["--listen", &listen])
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
        let running = Self {
            child: KillOnDrop(child),
            port,
        };
        assert!(
            line.contains(&format!("http://{listen}/mcp")) && line.contains("upstream"),
            "startup line: {line:?}"
        );
        running
    }

    /// Sends raw request bytes; returns the status code and the whole response.
    fn send(&self, request: &[u8]) -> (u16, String) {
        send(self.port, request)
    }
}

/// A raw `tools/call` of `tool` to the gateway at `port`, with `token`, signed by agent-a.
fn signed_call(s: &Scratch, port: u16, tool: &str, token: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    );
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nX-MCPVault-Token: {token}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
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
    run.stdout
}

#[test]
fn a_signed_call_within_the_token_reaches_the_upstream_with_the_identity() {
    let s = Scratch::new();
    let (root, agent, token) = setup(&s);
    let upstream = Upstream::start();
    let gateway = Running::start(
        &s,
        &[
            "--upstream",
            &upstream.url(),
            "--root",
            &root,
            "--agent",
            &agent,
        ],
    );
    let (status, response) = gateway.send(&signed_call(&s, gateway.port, "echo", &token));
    assert_eq!(status, 200, "{response}");
    let heads = upstream.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].contains("x-vouch-identity: agent-a"), "{heads:?}");
    assert!(
        !heads[0].contains("x-mcpvault-token"),
        "the token is not forwarded"
    );
}

#[test]
fn unsigned_is_401_and_outside_the_grants_is_403_without_reaching_the_upstream() {
    let s = Scratch::new();
    let (root, agent, token) = setup(&s);
    let upstream = Upstream::start();
    let gateway = Running::start(
        &s,
        &[
            "--upstream",
            &upstream.url(),
            "--root",
            &root,
            "--agent",
            &agent,
        ],
    );
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let unsigned = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        gateway.port,
        body.len()
    );
    let (status, response) = gateway.send(unsigned.as_bytes());
    assert_eq!(status, 401, "{response}");
    let (status, response) = gateway.send(&signed_call(&s, gateway.port, "drop_db", &token));
    assert_eq!(status, 403, "{response}");
    assert!(upstream.heads().is_empty(), "{:?}", upstream.heads());
}

#[test]
fn without_a_root_the_gateway_is_an_identity_gate() {
    let s = Scratch::new();
    let (_, agent, _) = setup(&s);
    let upstream = Upstream::start();
    let gateway = Running::start(&s, &["--upstream", &upstream.url(), "--agent", &agent]);
    // No token (the header is empty) and a tool no token grants: the signature is enough.
    let (status, response) = gateway.send(&signed_call(&s, gateway.port, "drop_db", ""));
    assert_eq!(status, 200, "{response}");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let unsigned = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        gateway.port,
        body.len()
    );
    let (status, response) = gateway.send(unsigned.as_bytes());
    assert_eq!(status, 401, "{response}");
    let heads = upstream.heads();
    assert_eq!(
        heads.len(),
        1,
        "only the signed call is forwarded: {heads:?}"
    );
    assert!(heads[0].contains("x-vouch-identity: agent-a"), "{heads:?}");
    assert!(!heads[0].contains("x-vouch-grants"), "{heads:?}");
    assert!(!heads[0].contains("x-mcpvault-token"), "{heads:?}");
}

#[test]
fn a_gateway_with_two_audiences_accepts_tokens_for_either_and_no_other() {
    let s = Scratch::new();
    let (root, agent, _) = setup(&s);
    let mint = |audience: &str| {
        s.run(&[
            "mint",
            "--key",
            "root.pem",
            "--tools",
            "echo",
            "--audience",
            audience,
        ])
        .ok()
        .trim()
        .to_owned()
    };
    let upstream = Upstream::start();
    let gateway = Running::start(
        &s,
        &[
            "--upstream",
            &upstream.url(),
            "--root",
            &root,
            "--agent",
            &agent,
            "--audience",
            "https://a.example",
            "--audience",
            "https://b.example",
        ],
    );
    for audience in ["https://a.example", "https://b.example"] {
        let token = mint(audience);
        let (status, response) = gateway.send(&signed_call(&s, gateway.port, "echo", &token));
        assert_eq!(status, 200, "{audience}: {response}");
    }
    let elsewhere = mint("https://c.example");
    let (status, response) = gateway.send(&signed_call(&s, gateway.port, "echo", &elsewhere));
    assert_eq!(status, 401, "{response}");
    assert!(response.contains("invalid_token"), "{response}");
    assert_eq!(upstream.heads().len(), 2);
}

#[test]
fn an_allowlist_refuses_other_identities() {
    let s = Scratch::new();
    let (root, agent, token) = setup(&s);
    let upstream = Upstream::start();
    let gateway = Running::start(
        &s,
        &[
            "--upstream",
            &upstream.url(),
            "--root",
            &root,
            "--agent",
            &agent,
            "--allow",
            "*@agents.example",
        ],
    );
    // vouch-tower answers an identity outside the allowlist 401 (not_allowed).
    let (status, response) = gateway.send(&signed_call(&s, gateway.port, "echo", &token));
    assert_eq!(status, 401, "{response}");
    assert!(response.contains("not_allowed"), "{response}");
    assert!(upstream.heads().is_empty());
    drop(gateway);

    let gateway = Running::start(
        &s,
        &[
            "--upstream",
            &upstream.url(),
            "--root",
            &root,
            "--agent",
            &agent,
            "--allow",
            "*@agents.example",
            "--allow",
            "agent-*",
        ],
    );
    let (status, response) = gateway.send(&signed_call(&s, gateway.port, "echo", &token));
    assert_eq!(status, 200, "{response}");
}

#[test]
fn an_upstream_that_is_down_is_502() {
    let s = Scratch::new();
    let (root, agent, token) = setup(&s);
    let down = format!("http://127.0.0.1:{}/mcp", free_port());
    let gateway = Running::start(
        &s,
        &["--upstream", &down, "--root", &root, "--agent", &agent],
    );
    let (status, response) = gateway.send(&signed_call(&s, gateway.port, "echo", &token));
    assert_eq!(status, 502, "{response}");
}

#[test]
fn metrics_are_served_on_their_own_listener() {
    let s = Scratch::new();
    let (root, agent, token) = setup(&s);
    let upstream = Upstream::start();
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let gateway = Running::start(
        &s,
        &[
            "--upstream",
            &upstream.url(),
            "--root",
            &root,
            "--agent",
            &agent,
            "--metrics",
            &metrics,
        ],
    );
    let (status, response) = gateway.send(&signed_call(&s, gateway.port, "echo", &token));
    assert_eq!(status, 200, "{response}");

    let mut stream = TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut scraped = String::new();
    stream.read_to_string(&mut scraped).unwrap();
    assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
    assert!(
        scraped
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{scraped}"
    );
    for expected in [
        r#"vouch_gateway_decisions_total{layer="signature",outcome="accepted",reason="ok"} 1"#,
        r#"vouch_gateway_decisions_total{layer="capability",outcome="accepted",reason="ok"} 1"#,
        "vouch_gateway_request_duration_seconds_count 1",
        "vouch_gateway_replay_entries 1",
        "vouch_gateway_replay_bytes ",
    ] {
        assert!(scraped.contains(expected), "{expected} not in:\n{scraped}");
    }
}

#[test]
fn json_logs_have_one_line_per_decision() {
    let s = Scratch::new();
    let (root, agent, token) = setup(&s);
    let upstream = Upstream::start();
    let mut gateway = Running::start(
        &s,
        &[
            "--upstream",
            &upstream.url(),
            "--root",
            &root,
            "--agent",
            &agent,
            "--log-format",
            "json",
        ],
    );
    let (status, response) = gateway.send(&signed_call(&s, gateway.port, "echo", &token));
    assert_eq!(status, 200, "{response}");
    gateway.child.kill().unwrap();
    let mut rest = String::new();
    gateway
        .child
        .stderr
        .as_mut()
        .unwrap()
        .read_to_string(&mut rest)
        .unwrap();
    let decisions: Vec<serde_json::Value> = rest
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "decision")
        .collect();
    assert_eq!(decisions.len(), 2, "{rest}");
    assert_eq!(decisions[0]["layer"], "signature", "{rest}");
    assert_eq!(decisions[0]["accepted"], true, "{rest}");
    assert_eq!(decisions[0]["reason"], "ok", "{rest}");
    assert_eq!(decisions[1]["layer"], "capability", "{rest}");
    assert_eq!(decisions[1]["tool"], "echo", "{rest}");
    assert_eq!(decisions[1]["target"], "vouch::audit", "{rest}");
}

#[test]
fn the_config_file_sets_what_flags_do_and_flags_override_it() {
    let s = Scratch::new();
    let (root, agent, token) = setup(&s);
    let upstream = Upstream::start();
    let config = s.write(
        "gateway.toml",
        format!(
            "upstream = \"http://127.0.0.1:1/mcp\"\nroot = [\"{root}\"]\nagent = [\"{agent}\"]\nreplay = \"memory:1000\"\nrate = 5\n"
        ),
    );
    let gateway = Running::start(&s, &["--config", &config, "--upstream", &upstream.url()]);
    let (status, response) = gateway.send(&signed_call(&s, gateway.port, "echo", &token));
    assert_eq!(status, 200, "{response}");
    assert_eq!(upstream.heads().len(), 1);
}

#[test]
fn sign_upstream_signs_forwarded_requests_covering_the_vouch_fields() {
    let s = Scratch::new();
    let (root, agent, token) = setup(&s);
    s.keygen("gw.pem");
    let upstream = Upstream::start();
    // The key from the file, the keyid from the flag: both or neither, after merging.
    let config = s.write(
        "gateway.toml",
        "sign-upstream = \"gw.pem\"\nforward-token = true\n",
    );
    let gateway = Running::start(
        &s,
        &[
            "--config",
            &config,
            "--upstream",
            &upstream.url(),
            "--root",
            &root,
            "--agent",
            &agent,
            "--upstream-keyid",
            "https://gateway.example/gw",
        ],
    );
    let (status, response) = gateway.send(&signed_call(&s, gateway.port, "echo", &token));
    assert_eq!(status, 200, "{response}");
    let heads = upstream.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let input = heads[0]
        .lines()
        .find_map(|l| l.strip_prefix("signature-input: "))
        .unwrap_or_else(|| panic!("no signature-input: {heads:?}"));
    // The gateway's own signature (names lowercased by the stand-in), not the client's.
    assert!(
        input.contains("keyid=\"https://gateway.example/gw\""),
        "{input}"
    );
    for covered in [
        "\"@method\"",
        "\"@target-uri\"",
        "\"content-digest\"",
        "\"x-mcpvault-token\"",
        "\"x-vouch-identity\"",
        "\"x-vouch-keyid\"",
        "\"x-vouch-grants\"",
    ] {
        assert!(input.contains(covered), "{covered} not in {input}");
    }
    assert!(heads[0].contains("\nsignature: sig1=:"), "{heads:?}");
    assert!(
        heads[0].contains(&format!("x-mcpvault-token: {}", token.to_ascii_lowercase())),
        "{heads:?}"
    );
}

#[test]
fn configuration_errors_exit_2_naming_the_field() {
    let s = Scratch::new();
    let root = s.keygen("root.pem");
    let config = s.write(
        "gateway.toml",
        "upstream = \"http://127.0.0.1:1/mcp\"\nbogus_key = 1\n",
    );
    s.run(&["gateway", "--config", &config, "--root", &root])
        .usage("bogus_key");
    s.run(&["gateway", "--root", &root]).usage("--upstream");
    let config = s.write(
        "typo.toml",
        "upstream = \"http://127.0.0.1:1/mcp\"\nrate = \"fast\"\n",
    );
    s.run(&["gateway", "--config", &config, "--root", &root])
        .usage("key \"rate\"");
    let up = "http://127.0.0.1:1/mcp";
    s.run(&[
        "gateway",
        "--upstream",
        up,
        "--audience",
        "https://a.example",
    ])
    .usage("--audience needs --root");
    s.run(&[
        "gateway",
        "--upstream",
        up,
        "--root",
        &root,
        "--metrics",
        "not-an-address",
    ])
    .usage("--metrics \"not-an-address\"");
    s.run(&[
        "gateway",
        "--upstream",
        up,
        "--root",
        &root,
        "--sign-upstream",
        "root.pem",
    ])
    .usage("--sign-upstream needs --upstream-keyid");
    s.run(&[
        "gateway",
        "--upstream",
        up,
        "--root",
        &root,
        "--upstream-keyid",
        "gw",
    ])
    .usage("--upstream-keyid needs --sign-upstream");
    s.run(&[
        "gateway",
        "--upstream",
        up,
        "--root",
        &root,
        "--sign-upstream",
        "missing.pem",
        "--upstream-keyid",
        "gw",
    ])
    .usage("--sign-upstream");
    s.run(&[
        "gateway",
        "--upstream",
        up,
        "--root",
        &root,
        "--audience",
        "",
    ])
    .usage("--audience: empty audience");
    // The upstream is checked after the listener is bound: bind any free port.
    s.run(&[
        "gateway",
        "--upstream",
        "ftp://127.0.0.1/mcp",
        "--root",
        &root,
        "--listen",
        "127.0.0.1:0",
    ])
    .usage("--upstream");
    s.run(&[
        "gateway",
        "--upstream",
        up,
        "--root",
        &root,
        "--agent",
        "no-equals",
    ])
    .usage("--agent");
    s.run(&[
        "gateway",
        "--upstream",
        up,
        "--root",
        &root,
        "--replay",
        "memory:0",
    ])
    .usage("--replay");
    // A Redis Cluster URL is a Redis URL (not a pin file); nothing listens there.
    s.run(&[
        "gateway",
        "--upstream",
        up,
        "--replay",
        "redis+cluster://127.0.0.1:1,127.0.0.1:2",
    ])
    .usage("--replay: store unavailable: redis cluster");
    s.run(&[
        "gateway",
        "--upstream",
        up,
        "--pins",
        "rediss://127.0.0.1:1",
    ])
    .usage("--pins: store misconfigured");
    let not_pem = s.write("ca.pem", "not a certificate\n");
    s.run(&[
        "gateway",
        "--upstream",
        "https://127.0.0.1/mcp",
        "--upstream-ca",
        &not_pem,
    ])
    .usage("--upstream-ca");
    // No TLS over the socket.
    s.run(&[
        "gateway",
        "--upstream",
        "https://upstream.internal/mcp",
        "--upstream-socket",
        "upstream.sock",
        "--root",
        &root,
        "--listen",
        "127.0.0.1:0",
    ])
    .usage("--upstream-socket");
}

/// The stand-in upstream on a Unix domain socket at `path`; the request heads it saw.
#[cfg(unix)]
fn unix_upstream(path: &std::path::Path) -> Arc<Mutex<Vec<String>>> {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || answer(stream, &seen, Duration::ZERO));
        }
    });
    heads
}

#[cfg(unix)]
#[test]
fn upstream_socket_forwards_over_the_unix_socket_with_the_url_s_host() {
    let s = Scratch::new();
    let (root, agent, token) = setup(&s);
    let socket = s.path("upstream.sock");
    let seen = unix_upstream(&socket);
    // The URL's host is never connected to (a TEST-NET address): only the socket is.
    let gateway = Running::start(
        &s,
        &[
            "--upstream",
            "http://192.0.2.1:8000/mcp",
            "--upstream-socket",
            &socket.to_string_lossy(),
            "--root",
            &root,
            "--agent",
            &agent,
        ],
    );
    let (status, response) = gateway.send(&signed_call(&s, gateway.port, "echo", &token));
    assert_eq!(status, 200, "{response}");
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with("post /mcp http/1.1\r\n"), "{heads:?}");
    assert!(
        heads[0].contains("\r\nhost: 192.0.2.1:8000\r\n"),
        "{heads:?}"
    );
    assert!(heads[0].contains("x-vouch-identity: agent-a"), "{heads:?}");
    assert!(!heads[0].contains("x-mcpvault-token"), "{heads:?}");

    // A refusal still never reaches the upstream.
    let (status, _) = gateway.send(&signed_call(&s, gateway.port, "forbidden", &token));
    assert_eq!(status, 403);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_gateway_with_status_0() {
    let s = Scratch::new();
    let root = s.keygen("root.pem");
    let mut gateway = Running::start(
        &s,
        &["--upstream", "http://127.0.0.1:1/mcp", "--root", &root],
    );
    let killed = Command::new("kill")
        .args(["-TERM", &gateway.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(gateway.child.wait_exit(Duration::from_secs(15)), Some(0));
}

#[cfg(unix)]
#[test]
fn sigterm_lets_a_request_in_flight_finish() {
    let s = Scratch::new();
    let (root, agent, token) = setup(&s);
    let upstream = Upstream::start_slow(Duration::from_secs(1));
    let mut gateway = Running::start(
        &s,
        &[
            "--upstream",
            &upstream.url(),
            "--root",
            &root,
            "--agent",
            &agent,
        ],
    );
    let request = signed_call(&s, gateway.port, "echo", &token);
    let port = gateway.port;
    let in_flight = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(&request).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        String::from_utf8_lossy(&response).into_owned()
    });
    // Wait until the upstream has the request, then ask the gateway to stop.
    let start = Instant::now();
    while upstream.heads().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the request never arrived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &gateway.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let response = in_flight.join().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(gateway.child.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn sign_responses_signs_each_answer_bound_to_its_request() {
    let s = Scratch::new();
    let (root, agent, token) = setup(&s);
    s.keygen("answers.pem");
    let upstream = Upstream::start();
    let config = s.write("gateway.toml", "sign-responses = \"answers.pem\"\n");
    let gateway = Running::start(
        &s,
        &[
            "--config",
            &config,
            "--upstream",
            &upstream.url(),
            "--root",
            &root,
            "--agent",
            &agent,
            "--response-keyid",
            "https://gateway.example/answers",
        ],
    );
    let (status, response) = gateway.send(&signed_call(&s, gateway.port, "echo", &token));
    assert_eq!(status, 200, "{response}");
    let head = response
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    let input = head
        .lines()
        .find_map(|l| l.strip_prefix("signature-input: "))
        .unwrap_or_else(|| panic!("no signature-input: {head}"));
    assert!(input.starts_with("reqres=(\"@status\""), "{input}");
    for covered in [
        "\"content-type\"",
        "\"content-digest\"",
        "\"@method\";req",
        "\"@target-uri\";req",
        "\"signature\";req;key=\"sig1\"",
        "keyid=\"https://gateway.example/answers\"",
    ] {
        assert!(input.contains(covered), "{covered} not in {input}");
    }
    // Both or neither.
    let up = upstream.url();
    s.run(&[
        "gateway",
        "--upstream",
        &up,
        "--root",
        &root,
        "--sign-responses",
        "answers.pem",
    ])
    .usage("--sign-responses needs --response-keyid");
    s.run(&[
        "gateway",
        "--upstream",
        &up,
        "--root",
        &root,
        "--response-keyid",
        "gw",
    ])
    .usage("--response-keyid needs --sign-responses");
    s.run(&[
        "gateway",
        "--upstream",
        &up,
        "--root",
        &root,
        "--sign-responses",
        "missing.pem",
        "--response-keyid",
        "gw",
    ])
    .usage("--sign-responses");
}

#[test]
fn check_verifies_a_gateway_answer_with_its_request() {
    let s = Scratch::new();
    let (root, agent, token) = setup(&s);
    let public = s.keygen("answers.pem");
    let upstream = Upstream::start();
    let gateway = Running::start(
        &s,
        &[
            "--upstream",
            &upstream.url(),
            "--root",
            &root,
            "--agent",
            &agent,
            "--sign-responses",
            "answers.pem",
            "--response-keyid",
            "gw",
        ],
    );
    let request = signed_call(&s, gateway.port, "echo", &token);
    let (status, response) = gateway.send(&request);
    assert_eq!(status, 200, "{response}");
    let request_file = s.write("sent.http", &request);
    let response_file = s.write("answer.http", response.as_bytes());
    let verified = s
        .run(&[
            "check",
            "--pubkey",
            &public,
            "--scheme",
            "http",
            "--request",
            &request_file,
            &response_file,
        ])
        .json();
    assert_eq!(verified["keyid"], "gw");
    assert_eq!(verified["label"], "reqres");
    // Another signed call (its own signature) does not get to claim this answer.
    let other = s.write("other.http", signed_call(&s, gateway.port, "echo", &token));
    s.run(&[
        "check",
        "--pubkey",
        &public,
        "--scheme",
        "http",
        "--request",
        &other,
        &response_file,
    ])
    .rejected("bad_signature");
}
