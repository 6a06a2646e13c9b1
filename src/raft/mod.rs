//! Raft groups on openraft 0.9: the replication layer under the stream catalogue (the meta
//! group) and each replicated stream (one group per stream). This layer knows nothing of
//! JetStream: a group replicates opaque payloads (`Vec<u8>`) into an application state
//! machine ([`Machine`]) and returns its opaque responses.
//!
//! ## Parts
//! - [`log`]: the durable Raft log of one group (a CRC'd, length-framed file, fsynced before
//!   openraft hears an append is flushed) and its vote/committed/purge-floor file.
//! - [`sm`]: the state-machine adapter: applies committed payloads to a [`Machine`], keeps the
//!   applied log id and membership, builds, stores and installs snapshots.
//! - [`net`]: the RPCs and the [`Wire`] they travel on, tagged with the group's name so that
//!   every group of a node shares one transport per peer; [`Host`] receives them for a node.
//!   [`MemNet`] is an in-process wire for tests (partitions, heal, dropped nodes);
//!   [`NatsWire`] carries them as requests on `$NRG.<group>.<node id>` through causeway's own
//!   client (subjects that cluster routes carry between servers).
//! - [`group`]: [`Group`], what later code uses: open a group for a node id in a directory,
//!   initialize its membership, `propose` and wait until applied, leader queries, shutdown.
//!
//! ## Using a group
//! ```no_run
//! # async fn demo(dir: &std::path::Path, machine: impl causeway::raft::Machine) -> Result<(), causeway::raft::GroupError> {
//! use causeway::raft::{Group, GroupOptions, Host, MemNet, Node};
//! let net = MemNet::new();
//! let host = Host::new(1);
//! net.register(&host);
//! let group = Group::open(GroupOptions::new("meta", 1, dir), machine, net.wire(1), &host).await?;
//! group.initialize([(1, Node::new("n1", "mem://1"))].into()).await?;
//! let reply: Vec<u8> = group.propose(b"op".to_vec()).await?;
//! group.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Durability (what openraft is promised)
//! An append is acknowledged to openraft (`LogFlushed`) only after `fdatasync` of the log
//! file; the vote, the committed log id and the purge floor are written to a temporary file,
//! fsynced, renamed over the old one and the directory fsynced before the call returns. The
//! state machine is not durable by itself: it is rebuilt from the last snapshot (written the
//! same way) and the log is replayed above it.

pub mod group;
pub mod log;
mod log_file;
mod meta;
pub mod net;
mod net_mem;
mod net_nats;
pub mod quiesce;
mod record;
pub mod sm;
pub mod testing;
#[cfg(test)]
mod tests_log;
#[cfg(test)]
mod tests_net;
#[cfg(test)]
mod tests_suite;

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub use group::{Group, GroupError, GroupOptions};
pub use log::{LogError, LogStore};
pub use net::{Host, Reply, Rpc, Wire, WireError};
pub use net_mem::{MemNet, MemWire};
pub use net_nats::{NatsWire, Service};
pub use sm::{Machine, MachineError, MachineStore, SmError};

/// A node's id in every group it belongs to. Never reuse one for a different node (a reused
/// id inherits promises, such as a vote, the old node made).
pub type NodeId = u64;

/// What the Raft messages of a group say about a member.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The member's server name.
    pub name: String,
    /// Where it can be reached (informational: the wire finds a node by its id).
    pub addr: String,
}

impl Node {
    /// A member named `name` reachable at `addr`.
    pub fn new(name: impl Into<String>, addr: impl Into<String>) -> Node {
        Node {
            name: name.into(),
            addr: addr.into(),
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

openraft::declare_raft_types!(
    /// The openraft type configuration shared by every group: entries carry an opaque
    /// application payload and the state machine answers with opaque bytes.
    pub TypeConfig:
        D = Vec<u8>,
        R = Vec<u8>,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// openraft's handle on a running group.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id (leader term and node, index).
pub type LogId = openraft::LogId<NodeId>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;
/// openraft's storage error.
pub type StorageError = openraft::StorageError<NodeId>;

/// Encodes with bincode 1.3 (the format of the log, snapshots and RPCs).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::Error> {
    bincode::serialize(value)
}

/// Decodes bincode 1.3 bytes from disk or a peer; bad bytes are an error, never a panic
/// (lengths inside are bounded by the input's size).
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::Error> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(bytes.len() as u64)
        .deserialize(bytes)
}
