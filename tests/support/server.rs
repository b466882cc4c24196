//! The binary's `server` on port 0: started, read from its `Server running.`
//! line, spoken to over raw HTTP/1.1, inspected through `/proc`, stopped.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{BIN, Run, isolate, read_in_background};

/// Logged once the server listens; it carries the actual port.
pub const RUNNING: &str = "Server running.";

/// How long anything that should happen may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// How long [`Served::finish`] waits after SIGTERM before killing.
const FINISH_WITHIN: Duration = Duration::from_secs(10);

/// Log lines as the server writes them, shared with the thread reading
/// its stderr, and whether stderr has closed.
#[derive(Default)]
struct Lines {
    lines: Mutex<(Vec<String>, bool)>,
    added: Condvar,
}

/// The binary's `server` on port 0; killed when dropped.
pub struct Served {
    child: Child,
    addr: SocketAddr,
    lines: Arc<Lines>,
    stdout: Option<JoinHandle<String>>,
}

/// Starts `server` against `endpoint` with extra arguments.
#[track_caller]
pub fn serve(endpoint: &str, args: &[&str]) -> Served {
    serve_with(Command::new(BIN), endpoint, args, &[]).unwrap_or_else(|output| panic!("{output}"))
}

/// Starts `command` (the binary, or a wrapper running it) as the server
/// with only `env` (and `PATH`) set; on failure, what it printed.
pub fn serve_with(
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
        .args(args);
    isolate(&mut command, env.iter().copied());
    let mut child = command.spawn().expect("start the server");
    let stdout = read_in_background(child.stdout.take().unwrap());
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
        stdout: Some(stdout),
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
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process started, which is the server or the wrapper running it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the first log line with this message; `None` when the
    /// server ends or [`WAIT`] passes first.
    pub fn try_wait_for(&self, message: &str) -> Option<Value> {
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
    pub fn wait_for(&self, message: &str) -> Value {
        self.try_wait_for(message)
            .unwrap_or_else(|| panic!("no {message:?} line\n{}", self.dump()))
    }

    /// Every log line so far; each must be a JSON object.
    #[track_caller]
    pub fn logs(&self) -> Vec<Value> {
        let lines = self.lines.lines.lock().unwrap().0.clone();
        let parse = |line: &String| json(line).unwrap_or_else(|| panic!("not JSON: {line}"));
        lines.iter().map(parse).collect()
    }

    pub fn logs_with(&self, message: &str) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|line| line["message"] == message)
            .collect()
    }

    pub fn output(&self) -> String {
        self.lines.lines.lock().unwrap().0.join("\n")
    }

    pub fn dump(&self) -> String {
        format!("--- server stderr\n{}", self.output())
    }

    /// A numeric field of `/proc/<pid>/status`, such as `VmRSS` (KiB) or
    /// `Threads`.
    pub fn status(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let line = status
            .lines()
            .find(|line| line.starts_with(&format!("{field}:")));
        let value = line.and_then(|line| line.split_whitespace().nth(1));
        value
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}"))
    }

    /// Sends the request, with `Host`, a `Content-Length` when there is a
    /// body, and `Connection: close`.
    #[track_caller]
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
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
        exchange(self.addr, &raw, WAIT)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.dump()))
    }

    #[track_caller]
    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    #[track_caller]
    pub fn post(&self, path: &str) -> Reply {
        self.request("POST", path, &[], b"")
    }

    /// `/metrics` as (series, value) pairs.
    #[track_caller]
    pub fn metrics(&self) -> Vec<(String, String)> {
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
    pub fn metric(&self, series: &str) -> String {
        let found = self.metrics().into_iter().find(|(name, _)| name == series);
        found.unwrap_or_else(|| panic!("no {series} in /metrics")).1
    }

    pub fn signal(&self, pid: u32, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status();
        assert!(status.expect("run kill").success(), "kill -{signal} {pid}");
    }

    /// The exit code, once the process has ended within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
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
    pub fn stop(&mut self, signal: &str) -> (i32, Duration) {
        let started = Instant::now();
        self.signal(self.child.id(), signal);
        let code = self.wait_exit(WAIT);
        let took = started.elapsed();
        let code = code.unwrap_or_else(|| panic!("still running after {signal}\n{}", self.dump()));
        (code, took)
    }

    /// Sends SIGTERM, waits for the exit (SIGKILL after 10 s, leaving
    /// code -1) and returns everything the server printed.
    pub fn finish(mut self) -> Run {
        self.signal(self.child.id(), "TERM");
        let code = self.wait_exit(FINISH_WITHIN).unwrap_or_else(|| {
            let _ = self.child.kill();
            let _ = self.child.wait();
            -1
        });
        let stdout = self.stdout.take().expect("finished once");
        let mut stderr = self.closed_stderr().join("\n");
        stderr.push('\n');
        Run {
            code,
            stdout: stdout.join().unwrap(),
            stderr,
        }
    }

    /// Every stderr line, once the pipe has closed (or [`WAIT`] passed).
    fn closed_stderr(&self) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut state = self.lines.lines.lock().unwrap();
        while !state.1 && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            state = self.lines.added.wait_timeout(state, left).unwrap().0;
        }
        state.0.clone()
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
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    pub body: String,
    /// The client's end of the connection.
    pub local: SocketAddr,
}

impl Reply {
    /// The body as JSON; panics when it is not.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let mut lines = self.head.lines().skip(1);
        let found = lines.find_map(|line| {
            line.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        });
        found.map(|(_, value)| value.trim())
    }

    /// The whole answer, for assertions on what never appears in it.
    pub fn text(&self) -> String {
        format!("{}{}", self.head, self.body)
    }
}

/// Sends raw bytes, then reads the answer until the server closes (or
/// `timeout`); an error when nothing came back.
pub fn exchange(addr: SocketAddr, raw: &[u8], timeout: Duration) -> io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(raw)?;
    read_reply(&mut stream, timeout)
}

/// Reads an answer until the server closes (or `timeout`); an answer
/// followed by a reset still counts.
pub fn read_reply(stream: &mut TcpStream, timeout: Duration) -> io::Result<Reply> {
    let local = stream.local_addr()?;
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::new();
    let mut buf = [0; 8192];
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(_) if !bytes.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    parse_reply(&bytes, local).ok_or_else(|| {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no HTTP answer: {text:?}"),
        )
    })
}

/// The answer in `bytes`, received on a connection whose client end is
/// `local`; `None` when they hold no complete HTTP/1 head.
pub fn parse_reply(bytes: &[u8], local: SocketAddr) -> Option<Reply> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()?;
    Some(Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
        local,
    })
}
