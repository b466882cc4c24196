//! The command line: argh structs, plus the rewriting that gives argh the
//! `--name=value` form and the option aliases of the original tool.

use argh::FromArgs;

/// Options that take a value, so the token after them is left alone.
const VALUE_OPTIONS: &[&str] = &[
    "--hasura-endpoint",
    "--hasura-admin-secret",
    "--sentry-dsn",
    "--sentry-env",
    "--sentry-monitor",
    "--slack-webhook-url",
    "--timeout",
    "--retries",
    "--retry-interval",
    "--reload-remote-schemas",
    "--reload-sources",
    "--recreate-event-triggers",
    "--ca-cert",
    "--port",
    "--bind",
    "--auth-token",
    "--watch-interval",
];

/// Aliases the original tool accepted, and the option each stands for.
const ALIASES: &[(&str, &str)] = &[
    ("--endpoint", "--hasura-endpoint"),
    ("--admin-secret", "--hasura-admin-secret"),
];

/// Switches that may also be written `--switch=true` or `--switch=false`.
const SWITCHES: &[&str] = &["--if-inconsistent"];

/// Rewrites the arguments (without the program name) into the form argh
/// parses: `--name=value` becomes `--name value`, aliases become their
/// option, and `--switch=false` disappears.
pub fn normalize(args: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(args.len() + 2);
    let mut expects_value = false;
    for (index, arg) in args.iter().enumerate() {
        if expects_value || !arg.starts_with("--") {
            expects_value = false;
            out.push(arg.clone());
            continue;
        }
        if arg == "--" {
            out.extend(args[index..].iter().cloned());
            break;
        }
        let (name, value) = match arg.split_once('=') {
            Some((name, value)) => (canonical(name), Some(value)),
            None => (canonical(arg), None),
        };
        match value {
            Some(value) if SWITCHES.contains(&name) => {
                if parse_bool(value)
                    .ok_or_else(|| format!("{name} takes true or false, got {value:?}"))?
                {
                    out.push(name.to_owned());
                }
            }
            Some(value) => {
                out.push(name.to_owned());
                out.push(value.to_owned());
            }
            None => {
                expects_value = VALUE_OPTIONS.contains(&name);
                out.push(name.to_owned());
            }
        }
    }
    Ok(out)
}

/// Reads `true`/`false` the way both the switches and their variables do.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn canonical(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, option)| option)
}

/// Reload Hasura GraphQL Engine metadata and report what stays inconsistent.
#[derive(FromArgs, Debug, PartialEq)]
pub struct TopLevel {
    /// print the version and exit
    #[argh(switch, short = 'V')]
    pub version: bool,

    #[argh(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum Command {
    Reload(ReloadCommand),
    Check(CheckCommand),
    Server(ServerCommand),
    Version(VersionCommand),
}

/// The options every command that talks to Hasura takes, taken out of the
/// argh struct that holds them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CommonOptions {
    pub hasura_endpoint: Option<String>,
    pub hasura_admin_secret: Option<String>,
    pub sentry_dsn: Option<String>,
    pub sentry_env: Option<String>,
    pub sentry_monitor: Option<String>,
    pub slack_webhook_url: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<String>,
    pub retry_interval: Option<String>,
    pub reload_remote_schemas: Option<String>,
    pub reload_sources: Option<String>,
    pub recreate_event_triggers: Option<String>,
    pub ca_cert: Option<String>,
}

// argh has no way to share options between subcommands, so each command
// struct is generated with the common options and its own.
macro_rules! command_with_common_options {
    (
        $(#[$attr:meta])*
        pub struct $name:ident { $($own:tt)* }
    ) => {
        #[derive(FromArgs, Debug, Default, PartialEq)]
        $(#[$attr])*
        pub struct $name {
            /// base URL of Hasura, e.g. https://hasura.example.com
            /// [env: HASURA_ENDPOINT, else HASURA_GRAPHQL_ENDPOINT]
            #[argh(option)]
            pub hasura_endpoint: Option<String>,

            /// admin secret sent as X-Hasura-Admin-Secret
            /// [env: HASURA_ADMIN_SECRET, else HASURA_GRAPHQL_ADMIN_SECRET,
            /// else the file named by HASURA_ADMIN_SECRET_FILE]
            #[argh(option)]
            pub hasura_admin_secret: Option<String>,

            /// the DSN of Sentry, which is off without it [env: SENTRY_DSN]
            #[argh(option)]
            pub sentry_dsn: Option<String>,

            /// environment of Sentry events
            /// [env: SENTRY_ENV, else SENTRY_ENVIRONMENT]
            #[argh(option)]
            pub sentry_env: Option<String>,

            /// slug of the Sentry Crons monitor for check-ins
            /// [env: SENTRY_MONITOR_SLUG]
            #[argh(option)]
            pub sentry_monitor: Option<String>,

            /// incoming webhook URL of Slack, which is off without it
            /// [env: SLACK_WEBHOOK_URL]
            #[argh(option)]
            pub slack_webhook_url: Option<String>,

            /// timeout of each request to Hasura, e.g. 30s
            /// (default 60s) [env: RELOADER_TIMEOUT]
            #[argh(option)]
            pub timeout: Option<String>,

            /// extra attempts after the first (default 2)
            /// [env: RELOADER_RETRIES]
            #[argh(option)]
            pub retries: Option<String>,

            /// wait before the first retry, doubled each retry up to 60s
            /// (default 5s) [env: RELOADER_RETRY_INTERVAL]
            #[argh(option)]
            pub retry_interval: Option<String>,

            /// remote schemas to reload: all, none or a comma-separated
            /// list (default all) [env: RELOADER_RELOAD_REMOTE_SCHEMAS]
            #[argh(option)]
            pub reload_remote_schemas: Option<String>,

            /// sources to reload: all, none or a comma-separated list
            /// (default all) [env: RELOADER_RELOAD_SOURCES]
            #[argh(option)]
            pub reload_sources: Option<String>,

            /// sources whose event triggers are recreated: all, none or a
            /// comma-separated list (default none)
            /// [env: RELOADER_RECREATE_EVENT_TRIGGERS]
            #[argh(option)]
            pub recreate_event_triggers: Option<String>,

            /// PEM file of extra CA certificates, trusted besides the
            /// built-in roots [env: RELOADER_CA_CERT]
            #[argh(option)]
            pub ca_cert: Option<String>,

            $($own)*
        }

        impl $name {
            /// The options shared by every command.
            pub fn common(&self) -> CommonOptions {
                CommonOptions {
                    hasura_endpoint: self.hasura_endpoint.clone(),
                    hasura_admin_secret: self.hasura_admin_secret.clone(),
                    sentry_dsn: self.sentry_dsn.clone(),
                    sentry_env: self.sentry_env.clone(),
                    sentry_monitor: self.sentry_monitor.clone(),
                    slack_webhook_url: self.slack_webhook_url.clone(),
                    timeout: self.timeout.clone(),
                    retries: self.retries.clone(),
                    retry_interval: self.retry_interval.clone(),
                    reload_remote_schemas: self.reload_remote_schemas.clone(),
                    reload_sources: self.reload_sources.clone(),
                    recreate_event_triggers: self
                        .recreate_event_triggers
                        .clone(),
                    ca_cert: self.ca_cert.clone(),
                }
            }
        }
    };
}

command_with_common_options! {
    /// Reload Hasura's metadata, retrying while it stays inconsistent,
    /// then report and exit (0 consistent, 1 inconsistent, 2 usage error,
    /// 3 failed).
    #[argh(subcommand, name = "reload")]
    pub struct ReloadCommand {
        /// reload only when Hasura reports inconsistent metadata
        /// [env: RELOADER_IF_INCONSISTENT, true or false]
        #[argh(switch)]
        pub if_inconsistent: bool,
    }
}

command_with_common_options! {
    /// Ask Hasura for inconsistent metadata without changing anything,
    /// then report and exit (0 consistent, 1 inconsistent, 2 usage error,
    /// 3 failed).
    #[argh(subcommand, name = "check")]
    pub struct CheckCommand {}
}

command_with_common_options! {
    /// Serve /reload_metadata, /healthz and /metrics over HTTP, and
    /// optionally watch Hasura on a fixed interval.
    #[argh(subcommand, name = "server")]
    pub struct ServerCommand {
        /// port to listen on (default 8080) [env: PORT]
        #[argh(option)]
        pub port: Option<String>,

        /// address to listen on (default 0.0.0.0) [env: RELOADER_BIND]
        #[argh(option)]
        pub bind: Option<String>,

        /// bearer token required on /reload_metadata
        /// [env: RELOADER_AUTH_TOKEN, else the file named by
        /// RELOADER_AUTH_TOKEN_FILE]
        #[argh(option)]
        pub auth_token: Option<String>,

        /// check Hasura at start and every interval, reloading when
        /// inconsistent, e.g. 1m [env: RELOADER_WATCH_INTERVAL]
        #[argh(option)]
        pub watch_interval: Option<String>,
    }
}

/// Print the version and exit.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "version")]
pub struct VersionCommand {}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    fn parse(args: &[&str]) -> TopLevel {
        let args = normalize(&strings(args)).unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        TopLevel::from_args(&["hasura-metadata-reloader"], &args).unwrap()
    }

    #[test]
    fn equals_form_and_aliases_become_plain_options() {
        let args = strings(&[
            "reload",
            "--hasura-endpoint=http://h:8080",
            "--admin-secret",
            "s=1",
            "--endpoint=http://other",
            "--timeout=5s",
        ]);
        assert_eq!(
            normalize(&args).unwrap(),
            strings(&[
                "reload",
                "--hasura-endpoint",
                "http://h:8080",
                "--hasura-admin-secret",
                "s=1",
                "--hasura-endpoint",
                "http://other",
                "--timeout",
                "5s",
            ])
        );
    }

    #[test]
    fn a_value_that_looks_like_an_option_is_left_alone() {
        let args = strings(&["reload", "--hasura-admin-secret", "--x=y"]);
        assert_eq!(normalize(&args).unwrap(), args);
    }

    #[test]
    fn switches_take_true_or_false_after_an_equals_sign() {
        let on = strings(&["reload", "--if-inconsistent=true"]);
        let off = strings(&["reload", "--if-inconsistent=false"]);
        assert_eq!(
            normalize(&on).unwrap(),
            strings(&["reload", "--if-inconsistent"])
        );
        assert_eq!(normalize(&off).unwrap(), strings(&["reload"]));
        assert!(normalize(&strings(&["reload", "--if-inconsistent=maybe"])).is_err());
    }

    #[test]
    fn everything_after_a_double_dash_is_untouched() {
        let args = strings(&["reload", "--", "--endpoint=x"]);
        assert_eq!(normalize(&args).unwrap(), args);
    }

    #[test]
    fn the_original_tools_invocation_parses() {
        let parsed = parse(&[
            "reload",
            "--hasura-endpoint=http://hasura:8080",
            "--hasura-admin-secret",
            "secret",
            "--sentry-dsn",
            "http://key@sentry/1",
        ]);
        let Some(Command::Reload(reload)) = parsed.command else {
            panic!("expected reload, got {parsed:?}");
        };
        let common = reload.common();
        assert_eq!(
            common.hasura_endpoint.as_deref(),
            Some("http://hasura:8080")
        );
        assert_eq!(common.hasura_admin_secret.as_deref(), Some("secret"));
        assert_eq!(common.sentry_dsn.as_deref(), Some("http://key@sentry/1"));
        assert!(!reload.if_inconsistent);
    }

    #[test]
    fn server_options_belong_to_the_server_only() {
        let args = strings(&["check", "--port", "1"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert!(TopLevel::from_args(&["x"], &args).is_err());
        let parsed = parse(&["server", "--port=9000", "--watch-interval", "1m"]);
        let Some(Command::Server(server)) = parsed.command else {
            panic!("expected server, got {parsed:?}");
        };
        assert_eq!(server.port.as_deref(), Some("9000"));
        assert_eq!(server.watch_interval.as_deref(), Some("1m"));
    }

    #[test]
    fn every_option_that_takes_a_value_is_known_to_the_rewriting() {
        for command in ["reload", "check", "server"] {
            let help = TopLevel::from_args(&["x"], &[command, "--help"])
                .unwrap_err()
                .output;
            let usage = help.lines().next().unwrap();
            let options = usage.split('[').filter_map(|part| part.split_once(" <"));
            for (option, _) in options {
                assert!(VALUE_OPTIONS.contains(&option), "{command}: {option}");
            }
        }
    }

    #[test]
    fn version_flag_and_command_parse() {
        assert!(parse(&["--version"]).version);
        assert_eq!(
            parse(&["version"]).command,
            Some(Command::Version(VersionCommand {}))
        );
    }
}
