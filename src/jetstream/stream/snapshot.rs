//! A replicated stream's whole state as one value, for its Raft group's snapshots: the
//! configuration, the messages (with their sequences: deleted ones are gaps), the committed
//! consumers, the de-duplication window, the TTL index and the applied log index.
//! [`Stream::export`] takes it; [`Stream::import`] replaces a stream's state with it (the
//! store is recreated empty, then refilled), so a replica whose log was purged past what it
//! has catches up from a peer's snapshot, and a restarting replica from its own.
//!
//! Bincode for the bulk; the configurations as JSON inside it (their serde attributes are
//! JSON's). Bytes from a peer that do not decode are an error, never a panic.

use serde::{Deserialize, Serialize};

use super::derived::{Dedup, DedupImage};
use super::persist::ConsumerRecord;
use super::Stream;
use crate::store::StoreError;

/// A gap of at most this many sequences is refilled with placeholders that are then
/// removed; a longer one starts a new store segment ([`crate::store::MsgStore::skip_to`]).
const SHORT_GAP: u64 = 64;

/// One stored message.
#[derive(Serialize, Deserialize)]
struct Msg {
    seq: u64,
    time: i64,
    subject: String,
    headers: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// A stream's state (see the module docs).
#[derive(Serialize, Deserialize)]
struct Image {
    applied: u64,
    /// The configuration, as JSON.
    config: Vec<u8>,
    created: i64,
    last_seq: u64,
    messages: Vec<Msg>,
    /// The committed consumers, each a JSON [`ConsumerRecord`].
    consumers: Vec<Vec<u8>>,
    dedup: DedupImage,
    last_msg_id: Option<String>,
    ttl: Vec<(i64, u64)>,
}

/// Why a snapshot could not be taken or restored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    /// The bytes do not decode.
    #[error("stream snapshot undecodable: {0}")]
    Decode(String),
    /// The store failed while being refilled (or read).
    #[error("stream snapshot store: {0}")]
    Store(#[from] StoreError),
}

fn decode_err(e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Decode(e.to_string())
}

impl Stream {
    /// The stream's whole applied state, encoded.
    pub fn export(&self) -> Result<Vec<u8>, SnapshotError> {
        let mut messages = Vec::new();
        let mut seq = 0;
        while let Some(next) = self.store.next_seq_matching(seq, None) {
            if let Some(m) = self.store.get(next)? {
                messages.push(Msg {
                    seq: m.seq,
                    time: m.time,
                    subject: m.subject,
                    headers: m.headers.map(|h| h.to_vec()),
                    payload: m.payload.to_vec(),
                });
            }
            seq = next + 1;
        }
        let consumers = self
            .committed
            .values()
            .map(|c| {
                let rec = ConsumerRecord {
                    name: Some(c.name.clone()),
                    config: c.config.clone(),
                    created: c.created,
                    state: c.state().clone(),
                    applied: c.applied,
                };
                serde_json::to_vec(&rec).map_err(decode_err)
            })
            .collect::<Result<_, _>>()?;
        let image = Image {
            applied: self.applied,
            config: serde_json::to_vec(&self.config).map_err(decode_err)?,
            created: self.created,
            last_seq: self.store.last_seq(),
            messages,
            consumers,
            dedup: self.dedup.export(),
            last_msg_id: self.last_msg_id.clone(),
            ttl: self.ttl.iter().copied().collect(),
        };
        // The schedule index follows the image (a snapshot without it, older, rebuilds it).
        let mut bytes = bincode::serialize(&image).map_err(decode_err)?;
        let schedules = bincode::serialize(&self.schedules.export()).map_err(decode_err)?;
        bytes.extend_from_slice(&schedules);
        Ok(bytes)
    }

    /// Replaces the stream's state with an [`Stream::export`]ed one. Bad bytes leave the
    /// stream as it was; a store failure part-way leaves it half-filled (the caller then
    /// treats the replica as broken, and its next start rebuilds it).
    pub fn import(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let image: Image = crate::raft::decode(bytes).map_err(decode_err)?;
        let used = bincode::serialized_size(&image).map_err(decode_err)?;
        let rest = usize::try_from(used).ok().and_then(|n| bytes.get(n..));
        let schedules: Option<Vec<(String, i64, u64)>> = rest
            .filter(|r| !r.is_empty())
            .and_then(|r| crate::raft::decode(r).ok());
        let config = serde_json::from_slice(&image.config).map_err(decode_err)?;
        let records: Vec<ConsumerRecord> = image
            .consumers
            .iter()
            .map(|c| serde_json::from_slice(c).map_err(decode_err))
            .collect::<Result<_, _>>()?;
        self.store.recreate()?;
        refill(&mut *self.store, &image.messages, image.last_seq)?;
        self.config = config;
        self.transform = self.config.subject_transform();
        self.created = image.created;
        self.applied = image.applied;
        self.store.mark_applied(image.applied);
        self.dedup = Dedup::import(image.dedup);
        self.last_msg_id = image.last_msg_id;
        self.ttl = image.ttl.into_iter().collect();
        match schedules {
            Some(list) => self.schedules = super::schedule::Schedules::import(list),
            None => {
                self.schedules = super::schedule::Schedules::default();
                self.rebuild_schedules(0);
            }
        }
        self.lost.clear();
        self.consumers.clear();
        self.outbox.clear();
        self.committed = records
            .into_iter()
            .filter_map(|rec| self.consumer_from(rec))
            .collect();
        Ok(())
    }
}

/// Appends `messages` (in sequence order) to an empty store at their own sequences, leaving
/// the sequences between as gaps, and moves the next sequence past `last_seq`.
fn refill(
    store: &mut dyn crate::store::MsgStore,
    messages: &[Msg],
    last_seq: u64,
) -> Result<(), SnapshotError> {
    if let Some(first) = messages.first().filter(|m| m.seq > 1) {
        store.set_first_seq(first.seq)?;
    }
    for m in messages {
        let next = store.last_seq() + 1;
        if m.seq < next {
            return Err(SnapshotError::Decode(format!(
                "message {} out of order",
                m.seq
            )));
        }
        if m.seq - next <= SHORT_GAP {
            for _ in next..m.seq {
                let placeholder = store.append(&m.subject, None, &[], m.time)?;
                store.remove(placeholder)?;
            }
        } else {
            store.skip_to(m.seq)?;
        }
        store.append(&m.subject, m.headers.as_deref(), &m.payload, m.time)?;
    }
    if last_seq > store.last_seq() {
        if messages.is_empty() {
            store.set_first_seq(last_seq + 1)?;
        } else {
            store.skip_to(last_seq + 1)?;
        }
    }
    Ok(())
}
