//! A [`Wire`] over causeway's own request/reply: node `N` serves every group it hosts on
//! `$NRG.<group>.<N>` ([`NatsWire::serve`]), and an RPC is a request (a bincode [`Rpc`]) to
//! the target's subject, answered with a bincode [`Reply`]. Through the in-process
//! [`Client`] this reaches the groups on the same server; with cluster routes the same
//! subjects reach other servers, all of a server's groups sharing its route to each peer.
//!
//! Group names must therefore be single subject tokens (see `group::valid_name`). A request
//! nobody answers (no responders, timeout) is `Unreachable`. The node's service also sends
//! its liveness beacon (`$NRGLIVE.<node id>`, see [`super::quiesce`]) and listens to its
//! peers'.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use tokio::task::JoinHandle;

use super::net::{decode_reply, encode_rpc, Host, Reply, Rpc, Wire, WireError};
use super::quiesce::BEACON_EVERY;
use super::NodeId;
use crate::server::{Client, ClientError, Message};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Subject prefix of Raft RPCs.
pub const PREFIX: &str = "$NRG";

/// Subject prefix of the nodes' liveness beacons (`$NRGLIVE.<node id>`).
pub const LIVE: &str = "$NRGLIVE";

/// The subject node `node` serves `group` on.
pub fn subject(group: &str, node: NodeId) -> String {
    format!("{PREFIX}.{group}.{node}")
}

/// A node's wire over a causeway [`Client`]. Replies come back on one subscription
/// (`_NRG_R.<wire>.<call>`), made once: a fresh inbox per RPC would send its interest to every
/// server of the cluster, twice, for every Raft message.
pub struct NatsWire {
    client: Client,
    prefix: String,
    calls: Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>>,
    next: AtomicU64,
    replies: Arc<crate::server::Subscription>,
}

impl Drop for NatsWire {
    fn drop(&mut self) {
        self.client.unsubscribe_internal(&self.replies);
    }
}

/// The largest RPC frame sent (routes carry up to 64 MiB; append RPCs are cut at 8 MiB of
/// entries, snapshot chunks at 256 KiB).
const MAX_FRAME: usize = 32 << 20;

/// How long a call waits for its reply.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves a node's groups until dropped (or the server shuts down).
pub struct Service {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl NatsWire {
    /// The wire sending through `client`.
    pub fn new(client: Client) -> Arc<NatsWire> {
        let prefix = format!("_NRG_R.{:016x}.", rand::random::<u64>());
        let calls: Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>> = Arc::default();
        let (pending, start) = (calls.clone(), prefix.len());
        let handler: crate::server::InternalHandler = Arc::new(move |m: Message| {
            let call = m.subject.get(start..).and_then(|t| t.parse::<u64>().ok());
            let waiting = call.and_then(|c| lock(&pending).remove(&c));
            if let Some(tx) = waiting {
                let _ = tx.send(m.payload);
            }
            true
        });
        let replies = client.subscribe_internal(&format!("{prefix}*"), None, handler);
        Arc::new(NatsWire {
            client,
            prefix,
            calls,
            next: AtomicU64::new(1),
            replies,
        })
    }

    /// Subscribes `$NRG.*.<host id>` and hands each request to `host`, each on its own task;
    /// announces the node on `$NRGLIVE.<host id>` and listens to the others' announcements
    /// (waking the groups quiesced here whose leader fell silent).
    pub async fn serve(client: &Client, host: Host) -> Result<Service, ClientError> {
        let mut sub = client
            .subscribe(format!("{PREFIX}.*.{}", host.id()))
            .await?;
        let mut beacons = client.subscribe(format!("{LIVE}.*")).await?;
        let (c, h) = (client.clone(), host.clone());
        let rpcs = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                tokio::spawn(answer(c.clone(), h.clone(), msg));
            }
        });
        let h = host.clone();
        let heard = tokio::spawn(async move {
            while let Some(msg) = beacons.next().await {
                let node = msg.subject.rsplit('.').next().and_then(|t| t.parse().ok());
                let inc = <[u8; 8]>::try_from(&msg.payload[..])
                    .ok()
                    .map(u64::from_le_bytes);
                if let (Some(node), Some(inc)) = (node, inc) {
                    h.quiet().liveness.heard(node, inc);
                }
            }
        });
        let (c, h) = (client.clone(), host);
        let announce = tokio::spawn(async move {
            let subject = format!("{LIVE}.{}", h.id());
            let me = Bytes::copy_from_slice(&h.quiet().incarnation.to_le_bytes());
            let mut tick = tokio::time::interval(BEACON_EVERY);
            loop {
                tick.tick().await;
                let _ = c.publish(subject.clone(), me.clone()).await;
                h.wake_lapsed();
            }
        });
        Ok(Service {
            tasks: vec![rpcs, heard, announce],
        })
    }
}

async fn answer(client: Client, host: Host, msg: Message) {
    let Some(reply_to) = msg.reply else {
        return;
    };
    let group = msg.subject.split('.').nth(1).unwrap_or_default();
    let frame = host.handle_frame(group, &msg.payload).await;
    if let Err(e) = client.publish(reply_to, frame.into()).await {
        tracing::debug!(error = %e, group, "raft reply not sent");
    }
}

impl Wire for NatsWire {
    async fn call(&self, target: NodeId, group: &str, rpc: Rpc) -> Result<Reply, WireError> {
        let frame = encode_rpc(&rpc)?;
        if frame.len() > MAX_FRAME {
            return Err(WireError::TooLarge);
        }
        let call = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.calls).insert(call, tx);
        let reply = format!("{}{call}", self.prefix);
        // Not bounded by the clients' max_payload (an entry holds a message of up to that
        // size, plus its framing): routes carry it to the peer's in-process subscriber.
        let to = subject(group, target);
        let sent = self
            .client
            .publish_routed(&to, &to, Some(&reply), None, &frame);
        let unreachable = |why: &str| WireError::Unreachable(target, why.to_string());
        if sent == 0 {
            lock(&self.calls).remove(&call);
            return Err(unreachable("no responders"));
        }
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(payload)) => decode_reply(&payload),
            Ok(Err(_)) => Err(unreachable("wire closed")),
            Err(_) => {
                lock(&self.calls).remove(&call);
                Err(unreachable("timed out"))
            }
        }
    }
}
