//! The HTTP/1.1 server under `serve`'s router: accepts connections within the
//! [`HttpLimits`], answers each on hyper, and on shutdown lets the requests in flight
//! finish.
//!
//! `axum::serve` sets no timer, so a client could hold a socket for ever; here each
//! connection has a watchdog ([`Connection::expired`]) and the table of [`Connections`]
//! keeps the count under the cap without locking real clients out.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;
use tower::Service;

use super::connections::{Connection, Connections, HttpLimits, Watched};

/// Answers connections on `listener` with `router` (over TLS with `tls`) until `shutdown`
/// resolves, then waits (up to the request timeout) for the requests in flight.
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    connections: Arc<Connections>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors, or a connection reset before it was taken: the
                // listener itself is fine; try again shortly.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = connections.admit() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stopping = stopping.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let connection = Arc::clone(&admitted.connection);
            let io = Watched::new(stream, Arc::clone(&connection));
            match tls {
                None => answer(io, router, limits, &connection, stopping).await,
                // A handshake is part of the first request's head: it gets the header timeout.
                Some(tls) => {
                    let handshake = tokio::time::timeout(limits.header_timeout, tls.accept(io));
                    if let Ok(Ok(io)) = handshake.await {
                        answer(io, router, limits, &connection, stopping).await;
                    }
                }
            }
            drop(admitted);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = async {
        while !connections.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let _ = tokio::time::timeout(limits.request_timeout, drained).await;
    Ok(())
}

/// Serves one connection until the client closes it, its watchdog fires, or the server
/// stops (then after the request in flight).
async fn answer<T>(
    io: T,
    router: Router,
    limits: HttpLimits,
    connection: &Arc<Connection>,
    mut stopping: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let in_service = Arc::clone(connection);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let request_guard = in_service.begin_request();
        let answered = router.clone().call(request.map(Body::new));
        async move {
            let response = answered.await;
            drop(request_guard);
            Ok::<_, Infallible>(match response {
                Ok(response) => response,
                Err(never) => match never {},
            })
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // The watchdog times the heads: hyper's header timer would also close idle
        // keep-alive connections at the header timeout.
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    tokio::select! {
        _ = served.as_mut() => return,
        () = connection.expired(&limits) => return,
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    served.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.request_timeout, served).await;
}

/// Answers `router`'s requests on a thread of its own with a single-threaded runtime until
/// `shutdown` is notified. Requests are short and many: one thread that never hands a
/// connection to another answers them with less overhead and a steadier tail than the
/// work-stealing runtime the pipeline runs on, which keeps the other core.
pub async fn serve_on_own_thread(
    listener: std::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    shutdown: Arc<Notify>,
) -> std::io::Result<()> {
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("profusion-http".into())
        .spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| {
                    runtime.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        let connections = Arc::new(Connections::new(limits.max_connections));
                        serve_connections(listener, router, limits, tls, connections, async move {
                            shutdown.notified().await
                        })
                        .await
                    })
                });
            let _ = done.send(served);
        })?;
    finished
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("the HTTP thread ended early")))
}
