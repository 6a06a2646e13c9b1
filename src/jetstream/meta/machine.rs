//! The meta group's state machine: the stream [`Catalogue`] under openraft. Every node applies
//! the same committed [`MetaCmd`]s in log order through [`Catalogue::apply_at`]; what a node
//! must then do about them (open a stream placed on it, stop a deleted one, answer the client)
//! is an [`Event`] for the manager, handled outside the state machine, so applying stays
//! deterministic and quick.

use std::sync::mpsc::Sender;

use serde::{Deserialize, Serialize};

use super::super::catalogue::{Catalogue, MetaApplied, MetaOp};
use super::super::errors::ApiError;
use crate::raft::{Machine, MachineError};

/// One entry of the meta log: a catalogue op and where its answer goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MetaCmd {
    pub op: MetaOp,
    /// The requester's reply subject: the node that carries the change out answers there.
    #[serde(default)]
    pub reply: Option<String>,
}

/// What applying one [`MetaCmd`] decided, as the proposer reads it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Outcome {
    Changed,
    Exists,
    Skipped,
    Refused(ApiError),
}

impl Outcome {
    fn of(r: Result<MetaApplied, ApiError>) -> Outcome {
        match r {
            Ok(MetaApplied::Changed) => Outcome::Changed,
            Ok(MetaApplied::Exists) => Outcome::Exists,
            Ok(MetaApplied::Skipped) => Outcome::Skipped,
            Err(e) => Outcome::Refused(e),
        }
    }
}

/// What the manager hears from the machine.
#[derive(Debug)]
pub(crate) enum Event {
    /// A command was applied with this outcome.
    Applied { cmd: Box<MetaCmd>, outcome: Outcome },
    /// The whole catalogue was replaced by a snapshot: reconcile everything.
    Restored,
}

/// The catalogue as a [`Machine`].
pub(crate) struct MetaMachine {
    pub catalogue: Catalogue,
    events: Sender<Event>,
}

impl MetaMachine {
    /// An empty catalogue reporting to `events`.
    pub fn new(events: Sender<Event>) -> MetaMachine {
        MetaMachine {
            catalogue: Catalogue::default(),
            events,
        }
    }
}

/// Encodes a command as a log payload (JSON: stream configs are JSON-shaped).
pub(crate) fn encode_cmd(cmd: &MetaCmd) -> Vec<u8> {
    serde_json::to_vec(cmd).unwrap_or_default()
}

/// Reads an applied outcome back; bytes that do not decode are a refusal.
pub(crate) fn decode_outcome(bytes: &[u8]) -> Outcome {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| Outcome::Refused(ApiError::store_failed(&format!("meta outcome: {e}"))))
}

impl Machine for MetaMachine {
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8> {
        let outcome = match serde_json::from_slice::<MetaCmd>(payload) {
            Ok(cmd) => {
                let outcome = Outcome::of(self.catalogue.apply_at(index, cmd.op.clone()));
                let _ = self.events.send(Event::Applied {
                    cmd: Box::new(cmd),
                    outcome: outcome.clone(),
                });
                outcome
            }
            Err(e) => {
                tracing::error!(index, "meta entry undecodable: {e}");
                Outcome::Refused(ApiError::bad_request("meta entry undecodable"))
            }
        };
        serde_json::to_vec(&outcome).unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.catalogue).unwrap_or_default()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), MachineError> {
        self.catalogue = serde_json::from_slice(snapshot)?;
        let _ = self.events.send(Event::Restored);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jetstream::config::StreamConfig;

    fn create(name: &str, subject: &str) -> MetaCmd {
        let json = serde_json::json!({ "name": name, "subjects": [subject] });
        let config = serde_json::from_value::<StreamConfig>(json)
            .unwrap()
            .normalize()
            .unwrap();
        MetaCmd {
            op: MetaOp::CreateStream {
                config,
                created: 1,
                peers: vec!["n2".into()],
            },
            reply: Some("_INBOX.1".into()),
        }
    }

    #[test]
    fn replicas_that_apply_the_same_log_agree_and_report_each_change() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut a = MetaMachine::new(tx.clone());
        let mut b = MetaMachine::new(tx);
        let log = [create("A", "a.>"), create("B", "a.b"), create("A", "a.>")];
        let mut outcomes = Vec::new();
        for (i, cmd) in log.iter().enumerate() {
            let bytes = encode_cmd(cmd);
            let ra = a.apply(i as u64 + 1, &bytes);
            assert_eq!(ra, b.apply(i as u64 + 1, &bytes));
            outcomes.push(decode_outcome(&ra));
        }
        assert_eq!(outcomes[0], Outcome::Changed);
        assert!(matches!(&outcomes[1], Outcome::Refused(e) if e.err_code == 10065));
        assert_eq!(outcomes[2], Outcome::Exists);
        assert_eq!(a.snapshot(), b.snapshot());
        assert_eq!(a.catalogue.get("A").unwrap().peers, vec!["n2".to_string()]);
        assert_eq!(rx.try_iter().count(), 6);
        let mut c = MetaMachine::new(std::sync::mpsc::channel().0);
        c.restore(&a.snapshot()).unwrap();
        assert_eq!(c.catalogue, a.catalogue);
        assert!(c.restore(b"not json").is_err());
        assert_eq!(
            c.catalogue, a.catalogue,
            "a bad snapshot leaves the state as it was"
        );
    }
}
