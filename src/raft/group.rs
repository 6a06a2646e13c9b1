//! [`Group`]: one Raft group on one node, what the meta group and stream groups are built
//! on. It opens the group's log and state machine in a directory, starts openraft with the
//! timings below, registers with the node's [`Host`] so peers' RPCs reach it, and offers
//! `propose` (returns once the payload is committed and applied here), leader queries,
//! `ensure_linearizable`, membership initialization and shutdown. Its work is traced in a
//! `raft{group, node}` span (openraft's core task is a child of it).
//!
//! ## Timings
//! Heartbeat every [`HEARTBEAT_MS`]; each node draws its election timeout once from
//! [`ELECTION_MIN_MS`]..[`ELECTION_MAX_MS`]. openraft 0.9 lets a follower that has seen a
//! leader stand for election only after the leader lease (`election_timeout_max`) *plus* its
//! own timeout, and checks timers on a tick of 1.5 heartbeats: a dead leader is replaced
//! after 1.5-2.2 s, about the 2 s the cluster needs (1-2 s timeouts measured 3.5 s). The
//! heartbeat is 3-7 times shorter than the timeout, so a lost or slow heartbeat does not
//! start an election. openraft also bounds each append RPC by the heartbeat interval, which
//! 150 ms leaves room for a follower's fdatasync.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{ServerState, SnapshotPolicy};
use tracing::Instrument;

use super::log::{LogError, LogStore};
use super::net::{Host, Network, Rpc, Wire};
use super::quiesce::Quiet;
use super::sm::{Machine, MachineStore, SmError};
use super::{Node, NodeId, Raft};

/// Leader heartbeat interval.
pub const HEARTBEAT_MS: u64 = 150;
/// Shortest election timeout.
pub const ELECTION_MIN_MS: u64 = 500;
/// Longest election timeout.
pub const ELECTION_MAX_MS: u64 = 1000;
/// How long [`Group::propose`] waits by default.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Snapshot chunks stay well under the default 1 MiB max_payload of the `$NRG` wire.
const SNAPSHOT_CHUNK: u64 = 256 << 10;

/// Errors of a group.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The group name is not a single subject token.
    #[error("invalid raft group name {0:?}")]
    Name(String),
    /// The log could not be opened.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The state machine or its snapshot could not be opened.
    #[error(transparent)]
    Machine(#[from] SmError),
    /// openraft refused the configuration.
    #[error("raft config: {0}")]
    Config(String),
    /// This node is not the leader; the leader, if known.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The current leader, if this node knows one.
        leader: Option<NodeId>,
    },
    /// No answer in time: the proposal may still be committed later.
    #[error("timed out; the outcome is unknown")]
    Timeout,
    /// openraft stopped or refused the call.
    #[error("raft: {0}")]
    Raft(String),
}

/// How to open a group.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// The group's name: a single subject token, the same on every member.
    pub name: String,
    /// This node's id.
    pub id: NodeId,
    /// The group's directory on this node.
    pub dir: PathBuf,
    /// Build a snapshot after this many entries since the last one (0: never; the log keeps
    /// everything).
    pub snapshot_every: u64,
    /// Entries kept in the log below the snapshot (for followers that lag a little).
    pub keep_below_snapshot: u64,
    /// How long `propose` waits.
    pub propose_timeout: Duration,
    /// Quiesce the group after this long without a new entry (`None`: never; the node's
    /// wire must carry liveness beacons, see [`super::quiesce`]).
    pub quiesce_after: Option<Duration>,
}

impl GroupOptions {
    /// Options with the defaults for group `name` on node `id` in `dir`.
    pub fn new(name: impl Into<String>, id: NodeId, dir: impl Into<PathBuf>) -> GroupOptions {
        GroupOptions {
            name: name.into(),
            id,
            dir: dir.into(),
            snapshot_every: 5000,
            keep_below_snapshot: 1000,
            propose_timeout: PROPOSE_TIMEOUT,
            quiesce_after: None,
        }
    }

    fn raft_config(&self) -> Result<Arc<openraft::Config>, GroupError> {
        let config = openraft::Config {
            cluster_name: self.name.clone(),
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: ELECTION_MIN_MS,
            election_timeout_max: ELECTION_MAX_MS,
            install_snapshot_timeout: 2000,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK,
            max_payload_entries: 256,
            snapshot_policy: match self.snapshot_every {
                0 => SnapshotPolicy::Never,
                n => SnapshotPolicy::LogsSinceLast(n),
            },
            max_in_snapshot_log_to_keep: self.keep_below_snapshot,
            ..Default::default()
        };
        let config = config
            .validate()
            .map_err(|e| GroupError::Config(e.to_string()))?;
        Ok(Arc::new(config))
    }
}

/// True for a name that is one subject token of safe characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One Raft group on this node.
pub struct Group<M> {
    name: String,
    id: NodeId,
    raft: Raft,
    sm: MachineStore<M>,
    log: LogStore,
    host: Host,
    span: tracing::Span,
    propose_timeout: Duration,
    /// Whether this node, leading, let the group quiesce.
    quiet: Arc<Quiet>,
    /// The leader's quiescing task, if the group quiesces.
    quiescer: Option<tokio::task::JoinHandle<()>>,
    /// Stepdowns and election holds under way: this node campaigns again when the last ends.
    no_elect: std::sync::atomic::AtomicUsize,
}

impl<M: Machine> Group<M> {
    /// Opens (or creates) the group in `opts.dir` with `machine` as its state machine,
    /// sending on `wire` and receiving through `host`.
    pub async fn open<W: Wire>(
        opts: GroupOptions,
        machine: M,
        wire: Arc<W>,
        host: &Host,
    ) -> Result<Group<M>, GroupError> {
        if !valid_name(&opts.name) {
            return Err(GroupError::Name(opts.name));
        }
        let span = tracing::info_span!("raft", group = %opts.name, node = opts.id);
        let config = opts.raft_config()?;
        let log = LogStore::open(&opts.dir).instrument(span.clone()).await?;
        let sm = MachineStore::open(&opts.dir, machine)?;
        let network = Network::new(wire.clone(), &opts.name, opts.id);
        let raft = Raft::new(opts.id, config, network, log.clone(), sm.clone())
            .instrument(span.clone())
            .await
            .map_err(|e| GroupError::Raft(e.to_string()))?;
        host.add(&opts.name, raft.clone());
        let quiet = Arc::new(Quiet::default());
        let quiescer = opts.quiesce_after.map(|after| {
            let q = Quiescer {
                raft: raft.clone(),
                wire,
                group: opts.name.clone(),
                quiet: quiet.clone(),
                after,
            };
            tokio::spawn(q.run().instrument(span.clone()))
        });
        Ok(Group {
            name: opts.name,
            id: opts.id,
            raft,
            sm,
            log,
            host: host.clone(),
            span,
            propose_timeout: opts.propose_timeout,
            quiet,
            quiescer,
            no_elect: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Stops this node campaigning until the matching [`Group::elect_again`].
    fn no_elections(&self) {
        use std::sync::atomic::Ordering;
        self.no_elect.fetch_add(1, Ordering::AcqRel);
        self.raft.runtime_config().elect(false);
    }

    /// Ends one [`Group::no_elections`]; the node campaigns again once none is left.
    fn elect_again(&self) {
        use std::sync::atomic::Ordering;
        if self.no_elect.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.raft.runtime_config().elect(true);
        }
    }

    /// Wakes a quiesced leader: its ticks and heartbeats resume now (a proposal, or a read that needs a
    /// fresh quorum acknowledgement, is coming). Cheap when the group is not quiet.
    pub fn wake(&self) {
        let raft = self.raft.clone();
        self.quiet.wake(move || {
            raft.runtime_config().tick(true);
            tokio::spawn(async move {
                let _ = raft.trigger().heartbeat().await;
            });
        });
    }

    /// True while this node leads the group quiesced (no heartbeats).
    pub fn is_quiet(&self) -> bool {
        self.quiet.is_quiet()
    }

    /// Makes `members` the group's first membership. Call it on one member of a new group
    /// (calling it on several with the same members is safe); a group that already has a
    /// membership is left as it is.
    pub async fn initialize(&self, members: BTreeMap<NodeId, Node>) -> Result<(), GroupError> {
        match self
            .raft
            .initialize(members)
            .instrument(self.span.clone())
            .await
        {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(GroupError::Raft(e.to_string())),
        }
    }

    /// Proposes `payload`; returns the state machine's answer once it is committed and
    /// applied on this node. Only the leader accepts proposals.
    pub async fn propose(&self, payload: Vec<u8>) -> Result<Vec<u8>, GroupError> {
        self.wake();
        let write = self
            .raft
            .client_write(payload)
            .instrument(self.span.clone());
        match tokio::time::timeout(self.propose_timeout, write).await {
            Err(_) => Err(GroupError::Timeout),
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(GroupError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Ok(Err(e)) => Err(GroupError::Raft(e.to_string())),
        }
    }

    /// Submits `payload` behind every payload submitted before it (the order of calls is the
    /// log's order) and returns, without waiting for the commit, a future of the state
    /// machine's answer. Only the leader accepts proposals.
    pub async fn submit(
        &self,
        payload: Vec<u8>,
    ) -> Result<
        impl std::future::Future<Output = Result<Vec<u8>, GroupError>> + Send + 'static,
        GroupError,
    > {
        self.wake();
        let rx = self
            .raft
            .client_write_ff(payload)
            .await
            .map_err(|e| GroupError::Raft(e.to_string()))?;
        let timeout = self.propose_timeout;
        Ok(async move {
            match tokio::time::timeout(timeout, rx).await {
                Err(_) => Err(GroupError::Timeout),
                Ok(Err(e)) => Err(GroupError::Raft(e.to_string())),
                Ok(Ok(Ok(resp))) => Ok(resp.data),
                Ok(Ok(Err(ClientWriteError::ForwardToLeader(f)))) => Err(GroupError::NotLeader {
                    leader: f.leader_id,
                }),
                Ok(Ok(Err(e))) => Err(GroupError::Raft(e.to_string())),
            }
        })
    }

    /// Confirms with a quorum that this node is still the leader and waits until everything
    /// committed before the call is applied here: a read of the machine after it is
    /// linearizable.
    pub async fn ensure_linearizable(&self) -> Result<(), GroupError> {
        let check = self
            .raft
            .ensure_linearizable()
            .instrument(self.span.clone());
        match tokio::time::timeout(self.propose_timeout, check).await {
            Err(_) => Err(GroupError::Timeout),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(GroupError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Ok(Err(e)) => Err(GroupError::Raft(e.to_string())),
        }
    }

    /// True if this node believes it leads the group (see
    /// [`Group::ensure_linearizable`] to be sure).
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Waits up to `timeout` for a known leader.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<NodeId, GroupError> {
        let mut rx = self.raft.metrics();
        let wait = async {
            let m = rx.wait_for(|m| m.current_leader.is_some()).await;
            m.map(|m| m.current_leader)
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(leader)) => leader.ok_or(GroupError::Timeout),
            Ok(Err(_)) => Err(GroupError::Raft("raft stopped".into())),
            Err(_) => Err(GroupError::Timeout),
        }
    }

    /// Hands leadership to another member: this node stops sending heartbeats and will not
    /// campaign, so once the followers' leases run out one of them is elected (openraft 0.9 has
    /// no leadership transfer). Waits up to `timeout` for another member to lead, then restores
    /// both; `Ok(false)` if this node was not the leader, `Timeout` if nobody took over (this
    /// node then leads on).
    pub async fn step_down(&self, timeout: Duration) -> Result<bool, GroupError> {
        if !self.is_leader() {
            return Ok(false);
        }
        tracing::info!(parent: &self.span, "stepping down");
        // Followers that quiesced would never campaign: no quiescing meanwhile.
        self.quiet.hold(true);
        if self.quiet.is_quiet() {
            // Quiesced followers do not campaign: a heartbeat wakes them first.
            self.wake();
            tokio::time::sleep(Duration::from_millis(HEARTBEAT_MS)).await;
        }
        let config = self.raft.runtime_config();
        config.heartbeat(false);
        self.no_elections();
        let me = self.id;
        let mut rx = self.raft.metrics();
        let moved = rx.wait_for(|m| m.current_leader.is_some_and(|l| l != me));
        let outcome = tokio::time::timeout(timeout, moved).await;
        config.heartbeat(true);
        self.elect_again();
        self.quiet.hold(false);
        match outcome {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(_)) => Err(GroupError::Raft("raft stopped".into())),
            Err(_) => Err(GroupError::Timeout),
        }
    }

    /// Keeps this member from campaigning until a member other than `old` leads, or for
    /// `timeout` (a stepdown toward another member: only that one campaigns).
    pub async fn hold_elections(&self, old: NodeId, timeout: Duration) {
        self.no_elections();
        let mut rx = self.raft.metrics();
        let moved = rx.wait_for(|m| m.current_leader.is_some_and(|l| l != old));
        let _ = tokio::time::timeout(timeout, moved).await;
        self.elect_again();
    }

    /// The members' server names (learners too), by Raft id.
    pub fn member_names(&self) -> Vec<(NodeId, String)> {
        self.names(false)
    }

    /// The voters' server names, by Raft id.
    pub fn voter_names(&self) -> Vec<(NodeId, String)> {
        self.names(true)
    }

    fn names(&self, voters_only: bool) -> Vec<(NodeId, String)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        membership
            .nodes()
            .filter(|(id, _)| !voters_only || membership.voter_ids().any(|v| v == **id))
            .map(|(id, n)| (*id, n.name.clone()))
            .collect()
    }

    /// Reads the state machine as applied on this node.
    pub fn read<R>(&self, f: impl FnOnce(&M) -> R) -> R {
        self.sm.read(f)
    }

    /// The index of the last entry applied here.
    pub fn applied_index(&self) -> Option<u64> {
        self.sm.applied().map(|l| l.index)
    }

    /// openraft's handle, for what this type does not wrap (membership changes: serialize
    /// them, one at a time).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The group's log.
    pub fn log(&self) -> &LogStore {
        &self.log
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops the group on this node: it leaves the host, then openraft stops.
    pub async fn shutdown(self) {
        self.stop().await
    }

    /// [`Group::shutdown`] through a shared handle (the group answers nothing afterwards).
    pub async fn stop(&self) {
        if let Some(q) = &self.quiescer {
            q.abort();
        }
        self.host.remove(&self.name);
        if let Err(e) = self.raft.shutdown().instrument(self.span.clone()).await {
            tracing::warn!(parent: &self.span, error = %e, "raft shutdown");
        }
    }
}

/// A leader's side of quiescing (see [`super::quiesce`]): once the group has had no new
/// entry for `after` and every follower holds the whole log, each follower is asked to
/// quiesce; if all agree (and nothing woke the leader meanwhile) its ticks stop (no
/// heartbeats, no timers).
struct Quiescer<W> {
    raft: Raft,
    wire: Arc<W>,
    group: String,
    quiet: Arc<Quiet>,
    after: Duration,
}

/// How often a quiet leader looks whether it still leads.
const QUIET_LOOK: Duration = Duration::from_secs(1);

/// What the quiescer reads of the metrics.
struct Idle {
    leading: bool,
    last: Option<u64>,
    caught_up: bool,
    vote: super::Vote,
    followers: Vec<NodeId>,
}

impl<W: Wire> Quiescer<W> {
    fn idle(&self) -> Idle {
        let m = self.raft.metrics();
        let m = m.borrow();
        let leading = m.state == ServerState::Leader && m.current_leader == Some(m.id);
        let matched = m.replication.clone().unwrap_or_default();
        let followers: Vec<NodeId> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != m.id)
            .collect();
        let caught_up = followers
            .iter()
            .all(|f| matched.get(f).cloned().flatten().map(|l| l.index) == m.last_log_index);
        Idle {
            leading,
            last: m.last_log_index,
            caught_up,
            vote: m.vote,
            followers,
        }
    }

    async fn run(self) {
        let mut tick = tokio::time::interval((self.after / 4).max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut unchanged: Option<(Option<u64>, std::time::Instant)> = None;
        loop {
            tick.tick().await;
            let idle = self.idle();
            if !idle.leading {
                let raft = self.raft.clone();
                self.quiet.wake(move || raft.runtime_config().tick(true));
                unchanged = None;
                continue;
            }
            if self.quiet.is_quiet() {
                // Quiet: only a lost leadership is looked for, and that can wait a little.
                tokio::time::sleep(QUIET_LOOK).await;
                continue;
            }
            match unchanged {
                Some((last, since)) if last == idle.last => {
                    if idle.caught_up && since.elapsed() >= self.after && !self.quiet.held() {
                        self.quiesce(&idle).await;
                        unchanged = None;
                    }
                }
                _ => unchanged = Some((idle.last, std::time::Instant::now())),
            }
        }
    }

    /// Asks every follower to quiesce; stops heartbeats if all did and nothing woke us.
    async fn quiesce(&self, idle: &Idle) {
        let wakes = self.quiet.wakes();
        let asks = idle.followers.iter().map(|f| {
            let call = self.wire.call(*f, &self.group, Rpc::Quiesce(idle.vote));
            tokio::time::timeout(Duration::from_millis(500), call)
        });
        let answers = each_in_turn(asks).await;
        let all = answers
            .iter()
            .all(|a| matches!(a, Ok(Ok(super::Reply::Quiesced(true)))));
        if !all || self.idle().last != idle.last {
            return;
        }
        let raft = self.raft.clone();
        if self
            .quiet
            .settle(wakes, move || raft.runtime_config().tick(false))
        {
            tracing::debug!("quiesced");
        }
    }
}

/// Awaits every future, in order (the group has a handful of followers).
async fn each_in_turn<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<F> = futs.collect();
    let mut out = Vec::with_capacity(handles.len());
    for f in handles {
        out.push(f.await);
    }
    out
}
