//! `cargo xtask fuzz`: a time-boxed run of every cargo-fuzz target.

use std::process::Command;

use crate::{Result, cargo, exec, root};

pub(crate) fn run(seconds: u64) -> Result {
    ensure_cargo_fuzz()?;
    let dir = root().join("fuzz");
    let targets = targets(&dir)?;
    if targets.is_empty() {
        return Err(format!("no fuzz targets under {}", dir.display()));
    }
    for target in &targets {
        eprintln!("== fuzz {target}: {seconds} s");
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        // cargo-fuzz needs nightly-only rustc flags; the stable toolchain accepts them with
        // RUSTC_BOOTSTRAP. Crashes end the run with a non-zero status and an artifact file.
        exec(
            cargo()
                .current_dir(&dir)
                .env("RUSTC_BOOTSTRAP", "1")
                .args(["fuzz", "run", target, "--"])
                .arg(format!("-max_total_time={seconds}"))
                .arg("-rss_limit_mb=2048"),
        )?;
    }
    Ok(())
}

fn targets(dir: &std::path::Path) -> Result<Vec<String>> {
    let src = dir.join("fuzz_targets");
    let entries = std::fs::read_dir(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if let Some(stem) = path
            .file_stem()
            .filter(|_| path.extension().is_some_and(|e| e == "rs"))
        {
            out.push(stem.to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

fn ensure_cargo_fuzz() -> Result {
    let present = cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    eprintln!("cargo-fuzz is missing; installing it from crates.io");
    exec(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())).args([
            "install",
            "cargo-fuzz",
            "--locked",
        ]),
    )
}
