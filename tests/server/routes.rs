//! Every route and status, outcomes as answers, single flight, the auth
//! token, and `/metrics`.

use super::*;

#[test]
fn every_route_answers_with_its_status_and_json() {
    let fake = FakeHasura::start();
    let server = serve(fake.url(), &[]);
    let running = server.wait_for(RUNNING);
    assert_eq!(running["level"], "info");
    assert_eq!(running["bind"], "127.0.0.1");
    assert_eq!(running["auth"], false);
    assert_eq!(running["watch_interval"], Value::Null);

    let health = server.get("/healthz");
    assert_eq!(
        (health.status, health.json()),
        (200, json!({"status": "ok"}))
    );
    assert_eq!(health.header("content-type"), Some("application/json"));
    assert_eq!(server.get("/healthz?probe=liveness").status, 200);
    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(
        fake.requests().is_empty(),
        "health and metrics called Hasura"
    );

    for (method, path) in [
        ("POST", "/healthz"),
        ("DELETE", "/healthz"),
        ("POST", "/metrics"),
        ("GET", "/"),
        ("GET", "/healthz/"),
        ("GET", "/reload"),
        ("GET", "/v1/metadata"),
    ] {
        let reply = server.request(method, path, &[], b"");
        assert_eq!(
            (reply.status, reply.json()),
            (404, json!({"error": "not found"})),
            "{method} {path}"
        );
        assert_eq!(reply.header("content-type"), Some("application/json"));
    }

    let get = server.get("/reload_metadata");
    let post = server.request(
        "POST",
        "/reload_metadata",
        &[("Content-Type", "application/json")],
        br#"{"x":1}"#,
    );
    for reply in [&get, &post] {
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert!(
            reply.body.starts_with(
                r#"{"is_consistent":true,"inconsistent_objects":[],"attempts":1,"duration_ms":"#
            ),
            "{reply:?}"
        );
        assert!(reply.json()["duration_ms"].is_u64());
    }
    assert_eq!(fake.reload_count(), 2);

    let requested = server.logs_with(REQUESTED);
    assert_eq!(requested.len(), 2, "{}", server.dump());
    assert_eq!(requested[0]["level"], "info");
    assert_eq!(requested[0]["method"], "GET");
    assert_eq!(requested[1]["method"], "POST");
    assert_eq!(
        requested[0]["remote"],
        get.local.to_string(),
        "the client, not the relay"
    );
    assert_eq!(server.logs_with(CONSISTENT).len(), 2);
}

#[test]
fn an_inconsistent_reload_answers_500_with_hasuras_objects() {
    let sample = objects::sample(3);
    let fake = FakeHasura::builder()
        .always_inconsistent()
        .objects(sample.clone())
        .start()
        .unwrap();
    let server = serve(fake.url(), &["--retries", "1"]);

    let reply = server.post("/reload_metadata");
    assert_eq!(reply.status, 500, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["is_consistent"], false);
    assert_eq!(body["inconsistent_objects"], Value::Array(sample));
    assert_eq!(body["attempts"], 2);
    assert_eq!(fake.reload_count(), 2);
    let logged = server.wait_for(INCONSISTENT);
    assert_eq!(logged["level"], "error");
}

#[test]
fn a_failed_reload_answers_502_with_error_and_kind_only() {
    let fake = FakeHasura::builder()
        .admin_secret("the-right-admin-secret")
        .start()
        .unwrap();
    let wrong = "a-wrong-admin-secret-42";
    let server = serve(fake.url(), &["--hasura-admin-secret", wrong]);
    let reply = server.post("/reload_metadata");
    assert_eq!(reply.status, 502, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["kind"], "access_denied");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid x-hasura-admin-secret"))
    );
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    assert!(!reply.body.contains(wrong) && !reply.body.contains("the-right-admin-secret"));
    assert_eq!(server.wait_for(FAILED)["kind"], "access_denied");

    let server = serve(&refused_url(), &["--retries", "0"]);
    let reply = server.post("/reload_metadata");
    assert_eq!(
        (reply.status, &reply.json()["kind"]),
        (502, &json!("unreachable")),
        "{reply:?}"
    );
}

#[test]
fn fifty_concurrent_requests_share_at_most_two_reloads() {
    let fake = FakeHasura::builder()
        .delay(Duration::from_secs(1))
        .start()
        .unwrap();
    let server = Arc::new(serve(fake.url(), &[]));
    let start = Arc::new(Barrier::new(50));
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let (server, start) = (Arc::clone(&server), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                server.post("/reload_metadata")
            })
        })
        .collect();
    let replies: Vec<Reply> = clients.into_iter().map(|c| c.join().unwrap()).collect();

    assert_eq!(replies.len(), 50);
    for reply in &replies {
        assert_eq!(
            (reply.status, &reply.json()["is_consistent"]),
            (200, &json!(true)),
            "{reply:?}"
        );
    }
    let reloads = fake.reload_count();
    assert!(
        (1..=2).contains(&reloads),
        "{reloads} reloads for 50 requests"
    );
    // Each run is logged once, not once per caller.
    assert_eq!(
        server.logs_with(CONSISTENT).len(),
        reloads,
        "{}",
        server.dump()
    );
    assert_eq!(server.logs_with(REQUESTED).len(), 50);
}

#[test]
fn health_and_metrics_answer_while_a_reload_runs() {
    let fake = FakeHasura::builder()
        .delay(Duration::from_secs(5))
        .start()
        .unwrap();
    let server = Arc::new(serve(fake.url(), &[]));
    let reload = {
        let server = Arc::clone(&server);
        thread::spawn(move || server.post("/reload_metadata"))
    };
    eventually("the reload reached Hasura", || !fake.requests().is_empty());

    assert_eq!(server.get("/healthz").status, 200);
    let in_flight = server.metric(r#"hasura_metadata_reloads_total{outcome="consistent"}"#);
    assert!(
        !reload.is_finished(),
        "the reload ended before health was answered"
    );
    assert_eq!(in_flight, "0");
    assert_eq!(reload.join().unwrap().status, 200);
}

#[test]
fn the_token_guards_the_reload_route_only() {
    let token = "tok-0123456789abcdef";
    let fake = FakeHasura::start();
    let env = [("RELOADER_AUTH_TOKEN", token)];
    let server = serve_with(Command::new(BIN), fake.url(), &[], &env).unwrap();
    assert_eq!(server.wait_for(RUNNING)["auth"], true);

    let refused = [
        None,
        Some("Bearer wrong-token".to_owned()),
        Some(format!("Basic {token}")),
        Some(format!("Bearer {token}x")),
        Some(token.to_owned()),
    ];
    for authorization in &refused {
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|v| ("Authorization", v.as_str()))
            .collect();
        let reply = server.request("POST", "/reload_metadata", &headers, b"");
        assert_eq!(
            (reply.status, reply.json()),
            (401, json!({"error": "unauthorized"})),
            "{authorization:?}"
        );
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    }
    for scheme in ["Bearer", "bearer"] {
        let value = format!("{scheme} {token}");
        let reply = server.request("GET", "/reload_metadata", &[("Authorization", &value)], b"");
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/metrics").status, 200);
    assert_eq!(fake.reload_count(), 2);

    let refusals = server.logs_with("Reload refused, unauthorized.");
    assert_eq!(refusals.len(), refused.len());
    assert_eq!(refusals[0]["level"], "warn");
    assert!(!server.output().contains(token), "{}", server.dump());
}

#[test]
fn metrics_count_reloads_by_outcome_and_keep_the_last_state() {
    let fake = FakeHasura::builder()
        .inconsistent_reloads(1)
        .start()
        .unwrap();
    let server = serve(fake.url(), &["--retries", "0"]);
    let total = |outcome: &str| {
        server.metric(&format!(
            "hasura_metadata_reloads_total{{outcome=\"{outcome}\"}}"
        ))
    };

    let body = server.get("/metrics").body;
    for (name, kind) in [
        ("hasura_metadata_reloads_total", "counter"),
        ("hasura_metadata_consistent", "gauge"),
        ("hasura_metadata_inconsistent_objects", "gauge"),
        ("hasura_metadata_last_reload_timestamp_seconds", "gauge"),
        ("hasura_metadata_reload_duration_seconds", "gauge"),
    ] {
        assert!(body.contains(&format!("# TYPE {name} {kind}\n")), "{body}");
        assert!(body.contains(&format!("# HELP {name} ")), "{body}");
    }
    assert_eq!(
        [total("consistent"), total("inconsistent"), total("failed")],
        ["0", "0", "0"]
    );
    assert_eq!(server.metric("hasura_metadata_consistent"), "NaN");

    assert_eq!(server.post("/reload_metadata").status, 500);
    assert_eq!(total("inconsistent"), "1");
    assert_eq!(server.metric("hasura_metadata_consistent"), "0");
    assert_eq!(server.metric("hasura_metadata_inconsistent_objects"), "2");
    let ended: f64 = server
        .metric("hasura_metadata_last_reload_timestamp_seconds")
        .parse()
        .unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 60.0..=now + 1.0).contains(&ended),
        "{ended} vs {now}"
    );
    let took: f64 = server
        .metric("hasura_metadata_reload_duration_seconds")
        .parse()
        .unwrap();
    assert!((0.0..60.0).contains(&took), "{took}");

    assert_eq!(server.post("/reload_metadata").status, 200);
    assert_eq!(
        [total("consistent"), total("inconsistent"), total("failed")],
        ["1", "1", "0"]
    );
    assert_eq!(server.metric("hasura_metadata_consistent"), "1");
    assert_eq!(server.metric("hasura_metadata_inconsistent_objects"), "0");
    assert_eq!(server.wait_for(RECOVERED)["level"], "info");

    let server = serve(&refused_url(), &["--retries", "0"]);
    assert_eq!(server.post("/reload_metadata").status, 502);
    assert_eq!(
        server.metric(r#"hasura_metadata_reloads_total{outcome="failed"}"#),
        "1"
    );
    assert_eq!(server.metric("hasura_metadata_consistent"), "0");
    assert_eq!(server.metric("hasura_metadata_inconsistent_objects"), "NaN");
}
