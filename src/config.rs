//! Settings: each option from its flag, else its environment variables,
//! else its default, validated once into typed values.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ureq::http::Uri;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::cli::{self, CommonOptions, ServerCommand};
use crate::secret::Secret;

/// The longest wait between two attempts, however many retries.
pub const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(60);

/// More retries than this is a typing error, not a policy.
const MAX_RETRIES: u32 = 100;

/// An invalid or missing setting, named by its flag and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    option: &'static str,
    env: &'static str,
    /// `None` when the option is required and unset.
    reason: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            Some(reason) => write!(f, "invalid {} ({}): {reason}", self.option, self.env),
            None => write!(f, "missing {}: set it or {}", self.option, self.env),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Where environment variables come from: the process, or a map in tests.
pub trait Env {
    /// The variable's value; an empty value counts as unset.
    fn var(&self, name: &str) -> Option<String>;
}

/// The environment of this process.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }
}

/// Everything `reload`, `check` and `server` need to talk to Hasura and to
/// report.
#[derive(Debug, Clone)]
pub struct Config {
    pub hasura: HasuraSettings,
    pub retry: RetryPolicy,
    pub scopes: ReloadScopes,
    pub reports: ReportSettings,
    /// TLS roots shared by every HTTP client: Hasura, Sentry and Slack.
    pub tls: TlsConfig,
}

/// How to reach Hasura's metadata API.
#[derive(Debug, Clone)]
pub struct HasuraSettings {
    pub endpoint: Endpoint,
    pub admin_secret: Option<Secret>,
    pub timeout: Duration,
}

/// Attempts and the waits between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub retries: u32,
    pub interval: Duration,
}

impl RetryPolicy {
    /// All attempts, the first included.
    pub fn attempts(&self) -> u32 {
        self.retries + 1
    }

    /// The wait after failed attempt `attempt` (1-based): the interval,
    /// doubled for each earlier retry, at most [`MAX_RETRY_INTERVAL`].
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.interval
            .checked_mul(factor)
            .map_or(MAX_RETRY_INTERVAL, |wait| wait.min(MAX_RETRY_INTERVAL))
    }
}

/// What `reload_metadata` reloads and recreates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadScopes {
    pub remote_schemas: Scope,
    pub sources: Scope,
    pub recreate_event_triggers: Scope,
}

/// `all`, `none` or a list of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    None,
    Names(Vec<String>),
}

impl Scope {
    /// The JSON Hasura takes: `true`, `false` or an array of names.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Scope::All => true.into(),
            Scope::None => false.into(),
            Scope::Names(names) => names.clone().into(),
        }
    }
}

/// Where outcomes are reported; each is off when unset.
#[derive(Debug, Clone, Default)]
pub struct ReportSettings {
    pub sentry_dsn: Option<Secret>,
    pub sentry_env: Option<String>,
    pub sentry_monitor: Option<String>,
    pub slack_webhook_url: Option<Secret>,
}

/// The `server` command's own settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub bind: IpAddr,
    pub port: u16,
    pub auth_token: Option<Secret>,
    pub watch_interval: Option<Duration>,
}

/// Hasura's base URL, checked, with a form that is safe to print.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    metadata_url: String,
    display: String,
    host: String,
    /// The userinfo in every form it may be sent or logged.
    credentials: Vec<String>,
}

impl Endpoint {
    /// Parses `http(s)://host[:port][/prefix]`; a trailing slash is ignored.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let uri: Uri = text
            .trim()
            .parse()
            .map_err(|_| "not a URL; expected http(s)://host[:port][/path]".to_owned())?;
        let scheme = uri.scheme_str().unwrap_or_default();
        if scheme != "http" && scheme != "https" {
            return Err("the URL must start with http:// or https://".to_owned());
        }
        let authority = uri.authority().ok_or("the URL has no host")?;
        if authority.host().is_empty() {
            return Err("the URL has no host".to_owned());
        }
        if uri.query().is_some() {
            return Err("the URL must not have a query string".to_owned());
        }
        let credentials = match authority.as_str().rsplit_once('@') {
            Some((userinfo, _)) => userinfo_forms(userinfo),
            None => Vec::new(),
        };
        for credential in &credentials {
            crate::logging::redact(credential);
        }
        let prefix = uri.path().trim_end_matches('/');
        let port = authority
            .port()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        let display = format!("{scheme}://{}{port}{prefix}", authority.host());
        Ok(Endpoint {
            metadata_url: format!("{scheme}://{authority}{prefix}/v1/metadata"),
            display,
            host: authority.host().to_owned(),
            credentials,
        })
    }

    /// The URL's userinfo as written, its password alone, and the Basic
    /// credentials ureq derives from it; empty without userinfo.
    pub fn credentials(&self) -> &[String] {
        &self.credentials
    }

    /// `<base>/v1/metadata`, userinfo included when the URL had one.
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// The base URL without userinfo, for logs and reports.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The host alone, for grouping reports.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// The forms userinfo takes on the wire and in logs: as written, its
/// password alone, and as the Basic credentials ureq derives from it.
fn userinfo_forms(userinfo: &str) -> Vec<String> {
    use base64::Engine;

    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    vec![userinfo.to_owned(), password.to_owned(), basic]
}

/// One option: its flag, its variables in order, and how to name both in
/// an error.
struct Opt {
    flag: &'static str,
    vars: &'static [&'static str],
    named: &'static str,
}

impl Opt {
    /// The flag's value, else the first variable that is set.
    fn value(&self, flag: &Option<String>, env: &dyn Env) -> Option<String> {
        flag.clone()
            .filter(|value| !value.is_empty())
            .or_else(|| self.vars.iter().find_map(|name| env.var(name)))
    }

    fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            option: self.flag,
            env: self.named,
            reason: Some(reason.into()),
        }
    }

    fn missing(&self) -> ConfigError {
        ConfigError {
            option: self.flag,
            env: self.named,
            reason: None,
        }
    }

    /// Parses the value with `parse`, or returns `default` when unset.
    fn parse<T>(
        &self,
        flag: &Option<String>,
        env: &dyn Env,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.value(flag, env) {
            Some(value) => parse(&value).map_err(|reason| self.error(reason)),
            None => Ok(default),
        }
    }
}

const ENDPOINT: Opt = Opt {
    flag: "--hasura-endpoint",
    vars: &["HASURA_ENDPOINT", "HASURA_GRAPHQL_ENDPOINT"],
    named: "HASURA_ENDPOINT or HASURA_GRAPHQL_ENDPOINT",
};
const ADMIN_SECRET: Opt = Opt {
    flag: "--hasura-admin-secret",
    vars: &["HASURA_ADMIN_SECRET", "HASURA_GRAPHQL_ADMIN_SECRET"],
    named: "HASURA_ADMIN_SECRET, HASURA_GRAPHQL_ADMIN_SECRET or HASURA_ADMIN_SECRET_FILE",
};
const SENTRY_DSN: Opt = Opt {
    flag: "--sentry-dsn",
    vars: &["SENTRY_DSN"],
    named: "SENTRY_DSN",
};
const SENTRY_ENV: Opt = Opt {
    flag: "--sentry-env",
    vars: &["SENTRY_ENV", "SENTRY_ENVIRONMENT"],
    named: "SENTRY_ENV or SENTRY_ENVIRONMENT",
};
const SENTRY_MONITOR: Opt = Opt {
    flag: "--sentry-monitor",
    vars: &["SENTRY_MONITOR_SLUG"],
    named: "SENTRY_MONITOR_SLUG",
};
const SLACK: Opt = Opt {
    flag: "--slack-webhook-url",
    vars: &["SLACK_WEBHOOK_URL"],
    named: "SLACK_WEBHOOK_URL",
};
const TIMEOUT: Opt = Opt {
    flag: "--timeout",
    vars: &["RELOADER_TIMEOUT"],
    named: "RELOADER_TIMEOUT",
};
const RETRIES: Opt = Opt {
    flag: "--retries",
    vars: &["RELOADER_RETRIES"],
    named: "RELOADER_RETRIES",
};
const RETRY_INTERVAL: Opt = Opt {
    flag: "--retry-interval",
    vars: &["RELOADER_RETRY_INTERVAL"],
    named: "RELOADER_RETRY_INTERVAL",
};
const REMOTE_SCHEMAS: Opt = Opt {
    flag: "--reload-remote-schemas",
    vars: &["RELOADER_RELOAD_REMOTE_SCHEMAS"],
    named: "RELOADER_RELOAD_REMOTE_SCHEMAS",
};
const SOURCES: Opt = Opt {
    flag: "--reload-sources",
    vars: &["RELOADER_RELOAD_SOURCES"],
    named: "RELOADER_RELOAD_SOURCES",
};
const EVENT_TRIGGERS: Opt = Opt {
    flag: "--recreate-event-triggers",
    vars: &["RELOADER_RECREATE_EVENT_TRIGGERS"],
    named: "RELOADER_RECREATE_EVENT_TRIGGERS",
};
const CA_CERT: Opt = Opt {
    flag: "--ca-cert",
    vars: &["RELOADER_CA_CERT"],
    named: "RELOADER_CA_CERT",
};
const IF_INCONSISTENT: Opt = Opt {
    flag: "--if-inconsistent",
    vars: &["RELOADER_IF_INCONSISTENT"],
    named: "RELOADER_IF_INCONSISTENT",
};
const PORT: Opt = Opt {
    flag: "--port",
    vars: &["PORT"],
    named: "PORT",
};
const BIND: Opt = Opt {
    flag: "--bind",
    vars: &["RELOADER_BIND"],
    named: "RELOADER_BIND",
};
const AUTH_TOKEN: Opt = Opt {
    flag: "--auth-token",
    vars: &["RELOADER_AUTH_TOKEN"],
    named: "RELOADER_AUTH_TOKEN or RELOADER_AUTH_TOKEN_FILE",
};
const WATCH_INTERVAL: Opt = Opt {
    flag: "--watch-interval",
    vars: &["RELOADER_WATCH_INTERVAL"],
    named: "RELOADER_WATCH_INTERVAL",
};

impl Config {
    /// Resolves the common options against the environment.
    pub fn resolve(options: &CommonOptions, env: &dyn Env) -> Result<Config, ConfigError> {
        let endpoint = ENDPOINT
            .value(&options.hasura_endpoint, env)
            .ok_or_else(|| ENDPOINT.missing())?;
        let endpoint = Endpoint::parse(&endpoint).map_err(|r| ENDPOINT.error(r))?;
        let admin_secret = secret_or_file(
            &ADMIN_SECRET,
            &options.hasura_admin_secret,
            "HASURA_ADMIN_SECRET_FILE",
            env,
        )?;
        let hasura = HasuraSettings {
            endpoint,
            admin_secret,
            timeout: TIMEOUT.parse(
                &options.timeout,
                env,
                Duration::from_secs(60),
                positive_duration,
            )?,
        };
        Ok(Config {
            hasura,
            retry: RetryPolicy {
                retries: RETRIES.parse(&options.retries, env, 2, parse_retries)?,
                interval: RETRY_INTERVAL.parse(
                    &options.retry_interval,
                    env,
                    Duration::from_secs(5),
                    parse_duration,
                )?,
            },
            scopes: ReloadScopes {
                remote_schemas: scope(
                    &REMOTE_SCHEMAS,
                    &options.reload_remote_schemas,
                    env,
                    Scope::All,
                )?,
                sources: scope(&SOURCES, &options.reload_sources, env, Scope::All)?,
                recreate_event_triggers: scope(
                    &EVENT_TRIGGERS,
                    &options.recreate_event_triggers,
                    env,
                    Scope::None,
                )?,
            },
            reports: reports(options, env)?,
            tls: tls_config(&options.ca_cert, env)?,
        })
    }
}

/// `--if-inconsistent`: the switch, else its variable.
pub fn if_inconsistent(switch: bool, env: &dyn Env) -> Result<bool, ConfigError> {
    if switch {
        return Ok(true);
    }
    IF_INCONSISTENT.parse(&None, env, false, |value| {
        cli::parse_bool(value).ok_or_else(|| format!("expected true or false, got {value:?}"))
    })
}

impl ServerSettings {
    /// Resolves the `server` command's own options.
    pub fn resolve(options: &ServerCommand, env: &dyn Env) -> Result<ServerSettings, ConfigError> {
        let watch_interval = WATCH_INTERVAL
            .value(&options.watch_interval, env)
            .map(|value| positive_duration(&value).map_err(|r| WATCH_INTERVAL.error(r)))
            .transpose()?;
        Ok(ServerSettings {
            bind: BIND.parse(&options.bind, env, IpAddr::from([0, 0, 0, 0]), parse_ip)?,
            port: PORT.parse(&options.port, env, 8080, |value| {
                value
                    .trim()
                    .parse()
                    .map_err(|_| format!("expected a port number from 0 to 65535, got {value:?}"))
            })?,
            auth_token: secret_or_file(
                &AUTH_TOKEN,
                &options.auth_token,
                "RELOADER_AUTH_TOKEN_FILE",
                env,
            )?,
            watch_interval,
        })
    }
}

fn reports(options: &CommonOptions, env: &dyn Env) -> Result<ReportSettings, ConfigError> {
    let sentry_dsn = SENTRY_DSN.value(&options.sentry_dsn, env).map(Secret::new);
    let slack_webhook_url = SLACK
        .value(&options.slack_webhook_url, env)
        .map(|url| {
            let secret = Secret::new(url);
            match secret.expose().parse::<Uri>() {
                Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) => Ok(secret),
                _ => Err(SLACK.error("expected an http(s) URL")),
            }
        })
        .transpose()?;
    Ok(ReportSettings {
        sentry_dsn,
        sentry_env: SENTRY_ENV.value(&options.sentry_env, env),
        sentry_monitor: SENTRY_MONITOR.value(&options.sentry_monitor, env),
        slack_webhook_url,
    })
}

/// A secret from its flag or variables, else from the file a variable
/// names, with the trailing newline dropped.
fn secret_or_file(
    opt: &Opt,
    flag: &Option<String>,
    file_var: &'static str,
    env: &dyn Env,
) -> Result<Option<Secret>, ConfigError> {
    if let Some(value) = opt.value(flag, env) {
        return Ok(Some(Secret::new(value)));
    }
    let Some(path) = env.var(file_var) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| opt.error(format!("cannot read {file_var} file {path:?}: {e}")))?;
    let value = text.strip_suffix('\n').unwrap_or(&text);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(opt.error(format!("the {file_var} file {path:?} is empty")));
    }
    Ok(Some(Secret::new(value.to_owned())))
}

fn scope(
    opt: &Opt,
    flag: &Option<String>,
    env: &dyn Env,
    default: Scope,
) -> Result<Scope, ConfigError> {
    opt.parse(flag, env, default, parse_scope)
}

/// Parses `all`, `none` or a comma-separated list of names.
pub fn parse_scope(value: &str) -> Result<Scope, String> {
    match value.trim() {
        "all" => return Ok(Scope::All),
        "none" => return Ok(Scope::None),
        _ => {}
    }
    let names: Vec<String> = value
        .split(',')
        .map(|name| name.trim().to_owned())
        .collect();
    if names.iter().any(String::is_empty) {
        return Err(format!(
            "expected all, none or a comma-separated list of names, got {value:?}"
        ));
    }
    Ok(Scope::Names(names))
}

/// Parses `250ms`, `30s`, `5m`, `1h` (any humantime duration) or a bare
/// number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let parsed = if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        value.parse().map(Duration::from_secs).ok()
    } else {
        humantime::parse_duration(value).ok()
    };
    parsed.ok_or_else(|| {
        format!(
            "expected a duration such as 250ms, 30s, 5m, 1h or a number of seconds, got {value:?}"
        )
    })
}

fn positive_duration(value: &str) -> Result<Duration, String> {
    match parse_duration(value)? {
        Duration::ZERO => Err(format!("must be longer than zero, got {value:?}")),
        duration => Ok(duration),
    }
}

fn parse_retries(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(retries) if retries <= MAX_RETRIES => Ok(retries),
        _ => Err(format!(
            "expected a whole number from 0 to {MAX_RETRIES}, got {value:?}"
        )),
    }
}

fn parse_ip(value: &str) -> Result<IpAddr, String> {
    let value = value.trim();
    let bare = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value);
    match bare {
        "localhost" => Ok(IpAddr::from([127, 0, 0, 1])),
        _ => bare
            .parse()
            .map_err(|_| format!("expected an IP address such as 0.0.0.0 or ::, got {value:?}")),
    }
}

/// Built-in Mozilla roots, plus the certificates of `--ca-cert` if given.
fn tls_config(flag: &Option<String>, env: &dyn Env) -> Result<TlsConfig, ConfigError> {
    let Some(path) = CA_CERT.value(flag, env) else {
        return Ok(TlsConfig::default());
    };
    let pem =
        std::fs::read(&path).map_err(|e| CA_CERT.error(format!("cannot read {path:?}: {e}")))?;
    let mut roots: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()))
        .collect();
    let builtin = roots.len();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => roots.push(cert),
            Ok(_) => {}
            Err(e) => return Err(CA_CERT.error(format!("{path:?} is not valid PEM: {e}"))),
        }
    }
    if roots.len() == builtin {
        return Err(CA_CERT.error(format!("{path:?} holds no PEM certificate")));
    }
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    impl Env for HashMap<&str, &str> {
        fn var(&self, name: &str) -> Option<String> {
            self.get(name)
                .filter(|v| !v.is_empty())
                .map(|v| v.to_string())
        }
    }

    fn env(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    fn options(endpoint: Option<&str>) -> CommonOptions {
        CommonOptions {
            hasura_endpoint: endpoint.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_follow_the_contract() {
        let config = Config::resolve(&options(Some("http://hasura:8080")), &env(&[])).unwrap();
        assert_eq!(config.hasura.timeout, Duration::from_secs(60));
        assert_eq!(
            config.retry,
            RetryPolicy {
                retries: 2,
                interval: Duration::from_secs(5)
            }
        );
        assert_eq!(config.scopes.remote_schemas, Scope::All);
        assert_eq!(config.scopes.sources, Scope::All);
        assert_eq!(config.scopes.recreate_event_triggers, Scope::None);
        assert!(config.hasura.admin_secret.is_none());
        assert!(config.reports.sentry_dsn.is_none());
    }

    #[test]
    fn a_flag_beats_its_variable_which_beats_the_alias() {
        let vars = env(&[
            ("HASURA_ENDPOINT", "http://from-env"),
            ("HASURA_GRAPHQL_ENDPOINT", "http://from-alias"),
            ("RELOADER_TIMEOUT", "5s"),
        ]);
        let mut opts = options(Some("http://from-flag"));
        opts.timeout = Some("250ms".into());
        let config = Config::resolve(&opts, &vars).unwrap();
        assert_eq!(config.hasura.endpoint.display(), "http://from-flag");
        assert_eq!(config.hasura.timeout, Duration::from_millis(250));

        let config = Config::resolve(&options(None), &vars).unwrap();
        assert_eq!(config.hasura.endpoint.display(), "http://from-env");

        let vars = env(&[
            ("HASURA_ENDPOINT", ""),
            ("HASURA_GRAPHQL_ENDPOINT", "http://alias"),
        ]);
        let config = Config::resolve(&options(None), &vars).unwrap();
        assert_eq!(config.hasura.endpoint.display(), "http://alias");
    }

    #[test]
    fn a_missing_endpoint_names_its_flag_and_variables() {
        let error = Config::resolve(&options(None), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("--hasura-endpoint"), "{error}");
        assert!(error.contains("HASURA_ENDPOINT"), "{error}");
        assert!(!error.contains('\n'));
    }

    #[test]
    fn endpoints_keep_their_prefix_and_lose_a_trailing_slash() {
        let endpoint = Endpoint::parse("https://example.com/hasura/").unwrap();
        assert_eq!(
            endpoint.metadata_url(),
            "https://example.com/hasura/v1/metadata"
        );
        assert_eq!(endpoint.host(), "example.com");
        let endpoint = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(endpoint.metadata_url(), "http://127.0.0.1:8080/v1/metadata");
    }

    #[test]
    fn userinfo_never_shows_in_the_printable_endpoint() {
        let endpoint = Endpoint::parse("https://user:pa55word@example.com:8443/x").unwrap();
        assert_eq!(endpoint.display(), "https://example.com:8443/x");
        assert_eq!(format!("{endpoint:?}"), "https://example.com:8443/x");
    }

    #[test]
    fn bad_endpoints_are_refused() {
        for bad in [
            "hasura:8080",
            "ftp://host",
            "http://",
            "http://h/?a=1",
            "not a url",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_take_units_or_bare_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        for bad in [
            "",
            "abc",
            "-1s",
            "5 parsecs",
            "1.5.5s",
            "99999999999999999999999",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(positive_duration("0s").is_err());
    }

    #[test]
    fn scopes_take_all_none_or_names() {
        assert_eq!(parse_scope("all"), Ok(Scope::All));
        assert_eq!(parse_scope("none"), Ok(Scope::None));
        assert_eq!(
            parse_scope("a, b"),
            Ok(Scope::Names(vec!["a".to_owned(), "b".to_owned()]))
        );
        for bad in ["", ",", "a,,b", "a,"] {
            assert!(parse_scope(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Scope::Names(vec!["x".into()]).to_json(),
            serde_json::json!(["x"])
        );
        assert_eq!(Scope::All.to_json(), serde_json::json!(true));
        assert_eq!(Scope::None.to_json(), serde_json::json!(false));
    }

    #[test]
    fn invalid_values_name_the_option_and_variable() {
        let mut opts = options(Some("http://h"));
        opts.retries = Some("many".into());
        let error = Config::resolve(&opts, &env(&[])).unwrap_err().to_string();
        assert!(
            error.contains("--retries") && error.contains("RELOADER_RETRIES"),
            "{error}"
        );

        let vars = env(&[("RELOADER_RELOAD_SOURCES", "a,,b")]);
        let error = Config::resolve(&options(Some("http://h")), &vars)
            .unwrap_err()
            .to_string();
        assert!(error.contains("--reload-sources"), "{error}");
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let policy = RetryPolicy {
            retries: 10,
            interval: Duration::from_secs(5),
        };
        let waits: Vec<u64> = (1..=6).map(|a| policy.backoff(a).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        assert_eq!(policy.backoff(1000), MAX_RETRY_INTERVAL);
        assert_eq!(policy.attempts(), 11);
    }

    #[test]
    fn the_admin_secret_file_loses_its_trailing_newline() {
        let path = std::env::temp_dir().join(format!("hmr-secret-{}", std::process::id()));
        std::fs::write(&path, "from-file-secret\n").unwrap();
        let vars = HashMap::from([("HASURA_ADMIN_SECRET_FILE", path.to_str().unwrap())]);
        let config = Config::resolve(&options(Some("http://h")), &vars).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            config.hasura.admin_secret.unwrap().expose(),
            "from-file-secret"
        );
        assert!(
            !format!(
                "{:?}",
                Config::resolve(
                    &options(Some("http://h")),
                    &env(&[("HASURA_ADMIN_SECRET", "abcdef")])
                )
                .unwrap()
            )
            .contains("abcdef")
        );
    }

    #[test]
    fn server_settings_resolve_with_defaults() {
        let server = ServerSettings::resolve(&ServerCommand::default(), &env(&[])).unwrap();
        assert_eq!(server.port, 8080);
        assert_eq!(server.bind, IpAddr::from([0, 0, 0, 0]));
        assert!(server.watch_interval.is_none());
        let vars = env(&[("PORT", "9000"), ("RELOADER_WATCH_INTERVAL", "1m")]);
        let server = ServerSettings::resolve(&ServerCommand::default(), &vars).unwrap();
        assert_eq!(server.port, 9000);
        assert_eq!(server.watch_interval, Some(Duration::from_secs(60)));
        let vars = env(&[("PORT", "70000")]);
        let error = ServerSettings::resolve(&ServerCommand::default(), &vars).unwrap_err();
        assert!(error.to_string().contains("--port (PORT)"), "{error}");
    }
}
