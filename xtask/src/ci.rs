//! `cargo xtask ci`: the checks every change must pass.

use std::time::Instant;

use crate::{Result, cargo, exec};

/// One step of the CI job.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Step {
    /// `cargo fmt --check`.
    Fmt,
    /// clippy on every target and feature, warnings denied.
    Clippy,
    /// Every test of the workspace, doctests included.
    Test,
    /// rustdoc with warnings denied.
    Doc,
    /// The `vouch` Python package (crates/python): `run-tests.sh` builds it with maturin into a
    /// venv under target/ and runs mypy.stubtest and its pytest suite.
    Python,
    /// Interop with real peers (`cargo xtask interop`).
    Interop,
    /// End-to-end tests of `vouch gateway` with a Python FastMCP upstream and real clients.
    Gateway,
    /// End-to-end tests of `vouch authz` behind a real Envoy (ext_authz, gRPC and HTTP), two
    /// replicas sharing a real Redis.
    Authz,
    /// A short smoke run of each fuzz target.
    Fuzz,
}

const ALL: [Step; 9] = [
    Step::Fmt,
    Step::Clippy,
    Step::Test,
    Step::Doc,
    Step::Python,
    Step::Interop,
    Step::Gateway,
    Step::Authz,
    Step::Fuzz,
];

/// Crates with optional cargo features, checked once more with their defaults.
const FEATURED_CRATES: [&str; 1] = ["vouch-keys"];

/// Seconds each fuzz target runs in CI: a smoke test, not a campaign.
const CI_FUZZ_SECONDS: u64 = 10;

pub(crate) fn run_step(step: Step) -> Result {
    match step {
        Step::Fmt => exec(cargo().args(["fmt", "--all", "--", "--check"])),
        Step::Clippy => {
            exec(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--locked",
                "--",
                "-D",
                "warnings",
            ]))?;
            // Crates with optional features must also build without them (one crate at a time,
            // so that other members do not switch the features on through unification).
            for krate in FEATURED_CRATES {
                exec(cargo().args([
                    "clippy",
                    "-p",
                    krate,
                    "--all-targets",
                    "--locked",
                    "--",
                    "-D",
                    "warnings",
                ]))?;
            }
            Ok(())
        }
        Step::Test => {
            ensure_redis_server()?;
            exec(cargo().args(["test", "--workspace", "--all-features", "--locked"]))
        }
        Step::Doc => exec(cargo().env("RUSTDOCFLAGS", "-D warnings").args([
            "doc",
            "--workspace",
            "--no-deps",
            "--all-features",
            "--locked",
        ])),
        Step::Python => {
            // The middleware's Redis store tests start their own redis-server.
            ensure_redis_server()?;
            exec(
                std::process::Command::new("bash")
                    .arg(crate::root().join("crates/python/run-tests.sh"))
                    .current_dir(crate::root()),
            )
        }
        Step::Interop => crate::interop::run(),
        Step::Gateway => crate::gateway::run(),
        Step::Authz => crate::authz::run(),
        Step::Fuzz => crate::fuzz::run(CI_FUZZ_SECONDS),
    }
}

/// The Redis store tests, the Python tests and the authz step start their own `redis-server`; install it from
/// Debian's packages when it is missing (CI runs as root on a Debian machine). Anything else is a
/// clear failure.
pub(crate) fn ensure_redis_server() -> Result {
    let present = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    eprintln!("redis-server is missing; installing it with apt-get for the Redis store tests");
    let apt = |args: &[&str]| exec(std::process::Command::new("apt-get").args(args));
    apt(&["update", "-q"])
        .and_then(|()| apt(&["install", "-y", "-q", "redis-server"]))
        .map_err(|e| format!("the Redis tests and the authz step need redis-server and it could not be installed ({e}); install it and run again"))
}

pub(crate) fn run(steps: &[Step]) -> Result {
    let steps = if steps.is_empty() { &ALL[..] } else { steps };
    let mut timings = Vec::new();
    for &step in steps {
        let name = step_name(step);
        eprintln!("== xtask ci: {name}");
        let start = Instant::now();
        run_step(step).map_err(|e| format!("ci step {name}: {e}"))?;
        timings.push((name, start.elapsed()));
    }
    eprintln!("== xtask ci: all steps passed");
    for (name, took) in timings {
        eprintln!("   {name:<7} {:>6.1} s", took.as_secs_f64());
    }
    Ok(())
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::Fmt => "fmt",
        Step::Clippy => "clippy",
        Step::Test => "test",
        Step::Doc => "doc",
        Step::Python => "python",
        Step::Interop => "interop",
        Step::Gateway => "gateway",
        Step::Authz => "authz",
        Step::Fuzz => "fuzz",
    }
}
