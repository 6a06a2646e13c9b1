//! The measured runs: publish/subscribe throughput (1:1, fan-out, queue
//! group) and sequential request/reply latency.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};

use crate::proto::{Closed, Conn, Frame};

/// Target size of one publisher write.
const BATCH_BYTES: usize = 64 * 1024;

/// Parameters of one publish/subscribe run.
pub struct PubSubSpec {
    pub subject: String,
    /// Number of subscriber connections.
    pub subs: usize,
    /// Subscribe in one queue group (each message goes to one member)
    /// instead of every subscriber receiving every message.
    pub queue: bool,
    /// Messages to publish.
    pub msgs: u64,
    pub payload: usize,
    /// Flow control: the publisher stays at most this many messages ahead of
    /// what the subscribers have received (0 = no limit).
    pub window: u64,
    pub timeout: Duration,
}

/// State shared between the publisher and the subscriber tasks.
struct Shared {
    /// Messages received so far, per subscriber.
    counts: Vec<AtomicU64>,
    /// Messages received so far, all subscribers together.
    total: AtomicU64,
    /// Signalled whenever subscribers make progress.
    progress: Notify,
    /// When the last expected message arrived.
    end: Mutex<Option<Instant>>,
    /// Set once the run is over (complete or failed) so every task stops.
    done: watch::Sender<bool>,
}

impl Shared {
    /// How many published messages every subscriber (or, for a queue group,
    /// the group as a whole) has received.
    fn delivered(&self, queue: bool) -> u64 {
        if queue {
            self.total.load(Relaxed)
        } else {
            self.counts
                .iter()
                .map(|c| c.load(Relaxed))
                .min()
                .unwrap_or(0)
        }
    }
}

/// Runs one publish/subscribe measurement and returns delivered msgs/s
/// (summed over all subscribers), timed from the first publish to the last
/// delivery.
pub async fn pubsub(addr: SocketAddr, spec: &PubSubSpec) -> Result<f64> {
    let deadline = Instant::now() + spec.timeout;
    let (subs, publisher) = timeout_at(deadline, setup_pubsub(addr, spec))
        .await
        .context("timed out connecting")??;
    let shared = Arc::new(Shared {
        counts: (0..spec.subs).map(|_| AtomicU64::new(0)).collect(),
        total: AtomicU64::new(0),
        progress: Notify::new(),
        end: Mutex::new(None),
        done: watch::Sender::new(false),
    });
    let mut tasks = JoinSet::new();
    for (idx, conn) in subs.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let (queue, msgs) = (spec.queue, spec.msgs);
        tasks.spawn(async move {
            let result = receive(conn, idx, queue, msgs, &shared, deadline).await;
            if result.is_err() {
                shared.done.send_replace(true);
            }
            result.with_context(|| format!("subscriber {idx}"))
        });
    }
    // Keep the publisher connection open until every subscriber is done.
    let (start, _publisher) = publish(publisher, spec, &shared, deadline)
        .await
        .context("publisher")?;
    while let Some(joined) = tasks.join_next().await {
        joined.context("subscriber task panicked")??;
    }
    let delivered = shared.total.load(Relaxed);
    let expected = if spec.queue {
        spec.msgs
    } else {
        spec.msgs * spec.subs as u64
    };
    if delivered != expected {
        bail!("delivered {delivered} messages, expected {expected}");
    }
    let end = shared.end.lock().unwrap().context("no end time")?;
    Ok(delivered as f64 / (end - start).as_secs_f64())
}

/// Connects the subscribers (registered and confirmed with PING/PONG) and
/// the publisher.
async fn setup_pubsub(addr: SocketAddr, spec: &PubSubSpec) -> Result<(Vec<Conn>, Conn)> {
    let mut subs = Vec::with_capacity(spec.subs);
    for _ in 0..spec.subs {
        let mut conn = Conn::connect(addr).await?;
        let sub = if spec.queue {
            format!("SUB {} workers 1\r\n", spec.subject)
        } else {
            format!("SUB {} 1\r\n", spec.subject)
        };
        conn.write_all(sub.as_bytes()).await?;
        conn.flush().await?;
        subs.push(conn);
    }
    Ok((subs, Conn::connect(addr).await?))
}

/// Publishes `spec.msgs` messages in large batched writes. Returns when the
/// server has processed them all, with the time of the first write.
async fn publish(
    mut conn: Conn,
    spec: &PubSubSpec,
    shared: &Shared,
    deadline: Instant,
) -> Result<(Instant, Conn)> {
    let mut frame = format!("PUB {} {}\r\n", spec.subject, spec.payload).into_bytes();
    frame.extend((0..spec.payload).map(|i| b'a' + (i % 26) as u8));
    frame.extend_from_slice(b"\r\n");
    let per_batch = (BATCH_BYTES / frame.len()).max(1) as u64;
    let batch = frame.repeat(per_batch as usize);
    let done = shared.done.subscribe();
    let start = Instant::now();
    let mut sent = 0;
    while sent < spec.msgs && !*done.borrow() {
        let n = per_batch.min(spec.msgs - sent);
        if spec.window > 0 {
            while sent + n > shared.delivered(spec.queue) + spec.window {
                if *done.borrow() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "time limit hit waiting for subscribers after publishing {sent} messages"
                    );
                }
                // Normally woken by a subscriber; the timeout only guards
                // against a subscriber that stopped making progress.
                let _ = timeout(Duration::from_millis(20), shared.progress.notified()).await;
            }
        }
        let bytes = &batch[..n as usize * frame.len()];
        timeout_at(deadline, conn.write_all(bytes))
            .await
            .with_context(|| format!("time limit hit after publishing {sent} messages"))??;
        sent += n;
    }
    timeout_at(deadline, conn.flush())
        .await
        .context("time limit hit waiting for the final PONG")??;
    Ok((start, conn))
}

/// Counts messages on one subscriber connection until it (or, for a queue
/// group, the whole group) has received everything.
async fn receive(
    mut conn: Conn,
    idx: usize,
    queue: bool,
    msgs: u64,
    shared: &Shared,
    deadline: Instant,
) -> Result<()> {
    let mut done = shared.done.subscribe();
    let mut count = 0;
    loop {
        let mut got = 0;
        let read = conn.read_frames(|frame, _| {
            if let Frame::Msg { .. } = frame {
                got += 1;
            }
        });
        tokio::select! {
            read = timeout_at(deadline, read) => match read {
                Err(_) => bail!("time limit hit after receiving {count} of {msgs} messages"),
                Ok(Err(e)) if e.is::<Closed>() => bail!(
                    "disconnected after receiving {count} of {msgs} messages \
                     (cut off as a slow consumer? see the server log)"
                ),
                Ok(read) => read
                    .with_context(|| format!("failed after receiving {count} messages"))?,
            },
            _ = done.wait_for(|done| *done) => return Ok(()),
        }
        count += got;
        shared.counts[idx].store(count, Relaxed);
        let total = shared.total.fetch_add(got, Relaxed) + got;
        shared.progress.notify_one();
        if (queue && total >= msgs) || (!queue && count >= msgs) {
            let now = Instant::now();
            let mut end = shared.end.lock().unwrap();
            *end = Some(end.map_or(now, |e| e.max(now)));
            if queue {
                shared.done.send_replace(true);
            }
            return Ok(());
        }
    }
}

/// Latency figures of one request/reply run.
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub per_sec: f64,
}

/// Sends `warmup + count` requests one at a time (each waits for its reply)
/// and reports latency percentiles over the last `count`.
pub async fn reqreply(
    addr: SocketAddr,
    id: &str,
    payload: usize,
    warmup: u64,
    count: u64,
    limit: Duration,
) -> Result<Latency> {
    let deadline = Instant::now() + limit;
    let subject = format!("bench.req.{id}");
    let (responder, requester) = timeout_at(deadline, async {
        let mut responder = Conn::connect(addr).await?;
        responder
            .write_all(format!("SUB {subject} 1\r\n").as_bytes())
            .await?;
        responder.flush().await?;
        let mut requester = Conn::connect(addr).await?;
        requester
            .write_all(format!("SUB _INBOX.{id}.* 1\r\n").as_bytes())
            .await?;
        requester.flush().await?;
        anyhow::Ok((responder, requester))
    })
    .await
    .context("timed out connecting")??;

    let mut tasks = JoinSet::new();
    tasks.spawn(respond(responder));
    let body: Vec<u8> = (0..payload).map(|i| b'a' + (i % 26) as u8).collect();
    let requests = request(requester, &subject, id, &body, warmup, count);
    let samples = tokio::select! {
        samples = timeout_at(deadline, requests) => samples
            .with_context(|| format!("time limit of {limit:?} hit"))??,
        joined = tasks.join_next() => match joined {
            Some(Ok(Err(e))) => return Err(e.context("responder failed")),
            _ => bail!("responder stopped"),
        },
    };
    let (mut nanos, elapsed) = samples;
    nanos.sort_unstable();
    let pct = |p: f64| {
        let rank = ((p * nanos.len() as f64).ceil() as usize).clamp(1, nanos.len());
        nanos[rank - 1] as f64 / 1000.0
    };
    Ok(Latency {
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        per_sec: nanos.len() as f64 / elapsed.as_secs_f64(),
    })
}

/// Echoes every request's payload to its reply subject.
async fn respond(mut conn: Conn) -> Result<()> {
    loop {
        conn.read_frames(|frame, out| {
            if let Frame::Msg {
                reply: Some(reply),
                payload,
                ..
            } = frame
            {
                out.extend_from_slice(b"PUB ");
                out.extend_from_slice(reply);
                out.extend_from_slice(format!(" {}\r\n", payload.len()).as_bytes());
                out.extend_from_slice(payload);
                out.extend_from_slice(b"\r\n");
            }
        })
        .await?;
    }
}

/// The requester loop: returns per-request latencies in nanoseconds (after
/// warm-up) and the wall time the measured requests took.
async fn request(
    mut conn: Conn,
    subject: &str,
    id: &str,
    body: &[u8],
    warmup: u64,
    count: u64,
) -> Result<(Vec<u64>, Duration)> {
    let mut nanos = Vec::with_capacity(count as usize);
    let mut frame = Vec::with_capacity(body.len() + 128);
    let mut start = Instant::now();
    for i in 0..warmup + count {
        if i == warmup {
            start = Instant::now();
        }
        let inbox = format!("_INBOX.{id}.{i}");
        frame.clear();
        frame.extend_from_slice(format!("PUB {subject} {inbox} {}\r\n", body.len()).as_bytes());
        frame.extend_from_slice(body);
        frame.extend_from_slice(b"\r\n");
        let sent = Instant::now();
        conn.write_all(&frame).await?;
        let mut replied = false;
        while !replied {
            conn.read_frames(|f, _| {
                if let Frame::Msg { subject, .. } = f {
                    replied |= *subject == inbox.as_bytes();
                }
            })
            .await
            .with_context(|| format!("waiting for reply {i}"))?;
        }
        if i >= warmup {
            nanos.push(sent.elapsed().as_nanos() as u64);
        }
    }
    Ok((nanos, start.elapsed()))
}
