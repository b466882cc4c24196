//! The client of Hasura's metadata API: the two commands the tool sends,
//! and errors that tell apart what went wrong.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use ureq::http::Response;
use ureq::tls::TlsConfig;
use ureq::{Agent, Body};

use crate::config::{HasuraSettings, ReloadScopes};
use crate::secret::Secret;

/// The largest answer read from Hasura. Twenty thousand inconsistent
/// objects take about 10 MB; this leaves room for far more.
const MAX_ANSWER_BYTES: u64 = 256 * 1024 * 1024;

/// Connecting takes at most this long, even with a long request timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `User-Agent` of every request this tool sends.
pub const USER_AGENT: &str = concat!("hasura-metadata-reloader/", env!("CARGO_PKG_VERSION"));

/// What went wrong, in the words the logs and reports use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Refused, reset, DNS failure, or a proxy that could not connect.
    Unreachable,
    /// No complete answer within the timeout.
    Timeout,
    /// The TLS handshake failed, e.g. an untrusted certificate.
    Tls,
    /// The admin secret is missing, wrong, or not an admin one.
    AccessDenied,
    /// Any other HTTP error status.
    HttpError,
    /// An answer that is not what the API promises.
    BadResponse,
}

impl ErrorKind {
    /// The `kind` field of logs and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::HttpError => "http_error",
            ErrorKind::BadResponse => "bad_response",
        }
    }

    /// The exception type of Sentry events.
    pub fn exception_type(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => "HasuraUnreachable",
            ErrorKind::Timeout => "HasuraTimeout",
            ErrorKind::Tls => "HasuraTlsError",
            ErrorKind::AccessDenied => "HasuraAccessDenied",
            ErrorKind::HttpError => "HasuraHttpError",
            ErrorKind::BadResponse => "HasuraBadResponse",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed call to the metadata API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HasuraError {
    pub kind: ErrorKind,
    /// A one-line description, free of secrets.
    pub message: String,
    /// The HTTP status, when an answer arrived.
    pub status: Option<u16>,
    /// Hasura's own `code`, when its error body could be read.
    pub hasura_code: Option<String>,
}

impl HasuraError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> HasuraError {
        HasuraError {
            kind,
            message: message.into(),
            status: None,
            hasura_code: None,
        }
    }

    /// Whether the same request may succeed later: transport failures,
    /// 5xx and 429 are retried; other answers are not.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Unreachable | ErrorKind::Timeout | ErrorKind::Tls => true,
            ErrorKind::HttpError => {
                matches!(self.status, Some(status) if status >= 500 || status == 429)
            }
            ErrorKind::AccessDenied | ErrorKind::BadResponse => false,
        }
    }
}

impl fmt::Display for HasuraError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HasuraError {}

/// One inconsistent object, kept as the exact JSON text Hasura sent.
///
/// Reported, not interpreted: one allocation per object instead of a tree
/// of maps and strings, which for twenty thousand objects is the difference
/// between the size of the answer and ten times that. Serialised with
/// serde_json, it is written out as that JSON, not as a string.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Object(Box<RawValue>);

impl Object {
    /// The JSON text as received, without surrounding whitespace.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// The object as a tree, for the few places that need structure.
    ///
    /// Kept text is valid JSON, but a number beyond the range of `f64`
    /// (`1e400`) has no tree; such an object becomes its text, as a string.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.json()).unwrap_or_else(|_| Value::from(self.json()))
    }
}

impl From<Value> for Object {
    /// The compact JSON of `value`, as for an object rewritten by the
    /// redactor.
    fn from(value: Value) -> Object {
        // A `Value` always serialises: its keys are strings and its numbers
        // finite.
        let raw =
            serde_json::value::to_raw_value(&value).unwrap_or_else(|_| RawValue::NULL.to_owned());
        Object(raw)
    }
}

/// Objects are equal when Hasura sent the same text.
impl PartialEq for Object {
    fn eq(&self, other: &Object) -> bool {
        self.json() == other.json()
    }
}

/// Hasura's verdict on its metadata.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Consistent,
    /// The objects exactly as Hasura sent them.
    Inconsistent(Vec<Object>),
}

/// A `reload_metadata` answer: Hasura before v2.4 does not say whether the
/// metadata is consistent.
#[derive(Debug, Clone, PartialEq)]
pub enum ReloadAnswer {
    Verdict(Verdict),
    Unknown,
}

/// The metadata API of one Hasura.
#[derive(Debug, Clone)]
pub struct Client {
    agent: Agent,
    url: String,
    admin_secret: Option<Secret>,
}

impl Client {
    /// A client with its own agent: the request timeout, the shared TLS
    /// roots, proxies from the environment, and no redirects, so the admin
    /// secret never follows one to another host.
    pub fn new(settings: &HasuraSettings, tls: &TlsConfig) -> Client {
        let agent = Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            .timeout_connect(Some(settings.timeout.min(CONNECT_TIMEOUT)))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(USER_AGENT)
            .tls_config(tls.clone())
            .build()
            .new_agent();
        Client {
            agent,
            url: settings.endpoint.metadata_url().to_owned(),
            admin_secret: settings.admin_secret.clone(),
        }
    }

    /// `reload_metadata` with both scopes explicit, since Hasura's defaults
    /// differ between versions.
    pub fn reload_metadata(&self, scopes: &ReloadScopes) -> Result<ReloadAnswer, HasuraError> {
        let mut args = json!({
            "reload_remote_schemas": scopes.remote_schemas.to_json(),
            "reload_sources": scopes.sources.to_json(),
        });
        if scopes.recreate_event_triggers != crate::config::Scope::None {
            args["recreate_event_triggers"] = scopes.recreate_event_triggers.to_json();
        }
        let body = self.post("reload_metadata", args)?;
        parse_reload_answer(&body)
    }

    /// `get_inconsistent_metadata`, which changes nothing.
    pub fn get_inconsistent_metadata(&self) -> Result<Verdict, HasuraError> {
        let body = self.post("get_inconsistent_metadata", json!({}))?;
        parse_inconsistency(&body)
    }

    /// Sends one command and returns the body of a 2xx answer.
    fn post(&self, command: &str, args: Value) -> Result<Vec<u8>, HasuraError> {
        let body = json!({ "type": command, "args": args }).to_string();
        log::debug!(command; "Send metadata request");
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if let Some(secret) = &self.admin_secret {
            request = request.header("X-Hasura-Admin-Secret", secret.expose());
        }
        let mut response = request
            .send(body)
            .map_err(|e| transport_error(command, &e))?;
        let status = response.status().as_u16();
        let answer = read_answer(&mut response)
            .map_err(|e| transport_error(&format!("{command}: reading the answer"), &e))?;
        log::debug!(command, status, bytes = answer.len(); "Receive metadata answer");
        if (200..300).contains(&status) {
            Ok(answer)
        } else {
            Err(status_error(command, status, &answer))
        }
    }
}

/// The whole body of an answer, at most [`MAX_ANSWER_BYTES`].
fn read_answer(response: &mut Response<Body>) -> Result<Vec<u8>, ureq::Error> {
    // ureq knows the length only when the body is not decompressed. Sized
    // up front, a large answer is not copied from one doubled buffer to
    // the next, nor left with up to half its capacity unused.
    let expected = response.body().content_length().unwrap_or(0);
    let capacity = usize::try_from(expected.min(MAX_ANSWER_BYTES)).unwrap_or(0);
    let mut answer = Vec::with_capacity(capacity);
    response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .reader()
        .read_to_end(&mut answer)?;
    Ok(answer)
}

/// Hasura's error body: `{"path":"$","error":"…","code":"…"}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    code: Option<String>,
}

fn status_error(command: &str, status: u16, body: &[u8]) -> HasuraError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|b| b.code.clone());
    let denied = status == 401 || code.as_deref() == Some("access-denied");
    let kind = if denied {
        ErrorKind::AccessDenied
    } else {
        ErrorKind::HttpError
    };
    let detail = match (&parsed, status) {
        (Some(body), _) => body.error.clone(),
        (None, 300..=399) => "redirects are not followed; check the endpoint".to_owned(),
        (None, _) => "the answer is not a Hasura error".to_owned(),
    };
    let code_text = code
        .as_deref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    HasuraError {
        kind,
        message: format!("{command}: HTTP {status}: {detail}{code_text}"),
        status: Some(status),
        hasura_code: code,
    }
}

/// An error of ureq, sending or reading; `context` names the command and
/// the step.
fn transport_error(context: &str, error: &ureq::Error) -> HasuraError {
    let kind = match error {
        ureq::Error::Timeout(_) => ErrorKind::Timeout,
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => ErrorKind::Tls,
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
        ureq::Error::BodyExceedsLimit(_) | ureq::Error::Decompress(..) => ErrorKind::BadResponse,
        _ => ErrorKind::Unreachable,
    };
    HasuraError::new(kind, format!("{context}: {}", describe(error)))
}

/// ureq's own words for an error, without any URL it might quote.
fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::HostNotFound => "host not found".to_owned(),
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        ureq::Error::BodyExceedsLimit(limit) => format!("answer larger than {limit} bytes"),
        ureq::Error::BadUri(_) => "the endpoint is not a valid URL".to_owned(),
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
struct RawReload {
    is_consistent: Option<bool>,
    inconsistent_objects: Option<Vec<Object>>,
}

#[derive(Deserialize)]
struct RawInconsistency {
    is_consistent: bool,
    inconsistent_objects: Vec<Object>,
}

fn bad_response(command: &str, why: impl fmt::Display) -> HasuraError {
    HasuraError::new(
        ErrorKind::BadResponse,
        format!("{command}: unexpected answer: {why}"),
    )
}

/// Reads a `reload_metadata` answer body.
pub fn parse_reload_answer(body: &[u8]) -> Result<ReloadAnswer, HasuraError> {
    let raw: RawReload =
        serde_json::from_slice(body).map_err(|e| bad_response("reload_metadata", e))?;
    match raw.is_consistent {
        None => Ok(ReloadAnswer::Unknown),
        Some(is_consistent) => verdict("reload_metadata", is_consistent, raw.inconsistent_objects)
            .map(ReloadAnswer::Verdict),
    }
}

/// Reads a `get_inconsistent_metadata` answer body.
pub fn parse_inconsistency(body: &[u8]) -> Result<Verdict, HasuraError> {
    let raw: RawInconsistency =
        serde_json::from_slice(body).map_err(|e| bad_response("get_inconsistent_metadata", e))?;
    verdict(
        "get_inconsistent_metadata",
        raw.is_consistent,
        Some(raw.inconsistent_objects),
    )
}

/// Only what Hasura states: inconsistent needs objects, and consistent
/// must not list any.
fn verdict(
    command: &str,
    is_consistent: bool,
    objects: Option<Vec<Object>>,
) -> Result<Verdict, HasuraError> {
    match (is_consistent, objects) {
        (true, None) => Ok(Verdict::Consistent),
        (true, Some(objects)) if objects.is_empty() => Ok(Verdict::Consistent),
        (true, Some(_)) => Err(bad_response(
            command,
            "consistent, yet inconsistent objects are listed",
        )),
        (false, Some(objects)) if !objects.is_empty() => Ok(Verdict::Inconsistent(objects)),
        (false, _) => Err(bad_response(
            command,
            "inconsistent, yet no inconsistent objects are listed",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_answers_of_every_version_parse() {
        assert_eq!(
            parse_reload_answer(br#"{"message":"success"}"#),
            Ok(ReloadAnswer::Unknown)
        );
        assert_eq!(
            parse_reload_answer(br#"{"message":"success","is_consistent":true}"#),
            Ok(ReloadAnswer::Verdict(Verdict::Consistent))
        );
        let answer = br#"{"message":"success","is_consistent":false,"inconsistent_objects":[{"type":"remote_schema","name":"x","reason":"down"}]}"#;
        let Ok(ReloadAnswer::Verdict(Verdict::Inconsistent(objects))) = parse_reload_answer(answer)
        else {
            panic!("expected objects");
        };
        assert_eq!(objects[0].to_value()["name"], "x");
    }

    #[test]
    fn objects_are_kept_byte_for_byte() {
        let answer = br#"{"is_consistent":false,"inconsistent_objects":[ {"type":"table", "name":"t","reason":"caf\u00e9","z":1.50,"a":[]} ,7,"s"]}"#;
        let Ok(Verdict::Inconsistent(objects)) = parse_inconsistency(answer) else {
            panic!("expected objects");
        };
        let texts: Vec<&str> = objects.iter().map(Object::json).collect();
        assert_eq!(
            texts,
            [
                r#"{"type":"table", "name":"t","reason":"caf\u00e9","z":1.50,"a":[]}"#,
                "7",
                r#""s""#
            ]
        );
        assert_eq!(serde_json::to_string(&objects[0]).unwrap(), texts[0]);
    }

    #[test]
    fn answers_of_the_wrong_shape_are_bad_responses() {
        for body in [
            &b""[..],
            b"<html>502</html>",
            b"[]",
            br#"{"is_consistent":"yes"}"#,
            br#"{"is_consistent":false}"#,
            br#"{"is_consistent":false,"inconsistent_objects":"x"}"#,
            br#"{"is_consistent":false,"inconsistent_objects":[]}"#,
            br#"{"is_consistent":true,"inconsistent_objects":[{}]}"#,
        ] {
            let error = parse_inconsistency(body).unwrap_err();
            assert_eq!(
                error.kind,
                ErrorKind::BadResponse,
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(!error.is_retryable());
        }
    }

    #[test]
    fn access_denied_arrives_as_401_or_as_400_with_its_code() {
        let body = br#"{"path":"$","error":"invalid x-hasura-admin-secret/x-hasura-access-key","code":"access-denied"}"#;
        let error = status_error("reload_metadata", 401, body);
        assert_eq!(error.kind, ErrorKind::AccessDenied);
        assert_eq!(error.hasura_code.as_deref(), Some("access-denied"));
        assert_eq!(error.status, Some(401));
        assert!(error.message.contains("invalid x-hasura-admin-secret"));
        let body =
            br#"{"path":"$.args","error":"restricted access : admin only","code":"access-denied"}"#;
        assert_eq!(status_error("x", 400, body).kind, ErrorKind::AccessDenied);
        assert!(!status_error("x", 400, body).is_retryable());
    }

    #[test]
    fn only_5xx_and_429_statuses_are_retried() {
        assert!(status_error("x", 502, b"<html>bad gateway</html>").is_retryable());
        assert!(status_error("x", 429, b"").is_retryable());
        assert!(
            !status_error(
                "x",
                404,
                br#"{"path":"$","error":"resource does not exist","code":"not-found"}"#
            )
            .is_retryable()
        );
        assert!(!status_error("x", 302, b"").is_retryable());
    }
}
