//! `vouch authz`: vouch-gateway's checks as an Envoy external authorizer (gRPC and HTTP modes),
//! configured from flags and a TOML file as `vouch gateway` is, without the upstream and
//! forwarding settings.

use std::net::SocketAddr;
use std::num::NonZeroU32;

use vouch_gateway::{Authorizer, DEFAULT_HTTP_PREFIX, ExtAuthz};
use vouch_tower::{CapabilityPipeline, RateLimitLayer, ServeConfig};

use crate::cli::AuthzArgs;
use crate::failure::{Failure, Output};
use crate::serve_settings::{
    DRAIN_TIMEOUT, FileConfig, InFlight, ServeSettings, drain, init_logging, log_decision,
    run_on_runtime, serve_metrics, shutdown_signal, socket_addr,
};

/// The gRPC address without `--grpc` or `--http`.
const DEFAULT_GRPC: &str = "127.0.0.1:9191";

/// Everything the authorizer runs with, after the flags override the file.
struct Settings {
    grpc: Option<SocketAddr>,
    http: Option<SocketAddr>,
    http_prefix: String,
    /// Decide on the signed head alone (`--headers-only`).
    headers_only: bool,
    /// What `vouch gateway` takes too.
    serve: ServeSettings,
}

impl Settings {
    fn from_args(args: AuthzArgs) -> Result<Self, Failure> {
        let path = args.serve.config.clone();
        let mut file = FileConfig::load(path.as_deref())?;
        file.refuse(
            path.as_deref(),
            "authz",
            &[
                ("upstream", file.upstream.is_some()),
                ("upstream-ca", file.upstream_ca.is_some()),
                ("upstream-socket", file.upstream_socket.is_some()),
                ("listen", file.listen.is_some()),
                ("sign-upstream", file.sign_upstream.is_some()),
                ("sign-responses", file.sign_responses.is_some()),
                ("response-keyid", file.response_keyid.is_some()),
                ("upstream-keyid", file.upstream_keyid.is_some()),
                ("forward-token", file.forward_token.is_some()),
            ],
        )?;
        let grpc = args.grpc.or(file.grpc.take());
        let http = args.http.or(file.http.take());
        let (grpc, http) = match (grpc, http) {
            (None, None) => (Some(DEFAULT_GRPC.to_owned()), None),
            both => both,
        };
        let grpc = grpc.map(|a| socket_addr("--grpc", &a)).transpose()?;
        let http = http.map(|a| socket_addr("--http", &a)).transpose()?;
        let http_prefix = args
            .http_prefix
            .or(file.http_prefix.take())
            .unwrap_or_else(|| DEFAULT_HTTP_PREFIX.to_owned());
        let file_headers_only = file.headers_only.take().unwrap_or(false);
        let serve = ServeSettings::from_args(args.serve, file)?;
        if serve.origins.is_empty() {
            // No listen address stands for how clients address Envoy.
            return Err(Failure::usage(
                "--origin is required: how clients address Envoy (e.g. https://mcp.example)",
            ));
        }
        Ok(Self {
            grpc,
            http,
            http_prefix,
            headers_only: args.headers_only || file_headers_only,
            serve,
        })
    }
}

/// Runs the authorizer until SIGTERM or SIGINT.
pub(crate) fn run(args: AuthzArgs) -> Output {
    let settings = Settings::from_args(args)?;
    init_logging(settings.serve.log_format);
    run_on_runtime(serve(settings)).map(|()| Vec::new())
}

/// Binds `addr` for `flag`; the listener and its bound address.
async fn bind(
    flag: &str,
    addr: Option<SocketAddr>,
) -> Result<Option<(tokio::net::TcpListener, SocketAddr)>, Failure> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::usage(format!("{flag} {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::usage(format!("{flag} {addr}: {e}")))?;
    Ok(Some((listener, local)))
}

/// The authorizer the settings describe, and the metrics listener's address if any.
async fn authorizer(
    mut serve: ServeSettings,
    http_prefix: String,
    headers_only: bool,
) -> Result<(ExtAuthz, Option<SocketAddr>), Failure> {
    let (token_header, ops, rate, metrics_addr) = (
        serve.token_header.take(),
        std::mem::take(&mut serve.ops),
        serve.rate,
        serve.metrics,
    );
    let (signature, verifier, metrics) = serve.pipelines().await?;
    let mut authorizer = match verifier {
        Some(verifier) => Authorizer::new(signature, CapabilityPipeline::new(verifier)),
        None => Authorizer::identity_only(signature),
    };
    if headers_only {
        authorizer = authorizer.headers_only();
    }
    authorizer = authorizer
        .http_prefix(http_prefix)
        .map_err(|e| Failure::usage(format!("--http-prefix: {e}")))?;
    if let Some(header) = token_header {
        authorizer = authorizer.token_header(header);
    }
    for (tool, op) in ops {
        authorizer = authorizer.operation(tool, op);
    }
    if let Some(rate) = rate {
        let burst = NonZeroU32::new(rate.get().saturating_mul(2)).unwrap_or(rate);
        authorizer = authorizer.rate_limit(RateLimitLayer::per_second(rate, burst));
    }
    authorizer = authorizer.audit(log_decision);
    let mut metrics_at = None;
    if let (Some(addr), Some(metrics)) = (metrics_addr, &metrics) {
        authorizer = authorizer.metrics(metrics.clone());
        metrics_at = Some(serve_metrics("authz", addr, metrics).await?);
    }
    Ok((authorizer.build(), metrics_at))
}

async fn serve(settings: Settings) -> Result<(), Failure> {
    // Both listeners are bound before the startup line: a harness that reads it may connect.
    let grpc = bind("--grpc", settings.grpc).await?;
    let http = bind("--http", settings.http).await?;
    let origins: Vec<String> = settings
        .serve
        .origins
        .iter()
        .map(ToString::to_string)
        .collect();
    let headers_only = settings.headers_only;
    let (authz, metrics_at) =
        authorizer(settings.serve, settings.http_prefix, headers_only).await?;
    // Listen for the signals before the startup line: a SIGTERM sent as soon as it is read
    // must stop the authorizer cleanly, not kill it.
    let stop = shutdown_signal()?;
    let mut names = Vec::new();
    if let Some((_, local)) = &grpc {
        names.push(format!("grpc {local}"));
    }
    if let Some((_, local)) = &http {
        names.push(format!("http {local}"));
    }
    eprintln!(
        "vouch authz: {}, origin {}{}",
        names.join(", "),
        origins.join(", "),
        if headers_only {
            ", headers only (the upstream must check Content-Digest)"
        } else {
            ""
        }
    );
    if let Some(local) = metrics_at {
        eprintln!(
            "vouch authz: metrics on http://{local}{}",
            vouch_gateway::METRICS_PATH
        );
    }

    // gRPC: tonic's server, stopped gracefully (checks in flight finish) when told to.
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let grpc_task = grpc.map(|(listener, _)| {
        let authz = authz.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            authz.serve_grpc(listener, shutdown).await
        })
    });
    // HTTP: vouch-tower's server, counted, dropped on the signal (the listener closes).
    let (http_served, count) = match http {
        Some((listener, _)) => {
            let in_flight = InFlight::new(authz.http_router());
            let count = in_flight.count();
            (Some((listener, in_flight)), Some(count))
        }
        None => (None, None),
    };
    let http_future = async move {
        match http_served {
            Some((listener, in_flight)) => {
                vouch_tower::serve(listener, in_flight, ServeConfig::default())
                    .await
                    .map_err(|e| Failure::usage(format!("serving --http: {e}")))
            }
            None => std::future::pending().await,
        }
    };
    let mut grpc_task = grpc_task;
    let grpc_ended = async {
        match grpc_task.as_mut() {
            // Only an error ends it before it is told to stop.
            Some(task) => match task.await {
                Ok(Ok(())) => Failure::usage("serving --grpc: the server stopped"),
                Ok(Err(e)) => Failure::usage(format!("serving --grpc: {e}")),
                Err(e) => Failure::usage(format!("serving --grpc: {e}")),
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        served = http_future => served?,
        ended = grpc_ended => return Err(ended),
        signal = stop => signal?,
    }
    // Stop the gRPC server (the checks in flight finish), let HTTP checks in flight finish.
    let _ = stopping.send(true);
    let grpc_drained = async {
        if let Some(task) = grpc_task
            && tokio::time::timeout(DRAIN_TIMEOUT, task).await.is_err()
        {
            eprintln!("vouch authz: gRPC checks still running after the drain were cut");
        }
    };
    let http_drained = async {
        if let Some(count) = &count {
            drain(count).await;
        }
    };
    tokio::join!(grpc_drained, http_drained);
    eprintln!("vouch authz: stopped");
    Ok(())
}

#[cfg(test)]
mod tests;
