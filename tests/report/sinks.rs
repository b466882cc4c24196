//! What the tests read from the sinks: Sentry envelopes, parsed item by
//! item, and sinks that misbehave on purpose.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use serde_json::Value;
use tiny_http::{Response, Server};

use crate::support::{RecordedRequest, Sink};

/// One item of an envelope: its header and its payload.
pub struct Item {
    pub header: Value,
    pub payload: Vec<u8>,
}

impl Item {
    /// The payload as JSON; panics when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).expect("a JSON item")
    }
}

/// The body of a request, gunzipped when it says so.
pub fn body(request: &RecordedRequest) -> Vec<u8> {
    match request.header("content-encoding") {
        Some(coding) if coding.eq_ignore_ascii_case("gzip") => {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&request.body[..])
                .read_to_end(&mut plain)
                .expect("a gzip body");
            plain
        }
        _ => request.body.clone(),
    }
}

/// Parses an envelope: a header line, then per item a header line and a
/// payload of `length` bytes (or up to the next newline).
pub fn items(request: &RecordedRequest) -> Vec<Item> {
    assert_eq!(request.path, "/api/1/envelope/", "{request:?}");
    let raw = body(request);
    let line_end = |from: usize| {
        let rest = raw[from..].iter().position(|&b| b == b'\n');
        rest.map_or(raw.len(), |at| from + at)
    };
    let mut pos = line_end(0) + 1;
    let mut items = Vec::new();
    while pos < raw.len() {
        let end = line_end(pos);
        let line = &raw[pos..end];
        pos = end + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let header: Value = serde_json::from_slice(line).expect("an item header");
        let payload = match header["length"].as_u64() {
            Some(length) => {
                let start = pos;
                pos += length as usize + 1;
                raw[start..start + length as usize].to_vec()
            }
            None => {
                let end = line_end(pos);
                let payload = raw[pos..end].to_vec();
                pos = end + 1;
                payload
            }
        };
        items.push(Item { header, payload });
    }
    items
}

/// Every item of every envelope the sink received, in order.
pub fn all_items(sentry: &Sink) -> Vec<Item> {
    sentry.requests().iter().flat_map(items).collect()
}

/// The items of one type (`event`, `attachment`, `check_in`).
pub fn of_type<'a>(items: &'a [Item], ty: &str) -> Vec<&'a Item> {
    items.iter().filter(|i| i.header["type"] == ty).collect()
}

/// The events the sink received, in order.
pub fn events(sentry: &Sink) -> Vec<Value> {
    of_type(&all_items(sentry), "event")
        .iter()
        .map(|i| i.json())
        .collect()
}

/// The one event the sink received; panics when there is none or several.
pub fn the_event(sentry: &Sink) -> Value {
    let events = events(sentry);
    assert_eq!(events.len(), 1, "{events:#?}");
    events.into_iter().next().unwrap()
}

/// The Crons check-ins the sink received, in order.
pub fn check_ins(sentry: &Sink) -> Vec<Value> {
    of_type(&all_items(sentry), "check_in")
        .iter()
        .map(|i| i.json())
        .collect()
}

/// How a sink misbehaves.
#[derive(Clone, Copy)]
pub enum Misbehaviour {
    /// Reads each request and never answers.
    Hang,
    /// Answers every request with this status.
    Status(u16),
}

/// A sink that misbehaves on loopback; stops when dropped.
pub struct BadSink {
    server: Arc<Server>,
    /// The sink's base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    accept: Option<JoinHandle<()>>,
    held: Arc<Mutex<Vec<tiny_http::Request>>>,
}

impl BadSink {
    pub fn start(misbehaviour: Misbehaviour) -> BadSink {
        let server = Arc::new(Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let held = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (server, held) = (Arc::clone(&server), Arc::clone(&held));
            thread::spawn(move || {
                for request in server.incoming_requests() {
                    match misbehaviour {
                        Misbehaviour::Hang => held.lock().unwrap().push(request),
                        Misbehaviour::Status(status) => {
                            let answer = Response::from_string("no").with_status_code(status);
                            let _ = request.respond(answer);
                        }
                    }
                }
            })
        };
        BadSink {
            server,
            url,
            accept: Some(accept),
            held,
        }
    }
}

impl Drop for BadSink {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        self.held.lock().unwrap().clear();
    }
}

/// The sentry crate sends plain envelopes today; a later one may compress
/// them, and the parser must still read them.
#[test]
fn the_envelope_parser_reads_gzip_bodies() {
    use std::io::Write;
    let envelope = b"{}\n{\"type\":\"check_in\",\"length\":2}\n{}\n{\"type\":\"x\"}\n[1]\n";
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(envelope).unwrap();
    let request = RecordedRequest {
        method: "POST".into(),
        path: "/api/1/envelope/".into(),
        headers: vec![("Content-Encoding".into(), "gzip".into())],
        body: gzip.finish().unwrap(),
    };
    let items = items(&request);
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].header["type"], "check_in");
    assert_eq!(items[0].json(), serde_json::json!({}));
    assert_eq!(items[1].json(), serde_json::json!([1]));
}
