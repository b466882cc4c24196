//! Start-up errors and their exit codes, and stopping on SIGTERM and
//! SIGINT, idle, during a reload, and as PID 1.

use super::*;

#[test]
fn sigterm_stops_an_idle_server_within_a_second() {
    let fake = FakeHasura::start();
    let mut server = serve(fake.url(), &[]);
    assert_eq!(server.get("/healthz").status, 200);
    let (code, took) = server.stop("TERM");
    assert_eq!(code, 0, "{}", server.dump());
    assert!(took <= IDLE_STOP, "stopping took {took:?}");
    assert_eq!(
        server.wait_for("Signal received, stopping.")["signal"],
        "SIGTERM"
    );
    server.wait_for(STOPPED);
    assert!(fake.requests().is_empty());
}

#[test]
fn sigint_stops_an_idle_server_too() {
    let fake = FakeHasura::start();
    let mut server = serve(fake.url(), &["--watch-interval", "1h"]);
    let (code, took) = server.stop("INT");
    assert_eq!(code, 0, "{}", server.dump());
    assert!(took <= IDLE_STOP, "stopping took {took:?}");
    server.wait_for(STOPPED);
}

#[test]
fn sigterm_during_a_reload_lets_it_finish_and_answer() {
    let fake = FakeHasura::builder()
        .delay(Duration::from_secs(3))
        .start()
        .unwrap();
    let mut server = serve(fake.url(), &[]);
    let addr = server.addr();
    let reload = thread::spawn(move || {
        exchange(
            addr,
            b"POST /reload_metadata HTTP/1.1\r\nHost: x\r\n\r\n",
            WAIT,
        )
    });
    eventually("the reload reached Hasura", || !fake.requests().is_empty());

    server.signal(server.pid(), "TERM");
    // New connections are refused while the reload still runs.
    eventually("the listener closed", || TcpStream::connect(addr).is_err());
    assert!(
        !reload.is_finished(),
        "the reload ended before the listener closed"
    );

    let reply = reload.join().unwrap().expect("the answer");
    assert_eq!(
        (reply.status, &reply.json()["is_consistent"]),
        (200, &json!(true)),
        "{reply:?}"
    );
    assert_eq!(server.wait_exit(WAIT), Some(0), "{}", server.dump());
    let messages: Vec<Value> = server
        .logs()
        .into_iter()
        .map(|l| l["message"].clone())
        .collect();
    let at = |message: &str| messages.iter().position(|m| m == message).unwrap();
    assert!(at(CONSISTENT) < at(STOPPED), "{}", server.dump());
    assert_eq!(fake.reload_count(), 1);
}

#[test]
fn sigterm_reaches_the_server_as_pid_1() {
    let fake = FakeHasura::start();
    let mut unshare = Command::new("unshare");
    unshare.args(["--pid", "--fork", "--mount-proc", BIN]);
    let mut server = match serve_with(unshare, fake.url(), &[], &[]) {
        Ok(server) => server,
        Err(output) => {
            eprintln!(
                "skipped: cannot run the server as PID 1 in a new PID namespace here\n{output}"
            );
            return;
        }
    };
    let inner = children(server.pid());
    assert_eq!(inner.len(), 1, "unshare's children: {inner:?}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", inner[0])).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(nspid.ends_with("\t1"), "not PID 1 inside: {nspid}");

    let started = Instant::now();
    server.signal(inner[0], "TERM");
    let code = server.wait_exit(WAIT);
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{}", server.dump());
    assert!(took <= IDLE_STOP, "stopping as PID 1 took {took:?}");
    server.wait_for(STOPPED);
}

#[test]
fn a_port_in_use_is_one_error_line_and_exit_3() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let run = reloader(&[
        "server",
        "--hasura-endpoint",
        "http://127.0.0.1:9",
        "--bind",
        "127.0.0.1",
        "--port",
        &port,
    ])
    .run();
    run.expect_code(3);
    let logs = run.logs();
    assert_eq!(logs.len(), 1, "{}", run.dump());
    assert_eq!(logs[0]["message"], "Server could not listen.");
    assert_eq!(logs[0]["level"], "error");
    assert_eq!(logs[0]["port"].to_string(), port);
}

#[test]
fn an_address_this_host_lacks_is_a_configuration_error() {
    let nonlocal =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind").unwrap_or_default();
    if nonlocal.trim() == "1" {
        eprintln!("skipped: this host lets any address be bound (ip_nonlocal_bind=1)");
        return;
    }
    // 192.0.2.0/24 is reserved for documentation: no host has it.
    let run = reloader(&[
        "server",
        "--hasura-endpoint",
        "http://127.0.0.1:9",
        "--bind",
        "192.0.2.1",
        "--port",
        "0",
    ])
    .run();
    run.expect_code(2);
    let logs = run.logs();
    assert_eq!(logs.len(), 1, "{}", run.dump());
    assert_eq!(logs[0]["message"], "Server could not listen.");
    assert_eq!(logs[0]["bind"], "192.0.2.1");
}
