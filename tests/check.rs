//! `check` against the fake Hasura: one read-only `get_inconsistent_metadata`
//! (transport retries apply), reported like `reload`.

use serde_json::{Value, json};

use crate::support::{
    CONSISTENT, FakeHasura, INCONSISTENT, RETRYING, RawAnswer, against, assert_metadata_request,
    objects,
};

fn check(fake: &FakeHasura) -> crate::support::Reloader {
    against("check", fake)
}

#[test]
fn consistent_hasura_exits_0_without_reloading() {
    let fake = FakeHasura::start();

    let run = check(&fake).run();

    run.expect_code(0);
    let line = run.log(CONSISTENT);
    assert_eq!(line["level"], "info");
    assert_eq!(line["is_consistent"], true);
    assert_eq!(fake.commands(), ["get_inconsistent_metadata"]);
    assert_eq!(fake.reload_count(), 0);
}

#[test]
fn inconsistent_hasura_exits_1_with_the_objects_after_one_request() {
    let objects = objects::sample(7);
    let fake = FakeHasura::inconsistent(objects.clone());

    let run = check(&fake).args(&["--retries", "2"]).run();

    run.expect_code(1);
    let line = run.log(INCONSISTENT);
    assert_eq!(line["level"], "error");
    assert_eq!(line["error"], "metadata is inconsistent");
    assert_eq!(line["inconsistent_objects"], Value::Array(objects));
    assert!(run.logs_with(RETRYING).is_empty());
    assert_eq!(fake.commands(), ["get_inconsistent_metadata"]);
    assert_eq!(fake.reload_count(), 0);
}

#[test]
fn the_check_request_is_the_one_of_the_contract() {
    let fake = FakeHasura::builder()
        .admin_secret("s3cret")
        .start()
        .unwrap();

    check(&fake)
        .args(&["--admin-secret", "s3cret"])
        .run()
        .expect_code(0);

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_metadata_request(request, "s3cret");
    assert_eq!(
        request.json(),
        json!({"type": "get_inconsistent_metadata", "args": {}})
    );
}

#[test]
fn transport_failures_are_retried() {
    let fake = FakeHasura::builder()
        .fault_once(RawAnswer::proxy_html(503))
        .fault_once(RawAnswer::proxy_html(504))
        .start()
        .unwrap();

    let run = check(&fake).args(&["--retries", "2"]).run();

    run.expect_code(0);
    assert_eq!(fake.commands(), ["get_inconsistent_metadata"; 3]);
}

#[test]
fn access_denied_exits_3_without_retry() {
    let fake = FakeHasura::builder()
        .admin_secret("s3cret")
        .start()
        .unwrap();

    let run = check(&fake).args(&["--admin-secret", "guess"]).run();

    let line = run.failure();
    assert_eq!(line["kind"], "access_denied");
    assert_eq!(line["status"], 401);
    assert_eq!(line["hasura_code"], "access-denied");
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn an_answer_that_breaks_the_api_promise_exits_3_never_1() {
    let bodies = [
        json!({"is_consistent": "no", "inconsistent_objects": []}),
        json!({"inconsistent_objects": [objects::source_unreachable("default")]}),
        json!({"is_consistent": false, "inconsistent_objects": "source default"}),
        json!({"message": "success"}),
        json!([]),
    ];
    for body in bodies {
        let fake = FakeHasura::builder()
            .fault_always(RawAnswer::json(200, &body))
            .start()
            .unwrap();

        let run = check(&fake).args(&["--retries", "0"]).run();

        assert_eq!(run.code, 3, "answer {body}\n{}", run.dump());
        run.failure();
    }
}

#[test]
fn unreachable_hasura_exits_3() {
    let fake = FakeHasura::builder()
        .fault_always(RawAnswer::proxy_html(502))
        .start()
        .unwrap();

    let run = check(&fake).args(&["--retries", "1"]).run();

    assert_eq!(run.failure()["status"], 502);
    assert_eq!(fake.requests().len(), 2);
}

#[test]
fn check_has_no_if_inconsistent_option() {
    let fake = FakeHasura::start();

    check(&fake)
        .args(&["--if-inconsistent"])
        .run()
        .expect_code(2);

    assert!(fake.requests().is_empty());
}
