//! `vouch gateway`: vouch-gateway's reverse proxy, configured from flags and a TOML file.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;

use vouch_gateway::Gateway;
use vouch_httpsig::SigningKey;
use vouch_keys::load_private;
use vouch_tower::{CapabilityPipeline, RateLimitLayer, ServeConfig};

use crate::cli::GatewayArgs;
use crate::failure::{Failure, Output};
use crate::input::read_input;
use crate::serve_settings::{
    FileConfig, InFlight, ServeSettings, drain, init_logging, log_decision, run_on_runtime,
    serve_metrics, shutdown_signal, socket_addr,
};

/// The address listened on without `--listen`.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The certificates of a PEM file, as trust anchors; at least one.
fn load_roots(path: &Path) -> Result<rustls::RootCertStore, Failure> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let fail = |why: String| Failure::usage(format!("--upstream-ca {}: {why}", path.display()));
    let pem = read_input(&path.to_string_lossy())?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no certificate".into()));
    }
    Ok(roots)
}

/// `gateway` reaching its upstream over the Unix domain socket at `path`.
#[cfg(unix)]
fn over_unix_socket(gateway: Gateway, path: std::path::PathBuf) -> Result<Gateway, Failure> {
    gateway
        .upstream_unix_socket(path)
        .map_err(|e| Failure::usage(format!("--upstream-socket: {e}")))
}

/// Unix domain sockets are for Unix.
#[cfg(not(unix))]
fn over_unix_socket(_: Gateway, _: std::path::PathBuf) -> Result<Gateway, Failure> {
    Err(Failure::usage(
        "--upstream-socket: Unix domain sockets are not supported on this platform",
    ))
}

/// Everything the gateway runs with, after the flags override the file.
struct Settings {
    upstream: String,
    /// `--upstream-ca`: the roots for an `https://` upstream in place of the web PKI.
    upstream_roots: Option<rustls::RootCertStore>,
    /// `--upstream-socket`: the Unix domain socket to reach the upstream by.
    upstream_socket: Option<std::path::PathBuf>,
    listen: SocketAddr,
    /// `--sign-upstream` and `--upstream-keyid`.
    sign_upstream: Option<(SigningKey, String)>,
    /// `--sign-responses` and `--response-keyid`.
    sign_responses: Option<(SigningKey, String)>,
    forward_token: bool,
    /// What `vouch authz` takes too.
    serve: ServeSettings,
}

impl Settings {
    fn from_args(args: GatewayArgs) -> Result<Self, Failure> {
        let path = args.serve.config.clone();
        let mut file = FileConfig::load(path.as_deref())?;
        file.refuse(
            path.as_deref(),
            "gateway",
            &[
                ("grpc", file.grpc.is_some()),
                ("http", file.http.is_some()),
                ("http-prefix", file.http_prefix.is_some()),
                ("headers-only", file.headers_only.is_some()),
            ],
        )?;
        let sign_upstream = key_and_keyid(
            args.sign_upstream.or(file.sign_upstream.take()),
            args.upstream_keyid.or(file.upstream_keyid.take()),
            ("--sign-upstream", "--upstream-keyid"),
        )?;
        let sign_responses = key_and_keyid(
            args.sign_responses.or(file.sign_responses.take()),
            args.response_keyid.or(file.response_keyid.take()),
            ("--sign-responses", "--response-keyid"),
        )?;
        let forward_token = args.forward_token || file.forward_token.unwrap_or(false);
        let upstream = args
            .upstream
            .or(file.upstream.take())
            .ok_or_else(|| Failure::usage("--upstream is required"))?;
        let upstream_roots = match args.upstream_ca.or(file.upstream_ca.take()) {
            Some(path) => Some(load_roots(&path)?),
            None => None,
        };
        let upstream_socket = args.upstream_socket.or(file.upstream_socket.take());
        let listen_text = args
            .listen
            .or(file.listen.take())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = socket_addr("--listen", &listen_text)?;
        Ok(Self {
            upstream,
            upstream_roots,
            upstream_socket,
            listen,
            sign_upstream,
            sign_responses,
            forward_token,
            serve: ServeSettings::from_args(args.serve, file)?,
        })
    }
}

/// A signing key file and its keyid, both or neither (`flags` names them in errors).
fn key_and_keyid(
    path: Option<std::path::PathBuf>,
    keyid: Option<String>,
    (key_flag, keyid_flag): (&str, &str),
) -> Result<Option<(SigningKey, String)>, Failure> {
    match (path, keyid) {
        (None, None) => Ok(None),
        (Some(path), Some(keyid)) => {
            if keyid.is_empty() {
                return Err(Failure::usage(format!("{keyid_flag}: empty keyid")));
            }
            // The key file in any format vouch reads, as `vouch sign --key` loads it.
            let key =
                load_private(&path).map_err(|e| Failure::usage(format!("{key_flag}: {e}")))?;
            let key = SigningKey::ed25519_from_seed(key.seed())
                .map_err(|e| Failure::usage(format!("{key_flag}: {e}")))?;
            Ok(Some((key, keyid)))
        }
        (Some(_), None) => Err(Failure::usage(format!(
            "{key_flag} needs {keyid_flag} (both or neither)"
        ))),
        (None, Some(_)) => Err(Failure::usage(format!(
            "{keyid_flag} needs {key_flag} (both or neither)"
        ))),
    }
}

/// Runs the gateway until SIGTERM or SIGINT.
pub(crate) fn run(args: GatewayArgs) -> Output {
    let settings = Settings::from_args(args)?;
    init_logging(settings.serve.log_format);
    run_on_runtime(serve(settings)).map(|()| Vec::new())
}

async fn serve(mut settings: Settings) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| Failure::usage(format!("--listen {}: {e}", settings.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::usage(format!("--listen {}: {e}", settings.listen)))?;
    if settings.serve.origins.is_empty() {
        // The default: `http://<listen address>`, known once the listener is bound (the port
        // may be 0).
        let origin = format!("http://{local}");
        settings.serve.origins.push(
            origin
                .parse()
                .map_err(|e| Failure::usage(format!("--origin {origin:?}: {e}")))?,
        );
    }
    let origins: Vec<String> = settings
        .serve
        .origins
        .iter()
        .map(ToString::to_string)
        .collect();
    let (token_header, ops, rate, metrics_addr) = (
        settings.serve.token_header.take(),
        std::mem::take(&mut settings.serve.ops),
        settings.serve.rate,
        settings.serve.metrics,
    );
    let (signature, verifier, metrics) = settings.serve.pipelines().await?;
    let gateway = match verifier {
        Some(verifier) => Gateway::new(
            &settings.upstream,
            signature,
            CapabilityPipeline::new(verifier),
        ),
        None => Gateway::identity_only(&settings.upstream, signature),
    };
    let mut gateway = gateway.map_err(|e| Failure::usage(format!("--upstream: {e}")))?;
    if let Some(roots) = settings.upstream_roots {
        gateway = gateway
            .upstream_roots(roots)
            .map_err(|e| Failure::usage(format!("--upstream-ca: {e}")))?;
    }
    let via = settings
        .upstream_socket
        .as_ref()
        .map(|path| format!(" over unix:{}", path.display()))
        .unwrap_or_default();
    if let Some(path) = settings.upstream_socket {
        gateway = over_unix_socket(gateway, path)?;
    }
    if let Some(header) = token_header {
        gateway = gateway.token_header(header);
    }
    for (tool, op) in ops {
        gateway = gateway.operation(tool, op);
    }
    if let Some((key, keyid)) = settings.sign_upstream {
        gateway = gateway.sign_upstream(key, keyid);
    }
    if let Some((key, keyid)) = settings.sign_responses {
        gateway = gateway.sign_responses(key, keyid);
    }
    gateway = gateway.forward_token(settings.forward_token);
    if let Some(rate) = rate {
        let burst = NonZeroU32::new(rate.get().saturating_mul(2)).unwrap_or(rate);
        gateway = gateway.rate_limit(RateLimitLayer::per_second(rate, burst));
    }
    gateway = gateway.audit(log_decision);
    let mut metrics_at = None;
    if let (Some(addr), Some(metrics)) = (metrics_addr, &metrics) {
        gateway = gateway.metrics(metrics.clone());
        metrics_at = Some(serve_metrics("gateway", addr, metrics).await?);
    }
    let in_flight = InFlight::new(gateway.into_router());
    let count = in_flight.count();
    // Listen for the signals before the startup line: a SIGTERM sent as soon as it is read
    // must stop the gateway cleanly, not kill it.
    let stop = shutdown_signal()?;
    eprintln!(
        "vouch gateway: listening on http://{local}{}, origin {}, upstream {}{via}",
        vouch_gateway::DEFAULT_PATH,
        origins.join(", "),
        settings.upstream
    );
    if let Some(local) = metrics_at {
        eprintln!(
            "vouch gateway: metrics on http://{local}{}",
            vouch_gateway::METRICS_PATH
        );
    }

    tokio::select! {
        served = vouch_tower::serve(listener, in_flight, ServeConfig::default()) => {
            served.map_err(|e| Failure::usage(format!("serving: {e}")))?;
        }
        signal = stop => {
            signal?;
        }
    }
    // The listener is closed; let the requests already in flight finish.
    drain(&count).await;
    eprintln!("vouch gateway: stopped");
    Ok(())
}
