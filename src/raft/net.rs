//! The RPCs between the members of a group and how they travel. Every group of a node shares
//! one [`Wire`] (one connection per peer): an RPC is tagged with its group's name, and the
//! receiving node's [`Host`] hands it to that group's Raft. openraft's network traits
//! ([`RaftNetworkFactory`], [`RaftNetwork`]) are implemented once here over any `Wire`;
//! snapshots go as openraft's chunked `install_snapshot` RPCs.
//!
//! Byte wires carry [`Rpc`] and [`Reply`] as bincode 1.3 ([`Host::handle_frame`],
//! [`decode_reply`]): a frame that does not decode is a typed error, never a panic.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::RPCTypes;
use serde::{Deserialize, Serialize};

use super::quiesce::NodeQuiet;
use super::{Node, NodeId, Raft, TypeConfig};

/// A Raft RPC for one group.
#[derive(Serialize, Deserialize)]
pub enum Rpc {
    /// Replicate entries, or a heartbeat.
    Append(AppendEntriesRequest<TypeConfig>),
    /// A candidate asks for a vote.
    Vote(VoteRequest<NodeId>),
    /// A chunk of a snapshot.
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// The leader of this vote asks a follower to quiesce (see [`super::quiesce`]).
    Quiesce(super::Vote),
}

impl Rpc {
    fn kind(&self) -> RPCTypes {
        match self {
            Rpc::Append(_) => RPCTypes::AppendEntries,
            Rpc::Vote(_) => RPCTypes::Vote,
            Rpc::Snapshot(_) => RPCTypes::InstallSnapshot,
            Rpc::Quiesce(_) => RPCTypes::AppendEntries,
        }
    }
}

/// The answer to an [`Rpc`].
#[derive(Serialize, Deserialize)]
pub enum Reply {
    /// To [`Rpc::Append`].
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// To [`Rpc::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// To [`Rpc::Snapshot`].
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// The node took the message for no group: the group is not open there, or the frame
    /// was bad.
    Refused(String),
    /// To [`Rpc::Quiesce`]: whether the follower quiesced.
    Quiesced(bool),
}

/// Why an RPC got no [`Reply`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The target cannot be reached (down, partitioned, no route).
    #[error("node {0} unreachable: {1}")]
    Unreachable(NodeId, String),
    /// A frame did not decode.
    #[error("bad raft frame: {0}")]
    Frame(String),
    /// The frame is larger than the wire carries (a `$NRG` request over max_payload).
    #[error("raft frame too large for the wire")]
    TooLarge,
}

/// How a node's groups reach their peers: one per node, shared by all its groups.
pub trait Wire: Send + Sync + 'static {
    /// Sends `rpc` for `group` to node `target` and waits for its reply. Dropping the future
    /// abandons the call.
    fn call(
        &self,
        target: NodeId,
        group: &str,
        rpc: Rpc,
    ) -> impl Future<Output = Result<Reply, WireError>> + Send;
}

/// The receiving side of a node: its open groups by name.
#[derive(Clone)]
pub struct Host {
    id: NodeId,
    groups: Arc<RwLock<HashMap<String, Raft>>>,
    quiet: Arc<NodeQuiet>,
}

impl Host {
    /// The host of node `id`, with no group open.
    pub fn new(id: NodeId) -> Host {
        Host {
            id,
            groups: Arc::default(),
            quiet: NodeQuiet::new(),
        }
    }

    /// The node's quiescence state (its liveness beacons, its quiesced groups).
    pub fn quiet(&self) -> &Arc<NodeQuiet> {
        &self.quiet
    }

    /// Wakes the groups quiesced here whose leader's node fell silent or restarted: they
    /// campaign again.
    pub fn wake_lapsed(&self) {
        for group in self.quiet.quiesced.lapsed(&self.quiet.liveness) {
            if let Some(raft) = self.get(&group) {
                tracing::debug!(group, "leader silent; quiesced group wakes");
                raft.runtime_config().tick(true);
            }
        }
    }

    /// A follower's answer to a quiesce request: yes if `vote` is the vote it follows, its
    /// leader's node is alive, and it holds the leader's last log id.
    fn quiesce(&self, group: &str, raft: &Raft, vote: super::Vote) -> bool {
        let leader = vote.leader_id().voted_for();
        let accepted = {
            let m = raft.metrics();
            let m = m.borrow();
            m.state == openraft::ServerState::Follower
                && m.vote == vote
                && m.current_leader.is_some()
                && m.current_leader == leader
        };
        let alive = leader.and_then(|l| self.quiet.liveness.alive(l).map(|inc| (l, inc)));
        match (accepted, alive) {
            (true, Some((leader, inc))) => {
                // No ticks: no election timer, no work at all until woken.
                raft.runtime_config().tick(false);
                self.quiet.quiesced.insert(group, leader, inc);
                true
            }
            _ => false,
        }
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    pub(crate) fn add(&self, group: &str, raft: Raft) {
        let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
        groups.insert(group.to_string(), raft);
    }

    pub(crate) fn remove(&self, group: &str) {
        let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
        groups.remove(group);
    }

    fn get(&self, group: &str) -> Option<Raft> {
        let groups = self.groups.read().unwrap_or_else(|e| e.into_inner());
        groups.get(group).cloned()
    }

    /// Hands `rpc` to `group`'s Raft and returns its answer.
    pub async fn handle(&self, group: &str, rpc: Rpc) -> Reply {
        let Some(raft) = self.get(group) else {
            return Reply::Refused(format!("group {group} is not open on node {}", self.id));
        };
        // A heartbeat of the leader that quiesced the group (one that crossed its Quiesce, or
        // a leader woken for a read) carries nothing to follow: the group stays quiet here.
        let heartbeat = matches!(&rpc, Rpc::Append(r) if r.entries.is_empty()
            && self.quiet.quiesced.led_by(group, r.vote.leader_id().voted_for()));
        let reply = match rpc {
            Rpc::Quiesce(vote) => return Reply::Quiesced(self.quiesce(group, &raft, vote)),
            Rpc::Append(r) => Reply::Append(raft.append_entries(r).await),
            Rpc::Vote(r) => Reply::Vote(raft.vote(r).await),
            Rpc::Snapshot(r) => Reply::Snapshot(raft.install_snapshot(r).await),
        };
        if !heartbeat && self.quiet.quiesced.remove(group) {
            // The leader speaks again (or another member campaigns): follow the group's
            // heartbeats as usual. Only after the message was taken, so the election timer
            // starts from it rather than from the last message before the quiet.
            raft.runtime_config().tick(true);
        }
        reply
    }

    /// [`Host::handle`] for a bincode frame; the answer is a bincode frame too.
    pub async fn handle_frame(&self, group: &str, frame: &[u8]) -> Vec<u8> {
        let reply = match super::decode::<Rpc>(frame) {
            Ok(rpc) => self.handle(group, rpc).await,
            Err(e) => Reply::Refused(format!("bad raft frame: {e}")),
        };
        super::encode(&reply).unwrap_or_else(|e| {
            let refused = Reply::Refused(format!("reply not encodable: {e}"));
            super::encode(&refused).unwrap_or_default()
        })
    }
}

/// Decodes a reply frame.
pub fn decode_reply(frame: &[u8]) -> Result<Reply, WireError> {
    super::decode(frame).map_err(|e| WireError::Frame(e.to_string()))
}

/// Encodes an RPC frame.
pub fn encode_rpc(rpc: &Rpc) -> Result<Vec<u8>, WireError> {
    super::encode(rpc).map_err(|e| WireError::Frame(e.to_string()))
}

/// openraft's network factory for one group of one node.
pub struct Network<W> {
    wire: Arc<W>,
    group: Arc<str>,
    me: NodeId,
}

impl<W> Network<W> {
    /// The network of `group` on node `me` over `wire`.
    pub fn new(wire: Arc<W>, group: &str, me: NodeId) -> Network<W> {
        Network {
            wire,
            group: group.into(),
            me,
        }
    }
}

impl<W: Wire> RaftNetworkFactory<TypeConfig> for Network<W> {
    type Network = Peer<W>;

    async fn new_client(&mut self, target: NodeId, _node: &Node) -> Peer<W> {
        Peer {
            wire: self.wire.clone(),
            group: self.group.clone(),
            me: self.me,
            target,
        }
    }
}

/// openraft's client of one peer in one group.
pub struct Peer<W> {
    wire: Arc<W>,
    group: Arc<str>,
    me: NodeId,
    target: NodeId,
}

type RpcErr<E = RaftError<NodeId>> = RPCError<NodeId, Node, E>;

/// Why a call got no reply.
enum Failed {
    Wire(WireError),
    Timeout(RPCTypes, Duration),
}

impl<W: Wire> Peer<W> {
    async fn send(&self, rpc: Rpc, option: &RPCOption) -> Result<Reply, Failed> {
        if self.target == self.me {
            // openraft never sends to itself; a wire that did would loop back into this node.
            let e = WireError::Unreachable(self.target, "self".into());
            return Err(Failed::Wire(e));
        }
        let action = rpc.kind();
        let call = self.wire.call(self.target, &self.group, rpc);
        match tokio::time::timeout(option.hard_ttl(), call).await {
            Ok(Ok(Reply::Refused(why))) => {
                Err(Failed::Wire(WireError::Unreachable(self.target, why)))
            }
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(Failed::Wire(e)),
            Err(_) => Err(Failed::Timeout(action, option.hard_ttl())),
        }
    }

    /// `failed` as openraft's error: unreachable peers are retried after a backoff.
    fn failed<E: std::error::Error>(&self, failed: Failed) -> RpcErr<E> {
        match failed {
            Failed::Wire(e @ WireError::Unreachable(..)) => {
                RPCError::Unreachable(Unreachable::new(&e))
            }
            Failed::Wire(e) => RPCError::Network(NetworkError::new(&e)),
            Failed::Timeout(action, timeout) => RPCError::Timeout(Timeout {
                action,
                id: self.me,
                target: self.target,
                timeout,
            }),
        }
    }

    fn remote<E: std::error::Error>(
        &self,
        e: RaftError<NodeId, E>,
    ) -> RpcErr<RaftError<NodeId, E>> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }
}

/// An append RPC of more entries than one carries at most about this many payload bytes.
/// openraft gives every append RPC one heartbeat interval (150 ms) to be sent, fsynced by the
/// follower and answered; a follower catching up on large messages would otherwise time out
/// on every batch and never catch up.
const MAX_APPEND_BYTES: usize = 512 << 10;

fn payload_bytes(rpc: &AppendEntriesRequest<TypeConfig>) -> usize {
    rpc.entries
        .iter()
        .map(|e| match &e.payload {
            openraft::EntryPayload::Normal(p) => p.len(),
            _ => 0,
        })
        .sum()
}

fn mismatched<E: std::error::Error>() -> RpcErr<E> {
    let e = WireError::Frame("reply does not match the request".into());
    RPCError::Network(NetworkError::new(&e))
}

impl<W: Wire> RaftNetwork<TypeConfig> for Peer<W> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let entries = rpc.entries.len() as u64;
        if entries > 1 && payload_bytes(&rpc) > MAX_APPEND_BYTES {
            // Ask openraft for fewer entries rather than send a frame routes may refuse.
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint((entries / 2).max(1)),
            ));
        }
        match self.send(Rpc::Append(rpc), &option).await {
            Ok(Reply::Append(r)) => r.map_err(|e| self.remote(e)),
            Ok(_) => Err(mismatched()),
            // openraft retries at once with fewer entries (only append RPCs may say so).
            Err(Failed::Wire(WireError::TooLarge)) => {
                let hint = (entries / 2).max(1);
                Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(hint),
                ))
            }
            Err(f) => Err(self.failed(f)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<RaftError<NodeId, InstallSnapshotError>>>
    {
        match self.send(Rpc::Snapshot(rpc), &option).await {
            Ok(Reply::Snapshot(r)) => r.map_err(|e| self.remote(e)),
            Ok(_) => Err(mismatched()),
            Err(f) => Err(self.failed(f)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self.send(Rpc::Vote(rpc), &option).await {
            Ok(Reply::Vote(r)) => r.map_err(|e| self.remote(e)),
            Ok(_) => Err(mismatched()),
            Err(f) => Err(self.failed(f)),
        }
    }
}
