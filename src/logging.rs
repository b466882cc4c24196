//! JSON lines on stderr, with the keys of the original tool: `level`, the
//! fields, `time` and `message`.
//!
//! Every secret the configuration holds is registered here, and every line
//! is scrubbed of them before it is written, so a dependency that logs a
//! header at trace level cannot leak one either.

use std::io::Write;
use std::sync::RwLock;
use std::time::SystemTime;

use log::kv::{self, Key, VisitSource};
use log::{Level, Metadata, Record};

/// What a secret is replaced with in log lines.
const PLACEHOLDER: &str = "[redacted]";

/// Secrets, in the escaped form they take inside a JSON string.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Starts the logger: `RUST_LOG` in env_logger syntax, `info` by default.
pub fn init() {
    let filters = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| "info".to_owned());

    // A second init (tests calling `run` twice) keeps the first logger.
    let _ = env_logger::Builder::new()
        .parse_filters(&filters)
        .format(|buf, record| match is_wire_dump(record) {
            true => Ok(()),
            false => buf.write_all(line(record).as_bytes()),
        })
        .target(env_logger::Target::Stderr)
        .try_init();
}

/// Registers a secret to be scrubbed from every later log line.
pub fn redact(secret: &str) {
    // Very short values would scrub ordinary words; real secrets are longer.
    if secret.len() < 4 {
        return;
    }
    let escaped = json_string(secret);
    let escaped = escaped[1..escaped.len() - 1].to_owned();
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.contains(&escaped) {
        secrets.push(escaped);
    }
}

/// Writes one record with fields given at run time, for lines whose fields
/// are optional (an HTTP status, Hasura's error code).
pub fn emit(level: Level, message: &str, fields: &[(&str, kv::Value<'_>)]) {
    let metadata = Metadata::builder()
        .level(level)
        .target(module_path!())
        .build();
    if !log::logger().enabled(&metadata) {
        return;
    }
    let fields: &dyn kv::Source = &fields;
    log::logger().log(
        &Record::builder()
            .metadata(metadata)
            .args(format_args!("{message}"))
            .key_values(fields)
            .build(),
    );
}

/// ureq's trace records are hex dumps of the raw traffic. They split
/// headers across lines, where no scrubbing can find a secret, so they are
/// never written, whatever `RUST_LOG` asks for.
fn is_wire_dump(record: &Record<'_>) -> bool {
    record.level() == Level::Trace && record.target().starts_with("ureq")
}

/// Renders one record as a JSON object followed by a newline.
fn line(record: &Record<'_>) -> String {
    let mut out = String::with_capacity(160);
    out.push_str("{\"level\":");
    out.push_str(&json_string(level_name(record.level())));

    let mut fields = Fields { out: &mut out };
    // A field that cannot be rendered is dropped; the line stays valid.
    let _ = record.key_values().visit(&mut fields);

    out.push_str(",\"time\":");
    let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    out.push_str(&json_string(&time));
    out.push_str(",\"message\":");
    out.push_str(&scrub(json_string(&record.args().to_string())));
    out.push_str("}\n");
    out
}

/// Appends each field as `,"key":value`, the value as JSON.
struct Fields<'a> {
    out: &'a mut String,
}

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let rendered = serde_json::to_string(&value).map_err(kv::Error::boxed)?;
        self.out.push(',');
        self.out.push_str(&json_string(key.as_str()));
        self.out.push(':');
        self.out.push_str(&scrub(rendered));
        Ok(())
    }
}

/// Replaces every registered secret in already escaped JSON text.
fn scrub(text: String) -> String {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    secrets.iter().fold(text, |text, secret| {
        if text.contains(secret.as_str()) {
            text.replace(secret.as_str(), PLACEHOLDER)
        } else {
            text
        }
    })
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(level: Level, message: &str, fields: &[(&str, kv::Value<'_>)]) -> serde_json::Value {
        let fields: &dyn kv::Source = &fields;
        let text = line(
            &Record::builder()
                .level(level)
                .args(format_args!("{message}"))
                .key_values(fields)
                .build(),
        );
        assert!(text.ends_with('\n') && !text[..text.len() - 1].contains('\n'));
        serde_json::from_str(&text).expect("a log line is valid JSON")
    }

    #[test]
    fn keys_come_in_the_original_order() {
        let text = {
            let fields: &[(&str, kv::Value<'_>)] = &[("attempts", 1.into())];
            let fields: &dyn kv::Source = &fields;
            line(
                &Record::builder()
                    .level(Level::Info)
                    .args(format_args!("Metadata is consistent."))
                    .key_values(fields)
                    .build(),
            )
        };
        assert!(text.starts_with("{\"level\":\"info\",\"attempts\":1,\"time\":\""));
        assert!(text.ends_with(",\"message\":\"Metadata is consistent.\"}\n"));
    }

    #[test]
    fn structured_fields_stay_json() {
        let objects =
            serde_json::json!([{"name": "remote_schema x", "reason": "a \"quoted\"\nreason"}]);
        let line = render(
            Level::Error,
            "Metadata is inconsistent.",
            &[("inconsistent_objects", kv::Value::from_serde(&objects))],
        );
        assert_eq!(line["level"], "error");
        assert_eq!(line["inconsistent_objects"], objects);
    }

    #[test]
    fn kept_objects_are_written_as_received() {
        let text = r#"{ "name": "remote_schema x", "reason": "caf\u00e9" }"#;
        let objects: Vec<crate::hasura::Object> = vec![serde_json::from_str(text).unwrap()];
        let fields: &[(&str, kv::Value<'_>)] =
            &[("inconsistent_objects", kv::Value::from_serde(&objects))];
        let fields: &dyn kv::Source = &fields;
        let written = line(
            &Record::builder()
                .level(Level::Error)
                .args(format_args!("Metadata is inconsistent."))
                .key_values(fields)
                .build(),
        );
        let expected = format!(r#","inconsistent_objects":[{text}],"time":"#);
        assert!(written.contains(&expected), "{written}");
    }

    #[test]
    fn hostile_strings_keep_the_line_valid() {
        let nasty = "quote \" backslash \\ newline \n nul \u{0} }{";
        let line = render(Level::Warn, nasty, &[("error", nasty.into())]);
        assert_eq!(line["message"], nasty);
        assert_eq!(line["error"], nasty);
        assert_eq!(line["level"], "warn");
    }

    #[test]
    fn registered_secrets_are_scrubbed_from_messages_and_fields() {
        redact("s3cr3t-\"value\"");
        let line = render(
            Level::Debug,
            "header x-hasura-admin-secret: s3cr3t-\"value\"",
            &[("header", "s3cr3t-\"value\"".into())],
        );
        assert_eq!(line["message"], "header x-hasura-admin-secret: [redacted]");
        assert_eq!(line["header"], "[redacted]");
    }
}
