//! Helpers for the integration tests: run the built binary in a clean
//! environment, read its JSON log lines, and serve fakes on loopback.

pub mod fake_hasura;
pub mod server;
pub mod sink;

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use fake_hasura::{FakeHasura, RawAnswer, RecordedRequest, objects};
pub use server::{Reply, Served, serve, serve_with};
pub use sink::Sink;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_hasura-metadata-reloader");

/// The version the binary reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The log messages of SPEC section 5, which the tests look lines up by.
pub const CONSISTENT: &str = "Metadata is consistent.";
/// Logged once when the metadata stays inconsistent.
pub const INCONSISTENT: &str = "Metadata is inconsistent.";
/// Logged before each retry of an inconsistent reload.
pub const RETRYING: &str = "Metadata is still inconsistent, retrying.";
/// Logged once when the procedure fails.
pub const FAILED: &str = "Hasura metadata API request failed.";
/// Logged when `--if-inconsistent` finds nothing to heal.
pub const SKIPPED: &str = "Metadata is consistent, reload skipped.";

/// How long a run may take before the test fails instead of hanging.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A command line for the binary, run with only the variables set here
/// (and `PATH`).
#[derive(Clone, Debug)]
pub struct Reloader {
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    timeout: Duration,
}

/// The binary with these arguments.
pub fn reloader(args: &[&str]) -> Reloader {
    let args = args.iter().map(OsString::from).collect();
    Reloader {
        args,
        env: Vec::new(),
        timeout: DEFAULT_TIMEOUT,
    }
}

/// `COMMAND --hasura-endpoint <fake> --retry-interval 10ms`: quick retries
/// against a fake.
pub fn against(command: &str, fake: &FakeHasura) -> Reloader {
    reloader(&[
        command,
        "--hasura-endpoint",
        fake.url(),
        "--retry-interval",
        "10ms",
    ])
}

impl Reloader {
    /// Appends arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(OsString::from));
        self
    }

    /// Sets an environment variable for the run.
    pub fn env(mut self, name: &str, value: impl Into<OsString>) -> Self {
        self.env.push((name.to_string(), value.into()));
        self
    }

    /// Fails the test when the run takes longer than this.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the binary to its end and captures what it printed.
    #[track_caller]
    pub fn run(&self) -> Run {
        let mut command = Command::new(BIN);
        command.args(&self.args);
        isolate(&mut command, self.env.iter().map(|(k, v)| (k, v)));
        let mut child = command.spawn().expect("start the binary");
        let stdout = read_in_background(child.stdout.take().unwrap());
        let stderr = read_in_background(child.stderr.take().unwrap());
        let code = wait(&mut child, self.timeout);
        let run = Run {
            code: code.unwrap_or(-1),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        };
        if code.is_none() {
            panic!(
                "{self:?} still running after {:?}, killed\n{}",
                self.timeout,
                run.dump()
            );
        }
        run
    }
}

/// Gives `command` only `env` and `PATH` as its environment, no stdin, and
/// piped stdout and stderr.
fn isolate<K, V>(command: &mut Command, env: impl IntoIterator<Item = (K, V)>)
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    command.env_clear().envs(env);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8(bytes).expect("the binary prints UTF-8")
    })
}

/// Waits for the exit code; kills the child and gives `None` past the deadline.
fn wait(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the binary") {
            // A signal leaves no code; -1 stands for it.
            return Some(status.code().unwrap_or(-1));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// What one run of the binary left behind.
#[derive(Debug)]
pub struct Run {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{}", self.dump());
        self
    }

    /// Every stderr line as JSON; fails when a line is not a JSON object
    /// with `level`, `time` and `message`.
    #[track_caller]
    pub fn logs(&self) -> Vec<Value> {
        self.stderr
            .lines()
            .map(|line| self.parse_log(line))
            .collect()
    }

    #[track_caller]
    fn parse_log(&self, line: &str) -> Value {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}\n{}", self.dump()));
        let level = value["level"].as_str().unwrap_or_default();
        let levels = ["error", "warn", "info", "debug", "trace"];
        assert!(levels.contains(&level), "bad level in {line}");
        assert!(
            is_rfc3339(value["time"].as_str().unwrap_or_default()),
            "bad time in {line}"
        );
        assert!(value["message"].is_string(), "no message in {line}");
        value
    }

    /// The one log line with this message; fails when there is none or
    /// several.
    #[track_caller]
    pub fn log(&self, message: &str) -> Value {
        let mut found = self.logs_with(message);
        match found.len() {
            1 => found.remove(0),
            n => panic!("{n} log lines with message {message:?}\n{}", self.dump()),
        }
    }

    /// Every log line with this message.
    #[track_caller]
    pub fn logs_with(&self, message: &str) -> Vec<Value> {
        let logs = self.logs().into_iter();
        logs.filter(|line| line["message"] == message).collect()
    }

    /// The failure line, after checking exit code 3 and that no
    /// inconsistency was reported.
    #[track_caller]
    pub fn failure(&self) -> Value {
        self.expect_code(3);
        assert!(
            self.logs_with(INCONSISTENT).is_empty(),
            "reported an inconsistency\n{}",
            self.dump()
        );
        let line = self.log(FAILED);
        assert_eq!(line["level"], "error", "{line}");
        assert!(
            line["kind"].as_str().is_some_and(|k| !k.is_empty()),
            "no kind in {line}"
        );
        assert!(
            line["error"].as_str().is_some_and(|e| !e.is_empty()),
            "no error in {line}"
        );
        line
    }

    /// The single plain line of a usage or configuration error, after
    /// checking the exit code 2 and that stdout is empty.
    #[track_caller]
    pub fn usage_error(&self) -> &str {
        self.expect_code(2);
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one line on stderr\n{}",
            self.dump()
        );
        lines[0]
    }

    /// stdout and stderr together, for assertions on what never appears.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The run, readable in a failure message.
    pub fn dump(&self) -> String {
        format!(
            "exit code: {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`, the shape RFC 3339 gives.
fn is_rfc3339(time: &str) -> bool {
    let bytes = time.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        range
            .into_iter()
            .all(|i| bytes.get(i).is_some_and(u8::is_ascii_digit))
    };
    let shape = digits(0..4)
        && bytes.get(4) == Some(&b'-')
        && digits(5..7)
        && bytes.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(bytes.get(10), Some(b'T' | b't'))
        && digits(11..13)
        && digits(14..16)
        && digits(17..19);
    let zone = time.ends_with('Z') || time.ends_with('z') || {
        let tail = &time[time.len().saturating_sub(6)..];
        tail.len() == 6 && matches!(&tail[..1], "+" | "-") && &tail[3..4] == ":"
    };
    shape && zone
}

/// Asserts what the contract asks of every metadata request: `POST
/// /v1/metadata`, a JSON content type, the admin secret and the user agent.
#[track_caller]
pub fn assert_metadata_request(request: &RecordedRequest, secret: &str) {
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/metadata");
    let content_type = request.header("content-type").unwrap_or_default();
    assert_eq!(
        content_type.split(';').next().unwrap().trim(),
        "application/json"
    );
    assert_eq!(request.header("x-hasura-admin-secret"), Some(secret));
    let user_agent = format!("hasura-metadata-reloader/{VERSION}");
    assert_eq!(request.header("user-agent"), Some(user_agent.as_str()));
}

/// A loopback port where nothing listens, so connecting is refused.
pub fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A file under the system temporary folder, unique to this test process,
/// holding `contents`.
pub fn temp_file(name: &str, contents: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let unique = NEXT.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("reloader-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temporary folder");
    let path = dir.join(format!("{unique}-{name}"));
    std::fs::write(&path, contents).expect("write a temporary file");
    path
}

/// A certificate authority and a server certificate it signed for
/// `localhost` and `127.0.0.1`, all PEM.
pub struct TestCertificates {
    /// The CA certificate, to trust.
    pub ca_pem: String,
    /// The server certificate followed by the CA.
    pub chain_pem: String,
    /// The server's private key.
    pub key_pem: String,
}

/// Makes a fresh [`TestCertificates`].
pub fn test_certificates() -> TestCertificates {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    TestCertificates {
        ca_pem: ca.pem(),
        chain_pem: format!("{}{}", cert.pem(), ca.pem()),
        key_pem: key.serialize_pem(),
    }
}
