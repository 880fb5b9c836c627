//! The end-to-end demo: `cargo run --release -p vouch-rmcp --features demo --example demo`.
//!
//! Starts a real rmcp server on 127.0.0.1 behind vouch, mints a root token, attenuates it for a
//! worker agent, calls an allowed tool with the signing rmcp client, then shows each rejection
//! with its HTTP status and reason. Exits 0 only if every outcome is the expected one.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match vouch_rmcp::demo::run().await {
        Ok(report) => {
            print!("{}", report.render());
            if report.all_as_expected() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
