//! The routes: `/reload_metadata`, `GET /healthz`, `GET /metrics`, and
//! 404 for anything else.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tiny_http::{Header, Method, Request, Response};

use super::Service;
use super::flight::Waiter;
use super::metrics;
use crate::hasura::Object;
use crate::reload::{Outcome, Status};
use crate::secret::Secret;

const JSON: &str = "application/json";

/// An answer before it is written.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    body: String,
    content_type: &'static str,
    /// Adds `WWW-Authenticate: Bearer`.
    challenge: bool,
}

impl Answer {
    fn json(status: u16, body: serde_json::Value) -> Answer {
        Answer {
            status,
            body: body.to_string(),
            content_type: JSON,
            challenge: false,
        }
    }

    fn error(status: u16, error: &str) -> Answer {
        Answer::json(status, json!({ "error": error }))
    }
}

/// Answers one request of the internal server.
pub fn handle(service: &Arc<Service>, request: Request) {
    let path = request.url().split('?').next().unwrap_or_default();
    let get = *request.method() == Method::Get;
    let answer = match path {
        "/reload_metadata" => return reload(service, request),
        "/healthz" if get => Answer::json(200, json!({"status": "ok"})),
        "/metrics" if get => Answer {
            status: 200,
            body: service.metrics.render(),
            content_type: metrics::CONTENT_TYPE,
            challenge: false,
        },
        _ => Answer::error(404, "not found"),
    };
    let method = request.method().to_string();
    log::debug!(method = method.as_str(), path, status = answer.status; "Request served.");
    respond(request, answer);
}

/// Answers a request with 503: the server is stopping.
pub fn refuse(request: Request) {
    respond(request, Answer::error(503, "shutting down"));
}

/// A reload request waiting for the run in flight.
pub struct Pending(Request);

impl Waiter<Outcome> for Pending {
    fn finish(self, outcome: &Arc<Outcome>) {
        respond(self.0, outcome_answer(outcome));
    }
}

fn reload(service: &Arc<Service>, request: Request) {
    let method = request.method().to_string();
    let remote = service.gate.peer(request.remote_addr());
    let remote = remote.map(|a| a.to_string()).unwrap_or_default();
    log::info!(method = method.as_str(), remote = remote.as_str(); "Reload requested.");
    if let Some(token) = &service.auth_token
        && !authorized(token, header(&request, "Authorization"))
    {
        log::warn!(method = method.as_str(), remote = remote.as_str(); "Reload refused, unauthorized.");
        let answer = Answer {
            challenge: true,
            ..Answer::error(401, "unauthorized")
        };
        return respond(request, answer);
    }
    let leader = Arc::clone(service);
    if let Err(Pending(request)) = service
        .flight
        .submit(Pending(request), move || leader.reload())
    {
        refuse(request);
    }
}

/// 200 when consistent, 500 when inconsistent, 502 when failed.
fn outcome_answer(outcome: &Outcome) -> Answer {
    let status = match &outcome.status {
        Status::Consistent => 200,
        Status::Inconsistent(_) => 500,
        Status::Failed(error) => {
            return Answer::json(
                502,
                json!({"error": error.message, "kind": error.kind.as_str()}),
            );
        }
    };
    let verdict = Verdict {
        is_consistent: status == 200,
        inconsistent_objects: outcome.inconsistent_objects(),
        attempts: outcome.attempts,
        duration_ms: outcome.duration_ms(),
    };
    Answer {
        status,
        body: serde_json::to_string(&verdict).expect("JSON values always serialise"),
        content_type: JSON,
        challenge: false,
    }
}

/// The body of a 200 or 500 answer, its keys in the documented order.
#[derive(Serialize)]
struct Verdict<'a> {
    is_consistent: bool,
    /// Written out as the JSON Hasura sent.
    inconsistent_objects: &'a [Object],
    attempts: u32,
    duration_ms: u64,
}

fn header<'r>(request: &'r Request, name: &'static str) -> Option<&'r str> {
    let mut headers = request.headers().iter();
    let found = headers.find(|h| h.field.equiv(name))?;
    Some(found.value.as_str())
}

/// Whether `authorization` is `Bearer <token>` with the expected token,
/// compared in constant time (only the length can show).
fn authorized(token: &Secret, authorization: Option<&str>) -> bool {
    let Some(given) = authorization.and_then(bearer_token) else {
        return false;
    };
    token.expose().as_bytes().ct_eq(given.as_bytes()).into()
}

/// The token of a `Bearer` credential; the scheme is case-insensitive.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn respond(request: Request, answer: Answer) {
    let mut response = Response::from_string(answer.body)
        .with_status_code(answer.status)
        .with_header(header_line("Content-Type", answer.content_type));
    if answer.challenge {
        response.add_header(header_line("WWW-Authenticate", "Bearer"));
    }
    // tiny_http already ignores a client that went away.
    if let Err(error) = request.respond(response) {
        let error = error.to_string();
        log::debug!(error = error.as_str(); "Answer not written.");
    }
}

fn header_line(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hasura::{ErrorKind, HasuraError};
    use crate::reload::Action;
    use std::time::Duration;

    fn outcome(status: Status) -> Outcome {
        Outcome {
            status,
            attempts: 2,
            duration: Duration::from_millis(1234),
            action: Action::Reloaded,
        }
    }

    #[test]
    fn bearer_credentials_are_parsed_strictly() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token(""), None);
    }

    #[test]
    fn only_the_exact_token_is_authorized() {
        let token = Secret::new("s3cret-token".to_owned());
        assert!(authorized(&token, Some("Bearer s3cret-token")));
        assert!(!authorized(&token, Some("Bearer s3cret-toke")));
        assert!(!authorized(&token, Some("Bearer s3cret-token2")));
        assert!(!authorized(&token, Some("Bearer S3CRET-TOKEN")));
        assert!(!authorized(&token, Some("s3cret-token")));
        assert!(!authorized(&token, None));
    }

    #[test]
    fn outcomes_answer_with_the_contract_shapes() {
        let answer = outcome_answer(&outcome(Status::Consistent));
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.body,
            r#"{"is_consistent":true,"inconsistent_objects":[],"attempts":2,"duration_ms":1234}"#
        );

        let objects = vec![serde_json::from_str(r#"{ "name": "x", "reason": "down" }"#).unwrap()];
        let answer = outcome_answer(&outcome(Status::Inconsistent(objects)));
        assert_eq!(answer.status, 500);
        assert_eq!(
            answer.body,
            r#"{"is_consistent":false,"inconsistent_objects":[{ "name": "x", "reason": "down" }],"attempts":2,"duration_ms":1234}"#
        );

        let error = HasuraError {
            kind: ErrorKind::AccessDenied,
            message: "reload_metadata: HTTP 401: invalid secret".into(),
            status: Some(401),
            hasura_code: Some("access-denied".into()),
        };
        let answer = outcome_answer(&outcome(Status::Failed(error)));
        assert_eq!(answer.status, 502);
        assert_eq!(answer.content_type, JSON);
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(
            body,
            json!({"error": "reload_metadata: HTTP 401: invalid secret", "kind": "access_denied"})
        );
    }
}
