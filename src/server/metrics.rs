//! `/metrics` in the Prometheus text format, version 0.0.4.
//!
//! The counters start at 0 for all three outcomes. A gauge whose value is
//! not known yet reads `NaN`: before the first reload or watcher check,
//! `hasura_metadata_consistent` is neither 1 nor 0, so neither an alert on
//! `== 0` nor a dashboard on `== 1` says something nobody observed. A
//! failed run sets it to 0 (not known to be consistent) and the object
//! count to `NaN`.

use std::fmt::Write;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::reload::{Outcome, Status};

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the server has observed so far.
#[derive(Default)]
pub struct Metrics {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Reloads by outcome: consistent, inconsistent, failed.
    reloads: [u64; 3],
    /// Consistency and object count at the last reload or check.
    seen: Option<(bool, Option<usize>)>,
    /// When the last reload ended, and how long it took.
    last_reload: Option<(SystemTime, Duration)>,
}

impl Metrics {
    /// Counts a reload procedure that ended at `ended`.
    pub fn record_reload(&self, outcome: &Outcome, ended: SystemTime) {
        let mut state = self.lock();
        state.reloads[index(&outcome.status)] += 1;
        state.last_reload = Some((ended, outcome.duration));
        state.seen = Some(seen(&outcome.status));
    }

    /// Notes what a watcher check found, without counting a reload.
    pub fn record_check(&self, outcome: &Outcome) {
        self.lock().seen = Some(seen(&outcome.status));
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let state = self.lock();
        let mut out = String::with_capacity(1500);
        header(
            &mut out,
            "hasura_metadata_reloads_total",
            "counter",
            "Reload procedures run by this server, by outcome.",
        );
        for (outcome, count) in ["consistent", "inconsistent", "failed"]
            .iter()
            .zip(state.reloads)
        {
            let _ = writeln!(
                out,
                "hasura_metadata_reloads_total{{outcome=\"{outcome}\"}} {count}"
            );
        }
        let (consistent, objects) = match state.seen {
            Some((consistent, objects)) => (f64::from(u8::from(consistent)), objects.map(count)),
            None => (f64::NAN, None),
        };
        let (ended, took) = match state.last_reload {
            Some((ended, took)) => (Some(unix_seconds(ended)), Some(took.as_secs_f64())),
            None => (None, None),
        };
        gauge(
            &mut out,
            "hasura_metadata_consistent",
            "Whether the metadata was consistent at the last reload or check: 1 or 0, NaN until known.",
            Some(consistent),
        );
        gauge(
            &mut out,
            "hasura_metadata_inconsistent_objects",
            "Inconsistent objects at the last reload or check, NaN until known.",
            objects,
        );
        gauge(
            &mut out,
            "hasura_metadata_last_reload_timestamp_seconds",
            "When the last reload procedure ended, in seconds since the Unix epoch, NaN before the first.",
            ended,
        );
        gauge(
            &mut out,
            "hasura_metadata_reload_duration_seconds",
            "How long the last reload procedure took, NaN before the first.",
            took,
        );
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn index(status: &Status) -> usize {
    match status {
        Status::Consistent => 0,
        Status::Inconsistent(_) => 1,
        Status::Failed(_) => 2,
    }
}

/// Consistency and object count; a failure knows neither, and is not
/// consistent as far as alerts go.
fn seen(status: &Status) -> (bool, Option<usize>) {
    match status {
        Status::Consistent => (true, Some(0)),
        Status::Inconsistent(objects) => (false, Some(objects.len())),
        Status::Failed(_) => (false, None),
    }
}

fn count(n: usize) -> f64 {
    // Exact up to 2^53 objects, far beyond any metadata.
    n as f64
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: Option<f64>) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {}", number(value.unwrap_or(f64::NAN)));
}

/// A sample value as the text format spells it.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hasura::{ErrorKind, HasuraError};
    use crate::reload::Action;
    use serde_json::json;

    fn outcome(status: Status, millis: u64) -> Outcome {
        Outcome {
            status,
            attempts: 1,
            duration: Duration::from_millis(millis),
            action: Action::Reloaded,
        }
    }

    /// Every sample line as (name with labels, value).
    fn samples(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| {
                let (name, value) = line.rsplit_once(' ').expect("name and value");
                (name.to_owned(), value.to_owned())
            })
            .collect()
    }

    fn value(text: &str, name: &str) -> String {
        let found = samples(text).into_iter().find(|(n, _)| n == name);
        found.unwrap_or_else(|| panic!("no {name} in\n{text}")).1
    }

    #[test]
    fn every_series_is_there_from_the_start() {
        let text = Metrics::default().render();
        for outcome in ["consistent", "inconsistent", "failed"] {
            let name = format!("hasura_metadata_reloads_total{{outcome=\"{outcome}\"}}");
            assert_eq!(value(&text, &name), "0");
        }
        for gauge in [
            "hasura_metadata_consistent",
            "hasura_metadata_inconsistent_objects",
            "hasura_metadata_last_reload_timestamp_seconds",
            "hasura_metadata_reload_duration_seconds",
        ] {
            assert_eq!(value(&text, gauge), "NaN");
            assert!(text.contains(&format!("# TYPE {gauge} gauge\n")), "{text}");
            assert!(text.contains(&format!("# HELP {gauge} ")), "{text}");
        }
        assert!(text.contains("# TYPE hasura_metadata_reloads_total counter\n"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn reloads_move_the_counters_and_gauges() {
        let metrics = Metrics::default();
        let objects = vec![json!({"name": "a"}).into(), json!({"name": "b"}).into()];
        let ended = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        metrics.record_reload(&outcome(Status::Inconsistent(objects), 1500), ended);
        let text = metrics.render();
        let inconsistent = "hasura_metadata_reloads_total{outcome=\"inconsistent\"}";
        assert_eq!(value(&text, inconsistent), "1");
        assert_eq!(value(&text, "hasura_metadata_consistent"), "0");
        assert_eq!(value(&text, "hasura_metadata_inconsistent_objects"), "2");
        assert_eq!(
            value(&text, "hasura_metadata_last_reload_timestamp_seconds"),
            "1700000000.25"
        );
        assert_eq!(
            value(&text, "hasura_metadata_reload_duration_seconds"),
            "1.5"
        );

        metrics.record_reload(&outcome(Status::Consistent, 20), ended);
        let text = metrics.render();
        let consistent = "hasura_metadata_reloads_total{outcome=\"consistent\"}";
        assert_eq!(value(&text, consistent), "1");
        assert_eq!(value(&text, "hasura_metadata_consistent"), "1");
        assert_eq!(value(&text, "hasura_metadata_inconsistent_objects"), "0");
    }

    #[test]
    fn a_failure_is_not_consistent_and_knows_no_count() {
        let metrics = Metrics::default();
        let error = HasuraError {
            kind: ErrorKind::Unreachable,
            message: "connection failed".into(),
            status: None,
            hasura_code: None,
        };
        metrics.record_reload(&outcome(Status::Failed(error), 5), SystemTime::now());
        let text = metrics.render();
        assert_eq!(
            value(&text, "hasura_metadata_reloads_total{outcome=\"failed\"}"),
            "1"
        );
        assert_eq!(value(&text, "hasura_metadata_consistent"), "0");
        assert_eq!(value(&text, "hasura_metadata_inconsistent_objects"), "NaN");
    }

    #[test]
    fn checks_update_the_state_but_count_no_reload() {
        let metrics = Metrics::default();
        metrics.record_check(&outcome(Status::Consistent, 5));
        let text = metrics.render();
        assert_eq!(value(&text, "hasura_metadata_consistent"), "1");
        assert_eq!(
            value(&text, "hasura_metadata_reload_duration_seconds"),
            "NaN"
        );
        let total: u64 = samples(&text)
            .iter()
            .filter(|(name, _)| name.starts_with("hasura_metadata_reloads_total"))
            .map(|(_, v)| v.parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, 0);
    }
}
