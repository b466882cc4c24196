//! The `server` command: `/reload_metadata`, `/healthz` and `/metrics` on
//! a fixed pool of worker threads, and an optional watcher.
//!
//! The public socket belongs to `gate`, which bounds open connections
//! and hands complete requests to tiny_http on a private loopback port;
//! [`WORKERS`] threads share that tiny_http server and loop on `recv()`.
//! Reloads go through one `flight`, so Hasura sees one reload however
//! many callers ask at once.
//!
//! Exit codes: 0 after SIGTERM or SIGINT; 2 when `--bind`/`--port` cannot
//! be used as configured (an address this host does not have, a port
//! that needs privileges); 3 when the port is taken, the server fails at
//! run time, or a second signal cuts a shutdown short.

mod flight;
mod gate;
mod metrics;
mod relay;
mod routes;
mod watch;

use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use log::Level;
use log::kv::Value as Field;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::ServerSettings;
use crate::reload::{Outcome, Procedure, Status};
use crate::report::Reporters;
use crate::secret::Secret;
use crate::{exit, logging};

use self::flight::Flight;
use self::gate::Gate;
use self::metrics::Metrics;
use self::routes::Pending;

/// Worker threads answering requests. A reload occupies at most one of
/// them (callers that join it wait without a thread), so the others keep
/// `/healthz` and `/metrics` answered.
pub const WORKERS: usize = 4;

/// At shutdown, how long answers already under way may take to reach
/// their clients.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// Serves until SIGTERM or SIGINT; returns the exit code.
pub fn run(procedure: Procedure, reporters: Reporters, settings: ServerSettings) -> u8 {
    let running = match start(procedure, reporters, &settings) {
        Ok(running) => running,
        Err(code) => return code,
    };
    let local = running.service.gate.local_addr();
    log_running(local, &settings);
    let code = running.service.stop.wait();
    running.shut_down();
    log::info!("Server stopped.");
    code
}

/// What the threads of the server share.
pub(crate) struct Service {
    procedure: Procedure,
    reporters: Reporters,
    flight: Flight<Outcome, Pending>,
    metrics: Metrics,
    gate: Arc<Gate>,
    auth_token: Option<Secret>,
    stop: Stop,
    /// Whether the last reload or check found the metadata consistent.
    consistent: Mutex<Option<bool>>,
}

impl Service {
    /// One run of the reload procedure: logged, counted and reported
    /// once, however many callers share it.
    fn reload(&self) -> Outcome {
        let outcome = self.procedure.reload();
        outcome.log();
        self.metrics.record_reload(&outcome, SystemTime::now());
        self.note(&outcome);
        self.reporters.report_served(&outcome);
        outcome
    }

    /// Takes in what a watcher check found.
    fn observe(&self, checked: &Outcome) {
        self.metrics.record_check(checked);
        self.note(checked);
    }

    /// Logs `Metadata recovered.` when consistent again after an
    /// inconsistency or a failure.
    fn note(&self, outcome: &Outcome) {
        let now = matches!(outcome.status, Status::Consistent);
        let mut consistent = self
            .consistent
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if now && *consistent == Some(false) {
            log::info!("Metadata recovered.");
        }
        *consistent = Some(now);
    }
}

/// The server, started.
struct Running {
    service: Arc<Service>,
    backend: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
}

/// Installs the signal handlers, binds, and starts every thread; on
/// failure, logs one line and gives the exit code.
fn start(
    procedure: Procedure,
    reporters: Reporters,
    settings: &ServerSettings,
) -> Result<Running, u8> {
    // Installed before anything else, so that a signal is never lost;
    // real handlers also make signals reach a process that runs as PID 1.
    let signals = Signals::new([SIGTERM, SIGINT]).map_err(|e| failed(&e))?;
    let backend = tiny_http::Server::http((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| failed(&io::Error::other(e.to_string())))?;
    let backend_addr = backend
        .server_addr()
        .to_ip()
        .ok_or_else(|| failed(&io::Error::other("the internal server has no IP address")))?;
    let public = SocketAddr::new(settings.bind, settings.port);
    // A request may join a reload that has just started, so its answer
    // can take a whole run of the procedure; a minute more is slack.
    let answer_timeout = procedure
        .longest_run()
        .saturating_add(Duration::from_secs(60));
    let (gate, listener) =
        Gate::bind(public, backend_addr, answer_timeout).map_err(|e| bind_failed(public, &e))?;
    let service = Arc::new(Service {
        procedure,
        reporters,
        flight: Flight::default(),
        metrics: Metrics::default(),
        gate: Arc::clone(&gate),
        auth_token: settings.auth_token.clone(),
        stop: Stop::default(),
        consistent: Mutex::new(None),
    });
    let backend = Arc::new(backend);
    let spawned = spawn_threads(&service, &backend, signals, listener, settings);
    let workers = spawned.map_err(|e| failed(&e))?;
    Ok(Running {
        service,
        backend,
        workers,
    })
}

fn spawn_threads(
    service: &Arc<Service>,
    backend: &Arc<tiny_http::Server>,
    signals: Signals,
    listener: std::net::TcpListener,
    settings: &ServerSettings,
) -> io::Result<Vec<JoinHandle<()>>> {
    let mut workers = Vec::with_capacity(WORKERS);
    for _ in 0..WORKERS {
        let (service, backend) = (Arc::clone(service), Arc::clone(backend));
        let worker = thread::Builder::new().name("worker".into());
        workers.push(worker.spawn(move || work(&backend, &service))?);
    }
    service.gate.spawn(listener)?;
    let signalled = Arc::clone(service);
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || wait_for_signals(signals, &signalled))?;
    if let Some(interval) = settings.watch_interval {
        watch::spawn(Arc::clone(service), interval)?;
    }
    Ok(workers)
}

/// A worker: answers requests until unblocked at shutdown.
fn work(backend: &tiny_http::Server, service: &Arc<Service>) {
    loop {
        match backend.recv() {
            Ok(request) => routes::handle(service, request),
            Err(_) if service.stop.is_stopped() => return,
            Err(error) => {
                // tiny_http's accept loop has ended; nothing more will come.
                let error = error.to_string();
                log::error!(error = error.as_str(); "Server failed.");
                service.stop.trigger(exit::FAILED);
                return;
            }
        }
    }
}

impl Running {
    /// Stops accepting, lets a running procedure finish and its callers
    /// get their answers, then flushes reports.
    fn shut_down(self) {
        let Running {
            service,
            backend,
            workers,
        } = self;
        service.gate.close();
        service.flight.close();
        service.flight.wait_idle();
        for _ in &workers {
            backend.unblock();
        }
        for worker in workers {
            let _ = worker.join();
        }
        // Requests that reached tiny_http as the workers left.
        while let Ok(Some(request)) = backend.try_recv() {
            routes::refuse(request);
        }
        if !service.gate.wait_answered(ANSWER_GRACE) {
            log::warn!("Server stopped before every answer was delivered.");
        }
        service.reporters.flush();
    }
}

/// The first SIGTERM or SIGINT stops the server; a second one ends the
/// process at once.
fn wait_for_signals(mut signals: Signals, service: &Service) {
    let mut received = signals.forever();
    if let Some(signal) = received.next() {
        log::info!(signal = signal_name(signal); "Signal received, stopping.");
        service.stop.trigger(exit::CONSISTENT);
    }
    if let Some(signal) = received.next() {
        log::warn!(signal = signal_name(signal); "Second signal received, exiting now.");
        std::process::exit(exit::FAILED.into());
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "other",
    }
}

/// Why and when the server stops.
#[derive(Default)]
pub(crate) struct Stop {
    code: Mutex<Option<u8>>,
    changed: Condvar,
}

impl Stop {
    /// Asks the server to stop with this exit code; the first call wins.
    fn trigger(&self, code: u8) {
        self.lock().get_or_insert(code);
        self.changed.notify_all();
    }

    fn is_stopped(&self) -> bool {
        self.lock().is_some()
    }

    /// Blocks until asked to stop; the exit code.
    fn wait(&self) -> u8 {
        let code = self.lock();
        let code = self
            .changed
            .wait_while(code, |code| code.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        code.unwrap_or(exit::FAILED)
    }

    /// Waits up to `timeout`; true when asked to stop.
    fn wait_timeout(&self, timeout: Duration) -> bool {
        let code = self.lock();
        let (code, _) = self
            .changed
            .wait_timeout_while(code, timeout, |code| code.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        code.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<u8>> {
        self.code.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn log_running(local: SocketAddr, settings: &ServerSettings) {
    let bind = local.ip().to_string();
    let watch = settings
        .watch_interval
        .map(|interval| humantime::format_duration(interval).to_string());
    logging::emit(
        Level::Info,
        "Server running.",
        &[
            ("bind", bind.as_str().into()),
            ("port", local.port().into()),
            ("auth", settings.auth_token.is_some().into()),
            ("watch_interval", Field::from_serde(&watch)),
        ],
    );
}

/// Logs a failure to listen; a setting this host cannot honour is a
/// configuration error, anything else (a port in use) a failure.
fn bind_failed(addr: SocketAddr, error: &io::Error) -> u8 {
    let message = error.to_string();
    let bind = addr.ip().to_string();
    log::error!(error = message.as_str(), bind = bind.as_str(), port = addr.port(); "Server could not listen.");
    match error.kind() {
        ErrorKind::AddrNotAvailable | ErrorKind::PermissionDenied | ErrorKind::InvalidInput => {
            exit::USAGE
        }
        _ => exit::FAILED,
    }
}

fn failed(error: &io::Error) -> u8 {
    let message = error.to_string();
    log::error!(error = message.as_str(); "Server could not start.");
    exit::FAILED
}
