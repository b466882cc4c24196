//! HTTPS in front of the plain fake: rustls 0.23 ends TLS and relays the
//! bytes to the fake over loopback, one thread per connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// How long a relay waits on one side before looking at the other.
const POLL: Duration = Duration::from_millis(5);

/// A TLS server configuration from a PEM certificate chain and key.
pub fn server_config(cert_pem: &str, key_pem: &str) -> io::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(io::Error::other)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(io::Error::other)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(io::Error::other)?;
    Ok(Arc::new(config))
}

/// The listening TLS side; stops accepting when dropped.
pub struct Front {
    pub addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Front {
    pub fn start(
        bind: SocketAddr,
        backend: SocketAddr,
        config: Arc<ServerConfig>,
    ) -> io::Result<Front> {
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let accept = thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let config = Arc::clone(&config);
                thread::spawn(move || relay(client, backend, config));
            }
        });
        Ok(Front {
            addr,
            stopping,
            accept: Some(accept),
        })
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Relays one connection until either side closes or fails.
fn relay(client: TcpStream, backend: SocketAddr, config: Arc<ServerConfig>) -> io::Result<()> {
    let mut plain = TcpStream::connect(backend)?;
    // Short read timeouts let one thread serve both directions.
    client.set_read_timeout(Some(POLL))?;
    plain.set_read_timeout(Some(POLL))?;
    let connection = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(connection, client);
    let mut buf = vec![0; 16 * 1024];
    while pump(&mut tls, &mut plain, &mut buf)? && pump(&mut plain, &mut tls, &mut buf)? {}
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Ok(())
}

/// Copies what is ready from one side to the other; false once closed.
fn pump(from: &mut impl Read, to: &mut impl Write, buf: &mut [u8]) -> io::Result<bool> {
    match from.read(buf) {
        Ok(0) => Ok(false),
        Ok(n) => to
            .write_all(&buf[..n])
            .and_then(|()| to.flush())
            .map(|()| true),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
        Err(e) => Err(e),
    }
}
