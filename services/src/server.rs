//! The accept loop: one task per connection, graceful shutdown on the caller's signal.
//!
//! [`run`] takes a bound listener and a shutdown future rather than an address and a signal
//! handler, so tests bind port 0 and stop a server by dropping a sender, and `main` wires the
//! real socket and SIGTERM.
//!
//! # What never reaches the API
//!
//! hyper answers a request head it cannot parse itself, before a `Request` exists, so these
//! answers are plain — a status line, `connection: close`, `content-length: 0`, no JSON body
//! and no `x-replica` — and the connection is closed:
//!
//! | answer | when |
//! |---|---|
//! | 431 | more than 100 header fields, or a head over 417,792 bytes (8 KiB + 100 × 4 KiB) |
//! | 414 | a request target over 65,534 bytes |
//! | 400 | a malformed request line or header field |
//!
//! These are hyper 1's defaults (`http1::Builder::max_headers`, `max_buf_size`; the target bound
//! is fixed). hyper writes the answer from its parser and offers no hook to shape it, and raising
//! its limits to check them in [`crate::App`] instead would only move the point where the
//! plain answer starts. They are kept: no client of this API comes near them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::App;
use crate::session::SessionStore;

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and gives
/// in-flight connections up to `grace` to finish: each is told to close once its request in
/// flight is answered (hyper's graceful shutdown of a connection). A connection upgraded to a
/// chat socket is hyper's no longer and is not waited for; the sockets close with the process.
pub async fn run<S: SessionStore>(
    listener: TcpListener,
    app: Arc<App<S>>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    // Every connection task holds a receiver: the signal tells them to finish, and the sender's
    // `closed` is when the last has.
    let (signal, watcher) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let service = service_fn(move |req| {
            let app = Arc::clone(&app);
            async move { Ok::<_, std::convert::Infallible>(app.handle(req).await) }
        });
        let conn = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut watcher = watcher.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = watcher.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(watcher);
        });
    }
    drop(listener);
    tracing::info!("shutting down; draining connections");
    drop(watcher);
    let _ = signal.send(());
    if tokio::time::timeout(grace, signal.closed()).await.is_err() {
        tracing::warn!(?grace, "grace period over; dropping remaining connections");
    }
}
