//! The value of `--timeout`, `--retry-interval` or `--watch-interval`.

#![no_main]

use hasura_metadata_reloader::config::parse_duration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &[u8]| {
    let _ = parse_duration(&String::from_utf8_lossy(value));
});
