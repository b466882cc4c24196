//! Reports of final outcomes as the sinks receive them: Sentry envelopes
//! (events, attachments, Crons check-ins) and Slack messages, and sinks
//! that refuse, hang or fail without changing the exit code.

mod sinks;

use std::time::{Duration, Instant};

use serde_json::Value;

use self::sinks::{
    BadSink, Misbehaviour, all_items, body, check_ins, events, items, of_type, the_event,
};
use crate::support::{
    FakeHasura, RawAnswer, Reloader, Run, Sink, VERSION, against, objects, refused_url, reloader,
    temp_file, test_certificates,
};

/// The public key of the test DSN: 32 hex digits, like a real one.
const KEY: &str = "a3f1c9e07b5d42e8961f0c2d4b7e9a15";

/// The slug of the Crons monitor.
const MONITOR: &str = "nightly-reload";

/// Where the Slack sink listens, shaped like a real webhook.
const WEBHOOK_PATH: &str = "/services/T0000/B0000/XXXXsecretXXXX";

/// The longest a run may take with misbehaving sinks: the 5 s flush
/// bound, with generous slack for a busy machine.
const FLUSH_BOUND: Duration = Duration::from_secs(9);

fn dsn(sink_url: &str) -> String {
    sink_url.replacen("http://", &format!("http://{KEY}@"), 1) + "/1"
}

fn webhook(sink_url: &str) -> String {
    format!("{sink_url}{WEBHOOK_PATH}")
}

/// `command` against `fake`, reporting to a Sentry sink with a monitor and
/// an environment.
fn reporting(command: &str, fake: &FakeHasura, sentry: &Sink) -> Reloader {
    against(command, fake)
        .args(&["--retries", "1"])
        .env("SENTRY_DSN", dsn(sentry.url()))
        .env("SENTRY_ENV", "test")
        .env("SENTRY_MONITOR_SLUG", MONITOR)
}

fn inconsistent_fake(found: &[Value]) -> FakeHasura {
    let builder = FakeHasura::builder().always_inconsistent();
    builder.objects(found.to_vec()).start().unwrap()
}

fn strings(value: &Value) -> Vec<&str> {
    let values = value.as_array().expect("an array");
    values.iter().map(|v| v.as_str().unwrap()).collect()
}

/// Asserts `in_progress` then `final_status`, one id, a duration at the end.
#[track_caller]
fn assert_check_ins(sentry: &Sink, final_status: &str) {
    let check_ins = check_ins(sentry);
    let statuses: Vec<&Value> = check_ins.iter().map(|c| &c["status"]).collect();
    assert_eq!(statuses, ["in_progress", final_status], "{check_ins:#?}");
    let (start, end) = (&check_ins[0], &check_ins[1]);
    assert_eq!(start["monitor_slug"], MONITOR);
    assert_eq!(start["environment"], "test");
    assert_eq!(start["check_in_id"], end["check_in_id"]);
    let id = start["check_in_id"].as_str().unwrap();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(start.get("duration").is_none(), "{start}");
    let duration = end["duration"].as_f64().expect("a duration");
    assert!((0.0..30.0).contains(&duration), "{duration}");
}

/// The text of every Slack message, after checking each is one JSON POST.
fn slack_texts(slack: &Sink) -> Vec<String> {
    let requests = slack.requests();
    requests
        .iter()
        .map(|request| {
            assert_eq!(request.method, "POST");
            assert_eq!(request.path, WEBHOOK_PATH);
            assert_eq!(request.header("content-type"), Some("application/json"));
            let body = request.json();
            assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
            body["text"].as_str().expect("a text").to_owned()
        })
        .collect()
}

#[test]
fn an_inconsistent_reload_sends_one_event_with_fingerprint_tags_context_and_attachment() {
    let found = objects::sample(7);
    let fake = inconsistent_fake(&found);
    let sentry = Sink::start();

    reporting("reload", &fake, &sentry).run().expect_code(1);

    let event = the_event(&sentry);
    assert!(event.get("level").is_none_or(|l| l == "error"), "{event}");
    assert_eq!(
        event["release"],
        format!("hasura-metadata-reloader@{VERSION}")
    );
    assert_eq!(event["environment"], "test");
    // Nothing about the machine or the process rides along.
    let keys: Vec<&str> = event
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "server_name",
        "user",
        "request",
        "extra",
        "modules",
        "breadcrumbs",
    ] {
        assert!(!keys.contains(&key), "{key} in {keys:?}");
    }
    let contexts: Vec<&String> = event["contexts"].as_object().unwrap().keys().collect();
    assert_eq!(contexts, ["hasura"]);
    let exception = &event["exception"]["values"][0];
    assert_eq!(exception["type"], "MetadataInconsistent");
    let value = exception["value"].as_str().unwrap();
    assert!(
        value.starts_with("7 inconsistent objects: remote_schema countries"),
        "{value}"
    );
    assert!(value.ends_with(" and 4 more"), "{value}");

    let mut names = vec![
        "Ambiguous URL paths: GET /api/rest/article/:id and GET /api/rest/article/latest"
            .to_owned(),
        "Conflicting objects: permission user on table article in source default, \
         permission user on table article in source default"
            .to_owned(),
        "action: Multiple definitions for: create_order".to_owned(),
        "editor".to_owned(),
        "remote_schema countries".to_owned(),
        "source analytics".to_owned(),
        "table article in source default".to_owned(),
    ];
    names.sort();
    let mut expected = vec![
        "hasura-metadata-inconsistent".to_owned(),
        "127.0.0.1".to_owned(),
    ];
    expected.extend(names);
    assert_eq!(strings(&event["fingerprint"]), expected);

    let tags = &event["tags"];
    let endpoint = fake.url();
    assert_eq!(tags["hasura.endpoint"], endpoint);
    assert_eq!(tags["hasura.inconsistent_count"], "7");
    assert_eq!(
        tags["hasura.object_types"],
        "action,inherited role permission inconsistency,remote_schema,source,table"
    );

    let context = &event["contexts"]["hasura"];
    assert_eq!(context["endpoint"], endpoint);
    assert_eq!(context["attempts"], 2);
    assert_eq!(context["inconsistent_objects"], Value::Array(found.clone()));

    let items = all_items(&sentry);
    let attachments = of_type(&items, "attachment");
    assert_eq!(attachments.len(), 1);
    let attachment = attachments[0];
    assert_eq!(attachment.header["filename"], "inconsistent_objects.json");
    assert_eq!(attachment.header["content_type"], "application/json");
    assert_eq!(attachment.json(), Value::Array(found));
    assert_check_ins(&sentry, "error");
}

#[test]
fn a_lasting_inconsistency_keeps_its_fingerprint_and_a_new_one_changes_it() {
    let sentry = Sink::start();
    let fingerprint = |found: Vec<Value>| {
        let fake = inconsistent_fake(&found);
        let before = events(&sentry).len();
        reporting("reload", &fake, &sentry).run().expect_code(1);
        let events = events(&sentry);
        assert_eq!(events.len(), before + 1);
        events[before]["fingerprint"].clone()
    };

    let first = fingerprint(objects::sample(2));
    let mut reordered = objects::sample(2);
    reordered.reverse();
    let again = fingerprint(reordered);
    let grown = fingerprint(objects::sample(3));

    assert_eq!(first, again);
    assert_ne!(first, grown);
}

#[test]
fn a_check_reports_an_inconsistency_like_a_reload() {
    let fake = inconsistent_fake(&objects::sample(1));
    let sentry = Sink::start();

    reporting("check", &fake, &sentry).run().expect_code(1);

    let event = the_event(&sentry);
    assert_eq!(
        event["exception"]["values"][0]["value"],
        "1 inconsistent object: remote_schema countries"
    );
    assert_eq!(event["contexts"]["hasura"]["attempts"], 1);
    assert_eq!(event["contexts"]["hasura"]["action"], "checked");
    assert_check_ins(&sentry, "error");
}

#[test]
fn access_denied_sends_an_event_typed_and_grouped_by_its_kind() {
    let fake = FakeHasura::builder()
        .admin_secret("the-right-one")
        .start()
        .unwrap();
    let sentry = Sink::start();

    reporting("reload", &fake, &sentry)
        .env("HASURA_ADMIN_SECRET", "a-wrong-one")
        .run()
        .failure();

    let event = the_event(&sentry);
    let exception = &event["exception"]["values"][0];
    assert_eq!(exception["type"], "HasuraAccessDenied");
    let value = exception["value"].as_str().unwrap();
    assert!(value.contains("invalid x-hasura-admin-secret"), "{value}");
    assert_eq!(
        strings(&event["fingerprint"]),
        ["hasura-metadata-api-error", "access_denied", "127.0.0.1"]
    );
    let tags = &event["tags"];
    assert_eq!(tags["hasura.error_kind"], "access_denied");
    assert_eq!(tags["hasura.status"], "401");
    assert_eq!(tags["hasura.hasura_code"], "access-denied");
    assert_eq!(tags["hasura.endpoint"], fake.url());
    assert_check_ins(&sentry, "error");
}

#[test]
fn an_unreachable_hasura_sends_a_hasura_unreachable_event() {
    let sentry = Sink::start();
    let endpoint = refused_url();

    reloader(&["reload", "--hasura-endpoint", &endpoint])
        .args(&["--retries", "0", "--sentry-dsn", &dsn(sentry.url())])
        .run()
        .failure();

    let event = the_event(&sentry);
    assert_eq!(event["exception"]["values"][0]["type"], "HasuraUnreachable");
    assert_eq!(
        strings(&event["fingerprint"]),
        ["hasura-metadata-api-error", "unreachable", "127.0.0.1"]
    );
    assert!(check_ins(&sentry).is_empty(), "no monitor, no check-ins");
}

#[test]
fn a_consistent_run_sends_only_its_check_ins() {
    let fake = FakeHasura::start();
    let sentry = Sink::start();
    let slack = Sink::start();

    reporting("reload", &fake, &sentry)
        .env("SLACK_WEBHOOK_URL", webhook(slack.url()))
        .run()
        .expect_code(0);

    let items = all_items(&sentry);
    let types: Vec<&Value> = items.iter().map(|i| &i.header["type"]).collect();
    assert_eq!(types, ["check_in", "check_in"]);
    assert_check_ins(&sentry, "ok");
    assert!(slack.requests().is_empty(), "{:?}", slack.requests());
}

#[test]
fn a_consistent_run_without_a_monitor_sends_nothing() {
    let fake = FakeHasura::start();
    let sentry = Sink::start();

    let run = against("check", &fake)
        .env("SENTRY_DSN", dsn(sentry.url()))
        .run();

    run.expect_code(0);
    assert_eq!(run.log("Sentry initialized.")["level"], "info");
    assert!(sentry.requests().is_empty(), "{:?}", sentry.requests());
}

#[test]
fn slack_gets_one_message_with_the_endpoint_count_and_ten_objects() {
    let found = objects::sample(12);
    let fake = inconsistent_fake(&found);
    let slack = Sink::start();

    against("reload", &fake)
        .args(&[
            "--retries",
            "0",
            "--slack-webhook-url",
            &webhook(slack.url()),
        ])
        .run()
        .expect_code(1);

    let texts = slack_texts(&slack);
    assert_eq!(texts.len(), 1, "{texts:?}");
    let lines: Vec<&str> = texts[0].lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "Hasura metadata is inconsistent at {}: 12 inconsistent objects.",
            fake.url()
        )
    );
    assert_eq!(lines.len(), 12, "{lines:#?}");
    assert!(lines[1].starts_with("• remote_schema countries: Inconsistent object: HTTP exception"));
    assert!(lines[2].starts_with("• table article in source default: Inconsistent object"));
    assert_eq!(lines[5], "• action: Multiple definitions for: create_order");
    assert_eq!(lines[11], "and 2 more");
}

#[test]
fn slack_gets_the_kind_and_message_of_a_failure() {
    let fake = FakeHasura::builder()
        .admin_secret("the-right-one")
        .start()
        .unwrap();
    let slack = Sink::start();

    against("check", &fake)
        .env("SLACK_WEBHOOK_URL", webhook(slack.url()))
        .run()
        .failure();

    let texts = slack_texts(&slack);
    assert_eq!(texts.len(), 1, "{texts:?}");
    let text = &texts[0];
    let head = format!(
        "Hasura metadata API request failed at {} (access_denied): ",
        fake.url()
    );
    assert!(text.starts_with(&head), "{text}");
    assert!(text.contains("HTTP 401"), "{text}");
}

#[test]
fn secrets_and_userinfo_never_reach_the_sinks() {
    let secret = "admin-Secret-7Hq2Lw9";
    let fake = FakeHasura::builder()
        .admin_secret(secret)
        .always_inconsistent()
        .start()
        .unwrap();
    let sentry = Sink::start();
    let slack = Sink::start();
    let endpoint = fake
        .url()
        .replacen("http://", "http://basicuser:basicPa55word@", 1);

    let run = reloader(&["reload", "--hasura-endpoint", &endpoint])
        .args(&["--retries", "0", "--hasura-admin-secret", secret])
        .env("SENTRY_DSN", dsn(sentry.url()))
        .env("SENTRY_MONITOR_SLUG", MONITOR)
        .env("SLACK_WEBHOOK_URL", webhook(slack.url()))
        .env("RUST_LOG", "trace")
        .run();

    run.expect_code(1);
    let mut requests = sentry.requests();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    for request in &requests {
        let auth = request.header("x-sentry-auth").expect("an auth header");
        assert!(auth.contains(&format!("sentry_key={KEY}")), "{auth}");
    }
    requests.extend(slack.requests());
    assert_eq!(requests.len(), 4);
    for request in &requests {
        let mut raw = body(request);
        raw.extend(request.path.bytes());
        for (name, value) in &request.headers {
            if !name.eq_ignore_ascii_case("x-sentry-auth") {
                raw.extend(format!("{name}: {value}\n").bytes());
            }
        }
        let raw = String::from_utf8_lossy(&raw);
        for leak in [secret, "basicuser", "basicPa55word", KEY] {
            assert!(!raw.contains(leak), "{leak} sent in {raw}");
        }
    }
    for leak in [secret, "basicPa55word", KEY, "XXXXsecretXXXX"] {
        assert!(
            !run.output().contains(leak),
            "{leak} logged\n{}",
            run.dump()
        );
    }
}

#[test]
fn credentials_echoed_by_hasura_are_redacted_from_reports() {
    let secret = "admin-Secret-7Hq2Lw9";
    let echo = format!("x-hasura-admin-secret {secret} is wrong for basicuser:basicPa55word");
    let fake = FakeHasura::builder()
        .fault_always(RawAnswer::hasura_error(400, "$", "unexpected", &echo))
        .start()
        .unwrap();
    let (sentry, slack) = (Sink::start(), Sink::start());
    let endpoint = fake
        .url()
        .replacen("http://", "http://basicuser:basicPa55word@", 1);

    reloader(&[
        "check",
        "--hasura-endpoint",
        &endpoint,
        "--admin-secret",
        secret,
    ])
    .env("SENTRY_DSN", dsn(sentry.url()))
    .env("SLACK_WEBHOOK_URL", webhook(slack.url()))
    .run()
    .failure();

    let event = the_event(&sentry);
    let value = event["exception"]["values"][0]["value"].as_str().unwrap();
    assert!(
        value.ends_with("x-hasura-admin-secret [redacted] is wrong for [redacted] (unexpected)"),
        "{value}"
    );
    let texts = slack_texts(&slack);
    assert!(texts[0].contains("is wrong for [redacted]"), "{texts:?}");
    for request in sentry.requests().iter().chain(&slack.requests()) {
        let raw = String::from_utf8_lossy(&body(request)).into_owned();
        for leak in [secret, "basicPa55word"] {
            assert!(!raw.contains(leak), "{leak} sent in {raw}");
        }
    }
}

#[test]
fn sentry_and_slack_behind_a_private_ca_are_reached_with_ca_cert() {
    let fake = inconsistent_fake(&objects::sample(1));
    let certs = test_certificates();
    let ca = temp_file("ca.pem", &certs.ca_pem);
    // A TLS fake records whatever is posted to it, envelopes included.
    let tls_sink = || {
        let builder = FakeHasura::builder();
        builder.start_tls(&certs.chain_pem, &certs.key_pem).unwrap()
    };
    let run_with = |extra: &[&str]| {
        let (sentry, slack) = (tls_sink(), tls_sink());
        let https_dsn = sentry
            .url()
            .replacen("https://", &format!("https://{KEY}@"), 1)
            + "/1";
        let run = against("reload", &fake)
            .args(&["--retries", "0", "--sentry-dsn", &https_dsn])
            .args(&["--slack-webhook-url", &webhook(slack.url())])
            .args(extra)
            .run();
        run.expect_code(1);
        (run, sentry.requests(), slack.requests())
    };

    let (_, envelopes, messages) = run_with(&["--ca-cert", ca.to_str().unwrap()]);
    assert_eq!(envelopes.len(), 1, "{envelopes:#?}");
    assert_eq!(of_type(&items(&envelopes[0]), "event").len(), 1);
    assert_eq!(messages.len(), 1, "{messages:#?}");

    let (run, envelopes, messages) = run_with(&[]);
    assert!(
        envelopes.is_empty() && messages.is_empty(),
        "untrusted, yet sent"
    );
    assert_eq!(run.log("Slack report failed.")["level"], "warn");
    assert_eq!(run.log("Sentry report failed.")["level"], "warn");
}

#[test]
fn sentry_and_slack_go_through_the_proxy_of_the_environment() {
    let fake = inconsistent_fake(&objects::sample(1));
    let proxy = Sink::start();

    let run = against("check", &fake)
        .args(&[
            "--sentry-dsn",
            &format!("http://{KEY}@sentry.invalid:9000/1"),
        ])
        .args(&["--slack-webhook-url", "http://hooks.invalid/services/T/B/X"])
        .env("HTTP_PROXY", proxy.url())
        .env("NO_PROXY", "127.0.0.1")
        .run();

    run.expect_code(1);
    // Both tunnel through the proxy; what follows the tunnel is not checked.
    let connects = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "CONNECT");
    let mut targets: Vec<String> = connects.map(|r| r.path).collect();
    targets.sort();
    assert_eq!(
        targets,
        ["hooks.invalid:80", "sentry.invalid:9000"],
        "{}",
        run.dump()
    );
}

#[test]
fn a_malformed_dsn_is_a_warning_and_changes_nothing() {
    let fake = inconsistent_fake(&objects::sample(1));

    let run = against("reload", &fake)
        .args(&[
            "--retries",
            "0",
            "--sentry-dsn",
            "https://sentry.example.com/not-a-dsn",
        ])
        .run();

    run.expect_code(1);
    let line = run.log("Sentry DSN is invalid, Sentry is off.");
    assert_eq!(line["level"], "warn");
    assert!(line["error"].is_string(), "{line}");
    assert!(run.logs_with("Sentry initialized.").is_empty());
}

/// An inconsistent reload reporting to `sentry_url` and `slack_url` with
/// a monitor: the run and how long it took.
fn inconsistent_run_reporting_to(sentry_url: &str, slack_url: &str) -> (Run, Duration) {
    let fake = inconsistent_fake(&objects::sample(2));
    let command = against("reload", &fake)
        .args(&["--retries", "0"])
        .env("SENTRY_DSN", dsn(sentry_url))
        .env("SENTRY_MONITOR_SLUG", MONITOR)
        .env("SLACK_WEBHOOK_URL", webhook(slack_url));
    let started = Instant::now();
    let run = command.timeout(Duration::from_secs(30)).run();
    (run, started.elapsed())
}

#[test]
fn refusing_sinks_are_warnings_and_leave_the_exit_code_alone() {
    let (run, took) = inconsistent_run_reporting_to(&refused_url(), &refused_url());

    run.expect_code(1);
    assert!(took < FLUSH_BOUND, "{took:?}\n{}", run.dump());
    let slack = run.log("Slack report failed.");
    assert_eq!(slack["level"], "warn");
    assert!(slack["error"].is_string(), "{slack}");
    let sentry = run.logs_with("Sentry report failed.");
    assert!(!sentry.is_empty(), "{}", run.dump());
    assert!(sentry.iter().all(|line| line["level"] == "warn"));
}

#[test]
fn sinks_answering_500_are_warnings_and_leave_the_exit_code_alone() {
    let bad = BadSink::start(Misbehaviour::Status(500));

    let (run, took) = inconsistent_run_reporting_to(&bad.url, &bad.url);

    run.expect_code(1);
    assert!(took < FLUSH_BOUND, "{took:?}\n{}", run.dump());
    assert_eq!(run.log("Slack report failed.")["status"], 500);
    let sentry = run.logs_with("Sentry report failed.");
    assert!(
        sentry.iter().any(|line| line["status"] == 500),
        "{}",
        run.dump()
    );
}

#[test]
fn hanging_sinks_are_given_up_within_the_flush_bound() {
    let bad = BadSink::start(Misbehaviour::Hang);

    let (run, took) = inconsistent_run_reporting_to(&bad.url, &bad.url);

    run.expect_code(1);
    assert!(took < FLUSH_BOUND, "{took:?}\n{}", run.dump());
    let slack = run.log("Slack report failed.");
    assert_eq!(slack["level"], "warn");
    assert_eq!(slack["error"], "timed out");
    let sentry = run.logs_with("Sentry report failed.");
    assert!(
        sentry.iter().any(|l| l["error"] == "timed out"),
        "{}",
        run.dump()
    );
    assert_eq!(
        run.log("Sentry report not delivered in time.")["level"],
        "warn"
    );
}

#[test]
fn a_failed_check_with_hanging_sinks_still_exits_3_in_time() {
    let bad = BadSink::start(Misbehaviour::Hang);
    let started = Instant::now();

    let run = reloader(&["check", "--hasura-endpoint", &refused_url()])
        .args(&["--retries", "0"])
        .env("SENTRY_DSN", dsn(&bad.url))
        .env("SLACK_WEBHOOK_URL", webhook(&bad.url))
        .run();

    run.failure();
    assert!(started.elapsed() < FLUSH_BOUND, "{:?}", started.elapsed());
}
