use clap::Parser as _;

use super::Settings;
use crate::cli::{Cli, Command};

fn settings(args: &[&str]) -> Settings {
    let cli = Cli::try_parse_from(["vouch", "authz"].iter().chain(args)).unwrap();
    let Command::Authz(args) = cli.command else {
        panic!("not authz");
    };
    Settings::from_args(*args).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn without_listeners_grpc_serves_on_the_default_address() {
    let s = settings(&["--origin", "https://mcp.example"]);
    assert_eq!(s.grpc, Some("127.0.0.1:9191".parse().unwrap()));
    assert_eq!(s.http, None);
    assert_eq!(s.http_prefix, "/check");
    let s = settings(&[
        "--origin",
        "https://mcp.example",
        "--http",
        "127.0.0.1:9192",
    ]);
    assert_eq!(s.grpc, None, "--http alone: no gRPC listener");
    assert_eq!(s.http, Some("127.0.0.1:9192".parse().unwrap()));
}
