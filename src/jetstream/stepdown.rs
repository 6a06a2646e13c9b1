//! Leadership requests of a clustered JetStream: `META.LEADER.STEPDOWN`,
//! `STREAM.LEADER.STEPDOWN.<stream>`, `CONSUMER.LEADER.STEPDOWN.<stream>.<consumer>` and
//! `STREAM.PEER.REMOVE.<stream>`.
//!
//! A stepdown is answered once another server leads (or with 10008 if none took over within
//! a few seconds). A replicated stream's consumers are served by its group's leader, so a
//! consumer stepdown moves the stream's leadership, and every consumer of the stream with it.
//! Removing a stream's peer (a membership change and a replacement) is not implemented: the
//! request is checked, then refused with 10012. Without a cluster each is refused with 10010,
//! as nats-server does.

use serde_json::{json, Value};

use super::errors::ApiError;
use super::meta::unavailable;
use super::{api, lock, JetStream};
use crate::raft::GroupError;
use crate::server::{Client, Message};

/// 10010: the request needs a cluster.
pub(super) fn cluster_required() -> ApiError {
    ApiError {
        code: 503,
        err_code: 10010,
        description: "JetStream clustering support required".into(),
    }
}

/// 10040: the named server is not one of the stream's peers.
fn peer_not_member() -> ApiError {
    ApiError {
        code: 400,
        err_code: 10040,
        description: "peer not a member".into(),
    }
}

/// A stepdown request's body: empty or a JSON object; a placement preference is refused
/// rather than ignored.
fn check_body(payload: &[u8]) -> Result<(), ApiError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let v: Value =
        serde_json::from_slice(payload).map_err(|_| ApiError::bad_request("invalid JSON"))?;
    match v.get("placement") {
        Some(p) if !p.is_null() => Err(ApiError::not_implemented(
            "a stepdown's placement preference",
        )),
        _ if v.is_object() => Ok(()),
        _ => Err(ApiError::bad_request("invalid JSON")),
    }
}

/// Answers `m` with a `kind` response once `step` finished.
async fn answer_after(
    client: Client,
    m: Message,
    kind: &'static str,
    step: impl std::future::Future<Output = Result<bool, GroupError>>,
) {
    let body = match step.await {
        Ok(_) => Ok(json!({ "success": true })),
        Err(e) => {
            tracing::warn!(error = %e, kind, "stepdown did not complete");
            Err(unavailable())
        }
    };
    if let Some(reply) = &m.reply {
        client.publish_sync(reply, None, None, &api::response(kind, body));
    }
}

impl JetStream {
    /// `META.LEADER.STEPDOWN`, on the meta leader.
    pub(super) fn meta_step_down(&self, m: &Message) {
        const KIND: &str = "meta_leader_stepdown";
        let Some(meta) = self.meta.get().cloned() else {
            return self.reply(m, KIND, Err(cluster_required()));
        };
        if let Err(e) = check_body(&m.payload) {
            return self.reply(m, KIND, Err(e));
        }
        let step = async move { meta.step_down().await };
        let task = answer_after(self.client.clone(), m.clone(), KIND, step);
        self.runtime.spawn(task);
    }

    /// `STREAM.LEADER.STEPDOWN.<name>`, on the server answering for the stream (its leader):
    /// a single-replica stream has no group to hand on and succeeds at once.
    pub(super) fn stream_step_down(&self, name: &str, m: &Message) {
        const KIND: &str = "stream_leader_stepdown";
        match self.stepper(name, m) {
            Err(e) => self.reply(m, KIND, Err(e)),
            Ok(None) => self.reply(m, KIND, Ok(json!({ "success": true }))),
            Ok(Some(step)) => {
                let task = answer_after(self.client.clone(), m.clone(), KIND, step);
                self.runtime.spawn(task);
            }
        }
    }

    /// The checks both stream and consumer stepdowns make; the stepdown of `stream`'s group
    /// (`None`: a single-replica stream, nothing to hand on).
    fn stepper(
        &self,
        stream: &str,
        m: &Message,
    ) -> Result<Option<impl std::future::Future<Output = Result<bool, GroupError>>>, ApiError> {
        if self.meta.get().is_none() {
            return Err(cluster_required());
        }
        check_body(&m.payload)?;
        lock(&self.streams)
            .get(stream)
            .map(|h| h.replica.as_ref().map(|r| r.step_down()))
            .ok_or_else(ApiError::stream_not_found)
    }

    /// `CONSUMER.LEADER.STEPDOWN.<stream>.<consumer>`: the consumer must exist (asked of the
    /// stream through `CONSUMER.INFO`); its stream's leadership moves.
    pub(super) fn consumer_step_down(&self, stream: &str, consumer: &str, m: &Message) {
        const KIND: &str = "consumer_leader_stepdown";
        let step = match self.stepper(stream, m) {
            Ok(step) => step,
            Err(e) => return self.reply(m, KIND, Err(e)),
        };
        let (client, m) = (self.client.clone(), m.clone());
        let info = format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}");
        self.runtime.spawn(async move {
            let asked = client.request(info, bytes::Bytes::new()).await;
            let found: Option<Value> = asked
                .ok()
                .and_then(|r| serde_json::from_slice(&r.payload).ok());
            let error = match found {
                None => Some(unavailable()),
                Some(v) => v
                    .get("error")
                    .and_then(|e| serde_json::from_value::<ApiError>(e.clone()).ok()),
            };
            match (error, step) {
                (Some(e), _) => {
                    if let Some(reply) = &m.reply {
                        client.publish_sync(reply, None, None, &api::response(KIND, Err(e)));
                    }
                }
                (None, None) => {
                    let ok = api::response(KIND, Ok(json!({ "success": true })));
                    if let Some(reply) = &m.reply {
                        client.publish_sync(reply, None, None, &ok);
                    }
                }
                (None, Some(step)) => answer_after(client, m, KIND, step).await,
            }
        });
    }

    /// `STREAM.PEER.REMOVE.<name>`, on the meta leader: checked like nats-server checks it,
    /// then refused (not implemented).
    pub(super) fn stream_peer_remove(&self, name: &str, m: &Message) {
        const KIND: &str = "stream_remove_peer";
        let Some(meta) = self.meta.get() else {
            return self.reply(m, KIND, Err(cluster_required()));
        };
        let checked = (|| {
            let v: Value = serde_json::from_slice(&m.payload)
                .map_err(|_| ApiError::bad_request("bad request"))?;
            let peer = v
                .get("peer")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .ok_or_else(|| ApiError::bad_request("bad request"))?;
            let peers = meta
                .read(|c| c.get(name).map(|a| a.peers.clone()))
                .ok_or_else(ApiError::stream_not_found)?;
            if !peers.iter().any(|p| p == peer) {
                return Err(peer_not_member());
            }
            Err(ApiError::not_implemented(
                "removing a stream's peer (STREAM.PEER.REMOVE)",
            ))
        })();
        self.reply(m, KIND, checked);
    }
}

#[cfg(test)]
mod tests {
    use super::check_body;

    #[test]
    fn stepdown_bodies() {
        assert!(check_body(b"").is_ok());
        assert!(check_body(b" \r\n").is_ok());
        assert!(check_body(b"{}").is_ok());
        assert!(check_body(b"{\"placement\":null}").is_ok());
        assert_eq!(check_body(b"nope").unwrap_err().err_code, 10003);
        assert_eq!(check_body(b"[1]").unwrap_err().err_code, 10003);
        let preferred = br#"{"placement":{"preferred":"n2"}}"#;
        assert_eq!(check_body(preferred).unwrap_err().err_code, 10012);
    }
}
