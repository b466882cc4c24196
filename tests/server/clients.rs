//! Clients that send nothing, send slowly, crowd the server, or send
//! bodies it never needs.

use super::*;

use crate::support::Served;

/// Asserts that `/healthz` answers 200 within 5 s.
#[track_caller]
fn assert_health_is_prompt(server: &Served) {
    let started = Instant::now();
    assert_eq!(server.get("/healthz").status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "health took {:?}",
        started.elapsed()
    );
}

#[test]
fn idle_and_slow_clients_do_not_block_health() {
    let fake = FakeHasura::start();
    let server = serve(fake.url(), &[]);
    let mut idle = TcpStream::connect(server.addr()).unwrap();
    let slow = {
        let addr = server.addr();
        thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            for byte in b"GET /healthz HTTP/1.1\r\nHost: slow\r\n" {
                if stream.write_all(&[*byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
        })
    };

    assert_health_is_prompt(&server);
    assert!(
        !slow.is_finished(),
        "the slow client was done before health was answered"
    );
    idle.set_nonblocking(true).unwrap();
    let peeked = idle.peek(&mut [0; 1]).map_err(|e| e.kind());
    assert_eq!(
        peeked,
        Err(ErrorKind::WouldBlock),
        "the idle connection is still open"
    );

    // Once its head is overdue (10 s), the idle connection is told 408.
    idle.set_nonblocking(false).unwrap();
    idle.set_read_timeout(Some(WAIT)).unwrap();
    let reply = read_reply(&mut idle, WAIT).expect("an answer to the idle connection");
    assert_eq!(
        (reply.status, reply.json()),
        (408, json!({"error": "request timeout"}))
    );
    slow.join().unwrap();
}

#[test]
fn more_idle_connections_than_slots_neither_block_health_nor_add_threads() {
    let fake = FakeHasura::start();
    let server = serve(fake.url(), &[]);
    let crowd: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();

    assert_health_is_prompt(&server);
    assert_eq!(server.post("/reload_metadata").status, 200);
    let threads = server.status("Threads");
    // One thread per open connection, at most 64, over a dozen fixed ones
    // (workers, accept loops, signals, tiny_http's pool) and a few spare.
    assert!(threads <= 64 + 20, "{threads} threads for 200 connections");
    drop(crowd);
}

#[test]
fn a_large_body_is_ignored_and_the_answer_still_arrives() {
    let fake = FakeHasura::start();
    let server = serve(fake.url(), &[]);
    let body_size = 1024 * 1024;
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let head =
        format!("POST /reload_metadata HTTP/1.1\r\nHost: x\r\nContent-Length: {body_size}\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let started = Instant::now();
    let sender = thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        (0..body_size / chunk.len()).all(|_| writer.write_all(&chunk).is_ok())
    });

    let reply = read_reply(&mut stream, WAIT).expect("the answer");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let _ = sender.join();
    assert_eq!(fake.reload_count(), 1);
    assert_eq!(server.get("/healthz").status, 200);
}
