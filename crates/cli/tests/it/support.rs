//! Running the built binary and looking at what it did.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What one run of `vouch` did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) status: i32,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    /// Succeeded; returns stdout.
    #[track_caller]
    pub(crate) fn ok(&self) -> String {
        assert_eq!(self.status, 0, "expected success, got {self:?}");
        self.stdout()
    }

    /// Stdout parsed as JSON, after success.
    #[track_caller]
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok()).expect("stdout is JSON")
    }

    /// Failed with `status`, nothing on stdout, one line on stderr containing `reason`.
    #[track_caller]
    pub(crate) fn fails(&self, status: i32, reason: &str) {
        assert_eq!(self.status, status, "wrong exit status: {self:?}");
        assert!(self.stdout.is_empty(), "stdout must stay empty: {self:?}");
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "the reason is one line: {self:?}"
        );
        assert!(
            self.stderr.contains(reason),
            "stderr should say {reason:?}: {self:?}"
        );
    }

    /// Rejected by a check (status 1).
    #[track_caller]
    pub(crate) fn rejected(&self, reason: &str) {
        self.fails(1, reason);
        assert!(self.stderr.starts_with("vouch: rejected: "), "{self:?}");
    }

    /// Refused as bad usage or unreadable input (status 2).
    #[track_caller]
    pub(crate) fn usage(&self, reason: &str) {
        self.fails(2, reason);
    }
}

/// Runs `vouch args...` in `dir` with `stdin`.
pub(crate) fn vouch_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vouch"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the vouch binary runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .expect("stdin is written");
    let out = child.wait_with_output().expect("vouch exits");
    Run {
        status: out.status.code().expect("vouch exits with a status"),
        stdout: out.stdout,
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// A scratch directory with helpers for running `vouch` in it.
pub(crate) struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn write(&self, name: &str, content: impl AsRef<[u8]>) -> String {
        let path = self.path(name);
        std::fs::write(&path, content).expect("a scratch file is written");
        path.to_string_lossy().into_owned()
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        vouch_in(self.dir.path(), args, b"")
    }

    pub(crate) fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        vouch_in(self.dir.path(), args, stdin)
    }

    /// A new root key file `name`; returns its public key hex.
    pub(crate) fn keygen(&self, name: &str) -> String {
        self.run(&["keygen", "--out", name]).ok().trim().to_owned()
    }
}

/// A file of this crate's test vectors.
pub(crate) fn vector(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A long-running `vouch` (gateway, authz): killed and reaped when dropped.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl KillOnDrop {
    /// Waits up to `limit` for the process to exit; its status code.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends raw bytes to 127.0.0.1:`port`; the status code and the whole response.
pub(crate) fn send(port: u16, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    (status, response)
}

/// Keys, an agent and a token granting `echo`; returns (root hex, agent flag, token).
pub(crate) fn setup(s: &Scratch) -> (String, String, String) {
    let root = s.keygen("root.pem");
    let agent = s.keygen("agent.pem");
    let token = s
        .run(&["mint", "--key", "root.pem", "--tools", "echo"])
        .ok()
        .trim()
        .to_owned();
    (root, format!("agent-a={agent}"), token)
}
