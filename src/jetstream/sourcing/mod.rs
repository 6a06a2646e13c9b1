//! Mirrors and sources: a stream that copies another stream's messages (a `mirror`, keeping
//! their sequences and times) or several (its `sources`, each message stamped with the
//! `Nats-Stream-Source` header naming where it came from).
//!
//! Each origin is read by a [`link`]: a task that creates a push consumer on the origin through
//! the JetStream API (any origin a request can reach: this server, another node, another
//! domain through `external.api`), and hands what it receives to the stream's runner as
//! [`Sourced`] input. The stream applies it like a publish, in `stream::sourced`, which also
//! keeps, per source, the last origin sequence it applied: a link (re)starts after it, so an
//! outage (a restart, a lost consumer) resumes where the copy stopped, and a message delivered
//! twice is stored once. [`rules`] checks the configuration as nats-server does.

pub(crate) mod link;
pub(crate) mod rules;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::errors::ApiError;
use crate::server::Message;

/// One origin of a mirror or source, as stream configs carry it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamSource {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub opt_start_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    pub subject_transforms: Vec<SubjectTransform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<External>,
    /// Sourcing through a durable consumer (nats-server 2.14): refused by [`rules`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<Value>,
}

/// A transform of a source's subjects: messages matching `src` are stored under `dest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubjectTransform {
    #[serde(default)]
    pub src: String,
    #[serde(default)]
    pub dest: String,
}

/// Where an origin in another account or domain is reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct External {
    /// The API prefix to send requests to instead of `$JS.API`.
    #[serde(default)]
    pub api: String,
    /// The prefix of the subject messages are delivered on.
    #[serde(default)]
    pub deliver: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn null_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

impl StreamSource {
    /// What names this source among a stream's sources (nats-server's index name): the
    /// stream (with a hash of the external API prefix), its filters and their destinations.
    /// Its first word and the filters appear in the `Nats-Stream-Source` header.
    pub fn index_name(&self) -> String {
        let mut name = self.name.clone();
        if let Some(ext) = &self.external {
            name = format!("{name}:{}", short_hash(&ext.api));
        }
        let (src, dest) = if self.subject_transforms.is_empty() {
            let f = if self.filter_subject.is_empty() {
                ">"
            } else {
                &self.filter_subject
            };
            (f.to_string(), ">".to_string())
        } else {
            let or_all = |s: &str| {
                if s.is_empty() {
                    ">".to_string()
                } else {
                    s.to_string()
                }
            };
            let srcs: Vec<String> = self
                .subject_transforms
                .iter()
                .map(|t| or_all(&t.src))
                .collect();
            let dests: Vec<String> = self
                .subject_transforms
                .iter()
                .map(|t| or_all(&t.dest))
                .collect();
            (srcs.join("\u{c}"), dests.join("\u{c}"))
        };
        format!("{name} {src} {dest}")
    }

    /// The filters the origin consumer is created with.
    pub fn filters(&self) -> Vec<String> {
        if !self.filter_subject.is_empty() {
            return vec![self.filter_subject.clone()];
        }
        let filters: Vec<String> = self
            .subject_transforms
            .iter()
            .map(|t| {
                if t.src.is_empty() {
                    ">".to_string()
                } else {
                    t.src.clone()
                }
            })
            .collect();
        // One transform taking everything: no filter at all.
        if filters.iter().any(|f| f == ">") {
            return Vec::new();
        }
        filters
    }

    /// The compiled transforms (the first that matches a subject applies).
    pub fn transforms(&self) -> Vec<crate::protocol::transform::Transform> {
        self.subject_transforms
            .iter()
            .filter(|t| !t.dest.is_empty())
            .filter_map(|t| {
                let src = if t.src.is_empty() { ">" } else { &t.src };
                crate::protocol::transform::Transform::new(src, &t.dest).ok()
            })
            .collect()
    }
}

/// nats-server's short hash of a name: the first 8 characters of its SHA-256, base64url.
pub(crate) fn short_hash(s: &str) -> String {
    use base64::Engine;
    let digest = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    text[..8].to_string()
}

/// A message a link received from its origin, for the stream to store.
pub(crate) struct Sourced {
    /// The source's index name; `None` for a mirror.
    pub source: Option<String>,
    /// Its sequence in the origin stream.
    pub seq: u64,
    /// Its time in the origin stream (what a mirror keeps).
    pub time: i64,
    /// The message, its subject transformed and its headers ready to store.
    pub message: Message,
    /// Set by the stream when it could not store the message for a limit (discard new): the
    /// link starts over from it once there may be room.
    pub refused: Arc<AtomicU64>,
}

/// What stream info shows of each link (`mirror`, `sources`): shared by the links, which
/// update it, and the stream, which reports it.
#[derive(Default)]
pub(crate) struct Status {
    links: Mutex<BTreeMap<String, LinkStatus>>,
}

/// One link's state as stream info shows it.
#[derive(Clone, Default)]
pub(crate) struct LinkStatus {
    pub lag: u64,
    pub last_contact: Option<Instant>,
    pub error: Option<ApiError>,
}

impl Status {
    /// Records what a link learned (under its key: the index name, or "" for a mirror).
    pub fn update(&self, key: &str, f: impl FnOnce(&mut LinkStatus)) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        f(links.entry(key.to_string()).or_default());
    }

    fn get(&self, key: &str) -> LinkStatus {
        let links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.get(key).cloned().unwrap_or_default()
    }

    /// Stream info's `mirror` object for `src`.
    pub fn mirror_json(&self, src: &StreamSource) -> Value {
        info_json(src, &self.get(""))
    }

    /// Stream info's `sources` array.
    pub fn sources_json(&self, sources: &[StreamSource]) -> Value {
        Value::Array(
            sources
                .iter()
                .map(|s| info_json(s, &self.get(&s.index_name())))
                .collect(),
        )
    }
}

/// One `StreamSourceInfo`: `active` is nanoseconds since the origin was last heard from (-1:
/// never).
fn info_json(src: &StreamSource, st: &LinkStatus) -> Value {
    let active = st.last_contact.map_or(-1, |t| {
        i64::try_from(t.elapsed().as_nanos()).unwrap_or(i64::MAX)
    });
    let mut v = json!({ "name": src.name, "lag": st.lag, "active": active });
    if let Some(ext) = &src.external {
        v["external"] = json!(ext);
    }
    if let Some(e) = &st.error {
        v["error"] = json!(e);
    }
    if !src.filter_subject.is_empty() {
        v["filter_subject"] = json!(src.filter_subject);
    }
    if !src.subject_transforms.is_empty() {
        v["subject_transforms"] = json!(src.subject_transforms);
    }
    v
}

impl Sourced {
    /// The stream could not store it: for a limit (discard new), its link starts over from
    /// it once there may be room; any other refusal is logged and the message skipped, as
    /// nats-server does.
    pub fn refused(&self, stream: &str, e: &ApiError) {
        if e.err_code == 10077 {
            let _ = self
                .refused
                .compare_exchange(0, self.seq, Ordering::AcqRel, Ordering::Acquire);
        } else {
            tracing::warn!(
                stream,
                seq = self.seq,
                "sourced message not stored: {}",
                e.description
            );
        }
    }
}
