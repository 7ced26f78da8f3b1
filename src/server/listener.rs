//! The HTTP accept loop: hyper's connection builder driven directly (as `axum::serve` does),
//! plus what `axum::serve` cannot set: a header-read timeout, which in hyper also bounds how
//! long a kept-alive connection may sit idle before its next request, so a client that never
//! finishes its request head cannot hold a connection forever (hyper starts that clock at the
//! first byte, so a connection that sends nothing is closed here after the same time). Sets
//! `TCP_NODELAY`, caps open connections (past the cap a request gets 503 with `Retry-After`
//! instead of the process running out of file descriptors, where `accept` fails and clients
//! see resets), and shuts down gracefully (every connection finishes its request in flight).

use std::future::Future;
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Connections the kernel may hold for `accept` (tokio's default is 1024; the kernel caps it at
/// `net.core.somaxconn`). A burst of new connections past the queue is dropped at the SYN and
/// retried by the client's TCP after a second or more.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as `TcpListener::bind`).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// File descriptors kept for everything but client connections (model files, the engine's
/// pipes, gRPC, admin jobs, logs).
pub const RESERVED_FDS: u64 = 512;

/// Raises the soft open-file limit to the hard one (as Go's runtime and nginx do; the soft
/// default is often 1024) and returns the limit now in force.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Ok(hard);
    }
    Ok(soft)
}

/// Connections to allow when `--max-connections` is not set: the open-file limit less
/// [`RESERVED_FDS`], at least 64.
pub fn default_max_connections(open_file_limit: u64) -> usize {
    open_file_limit.saturating_sub(RESERVED_FDS).max(64) as usize
}

/// The cap on open client connections and its metrics.
pub struct ConnectionLimit {
    /// Most connections served at once.
    pub max: usize,
    /// Connections open now.
    pub open: IntGauge,
    /// Connections answered 503 because `max` were open.
    pub refused: IntCounter,
}

/// The answer to a connection past the cap: HTTP/1.1 503, OpenAI error JSON, `Retry-After`.
fn refusal() -> Vec<u8> {
    let body = r#"{"error":{"message":"too many open connections; retry shortly","type":"server_overloaded","param":null,"code":"too_many_connections"}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers `tcp` with [`refusal`] once its request head has arrived (an HTTP client treats an
/// answer before its request as a broken connection, so a connection whose head never comes
/// within `header_timeout` is closed unanswered, as any idle one), then lets the rest of the
/// request drain briefly before closing (closing with unread bytes would reset the connection
/// and could lose the answer).
async fn refuse(mut tcp: tokio::net::TcpStream, header_timeout: Duration) {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let head = async {
        while let Ok(n @ 1..) = tcp.read(&mut chunk).await {
            seen.extend_from_slice(&chunk[..n]);
            if seen.windows(4).any(|w| w == b"\r\n\r\n") || seen.len() > 64 * 1024 {
                return true;
            }
        }
        false
    };
    if !matches!(tokio::time::timeout(header_timeout, head).await, Ok(true)) {
        return;
    }
    let _ = tcp.write_all(&refusal()).await;
    let _ = tcp.shutdown().await;
    let drain = async { while matches!(tcp.read(&mut chunk).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

/// Decrements the open-connection gauge when its connection ends.
struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits for open connections.
/// A connection reaches hyper once its first bytes arrive (hyper's header timeout starts only
/// then): one that sends nothing within `header_read_timeout` is closed and frees its slot.
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    limit: ConnectionLimit,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    let (speaking_tx, mut speaking) = tokio::sync::mpsc::unbounded_channel();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let tcp = match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if limit.open.get() >= limit.max as i64 {
                    limit.refused.inc();
                    tokio::spawn(refuse(tcp, header_read_timeout));
                    continue;
                }
                limit.open.inc();
                let open = OpenConnection(limit.open.clone());
                // Blocks are small writes: without TCP_NODELAY, Nagle + delayed ACK hold each
                // one ~40 ms.
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!(error = %e, "TCP_NODELAY");
                }
                let speaking_tx = speaking_tx.clone();
                tokio::spawn(async move {
                    // `peek` waits for real bytes (or the close), not a readiness hint.
                    let mut byte = [0u8; 1];
                    let first_byte = tokio::time::timeout(header_read_timeout, tcp.peek(&mut byte));
                    if let Ok(Ok(_)) = first_byte.await {
                        let _ = speaking_tx.send((tcp, open));
                    }
                });
            }
            Some((tcp, open)) = speaking.recv() => {
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(router.clone()))
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _open = open;
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_default_to_the_file_limit_less_a_reserve() {
        assert_eq!(default_max_connections(20_000), 19_488);
        assert_eq!(default_max_connections(1024), 512);
        assert_eq!(default_max_connections(100), 64);
    }

    #[test]
    fn the_refusal_is_a_complete_503_with_retry_after_and_error_json() {
        let text = String::from_utf8(refusal()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("Retry-After: 1"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "too_many_connections");
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        use nix::sys::resource::{getrlimit, Resource};
        let limit = raise_open_file_limit().unwrap();
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (limit, limit));
    }
}
