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
    let server = upstream_server("the gateway tests")?;
    build_binaries()?;
    let python = crate::interop::venv()?;
    let (work, bin) = fresh_work("gateway-e2e")?;
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
    run_bounded(&mut cmd, TIMEOUT, "the gateway tests")
}

/// `examples/gateway/server.py`, the FastMCP upstream of the end-to-end tests (`who`: the tests
/// that need it, for the error when it is missing).
pub(crate) fn upstream_server(who: &str) -> Result<PathBuf> {
    let server = root().join("examples").join("gateway").join("server.py");
    if server.is_file() {
        Ok(server)
    } else {
        Err(format!(
            "{} is missing: {who} need it as their upstream",
            server.display()
        ))
    }
}

/// Builds the `vouch` command and the `gateway_client` example: one build for both (and for
/// every end-to-end step), so that they share one feature resolution and no step rebuilds what
/// another built.
pub(crate) fn build_binaries() -> Result {
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
    ]))
}

/// `target/<name>`, emptied, and its `bin/` directory for the copies of the binaries under test.
pub(crate) fn fresh_work(name: &str) -> Result<(PathBuf, PathBuf)> {
    let work = root().join("target").join(name);
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    }
    let bin = work.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    Ok((work, bin))
}

/// Copies `from` into `dir`: the tests run copies, so that another build replacing
/// target/debug/vouch meanwhile changes nothing under them.
pub(crate) fn copy(from: &Path, dir: &Path) -> Result<PathBuf> {
    let name = from
        .file_name()
        .ok_or_else(|| format!("{}: no file name", from.display()))?;
    let to = dir.join(name);
    std::fs::copy(from, &to).map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))?;
    Ok(to)
}

/// Runs `cmd` (a harness: `what`, for the error) in a process group of its own; past `limit`,
/// kills the whole group (the harness and every server and proxy it started) and fails.
pub(crate) fn run_bounded(cmd: &mut Command, limit: Duration, what: &str) -> Result {
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
                    "{what} did not finish within {} s (killed): {shown}",
                    limit.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for {shown}: {e}")),
        }
    }
}
