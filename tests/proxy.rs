//! Proxies from the environment: `HTTP_PROXY` carries the request to
//! Hasura, and `NO_PROXY` exempts a host from it.

use crate::support::{Sink, reloader};

/// A host that cannot resolve, so only a proxy can reach it.
const UNRESOLVABLE: &str = "http://hasura.reloader-test.invalid:8080";

#[test]
fn http_proxy_from_the_environment_carries_the_request() {
    let proxy = Sink::start();

    let run = reloader(&["check", "--hasura-endpoint", UNRESOLVABLE, "--retries", "0"])
        .env("HTTP_PROXY", proxy.url())
        .run();

    // ureq tunnels through the proxy with CONNECT. The sink is no real
    // proxy, so the tunnel fails after it; what matters is the route taken.
    let requests = proxy.requests();
    assert!(!requests.is_empty(), "{}", run.dump());
    assert_eq!(requests[0].method, "CONNECT");
    assert_eq!(requests[0].path, "hasura.reloader-test.invalid:8080");
    run.expect_code(3);
}

#[test]
fn no_proxy_exempts_its_hosts() {
    let proxy = Sink::start();

    let run = reloader(&["check", "--hasura-endpoint", UNRESOLVABLE, "--retries", "0"])
        .env("HTTP_PROXY", proxy.url())
        .env("NO_PROXY", "localhost,.reloader-test.invalid")
        .run();

    run.expect_code(3);
    assert_eq!(run.failure()["kind"], "unreachable");
    assert!(proxy.requests().is_empty());
}
