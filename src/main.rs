use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    hasura_metadata_reloader::exit::code(hasura_metadata_reloader::run(&args))
}
