//! HTTPS: connections on the API's port complete a TLS handshake (with `[serve]`'s
//! certificate and key, as the SQL listener) before any request is read. Handshakes run
//! side by side, each within [`HANDSHAKE_TIMEOUT`] and at most [`HANDSHAKING`] at once,
//! so a client that connects and stays silent holds up no one; a failed handshake closes
//! only its own connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use datafusion_postgres::pgwire::tokio::TlsAcceptor;
use datafusion_postgres::pgwire::tokio::tokio_rustls::server::TlsStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

/// The longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting to be served, at most.
const WAITING: usize = 64;

/// Handshakes under way at once, at most; connections past them are closed at once.
const HANDSHAKING: usize = 256;

/// A listener whose connections are TLS streams.
pub struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `listener` and hands out the connections that complete a handshake
    /// with `acceptor`.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (sender, handshaken) = mpsc::channel(WAITING);
        let handshaking = Arc::new(Semaphore::new(HANDSHAKING));
        let accepting = tokio::spawn(async move {
            loop {
                let (socket, address) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!("could not accept an HTTPS connection: {error}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(turn) = handshaking.clone().try_acquire_owned() else {
                    tracing::warn!(client = %address, "HTTPS connection refused: {HANDSHAKING} handshakes under way");
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await;
                    drop(turn);
                    match handshake {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((stream, address)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(client = %address, "TLS handshake failed: {error}");
                        }
                        Err(_) => {
                            tracing::debug!(client = %address, "TLS handshake timed out");
                        }
                    }
                });
            }
        });
        Ok(Self {
            handshaken,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            // The accepting task ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
