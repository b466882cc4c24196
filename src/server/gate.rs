//! The public socket, with a limit on open connections in front of the
//! internal tiny_http server.
//!
//! tiny_http 0.12 reads every connection on a thread of its own, with no
//! read timeout and no limit: a client that connects and sends nothing
//! holds a thread for as long as it likes. Measured on a bare tiny_http
//! server with four workers: 10 threads and 2.6 MB RSS at rest, 180
//! threads and 7 MB with 200 idle connections, 2006 threads and 52 MB
//! with 2000. When the process runs out of file descriptors, its accept
//! loop ends for good. It has no setting for any of this, and a read
//! timeout set on the listening socket would end that loop too (accept
//! times out the same way).
//!
//! So the public socket is ours. At most [`MAX_CONNECTIONS`] connections
//! are open at once, each on a thread of its own that must receive the
//! whole request head within [`HEAD_TIMEOUT`](super::relay::HEAD_TIMEOUT)
//! or answer 408 and close. When all are taken, a new connection takes
//! the place of the one that has waited longest for its head; when all
//! are waiting for answers, it waits for one to finish. Only a complete
//! head goes on to tiny_http, which listens on a private loopback port,
//! as a request without body (see [`relay`]).
//!
//! Idle and slow clients thus cost at most one small thread each, for a
//! bounded time, and cannot keep others out; tiny_http's own threads
//! exist only for requests already complete. That makes at most
//! [`MAX_CONNECTIONS`] of each over a dozen fixed threads. Measured on
//! this server (debug build): 12 threads and 9 MB at rest, 76 threads and
//! 10 MB with 200 or with 2000 idle connections, with `/healthz`
//! answered in a few milliseconds meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::relay;

/// Client connections open at once, idle ones included.
pub const MAX_CONNECTIONS: usize = 64;

/// How long the accept loop rests after an error such as running out of
/// file descriptors, which would otherwise repeat at once.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How long a closed idle connection may take to free its slot before
/// another one is closed.
const EVICTION_WAIT: Duration = Duration::from_millis(100);

/// The public listener's bookkeeping, shared with every connection.
pub struct Gate {
    local: SocketAddr,
    backend: SocketAddr,
    answer_timeout: Duration,
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    open: usize,
    /// Connections still waiting for their request head, oldest first,
    /// by slot number; the first makes room when all slots are taken.
    reading: BTreeMap<u64, TcpStream>,
    next_slot: u64,
    /// Connections whose request went to the internal server and whose
    /// answer is not delivered yet.
    answering: usize,
    closed: bool,
    /// The client behind each connection to the internal server, by the
    /// local port of that connection.
    peers: HashMap<u16, SocketAddr>,
}

impl Gate {
    /// Listens on `addr`; requests go to the internal server at `backend`,
    /// whose answer must start within `answer_timeout`.
    pub fn bind(
        addr: SocketAddr,
        backend: SocketAddr,
        answer_timeout: Duration,
    ) -> io::Result<(Arc<Gate>, TcpListener)> {
        let listener = TcpListener::bind(addr)?;
        let gate = Gate {
            local: listener.local_addr()?,
            backend,
            answer_timeout,
            state: Mutex::new(State {
                open: 0,
                reading: BTreeMap::new(),
                next_slot: 0,
                answering: 0,
                closed: false,
                peers: HashMap::new(),
            }),
            changed: Condvar::new(),
        };
        Ok((Arc::new(gate), listener))
    }

    /// The address listened on, with the actual port when bound to port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The internal server's address.
    pub fn backend(&self) -> SocketAddr {
        self.backend
    }

    /// How long the internal server may stay silent before a connection
    /// gives up on it and frees its slot.
    pub fn answer_timeout(&self) -> Duration {
        self.answer_timeout
    }

    /// Starts the accept loop, which owns the listener until closed.
    pub fn spawn(self: &Arc<Self>, listener: TcpListener) -> io::Result<JoinHandle<()>> {
        let gate = Arc::clone(self);
        thread::Builder::new()
            .name("accept".into())
            .spawn(move || accept_loop(&gate, listener))
    }

    /// Stops accepting: the listener is closed, connections waiting for a
    /// slot are refused by the kernel, and requests read from now on are
    /// answered 503.
    pub fn close(&self) {
        {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state.closed = true;
        }
        self.changed.notify_all();
        // The accept loop is blocked in accept(): one connection wakes it.
        let _ = TcpStream::connect_timeout(&reachable(self.local), Duration::from_secs(1));
    }

    /// Waits up to `timeout` for answers under way to reach their
    /// clients; true when none is left.
    pub fn wait_answered(&self, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| s.answering > 0)
            .unwrap_or_else(PoisonError::into_inner);
        state.answering == 0
    }

    /// The client behind a connection to the internal server, or that
    /// connection's own address when it did not come through the gate.
    pub fn peer(&self, remote: Option<&SocketAddr>) -> Option<SocketAddr> {
        let remote = remote?;
        let state = self.lock();
        Some(state.peers.get(&remote.port()).copied().unwrap_or(*remote))
    }

    /// Counts an answer under way; `None` once closed.
    pub fn begin_answer(&self) -> Option<Answering<'_>> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        state.answering += 1;
        Some(Answering {
            gate: self,
            port: None,
        })
    }

    /// Takes a connection slot for `client`. When all are taken, the
    /// connection that has waited longest for its head is closed to make
    /// room; when none is waiting for a head, this waits for a slot.
    /// `None` once closed.
    fn acquire(self: &Arc<Self>, client: &TcpStream) -> Option<Slot> {
        let mut state = self.lock();
        let mut evicted = false;
        while !state.closed && state.open >= MAX_CONNECTIONS {
            if !evicted && let Some((_, oldest)) = state.reading.pop_first() {
                // Its thread sees the end of the stream and frees the slot.
                let _ = oldest.shutdown(Shutdown::Both);
                log::debug!("Idle connection closed to make room.");
                evicted = true;
            }
            let (next, waited) = self
                .changed
                .wait_timeout(state, EVICTION_WAIT)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            // Its thread may have been past reading; make room again.
            evicted &= !waited.timed_out();
        }
        if state.closed {
            return None;
        }
        let number = state.next_slot;
        state.next_slot += 1;
        state.open += 1;
        if let Ok(clone) = client.try_clone() {
            state.reading.insert(number, clone);
        }
        Some(Slot {
            gate: Arc::clone(self),
            number,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn accept_loop(gate: &Arc<Gate>, listener: TcpListener) {
    loop {
        let (client, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(error) => {
                pause_after(&error);
                continue;
            }
        };
        // Also the end of the connection that `close` makes to wake us.
        let Some(slot) = gate.acquire(&client) else {
            return;
        };
        let spawned = thread::Builder::new()
            .name("connection".into())
            .spawn(move || relay::serve(&slot, client, peer));
        if let Err(error) = spawned {
            let error = error.to_string();
            log::warn!(error = error.as_str(); "Connection dropped.");
        }
    }
}

fn pause_after(error: &io::Error) {
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) {
        return;
    }
    let message = error.to_string();
    log::warn!(error = message.as_str(); "Connection not accepted.");
    thread::sleep(ACCEPT_PAUSE);
}

/// An address that reaches a listener bound to `local`: loopback when it
/// listens on every address.
fn reachable(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

/// One open client connection; frees its slot when dropped.
pub struct Slot {
    gate: Arc<Gate>,
    number: u64,
}

impl Slot {
    /// The gate the connection came through.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The head has arrived (or never will): the connection no longer
    /// gives way to new ones.
    pub fn head_read(&self) {
        self.gate.lock().reading.remove(&self.number);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.open -= 1;
        state.reading.remove(&self.number);
        drop(state);
        self.gate.changed.notify_all();
    }
}

/// An answer under way; done when dropped.
pub struct Answering<'a> {
    gate: &'a Gate,
    port: Option<u16>,
}

impl Answering<'_> {
    /// Records the client behind the connection to the internal server
    /// from local port `port`.
    pub fn register(&mut self, port: u16, peer: SocketAddr) {
        self.gate.lock().peers.insert(port, peer);
        self.port = Some(port);
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.answering -= 1;
        if let Some(port) = self.port {
            state.peers.remove(&port);
        }
        drop(state);
        self.gate.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> (Arc<Gate>, TcpListener) {
        let backend = SocketAddr::from(([127, 0, 0, 1], 9));
        Gate::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            backend,
            Duration::from_secs(5),
        )
        .unwrap()
    }

    /// A connected pair: the client side and the server side.
    fn connection(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (client, listener.accept().unwrap().0)
    }

    #[test]
    fn a_full_gate_closes_the_oldest_connection_still_reading() {
        let (gate, listener) = gate();
        let mut pairs = Vec::new();
        let mut slots = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let (client, server) = connection(&listener);
            slots.push(gate.acquire(&server).unwrap());
            pairs.push((client, server));
        }
        // The first has its head; the second is the oldest still reading.
        slots[0].head_read();
        let (_client, server) = connection(&listener);
        let waiting = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || gate.acquire(&server).map(|slot| slot.number))
        };
        let mut evicted = &pairs[1].1;
        let mut byte = [0; 1];
        assert_eq!(std::io::Read::read(&mut evicted, &mut byte).unwrap(), 0);
        assert!(!waiting.is_finished());
        drop(slots.remove(1));
        assert_eq!(waiting.join().unwrap(), Some(MAX_CONNECTIONS as u64));
        assert!(!gate.lock().reading.contains_key(&0));
    }

    #[test]
    fn connections_that_all_wait_for_answers_hold_their_slots() {
        let (gate, listener) = gate();
        let (_client, server) = connection(&listener);
        let slots: Vec<Slot> = (0..MAX_CONNECTIONS)
            .map(|_| gate.acquire(&server).unwrap())
            .collect();
        slots.iter().for_each(Slot::head_read);
        let waiting = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || gate.acquire(&server).is_some())
        };
        thread::sleep(Duration::from_millis(50));
        assert!(!waiting.is_finished());
        drop(slots);
        assert!(waiting.join().unwrap());
        assert_eq!(gate.lock().open, 0);
    }

    #[test]
    fn closing_releases_waiters_and_refuses_answers() {
        let (gate, listener) = gate();
        let accept = gate.spawn(listener).unwrap();
        let answering = gate.begin_answer().unwrap();
        gate.close();
        accept.join().unwrap();
        assert!(gate.begin_answer().is_none());
        assert!(!gate.wait_answered(Duration::from_millis(10)));
        drop(answering);
        assert!(gate.wait_answered(Duration::ZERO));
        let (_client, server) = connection(&TcpListener::bind("127.0.0.1:0").unwrap());
        assert!(gate.acquire(&server).is_none());
    }

    #[test]
    fn peers_are_found_by_the_internal_port() {
        let (gate, _listener) = gate();
        let client = SocketAddr::from(([192, 0, 2, 7], 40000));
        let internal = SocketAddr::from(([127, 0, 0, 1], 51000));
        let mut answering = gate.begin_answer().unwrap();
        answering.register(internal.port(), client);
        assert_eq!(gate.peer(Some(&internal)), Some(client));
        drop(answering);
        assert_eq!(gate.peer(Some(&internal)), Some(internal));
        assert_eq!(gate.peer(None), None);
    }

    #[test]
    fn a_listener_on_every_address_is_reached_on_loopback() {
        let any = SocketAddr::from(([0, 0, 0, 0], 8080));
        assert_eq!(reachable(any), SocketAddr::from(([127, 0, 0, 1], 8080)));
        let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 80));
        assert_eq!(reachable(any6).ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
}
