//! Black-box tests of the `hasura-metadata-reloader` binary against fakes on
//! loopback.

// Running the binary, the fake Hasura, a recording HTTP sink, certificates.
mod support;

// `reload`: the reload procedure, retries, failures and their log lines.
mod reload;

// `check`: one read-only `get_inconsistent_metadata`, and its report.
mod check;

// Options and environment variables, usage errors, `version` and `--help`.
mod cli;
