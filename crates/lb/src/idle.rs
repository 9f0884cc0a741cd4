//! Idle timeouts without a clock read per I/O: a stream wrapper counts successful reads and writes, and a
//! watchdog that wakes a few times per timeout declares the connection idle when the count stood still.
//!
//! So a connection is closed between `idle` and `1.25 × idle` after its last byte, and the hot path pays
//! one uncontended relaxed store per I/O call. What to do when idle is the caller's choice.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How many quiet checks in a row make a connection idle.
const QUIET_CHECKS: u32 = 4;

/// A stream that records that it is in use.
#[derive(Debug)]
pub(crate) struct Tracked<S> {
    inner: S,
    activity: Arc<AtomicU64>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S) -> (Tracked<S>, Arc<AtomicU64>) {
        let activity = Arc::new(AtomicU64::new(0));
        (Tracked { inner, activity: activity.clone() }, activity)
    }

    fn touch(&self) {
        // One task drives both directions of the stream, so a load + store is enough (no locked RMW).
        self.activity.store(self.activity.load(Relaxed).wrapping_add(1), Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() != before {
            self.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves once `activity` has not moved for `idle` (up to a quarter more); never when `idle` is None.
pub(crate) async fn idle_for(activity: &AtomicU64, idle: Option<Duration>) {
    let Some(idle) = idle.filter(|d| !d.is_zero()) else {
        return std::future::pending().await;
    };
    let step = idle / QUIET_CHECKS;
    let mut last = activity.load(Relaxed);
    let mut quiet = 0;
    loop {
        tokio::time::sleep(step).await;
        let now = activity.load(Relaxed);
        if now == last {
            quiet += 1;
            if quiet >= QUIET_CHECKS {
                return;
            }
        } else {
            quiet = 0;
            last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_fires_only_after_quiet() {
        let a = AtomicU64::new(0);
        let started = tokio::time::Instant::now();
        let busy = async {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                a.fetch_add(1, Relaxed);
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = idle_for(&a, Some(Duration::from_secs(1))) => {}
            _ = busy => unreachable!(),
        }
        // Busy until 3 s, then idle for 1–1.25 s.
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(4) && took <= Duration::from_millis(4250), "{took:?}");
    }
}
