//! The account-level `$JS.API` requests, answered by the manager's API thread: routing of
//! every request (stream-bound ones are forwarded to the owning stream's thread), stream
//! create/update/delete, stream names and list, and account info.

use std::sync::mpsc::sync_channel;
use std::time::Duration;

use serde_json::{json, Value};

use super::api::{self, response, Call, ListReq, LIST_LIMIT, NAMES_LIMIT};
use super::catalogue::{Catalogue, MetaApplied, MetaOp};
use super::config::StreamConfig;
use super::errors::ApiError;
use super::queue::Tx;
use super::runner::Input;
use super::{consumer, time};
use super::{enqueue, lock, JetStream};
use crate::server::Message;

/// How long the manager waits for a stream to apply (and sync) a configuration update.
const UPDATE_PATIENCE: Duration = Duration::from_secs(10);

impl JetStream {
    pub(super) fn reply(&self, m: &Message, kind: &str, body: Result<Value, ApiError>) {
        if body.is_err() {
            self.resources.api.error();
        }
        // The stream a stream-level request names is the subject's last token.
        let stream = m.subject.rsplit('.').next().unwrap_or_default();
        let ok = body.is_ok();
        if let Some(reply) = &m.reply {
            self.client
                .publish_sync(reply, None, None, &response(kind, body));
        }
        super::advisory::after_response(&self.client, kind, stream, ok);
    }

    /// Answers a request that needs a higher API level than this server's (as nats-server
    /// does: an API error, or a 412 status for pulls and direct gets).
    fn refuse_level(&self, m: &Message, tokens: &[&str]) {
        let kind = match tokens {
            ["CONSUMER", "MSG", "NEXT", ..] | ["DIRECT", "GET", ..] => {
                if let Some(reply) = &m.reply {
                    let st = consumer::status(reply, 412, "Required Api Level", &[]);
                    let headers = st.headers.as_deref();
                    self.client
                        .publish_routed(&st.to, &st.subject, None, headers, &[]);
                }
                return;
            }
            ["INFO"] => "account_info".to_string(),
            ["CONSUMER", "DURABLE", "CREATE", ..] => "consumer_create".to_string(),
            [a, "MSG", b, ..] => format!("{a}_msg_{b}").to_lowercase(),
            [a, b, ..] => format!("{a}_{b}").to_lowercase(),
            _ => "error".to_string(),
        };
        self.reply(m, &kind, Err(ApiError::required_api_level()));
    }

    /// Routes one `$JS.API` request.
    pub(super) fn dispatch(&self, m: Message) {
        let Some(rest) = m.subject.strip_prefix("$JS.API.") else {
            return;
        };
        self.resources.api.request();
        let tokens: Vec<&str> = rest.split('.').collect();
        if !super::versioning::level_met(m.headers.as_deref()) {
            self.refuse_level(&m, &tokens);
            return;
        }
        if let Some(meta) = self.meta.get() {
            if !self.clustered_route(meta, &tokens, &m) {
                return;
            }
        }
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
            ["META", "LEADER", "STEPDOWN"] => self.meta_step_down(&m),
            ["STREAM", "LEADER", "STEPDOWN", name] => self.stream_step_down(name, &m),
            ["STREAM", "PEER", "REMOVE", name] => self.stream_peer_remove(name, &m),
            ["CONSUMER", "LEADER", "STEPDOWN", stream, consumer] => {
                self.consumer_step_down(stream, consumer, &m)
            }
            ["CONSUMER", "CREATE", stream, ..] | ["CONSUMER", "DURABLE", "CREATE", stream, _]
                if self.consumer_room(stream, &tokens, &m.payload).is_err() =>
            {
                self.reply(&m, "consumer_create", Err(ApiError::max_consumers()));
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
            ["CONSUMER", "UNPIN", stream, name] => self.forward(
                stream,
                Call::ConsumerUnpin(name.to_string()),
                m.clone(),
                "consumer_unpin",
            ),
            ["CONSUMER", "RESET", stream, name] => self.forward(
                stream,
                Call::ConsumerReset(name.to_string()),
                m.clone(),
                "consumer_reset",
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
                // nats-server answers a reset on the consumer's own subscription: with no
                // stream, nothing answers.
                Call::ConsumerReset(_) => {}
                Call::ConsumerNext(_) => {
                    if let Some(reply) = &m.reply {
                        // Pulls go to the consumer's own subscription on nats-server: with no
                        // stream there is none, and the client hears "no responders".
                        let st = consumer::no_responders(reply);
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
        let mut cfg = parse_create(name, body, false)?;
        let mut catalogue = lock(&self.catalogue);
        let others = |n: &str| catalogue.catalogue().get(n).map(|a| a.config.clone());
        super::sourcing::rules::check_against(&mut cfg, others)?;
        let create = MetaOp::CreateStream {
            config: cfg.clone(),
            created: time::now_nanos(),
            peers: Vec::new(),
        };
        // Refusals (name taken, subjects overlapping) come before any reservation.
        if catalogue.catalogue().check(&create)? == MetaApplied::Changed {
            let count = catalogue.catalogue().streams().count() as i64;
            if self.cfg.max_streams >= 0 && count >= self.cfg.max_streams {
                return Err(ApiError::max_streams());
            }
            self.resources.reserve(name, cfg.storage, cfg.max_bytes)?;
            let opened = catalogue.commit(create).and_then(|_| {
                let created = catalogue.catalogue().get(name).map_or(0, |a| a.created);
                self.open_stream(cfg, created, true).inspect_err(|_| {
                    let undo = MetaOp::DeleteStream { name: name.to_string() };
                    if let Err(e) = catalogue.commit(undo) {
                        tracing::error!(stream = %name, "catalogue keeps a stream that did not open: {}", e.description);
                    }
                })
            });
            if let Err(e) = opened {
                self.resources.release(name);
                return Err(e);
            }
        }
        drop(catalogue);
        let tx = lock(&self.streams).get(name).map(|h| h.tx.clone());
        tx.and_then(|tx| self.query_info(&tx))
            .ok_or_else(ApiError::stream_not_found)
    }

    /// Validates an update against the current config and the other streams, lets the stream
    /// thread apply it (durably), and only then re-subscribes changed subjects, takes the new
    /// config as the manager's copy and answers.
    fn update_stream(&self, name: &str, m: Message) {
        let result =
            parse_update(name, &m.payload, false).and_then(|cfg| self.commit_update(name, cfg));
        self.reply(&m, "stream_update", result);
    }

    /// Has the stream apply an update (durably), then commits it to the catalogue and
    /// resubscribes changed subjects; if the catalogue cannot take it, the stream goes back to
    /// the old config. In this order every crash point leaves a store that fits the catalogue's
    /// config: a stream holds no more under the new limits than the old ones allowed.
    fn commit_update(&self, name: &str, mut cfg: StreamConfig) -> Result<Value, ApiError> {
        let mut catalogue = lock(&self.catalogue);
        let old = catalogue
            .catalogue()
            .get(name)
            .map(|a| a.config.clone())
            .ok_or_else(ApiError::stream_not_found)?;
        api::check_update(&old, &cfg)?;
        let others = |n: &str| catalogue.catalogue().get(n).map(|a| a.config.clone());
        super::sourcing::rules::check_against(&mut cfg, others)?;
        let tx = lock(&self.streams)
            .get(name)
            .map(|h| h.tx.clone())
            .ok_or_else(ApiError::stream_not_found)?;
        let update = MetaOp::UpdateStream {
            config: cfg.clone(),
        };
        catalogue.catalogue().check(&update)?;
        self.resources.reserve(name, cfg.storage, cfg.max_bytes)?;
        let committed = self
            .apply_update(&tx, &cfg)
            .and_then(|info| catalogue.commit(update).map(|_| info))
            .inspect_err(|_| {
                // The stream may hold the new config even when it answered an error (a late
                // answer, a failed sync): give it the old one back (its queue is in order).
                if let Err(e) = self.apply_update(&tx, &old) {
                    tracing::error!(stream = %name, "stream may keep an update the catalogue does not have: {}", e.description);
                }
            });
        let info = match committed {
            Ok(info) => info,
            Err(e) => {
                let _ = self.resources.reserve(name, old.storage, old.max_bytes);
                return Err(e);
            }
        };
        self.resubscribe(&old, &cfg);
        Ok(info)
    }

    /// Subscribes a running stream anew if an update changed what it listens to.
    pub(super) fn resubscribe(&self, old: &StreamConfig, cfg: &StreamConfig) {
        if old.subjects != cfg.subjects || old.allow_direct != cfg.allow_direct {
            let mut streams = lock(&self.streams);
            if let Some(h) = streams.get_mut(&cfg.name) {
                for s in h.subs.drain(..) {
                    self.client.unsubscribe_internal(&s);
                }
                h.subs = self.subscribe_stream(cfg, &h.tx, h.reader.clone(), h.lease.clone());
            }
        }
    }

    /// Hands a validated update to the stream thread and waits for its durable outcome.
    pub(super) fn apply_update(
        &self,
        tx: &Tx<Input>,
        cfg: &StreamConfig,
    ) -> Result<Value, ApiError> {
        let (done_tx, done_rx) = sync_channel(1);
        if !enqueue(tx, Input::Update(Box::new(cfg.clone()), done_tx)) {
            return Err(ApiError::store_failed(
                "stream is too busy to take the update; nothing was changed",
            ));
        }
        done_rx
            .recv_timeout(UPDATE_PATIENCE)
            .map_err(|_| ApiError::store_failed("stream did not answer the update"))?
    }

    /// Deletes the stream from the catalogue, then stops it and removes its data (a crash in
    /// between leaves a directory no stream owns, reported at start).
    fn delete_stream(&self, name: &str, m: Message) {
        let delete = MetaOp::DeleteStream {
            name: name.to_string(),
        };
        if let Err(e) = lock(&self.catalogue).commit(delete) {
            self.reply(&m, "stream_delete", Err(e));
            return;
        }
        if !self.remove_stream(name, m.reply.clone()) {
            self.reply(&m, "stream_delete", Err(ApiError::stream_not_found()));
        }
    }

    /// Stops a running stream and has it remove its data and answer `reply`; false if it
    /// does not run here.
    pub(super) fn remove_stream(&self, name: &str, reply: Option<String>) -> bool {
        let handle = lock(&self.streams).remove(name);
        let Some(mut h) = handle else {
            return false;
        };
        self.resources.release(name);
        for s in &h.subs {
            self.client.unsubscribe_internal(s);
        }
        if let Some(r) = h.replica.take() {
            self.runtime.block_on(r.stop());
            let dir = self.cfg.store_dir.join("jetstream").join("raft");
            let _ = std::fs::remove_dir_all(dir.join(super::replica::group_name(name)));
        }
        let _ = h.tx.send(Input::Delete(reply));
        h.wait_done(name);
        true
    }

    pub(super) fn query_info(&self, tx: &Tx<Input>) -> Option<Value> {
        let (rtx, rrx) = sync_channel(1);
        tx.send(Input::Info(rtx)).ok()?;
        rrx.recv_timeout(Duration::from_secs(5)).ok()
    }

    /// The streams whose subjects overlap `filter`, with their queue if they run here. A
    /// single server lists only the streams that run; a clustered one every stream of the
    /// catalogue.
    fn matching_names(&self, filter: Option<&str>) -> Vec<(String, Option<Tx<Input>>)> {
        let pick = |c: &Catalogue| -> Vec<(String, Option<Tx<Input>>)> {
            let streams = lock(&self.streams);
            c.streams()
                .filter(|(_, a)| {
                    filter.is_none_or(|s| {
                        a.config
                            .subjects
                            .iter()
                            .any(|p| crate::protocol::subject::overlaps(p, s))
                    })
                })
                .map(|(n, _)| (n.clone(), streams.get(n).map(|h| h.tx.clone())))
                .collect()
        };
        match self.meta.get() {
            Some(meta) => meta.read(pick),
            None => {
                let mut all = pick(lock(&self.catalogue).catalogue());
                all.retain(|(_, tx)| tx.is_some());
                all
            }
        }
    }

    /// A stream's info, from its own task here or from the server hosting it.
    fn info_of(&self, name: &str, tx: &Option<Tx<Input>>) -> Option<Value> {
        match tx {
            Some(tx) => self.query_info(tx),
            None => self.remote_info(name),
        }
    }

    /// STREAM.NAMES: `{total, offset, limit, streams}`; an empty page is `null` there, as on
    /// nats-server.
    fn names(&self, body: &[u8]) -> Value {
        let req = match ListReq::parse(body) {
            Ok(r) => r,
            Err(e) => return ListReq::error(e, "streams", Value::Null),
        };
        let all = self.matching_names(req.subject.as_deref());
        let (offset, page) = req.page(&all, NAMES_LIMIT);
        let names: Vec<&String> = page.iter().map(|(n, _)| n).collect();
        let streams = if names.is_empty() {
            Value::Null
        } else {
            json!(names)
        };
        json!({ "total": all.len(), "offset": offset, "limit": NAMES_LIMIT, "streams": streams })
    }

    fn list(&self, body: &[u8]) -> Value {
        let req = match ListReq::parse(body) {
            Ok(r) => r,
            Err(e) => return ListReq::error(e, "streams", json!([])),
        };
        let all = self.matching_names(req.subject.as_deref());
        let (offset, page) = req.page(&all, LIST_LIMIT);
        let infos: Vec<Value> = page
            .iter()
            .filter_map(|(name, tx)| self.info_of(name, tx))
            .collect();
        json!({ "total": all.len(), "offset": offset, "limit": LIST_LIMIT, "streams": infos })
    }

    /// What `/jsz` and `/varz` show of this instance: storage used and reserved, streams,
    /// consumers, messages and bytes of the streams this server runs.
    pub(crate) fn usage(&self) -> Value {
        let mut all = self.matching_names(None);
        all.retain(|(_, tx)| tx.is_some());
        let t = self.totals(&all);
        json!({
            "memory": t.memory,
            "storage": t.storage,
            "reserved_memory": self.resources.reserved(super::config::Storage::Memory),
            "reserved_storage": self.resources.reserved(super::config::Storage::File),
            "streams": all.len(),
            "consumers": t.consumers,
            "messages": t.messages,
            "bytes": t.memory + t.storage,
        })
    }

    /// Bytes by storage, consumers and messages over `streams` (each asked for its info).
    fn totals(&self, streams: &[(String, Option<Tx<Input>>)]) -> Totals {
        let mut t = Totals::default();
        for (name, tx) in streams {
            if let Some(info) = self.info_of(name, tx) {
                let bytes = info["state"]["bytes"].as_u64().unwrap_or(0);
                if info["config"]["storage"] == "memory" {
                    t.memory += bytes;
                } else {
                    t.storage += bytes;
                }
                t.consumers += info["state"]["consumer_count"].as_u64().unwrap_or(0);
                t.messages += info["state"]["messages"].as_u64().unwrap_or(0);
            }
        }
        t
    }

    /// The info (`config`, `state`, `cluster`, `created`, and every consumer's info in
    /// `consumer_detail`) of each stream this server runs, for `/jsz` and `/metrics`.
    pub(crate) fn stream_details(&self) -> Vec<Value> {
        self.matching_names(None)
            .into_iter()
            .filter_map(|(_, tx)| {
                let (rtx, rrx) = sync_channel(1);
                tx?.send(Input::Detail(rtx)).ok()?;
                rrx.recv_timeout(Duration::from_secs(5)).ok()
            })
            .collect()
    }

    /// With a `max_consumers` limit (per stream, as nats-server applies an account's): whether
    /// a consumer create fits (an existing consumer, updated or created again, always does).
    /// The name is the subject's, else the body's.
    fn consumer_room(&self, stream: &str, tokens: &[&str], body: &[u8]) -> Result<(), ()> {
        if self.cfg.max_consumers < 0 {
            return Ok(());
        }
        let named = match tokens {
            ["CONSUMER", "CREATE", _, name, ..] | ["CONSUMER", "DURABLE", "CREATE", _, name] => {
                Some(name.to_string())
            }
            _ => {
                let req: Value = serde_json::from_slice(body).unwrap_or_default();
                let cfg = &req["config"];
                cfg["durable_name"]
                    .as_str()
                    .or(cfg["name"].as_str())
                    .map(str::to_string)
            }
        };
        // A stream that does not exist gets its own error from the stream's side.
        let Some(info) = self
            .stream_details()
            .into_iter()
            .find(|i| i["config"]["name"] == stream)
        else {
            return Ok(());
        };
        let consumers = info["consumer_detail"].as_array().map_or(&[][..], |c| c);
        let exists = consumers
            .iter()
            .any(|c| named.as_deref() == c["name"].as_str());
        if exists || (consumers.len() as i64) < self.cfg.max_consumers {
            Ok(())
        } else {
            Err(())
        }
    }

    fn account_info(&self) -> Value {
        let all = self.matching_names(None);
        let t = self.totals(&all);
        let mut info = json!({
            "memory": t.memory,
            "storage": t.storage,
            "reserved_memory": self.resources.reserved(super::config::Storage::Memory),
            "reserved_storage": self.resources.reserved(super::config::Storage::File),
            "streams": all.len(),
            "consumers": t.consumers,
            "limits": {
                "max_memory": self.cfg.max_memory,
                "max_storage": self.cfg.max_file,
                "max_streams": self.cfg.max_streams,
                "max_consumers": self.cfg.max_consumers,
                "max_ack_pending": -1,
                "memory_max_stream_bytes": -1,
                "storage_max_stream_bytes": -1,
                "max_bytes_required": false,
            },
            "api": self.resources.api.json(),
        });
        if let Some(domain) = &self.cfg.domain {
            info["domain"] = json!(domain);
        }
        info
    }
}

/// A create request's configuration, checked in nats-server's order: decode (an empty body is
/// `null`), then the name in the subject, then the config itself. `clustered` servers refuse
/// replicas they cannot make yet with their own error.
pub(super) fn parse_create(
    name: &str,
    body: &[u8],
    clustered: bool,
) -> Result<StreamConfig, ApiError> {
    let cfg: Option<StreamConfig> = api::parse_object(body)?;
    let cfg = cfg
        .filter(|c| c.name == name)
        .ok_or_else(ApiError::stream_mismatch)?;
    let cfg = normalize(cfg, clustered)?;
    if cfg.num_replicas > 1 {
        super::replica::check_config(&cfg)?;
    }
    if cfg.sealed {
        return Err(ApiError::invalid_config(
            "stream configuration for create can not be sealed",
        ));
    }
    Ok(cfg)
}

/// An update request's configuration.
pub(super) fn parse_update(
    name: &str,
    body: &[u8],
    clustered: bool,
) -> Result<StreamConfig, ApiError> {
    let cfg = serde_json::from_slice::<StreamConfig>(body)
        .map_err(|e| ApiError::invalid_json(&e.to_string()))?;
    if cfg.name != name {
        return Err(ApiError::stream_mismatch());
    }
    normalize(cfg, clustered)
}

/// `cfg` normalized; in a cluster, replicas are allowed (`normalize()` is the single
/// server's: it refuses them).
fn normalize(cfg: StreamConfig, clustered: bool) -> Result<StreamConfig, ApiError> {
    let replicas = cfg.num_replicas;
    if !(clustered && replicas > 1) {
        return cfg.normalize();
    }
    let one = StreamConfig {
        num_replicas: 1,
        ..cfg
    };
    one.normalize().map(|c| StreamConfig {
        num_replicas: replicas,
        ..c
    })
}

/// Sums over a set of streams (account info, `/jsz`).
#[derive(Default)]
struct Totals {
    memory: u64,
    storage: u64,
    consumers: u64,
    messages: u64,
}
