//! The reload procedure: reload, read the verdict, retry while it stays
//! inconsistent or Hasura cannot be reached, and return one outcome.

use std::time::{Duration, Instant};

use log::Level;
use log::kv::Value as Field;
use ureq::tls::TlsConfig;

use crate::config::{HasuraSettings, ReloadScopes, RetryPolicy};
use crate::exit;
use crate::hasura::{Client, HasuraError, Object, ReloadAnswer, Verdict};
use crate::logging;
use crate::redact::Redactor;

/// How a procedure ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Consistent,
    /// Still inconsistent after every attempt: Hasura's objects as received.
    Inconsistent(Vec<Object>),
    Failed(HasuraError),
}

/// The result of one run of the procedure, as reporters and the server
/// receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    /// Attempts made, the first included.
    pub attempts: u32,
    pub duration: Duration,
    pub action: Action,
}

/// What the procedure did to Hasura.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `reload_metadata` was sent.
    Reloaded,
    /// Only `get_inconsistent_metadata` was sent.
    Checked,
    /// A check found Hasura consistent, so no reload was sent.
    Skipped,
}

impl Outcome {
    /// The process exit code of the contract.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            Status::Consistent => exit::CONSISTENT,
            Status::Inconsistent(_) => exit::INCONSISTENT,
            Status::Failed(_) => exit::FAILED,
        }
    }

    /// Hasura's objects, empty unless inconsistent.
    pub fn inconsistent_objects(&self) -> &[Object] {
        match &self.status {
            Status::Inconsistent(objects) => objects,
            _ => &[],
        }
    }

    pub fn duration_ms(&self) -> u64 {
        u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX)
    }

    /// Writes the final log line of the contract.
    pub fn log(&self) {
        let attempts = ("attempts", Field::from(self.attempts));
        let duration = ("duration_ms", Field::from(self.duration_ms()));
        match &self.status {
            Status::Consistent if self.action == Action::Skipped => logging::emit(
                Level::Info,
                "Metadata is consistent, reload skipped.",
                &[
                    ("is_consistent", true.into()),
                    ("reloaded", false.into()),
                    attempts,
                    duration,
                ],
            ),
            Status::Consistent => logging::emit(
                Level::Info,
                "Metadata is consistent.",
                &[("is_consistent", true.into()), attempts, duration],
            ),
            Status::Inconsistent(objects) => logging::emit(
                Level::Error,
                "Metadata is inconsistent.",
                &[
                    ("error", "metadata is inconsistent".into()),
                    ("is_consistent", false.into()),
                    ("inconsistent_count", objects.len().into()),
                    ("inconsistent_objects", Field::from_serde(objects)),
                    attempts,
                    duration,
                ],
            ),
            Status::Failed(error) => {
                let mut fields = error_fields(error);
                fields.extend([attempts, duration]);
                logging::emit(Level::Error, "Hasura metadata API request failed.", &fields);
            }
        }
    }
}

/// The fields that describe a failed request: `error`, `kind`, and
/// `status` and `hasura_code` when known.
pub fn error_fields(error: &HasuraError) -> Vec<(&'static str, Field<'_>)> {
    let mut fields = vec![
        ("error", Field::from(error.message.as_str())),
        ("kind", error.kind.as_str().into()),
    ];
    if let Some(status) = error.status {
        fields.push(("status", status.into()));
    }
    if let Some(code) = &error.hasura_code {
        fields.push(("hasura_code", code.as_str().into()));
    }
    fields
}

/// The procedure, shareable between the threads of the server.
#[derive(Debug, Clone)]
pub struct Procedure {
    client: Client,
    scopes: ReloadScopes,
    retry: RetryPolicy,
    redactor: Redactor,
    /// The timeout of each request to Hasura.
    timeout: Duration,
}

impl Procedure {
    /// The procedure for one Hasura, with the shared TLS roots.
    pub fn new(
        hasura: &HasuraSettings,
        tls: &TlsConfig,
        scopes: ReloadScopes,
        retry: RetryPolicy,
    ) -> Procedure {
        Procedure {
            client: Client::new(hasura, tls),
            scopes,
            retry,
            redactor: Redactor::new(hasura),
            timeout: hasura.timeout,
        }
    }

    /// The longest a reload can take: every attempt at two requests (the
    /// reload and, for Hasura before v2.4, the follow-up), each up to its
    /// timeout, plus the waits between attempts.
    pub fn longest_run(&self) -> Duration {
        let attempts = self.retry.attempts();
        (1..=attempts)
            .map(|attempt| match attempt < attempts {
                true => self
                    .timeout
                    .saturating_mul(2)
                    .saturating_add(self.retry.backoff(attempt)),
                false => self.timeout.saturating_mul(2),
            })
            .fold(Duration::ZERO, Duration::saturating_add)
    }

    /// Reloads until consistent or out of attempts.
    pub fn reload(&self) -> Outcome {
        let started = Instant::now();
        let status = self.attempts(true, || self.reload_once());
        self.redactor
            .scrub(status.into_outcome(started, Action::Reloaded))
    }

    /// Asks once, read-only; only transport failures are retried.
    pub fn check(&self) -> Outcome {
        let started = Instant::now();
        let status = self.attempts(false, || self.client.get_inconsistent_metadata());
        self.redactor
            .scrub(status.into_outcome(started, Action::Checked))
    }

    /// Checks first and reloads only when Hasura is inconsistent, so a
    /// frequent CronJob costs Hasura nothing while all is well.
    pub fn reload_if_inconsistent(&self) -> Outcome {
        let checked = self.check();
        match checked.status {
            Status::Inconsistent(_) => {
                log::info!(inconsistent_count = checked.inconsistent_objects().len(); "Metadata is inconsistent, reloading.");
                self.reload()
            }
            Status::Consistent => Outcome {
                action: Action::Skipped,
                ..checked
            },
            Status::Failed(_) => checked,
        }
    }

    /// One attempt of the reload: `reload_metadata`, then, for Hasura
    /// before v2.4, `get_inconsistent_metadata` for the verdict.
    fn reload_once(&self) -> Result<Verdict, HasuraError> {
        match self.client.reload_metadata(&self.scopes)? {
            ReloadAnswer::Verdict(verdict) => Ok(verdict),
            ReloadAnswer::Unknown => self.client.get_inconsistent_metadata(),
        }
    }

    /// Runs `attempt` until it gives a final answer, waiting between tries.
    fn attempts(
        &self,
        retry_inconsistent: bool,
        attempt: impl Fn() -> Result<Verdict, HasuraError>,
    ) -> Attempted {
        let last = self.retry.attempts();
        for number in 1.. {
            let result = attempt();
            let wait = self.retry.backoff(number);
            let retry_in_ms = Field::from(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
            match result {
                Ok(Verdict::Inconsistent(objects)) if retry_inconsistent && number < last => {
                    logging::emit(
                        Level::Warn,
                        "Metadata is still inconsistent, retrying.",
                        &[
                            ("attempt", number.into()),
                            ("retry_in_ms", retry_in_ms),
                            ("inconsistent_count", objects.len().into()),
                        ],
                    );
                }
                Err(error) if error.is_retryable() && number < last => {
                    let mut fields = error_fields(&error);
                    fields.extend([("attempt", number.into()), ("retry_in_ms", retry_in_ms)]);
                    logging::emit(
                        Level::Warn,
                        "Hasura metadata API request failed, retrying.",
                        &fields,
                    );
                }
                Ok(verdict) => {
                    return Attempted {
                        result: Ok(verdict),
                        attempts: number,
                    };
                }
                Err(error) => {
                    return Attempted {
                        result: Err(error),
                        attempts: number,
                    };
                }
            }
            std::thread::sleep(wait);
        }
        unreachable!("the loop returns on its last attempt")
    }
}

/// The last result of a run of attempts.
struct Attempted {
    result: Result<Verdict, HasuraError>,
    attempts: u32,
}

impl Attempted {
    fn into_outcome(self, started: Instant, action: Action) -> Outcome {
        let status = match self.result {
            Ok(Verdict::Consistent) => Status::Consistent,
            Ok(Verdict::Inconsistent(objects)) => Status::Inconsistent(objects),
            Err(error) => Status::Failed(error),
        };
        Outcome {
            status,
            attempts: self.attempts,
            duration: started.elapsed(),
            action,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Endpoint, Scope};

    #[test]
    fn the_longest_run_counts_every_request_and_wait() {
        let hasura = HasuraSettings {
            endpoint: Endpoint::parse("http://hasura:8080").unwrap(),
            admin_secret: None,
            timeout: Duration::from_secs(60),
        };
        let scopes = ReloadScopes {
            remote_schemas: Scope::All,
            sources: Scope::All,
            recreate_event_triggers: Scope::None,
        };
        let retry = RetryPolicy {
            retries: 2,
            interval: Duration::from_secs(5),
        };
        let procedure = Procedure::new(&hasura, &TlsConfig::default(), scopes, retry);

        // Three attempts of two requests, and waits of 5 s and 10 s.
        assert_eq!(
            procedure.longest_run(),
            Duration::from_secs(3 * 120 + 5 + 10)
        );
    }
}
