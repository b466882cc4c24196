//! How the fake decides its answers the way Hasura v2 does (route, then
//! authentication, then the body), and how it encodes them.

use std::io::{self, Write};
use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use tiny_http::{Header, Response};

use super::{FakeHasuraBuilder, RawAnswer, RecordedRequest, State};

/// An answer before encoding: Hasura's success answers may be compressed.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
    /// Whether Hasura would gzip it for a client that asks.
    pub compressible: bool,
}

impl Answer {
    fn success(body: Value) -> Answer {
        let raw = RawAnswer::json(200, &body);
        Answer {
            compressible: true,
            ..Answer::from(raw)
        }
    }

    fn error(status: u16, path: &str, code: &str, error: &str) -> Answer {
        Answer::from(RawAnswer::hasura_error(status, path, code, error))
    }

    /// The tiny_http response, with an `x-request-id` made from `id`.
    pub fn into_response(self, id: usize, gzip: bool) -> Response<io::Cursor<Vec<u8>>> {
        let request_id = format!("00000000-0000-4000-8000-{id:012x}");
        let mut response = Response::from_data(Vec::new()).with_status_code(self.status);
        response.add_header(header("x-request-id", &request_id));
        if let Some(content_type) = &self.content_type {
            response.add_header(header("Content-Type", content_type));
        }
        let body = if gzip {
            response.add_header(header("Content-Encoding", "gzip"));
            gzip_bytes(&self.body)
        } else {
            self.body
        };
        let length = body.len();
        response.with_data(io::Cursor::new(body), Some(length))
    }
}

impl From<RawAnswer> for Answer {
    fn from(raw: RawAnswer) -> Answer {
        let RawAnswer {
            status,
            content_type,
            body,
        } = raw;
        Answer {
            status,
            content_type,
            body,
            compressible: false,
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

fn gzip_bytes(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// Decides the answer the way Hasura does: route, then authentication, then
/// the body.
pub fn answer(state: &State, request: &RecordedRequest) -> Answer {
    if let Some(raw) = next_fault(state) {
        return Answer::from(raw);
    }
    let path = request.path.split('?').next().unwrap_or("");
    let route = format!("{}/v1/metadata", state.config.prefix);
    if request.method != "POST" || path != route {
        return Answer::error(404, "$", "not-found", "resource does not exist");
    }
    if let Err(denied) = authenticate(&state.config, request) {
        return denied;
    }
    match parse_command(&request.body) {
        Ok((command, args)) => run_command(state, &command, &args),
        Err(error) => error,
    }
}

fn next_fault(state: &State) -> Option<RawAnswer> {
    let queued = state.faults_once.lock().unwrap().pop_front();
    queued.or_else(|| state.config.fault_always.clone())
}

fn authenticate(config: &FakeHasuraBuilder, request: &RecordedRequest) -> Result<(), Answer> {
    let sent = request
        .header("x-hasura-admin-secret")
        .or(request.header("x-hasura-access-key"));
    let Some(secret) = &config.admin_secret else {
        return admin_only(request);
    };
    match sent {
        Some(sent) if sent == secret => admin_only(request),
        Some(_) => Err(access_denied(401, "$", WRONG_SECRET)),
        None if config.unauthorized_role.is_some() => Err(access_denied(400, "$.args", ADMIN_ONLY)),
        None => Err(access_denied(401, "$", MISSING_SECRET)),
    }
}

const MISSING_SECRET: &str = "x-hasura-admin-secret/x-hasura-access-key required, but not found";
const WRONG_SECRET: &str = "invalid x-hasura-admin-secret/x-hasura-access-key";
const ADMIN_ONLY: &str = "restricted access : admin only";

/// The metadata API is for the admin role only.
fn admin_only(request: &RecordedRequest) -> Result<(), Answer> {
    match request.header("x-hasura-role") {
        Some(role) if !role.eq_ignore_ascii_case("admin") => {
            Err(access_denied(400, "$.args", ADMIN_ONLY))
        }
        _ => Ok(()),
    }
}

fn access_denied(status: u16, path: &str, error: &str) -> Answer {
    Answer::error(status, path, "access-denied", error)
}

fn parse_command(body: &[u8]) -> Result<(String, Value), Answer> {
    let parse_failed = |path: &str, error: &str| Answer::error(400, path, "parse-failed", error);
    let body: Value = serde_json::from_slice(body).map_err(|_| invalid_json(body))?;
    let Value::Object(mut fields) = body else {
        let error = format!("parsing RQLMetadata failed, {}", expected("Object", &body));
        return Err(parse_failed("$", &error));
    };
    let command = match fields.remove("type") {
        Some(Value::String(command)) => command,
        Some(other) => {
            let error = format!("parsing Text failed, {}", expected("String", &other));
            return Err(parse_failed("$.type", &error));
        }
        None => return Err(parse_failed("$", r#"key "type" not found"#)),
    };
    let args = fields
        .remove("args")
        .ok_or_else(|| parse_failed("$", r#"key "args" not found"#))?;
    Ok((command, args))
}

fn invalid_json(body: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(body);
    let error = if text.trim().is_empty() {
        "Error in $: not enough input".to_string()
    } else {
        let start: String = text.trim_start().chars().take(12).collect();
        format!("Error in $: Failed reading: not a valid json value at '{start}'")
    };
    Answer::error(400, "$", "invalid-json", &error)
}

/// Hasura's parser wording: "expected Object, but encountered Array".
fn expected(wanted: &str, found: &Value) -> String {
    let found = match found {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(_) => "Number",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Object",
    };
    format!("expected {wanted}, but encountered {found}")
}

fn run_command(state: &State, command: &str, args: &Value) -> Answer {
    match command {
        "reload_metadata" => reload(state, args),
        "get_inconsistent_metadata" => {
            let consistent = state.consistent_now();
            let objects = state.inconsistent_objects(consistent);
            Answer::success(json!({"is_consistent": consistent, "inconsistent_objects": objects}))
        }
        _ => {
            let backend = command.split('_').next().unwrap_or(command);
            let error = format!(
                "unknown metadata command \"{command}\"; \"{backend}\" was not recognized as a \
                 valid backend name"
            );
            Answer::error(400, "$", "parse-failed", &error)
        }
    }
}

fn reload(state: &State, args: &Value) -> Answer {
    if let Err(error) = check_reload_args(&state.config, args) {
        return error;
    }
    let reloads = state.reloads.fetch_add(1, Ordering::SeqCst) + 1;
    let consistent = state.consistent_after(reloads);
    if state.config.legacy {
        return Answer::success(json!({"message": "success"}));
    }
    if consistent {
        return Answer::success(json!({"message": "success", "is_consistent": true}));
    }
    let objects = state.inconsistent_objects(false);
    Answer::success(json!({
        "message": "success",
        "is_consistent": false,
        "inconsistent_objects": objects,
    }))
}

fn check_reload_args(config: &FakeHasuraBuilder, args: &Value) -> Result<(), Answer> {
    // Before v2.1 a non-object `args` meant the defaults.
    let Some(args) = args.as_object() else {
        if config.legacy {
            return Ok(());
        }
        let error = format!("parsing ReloadSpec failed, {}", expected("Object", args));
        return Err(Answer::error(400, "$.args", "parse-failed", &error));
    };
    let scopes = [
        (
            "reload_remote_schemas",
            "Remote schema",
            &config.remote_schemas,
        ),
        ("reload_sources", "Source", &config.sources),
        ("recreate_event_triggers", "Source", &config.sources),
    ];
    for (key, kind, known) in scopes {
        check_scope(key, kind, args.get(key), known.as_deref())?;
    }
    Ok(())
}

fn check_scope(
    key: &str,
    kind: &str,
    value: Option<&Value>,
    known: Option<&[String]>,
) -> Result<(), Answer> {
    let names = match value {
        None | Some(Value::Bool(_)) => return Ok(()),
        Some(Value::Array(names)) => names,
        Some(other) => {
            let error = format!(
                "parsing ReloadSpec failed, {}",
                expected("Boolean or Array", other)
            );
            return Err(Answer::error(
                400,
                &format!("$.args.{key}"),
                "parse-failed",
                &error,
            ));
        }
    };
    for name in names {
        let Some(name) = name.as_str() else {
            let error = format!("parsing Text failed, {}", expected("String", name));
            return Err(Answer::error(
                400,
                &format!("$.args.{key}"),
                "parse-failed",
                &error,
            ));
        };
        if known.is_some_and(|known| !known.iter().any(|k| k == name)) {
            let error = format!("{kind} with name \"{name}\" not found in metadata");
            return Err(Answer::error(400, "$.args", "not-exists", &error));
        }
    }
    Ok(())
}
