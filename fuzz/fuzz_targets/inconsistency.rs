//! A `get_inconsistent_metadata` answer body, as any server could send it.

#![no_main]

use hasura_metadata_reloader::hasura::{Verdict, parse_inconsistency};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    // Never an inconsistency that Hasura did not state.
    if let Ok(Verdict::Inconsistent(objects)) = parse_inconsistency(body) {
        assert!(!objects.is_empty());
    }
});
