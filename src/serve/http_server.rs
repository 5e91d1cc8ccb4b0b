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
use tokio::sync::watch;
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
