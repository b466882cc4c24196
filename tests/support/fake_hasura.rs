//! A fake Hasura GraphQL Engine v2 metadata API on tiny_http, for the
//! integration tests and for running by hand (`examples/fake_hasura.rs`).
//! It answers like a real v2 server: same routes, error bodies and quirks.

// Not every crate that includes this file uses every helper.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tiny_http::{Request, Server};

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The HTTP method, such as `POST`.
    pub method: String,
    /// The request target as sent, query string included.
    pub path: String,
    /// Every header, in the order received.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// Reads a tiny_http request, its body included.
    pub fn read(request: &mut Request) -> RecordedRequest {
        let mut body = Vec::new();
        // A client that hangs up mid-body still leaves a useful record.
        let _ = request.as_reader().read_to_end(&mut body);
        let headers = request.headers().iter();
        RecordedRequest {
            method: request.method().to_string(),
            path: request.url().to_string(),
            headers: headers
                .map(|h| (h.field.to_string(), h.value.to_string()))
                .collect(),
            body,
        }
    }

    /// The value of the first header with this name, in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut headers = self.headers.iter();
        headers
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON; panics when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {}", self.body_text()))
    }

    /// The body as text, lossily.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The metadata command (`type`) of the body, when there is one.
    pub fn command(&self) -> Option<String> {
        let body: Value = serde_json::from_slice(&self.body).ok()?;
        body.get("type")?.as_str().map(str::to_string)
    }
}

/// A canned answer, sent exactly as given: what a proxy or a broken server
/// says instead of Hasura.
#[derive(Clone, Debug)]
pub struct RawAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body, sent as is.
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// An answer with this status, content type and body.
    pub fn new(status: u16, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> RawAnswer {
        RawAnswer {
            status,
            content_type: content_type.map(str::to_string),
            body: body.into(),
        }
    }

    /// A JSON answer.
    pub fn json(status: u16, body: &Value) -> RawAnswer {
        RawAnswer::new(
            status,
            Some("application/json; charset=utf-8"),
            body.to_string(),
        )
    }

    /// Hasura's own error body, `{"path","error","code"}`.
    pub fn hasura_error(status: u16, path: &str, code: &str, error: &str) -> RawAnswer {
        RawAnswer::json(status, &json!({"path": path, "error": error, "code": code}))
    }

    /// The HTML page a reverse proxy sends when Hasura is down (502, 503, 504).
    pub fn proxy_html(status: u16) -> RawAnswer {
        let reason = match status {
            502 => "Bad Gateway",
            503 => "Service Temporarily Unavailable",
            504 => "Gateway Time-out",
            _ => "Error",
        };
        let page = format!(
            "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
             <center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n\
             </body>\r\n</html>\r\n"
        );
        RawAnswer::new(status, Some("text/html"), page)
    }
}

/// Configures and starts a [`FakeHasura`].
#[derive(Clone, Debug)]
pub struct FakeHasuraBuilder {
    bind: SocketAddr,
    prefix: String,
    admin_secret: Option<String>,
    unauthorized_role: Option<String>,
    heal_after: Option<usize>,
    objects: Vec<Value>,
    delay: Duration,
    legacy: bool,
    remote_schemas: Option<Vec<String>>,
    sources: Option<Vec<String>>,
    faults_once: VecDeque<RawAnswer>,
    fault_always: Option<RawAnswer>,
    never_answer: bool,
    log: bool,
}

impl Default for FakeHasuraBuilder {
    fn default() -> FakeHasuraBuilder {
        FakeHasuraBuilder {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            prefix: String::new(),
            admin_secret: None,
            unauthorized_role: None,
            heal_after: Some(0),
            objects: objects::sample(2),
            delay: Duration::ZERO,
            legacy: false,
            remote_schemas: None,
            sources: None,
            faults_once: VecDeque::new(),
            fault_always: None,
            never_answer: false,
            log: false,
        }
    }
}

impl FakeHasuraBuilder {
    /// Listens on this address instead of `127.0.0.1:0`.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Serves the API under a path prefix, such as `/hasura`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.trim_end_matches('/').to_string();
        self
    }

    /// Requires this admin secret; without one the API is open.
    pub fn admin_secret(mut self, secret: &str) -> Self {
        self.admin_secret = Some(secret.to_string());
        self
    }

    /// Gives requests without a secret this non-admin role, so they are
    /// refused with 400 `access-denied` instead of 401.
    pub fn unauthorized_role(mut self, role: &str) -> Self {
        self.unauthorized_role = Some(role.to_string());
        self
    }

    /// The first `n` reloads leave the metadata inconsistent; the next one
    /// heals it. Before any reload the metadata is inconsistent when `n > 0`.
    pub fn inconsistent_reloads(mut self, n: usize) -> Self {
        self.heal_after = Some(n);
        self
    }

    /// No reload ever heals the metadata.
    pub fn always_inconsistent(mut self) -> Self {
        self.heal_after = None;
        self
    }

    /// The inconsistent objects to answer while inconsistent.
    pub fn objects(mut self, objects: Vec<Value>) -> Self {
        self.objects = objects;
        self
    }

    /// Waits this long before answering each request.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Answers `reload_metadata` like Hasura before v2.4: `{"message":"success"}`.
    pub fn legacy(mut self) -> Self {
        self.legacy = true;
        self
    }

    /// Names the remote schemas that exist; reload lists naming others are
    /// refused with `not-exists`. Unset: every name exists.
    pub fn remote_schemas(mut self, names: &[&str]) -> Self {
        self.remote_schemas = Some(names.iter().map(|n| n.to_string()).collect());
        self
    }

    /// Names the sources that exist, as [`Self::remote_schemas`] does.
    pub fn sources(mut self, names: &[&str]) -> Self {
        self.sources = Some(names.iter().map(|n| n.to_string()).collect());
        self
    }

    /// Answers the next request with this, before any check; several calls
    /// queue answers in order, after which normal answers resume.
    pub fn fault_once(mut self, answer: RawAnswer) -> Self {
        self.faults_once.push_back(answer);
        self
    }

    /// Answers every request (after the queued ones) with this.
    pub fn fault_always(mut self, answer: RawAnswer) -> Self {
        self.fault_always = Some(answer);
        self
    }

    /// Accepts connections and reads requests but never answers them.
    pub fn never_answer(mut self) -> Self {
        self.never_answer = true;
        self
    }

    /// Logs one line per request on stderr.
    pub fn log_requests(mut self) -> Self {
        self.log = true;
        self
    }

    /// Starts serving plain HTTP.
    pub fn start(self) -> io::Result<FakeHasura> {
        let bind = self.bind;
        FakeHasura::serve(self, bind, "http")
    }

    /// Starts serving HTTPS with this certificate chain and private key (PEM).
    /// TLS ends in front of the plain fake, which listens on loopback.
    pub fn start_tls(self, cert_pem: &str, key_pem: &str) -> io::Result<FakeHasura> {
        let config = tls::server_config(cert_pem, key_pem)?;
        let bind = self.bind;
        let backend = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let mut fake = FakeHasura::serve(self, backend, "https")?;
        let front = tls::Front::start(bind, fake.backend, config)?;
        fake.base_url = base_url("https", front.addr, &fake.state.config.prefix);
        fake.tls = Some(front);
        Ok(fake)
    }
}

/// A running fake Hasura; stops when dropped.
pub struct FakeHasura {
    state: Arc<State>,
    server: Arc<Server>,
    backend: SocketAddr,
    base_url: String,
    accept: Option<JoinHandle<()>>,
    tls: Option<tls::Front>,
}

impl FakeHasura {
    /// A builder with the defaults: open, consistent, v2.4+ answers.
    pub fn builder() -> FakeHasuraBuilder {
        FakeHasuraBuilder::default()
    }

    /// Starts a default fake on `127.0.0.1:0`.
    pub fn start() -> FakeHasura {
        FakeHasura::builder()
            .start()
            .expect("start the fake Hasura")
    }

    /// Starts a fake on `127.0.0.1:0` that always reports these objects
    /// as inconsistent.
    pub fn inconsistent(objects: Vec<Value>) -> FakeHasura {
        FakeHasura::builder()
            .always_inconsistent()
            .objects(objects)
            .start()
            .expect("start the fake Hasura")
    }

    /// The base URL to give as the Hasura endpoint, prefix included.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The metadata commands received so far, in order (`?` when none).
    pub fn commands(&self) -> Vec<String> {
        let requests = self.requests();
        requests
            .iter()
            .map(|r| r.command().unwrap_or_else(|| "?".to_string()))
            .collect()
    }

    /// How many `reload_metadata` commands were carried out.
    pub fn reload_count(&self) -> usize {
        self.state.reloads.load(Ordering::SeqCst)
    }

    /// How many answers were sent gzip-compressed.
    pub fn compressed_count(&self) -> usize {
        self.state.compressed.load(Ordering::SeqCst)
    }

    fn serve(config: FakeHasuraBuilder, addr: SocketAddr, scheme: &str) -> io::Result<FakeHasura> {
        let server = Arc::new(Server::http(addr).map_err(io::Error::other)?);
        let backend = server.server_addr().to_ip().expect("an IP listener");
        let base_url = base_url(scheme, backend, &config.prefix);
        let state = Arc::new(State::new(config));
        let accept = {
            let (server, state) = (Arc::clone(&server), Arc::clone(&state));
            thread::spawn(move || accept_loop(&server, &state))
        };
        Ok(FakeHasura {
            state,
            server,
            backend,
            base_url,
            accept: Some(accept),
            tls: None,
        })
    }
}

impl Drop for FakeHasura {
    fn drop(&mut self) {
        self.tls.take();
        self.state.stopping.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// The URL clients use: loopback when listening on every address.
fn base_url(scheme: &str, mut addr: SocketAddr, prefix: &str) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        });
    }
    format!("{scheme}://{addr}{prefix}")
}

/// What the request handlers share.
struct State {
    config: FakeHasuraBuilder,
    reloads: AtomicUsize,
    served: AtomicUsize,
    compressed: AtomicUsize,
    requests: Mutex<Vec<RecordedRequest>>,
    faults_once: Mutex<VecDeque<RawAnswer>>,
    // Requests left unanswered on purpose; dropping them answers 500.
    held: Mutex<Vec<Request>>,
    stopping: AtomicBool,
}

impl State {
    fn new(config: FakeHasuraBuilder) -> State {
        State {
            faults_once: Mutex::new(config.faults_once.clone()),
            config,
            reloads: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            compressed: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        }
    }

    /// Whether the metadata is consistent after this many reloads.
    fn consistent_after(&self, reloads: usize) -> bool {
        match self.config.heal_after {
            Some(n) => n == 0 || reloads > n,
            None => false,
        }
    }

    fn consistent_now(&self) -> bool {
        self.consistent_after(self.reloads.load(Ordering::SeqCst))
    }

    fn inconsistent_objects(&self, consistent: bool) -> Value {
        if consistent {
            json!([])
        } else {
            Value::Array(self.config.objects.clone())
        }
    }
}

fn accept_loop(server: &Server, state: &Arc<State>) {
    loop {
        match server.recv() {
            Ok(request) => {
                let state = Arc::clone(state);
                thread::spawn(move || handle(&state, request));
            }
            Err(_) if state.stopping.load(Ordering::SeqCst) => return,
            Err(_) => continue,
        }
    }
}

fn handle(state: &State, mut request: Request) {
    let started = Instant::now();
    let recorded = RecordedRequest::read(&mut request);
    state.requests.lock().unwrap().push(recorded.clone());
    if state.config.never_answer {
        log_request(state, &recorded, None, started);
        state.held.lock().unwrap().push(request);
        return;
    }
    thread::sleep(state.config.delay);
    let answer = api::answer(state, &recorded);
    log_request(state, &recorded, Some(answer.status), started);
    let id = state.served.fetch_add(1, Ordering::SeqCst) + 1;
    // Hasura compresses successful answers only, and only when asked.
    let gzip = answer.compressible && accepts_gzip(&recorded);
    if gzip {
        state.compressed.fetch_add(1, Ordering::SeqCst);
    }
    // The client may have given up already; nothing to do about that.
    let _ = request.respond(answer.into_response(id, gzip));
}

fn log_request(state: &State, request: &RecordedRequest, status: Option<u16>, started: Instant) {
    if !state.config.log {
        return;
    }
    let command = request.command().unwrap_or_else(|| "-".to_string());
    let status = status.map_or("no answer".to_string(), |s| s.to_string());
    let ms = started.elapsed().as_millis();
    eprintln!(
        "{} {} {command} {status} {ms}ms",
        request.method, request.path
    );
}

fn accepts_gzip(request: &RecordedRequest) -> bool {
    let accept = request.header("accept-encoding").unwrap_or("");
    accept
        .split(',')
        .any(|coding| coding.split(';').next().unwrap_or("").trim() == "gzip")
}

// These files sit in `fake_hasura/` beside this one; the paths keep them
// found when the example includes this file from elsewhere.
#[path = "fake_hasura/api.rs"]
mod api;
#[path = "fake_hasura/objects.rs"]
pub mod objects;
#[path = "fake_hasura/tls.rs"]
mod tls;
