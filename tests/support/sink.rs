//! A recording HTTP sink on loopback: answers every request with 200 and
//! keeps it, standing in for a Slack webhook or a Sentry ingest endpoint.

// Not every test module uses every helper.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tiny_http::{Header, Response, Server};

use super::RecordedRequest;

/// The key in the userinfo of [`Sink::sentry_dsn`], distinctive enough to
/// look for in the output.
pub const SENTRY_KEY: &str = "5e17e5c0ffee4b1d9a7c3f20dsnkey01";

/// A running sink; stops when dropped.
pub struct Sink {
    server: Arc<Server>,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    url: String,
    accept: Option<JoinHandle<()>>,
}

impl Sink {
    /// Starts a sink on `127.0.0.1:0` answering `{}`.
    pub fn start() -> Sink {
        let server = Arc::new(Server::http("127.0.0.1:0").expect("start the sink"));
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (server, requests) = (Arc::clone(&server), Arc::clone(&requests));
            thread::spawn(move || serve(&server, &requests))
        };
        Sink {
            server,
            requests,
            url,
            accept: Some(accept),
        }
    }

    /// The sink's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A Sentry DSN whose ingest endpoint is this sink (project 1); its
    /// public key is [`SENTRY_KEY`].
    pub fn sentry_dsn(&self) -> String {
        let userinfo = format!("http://{SENTRY_KEY}@");
        self.url.replacen("http://", &userinfo, 1) + "/1"
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for at least `count` requests, then returns
    /// them all.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = Instant::now() + timeout;
        while self.requests.lock().unwrap().len() < count && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        self.requests()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn serve(server: &Server, requests: &Mutex<Vec<RecordedRequest>>) {
    for mut request in server.incoming_requests() {
        requests
            .lock()
            .unwrap()
            .push(RecordedRequest::read(&mut request));
        let json = Header::from_bytes("Content-Type", "application/json").unwrap();
        let _ = request.respond(Response::from_string("{}").with_header(json));
    }
}
