//! Sentry: one event per final outcome that needs attention, grouped by a
//! fingerprint of what is wrong, and Crons check-ins around one-shot runs.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sentry::protocol::{
    Attachment, Context, Envelope, Event, Exception, Map, MonitorCheckIn, MonitorCheckInStatus,
};
use sentry::transports::UreqHttpTransportOptions;
use sentry::types::{Dsn, Uuid};
use sentry::{Client, ClientOptions, Level, Transport, TransportFactory, TransportOptions};
use serde_json::Value;
use ureq::Agent;
use ureq::http::{Request, Response};
use ureq::middleware::MiddlewareNext;
use ureq::{Body, SendBody};

use super::objects;
use crate::config::{Endpoint, ReportSettings};
use crate::hasura::{HasuraError, Object};
use crate::reload::{Action, Outcome, Status};

/// The release every event carries.
const RELEASE: &str = concat!("hasura-metadata-reloader@", env!("CARGO_PKG_VERSION"));

/// Object names in an exception value; the rest are counted.
const NAMES_IN_VALUE: usize = 3;

/// Object names in a fingerprint; past this, a digest of all of them
/// stands for the rest, so twenty thousand objects do not make an event
/// too large to be accepted.
const NAMES_IN_FINGERPRINT: usize = 100;

/// Objects in the `hasura` context, for the same reason; the attachment
/// always holds them all.
const OBJECTS_IN_CONTEXT: usize = 100;

/// Sentry's limit on the length of a tag value.
const TAG_LENGTH: usize = 200;

/// A Sentry client and what its events say about the endpoint.
pub struct Sentry {
    client: Arc<Client>,
    endpoint: Endpoint,
    monitor: Option<String>,
    environment: Option<String>,
    /// The check-in id and start of the one-shot run in progress.
    run: Mutex<Option<(Uuid, Instant)>>,
    /// Whether the last flush emptied the queue.
    idle: AtomicBool,
}

impl Sentry {
    /// A client when a valid DSN is set; a malformed one is a warning and
    /// leaves Sentry off.
    pub fn start(settings: &ReportSettings, endpoint: &Endpoint, agent: Agent) -> Option<Sentry> {
        let Some(secret) = &settings.sentry_dsn else {
            if settings.sentry_monitor.is_some() {
                log::warn!("Sentry monitor ignored without a Sentry DSN.");
            }
            return None;
        };
        let dsn: Dsn = match secret.expose().trim().parse() {
            Ok(dsn) => dsn,
            Err(error) => {
                let error = error.to_string();
                let option = "--sentry-dsn (SENTRY_DSN)";
                log::warn!(option, error; "Sentry DSN is invalid, Sentry is off.");
                return None;
            }
        };
        let client = Client::with_options(options(dsn, settings, agent));
        log::info!("Sentry initialized.");
        Some(Sentry {
            client: Arc::new(client),
            endpoint: endpoint.clone(),
            monitor: settings.sentry_monitor.clone(),
            environment: settings.sentry_env.clone(),
            run: Mutex::new(None),
            idle: AtomicBool::new(false),
        })
    }

    /// Sends the event of a final outcome; a consistent one sends nothing.
    pub fn report(&self, outcome: &Outcome) {
        let (event, attachment) = match &outcome.status {
            Status::Consistent => return,
            Status::Inconsistent(found) => (
                inconsistent_event(&self.endpoint, found, outcome),
                Some(attachment(found)),
            ),
            Status::Failed(error) => (failed_event(&self.endpoint, error, outcome), None),
        };
        // The client applies release, environment and SDK details; no scope
        // is involved, so concurrent server threads cannot mix their data.
        let Some(event) = self.client.prepare_event(event, None) else {
            return;
        };
        let mut envelope = Envelope::from(event);
        if let Some(attachment) = attachment {
            envelope.add_item(attachment);
        }
        self.client.send_envelope(envelope);
    }

    /// Sends the `in_progress` check-in of a one-shot run.
    pub fn run_started(&self) {
        let Some(slug) = &self.monitor else { return };
        let id = sentry::types::random_uuid();
        *self.run.lock().unwrap_or_else(|e| e.into_inner()) = Some((id, Instant::now()));
        let check_in = self.check_in(id, slug, MonitorCheckInStatus::InProgress, None);
        self.client.send_envelope(Envelope::from(check_in));
    }

    /// Sends the closing check-in, `ok` or `error`, with the run's duration.
    pub fn run_finished(&self, outcome: &Outcome) {
        let Some(slug) = &self.monitor else { return };
        let started = self.run.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (id, since) = started.unwrap_or_else(|| (sentry::types::random_uuid(), Instant::now()));
        let status = match outcome.status {
            Status::Consistent => MonitorCheckInStatus::Ok,
            _ => MonitorCheckInStatus::Error,
        };
        let seconds = since.elapsed().as_secs_f64();
        let check_in = self.check_in(id, slug, status, Some(seconds));
        self.client.send_envelope(Envelope::from(check_in));
    }

    fn check_in(
        &self,
        id: Uuid,
        slug: &str,
        status: MonitorCheckInStatus,
        duration: Option<f64>,
    ) -> MonitorCheckIn {
        MonitorCheckIn {
            check_in_id: id,
            monitor_slug: slug.to_owned(),
            status,
            environment: self.environment.clone(),
            duration,
            monitor_config: None,
        }
    }

    /// Starts delivering what is queued, for at most `budget`, on a thread
    /// of its own: the client's flush can block on a full queue, and the
    /// caller must be free to give up. The answer is `true` once all is
    /// sent.
    pub fn flush_in_background(&self, budget: Duration) -> Receiver<bool> {
        let (done, answer) = mpsc::channel();
        let client = Arc::clone(&self.client);
        // A thread that cannot start drops `done`: the caller then reads
        // "not delivered", which is the truth.
        let _ = std::thread::Builder::new()
            .name("sentry-flush".into())
            .spawn(move || {
                let _ = done.send(client.flush(Some(budget)));
            });
        answer
    }

    /// Records whether the last flush emptied the queue.
    pub fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::SeqCst);
    }
}

impl Drop for Sentry {
    fn drop(&mut self) {
        // Dropping the last client joins its transport thread, which may be
        // stuck on a hanging Sentry until its timeout. Unless the queue is
        // known to be empty, keep the client alive until the process ends.
        if !self.idle.load(Ordering::SeqCst) {
            std::mem::forget(Arc::clone(&self.client));
        }
    }
}

fn options(dsn: Dsn, settings: &ReportSettings, agent: Agent) -> ClientOptions {
    let mut options = ClientOptions::new()
        .release(RELEASE)
        .default_integrations(false)
        .send_default_pii(false)
        .transport(AgentTransport(agent));
    options.dsn = Some(dsn);
    options.environment = settings.sentry_env.clone().map(Cow::Owned);
    options
}

/// Builds the crate's ureq transport on our agent: the shared TLS roots,
/// proxies from the environment and short timeouts.
struct AgentTransport(Agent);

impl TransportFactory for AgentTransport {
    fn create_transport_with_options(&self, options: TransportOptions) -> Arc<dyn Transport> {
        let options = UreqHttpTransportOptions::from(options).with_agent(self.0.clone());
        Arc::new(options.build())
    }
}

/// Logs envelopes Sentry did not take: the transport itself stays silent.
pub fn log_delivery(
    request: Request<SendBody>,
    next: MiddlewareNext,
) -> Result<Response<Body>, ureq::Error> {
    let result = next.handle(request);
    match &result {
        Ok(response) if response.status().is_success() => {
            log::debug!(status = response.status().as_u16(); "Send Sentry envelope");
        }
        Ok(response) => {
            log::warn!(status = response.status().as_u16(); "Sentry report failed.");
        }
        Err(error) => {
            log::warn!(error = super::describe(error); "Sentry report failed.");
        }
    }
    result
}

/// The event of a final inconsistent outcome.
fn inconsistent_event(endpoint: &Endpoint, found: &[Object], outcome: &Outcome) -> Event<'static> {
    let names = objects::sorted_names(found);
    let mut event = base_event(endpoint, "MetadataInconsistent", exception_value(found));
    event.fingerprint = fingerprint(
        ["hasura-metadata-inconsistent", endpoint.host()],
        inconsistent_parts(&names),
    );
    event.tags.extend(inconsistent_tags(found));
    let mut context = base_context(endpoint, outcome);
    context.insert("inconsistent_count".into(), found.len().into());
    let kept = found.len().min(OBJECTS_IN_CONTEXT);
    // Only these few are parsed: Sentry shows the context as structure.
    let structured: Vec<Value> = found[..kept].iter().map(Object::to_value).collect();
    context.insert("inconsistent_objects".into(), structured.into());
    if kept < found.len() {
        context.insert("inconsistent_objects_truncated".into(), true.into());
    }
    event
        .contexts
        .insert("hasura".into(), Context::Other(context));
    event
}

/// The event of a failed outcome, typed by the kind of failure.
fn failed_event(endpoint: &Endpoint, error: &HasuraError, outcome: &Outcome) -> Event<'static> {
    let kind = error.kind.as_str();
    let mut event = base_event(endpoint, error.kind.exception_type(), error.message.clone());
    event.fingerprint = fingerprint(
        ["hasura-metadata-api-error", kind, endpoint.host()],
        Vec::new(),
    );
    event.tags.insert("hasura.error_kind".into(), kind.into());
    let mut context = base_context(endpoint, outcome);
    context.insert("kind".into(), kind.into());
    context.insert("error".into(), error.message.clone().into());
    if let Some(status) = error.status {
        event
            .tags
            .insert("hasura.status".into(), status.to_string());
        context.insert("status".into(), status.into());
    }
    if let Some(code) = &error.hasura_code {
        event.tags.insert("hasura.hasura_code".into(), tag(code));
        context.insert("hasura_code".into(), code.clone().into());
    }
    event
        .contexts
        .insert("hasura".into(), Context::Other(context));
    event
}

fn base_event(endpoint: &Endpoint, ty: &str, value: String) -> Event<'static> {
    let mut event = Event {
        level: Level::Error,
        ..Event::default()
    };
    event.exception = vec![Exception {
        ty: ty.to_owned(),
        value: Some(value),
        ..Exception::default()
    }]
    .into();
    event
        .tags
        .insert("hasura.endpoint".into(), tag(endpoint.display()));
    event
}

fn base_context(endpoint: &Endpoint, outcome: &Outcome) -> Map<String, Value> {
    let action = match outcome.action {
        Action::Reloaded => "reloaded",
        Action::Checked => "checked",
        Action::Skipped => "skipped",
    };
    let mut context = Map::new();
    context.insert("endpoint".into(), endpoint.display().into());
    context.insert("attempts".into(), outcome.attempts.into());
    context.insert("duration_ms".into(), outcome.duration_ms().into());
    context.insert("action".into(), action.into());
    context
}

/// `3 inconsistent objects: a, b, c and 2 more`, in Hasura's order.
fn exception_value(found: &[Object]) -> String {
    let noun = if found.len() == 1 {
        "object"
    } else {
        "objects"
    };
    let first: Vec<String> = found
        .iter()
        .take(NAMES_IN_VALUE)
        .map(|o| objects::shorten(&objects::name(o), 120))
        .collect();
    let mut value = format!("{} inconsistent {noun}: {}", found.len(), first.join(", "));
    if found.len() > NAMES_IN_VALUE {
        value.push_str(&format!(" and {} more", found.len() - NAMES_IN_VALUE));
    }
    value
}

fn inconsistent_tags(found: &[Object]) -> Map<String, String> {
    let types = objects::sorted_types(found);
    let types = if types.is_empty() {
        "unknown".to_owned()
    } else {
        types.join(",")
    };
    Map::from([
        ("hasura.inconsistent_count".into(), found.len().to_string()),
        ("hasura.object_types".into(), tag(&types)),
    ])
}

/// Every sorted name, or the first ones and a digest of them all.
fn inconsistent_parts(names: &[String]) -> Vec<String> {
    if names.len() <= NAMES_IN_FINGERPRINT {
        return names.to_vec();
    }
    let mut parts = names[..NAMES_IN_FINGERPRINT].to_vec();
    let rest = names.len() - NAMES_IN_FINGERPRINT;
    parts.push(format!("and {rest} more, digest {:016x}", digest(names)));
    parts
}

fn fingerprint<const N: usize>(
    fixed: [&str; N],
    rest: Vec<String>,
) -> Cow<'static, [Cow<'static, str>]> {
    let fixed = fixed.into_iter().map(|part| Cow::Owned(part.to_owned()));
    Cow::Owned(fixed.chain(rest.into_iter().map(Cow::Owned)).collect())
}

/// FNV-1a over the names, each ended by a newline: stable across runs,
/// releases and platforms, which is all grouping needs.
fn digest(names: &[String]) -> u64 {
    let bytes = names.iter().flat_map(|n| n.bytes().chain([b'\n']));
    bytes.fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn tag(value: &str) -> String {
    objects::shorten(value, TAG_LENGTH)
}

/// The full array as received, as `inconsistent_objects.json`.
fn attachment(found: &[Object]) -> Attachment {
    Attachment {
        buffer: json_array(found),
        filename: "inconsistent_objects.json".into(),
        content_type: Some("application/json".into()),
        ty: None,
    }
}

/// The objects' texts joined into one JSON array, allocated once at its
/// final size: for twenty thousand objects it is as large as Hasura's
/// answer.
fn json_array(found: &[Object]) -> Vec<u8> {
    let size = found.iter().map(|o| o.json().len() + 1).sum::<usize>() + 1;
    let mut array = Vec::with_capacity(size.max(2));
    array.push(b'[');
    for (i, object) in found.iter().enumerate() {
        if i > 0 {
            array.push(b',');
        }
        array.extend_from_slice(object.json().as_bytes());
    }
    array.push(b']');
    array
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hasura::ErrorKind;
    use serde_json::json;

    fn outcome(status: Status) -> Outcome {
        Outcome {
            status,
            attempts: 3,
            duration: Duration::from_millis(42),
            action: Action::Reloaded,
        }
    }

    fn endpoint() -> Endpoint {
        Endpoint::parse("https://user:pw@hasura.example.com:8443/prefix").unwrap()
    }

    fn sample() -> Vec<Object> {
        [
            json!({"type": "table", "name": "table b", "reason": "gone"}),
            json!({"type": "remote_schema", "name": "remote_schema a", "reason": "down"}),
            json!({"reason": "Ambiguous URL paths"}),
            json!({"type": "action", "reason": "Multiple definitions for: x"}),
        ]
        .into_iter()
        .map(Object::from)
        .collect()
    }

    fn parts(event: &Event<'_>) -> Vec<String> {
        event.fingerprint.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn inconsistency_fingerprint_is_host_and_sorted_names() {
        let found = sample();
        let event = inconsistent_event(&endpoint(), &found, &outcome(Status::Consistent));
        assert_eq!(
            parts(&event),
            [
                "hasura-metadata-inconsistent",
                "hasura.example.com",
                "Ambiguous URL paths",
                "action: Multiple definitions for: x",
                "remote_schema a",
                "table b",
            ]
        );
        let mut reversed = found.clone();
        reversed.reverse();
        let again = inconsistent_event(&endpoint(), &reversed, &outcome(Status::Consistent));
        assert_eq!(parts(&again), parts(&event));
    }

    #[test]
    fn inconsistency_tags_name_endpoint_count_and_types() {
        let event = inconsistent_event(&endpoint(), &sample(), &outcome(Status::Consistent));
        assert_eq!(
            event.tags["hasura.endpoint"],
            "https://hasura.example.com:8443/prefix"
        );
        assert_eq!(event.tags["hasura.inconsistent_count"], "4");
        assert_eq!(
            event.tags["hasura.object_types"],
            "action,remote_schema,table"
        );
        assert_eq!(event.level, Level::Error);
        let exception = &event.exception.values[0];
        assert_eq!(exception.ty, "MetadataInconsistent");
        assert_eq!(
            exception.value.as_deref(),
            Some(
                "4 inconsistent objects: table b, remote_schema a, Ambiguous URL paths and 1 more"
            )
        );
    }

    #[test]
    fn inconsistency_context_holds_the_objects_as_json() {
        let found = sample();
        let event = inconsistent_event(&endpoint(), &found, &outcome(Status::Consistent));
        let Context::Other(context) = &event.contexts["hasura"] else {
            panic!("expected a map");
        };
        let structured: Vec<Value> = found.iter().map(Object::to_value).collect();
        assert_eq!(context["inconsistent_objects"], Value::from(structured));
        assert_eq!(context["attempts"], 3);
        assert_eq!(
            context["endpoint"],
            "https://hasura.example.com:8443/prefix"
        );
    }

    #[test]
    fn huge_inconsistencies_stay_bounded_and_distinct() {
        let many: Vec<Object> = (0..500)
            .map(|i| Object::from(json!({"name": format!("table t{i:03}")})))
            .collect();
        let event = inconsistent_event(&endpoint(), &many, &outcome(Status::Consistent));
        assert_eq!(event.fingerprint.len(), 2 + NAMES_IN_FINGERPRINT + 1);
        let other = inconsistent_event(&endpoint(), &many[..499], &outcome(Status::Consistent));
        assert_ne!(parts(&event), parts(&other));
        let Context::Other(context) = &event.contexts["hasura"] else {
            panic!("expected a map");
        };
        assert_eq!(
            context["inconsistent_objects"].as_array().unwrap().len(),
            100
        );
        assert_eq!(attachment(&many).buffer, serde_json::to_vec(&many).unwrap());
    }

    #[test]
    fn failures_are_typed_and_grouped_by_kind_and_host() {
        let error = HasuraError {
            kind: ErrorKind::AccessDenied,
            message: "reload_metadata: HTTP 401: invalid secret (access-denied)".into(),
            status: Some(401),
            hasura_code: Some("access-denied".into()),
        };
        let event = failed_event(&endpoint(), &error, &outcome(Status::Consistent));
        assert_eq!(
            parts(&event),
            [
                "hasura-metadata-api-error",
                "access_denied",
                "hasura.example.com"
            ]
        );
        assert_eq!(event.exception.values[0].ty, "HasuraAccessDenied");
        assert_eq!(
            event.exception.values[0].value.as_deref(),
            Some(error.message.as_str())
        );
        assert_eq!(event.tags["hasura.error_kind"], "access_denied");
        assert_eq!(event.tags["hasura.status"], "401");
        assert_eq!(event.tags["hasura.hasura_code"], "access-denied");
    }

    #[test]
    fn the_attachment_joins_the_texts_as_received() {
        let found: Vec<Object> = ["{ \"name\" : \"a\" }", "7"]
            .iter()
            .map(|text| serde_json::from_str(text).unwrap())
            .collect();
        assert_eq!(json_array(&found), b"[{ \"name\" : \"a\" },7]");
        assert_eq!(json_array(&[]), b"[]");
    }

    #[test]
    fn one_object_reads_in_the_singular() {
        let found = [Object::from(json!({"name": "source x"}))];
        assert_eq!(exception_value(&found), "1 inconsistent object: source x");
    }
}
