//! A `reload_metadata` answer body, as any server could send it.

#![no_main]

use hasura_metadata_reloader::hasura::{ReloadAnswer, Verdict, parse_reload_answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    // Never an inconsistency that Hasura did not state.
    if let Ok(ReloadAnswer::Verdict(Verdict::Inconsistent(objects))) = parse_reload_answer(body) {
        assert!(!objects.is_empty());
    }
});
