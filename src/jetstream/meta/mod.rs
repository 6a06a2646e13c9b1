//! JetStream in a cluster: the meta group, one openraft group over every JetStream server of
//! the cluster, replicating the stream catalogue ([`MetaMachine`]). Its leader answers the
//! account-level `$JS.API` requests: it places a new stream on a server (`peers`), proposes
//! the change, and the server hosting the stream opens, changes or removes it when the entry
//! is applied there and answers the requester (see `jetstream::clustered`).
//!
//! Forming the group: each server's Raft id is derived from its `server_name`. Until the
//! group has a membership, every server announces itself on [`HELLO`]; once a server has heard
//! as many servers as the cluster has (its configured routes other than itself, plus itself)
//! and has the lowest id among them, it initializes the group with all of them. A server that
//! restarts finds its membership in its Raft log.

mod machine;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::catalogue::Catalogue;
use super::errors::ApiError;
use crate::raft::{Group, GroupError, GroupOptions, Host, NatsWire, Node, NodeId, Service};
use crate::server::Client;
pub(crate) use machine::{encode_cmd, Event, MetaCmd, MetaMachine, Outcome};

/// Where servers announce themselves while the meta group forms.
pub(crate) const HELLO: &str = "$CW.JSC.HELLO";
/// How often they do.
const HELLO_EVERY: Duration = Duration::from_millis(300);
/// Name of the meta group (one subject token).
const GROUP: &str = "_meta_";

/// What a clustered JetStream needs to know of its cluster.
#[derive(Debug, Clone)]
pub struct MetaSetup {
    /// The cluster's name.
    pub cluster: String,
    /// How many servers the cluster has (this one included).
    pub expected: usize,
}

/// A server's announcement.
#[derive(Serialize, Deserialize)]
struct Hello {
    id: NodeId,
    name: String,
}

/// This server's member of the meta group.
pub(crate) struct Meta {
    group: Group<MetaMachine>,
    host: Host,
    me: String,
    cluster: String,
    runtime: tokio::runtime::Handle,
    /// When this member started (before the others' beacons were heard, all count as up).
    started: std::time::Instant,
    _service: Service,
}

/// How long after start every member counts as up for placement (their beacons come every
/// 200 ms).
const PRESUMED_UP: Duration = Duration::from_secs(2);

/// How long a stepdown waits for another server to lead.
const STEP_DOWN_WAIT: Duration = Duration::from_secs(5);

/// A server's Raft id: a 63-bit FNV-1a hash of its name (never 0).
pub(crate) fn node_id_of(name: &str) -> NodeId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h >> 1).max(1)
}

impl Meta {
    /// Opens this server's member of the meta group in `dir` and starts forming the group.
    pub async fn start(
        client: Client,
        dir: &Path,
        me: String,
        setup: MetaSetup,
        events: Sender<Event>,
    ) -> Result<Arc<Meta>, GroupError> {
        let id = node_id_of(&me);
        let host = Host::new(id);
        let service = NatsWire::serve(&client, host.clone())
            .await
            .map_err(|e| GroupError::Raft(e.to_string()))?;
        let mut opts = GroupOptions::new(GROUP, id, dir);
        opts.snapshot_every = 1000;
        let wire = NatsWire::new(client.clone());
        let group = Group::open(opts, MetaMachine::new(events), wire, &host).await?;
        let meta = Arc::new(Meta {
            group,
            host,
            me,
            cluster: setup.cluster,
            runtime: tokio::runtime::Handle::current(),
            started: std::time::Instant::now(),
            _service: service,
        });
        tokio::spawn(form(Arc::downgrade(&meta), client, setup.expected));
        Ok(meta)
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// True if this server leads the meta group.
    pub fn is_leader(&self) -> bool {
        self.group.is_leader()
    }

    /// The members, by id.
    fn members(&self) -> BTreeMap<NodeId, Node> {
        let m = self.group.raft().metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.clone()))
            .collect()
    }

    /// How many servers the group has.
    pub fn size(&self) -> usize {
        self.members().len()
    }

    /// The leader's server name, if one is known.
    pub fn leader_name(&self) -> Option<String> {
        let leader = self.group.leader()?;
        self.members().remove(&leader).map(|n| n.name)
    }

    /// Reads the catalogue as applied here.
    pub fn read<R>(&self, f: impl FnOnce(&Catalogue) -> R) -> R {
        self.group.read(|m| f(&m.catalogue))
    }

    /// This server's Raft id.
    pub fn node(&self) -> NodeId {
        self.group.id()
    }

    /// The receiving side of this server's groups (the meta group and every stream's).
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The member up (heard from lately) hosting the fewest streams, among those not in
    /// `peers`: the replacement of a removed peer.
    pub fn replacement(&self, peers: &[String]) -> Option<String> {
        self.by_load().into_iter().find(|s| !peers.contains(s))
    }

    /// Chooses the `n` servers for a new stream: the members up (heard from lately) hosting
    /// the fewest.
    pub fn place(&self, n: usize) -> Result<Vec<String>, ApiError> {
        let live = self.by_load();
        if live.len() < n.max(1) {
            return Err(ApiError::insufficient_resources());
        }
        Ok(live.into_iter().take(n.max(1)).collect())
    }

    /// The members up (heard from lately; all of them just after start), those hosting the
    /// fewest streams first.
    fn by_load(&self) -> Vec<String> {
        let early = self.started.elapsed() < PRESUMED_UP;
        let live = self.host.quiet();
        let mut load: BTreeMap<String, usize> = self
            .members()
            .into_iter()
            .filter(|(id, _)| early || *id == self.node() || live.liveness.alive(*id).is_some())
            .map(|(_, n)| (n.name, 0))
            .collect();
        self.read(|c| {
            for (_, a) in c.streams() {
                for p in &a.peers {
                    if let Some(n) = load.get_mut(p) {
                        *n += 1;
                    }
                }
            }
        });
        let mut by_load: Vec<(usize, String)> = load.into_iter().map(|(s, l)| (l, s)).collect();
        by_load.sort();
        by_load.into_iter().map(|(_, s)| s).collect()
    }

    /// Proposes `cmd` and waits (on the calling thread, which must not be a runtime worker)
    /// until it is applied here; returns what applying decided.
    pub fn propose(&self, cmd: &MetaCmd) -> Result<Outcome, ApiError> {
        let payload = encode_cmd(cmd);
        match self.runtime.block_on(self.group.propose(payload)) {
            Ok(bytes) => Ok(machine::decode_outcome(&bytes)),
            Err(GroupError::Timeout) => Err(ApiError::store_failed(
                "meta group did not commit in time; the change may still happen",
            )),
            Err(e) => {
                tracing::warn!(error = %e, "meta proposal refused");
                Err(unavailable())
            }
        }
    }

    /// The voters' server names, by Raft id.
    pub fn voter_names(&self) -> Vec<(NodeId, String)> {
        self.group.voter_names()
    }

    /// Keeps this member from campaigning while `old` hands the lead to another one.
    pub async fn hold_elections(&self, old: NodeId) {
        self.group.hold_elections(old, STEP_DOWN_WAIT).await
    }

    /// Hands the meta group's leadership to another server (`META.LEADER.STEPDOWN`); true
    /// once another one leads.
    pub async fn step_down(&self) -> Result<bool, GroupError> {
        self.group.step_down(STEP_DOWN_WAIT).await
    }

    /// Stops this server's member.
    pub fn shutdown(&self) {
        let raft = self.group.raft().clone();
        let _ = self.runtime.block_on(raft.shutdown());
    }
}

/// nats-server's answer while JetStream has no leader to decide.
pub(crate) fn unavailable() -> ApiError {
    ApiError {
        code: 503,
        err_code: 10008,
        description: "JetStream system temporarily unavailable".into(),
    }
}

/// Announces this server and listens to the others until the group has a membership; the
/// server with the lowest id among all expected ones initializes it.
async fn form(meta: Weak<Meta>, client: Client, expected: usize) {
    let Ok(mut hellos) = client.subscribe(HELLO).await else {
        return;
    };
    let mut seen: BTreeMap<NodeId, Node> = BTreeMap::new();
    let mut tick = tokio::time::interval(HELLO_EVERY);
    loop {
        let Some(m) = meta.upgrade() else { return };
        if !m.members().is_empty() {
            return;
        }
        let me = Hello {
            id: m.group.id(),
            name: m.me.clone(),
        };
        seen.insert(me.id, Node::new(me.name.clone(), ""));
        if let Ok(bytes) = serde_json::to_vec(&me) {
            let _ = client.publish(HELLO, bytes.into()).await;
        }
        if seen.len() >= expected && seen.keys().next() == Some(&me.id) {
            tracing::info!(members = seen.len(), "forming the JetStream meta group");
            if let Err(e) = m.group.initialize(seen.clone()).await {
                tracing::warn!(error = %e, "meta group not initialized");
            }
        }
        drop(m);
        let deadline = tick.tick();
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                msg = hellos.next() => {
                    let Some(msg) = msg else { return };
                    if let Ok(h) = serde_json::from_slice::<Hello>(&msg.payload) {
                        if h.id == node_id_of(&h.name) {
                            seen.insert(h.id, Node::new(h.name, ""));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_ids_are_stable_and_distinct() {
        let a = super::node_id_of("n1");
        assert_eq!(a, super::node_id_of("n1"));
        assert_ne!(a, super::node_id_of("n2"));
        assert!(a > 0 && a < 1 << 63);
    }
}
