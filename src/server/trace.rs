//! Message tracing (nats-server 2.11): a client's publish with `Nats-Trace-Dest: <subject>`
//! makes the server publish one JSON event to that subject saying what became of the message
//! here: where it came in (`in`), which subscriptions it went out to or why not (`eg`), and,
//! when a stream took it, what JetStream decided (`js`, filled in by JetStream through the
//! [`TraceTag`] the message carries to internal handlers). With `Nats-Trace-Only: true` the
//! message is traced and not delivered (a stream checks it and stores nothing).
//!
//! In a cluster the event covers this server only; a traced message is forwarded to routes
//! unless it is trace-only (the other servers would deliver it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::sublist::Subscription;
use super::{Client, Shared};

/// The header naming the subject trace events go to.
pub const DEST: &str = "Nats-Trace-Dest";
const ONLY: &str = "Nats-Trace-Only";
/// What a delivered message's `Nats-Trace-Dest` becomes so it is not traced again (not a
/// valid subject).
pub const DISABLED: &str = "trace disabled";

pub(crate) const NO_ECHO: &str = "Not delivered because of no echo";
pub(crate) const SUB_DENY: &str = "Not delivered because subscription denies this subject";

/// True if a header block may ask for a trace (the cheap test on every HPUB).
#[inline]
pub(crate) fn mentioned(headers: &[u8]) -> bool {
    memchr::memmem::find(headers, DEST.as_bytes()).is_some()
}

/// What a publish's headers ask for.
pub(crate) struct Request {
    pub dest: String,
    pub only: bool,
    /// Every header, as the event's `request.header` shows them.
    headers: BTreeMap<String, Vec<String>>,
}

/// The trace a header block asks for: `None` without a `Nats-Trace-Dest` (a `Nats-Trace-Only`
/// alone is delivered as usual) or with one already disabled.
pub(crate) fn request(block: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(block).ok()?;
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.split("\r\n").skip(1) {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim_matches([' ', '\t']);
        if !k.is_empty() && !v.is_empty() {
            headers
                .entry(k.to_string())
                .or_default()
                .push(v.to_string());
        }
    }
    let dest = headers.get(DEST)?.first()?.clone();
    if dest == DISABLED {
        return None;
    }
    let only = headers
        .get(ONLY)
        .and_then(|v| v.first())
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "on"));
    Some(Request {
        dest,
        only,
        headers,
    })
}

/// One trace in progress: the event being built and the parts (this server's routing, each
/// internal handler that took the message) not yet done; the last one to finish sends it.
pub struct Trace {
    dest: String,
    only: bool,
    shared: Arc<Shared>,
    /// Publishes the event in the publisher's account.
    client: Client,
    state: Mutex<State>,
}

struct State {
    event: Value,
    /// Parts not yet done: routing, plus one per [`TraceTag`] alive.
    parts: usize,
}

fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Trace {
    /// Starts the trace of a publish with its ingress event.
    pub(crate) fn start(
        shared: &Arc<Shared>,
        router: Arc<super::sublist::Router>,
        req: Request,
        ingress: Value,
        size: usize,
    ) -> Arc<Trace> {
        let mut ingress = ingress;
        ingress["type"] = json!("in");
        ingress["ts"] = json!(now());
        Arc::new(Trace {
            dest: req.dest,
            only: req.only,
            shared: shared.clone(),
            client: Client::server_side(shared.clone(), router),
            state: Mutex::new(State {
                event: json!({
                    "request": { "header": req.headers, "msgsize": size },
                    "events": [ingress],
                }),
                parts: 1,
            }),
        })
    }

    /// True if the message is traced and not delivered.
    pub fn only(&self) -> bool {
        self.only
    }

    fn add(&self, event: Value) -> usize {
        let mut st = super::conns::lock(&self.state);
        let events = st.event["events"].as_array_mut();
        events.map_or(0, |list| {
            list.push(event);
            list.len() - 1
        })
    }

    /// The message could not come in (a publish permission): the ingress event says why.
    pub(crate) fn ingress_error(&self, text: &str) {
        let mut st = super::conns::lock(&self.state);
        if let Some(e) = st.event.pointer_mut("/events/0") {
            e["error"] = json!(text);
        }
    }

    /// The message went out to (or, with `error`, was held back from) a client's subscription.
    pub(crate) fn egress(&self, sub: &Subscription, error: Option<&str>) {
        let name = self
            .shared
            .conns
            .get(sub.client_id)
            .and_then(|m| m.identity().name)
            .unwrap_or_default();
        let mut e = json!({
            "type": "eg", "ts": now(), "kind": 0, "cid": sub.client_id,
            "sub": String::from_utf8_lossy(&sub.subject),
        });
        if !name.is_empty() {
            e["name"] = json!(name);
        }
        if let Some(q) = &sub.queue {
            e["queue"] = json!(String::from_utf8_lossy(q));
        }
        if let Some(error) = error {
            e["error"] = json!(error);
        }
        self.add(e);
    }

    /// This server's routing of the message is done.
    pub(crate) fn done(self: &Arc<Self>) {
        self.finish_part();
    }

    fn finish_part(&self) {
        let event = {
            let mut st = super::conns::lock(&self.state);
            st.parts = st.parts.saturating_sub(1);
            if st.parts > 0 {
                return;
            }
            std::mem::take(&mut st.event)
        };
        let mut event = event;
        if let Some(server) = self.shared.conns.server_info() {
            event["server"] = server;
        }
        let body = serde_json::to_vec(&event).unwrap_or_default();
        self.client.publish_sync(&self.dest, None, None, &body);
    }
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace").field("dest", &self.dest).finish()
    }
}

/// What a traced message carries to an internal handler: JetStream adds its event through
/// it; the trace is sent once every copy of the tag is dropped. Untraced messages carry an
/// empty tag. Ignored by comparisons.
#[derive(Clone, Default)]
pub struct TraceTag(Option<Arc<Part>>);

/// One internal handler's share of a trace.
pub struct Part {
    trace: Arc<Trace>,
    /// Where JetStream's event is in the event list.
    slot: Mutex<Option<usize>>,
}

impl Drop for Part {
    fn drop(&mut self) {
        self.trace.finish_part();
    }
}

impl TraceTag {
    /// A share of `trace` for one internal handler.
    pub(crate) fn part_of(trace: &Arc<Trace>) -> TraceTag {
        super::conns::lock(&trace.state).parts += 1;
        TraceTag(Some(Arc::new(Part {
            trace: trace.clone(),
            slot: Mutex::new(None),
        })))
    }

    /// True if the message is traced.
    pub fn is_traced(&self) -> bool {
        self.0.is_some()
    }

    /// True if the message is traced and not to be delivered or stored.
    pub fn only(&self) -> bool {
        self.0.as_ref().is_some_and(|p| p.trace.only)
    }

    /// A stream took the message (called as it is queued, so the event keeps its place).
    pub fn stream_took(&self, stream: &str) {
        if let Some(p) = &self.0 {
            let slot = p
                .trace
                .add(json!({ "type": "js", "ts": now(), "stream": stream }));
            *super::conns::lock(&p.slot) = Some(slot);
        }
    }

    /// What the stream decided: the subject it stores the message under, whether an interest
    /// stream had no interest, and why it refused it.
    pub fn stream_decided(&self, subject: &str, no_interest: bool, error: Option<&str>) {
        let Some(p) = &self.0 else { return };
        let Some(slot) = *super::conns::lock(&p.slot) else {
            return;
        };
        let mut st = super::conns::lock(&p.trace.state);
        let Some(e) = st.event.pointer_mut(&format!("/events/{slot}")) else {
            return;
        };
        e["ts"] = json!(now());
        if !subject.is_empty() {
            e["subject"] = json!(subject);
        }
        if no_interest {
            e["nointerest"] = json!(true);
        }
        if let Some(error) = error {
            e["error"] = json!(error);
        }
    }
}

impl std::fmt::Debug for TraceTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "traced"
        } else {
            "untraced"
        })
    }
}

impl PartialEq for TraceTag {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for TraceTag {}
