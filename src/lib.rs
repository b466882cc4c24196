//! Reloads Hasura GraphQL Engine v2 metadata, checks what stays
//! inconsistent, and reports it to the log, Sentry and Slack.

pub mod cli;
pub mod config;
pub mod exit;
pub mod hasura;
pub mod logging;
pub mod redact;
pub mod reload;
pub mod report;
pub mod secret;
pub mod server;

mod app;

pub use app::run;
