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

use std::io::{ErrorKind, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::support::server::{RUNNING, WAIT, exchange, read_reply};
use crate::support::{
    BIN, CONSISTENT, FAILED, FakeHasura, INCONSISTENT, RawAnswer, Reply, objects, refused_url,
    reloader, serve, serve_with,
};

const STOPPED: &str = "Server stopped.";
const RECOVERED: &str = "Metadata recovered.";
const REQUESTED: &str = "Reload requested.";

/// SPEC: an idle server stops within 1 s of SIGTERM.
const IDLE_STOP: Duration = Duration::from_secs(1);

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
