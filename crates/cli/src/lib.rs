//! The `vouch` command-line tool: keys, capability tokens and RFC 9421 signed requests, for
//! operators and for programs in other languages.
//!
//! This library is the binary's implementation; its only stable interface is the command line,
//! described by `vouch --help` and `docs/cli.md` in the repository.
//!
//! ```text
//! vouch keygen --out root.pem
//! vouch mint --key root.pem --tools db_query --op db_query:read --ttl 3600 > token
//! vouch verify --token - --pubkey "$(vouch pubkey --key root.pem)" --tool db_query < token
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

#[cfg(feature = "authz")]
mod authz;
mod cli;
mod failure;
#[cfg(feature = "gateway")]
mod gateway;
mod input;
mod pins;
mod raw;
#[cfg(feature = "gateway")]
mod serve_settings;
mod sigs;
mod tokens;

use cli::{Cli, Command, PinCommand};
use failure::{Failure, Output};

/// Runs the command line of this process and returns its exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match run(cli.command) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(&out)
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("vouch: {failure}");
            ExitCode::from(failure.status())
        }
    }
}

fn run(command: Command) -> Output {
    match command {
        Command::Keygen { out, format } => tokens::keygen(&out, format),
        Command::Pubkey { key, format } => tokens::pubkey(&key, format),
        Command::Mint {
            key,
            issuer,
            subject,
            rights,
        } => tokens::mint(&key, &issuer, &subject, &rights),
        Command::Attenuate {
            token,
            pubkey,
            rights,
        } => tokens::attenuate(&token, &pubkey, &rights),
        Command::Seal { token } => tokens::seal(&token),
        Command::Verify {
            token,
            pubkey,
            tool,
            op,
            audience,
            caller,
            now,
        } => tokens::verify(&tokens::VerifyArgs {
            token: &token,
            pubkey: &pubkey,
            tool: tool.as_deref(),
            op: op.as_deref(),
            audience: audience.as_deref(),
            caller: caller.as_deref(),
            now,
        }),
        Command::Inspect { token, json } => tokens::inspect(&token, json),
        Command::Sign(args) => sigs::sign(&args),
        Command::Check(args) => sigs::check(&args),
        Command::Directory(args) => sigs::directory(&args),
        Command::Pin(PinCommand::Reset { store, identity }) => pins::reset(&store, &identity),
        Command::Gateway(args) => gateway(*args),
        Command::Authz(args) => authz(*args),
        Command::Demo => demo(),
    }
}

#[cfg(feature = "gateway")]
fn gateway(args: cli::GatewayArgs) -> Output {
    gateway::run(args)
}

#[cfg(not(feature = "gateway"))]
fn gateway(_: cli::GatewayArgs) -> Output {
    Err(Failure::usage(
        "this vouch was built without the gateway feature",
    ))
}

#[cfg(feature = "authz")]
fn authz(args: cli::AuthzArgs) -> Output {
    authz::run(args)
}

#[cfg(not(feature = "authz"))]
fn authz(_: cli::AuthzArgs) -> Output {
    Err(Failure::usage(
        "this vouch was built without the authz feature",
    ))
}

#[cfg(feature = "demo")]
fn demo() -> Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(format!("cannot start the async runtime: {e}")))?;
    let report = runtime
        .block_on(vouch_rmcp::demo::run())
        .map_err(Failure::rejected)?;
    let text = report.render().into_bytes();
    if report.all_as_expected() {
        return Ok(text);
    }
    // The report is the output either way; the status says that something was unexpected.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&text).and_then(|()| stdout.flush());
    Err(Failure::rejected("an outcome was not the expected one"))
}

#[cfg(not(feature = "demo"))]
fn demo() -> Output {
    Err(Failure::usage(
        "this vouch was built without the demo feature",
    ))
}

/// Hooks for fuzzing. Not part of the stable API.
#[doc(hidden)]
pub mod internal {
    /// Fuzz entry point: parse arbitrary bytes as a raw request; whatever parses must write back
    /// to the same bytes and parse again to the same request. Must never panic.
    pub fn fuzz_raw_request(data: &[u8]) {
        if let Ok(request) = crate::raw::RawRequest::parse(data) {
            let written = request.to_bytes();
            assert_eq!(written, data, "a parsed request must write back unchanged");
            let again = crate::raw::RawRequest::parse(&written).map(|r| r.to_bytes());
            assert_eq!(again.as_deref(), Ok(data), "re-parsing must agree");
        }
    }
}
