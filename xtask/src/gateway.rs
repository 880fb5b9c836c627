//! `cargo xtask ci gateway`: end-to-end tests of `vouch gateway` with real processes.
//!
//! The upstream is `examples/gateway/server.py`, a Python FastMCP server (the `mcp` package, in
//! the interop venv), in its four modes: JSON responses or SSE, stateless or with sessions. In
//! front of it run `vouch gateway`s, and real clients call through them: the `mcp` package's
//! streamable HTTP client signing with envoys-mcp's `EnvoysAuth`, vouch-rmcp's `SigningClient`
//! (the `gateway_client` example), and raw signed requests for everything a real client would
//! never send. `xtask/gateway/e2e.py` runs the cases and prints one line each; any failure fails
//! the step. The whole run is bounded: the harness is killed (with everything it started) after
//! [`TIMEOUT`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Result, cargo, exec, root};

/// The most the harness may take (it takes about 40 s; each of its own waits is bounded too).
const TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) fn run() -> Result {
    let server = root().join("examples").join("gateway").join("server.py");
    if !server.is_file() {
        return Err(format!(
            "{} is missing: the gateway tests need it as their upstream",
            server.display()
        ));
    }
    // One build for both, so that they share one feature resolution.
    exec(cargo().args([
        "build",
        "--quiet",
        "--locked",
        "-p",
        "vouch-cli",
        "-p",
        "vouch-rmcp",
        "--bin",
        "vouch",
        "--example",
        "gateway_client",
    ]))?;
    let python = crate::interop::venv()?;

    let work = root().join("target").join("gateway-e2e");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    }
    let bin = work.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    // Copies, so that another build replacing target/debug/vouch meanwhile changes nothing here.
    let debug = root().join("target").join("debug");
    let vouch = copy(&debug.join("vouch"), &bin)?;
    let client = copy(&debug.join("examples").join("gateway_client"), &bin)?;

    let script = root().join("xtask").join("gateway").join("e2e.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg("--vouch")
        .arg(&vouch)
        .arg("--client")
        .arg(&client)
        .arg("--server")
        .arg(&server)
        .arg("--work")
        .arg(&work);
    run_bounded(&mut cmd, TIMEOUT)
}

fn copy(from: &Path, dir: &Path) -> Result<PathBuf> {
    let name = from
        .file_name()
        .ok_or_else(|| format!("{}: no file name", from.display()))?;
    let to = dir.join(name);
    std::fs::copy(from, &to).map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))?;
    Ok(to)
}

/// Runs `cmd` in a process group of its own; past `limit`, kills the whole group (the harness
/// and the gateways and servers it started) and fails.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result {
    let shown = format!("{cmd:?}");
    eprintln!("$ {shown}");
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("failed ({status}): {shown}")),
            Ok(None) if start.elapsed() > limit => {
                // The group's id is the harness's pid.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the gateway tests did not finish within {} s (killed): {shown}",
                    limit.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for {shown}: {e}")),
        }
    }
}
