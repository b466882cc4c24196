//! `reload` against the fake Hasura: the procedure of SPEC section 4, its
//! exit codes and the log lines of section 5.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    CONSISTENT, FakeHasura, INCONSISTENT, RETRYING, RawAnswer, Reloader, SKIPPED, Sink, against,
    assert_metadata_request, objects, refused_url, reloader, sink::SENTRY_KEY, temp_file,
    test_certificates,
};

fn reload(fake: &FakeHasura) -> Reloader {
    against("reload", fake)
}

fn reload_body(args: Value) -> Value {
    json!({"type": "reload_metadata", "args": args})
}

#[test]
fn consistent_hasura_exits_0_after_one_reload() {
    let fake = FakeHasura::start();

    let run = reload(&fake).run();

    run.expect_code(0);
    let line = run.log(CONSISTENT);
    assert_eq!(line["level"], "info");
    assert_eq!(line["is_consistent"], true);
    assert_eq!(line["attempts"], 1);
    assert!(line["duration_ms"].is_u64(), "{line}");
    assert_eq!(fake.commands(), ["reload_metadata"]);
    assert!(run.logs_with(INCONSISTENT).is_empty());
    // The default level is info.
    assert!(
        run.logs()
            .iter()
            .all(|line| line["level"] != "debug" && line["level"] != "trace")
    );
}

#[test]
fn still_inconsistent_after_every_attempt_exits_1_with_the_objects() {
    let objects = objects::sample(3);
    let fake = FakeHasura::inconsistent(objects.clone());

    let run = reload(&fake).args(&["--retries", "2"]).run();

    run.expect_code(1);
    let line = run.log(INCONSISTENT);
    assert_eq!(line["level"], "error");
    assert_eq!(line["error"], "metadata is inconsistent");
    assert_eq!(line["inconsistent_objects"], Value::Array(objects));
    assert_eq!(line["attempts"], 3);
    assert_eq!(fake.reload_count(), 3);
}

#[test]
fn each_retry_of_an_inconsistent_reload_is_logged_with_a_doubling_wait() {
    let fake = FakeHasura::builder().always_inconsistent().start().unwrap();

    let run = reload(&fake).args(&["--retries", "2"]).run();

    run.expect_code(1);
    let retries = run.logs_with(RETRYING);
    assert_eq!(retries.len(), 2, "{}", run.dump());
    for (line, (attempt, wait)) in retries.iter().zip([(1, 10), (2, 20)]) {
        assert_eq!(line["level"], "warn");
        assert_eq!(line["attempt"], attempt);
        assert_eq!(line["retry_in_ms"], wait);
        assert_eq!(line["inconsistent_count"], 2);
    }
}

#[test]
fn inconsistent_then_consistent_within_the_retries_exits_0() {
    let fake = FakeHasura::builder()
        .inconsistent_reloads(2)
        .start()
        .unwrap();

    let run = reload(&fake).args(&["--retries", "2"]).run();

    run.expect_code(0);
    assert_eq!(run.log(CONSISTENT)["attempts"], 3);
    assert_eq!(run.logs_with(RETRYING).len(), 2);
    assert!(run.logs_with(INCONSISTENT).is_empty());
    assert_eq!(fake.reload_count(), 3);
}

#[test]
fn retries_0_reports_the_first_inconsistent_answer() {
    let fake = FakeHasura::builder()
        .inconsistent_reloads(1)
        .start()
        .unwrap();

    let run = reload(&fake).args(&["--retries", "0"]).run();

    run.expect_code(1);
    assert_eq!(run.log(INCONSISTENT)["attempts"], 1);
    assert_eq!(fake.reload_count(), 1);
}

#[test]
fn hasura_before_2_4_is_asked_for_its_inconsistencies_after_the_reload() {
    let fake = FakeHasura::builder().legacy().start().unwrap();

    let run = reload(&fake).run();

    run.expect_code(0);
    assert_eq!(run.log(CONSISTENT)["is_consistent"], true);
    assert_eq!(
        fake.commands(),
        ["reload_metadata", "get_inconsistent_metadata"]
    );
    let follow_up = &fake.requests()[1];
    assert_eq!(
        follow_up.json(),
        json!({"type": "get_inconsistent_metadata", "args": {}})
    );
}

#[test]
fn hasura_before_2_4_inconsistent_reports_the_objects_of_the_follow_up() {
    let objects = objects::sample(2);
    let fake = FakeHasura::builder()
        .legacy()
        .always_inconsistent()
        .objects(objects.clone())
        .start()
        .unwrap();

    let run = reload(&fake).args(&["--retries", "1"]).run();

    run.expect_code(1);
    let line = run.log(INCONSISTENT);
    assert_eq!(line["inconsistent_objects"], Value::Array(objects));
    assert_eq!(line["attempts"], 2);
    let expected = [
        "reload_metadata",
        "get_inconsistent_metadata",
        "reload_metadata",
        "get_inconsistent_metadata",
    ];
    assert_eq!(fake.commands(), expected);
}

#[test]
fn missing_admin_secret_is_access_denied_and_not_retried() {
    let fake = FakeHasura::builder()
        .admin_secret("the-secret")
        .start()
        .unwrap();

    let run = reload(&fake).run();

    let line = run.failure();
    assert_eq!(line["kind"], "access_denied");
    assert_eq!(line["status"], 401);
    assert_eq!(line["hasura_code"], "access-denied");
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .contains("required, but not found"),
        "{line}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn wrong_admin_secret_is_access_denied_and_not_retried() {
    let fake = FakeHasura::builder()
        .admin_secret("the-secret")
        .start()
        .unwrap();

    let run = reload(&fake)
        .args(&["--hasura-admin-secret", "not-the-secret"])
        .run();

    let line = run.failure();
    assert_eq!(line["kind"], "access_denied");
    assert_eq!(line["status"], 401);
    assert_eq!(line["hasura_code"], "access-denied");
    let error = line["error"].as_str().unwrap();
    assert!(
        error.contains("invalid x-hasura-admin-secret/x-hasura-access-key"),
        "{line}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn access_denied_as_400_is_not_retried() {
    let fake = FakeHasura::builder()
        .admin_secret("the-secret")
        .unauthorized_role("anonymous")
        .start()
        .unwrap();

    let run = reload(&fake).run();

    let line = run.failure();
    assert_eq!(line["kind"], "access_denied");
    assert_eq!(line["status"], 400);
    assert_eq!(line["hasura_code"], "access-denied");
    assert!(
        line["error"].as_str().unwrap().contains("admin only"),
        "{line}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn unknown_path_is_a_404_failure_and_not_retried() {
    let fake = FakeHasura::builder().prefix("/hasura").start().unwrap();
    let endpoint = fake.url().trim_end_matches("/hasura").to_string();

    let run = reloader(&[
        "reload",
        "--hasura-endpoint",
        &endpoint,
        "--retry-interval",
        "10ms",
    ])
    .run();

    let line = run.failure();
    assert_eq!(line["status"], 404);
    assert_eq!(line["hasura_code"], "not-found");
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .contains("resource does not exist"),
        "{line}"
    );
    assert_ne!(line["kind"], "access_denied");
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn other_hasura_4xx_errors_are_not_retried_and_name_their_code() {
    let error = "metadata API is disabled in read-only mode";
    let answer = RawAnswer::hasura_error(400, "$", "not-supported", error);
    let fake = FakeHasura::builder().fault_always(answer).start().unwrap();

    let run = reload(&fake).run();

    let line = run.failure();
    assert_eq!(line["status"], 400);
    assert_eq!(line["hasura_code"], "not-supported");
    assert!(line["error"].as_str().unwrap().contains(error), "{line}");
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn hasura_5xx_errors_are_retried_then_fail_with_their_code() {
    let error = "cannot reload metadata while in maintenance mode";
    let answer = RawAnswer::hasura_error(500, "$", "unexpected", error);
    let fake = FakeHasura::builder().fault_always(answer).start().unwrap();

    let run = reload(&fake).args(&["--retries", "2"]).run();

    let line = run.failure();
    assert_eq!(line["status"], 500);
    assert_eq!(line["hasura_code"], "unexpected");
    assert!(line["error"].as_str().unwrap().contains(error), "{line}");
    assert_eq!(fake.requests().len(), 3);
}

#[test]
fn connection_refused_fails_with_exit_3_after_the_retries() {
    let started = Instant::now();

    let run = reloader(&["reload", "--hasura-endpoint", &refused_url()])
        .args(&["--retries", "2", "--retry-interval", "50ms"])
        .run();

    let line = run.failure();
    assert_ne!(line["kind"], "access_denied");
    // Two waits, 50 ms then 100 ms, prove the retries happened.
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_server_that_never_answers_times_out() {
    let fake = FakeHasura::builder().never_answer().start().unwrap();
    let started = Instant::now();

    let run = reload(&fake)
        .args(&["--timeout", "1s", "--retries", "0"])
        .timeout(Duration::from_secs(15))
        .run();

    run.failure();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn a_timed_out_request_is_retried() {
    let fake = FakeHasura::builder().never_answer().start().unwrap();

    let run = reload(&fake)
        .args(&["--timeout", "250ms", "--retries", "1"])
        .run();

    run.failure();
    assert_eq!(fake.requests().len(), 2);
}

#[test]
fn a_slow_answer_within_the_timeout_is_fine() {
    let fake = FakeHasura::builder()
        .delay(Duration::from_millis(300))
        .start()
        .unwrap();

    let run = reload(&fake).args(&["--timeout", "5s"]).run();

    run.expect_code(0);
    assert!(run.log(CONSISTENT)["duration_ms"].as_u64().unwrap() >= 300);
}

#[test]
fn an_html_502_from_a_proxy_is_retried_then_fails() {
    let fake = FakeHasura::builder()
        .fault_always(RawAnswer::proxy_html(502))
        .start()
        .unwrap();

    let run = reload(&fake).args(&["--retries", "2"]).run();

    let line = run.failure();
    assert_eq!(line["status"], 502);
    assert!(line.get("hasura_code").is_none_or(Value::is_null), "{line}");
    assert_eq!(fake.requests().len(), 3);
}

#[test]
fn a_passing_502_is_healed_by_the_retry() {
    let fake = FakeHasura::builder()
        .fault_once(RawAnswer::proxy_html(502))
        .start()
        .unwrap();

    let run = reload(&fake).run();

    run.expect_code(0);
    assert_eq!(run.log(CONSISTENT)["is_consistent"], true);
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(fake.reload_count(), 1);
}

#[test]
fn rate_limiting_429_is_retried() {
    let limited = RawAnswer::new(429, Some("text/plain"), "Too Many Requests");
    let fake = FakeHasura::builder().fault_once(limited).start().unwrap();

    let run = reload(&fake).run();

    run.expect_code(0);
    assert_eq!(fake.requests().len(), 2);
}

#[test]
fn a_non_json_answer_fails_with_exit_3() {
    let page = RawAnswer::new(200, Some("text/html"), "<html><body>Welcome</body></html>");
    let fake = FakeHasura::builder().fault_always(page).start().unwrap();

    reload(&fake).run().failure();
}

#[test]
fn an_empty_answer_fails_with_exit_3() {
    let empty = RawAnswer::new(200, Some("application/json"), "");
    let fake = FakeHasura::builder().fault_always(empty).start().unwrap();

    reload(&fake).run().failure();
}

#[test]
fn a_200_answer_with_wrong_types_fails_and_never_reports_an_inconsistency() {
    let bodies = [
        json!({"message": "success", "is_consistent": "false"}),
        json!({"message": "success", "is_consistent": 0}),
        json!({"message": "success", "is_consistent": false, "inconsistent_objects": "table x"}),
        json!({"message": "success", "is_consistent": false, "inconsistent_objects": {"x": 1}}),
        json!(["success"]),
        json!("success"),
        Value::Null,
    ];
    for body in bodies {
        let fake = FakeHasura::builder()
            .fault_always(RawAnswer::json(200, &body))
            .start()
            .unwrap();

        let run = reload(&fake).args(&["--retries", "0"]).run();

        assert_eq!(run.code, 3, "answer {body}\n{}", run.dump());
        run.failure();
    }
}

#[test]
fn a_wrongly_typed_follow_up_answer_fails_and_never_reports_an_inconsistency() {
    let success = RawAnswer::json(200, &json!({"message": "success"}));
    let wrong = RawAnswer::json(
        200,
        &json!({"is_consistent": "no", "inconsistent_objects": []}),
    );
    let fake = FakeHasura::builder()
        .fault_once(success)
        .fault_always(wrong)
        .start()
        .unwrap();

    let run = reload(&fake).args(&["--retries", "0"]).run();

    run.failure();
    assert_eq!(
        fake.commands(),
        ["reload_metadata", "get_inconsistent_metadata"]
    );
}

#[test]
fn twenty_thousand_inconsistent_objects_are_all_in_the_log_line() {
    let tables: Vec<Value> = (0..20_000)
        .map(|i| objects::table_recreated(&format!("table_{i}"), "default"))
        .collect();
    let fake = FakeHasura::inconsistent(tables.clone());

    let run = reload(&fake).args(&["--retries", "0"]).run();

    run.expect_code(1);
    let line = run.log(INCONSISTENT);
    assert_eq!(
        line["inconsistent_objects"].as_array().map(Vec::len),
        Some(20_000)
    );
    assert_eq!(line["inconsistent_objects"], Value::Array(tables));
}

#[test]
fn gzip_compressed_answers_are_read() {
    let objects = objects::sample(5);
    let fake = FakeHasura::inconsistent(objects.clone());

    let run = reload(&fake).args(&["--retries", "0"]).run();

    run.expect_code(1);
    assert_eq!(
        run.log(INCONSISTENT)["inconsistent_objects"],
        Value::Array(objects)
    );
    // Hasura compresses only for clients that ask; this one must have asked.
    assert_eq!(
        fake.compressed_count(),
        1,
        "{:?}",
        fake.requests()[0].headers
    );
}

#[test]
fn objects_without_type_or_name_are_kept_as_received() {
    let odd = vec![
        objects::conflicting_objects("user"),
        objects::duplicate_definitions("create_order"),
        objects::ambiguous_rest_endpoints("article"),
        objects::inherited_role_conflict("editor"),
    ];
    let fake = FakeHasura::inconsistent(odd.clone());

    let run = reload(&fake).args(&["--retries", "0"]).run();

    run.expect_code(1);
    assert_eq!(
        run.log(INCONSISTENT)["inconsistent_objects"],
        Value::Array(odd)
    );
}

#[test]
fn log_lines_stay_json_whatever_the_objects_hold() {
    let mut tricky = objects::table_recreated("article", "default");
    tricky["reason"] =
        json!("quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} ünïcødé \u{2028} 🦀");
    tricky["message"] = json!("} {\"level\":\"info\"}\n{\"forged\":true}");
    let fake = FakeHasura::inconsistent(vec![tricky.clone()]);

    let run = reload(&fake)
        .args(&["--retries", "1"])
        .env("RUST_LOG", "debug")
        .run();

    run.expect_code(1);
    // `logs` fails on any line that is not a JSON object with level, time and message.
    assert!(run.logs().iter().all(|line| line.get("forged").is_none()));
    assert_eq!(
        run.log(INCONSISTENT)["inconsistent_objects"],
        json!([tricky])
    );
}

#[test]
fn endpoint_with_a_path_prefix_and_a_trailing_slash() {
    let fake = FakeHasura::builder().prefix("/hasura").start().unwrap();
    let endpoint = format!("{}/", fake.url());

    let run = reloader(&["reload", "--hasura-endpoint", &endpoint]).run();

    run.expect_code(0);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/hasura/v1/metadata");
}

#[test]
fn the_reload_request_is_the_one_of_the_contract() {
    let fake = FakeHasura::builder()
        .admin_secret("s3cret")
        .start()
        .unwrap();

    reload(&fake)
        .args(&["--hasura-admin-secret", "s3cret"])
        .run()
        .expect_code(0);

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_metadata_request(request, "s3cret");
    let args = json!({"reload_remote_schemas": true, "reload_sources": true});
    assert_eq!(request.json(), reload_body(args));
}

#[test]
fn no_admin_secret_sends_no_secret_header() {
    let fake = FakeHasura::start();

    reload(&fake).run().expect_code(0);

    let request = &fake.requests()[0];
    assert_eq!(request.header("x-hasura-admin-secret"), None);
    assert_eq!(request.header("x-hasura-access-key"), None);
}

#[test]
fn reload_scopes_given_as_lists_and_none() {
    let fake = FakeHasura::builder()
        .remote_schemas(&["countries", "weather"])
        .sources(&["default", "analytics"])
        .start()
        .unwrap();

    reload(&fake)
        .args(&[
            "--reload-remote-schemas",
            "countries,weather",
            "--reload-sources",
            "none",
        ])
        .args(&["--recreate-event-triggers", "default,analytics"])
        .run()
        .expect_code(0);

    let args = json!({
        "reload_remote_schemas": ["countries", "weather"],
        "reload_sources": false,
        "recreate_event_triggers": ["default", "analytics"],
    });
    assert_eq!(fake.requests()[0].json(), reload_body(args));
}

#[test]
fn reload_scopes_from_the_environment() {
    let fake = FakeHasura::start();

    reload(&fake)
        .env("RELOADER_RELOAD_REMOTE_SCHEMAS", "none")
        .env("RELOADER_RELOAD_SOURCES", "default")
        .env("RELOADER_RECREATE_EVENT_TRIGGERS", "all")
        .run()
        .expect_code(0);

    let args = json!({
        "reload_remote_schemas": false,
        "reload_sources": ["default"],
        "recreate_event_triggers": true,
    });
    assert_eq!(fake.requests()[0].json(), reload_body(args));
}

#[test]
fn recreate_event_triggers_none_is_left_out_of_the_request() {
    let fake = FakeHasura::start();

    reload(&fake)
        .args(&["--recreate-event-triggers", "none"])
        .run()
        .expect_code(0);

    let args = json!({"reload_remote_schemas": true, "reload_sources": true});
    assert_eq!(fake.requests()[0].json(), reload_body(args));
}

#[test]
fn if_inconsistent_skips_the_reload_when_consistent() {
    let fake = FakeHasura::start();

    let run = reload(&fake).args(&["--if-inconsistent"]).run();

    run.expect_code(0);
    let line = run.log(SKIPPED);
    assert_eq!(line["level"], "info");
    assert_eq!(line["is_consistent"], true);
    assert_eq!(line["reloaded"], false);
    assert_eq!(fake.commands(), ["get_inconsistent_metadata"]);
    assert_eq!(
        fake.requests()[0].json(),
        json!({"type": "get_inconsistent_metadata", "args": {}})
    );
    assert_eq!(fake.reload_count(), 0);
}

#[test]
fn if_inconsistent_reloads_when_inconsistent() {
    let fake = FakeHasura::builder()
        .inconsistent_reloads(1)
        .start()
        .unwrap();

    let run = reload(&fake).args(&["--if-inconsistent"]).run();

    run.expect_code(0);
    assert!(run.logs_with(SKIPPED).is_empty());
    assert_eq!(run.log(CONSISTENT)["is_consistent"], true);
    let expected = [
        "get_inconsistent_metadata",
        "reload_metadata",
        "reload_metadata",
    ];
    assert_eq!(fake.commands(), expected);
}

#[test]
fn if_inconsistent_from_the_environment() {
    let fake = FakeHasura::start();

    let run = reload(&fake).env("RELOADER_IF_INCONSISTENT", "true").run();

    run.expect_code(0);
    assert_eq!(run.log(SKIPPED)["reloaded"], false);
    assert_eq!(fake.reload_count(), 0);
}

#[test]
fn if_inconsistent_false_in_the_environment_always_reloads() {
    let fake = FakeHasura::start();

    let run = reload(&fake).env("RELOADER_IF_INCONSISTENT", "false").run();

    run.expect_code(0);
    assert_eq!(fake.commands(), ["reload_metadata"]);
}

#[test]
fn https_endpoint_trusted_through_ca_cert() {
    let certs = test_certificates();
    let fake = FakeHasura::builder()
        .start_tls(&certs.chain_pem, &certs.key_pem)
        .unwrap();
    let ca = temp_file("ca.pem", &certs.ca_pem);
    assert!(fake.url().starts_with("https://"));

    let run = reload(&fake)
        .args(&["--ca-cert", ca.to_str().unwrap()])
        .run();

    run.expect_code(0);
    assert_eq!(fake.commands(), ["reload_metadata"]);
}

#[test]
fn https_endpoint_with_an_unknown_ca_fails() {
    let certs = test_certificates();
    let fake = FakeHasura::builder()
        .start_tls(&certs.chain_pem, &certs.key_pem)
        .unwrap();

    let run = reload(&fake).args(&["--retries", "0"]).run();

    run.failure();
    assert!(fake.requests().is_empty());
}

/// Every way the admin secret could leak: logs at the most talkative
/// level, and the Sentry and Slack reports.
#[test]
fn the_admin_secret_never_appears_in_output_or_reports() {
    let secret = "hunter2-Q7vX9-admin";
    let wrong = "wrong-Z3kP8-admin";
    let fake = FakeHasura::builder()
        .admin_secret(secret)
        .always_inconsistent()
        .start()
        .unwrap();
    let reports = Sink::start();
    let slack = format!("{}/slack", reports.url());
    let traced = |command: Reloader| {
        let command = command.env("SENTRY_DSN", reports.sentry_dsn());
        command
            .env("SLACK_WEBHOOK_URL", &slack)
            .env("RUST_LOG", "trace")
            .run()
    };

    let runs = [
        traced(reload(&fake).args(&["--hasura-admin-secret", secret, "--retries", "1"])),
        traced(reload(&fake).env("HASURA_ADMIN_SECRET", wrong)),
        traced(against("check", &fake).env("HASURA_GRAPHQL_ADMIN_SECRET", secret)),
    ];

    assert_eq!(
        runs.each_ref().map(|run| run.code),
        [1, 3, 1],
        "{}",
        runs[1].dump()
    );
    for run in &runs {
        run.logs();
        for leak in [secret, wrong, SENTRY_KEY] {
            assert!(
                !run.output().contains(leak),
                "{leak} leaked\n{}",
                run.dump()
            );
        }
    }
    for report in reports.requests() {
        let body = report.body_text();
        assert!(
            !body.contains(secret) && !body.contains(wrong),
            "leaked in {body}"
        );
    }
}

#[test]
fn url_userinfo_never_appears_in_the_output() {
    let fake = FakeHasura::builder()
        .fault_always(RawAnswer::proxy_html(503))
        .start()
        .unwrap();
    let endpoint = fake
        .url()
        .replacen("http://", "http://operator:pa55-Userinfo-x@", 1);

    let run = reloader(&[
        "reload",
        "--hasura-endpoint",
        &endpoint,
        "--retry-interval",
        "10ms",
    ])
    .env("RUST_LOG", "trace")
    .run();

    assert!(!run.output().contains("pa55-Userinfo-x"), "{}", run.dump());
}

#[test]
fn every_stderr_line_is_json_with_level_time_and_message() {
    let fake = FakeHasura::builder()
        .inconsistent_reloads(1)
        .start()
        .unwrap();

    let run = reload(&fake).env("RUST_LOG", "trace").run();

    run.expect_code(0);
    let logs = run.logs();
    assert!(logs.iter().any(|line| line["level"] == "warn"));
    assert!(logs.iter().any(|line| line["level"] == "info"));
}
