//! JetStream: durable streams and consumers behind the `$JS.API` request subjects.
//!
//! Layout: [`config`] (stream/consumer JSON and defaults), [`errors`] (nats-server's error
//! codes), [`stream`] (one stream's state and its `apply(op)` path), [`consumer`] (consumer
//! state machine), [`api`] (stream-bound request handlers and response shapes), [`runner`]
//! (the thread that owns a stream: batching, group commit, delivery), [`headers`], [`time`].
//!
//! This module is the manager: it answers account-level requests (`INFO`, stream create,
//! delete, names, list), routes everything stream-bound to the owning stream's thread, and
//! restores streams from the store directory at start.

pub mod api;
pub mod config;
pub mod consumer;
pub mod direct;
pub mod errors;
pub mod headers;
pub mod runner;
pub mod stream;
pub mod time;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::JetStreamConfig;
use crate::server::{Client, Message};
use crate::store::{FileStore, FileStoreOptions, MemStore, MsgStore, SharedStore, StoreReader};
use api::{response, Call};
use config::{Storage, StreamConfig};
use errors::ApiError;
use runner::{Ctx, Input};
use stream::Stream;

/// Queue depth of a stream thread; publishes beyond it are dropped (the publisher gets no ack
/// and retries), so a slow disk cannot grow memory without bound.
const STREAM_QUEUE: usize = 64 * 1024;

struct Handle {
    tx: SyncSender<Input>,
    config: StreamConfig,
    subs: Vec<Arc<crate::server::Subscription>>,
    /// Reads the stream's store from connection tasks (direct gets).
    reader: StoreReader,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The JetStream manager of one server.
pub(crate) struct JetStream {
    cfg: JetStreamConfig,
    client: Client,
    server_name: String,
    streams: Mutex<BTreeMap<String, Handle>>,
    api_sub: Mutex<Option<Arc<crate::server::Subscription>>>,
}

#[derive(Serialize, Deserialize)]
struct StreamMeta {
    config: StreamConfig,
    created: i64,
}

impl JetStream {
    /// Starts JetStream: restores streams from disk and subscribes to `$JS.API.>`.
    pub fn start(
        cfg: JetStreamConfig,
        client: Client,
        server_name: String,
    ) -> Result<Arc<Self>, crate::Error> {
        std::fs::create_dir_all(streams_dir(&cfg.store_dir))?;
        tracing::info!("Starting JetStream");
        tracing::info!("Store Directory: \"{}\"", cfg.store_dir.display());
        let js = Arc::new(Self {
            cfg,
            client,
            server_name,
            streams: Mutex::new(BTreeMap::new()),
            api_sub: Mutex::new(None),
        });
        js.restore();
        let (tx, rx) = sync_channel::<Message>(STREAM_QUEUE);
        // Direct gets are answered by the streams' own subscriptions (see `direct`); taking
        // them here too would wake this thread for nothing, and a stream without direct gets
        // must leave the requester with "no responders", as nats-server does.
        let handler: crate::server::InternalHandler = Arc::new(move |m: Message| {
            !m.subject.starts_with("$JS.API.DIRECT.GET.") && tx.try_send(m).is_ok()
        });
        let sub = js.client.subscribe_internal("$JS.API.>", None, handler);
        *lock(&js.api_sub) = Some(sub);
        let worker = js.clone();
        std::thread::Builder::new()
            .name("jetstream-api".into())
            .spawn(move || {
                while let Ok(m) = rx.recv() {
                    worker.dispatch(m);
                }
            })?;
        Ok(js)
    }

    /// Number of streams.
    pub fn num_streams(&self) -> usize {
        lock(&self.streams).len()
    }

    /// Stops every stream thread after it synced and persisted its state.
    pub fn shutdown(&self) {
        if let Some(sub) = lock(&self.api_sub).take() {
            self.client.unsubscribe_internal(&sub);
        }
        let mut streams = lock(&self.streams);
        for (_, mut h) in std::mem::take(&mut *streams) {
            for s in &h.subs {
                self.client.unsubscribe_internal(s);
            }
            let _ = h.tx.send(Input::Stop);
            if let Some(t) = h.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn restore(&self) {
        let dir = streams_dir(&self.cfg.store_dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let meta: StreamMeta = match std::fs::read(path.join("meta.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(m) => m,
                None => {
                    tracing::error!(dir = %path.display(), "stream metadata unreadable; stream skipped");
                    continue;
                }
            };
            let name = meta.config.name.clone();
            match self.open_stream(meta.config, meta.created, false) {
                Ok(()) => tracing::info!(stream = %name, "Restored stream"),
                Err(e) => {
                    tracing::error!(stream = %name, "can't restore stream: {}", e.description)
                }
            }
        }
    }

    /// Opens (or creates) the store and thread of a stream and subscribes it.
    fn open_stream(&self, config: StreamConfig, created: i64, fresh: bool) -> Result<(), ApiError> {
        let name = config.name.clone();
        let dir = streams_dir(&self.cfg.store_dir).join(&name);
        let io = |e: std::io::Error| ApiError::store_failed(&e.to_string());
        let mut lost = Vec::new();
        let (store, dir): (Box<dyn MsgStore + Sync>, Option<PathBuf>) = match config.storage {
            Storage::Memory => (Box::new(MemStore::new()), None),
            Storage::File => {
                if fresh {
                    std::fs::create_dir_all(&dir).map_err(io)?;
                    write_meta(
                        &dir,
                        &StreamMeta {
                            config: config.clone(),
                            created,
                        },
                    )
                    .map_err(io)?;
                }
                let (fs, report) = FileStore::open(&dir.join("store"), FileStoreOptions::default())
                    .map_err(|e| ApiError::store_failed(&e.to_string()))?;
                if report.truncated_bytes > 0 || !report.corrupt_records.is_empty() {
                    tracing::error!(
                        stream = %name,
                        truncated = report.truncated_bytes,
                        corrupt = report.corrupt_records.len(),
                        lost = report.lost_seqs.len(),
                        "stream recovered with damage"
                    );
                }
                lost = report.lost_seqs;
                (Box::new(fs), Some(dir))
            }
        };
        let store = SharedStore::new(store);
        let reader = store.reader();
        let mut stream = Stream::new(config.clone(), created, Box::new(store), dir);
        stream.lost = lost;
        if config.first_seq > 1 && fresh {
            let _ = stream.store.set_first_seq(config.first_seq);
        }
        stream.load_consumers();
        let (tx, rx) = sync_channel(STREAM_QUEUE);
        let ctx = Ctx {
            client: self.client.clone(),
            server_name: self.server_name.clone(),
            sync: self.cfg.sync,
        };
        let thread = std::thread::Builder::new()
            .name(format!("stream-{name}"))
            .spawn(move || runner::run(stream, rx, ctx))
            .map_err(io)?;
        let subs = self.subscribe_stream(&config, &tx, reader.clone());
        lock(&self.streams).insert(
            name,
            Handle {
                tx,
                config,
                subs,
                reader,
                thread: Some(thread),
            },
        );
        Ok(())
    }

    fn subscribe_stream(
        &self,
        config: &StreamConfig,
        tx: &SyncSender<Input>,
        reader: StoreReader,
    ) -> Vec<Arc<crate::server::Subscription>> {
        let mut subs = Vec::new();
        let name = &config.name;
        let mk = |f: fn(Message) -> Input| -> crate::server::InternalHandler {
            let tx = tx.clone();
            Arc::new(move |m| enqueue(&tx, f(m)))
        };
        for s in &config.subjects {
            subs.push(self.client.subscribe_internal(s, None, mk(Input::Publish)));
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
            let tx2 = tx.clone();
            let direct = direct::handler(name.clone(), reader, self.client.clone(), move |input| {
                enqueue(&tx2, input)
            });
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

    fn reply(&self, m: &Message, kind: &str, body: Result<Value, ApiError>) {
        if let Some(reply) = &m.reply {
            self.client
                .publish_sync(reply, None, None, &response(kind, body));
        }
    }

    /// Routes one `$JS.API` request.
    fn dispatch(&self, m: Message) {
        let Some(rest) = m.subject.strip_prefix("$JS.API.") else {
            return;
        };
        let tokens: Vec<&str> = rest.split('.').collect();
        match tokens.as_slice() {
            ["INFO"] => self.reply(&m, "account_info", Ok(self.account_info())),
            ["STREAM", "CREATE", name] => {
                let r = self.create_stream(name, &m.payload);
                self.reply(&m, "stream_create", r);
            }
            ["STREAM", "DELETE", name] => self.delete_stream(name, m.clone()),
            ["STREAM", "NAMES"] => self.reply(&m, "stream_names", Ok(self.names(&m.payload))),
            ["STREAM", "LIST"] => self.reply(&m, "stream_list", Ok(self.list(&m.payload))),
            ["STREAM", "UPDATE", name] => self.update_stream(name, m.clone()),
            ["STREAM", "INFO", name] => self.forward(name, Call::Info, m.clone(), "stream_info"),
            ["STREAM", "PURGE", name] => self.forward(name, Call::Purge, m.clone(), "stream_purge"),
            ["STREAM", "MSG", "GET", name] => {
                self.forward(name, Call::MsgGet, m.clone(), "stream_msg_get")
            }
            ["STREAM", "MSG", "DELETE", name] => {
                self.forward(name, Call::MsgDelete, m.clone(), "stream_msg_delete")
            }
            ["CONSUMER", "CREATE", stream] => self.forward(
                stream,
                Call::ConsumerCreate {
                    name: None,
                    filter: None,
                    durable_subject: false,
                },
                m.clone(),
                "consumer_create",
            ),
            ["CONSUMER", "CREATE", stream, name, filter @ ..] => {
                let filter = (!filter.is_empty()).then(|| filter.join("."));
                let call = Call::ConsumerCreate {
                    name: Some(name.to_string()),
                    filter,
                    durable_subject: false,
                };
                self.forward(stream, call, m.clone(), "consumer_create")
            }
            ["CONSUMER", "DURABLE", "CREATE", stream, name] => {
                let call = Call::ConsumerCreate {
                    name: Some(name.to_string()),
                    filter: None,
                    durable_subject: true,
                };
                self.forward(stream, call, m.clone(), "consumer_create")
            }
            ["CONSUMER", "INFO", stream, name] => self.forward(
                stream,
                Call::ConsumerInfo(name.to_string()),
                m.clone(),
                "consumer_info",
            ),
            ["CONSUMER", "DELETE", stream, name] => self.forward(
                stream,
                Call::ConsumerDelete(name.to_string()),
                m.clone(),
                "consumer_delete",
            ),
            ["CONSUMER", "NAMES", stream] => {
                self.forward(stream, Call::ConsumerNames, m.clone(), "consumer_names")
            }
            ["CONSUMER", "LIST", stream] => {
                self.forward(stream, Call::ConsumerList, m.clone(), "consumer_list")
            }
            ["CONSUMER", "MSG", "NEXT", stream, name] => self.forward(
                stream,
                Call::ConsumerNext(name.to_string()),
                m.clone(),
                "consumer_next",
            ),
            ["CONSUMER", "PAUSE", stream, name] => self.forward(
                stream,
                Call::ConsumerPause(name.to_string()),
                m.clone(),
                "consumer_pause",
            ),
            _ => self.reply(
                &m,
                "error",
                Err(ApiError::bad_request("unknown JetStream API request")),
            ),
        }
    }

    fn forward(&self, name: &str, call: Call, m: Message, kind: &str) {
        let tx = lock(&self.streams).get(name).map(|h| h.tx.clone());
        match tx {
            Some(tx) => {
                if tx.try_send(Input::Api(call, m.clone())).is_err() {
                    self.reply(
                        &m,
                        kind,
                        Err(ApiError {
                            code: 503,
                            err_code: 10008,
                            description: "JetStream system temporarily unavailable".into(),
                        }),
                    );
                }
            }
            None => match call {
                Call::ConsumerNext(_) => {
                    if let Some(reply) = &m.reply {
                        let st = consumer::status(reply, 404, "Stream Not Found", &[]);
                        self.client.publish_routed(
                            &st.to,
                            &st.subject,
                            None,
                            st.headers.as_deref(),
                            &[],
                        );
                    }
                }
                _ => self.reply(&m, kind, Err(ApiError::stream_not_found())),
            },
        }
    }

    fn create_stream(&self, name: &str, body: &[u8]) -> Result<Value, ApiError> {
        let cfg: StreamConfig =
            serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e.to_string()))?;
        if cfg.name.is_empty() {
            return Err(ApiError::stream_name_required());
        }
        if cfg.name != name {
            return Err(ApiError::stream_mismatch());
        }
        let cfg = cfg.normalize()?;
        if cfg.sealed {
            return Err(ApiError::invalid_config(
                "stream configuration for create can not be sealed",
            ));
        }
        {
            let streams = lock(&self.streams);
            if let Some(existing) = streams.get(name) {
                if existing.config == cfg {
                    let tx = existing.tx.clone();
                    drop(streams);
                    return self.query_info(&tx).ok_or_else(ApiError::stream_not_found);
                }
                return Err(ApiError::stream_name_exist());
            }
            for h in streams.values() {
                if h.config.subjects.iter().any(|a| {
                    cfg.subjects
                        .iter()
                        .any(|b| crate::protocol::subject::overlaps(a, b))
                }) {
                    return Err(ApiError::subjects_overlap());
                }
            }
        }
        self.open_stream(cfg, time::now_nanos(), true)?;
        let tx = lock(&self.streams).get(name).map(|h| h.tx.clone());
        tx.and_then(|tx| self.query_info(&tx))
            .ok_or_else(ApiError::stream_not_found)
    }

    /// Validates an update against the current config and the other streams, re-subscribes
    /// changed subjects, then lets the stream thread apply it.
    fn update_stream(&self, name: &str, m: Message) {
        let checked = serde_json::from_slice::<StreamConfig>(&m.payload)
            .map_err(|e| ApiError::invalid_json(&e.to_string()))
            .and_then(|cfg| {
                if cfg.name != name {
                    return Err(ApiError::stream_mismatch());
                }
                cfg.normalize()
            });
        let mut streams = lock(&self.streams);
        let result = checked.and_then(|cfg| {
            let old = streams.get(name).ok_or_else(ApiError::stream_not_found)?;
            api::check_update(&old.config, &cfg)?;
            let overlap = streams.iter().any(|(n, h)| {
                n != name
                    && h.config.subjects.iter().any(|a| {
                        cfg.subjects
                            .iter()
                            .any(|b| crate::protocol::subject::overlaps(a, b))
                    })
            });
            if overlap {
                return Err(ApiError::subjects_overlap());
            }
            Ok(cfg)
        });
        let cfg = match result {
            Ok(cfg) => cfg,
            Err(e) => {
                drop(streams);
                self.reply(&m, "stream_update", Err(e));
                return;
            }
        };
        if let Some(h) = streams.get_mut(name) {
            if h.config.subjects != cfg.subjects || h.config.allow_direct != cfg.allow_direct {
                for s in h.subs.drain(..) {
                    self.client.unsubscribe_internal(&s);
                }
                h.subs = self.subscribe_stream(&cfg, &h.tx, h.reader.clone());
            }
            h.config = cfg;
            let _ = h.tx.try_send(Input::Api(Call::Update, m));
        }
    }

    fn delete_stream(&self, name: &str, m: Message) {
        let handle = lock(&self.streams).remove(name);
        let Some(mut h) = handle else {
            self.reply(&m, "stream_delete", Err(ApiError::stream_not_found()));
            return;
        };
        for s in &h.subs {
            self.client.unsubscribe_internal(s);
        }
        let _ = h.tx.send(Input::Delete(m.reply.clone()));
        if let Some(t) = h.thread.take() {
            let _ = t.join();
        }
    }

    fn query_info(&self, tx: &SyncSender<Input>) -> Option<Value> {
        let (rtx, rrx) = sync_channel(1);
        tx.send(Input::Info(rtx)).ok()?;
        rrx.recv_timeout(Duration::from_secs(5)).ok()
    }

    fn matching_names(&self, body: &[u8]) -> Vec<(String, SyncSender<Input>)> {
        #[derive(Deserialize, Default)]
        struct Req {
            #[serde(default)]
            subject: Option<String>,
        }
        let req: Req = serde_json::from_slice(body).unwrap_or_default();
        lock(&self.streams)
            .iter()
            .filter(|(_, h)| {
                req.subject.as_deref().is_none_or(|s| {
                    h.config
                        .subjects
                        .iter()
                        .any(|p| crate::protocol::subject::overlaps(p, s))
                })
            })
            .map(|(n, h)| (n.clone(), h.tx.clone()))
            .collect()
    }

    fn offset(body: &[u8]) -> usize {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("offset").and_then(Value::as_u64))
            .unwrap_or(0) as usize
    }

    fn names(&self, body: &[u8]) -> Value {
        let all = self.matching_names(body);
        let offset = Self::offset(body);
        let names: Vec<String> = all
            .iter()
            .skip(offset)
            .take(1024)
            .map(|(n, _)| n.clone())
            .collect();
        json!({ "total": all.len(), "offset": offset, "limit": 1024, "streams": names })
    }

    fn list(&self, body: &[u8]) -> Value {
        let all = self.matching_names(body);
        let offset = Self::offset(body);
        let infos: Vec<Value> = all
            .iter()
            .skip(offset)
            .take(256)
            .filter_map(|(_, tx)| self.query_info(tx))
            .collect();
        json!({ "total": all.len(), "offset": offset, "limit": 256, "streams": infos })
    }

    fn account_info(&self) -> Value {
        let txs: Vec<SyncSender<Input>> =
            lock(&self.streams).values().map(|h| h.tx.clone()).collect();
        let (mut memory, mut storage, mut consumers) = (0u64, 0u64, 0u64);
        let streams = txs.len();
        for tx in txs {
            if let Some(info) = self.query_info(&tx) {
                let bytes = info["state"]["bytes"].as_u64().unwrap_or(0);
                if info["config"]["storage"] == "memory" {
                    memory += bytes;
                } else {
                    storage += bytes;
                }
                consumers += info["state"]["consumer_count"].as_u64().unwrap_or(0);
            }
        }
        json!({
            "memory": memory,
            "storage": storage,
            "reserved_memory": 0,
            "reserved_storage": 0,
            "streams": streams,
            "consumers": consumers,
            "limits": {
                "max_memory": self.cfg.max_memory,
                "max_storage": self.cfg.max_file,
                "max_streams": -1,
                "max_consumers": -1,
                "max_ack_pending": -1,
                "memory_max_stream_bytes": -1,
                "storage_max_stream_bytes": -1,
                "max_bytes_required": false,
            },
            "api": { "level": 1, "total": 0, "errors": 0 },
        })
    }
}

/// How long a publisher is held back when a stream's queue is full before its message is
/// dropped (it then gets no pub ack and retries).
const ENQUEUE_PATIENCE: Duration = Duration::from_secs(2);

/// Queues work for a stream thread. A full queue is back-pressure: the publishing connection's
/// reader waits (briefly, in small sleeps) for room instead of growing memory without bound.
fn enqueue(tx: &SyncSender<Input>, input: Input) -> bool {
    let mut input = match tx.try_send(input) {
        Ok(()) => return true,
        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return false,
        Err(std::sync::mpsc::TrySendError::Full(i)) => i,
    };
    let deadline = std::time::Instant::now() + ENQUEUE_PATIENCE;
    loop {
        std::thread::sleep(Duration::from_micros(200));
        match tx.try_send(input) {
            Ok(()) => return true,
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return false,
            Err(std::sync::mpsc::TrySendError::Full(i)) => {
                if std::time::Instant::now() >= deadline {
                    tracing::warn!("stream queue full for {ENQUEUE_PATIENCE:?}; message dropped");
                    return false;
                }
                input = i;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn streams_dir(store_dir: &Path) -> PathBuf {
    store_dir.join("jetstream").join("streams")
}

/// Writes the stream's metadata durably: temp file, fsync, rename, fsync the directory.
fn write_meta(dir: &Path, meta: &StreamMeta) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join("meta.json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("meta.json"))?;
    std::fs::File::open(dir)?.sync_all()
}
