//! JetStream scenarios, spoken as raw requests to the `$JS.API` subjects:
//! windowed asynchronous publishing with acks, sequential publishing (ack
//! latency), and draining a pre-filled stream through a durable pull
//! consumer with explicit acks.
//!
//! Every run creates the file-storage stream [`STREAM`] (deleting any
//! leftover first) and deletes it afterwards, also after a failed run.
//! Every wait is bounded by the run's deadline: a server that stops
//! answering fails the run with a message saying how far it got.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use memchr::memmem;
use tokio::time::{sleep, timeout_at, Instant};

use crate::proto::{Conn, Frame};

/// Name of the benchmark stream; it captures `bench.js.>`.
pub const STREAM: &str = "BENCH";
const CONSUMER: &str = "C1";

/// Time allowed for deleting the stream after a run.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Parameters of one JetStream run.
pub struct JsSpec {
    /// Unique per run: names the subject and the reply inboxes.
    pub id: String,
    /// Messages published (async publish) or pre-filled and consumed (pull).
    pub msgs: u64,
    /// Measured publishes of the sequential scenario.
    pub sync_msgs: u64,
    /// Unmeasured publishes before those.
    pub warmup: u64,
    pub payload: usize,
    /// Most publishes awaiting their ack at any time.
    pub window: u64,
    /// Messages asked for by one pull request.
    pub batch: u64,
    /// Pull requests kept outstanding.
    pub pulls: usize,
    /// Time limit of each phase (pre-fill, measurement).
    pub timeout: Duration,
}

/// A connection subscribed to `_INBOX.<id>.*`, where API replies and
/// publish acks arrive.
pub struct JsConn {
    pub conn: Conn,
    /// `_INBOX.<id>.`: append anything to get a reply subject.
    pub inbox: String,
    requests: u64,
}

impl JsConn {
    pub async fn connect(addr: SocketAddr, id: &str) -> Result<JsConn> {
        let mut conn = Conn::connect(addr).await?;
        conn.write_all(format!("SUB _INBOX.{id}.* 1\r\n").as_bytes())
            .await?;
        conn.flush().await?;
        Ok(JsConn {
            conn,
            inbox: format!("_INBOX.{id}."),
            requests: 0,
        })
    }

    /// Writes `frame` and returns the payload of the first message then
    /// received on `inbox`; `Ok(None)` if the deadline passes first.
    pub async fn round_trip(
        &mut self,
        frame: &[u8],
        inbox: &str,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>> {
        let mut reply = None;
        let exchange = async {
            self.conn.write_all(frame).await?;
            while reply.is_none() {
                self.conn
                    .read_frames(|f, _| {
                        if let Frame::Msg {
                            subject, payload, ..
                        } = f
                        {
                            if *subject == inbox.as_bytes() {
                                reply = Some(payload.to_vec());
                            }
                        }
                    })
                    .await?;
            }
            anyhow::Ok(())
        };
        match timeout_at(deadline, exchange).await {
            Err(_) => Ok(None),
            Ok(done) => done.map(|()| reply),
        }
    }

    /// Sends one `$JS.API` request and returns the JSON reply, which is an
    /// error if it carries an `"error"` member (or is a status message).
    pub async fn api(&mut self, subject: &str, body: &str, deadline: Instant) -> Result<String> {
        self.requests += 1;
        let inbox = format!("{}api{}", self.inbox, self.requests);
        let frame = format!("PUB {subject} {inbox} {}\r\n{body}\r\n", body.len());
        let reply = self
            .round_trip(frame.as_bytes(), &inbox, deadline)
            .await
            .with_context(|| format!("request {subject}"))?
            .with_context(|| format!("no reply to {subject} in time"))?;
        if let Some(code) = status_code(&reply) {
            let hint = if code == 503 {
                " (no responders: is JetStream enabled?)"
            } else {
                ""
            };
            bail!("{subject}: status {code}{hint}");
        }
        let text = String::from_utf8_lossy(&reply).into_owned();
        if is_error(&reply) {
            bail!("{subject} {body} → {text}");
        }
        Ok(text)
    }

    /// Deletes any leftover stream `name` and creates it anew with the
    /// JSON configuration `config`.
    async fn create_stream(&mut self, name: &str, config: &str, deadline: Instant) -> Result<()> {
        let delete = format!("$JS.API.STREAM.DELETE.{name}");
        match self.api(&delete, "", deadline).await {
            Err(e) if !format!("{e}").contains("not found") => return Err(e),
            _ => {}
        }
        self.api(&format!("$JS.API.STREAM.CREATE.{name}"), config, deadline)
            .await?;
        Ok(())
    }
}

/// Writes `PUB <subject> <inbox> <len>\r\n<body>\r\n` to `buf`.
pub fn write_pub(buf: &mut Vec<u8>, subject: impl std::fmt::Display, inbox: &str, body: &[u8]) {
    let _ = write!(buf, "PUB {subject} {inbox} {}\r\n", body.len());
    buf.extend_from_slice(body);
    buf.extend_from_slice(b"\r\n");
}

/// Accepts a publish ack (with sequence `want`, if given); anything else (a status, an error,
/// no sequence) fails with `what` in the message.
pub fn check_ack(ack: &[u8], want: Option<u64>, what: impl std::fmt::Display) -> Result<()> {
    let seq = ack_seq(ack);
    if status_code(ack).is_some()
        || is_error(ack)
        || seq.is_none()
        || want.is_some_and(|w| seq != Some(w))
    {
        bail!("{what} answered {}", String::from_utf8_lossy(ack));
    }
    Ok(())
}

/// The status code of a status message (`NATS/1.0 408 ...` headers).
pub fn status_code(payload: &[u8]) -> Option<u16> {
    let rest = payload.strip_prefix(b"NATS/1.0 ")?;
    let digits = rest.get(..3)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

pub fn is_error(json: &[u8]) -> bool {
    memmem::find(json, b"\"error\"").is_some()
}

/// The `seq` of a publish ack such as `{"stream":"BENCH", "seq":12}`.
pub fn ack_seq(json: &[u8]) -> Option<u64> {
    let at = memmem::find(json, b"\"seq\"")? + 5;
    let rest = json[at..].trim_ascii_start().strip_prefix(b":")?;
    let rest = rest.trim_ascii_start();
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

pub fn payload_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Runs `run` with a freshly created stream [`STREAM`] and deletes the
/// stream after it, whatever the outcome.
async fn with_stream<T, F>(addr: SocketAddr, spec: &JsSpec, run: F) -> Result<T>
where
    F: AsyncFnOnce(JsConn) -> Result<T>,
{
    let config = format!(r#"{{"name":"{STREAM}","subjects":["bench.js.>"],"storage":"file"}}"#);
    with_named_stream(addr, &spec.id, spec.timeout, STREAM, &config, run).await
}

/// Runs `run` with a freshly created stream `name` (JSON configuration
/// `config`, created within `limit`) on a connection with reply inboxes
/// `_INBOX.<id>.*`, and deletes the stream after it, whatever the outcome.
pub async fn with_named_stream<T, F>(
    addr: SocketAddr,
    id: &str,
    limit: Duration,
    name: &str,
    config: &str,
    run: F,
) -> Result<T>
where
    F: AsyncFnOnce(JsConn) -> Result<T>,
{
    let deadline = Instant::now() + limit;
    let setup = async {
        let mut js = JsConn::connect(addr, id).await?;
        js.create_stream(name, config, deadline).await?;
        anyhow::Ok(js)
    };
    let result = match timeout_at(deadline, setup).await {
        Err(_) => Err(anyhow!("time limit hit creating the stream")),
        Ok(Err(e)) => Err(e.context("creating the stream")),
        Ok(Ok(js)) => run(js).await,
    };
    let cleanup = async {
        let deadline = Instant::now() + CLEANUP_TIMEOUT;
        let mut js = timeout_at(deadline, JsConn::connect(addr, &format!("{id}_rm")))
            .await
            .context("time limit hit connecting")??;
        js.api(&format!("$JS.API.STREAM.DELETE.{name}"), "", deadline)
            .await
    };
    let cleaned = cleanup.await;
    let value = result?;
    cleaned.context("deleting the stream after the run")?;
    Ok(value)
}

/// `js-async-pub`: publishes `spec.msgs` messages with at most
/// `spec.window` acks outstanding; returns acked msgs/s.
pub async fn async_pub(addr: SocketAddr, spec: &JsSpec) -> Result<f64> {
    with_stream(addr, spec, async |mut js| {
        let deadline = Instant::now() + spec.timeout;
        let elapsed = publish_acked(&mut js, spec, deadline).await?;
        Ok(spec.msgs as f64 / elapsed.as_secs_f64())
    })
    .await
}

/// `js-mirror`: fills a stream with `spec.msgs` messages, then creates a mirror of it and
/// times until the mirror holds every one (what a mirror does after an outage); mirrored
/// msgs/s.
pub async fn mirror_catchup(addr: SocketAddr, spec: &JsSpec) -> Result<f64> {
    with_stream(addr, spec, async |mut js| {
        let deadline = Instant::now() + spec.timeout;
        publish_acked(&mut js, spec, deadline).await?;
        let mirror = format!("{STREAM}_MIRROR");
        let config =
            format!(r#"{{"name":"{mirror}","mirror":{{"name":"{STREAM}"}},"storage":"file"}}"#);
        let start = Instant::now();
        let copied = async {
            js.create_stream(&mirror, &config, deadline).await?;
            loop {
                let info = js
                    .api(&format!("$JS.API.STREAM.INFO.{mirror}"), "", deadline)
                    .await?;
                let v: serde_json::Value = serde_json::from_str(&info).context("stream info")?;
                if v["state"]["messages"].as_u64() >= Some(spec.msgs) {
                    return anyhow::Ok(start.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let elapsed = timeout_at(deadline, copied)
            .await
            .map_err(|_| anyhow!("time limit hit mirroring"))??;
        js.api(&format!("$JS.API.STREAM.DELETE.{mirror}"), "", deadline)
            .await?;
        Ok(spec.msgs as f64 / elapsed.as_secs_f64())
    })
    .await
}

/// Publishes `spec.msgs` messages to an empty stream, keeping up to
/// `spec.window` acks outstanding, and checks every ack. Returns the time
/// from the first publish to the last ack.
async fn publish_acked(js: &mut JsConn, spec: &JsSpec, deadline: Instant) -> Result<Duration> {
    let subject = format!("bench.js.{}", spec.id);
    let body = payload_of(spec.payload);
    publish_acked_to(js, spec.msgs, spec.window, &body, deadline, |out, _| {
        out.extend_from_slice(subject.as_bytes())
    })
    .await
}

/// Publishes `msgs` copies of `body` to an empty stream, message `i` (from
/// 0) to the subject that `subject` appends for `i`, keeping up to `window`
/// acks outstanding, and checks every ack. Returns the time from the first
/// publish to the last ack.
pub async fn publish_acked_to(
    js: &mut JsConn,
    msgs: u64,
    window: u64,
    body: &[u8],
    deadline: Instant,
    subject: impl Fn(&mut Vec<u8>, u64),
) -> Result<Duration> {
    let window = window.max(1);
    let mut out = Vec::with_capacity(64 * 1024);
    let (mut sent, mut acked, mut last_seq) = (0u64, 0u64, 0u64);
    let mut failure: Option<String> = None;
    let start = Instant::now();
    while acked < msgs {
        out.clear();
        while sent < msgs && sent - acked < window {
            out.extend_from_slice(b"PUB ");
            subject(&mut out, sent);
            let _ = write!(out, " {}{sent} {}\r\n", js.inbox, body.len());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
            sent += 1;
        }
        if !out.is_empty() {
            timeout_at(deadline, js.conn.write_all(&out))
                .await
                .map_err(|_| anyhow!("time limit hit publishing, {acked} of {msgs} acked"))??;
        }
        let inbox = js.inbox.as_bytes();
        let read = js.conn.read_frames(|f, _| {
            let Frame::Msg {
                subject, payload, ..
            } = f
            else {
                return;
            };
            if !subject.starts_with(inbox) || failure.is_some() {
                return;
            }
            if let Some(code) = status_code(payload) {
                failure = Some(format!("publish answered with status {code}"));
            } else if is_error(payload) {
                failure = Some(format!("error ack: {}", String::from_utf8_lossy(payload)));
            } else if let Some(seq) = ack_seq(payload) {
                acked += 1;
                last_seq = last_seq.max(seq);
            } else {
                failure = Some(format!("bad ack: {}", String::from_utf8_lossy(payload)));
            }
        });
        timeout_at(deadline, read)
            .await
            .map_err(|_| anyhow!("time limit hit: {acked} of {msgs} publishes acked"))?
            .with_context(|| format!("after {acked} acks"))?;
        if let Some(f) = failure {
            bail!("{f} (after {acked} good acks)");
        }
    }
    let elapsed = start.elapsed();
    if acked != msgs || last_seq != msgs {
        bail!("{acked} acks for {msgs} publishes, highest seq {last_seq}");
    }
    Ok(elapsed)
}

/// Latency figures of `js-sync-pub` (and of the sequential KV scenarios).
pub struct SyncPub {
    pub p50_us: f64,
    pub p99_us: f64,
    pub per_sec: f64,
}

impl SyncPub {
    /// Percentiles of the (non-empty) per-operation latencies `nanos`, and
    /// operations per second over the `wall` time they took together.
    pub fn from_nanos(mut nanos: Vec<u64>, wall: Duration) -> SyncPub {
        nanos.sort_unstable();
        let pct = |p: f64| {
            let rank = ((p * nanos.len() as f64).ceil() as usize).clamp(1, nanos.len());
            nanos[rank - 1] as f64 / 1000.0
        };
        SyncPub {
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            per_sec: nanos.len() as f64 / wall.as_secs_f64(),
        }
    }
}

/// Runs `total` request/reply exchanges one at a time: `frame` writes the
/// request for operation `i` to the given buffer, with the given reply
/// subject; `check` validates its reply. The first `warmup` are not
/// measured.
pub async fn sequential(
    js: &mut JsConn,
    total: u64,
    warmup: u64,
    deadline: Instant,
    frame: impl FnMut(u64, &str, &mut Vec<u8>),
    check: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<SyncPub> {
    let (nanos, wall) = timed(js, total, warmup, deadline, frame, check).await?;
    Ok(SyncPub::from_nanos(nanos, wall))
}

/// [`sequential`]'s measurement: each measured operation's latency in
/// nanoseconds, and the time they took together.
pub async fn timed(
    js: &mut JsConn,
    total: u64,
    warmup: u64,
    deadline: Instant,
    mut frame: impl FnMut(u64, &str, &mut Vec<u8>),
    mut check: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<(Vec<u64>, Duration)> {
    let mut nanos = Vec::with_capacity(total.saturating_sub(warmup) as usize);
    let mut buf = Vec::with_capacity(512);
    let mut start = Instant::now();
    for i in 0..total {
        if i == warmup {
            start = Instant::now();
        }
        let inbox = format!("{}op{i}", js.inbox);
        buf.clear();
        frame(i, &inbox, &mut buf);
        let sent = Instant::now();
        let reply = js
            .round_trip(&buf, &inbox, deadline)
            .await?
            .with_context(|| format!("time limit hit: {i} of {total} operations answered"))?;
        let elapsed = sent.elapsed();
        check(i, &reply)?;
        if i >= warmup {
            nanos.push(elapsed.as_nanos() as u64);
        }
    }
    if nanos.is_empty() {
        bail!("no measured operations");
    }
    Ok((nanos, start.elapsed()))
}

/// `js-sync-pub`: `spec.warmup + spec.sync_msgs` publishes, each waiting
/// for its ack; latency percentiles over the measured ones.
pub async fn sync_pub(addr: SocketAddr, spec: &JsSpec) -> Result<SyncPub> {
    with_stream(addr, spec, async |mut js| {
        let deadline = Instant::now() + spec.timeout;
        let subject = format!("bench.js.{}", spec.id);
        let body = payload_of(spec.payload);
        let total = spec.warmup + spec.sync_msgs;
        let frame = |_: u64, inbox: &str, buf: &mut Vec<u8>| write_pub(buf, &subject, inbox, &body);
        let check = |i: u64, ack: &[u8]| check_ack(ack, Some(i + 1), format!("publish {}", i + 1));
        sequential(&mut js, total, spec.warmup, deadline, frame, check).await
    })
    .await
}

/// One outstanding pull request: its subscription id and how many
/// messages it may still deliver.
struct Pull {
    sid: u64,
    remaining: u64,
}

/// `js-pull-consume`: pre-fills the stream with `spec.msgs` messages,
/// creates a durable explicit-ack pull consumer and drains it with
/// `spec.pulls` outstanding requests of `spec.batch` messages, acking each
/// message. Returns consumed+acked msgs/s.
pub async fn pull_consume(addr: SocketAddr, spec: &JsSpec) -> Result<f64> {
    with_stream(addr, spec, async |mut js| {
        let deadline = Instant::now() + spec.timeout;
        publish_acked(&mut js, spec, deadline)
            .await
            .context("pre-filling the stream")?;
        let create = format!("$JS.API.CONSUMER.CREATE.{STREAM}.{CONSUMER}");
        let config = format!(
            r#"{{"stream_name":"{STREAM}","config":{{"durable_name":"{CONSUMER}","ack_policy":"explicit","max_ack_pending":20000}}}}"#
        );
        let deadline = Instant::now() + spec.timeout;
        js.api(&create, &config, deadline).await?;
        let elapsed = drain(&mut js, spec, deadline).await?;
        check_all_acked(&mut js, spec.msgs, deadline).await?;
        Ok(spec.msgs as f64 / elapsed.as_secs_f64())
    })
    .await
}

/// The pull loop: returns the time from the first pull request to the
/// server's confirmation (`PONG`) that it has read the last ack.
async fn drain(js: &mut JsConn, spec: &JsSpec, deadline: Instant) -> Result<Duration> {
    let (msgs, batch) = (spec.msgs, spec.batch.max(1));
    let next = format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{CONSUMER}");
    let mut pulls: Vec<Pull> = Vec::new();
    let (mut received, mut next_sid, mut statuses) = (0u64, 100u64, 0u64);
    let mut failure: Option<String> = None;
    let mut out = Vec::new();
    let start = Instant::now();
    while received < msgs {
        out.clear();
        let open: u64 = pulls.iter().map(|p| p.remaining).sum();
        if pulls.len() < spec.pulls && received + open < msgs {
            // Never ask for more than is left, so no request has to expire.
            let n = batch.min(msgs - received - open);
            let body = format!(r#"{{"batch":{n},"expires":5000000000}}"#);
            let inbox = format!("_INBOX.{}.pull.{next_sid}", spec.id);
            let _ = write!(out, "SUB {inbox} {next_sid}\r\n");
            let _ = write!(out, "PUB {next} {inbox} {}\r\n{body}\r\n", body.len());
            pulls.push(Pull {
                sid: next_sid,
                remaining: n,
            });
            next_sid += 1;
            continue_write(js, &out, deadline, received, msgs).await?;
            continue;
        }
        // Acks go to the connection's own buffer, written after the read.
        let read = js.conn.read_frames(|f, acks| {
            let Frame::Msg {
                subject,
                sid,
                reply,
                payload,
            } = f
            else {
                return;
            };
            let sid = std::str::from_utf8(sid).ok().and_then(|s| s.parse().ok());
            let Some(pull) = pulls.iter_mut().find(|p| Some(p.sid) == sid) else {
                if sid != Some(1) && failure.is_none() {
                    failure = Some(format!(
                        "message on {} for no open pull request",
                        String::from_utf8_lossy(subject)
                    ));
                }
                return;
            };
            match (reply, status_code(payload)) {
                (Some(reply), None) if reply.starts_with(b"$JS.ACK.") => {
                    if pull.remaining == 0 || ack_stream_seq(reply) != Some(received + 1) {
                        failure.get_or_insert_with(|| {
                            format!(
                                "unexpected delivery {} after {received} messages",
                                String::from_utf8_lossy(reply)
                            )
                        });
                    }
                    pull.remaining = pull.remaining.saturating_sub(1);
                    received += 1;
                    acks.extend_from_slice(b"PUB ");
                    acks.extend_from_slice(reply);
                    acks.extend_from_slice(b" 0\r\n\r\n");
                }
                (_, Some(100)) => {} // idle heartbeat
                (_, Some(404 | 408)) => {
                    statuses += 1;
                    pull.remaining = 0;
                }
                (_, code) => {
                    failure.get_or_insert_with(|| {
                        format!(
                            "unexpected pull reply (status {code:?}): {}",
                            String::from_utf8_lossy(payload)
                        )
                    });
                }
            }
        });
        timeout_at(deadline, read)
            .await
            .map_err(|_| {
                anyhow!(
                    "time limit hit: consumed {received} of {msgs} messages \
                     ({statuses} pull requests ended by 404/408)"
                )
            })?
            .with_context(|| format!("after consuming {received} messages"))?;
        if let Some(f) = failure {
            bail!("{f}");
        }
        for done in pulls.iter().filter(|p| p.remaining == 0) {
            let _ = write!(out, "UNSUB {}\r\n", done.sid);
        }
        pulls.retain(|p| p.remaining > 0);
        if !out.is_empty() {
            continue_write(js, &out, deadline, received, msgs).await?;
        }
    }
    timeout_at(deadline, js.conn.flush())
        .await
        .map_err(|_| anyhow!("time limit hit waiting for the PONG after the last ack"))??;
    Ok(start.elapsed())
}

async fn continue_write(
    js: &mut JsConn,
    out: &[u8],
    deadline: Instant,
    received: u64,
    msgs: u64,
) -> Result<()> {
    timeout_at(deadline, js.conn.write_all(out))
        .await
        .map_err(|_| anyhow!("time limit hit writing, consumed {received} of {msgs}"))?
}

fn ack_stream_seq(reply: &[u8]) -> Option<u64> {
    ack_seq_pending(reply).map(|(seq, _)| seq)
}

/// The stream sequence and the pending count in an ack subject:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.
/// <time>.<pending>`, or the form with domain and account hash after `ACK`
/// (and a trailing token).
pub fn ack_seq_pending(reply: &[u8]) -> Option<(u64, u64)> {
    let tokens: Vec<&[u8]> = reply.split(|b| *b == b'.').collect();
    let at = match tokens.len() {
        9 => 5,
        n if n >= 11 => 7,
        _ => return None,
    };
    let num = |t: &[u8]| std::str::from_utf8(t).ok()?.parse().ok();
    Some((num(tokens[at])?, num(tokens[at + 3])?))
}

/// Polls consumer info until the server reports every message acked (acks
/// may be applied asynchronously), within the deadline.
async fn check_all_acked(js: &mut JsConn, msgs: u64, deadline: Instant) -> Result<()> {
    let info = format!("$JS.API.CONSUMER.INFO.{STREAM}.{CONSUMER}");
    let limit = deadline.min(Instant::now() + Duration::from_secs(5));
    loop {
        let reply = js.api(&info, "", limit).await?;
        let v: serde_json::Value = serde_json::from_str(&reply)
            .with_context(|| format!("consumer info is not JSON: {reply}"))?;
        let floor = v["ack_floor"]["stream_seq"].as_u64();
        let pending = v["num_ack_pending"].as_u64();
        if floor == Some(msgs) && pending == Some(0) {
            return Ok(());
        }
        if Instant::now() + Duration::from_millis(50) > limit {
            bail!(
                "after the run the consumer reports ack floor {floor:?} and {pending:?} \
                 acks pending (expected {msgs} and 0): {reply}"
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// `js-ack-sync`: pre-fills the stream with `spec.warmup + spec.sync_msgs` messages, then takes
/// them one at a time from a durable explicit-ack pull consumer and confirms each with an
/// AckSync (the ack sent as a request; the empty reply says it is durable). Latency percentiles
/// of the measured AckSyncs alone (from writing the ack to its confirmation).
pub async fn ack_sync(addr: SocketAddr, spec: &JsSpec) -> Result<SyncPub> {
    with_stream(addr, spec, async |mut js| {
        let deadline = Instant::now() + spec.timeout;
        let total = spec.warmup + spec.sync_msgs;
        let body = payload_of(spec.payload);
        let subject = format!("bench.js.{}", spec.id);
        publish_acked_to(&mut js, total, spec.window, &body, deadline, |out, _| {
            out.extend_from_slice(subject.as_bytes())
        })
        .await
        .context("pre-filling the stream")?;
        let create = format!("$JS.API.CONSUMER.CREATE.{STREAM}.{CONSUMER}");
        let config = format!(
            r#"{{"stream_name":"{STREAM}","config":{{"durable_name":"{CONSUMER}","ack_policy":"explicit"}}}}"#
        );
        js.api(&create, &config, deadline).await?;
        let next = format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{CONSUMER}");
        let mut nanos = Vec::with_capacity(spec.sync_msgs as usize);
        let mut start = Instant::now();
        for i in 0..total {
            if i == spec.warmup {
                start = Instant::now();
            }
            let inbox = format!("{}next{i}", js.inbox);
            let req = format!("PUB {next} {inbox} 11\r\n{{\"batch\":1}}\r\n");
            let reply = next_reply(&mut js, req.as_bytes(), &inbox, deadline)
                .await?
                .with_context(|| format!("message {} not delivered in time", i + 1))?;
            if ack_stream_seq(reply.as_bytes()) != Some(i + 1) {
                bail!("message {} delivered as {reply}", i + 1);
            }
            let inbox = format!("{}ack{i}", js.inbox);
            let ack = format!("PUB {reply} {inbox} 0\r\n\r\n");
            let sent = Instant::now();
            js.round_trip(ack.as_bytes(), &inbox, deadline)
                .await?
                .with_context(|| format!("AckSync {} not confirmed in time", i + 1))?;
            if i >= spec.warmup {
                nanos.push(sent.elapsed().as_nanos() as u64);
            }
        }
        if nanos.is_empty() {
            bail!("no measured AckSyncs");
        }
        let wall = start.elapsed();
        check_all_acked(&mut js, total, deadline).await?;
        Ok(SyncPub::from_nanos(nanos, wall))
    })
    .await
}

/// Writes `frame` and returns the reply subject of the first message then received on `inbox`
/// (a delivery's `$JS.ACK...` subject); `Ok(None)` if the deadline passes first.
async fn next_reply(
    js: &mut JsConn,
    frame: &[u8],
    inbox: &str,
    deadline: Instant,
) -> Result<Option<String>> {
    let mut found: Option<Result<String>> = None;
    let exchange = async {
        js.conn.write_all(frame).await?;
        while found.is_none() {
            js.conn
                .read_frames(|f, _| {
                    if let Frame::Msg {
                        subject,
                        reply,
                        payload,
                        ..
                    } = f
                    {
                        // A delivery keeps its stream subject (the inbox only routes it);
                        // a status comes on the inbox itself.
                        let delivery = reply.filter(|r| r.starts_with(b"$JS.ACK."));
                        if let (None, Some(r)) = (&found, delivery) {
                            found = Some(Ok(String::from_utf8_lossy(r).into_owned()));
                        } else if found.is_none() && *subject == inbox.as_bytes() {
                            found = Some(Err(anyhow!(
                                "pull answered {}",
                                String::from_utf8_lossy(payload)
                            )));
                        }
                    }
                })
                .await?;
        }
        anyhow::Ok(())
    };
    match timeout_at(deadline, exchange).await {
        Err(_) => Ok(None),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => found.transpose(),
    }
}
