//! Black-box tests of the `hasura-metadata-reloader` binary against fakes on
//! loopback.

// Running the binary and its server on port 0, the fake Hasura, a recording
// HTTP sink, certificates.
mod support;

// `reload`: the reload procedure, retries, failures and their log lines.
mod reload;

// `check`: one read-only `get_inconsistent_metadata`, and its report.
mod check;

// Options and environment variables, usage errors, `version` and `--help`.
mod cli;

// Sentry events, Crons check-ins and Slack messages as the sinks receive them.
mod report;

// Hasura failing mid-flight: resets, short bodies, endless bodies, redirects, bad gzip.
mod faults;

// `server` under hostile clients: malformed requests, huge heads and bodies, idle and slow connections.
mod abuse;

// No admin secret, userinfo, token, DSN key or Slack URL in any output, answer or report.
mod leaks;

// Proxies from the environment: HTTP_PROXY and NO_PROXY.
mod proxy;

// `server`: routes, single flight, token, metrics, watcher, slow clients, signals.
mod server;
