//! The watcher: it checks at start and every interval, reloads only an
//! inconsistent Hasura, and logs the recovery.

use super::*;

#[test]
fn the_watcher_heals_an_inconsistency_without_any_request() {
    // Inconsistent at start; the first reload fails to heal, the second heals.
    let fake = FakeHasura::builder()
        .inconsistent_reloads(1)
        .start()
        .unwrap();
    let server = serve(fake.url(), &["--watch-interval", "1h", "--retries", "2"]);
    assert_eq!(server.wait_for(RUNNING)["watch_interval"], "1h");

    let recovered = server.wait_for(RECOVERED);
    assert_eq!(recovered["level"], "info");
    assert_eq!(
        fake.commands(),
        [
            "get_inconsistent_metadata",
            "reload_metadata",
            "reload_metadata"
        ]
    );
    let reloading = server.wait_for("Metadata is inconsistent, reloading.");
    assert_eq!(reloading["inconsistent_count"], 2);
    assert_eq!(server.logs_with(CONSISTENT).len(), 1);
    assert_eq!(server.metric("hasura_metadata_consistent"), "1");
    assert_eq!(
        server.metric(r#"hasura_metadata_reloads_total{outcome="consistent"}"#),
        "1"
    );
}

#[test]
fn the_watcher_only_checks_a_consistent_hasura() {
    let fake = FakeHasura::start();
    let server = serve(fake.url(), &["--watch-interval", "200ms"]);
    assert_eq!(server.wait_for(RUNNING)["watch_interval"], "200ms");
    eventually("three checks", || fake.commands().len() >= 3);
    assert!(
        fake.commands()
            .iter()
            .all(|c| c == "get_inconsistent_metadata"),
        "{:?}",
        fake.commands()
    );
    assert_eq!(server.metric("hasura_metadata_consistent"), "1");
    assert_eq!(
        server.metric(r#"hasura_metadata_reloads_total{outcome="consistent"}"#),
        "0"
    );
    assert!(server.logs_with(RECOVERED).is_empty());
}

#[test]
fn the_watcher_logs_a_failed_check_and_the_recovery_after_it() {
    let fake = FakeHasura::builder()
        .fault_once(RawAnswer::proxy_html(503))
        .start()
        .unwrap();
    let server = serve(fake.url(), &["--watch-interval", "200ms", "--retries", "0"]);
    let failed = server.wait_for(FAILED);
    assert_eq!(failed["status"], 503);
    server.wait_for(RECOVERED);
    assert_eq!(
        fake.reload_count(),
        0,
        "a failed check is no reason to reload"
    );
    assert_eq!(
        server.metric(r#"hasura_metadata_reloads_total{outcome="failed"}"#),
        "0"
    );
}
