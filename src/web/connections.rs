//! The open connections: when each last moved a byte and whether a response is under way,
//! so that idle ones close after a timeout and, at the cap, the least recently active idle
//! one makes room for a newcomer (serving goes on; nothing waits for a free descriptor).

use hyper::body::{Body, HttpBody, SizeHint};
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

pub struct Registry {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    /// Connections whose socket is still open, including those told to close.
    alive: AtomicUsize,
    /// Signalled each time a connection's socket is gone.
    ended: Notify,
    cap: usize,
    idle_timeout: Duration,
}

pub struct Connection {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last byte read or written.
    last_active: AtomicU64,
    /// Responses not yet fully written (an SSE stream is one for its whole life).
    in_flight: AtomicUsize,
    close: Notify,
}

/// A connection's place in the registry, given up when its task ends.
pub struct Admitted {
    registry: Arc<Registry>,
    id: u64,
    pub connection: Arc<Connection>,
}

impl Registry {
    pub fn new(cap: usize, idle_timeout: Duration) -> Arc<Registry> {
        Arc::new(Registry {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            alive: AtomicUsize::new(0),
            ended: Notify::new(),
            cap,
            idle_timeout,
        })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Makes room for one more connection under the cap: the least recently active one with
    /// no response under way is told to close, and its end awaited. False when every
    /// connection is busy: the newcomer is then refused.
    pub async fn make_room(&self) -> bool {
        while self.alive.load(Ordering::Relaxed) >= self.cap {
            if !close_least_active(&mut self.lock())
                && self.lock().len() >= self.alive.load(Ordering::Relaxed)
            {
                return false;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), self.ended.notified()).await;
        }
        true
    }

    /// Registers a new connection (after `make_room`).
    pub fn admit(self: &Arc<Self>) -> Admitted {
        let connection = Arc::new(Connection {
            epoch: self.epoch,
            last_active: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            close: Notify::new(),
        });
        connection.touch();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.alive.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, connection.clone());
        Admitted {
            registry: self.clone(),
            id,
            connection,
        }
    }

    /// Closes the least recently active connection with no response under way, if any.
    pub fn close_least_active(&self) {
        close_least_active(&mut self.lock());
    }

    /// Closes the connections that moved no byte for the idle timeout. One with a response
    /// under way counts too: a reader that stopped reading holds its descriptor for nothing.
    pub fn close_idle(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let limit = self.idle_timeout.as_millis() as u64;
        self.lock().retain(|_, c| {
            let idle = now.saturating_sub(c.last_active.load(Ordering::Relaxed)) > limit;
            if idle {
                c.close.notify_one();
            }
            !idle
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn close_least_active(open: &mut HashMap<u64, Arc<Connection>>) -> bool {
    let least_active = open
        .iter()
        .filter(|(_, c)| c.in_flight.load(Ordering::Relaxed) == 0)
        .min_by_key(|(_, c)| c.last_active.load(Ordering::Relaxed))
        .map(|(&id, _)| id);
    let Some(id) = least_active else {
        return false;
    };
    open.remove(&id).expect("listed").close.notify_one();
    true
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
        self.registry.alive.fetch_sub(1, Ordering::Relaxed);
        self.registry.ended.notify_one();
    }
}

impl Connection {
    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_active.store(now, Ordering::Relaxed);
    }

    /// Resolves once the registry wants this connection closed.
    pub async fn closing(&self) {
        self.close.notified().await;
    }

    /// Marks a request under way until the returned guard, or the response body it is
    /// moved into, is dropped (fully written, or the connection gone).
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }
}

pub struct Busy(Arc<Connection>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Busy {
    pub fn over(self, body: Body) -> Tracked {
        Tracked { body, _busy: self }
    }
}

/// A response body that keeps its connection marked busy while it exists.
pub struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_data(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Self::Data, Self::Error>>> {
        Pin::new(&mut self.body).poll_data(cx)
    }

    fn poll_trailers(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<hyper::HeaderMap>, Self::Error>> {
        Pin::new(&mut self.body).poll_trailers(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A socket that records each byte it moves as its connection's activity.
pub struct Metered<S> {
    pub socket: S,
    pub connection: Arc<Connection>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.socket).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.connection.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.socket).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.connection.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_the_cap_the_least_recently_active_idle_connection_goes() {
        let registry = Registry::new(2, Duration::from_secs(60));
        let streaming = registry.admit();
        let _busy = streaming.connection.busy();
        let idle = registry.admit();
        let idle_id = idle.id;
        // The idle one's task sees the request and ends, freeing its place.
        let closing = idle.connection.clone();
        let task = tokio::spawn(async move {
            closing.closing().await;
            drop(idle);
        });
        assert!(registry.make_room().await);
        task.await.unwrap();
        let newcomer = registry.admit();
        let open = registry.lock();
        assert!(open.contains_key(&streaming.id), "a busy one stays");
        assert!(!open.contains_key(&idle_id));
        assert!(open.contains_key(&newcomer.id));
    }

    #[tokio::test]
    async fn when_every_connection_is_busy_the_newcomer_is_refused() {
        let registry = Registry::new(1, Duration::from_secs(60));
        let busy = registry.admit();
        let _busy = busy.connection.busy();
        assert!(!registry.make_room().await);
    }
}
