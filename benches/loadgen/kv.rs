//! Key-Value scenarios, spoken as raw protocol like the JetStream ones: a
//! KV bucket is the stream [`STREAM`] capturing `$KV.BENCH.>`, configured
//! the way KV clients create a bucket with history 1.
//!
//! * `kv-put`: one put at a time (a publish to `$KV.BENCH.k<i>` awaiting
//!   its ack), distinct keys;
//! * `kv-put-8`: the same from [`WRITERS`] connections at once, each one put
//!   at a time (how many services sharing a bucket write);
//! * `kv-get`: loads keys, then gets them one at a time with direct gets
//!   (`$JS.API.DIRECT.GET.KV_BENCH.$KV.BENCH.k<i>`), checking every value;
//! * `kv-watch`: loads keys, then watches the whole bucket like a client's
//!   watcher: an ephemeral ordered push consumer delivering the last
//!   message per subject, with flow control and heartbeats;
//! * `kv-rss`: loads keys into a freshly started server and reads its
//!   resident set size from `/proc/<pid>/status`.
//!
//! Loading uses windowed asynchronous puts. Every run creates the bucket
//! (deleting any leftover first) and deletes it afterwards; every wait is
//! bounded by a deadline.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use memchr::memmem;
use tokio::time::{sleep, timeout_at, Instant};

use crate::js::{self, sequential, timed, JsConn, SyncPub};
use crate::proto::{Conn, Frame};

/// The bucket's stream; it captures `$KV.BENCH.>`.
pub const STREAM: &str = "KV_BENCH";
/// Connections putting at once in `kv-put-8`.
pub const WRITERS: u64 = 8;
/// Subject prefix of the bucket's keys.
const KEYS: &str = "$KV.BENCH.";

/// The stream configuration a KV client sends for bucket `BENCH` with
/// history 1, no TTL and file storage.
const BUCKET_CONFIG: &str = r#"{"name":"KV_BENCH","subjects":["$KV.BENCH.>"],"max_msgs_per_subject":1,"discard":"new","allow_rollup_hdrs":true,"deny_delete":true,"allow_direct":true,"storage":"file","num_replicas":1,"max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msg_size":-1,"duplicate_window":120000000000}"#;

/// Parameters of one KV run.
pub struct KvSpec {
    /// Unique per run: names the reply inboxes.
    pub id: String,
    /// Measured sequential puts (`kv-put`).
    pub puts: u64,
    /// Unmeasured operations before the measured ones (`kv-put`, `kv-get`).
    pub warmup: u64,
    /// Keys loaded before a `kv-get`, `kv-watch` or `kv-rss` run (`kv-get`
    /// then gets each of them once).
    pub keys: u64,
    /// Value size in bytes.
    pub value: usize,
    /// Most puts awaiting their ack while loading.
    pub window: u64,
    /// Time limit of a measurement.
    pub timeout: Duration,
    /// Time limit of loading the keys.
    pub load_timeout: Duration,
}

/// Runs `run` with a freshly created bucket, deleting it afterwards.
async fn with_bucket<T, F>(addr: SocketAddr, spec: &KvSpec, run: F) -> Result<T>
where
    F: AsyncFnOnce(JsConn) -> Result<T>,
{
    js::with_named_stream(addr, &spec.id, spec.timeout, STREAM, BUCKET_CONFIG, run).await
}

/// Puts keys `k0` … `k<n-1>` with windowed asynchronous publishes.
async fn load(js: &mut JsConn, spec: &KvSpec, value: &[u8]) -> Result<()> {
    let deadline = Instant::now() + spec.load_timeout;
    js::publish_acked_to(js, spec.keys, spec.window, value, deadline, |out, i| {
        let _ = write!(out, "{KEYS}k{i}");
    })
    .await
    .with_context(|| format!("loading {} keys", spec.keys))?;
    Ok(())
}

/// `kv-put-8`: [`WRITERS`] connections, each putting `spec.puts / WRITERS`
/// distinct keys one at a time (after its share of the warm-up); latency
/// percentiles over every measured put, ops/s over the slowest writer's time.
pub async fn put_concurrent(addr: SocketAddr, spec: &KvSpec) -> Result<SyncPub> {
    with_bucket(addr, spec, async |_js| {
        let deadline = Instant::now() + spec.timeout;
        let value = js::payload_of(spec.value);
        let (each, warmup) = ((spec.puts / WRITERS).max(1), spec.warmup / WRITERS);
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let mut conn = JsConn::connect(addr, &format!("{}w{w}", spec.id)).await?;
            let value = value.clone();
            tasks.push(tokio::spawn(async move {
                let frame = |i: u64, inbox: &str, buf: &mut Vec<u8>| {
                    js::write_pub(buf, format_args!("{KEYS}w{w}k{i}"), inbox, &value)
                };
                let check =
                    |i: u64, ack: &[u8]| js::check_ack(ack, None, format!("writer {w} put {i}"));
                timed(&mut conn, warmup + each, warmup, deadline, frame, check).await
            }));
        }
        let (mut nanos, mut wall) = (Vec::new(), Duration::ZERO);
        for t in tasks {
            let (n, w) = t.await.context("writer task")??;
            nanos.extend(n);
            wall = wall.max(w);
        }
        Ok(SyncPub::from_nanos(nanos, wall))
    })
    .await
}

/// `kv-put`: `spec.warmup + spec.puts` puts of distinct keys, each waiting
/// for its ack; latency percentiles over the measured ones.
pub async fn put(addr: SocketAddr, spec: &KvSpec) -> Result<SyncPub> {
    with_bucket(addr, spec, async |mut js| {
        let deadline = Instant::now() + spec.timeout;
        let value = js::payload_of(spec.value);
        let total = spec.warmup + spec.puts;
        let frame = |i: u64, inbox: &str, buf: &mut Vec<u8>| {
            js::write_pub(buf, format_args!("{KEYS}k{i}"), inbox, &value)
        };
        let check = |i: u64, ack: &[u8]| js::check_ack(ack, Some(i + 1), format!("put {}", i + 1));
        js::sequential(&mut js, total, spec.warmup, deadline, frame, check).await
    })
    .await
}

/// Key order of the gets: a fixed stride through all keys, so consecutive
/// gets are for keys stored far apart.
fn permuted(i: u64, n: u64) -> u64 {
    const STRIDE: u64 = 7919; // prime
    let stride = if n.is_multiple_of(STRIDE) { 1 } else { STRIDE };
    (i % n) * stride % n
}

/// `kv-get`: loads `spec.keys` keys, then direct-gets every key once (in
/// [`permuted`] order, after `spec.warmup` unmeasured gets), checking the
/// subject and value of every reply.
pub async fn get(addr: SocketAddr, spec: &KvSpec) -> Result<SyncPub> {
    if spec.keys == 0 {
        bail!("no keys to get");
    }
    with_bucket(addr, spec, async |mut js| {
        let value = js::payload_of(spec.value);
        load(&mut js, spec, &value).await?;
        let deadline = Instant::now() + spec.timeout;
        let n = spec.keys;
        let frame = |i: u64, inbox: &str, buf: &mut Vec<u8>| {
            let k = permuted(i, n);
            let _ = write!(
                buf,
                "PUB $JS.API.DIRECT.GET.{STREAM}.{KEYS}k{k} {inbox} 0\r\n\r\n"
            );
        };
        let check = |i: u64, reply: &[u8]| {
            let k = permuted(i, n);
            check_get(reply, &format!("{KEYS}k{k}"), &value)
        };
        sequential(
            &mut js,
            spec.warmup + n,
            spec.warmup,
            deadline,
            frame,
            check,
        )
        .await
    })
    .await
}

/// A direct-get reply must be a header block naming `subject`
/// (`Nats-Subject: <subject>`) followed by `value`.
fn check_get(reply: &[u8], subject: &str, value: &[u8]) -> Result<()> {
    let shown = || String::from_utf8_lossy(&reply[..reply.len().min(300)]).into_owned();
    if let Some(code) = js::status_code(reply) {
        bail!("get {subject} answered status {code}: {:?}", shown());
    }
    let Some(end) = memmem::find(reply, b"\r\n\r\n") else {
        bail!("get {subject}: reply without headers: {:?}", shown());
    };
    let (headers, body) = (&reply[..end], &reply[end + 4..]);
    if header(headers, b"nats-subject") != Some(subject.as_bytes()) || body != value {
        bail!("get {subject}: unexpected reply {:?}", shown());
    }
    Ok(())
}

/// Figures of one `kv-watch` run.
pub struct Watch {
    pub keys_per_sec: f64,
    pub total_ms: f64,
}

/// `kv-watch`: loads `spec.keys` keys, then times watching the bucket from
/// the consumer's creation until every key has been delivered.
pub async fn watch(addr: SocketAddr, spec: &KvSpec) -> Result<Watch> {
    if spec.keys == 0 {
        bail!("no keys to watch");
    }
    with_bucket(addr, spec, async |mut js| {
        load(&mut js, spec, &js::payload_of(spec.value)).await?;
        let mut conn = Conn::connect(addr).await.context("watcher connection")?;
        let deadline = Instant::now() + spec.timeout;
        timeout_at(deadline, watch_all(&mut conn, spec))
            .await
            .map_err(|_| anyhow!("time limit hit watching the bucket"))?
    })
    .await
}

/// The watch proper, on its own connection: subscribes to the delivery
/// inbox (sid 1), creates the consumer (its reply comes on sid 2) and
/// counts deliveries, answering flow-control requests.
async fn watch_all(conn: &mut Conn, spec: &KvSpec) -> Result<Watch> {
    let n = spec.keys;
    let deliver = format!("_INBOX.{}.watch", spec.id);
    let api_reply = format!("_INBOX.{}.watch_api", spec.id);
    let body = format!(
        r#"{{"stream_name":"{STREAM}","config":{{"deliver_subject":"{deliver}","deliver_policy":"last_per_subject","ack_policy":"none","max_deliver":1,"filter_subject":"{KEYS}>","replay_policy":"instant","flow_control":true,"idle_heartbeat":5000000000,"mem_storage":true,"num_replicas":1,"headers_only":false}}}}"#
    );
    let mut out = Vec::new();
    let _ = write!(
        out,
        "SUB {deliver} 1\r\nSUB {api_reply} 2\r\nPUB $JS.API.CONSUMER.CREATE.{STREAM} {api_reply} {}\r\n{body}\r\n",
        body.len()
    );
    let start = Instant::now();
    conn.write_all(&out).await?;
    let (mut received, mut created, mut last_pending) = (0u64, false, None);
    let (mut flow_controls, mut failure) = (0u64, None::<String>);
    while received < n || !created {
        let read = conn.read_frames(|f, replies| {
            let Frame::Msg {
                sid,
                reply,
                payload,
                ..
            } = f
            else {
                return;
            };
            if *sid == b"2" {
                created = true;
                if js::status_code(payload).is_some() || js::is_error(payload) {
                    failure.get_or_insert_with(|| {
                        format!("consumer create: {}", String::from_utf8_lossy(payload))
                    });
                }
                return;
            }
            match (js::status_code(payload), reply) {
                // Flow-control request: answer with an empty message.
                (Some(100), Some(reply)) => {
                    flow_controls += 1;
                    publish_empty(replies, reply);
                }
                // Idle heartbeat; a stalled consumer names where to answer.
                (Some(100), None) => {
                    if let Some(to) = header(payload, b"nats-consumer-stalled") {
                        publish_empty(replies, to);
                    }
                }
                (None, Some(reply)) if reply.starts_with(b"$JS.ACK.") => {
                    let meta = js::ack_seq_pending(reply);
                    if meta.map(|(seq, _)| seq) != Some(received + 1) {
                        failure.get_or_insert_with(|| {
                            format!(
                                "delivery {} after {received} keys (expected stream seq {})",
                                String::from_utf8_lossy(reply),
                                received + 1
                            )
                        });
                    }
                    last_pending = meta.map(|(_, pending)| pending);
                    received += 1;
                }
                _ => {
                    failure.get_or_insert_with(|| {
                        format!(
                            "unexpected delivery after {received} keys (reply {:?}): {:?}",
                            reply.map(String::from_utf8_lossy),
                            String::from_utf8_lossy(&payload[..payload.len().min(300)])
                        )
                    });
                }
            }
        });
        read.await
            .with_context(|| format!("after {received} of {n} keys"))?;
        if let Some(f) = failure {
            bail!("{f} ({flow_controls} flow-control requests answered)");
        }
    }
    let elapsed = start.elapsed();
    if received != n || last_pending != Some(0) {
        bail!("{received} keys delivered for {n}, pending {last_pending:?} at the last one");
    }
    conn.write_all(b"UNSUB 1\r\n").await?;
    Ok(Watch {
        keys_per_sec: n as f64 / elapsed.as_secs_f64(),
        total_ms: elapsed.as_secs_f64() * 1000.0,
    })
}

fn publish_empty(out: &mut Vec<u8>, subject: &[u8]) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject);
    out.extend_from_slice(b" 0\r\n\r\n");
}

/// The value of header `name` (lowercase) in a header block.
fn header<'a>(block: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    block.split(|b| *b == b'\n').skip(1).find_map(|line| {
        let (key, value) = line.split_at(memchr::memchr(b':', line)?);
        key.trim_ascii()
            .eq_ignore_ascii_case(name)
            .then(|| value[1..].trim_ascii())
    })
}

/// Figures of one `kv-rss` run, in MiB.
pub struct Rss {
    pub idle_mib: f64,
    pub loaded_mib: f64,
}

/// `kv-rss`: on a freshly started server (process `pid`), reads the
/// resident set size, loads `spec.keys` keys, waits a second and reads it
/// again.
pub async fn rss(addr: SocketAddr, pid: u32, spec: &KvSpec) -> Result<Rss> {
    let idle_mib = rss_mib(pid)?;
    let loaded_mib = with_bucket(addr, spec, async |mut js| {
        load(&mut js, spec, &js::payload_of(spec.value)).await?;
        let deadline = Instant::now() + spec.timeout;
        timeout_at(deadline, js.conn.flush())
            .await
            .map_err(|_| anyhow!("time limit hit waiting for a PONG"))??;
        sleep(Duration::from_secs(1)).await;
        rss_mib(pid)
    })
    .await?;
    Ok(Rss {
        idle_mib,
        loaded_mib,
    })
}

/// `VmRSS` of process `pid` in MiB.
fn rss_mib(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kib / 1024.0)
}
