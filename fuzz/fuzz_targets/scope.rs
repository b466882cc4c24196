//! The value of `--reload-remote-schemas`, `--reload-sources` or
//! `--recreate-event-triggers`.

#![no_main]

use hasura_metadata_reloader::config::{Scope, parse_scope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &[u8]| {
    // A list never holds an empty name: Hasura would refuse it.
    if let Ok(Scope::Names(names)) = parse_scope(&String::from_utf8_lossy(value)) {
        assert!(!names.is_empty() && names.iter().all(|name| !name.is_empty()));
    }
});
