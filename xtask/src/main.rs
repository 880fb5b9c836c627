//! Project automation, run as `cargo xtask <command>`.
//!
//! The same code runs locally and in CI: `.ci/run` calls `cargo xtask ci`.

#![allow(
    clippy::indexing_slicing,
    reason = "only serde_json::Value is indexed here, which yields Null instead of panicking"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

mod authz;
mod bench;
mod ci;
mod fuzz;
mod gateway;
mod interop;

/// vouch project tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", about = "vouch project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Every check CI runs: fmt, clippy, tests (with doctests), docs, the Python package's
    /// tests, interop, the gateway's end-to-end tests, `vouch authz` behind Envoy, fuzz smoke run.
    Ci {
        /// Run only these steps (fmt, clippy, test, doc, python, interop, gateway, authz, fuzz);
        /// all when none is given.
        steps: Vec<ci::Step>,
    },
    /// Criterion benches, then a summary table with vouch/peer ratios.
    Bench {
        /// Only benchmarks whose id matches this criterion filter (`python`: only the Python
        /// benches of crates/python/bench).
        filter: Option<String>,
    },
    /// Interop with real peers (the Python envoys package, in a venv under target/; Cloudflare's
    /// web-bot-auth npm package, run by node, installed under target/), both directions.
    Interop {
        /// Run only the Web Bot Auth step (node and npm; no Python).
        #[arg(long)]
        web_bot_auth_only: bool,
    },
    /// The end-to-end demo: a real rmcp server behind vouch, a signing client with an attenuated
    /// token, allowed and refused calls printed.
    Demo,
    /// A short run of every fuzz target (installs cargo-fuzz when missing).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Ci { steps } => ci::run(&steps),
        Task::Bench { filter } => bench::run(filter.as_deref()),
        Task::Fuzz { seconds } => fuzz::run(seconds),
        Task::Interop { web_bot_auth_only } => {
            if web_bot_auth_only {
                interop::web_bot_auth()
            } else {
                interop::run()
            }
        }
        // README's "run it" command, as a user types it.
        Task::Demo => exec(cargo().args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "vouch-cli",
            "--",
            "demo",
        ])),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An error for the person running the task: what failed, in one line.
type Result<T = ()> = std::result::Result<T, String>;

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `cargo` as cargo invoked us (respects a toolchain override).
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs a command, echoing it first, and fails with its description if it fails.
fn exec(cmd: &mut Command) -> Result {
    let shown = format!("{cmd:?}");
    eprintln!("$ {shown}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("failed ({status}): {shown}"))
    }
}
