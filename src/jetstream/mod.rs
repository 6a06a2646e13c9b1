//! JetStream: durable streams and consumers behind the `$JS.API` request subjects.
//!
//! Layout: [`config`] (stream/consumer JSON and defaults), [`errors`] (nats-server's error
//! codes), [`stream`] (one stream's state and its `apply(op)` path), [`consumer`] (consumer
//! state machine), [`api`] (stream-bound request handlers and response shapes), [`runner`]
//! (the task that owns a stream: batching, group commit, delivery), [`headers`], [`time`].
//!
//! This module is the manager: it opens streams (at create, and from the [`catalogue`] at
//! start, see [`restore`]) with their tasks and subscriptions, and stops them; [`account`]
//! answers the account-level requests (`INFO`, stream create, delete, names, list) and routes
//! everything stream-bound to the owning stream's task; [`direct`] answers direct gets.

mod account;
mod advisory;
pub mod api;
mod catalogue;
mod clustered;
pub mod config;
pub mod consumer;
mod consumer_api;
mod consumer_rules;
pub mod direct;
pub mod errors;
pub mod headers;
mod journal;
mod limits;
mod meta;
mod queue;
mod replica;
mod replication;
mod restore;
pub mod runner;
mod sourcing;
mod stepdown;
pub mod stream;
pub mod time;
mod trace;
mod versioning;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::config::JetStreamConfig;
use crate::server::{Client, Message};
use crate::store::{FileStore, FileStoreOptions, MemStore, MsgStore, SharedStore, StoreReader};
use config::{Storage, StreamConfig};
use errors::ApiError;
pub use meta::MetaSetup;

use runner::{Ctx, Input};
use stream::Stream;

/// Queue depth of a stream thread: a publisher finding it full is held back, then dropped (no
/// ack, it retries), so a slow disk cannot grow memory without bound. The queue allocates as
/// it fills, so an idle stream costs little.
const STREAM_QUEUE: usize = 64 * 1024;

/// A replicated stream's group quiesces (no heartbeats) after this long without an entry.
const QUIESCE_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// A running stream (its configuration is the catalogue's).
struct Handle {
    tx: queue::Tx<Input>,
    subs: Vec<Arc<crate::server::Subscription>>,
    /// Reads the stream's store from connection tasks (direct gets).
    reader: StoreReader,
    /// Signalled when the stream's task has finished (after its final sync).
    done: std::sync::mpsc::Receiver<()>,
    /// A replicated stream's Raft group on this server.
    replica: Option<replica::Replica>,
    /// A replicated stream's read lease (direct gets are answered only while it holds).
    lease: Option<replica::Lease>,
}

/// The JetStream manager of one server.
pub(crate) struct JetStream {
    cfg: JetStreamConfig,
    client: Client,
    server_name: String,
    /// Which streams exist (the replicated truth); lock it before `streams`.
    catalogue: Mutex<catalogue::Durable>,
    streams: Mutex<BTreeMap<String, Handle>>,
    api_sub: Mutex<Option<Arc<crate::server::Subscription>>>,
    resources: Arc<limits::Resources>,
    /// The runtime the streams' tasks run on.
    runtime: tokio::runtime::Handle,
    /// This node's persistent identity (what Raft membership will name it by).
    node_id: String,
    /// The sled database every file stream keeps its index tree in; closed by
    /// [`JetStream::shutdown`] (a server started on the same directory in this process opens
    /// it again).
    index: Mutex<Option<sled::Db>>,
    /// The store directory's lock (`jetstream/LOCK`): one server per store directory, so the
    /// streams need no lock file of their own. Released by [`JetStream::shutdown`] once every
    /// stream has stopped (handles to the manager may outlive it).
    store_lock: Mutex<Option<crate::store::DirLock>>,
    /// In a cluster: this server's member of the meta group, which holds the catalogue
    /// instead of `catalogue`.
    meta: OnceLock<Arc<meta::Meta>>,
    /// Streams whose group membership is being changed here (one change at a time each).
    changing: Mutex<std::collections::HashSet<String>>,
}

impl JetStream {
    /// Starts JetStream: restores streams from disk and subscribes to `$JS.API.>`. In a
    /// cluster (`setup`), the meta group replaces the local catalogue and opens the streams
    /// placed on this server as its entries are applied.
    pub fn start(
        cfg: JetStreamConfig,
        client: Client,
        server_name: String,
        setup: Option<MetaSetup>,
    ) -> Result<Arc<Self>, crate::Error> {
        refuse_foreign_layout(&cfg.store_dir)?;
        std::fs::create_dir_all(streams_dir(&cfg.store_dir))?;
        let store_lock = lock_store(&cfg.store_dir)?;
        tracing::info!("Starting JetStream");
        tracing::info!("Store Directory: \"{}\"", cfg.store_dir.display());
        let node_id = node_id(&cfg.store_dir)?;
        let index =
            crate::store::open_shared_index(&cfg.store_dir.join("jetstream").join("index.sled"))
                .map_err(|e| tracing::error!("running without a sled index: {e}"))
                .ok();
        tracing::info!("  Node ID:         {node_id}");
        let catalogue = restore::open_catalogue(&cfg.store_dir)?;
        let resources = limits::Resources::new(&cfg);
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| crate::Error::Io(std::io::Error::other(e)))?;
        let js = Arc::new(Self {
            store_lock: Mutex::new(Some(store_lock)),
            resources,
            runtime,
            node_id,
            index: Mutex::new(index),
            cfg,
            client,
            server_name,
            catalogue: Mutex::new(catalogue),
            streams: Mutex::new(BTreeMap::new()),
            api_sub: Mutex::new(None),
            meta: OnceLock::new(),
            changing: Mutex::default(),
        });
        match setup {
            None => js.restore_streams(),
            Some(setup) => js.start_meta(setup)?,
        }
        let (tx, mut rx) = queue::queue::<Message>(STREAM_QUEUE);
        // Direct gets are answered by the streams' own subscriptions (see `direct`); taking
        // them here too would wake this thread for nothing, and a stream without direct gets
        // must leave the requester with "no responders", as nats-server does.
        let handler: crate::server::InternalHandler = Arc::new(move |m: Message| {
            !m.subject.starts_with("$JS.API.DIRECT.GET.") && tx.try_send(m).is_ok()
        });
        let sub = js.client.subscribe_internal("$JS.API.>", None, handler);
        *lock(&js.api_sub) = Some(sub);
        if let Some(domain) = js.cfg.domain.clone() {
            js.answer_domain(&domain);
        }
        let worker = js.clone();
        std::thread::Builder::new()
            .name("jetstream-api".into())
            .spawn(move || {
                while let Some(m) = rx.blocking_recv() {
                    worker.dispatch(m);
                }
            })?;
        Ok(js)
    }

    /// Answers `$JS.<domain>.API.>` as `$JS.API.>` (what clients of a JetStream domain send),
    /// and `$JS.<domain>.API.$KV.>` / `$OBJ.>` as `$KV.>` / `$OBJ.>` (their bucket writes):
    /// each is published again under the mapped subject, reply subject and all. A bridge: in a
    /// cluster each server passes on its own clients' requests only.
    fn answer_domain(&self, domain: &str) {
        let prefix = format!("$JS.{domain}.API.");
        let client = self.client.clone();
        let handler: crate::server::InternalHandler = Arc::new(move |m: Message| {
            if let Some(rest) = m.subject.strip_prefix(&prefix) {
                // KV and object store writes keep their own prefix (nats-server maps them so).
                let to = if rest.starts_with("$KV.") || rest.starts_with("$OBJ.") {
                    rest.to_string()
                } else {
                    format!("$JS.API.{rest}")
                };
                let headers = m.headers.as_deref();
                client.publish_sync(&to, m.reply.as_deref(), headers, &m.payload);
            }
            true
        });
        let _ = self
            .client
            .subscribe_bridge(&format!("$JS.{domain}.API.>"), handler);
    }

    /// This node's persistent identity, kept in the store directory.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// In a cluster, the meta group as `/jsz` shows it: `{name, leader, cluster_size}`.
    pub fn meta_cluster(&self) -> Option<serde_json::Value> {
        let meta = self.meta.get()?;
        Some(serde_json::json!({
            "name": meta.cluster(),
            "leader": meta.leader_name().unwrap_or_default(),
            "cluster_size": meta.size(),
        }))
    }

    /// `$JS.API` requests served and errors: `{level, total, errors}`.
    pub fn api_stats(&self) -> serde_json::Value {
        self.resources.api.json()
    }

    /// The latency histogram of stream commits' `fdatasync` (seconds).
    pub fn sync_latency(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.resources.sync_latency.clone()
    }

    /// The memory limit in force (`max_memory_store`, or 75% of RAM by default).
    pub fn max_memory(&self) -> i64 {
        self.resources.max(config::Storage::Memory)
    }

    /// The file storage limit in force (`max_file_store`, or 75% of the disk by default).
    pub fn max_file(&self) -> i64 {
        self.resources.max(config::Storage::File)
    }

    /// Joins the meta group (the local catalogue must hold no stream: a single server's
    /// streams are not taken into a cluster yet).
    fn start_meta(self: &Arc<Self>, setup: MetaSetup) -> Result<(), crate::Error> {
        if lock(&self.catalogue).catalogue().streams().next().is_some() {
            return Err(crate::Error::Store(format!(
                "{} holds the streams of a single server; taking them into a cluster is not supported yet",
                self.cfg.store_dir.display()
            )));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (weak, me) = (Arc::downgrade(self), self.server_name.clone());
        std::thread::Builder::new()
            .name("jetstream-meta".into())
            .spawn(move || clustered::run_events(weak, me, rx))?;
        let dir = self.cfg.store_dir.join("jetstream").join("meta-raft");
        let again = tx.clone();
        let start = meta::Meta::start(
            self.client.clone(),
            &dir,
            self.server_name.clone(),
            setup,
            tx,
        );
        let meta = self
            .runtime
            .block_on(start)
            .map_err(|e| crate::Error::Store(format!("JetStream meta group: {e}")))?;
        let _ = self.meta.set(meta);
        self.subscribe_holds();
        // The snapshot was restored before the group could be read: reconcile with it now, in
        // order with the entries applied since.
        let _ = again.send(meta::Event::Restored);
        Ok(())
    }

    /// Stops every stream thread after it synced and persisted its state.
    pub fn shutdown(&self) {
        if let Some(sub) = lock(&self.api_sub).take() {
            self.client.unsubscribe_internal(&sub);
        }
        if let Some(meta) = self.meta.get() {
            meta.shutdown();
        }
        let mut streams = lock(&self.streams);
        for (name, mut h) in std::mem::take(&mut *streams) {
            for s in &h.subs {
                self.client.unsubscribe_internal(s);
            }
            if let Some(r) = h.replica.take() {
                self.runtime.block_on(r.stop());
            }
            let _ = h.tx.send(Input::Stop);
            h.wait_done(&name);
        }
        drop(streams);
        lock(&self.index).take();
        lock(&self.store_lock).take();
    }

    /// Opens (or creates) the store and task of a stream and subscribes it.
    fn open_stream(&self, config: StreamConfig, created: i64, fresh: bool) -> Result<(), ApiError> {
        self.open_stream_with(config, created, fresh, None)
    }

    /// [`JetStream::open_stream`]; with `peers` (a replicated stream placed on this server
    /// among them) its store is rebuilt from its Raft group's log, which is opened too.
    fn open_stream_with(
        &self,
        config: StreamConfig,
        created: i64,
        fresh: bool,
        peers: Option<&[String]>,
    ) -> Result<(), ApiError> {
        let name = config.name.clone();
        let dir = streams_dir(&self.cfg.store_dir).join(&name);
        if peers.is_some() {
            // Derived state: the group's snapshot and log are the truth, restored into it.
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(ApiError::store_failed(&e.to_string()));
                }
            }
        }
        let io = |e: std::io::Error| ApiError::store_failed(&e.to_string());
        let mut lost = Vec::new();
        let (store, dir): (Box<dyn MsgStore + Sync>, Option<PathBuf>) = match config.storage {
            Storage::Memory => (Box::new(MemStore::new()), None),
            Storage::File => {
                if fresh {
                    restore::set_aside(&dir);
                }
                std::fs::create_dir_all(&dir).map_err(io)?;
                let (fs, report) = open_file_store(&name, &dir, lock(&self.index).clone())
                    .map_err(|e| ApiError::store_failed(&e.to_string()))?;
                lost = report.lost_seqs;
                (Box::new(fs), Some(dir))
            }
        };
        let mut store = SharedStore::new(store);
        if let Some(dir) = &dir {
            let (name, dir, index) = (name.clone(), dir.clone(), lock(&self.index).clone());
            store = store.reopen_with(Box::new(move || {
                // A recreated store (a replica restoring a snapshot) starts from no directory.
                std::fs::create_dir_all(&dir)?;
                let (fs, _) = open_file_store(&name, &dir, index.clone())?;
                Ok(Box::new(fs) as Box<dyn MsgStore + Sync>)
            }));
        }
        let reader = store.reader();
        let mut stream = Stream::new(config.clone(), created, Box::new(store), dir);
        stream.lost = lost;
        // Derived from the configuration on every open, so a crash right after the catalogue
        // took the stream cannot lose it: a store that never held anything starts there.
        if config.first_seq > 1 && stream.store.last_seq() == 0 {
            stream
                .store
                .set_first_seq(config.first_seq)
                .map_err(|e| ApiError::store_failed(&e.to_string()))?;
        }
        stream.replicated = peers.is_some();
        stream.load_consumers();
        let (tx, rx) = queue::queue(STREAM_QUEUE);
        let (role, ends) = match peers {
            Some(_) => {
                let (role, ends) = replica::Role::new(tx.clone());
                (Some(role), Some(ends))
            }
            None => (None, None),
        };
        let lease = role.as_ref().map(|r| r.lease.clone());
        let ctx = Ctx {
            client: self.client.clone(),
            server_name: self.server_name.clone(),
            // A replicated stream's store is not the log: its group's log is fsynced.
            sync: if role.is_some() {
                crate::config::SyncPolicy::Never
            } else if config.persist_mode.as_deref() == Some("async") {
                config::async_persist(self.cfg.sync)
            } else {
                self.cfg.sync
            },
            resources: self.resources.clone(),
            replica: role,
            cluster_name: self.meta.get().map(|m| m.cluster().to_string()),
            domain: self.cfg.domain.clone(),
            tx: tx.clone(),
            runtime: self.runtime.clone(),
        };
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let runner = runner::Runner::new(stream, ctx);
        self.runtime.spawn(async move {
            runner::drive(runner, rx).await;
            let _ = done_tx.send(());
        });
        // The runner runs before the group opens: opening replays committed entries into it.
        let replica = match (peers, ends) {
            (Some(peers), Some(ends)) => match self.open_group(&name, peers, &tx, ends) {
                Ok(r) => Some(r),
                Err(e) => {
                    let _ = tx.send(Input::Stop);
                    return Err(e);
                }
            },
            _ => None,
        };
        let subs = self.subscribe_stream(&config, &tx, reader.clone(), lease.clone());
        // A mirror or source starts its links at its first look (a replicated one's leader).
        if config.mirror.is_some() || config.sources.is_some() {
            enqueue(&tx, Input::Nudge);
        }
        lock(&self.streams).insert(
            name,
            Handle {
                tx,
                subs,
                reader,
                done,
                replica,
                lease,
            },
        );
        Ok(())
    }

    /// Opens the Raft group of a replicated stream (the first of `peers` initializes it).
    fn open_group(
        &self,
        name: &str,
        peers: &[String],
        tx: &queue::Tx<Input>,
        ends: replica::RoleEnds,
    ) -> Result<replica::Replica, ApiError> {
        let meta = self.meta.get().ok_or_else(meta::unavailable)?;
        let group_name = replica::group_name(name);
        let dir = self
            .cfg
            .store_dir
            .join("jetstream")
            .join("raft")
            .join(&group_name);
        let mut opts = crate::raft::GroupOptions::new(group_name, meta.node(), dir);
        opts.snapshot_every = 0;
        opts.quiesce_after = Some(QUIESCE_AFTER);
        let machine = replica::StreamMachine::new(tx.clone());
        let wire = crate::raft::NatsWire::new(self.client.clone());
        let open = crate::raft::Group::open(opts, machine, wire, meta.host());
        let group = self
            .runtime
            .block_on(open)
            .map_err(|e| ApiError::store_failed(&format!("stream group: {e}")))?;
        let r = replica::Replica::start(group, ends, self.client.clone(), &self.runtime);
        if peers.first().map(String::as_str) == Some(self.server_name.as_str()) {
            if let Err(e) = self.runtime.block_on(r.initialize(peers)) {
                tracing::warn!(stream = %name, "stream group not initialized: {e}");
            }
        }
        Ok(r)
    }

    fn subscribe_stream(
        &self,
        config: &StreamConfig,
        tx: &queue::Tx<Input>,
        reader: StoreReader,
        lease: Option<replica::Lease>,
    ) -> Vec<Arc<crate::server::Subscription>> {
        let mut subs = Vec::new();
        let name = &config.name;
        let mk = |f: fn(Message) -> Input| -> crate::server::InternalHandler {
            let tx = tx.clone();
            Arc::new(move |m| enqueue(&tx, f(m)))
        };
        let publish: crate::server::InternalHandler = {
            let (tx, name) = (tx.clone(), name.clone());
            Arc::new(move |m: Message| {
                // A traced message's JetStream event keeps its place among the trace's events.
                m.trace.stream_took(&name);
                enqueue(&tx, Input::Publish(m))
            })
        };
        for s in &config.subjects {
            subs.push(self.client.subscribe_internal(s, None, publish.clone()));
        }
        subs.push(self.client.subscribe_internal(
            &format!("$JS.ACK.{name}.>"),
            None,
            mk(Input::Ack),
        ));
        subs.push(self.client.subscribe_internal(
            &format!("$JS.FC.{name}.>"),
            None,
            mk(Input::FlowControl),
        ));
        if config.allow_direct {
            // A replicated stream's direct gets reach every replica; only the leader holding
            // its read lease answers (linearizable reads; nats-server lets any replica answer,
            // which may be stale).
            let tx2 = tx.clone();
            let direct = direct::handler(
                name.clone(),
                reader,
                self.client.clone(),
                move || match &lease {
                    None => direct::Serve::Answer,
                    Some(l) if l.holds() => direct::Serve::Answer,
                    // A quiesced leader: the stream's runner holds it and wakes the group.
                    Some(l) if l.lapsed() => direct::Serve::Forward,
                    Some(_) => direct::Serve::Ignore,
                },
                move |input| enqueue(&tx2, input),
            );
            subs.push(self.client.subscribe_internal(
                &format!("$JS.API.DIRECT.GET.{name}"),
                None,
                direct.clone(),
            ));
            subs.push(self.client.subscribe_internal(
                &format!("$JS.API.DIRECT.GET.{name}.>"),
                None,
                direct,
            ));
        }
        subs
    }
}

impl Handle {
    /// Waits (bounded) for the stream's task to finish after a Stop or Delete.
    fn wait_done(&self, name: &str) {
        if self.done.recv_timeout(Duration::from_secs(30)).is_err() {
            tracing::warn!(stream = %name, "stream did not stop within 30 s");
        }
    }
}

/// How long a publisher is held back when a stream's queue is full before its message is
/// dropped (it then gets no pub ack and retries).
const ENQUEUE_PATIENCE: Duration = Duration::from_secs(2);

/// Queues work for a stream. A full queue is back-pressure. A client connection publishing
/// into it (`server::backpressure`) has its message taken past the bound and awaits room
/// before it reads more from its socket: nothing is dropped and no runtime thread waits.
/// Any other publisher (a stream's own thread republishing, an in-process client) waits for
/// room in place, up to [`ENQUEUE_PATIENCE`], woken as soon as the stream takes an item; on a
/// multi-threaded runtime's worker that wait is announced to tokio (`block_in_place`).
fn enqueue(tx: &queue::Tx<Input>, input: Input) -> bool {
    let input = match tx.try_send(input) {
        Ok(()) => return true,
        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return false,
        Err(std::sync::mpsc::TrySendError::Full(i)) => i,
    };
    if crate::server::backpressure::can_hold() {
        if tx.send(input).is_err() {
            return false;
        }
        crate::server::backpressure::hold(Box::pin(tx.room()));
        return true;
    }
    let wait = || tx.send_waiting(input, ENQUEUE_PATIENCE);
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let sent = if multi_thread {
        tokio::task::block_in_place(wait)
    } else {
        wait()
    };
    if !sent {
        tracing::warn!("stream queue full for {ENQUEUE_PATIENCE:?}; message dropped");
    }
    sent
}

/// Opens (or creates) a stream's file store under `dir`, logging any damage recovery found.
fn open_file_store(
    name: &str,
    dir: &Path,
    index: Option<sled::Db>,
) -> Result<(FileStore, crate::store::RecoveryReport), crate::store::StoreError> {
    let opts = FileStoreOptions {
        shared_index: index,
        ..FileStoreOptions::default()
    };
    let (fs, report) = FileStore::open(&dir.join("store"), opts)?;
    if report.truncated_bytes > 0 || !report.corrupt_records.is_empty() {
        tracing::error!(
            stream = %name,
            truncated = report.truncated_bytes,
            corrupt = report.corrupt_records.len(),
            lost = report.lost_seqs.len(),
            "stream recovered with damage"
        );
    }
    Ok((fs, report))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The node's identity: `<store_dir>/jetstream/node_id`, created (durably) on first start, so
/// the same store is the same node across restarts.
fn node_id(store_dir: &Path) -> Result<String, crate::Error> {
    use rand::Rng;
    let dir = store_dir.join("jetstream");
    let path = dir.join("node_id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(id.to_string());
        }
        tracing::warn!(path = %path.display(), "node id unreadable; a new one is made");
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let id: String = (0..16)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join("node_id.tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(id)
}

/// nats-server keeps streams under `jetstream/<account>/streams/<name>/meta.inf`; causeway
/// cannot read that format, and starting empty on top of it would look like lost data.
fn refuse_foreign_layout(store_dir: &Path) -> Result<(), crate::Error> {
    let Ok(entries) = std::fs::read_dir(store_dir.join("jetstream")) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let account = e.path();
        if e.file_name() != "streams" && account.join("streams").is_dir() {
            return Err(crate::Error::Store(format!(
                "{} holds nats-server's JetStream data (account {:?}: {}/streams/...), which causeway can't read; give -sd a directory of its own",
                store_dir.display(),
                e.file_name(),
                account.display(),
            )));
        }
    }
    Ok(())
}

/// Takes `<store_dir>/jetstream/LOCK`; another process holding it is an error naming the
/// directory (a second server on it would rebuild the first one's index under it).
fn lock_store(store_dir: &Path) -> Result<crate::store::DirLock, crate::Error> {
    let dir = store_dir.join("jetstream");
    crate::store::DirLock::take(&dir, false).map_err(|e| {
        crate::Error::Store(format!(
            "store directory {} is in use by another server ({e})",
            store_dir.display()
        ))
    })
}

fn streams_dir(store_dir: &Path) -> PathBuf {
    store_dir.join("jetstream").join("streams")
}

/// Answers every `$JS.API` request made in an account JetStream does not serve (any account
/// of `accounts {}`: JetStream serves the global account) with 10039, as nats-server answers
/// an account without JetStream.
pub(crate) fn refuse_account(client: crate::server::Client) {
    let body = serde_json::json!({ "error": errors::ApiError::not_enabled_for_account() });
    let body = bytes::Bytes::from(body.to_string());
    let client = std::sync::Arc::new(client);
    let replier = client.clone();
    let handler = std::sync::Arc::new(move |msg: crate::server::Message| {
        if let Some(reply) = &msg.reply {
            replier.publish_sync(reply, None, None, &body);
        }
        true
    });
    let _ = client.subscribe_internal("$JS.API.>", None, handler);
}
