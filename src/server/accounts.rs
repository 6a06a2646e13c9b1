//! Accounts: each account of `accounts {}` is its own subject space (a [`Router`]); a client
//! is bound to its user's account at CONNECT and publishes, subscribes and gets no-responders
//! there only. The global account (`$G`) is [`Shared::router`].
//!
//! Exports and imports are bridges made of internal subscriptions at start:
//! * a stream import of B from A: a subscription in A on the exported subject whose handler
//!   publishes each message into B, its subject mapped onto B's (`prefix` / `to`);
//! * a service import of B from A: a subscription in B on the local subject forwards each
//!   request into A with its reply subject replaced by a fresh `_R_.<import>.<n>`, and a
//!   subscription in A on `_R_.<import>.>` sends the first response (a singleton) back to the
//!   requester's reply subject in B. Pending replies are forgotten after two minutes; a
//!   request nobody in A takes (or past 65,536 pending) gets the 503 no-responders status.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use rustc_hash::FxHashMap;

use super::inproc::Client;
use super::sublist::Router;
use super::{Message, Shared};
use crate::config::{Config, Import, ShareKind};
use crate::protocol::subject::map_subject;

/// How long a forwarded request's reply route is kept.
const RESPONSE_TTL: Duration = Duration::from_secs(120);
/// Most pending replies per service import: past it, requests are answered 503 until
/// responses or expiry make room.
const MAX_PENDING: usize = 65_536;
/// How often expired replies are swept (at most).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The status a requester gets when nobody in the exporting account answers.
const NO_RESPONDERS: &[u8] = b"NATS/1.0 503\r\n\r\n";

/// One router per configured account, per account of operator mode (by its key), and for
/// the `$SYS` account when `system_account` names it without defining it.
pub(crate) fn routers(cfg: &Config) -> FxHashMap<String, Arc<Router>> {
    let mut out: FxHashMap<String, Arc<Router>> = cfg
        .accounts
        .iter()
        .map(|a| (a.name.clone(), Arc::new(Router::named(a.name.as_bytes()))))
        .collect();
    let named = |name: &str| Arc::new(Router::named(name.as_bytes()));
    if let Some(sys) = &cfg.system_account {
        out.entry(sys.clone()).or_insert_with(|| named(sys));
    }
    for account in cfg.trust.iter().flat_map(|t| &t.accounts) {
        out.entry(account.key.clone())
            .or_insert_with(|| named(&account.key));
    }
    out
}

/// Sets up every import's bridge.
pub(crate) fn bridge(shared: &Arc<Shared>) {
    for account in &shared.config.accounts {
        for import in &account.imports {
            let (Some(importer), Some(exporter)) = (
                shared.accounts.get(&account.name),
                shared.accounts.get(&import.account),
            ) else {
                continue; // the configuration was validated: not reached
            };
            let into = Client::in_account(shared.clone(), importer.clone());
            let from = Client::in_account(shared.clone(), exporter.clone());
            match import.kind {
                ShareKind::Stream => stream_bridge(import, from, into),
                ShareKind::Service => service_bridge(import, from, into),
            }
        }
    }
}

/// Republishes every message of the exporter's `subject` into the importer at `local`.
fn stream_bridge(import: &Import, from: Client, into: Client) {
    let (subject, local) = (import.subject.clone(), import.local.clone());
    let handler = Arc::new(move |msg: Message| {
        let to = map_subject(&subject, &local, &msg.subject);
        let headers = msg.headers.as_deref();
        into.publish_sync(&to, msg.reply.as_deref(), headers, &msg.payload);
        true
    });
    // The subscription lives as long as the server: the router holds it. A bridge: in a
    // cluster each server republishes its own publishers' messages.
    let _ = from.subscribe_bridge(&import.subject, handler);
}

/// Reply subjects of forwarded requests: `_R_...` in the exporter → reply in the importer.
struct Pending {
    next: u64,
    replies: FxHashMap<String, (String, Instant)>,
    swept: Instant,
}

impl Pending {
    /// Records the reply route of a forwarded request; `None` when the table is full.
    fn open(&mut self, prefix: &str, reply: String) -> Option<String> {
        let now = Instant::now();
        if self.replies.len() >= MAX_PENDING / 2 && now.duration_since(self.swept) >= SWEEP_EVERY {
            self.replies.retain(|_, (_, deadline)| *deadline > now);
            self.swept = now;
        }
        if self.replies.len() >= MAX_PENDING {
            return None;
        }
        self.next += 1;
        let routed = format!("{prefix}.{}", self.next);
        self.replies
            .insert(routed.clone(), (reply, now + RESPONSE_TTL));
        Some(routed)
    }
}

/// Forwards requests on the importer's `local` subject to the exporter's `subject`, and the
/// first response to each back.
fn service_bridge(import: &Import, from: Client, into: Client) {
    let pending = Arc::new(Mutex::new(Pending {
        next: 0,
        replies: FxHashMap::default(),
        swept: Instant::now(),
    }));
    let prefix = format!("_R_.{:08x}", rand::rng().random::<u32>());
    let into = Arc::new(into);
    let back = into.clone();
    let table = pending.clone();
    let responses = Arc::new(move |msg: Message| {
        let reply = lock(&table).replies.remove(&msg.subject);
        if let Some((reply, deadline)) = reply {
            if deadline > Instant::now() {
                let headers = msg.headers.as_deref();
                back.publish_sync(&reply, None, headers, &msg.payload);
            }
        }
        true
    });
    let _ = from.subscribe_internal(&format!("{prefix}.>"), None, responses);
    let (subject, local) = (import.subject.clone(), import.local.clone());
    let requester = into.clone();
    let requests = Arc::new(move |msg: Message| {
        let to = map_subject(&local, &subject, &msg.subject);
        let headers = msg.headers.as_deref();
        let Some(reply) = msg.reply.clone() else {
            from.publish_sync(&to, None, headers, &msg.payload);
            return true;
        };
        let Some(routed) = lock(&pending).open(&prefix, reply.clone()) else {
            requester.publish_sync(&reply, None, Some(NO_RESPONDERS), &[]);
            return true;
        };
        if from.publish_sync(&to, Some(&routed), headers, &msg.payload) == 0 {
            lock(&pending).replies.remove(&routed);
            requester.publish_sync(&reply, None, Some(NO_RESPONDERS), &[]);
        }
        true
    });
    // Each server forwards its own requesters' requests; responses (above) come back to the
    // forwarding server over routes too.
    let _ = into.subscribe_bridge(&import.local, requests);
}

fn lock(p: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}
