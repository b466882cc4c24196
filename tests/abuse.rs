//! `server` under hostile clients: malformed requests, huge headers and
//! bodies, hundreds of idle connections, clients that trickle one byte a
//! second. Throughout, `/healthz` keeps answering and the process keeps
//! its memory and threads bounded. Loopback only; every loop is bounded.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::server::{exchange, parse_reply, read_reply};
use crate::support::{FakeHasura, Reply, Served, serve};

/// Resident memory the server may use under any of these loads.
const RSS_LIMIT_KIB: u64 = 32 * 1024;

/// Threads the server may run under any of these loads: a fixed pool and
/// its helpers, far fewer than the hundreds of connections thrown at it.
const THREAD_LIMIT: u64 = 128;

/// How fast `/healthz` must answer, whatever else goes on.
const HEALTHZ_WITHIN: Duration = Duration::from_secs(3);

/// How long a test waits for any one answer before calling it missing.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Asserts that memory and threads stay within their limits.
#[track_caller]
fn assert_bounded(server: &Served, phase: &str) {
    let (rss, threads) = (server.status("VmRSS"), server.status("Threads"));
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
fn assert_healthy(server: &Served, phase: &str) {
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr()
    );
    let started = Instant::now();
    let answer = exchange(server.addr(), request.as_bytes(), HEALTHZ_WITHIN);
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

/// How long a complete (half-closed) request may wait for an answer or
/// a close.
const DECIDE_WITHIN: Duration = Duration::from_secs(5);

/// What became of a request.
enum Decision {
    Answered(Reply),
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
    let local = stream.local_addr().expect("the client's address");
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
    match parse_reply(&bytes, local) {
        Some(answer) => Decision::Answered(answer),
        None if hung => Decision::Hung,
        None => Decision::Closed,
    }
}

/// A server against a consistent fake Hasura.
fn server() -> (FakeHasura, Served) {
    let fake = FakeHasura::start();
    let server = serve(fake.url(), &[]);
    (fake, server)
}

/// The server's end: exit 0 on SIGTERM, every line JSON, no panic.
#[track_caller]
fn assert_clean_stop(server: Served) {
    let run = server.finish();
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
        assert_healthy(&server, &format!("after {shown:?}"));
    }
    assert_bounded(&server, "after malformed requests");
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
        assert_bounded(&server, &format!("after a {} KiB head", head.len() / 1024));
        assert_healthy(&server, &format!("after a {} KiB head", head.len() / 1024));
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
        let answer = read_reply(&mut stream, ANSWER_TIMEOUT);
        let shown = if chunked { "chunked" } else { "Content-Length" };
        if let Ok(answer) = &answer {
            assert!(
                matches!(answer.status, 200 | 413 | 400),
                "10 MB {shown} body answered {answer:?}"
            );
        }
        assert_bounded(
            &server,
            &format!("after a 10 MB {shown} body ({sent} bytes sent)"),
        );
        assert_healthy(&server, &format!("after a 10 MB {shown} body"));
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

    assert_healthy(
        &server,
        &format!("with {held} of 500 idle connections open"),
    );
    let answer = server.post("/reload_metadata");
    assert_eq!(
        answer.status, 200,
        "/reload_metadata with {held} idle connections: {answer:?}"
    );
    assert_bounded(&server, &format!("with {held} idle connections"));

    // Half of them start a request and stall in the middle of the head.
    for stream in idle.iter_mut().step_by(2) {
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Stall: ");
    }
    assert_healthy(&server, &format!("with {} stalled heads", held / 2));
    assert_bounded(&server, &format!("with {} stalled heads", held / 2));

    drop(idle);
    thread::sleep(Duration::from_millis(500));
    assert_healthy(&server, "after the idle connections closed");
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
        assert_healthy(
            &server,
            &format!("{:?} into 32 trickling clients", started.elapsed()),
        );
        thread::sleep(Duration::from_millis(250));
    }
    let answer = server.post("/reload_metadata");
    assert_eq!(
        answer.status, 200,
        "/reload_metadata among trickling clients: {answer:?}"
    );
    assert_bounded(&server, "with 32 trickling clients");

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
    assert_healthy(&server, "after 100 HTTP/2 requests whose clients left");
    assert_bounded(&server, "after 100 HTTP/2 requests whose clients left");
    assert_clean_stop(server);
}
