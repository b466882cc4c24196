//! `server` against the fake Hasura: every route and status, single
//! flight, the auth token, `/metrics`, the watcher, idle and slow clients,
//! and shutdown on signals, PID 1 included. The server listens on port 0
//! and each test reads the port from its `Server running.` line.

// Routes, statuses and bodies, single flight, the token, `/metrics`.
mod routes;

// The watcher: checks, healing, recovery.
mod watch;

// Idle, slow and crowding clients, and bodies that are never read.
mod clients;

// Start-up errors, and stopping on SIGTERM and SIGINT, also as PID 1.
mod lifecycle;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::support::{
    BIN, CONSISTENT, FAILED, FakeHasura, INCONSISTENT, RawAnswer, objects, refused_url, reloader,
};

const RUNNING: &str = "Server running.";
const STOPPED: &str = "Server stopped.";
const RECOVERED: &str = "Metadata recovered.";
const REQUESTED: &str = "Reload requested.";

/// How long anything that should happen may take before the test fails.
const WAIT: Duration = Duration::from_secs(30);

/// SPEC: an idle server stops within 1 s of SIGTERM.
const IDLE_STOP: Duration = Duration::from_secs(1);

/// Log lines as the server writes them, shared with the thread reading
/// its stderr.
#[derive(Default)]
struct Lines {
    lines: Mutex<(Vec<String>, bool)>,
    added: Condvar,
}

/// The binary's `server` on port 0; killed when dropped.
struct Served {
    child: Child,
    addr: SocketAddr,
    lines: Arc<Lines>,
}

/// Starts `server` against `endpoint` with extra arguments.
#[track_caller]
fn serve(endpoint: &str, args: &[&str]) -> Served {
    serve_with(Command::new(BIN), endpoint, args, &[]).unwrap_or_else(|output| panic!("{output}"))
}

/// Starts `command` (the binary, or a wrapper running it) as the server;
/// on failure, what it printed.
fn serve_with(
    mut command: Command,
    endpoint: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Served, String> {
    command
        .args([
            "server",
            "--hasura-endpoint",
            endpoint,
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
        ])
        .args(["--retry-interval", "10ms"])
        .args(args)
        .env_clear()
        .envs(env.iter().copied());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start the server");
    let lines = Arc::new(Lines::default());
    let stderr = child.stderr.take().unwrap();
    let sink = Arc::clone(&lines);
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lines.lock().unwrap().0.push(line);
            sink.added.notify_all();
        }
        sink.lines.lock().unwrap().1 = true;
        sink.added.notify_all();
    });
    let mut served = Served {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        lines,
    };
    let Some(running) = served.try_wait_for(RUNNING) else {
        let _ = served.child.kill();
        let _ = served.child.wait();
        return Err(format!("the server did not start\n{}", served.dump()));
    };
    let port = running["port"]
        .as_u64()
        .expect("the actual port in the start line");
    served.addr.set_port(u16::try_from(port).unwrap());
    Ok(served)
}

impl Served {
    /// Waits for the first log line with this message; `None` when the
    /// server ends or [`WAIT`] passes first.
    fn try_wait_for(&self, message: &str) -> Option<Value> {
        let deadline = Instant::now() + WAIT;
        let mut state = self.lines.lines.lock().unwrap();
        loop {
            if let Some(line) = state
                .0
                .iter()
                .filter_map(|l| json(l))
                .find(|l| l["message"] == message)
            {
                return Some(line);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if state.1 || left.is_zero() {
                return None;
            }
            state = self.lines.added.wait_timeout(state, left).unwrap().0;
        }
    }

    #[track_caller]
    fn wait_for(&self, message: &str) -> Value {
        self.try_wait_for(message)
            .unwrap_or_else(|| panic!("no {message:?} line\n{}", self.dump()))
    }

    /// Every log line so far; each must be a JSON object.
    #[track_caller]
    fn logs(&self) -> Vec<Value> {
        let lines = self.lines.lines.lock().unwrap().0.clone();
        let parse = |line: &String| json(line).unwrap_or_else(|| panic!("not JSON: {line}"));
        lines.iter().map(parse).collect()
    }

    fn logs_with(&self, message: &str) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|line| line["message"] == message)
            .collect()
    }

    fn output(&self) -> String {
        self.lines.lines.lock().unwrap().0.join("\n")
    }

    fn dump(&self) -> String {
        format!("--- server stderr\n{}", self.output())
    }

    /// Sends the request, with `Host`, a `Content-Length` when there is a
    /// body, and `Connection: close`.
    #[track_caller]
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body);
        exchange(self.addr, &raw)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.dump()))
    }

    #[track_caller]
    fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    #[track_caller]
    fn post(&self, path: &str) -> Reply {
        self.request("POST", path, &[], b"")
    }

    /// `/metrics` as (series, value) pairs.
    #[track_caller]
    fn metrics(&self) -> Vec<(String, String)> {
        let reply = self.get("/metrics");
        assert_eq!(reply.status, 200, "{reply:?}");
        let samples = reply.body.lines().filter(|line| !line.starts_with('#'));
        let split = |line: &str| {
            line.rsplit_once(' ')
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
        };
        samples
            .map(|line| split(line).expect("a sample line"))
            .collect()
    }

    #[track_caller]
    fn metric(&self, series: &str) -> String {
        let found = self.metrics().into_iter().find(|(name, _)| name == series);
        found.unwrap_or_else(|| panic!("no {series} in /metrics")).1
    }

    fn signal(&self, pid: u32, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status();
        assert!(status.expect("run kill").success(), "kill -{signal} {pid}");
    }

    /// The exit code, once the process has ended within `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `signal` and returns the exit code and how long the exit took.
    #[track_caller]
    fn stop(&mut self, signal: &str) -> (i32, Duration) {
        let started = Instant::now();
        self.signal(self.child.id(), signal);
        let code = self.wait_exit(WAIT);
        let took = started.elapsed();
        let code = code.unwrap_or_else(|| panic!("still running after {signal}\n{}", self.dump()));
        (code, took)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(line: &str) -> Option<Value> {
    serde_json::from_str::<Value>(line)
        .ok()
        .filter(Value::is_object)
}

/// An HTTP answer as received.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
    /// The client's end of the connection.
    local: SocketAddr,
}

impl Reply {
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    fn header(&self, name: &str) -> Option<&str> {
        let mut lines = self.head.lines().skip(1);
        let found = lines.find_map(|line| {
            line.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        });
        found.map(|(_, value)| value.trim())
    }
}

/// Sends raw bytes and reads the answer until the server closes.
fn exchange(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT)?;
    stream.set_read_timeout(Some(WAIT))?;
    stream.write_all(raw)?;
    read_reply(&mut stream)
}

fn read_reply(stream: &mut TcpStream) -> std::io::Result<Reply> {
    let local = stream.local_addr()?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let invalid = || std::io::Error::new(ErrorKind::InvalidData, format!("not HTTP: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(invalid)?;
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(invalid)?;
    Ok(Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
        local,
    })
}

/// Polls `condition` every 10 ms until it holds, or fails after [`WAIT`].
#[track_caller]
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let entries = std::fs::read_dir("/proc").unwrap().filter_map(Result::ok);
    let pids = entries.filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok());
    pids.filter(|child| {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        // `pid (comm) state ppid …`; the command name may hold spaces.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        after.split_whitespace().nth(1) == Some(&pid.to_string())
    })
    .collect()
}

fn thread_count(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
