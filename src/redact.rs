//! Keeps credentials out of outcomes. Hasura may echo a header in an error
//! message, and a remote schema's definition may hold a literal admin
//! secret. Outcomes are scrubbed once, as the procedure returns them, so
//! logs, reports and the server's answers all receive clean ones.

use serde_json::Value;

use crate::config::HasuraSettings;
use crate::hasura::{HasuraError, Object};
use crate::reload::{Outcome, Status};

/// What a credential is replaced with, as in the logs.
const PLACEHOLDER: &str = "[redacted]";

/// Values this short would replace ordinary words; real secrets are longer.
const SHORTEST: usize = 4;

/// The credentials of one Hasura endpoint, in every form a report could
/// carry them.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
    /// The same secrets as they are written inside a JSON string, to search
    /// Hasura's objects without parsing them.
    escaped: Vec<String>,
}

impl Redactor {
    /// The admin secret and the credentials of the endpoint's userinfo.
    pub fn new(hasura: &HasuraSettings) -> Redactor {
        let mut secrets = hasura.endpoint.credentials().to_vec();
        if let Some(secret) = &hasura.admin_secret {
            secrets.push(secret.expose().to_owned());
        }
        secrets.retain(|s| s.len() >= SHORTEST);
        // Longer first, so a secret that holds another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let escaped = secrets.iter().map(|s| escape(s)).collect();
        Redactor { secrets, escaped }
    }

    /// The outcome with every credential replaced; untouched, and not
    /// copied, when it holds none.
    pub fn scrub(&self, outcome: Outcome) -> Outcome {
        let status = match outcome.status {
            Status::Inconsistent(found) if !self.secrets.is_empty() => {
                Status::Inconsistent(found.into_iter().map(|o| self.object(o)).collect())
            }
            Status::Failed(error) if self.holds(&error.message) => Status::Failed(HasuraError {
                message: self.text(&error.message),
                ..error
            }),
            status => status,
        };
        Outcome { status, ..outcome }
    }

    /// The object as received, or rewritten without its credentials. Only
    /// an object whose text may hold one is parsed.
    fn object(&self, object: Object) -> Object {
        if !self.may_hold(object.json()) {
            return object;
        }
        let value = object.to_value();
        match self.holds_in(&value) {
            true => Object::from(self.value(&value)),
            false => object,
        }
    }

    /// Whether JSON text may hold a secret: it holds one as serde_json
    /// would escape it, or it uses an escape that serde_json would not
    /// write (`\u0061`, `\/`), behind which any secret could hide.
    fn may_hold(&self, json: &str) -> bool {
        let found = self.escaped.iter().any(|s| json.contains(s.as_str()));
        found || json.contains("\\u") || json.contains("\\/")
    }

    fn holds(&self, text: &str) -> bool {
        self.secrets.iter().any(|s| text.contains(s.as_str()))
    }

    fn holds_in(&self, value: &Value) -> bool {
        match value {
            Value::String(text) => self.holds(text),
            Value::Array(items) => items.iter().any(|v| self.holds_in(v)),
            Value::Object(map) => map.iter().any(|(k, v)| self.holds(k) || self.holds_in(v)),
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }

    fn text(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |text, secret| {
            text.replace(secret.as_str(), PLACEHOLDER)
        })
    }

    fn value(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.text(text)),
            Value::Array(items) => items.iter().map(|v| self.value(v)).collect(),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| (self.text(k), self.value(v)))
                .collect(),
            other => other.clone(),
        }
    }
}

/// `text` as it is written inside a JSON string, without the quotes.
fn escape(text: &str) -> String {
    let quoted = Value::from(text).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Endpoint;
    use crate::hasura::ErrorKind;
    use crate::reload::Action;
    use crate::secret::Secret;
    use serde_json::json;
    use std::time::Duration;

    fn redactor(endpoint: &str, secret: Option<&str>) -> Redactor {
        Redactor::new(&HasuraSettings {
            endpoint: Endpoint::parse(endpoint).unwrap(),
            admin_secret: secret.map(|s| Secret::new(s.to_owned())),
            timeout: Duration::from_secs(1),
        })
    }

    fn outcome(status: Status) -> Outcome {
        Outcome {
            status,
            attempts: 1,
            duration: Duration::ZERO,
            action: Action::Checked,
        }
    }

    #[test]
    fn echoed_credentials_are_replaced_in_every_form() {
        let redactor = redactor("http://user:pa55word@h:8080", Some("adm1n-secret"));
        let message = "x-hasura-admin-secret adm1n-secret is wrong for user:pa55word \
                       (Basic dXNlcjpwYTU1d29yZA==)";
        let failed = outcome(Status::Failed(HasuraError {
            kind: ErrorKind::HttpError,
            message: message.into(),
            status: Some(400),
            hasura_code: None,
        }));
        let Status::Failed(error) = &redactor.scrub(failed).status else {
            panic!("still failed");
        };
        assert_eq!(
            error.message,
            "x-hasura-admin-secret [redacted] is wrong for [redacted] (Basic [redacted])"
        );
    }

    #[test]
    fn objects_holding_a_secret_are_cleaned_and_others_kept_as_received() {
        let redactor = redactor("http://h", Some("adm1n-secret"));
        let leaky = json!({"name": "remote_schema r", "definition": {"headers": [
            {"name": "x-hasura-admin-secret", "value": "adm1n-secret"}]}});
        let plain = Object::from(json!({"name": "a"}));
        let plain = outcome(Status::Inconsistent(vec![plain]));
        assert_eq!(redactor.scrub(plain.clone()), plain);
        let leaky = outcome(Status::Inconsistent(vec![Object::from(leaky)]));
        let cleaned = redactor.scrub(leaky).inconsistent_objects()[0].to_value();
        let header = &cleaned["definition"]["headers"][0];
        assert_eq!(header["value"], "[redacted]");
    }

    #[test]
    fn objects_are_searched_as_json_text() {
        let redactor = redactor("http://h", Some("se\"cr\\et\n"));
        let raw = |text: &str| serde_json::from_str::<Object>(text).unwrap();
        let escaped = raw(r#"{"b":"se\"cr\\et\n","a":1}"#);
        let unicode = raw(r#"{"b":"\u0073e\"cr\\et\u000a"}"#);
        let spaced = raw(r#"{ "name" : "a" }"#);
        let found = vec![escaped, unicode, spaced.clone()];
        let cleaned = redactor.scrub(outcome(Status::Inconsistent(found)));
        let objects = cleaned.inconsistent_objects();
        assert_eq!(objects[0].json(), r#"{"a":1,"b":"[redacted]"}"#);
        assert_eq!(objects[1].json(), r#"{"b":"[redacted]"}"#);
        assert_eq!(objects[2], spaced);
        assert_eq!(objects[2].json(), r#"{ "name" : "a" }"#);
    }

    #[test]
    fn nothing_to_hide_changes_nothing() {
        let redactor = redactor("http://h", None);
        assert!(redactor.secrets.is_empty());
        let failed = outcome(Status::Failed(HasuraError {
            kind: ErrorKind::Timeout,
            message: "timed out".into(),
            status: None,
            hasura_code: None,
        }));
        assert_eq!(redactor.scrub(failed.clone()), failed);
    }
}
