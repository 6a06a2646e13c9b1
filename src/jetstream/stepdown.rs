//! Leadership requests of a clustered JetStream: `META.LEADER.STEPDOWN`,
//! `STREAM.LEADER.STEPDOWN.<stream>`, `CONSUMER.LEADER.STEPDOWN.<stream>.<consumer>` and
//! `STREAM.PEER.REMOVE.<stream>`.
//!
//! A stepdown is answered once another server leads (or with 10008 if none took over within
//! a few seconds). A replicated stream's consumers are served by its group's leader, so a
//! consumer stepdown moves the stream's leadership, and every consumer of the stream with it.
//! A stepdown may name the server to lead next (`{"placement": {"preferred": "n2"}}`): the
//! other members are told to hold their elections (`$JSC.HOLD.<server>`) while the leader
//! stops, so only the preferred one campaigns. `STREAM.PEER.REMOVE` changes the stream's
//! servers in the catalogue (a replacement, if one is up, joins last); the group's leader then
//! changes its membership. Without a cluster each is refused with 10010, as nats-server does.

use serde_json::{json, Value};

use super::errors::ApiError;
use super::meta::unavailable;
use super::{api, lock, JetStream};
use crate::raft::GroupError;
use crate::raft::NodeId;
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

/// 10005 with nats-server's words for a placement no member satisfies.
fn no_peers(text: String) -> ApiError {
    ApiError {
        code: 400,
        err_code: 10005,
        description: text,
    }
}

/// 10075: no server can take a removed peer's place.
fn peer_remap_failed() -> ApiError {
    ApiError {
        code: 503,
        err_code: 10075,
        description: "peer remap failed".into(),
    }
}

/// A stepdown request's body: empty or a JSON object, maybe with a placement: the preferred
/// server's name, if one is named. A placement by tags is refused rather than ignored.
fn check_body(payload: &[u8]) -> Result<Option<String>, ApiError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: Value =
        serde_json::from_slice(payload).map_err(|_| ApiError::bad_request("invalid JSON"))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("invalid JSON"));
    }
    let Some(p) = v.get("placement").filter(|p| !p.is_null()) else {
        return Ok(None);
    };
    if p.get("tags")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty())
    {
        return Err(ApiError::not_implemented("a stepdown's placement by tags"));
    }
    Ok(p.get("preferred")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string))
}

/// The members to hold their elections so that `preferred` (a member other than this
/// leader, `me`) alone campaigns.
fn others_than(
    members: &[(NodeId, String)],
    me: NodeId,
    preferred: &str,
) -> Result<Vec<String>, ApiError> {
    match members.iter().find(|(_, name)| name == preferred) {
        None => Err(no_peers(format!(
            "preferred server {preferred:?} not known"
        ))),
        Some((id, _)) if *id == me => Err(no_peers(format!(
            "preferred server {preferred:?} is already leader"
        ))),
        Some(_) => Ok(members
            .iter()
            .filter(|(id, name)| *id != me && name != preferred)
            .map(|(_, name)| name.clone())
            .collect()),
    }
}

/// What a held member is told: the group (a stream's name, or empty for the meta group) and
/// the leader handing it on.
#[derive(serde::Serialize, serde::Deserialize)]
struct Hold {
    group: String,
    old: NodeId,
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
        let held = check_body(&m.payload).and_then(|preferred| match preferred {
            None => Ok(Vec::new()),
            Some(p) => others_than(&meta.voter_names(), meta.node(), &p),
        });
        match held {
            Err(e) => return self.reply(m, KIND, Err(e)),
            Ok(held) => self.hold(&held, "", meta.node()),
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
        let preferred = check_body(&m.payload)?;
        let step = {
            let streams = lock(&self.streams);
            let handle = streams.get(stream).ok_or_else(ApiError::stream_not_found)?;
            handle
                .replica
                .as_ref()
                .map(|r| (r.group.clone(), r.step_down()))
        };
        let Some((group, step)) = step else {
            return Ok(None);
        };
        if let Some(p) = preferred {
            let held = others_than(&group.voter_names(), group.id(), &p)?;
            self.hold(&held, stream, group.id());
        }
        Ok(Some(step))
    }

    /// Tells `servers` to hold their elections in `group` while leader `old` steps down.
    fn hold(&self, servers: &[String], group: &str, old: NodeId) {
        let body = serde_json::to_vec(&Hold {
            group: group.to_string(),
            old,
        })
        .unwrap_or_default();
        for server in servers {
            let subject = format!("$JSC.HOLD.{server}");
            self.client.publish_sync(&subject, None, None, &body);
        }
    }

    /// Listens for holds addressed to this server.
    pub(super) fn subscribe_holds(self: &std::sync::Arc<Self>) {
        let weak = std::sync::Arc::downgrade(self);
        let handler: crate::server::InternalHandler = std::sync::Arc::new(move |m: Message| {
            let (Some(js), Ok(hold)) = (weak.upgrade(), serde_json::from_slice::<Hold>(&m.payload))
            else {
                return true;
            };
            if hold.group.is_empty() {
                if let Some(meta) = js.meta.get().cloned() {
                    js.runtime
                        .spawn(async move { meta.hold_elections(hold.old).await });
                }
            } else if let Some(group) = lock(&js.streams)
                .get(&hold.group)
                .and_then(|h| h.replica.as_ref().map(|r| r.group.clone()))
            {
                let wait = std::time::Duration::from_secs(5);
                js.runtime
                    .spawn(async move { group.hold_elections(hold.old, wait).await });
            }
            true
        });
        let subject = format!("$JSC.HOLD.{}", self.server_name);
        let _ = self.client.subscribe_internal(&subject, None, handler);
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

    /// `STREAM.PEER.REMOVE.<name>`, on the meta leader: checked like nats-server checks it;
    /// the peer leaves the stream's servers and the least-loaded server up that does not host
    /// it takes its place (10075 if there is none). Answered once the catalogue took the
    /// change; the group's leader then changes its membership.
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
            // As on nats-server, the peer leaves only for a replacement (a stream keeps its
            // replica count).
            let spare = meta.replacement(&peers).ok_or_else(peer_remap_failed)?;
            let mut next: Vec<String> = peers.iter().filter(|p| *p != peer).cloned().collect();
            next.push(spare);
            let cmd = super::meta::MetaCmd {
                op: super::catalogue::MetaOp::SetPeers {
                    name: name.to_string(),
                    peers: next,
                },
                reply: None,
            };
            match meta.propose(&cmd)? {
                super::meta::Outcome::Changed | super::meta::Outcome::Exists => {
                    Ok(json!({ "success": true }))
                }
                super::meta::Outcome::Refused(e) => Err(e),
                super::meta::Outcome::Skipped => Err(unavailable()),
            }
        })();
        self.reply(m, KIND, checked);
    }
}

#[cfg(test)]
mod tests {
    use super::{check_body, others_than};

    #[test]
    fn stepdown_bodies() {
        assert_eq!(check_body(b"").unwrap(), None);
        assert_eq!(check_body(b" \r\n").unwrap(), None);
        assert_eq!(check_body(b"{}").unwrap(), None);
        assert_eq!(check_body(b"{\"placement\":null}").unwrap(), None);
        assert_eq!(check_body(b"nope").unwrap_err().err_code, 10003);
        assert_eq!(check_body(b"[1]").unwrap_err().err_code, 10003);
        let preferred = br#"{"placement":{"preferred":"n2"}}"#;
        assert_eq!(check_body(preferred).unwrap().as_deref(), Some("n2"));
        let tags = br#"{"placement":{"tags":["ssd"]}}"#;
        assert_eq!(check_body(tags).unwrap_err().err_code, 10012);
    }

    #[test]
    fn preferred_members() {
        let members = [
            (1, "n1".to_string()),
            (2, "n2".to_string()),
            (3, "n3".to_string()),
        ];
        assert_eq!(others_than(&members, 1, "n2").unwrap(), ["n3"]);
        let e = others_than(&members, 1, "n1").unwrap_err();
        assert_eq!(e.description, "preferred server \"n1\" is already leader");
        let e = others_than(&members, 1, "n9").unwrap_err();
        assert_eq!(
            (e.err_code, e.description.as_str()),
            (10005, "preferred server \"n9\" not known")
        );
    }
}
