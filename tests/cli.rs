//! The command line and the environment (SPEC sections 2 and 3): flags,
//! aliases, variables and their order, usage errors, `version`, `--help`.

use std::time::Duration;

use crate::support::{
    CONSISTENT, FakeHasura, INCONSISTENT, Reloader, Sink, VERSION, against, refused_url, reloader,
    temp_file,
};

/// The variables every command that talks to Hasura reads.
const COMMON_VARIABLES: &[&str] = &[
    "HASURA_ENDPOINT",
    "HASURA_GRAPHQL_ENDPOINT",
    "HASURA_ADMIN_SECRET",
    "HASURA_GRAPHQL_ADMIN_SECRET",
    "HASURA_ADMIN_SECRET_FILE",
    "SENTRY_DSN",
    "SENTRY_ENV",
    "SENTRY_ENVIRONMENT",
    "SENTRY_MONITOR_SLUG",
    "SLACK_WEBHOOK_URL",
    "RELOADER_TIMEOUT",
    "RELOADER_RETRIES",
    "RELOADER_RETRY_INTERVAL",
    "RELOADER_CA_CERT",
];

/// The variables of the reload scopes.
const SCOPE_VARIABLES: &[&str] = &[
    "RELOADER_RELOAD_REMOTE_SCHEMAS",
    "RELOADER_RELOAD_SOURCES",
    "RELOADER_RECREATE_EVENT_TRIGGERS",
];

#[test]
fn version_command_and_flag_print_name_and_version() {
    for args in [&["version"][..], &["--version"]] {
        let run = reloader(args).run();

        run.expect_code(0);
        assert_eq!(
            run.stdout,
            format!("hasura-metadata-reloader {VERSION}\n"),
            "{args:?}"
        );
    }
}

#[test]
fn program_help_names_every_command() {
    let run = reloader(&["--help"]).run();

    run.expect_code(0);
    for command in ["reload", "check", "server", "version"] {
        assert!(
            run.stdout.contains(command),
            "{command} missing\n{}",
            run.dump()
        );
    }
}

#[test]
fn every_command_has_help() {
    for command in ["reload", "check", "server", "version"] {
        let run = reloader(&[command, "--help"]).run();

        run.expect_code(0);
        assert!(run.stdout.contains(command), "{command}\n{}", run.dump());
    }
}

#[test]
fn reload_help_names_the_variable_of_every_option() {
    let run = reloader(&["reload", "--help"]).run();

    run.expect_code(0);
    let variables = COMMON_VARIABLES
        .iter()
        .chain(SCOPE_VARIABLES)
        .chain(&["RELOADER_IF_INCONSISTENT"]);
    for variable in variables {
        assert!(
            run.stdout.contains(variable),
            "{variable} missing\n{}",
            run.dump()
        );
    }
}

#[test]
fn check_help_names_the_variable_of_every_option() {
    let run = reloader(&["check", "--help"]).run();

    run.expect_code(0);
    for variable in COMMON_VARIABLES {
        assert!(
            run.stdout.contains(variable),
            "{variable} missing\n{}",
            run.dump()
        );
    }
}

#[test]
fn server_help_names_the_variable_of_every_option() {
    let run = reloader(&["server", "--help"]).run();

    run.expect_code(0);
    let server = [
        "PORT",
        "RELOADER_BIND",
        "RELOADER_AUTH_TOKEN",
        "RELOADER_AUTH_TOKEN_FILE",
    ];
    let variables = COMMON_VARIABLES
        .iter()
        .chain(SCOPE_VARIABLES)
        .chain(&server);
    for variable in variables.chain(&["RELOADER_WATCH_INTERVAL"]) {
        assert!(
            run.stdout.contains(variable),
            "{variable} missing\n{}",
            run.dump()
        );
    }
}

#[test]
fn missing_endpoint_is_a_usage_error_naming_the_option_and_variable() {
    for command in ["reload", "check"] {
        let run = reloader(&[command]).run();

        let line = run.usage_error();
        assert!(line.contains("--hasura-endpoint"), "{line}");
        assert!(line.contains("HASURA_ENDPOINT"), "{line}");
    }
}

#[test]
fn invalid_flag_values_are_usage_errors_naming_the_option_and_variable() {
    let fake = FakeHasura::start();
    let cases = [
        ("--retries", "many", "RELOADER_RETRIES"),
        ("--timeout", "5 parsecs", "RELOADER_TIMEOUT"),
        ("--retry-interval", "fast", "RELOADER_RETRY_INTERVAL"),
        (
            "--reload-remote-schemas",
            ",",
            "RELOADER_RELOAD_REMOTE_SCHEMAS",
        ),
        ("--reload-sources", ",", "RELOADER_RELOAD_SOURCES"),
        (
            "--recreate-event-triggers",
            ",",
            "RELOADER_RECREATE_EVENT_TRIGGERS",
        ),
        (
            "--hasura-endpoint",
            "ftp://hasura.example",
            "HASURA_ENDPOINT",
        ),
        ("--hasura-endpoint", "not a url", "HASURA_ENDPOINT"),
    ];
    for (option, value, variable) in cases {
        let run = reloader(&["reload", option, value])
            .env("HASURA_ENDPOINT", fake.url())
            .run();

        let line = run.usage_error();
        assert!(
            line.contains(option) && line.contains(variable),
            "{option} {value}: {line}"
        );
    }
    assert!(fake.requests().is_empty());
}

#[test]
fn invalid_variable_values_are_usage_errors_naming_the_option_and_variable() {
    let fake = FakeHasura::start();
    let cases = [
        ("RELOADER_TIMEOUT", "soon", "--timeout"),
        ("RELOADER_RETRIES", "x", "--retries"),
        (
            "RELOADER_RETRY_INTERVAL",
            "10 fortnights",
            "--retry-interval",
        ),
        ("RELOADER_RELOAD_SOURCES", ",", "--reload-sources"),
        ("RELOADER_IF_INCONSISTENT", "maybe", "--if-inconsistent"),
    ];
    for (variable, value, option) in cases {
        let run = reloader(&["reload"])
            .env("HASURA_ENDPOINT", fake.url())
            .env(variable, value)
            .run();

        let line = run.usage_error();
        assert!(
            line.contains(option) && line.contains(variable),
            "{variable}={value}: {line}"
        );
    }
    assert!(fake.requests().is_empty());
}

#[test]
fn an_unreadable_admin_secret_file_is_a_usage_error() {
    let fake = FakeHasura::start();

    let run = against("reload", &fake)
        .env(
            "HASURA_ADMIN_SECRET_FILE",
            "/nonexistent/hasura-admin-secret",
        )
        .run();

    assert!(
        run.usage_error().contains("HASURA_ADMIN_SECRET_FILE"),
        "{}",
        run.dump()
    );
    assert!(fake.requests().is_empty());
}

#[test]
fn unknown_flags_and_commands_exit_2() {
    let run = reloader(&["reload", "--frobnicate"])
        .env("HASURA_ENDPOINT", refused_url())
        .run();
    run.expect_code(2);
    assert!(run.stderr.contains("--frobnicate"), "{}", run.dump());

    reloader(&["frobnicate"]).run().expect_code(2);
    reloader(&[]).run().expect_code(2);
}

#[test]
fn every_documented_duration_form_is_accepted() {
    let fake = FakeHasura::start();
    for timeout in ["250ms", "30s", "5m", "1h", "30"] {
        against("reload", &fake)
            .args(&["--timeout", timeout])
            .run()
            .expect_code(0);
    }
    assert_eq!(fake.reload_count(), 5);
}

#[test]
fn rust_log_sets_the_log_level() {
    let fake = FakeHasura::builder().always_inconsistent().start().unwrap();

    let run = against("reload", &fake)
        .args(&["--retries", "1"])
        .env("RUST_LOG", "error")
        .run();

    run.expect_code(1);
    assert!(
        run.logs().iter().all(|line| line["level"] == "error"),
        "{}",
        run.dump()
    );
    run.log(INCONSISTENT);
}

#[test]
fn the_environment_alone_configures_reload() {
    let fake = FakeHasura::builder()
        .admin_secret("env-secret")
        .start()
        .unwrap();

    let run = reloader(&["reload"])
        .env("HASURA_ENDPOINT", fake.url())
        .env("HASURA_ADMIN_SECRET", "env-secret")
        .env("RELOADER_RETRIES", "0")
        .run();

    run.expect_code(0);
    assert_eq!(
        fake.requests()[0].header("x-hasura-admin-secret"),
        Some("env-secret")
    );
}

#[test]
fn flags_beat_the_environment() {
    let fake = FakeHasura::builder()
        .admin_secret("flag-secret")
        .always_inconsistent()
        .start()
        .unwrap();

    let run = reloader(&["reload", "--hasura-endpoint", fake.url()])
        .args(&["--hasura-admin-secret", "flag-secret", "--retries", "0"])
        .env("HASURA_ENDPOINT", refused_url())
        .env("HASURA_ADMIN_SECRET", "env-secret")
        .env("RELOADER_RETRIES", "5")
        .env("RELOADER_RETRY_INTERVAL", "1h")
        .run();

    run.expect_code(1);
    assert_eq!(run.log(INCONSISTENT)["attempts"], 1);
    assert_eq!(fake.reload_count(), 1);
    assert_eq!(
        fake.requests()[0].header("x-hasura-admin-secret"),
        Some("flag-secret")
    );
}

#[test]
fn hasura_graphql_variables_are_aliases() {
    let fake = FakeHasura::builder()
        .admin_secret("graphql-secret")
        .start()
        .unwrap();

    let run = reloader(&["reload"])
        .env("HASURA_GRAPHQL_ENDPOINT", fake.url())
        .env("HASURA_GRAPHQL_ADMIN_SECRET", "graphql-secret")
        .run();

    run.expect_code(0);
    assert_eq!(
        fake.requests()[0].header("x-hasura-admin-secret"),
        Some("graphql-secret")
    );
}

#[test]
fn hasura_variables_beat_their_graphql_aliases() {
    let fake = FakeHasura::builder().admin_secret("first").start().unwrap();

    let run = reloader(&["reload"])
        .env("HASURA_ENDPOINT", fake.url())
        .env("HASURA_GRAPHQL_ENDPOINT", refused_url())
        .env("HASURA_ADMIN_SECRET", "first")
        .env("HASURA_GRAPHQL_ADMIN_SECRET", "second")
        .run();

    run.expect_code(0);
    assert_eq!(
        fake.requests()[0].header("x-hasura-admin-secret"),
        Some("first")
    );
}

#[test]
fn admin_secret_file_drops_the_trailing_newline() {
    let fake = FakeHasura::builder()
        .admin_secret("file-secret")
        .start()
        .unwrap();
    let file = temp_file("admin-secret", "file-secret\n");

    let run = against("reload", &fake)
        .env("HASURA_ADMIN_SECRET_FILE", &file)
        .run();

    run.expect_code(0);
    assert_eq!(
        fake.requests()[0].header("x-hasura-admin-secret"),
        Some("file-secret")
    );
}

#[test]
fn admin_secret_variables_beat_the_secret_file() {
    let fake = FakeHasura::builder()
        .admin_secret("variable-secret")
        .start()
        .unwrap();
    let file = temp_file("admin-secret", "file-secret\n");

    let run = against("reload", &fake)
        .env("HASURA_GRAPHQL_ADMIN_SECRET", "variable-secret")
        .env("HASURA_ADMIN_SECRET_FILE", &file)
        .run();

    run.expect_code(0);
    assert_eq!(
        fake.requests()[0].header("x-hasura-admin-secret"),
        Some("variable-secret")
    );
}

#[test]
fn empty_variables_count_as_unset() {
    let fake = FakeHasura::builder()
        .admin_secret("fallback")
        .start()
        .unwrap();

    let run = reloader(&["reload"])
        .env("HASURA_ENDPOINT", "")
        .env("HASURA_GRAPHQL_ENDPOINT", fake.url())
        .env("HASURA_ADMIN_SECRET", "")
        .env("HASURA_GRAPHQL_ADMIN_SECRET", "fallback")
        .env("RELOADER_RETRIES", "")
        .env("RELOADER_TIMEOUT", "")
        .env("RELOADER_RETRY_INTERVAL", "")
        .env("RELOADER_RELOAD_SOURCES", "")
        .env("RELOADER_IF_INCONSISTENT", "")
        .env("SENTRY_DSN", "")
        .env("SLACK_WEBHOOK_URL", "")
        .run();

    run.expect_code(0);
    assert_eq!(fake.commands(), ["reload_metadata"]);
    let body = fake.requests()[0].json();
    assert_eq!(body["args"]["reload_sources"], true, "{body}");
    assert_eq!(
        fake.requests()[0].header("x-hasura-admin-secret"),
        Some("fallback")
    );
}

#[test]
fn an_empty_admin_secret_variable_sends_no_header() {
    let fake = FakeHasura::start();

    against("reload", &fake)
        .env("HASURA_ADMIN_SECRET", "")
        .run()
        .expect_code(0);

    assert_eq!(fake.requests()[0].header("x-hasura-admin-secret"), None);
}

#[test]
fn endpoint_and_admin_secret_flag_aliases() {
    let fake = FakeHasura::builder()
        .admin_secret("alias-secret")
        .start()
        .unwrap();

    let run = reloader(&[
        "reload",
        "--endpoint",
        fake.url(),
        "--admin-secret",
        "alias-secret",
    ])
    .run();

    run.expect_code(0);
    assert_eq!(
        fake.requests()[0].header("x-hasura-admin-secret"),
        Some("alias-secret")
    );
}

#[test]
fn long_options_take_name_equals_value() {
    let fake = FakeHasura::builder()
        .admin_secret("eq-secret")
        .inconsistent_reloads(1)
        .start()
        .unwrap();
    let endpoint = format!("--hasura-endpoint={}", fake.url());

    let run = reloader(&["reload", &endpoint, "--hasura-admin-secret=eq-secret"])
        .args(&[
            "--retries=1",
            "--retry-interval=10ms",
            "--reload-sources=default",
        ])
        .run();

    run.expect_code(0);
    assert_eq!(fake.reload_count(), 2);
    assert_eq!(
        fake.requests()[0].json()["args"]["reload_sources"],
        serde_json::json!(["default"])
    );
}

#[test]
fn the_original_tool_invocation_works_unchanged() {
    let fake = FakeHasura::builder()
        .admin_secret("original")
        .start()
        .unwrap();
    let sentry = Sink::start();
    let endpoint = format!("--hasura-endpoint={}", fake.url());

    let run = reloader(&["reload", &endpoint, "--hasura-admin-secret", "original"])
        .args(&["--sentry-dsn", &sentry.sentry_dsn()])
        .run();

    run.expect_code(0);
    assert_eq!(run.log(CONSISTENT)["is_consistent"], true);
    assert_eq!(
        fake.requests()[0].header("x-hasura-admin-secret"),
        Some("original")
    );
    // A consistent outcome sends nothing to Sentry.
    assert!(sentry.requests().is_empty(), "{:?}", sentry.requests());
}

#[test]
fn a_sentry_dsn_logs_sentry_initialized() {
    let fake = FakeHasura::start();
    let sentry = Sink::start();

    let run = against("reload", &fake)
        .env("SENTRY_DSN", sentry.sentry_dsn())
        .run();

    run.expect_code(0);
    assert_eq!(run.log("Sentry initialized.")["level"], "info");
}

/// The environment of the Sentry event sent for an inconsistent outcome.
fn sentry_environment(configure: impl FnOnce(Reloader) -> Reloader) -> String {
    let fake = FakeHasura::builder().always_inconsistent().start().unwrap();
    let sentry = Sink::start();
    let command = against("reload", &fake)
        .args(&["--retries", "0"])
        .env("SENTRY_DSN", sentry.sentry_dsn());

    configure(command).run().expect_code(1);

    let requests = sentry.wait_for(1, Duration::from_secs(5));
    let bodies: Vec<String> = requests.iter().map(|r| r.body_text()).collect();
    let event = bodies
        .iter()
        .find(|b| b.contains("MetadataInconsistent"))
        .expect("an event");
    let marker = "\"environment\":\"";
    let start = event
        .find(marker)
        .map(|i| i + marker.len())
        .expect("an environment");
    event[start..].split('"').next().unwrap().to_string()
}

#[test]
fn sentry_environment_comes_from_sentry_environment_as_an_alias() {
    let environment = sentry_environment(|c| c.env("SENTRY_ENVIRONMENT", "staging"));

    assert_eq!(environment, "staging");
}

#[test]
fn sentry_env_beats_sentry_environment_and_the_flag_beats_both() {
    let from_env = sentry_environment(|c| {
        c.env("SENTRY_ENV", "production")
            .env("SENTRY_ENVIRONMENT", "staging")
    });
    let from_flag = sentry_environment(|c| {
        c.args(&["--sentry-env", "canary"])
            .env("SENTRY_ENV", "production")
            .env("SENTRY_ENVIRONMENT", "staging")
    });

    assert_eq!(from_env, "production");
    assert_eq!(from_flag, "canary");
}
