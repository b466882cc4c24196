//! One client connection: read its request head within a deadline, hand
//! the request to the internal tiny_http server without its body, copy the
//! answer back, and close.
//!
//! The internal server sees one request per connection, with the framing
//! and hop-by-hop headers removed and `Connection: close` added, so it
//! neither waits for a body nor keeps the connection open. The client's
//! body is never forwarded: at most [`MAX_BODY`] bytes of it are read, and
//! only to close the connection without a reset.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::gate::Slot;

/// The longest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most body bytes read from a client, and only to discard them.
pub const MAX_BODY: usize = 64 * 1024;

/// The whole request head must arrive within this time.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A client that takes longer than this to accept part of an answer is
/// dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// After the answer, how long the rest of a body is read and thrown away
/// so that closing does not reset the connection.
const LINGER: Duration = Duration::from_secs(1);

/// Headers about the connection or the body, which the internal server
/// must not see.
const DROPPED_HEADERS: [&str; 9] = [
    "connection",
    "content-length",
    "expect",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Why no request could be read.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// The client closed or failed before a whole head arrived.
    Closed,
    TimedOut,
    TooLarge,
    /// The request line is not `METHOD target HTTP/1.x`.
    BadRequestLine,
    /// A version other than HTTP/1.0 and HTTP/1.1, which tiny_http leaves
    /// unanswered, so it must never reach it.
    UnsupportedVersion,
}

impl HeadError {
    fn reason(&self) -> &'static str {
        match self {
            HeadError::Closed => "closed",
            HeadError::TimedOut => "timed out",
            HeadError::TooLarge => "too large",
            HeadError::BadRequestLine => "bad request line",
            HeadError::UnsupportedVersion => "unsupported HTTP version",
        }
    }
}

/// A request head as received, up to and including the blank line.
struct Head {
    bytes: Vec<u8>,
    /// Body bytes that came with the head and were thrown away.
    body_read: usize,
}

/// Serves one connection until its answer is delivered or it fails.
pub fn serve(slot: &Slot, mut client: TcpStream, peer: SocketAddr) {
    let _ = client.set_nodelay(true);
    let _ = client.set_write_timeout(Some(WRITE_TIMEOUT));
    let head = read_head(&mut client, Instant::now() + HEAD_TIMEOUT);
    slot.head_read();
    let head = match head {
        Ok(head) => head,
        Err(HeadError::Closed) => return,
        Err(error) => {
            let remote = peer.to_string();
            log::debug!(remote = remote.as_str(), error = error.reason(); "Request head refused.");
            let _ = client.write_all(&canned(&error));
            return;
        }
    };
    let gate = slot.gate();
    let Some(mut answering) = gate.begin_answer() else {
        let _ = client.write_all(&stopping());
        return;
    };
    let forwarded = TcpStream::connect(gate.backend()).and_then(|mut backend| {
        answering.register(backend.local_addr()?.port(), peer);
        // The internal server answers every request it accepts, but a slot
        // held by a request it never answers would be lost for good.
        backend.set_read_timeout(Some(gate.answer_timeout()))?;
        backend.write_all(&rewrite(&head.bytes))?;
        copy_answer(&mut backend, &mut client)
    });
    if let Err(error) = forwarded {
        let (remote, error) = (peer.to_string(), error.to_string());
        log::debug!(remote = remote.as_str(), error = error.as_str(); "Answer not relayed.");
        return;
    }
    linger(&mut client, MAX_BODY.saturating_sub(head.body_read));
}

/// Reads until the blank line that ends the head, within `deadline`.
fn read_head(client: &mut TcpStream, deadline: Instant) -> Result<Head, HeadError> {
    let mut bytes = Vec::with_capacity(1024);
    let mut chunk = [0; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::TimedOut);
        }
        client
            .set_read_timeout(Some(left))
            .map_err(|_| HeadError::Closed)?;
        let n = match client.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(HeadError::TimedOut);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Err(HeadError::Closed),
        };
        let searched = bytes.len().saturating_sub(3);
        bytes.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&bytes, searched) {
            if end > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            let body_read = bytes.len() - end;
            bytes.truncate(end);
            check_request_line(&bytes)?;
            return Ok(Head { bytes, body_read });
        }
        if bytes.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Accepts `METHOD target HTTP/1.0` or `HTTP/1.1`, and nothing else.
fn check_request_line(head: &[u8]) -> Result<(), HeadError> {
    let line = split_lines(head).next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::BadRequestLine);
    };
    let token = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_graphic);
    if !method.iter().all(u8::is_ascii_uppercase) || method.is_empty() || !token(target) {
        return Err(HeadError::BadRequestLine);
    }
    match version {
        b"HTTP/1.0" | b"HTTP/1.1" => Ok(()),
        v if v.starts_with(b"HTTP/") => Err(HeadError::UnsupportedVersion),
        _ => Err(HeadError::BadRequestLine),
    }
}

/// Where the head ends (just past its blank line), searching from `from`.
fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| from + at + 4)
}

/// The head the internal server gets: the same request line and headers,
/// without [`DROPPED_HEADERS`], with `Connection: close`.
fn rewrite(head: &[u8]) -> Vec<u8> {
    let lines = head.strip_suffix(b"\r\n\r\n").unwrap_or(head);
    let mut out = Vec::with_capacity(head.len() + 24);
    for (i, line) in split_lines(lines).enumerate() {
        if i > 0 && is_dropped(line) {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.windows(2).position(|w| w == b"\r\n") {
            Some(at) => {
                rest = Some(&current[at + 2..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

fn is_dropped(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = line[..colon].trim_ascii();
    DROPPED_HEADERS
        .iter()
        .any(|dropped| name.eq_ignore_ascii_case(dropped.as_bytes()))
}

/// Copies the internal server's answer, adding `Connection: close` after
/// its status line.
fn copy_answer(backend: &mut TcpStream, client: &mut TcpStream) -> io::Result<()> {
    let mut chunk = [0; 8192];
    let mut start = Vec::new();
    let mut started = false;
    loop {
        let n = backend.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        if started {
            client.write_all(&chunk[..n])?;
            continue;
        }
        start.extend_from_slice(&chunk[..n]);
        if let Some(at) = start.windows(2).position(|w| w == b"\r\n") {
            let mut first = Vec::with_capacity(start.len() + 19);
            first.extend_from_slice(&start[..at + 2]);
            first.extend_from_slice(b"Connection: close\r\n");
            first.extend_from_slice(&start[at + 2..]);
            client.write_all(&first)?;
            started = true;
        }
    }
    if !started {
        client.write_all(&start)?;
    }
    client.flush()
}

/// Half-closes, then reads and discards up to `allowance` bytes for at
/// most [`LINGER`], so that the client reads the whole answer.
fn linger(client: &mut TcpStream, allowance: usize) {
    let _ = client.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut left = allowance;
    let mut chunk = [0; 4096];
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() || client.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match client.read(&mut chunk[..left.min(4096)]) {
            Ok(0) | Err(_) => return,
            Ok(n) => left -= n,
        }
    }
}

/// The answer to a head that did not arrive whole and in time.
fn canned(error: &HeadError) -> Vec<u8> {
    match error {
        HeadError::TooLarge => plain_answer(
            "431 Request Header Fields Too Large",
            "request head too large",
        ),
        HeadError::BadRequestLine => plain_answer("400 Bad Request", "bad request"),
        HeadError::UnsupportedVersion => plain_answer(
            "505 HTTP Version Not Supported",
            "HTTP version not supported",
        ),
        _ => plain_answer("408 Request Timeout", "request timeout"),
    }
}

/// The answer to a request that arrives while the server stops.
fn stopping() -> Vec<u8> {
    plain_answer("503 Service Unavailable", "shutting down")
}

fn plain_answer(status: &str, error: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": error }).to_string();
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        let bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody\r\n\r\n";
        assert_eq!(head_end(bytes, 0), Some(27));
        // After a read that stopped one byte short, the search resumes
        // three bytes before its end and still finds the blank line.
        assert_eq!(head_end(bytes, 26 - 3), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
        assert_eq!(head_end(b"", 5), None);
    }

    #[test]
    fn framing_and_connection_headers_are_dropped() {
        let head = b"POST /reload_metadata HTTP/1.1\r\nHost: h\r\nContent-Length: 10485760\r\n\
                     transfer-encoding : chunked\r\nAuthorization: Bearer t\r\nEXPECT: 100-continue\r\n\
                     Connection: keep-alive\r\nX-Content-Length: 3\r\n\r\n";
        let rewritten = String::from_utf8(rewrite(head)).unwrap();
        assert_eq!(
            rewritten,
            "POST /reload_metadata HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t\r\n\
             X-Content-Length: 3\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn a_request_line_is_kept_even_when_it_looks_like_a_header() {
        let rewritten = rewrite(b"Connection: x\r\n\r\n");
        assert_eq!(rewritten, b"Connection: x\r\nConnection: close\r\n\r\n");
    }

    #[test]
    fn only_http_1_request_lines_pass() {
        for good in [
            &b"GET /healthz HTTP/1.1\r\n\r\n"[..],
            b"POST /x?a=b HTTP/1.0\r\n\r\n",
        ] {
            assert_eq!(check_request_line(good), Ok(()));
        }
        for version in [
            &b"GET / HTTP/2.0\r\n\r\n"[..],
            b"PRI * HTTP/2.0\r\n\r\n",
            b"GET / HTTP/3\r\n\r\n",
        ] {
            assert_eq!(
                check_request_line(version),
                Err(HeadError::UnsupportedVersion)
            );
        }
        for bad in [
            &b"\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / FTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 x\r\n\r\n",
        ] {
            assert_eq!(check_request_line(bad), Err(HeadError::BadRequestLine));
        }
    }

    #[test]
    fn canned_answers_are_complete_http() {
        let answer = String::from_utf8(canned(&HeadError::TimedOut)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 408 "), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(body, r#"{"error":"request timeout"}"#);
        assert!(
            String::from_utf8(stopping())
                .unwrap()
                .starts_with("HTTP/1.1 503 ")
        );
    }
}
