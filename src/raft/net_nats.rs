//! A [`Wire`] over causeway's own request/reply: node `N` serves every group it hosts on
//! `$NRG.<group>.<N>` ([`NatsWire::serve`]), and an RPC is a request (a bincode [`Rpc`]) to
//! the target's subject, answered with a bincode [`Reply`]. Through the in-process
//! [`Client`] this reaches the groups on the same server; with cluster routes the same
//! subjects reach other servers, all of a server's groups sharing its route to each peer.
//!
//! Group names must therefore be single subject tokens (see `group::valid_name`). A request
//! nobody answers (no responders, timeout) is `Unreachable`.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::net::{decode_reply, encode_rpc, Host, Reply, Rpc, Wire, WireError};
use super::NodeId;
use crate::server::{Client, ClientError, Message};

/// Subject prefix of Raft RPCs.
pub const PREFIX: &str = "$NRG";

/// The subject node `node` serves `group` on.
pub fn subject(group: &str, node: NodeId) -> String {
    format!("{PREFIX}.{group}.{node}")
}

/// A node's wire over a causeway [`Client`].
pub struct NatsWire {
    client: Client,
}

/// Serves a node's groups until dropped (or the server shuts down).
pub struct Service {
    task: JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NatsWire {
    /// The wire sending through `client`.
    pub fn new(client: Client) -> Arc<NatsWire> {
        Arc::new(NatsWire { client })
    }

    /// Subscribes `$NRG.*.<host id>` and hands each request to `host`, each on its own task.
    pub async fn serve(client: &Client, host: Host) -> Result<Service, ClientError> {
        let mut sub = client
            .subscribe(format!("{PREFIX}.*.{}", host.id()))
            .await?;
        let client = client.clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                tokio::spawn(answer(client.clone(), host.clone(), msg));
            }
        });
        Ok(Service { task })
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
        match self
            .client
            .request(subject(group, target), frame.into())
            .await
        {
            Ok(msg) => decode_reply(&msg.payload),
            Err(ClientError::MaxPayload) => Err(WireError::TooLarge),
            Err(e) => Err(WireError::Unreachable(target, e.to_string())),
        }
    }
}
