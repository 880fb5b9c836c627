//! The `vouch` binary; see `vouch --help`.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    vouch_cli::main()
}
