//! Reports of final outcomes: Sentry events and Crons check-ins, and Slack
//! messages. Each reporter is off unless configured, and none can change
//! the exit code or hold the process past [`FLUSH_TIMEOUT`].

mod objects;
mod sentry;
mod slack;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::Agent;
use ureq::config::ConfigBuilder;
use ureq::tls::TlsConfig;
use ureq::typestate::AgentScope;

use crate::config::{Endpoint, ReportSettings};
use crate::hasura::{ErrorKind, USER_AGENT};
use crate::reload::{Outcome, Status};

use self::sentry::Sentry;
use self::slack::Slack;

/// The longest time spent delivering reports before the process exits.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// One request to Sentry or Slack takes at most this long: less than
/// [`FLUSH_TIMEOUT`], so that a hanging sink is logged as failed before
/// the process gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// Connecting to Sentry or Slack takes at most this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Every configured reporter, for one Hasura endpoint.
///
/// `Send + Sync`: the server shares one in an `Arc` between its worker
/// threads and its watcher.
pub struct Reporters {
    endpoint: Endpoint,
    sentry: Option<Sentry>,
    slack: Option<Slack>,
    /// What the last served outcome was, to tell changes in server mode.
    last: Mutex<Option<Seen>>,
}

impl Reporters {
    /// Starts the configured reporters for one Hasura endpoint. A
    /// malformed Sentry DSN is a warning and leaves Sentry off.
    pub fn start(settings: &ReportSettings, endpoint: &Endpoint, tls: &TlsConfig) -> Reporters {
        let sentry_agent = agent_config(tls).middleware(sentry::log_delivery);
        let sentry = Sentry::start(settings, endpoint, sentry_agent.build().new_agent());
        let slack = settings
            .slack_webhook_url
            .as_ref()
            .and_then(|webhook| Slack::start(webhook, agent_config(tls).build().new_agent()));
        Reporters {
            endpoint: endpoint.clone(),
            sentry,
            slack,
            last: Mutex::new(None),
        }
    }

    /// Marks the start of a one-shot run (a Crons check-in `in_progress`).
    pub fn run_started(&self) {
        if let Some(sentry) = &self.sentry {
            sentry.run_started();
        }
    }

    /// Marks the end of a one-shot run (a Crons check-in `ok` or `error`,
    /// with the run's duration).
    pub fn run_finished(&self, outcome: &Outcome) {
        if let Some(sentry) = &self.sentry {
            sentry.run_finished(outcome);
        }
    }

    /// Reports the final outcome of a one-shot command: a Sentry event and
    /// a Slack message when inconsistent or failed; a consistent one sends
    /// nothing.
    pub fn report(&self, outcome: &Outcome) {
        if let Some(sentry) = &self.sentry {
            sentry.report(outcome);
        }
        let text = match &outcome.status {
            Status::Consistent => None,
            Status::Inconsistent(found) => Some(slack::inconsistent_text(self.display(), found)),
            Status::Failed(error) => Some(slack::failed_text(self.display(), error)),
        };
        self.send_slack(text);
    }

    /// Reports an outcome of the server (a request or the watcher).
    ///
    /// Sentry gets an event for every inconsistent or failed outcome; it
    /// groups them by fingerprint. Slack gets a message only on a change:
    /// to inconsistent, to a different set of inconsistent objects, to
    /// failed (or failed differently), and back to consistent
    /// ("recovered"). The first outcome counts as a change unless it is
    /// consistent. Safe to call from several threads at once; returns
    /// without waiting for delivery.
    pub fn report_served(&self, outcome: &Outcome) {
        if let Some(sentry) = &self.sentry {
            sentry.report(outcome);
        }
        let now = Seen::of(outcome);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let text = change_text(last.as_ref(), &now, outcome, self.display());
        // Queued while the state is locked, so messages keep their order.
        self.send_slack(text);
        *last = Some(now);
    }

    /// Delivers what is queued for Sentry and Slack together, for at most
    /// [`FLUSH_TIMEOUT`]. What is not delivered by then is dropped with a
    /// warning.
    pub fn flush(&self) {
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        // Both deliver on their own threads; waiting on them in turn
        // against one deadline bounds the total.
        let sentry = self
            .sentry
            .as_ref()
            .map(|sentry| (sentry, sentry.flush_in_background(FLUSH_TIMEOUT)));
        if let Some(slack) = &self.slack
            && !slack.wait(deadline)
        {
            log::warn!(timeout_ms = millis(FLUSH_TIMEOUT); "Slack report not delivered in time.");
        }
        if let Some((sentry, answer)) = sentry {
            let left = deadline.saturating_duration_since(Instant::now());
            let idle = answer.recv_timeout(left).unwrap_or(false);
            sentry.set_idle(idle);
            if !idle {
                log::warn!(timeout_ms = millis(FLUSH_TIMEOUT); "Sentry report not delivered in time.");
            }
        }
    }

    fn display(&self) -> &str {
        self.endpoint.display()
    }

    fn send_slack(&self, text: Option<String>) {
        if let (Some(slack), Some(text)) = (&self.slack, text) {
            slack.send(text);
        }
    }
}

/// An outcome as far as Slack in server mode is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Consistent,
    /// The sorted names of the objects.
    Inconsistent(Vec<String>),
    Failed(ErrorKind),
}

impl Seen {
    fn of(outcome: &Outcome) -> Seen {
        match &outcome.status {
            Status::Consistent => Seen::Consistent,
            Status::Inconsistent(found) => Seen::Inconsistent(objects::sorted_names(found)),
            Status::Failed(error) => Seen::Failed(error.kind),
        }
    }
}

/// The Slack message for a served outcome, when it differs from the last.
fn change_text(
    last: Option<&Seen>,
    now: &Seen,
    outcome: &Outcome,
    endpoint: &str,
) -> Option<String> {
    if last == Some(now) {
        return None;
    }
    match (&outcome.status, last) {
        (Status::Consistent, None) => None,
        (Status::Consistent, Some(_)) => Some(slack::recovered_text(endpoint)),
        (Status::Inconsistent(found), _) => Some(slack::inconsistent_text(endpoint, found)),
        (Status::Failed(error), _) => Some(slack::failed_text(endpoint, error)),
    }
}

/// What every report sink's agent shares: the TLS roots of `--ca-cert`,
/// proxies from the environment (ureq's default), no redirects, and short
/// timeouts, so a hanging sink cannot hold the process.
fn agent_config(tls: &TlsConfig) -> ConfigBuilder<AgentScope> {
    Agent::config_builder()
        .timeout_global(Some(REQUEST_TIMEOUT))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(USER_AGENT)
        .tls_config(tls.clone())
}

/// ureq's words for a delivery error, without any URL it might quote.
fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::HostNotFound => "host not found".to_owned(),
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        ureq::Error::BadUri(_) => "invalid URL".to_owned(),
        ureq::Error::Timeout(_) => "timed out".to_owned(),
        other => other.to_string(),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hasura::{HasuraError, Object};
    use crate::reload::Action;
    use serde_json::json;

    fn outcome(status: Status) -> Outcome {
        Outcome {
            status,
            attempts: 1,
            duration: Duration::from_millis(5),
            action: Action::Reloaded,
        }
    }

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap()
    }

    fn failed(kind: ErrorKind) -> Status {
        Status::Failed(HasuraError {
            kind,
            message: "x".into(),
            status: None,
            hasura_code: None,
        })
    }

    #[test]
    fn reporters_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Reporters>();
    }

    #[test]
    fn outcomes_that_name_the_same_objects_are_the_same() {
        let a = Object::from(json!({"name": "a"}));
        let b = Object::from(json!({"name": "b"}));
        let one = Seen::of(&outcome(Status::Inconsistent(vec![a.clone(), b.clone()])));
        let two = Seen::of(&outcome(Status::Inconsistent(vec![b, a.clone()])));
        let three = Seen::of(&outcome(Status::Inconsistent(vec![a])));
        assert_eq!(one, two);
        assert_ne!(one, three);
        assert_ne!(
            Seen::of(&outcome(failed(ErrorKind::Timeout))),
            Seen::of(&outcome(failed(ErrorKind::Unreachable)))
        );
    }

    /// The Slack messages a sequence of served outcomes gives, by their
    /// first word after "Hasura metadata".
    fn changes(statuses: Vec<Status>) -> Vec<&'static str> {
        let mut last = None;
        let mut sent = Vec::new();
        for status in statuses {
            let outcome = outcome(status);
            let now = Seen::of(&outcome);
            if let Some(text) = change_text(last.as_ref(), &now, &outcome, "http://h") {
                let words = ["inconsistent", "API request failed", "recovered"];
                sent.push(*words.iter().find(|w| text.contains(*w)).unwrap());
            }
            last = Some(now);
        }
        sent
    }

    #[test]
    fn served_outcomes_reach_slack_on_changes_only() {
        let a = || Status::Inconsistent(vec![json!({"name": "a", "reason": "r"}).into()]);
        let ab = || {
            Status::Inconsistent(vec![
                json!({"name": "b"}).into(),
                json!({"name": "a"}).into(),
            ])
        };
        let sent = changes(vec![
            Status::Consistent,
            Status::Consistent,
            a(),
            a(),
            ab(),
            ab(),
            failed(ErrorKind::Unreachable),
            failed(ErrorKind::Unreachable),
            failed(ErrorKind::AccessDenied),
            Status::Consistent,
            Status::Consistent,
        ]);
        assert_eq!(
            sent,
            [
                "inconsistent",
                "inconsistent",
                "API request failed",
                "API request failed",
                "recovered"
            ]
        );
        assert_eq!(
            changes(vec![failed(ErrorKind::Tls)]),
            ["API request failed"]
        );
    }

    #[test]
    fn served_outcomes_post_to_slack_from_shared_reporters() {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", server.server_addr().to_ip().unwrap());
        let settings = ReportSettings {
            slack_webhook_url: Some(crate::secret::Secret::new(url)),
            ..ReportSettings::default()
        };
        let reporters = std::sync::Arc::new(Reporters::start(
            &settings,
            &endpoint("http://hasura:8080"),
            &TlsConfig::default(),
        ));
        let shared = std::sync::Arc::clone(&reporters);
        std::thread::spawn(move || {
            let found = vec![Object::from(json!({"name": "a", "reason": "down"}))];
            shared.report_served(&outcome(Status::Inconsistent(found.clone())));
            shared.report_served(&outcome(Status::Inconsistent(found)));
            shared.report_served(&outcome(Status::Consistent));
        })
        .join()
        .unwrap();

        let mut texts = Vec::new();
        for _ in 0..2 {
            let mut request = server.recv_timeout(FLUSH_TIMEOUT).unwrap().unwrap();
            let mut body = String::new();
            request.as_reader().read_to_string(&mut body).unwrap();
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            texts.push(body["text"].as_str().unwrap().to_owned());
            request.respond(tiny_http::Response::empty(200)).unwrap();
        }
        reporters.flush();
        assert!(texts[0].starts_with("Hasura metadata is inconsistent at http://hasura:8080"));
        assert!(texts[0].ends_with("• a: down"), "{}", texts[0]);
        assert!(
            texts[1].starts_with("Hasura metadata recovered"),
            "{}",
            texts[1]
        );
        let more = server.recv_timeout(Duration::from_millis(100)).unwrap();
        assert!(more.is_none(), "only changes are posted");
    }

    #[test]
    fn reporters_without_settings_do_nothing_quickly() {
        let reporters = Reporters::start(
            &ReportSettings::default(),
            &endpoint("http://127.0.0.1:9"),
            &TlsConfig::default(),
        );
        let started = Instant::now();
        reporters.run_started();
        reporters.report(&outcome(Status::Inconsistent(vec![
            json!({"name": "a"}).into(),
        ])));
        reporters.report_served(&outcome(Status::Consistent));
        reporters.run_finished(&outcome(Status::Consistent));
        reporters.flush();
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
