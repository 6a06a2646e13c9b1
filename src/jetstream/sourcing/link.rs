//! One link from an origin stream into a mirror or a source: a task that runs sessions until
//! it is dropped. A session asks the stream where the copy stands, creates a push consumer
//! on the origin from the next sequence (an ordinary JetStream API request, answered by
//! whichever server holds the origin), and hands each delivery to the stream in order. It
//! ends, and a new one starts after a back-off, when the origin is silent past
//! [`STALL_AFTER`] (its heartbeats stopped), a delivery is missing, the stream refused a
//! message for a limit, or the consumer could not be created (the error shows in stream info).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{Sourced, Status, StreamSource};
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers;
use crate::jetstream::queue::Tx;
use crate::jetstream::runner::Input;
use crate::server::{Client, Message};

/// The origin consumer's idle heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Silence from the origin after which a session starts over.
const STALL_AFTER: Duration = Duration::from_secs(10);
/// How long a consumer create may take to be answered.
const CREATE_PATIENCE: Duration = Duration::from_secs(10);
/// The origin removes a consumer its link stopped reading after this long.
const INACTIVE: Duration = Duration::from_secs(10);
/// Back-off after a failed session: this times the failures so far, at most [`MAX_BACKOFF`].
const BACKOFF_STEP: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A running link; dropping it stops the task (its consumer expires on the origin).
pub(crate) struct Link {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A mirror's or sources' configuration.
type Origins = (Option<StreamSource>, Option<Vec<StreamSource>>);

/// The links of one stream, following its configuration.
#[derive(Default)]
pub(crate) struct Links {
    running: Option<Origins>,
    links: Vec<Link>,
}

impl Links {
    /// Runs a link (made by `start`) for each origin `wanted` names (a stream's `mirror` and
    /// `sources`), and none when it is `None`; links already running for the same
    /// configuration go on (nothing is copied then: this runs after every batch).
    pub fn follow(
        &mut self,
        stream: &str,
        wanted: Option<(&Option<StreamSource>, &Option<Vec<StreamSource>>)>,
        mut start: impl FnMut(Spec) -> Link,
    ) {
        let wanted = wanted.filter(|(m, s)| m.is_some() || s.is_some());
        let running = self.running.as_ref().map(|(m, s)| (m, s));
        if wanted == running {
            return;
        }
        self.links.clear();
        self.running = wanted.map(|(m, s)| (m.clone(), s.clone()));
        let Some((mirror, sources)) = &self.running else {
            return;
        };
        let all = mirror.iter().map(|m| (m, true));
        let all = all.chain(sources.iter().flatten().map(|s| (s, false)));
        for (source, mirror) in all {
            self.links.push(start(Spec {
                stream: stream.to_string(),
                source: source.clone(),
                mirror,
            }));
        }
    }
}

/// What a link copies and where it reports.
pub(crate) struct Spec {
    /// The stream copying (named in the consumer's metadata).
    pub stream: String,
    pub source: StreamSource,
    /// A mirror (keeps sequences) rather than one of the sources.
    pub mirror: bool,
}

impl Spec {
    /// The key the stream tracks this link by (`None`: the mirror) and its status key.
    fn key(&self) -> Option<String> {
        (!self.mirror).then(|| self.source.index_name())
    }
}

/// Starts the link's task on `runtime`.
pub(crate) fn start(
    client: Client,
    tx: Tx<Input>,
    spec: Spec,
    status: Arc<Status>,
    runtime: &tokio::runtime::Handle,
) -> Link {
    let span = tracing::info_span!("link", stream = %spec.stream, origin = %spec.source.name);
    let task = runtime.spawn(tracing::Instrument::instrument(
        run(client, tx, spec, status),
        span,
    ));
    Link { task }
}

/// How a session ended.
enum End {
    /// Start a new one after the back-off.
    Retry,
    /// The stream is gone.
    Stop,
}

async fn run(client: Client, tx: Tx<Input>, spec: Spec, status: Arc<Status>) {
    let mut fails = 0u32;
    loop {
        let mut session = Session::new(&client, &tx, &spec, &status);
        let end = session.run().await;
        if session.delivered > 0 {
            fails = 0;
        }
        drop(session);
        match end {
            End::Stop => return,
            End::Retry => fails = fails.saturating_add(1),
        }
        let wait = (BACKOFF_STEP * fails).min(MAX_BACKOFF);
        let jitter = Duration::from_millis(rand::random_range(0..250));
        tokio::time::sleep(wait + jitter).await;
    }
}

/// One consumer on the origin and what was received from it.
struct Session<'a> {
    client: &'a Client,
    tx: &'a Tx<Input>,
    spec: &'a Spec,
    status: &'a Status,
    /// The stream's key for this link (the source's index name; `None`: the mirror).
    key: Option<String>,
    /// Where `status` keeps what this link reports ("" for the mirror).
    status_key: String,
    api: String,
    deliver: String,
    consumer: Option<String>,
    sub: Option<Arc<crate::server::Subscription>>,
    /// Last origin sequence and delivery sequence received.
    sseq: u64,
    dseq: u64,
    delivered: u64,
    refused: Arc<AtomicU64>,
    transforms: Vec<crate::protocol::transform::Transform>,
    /// The origin's identity (a hash of its creation time), stamped on a source's messages.
    ident: String,
}

impl<'a> Session<'a> {
    fn new(client: &'a Client, tx: &'a Tx<Input>, spec: &'a Spec, status: &'a Status) -> Self {
        let api = match &spec.source.external {
            Some(e) if !e.api.is_empty() => e.api.trim_end_matches('.').to_string(),
            _ => "$JS.API".to_string(),
        };
        let kind = if spec.mirror { "M" } else { "S" };
        let deliver = match &spec.source.external {
            Some(e) if !e.deliver.is_empty() => {
                format!(
                    "{}.{kind}.{}",
                    e.deliver.trim_end_matches('.'),
                    nuid::next()
                )
            }
            _ => format!("$JS.{kind}.{}", nuid::next()),
        };
        Session {
            client,
            tx,
            spec,
            status,
            key: spec.key(),
            status_key: spec.key().unwrap_or_default(),
            api,
            deliver,
            consumer: None,
            sub: None,
            sseq: 0,
            dseq: 0,
            delivered: 0,
            refused: Arc::default(),
            transforms: spec.source.transforms(),
            ident: String::new(),
        }
    }

    async fn run(&mut self) -> End {
        let Some(at) = self.up_to().await else {
            return End::Stop;
        };
        let mut up_to = at.seq;
        if !self.spec.mirror {
            // A source's origin deleted and created again since: copied from its start.
            self.ident = self.identity().await.unwrap_or_default();
            if !at.same_origin(&self.ident) {
                tracing::warn!("the origin was created again; copying it from the start");
                up_to = 0;
            }
        }
        let (msgs_tx, mut msgs) = mpsc::unbounded_channel::<Message>();
        let handler: crate::server::InternalHandler = Arc::new(move |m: Message| {
            let _ = msgs_tx.send(m);
            true
        });
        self.sub = Some(self.client.subscribe_internal(&self.deliver, None, handler));
        match self.create(up_to).await {
            Ok((name, delivered)) => {
                self.consumer = Some(name);
                self.sseq = up_to.max(delivered);
                self.status.update(&self.status_key, |s| s.error = None);
            }
            Err(e) => {
                tracing::warn!("consumer on the origin not created: {}", e.description);
                self.status.update(&self.status_key, |s| s.error = Some(e));
                return End::Retry;
            }
        }
        loop {
            let m = match tokio::time::timeout(STALL_AFTER, msgs.recv()).await {
                Ok(Some(m)) => m,
                Ok(None) => return End::Stop,
                Err(_) => {
                    tracing::info!("origin silent for {STALL_AFTER:?}; starting over");
                    return End::Retry;
                }
            };
            if self.refused.load(Ordering::Acquire) != 0 {
                // The stream is full for now (discard new): start over from what it has.
                return End::Retry;
            }
            self.status
                .update(&self.status_key, |s| s.last_contact = Some(Instant::now()));
            let step = if is_status(&m) {
                self.control(m).await
            } else {
                self.data(m).await
            };
            if let Some(end) = step {
                return end;
            }
        }
    }

    /// Where the stream's copy stands (after everything queued before this question).
    async fn up_to(&self) -> Option<crate::jetstream::stream::Position> {
        let (done, answer) = tokio::sync::oneshot::channel();
        if !send(self.tx, Input::SourcedUpTo(self.key.clone(), done)).await {
            return None;
        }
        answer.await.ok()
    }

    /// Creates the origin consumer; returns its name and the origin sequence it starts after.
    async fn create(&self, up_to: u64) -> Result<(String, u64), ApiError> {
        let src = &self.spec.source;
        let mut config = json!({
            "deliver_subject": self.deliver,
            "ack_policy": "none",
            "ack_wait": 22 * 3600 * 1_000_000_000i64,
            "max_deliver": 1,
            "idle_heartbeat": HEARTBEAT.as_nanos() as i64,
            "flow_control": true,
            "direct": true,
            "inactive_threshold": INACTIVE.as_nanos() as i64,
            "metadata": { "_nats.sourcing.stream": self.spec.stream },
        });
        if up_to > 0 {
            config["deliver_policy"] = json!("by_start_sequence");
            config["opt_start_seq"] = json!(up_to + 1);
        } else if src.opt_start_seq > 0 {
            config["deliver_policy"] = json!("by_start_sequence");
            config["opt_start_seq"] = json!(src.opt_start_seq);
        } else if let Some(t) = &src.opt_start_time {
            config["deliver_policy"] = json!("by_start_time");
            config["opt_start_time"] = json!(t);
        } else {
            config["deliver_policy"] = json!("all");
        }
        match src.filters().as_slice() {
            [] => {}
            [one] => config["filter_subject"] = json!(one),
            many => config["filter_subjects"] = json!(many),
        }
        let body = json!({ "stream_name": src.name, "config": config }).to_string();
        let subject = format!("{}.CONSUMER.CREATE.{}", self.api, src.name);
        let v = self
            .request(&subject, body.as_bytes(), "consumer create")
            .await?;
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let delivered = v["delivered"]["stream_seq"].as_u64().unwrap_or(0);
        Ok((name, delivered))
    }

    /// The origin's identity: the hash of its creation time (from its stream info), as
    /// nats-server computes it.
    async fn identity(&self) -> Option<String> {
        let subject = format!("{}.STREAM.INFO.{}", self.api, self.spec.source.name);
        let v = self.request(&subject, b"", "stream info").await.ok()?;
        v["created"].as_str().map(super::short_hash)
    }

    /// A request to the origin's JetStream API, answered as JSON (an error answer is `Err`).
    async fn request(&self, subject: &str, body: &[u8], what: &str) -> Result<Value, ApiError> {
        let inbox = format!("_INBOX.{}", nuid::next());
        let (answer_tx, answer) = tokio::sync::oneshot::channel::<Message>();
        let answer_tx = std::sync::Mutex::new(Some(answer_tx));
        let handler: crate::server::InternalHandler = Arc::new(move |m: Message| {
            if let Some(tx) = answer_tx.lock().ok().and_then(|mut t| t.take()) {
                let _ = tx.send(m);
            }
            true
        });
        let sub = self.client.subscribe_internal(&inbox, None, handler);
        self.client.publish_sync(subject, Some(&inbox), None, body);
        let reply = tokio::time::timeout(CREATE_PATIENCE, answer).await;
        self.client.unsubscribe_internal(&sub);
        let m = match reply {
            Ok(Ok(m)) => m,
            _ => return Err(setup_failed(&format!("no answer to the {what} request"))),
        };
        if m.headers
            .as_deref()
            .is_some_and(|h| h.starts_with(b"NATS/1.0 503"))
        {
            return Err(setup_failed(&format!(
                "no responders for the {what} request"
            )));
        }
        let v: Value = serde_json::from_slice(&m.payload)
            .map_err(|_| setup_failed(&format!("invalid {what} response")))?;
        match v.get("error") {
            Some(e) => Err(serde_json::from_value(e.clone())
                .unwrap_or_else(|_| setup_failed(&format!("{what} refused")))),
            None => Ok(v),
        }
    }

    /// A heartbeat or flow control request; `Some` when the session must end.
    async fn control(&mut self, m: Message) -> Option<End> {
        if let Some(reply) = m.reply {
            return (!send(self.tx, Input::SourcedFlow(reply)).await).then_some(End::Stop);
        }
        let h = m.headers.as_deref().unwrap_or_default();
        let last = headers::get(h, "Nats-Last-Consumer").and_then(|v| v.parse::<u64>().ok());
        if last.is_some_and(|l| l > 0 && l != self.dseq) {
            tracing::info!("deliveries missed (heartbeat); starting over");
            return Some(End::Retry);
        }
        if let Some(fc) = headers::get(h, "Nats-Consumer-Stalled") {
            let reply = fc.to_string();
            return (!send(self.tx, Input::SourcedFlow(reply)).await).then_some(End::Stop);
        }
        None
    }

    /// A delivered message; `Some` when the session must end.
    async fn data(&mut self, m: Message) -> Option<End> {
        let info = m.reply.as_deref().and_then(ack_info)?;
        if Some(info.consumer.as_str()) != self.consumer.as_deref() || info.delivered > 1 {
            return None;
        }
        if info.sseq <= self.sseq {
            if info.dseq == self.dseq + 1 {
                self.dseq += 1;
            }
            return None;
        }
        if info.dseq != self.dseq + 1 {
            tracing::info!("deliveries missed; starting over");
            return Some(End::Retry);
        }
        self.dseq = info.dseq;
        self.sseq = info.sseq;
        self.delivered += 1;
        self.status
            .update(&self.status_key, |s| s.lag = info.pending);
        let sourced = self.prepare(m, info.sseq, info.time);
        (!send(self.tx, Input::Sourced(Box::new(sourced))).await).then_some(End::Stop)
    }

    /// The message as the stream stores it: transformed, without headers that would be
    /// checked again, a source's stamped with where it came from.
    fn prepare(&self, m: Message, seq: u64, time: i64) -> Sourced {
        let original = m.subject.clone();
        let subject = self
            .transforms
            .iter()
            .find_map(|t| t.apply(&m.subject))
            .unwrap_or(m.subject);
        let mirror = self.spec.mirror;
        let kept = headers::without(m.headers.as_deref(), |k| {
            k.starts_with("Nats-Expected-")
                || k.starts_with("Nats-Batch-")
                || (!mirror && k.eq_ignore_ascii_case(headers::STREAM_SOURCE))
        });
        let hdrs = if mirror {
            kept
        } else {
            let mut words = self.status_key.splitn(3, ' ');
            let (name, filter, dest) = (
                words.next().unwrap_or_default(),
                words.next().unwrap_or(">"),
                words.next().unwrap_or(">"),
            );
            let mut value = format!("{name} {seq} {filter} {dest} {original}");
            if !self.ident.is_empty() {
                value = format!("{value} {}", self.ident);
            }
            Some(headers::append(
                kept.as_deref(),
                &[(headers::STREAM_SOURCE, value.as_str())],
            ))
        };
        Sourced {
            source: self.key.clone(),
            seq,
            time,
            message: Message {
                subject,
                reply: None,
                headers: hdrs.map(Into::into),
                payload: m.payload,
                trace: Default::default(),
            },
            refused: self.refused.clone(),
        }
    }
}

impl Drop for Session<'_> {
    /// Ends the session (also when its link is dropped): stops listening and deletes the
    /// origin consumer.
    fn drop(&mut self) {
        if let Some(sub) = self.sub.take() {
            self.client.unsubscribe_internal(&sub);
        }
        if let Some(name) = self.consumer.take() {
            let subject = format!(
                "{}.CONSUMER.DELETE.{}.{name}",
                self.api, self.spec.source.name
            );
            self.client.publish_sync(&subject, None, None, b"");
        }
    }
}

fn setup_failed(text: &str) -> ApiError {
    ApiError::new(500, 10029, &format!("consumer setup failed: {text}"))
}

/// Whether a message is a status (heartbeat or flow control), not data.
fn is_status(m: &Message) -> bool {
    m.headers
        .as_deref()
        .is_some_and(|h| h.starts_with(b"NATS/1.0 100"))
}

/// Queues input for the stream, waiting (without blocking the runtime) while its queue is
/// full; false if the stream is gone.
async fn send(tx: &Tx<Input>, input: Input) -> bool {
    let mut input = input;
    loop {
        match tx.try_send(input) {
            Ok(()) => return true,
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return false,
            Err(std::sync::mpsc::TrySendError::Full(i)) => {
                input = i;
                tx.room().await;
            }
        }
    }
}

/// What an ack reply subject tells of a delivery.
struct AckInfo {
    consumer: String,
    delivered: u64,
    sseq: u64,
    dseq: u64,
    time: i64,
    pending: u64,
}

/// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<time>.<pending>` (and the
/// longer form with a domain and account hash in front, and a token after).
fn ack_info(reply: &str) -> Option<AckInfo> {
    let t: Vec<&str> = reply.split('.').collect();
    if t.len() < 9 || t[0] != "$JS" || t[1] != "ACK" {
        return None;
    }
    let o = if t.len() == 9 { 2 } else { 4 };
    let num = |i: usize| t.get(o + i).and_then(|v| v.parse::<u64>().ok());
    Some(AckInfo {
        consumer: t.get(o + 1)?.to_string(),
        delivered: num(2)?,
        sseq: num(3)?,
        dseq: num(4)?,
        time: t.get(o + 5)?.parse().ok()?,
        pending: num(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::ack_info;

    #[test]
    fn ack_replies_of_both_forms_parse() {
        let a = ack_info("$JS.ACK.ORDERS.c1.1.42.7.1700000000000000000.3").unwrap();
        assert_eq!(
            (a.consumer.as_str(), a.delivered, a.sseq, a.dseq, a.pending),
            ("c1", 1, 42, 7, 3)
        );
        assert_eq!(a.time, 1_700_000_000_000_000_000);
        let b = ack_info("$JS.ACK.hub.ACCHASH.ORDERS.c1.2.42.7.17.0.xyz").unwrap();
        assert_eq!(
            (b.consumer.as_str(), b.delivered, b.sseq, b.dseq, b.pending),
            ("c1", 2, 42, 7, 0)
        );
        assert!(ack_info("$JS.ACK.ORDERS.c1.1.42").is_none());
        assert!(ack_info("_INBOX.x.y.z.a.b.c.d.e").is_none());
    }
}
