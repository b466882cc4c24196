//! The `server` command: `/reload_metadata`, `/healthz` and `/metrics`
//! on a fixed pool of threads, and an optional watcher.

use crate::config::ServerSettings;
use crate::exit;
use crate::reload::Procedure;
use crate::report::Reporters;

/// Serves until SIGTERM or SIGINT; returns the exit code.
pub fn run(_procedure: Procedure, _reporters: Reporters, _settings: ServerSettings) -> u8 {
    log::error!("The server is not available in this build.");
    exit::FAILED
}
