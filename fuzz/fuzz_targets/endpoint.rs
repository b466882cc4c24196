//! The value of `--hasura-endpoint`.

#![no_main]

use hasura_metadata_reloader::config::Endpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &[u8]| {
    let Ok(endpoint) = Endpoint::parse(&String::from_utf8_lossy(value)) else {
        return;
    };
    assert!(endpoint.metadata_url().ends_with("/v1/metadata"));
    // The printable form keeps no userinfo: nothing before the host.
    let display = endpoint.display();
    let rest = display
        .strip_prefix("http://")
        .or_else(|| display.strip_prefix("https://"))
        .expect("an http(s) URL");
    let authority = rest.split('/').next().unwrap_or_default();
    assert!(!authority.contains('@'), "{display}");
});
