//! Hasura failing mid-flight: each fault is a tiny raw TCP server on
//! loopback, since a well-behaved HTTP library cannot misbehave on purpose.
//! Every fault ends in exit 3 with one clear line after the retries, never
//! in exit 1: a broken answer is not an inconsistency.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::support::{Run, reloader};

/// How long a fault may hold a connection before giving up on it.
const HOLD_AT_MOST: Duration = Duration::from_secs(10);

/// The admin secret of these tests, to look for where it must not go.
const SECRET: &str = "faults-admin-secret-7Qx2";

/// What a fault does with a connection once the request head is read.
type Fault = dyn Fn(TcpStream, &Received) + Send + Sync;

/// One request as a raw server read it.
#[derive(Clone, Debug, Default)]
struct Received {
    /// The request line and the headers, as sent.
    head: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field
                .trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim())
        })
    }

    fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// A listener on `127.0.0.1:0` that records each request head and hands
/// the connection to its fault; stops accepting when dropped.
struct RawServer {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<Mutex<usize>>,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl RawServer {
    fn start(fault: impl Fn(TcpStream, &Received) + Send + Sync + 'static) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let fault: Arc<Fault> = Arc::new(fault);
        let accept = {
            let (received, connections) = (Arc::clone(&received), Arc::clone(&connections));
            let stopping = Arc::clone(&stopping);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    *connections.lock().unwrap() += 1;
                    let (received, fault) = (Arc::clone(&received), Arc::clone(&fault));
                    thread::spawn(move || serve(stream, &received, &*fault));
                }
            })
        };
        RawServer {
            addr,
            received,
            connections,
            stopping,
            accept: Some(accept),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests whose head arrived, in order.
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Connections accepted, with or without a request.
    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn serve(stream: TcpStream, received: &Mutex<Vec<Received>>, fault: &Fault) {
    let _ = stream.set_read_timeout(Some(HOLD_AT_MOST));
    let Some(head) = read_head(&stream) else {
        return;
    };
    let request = Received { head };
    received.lock().unwrap().push(request.clone());
    fault(stream, &request);
}

/// Reads up to the blank line, one byte at a time, so that the body stays
/// unread in the socket for the faults that need it there.
fn read_head(mut stream: &TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn read_body(stream: &TcpStream, request: &Received) -> Vec<u8> {
    let mut body = vec![0; request.content_length()];
    let _ = BufReader::new(stream).read_exact(&mut body);
    body
}

/// Waits until the client hangs up, or [`HOLD_AT_MOST`].
fn hold_until_closed(stream: &TcpStream) {
    let deadline = Instant::now() + HOLD_AT_MOST;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut reader = BufReader::new(stream);
    while Instant::now() < deadline {
        match reader.fill_buf() {
            Ok([]) => return,
            Ok(bytes) => {
                let n = bytes.len();
                reader.consume(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// `reload` against `url` with one retry 10 ms after the first attempt.
fn reload(url: &str) -> Run {
    reloader(&[
        "reload",
        "--hasura-endpoint",
        url,
        "--hasura-admin-secret",
        SECRET,
        "--retries",
        "1",
        "--retry-interval",
        "10ms",
        "--timeout",
        "1s",
    ])
    .timeout(Duration::from_secs(20))
    .run()
}

/// Exit 3, one failure line whose error is one line naming the command
/// and containing one of `words`, the attempts, and no other error line.
#[track_caller]
fn assert_failed(run: &Run, attempts: u64, words: &[&str]) -> serde_json::Value {
    let line = run.failure();
    let error = line["error"].as_str().unwrap();
    assert!(
        !error.contains('\n') && error.len() < 300,
        "not one short line: {error:?}"
    );
    assert!(error.contains("reload_metadata") || error.contains("get_inconsistent_metadata"));
    let lower = error.to_lowercase();
    assert!(
        words.iter().any(|word| lower.contains(word)),
        "{error:?} says none of {words:?}\n{}",
        run.dump()
    );
    assert_eq!(line["attempts"], attempts, "{line}");
    let errors = run
        .logs()
        .into_iter()
        .filter(|l| l["level"] == "error")
        .count();
    assert_eq!(errors, 1, "one error line only\n{}", run.dump());
    assert!(
        !run.output().contains(SECRET),
        "the secret leaked\n{}",
        run.dump()
    );
    line
}

const JSON_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";

#[test]
fn a_connection_reset_after_the_headers_is_retried_then_fails() {
    // Closing with the request body unread makes the kernel send a reset.
    let server = RawServer::start(|mut stream, _| {
        let _ = write!(stream, "{JSON_HEAD}Content-Length: 100\r\n\r\n");
        let _ = stream.flush();
        thread::sleep(Duration::from_millis(200));
    });

    let run = reload(&server.url());

    assert_failed(&run, 2, &["reset", "disconnect", "closed", "eof"]);
    assert_eq!(server.received().len(), 2, "{}", run.dump());
}

#[test]
fn a_body_cut_short_is_retried_then_fails() {
    let server = RawServer::start(|mut stream, request| {
        read_body(&stream, request);
        let _ = write!(
            stream,
            "{JSON_HEAD}Content-Length: 1000\r\n\r\n{{\"message\":\"succ"
        );
        let _ = stream.flush();
        let _ = stream.shutdown(Shutdown::Write);
        hold_until_closed(&stream);
    });

    let run = reload(&server.url());

    assert_failed(
        &run,
        2,
        &["disconnect", "eof", "closed", "incomplete", "short"],
    );
    assert_eq!(server.received().len(), 2);
}

#[test]
fn a_body_that_never_ends_times_out_then_fails() {
    // A chunk every 100 ms keeps the connection busy forever.
    let server = RawServer::start(|mut stream, request| {
        read_body(&stream, request);
        let _ = write!(stream, "{JSON_HEAD}Transfer-Encoding: chunked\r\n\r\n");
        let deadline = Instant::now() + HOLD_AT_MOST;
        while Instant::now() < deadline && write!(stream, "1\r\n \r\n").is_ok() {
            let _ = stream.flush();
            thread::sleep(Duration::from_millis(100));
        }
    });
    let started = Instant::now();

    let run = reload(&server.url());

    let line = assert_failed(&run, 2, &["timeout", "timed out"]);
    assert_eq!(line["kind"], "timeout", "{line}");
    assert_eq!(server.received().len(), 2);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "two 1 s attempts took {took:?}"
    );
}

#[test]
fn a_redirect_is_not_followed_and_the_secret_stays_home() {
    for status in [
        "301 Moved Permanently",
        "302 Found",
        "307 Temporary Redirect",
        "308 Permanent Redirect",
    ] {
        let elsewhere = RawServer::start(|mut stream, request| {
            read_body(&stream, request);
            let body = r#"{"message":"success","is_consistent":true}"#;
            let _ = write!(
                stream,
                "{JSON_HEAD}Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
        });
        let location = format!("{}/v1/metadata", elsewhere.url());
        let server = RawServer::start(move |mut stream, request| {
            read_body(&stream, request);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
            );
        });

        let run = reload(&server.url());

        // A redirect is a wrong endpoint, not a passing fault: no retry.
        let line = assert_failed(&run, 1, &["redirect"]);
        assert_eq!(
            line["status"],
            status[..3].parse::<u16>().unwrap(),
            "{line}"
        );
        assert_eq!(server.received().len(), 1, "{status}");
        let sent_elsewhere = elsewhere.received();
        assert!(
            sent_elsewhere.iter().all(|r| !r.head.contains(SECRET)),
            "{status}: the admin secret followed the redirect: {sent_elsewhere:?}"
        );
        assert_eq!(
            elsewhere.connections(),
            0,
            "{status}: the redirect was followed"
        );
    }
}

/// A gzip header, then bytes that are no deflate stream.
const CORRUPT_GZIP: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\xde\xad\xbe\xef not deflate";

#[test]
fn a_corrupt_gzip_body_is_a_bad_response_and_not_retried() {
    let server = RawServer::start(|mut stream, request| {
        read_body(&stream, request);
        let head = format!(
            "{JSON_HEAD}Content-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            CORRUPT_GZIP.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(CORRUPT_GZIP);
        hold_until_closed(&stream);
    });

    let run = reload(&server.url());

    assert_failed(
        &run,
        1,
        &["gzip", "deflate", "decompress", "corrupt", "invalid"],
    );
    assert_eq!(run.failure()["kind"], "bad_response");
    assert_eq!(server.received().len(), 1);
    let sent = &server.received()[0];
    assert!(
        sent.header("accept-encoding")
            .is_some_and(|v| v.contains("gzip")),
        "{}",
        sent.head
    );
}

#[test]
fn check_retries_a_reset_like_reload_does() {
    let server = RawServer::start(|mut stream, _| {
        let _ = write!(stream, "{JSON_HEAD}Content-Length: 100\r\n\r\n");
        let _ = stream.flush();
        thread::sleep(Duration::from_millis(200));
    });

    let run = reloader(&[
        "check",
        "--hasura-endpoint",
        &server.url(),
        "--retries",
        "1",
        "--retry-interval",
        "10ms",
    ])
    .run();

    let line = run.failure();
    assert_eq!(line["attempts"], 2, "{}", run.dump());
    assert_eq!(server.received().len(), 2);
    assert!(server.received()[0].head.starts_with("POST /v1/metadata "));
}
