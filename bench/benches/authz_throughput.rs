//! Issue 14's comparison (report only, no goal): Envoy → 2 × `vouch authz` → upstream, against
//! `vouch gateway` → upstream and the in-process `Protected` server, in one run; then where the
//! time goes on the Envoy side (CPU per request of Envoy, of each `vouch authz` replica and of
//! the upstream).
//!
//! Same tool server, load generator, signing identity, token and pre-signed requests as
//! `gateway_throughput` (`vouch_bench::rmcp_load`); all three answer to [`PUBLIC_ORIGIN`], so the
//! very same signed requests go to each, and every side starts each round with empty replay
//! stores (fresh servers, fresh processes).
//!
//! - `Protected`: one thread in this process (a current-thread tokio runtime).
//! - gateway → upstream: one thread in this process serving both (as `gateway_throughput`).
//! - Envoy → 2 × authz → upstream: Envoy 1.40 (`$ENVOY_BIN`, `--concurrency 1
//!   --use-dynamic-base-id -l warning`, admin on 127.0.0.1:0) on `examples/envoy/envoy.yaml`, the
//!   example's own template (ext_authz over gRPC, round robin over two replicas, health checks on
//!   their `--http` ports), its `${...}` ports filled in here; two `vouch authz` processes
//!   (`$VOUCH_BIN`, each its own tokio multi-thread runtime, in-memory replay store of 1 M
//!   entries, per-identity rate 1 000 000/s so it never limits, decision log on stderr at info
//!   as deployed, written to a file); the unprotected upstream on one thread of this process.
//!   Everything is started afresh each round and killed after it (and on panic: [`Children`]).
//!
//! `cargo xtask bench` builds `vouch` (`-p vouch-cli --release`) and the interop venv (Envoy)
//! first and passes `VOUCH_BIN` and `ENVOY_BIN`; run directly, set both (the bench stops with a
//! message naming what is missing).
//!
//! The load generator runs on this process's main thread. Rounds alternate the three sides
//! (rotating which goes first); rounds are pooled. Throughput at `CONNECTIONS` connections,
//! then latency at one connection.
//!
//! CPU per request: `utime + stime` from `/proc/<pid>/stat` of Envoy and of each replica, and of
//! this process's threads by name (`/proc/self/task/*/stat`: the upstream's, the
//! `Protected` and gateway threads', the load generator's), read before and after each run, over
//! the requests answered in the whole run (warmup included). Clock-tick resolution (usually
//! 10 ms): a few tenths of a µs per request at these rates.
//!
//! Writes `target/vouch-bench/authz-throughput.json` for `cargo xtask bench`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a bench: a broken fixture is a failed run"
)]

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vouch_bench::rmcp_load::{
    self, AGENT, Load, Measured, Prepared, Samples, listener, on_one_thread, operations, protected,
    root, signatures, signed_requests, unprotected,
};
use vouch_token::KeyPair;
use vouch_tower::{Origin, ServeConfig};

const PUBLIC_ORIGIN: &str = "http://localhost:9421";
const CONNECTIONS: usize = 16;
const ROUNDS: usize = 3;
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(2);
const LATENCY_ROUNDS: usize = 2;
const LATENCY_MEASURE: Duration = Duration::from_millis(1500);
/// Pre-signed requests: more than any side can serve in one warmup + measure.
const SIGNED_REQUESTS: usize = 60_000;
const REPLAY_CAPACITY: usize = SIGNED_REQUESTS * 2;
/// Each replica's in-memory replay store (its per-identity share is a tenth: 100 000 nonces,
/// more than one run sends).
const AUTHZ_REPLAY: &str = "memory:1000000";
/// The agent's key seed, as `rmcp_load` signs with.
const AGENT_SEED: [u8; 32] = [1; 32];
/// The thread names whose CPU is read.
const UPSTREAM_THREAD: &str = "authz-upstream";
const PROTECTED_THREAD: &str = "protected";
const GATEWAY_THREAD: &str = "gateway";

fn public_origin() -> Origin {
    PUBLIC_ORIGIN.parse().unwrap()
}

fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("vouch-bench")
        .join("authz");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A binary named by `var`, or a clear stop.
fn binary(var: &str, what: &str) -> PathBuf {
    let Some(path) = std::env::var_os(var).map(PathBuf::from) else {
        panic!(
            "authz_throughput needs {var}: {what}. `cargo xtask bench` sets it (it builds vouch \
             and the interop venv first); run directly, set it yourself"
        );
    };
    assert!(
        path.is_file(),
        "{var}={}: no such file ({what})",
        path.display()
    );
    path
}

async fn serve(listener: std::net::TcpListener, app: axum::Router) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    vouch_tower::serve(listener, app, ServeConfig::default())
        .await
        .unwrap();
}

fn start_protected() -> SocketAddr {
    let (l, addr) = listener();
    let app = protected(signatures(public_origin(), REPLAY_CAPACITY));
    on_one_thread(PROTECTED_THREAD, move || serve(l, app));
    addr
}

fn start_gateway() -> SocketAddr {
    let (upstream_listener, upstream) = listener();
    let (l, addr) = listener();
    let app = rmcp_load::gateway(upstream, public_origin(), REPLAY_CAPACITY);
    on_one_thread(GATEWAY_THREAD, move || async move {
        let upstream_listener = tokio::net::TcpListener::from_std(upstream_listener).unwrap();
        tokio::spawn(async move {
            axum::serve(upstream_listener, unprotected()).await.unwrap();
        });
        serve(l, app).await;
    });
    addr
}

/// Child processes, killed (and reaped) when dropped, a panic included.
#[derive(Default)]
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Children {
    fn pid(&self, name: &str) -> u32 {
        self.0.iter().find(|(n, _)| n == name).unwrap().1.id()
    }

    /// Panics with the log if `name` has exited.
    fn check_alive(&mut self, name: &str, log: &Path) {
        let (_, child) = self.0.iter_mut().find(|(n, _)| n == name).unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{name} exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

/// The Envoy side of one round: Envoy, the two replicas, the upstream thread.
struct EnvoyStack {
    children: Children,
    addr: SocketAddr,
}

impl EnvoyStack {
    fn start(vouch: &Path, envoy: &Path, round: usize) -> Self {
        let dir = work_dir();
        let mut children = Children::default();
        // The upstream, unprotected, on one thread of this process.
        let (upstream_listener, upstream) = listener();
        rmcp_load::serve_on_one_thread(UPSTREAM_THREAD, upstream_listener, unprotected());

        let agent = KeyPair::from_seed(&AGENT_SEED)
            .unwrap()
            .public_key()
            .to_hex();
        let mut ports = Vec::new();
        for i in 1..=2 {
            let name = format!("authz{i}");
            let log = dir.join(format!("authz-{i}.log"));
            let err = std::fs::File::create(&log).unwrap();
            let mut ops = Vec::new();
            for (tool, op) in operations().iter() {
                ops.push("--op".to_owned());
                ops.push(format!("{tool}:{op}"));
            }
            let child = Command::new(vouch)
                .args(["authz", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
                .args(["--origin", PUBLIC_ORIGIN])
                .arg("--agent")
                .arg(format!("{AGENT}={agent}"))
                .arg("--root")
                .arg(root().public_key().to_hex())
                .args(ops)
                .args(["--replay", AUTHZ_REPLAY, "--rate", "1000000"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("{}: {e}", vouch.display()));
            children.0.push((name.clone(), child));
            // "vouch authz: grpc 127.0.0.1:P, http 127.0.0.1:Q, origin ..."
            let line = wait_for(&log, "vouch authz:", || children.check_alive(&name, &log));
            let port = |kind: &str| -> u16 {
                let at = line.find(&format!("{kind} ")).unwrap() + kind.len() + 1;
                let addr: String = line[at..]
                    .chars()
                    .take_while(|c| *c != ',' && !c.is_whitespace())
                    .collect();
                addr.parse::<SocketAddr>().unwrap().port()
            };
            ports.push((port("grpc"), port("http")));
        }

        let envoy_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let template_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("examples")
            .join("envoy")
            .join("envoy.yaml");
        let mut config = std::fs::read_to_string(&template_path).unwrap();
        for (name, port) in [
            ("ENVOY_PORT", envoy_port),
            ("UPSTREAM_PORT", upstream.port()),
            ("AUTHZ1_GRPC", ports[0].0),
            ("AUTHZ1_HTTP", ports[0].1),
            ("AUTHZ2_GRPC", ports[1].0),
            ("AUTHZ2_HTTP", ports[1].1),
        ] {
            config = config.replace(&format!("${{{name}}}"), &port.to_string());
        }
        assert!(
            !config
                .lines()
                .any(|l| !l.trim_start().starts_with('#') && l.contains("${")),
            "{}: a placeholder was not filled in",
            template_path.display()
        );
        let config_path = dir.join(format!("envoy-{round}.yaml"));
        std::fs::write(&config_path, config).unwrap();
        let admin_path = dir.join("envoy-admin");
        let _ = std::fs::remove_file(&admin_path);
        let log = dir.join("envoy.log");
        let child = Command::new(envoy)
            .arg("-c")
            .arg(&config_path)
            .args([
                "--concurrency",
                "1",
                "--use-dynamic-base-id",
                "-l",
                "warning",
            ])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", envoy.display()));
        children.0.push(("envoy".to_owned(), child));
        // Ready once the admin says LIVE: after the replicas passed their first health check.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            children.check_alive("envoy", &log);
            if let Ok(admin) = std::fs::read_to_string(&admin_path)
                && let Some(body) = http_get(admin.trim(), "/ready")
                && body.contains("LIVE")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "envoy not ready after 30 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            children,
            addr: SocketAddr::from(([127, 0, 0, 1], envoy_port)),
        }
    }
}

/// Waits (10 s at most) for a line of `log` containing `needle`; calls `alive` between tries.
fn wait_for(log: &Path, needle: &str, mut alive: impl FnMut()) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(f) = std::fs::File::open(log)
            && let Some(line) = std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .find(|l| l.contains(needle))
        {
            return line;
        }
        alive();
        assert!(
            Instant::now() < deadline,
            "{}: no {needle:?}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// GET `path` from `addr` (HTTP/1.1, `Connection: close`: Envoy refuses HTTP/1.0): the body of a 200, else `None`.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    (status.split_whitespace().nth(1) == Some("200")).then(|| body.to_owned())
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 if that fails).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// CPU time in clock ticks: user (utime) and kernel (stime).
#[derive(Debug, Default, Clone, Copy)]
struct Ticks {
    user: u64,
    sys: u64,
}

impl std::ops::Add for Ticks {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            user: self.user + o.user,
            sys: self.sys + o.sys,
        }
    }
}

impl std::ops::Sub for Ticks {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self {
            user: self.user.saturating_sub(o.user),
            sys: self.sys.saturating_sub(o.sys),
        }
    }
}

/// utime and stime of a `stat` file.
fn stat_ticks(path: &Path) -> Ticks {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let Some((_, rest)) = text.rsplit_once(')') else {
        return Ticks::default();
    };
    // After "pid (comm)": state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let f = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ticks {
        user: f(14),
        sys: f(15),
    }
}

fn process_ticks(pid: u32) -> Ticks {
    stat_ticks(&Path::new("/proc").join(pid.to_string()).join("stat"))
}

/// utime + stime of this process's threads called `name`, in ticks.
fn thread_ticks(name: &str) -> Ticks {
    let mut sum = Ticks::default();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            sum = sum + stat_ticks(&task.path().join("stat"));
        }
    }
    sum
}

/// The calling thread's utime + stime, in ticks (the load generator runs on it).
fn own_ticks() -> Ticks {
    stat_ticks(Path::new("/proc/thread-self/stat"))
}

/// CPU ticks spent per component over some runs, and the requests they answered.
#[derive(Debug, Default, Clone)]
struct Cpu {
    parts: Vec<(String, Ticks)>,
    requests: usize,
}

impl Cpu {
    fn add(&mut self, part: &str, ticks: Ticks) {
        match self.parts.iter_mut().find(|(n, _)| n == part) {
            Some((_, t)) => *t = *t + ticks,
            None => self.parts.push((part.to_owned(), ticks)),
        }
    }

    /// (component, µs per request, of which in the kernel).
    fn per_request(&self, hz: f64) -> Vec<(String, f64, f64)> {
        let us = |t: u64| t as f64 / hz * 1e6 / self.requests.max(1) as f64;
        self.parts
            .iter()
            .map(|(n, t)| (n.clone(), us(t.user + t.sys), us(t.sys)))
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Protected,
    Gateway,
    Envoy,
}

/// One run of `load` on a fresh `side`, with its CPU by component.
fn one(
    side: Side,
    signed: &Arc<Vec<Prepared>>,
    load: Load,
    bins: (&Path, &Path),
    round: usize,
    cpu: &mut Cpu,
) -> Samples {
    match side {
        Side::Protected => {
            let addr = start_protected();
            let (t0, l0) = (thread_ticks(PROTECTED_THREAD), own_ticks());
            let s = rmcp_load::sample(addr, signed, false, load);
            cpu.add("Protected thread", thread_ticks(PROTECTED_THREAD) - t0);
            cpu.add("load generator", own_ticks() - l0);
            cpu.requests += s.sent;
            s
        }
        Side::Gateway => {
            let addr = start_gateway();
            let (t0, l0) = (thread_ticks(GATEWAY_THREAD), own_ticks());
            let s = rmcp_load::sample(addr, signed, false, load);
            cpu.add(
                "gateway + upstream thread",
                thread_ticks(GATEWAY_THREAD) - t0,
            );
            cpu.add("load generator", own_ticks() - l0);
            cpu.requests += s.sent;
            s
        }
        Side::Envoy => {
            let stack = EnvoyStack::start(bins.0, bins.1, round);
            let pids = [
                ("envoy", stack.children.pid("envoy")),
                ("authz replica 1", stack.children.pid("authz1")),
                ("authz replica 2", stack.children.pid("authz2")),
            ];
            let before: Vec<Ticks> = pids.iter().map(|(_, p)| process_ticks(*p)).collect();
            let (u0, l0) = (thread_ticks(UPSTREAM_THREAD), own_ticks());
            let s = rmcp_load::sample(stack.addr, signed, false, load);
            let (u1, l1) = (thread_ticks(UPSTREAM_THREAD), own_ticks());
            for ((name, pid), b) in pids.iter().zip(before) {
                cpu.add(name, process_ticks(*pid) - b);
            }
            cpu.add("upstream thread", u1 - u0);
            cpu.add("load generator", l1 - l0);
            cpu.requests += s.sent;
            drop(stack);
            s
        }
    }
}

const SIDES: [Side; 3] = [Side::Protected, Side::Gateway, Side::Envoy];

/// `rounds` rounds of each side, the order rotated each round: (measured, CPU) per side.
fn compare(
    signed: &Arc<Vec<Prepared>>,
    rounds: usize,
    load: Load,
    bins: (&Path, &Path),
) -> Vec<(Measured, Cpu)> {
    let mut samples: Vec<Vec<Samples>> = vec![Vec::new(); 3];
    let mut cpus = vec![Cpu::default(); 3];
    for round in 0..rounds {
        for k in 0..3 {
            let i = (round + k) % 3;
            let s = one(SIDES[i], signed, load, bins, round, &mut cpus[i]);
            samples[i].push(s);
        }
    }
    samples
        .iter()
        .zip(cpus)
        .map(|(s, c)| (Measured::of(s), c))
        .collect()
}

const NAMES: [&str; 3] = [
    "Protected",
    "gateway -> upstream",
    "Envoy -> 2 x authz -> upstream",
];
const KEYS: [&str; 3] = ["protected", "gateway", "envoy"];

fn row(name: &str, m: &Measured) {
    println!(
        "  {name:<34} {:>9.0} {:>9} {:>9} {:>9}",
        m.rps, m.p50_us, m.p99_us, m.requests
    );
}

fn main() {
    if rmcp_load::filtered_out("authz_throughput") {
        return;
    }
    let vouch = binary(
        "VOUCH_BIN",
        "the vouch command (cargo build -p vouch-cli --release)",
    );
    let envoy = binary(
        "ENVOY_BIN",
        "Envoy 1.40 (target/interop/venv/bin/envoy, from `cargo xtask interop`'s venv)",
    );
    let bins = (vouch.as_path(), envoy.as_path());
    let hz = clock_ticks();
    let throughput = Load::new(CONNECTIONS, WARMUP, MEASURE);
    let latency = Load::new(1, WARMUP, LATENCY_MEASURE);

    eprintln!("signing {SIGNED_REQUESTS} requests for {PUBLIC_ORIGIN} before the clock starts ...");
    let signed: Arc<Vec<Prepared>> = Arc::new(signed_requests(&public_origin(), SIGNED_REQUESTS));
    let many = compare(&signed, ROUNDS, throughput, bins);
    let single = compare(&signed, LATENCY_ROUNDS, latency, bins);

    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!();
    println!("rmcp tools/call, stateless JSON: Protected vs gateway vs Envoy + 2 x vouch authz");
    println!(
        "layout: {cpus} CPUs; Protected on one thread; gateway + upstream on one thread; Envoy \
         (--concurrency 1) + 2 vouch authz processes + upstream on one thread; load generator \
         on its own thread; all on 127.0.0.1"
    );
    println!(
        "  {:<34} {:>9} {:>9} {:>9} {:>9}",
        "", "req/s", "p50 µs", "p99 µs", "requests"
    );
    println!(
        "{CONNECTIONS} connections ({ROUNDS} rounds of {} s each, pooled)",
        MEASURE.as_secs_f64()
    );
    for (name, (m, _)) in NAMES.iter().zip(&many) {
        row(name, m);
    }
    println!(
        "1 connection ({LATENCY_ROUNDS} rounds of {} s each, pooled)",
        LATENCY_MEASURE.as_secs_f64()
    );
    for (name, (m, _)) in NAMES.iter().zip(&single) {
        row(name, m);
    }
    println!(
        "CPU per request, {CONNECTIONS} connections (utime+stime over whole runs, warmup included; of which stime):"
    );
    let (mut cpu_json, mut cpu_sys_json) = (serde_json::Map::new(), serde_json::Map::new());
    for (key, (name, (_, cpu))) in KEYS.iter().zip(NAMES.iter().zip(&many)) {
        let parts = cpu.per_request(hz);
        let text: Vec<String> = parts
            .iter()
            .map(|(n, us, sys)| format!("{n} {us:.1} µs (kernel {sys:.1})"))
            .collect();
        println!("  {name}: {}", text.join(", "));
        cpu_json.insert(
            (*key).to_owned(),
            serde_json::Value::Object(
                parts
                    .iter()
                    .map(|(n, us, _)| (n.clone(), serde_json::json!(us)))
                    .collect(),
            ),
        );
        cpu_sys_json.insert(
            (*key).to_owned(),
            serde_json::Value::Object(
                parts
                    .into_iter()
                    .map(|(n, _, sys)| (n, serde_json::json!(sys)))
                    .collect(),
            ),
        );
    }
    let json = serde_json::json!({
        "connections": CONNECTIONS,
        "cpus": cpus,
        "protected": many[0].0.json(),
        "gateway": many[1].0.json(),
        "envoy": many[2].0.json(),
        "protected_1": single[0].0.json(),
        "gateway_1": single[1].0.json(),
        "envoy_1": single[2].0.json(),
        "cpu_us_per_request": cpu_json,
        "cpu_kernel_us_per_request": cpu_sys_json,
    });
    rmcp_load::write_result("authz-throughput.json", &json);
}
