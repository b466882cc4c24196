//! A sweep for leaked credentials: every outcome of `reload`, `check` and
//! `server`, logged at trace level and reported to Sentry and Slack sinks,
//! with a recognisable admin secret, URL userinfo and auth token. None of
//! them may appear in any byte printed, answered or sent to a sink; the
//! Sentry key only in Sentry's auth header, the Slack URL only in the
//! request that Slack receives.

use std::io::Read;
use std::process::Command;

use crate::support::sink::SENTRY_KEY;
use crate::support::{
    BIN, FakeHasura, RawAnswer, RecordedRequest, Reloader, Run, Sink, refused_url, reloader,
    serve_with, temp_file,
};

const SECRET: &str = "adm1n-S3CRET-leakcheck-4242";
const USER: &str = "user";
const PASSWORD: &str = "pa55w0rd-xyz";
/// `user:pa55w0rd-xyz` in base64, as a Basic `Authorization` carries it.
const BASIC: &str = "dXNlcjpwYTU1dzByZC14eXo=";
const TOKEN: &str = "t0ken-LEAKCHECK-9f8e7d";
/// The secret part of the Slack webhook URL.
const SLACK_SECRET: &str = "sl4ckW3bhook-LEAKCHECK";

/// Everything that must appear nowhere outside its own request.
const CREDENTIALS: [&str; 6] = [SECRET, PASSWORD, BASIC, TOKEN, SENTRY_KEY, SLACK_SECRET];

/// A Sentry sink and a Slack sink, one pair per scenario.
struct Sinks {
    sentry: Sink,
    slack: Sink,
}

impl Sinks {
    fn start() -> Sinks {
        Sinks {
            sentry: Sink::start(),
            slack: Sink::start(),
        }
    }

    fn slack_url(&self) -> String {
        format!("{}/services/T0LEAK/B0LEAK/{SLACK_SECRET}", self.slack.url())
    }

    /// The variables that turn both reporters on, at the most talkative
    /// log level.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("RUST_LOG", "trace".to_owned()),
            ("SENTRY_DSN", self.sentry.sentry_dsn()),
            ("SLACK_WEBHOOK_URL", self.slack_url()),
        ]
    }

    fn traced(&self, mut command: Reloader) -> Reloader {
        for (name, value) in self.env() {
            command = command.env(name, value);
        }
        command
    }

    /// Asserts that what the sinks received holds no credential but the
    /// Sentry key in Sentry's auth header and the Slack URL in Slack's
    /// request line.
    #[track_caller]
    fn assert_clean(&self, scenario: &str) {
        for request in self.sentry.requests() {
            for (name, value) in &request.headers {
                let allowed: &[&str] = if name.eq_ignore_ascii_case("x-sentry-auth") {
                    &[SENTRY_KEY]
                } else {
                    &[]
                };
                assert_absent(&format!("{scenario}: Sentry header {name}"), value, allowed);
            }
            assert_absent(
                &format!("{scenario}: Sentry request target"),
                &request.path,
                &[],
            );
            assert_absent(
                &format!("{scenario}: Sentry body"),
                &decoded_body(&request),
                &[],
            );
        }
        for request in self.slack.requests() {
            for (name, value) in &request.headers {
                assert_absent(&format!("{scenario}: Slack header {name}"), value, &[]);
            }
            assert_absent(
                &format!("{scenario}: Slack request target"),
                &request.path,
                &[SLACK_SECRET],
            );
            assert_absent(
                &format!("{scenario}: Slack body"),
                &decoded_body(&request),
                &[],
            );
        }
    }

    /// Asserts that each sink received something, so the sweep has
    /// reports to look at (SPEC section 5: inconsistent and failed
    /// outcomes are reported to both).
    #[track_caller]
    fn assert_reported(&self, scenario: &str) {
        assert!(
            !self.sentry.requests().is_empty(),
            "{scenario}: nothing reached the Sentry sink"
        );
        assert!(
            !self.slack.requests().is_empty(),
            "{scenario}: nothing reached the Slack sink"
        );
    }
}

/// The body as text, decompressed when it says it is gzip.
fn decoded_body(request: &RecordedRequest) -> String {
    let gzip = request
        .header("content-encoding")
        .is_some_and(|v| v.contains("gzip"));
    if !gzip {
        return request.body_text();
    }
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(&request.body[..])
        .read_to_end(&mut text)
        .expect("a gzip body that decodes");
    String::from_utf8_lossy(&text).into_owned()
}

/// Fails when `text` holds a credential other than the `allowed` ones.
#[track_caller]
fn assert_absent(place: &str, text: &str, allowed: &[&str]) {
    for credential in CREDENTIALS {
        if !allowed.contains(&credential) {
            assert!(
                !text.contains(credential),
                "{credential} leaked into {place}:\n{text}"
            );
        }
    }
}

/// Every stderr line is JSON, and no printed byte holds a credential,
/// not even cut into the lines of a hex dump.
#[track_caller]
fn assert_output_clean(scenario: &str, run: &Run) {
    let logs = run.logs();
    assert_absent(
        &format!("{scenario}: output\n{}", run.dump()),
        &run.output(),
        &[],
    );
    let messages = logs.iter().filter_map(|line| line["message"].as_str());
    let dumped: Vec<u8> = messages.filter_map(hex_dump_bytes).flatten().collect();
    let dumped = String::from_utf8_lossy(&dumped);
    assert_absent(
        &format!("{scenario}: the bytes of hex-dump log lines"),
        &dumped,
        &[],
    );
}

/// The bytes of one line of a hex dump, `504f 5354 202f ...  POST./...`,
/// as HTTP libraries log raw traffic at trace level; `None` for any other
/// line.
fn hex_dump_bytes(message: &str) -> Option<Vec<u8>> {
    let (hex, _ascii) = message.split_once("  ")?;
    let groups: Vec<&str> = hex.split(' ').collect();
    let is_group =
        |g: &&str| g.len() == 4 && (g.bytes().all(|b| b.is_ascii_hexdigit()) || *g == "----");
    if groups.is_empty() || !groups.iter().all(is_group) {
        return None;
    }
    let digits: String = groups.concat().replace('-', "");
    let pairs = digits.as_bytes().chunks(2);
    pairs
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// The endpoint of `url` with userinfo in it.
fn with_userinfo(url: &str) -> String {
    url.replacen("http://", &format!("http://{USER}:{PASSWORD}@"), 1)
}

/// `command` against `url` (userinfo added), quick retries.
fn command(command: &str, url: &str) -> Reloader {
    let endpoint = with_userinfo(url);
    reloader(&[
        command,
        "--hasura-endpoint",
        &endpoint,
        "--retry-interval",
        "10ms",
    ])
}

fn secured() -> crate::support::fake_hasura::FakeHasuraBuilder {
    FakeHasura::builder().admin_secret(SECRET)
}

/// One scenario: its name, the exit code it must end with, and whether
/// SPEC says it is reported.
struct Scenario {
    name: &'static str,
    fake: Option<FakeHasura>,
    command: Box<dyn Fn(&str) -> Reloader>,
    code: i32,
    reported: bool,
}

fn scenario(
    name: &'static str,
    fake: Option<FakeHasura>,
    code: i32,
    command: impl Fn(&str) -> Reloader + 'static,
) -> Scenario {
    Scenario {
        name,
        fake,
        command: Box::new(command),
        code,
        reported: code != 0,
    }
}

#[test]
fn no_one_shot_outcome_leaks_a_credential() {
    let secret_file = temp_file("admin-secret", &format!("{SECRET}\n"));
    let secret_file = secret_file.to_str().unwrap().to_owned();
    let scenarios = vec![
        scenario(
            "consistent reload",
            Some(secured().start().unwrap()),
            0,
            |url| command("reload", url).args(&["--hasura-admin-secret", SECRET]),
        ),
        scenario(
            "inconsistent reload",
            Some(secured().always_inconsistent().start().unwrap()),
            1,
            |url| {
                command("reload", url)
                    .args(&["--retries", "1"])
                    .env("HASURA_ADMIN_SECRET", SECRET)
            },
        ),
        scenario(
            "access denied (401, wrong secret)",
            Some(
                FakeHasura::builder()
                    .admin_secret("another-secret")
                    .start()
                    .unwrap(),
            ),
            3,
            |url| command("reload", url).env("HASURA_GRAPHQL_ADMIN_SECRET", SECRET),
        ),
        scenario(
            "access denied (400, not admin)",
            Some(
                FakeHasura::builder()
                    .fault_always(RawAnswer::hasura_error(
                        400,
                        "$.args",
                        "access-denied",
                        "restricted access : admin only",
                    ))
                    .start()
                    .unwrap(),
            ),
            3,
            |url| command("reload", url).args(&["--admin-secret", SECRET]),
        ),
        scenario("unreachable", None, 3, |_| {
            command("reload", &refused_url()).args(&["--hasura-admin-secret", SECRET])
        }),
        scenario(
            "bad response",
            Some(
                FakeHasura::builder()
                    .fault_always(RawAnswer::new(200, Some("text/html"), "<html>hello</html>"))
                    .start()
                    .unwrap(),
            ),
            3,
            |url| command("reload", url).args(&["--hasura-admin-secret", SECRET]),
        ),
        scenario(
            "check, inconsistent",
            Some(secured().always_inconsistent().start().unwrap()),
            1,
            move |url| command("check", url).env("HASURA_ADMIN_SECRET_FILE", &secret_file),
        ),
        scenario(
            "--if-inconsistent, consistent",
            Some(secured().start().unwrap()),
            0,
            |url| command("reload", url).args(&["--if-inconsistent", "--admin-secret", SECRET]),
        ),
        scenario(
            "--if-inconsistent, inconsistent",
            Some(secured().always_inconsistent().start().unwrap()),
            1,
            |url| {
                command("reload", url)
                    .args(&["--if-inconsistent=true", "--retries", "1"])
                    .env("HASURA_ADMIN_SECRET", SECRET)
            },
        ),
    ];

    for scenario in scenarios {
        let sinks = Sinks::start();
        let url = scenario
            .fake
            .as_ref()
            .map_or_else(String::new, |fake| fake.url().to_owned());
        let run = sinks.traced((scenario.command)(&url)).run();

        assert_eq!(
            run.code,
            scenario.code,
            "{}: unexpected exit code\n{}",
            scenario.name,
            run.dump()
        );
        assert_output_clean(scenario.name, &run);
        sinks.assert_clean(scenario.name);
        if scenario.reported {
            sinks.assert_reported(scenario.name);
        }
    }
}

#[test]
fn an_answer_echoing_the_credentials_leaks_nothing() {
    let echo = format!(
        "x-hasura-admin-secret {SECRET} is wrong for {USER}:{PASSWORD} (authorization: Basic \
         {BASIC})"
    );
    let answers = [
        RawAnswer::hasura_error(400, "$", "unexpected", &echo),
        RawAnswer::hasura_error(503, "$", "unexpected", &echo),
        RawAnswer::new(200, Some("text/plain"), echo.clone()),
    ];
    for answer in answers {
        let name = format!("an echoing {} answer", answer.status);
        let fake = FakeHasura::builder().fault_always(answer).start().unwrap();
        let sinks = Sinks::start();

        let run = sinks
            .traced(command("reload", fake.url()).args(&["--hasura-admin-secret", SECRET]))
            .run();

        assert_eq!(run.code, 3, "{name}\n{}", run.dump());
        assert_output_clean(&name, &run);
        sinks.assert_clean(&name);
        sinks.assert_reported(&name);
    }
}

#[test]
fn a_server_run_leaks_nothing_in_output_answers_or_reports() {
    let fake = secured().always_inconsistent().start().unwrap();
    let sinks = Sinks::start();
    let endpoint = with_userinfo(fake.url());
    let mut env: Vec<(&str, String)> = sinks.env();
    env.push(("HASURA_ADMIN_SECRET", SECRET.to_owned()));
    env.push(("RELOADER_AUTH_TOKEN", TOKEN.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = serve_with(Command::new(BIN), &endpoint, &["--retries", "0"], &env).unwrap();

    let bearer = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {TOKEN}-but-longer");
    let answers = [
        (
            "one reload",
            server.request(
                "POST",
                "/reload_metadata",
                &[("Authorization", &bearer)],
                b"",
            ),
        ),
        ("no token", server.post("/reload_metadata")),
        (
            "a wrong token",
            server.request("GET", "/reload_metadata", &[("Authorization", &wrong)], b""),
        ),
        ("/healthz", server.get("/healthz")),
        ("/metrics", server.get("/metrics")),
        (
            "an unknown route",
            server.request("GET", "/v1/metadata", &[("Authorization", &bearer)], b""),
        ),
    ];
    let run = server.finish();

    let statuses: Vec<u16> = answers.iter().map(|(_, answer)| answer.status).collect();
    assert_eq!(
        statuses,
        [500, 401, 401, 200, 200, 404],
        "{answers:?}\n{}",
        run.dump()
    );
    for (name, answer) in &answers {
        assert_absent(&format!("the answer to {name}"), &answer.text(), &[]);
    }
    assert_eq!(run.code, 0, "{}", run.dump());
    assert_output_clean("server", &run);
    sinks.assert_clean("server");
    sinks.assert_reported("server");
}
