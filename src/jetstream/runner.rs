//! What owns one stream: a task ([`drive`]) that waits for whatever is queued (publishes, acks,
//! API calls) and hands each batch to [`Runner::step`] on a blocking thread, which applies it,
//! commits the whole batch at once through the [`Replication`] seam (group commit: one
//! `fdatasync`), and only then sends the pub acks and API replies and lets consumers deliver:
//! nothing is acknowledged or delivered before it is committed. Under load the commit is
//! pipelined: while one batch of publishes and acks is in `fdatasync` on another thread, the
//! next is applied; consumers deliver up to the commit watermark. An idle stream holds no
//! thread.

use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use serde_json::json;

use super::api::{self, Call};
use super::config::StreamConfig;
use super::consumer::{AckKind, AckRequest, Outgoing};
use super::errors::ApiError;
use super::replication::{Commit, Local, Replication};
use super::stream::{Applied, Decision, Op, Stream};
use super::time::now_nanos;
use super::trace::{trace_only, trace_outcome};
use crate::config::SyncPolicy;
use crate::server::trace;
use crate::server::{Client, Message};

/// Work for a stream thread.
pub(crate) enum Input {
    /// A message published on one of the stream's subjects.
    Publish(Message),
    /// A stream-bound API request.
    Api(Call, Message),
    /// An ack on `$JS.ACK.<stream>.>`.
    Ack(Message),
    /// A flow-control reply on `$JS.FC.<stream>.>`.
    FlowControl(Message),
    /// Stream info for listings (sent back on the channel).
    Info(SyncSender<serde_json::Value>),
    /// Stream info with every consumer's info in `consumer_detail` (monitoring).
    Detail(SyncSender<serde_json::Value>),
    /// A validated configuration update; the outcome (stream info, or the error) is sent back
    /// once it is durable, so the manager changes its copy only for an accepted update.
    Update(
        Box<StreamConfig>,
        SyncSender<Result<serde_json::Value, ApiError>>,
    ),
    /// Entries its Raft group committed (a replicated stream), by log index, each a batch of
    /// ops (`None`: an entry that did not decode), applied in order; the answers to their
    /// proposers (per entry, one per op: a pub ack, an error, or nothing) are sent back.
    Committed {
        ops: Vec<(u64, Option<Vec<Op>>)>,
        done: SyncSender<Vec<Vec<u8>>>,
    },
    /// A message a mirror or source link brought from its origin.
    Sourced(Box<super::sourcing::Sourced>),
    /// A link's answer to its origin's flow control: sent once what came before is durable.
    SourcedFlow(String),
    /// Where a link resumes: the last origin sequence stored from its source (`None`: the
    /// mirror).
    SourcedUpTo(
        Option<String>,
        tokio::sync::oneshot::Sender<super::stream::Position>,
    ),
    /// Nothing but a look at the stream's role (its group's leadership changed).
    Nudge,
    /// A replicated stream's whole state for its group's snapshot (sent back).
    Snapshot(SyncSender<Result<Vec<u8>, String>>),
    /// Replace a replicated stream's state with a snapshot's (the outcome is sent back).
    Restore(Vec<u8>, SyncSender<Result<(), String>>),
    /// Delete the stream and its data, reply to the given subject, and exit.
    Delete(Option<String>),
    /// Exit (server shutdown).
    Stop,
}

/// What a stream thread needs besides the stream.
pub(crate) struct Ctx {
    pub client: Client,
    pub server_name: String,
    pub sync: SyncPolicy,
    /// Server-wide storage limits and usage.
    pub resources: std::sync::Arc<super::limits::Resources>,
    /// Set for a replicated stream: its Raft group commits, this runner only applies.
    pub replica: Option<super::replica::Role>,
    /// The cluster's name, in a cluster.
    pub cluster_name: Option<String>,
    /// The JetStream domain (named in pub acks).
    pub domain: Option<String>,
    /// The stream's own queue (what its links feed).
    pub tx: super::queue::Tx<Input>,
    /// The runtime its links run on.
    pub runtime: tokio::runtime::Handle,
}

impl Ctx {
    /// The `cluster` object of stream and consumer info: this server leads; in a cluster, its
    /// name; for a replicated stream, the other replicas and how far behind they are.
    pub fn cluster_json(&self) -> serde_json::Value {
        let mut v = json!({ "leader": self.server_name });
        if let Some(name) = &self.cluster_name {
            v["name"] = json!(name);
        }
        if let Some(replicas) = self.replica.as_ref().and_then(|r| r.replicas_json()) {
            v["replicas"] = replicas;
        }
        v
    }
}

const MAX_BATCH: usize = 4096;
/// How often a stream whose store failed tries to reopen it.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// What a batch sends once it is durable.
pub(crate) struct Reply {
    to: String,
    body: Vec<u8>,
    kind: Kind,
}

/// What becomes of a reply when the batch could not be made durable.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A pub ack or an API response: turned into a store error.
    Answer,
    /// An AckSync confirmation or an advisory: not sent (the client retries its ack).
    Confirm,
}

/// The replies of one batch.
#[derive(Default)]
pub(crate) struct Replies(Vec<Reply>);

impl Replies {
    /// A pub ack or API response.
    pub fn answer(&mut self, to: String, body: Vec<u8>) {
        self.0.push(Reply {
            to,
            body,
            kind: Kind::Answer,
        });
    }

    /// Something only sent if the batch became durable.
    pub fn confirm(&mut self, to: String, body: Vec<u8>) {
        self.0.push(Reply {
            to,
            body,
            kind: Kind::Confirm,
        });
    }

    /// The batch is not durable: every answer becomes `err`, confirmations are dropped.
    fn fail(&mut self, err: &ApiError) {
        let body = serde_json::to_vec(&json!({ "error": err })).unwrap_or_default();
        self.0.retain(|r| r.kind == Kind::Answer);
        for r in &mut self.0 {
            r.body = body.clone();
        }
    }

    /// Drops the confirmations (an AckSync whose state could not be made durable).
    fn drop_confirms(&mut self) {
        self.0.retain(|r| r.kind == Kind::Answer);
    }

    /// Sends every reply now, in one write per connection.
    pub fn send_now(self, client: &Client) {
        if self.0.is_empty() {
            return;
        }
        let mut batch = client.batch();
        for r in self.0 {
            batch.publish(&r.to, None, None, &r.body);
        }
    }

    /// What they answered was not made durable: answers become `err`, confirmations are
    /// dropped, and the rest is sent.
    pub fn refuse(mut self, err: &ApiError, client: &Client) {
        self.fail(err);
        self.send_now(client);
    }
}

/// One stream and what its loop keeps between batches. [`drive`] feeds it batches; each
/// [`Runner::step`] runs on a blocking thread (it appends, fsyncs and writes files), so a stream
/// holds no OS thread while it is idle.
pub(crate) struct Runner {
    stream: Stream,
    ctx: Ctx,
    /// The commit seam (the single node's: the store, synced).
    repl: Box<dyn Replication>,
    /// A batch whose commit is under way on another thread: applied, not yet answered.
    inflight: Option<(Batch, Commit)>,
    /// The commit watermark: the last sequence committed (consumers deliver up to it).
    committed: u64,
    last_sync: Instant,
    unsynced: bool,
    needs_reopen: bool,
    last_reopen: Instant,
    storage: super::config::Storage,
    stored_bytes: i64,
    /// A replicated stream's runner: whether it acts as the leader (see [`Runner::follow_role`]).
    leading: bool,
    /// Inputs waiting for a quiesced leader's lease.
    parked: super::replica::Parked,
    /// The links copying from the mirror's or sources' origins (where the stream leads).
    links: super::sourcing::link::Links,
}

/// What one batch produced, before it is sent.
#[derive(Default)]
struct Batch {
    replies: Replies,
    out: Vec<Outgoing>,
    mutated: bool,
    /// Something other than publishes and plain acks came in (an API call, an AckSync, an
    /// update, a stop): the batch is committed before the next one is applied.
    barrier: bool,
    /// Its commit (or the one before it) failed: every answer is this error.
    failed: Option<ApiError>,
    /// An AckSync waits: the journal is fsynced before it is confirmed.
    confirm_acks: bool,
    exit: Option<Option<String>>,
    updates: Vec<(Answer, Result<serde_json::Value, ApiError>)>,
}

/// Where the outcome of a configuration update goes.
type Answer = SyncSender<Result<serde_json::Value, ApiError>>;

/// How long a stream with no consumers and no timers waits for input before it looks again.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// How long a stream stays on its blocking thread waiting for more input before it goes back
/// to awaiting (and frees the thread).
const LINGER: Duration = Duration::from_millis(2);

/// How often a runner with parked input looks whether its lease is back.
const PARKED_POLL: Duration = Duration::from_millis(2);

/// Receives batches for `runner` until the stream is deleted, stopped or its queue closes.
/// While input keeps arriving the stream stays on its blocking thread, batch after batch (as a
/// dedicated thread would, lingering [`LINGER`] for more); once its queue stays empty it goes
/// back to awaiting, holding no thread.
pub(crate) async fn drive(runner: Runner, rx: super::queue::Rx<Input>) {
    let (mut runner, mut rx) = (runner, rx);
    loop {
        let mut batch = Vec::with_capacity(64);
        match tokio::time::timeout(runner.next_wait(), rx.recv()).await {
            Ok(Some(i)) => batch.push(i),
            Ok(None) => batch.push(Input::Stop),
            Err(_) => {}
        }
        drain(&mut rx, &mut batch);
        let stepped = tokio::task::spawn_blocking(move || {
            let mut r = runner;
            loop {
                r = r.step(batch, &mut rx)?;
                batch = Vec::new();
                if r.inflight.is_some() {
                    drain(&mut rx, &mut batch);
                    if !batch.is_empty() {
                        continue;
                    }
                    r.settle();
                }
                match rx.recv_timeout(LINGER.min(r.next_wait())) {
                    Ok(i) => batch.push(i),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if r.timer_due() {
                            continue;
                        }
                        return Some((r, rx));
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => batch.push(Input::Stop),
                }
                drain(&mut rx, &mut batch);
            }
        })
        .await;
        match stepped {
            Ok(Some((r, queue))) => (runner, rx) = (r, queue),
            Ok(None) => return,
            Err(e) => {
                tracing::error!("stream step failed: {e}");
                return;
            }
        }
    }
}

/// Moves what is queued (up to a batch) into `batch`.
fn drain(rx: &mut super::queue::Rx<Input>, batch: &mut Vec<Input>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Some(i) => batch.push(i),
            None => break,
        }
    }
}

impl Runner {
    pub fn new(stream: Stream, ctx: Ctx) -> Runner {
        let storage = stream.config.storage;
        let stored_bytes = stream.store.state().bytes as i64;
        ctx.resources.add_used(storage, stored_bytes);
        // What recovery found is on disk, as far as this node can tell.
        let committed = stream.store.last_seq();
        let latency = ctx.resources.sync_latency.clone();
        Runner {
            stream,
            ctx,
            repl: Box::new(Local { latency }),
            inflight: None,
            committed,
            last_sync: Instant::now(),
            unsynced: false,
            needs_reopen: false,
            last_reopen: Instant::now(),
            storage,
            stored_bytes,
            leading: false,
            parked: Default::default(),
            links: Default::default(),
        }
    }

    /// A replicated stream follows its group's leadership: the new leader takes its consumers
    /// from the committed ones; one that stepped down stops delivering.
    fn follow_role(&mut self) {
        let Some(role) = &self.ctx.replica else {
            return;
        };
        let leading = role.is_leader();
        if leading != self.leading {
            self.leading = leading;
            if leading {
                self.stream.lead();
            } else {
                self.stream.follow();
            }
        }
    }

    /// A replicated stream's consumer ops applied since the last call are proposed; `replies`
    /// (of the batch that made them) wait for their commit. A replica that is not leading
    /// refuses them (its consumer changes are dropped).
    fn propose_consumer_ops(&mut self, replies: Replies) {
        let Some(role) = &self.ctx.replica else {
            replies.send_now(&self.ctx.client);
            return;
        };
        let ops = self.stream.take_outbox();
        if self.leading || ops.is_empty() {
            role.propose_applied(ops, replies, &self.ctx.client);
        } else {
            self.stream.follow();
            replies.refuse(&super::meta::unavailable(), &self.ctx.client);
        }
    }

    /// True when a timer (redelivery, expiry, sync) is due now.
    fn timer_due(&self) -> bool {
        self.next_wait().is_zero()
    }

    /// How long to wait for input before the next timer (redelivery, expiry, sync) is due.
    fn next_wait(&self) -> Duration {
        // Consumers are looked at every second anyway (a push consumer's subscriber may have
        // appeared, a pause may have ended); a stream without any sleeps until input comes (a
        // replica is nudged when its group's leadership changes).
        let idle = if self.stream.consumers.is_empty() {
            IDLE_WAIT
        } else {
            Duration::from_secs(1)
        };
        if !self.parked.is_empty() {
            // Parked input goes on as soon as the woken group's lease is back.
            return PARKED_POLL;
        }
        next_wakeup(&self.stream, self.unsynced, &self.ctx)
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(idle)
    }

    /// Applies one batch, commits it, answers it and delivers; `None` once the stream is gone
    /// (deleted or stopped). With more input `queued` behind it, a batch of publishes and
    /// plain acks is left committing on another thread (see [`Runner::settle`]) while the
    /// next is applied.
    fn step(mut self, inputs: Vec<Input>, queued: &mut super::queue::Rx<Input>) -> Option<Runner> {
        let _span = tracing::info_span!("stream", name = %self.stream.name()).entered();
        if self.needs_reopen && self.last_reopen.elapsed() >= REOPEN_EVERY {
            self.last_reopen = Instant::now();
            self.needs_reopen = !reopen(&mut self.stream);
            // What the store reopened to is on disk.
            self.committed = self.stream.store.last_seq();
        }
        self.follow_role();
        let mut inputs = inputs;
        if let Some(role) = &self.ctx.replica {
            let back = self.parked.release(role);
            inputs.splice(0..0, back);
        }
        let mut b = Batch::default();
        let mut taken = 0;
        for (i, input) in inputs.into_iter().enumerate() {
            self.input(input, &mut b);
            taken += 1;
            // The batch before is answered as soon as its sync is back, not only after this
            // one is applied: its publishers can send more meanwhile.
            if i % 16 == 15 && self.inflight.as_mut().is_some_and(|(_, c)| c.is_done()) {
                if let Some(prev) = self.inflight.take() {
                    self.complete(prev, &mut b);
                }
            }
        }
        // While the batch before is still in its sync, what arrives joins this batch (one
        // sync then covers all of it, as without pipelining).
        while taken < MAX_BATCH && self.inflight.as_mut().is_some_and(|(_, c)| !c.is_done()) {
            match queued.try_recv() {
                Some(input) => {
                    self.input(input, &mut b);
                    taken += 1;
                }
                None => break,
            }
        }
        if let Some(prev) = self.inflight.take() {
            self.complete(prev, &mut b);
        }
        if let Some(err) = b.failed.clone() {
            // Inputs applied after the failure was found are answered with it too.
            fail_batch(&mut b, &err);
        }
        let overlap =
            b.failed.is_none() && !b.barrier && b.mutated && self.ctx.sync == SyncPolicy::Always;
        if overlap && !queued.is_empty() {
            match self.repl.start(&mut self.stream, true) {
                Ok(commit) if commit.is_away() => {
                    tracing::trace!("commit in flight; applying the next batch");
                    self.inflight = Some((b, commit));
                    self.unsynced = false;
                    self.last_sync = Instant::now();
                    self.deliver_committed();
                    return Some(self);
                }
                Ok(commit) => self.finish(commit, &mut b),
                Err(e) => self.fail(e, &mut b),
            }
        }
        let failed = b.failed.is_some() || self.commit(&mut b);
        let exit = b.exit.take();
        self.release(b);
        if let Some(reply) = exit {
            self.ctx
                .resources
                .add_used(self.storage, -self.stored_bytes);
            finish(self.stream, reply, &self.ctx);
            return None;
        }
        if !failed {
            self.deliver_committed();
        }
        self.follow_sources();
        Some(self)
    }

    /// Runs the links the configuration asks for where the stream leads (a single server's
    /// stream always), and none elsewhere.
    fn follow_sources(&mut self) {
        let leads = self.ctx.replica.is_none() || self.leading;
        let cfg = &self.stream.config;
        let wanted = leads.then_some((&cfg.mirror, &cfg.sources));
        let ctx = &self.ctx;
        self.links.follow(&cfg.name, wanted, |spec| {
            let status = self.stream.sourcing.clone();
            let client = ctx.client.clone();
            super::sourcing::link::start(client, ctx.tx.clone(), spec, status, &ctx.runtime)
        });
    }

    /// Completes the batch whose commit is under way (if any), answers it and delivers.
    fn settle(&mut self) {
        if let Some(prev) = self.inflight.take() {
            let mut none = Batch::default();
            self.complete(prev, &mut none);
            self.deliver_committed();
        }
    }

    /// Waits for `prev`'s commit and answers it; if it failed, `next` (applied on top of it)
    /// fails too.
    fn complete(&mut self, (mut prev, commit): (Batch, Commit), next: &mut Batch) {
        match self.repl.finish(&mut self.stream, commit) {
            Ok(seq) => self.committed = self.committed.max(seq),
            Err(e) => {
                self.fail(e, &mut prev);
                let err = ApiError::store_failed("an earlier batch could not be committed");
                fail_batch(next, &err);
            }
        }
        self.release(prev);
    }

    /// Waits for a commit started for `b` (not sent away).
    fn finish(&mut self, commit: Commit, b: &mut Batch) {
        match self.repl.finish(&mut self.stream, commit) {
            Ok(seq) => {
                self.committed = self.committed.max(seq);
                self.unsynced = false;
                self.last_sync = Instant::now();
            }
            Err(e) => self.fail(e, b),
        }
    }

    /// A commit failed: nothing in `b` is durable, so no answer may say it is; the store is
    /// reopened to what is on disk, and what was appended since is forgotten.
    fn fail(&mut self, e: crate::store::StoreError, b: &mut Batch) {
        tracing::error!("sync failed: {e}; the batch is answered with errors");
        fail_batch(b, &ApiError::store_failed(&e.to_string()));
        self.unsynced = false;
        self.last_sync = Instant::now();
        self.last_reopen = Instant::now();
        self.needs_reopen = !reopen(&mut self.stream);
        self.committed = self.stream.store.last_seq();
    }

    /// Sends a committed (or failed) batch's answers and what it published.
    fn release(&mut self, b: Batch) {
        for (done, r) in b.updates {
            let _ = done.try_send(r);
        }
        let now_bytes = self.stream.store.state().bytes as i64;
        self.ctx
            .resources
            .add_used(self.storage, now_bytes - self.stored_bytes);
        self.stored_bytes = now_bytes;
        if let Some(role) = &self.ctx.replica {
            role.stream_bytes.store(
                now_bytes.max(0) as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        if self.ctx.replica.is_some() {
            publish_out(&mut self.ctx.client.batch(), &b.out);
            // A replicated stream answers once its consumer changes are committed.
            self.propose_consumer_ops(b.replies);
            return;
        }
        // One batch: each connection gets its acks and replies in one write.
        let mut batch = self.ctx.client.batch();
        for r in b.replies.0 {
            batch.publish(&r.to, None, None, &r.body);
        }
        publish_out(&mut batch, &b.out);
    }

    /// Timers, expiry and the consumers' deliveries (up to the commit watermark), then the
    /// journal of what they handed out.
    fn deliver_committed(&mut self) {
        let committed = match self.ctx.sync {
            SyncPolicy::Always => self.committed,
            // Without a sync per batch, whatever is applied is as committed as it gets.
            _ => u64::MAX,
        };
        let mut out = Vec::new();
        if housekeeping(&mut self.stream, &self.ctx, &mut out, committed) {
            self.committed = self.committed.max(self.stream.store.last_seq());
        }
        publish_out(&mut self.ctx.client.batch(), &out);
        if self.ctx.replica.is_some() {
            self.propose_consumer_ops(Replies::default());
        }
        // What the pumps handed out is written at once (it survives kill -9); it is fsynced
        // with the next batch that syncs.
        if let Err(e) = self.stream.write_journal(false) {
            tracing::error!("consumer journal: {e}");
        }
    }

    /// Applies one input to the stream.
    fn input(&mut self, input: Input, b: &mut Batch) {
        let input = match &self.ctx.replica {
            Some(role) => match self.parked.park(role, input) {
                Some(input) => input,
                None => return,
            },
            None => input,
        };
        let (stream, ctx) = (&mut self.stream, &self.ctx);
        let input = match input {
            Input::Publish(mut m) => {
                stream.take_in(&mut m);
                if m.trace.is_traced() && traced(stream, &mut m, ctx, &mut b.replies) {
                    return;
                }
                Input::Publish(m)
            }
            other => other,
        };
        match input {
            Input::Publish(m) if ctx.replica.is_some() => {
                if let Some(role) = &ctx.replica {
                    let domain = ctx.domain.as_deref();
                    super::replica::propose_publish(stream, role, m, &mut b.replies, domain);
                }
            }
            Input::Committed { ops, done } => {
                let domain = ctx.domain.as_deref();
                let leads = ctx.replica.as_ref().is_some_and(|r| r.is_leader());
                let republish = leads.then_some(&mut b.out);
                let cluster = ctx.cluster_json();
                let answers =
                    super::replica::apply_committed(stream, ops, &cluster, domain, republish);
                b.mutated = true;
                let _ = done.try_send(answers);
            }
            Input::Api(Call::MsgGet, m)
                if ctx.replica.as_ref().is_some_and(|r| !r.lease.holds()) =>
            {
                // A read from a replica without the read lease could be stale.
                b.barrier = true;
                if let Some(reply) = m.reply {
                    let err = super::meta::unavailable();
                    ctx.resources.api.error();
                    b.replies.answer(reply, api::response("error", Err(err)));
                }
            }
            Input::Api(call, m)
                if !matches!(call, Call::ConsumerNext(_))
                    && ctx.replica.as_ref().is_some_and(|r| !r.is_leader()) =>
            {
                // The group's leader that has not yet applied everything committed before its
                // term (or a replica handing its leadership on): its state may be stale. (A
                // pull request goes on: it is answered with the pull statuses clients expect.)
                b.barrier = true;
                if let Some(reply) = m.reply {
                    let err = super::meta::unavailable();
                    ctx.resources.api.error();
                    b.replies.answer(reply, api::response("error", Err(err)));
                }
            }
            Input::Api(call, m) if ctx.replica.is_some() && super::replica::proposed(&call) => {
                b.barrier = true;
                if let Some(role) = &ctx.replica {
                    super::replica::propose_api(stream, role, &call, m, &mut b.replies);
                }
            }
            Input::Publish(m) => {
                if ctx.resources.exhausted(self.storage) {
                    refuse(stream, &m, &mut b.replies);
                } else {
                    let domain = ctx.domain.as_deref();
                    b.mutated |= publish(stream, m, &mut b.replies, &mut b.out, domain);
                }
            }
            Input::Api(call, m) => {
                b.barrier = true;
                // A new or changed consumer is on disk before it is acknowledged (as on
                // nats-server), so a restart right after finds it (see `commit`).
                let deleted = match &call {
                    Call::ConsumerDelete(name) => Some(name.clone()),
                    _ => None,
                };
                let creates = matches!(call, Call::ConsumerCreate { .. });
                if matches!(call, Call::ConsumerInfo(_) | Call::ConsumerList) {
                    refresh_push_bound(stream, &ctx.client);
                }
                let r = api::handle(
                    stream,
                    call,
                    m.reply.as_deref(),
                    &m.payload,
                    &ctx.cluster_json(),
                    &mut b.out,
                );
                b.mutated |= r.mutated;
                if let Some(body) = &r.body {
                    ctx.resources.api.answered(body);
                    consumer_advisory(&ctx.client, stream.name(), body, creates, deleted);
                }
                if let (Some(body), Some(reply)) = (r.body, m.reply) {
                    b.replies.answer(reply, body);
                }
            }
            Input::Ack(m) => {
                // An AckSync (ack sent as a request) is confirmed only once it is durable.
                b.confirm_acks |= m.reply.is_some();
                b.barrier |= m.reply.is_some();
                b.mutated |= ack(stream, m, &mut b.out, &mut b.replies);
            }
            Input::FlowControl(m) => {
                if let Some(name) = m.subject.split('.').nth(3) {
                    if let Some(c) = stream.consumers.get_mut(name) {
                        c.on_flow_control(&m.subject);
                    }
                }
            }
            Input::Info(tx) => {
                b.barrier = true;
                let _ = tx.try_send(api::stream_info(stream, &ctx.cluster_json()));
            }
            Input::Detail(tx) => {
                b.barrier = true;
                let cluster = ctx.cluster_json();
                let mut info = api::stream_info(stream, &cluster);
                let consumers: Vec<serde_json::Value> = stream
                    .consumers
                    .values()
                    .map(|c| api::consumer_info(stream, c, &cluster))
                    .collect();
                info["consumer_detail"] = serde_json::json!(consumers);
                let _ = tx.try_send(info);
            }
            Input::Update(cfg, done) if ctx.replica.is_some() => {
                // Through the group: every replica applies it at the same place in the log.
                match (api::check_update(&stream.config, &cfg), &ctx.replica) {
                    (Err(e), _) => {
                        let _ = done.try_send(Err(e));
                    }
                    (Ok(()), Some(role)) => role.propose_update(*cfg, done),
                    (Ok(()), None) => {}
                }
            }
            Input::Update(cfg, done) => {
                b.barrier = true;
                let r = api::update(stream, *cfg)
                    .map(|_| api::stream_info(stream, &ctx.cluster_json()));
                b.mutated |= r.is_ok();
                b.updates.push((done, r));
            }
            Input::Sourced(s) if ctx.replica.is_some() => {
                if let Some(role) = &ctx.replica {
                    super::replica::propose_sourced(stream, role, *s);
                }
            }
            Input::Sourced(s) => b.mutated |= sourced(stream, *s, &mut b.out),
            Input::SourcedFlow(reply) => b.replies.confirm(reply, Vec::new()),
            Input::SourcedUpTo(source, done) => {
                let _ = done.send(stream.sourced_up_to(source.as_deref()));
            }
            // The step that took it looked at the role already.
            Input::Nudge => {}
            Input::Snapshot(done) => {
                let _ = done.try_send(stream.export().map_err(|e| e.to_string()));
            }
            Input::Restore(bytes, done) => {
                b.barrier = true;
                b.mutated = true;
                let restored = stream.import(&bytes);
                if let Err(e) = &restored {
                    tracing::error!("stream snapshot not restored: {e}");
                }
                // Its consumers are the snapshot's: a leader takes them up afresh.
                self.leading = false;
                self.committed = stream.store.last_seq();
                let _ = done.try_send(restored.map_err(|e| e.to_string()));
            }
            Input::Delete(reply) => {
                b.barrier = true;
                // Waiting pull requests hear that their consumer went with the stream (not
                // when only this server stops hosting it: no one asked, the stream lives on).
                if reply.is_some() {
                    for c in stream.consumers.values_mut() {
                        c.on_delete(&mut b.out);
                    }
                }
                b.exit = Some(reply);
            }
            Input::Stop => {
                b.barrier = true;
                b.exit = b.exit.take().or(Some(None));
            }
        }
    }

    /// Commits the batch (group commit) and waits for it; on failure its answers become
    /// errors and the store is reopened. Returns whether it failed.
    fn commit(&mut self, b: &mut Batch) -> bool {
        self.unsynced |= b.mutated;
        let mut synced = false;
        if self.unsynced && sync_due(self.ctx.sync, self.last_sync) {
            synced = true;
            match self.repl.start(&mut self.stream, false) {
                Ok(commit) => self.finish(commit, b),
                Err(e) => self.fail(e, b),
            }
            if b.failed.is_some() {
                return true;
            }
        }
        // A consumer created or changed (create, update, pause) is snapshotted before the
        // answer; only those marked dirty are written.
        if let Err(e) = self.stream.persist_consumers() {
            tracing::error!("consumer snapshot not durable: {e}");
        }
        self.stream.save_sourced();
        // Acks and deliveries are in the journal, written with every batch (they survive
        // kill -9). It is fsynced when an AckSync waits on it, and with the store's interval
        // sync; with `sync: always` a plain ack lost to power failure is redelivered.
        let interval = matches!(self.ctx.sync, SyncPolicy::Interval(_));
        if let Err(e) = self
            .stream
            .write_journal(b.confirm_acks || (synced && interval))
        {
            tracing::error!("consumer journal not durable: {e}; AckSync not confirmed");
            b.replies.drop_confirms();
        }
        false
    }
}

/// Publishes deliveries and other outgoing messages in one client batch.
fn publish_out(batch: &mut crate::server::inproc::Batch<'_>, out: &[Outgoing]) {
    for o in out {
        batch.publish_routed(
            &o.to,
            &o.subject,
            o.reply.as_deref(),
            o.headers.as_deref(),
            &o.payload,
        );
    }
}

/// A batch that cannot be committed: every answer becomes `err`, confirmations, updates'
/// outcomes and what it would have published are dropped or failed.
fn fail_batch(b: &mut Batch, err: &ApiError) {
    b.replies.fail(err);
    for (_, r) in &mut b.updates {
        *r = Err(err.clone());
    }
    b.out.clear();
    b.failed = Some(err.clone());
}

/// Reopens a stream's store after a failure; true once it is usable again.
fn reopen(stream: &mut Stream) -> bool {
    match stream.recover() {
        Ok(()) => {
            tracing::warn!("store reopened; last_seq {}", stream.store.last_seq());
            true
        }
        Err(e) => {
            tracing::error!("store can't be reopened yet: {e}");
            false
        }
    }
}

fn sync_due(policy: SyncPolicy, last: Instant) -> bool {
    match policy {
        SyncPolicy::Always => true,
        SyncPolicy::Interval(d) => last.elapsed() >= d,
        SyncPolicy::Never => false,
    }
}

fn next_wakeup(stream: &Stream, unsynced: bool, ctx: &Ctx) -> Option<Instant> {
    let mut next = stream
        .consumers
        .values()
        .filter_map(|c| c.next_deadline())
        .min();
    let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
    if stream.config.max_age > 0
        || stream.next_ttl().is_some()
        || stream.next_schedule().is_some()
        || stream
            .consumers
            .values()
            .any(|c| c.config.durable_name.is_none())
    {
        consider(Instant::now() + Duration::from_millis(250));
    }
    if unsynced {
        if let SyncPolicy::Interval(d) = ctx.sync {
            consider(Instant::now() + d);
        }
    }
    next
}

/// A traced publish before it goes on: a trace-only one is checked here (by the leader of a
/// replicated stream) and goes no further (true); another is stored with its trace disabled,
/// so its deliveries are not traced again.
#[cold]
fn traced(stream: &mut Stream, m: &mut Message, ctx: &Ctx, replies: &mut Replies) -> bool {
    if m.trace.only() {
        let leads = ctx
            .replica
            .as_ref()
            .is_none_or(|r| r.is_leader() && r.lease.holds());
        if leads {
            let tag = std::mem::take(&mut m.trace);
            trace_only(stream, m, &tag, replies);
        }
        return true;
    }
    if let Some(h) = &m.headers {
        let disabled = super::headers::replace(h, trace::DEST, trace::DISABLED);
        m.headers = Some(disabled.into());
    }
    false
}

/// Handles one captured publish; returns whether the stream changed.
fn publish(
    stream: &mut Stream,
    mut m: Message,
    replies: &mut Replies,
    out: &mut Vec<Outgoing>,
    domain: Option<&str>,
) -> bool {
    if let Some(id) = super::stream::batch_id(m.headers.as_deref()).map(str::to_string) {
        return publish_batch(stream, &id, &m, (replies, out), domain);
    }
    let tag = std::mem::take(&mut m.trace);
    let no_interest = tag.is_traced() && stream.uninterested(&m.subject);
    let decision = stream.check_publish(&m.subject, m.headers.as_deref(), &m.payload);
    let result = match decision {
        Ok(Decision::Duplicate(seq)) => Ok(Applied::Duplicate(seq)),
        Ok(Decision::Append(op)) => stream.apply(op),
        Err(e) => Err(e),
    };
    if tag.is_traced() {
        trace_outcome(&tag, &m, no_interest, &result);
    }
    let no_ack = stream.config.no_ack;
    let answer = |replies: &mut Replies, body: Vec<u8>| {
        if let (Some(reply), false) = (&m.reply, no_ack) {
            replies.answer(reply.clone(), body);
        }
    };
    match result {
        Ok(Applied::Duplicate(seq)) => {
            answer(replies, stream.pub_ack(seq, true, domain));
            false
        }
        Ok(Applied::Stored(seq)) => {
            if let Some(r) = stream.republish(seq, &m) {
                out.push(r);
            }
            answer(replies, stream.pub_ack(seq, false, domain));
            true
        }
        Ok(_) => false,
        Err(e) => {
            answer(replies, stream.pub_error(&e));
            false
        }
    }
}

/// Stores what a mirror or source link brought (see `stream::sourced`); returns whether the
/// stream changed.
fn sourced(stream: &mut Stream, s: super::sourcing::Sourced, out: &mut Vec<Outgoing>) -> bool {
    let result = match stream.sourced_op(&s) {
        Ok(Some(op)) => stream.apply(op),
        Ok(None) => return false,
        Err(e) => Err(e),
    };
    match result {
        Ok(Applied::Stored(seq)) => {
            if let Some(r) = stream.republish(seq, &s.message) {
                out.push(r);
            }
            true
        }
        Ok(_) => false,
        Err(e) => {
            s.refused(stream.name(), &e);
            false
        }
    }
}

/// One message of an atomic batch: staged (answered with an empty message), or the commit,
/// whose appends apply all together in this runner batch (one fdatasync) and whose answer is
/// the last one's pub ack with the batch id and size; or refused.
fn publish_batch(
    stream: &mut Stream,
    id: &str,
    m: &Message,
    (replies, out): (&mut Replies, &mut Vec<Outgoing>),
    domain: Option<&str>,
) -> bool {
    let no_ack = stream.config.no_ack;
    let answer = |replies: &mut Replies, body: Vec<u8>| {
        if let (Some(reply), false) = (&m.reply, no_ack) {
            replies.answer(reply.clone(), body);
        }
    };
    let hdrs = m.headers.as_deref().unwrap_or_default();
    let staged = stream.stage_batch(id, &m.subject, hdrs, &m.payload);
    let (ops, count) = match staged {
        Ok(super::stream::Staging::Staged) => {
            answer(replies, Vec::new());
            return false;
        }
        Ok(super::stream::Staging::Commit(ops, count)) => (ops, count),
        Err(e) => {
            answer(replies, stream.pub_error(&e));
            return false;
        }
    };
    let mut stored = Vec::with_capacity(ops.len());
    for op in ops {
        // What republish sees of each message (its ops carry what is stored).
        let copy = op.appended();
        match stream.apply(op) {
            Ok(Applied::Stored(seq)) => stored.push((seq, copy)),
            Ok(_) => {}
            Err(e) => {
                // Checked as a whole beforehand, so only a store failure gets here: what was
                // stored of the batch is deleted again (before any consumer saw it).
                tracing::error!(stream = %stream.name(), "atomic batch {id}: {}", e.description);
                for (seq, _) in stored {
                    let _ = stream.apply(Op::Delete { seq });
                }
                answer(replies, stream.pub_error(&e));
                return true;
            }
        }
    }
    let last = stored.last().map_or(0, |(seq, _)| *seq);
    for (seq, copy) in &stored {
        if let Some(r) = copy.as_ref().and_then(|m| stream.republish(*seq, m)) {
            out.push(r);
        }
    }
    let mut ack = json!({ "stream": stream.name(), "seq": last, "batch": id, "count": count });
    if let Some(d) = domain {
        ack["domain"] = json!(d);
    }
    answer(replies, serde_json::to_vec(&ack).unwrap_or_default());
    true
}

/// Whether each push consumer's deliver subject has interest now (consumer info's
/// `push_bound`).
fn refresh_push_bound(stream: &mut Stream, client: &crate::server::Client) {
    for c in stream.consumers.values_mut() {
        if let Some(d) = &c.config.deliver_subject {
            c.push_bound = client.has_interest(d);
        }
    }
}

/// Answers a publish the server has no room for (`10023`, as nats-server).
fn refuse(stream: &Stream, m: &Message, replies: &mut Replies) {
    if let (Some(reply), false) = (&m.reply, stream.config.no_ack) {
        let body = json!({ "error": ApiError::insufficient_resources(), "stream": stream.name(), "seq": 0 });
        replies.answer(reply.clone(), serde_json::to_vec(&body).unwrap_or_default());
    }
}

/// Handles `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`: acks and
/// terms are `Ack` ops; NAK and progress only move the leader's timers. Returns whether the
/// store changed (retention removed messages).
fn ack(stream: &mut Stream, m: Message, out: &mut Vec<Outgoing>, replies: &mut Replies) -> bool {
    let tokens: Vec<&str> = m.subject.split('.').collect();
    if tokens.len() < 9 {
        return false;
    }
    let (name, sseq) = (tokens[3], tokens[5].parse::<u64>().unwrap_or(0));
    // No such consumer, or one that takes no acks: nats-server has no subscription on its ack
    // subject, so an ack sent as a request hears "no responders".
    let Some(c) = stream
        .consumers
        .get_mut(name)
        .filter(|c| c.config.ack_policy != super::config::AckPolicy::None)
    else {
        if let Some(reply) = &m.reply {
            out.push(super::consumer::no_responders(reply));
        }
        return false;
    };
    c.touch();
    let request = AckRequest::parse(&m.payload);
    let kind = match &request {
        AckRequest::Ack | AckRequest::Next(_) => AckKind::Ack,
        AckRequest::Term(_) => AckKind::Term,
        AckRequest::Nak(delay) => {
            c.nak(sseq, *delay);
            let mut adv = super::advisory::typed("nak");
            adv["stream"] = json!(stream.config.name);
            adv["consumer"] = json!(name);
            adv["consumer_seq"] = json!(tokens[6].parse::<u64>().unwrap_or(0));
            adv["stream_seq"] = json!(sseq);
            adv["deliveries"] = json!(tokens[4].parse::<u64>().unwrap_or(0));
            let subj = format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED.{}.{name}",
                stream.config.name
            );
            replies.confirm(subj, serde_json::to_vec(&adv).unwrap_or_default());
            return confirm(&m, replies);
        }
        AckRequest::Progress => {
            c.progress(sseq);
            return confirm(&m, replies);
        }
        AckRequest::Unknown => return confirm(&m, replies),
    };
    let op = Op::Ack {
        consumer: name.to_string(),
        seq: sseq,
        kind,
    };
    let (settled, removed) = match stream.apply(op) {
        Ok(Applied::Acked { settled, removed }) => (settled, removed),
        Ok(_) => (Vec::new(), false),
        Err(e) => {
            tracing::error!("ack: {}", e.description);
            return false;
        }
    };
    if let Some(c) = stream.consumers.get_mut(name) {
        c.settle(&settled);
        if kind == AckKind::Ack && !settled.is_empty() && sampled(c.config.sample_freq.as_deref()) {
            // `ts` is when the message was delivered: the ack time is since then.
            let delivered_at = tokens[7].parse::<i64>().unwrap_or(0);
            let mut metric = super::advisory::typed("consumer_ack");
            metric["type"] = json!("io.nats.jetstream.metric.v1.consumer_ack");
            metric["stream"] = json!(stream.config.name);
            metric["consumer"] = json!(name);
            metric["consumer_seq"] = json!(tokens[6].parse::<u64>().unwrap_or(0));
            metric["stream_seq"] = json!(sseq);
            metric["ack_time"] = json!(now_nanos().saturating_sub(delivered_at).max(0));
            metric["deliveries"] = json!(tokens[4].parse::<u64>().unwrap_or(0));
            let subj = format!(
                "$JS.EVENT.METRIC.CONSUMER.ACK.{}.{name}",
                stream.config.name
            );
            replies.confirm(subj, serde_json::to_vec(&metric).unwrap_or_default());
        }
    }
    match request {
        AckRequest::Next(body) => {
            if let Some(reply) = &m.reply {
                let store = stream.store.as_ref();
                if let Some(c) = stream.consumers.get_mut(name) {
                    if let Some(st) = c.add_pull(reply.clone(), body.as_bytes(), store) {
                        out.push(st);
                    }
                }
            }
        }
        AckRequest::Term(reason) if !settled.is_empty() => {
            let adv = json!({
                "type": "io.nats.jetstream.advisory.v1.terminated", "id": nuid::next().to_string(),
                "stream": stream.name(), "consumer": name, "consumer_seq": tokens[6].parse::<u64>().unwrap_or(0),
                "stream_seq": sseq, "deliveries": tokens[4].parse::<u64>().unwrap_or(0), "reason": reason,
                "timestamp": super::time::rfc3339(now_nanos()),
            });
            let subj = format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{}.{name}",
                stream.name()
            );
            replies.confirm(subj, serde_json::to_vec(&adv).unwrap_or_default());
            confirm(&m, replies);
        }
        _ => {
            confirm(&m, replies);
        }
    }
    removed
}

/// Confirms an AckSync (an empty reply, sent once the batch is durable); returns false (the
/// store did not change).
fn confirm(m: &Message, replies: &mut Replies) -> bool {
    if let Some(reply) = &m.reply {
        replies.confirm(reply.clone(), Vec::new());
    }
    false
}

/// Expiry and due message schedules, then each consumer's deliveries up to `committed`; true
/// if expiry or a schedule changed the store and synced it (which commits everything applied
/// so far).
fn housekeeping(stream: &mut Stream, ctx: &Ctx, out: &mut Vec<Outgoing>, committed: u64) -> bool {
    let synced = if let Some(role) = &ctx.replica {
        // A replicated stream expires through its group: the leader proposes what is due.
        for op in role.expiry_due(stream, now_nanos()) {
            stream.propose(op);
        }
        super::replica::propose_schedules(stream, role);
        false
    } else {
        let fired = fire_schedules(stream, out);
        expire(stream) || (fired && sync(stream))
    };
    let names: Vec<String> = stream.consumers.keys().cloned().collect();
    let mut gone = Vec::new();
    for name in names {
        let store = stream.store.as_ref();
        let Some(c) = stream.consumers.get_mut(&name) else {
            continue;
        };
        let push_active = c
            .config
            .deliver_subject
            .as_deref()
            .is_some_and(|d| ctx.client.has_interest(d));
        if push_active || c.num_waiting() > 0 {
            c.last_active = Instant::now();
        }
        let target = (push_active, committed);
        let (exceeded, deliveries) = c.pump(&stream.config.name, store, target, out);
        if !deliveries.is_empty(c.state()) {
            let op = Op::Delivered {
                consumer: name.clone(),
                deliveries,
            };
            if let Err(e) = stream.apply(op) {
                tracing::error!(consumer = %name, "deliveries: {}", e.description);
            }
        }
        let Some(c) = stream.consumers.get_mut(&name) else {
            continue;
        };
        for ex in exceeded {
            let adv = json!({
                "type": "io.nats.jetstream.advisory.v1.max_deliver", "id": nuid::next().to_string(),
                "stream": stream.config.name, "consumer": name, "stream_seq": ex.stream_seq,
                "deliveries": ex.deliveries, "timestamp": super::time::rfc3339(now_nanos()),
            });
            let subj = format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{name}",
                stream.config.name
            );
            ctx.client.publish_sync(
                &subj,
                None,
                None,
                &serde_json::to_vec(&adv).unwrap_or_default(),
            );
        }
        let threshold = c.config.inactive_threshold;
        if threshold > 0
            && c.last_active.elapsed() >= Duration::from_nanos(threshold as u64)
            && (c.config.durable_name.is_none())
        {
            gone.push(name);
        }
    }
    for name in gone {
        tracing::debug!(consumer = %name, "ephemeral consumer inactive; deleted");
        let _ = stream.apply(Op::ConsumerDelete { name });
    }
    synced
}

/// Expiry on a single server; true if it changed the store and synced it.
fn expire(stream: &mut Stream) -> bool {
    match stream.expire(now_nanos()) {
        Ok(true) => sync(stream),
        Ok(false) => false,
        Err(e) => {
            tracing::error!("expiry: {}", e.description);
            false
        }
    }
}

/// Syncs what housekeeping changed; true if it is durable now.
fn sync(stream: &mut Stream) -> bool {
    match stream.store.sync() {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(stream = %stream.name(), "sync after expiry or schedules failed: {e}");
            false
        }
    }
}

/// Publishes what the schedules due now fire on a single server (as a publish without a
/// reply); true if any was stored.
fn fire_schedules(stream: &mut Stream, out: &mut Vec<Outgoing>) -> bool {
    let mut stored = false;
    for m in stream.due_schedules(now_nanos()) {
        let result = match stream.check_scheduled(&m) {
            Ok(Decision::Append(op)) => stream.apply(op),
            Ok(Decision::Duplicate(seq)) => Ok(Applied::Duplicate(seq)),
            Err(e) => Err(e),
        };
        match result {
            Ok(Applied::Stored(seq)) => {
                stored = true;
                out.extend(stream.republish(seq, &m));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(stream = %stream.name(), subject = %m.subject, "scheduled message refused: {}", e.description);
            }
        }
    }
    stored
}

fn finish(stream: Stream, reply: Option<String>, ctx: &Ctx) {
    let mut stream = stream;
    match reply {
        Some(reply) => {
            let name = stream.name().to_string();
            let dir = stream.dir.clone();
            // The store goes whole, with its tree in the shared sled.
            let store =
                std::mem::replace(&mut stream.store, Box::new(crate::store::MemStore::new()));
            let result = store.delete_all();
            drop(stream);
            if let Some(dir) = dir {
                let _ = std::fs::remove_dir_all(&dir);
            }
            let ok = result.is_ok();
            let body = api::response(
                "stream_delete",
                result
                    .map(|_| json!({ "success": true }))
                    .map_err(|e| super::errors::ApiError::store_failed(&e.to_string())),
            );
            tracing::info!(stream = %name, "stream deleted");
            ctx.resources.api.answered(&body);
            ctx.client.publish_sync(&reply, None, None, &body);
            super::advisory::after_response(&ctx.client, "stream_delete", &name, ok);
        }
        None => {
            match stream.store.checkpoint() {
                Ok(()) => stream.save_derived(),
                Err(e) => tracing::error!("checkpoint at shutdown failed: {e}"),
            }
            if let Err(e) = stream.compact_journal() {
                tracing::error!("consumer snapshots at shutdown: {e}");
            }
        }
    }
}

/// The advisory of a consumer created or deleted through the API (`body` is the answer).
fn consumer_advisory(
    client: &Client,
    stream: &str,
    body: &[u8],
    created: bool,
    deleted: Option<String>,
) {
    use super::advisory::{consumer_action, Action};
    if body.starts_with(b"{\"error\"") || !(created || deleted.is_some()) {
        return;
    }
    if let Some(name) = deleted {
        return consumer_action(client, stream, &name, Action::Delete);
    }
    let info: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    if let Some(name) = info["name"].as_str() {
        consumer_action(client, stream, name, Action::Create);
    }
}

/// Whether to send this ack's metric: `sample_freq` is a percentage (`"30%"` or `"30"`).
fn sampled(freq: Option<&str>) -> bool {
    use rand::Rng;
    let pct: i32 = freq
        .map(|f| f.trim().trim_end_matches('%'))
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    pct >= 100 || (pct > 0 && rand::rng().random_range(0..100) < pct)
}
