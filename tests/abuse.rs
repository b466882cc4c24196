//! `server` under hostile clients: malformed requests, huge headers and
//! bodies, hundreds of idle connections, clients that trickle one byte a
//! second. Throughout, `/healthz` keeps answering and the process keeps
//! its memory and threads bounded. Loopback only; every loop is bounded.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::support::{BIN, FakeHasura, Run};

/// Resident memory the server may use under any of these loads.
const RSS_LIMIT_KIB: u64 = 32 * 1024;

/// Threads the server may run under any of these loads: a fixed pool and
/// its helpers, far fewer than the hundreds of connections thrown at it.
const THREAD_LIMIT: u64 = 128;

/// How fast `/healthz` must answer, whatever else goes on.
const HEALTHZ_WITHIN: Duration = Duration::from_secs(3);

/// How long a test waits for any one answer before calling it missing.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// The binary's `server` on a free loopback port; killed when dropped.
pub struct Server {
    child: Child,
    addr: SocketAddr,
    output: Option<(JoinHandle<String>, JoinHandle<String>)>,
}

impl Server {
    /// Starts `server` against `hasura` with `args` and `env` added, and
    /// waits until `/healthz` answers.
    #[track_caller]
    pub fn start(hasura: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        for _ in 0..3 {
            let port = free_port();
            let mut command = Command::new(BIN);
            command
                .args(["server", "--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--hasura-endpoint", hasura, "--retry-interval", "10ms"])
                .args(args)
                .env_clear()
                .envs(env.iter().copied());
            if let Some(path) = std::env::var_os("PATH") {
                command.env("PATH", path);
            }
            command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = command.spawn().expect("start the server");
            let output = Some((read_all(child.stdout.take()), read_all(child.stderr.take())));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut server = Server {
                child,
                addr,
                output,
            };
            if server.wait_ready() {
                return server;
            }
            let run = server.stop();
            // Another process may have taken the port meanwhile: try another.
            if !run.stderr.to_lowercase().contains("in use") {
                panic!("the server did not start\n{}", run.dump());
            }
        }
        panic!("no free port for the server after 3 tries");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            if exchange(self.addr, request, Duration::from_secs(1)).is_ok_and(|a| a.status == 200) {
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A numeric field of `/proc/<pid>/status`, such as `VmRSS` (KiB) or
    /// `Threads`.
    pub fn status(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let line = status
            .lines()
            .find(|line| line.starts_with(&format!("{field}:")));
        let value = line.and_then(|line| line.split_whitespace().nth(1));
        value
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}"))
    }

    /// Asserts that memory and threads stay within their limits.
    #[track_caller]
    pub fn assert_bounded(&self, phase: &str) {
        let (rss, threads) = (self.status("VmRSS"), self.status("Threads"));
        assert!(
            rss < RSS_LIMIT_KIB,
            "{phase}: VmRSS {rss} KiB, limit {RSS_LIMIT_KIB} KiB"
        );
        assert!(
            threads <= THREAD_LIMIT,
            "{phase}: {threads} threads, limit {THREAD_LIMIT}"
        );
    }

    /// Asserts that `/healthz` answers 200 `{"status":"ok"}` promptly.
    #[track_caller]
    pub fn assert_healthy(&self, phase: &str) {
        let request = format!(
            "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let started = Instant::now();
        let answer = exchange(self.addr, request.as_bytes(), HEALTHZ_WITHIN);
        let took = started.elapsed();
        let answer =
            answer.unwrap_or_else(|e| panic!("{phase}: /healthz gave no answer in {took:?}: {e}"));
        assert_eq!(answer.status, 200, "{phase}: /healthz answered {answer:?}");
        assert_eq!(
            answer.json(),
            serde_json::json!({"status": "ok"}),
            "{phase}"
        );
        assert!(took < HEALTHZ_WITHIN, "{phase}: /healthz took {took:?}");
    }

    /// `GET path` with these extra headers, on a connection of its own.
    #[track_caller]
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.request("GET", path, headers)
    }

    /// `METHOD path` with these extra headers, on a connection of its own.
    #[track_caller]
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        exchange(self.addr, head.as_bytes(), ANSWER_TIMEOUT)
            .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"))
    }

    /// Sends SIGTERM, waits for the exit (SIGKILL after 10 s) and returns
    /// what the server printed.
    pub fn stop(mut self) -> Run {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        let code = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.code().unwrap_or(-1),
                _ if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break -1;
                }
                _ => thread::sleep(Duration::from_millis(20)),
            }
        };
        let (stdout, stderr) = self.output.take().expect("stopped once");
        Run {
            code,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.output.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_all(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    let mut pipe = pipe.expect("a piped output");
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().unwrap().port()
}

/// An HTTP answer as received.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    pub body: String,
}

impl Answer {
    /// The body as JSON; panics when it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The whole answer, for assertions on what never appears in it.
    pub fn text(&self) -> String {
        format!("{}{}", self.head, self.body)
    }
}

/// Sends raw bytes, then reads the answer until the server closes (or
/// `timeout`); an error when nothing came back.
pub fn exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> io::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    read_answer(&mut stream, timeout)
}

fn read_answer(stream: &mut TcpStream, timeout: Duration) -> io::Result<Answer> {
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::new();
    let mut buf = [0; 8192];
    while Instant::now() < deadline {
        stream.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))?;
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
            // A reset after the answer still leaves the answer.
            Err(_) if !bytes.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    parse_answer(&bytes).ok_or_else(|| {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no HTTP answer: {text:?}"),
        )
    })
}

fn parse_answer(bytes: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()?;
    Some(Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// How long a complete (half-closed) request may wait for an answer or
/// a close.
const DECIDE_WITHIN: Duration = Duration::from_secs(5);

/// What became of a request.
enum Decision {
    Answered(Answer),
    /// Closed or reset without an answer.
    Closed,
    /// Neither within [`DECIDE_WITHIN`].
    Hung,
}

/// Sends `request`, half-closes, and waits for the server to decide.
fn decide(addr: SocketAddr, request: &[u8]) -> Decision {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return Decision::Closed;
    };
    if stream.write_all(request).is_err() {
        return Decision::Closed;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(DECIDE_WITHIN));
    let mut bytes = Vec::new();
    let hung = loop {
        let mut buf = [0; 8192];
        match stream.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break true;
            }
            Err(_) => break false,
        }
    };
    match parse_answer(&bytes) {
        Some(answer) => Decision::Answered(answer),
        None if hung => Decision::Hung,
        None => Decision::Closed,
    }
}

/// A server against a consistent fake Hasura.
fn server() -> (FakeHasura, Server) {
    let fake = FakeHasura::start();
    let server = Server::start(fake.url(), &[], &[]);
    (fake, server)
}

/// The server's end: exit 0 on SIGTERM, every line JSON, no panic.
#[track_caller]
fn assert_clean_stop(server: Server) {
    let run = server.stop();
    run.expect_code(0);
    let logs = run.logs();
    assert!(
        logs.iter().all(|line| line["message"] != "Internal error."),
        "{}",
        run.dump()
    );
}

#[test]
fn malformed_requests_never_break_the_server() {
    let (_fake, server) = server();
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(64 * 1024));
    let requests: Vec<&[u8]> = vec![
        b"GARBAGE\r\n\r\n",
        b"\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /healthz\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\nHost: x\n\n",
        b"GET  /healthz  HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /\xff\xfe\x00 HTTP/1.1\r\nHost: \x00\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n: empty name\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
        b"POST /reload_metadata HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nnot a chunk\r\n",
        b"POST /reload_metadata HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        b"GET /reload_metadata/../healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n",
        b"GET http://127.0.0.1:1/healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\x01\x02\x03",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/3.0\r\nHost: x\r\n\r\n",
        long_target.as_bytes(),
    ];

    for request in requests {
        let shown = String::from_utf8_lossy(&request[..request.len().min(60)]).into_owned();
        match decide(server.addr(), request) {
            // An answer, when there is one, is a well-formed HTTP status;
            // closing without one is fine too.
            Decision::Answered(answer) => {
                assert!((200..600).contains(&answer.status), "{shown:?}: {answer:?}")
            }
            Decision::Closed => {}
            Decision::Hung => panic!("{shown:?}: neither answered nor closed in {DECIDE_WITHIN:?}"),
        }
        server.assert_healthy(&format!("after {shown:?}"));
    }
    server.assert_bounded("after malformed requests");
    assert_clean_stop(server);
}

#[test]
fn headers_over_8_kib_are_refused_and_the_server_goes_on() {
    let (fake, server) = server();
    let big_value = "x".repeat(64 * 1024);
    let many: String = (0..2000)
        .map(|i| format!("X-Filler-{i}: {i}\r\n"))
        .collect();
    let huge = "y".repeat(1024 * 1024);
    let just_over = "z".repeat(9 * 1024);
    let heads = [
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nine: {just_over}\r\n\r\n"),
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big_value}\r\n\r\n"),
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
        format!("POST /reload_metadata HTTP/1.1\r\nHost: x\r\nX-Huge: {huge}\r\n\r\n"),
    ];

    for head in &heads {
        // No answer at all (the server closed) is a refusal too.
        if let Ok(answer) = exchange(server.addr(), head.as_bytes(), ANSWER_TIMEOUT) {
            let kib = head.len() / 1024;
            assert!(
                (400..500).contains(&answer.status),
                "a {kib} KiB head was answered {answer:?}"
            );
        }
        server.assert_bounded(&format!("after a {} KiB head", head.len() / 1024));
        server.assert_healthy(&format!("after a {} KiB head", head.len() / 1024));
    }
    assert_eq!(
        fake.reload_count(),
        0,
        "an oversized request reached Hasura"
    );
    assert_clean_stop(server);
}

#[test]
fn a_10_mb_body_is_not_read_into_memory() {
    let (fake, server) = server();
    let chunk = vec![b'{'; 64 * 1024];
    let length = 10 * 1024 * 1024;

    for chunked in [false, true] {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_owned()
        } else {
            format!("Content-Length: {length}")
        };
        let head = format!("POST /reload_metadata HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        let mut sent = 0;
        // The server may stop reading, or close, long before the end.
        while sent < length && started.elapsed() < Duration::from_secs(10) {
            let written = if chunked {
                write!(stream, "{:x}\r\n", chunk.len())
                    .and_then(|()| stream.write_all(&chunk))
                    .and_then(|()| stream.write_all(b"\r\n"))
            } else {
                stream.write_all(&chunk)
            };
            if written.is_err() {
                break;
            }
            sent += chunk.len();
        }
        if chunked && sent >= length {
            let _ = stream.write_all(b"0\r\n\r\n");
        }
        let answer = read_answer(&mut stream, ANSWER_TIMEOUT);
        let shown = if chunked { "chunked" } else { "Content-Length" };
        if let Ok(answer) = &answer {
            assert!(
                matches!(answer.status, 200 | 413 | 400),
                "10 MB {shown} body answered {answer:?}"
            );
        }
        server.assert_bounded(&format!("after a 10 MB {shown} body ({sent} bytes sent)"));
        server.assert_healthy(&format!("after a 10 MB {shown} body"));
    }
    assert!(fake.reload_count() <= 2);
    assert_clean_stop(server);
}

#[test]
fn five_hundred_idle_connections_do_not_starve_healthz() {
    let (_fake, server) = server();
    let mut idle = Vec::new();
    let started = Instant::now();
    // A server that stops accepting leaves the rest in the kernel's
    // backlog, then refuses: keep what it takes, within a bounded time.
    while idle.len() < 500 && started.elapsed() < Duration::from_secs(15) {
        match TcpStream::connect_timeout(&server.addr(), Duration::from_millis(300)) {
            Ok(stream) => idle.push(stream),
            Err(_) => break,
        }
    }
    let held = idle.len();
    assert!(held >= 128, "only {held} idle connections could be opened");

    server.assert_healthy(&format!("with {held} of 500 idle connections open"));
    let answer = server.request("POST", "/reload_metadata", &[]);
    assert_eq!(
        answer.status, 200,
        "/reload_metadata with {held} idle connections: {answer:?}"
    );
    server.assert_bounded(&format!("with {held} idle connections"));

    // Half of them start a request and stall in the middle of the head.
    for stream in idle.iter_mut().step_by(2) {
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Stall: ");
    }
    server.assert_healthy(&format!("with {} stalled heads", held / 2));
    server.assert_bounded(&format!("with {} stalled heads", held / 2));

    drop(idle);
    thread::sleep(Duration::from_millis(500));
    server.assert_healthy("after the idle connections closed");
    assert_clean_stop(server);
}

#[test]
fn clients_sending_one_byte_a_second_do_not_starve_healthz() {
    let (_fake, server) = server();
    let stop = Arc::new(AtomicBool::new(false));
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let trickles: Vec<_> = (0..32)
        .map(|_| {
            let (stop, addr) = (Arc::clone(&stop), server.addr());
            thread::spawn(move || {
                let Ok(mut stream) = TcpStream::connect(addr) else {
                    return;
                };
                for byte in request {
                    if stop.load(Ordering::SeqCst) || stream.write_all(&[*byte]).is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_secs(1));
                }
            })
        })
        .collect();

    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        server.assert_healthy(&format!(
            "{:?} into 32 trickling clients",
            started.elapsed()
        ));
        thread::sleep(Duration::from_millis(250));
    }
    let answer = server.request("POST", "/reload_metadata", &[]);
    assert_eq!(
        answer.status, 200,
        "/reload_metadata among trickling clients: {answer:?}"
    );
    server.assert_bounded("with 32 trickling clients");

    stop.store(true, Ordering::SeqCst);
    for trickle in trickles {
        trickle.join().unwrap();
    }
    assert_clean_stop(server);
}

#[test]
fn requests_of_http_2_and_later_do_not_wedge_the_server() {
    let (_fake, server) = server();
    let requests: [&[u8]; 2] = [
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n",
    ];

    // More of them than a server is likely to keep slots for, each client
    // gone again before the next one comes.
    for round in 0..100 {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        let _ = stream.write_all(requests[round % 2]);
        thread::sleep(Duration::from_millis(5));
        drop(stream);
    }

    thread::sleep(Duration::from_millis(500));
    server.assert_healthy("after 100 HTTP/2 requests whose clients left");
    server.assert_bounded("after 100 HTTP/2 requests whose clients left");
    assert_clean_stop(server);
}
