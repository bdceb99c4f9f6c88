//! A fault-injecting TCP proxy on a free loopback port (tokio).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A TCP proxy on a free loopback port in front of a target, for fault tests.
///
/// Connections are forwarded byte for byte until a fault is switched on:
/// [`stall`](TcpProxy::stall) (half-dead connections), [`cut_all`](TcpProxy::cut_all) (every
/// open connection closed now) and [`refuse`](TcpProxy::refuse) (new connections closed on
/// accept). It runs on the tokio runtime that called [`start`](TcpProxy::start); dropping the
/// proxy stops listening and closes its connections.
pub struct TcpProxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: JoinHandle<()>,
}

struct Shared {
    target: String,
    /// `true` while stalled; every pump waits for `false` before reading and before writing.
    stalled: watch::Sender<bool>,
    /// Bumped by `cut_all`; each connection closes when it sees a change.
    cuts: watch::Sender<u64>,
    refusing: AtomicBool,
    open: AtomicUsize,
}

impl TcpProxy {
    /// Starts a proxy to `target`: `"127.0.0.1:5984"`, or a URL such as
    /// `"http://127.0.0.1:5984"` (scheme and path are ignored).
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound. Outside a tokio runtime.
    pub async fn start(target: &str) -> TcpProxy {
        let target = authority(target);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("testkit: bind proxy port");
        let port = listener.local_addr().expect("testkit: proxy address").port();
        let shared = Arc::new(Shared {
            target,
            stalled: watch::channel(false).0,
            cuts: watch::channel(0).0,
            refusing: AtomicBool::new(false),
            open: AtomicUsize::new(0),
        });
        let acceptor = tokio::spawn(accept_loop(listener, shared.clone()));
        TcpProxy { port, shared, acceptor }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Keeps connections (open and new) open but stops forwarding bytes in both directions:
    /// a half-dead connection. Bytes already read are held and delivered after
    /// [`resume`](TcpProxy::resume).
    pub fn stall(&self) {
        self.shared.stalled.send_replace(true);
    }

    /// Forwards bytes again after [`stall`](TcpProxy::stall).
    pub fn resume(&self) {
        self.shared.stalled.send_replace(false);
    }

    /// Closes every open connection now. New connections are still accepted.
    pub fn cut_all(&self) {
        self.shared.cuts.send_modify(|n| *n += 1);
    }

    /// While `on`, new connections are accepted and immediately closed.
    pub fn refuse(&self, on: bool) {
        self.shared.refusing.store(on, Ordering::SeqCst);
    }

    /// How many client connections are open through the proxy right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut_all();
    }
}

impl std::fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpProxy")
            .field("url", &self.url())
            .field("target", &self.shared.target)
            .finish()
    }
}

fn authority(target: &str) -> String {
    let rest = target.split_once("://").map_or(target, |(_, rest)| rest);
    let rest = rest.split('/').next().unwrap_or(rest);
    rest.rsplit_once('@').map_or(rest, |(_, host)| host).to_string()
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // e.g. out of file descriptors: back off instead of spinning
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        if shared.refusing.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        // Subscribe now, so a cut_all() from before this accept does not close it.
        let cut = shared.cuts.subscribe();
        tokio::spawn(connection(client, shared.clone(), cut));
    }
}

async fn connection(client: TcpStream, shared: Arc<Shared>, mut cut: watch::Receiver<u64>) {
    shared.open.fetch_add(1, Ordering::SeqCst);
    let _open = OpenGuard(&shared.open);
    let server = tokio::select! {
        server = TcpStream::connect(&shared.target) => server,
        _ = cut.changed() => return,
    };
    let Ok(server) = server else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, shared.stalled.subscribe());
    let down = pump(server_read, client_write, shared.stalled.subscribe());
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cut.changed() => {}
    }
    // Dropping the halves here closes both sockets.
}

struct OpenGuard<'a>(&'a AtomicUsize);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut stalled: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn targets_accept_urls_and_authorities() {
        assert_eq!(authority("127.0.0.1:5984"), "127.0.0.1:5984");
        assert_eq!(authority("http://127.0.0.1:5984"), "127.0.0.1:5984");
        assert_eq!(authority("http://u:p@localhost:5984/x/"), "localhost:5984");
    }
}
