//! A TCP proxy between clients and one broker node. It forwards bytes both ways and can
//! misbehave on command, the way Toxiproxy does: `down` (connections closed, nothing
//! accepted) and `blackhole` (bytes read and dropped, connections left open: only
//! heartbeats notice).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Buffer of one direction of one connection.
const BUFFER: usize = 16 * 1024;

/// A running proxy.
pub struct Proxy {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Where the proxy connects for each client.
    pub upstream: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    blackhole: watch::Sender<bool>,
    /// Cancelled to close every current connection and stop accepting (down).
    current: Mutex<CancellationToken>,
    /// The accept loop, awaited by `down` so the port is closed when it returns.
    accepting: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Proxy {
    /// Starts a proxy on `listen` (port 0 picks a free one) forwarding to `upstream`.
    ///
    /// # Errors
    /// The I/O error when `listen` cannot be bound.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let (blackhole, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            blackhole,
            current: Mutex::new(CancellationToken::new()),
            accepting: Mutex::new(None),
        });
        let token = shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let task = tokio::spawn(accept_loop(listener, upstream, shared.clone(), token));
        *shared.accepting.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(Self {
            listen,
            upstream,
            shared,
        })
    }

    /// Drops every byte both ways (`true`) or forwards again (`false`); connections stay open.
    pub fn set_blackhole(&self, on: bool) {
        self.shared.blackhole.send_replace(on);
    }

    /// Down: closes every connection and stops accepting, until [`Proxy::up`]. Returns
    /// once the port is closed.
    pub async fn down(&self) {
        self.shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cancel();
        let task = self
            .shared
            .accepting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Accepts connections again after [`Proxy::down`].
    ///
    /// # Errors
    /// The I/O error when the port cannot be bound again.
    pub async fn up(&self) -> std::io::Result<()> {
        let token = {
            let mut current = self
                .shared
                .current
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !current.is_cancelled() {
                return Ok(());
            }
            *current = CancellationToken::new();
            current.clone()
        };
        let listener = TcpListener::bind(self.listen).await?;
        let task = tokio::spawn(accept_loop(
            listener,
            self.upstream,
            self.shared.clone(),
            token,
        ));
        *self
            .shared
            .accepting
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    token: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = token.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((client, _)) = accepted else { continue };
        let shared = shared.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let up = pump(client_read, server_write, shared.blackhole.subscribe());
            let down = pump(server_read, client_write, shared.blackhole.subscribe());
            tokio::select! {
                () = token.cancelled() => {}
                _ = async { tokio::join!(up, down) } => {}
            }
        });
    }
}

/// Copies one direction until either side closes; drops the bytes while blackholed.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    blackhole: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; BUFFER];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if *blackhole.borrow() {
            continue;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(n) = socket.read(&mut buffer).await {
                        if n == 0 || socket.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        address
    }

    async fn round_trip(client: &mut TcpStream, text: &[u8]) -> Option<Vec<u8>> {
        client.write_all(text).await.ok()?;
        let mut buffer = vec![0u8; text.len()];
        tokio::time::timeout(
            std::time::Duration::from_millis(300),
            client.read_exact(&mut buffer),
        )
        .await
        .ok()?
        .ok()?;
        Some(buffer)
    }

    #[tokio::test]
    async fn forwards_blackholes_and_goes_down() {
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), echo_server().await)
            .await
            .unwrap();
        let mut client = TcpStream::connect(proxy.listen).await.unwrap();
        assert_eq!(
            round_trip(&mut client, b"hello").await.as_deref(),
            Some(&b"hello"[..])
        );
        proxy.set_blackhole(true);
        assert_eq!(
            round_trip(&mut client, b"lost").await,
            None,
            "blackholed bytes never arrive"
        );
        proxy.set_blackhole(false);
        assert_eq!(
            round_trip(&mut client, b"again").await.as_deref(),
            Some(&b"again"[..])
        );
        proxy.down().await;
        let mut buffer = [0u8; 1];
        assert!(
            matches!(client.read(&mut buffer).await, Ok(0) | Err(_)),
            "down closes connections"
        );
        assert!(
            TcpStream::connect(proxy.listen).await.is_err(),
            "down accepts nothing"
        );
        proxy.up().await.unwrap();
        let mut client = TcpStream::connect(proxy.listen).await.unwrap();
        assert_eq!(
            round_trip(&mut client, b"back").await.as_deref(),
            Some(&b"back"[..])
        );
    }
}
