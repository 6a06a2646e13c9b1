//! The commit seam between a stream's runner and durability: the runner proposes ops (today
//! it applies them at once), asks the seam to commit what it proposed, and releases answers
//! and deliveries only for what is committed. [`Local`] is the single node's commit: the
//! store is the log and a commit is its `fdatasync` (group commit), which may run on another
//! thread while the runner applies the next batch (pipelined). The cluster's Raft group per
//! stream commits at a quorum's fsync instead, behind the same two calls; its entries are the
//! same ops (`stream::codec`).
//!
//! The watermark a commit returns is the last stream sequence it made durable: consumers
//! deliver nothing above it, and a segment is unlinked only once the removals that emptied
//! it are committed (`store::PendingSync`).

use prometheus_client::metrics::histogram::Histogram;
use std::sync::mpsc;

use super::stream::Stream;
use crate::store::{PendingSync, StoreError};

/// Makes what a stream applied committed.
pub(crate) trait Replication: Send {
    /// Starts committing everything applied so far. With `overlap` the wait may run on
    /// another thread while the caller applies more (which this commit does not cover).
    fn start(&mut self, stream: &mut Stream, overlap: bool) -> Result<Commit, StoreError>;

    /// Waits for a started commit; returns the last sequence it committed.
    fn finish(&mut self, stream: &mut Stream, commit: Commit) -> Result<u64, StoreError>;
}

/// A commit under way.
pub(crate) struct Commit {
    pending: PendingSync,
    /// The result of the wait running elsewhere, if it was sent away.
    away: Option<mpsc::Receiver<std::io::Result<()>>>,
    /// That result, once it came.
    came: Option<std::io::Result<()>>,
}

impl Commit {
    /// True if the wait runs on another thread (the caller may apply more meanwhile).
    pub fn is_away(&self) -> bool {
        self.away.is_some()
    }

    /// True once the wait sent away has returned ([`Replication::finish`] then waits no more).
    pub fn is_done(&mut self) -> bool {
        if self.came.is_none() {
            if let Some(rx) = &self.away {
                match rx.try_recv() {
                    Ok(r) => self.came = Some(r),
                    Err(mpsc::TryRecvError::Empty) => {}
                    Err(mpsc::TryRecvError::Disconnected) => self.came = Some(Err(lost())),
                }
            }
        }
        self.came.is_some() || self.away.is_none()
    }
}

fn lost() -> std::io::Error {
    std::io::Error::other("sync thread lost")
}

/// The single node's commit: the stream's own store, synced; each `fdatasync` is timed into
/// the server's latency histogram (`/metrics`).
pub(crate) struct Local {
    pub latency: Histogram,
}

impl Replication for Local {
    fn start(&mut self, stream: &mut Stream, overlap: bool) -> Result<Commit, StoreError> {
        let pending = stream.store.begin_sync()?;
        let away = (overlap && pending.needs_wait())
            .then(|| {
                let (wait, latency) = (pending.waiter(), self.latency.clone());
                send_away(move || timed(&latency, wait))
            })
            .flatten();
        Ok(Commit {
            pending,
            away,
            came: None,
        })
    }

    fn finish(&mut self, stream: &mut Stream, commit: Commit) -> Result<u64, StoreError> {
        let Commit {
            pending,
            away,
            came,
        } = commit;
        let synced = match (came, away) {
            (Some(r), _) => r,
            (None, Some(rx)) => rx.recv().unwrap_or_else(|_| Err(lost())),
            (None, None) if pending.needs_wait() => timed(&self.latency, || pending.wait()),
            (None, None) => pending.wait(),
        };
        stream.store.end_sync(pending, synced)
    }
}

/// Runs `wait`, recording how long it took in seconds.
fn timed(latency: &Histogram, wait: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
    let start = std::time::Instant::now();
    let r = wait();
    latency.observe(start.elapsed().as_secs_f64());
    r
}

/// Runs `wait` on the runtime's blocking pool (a plain thread without a runtime); `None`
/// if no thread could be had (the caller then waits itself).
fn send_away(
    wait: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> Option<mpsc::Receiver<std::io::Result<()>>> {
    let (tx, rx) = mpsc::sync_channel(1);
    let job = move || {
        let _ = tx.send(wait());
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn_blocking(job);
        }
        Err(_) => {
            std::thread::Builder::new()
                .name("causeway-sync".into())
                .spawn(job)
                .ok()?;
        }
    }
    Some(rx)
}
