//! An in-process [`Wire`] for tests: nodes register their [`Host`] with a [`MemNet`]; a
//! node's [`MemWire`] opens one link (a channel served by a task on the target) per peer, the
//! first time it calls it, and every group of the node sends over it. The net can
//! [`partition`](MemNet::partition) nodes, [`heal`](MemNet::heal) and take a node
//! [`down`](MemNet::down); an RPC across a cut, or whose reply comes back across one, is
//! `Unreachable`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot};

use super::net::{Host, Reply, Rpc, Wire, WireError};
use super::NodeId;

struct Envelope {
    group: String,
    rpc: Rpc,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct State {
    hosts: HashMap<NodeId, Host>,
    /// Partition sides; a node not listed is on side 0.
    side: HashMap<NodeId, u32>,
    down: HashSet<NodeId>,
    links: HashMap<(NodeId, NodeId), mpsc::UnboundedSender<Envelope>>,
    /// Links opened so far.
    opened: u64,
}

impl State {
    fn reachable(&self, from: NodeId, to: NodeId) -> Result<(), WireError> {
        let side = |n| self.side.get(&n).copied().unwrap_or(0);
        if self.down.contains(&from) || self.down.contains(&to) {
            return Err(WireError::Unreachable(to, "node down".into()));
        }
        if side(from) != side(to) {
            return Err(WireError::Unreachable(to, "partitioned".into()));
        }
        Ok(())
    }

    fn forget_links(&mut self, node: NodeId) {
        self.links.retain(|(a, b), _| *a != node && *b != node);
    }
}

/// A network of in-process nodes. Clones share it.
#[derive(Clone, Default)]
pub struct MemNet {
    state: Arc<Mutex<State>>,
}

impl MemNet {
    /// An empty network.
    pub fn new() -> MemNet {
        MemNet::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `host`'s node on the network (again, after [`MemNet::down`] or a restart).
    pub fn register(&self, host: &Host) {
        let mut state = self.lock();
        state.forget_links(host.id());
        state.down.remove(&host.id());
        state.hosts.insert(host.id(), host.clone());
    }

    /// The wire node `from` sends on.
    pub fn wire(&self, from: NodeId) -> Arc<MemWire> {
        Arc::new(MemWire {
            net: self.clone(),
            from,
        })
    }

    /// Cuts `nodes` off from every other node (they still reach each other).
    pub fn partition(&self, nodes: &[NodeId]) {
        let mut state = self.lock();
        let side = state.side.values().max().copied().unwrap_or(0) + 1;
        for n in nodes {
            state.side.insert(*n, side);
        }
    }

    /// Removes every partition.
    pub fn heal(&self) {
        self.lock().side.clear();
    }

    /// Takes `node` off the network: its links close and nothing reaches it or leaves it.
    pub fn down(&self, node: NodeId) {
        let mut state = self.lock();
        state.down.insert(node);
        state.forget_links(node);
        state.hosts.remove(&node);
    }

    /// Links opened so far (one per node and peer it called, reopened after a restart).
    pub fn links_opened(&self) -> u64 {
        self.lock().opened
    }

    /// The link from `from` to `to`, opened if needed.
    fn link(&self, from: NodeId, to: NodeId) -> Result<mpsc::UnboundedSender<Envelope>, WireError> {
        let mut state = self.lock();
        state.reachable(from, to)?;
        if let Some(tx) = state.links.get(&(from, to)) {
            return Ok(tx.clone());
        }
        let Some(host) = state.hosts.get(&to).cloned() else {
            return Err(WireError::Unreachable(to, "no such node".into()));
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(serve(host, rx));
        state.links.insert((from, to), tx.clone());
        state.opened += 1;
        Ok(tx)
    }
}

/// The target's end of a link: each RPC is handled on its own task, as a connection's
/// requests would be.
async fn serve(host: Host, mut rx: mpsc::UnboundedReceiver<Envelope>) {
    while let Some(env) = rx.recv().await {
        let host = host.clone();
        tokio::spawn(async move {
            let reply = host.handle(&env.group, env.rpc).await;
            let _ = env.reply.send(reply);
        });
    }
}

/// One node's wire on a [`MemNet`].
pub struct MemWire {
    net: MemNet,
    from: NodeId,
}

impl Wire for MemWire {
    async fn call(&self, target: NodeId, group: &str, rpc: Rpc) -> Result<Reply, WireError> {
        let link = self.net.link(self.from, target)?;
        let (tx, rx) = oneshot::channel();
        let closed = || WireError::Unreachable(target, "link closed".into());
        let env = Envelope {
            group: group.to_string(),
            rpc,
            reply: tx,
        };
        link.send(env).map_err(|_| closed())?;
        let reply = rx.await.map_err(|_| closed())?;
        self.net.lock().reachable(self.from, target)?;
        Ok(reply)
    }
}
