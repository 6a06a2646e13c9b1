//! Replicated streams (`num_replicas` > 1): each is an openraft group over the servers the
//! meta leader placed it on, whose entries are the stream's ops (`stream::codec`).
//!
//! - The group leader's runner checks a publish against the applied state (dedup, expected-*
//!   headers, limits: the early answer) and proposes its `Append` with sequence 0 ("the next
//!   one when it applies") through [`Role`]; the proposer task submits it in arrival order and,
//!   once it is committed and applied, sends the applied outcome as the pub ack. A pub ack thus
//!   means a quorum has the entry fsynced in its Raft log.
//! - Every replica applies committed entries in log order: [`StreamMachine`] hands each to the
//!   stream's runner (`Input::Committed`), which applies it with `apply_at(index, ..)`, the
//!   same deterministic path a single server uses, and answers with the outcome.
//! - The store of a replicated stream is derived state: it is not fsynced, and a replica that
//!   starts rebuilds it from its group's last snapshot (the whole stream, `stream::snapshot`)
//!   and the log above it. A snapshot is built once the log outgrew twice the stream
//!   ([`snapshot_when_due`]); openraft then purges the log below it (keeping 1,000 entries),
//!   and sends it to a replica that lags behind the purge.
//! - Consumers are served by the leader: their ops (create, delete, deliveries, acks) apply
//!   to its consumers at once and are proposed after each runner batch
//!   ([`Proposal::Applied`]); the batch's replies (the create's answer, an AckSync's
//!   confirmation) go out only once the group committed them. Every replica applies them to
//!   its committed consumers, which a new leader starts from (what the old leader handed out
//!   but did not commit is delivered again).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::api::Call;
use super::errors::ApiError;
use super::queue::Tx;
use super::runner::{Input, Replies};
use super::stream::{codec, Applied, Decision, Op, Stream};
use crate::raft::{Group, GroupError, Machine, MachineError, Node, NodeId};
use crate::server::{Client, Message};

/// What a runner hands its group to propose.
pub(crate) enum Proposal {
    /// A publish's op; its applied outcome (the pub ack or an error) answers `reply`.
    Publish(Op, Option<String>),
    /// Consumer ops the leader applied already, and the replies of the batch that made them
    /// (API answers, AckSync confirmations), sent only once the ops are committed.
    Applied(Vec<Op>, Replies),
    /// A config update (`UpdateConfig`); the stream info after it applied, or the error,
    /// goes to `done`.
    Update(Op, Updated),
}

/// Where a config update's outcome goes.
pub(crate) type Updated = SyncSender<Result<Value, ApiError>>;

/// How long after the last heartbeat a quorum acknowledged the leader still answers reads
/// from its own state. Followers refuse to vote for another leader for the election timeout
/// maximum (1 s) after they last heard from it, so no other leader can have taken a write
/// before this lease ends (the margin covers the delay of the metrics that report the acks).
const LEASE: Duration = Duration::from_millis(700);

/// The leader proposes expiry at most this often (ms).
const EXPIRY_EVERY_MS: u64 = 200;

/// A leader's read lease: reads answered from this replica's applied state are linearizable
/// while it holds (see [`LEASE`]). Clones share it.
#[derive(Clone, Default)]
pub(crate) struct Lease {
    until: Arc<AtomicU64>,
    /// The runner's "leading" flag.
    leading: Arc<AtomicBool>,
}

impl Lease {
    /// True while this replica leads and a quorum acknowledged it within [`LEASE`].
    pub fn holds(&self) -> bool {
        now_ms() < self.until.load(Ordering::Acquire)
    }

    /// True if this replica leads but its lease lapsed (its group quiesced, or the leader
    /// is cut off): a read must wait for a fresh quorum acknowledgement.
    pub fn lapsed(&self) -> bool {
        self.leading.load(Ordering::Acquire) && !self.holds()
    }

    fn set_until(&self, until_ms: u64) {
        self.until.store(until_ms, Ordering::Release);
    }
}

/// Milliseconds on this process's monotonic clock.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What a replicated stream's runner knows of its group.
pub(crate) struct Role {
    leader: Arc<AtomicBool>,
    /// When the leader last proposed expiry ([`now_ms`]).
    expiry_proposed: AtomicU64,
    /// The read lease (shared with the stream's direct-get handler).
    pub lease: Lease,
    proposals: mpsc::UnboundedSender<Proposal>,
    /// The group, once open (for stream info's replica list).
    group: Arc<OnceLock<Arc<Group<StreamMachine>>>>,
    /// The stream's stored bytes, as the runner last counted them (for the snapshot policy).
    pub stream_bytes: Arc<AtomicU64>,
}

/// The group's ends of a [`Role`], taken by [`Replica::start`].
pub(crate) struct RoleEnds {
    leader: Arc<AtomicBool>,
    lease: Lease,
    proposals: mpsc::UnboundedReceiver<Proposal>,
    group: Arc<OnceLock<Arc<Group<StreamMachine>>>>,
    runner: Tx<Input>,
    stream_bytes: Arc<AtomicU64>,
}

impl Role {
    /// A role (not leading) and the ends its group will drive; `runner` is told when the
    /// leadership changes.
    pub fn new(runner: Tx<Input>) -> (Role, RoleEnds) {
        let leader = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::unbounded_channel();
        let group = Arc::new(OnceLock::new());
        let lease = Lease {
            until: Arc::default(),
            leading: leader.clone(),
        };
        let stream_bytes = Arc::new(AtomicU64::new(0));
        let role = Role {
            leader: leader.clone(),
            expiry_proposed: AtomicU64::new(0),
            lease: lease.clone(),
            proposals: tx,
            group: group.clone(),
            stream_bytes: stream_bytes.clone(),
        };
        (
            role,
            RoleEnds {
                leader,
                lease,
                proposals: rx,
                group,
                runner,
                stream_bytes,
            },
        )
    }

    /// The other replicas as stream info lists them (`name`, `current`, `lag`), on the leader.
    pub fn replicas_json(&self) -> Option<serde_json::Value> {
        let group = self.group.get()?;
        let metrics = group.raft().metrics();
        let m = metrics.borrow();
        let last = m.last_log_index.unwrap_or(0);
        let matched = m.replication.clone().unwrap_or_default();
        let list: Vec<serde_json::Value> = m
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != group.id())
            .map(|(id, node)| {
                let at = matched.get(id).cloned().flatten().map_or(0, |l| l.index);
                json!({
                    "name": node.name,
                    "current": at >= last,
                    "active": 0,
                    "lag": last.saturating_sub(at),
                })
            })
            .collect();
        Some(json!(list))
    }

    /// Wakes a quiesced group (its heartbeats, hence the lease, come back).
    pub fn wake(&self) {
        if let Some(g) = self.group.get() {
            g.wake();
        }
    }

    /// True while this server leads the stream's group (and has applied everything
    /// committed before its term).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// The expiry ops (max_age, message TTLs) due at `now` for the leader to propose: none
    /// on a follower or a leader without its lease, and none again within [`EXPIRY_EVERY_MS`]
    /// (the last proposal may not have applied yet).
    pub fn expiry_due(&self, stream: &Stream, now: i64) -> Vec<Op> {
        let due_ms = self.expiry_proposed.load(Ordering::Acquire) + EXPIRY_EVERY_MS;
        if !self.is_leader() || now_ms() < due_ms {
            return Vec::new();
        }
        let ops = stream.expiry_ops(now);
        if !ops.is_empty() && !self.lease.holds() {
            // A quiesced leader wakes; the expiry is proposed once the lease is back.
            self.wake();
            return Vec::new();
        }
        if !ops.is_empty() {
            self.expiry_proposed.store(now_ms(), Ordering::Release);
        }
        ops
    }

    /// Proposes a config update (checked already) if this replica leads with its lease.
    pub fn propose_update(&self, config: super::config::StreamConfig, done: Updated) {
        if !self.is_leader() || !self.lease.holds() {
            let _ = done.try_send(Err(super::meta::unavailable()));
            return;
        }
        let op = Op::UpdateConfig(Box::new(config));
        if let Err(e) = self.proposals.send(Proposal::Update(op, done)) {
            if let Proposal::Update(_, done) = e.0 {
                let _ = done.try_send(Err(super::meta::unavailable()));
            }
        }
    }

    /// Proposes the consumer ops the leader applied since the last call; `replies` go out
    /// once they are committed. Without ops, the replies go out now.
    pub fn propose_applied(&self, ops: Vec<Op>, replies: Replies, client: &Client) {
        if ops.is_empty() {
            replies.send_now(client);
        } else if let Err(e) = self.proposals.send(Proposal::Applied(ops, replies)) {
            if let Proposal::Applied(_, replies) = e.0 {
                replies.refuse(&super::meta::unavailable(), client);
            }
        }
    }
}

/// The Raft group name of stream `name`: a subject token whatever the stream's name is.
pub(crate) fn group_name(name: &str) -> String {
    format!("S{:016x}", super::meta::node_id_of(name))
}

/// A publish reaching a replica's runner: the leader checks it and proposes it; the others
/// drop it (the leader got it too).
/// The leader proposes what a mirror or source link brought (a source's at the next
/// sequence, a mirror's at its origin's); apply skips what is stored already, so a message a
/// link sends again (its session restarted while earlier ones were in flight) is stored once.
pub(crate) fn propose_sourced(stream: &mut Stream, role: &Role, s: super::sourcing::Sourced) {
    if !role.is_leader() || !role.lease.holds() {
        return;
    }
    match stream.sourced_op(&s) {
        Ok(Some(mut op)) => {
            if let (Op::Append { seq, .. }, Some(_)) = (&mut op, &s.source) {
                *seq = 0;
            }
            let _ = role.proposals.send(Proposal::Publish(op, None));
        }
        Ok(None) => {}
        Err(e) => s.refused(stream.name(), &e),
    }
}

pub(crate) fn propose_publish(
    stream: &mut Stream,
    role: &Role,
    m: Message,
    replies: &mut Replies,
    domain: Option<&str>,
) {
    // Without the read lease its state may be stale (a deposed leader cut off from the
    // others): an early answer (a duplicate, a failed expectation) could be wrong.
    if !role.is_leader() || !role.lease.holds() {
        return;
    }
    let reply = m.reply.clone().filter(|_| !stream.config.no_ack);
    let answer = |replies: &mut Replies, body: Vec<u8>| {
        if let Some(r) = &reply {
            replies.answer(r.clone(), body);
        }
    };
    let decision = stream.check_publish(&m.subject, m.headers.as_deref(), &m.payload);
    if m.trace.is_traced() {
        // What the leader decided is the trace's stream event (an append as proposed).
        let no_interest = stream.uninterested(&m.subject);
        let outcome = match &decision {
            Ok(Decision::Duplicate(seq)) => Ok(Applied::Duplicate(*seq)),
            Ok(Decision::Append(_)) => Ok(Applied::Stored(0)),
            Err(e) => Err(e.clone()),
        };
        super::trace::trace_outcome(&m.trace, &m, no_interest, &outcome);
    }
    match decision {
        Ok(Decision::Duplicate(seq)) => {
            answer(replies, stream.pub_ack(seq, true, domain));
        }
        Ok(Decision::Append(mut op)) => {
            if let Op::Append { seq, .. } = &mut op {
                *seq = 0;
            }
            let _ = role.proposals.send(Proposal::Publish(op, reply));
        }
        Err(e) => answer(replies, stream.pub_error(&e)),
    }
}

/// The leader (with its lease) proposes what the schedules due now fire; each is in flight
/// until its append applies, so it is proposed once.
pub(crate) fn propose_schedules(stream: &mut Stream, role: &Role) {
    if !role.is_leader() || !role.lease.holds() || stream.next_schedule().is_none() {
        return;
    }
    for m in stream.due_schedules(super::time::now_nanos()) {
        match stream.check_scheduled(&m) {
            Ok(Decision::Append(mut op)) => {
                if let Op::Append { seq, .. } = &mut op {
                    *seq = 0;
                }
                let _ = role.proposals.send(Proposal::Publish(op, None));
            }
            Ok(Decision::Duplicate(_)) => {}
            Err(e) => {
                tracing::warn!(stream = %stream.name(), subject = %m.subject, "scheduled message refused: {}", e.description)
            }
        }
    }
}

fn error_body(e: &ApiError) -> Vec<u8> {
    serde_json::to_vec(&json!({ "error": e })).unwrap_or_default()
}

/// Applies committed entries in order; returns, per entry, what each of its ops' proposers
/// is answered (empty: nothing), framed by [`frame_answers`]. The leader's `republish` gets
/// the republished copies of what was stored (followers pass none).
pub(crate) fn apply_committed(
    stream: &mut Stream,
    entries: Vec<(u64, Option<Vec<Op>>)>,
    cluster: &Value,
    domain: Option<&str>,
    mut republish: Option<&mut Vec<super::consumer::Outgoing>>,
) -> Vec<Vec<u8>> {
    entries
        .into_iter()
        .map(|(index, ops)| {
            let Some(ops) = ops else {
                return Vec::new();
            };
            let copies: Vec<Option<Message>> = match (&republish, &stream.config.republish) {
                (Some(_), Some(_)) => ops.iter().map(Op::appended).collect(),
                _ => Vec::new(),
            };
            let kinds: Vec<(bool, bool)> = ops
                .iter()
                .map(|op| {
                    let update = matches!(op, Op::UpdateConfig(_));
                    (update, matches!(op, Op::Append { .. }))
                })
                .collect();
            let outcomes = stream.apply_all_at(index, ops);
            if let Some(out) = republish.as_deref_mut() {
                for (outcome, copy) in outcomes.iter().zip(&copies) {
                    if let (Ok(Applied::Stored(seq)), Some(m)) = (outcome, copy) {
                        out.extend(stream.republish(*seq, m));
                    }
                }
            }
            let answers: Vec<Vec<u8>> = outcomes
                .into_iter()
                .zip(kinds)
                .map(|(outcome, kind)| match (outcome, kind) {
                    // An update answers with the stream's info once applied.
                    (Ok(_), (true, _)) => {
                        serde_json::to_vec(&super::api::stream_info(stream, cluster))
                            .unwrap_or_default()
                    }
                    (Err(e), (_, true)) => stream.pub_error(&e),
                    (outcome, _) => answer_of(stream, outcome, domain),
                })
                .collect();
            frame_answers(&answers)
        })
        .collect()
}

/// A purge or message delete on a replicated stream: the leader checks it and proposes its
/// op; the applied outcome is the API answer.
pub(crate) fn propose_api(
    stream: &Stream,
    role: &Role,
    call: &Call,
    m: Message,
    replies: &mut Replies,
) {
    if !role.is_leader() || !role.lease.holds() {
        if let Some(reply) = m.reply {
            let err = super::meta::unavailable();
            replies.answer(reply, super::api::response("error", Err(err)));
        }
        return;
    }
    let op = match call {
        Call::Purge => super::api::purge_op(stream, &m.payload),
        _ => super::api::msg_delete_op(stream, &m.payload),
    };
    match op {
        Ok(op) => {
            let _ = role.proposals.send(Proposal::Publish(op, m.reply));
        }
        Err(e) => {
            if let Some(reply) = m.reply {
                let kind = if matches!(call, Call::Purge) {
                    "stream_purge"
                } else {
                    "stream_msg_delete"
                };
                replies.answer(reply, super::api::response(kind, Err(e)));
            }
        }
    }
}

fn answer_of(stream: &Stream, outcome: Result<Applied, ApiError>, domain: Option<&str>) -> Vec<u8> {
    let ack = |seq, duplicate| stream.pub_ack(seq, duplicate, domain);
    use super::api::{deleted, purged, response};
    match outcome {
        Ok(Applied::Stored(seq)) => ack(seq, false),
        Ok(Applied::Duplicate(seq)) => ack(seq, true),
        Ok(a @ Applied::Purged(_)) => response(
            "stream_purge",
            Ok(json!({ "success": true, "purged": purged(a) })),
        ),
        Ok(a @ Applied::Deleted(_)) => response(
            "stream_msg_delete",
            deleted(a).map(|()| json!({ "success": true })),
        ),
        Ok(_) => Vec::new(),
        Err(e) => error_body(&e),
    }
}

/// The answers to one entry's ops as the group's reply bytes.
fn frame_answers(answers: &[Vec<u8>]) -> Vec<u8> {
    bincode::serialize(answers).unwrap_or_default()
}

/// [`frame_answers`]' bytes back into answers (none for bytes that do not decode).
fn unframe_answers(bytes: &[u8]) -> Vec<Vec<u8>> {
    bincode::deserialize(bytes).unwrap_or_default()
}

/// Stream-bound requests a replicated stream takes through its group's log.
pub(crate) fn proposed(call: &Call) -> bool {
    matches!(call, Call::Purge | Call::MsgDelete)
}

/// What `num_replicas` > 1 cannot be combined with yet (an atomic batch must apply all or
/// nothing inside one entry; async persistence has no meaning for a Raft log).
pub(crate) fn check_config(cfg: &super::config::StreamConfig) -> Result<(), ApiError> {
    let what = if cfg.allow_atomic {
        Some("atomic batch publish")
    } else {
        None
    };
    if cfg.persist_mode.as_deref() == Some("async") {
        return Err(ApiError::invalid_config(
            "async persist mode is not supported on replicated streams",
        ));
    }
    match what {
        Some(w) => Err(ApiError::not_implemented(&format!(
            "{w} on a replicated stream"
        ))),
        None => Ok(()),
    }
}

/// The group's state machine: hands committed entries to the stream's runner and waits for
/// their outcome.
pub(crate) struct StreamMachine {
    tx: Tx<Input>,
}

impl StreamMachine {
    pub fn new(tx: Tx<Input>) -> StreamMachine {
        StreamMachine { tx }
    }
}

impl Machine for StreamMachine {
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8> {
        let mut answers = self.apply_batch(&[(index, payload.to_vec())]);
        answers.pop().unwrap_or_default()
    }

    /// Hands the whole batch to the runner and waits once for its answers.
    fn apply_batch(&mut self, entries: &[(u64, Vec<u8>)]) -> Vec<Vec<u8>> {
        let ops: Vec<(u64, Option<Vec<Op>>)> = entries
            .iter()
            .map(|(index, payload)| {
                let op = codec::decode_ops(payload)
                    .inspect_err(|e| tracing::error!(index, "stream entry undecodable: {e}"))
                    .ok();
                (*index, op)
            })
            .collect();
        let (done, answer) = sync_channel(1);
        if self.tx.send(Input::Committed { ops, done }).is_err() {
            return Vec::new();
        }
        answer.recv().unwrap_or_default()
    }

    /// The stream's whole state, from its runner (which has applied everything this group
    /// applied: the adapter holds its lock while it asks).
    fn snapshot(&self) -> Vec<u8> {
        let (done, answer) = sync_channel(1);
        if self.tx.send(Input::Snapshot(done)).is_err() {
            return Vec::new();
        }
        match answer.recv() {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                tracing::error!("stream snapshot not taken: {e}");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), MachineError> {
        let (done, answer) = sync_channel(1);
        self.tx
            .send(Input::Restore(snapshot.to_vec(), done))
            .map_err(|_| "the stream stopped")?;
        answer
            .recv()
            .map_err(|_| "the stream stopped")?
            .map_err(MachineError::from)
    }
}

/// A running replicated stream's group on this server.
pub(crate) struct Replica {
    pub group: Arc<Group<StreamMachine>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// What the runner reads as "leading" (set by the leadership watch).
    leading: Arc<AtomicBool>,
    /// The read lease the watch keeps.
    lease: Lease,
    /// Set while this replica hands its leadership on: the watch keeps "leading" off.
    stepping_down: Arc<AtomicBool>,
    /// The stream's runner (nudged when "leading" changes).
    runner: Tx<Input>,
}

impl Replica {
    /// Starts the proposer and the leadership watch of `group`, driving the runner's [`Role`]
    /// through `ends`.
    pub fn start(
        group: Group<StreamMachine>,
        ends: RoleEnds,
        client: Client,
        rt: &tokio::runtime::Handle,
    ) -> Replica {
        let group = Arc::new(group);
        let _ = ends.group.set(group.clone());
        let leading = ends.leader.clone();
        let lease = ends.lease.clone();
        let stepping_down = Arc::new(AtomicBool::new(false));
        let runner = ends.runner.clone();
        let watch = Watch {
            leader: ends.leader,
            lease: ends.lease,
            stepping_down: stepping_down.clone(),
            runner: ends.runner,
        };
        let tasks = vec![
            rt.spawn(watch_leader(group.clone(), watch)),
            rt.spawn(propose_loop(group.clone(), ends.proposals, client)),
            rt.spawn(snapshot_when_due(group.clone(), ends.stream_bytes)),
        ];
        Replica {
            group,
            tasks,
            leading,
            lease,
            stepping_down,
            runner,
        }
    }

    /// A future that hands this replica's leadership to another replica
    /// (`STREAM.LEADER.STEPDOWN`): the runner stops leading at once (it takes no publishes
    /// and serves no reads or consumers), then the group elects another leader. True once
    /// another replica leads; false if this one did not lead.
    pub fn step_down(&self) -> impl std::future::Future<Output = Result<bool, GroupError>> {
        let (group, leading, lease) =
            (self.group.clone(), self.leading.clone(), self.lease.clone());
        let (stepping_down, runner) = (self.stepping_down.clone(), self.runner.clone());
        async move {
            if !group.is_leader() {
                return Ok(false);
            }
            stepping_down.store(true, Ordering::Release);
            leading.store(false, Ordering::Release);
            lease.set_until(0);
            let moved = group.step_down(STEP_DOWN_WAIT).await;
            stepping_down.store(false, Ordering::Release);
            // Leading again if nobody took over (a quiet group's metrics may not change to
            // tell the watch); the lease comes back with the next quorum acknowledgement.
            let still = {
                let m = group.raft().metrics();
                let m = m.borrow();
                settled_leader(&m)
            };
            if still && !leading.swap(true, Ordering::AcqRel) {
                let _ = runner.try_send(Input::Nudge);
            }
            moved
        }
    }

    /// True once the group has a leader whose runner takes publishes (a create is answered
    /// only then, so the client's first publish is not dropped).
    pub fn is_settled(&self) -> bool {
        match self.group.leader() {
            Some(l) if l != self.group.id() => true,
            Some(_) => self.leading.load(Ordering::Acquire),
            None => false,
        }
    }

    /// Makes `peers` the group's first membership (called on the first of them).
    pub async fn initialize(&self, peers: &[String]) -> Result<(), GroupError> {
        let members: BTreeMap<NodeId, Node> = peers
            .iter()
            .map(|p| (super::meta::node_id_of(p), Node::new(p.clone(), "")))
            .collect();
        self.group.initialize(members).await
    }

    /// True while this server leads the group.
    pub fn is_leader(&self) -> bool {
        self.group.is_leader()
    }

    /// Stops the group's tasks and openraft.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.group.stop().await;
    }
}

/// Keeps the runner's "leading" flag: set once this node leads and has applied an entry of
/// its own term (so everything committed before it is applied: dedup and the consumers are
/// current), cleared when it stops leading.
async fn watch_leader(group: Arc<Group<StreamMachine>>, watch: Watch) {
    let Watch {
        leader,
        lease,
        stepping_down,
        runner,
    } = watch;
    let mut metrics = group.raft().metrics();
    loop {
        let (is, acked_ms_ago) = {
            // One read of the metrics (a second borrow while openraft waits to publish new
            // ones would deadlock: the watch's lock lets a waiting writer go first).
            let m = metrics.borrow();
            let handing_on = stepping_down.load(Ordering::Acquire);
            (settled_leader(&m) && !handing_on, m.millis_since_quorum_ack)
        };
        if leader.swap(is, Ordering::AcqRel) != is {
            let _ = runner.try_send(Input::Nudge);
        }
        match acked_ms_ago {
            Some(ago) if is => {
                let lease_ms = u64::try_from(LEASE.as_millis()).unwrap_or(0);
                lease.set_until((now_ms() + lease_ms).saturating_sub(ago));
            }
            _ => lease.set_until(0),
        }
        if metrics.changed().await.is_err() {
            leader.store(false, Ordering::Release);
            lease.set_until(0);
            return;
        }
    }
}

/// How often the snapshot policy looks at the group's log.
const SNAPSHOT_LOOK: Duration = Duration::from_secs(5);
/// A log smaller than this is never compacted.
const SNAPSHOT_MIN_LOG: u64 = 8 << 20;
/// Entries since the last snapshot before another is worth building.
const SNAPSHOT_MIN_ENTRIES: u64 = 1000;

/// Builds a snapshot of the stream (and lets openraft purge the log below it) once the log
/// outgrew twice the stream's stored bytes (and [`SNAPSHOT_MIN_LOG`]): a snapshot costs about
/// the stream's size, so its cost stays within the log writes it saves.
async fn snapshot_when_due(group: Arc<Group<StreamMachine>>, stream_bytes: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(SNAPSHOT_LOOK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (last, snap) = {
            let m = group.raft().metrics();
            let m = m.borrow();
            (
                m.last_applied.map_or(0, |l| l.index),
                m.snapshot.map_or(0, |l| l.index),
            )
        };
        let log = group.log().file_size();
        let stream = stream_bytes.load(Ordering::Relaxed);
        if last.saturating_sub(snap) >= SNAPSHOT_MIN_ENTRIES
            && log >= SNAPSHOT_MIN_LOG.max(stream.saturating_mul(2))
        {
            tracing::debug!(log, stream, "log outgrew the stream; snapshot");
            if group.raft().trigger().snapshot().await.is_err() {
                return;
            }
        }
    }
}

/// True if the metrics say this node leads and has applied an entry of its own term.
fn settled_leader(m: &openraft::RaftMetrics<NodeId, Node>) -> bool {
    let leads = m.state == openraft::ServerState::Leader && m.current_leader == Some(m.id);
    leads
        && m.last_applied
            .is_some_and(|l| l.leader_id.term == m.current_term)
}

/// What the leadership watch keeps up to date.
struct Watch {
    leader: Arc<AtomicBool>,
    lease: Lease,
    stepping_down: Arc<AtomicBool>,
    /// The stream's runner, nudged when the leadership changes (it takes up or drops its
    /// consumers).
    runner: Tx<Input>,
}

/// How long a stepdown waits for another replica to lead.
const STEP_DOWN_WAIT: Duration = Duration::from_secs(5);

/// Makes `peers` the group's members (on its leader): each new one joins as a learner and
/// catches up (from the log or a snapshot), then the voters become exactly `peers`.
pub(crate) async fn set_members(
    group: &Group<StreamMachine>,
    peers: &[String],
) -> Result<(), GroupError> {
    let raft = group.raft();
    let known: Vec<NodeId> = group.member_names().into_iter().map(|(id, _)| id).collect();
    let raft_err = |e: &dyn std::fmt::Display| GroupError::Raft(e.to_string());
    for p in peers {
        let id = super::meta::node_id_of(p);
        if !known.contains(&id) {
            let add = raft.add_learner(id, Node::new(p.clone(), ""), true);
            match tokio::time::timeout(MEMBER_CATCH_UP, add).await {
                Ok(r) => r.map_err(|e| raft_err(&e))?,
                Err(_) => return Err(GroupError::Timeout),
            };
        }
    }
    let voters: std::collections::BTreeSet<NodeId> =
        peers.iter().map(|p| super::meta::node_id_of(p)).collect();
    match tokio::time::timeout(MEMBER_CATCH_UP, raft.change_membership(voters, false)).await {
        Ok(r) => r.map_err(|e| raft_err(&e))?,
        Err(_) => return Err(GroupError::Timeout),
    };
    Ok(())
}

/// True once this member's log holds a membership change it is leaving by (a joint
/// configuration, or one without it): its part in committing the change is done once the
/// change reached it.
pub(crate) fn leaving(group: &Group<StreamMachine>) -> bool {
    let m = group.raft().metrics();
    let m = m.borrow();
    let membership = m.membership_config.membership();
    membership.get_joint_config().len() > 1 || !membership.voter_ids().any(|id| id == m.id)
}

/// How long a new member may take to catch up before the membership change gives up.
const MEMBER_CATCH_UP: Duration = Duration::from_secs(30);

/// Most ops in one batch entry.
const BATCH_OPS: usize = 1024;
/// A batch entry stops growing past this many bytes (a single larger op goes alone).
const BATCH_BYTES: usize = 256 << 10;

/// How the answers to one proposal's ops go out.
enum Responder {
    /// One op, whose applied outcome answers the reply subject.
    Outcome(Option<String>),
    /// `ops` ops applied by the leader already; the replies wait for their commit.
    After(usize, Replies),
    /// A config update: its stream info (or error) goes to the waiting updater.
    Update(Updated),
}

/// Submits proposals in arrival order, what queued up meanwhile as one batch entry (one log
/// append, one replication and one apply round for all of them), and answers each once its
/// entry is applied.
async fn propose_loop(
    group: Arc<Group<StreamMachine>>,
    mut rx: mpsc::UnboundedReceiver<Proposal>,
    client: Client,
) {
    while let Some(first) = rx.recv().await {
        let (mut entries, mut responders) = (Vec::new(), Vec::new());
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(proposal) = next.take() {
            let ops = match proposal {
                Proposal::Publish(op, reply) => {
                    responders.push(Responder::Outcome(reply));
                    vec![op]
                }
                Proposal::Applied(ops, replies) => {
                    responders.push(Responder::After(ops.len(), replies));
                    ops
                }
                Proposal::Update(op, done) => {
                    responders.push(Responder::Update(done));
                    vec![op]
                }
            };
            for op in &ops {
                let entry = codec::encode(op);
                bytes += entry.len();
                entries.push(entry);
            }
            if entries.len() < BATCH_OPS && bytes < BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        let answers = match group.submit(codec::encode_batch(&entries)).await {
            Ok(outcome) => outcome,
            Err(e) => {
                answer_all(&client, responders, Err(e));
                continue;
            }
        };
        let client = client.clone();
        tokio::spawn(async move {
            let answers = answers.await.map(|bytes| unframe_answers(&bytes));
            answer_all(&client, responders, answers);
        });
    }
}

/// Sends each proposer its answers, or the refusal of the whole entry.
fn answer_all(
    client: &Client,
    responders: Vec<Responder>,
    answers: Result<Vec<Vec<u8>>, GroupError>,
) {
    let refusal = answers.as_ref().err().map(refusal);
    let mut at = 0;
    for responder in responders {
        match (responder, &answers) {
            (Responder::Outcome(reply), _) => {
                let body = match (&answers, &refusal) {
                    (Ok(list), _) => list.get(at).map_or(&[][..], Vec::as_slice),
                    (Err(_), Some(r)) => r.as_slice(),
                    (Err(_), None) => &[],
                };
                at += 1;
                if let (Some(to), false) = (reply, body.is_empty()) {
                    client.publish_sync(&to, None, None, body);
                }
            }
            (Responder::After(n, replies), Ok(_)) => {
                at += n;
                replies.send_now(client);
            }
            (Responder::After(n, replies), Err(e)) => {
                at += n;
                replies.refuse(&refusal_error(e), client);
            }
            (Responder::Update(done), Ok(list)) => {
                let body = list.get(at).map_or(&[][..], Vec::as_slice);
                at += 1;
                let _ = done.try_send(update_outcome(body));
            }
            (Responder::Update(done), Err(e)) => {
                at += 1;
                let _ = done.try_send(Err(refusal_error(e)));
            }
        }
    }
}

/// A config update's applied answer: the stream info, or the error it was refused with.
fn update_outcome(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::store_failed("the update's outcome is unknown"))?;
    match v.get("error") {
        Some(e) => Err(serde_json::from_value(e.clone())
            .unwrap_or_else(|_| ApiError::store_failed("the update failed"))),
        None => Ok(v),
    }
}

/// The answer to a proposal the group did not take (not the leader, stopped, timed out).
fn refusal(e: &GroupError) -> Vec<u8> {
    error_body(&refusal_error(e))
}

fn refusal_error(e: &GroupError) -> ApiError {
    match e {
        GroupError::Timeout => {
            ApiError::store_failed("the stream's group did not commit in time; it may still")
        }
        _ => super::meta::unavailable(),
    }
}

/// Inputs that need the read lease, held by a leader whose lease lapsed (its group was
/// quiesced) until a quorum acknowledges it again: publishes (their early answers read the
/// applied state), reads, purges and deletes, config updates. Parking wakes the group. A
/// leader cut off from the others gets no lease back: what it parked is dropped after
/// [`PARKED_FOR`] (as a leader without its lease always dropped it), and it parks at most
/// [`MAX_PARKED`] inputs and [`MAX_PARKED_BYTES`] of payload.
#[derive(Default)]
pub(crate) struct Parked {
    inputs: std::collections::VecDeque<Input>,
    bytes: usize,
    since: Option<Instant>,
}

/// Most inputs parked at once; more are dropped.
const MAX_PARKED: usize = 16 * 1024;
/// Most payload bytes parked at once; more are dropped.
const MAX_PARKED_BYTES: usize = 16 << 20;
/// How long parked inputs wait for the lease before they are dropped.
const PARKED_FOR: Duration = Duration::from_secs(2);

fn needs_lease(input: &Input) -> bool {
    match input {
        Input::Publish(_) | Input::Update(..) => true,
        Input::Api(call, _) => matches!(call, Call::MsgGet | Call::DirectGet(_)) || proposed(call),
        _ => false,
    }
}

fn input_bytes(input: &Input) -> usize {
    match input {
        Input::Publish(m) | Input::Api(_, m) => {
            m.payload.len() + m.headers.as_ref().map_or(0, |h| h.len())
        }
        _ => 0,
    }
}

impl Parked {
    /// Parks `input` if it needs the lease and this replica leads without it; gives it back
    /// otherwise.
    pub fn park(&mut self, role: &Role, input: Input) -> Option<Input> {
        if !needs_lease(&input) || !role.is_leader() || role.lease.holds() {
            return Some(input);
        }
        role.wake();
        let size = input_bytes(&input);
        if self.inputs.len() < MAX_PARKED && self.bytes + size <= MAX_PARKED_BYTES {
            self.bytes += size;
            self.since.get_or_insert_with(Instant::now);
            self.inputs.push_back(input);
        }
        None
    }

    /// What to apply now: everything parked once the lease is back; nothing (and nothing
    /// kept) once this replica no longer leads or waited too long.
    pub fn release(&mut self, role: &Role) -> Vec<Input> {
        if self.inputs.is_empty() {
            return Vec::new();
        }
        let expired = self.since.is_some_and(|t| t.elapsed() > PARKED_FOR);
        if !role.is_leader() || (expired && !role.lease.holds()) {
            tracing::debug!(
                dropped = self.inputs.len(),
                "no lease; parked inputs dropped"
            );
            self.clear();
            return Vec::new();
        }
        if !role.lease.holds() {
            return Vec::new();
        }
        let back = self.inputs.drain(..).collect();
        self.clear();
        back
    }

    fn clear(&mut self) {
        self.inputs.clear();
        self.bytes = 0;
        self.since = None;
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }
}
