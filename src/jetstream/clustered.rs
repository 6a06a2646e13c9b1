//! The `$JS.API` of a clustered server. Every server receives every API request (each
//! subscribes `$JS.API.>`, and routes carry requests to all of them); exactly one answers:
//! - account-level requests (account info, stream create, update, delete, names, list): the
//!   meta leader. Changes are proposed to the meta group; an error the catalogue decides is
//!   answered by the leader, a change by the server hosting the stream once it carried it out.
//! - stream-bound requests: the server hosting the stream (the meta leader answers "stream
//!   not found" for a stream the catalogue does not have).
//!
//! The other half is [`JetStream::on_meta_event`]: every server applies every committed meta
//! entry, and opens, changes or removes the streams placed on it.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use serde_json::Value;

use super::account::{parse_create, parse_update};
use super::catalogue::MetaOp;
use super::config::StreamConfig;
use super::errors::ApiError;
use super::meta::{unavailable, Event, Meta, MetaCmd, Outcome};
use super::{api, lock, time, JetStream};
use crate::server::Message;

/// The stream a stream-bound request names, if it is one.
fn stream_of<'a>(tokens: &[&'a str]) -> Option<&'a str> {
    match tokens {
        ["STREAM", "INFO" | "PURGE", name] => Some(name),
        ["STREAM", "MSG", "GET" | "DELETE", name] => Some(name),
        ["STREAM", "LEADER", "STEPDOWN", name] => Some(name),
        ["CONSUMER", "LEADER", "STEPDOWN", stream, _] => Some(stream),
        ["CONSUMER", "DURABLE", "CREATE", stream, ..] => Some(stream),
        ["CONSUMER", "MSG", "NEXT", stream, ..] => Some(stream),
        ["CONSUMER", _, stream, ..] => Some(stream),
        _ => None,
    }
}

impl JetStream {
    /// Decides whether this server answers `m`: handles the clustered changes itself and
    /// returns false for them and for requests another server answers; true sends the request
    /// on to the single server's dispatch.
    pub(super) fn clustered_route(&self, meta: &Meta, tokens: &[&str], m: &Message) -> bool {
        if let Some(stream) = stream_of(tokens) {
            // The stream's server answers; of a replicated stream's, its group's leader.
            let here = lock(&self.streams)
                .get(stream)
                .map(|h| h.replica.as_ref().is_none_or(|r| r.is_leader()));
            if let Some(answer) = here {
                return answer;
            }
            // Nobody hosts it: the leader says so.
            return meta.is_leader() && meta.read(|c| c.get(stream).is_none());
        }
        if !meta.is_leader() {
            return false;
        }
        match tokens {
            ["STREAM", "CREATE", name] => {
                if let Err(e) = self.propose_create(meta, name, m) {
                    self.reply(m, "stream_create", Err(e));
                }
                false
            }
            ["STREAM", "UPDATE", name] => {
                if let Err(e) = self.propose_update(meta, name, m) {
                    self.reply(m, "stream_update", Err(e));
                }
                false
            }
            ["META", "LEADER", "STEPDOWN"] => {
                self.meta_step_down(m);
                false
            }
            ["STREAM", "PEER", "REMOVE", name] => {
                self.stream_peer_remove(name, m);
                false
            }
            ["STREAM", "DELETE", name] => {
                let op = MetaOp::DeleteStream {
                    name: name.to_string(),
                };
                if let Err(e) = propose(meta, op, m) {
                    self.reply(m, "stream_delete", Err(e));
                }
                false
            }
            _ => true,
        }
    }

    fn propose_create(&self, meta: &Meta, name: &str, m: &Message) -> Result<(), ApiError> {
        let mut config = parse_create(name, &m.payload, true)?;
        let others = |n: &str| meta.read(|c| c.get(n).map(|a| a.config.clone()));
        super::sourcing::rules::check_against(&mut config, others)?;
        check_placement(meta, &config)?;
        // A stream that exists keeps its servers (a repeated create is answered by its
        // leader, whichever server is down); a new one goes to servers that are up.
        let placed = meta.read(|c| c.get(name).map(|a| a.peers.clone()));
        let peers = match placed {
            Some(peers) => peers,
            None => meta.place(usize::try_from(config.num_replicas).unwrap_or(1))?,
        };
        let op = MetaOp::CreateStream {
            config,
            created: time::now_nanos(),
            peers,
        };
        propose(meta, op, m)
    }

    fn propose_update(&self, meta: &Meta, name: &str, m: &Message) -> Result<(), ApiError> {
        let mut config = parse_update(name, &m.payload, true)?;
        let others = |n: &str| meta.read(|c| c.get(n).map(|a| a.config.clone()));
        super::sourcing::rules::check_against(&mut config, others)?;
        let old = meta
            .read(|c| c.get(name).map(|a| a.config.clone()))
            .ok_or_else(ApiError::stream_not_found)?;
        if config.num_replicas != old.num_replicas && old.num_replicas.max(config.num_replicas) > 1
        {
            return Err(ApiError::not_implemented(
                "changing a stream's replica count",
            ));
        }
        if config.num_replicas > 1 {
            super::replica::check_config(&config)?;
        }
        api::check_update(&old, &config)?;
        propose(meta, MetaOp::UpdateStream { config }, m)
    }

    /// A stream's info from the server hosting it (a `STREAM.INFO` request through routes).
    pub(super) fn remote_info(&self, name: &str) -> Option<Value> {
        let ask = self
            .client
            .request(format!("$JS.API.STREAM.INFO.{name}"), Bytes::new());
        let msg = self.runtime.block_on(ask).ok()?;
        let mut v: Value = serde_json::from_slice(&msg.payload).ok()?;
        if v.get("error").is_some() {
            return None;
        }
        v.as_object_mut()?.remove("type");
        Some(v)
    }

    /// Carries out on this server what a committed meta entry asks of it.
    pub(super) fn on_meta_event(self: &Arc<Self>, me: &str, event: Event) {
        let (cmd, outcome) = match event {
            Event::Restored => return self.reconcile(me),
            Event::Applied { cmd, outcome } => (cmd, outcome),
        };
        tracing::debug!(me, ?outcome, op = ?cmd.op, "meta entry applied");
        if !matches!(outcome, Outcome::Changed | Outcome::Exists) {
            return;
        }
        let reply = |kind: &str, body: Result<Value, ApiError>| {
            let ok = body.is_ok();
            if !ok {
                self.resources.api.error();
            }
            let stream = body
                .as_ref()
                .ok()
                .and_then(|v| v["config"]["name"].as_str().map(str::to_string));
            if let Some(to) = &cmd.reply {
                let body = api::response(kind, body);
                self.client.publish_sync(to, None, None, &body);
            }
            if let Some(stream) = stream {
                super::advisory::after_response(&self.client, kind, &stream, ok);
            }
        };
        match &cmd.op {
            MetaOp::CreateStream {
                config,
                created,
                peers,
            } if peers.iter().any(|p| p == me) => {
                let r = self.host(config, *created, peers);
                if let Err(e) = &r {
                    tracing::error!(stream = %config.name, "can't host stream: {}", e.description);
                }
                // A new replicated stream is answered by its first peer (which initializes the
                // group); one that exists already by its group's leader.
                let answers = match outcome {
                    _ if peers.len() == 1 => true,
                    Outcome::Changed => peers.first().is_some_and(|p| p == me),
                    _ => self.leads(&config.name),
                };
                if answers {
                    self.settle(&config.name);
                    reply("stream_create", r);
                }
            }
            MetaOp::UpdateStream { config } => {
                let found = lock(&self.streams)
                    .get(&config.name)
                    .map(|h| (h.tx.clone(), h.replica.is_some()));
                if let Some((tx, replicated)) = found {
                    let old = self.query_info(&tx).and_then(|i| {
                        serde_json::from_value::<StreamConfig>(i["config"].clone()).ok()
                    });
                    // A replicated stream's leader proposes it to the group and answers;
                    // every replica listens on the new subjects.
                    if replicated && !self.leads(&config.name) {
                        if let Some(old) = old {
                            self.resubscribe(&old, config);
                        }
                        return;
                    }
                    let r = self.apply_update(&tx, config);
                    if let (Ok(_), Some(old)) = (&r, &old) {
                        self.resubscribe(old, config);
                    }
                    reply("stream_update", r);
                }
            }
            MetaOp::DeleteStream { name } => {
                self.remove_stream(name, cmd.reply.clone());
            }
            MetaOp::SetPeers { name, peers } => self.repeer(me, name, peers),
            _ => {}
        }
    }

    /// A stream's servers changed: a new one hosts it (a member-to-be, filled by the group's
    /// leader); the group's leader changes the membership; one no longer among them stops
    /// hosting it (the leader only once the change is made). The waits run on a thread of
    /// their own, not holding up the catalogue's next entries.
    fn repeer(self: &Arc<Self>, me: &str, name: &str, peers: &[String]) {
        let staying = peers.iter().any(|p| p == me);
        let group = lock(&self.streams)
            .get(name)
            .map(|h| h.replica.as_ref().map(|r| r.group.clone()));
        match group {
            None if staying => {
                let Some(meta) = self.meta.get() else { return };
                let placed = meta.read(|c| c.get(name).map(|a| (a.config.clone(), a.created)));
                if let Some((config, created)) = placed {
                    if let Err(e) = self.host(&config, created, peers) {
                        tracing::error!(stream = %name, "can't host stream: {}", e.description);
                    }
                }
            }
            Some(Some(group)) if group.is_leader() || !staying => {
                self.spawn_repeer(group, name, peers.to_vec(), staying);
            }
            Some(_) if !staying => {
                self.remove_stream(name, None);
            }
            _ => {}
        }
    }

    /// The blocking part of [`JetStream::repeer`]: the group's leader changes the
    /// membership; a member leaving waits until the change has reached it (the change needs
    /// its vote in the old configuration), and a moment more for its ack (bounded).
    fn carry_out_repeer(
        &self,
        group: &crate::raft::Group<super::replica::StreamMachine>,
        name: &str,
        peers: &[String],
        staying: bool,
    ) {
        if group.is_leader() {
            match self
                .runtime
                .block_on(super::replica::set_members(group, peers))
            {
                Ok(()) => tracing::info!(stream = %name, ?peers, "stream peers changed"),
                Err(e) => tracing::error!(stream = %name, "peer change failed: {e}"),
            }
        } else {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !super::replica::leaving(group) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        if !staying {
            self.remove_stream(name, None);
        }
    }

    /// For a replicated stream: waits (bounded) until its group has a leader taking publishes.
    fn settle(&self, name: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let settled = lock(&self.streams)
                .get(name)
                .map(|h| h.replica.as_ref().is_none_or(|r| r.is_settled()));
            if settled != Some(false) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// True if this server leads the group of the replicated stream `name`.
    fn leads(&self, name: &str) -> bool {
        lock(&self.streams)
            .get(name)
            .and_then(|h| h.replica.as_ref())
            .is_some_and(|r| r.is_leader())
    }

    /// Opens a stream placed here (if it does not run yet) and returns its info.
    fn host(
        &self,
        config: &StreamConfig,
        created: i64,
        peers: &[String],
    ) -> Result<Value, ApiError> {
        let name = &config.name;
        let running = lock(&self.streams).get(name).map(|h| h.tx.clone());
        let tx = match running {
            Some(tx) => tx,
            None => {
                if let Err(e) = self
                    .resources
                    .reserve(name, config.storage, config.max_bytes)
                {
                    tracing::warn!(stream = %name, "{}", e.description);
                }
                // Not fresh: a replayed create finds the data the stream already has.
                let replicated = (peers.len() > 1).then_some(peers);
                self.open_stream_with(config.clone(), created, false, replicated)?;
                lock(&self.streams)
                    .get(name)
                    .map(|h| h.tx.clone())
                    .ok_or_else(ApiError::stream_not_found)?
            }
        };
        self.query_info(&tx).ok_or_else(ApiError::stream_not_found)
    }

    /// For each replicated stream this server leads: if its group's voters are not the
    /// servers the catalogue names (a peer change this leader did not carry out, or one that
    /// failed), changes them now (on a thread of its own, one change per stream at a time).
    fn check_members(self: &Arc<Self>) {
        let Some(meta) = self.meta.get() else { return };
        let led: Vec<(
            String,
            Arc<crate::raft::Group<super::replica::StreamMachine>>,
        )> = lock(&self.streams)
            .iter()
            .filter_map(|(n, h)| h.replica.as_ref().map(|r| (n.clone(), r.group.clone())))
            .filter(|(_, g)| g.is_leader())
            .collect();
        for (name, group) in led {
            let Some(peers) = meta.read(|c| c.get(&name).map(|a| a.peers.clone())) else {
                continue;
            };
            let mut voters: Vec<String> = group.voter_names().into_iter().map(|(_, n)| n).collect();
            let mut want = peers.clone();
            voters.sort();
            want.sort();
            if voters != want {
                let staying = peers.contains(&self.server_name);
                self.spawn_repeer(group, &name, peers, staying);
            }
        }
    }

    /// Runs [`JetStream::carry_out_repeer`] on a thread of its own, unless a change of this
    /// stream's members is under way here already.
    fn spawn_repeer(
        self: &Arc<Self>,
        group: Arc<crate::raft::Group<super::replica::StreamMachine>>,
        name: &str,
        peers: Vec<String>,
        staying: bool,
    ) {
        if !lock(&self.changing).insert(name.to_string()) {
            return;
        }
        let (js, name) = (self.clone(), name.to_string());
        let work = move || {
            js.carry_out_repeer(&group, &name, &peers, staying);
            lock(&js.changing).remove(&name);
        };
        if let Err(e) = std::thread::Builder::new()
            .name("stream-peers".into())
            .spawn(work)
        {
            tracing::error!("can't change stream peers: {e}");
        }
    }

    /// Makes the running streams what the catalogue places here (after a snapshot).
    fn reconcile(&self, me: &str) {
        let Some(meta) = self.meta.get() else { return };
        let placed: Vec<(StreamConfig, i64, Vec<String>)> = meta.read(|c| {
            c.streams()
                .filter(|(_, a)| a.peers.iter().any(|p| p == me))
                .map(|(_, a)| (a.config.clone(), a.created, a.peers.clone()))
                .collect()
        });
        let running: Vec<String> = lock(&self.streams).keys().cloned().collect();
        for name in running {
            if !placed.iter().any(|(c, _, _)| c.name == name) {
                self.remove_stream(&name, None);
            }
        }
        for (config, created, peers) in placed {
            if let Err(e) = self.host(&config, created, &peers) {
                tracing::error!(stream = %config.name, "can't host stream: {}", e.description);
            }
        }
    }
}

/// Proposes `op` with the request's reply subject. A refusal comes back as the error to
/// answer; a change is answered by the server that carries it out.
fn propose(meta: &Meta, op: MetaOp, m: &Message) -> Result<(), ApiError> {
    let cmd = MetaCmd {
        op,
        reply: m.reply.clone(),
    };
    match meta.propose(&cmd)? {
        Outcome::Changed | Outcome::Exists => Ok(()),
        Outcome::Refused(e) => Err(e),
        Outcome::Skipped => Err(unavailable()),
    }
}

/// `placement`: a cluster other than ours, or tags (no server has any yet), cannot be met.
fn check_placement(meta: &Meta, config: &StreamConfig) -> Result<(), ApiError> {
    let Some(p) = &config.placement else {
        return Ok(());
    };
    let other_cluster = p["cluster"]
        .as_str()
        .is_some_and(|c| !c.is_empty() && c != meta.cluster());
    let tags = p["tags"].as_array().is_some_and(|t| !t.is_empty());
    if other_cluster || tags {
        return Err(ApiError {
            code: 400,
            err_code: 10005,
            description: "no suitable peers for placement".into(),
        });
    }
    Ok(())
}

/// Feeds meta events to the manager until the machine goes away.
pub(super) fn run_events(js: Weak<JetStream>, me: String, rx: std::sync::mpsc::Receiver<Event>) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        let event = rx.recv_timeout(PEER_CHECK);
        let Some(js) = js.upgrade() else { return };
        match event {
            Ok(event) => js.on_meta_event(&me, event),
            Err(RecvTimeoutError::Timeout) => js.check_members(),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// How often (when the catalogue is quiet) the streams led here compare their group's
/// voters with the servers the catalogue names.
const PEER_CHECK: std::time::Duration = std::time::Duration::from_secs(5);
