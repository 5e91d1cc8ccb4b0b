//! The connections `serve` holds open, and when each must go: at most `--max-connections`
//! at once, a request's head within `--header-timeout`, no more than `--idle-timeout`
//! between requests.
//!
//! A client that opens sockets and never finishes a request (or dribbles its headers a
//! byte at a time) must not lock real clients out. When a connection arrives at the cap,
//! the oldest connection that has not finished a single request is let go for it, then
//! the one idle longest; only when every connection is inside a request is the newcomer
//! turned away. Each connection's watchdog closes it at its deadline, which hyper's own
//! header timer cannot do apart from idleness (it starts on idle keep-alive connections).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// How long a connection may take, and how many may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// From a connection's opening (or the first byte of a next request) to the end of the
    /// request's head.
    pub header_timeout: Duration,
    /// Between the end of one answer and the first byte of the next request.
    pub idle_timeout: Duration,
    /// From a request's head to its answer, reading the body included.
    pub request_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// The open connections.
#[derive(Debug)]
pub struct Connections {
    max: usize,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    /// What connections' times count from.
    epoch: Instant,
    /// Connections let go for a newcomer at the cap.
    pub evicted: AtomicU64,
    /// Newcomers turned away because every connection was inside a request.
    pub refused: AtomicU64,
}

impl Connections {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Registers a new connection, letting another go if the table is full; `None` when
    /// every open connection is inside a request.
    pub fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut open = crate::stream::lock(&self.open);
        if open.len() >= self.max {
            let victim = open
                .values()
                .filter(|c| c.busy.load(Ordering::Acquire) == 0)
                .min_by_key(|c| c.eviction_order())
                .map(|c| c.id);
            match victim.and_then(|id| open.remove(&id)) {
                Some(victim) => {
                    victim.close.notify_one();
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection::new(id, self.epoch));
        open.insert(id, Arc::clone(&connection));
        Some(Admitted {
            connections: Arc::clone(self),
            connection,
        })
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        crate::stream::lock(&self.open).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection's place in the table, given up when dropped.
#[derive(Debug)]
pub struct Admitted {
    connections: Arc<Connections>,
    pub connection: Arc<Connection>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        crate::stream::lock(&self.connections.open).remove(&self.connection.id);
    }
}

/// What is known of one connection; times are milliseconds since the table's epoch.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    epoch: Instant,
    opened: u64,
    /// Requests inside the service now.
    busy: AtomicUsize,
    /// Requests answered.
    served: AtomicU64,
    /// When the connection last started waiting for a request: its opening, or the end of
    /// its last answer.
    waiting_since: AtomicU64,
    /// The first byte read since then, plus one (0: none yet).
    head_started: AtomicU64,
    /// Notified when the connection is let go for a newcomer.
    close: Notify,
}

impl Connection {
    fn new(id: u64, epoch: Instant) -> Self {
        let opened = epoch.elapsed().as_millis() as u64;
        Self {
            id,
            epoch,
            opened,
            busy: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            waiting_since: AtomicU64::new(opened),
            head_started: AtomicU64::new(0),
            close: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Connections that never finished a request go first, oldest first; then the one
    /// waiting longest for its next request.
    fn eviction_order(&self) -> (bool, u64) {
        let served = self.served.load(Ordering::Relaxed) > 0;
        (served, self.waiting_since.load(Ordering::Relaxed))
    }

    /// Marks a request as inside the service until the returned guard is dropped.
    pub fn begin_request(self: &Arc<Self>) -> InRequest {
        self.busy.fetch_add(1, Ordering::AcqRel);
        InRequest(Arc::clone(self))
    }

    fn read_some(&self) {
        if self.busy.load(Ordering::Acquire) == 0 && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started.store(self.now() + 1, Ordering::Relaxed);
        }
    }

    /// When the connection must close if it is still where it is now; `None` while a
    /// request is inside the service (the request timeout bounds that).
    fn deadline(&self, limits: &HttpLimits) -> Option<u64> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let header = limits.header_timeout.as_millis() as u64;
        let idle = limits.idle_timeout.as_millis() as u64;
        if self.served.load(Ordering::Relaxed) == 0 {
            return Some(self.opened + header);
        }
        Some(match self.head_started.load(Ordering::Relaxed) {
            0 => self.waiting_since.load(Ordering::Relaxed) + idle,
            started => started - 1 + header,
        })
    }

    /// Returns once the connection is past its deadline (or let go for a newcomer).
    pub async fn expired(&self, limits: &HttpLimits) {
        let check = limits
            .header_timeout
            .min(limits.idle_timeout)
            .min(Duration::from_secs(1));
        loop {
            let wait = match self.deadline(limits) {
                Some(deadline) if self.now() >= deadline => return,
                Some(deadline) => Duration::from_millis(deadline - self.now()).min(check),
                None => check,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.close.notified() => return,
            }
        }
    }
}

/// A request inside the service; ending it starts the wait for the next one.
pub struct InRequest(Arc<Connection>);

impl Drop for InRequest {
    fn drop(&mut self) {
        let connection = &self.0;
        connection.served.fetch_add(1, Ordering::Relaxed);
        connection
            .waiting_since
            .store(connection.now(), Ordering::Relaxed);
        connection.head_started.store(0, Ordering::Relaxed);
        connection.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's stream, noting when bytes of a request head arrive.
pub struct Watched<T> {
    inner: T,
    connection: Arc<Connection>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, connection: Arc<Connection>) -> Self {
        Self { inner, connection }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.connection.read_some();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_a_connection_without_a_finished_request_goes_first() {
        let connections = Arc::new(Connections::new(2));
        let answered = connections.admit().unwrap();
        drop(answered.connection.begin_request());
        let silent = connections.admit().unwrap();
        let newcomer = connections.admit().unwrap();
        assert_eq!(connections.len(), 2);
        assert_eq!(connections.evicted.load(Ordering::Relaxed), 1);
        let open = crate::stream::lock(&connections.open);
        assert!(open.contains_key(&answered.connection.id));
        assert!(!open.contains_key(&silent.connection.id));
        assert!(open.contains_key(&newcomer.connection.id));
    }

    #[test]
    fn when_every_connection_is_inside_a_request_the_newcomer_is_refused() {
        let connections = Arc::new(Connections::new(1));
        let busy = connections.admit().unwrap();
        let _request = busy.connection.begin_request();
        assert!(connections.admit().is_none());
        assert_eq!(connections.refused.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_deadline_is_the_header_timeout_until_a_request_then_the_idle_timeout() {
        let limits = HttpLimits {
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            ..HttpLimits::default()
        };
        let connections = Arc::new(Connections::new(4));
        let admitted = connections.admit().unwrap();
        let connection = &admitted.connection;
        assert_eq!(
            connection.deadline(&limits),
            Some(connection.opened + 2_000)
        );
        let request = connection.begin_request();
        assert_eq!(connection.deadline(&limits), None);
        drop(request);
        let idle_until = connection.deadline(&limits).unwrap();
        assert!(idle_until >= 60_000, "{idle_until}");
        connection.read_some();
        let head_until = connection.deadline(&limits).unwrap();
        assert!((2_000..60_000).contains(&head_until), "{head_until}");
    }
}
