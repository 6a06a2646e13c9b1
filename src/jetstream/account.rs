//! The account-level `$JS.API` requests, answered by the manager's API thread: routing of
//! every request (stream-bound ones are forwarded to the owning stream's thread), stream
//! create/update/delete, stream names and list, and account info.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{self, response, Call};
use super::config::StreamConfig;
use super::errors::ApiError;
use super::runner::Input;
use super::{consumer, time};
use super::{enqueue, lock, JetStream};
use crate::server::Message;

/// How long the manager waits for a stream to apply (and sync) a configuration update.
const UPDATE_PATIENCE: Duration = Duration::from_secs(10);

impl JetStream {
    fn reply(&self, m: &Message, kind: &str, body: Result<Value, ApiError>) {
        if let Some(reply) = &m.reply {
            self.client
                .publish_sync(reply, None, None, &response(kind, body));
        }
    }

    /// Routes one `$JS.API` request.
    pub(super) fn dispatch(&self, m: Message) {
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

    /// Validates an update against the current config and the other streams, lets the stream
    /// thread apply it (durably), and only then re-subscribes changed subjects, takes the new
    /// config as the manager's copy and answers.
    fn update_stream(&self, name: &str, m: Message) {
        let checked = serde_json::from_slice::<StreamConfig>(&m.payload)
            .map_err(|e| ApiError::invalid_json(&e.to_string()))
            .and_then(|cfg| {
                if cfg.name != name {
                    return Err(ApiError::stream_mismatch());
                }
                cfg.normalize()
            });
        let result = checked.and_then(|cfg| {
            let streams = lock(&self.streams);
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
            Ok((cfg, old.tx.clone()))
        });
        let result = result.and_then(|(cfg, tx)| {
            let (done_tx, done_rx) = sync_channel(1);
            if !enqueue(&tx, Input::Update(Box::new(cfg.clone()), done_tx)) {
                return Err(ApiError::store_failed(
                    "stream is too busy to take the update; nothing was changed",
                ));
            }
            let info = done_rx
                .recv_timeout(UPDATE_PATIENCE)
                .map_err(|_| ApiError::store_failed("stream did not answer the update"))??;
            let mut streams = lock(&self.streams);
            if let Some(h) = streams.get_mut(name) {
                if h.config.subjects != cfg.subjects || h.config.allow_direct != cfg.allow_direct {
                    for s in h.subs.drain(..) {
                        self.client.unsubscribe_internal(&s);
                    }
                    h.subs = self.subscribe_stream(&cfg, &h.tx, h.reader.clone());
                }
                h.config = cfg;
            }
            Ok(info)
        });
        self.reply(&m, "stream_update", result);
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
