//! The in-process client: publish, subscribe and request against an embedded server without a
//! socket. Messages go through the same routing and delivery as TCP clients, so in-process and
//! network clients see each other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::deliver::{deliver, Dirty, Origin, Publish};
use super::message::Message;
use super::sublist::{MatchCache, Router, Sink, Subscription};
use super::Shared;
use crate::protocol::subject;

/// Capacity of an in-process subscriber's queue; beyond it messages are dropped (slow consumer).
const SUBSCRIBER_CAPACITY: usize = 64 * 1024;
/// How long [`Client::request`] waits for a reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the in-process client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    /// The subject is not valid for this operation.
    #[error("invalid subject")]
    InvalidSubject,
    /// The payload exceeds max_payload.
    #[error("maximum payload exceeded")]
    MaxPayload,
    /// A request reached no subscriber.
    #[error("no responders")]
    NoResponders,
    /// A request got no reply in time.
    #[error("request timed out")]
    Timeout,
    /// The server has shut down.
    #[error("server is shut down")]
    ServerClosed,
}

/// An in-process client of an embedded server. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    /// The account's subject space this client lives in (the global one, unless made with
    /// [`Client::in_account`]).
    router: Arc<Router>,
    cid: u64,
    cache: Arc<Mutex<MatchCache>>,
}

static NEXT_INBOX: AtomicU64 = AtomicU64::new(1);

impl Client {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let router = shared.router.clone();
        Self::in_account(shared, router)
    }

    /// A client of the account whose subjects `router` holds.
    pub(crate) fn in_account(shared: Arc<Shared>, router: Arc<Router>) -> Self {
        let cid = shared.next_cid();
        Self {
            shared,
            router,
            cid,
            cache: Arc::default(),
        }
    }

    /// The server itself publishing in the account of `router` (connection id 0, which no
    /// connection has: nothing is held back as its own echo).
    pub(crate) fn server_side(shared: Arc<Shared>, router: Arc<Router>) -> Self {
        Self {
            shared,
            router,
            cid: 0,
            cache: Arc::default(),
        }
    }

    /// Other servers' interest, in a cluster.
    fn remote(&self) -> Option<&Arc<super::Remote>> {
        self.shared.remote.as_ref()
    }

    /// Publishes a message.
    pub async fn publish(
        &self,
        subject: impl Into<String>,
        payload: Bytes,
    ) -> Result<(), ClientError> {
        self.publish_inner(&subject.into(), None, None, &payload)
            .map(|_| ())
    }

    /// Publishes a message with a reply subject.
    pub async fn publish_with_reply(
        &self,
        subject: impl Into<String>,
        reply: impl Into<String>,
        payload: Bytes,
    ) -> Result<(), ClientError> {
        let reply = reply.into();
        self.publish_inner(&subject.into(), Some(&reply), None, &payload)
            .map(|_| ())
    }

    /// Publishes a message with a raw `NATS/1.0` header block.
    pub async fn publish_with_headers(
        &self,
        subject: impl Into<String>,
        headers: Bytes,
        payload: Bytes,
    ) -> Result<(), ClientError> {
        self.publish_inner(&subject.into(), None, Some(&headers), &payload)
            .map(|_| ())
    }

    /// Publishes from any thread without awaiting; returns how many subscriptions got it.
    pub(crate) fn publish_sync(
        &self,
        subj: &str,
        reply: Option<&str>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> usize {
        self.batch().publish(subj, reply, headers, payload)
    }

    /// Publishes a message routed by `to` but shown to receivers as `subject` (consumer
    /// deliveries: routed to the deliver subject, carrying the stored message's subject).
    pub(crate) fn publish_routed(
        &self,
        to: &str,
        subj: &str,
        reply: Option<&str>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> usize {
        self.batch()
            .publish_routed(to, subj, reply, headers, payload)
    }

    /// A batch of publishes whose receiving connections are flushed once, when it is dropped:
    /// a stream thread sending a batch of acks or deliveries makes one write per connection,
    /// not one per message.
    pub(crate) fn batch(&self) -> Batch<'_> {
        Batch {
            client: self,
            dirty: Dirty::default(),
        }
    }

    fn route(&self, to: &str, msg: &Publish<'_>, dirty: &mut Dirty) -> usize {
        let matches = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.router, to.as_bytes());
        let origin = Origin {
            cid: self.cid,
            echo: true,
        };
        let local = deliver(&self.router, &matches, msg, origin, dirty);
        let account = self.router.account();
        match self.remote() {
            Some(remote) if to.as_bytes() == msg.subject => {
                local + remote.forward(account, None, &matches, msg, dirty)
            }
            // A routed delivery (`to` differs from the subject) crosses as `RMSGD`, which
            // carries both (JetStream's, in the global account).
            Some(remote) if account == crate::protocol::route::GLOBAL_ACCOUNT => {
                local + remote.forward_delivery(to.as_bytes(), msg, dirty)
            }
            _ => local,
        }
    }

    /// True if some subscription matches `subj`.
    pub(crate) fn has_interest(&self, subj: &str) -> bool {
        let m = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.router, subj.as_bytes());
        !m.psubs.is_empty()
            || !m.qsubs.is_empty()
            || self
                .remote()
                .is_some_and(|r| r.has_interest(self.router.account(), subj.as_bytes()))
    }

    /// Registers a server-internal handler for `subject` (wildcards allowed).
    pub(crate) fn subscribe_internal(
        &self,
        subj: &str,
        queue: Option<&str>,
        handler: super::sublist::InternalHandler,
    ) -> Arc<Subscription> {
        self.subscribe_sink(subj, queue, Sink::Internal(handler))
    }

    /// Registers a bridge handler: like [`Client::subscribe_internal`], but it never gets what
    /// a route brings (see [`Sink::Bridge`]).
    pub(crate) fn subscribe_bridge(
        &self,
        subj: &str,
        handler: super::sublist::InternalHandler,
    ) -> Arc<Subscription> {
        self.subscribe_sink(subj, None, Sink::Bridge(handler))
    }

    fn subscribe_sink(&self, subj: &str, queue: Option<&str>, sink: Sink) -> Arc<Subscription> {
        let queue = queue.map(str::as_bytes);
        let sub = Arc::new(Subscription::new(subj.as_bytes(), queue, self.cid, sink));
        self.router.insert(sub.clone());
        sub
    }

    /// Removes a subscription made with [`Client::subscribe_internal`].
    pub(crate) fn unsubscribe_internal(&self, sub: &Arc<Subscription>) {
        self.router.remove(sub);
    }

    fn publish_inner(
        &self,
        subj: &str,
        reply: Option<&str>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<usize, ClientError> {
        self.batch().checked(subj, reply, headers, payload)
    }

    /// Subscribes to a subject (wildcards allowed).
    pub async fn subscribe(&self, subject: impl Into<String>) -> Result<Subscriber, ClientError> {
        self.subscribe_inner(subject.into(), None, 0)
    }

    /// Subscribes as a member of a queue group.
    pub async fn queue_subscribe(
        &self,
        subject: impl Into<String>,
        queue: impl Into<String>,
    ) -> Result<Subscriber, ClientError> {
        self.subscribe_inner(subject.into(), Some(queue.into()), 0)
    }

    fn subscribe_inner(
        &self,
        subj: String,
        queue: Option<String>,
        max: u64,
    ) -> Result<Subscriber, ClientError> {
        if self.shared.shutdown.is_cancelled() {
            return Err(ClientError::ServerClosed);
        }
        if !subject::is_valid_subject(subj.as_bytes())
            || !queue
                .as_deref()
                .is_none_or(|q| subject::is_valid_queue(q.as_bytes()))
        {
            return Err(ClientError::InvalidSubject);
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_CAPACITY);
        let sub = Arc::new(Subscription {
            subject: subj.into_bytes().into(),
            queue: queue.map(|q| q.into_bytes().into()),
            sid: Box::default(),
            client_id: self.cid,
            sink: Sink::Local(tx),
            max: AtomicU64::new(max),
            delivered: AtomicU64::new(0),
            removed: Default::default(),
            deny: None,
            responses: None,
        });
        self.router.insert(sub.clone());
        Ok(Subscriber {
            rx,
            sub,
            router: self.router.clone(),
            shared: self.shared.clone(),
        })
    }

    /// Sends a request and waits up to [`REQUEST_TIMEOUT`] for the first reply.
    pub async fn request(
        &self,
        subject: impl Into<String>,
        payload: Bytes,
    ) -> Result<Message, ClientError> {
        let inbox = format!(
            "_INBOX.{}.{}",
            self.shared.server_id,
            NEXT_INBOX.fetch_add(1, Ordering::Relaxed)
        );
        let mut sub = self.subscribe_inner(inbox.clone(), None, 1)?;
        let delivered = self.publish_inner(&subject.into(), Some(&inbox), None, &payload)?;
        if delivered == 0 {
            return Err(ClientError::NoResponders);
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, sub.next()).await {
            Ok(Some(msg)) => Ok(msg),
            Ok(None) => Err(ClientError::ServerClosed),
            Err(_) => Err(ClientError::Timeout),
        }
    }
}

/// Messages for one in-process subscription. Dropping it unsubscribes.
pub struct Subscriber {
    rx: mpsc::Receiver<Message>,
    sub: Arc<Subscription>,
    router: Arc<Router>,
    shared: Arc<Shared>,
}

impl Subscriber {
    /// Waits for the next message; `None` once unsubscribed or the server shut down.
    pub async fn next(&mut self) -> Option<Message> {
        if self.sub.removed.load(Ordering::Relaxed) {
            return self.rx.try_recv().ok();
        }
        tokio::select! {
            m = self.rx.recv() => m,
            _ = self.shared.shutdown.cancelled() => self.rx.try_recv().ok(),
        }
    }

    /// Stops receiving messages.
    pub fn unsubscribe(&mut self) {
        self.router.remove(&self.sub);
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.router.remove(&self.sub);
    }
}

/// Publishes from [`Client::batch`]; flushes the connections it touched when dropped.
pub(crate) struct Batch<'a> {
    client: &'a Client,
    dirty: Dirty,
}

impl Batch<'_> {
    /// Publishes like [`Client::publish_sync`].
    pub(crate) fn publish(
        &mut self,
        subj: &str,
        reply: Option<&str>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> usize {
        self.checked(subj, reply, headers, payload).unwrap_or(0)
    }

    /// Publishes like [`Client::publish_routed`].
    pub(crate) fn publish_routed(
        &mut self,
        to: &str,
        subj: &str,
        reply: Option<&str>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> usize {
        let msg = Publish {
            subject: subj.as_bytes(),
            reply: reply.map(str::as_bytes),
            headers,
            payload,
            routed_by: Some(to.as_bytes()),
        };
        self.client.route(to, &msg, &mut self.dirty)
    }

    /// A publish with the checks a client's publish gets, counted in the server's stats.
    fn checked(
        &mut self,
        subj: &str,
        reply: Option<&str>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<usize, ClientError> {
        let shared = &self.client.shared;
        if shared.shutdown.is_cancelled() {
            return Err(ClientError::ServerClosed);
        }
        if !subject::is_valid_literal_subject(subj.as_bytes()) {
            return Err(ClientError::InvalidSubject);
        }
        if payload.len() + headers.map_or(0, <[u8]>::len) > shared.config.max_payload {
            return Err(ClientError::MaxPayload);
        }
        let n = self.publish_routed(subj, subj, reply, headers, payload);
        let stats = &shared.stats;
        stats.in_msgs.fetch_add(1, Ordering::Relaxed);
        stats
            .in_bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.dirty.flush();
    }
}
