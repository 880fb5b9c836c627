//! What `vouch gateway` and `vouch authz` share: the identity, token and store settings (flags
//! and `--config` file), the signature pipeline they make, logging, metrics gauges, signals and
//! the in-flight count for draining.

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;
use vouch_gateway::Metrics;
use vouch_httpsig::VerifyPolicy;
use vouch_keys::{
    CacheConfig, CachingResolver, Fallback, FilePinStore, HttpsConfig, HttpsResolver,
    RedisPinStore, RedisReplayStore, ShardedReplayStore, StaticResolver,
};
use vouch_token::{RootKeySet, Verifier};
use vouch_tower::{Decision, Origin, Patterns, RefusalStyle, SignaturePipeline};

use crate::cli::{LogFormat, Profile, ServeArgs};
use crate::failure::Failure;
use crate::input::{public_key, read_input};

/// Nonces held by the in-memory replay store without `--replay memory:N`.
const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// How long in-flight requests may take to finish after SIGTERM or SIGINT.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the connections get to flush the last responses once nothing is in flight.
pub(crate) const FLUSH_GRACE: Duration = Duration::from_millis(100);

/// Key prefixes in Redis.
const REDIS_REPLAY_PREFIX: &str = "vouch:replay:";
const REDIS_PINS_PREFIX: &str = "vouch:pins:";

/// The `--config` file of both commands: the flags' names without the leading dashes, lists as
/// arrays. One struct for both, so that a key neither command knows is refused by the parser
/// with its name; a key only the other command knows is refused by [`FileConfig::refuse`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    // `vouch gateway` only.
    pub(crate) upstream: Option<String>,
    pub(crate) upstream_ca: Option<std::path::PathBuf>,
    pub(crate) upstream_socket: Option<std::path::PathBuf>,
    pub(crate) listen: Option<String>,
    pub(crate) sign_upstream: Option<std::path::PathBuf>,
    pub(crate) upstream_keyid: Option<String>,
    pub(crate) forward_token: Option<bool>,
    pub(crate) sign_responses: Option<std::path::PathBuf>,
    pub(crate) response_keyid: Option<String>,
    // `vouch authz` only.
    pub(crate) grpc: Option<String>,
    pub(crate) http: Option<String>,
    pub(crate) http_prefix: Option<String>,
    pub(crate) headers_only: Option<bool>,
    // Both.
    #[serde(default)]
    origin: Vec<String>,
    #[serde(default)]
    agent: Vec<String>,
    #[serde(default)]
    resolve_https: bool,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    root: Vec<String>,
    #[serde(default)]
    audience: Vec<String>,
    token_header: Option<String>,
    #[serde(default)]
    op: Vec<String>,
    profile: Option<Profile>,
    #[serde(default)]
    signature_agent_keys: bool,
    replay: Option<String>,
    pins: Option<String>,
    rate: Option<u32>,
    metrics: Option<String>,
    log_format: Option<LogFormat>,
}

impl FileConfig {
    /// Reads and parses `--config` (`None`: no file, every key unset).
    pub(crate) fn load(path: Option<&Path>) -> Result<Self, Failure> {
        match path {
            Some(path) => load_config(path),
            None => Ok(Self::default()),
        }
    }

    /// Refuses the keys `command` does not take (set in the file at `path`), naming the first.
    pub(crate) fn refuse(
        &self,
        path: Option<&Path>,
        command: &str,
        keys: &[(&str, bool)],
    ) -> Result<(), Failure> {
        match (path, keys.iter().find(|(_, set)| *set)) {
            (Some(path), Some((key, _))) => Err(Failure::usage(format!(
                "{}: unknown field `{key}`: not a setting of vouch {command}",
                path.display()
            ))),
            _ => Ok(()),
        }
    }
}

/// Reads and parses `--config`.
fn load_config(path: &Path) -> Result<FileConfig, Failure> {
    let bytes = read_input(&path.to_string_lossy())?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Failure::usage(format!("{}: not UTF-8", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        // toml's message may span lines; keep its first. Name the key of the offending line
        // rather than quoting the line (a Redis URL may hold a password).
        let message = e.message().lines().next().unwrap_or("invalid TOML");
        let place = e.span().and_then(|span| {
            let before = text.get(..span.start)?;
            let number = before.matches('\n').count() + 1;
            let line = text.lines().nth(number - 1).unwrap_or("");
            Some(match line.split_once('=') {
                Some((key, _)) => format!(" (line {number}, key {:?})", key.trim()),
                None => format!(" (line {number})"),
            })
        });
        Failure::usage(format!(
            "{}: {message}{}",
            path.display(),
            place.unwrap_or_default()
        ))
    })
}

/// A list flag replaces the file's list when given at least once.
pub(crate) fn pick(flags: Vec<String>, file: Vec<String>) -> Vec<String> {
    if flags.is_empty() { file } else { flags }
}

/// A socket address flag or key, parsed; the error names `flag`.
pub(crate) fn socket_addr(flag: &str, text: &str) -> Result<SocketAddr, Failure> {
    text.parse()
        .map_err(|e| Failure::usage(format!("{flag} {text:?}: {e}")))
}

/// The settings both commands take, after the flags override the file.
pub(crate) struct ServeSettings {
    /// Empty if none was given (the gateway's default is derived from its listen address).
    pub(crate) origins: Vec<Origin>,
    resolver: Fallback<StaticResolver, CachingResolver<HttpsResolver>>,
    allows: Vec<String>,
    /// `None` without `--root`: an identity gate only.
    roots: Option<RootKeySet>,
    audiences: Vec<String>,
    pub(crate) token_header: Option<HeaderName>,
    pub(crate) ops: Vec<(String, String)>,
    policy: VerifyPolicy,
    style: RefusalStyle,
    signature_agent_keys: bool,
    replay: ReplaySetting,
    pins: Option<String>,
    pub(crate) rate: Option<NonZeroU32>,
    pub(crate) metrics: Option<SocketAddr>,
    pub(crate) log_format: LogFormat,
}

enum ReplaySetting {
    Memory(usize),
    Redis(String),
}

/// A Redis URL (`redis://`, `redis+cluster://`, …) rather than a file name or `memory`.
fn is_redis_url(s: &str) -> bool {
    vouch_keys::is_redis_url(s)
}

impl ServeSettings {
    /// The shared settings from the flags and the file.
    pub(crate) fn from_args(args: ServeArgs, file: FileConfig) -> Result<Self, Failure> {
        let metrics = match args.metrics.or(file.metrics) {
            Some(addr) => Some(socket_addr("--metrics", &addr)?),
            None => None,
        };
        let log_format = args
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Text);
        let origins = pick(args.origins, file.origin)
            .iter()
            .map(|o| {
                o.parse::<Origin>()
                    .map_err(|e| Failure::usage(format!("--origin {o:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut fixed = StaticResolver::new();
        for agent in pick(args.agents, file.agent) {
            // A keyid may be a URL with `=` in it; a key (hex, did:key) has none.
            let Some((keyid, key)) = agent.rsplit_once('=') else {
                return Err(Failure::usage(format!(
                    "--agent {agent:?}: expected KEYID=PUBKEY"
                )));
            };
            if keyid.is_empty() {
                return Err(Failure::usage(format!("--agent {agent:?}: empty keyid")));
            }
            let key =
                public_key(key).map_err(|e| Failure::usage(format!("--agent {keyid}: {e}")))?;
            let resolved = vouch_keys::ResolvedKey::ed25519(&key)
                .map_err(|e| Failure::usage(format!("--agent {keyid}: {e}")))?;
            fixed = fixed.with_key(keyid, resolved);
        }
        let https = if args.resolve_https || file.resolve_https {
            let resolver = HttpsResolver::new(HttpsConfig::default())
                .map_err(|e| Failure::usage(format!("--resolve-https: {e}")))?;
            Some(CachingResolver::new(resolver, CacheConfig::default()))
        } else {
            None
        };

        let mut keys = Vec::new();
        for root in pick(args.roots, file.root) {
            keys.push(public_key(&root).map_err(|e| Failure::usage(format!("--root: {e}")))?);
        }
        let roots = if keys.is_empty() {
            None
        } else {
            Some(RootKeySet::from_keys(keys).map_err(|e| Failure::usage(format!("--root: {e}")))?)
        };
        let audiences = pick(args.audiences, file.audience);
        if roots.is_none() && !audiences.is_empty() {
            return Err(Failure::usage(
                "--audience needs --root: without a token root no token is checked",
            ));
        }
        if audiences.iter().any(String::is_empty) {
            return Err(Failure::usage("--audience: empty audience"));
        }

        let token_header = match args.token_header.or(file.token_header) {
            Some(name) => Some(
                HeaderName::try_from(name.as_str())
                    .map_err(|e| Failure::usage(format!("--token-header {name:?}: {e}")))?,
            ),
            None => None,
        };
        let ops = pick(args.ops, file.op)
            .into_iter()
            .map(|op| match op.split_once(':') {
                Some((tool, action)) if !tool.is_empty() && !action.is_empty() => {
                    Ok((tool.to_owned(), action.to_owned()))
                }
                _ => Err(Failure::usage(format!("--op {op:?}: expected TOOL:OP"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (policy, style) = match args.profile.or(file.profile).unwrap_or(Profile::Mcp) {
            Profile::Mcp => (VerifyPolicy::mcp(), RefusalStyle::Vouch),
            Profile::Envoys => (VerifyPolicy::envoys(), RefusalStyle::Vouch),
            Profile::Sep2752 => (VerifyPolicy::sep2752(), RefusalStyle::Sep2752),
            Profile::WebBotAuth => {
                return Err(Failure::usage(
                    "profile web-bot-auth is for vouch sign and check; vouch serve does not resolve Signature-Agent directories",
                ));
            }
        };
        let signature_agent_keys = args.signature_agent_keys || file.signature_agent_keys;
        if signature_agent_keys && style != RefusalStyle::Sep2752 {
            return Err(Failure::usage(
                "--signature-agent-keys: only with --profile sep2752 (whose keyids are key thumbprints)",
            ));
        }
        let replay = match args.replay.or(file.replay) {
            None => ReplaySetting::Memory(DEFAULT_REPLAY_CAPACITY),
            Some(r) if r == "memory" => ReplaySetting::Memory(DEFAULT_REPLAY_CAPACITY),
            Some(r) if is_redis_url(&r) => ReplaySetting::Redis(r),
            Some(r) => match r.strip_prefix("memory:").map(str::parse::<usize>) {
                Some(Ok(n)) if n > 0 => ReplaySetting::Memory(n),
                _ => {
                    return Err(Failure::usage(format!(
                        "--replay {r:?}: expected memory, memory:N (N > 0) or a redis:// URL"
                    )));
                }
            },
        };
        let rate = match args.rate.or(file.rate) {
            Some(n) => Some(
                NonZeroU32::new(n).ok_or_else(|| Failure::usage("--rate: must be at least 1"))?,
            ),
            None => None,
        };
        Ok(Self {
            origins,
            resolver: Fallback::new(fixed, https),
            allows: pick(args.allows, file.allow),
            roots,
            audiences,
            token_header,
            ops,
            policy,
            style,
            signature_agent_keys,
            replay,
            pins: args.pins.or(file.pins),
            rate,
            metrics,
            log_format,
        })
    }

    /// The signature pipeline for `self.origins` (at least one), with the resolver, policy,
    /// replay store (connecting to Redis), allowlist and pins; the token verifier (`None`
    /// without `--root`); and the metrics (with the in-memory replay store's gauges) if
    /// `--metrics` was given.
    pub(crate) async fn pipelines(
        self,
    ) -> Result<(SignaturePipeline, Option<Verifier>, Option<Metrics>), Failure> {
        let mut origins = self.origins.iter();
        let Some(first) = origins.next() else {
            return Err(Failure::usage("--origin: none given"));
        };
        let mut metrics = self.metrics.map(|_| Metrics::new());
        let mut signature = match &self.replay {
            ReplaySetting::Memory(n) => {
                let store = Arc::new(ShardedReplayStore::new(*n));
                metrics = metrics.map(|m| replay_gauges(m, &store));
                SignaturePipeline::new(first.clone(), self.resolver, store)
            }
            ReplaySetting::Redis(url) => SignaturePipeline::new(
                first.clone(),
                self.resolver,
                RedisReplayStore::connect(url, REDIS_REPLAY_PREFIX)
                    .await
                    .map_err(|e| Failure::usage(format!("--replay: {e}")))?,
            ),
        }
        .policy(self.policy)
        .refusal_style(self.style)
        .signature_agent_keys(self.signature_agent_keys);
        for origin in origins {
            signature = signature.origin(origin.clone());
        }
        if !self.allows.is_empty() {
            let allows = self.allows;
            signature = signature.allowlist(Patterns::new(allows));
        }
        if let Some(pins) = &self.pins {
            signature = if is_redis_url(pins) {
                signature.pins(
                    RedisPinStore::connect(pins, REDIS_PINS_PREFIX)
                        .await
                        .map_err(|e| Failure::usage(format!("--pins: {e}")))?,
                )
            } else {
                signature.pins(
                    FilePinStore::open(pins).map_err(|e| Failure::usage(format!("--pins: {e}")))?,
                )
            };
        }
        let verifier = self.roots.map(|roots| {
            self.audiences
                .into_iter()
                .fold(Verifier::new(roots), Verifier::with_audience)
        });
        Ok((signature, verifier, metrics))
    }
}

/// Starts a multi-threaded runtime, runs `serve` on it, and drops whatever still runs after.
pub(crate) fn run_on_runtime(
    serve: impl Future<Output = Result<(), Failure>>,
) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(serve);
    // Requests still running after the drain are cut.
    runtime.shutdown_background();
    result
}

/// Logs to stderr at level info and above, as text or JSON lines. A subscriber already set (a
/// test harness) is kept.
pub(crate) fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_target(true);
    // `try_init` fails only if a global subscriber is already set: keep that one.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// One log line per decision of the signature and capability layers. The values are fields,
/// escaped by the formatter: a tool name from the network cannot forge a line.
pub(crate) fn log_decision(d: &Decision<'_>) {
    tracing::info!(
        target: "vouch::audit",
        layer = d.layer,
        accepted = d.accepted,
        reason = d.reason,
        identity = d.identity,
        method = d.method,
        tool = d.tool,
        "decision"
    );
}

/// Adds the replay store's entries and bytes to `metrics`, read at each scrape.
fn replay_gauges(metrics: Metrics, store: &Arc<ShardedReplayStore>) -> Metrics {
    let (entries, bytes) = (Arc::clone(store), Arc::clone(store));
    metrics
        .gauge_fn(
            "vouch_gateway_replay_entries",
            "Signatures held by the in-memory replay store",
            move || i64::try_from(entries.len()).unwrap_or(i64::MAX),
        )
        .gauge_fn(
            "vouch_gateway_replay_bytes",
            "Approximate memory held by the in-memory replay store, in bytes",
            move || i64::try_from(bytes.bytes()).unwrap_or(i64::MAX),
        )
}

/// Binds `addr` and serves `metrics` there in the background; the bound address. `command`
/// names the command in the line printed if the listener stops.
pub(crate) async fn serve_metrics(
    command: &'static str,
    addr: SocketAddr,
    metrics: &Metrics,
) -> Result<SocketAddr, Failure> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::usage(format!("--metrics {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::usage(format!("--metrics {addr}: {e}")))?;
    let router = metrics.router();
    tokio::spawn(async move {
        let config = vouch_tower::ServeConfig::default();
        if let Err(e) = vouch_tower::serve(listener, router, config).await {
            eprintln!("vouch {command}: metrics listener stopped: {e}");
        }
    });
    Ok(local)
}

/// Resolves when the server should stop.
pub(crate) type Stop = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>>;

/// Starts listening for SIGTERM and SIGINT now; the future resolves on either.
pub(crate) fn shutdown_signal() -> Result<Stop, Failure> {
    let cannot = |e: std::io::Error| Failure::usage(format!("cannot listen for signals: {e}"));
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(cannot)?;
        let mut int = signal(SignalKind::interrupt()).map_err(cannot)?;
        Ok(Box::pin(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            Ok(())
        }))
    }
    #[cfg(not(unix))]
    {
        Ok(Box::pin(async move {
            tokio::signal::ctrl_c().await.map_err(cannot)
        }))
    }
}

/// Waits until nothing is in flight on `count`, for at most [`DRAIN_TIMEOUT`] in all, then
/// gives the connections [`FLUSH_GRACE`] to flush.
pub(crate) async fn drain(count: &AtomicUsize) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while count.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The last body frame is counted out before hyper has flushed it to the socket.
    tokio::time::sleep(FLUSH_GRACE).await;
}

/// Counts the requests in flight: from the call until the response body is done or dropped.
#[derive(Clone)]
pub(crate) struct InFlight<S> {
    inner: S,
    count: Arc<AtomicUsize>,
}

impl<S> InFlight<S> {
    /// `inner`, counted; [`count`](Self::count) reads the number in flight.
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            count: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The shared count.
    pub(crate) fn count(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.count)
    }
}

/// Takes one off the count when dropped, however the request ends.
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, R, B> tower_service::Service<R> for InFlight<S>
where
    S: tower_service::Service<R, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: http_body::Body + Unpin,
{
    type Response = http::Response<Counted<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.count.fetch_add(1, Ordering::AcqRel);
        let held = Held(Arc::clone(&self.count));
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(response.map(|body| Counted {
                inner: body,
                held: Some(held),
            }))
        })
    }
}

/// A response body that holds its request's place in the count until its last frame.
pub(crate) struct Counted<B> {
    inner: B,
    held: Option<Held>,
}

impl<B: http_body::Body + Unpin> http_body::Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.held = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
