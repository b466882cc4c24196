//! From the command line to an exit code: parse, configure, run one
//! command, report.

use std::ffi::OsString;

use argh::FromArgs;

use crate::cli::{self, Command, TopLevel};
use crate::config::{self, Config, ConfigError, ProcessEnv, ServerSettings};
use crate::exit;
use crate::reload::{Outcome, Procedure};
use crate::report::Reporters;
use crate::{logging, server};

const PROGRAM: &str = "hasura-metadata-reloader";

/// Runs the program with its arguments (without the program name) and
/// returns the exit code.
pub fn run(args: &[OsString]) -> u8 {
    let command = match parse(args) {
        Ok(Some(command)) => command,
        Ok(None) => return exit::CONSISTENT,
        Err(message) => {
            eprintln!("error: {message}; see '{PROGRAM} --help'");
            return exit::USAGE;
        }
    };
    logging::init();
    install_panic_hook();
    match execute(command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            exit::USAGE
        }
    }
}

/// Parses the arguments; `Ok(None)` when help or the version was printed.
fn parse(args: &[OsString]) -> Result<Option<Command>, String> {
    let args: Vec<String> = args
        .iter()
        .map(|arg| {
            arg.clone()
                .into_string()
                .map_err(|_| "an argument is not valid UTF-8".to_owned())
        })
        .collect::<Result<_, _>>()?;
    let args = cli::normalize(&args)?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let top = match TopLevel::from_args(&[PROGRAM], &args) {
        Ok(top) => top,
        Err(early) if early.status.is_ok() => {
            print!("{}", early.output);
            return Ok(None);
        }
        Err(early) => return Err(early.output.trim().replace('\n', " ")),
    };
    match top.command {
        _ if top.version => print_version(),
        Some(Command::Version(_)) => print_version(),
        Some(command) => return Ok(Some(command)),
        None => {
            return Err("no command given; expected reload, check, server or version".to_owned());
        }
    }
    Ok(None)
}

fn print_version() {
    println!("{PROGRAM} {}", env!("CARGO_PKG_VERSION"));
}

/// Resolves the configuration and runs the command.
fn execute(command: Command) -> Result<u8, ConfigError> {
    let env = ProcessEnv;
    let common = match &command {
        Command::Reload(c) => c.common(),
        Command::Check(c) => c.common(),
        Command::Server(c) => c.common(),
        Command::Version(_) => unreachable!("handled while parsing"),
    };
    let config = Config::resolve(&common, &env)?;
    let run = match &command {
        Command::Reload(c) => Run::Reload {
            if_inconsistent: config::if_inconsistent(c.if_inconsistent, &env)?,
        },
        Command::Check(_) => Run::Check,
        Command::Server(c) => Run::Server(ServerSettings::resolve(c, &env)?),
        Command::Version(_) => unreachable!("handled while parsing"),
    };

    let procedure = Procedure::new(
        &config.hasura,
        &config.tls,
        config.scopes.clone(),
        config.retry,
    );
    let reporters = Reporters::start(&config.reports, &config.hasura.endpoint, &config.tls);
    let endpoint = config.hasura.endpoint.display();
    Ok(match run {
        Run::Server(settings) => server::run(procedure, reporters, settings),
        Run::Check => {
            log::info!(endpoint; "Checking metadata.");
            one_shot(&reporters, || procedure.check())
        }
        Run::Reload {
            if_inconsistent: true,
        } => {
            log::info!(endpoint, if_inconsistent = true; "Checking metadata before a reload.");
            one_shot(&reporters, || procedure.reload_if_inconsistent())
        }
        Run::Reload {
            if_inconsistent: false,
        } => {
            log::info!(endpoint; "Reloading metadata.");
            one_shot(&reporters, || procedure.reload())
        }
    })
}

/// What a command does, with its own settings resolved.
enum Run {
    Reload { if_inconsistent: bool },
    Check,
    Server(ServerSettings),
}

/// One run of `reload` or `check`: check-in, procedure, log, report,
/// flush, exit code.
fn one_shot(reporters: &Reporters, procedure: impl FnOnce() -> Outcome) -> u8 {
    reporters.run_started();
    let outcome = procedure();
    outcome.log();
    reporters.report(&outcome);
    reporters.run_finished(&outcome);
    reporters.flush();
    outcome.exit_code()
}

/// Panics are logged as one JSON line through the logger, which scrubs
/// secrets, instead of the default message on stderr.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        log::error!(error = payload.as_str(), location = location.as_str(); "Internal error.");
    }));
}
