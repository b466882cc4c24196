//! A command line: arguments separated by NUL bytes, rewritten by
//! `cli::normalize`, then parsed by argh as the program does.

#![no_main]

use argh::FromArgs;
use hasura_metadata_reloader::cli::{TopLevel, normalize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let args: Vec<String> = text.split('\0').map(str::to_owned).collect();
    let Ok(args) = normalize(&args) else {
        return;
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _ = TopLevel::from_args(&["hasura-metadata-reloader"], &args);
});
