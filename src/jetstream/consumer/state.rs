//! A consumer's replicated state and the two ops that change it: what was handed out
//! ([`Deliveries`], from the leader's pump) and acknowledgements. Both are applied only through
//! the stream's `apply`, from op contents alone (no clock, no store reads), so every replica
//! that applies the same ops holds the same cursor, pending set and redelivery count.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::jetstream::config::AckPolicy;

/// Persistent, replicated consumer state (what survives a restart and a failover).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct ConsumerState {
    /// Last stream sequence handed out (the delivery cursor).
    pub sseq: u64,
    /// Last consumer sequence handed out.
    pub dseq: u64,
    /// Pending acks: stream seq -> (consumer seq, delivery count, publish time).
    pub pending: BTreeMap<u64, (u64, u64, i64)>,
    /// Messages redelivered at least once.
    pub num_redelivered: u64,
    /// Last-per-subject sequences still to deliver first.
    pub initial: VecDeque<u64>,
    /// The stream sequence a reset declared settled (shown as the ack floor until the next
    /// delivery is acknowledged).
    #[serde(default)]
    pub reset_floor: u64,
}

/// One message handed out that awaits an ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sent {
    pub sseq: u64,
    pub dseq: u64,
    /// Delivery count of this delivery (1 for the first).
    pub count: u64,
    /// The message's publish time (shown in the ack subject and consumer info).
    pub time: i64,
}

/// What one pump handed out: the `Delivered` op's body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Deliveries {
    /// The delivery cursor after the pump (never moves back).
    pub cursor: u64,
    /// The last consumer sequence used.
    pub dseq: u64,
    /// How many of the initial last-per-subject sequences were taken.
    pub initial_taken: u32,
    /// Deliveries that await acks (none for `ack_policy: none`).
    pub sent: Vec<Sent>,
    /// Pending sequences given up: gone from the stream, or at `max_deliver`.
    pub dropped: Vec<u64>,
}

impl Deliveries {
    /// True if applying it would change nothing.
    pub fn is_empty(&self, state: &ConsumerState) -> bool {
        self.cursor <= state.sseq
            && self.dseq <= state.dseq
            && self.initial_taken == 0
            && self.sent.is_empty()
            && self.dropped.is_empty()
    }
}

/// What a client's ack asks for, as far as replicated state goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum AckKind {
    /// `+ACK` / `+NXT` (and an empty body): acknowledged (with `ack_policy: all`, up to it).
    Ack,
    /// `+TERM`: never redeliver.
    Term,
}

impl ConsumerState {
    /// Applies a `Delivered` op.
    pub fn apply_delivered(&mut self, d: &Deliveries, policy: AckPolicy) {
        self.sseq = self.sseq.max(d.cursor);
        self.dseq = self.dseq.max(d.dseq);
        let taken = (d.initial_taken as usize).min(self.initial.len());
        self.initial.drain(..taken);
        for s in &d.dropped {
            self.pending.remove(s);
        }
        for s in &d.sent {
            if s.count == 2 {
                self.num_redelivered += 1;
            }
            if policy != AckPolicy::None {
                self.pending.insert(s.sseq, (s.dseq, s.count, s.time));
            }
        }
    }

    /// Applies a `ConsumerReset` op: the next delivery is stream sequence `seq` (at least 1),
    /// nothing is pending, and consumer sequences start again at 1.
    pub fn apply_reset(&mut self, seq: u64) {
        *self = ConsumerState {
            sseq: seq.max(1) - 1,
            reset_floor: seq.max(1) - 1,
            ..ConsumerState::default()
        };
    }

    /// Applies an `Ack` op; returns the stream sequences it settled.
    pub fn apply_ack(&mut self, seq: u64, kind: AckKind, policy: AckPolicy) -> Vec<u64> {
        match (kind, policy) {
            (AckKind::Term, _) | (AckKind::Ack, AckPolicy::Explicit) => self
                .pending
                .remove(&seq)
                .map(|_| vec![seq])
                .unwrap_or_default(),
            (AckKind::Ack, AckPolicy::All) => {
                let done: Vec<u64> = self.pending.range(..=seq).map(|(s, _)| *s).collect();
                for s in &done {
                    self.pending.remove(s);
                }
                done
            }
            (AckKind::Ack, AckPolicy::None) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(sseq: u64, dseq: u64, count: u64) -> Sent {
        Sent {
            sseq,
            dseq,
            count,
            time: 7,
        }
    }

    #[test]
    fn deliveries_move_the_cursor_and_fill_pending() {
        let mut st = ConsumerState {
            initial: VecDeque::from([3, 5, 9]),
            ..ConsumerState::default()
        };
        let d = Deliveries {
            cursor: 9,
            dseq: 2,
            initial_taken: 2,
            sent: vec![sent(3, 1, 1), sent(5, 2, 1)],
            dropped: vec![],
        };
        st.apply_delivered(&d, AckPolicy::Explicit);
        assert_eq!((st.sseq, st.dseq), (9, 2));
        assert_eq!(st.initial, VecDeque::from([9]));
        assert_eq!(st.pending.len(), 2);
        // A redelivery and a message at max_deliver.
        let d = Deliveries {
            cursor: 4,
            dseq: 3,
            initial_taken: 0,
            sent: vec![sent(3, 3, 2)],
            dropped: vec![5],
        };
        st.apply_delivered(&d, AckPolicy::Explicit);
        assert_eq!(st.sseq, 9, "the cursor never moves back");
        assert_eq!(st.pending.get(&3), Some(&(3, 2, 7)));
        assert!(!st.pending.contains_key(&5));
        assert_eq!(st.num_redelivered, 1);
    }

    #[test]
    fn acks_settle_by_policy() {
        let mut st = ConsumerState::default();
        let d = Deliveries {
            cursor: 3,
            dseq: 3,
            sent: (1..=3).map(|s| sent(s, s, 1)).collect(),
            ..Deliveries::default()
        };
        st.apply_delivered(&d, AckPolicy::All);
        assert_eq!(st.apply_ack(2, AckKind::Ack, AckPolicy::All), vec![1, 2]);
        assert_eq!(
            st.apply_ack(2, AckKind::Ack, AckPolicy::All),
            Vec::<u64>::new()
        );
        assert_eq!(st.apply_ack(3, AckKind::Term, AckPolicy::All), vec![3]);
        let mut none = ConsumerState::default();
        none.apply_delivered(&d, AckPolicy::None);
        assert!(none.pending.is_empty());
        assert_eq!((none.sseq, none.dseq), (3, 3));
    }
}
