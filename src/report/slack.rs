//! Slack: a `{"text": …}` POST to an incoming webhook per message, sent by
//! a thread of its own so that a slow webhook never holds a caller.

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use serde_json::json;
use ureq::Agent;

use super::objects;
use crate::hasura::{HasuraError, Object};
use crate::secret::Secret;

/// Objects listed in a message; the rest are counted.
const LISTED: usize = 10;

/// The longest line kept for one object.
const LINE_LENGTH: usize = 300;

/// A webhook and the thread that posts to it.
pub struct Slack {
    queue: Sender<String>,
    pending: Arc<Pending>,
}

impl Slack {
    /// Starts the sender thread; `None` (with a warning) when it cannot.
    pub fn start(webhook: &Secret, agent: Agent) -> Option<Slack> {
        let (queue, messages) = mpsc::channel::<String>();
        let pending = Arc::new(Pending::default());
        let webhook = webhook.clone();
        let done = Arc::clone(&pending);
        let spawned = std::thread::Builder::new()
            .name("slack".into())
            .spawn(move || {
                for text in messages {
                    post(&agent, &webhook, &text);
                    done.finish_one();
                }
            });
        match spawned {
            Ok(_) => Some(Slack { queue, pending }),
            Err(error) => {
                log::warn!(error = error.to_string(); "Slack reports are off.");
                None
            }
        }
    }

    /// Queues a message.
    pub fn send(&self, text: String) {
        self.pending.start_one();
        if self.queue.send(text).is_err() {
            self.pending.finish_one();
        }
    }

    /// Waits until every queued message was posted or `deadline` passed;
    /// `true` when nothing is left.
    pub fn wait(&self, deadline: Instant) -> bool {
        self.pending.wait(deadline)
    }
}

/// Messages queued and not yet posted.
#[derive(Default)]
struct Pending {
    count: Mutex<usize>,
    changed: Condvar,
}

impl Pending {
    fn start_one(&self) {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    fn finish_one(&self) {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        *count = count.saturating_sub(1);
        self.changed.notify_all();
    }

    fn wait(&self, deadline: Instant) -> bool {
        let count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        let timeout = deadline.saturating_duration_since(Instant::now());
        let (count, _) = self
            .changed
            .wait_timeout_while(count, timeout, |count| *count > 0)
            .unwrap_or_else(|e| e.into_inner());
        *count == 0
    }
}

/// Posts one message; a failure is a warning and nothing more. The
/// webhook URL is a secret and never logged.
fn post(agent: &Agent, webhook: &Secret, text: &str) {
    let body = json!({ "text": text }).to_string();
    let result = agent
        .post(webhook.expose())
        .header("Content-Type", "application/json")
        .send(body);
    match result {
        Ok(response) if response.status().is_success() => {
            log::debug!(status = response.status().as_u16(); "Send Slack report");
        }
        Ok(mut response) => {
            let status = response.status().as_u16();
            let answer = response
                .body_mut()
                .with_config()
                .limit(1024)
                .read_to_string()
                .unwrap_or_default();
            let answer = objects::shorten(answer.trim(), 200);
            log::warn!(status, error = answer; "Slack report failed.");
        }
        Err(error) => {
            log::warn!(error = super::describe(&error); "Slack report failed.");
        }
    }
}

/// The message for metadata still inconsistent: the endpoint, the count,
/// up to ten objects as `name: reason`, then how many more.
pub fn inconsistent_text(endpoint: &str, found: &[Object]) -> String {
    let noun = if found.len() == 1 {
        "object"
    } else {
        "objects"
    };
    let mut text = format!(
        "Hasura metadata is inconsistent at {}: {} inconsistent {noun}.",
        escape(endpoint),
        found.len()
    );
    for object in found.iter().take(LISTED) {
        let line = objects::shorten(&objects::line(object), LINE_LENGTH);
        text.push_str(&format!("\n• {}", escape(&line)));
    }
    if found.len() > LISTED {
        text.push_str(&format!("\nand {} more", found.len() - LISTED));
    }
    text
}

/// The message for a failed procedure: the endpoint, the kind and the
/// message.
pub fn failed_text(endpoint: &str, error: &HasuraError) -> String {
    format!(
        "Hasura metadata API request failed at {} ({}): {}",
        escape(endpoint),
        error.kind.as_str(),
        escape(&error.message)
    )
}

/// The message for metadata consistent again after a problem.
pub fn recovered_text(endpoint: &str) -> String {
    format!(
        "Hasura metadata recovered at {}: consistent again.",
        escape(endpoint)
    )
}

/// Slack reads `&`, `<` and `>` as markup; these three are escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hasura::ErrorKind;
    use std::time::Duration;

    #[test]
    fn twelve_objects_list_ten_then_count_the_rest() {
        let found: Vec<Object> = (1..=12)
            .map(|i| json!({"type": "table", "name": format!("table t{i}"), "reason": "gone"}))
            .map(Object::from)
            .collect();
        let text = inconsistent_text("https://hasura.example.com", &found);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Hasura metadata is inconsistent at https://hasura.example.com: 12 inconsistent objects."
        );
        assert_eq!(lines[1], "• table t1: gone");
        assert_eq!(lines[10], "• table t10: gone");
        assert_eq!(lines[11], "and 2 more");
        assert_eq!(lines.len(), 12);
    }

    #[test]
    fn nameless_objects_and_markup_read_plainly() {
        let found = [
            json!({"reason": "Ambiguous URL paths: <a> & <b>"}),
            json!({"type": "action", "reason": "Multiple definitions for: x"}),
        ]
        .map(Object::from);
        let text = inconsistent_text("http://h", &found);
        assert!(text.contains("• Ambiguous URL paths: &lt;a&gt; &amp; &lt;b&gt;"));
        assert!(text.contains("• action: Multiple definitions for: x"));
        assert!(!text.contains("more"));
    }

    #[test]
    fn failures_name_the_kind_and_message() {
        let error = HasuraError {
            kind: ErrorKind::Unreachable,
            message: "reload_metadata: connection failed".into(),
            status: None,
            hasura_code: None,
        };
        assert_eq!(
            failed_text("http://h:8080", &error),
            "Hasura metadata API request failed at http://h:8080 (unreachable): reload_metadata: connection failed"
        );
        assert!(recovered_text("http://h").contains("recovered"));
    }

    #[test]
    fn waiting_ends_at_the_deadline_or_when_all_is_sent() {
        let pending = Pending::default();
        assert!(pending.wait(Instant::now()));
        pending.start_one();
        let started = Instant::now();
        assert!(!pending.wait(started + Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50));
        pending.finish_one();
        assert!(pending.wait(Instant::now() + Duration::from_secs(5)));
    }
}
