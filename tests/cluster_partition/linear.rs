//! A linearizability checker for a key-value history, one key at a time (Wing and Gong's
//! search with memoised states, as porcupine and Knossos do): a key is a register holding a
//! value and the revision that wrote it. An operation whose outcome is unknown (no answer,
//! an error that does not say it failed) may have taken effect at any point after it was
//! called, or never.

use std::collections::HashSet;

/// What a client did to one key, and what it was told.
#[derive(Clone, Debug)]
pub enum Op {
    /// A put of `value`, acknowledged with revision `rev` (`None`: outcome unknown).
    Put { value: u64, rev: Option<u64> },
    /// A create: `Some(Ok(rev))` created, `Some(Err(()))` refused as existing, `None` unknown.
    Create {
        value: u64,
        outcome: Option<Result<u64, ()>>,
    },
    /// An update expecting revision `expected` (0: no value): as a create (`Err`: another
    /// revision).
    Update {
        value: u64,
        expected: u64,
        outcome: Option<Result<u64, ()>>,
    },
    /// A read: the value and revision it returned (`None`: no such key).
    Get { read: Option<(u64, u64)> },
}

/// An operation with its call and return times (`ret: None`: it never answered for sure).
#[derive(Clone, Debug)]
pub struct Event {
    pub op: Op,
    pub call: u64,
    pub ret: Option<u64>,
}

impl Event {
    fn known(&self) -> bool {
        self.ret.is_some()
    }
}

/// The register: the value and the revision that wrote it (`None`: written by an operation
/// whose answer was lost, so its revision is learnt from a later read).
type State = Option<(u64, Option<u64>)>;

/// The state after `op` is applied to `s`, if `op` could have seen `s`.
fn step(s: &State, op: &Op) -> Option<State> {
    let rev_of = |s: &State| s.and_then(|(_, r)| r);
    match op {
        Op::Put { value, rev } => match (rev, rev_of(s)) {
            (Some(r), Some(cur)) if *r <= cur => None,
            _ => Some(Some((*value, *rev))),
        },
        Op::Create { value, outcome } => match (outcome, s) {
            (Some(Ok(r)), None) => Some(Some((*value, Some(*r)))),
            (Some(Err(())), Some(_)) => Some(*s),
            (None, None) => Some(Some((*value, None))),
            (None, Some(_)) => Some(*s),
            _ => None,
        },
        Op::Update {
            value,
            expected,
            outcome,
        } => {
            // Revision 0 expects no value; a revision not known yet matches either way.
            let (matches, differs) = match s {
                None => (*expected == 0, *expected != 0),
                Some((_, None)) => (true, true),
                Some((_, Some(r))) => (*r == *expected, *r != *expected),
            };
            match outcome {
                Some(Ok(r)) if matches && rev_of(s).is_none_or(|cur| *r > cur) => {
                    Some(Some((*value, Some(*r))))
                }
                Some(Err(())) if differs => Some(*s),
                None if matches => Some(Some((*value, None))),
                None => Some(*s),
                _ => None,
            }
        }
        Op::Get { read } => match (read, s) {
            (None, None) => Some(None),
            (Some((v, r)), Some((sv, sr))) if v == sv && sr.is_none_or(|x| x == *r) => {
                Some(Some((*v, Some(*r))))
            }
            _ => None,
        },
    }
}

/// A set of operation indexes.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn with(&self, i: usize) -> Bits {
        let mut b = self.clone();
        b.0[i / 64] |= 1 << (i % 64);
        b
    }
}

struct Frame {
    done: Bits,
    known_done: usize,
    next: Vec<(usize, State)>,
}

/// Checks one key's history; `Err` names the first operation no order could place.
pub fn check(events: &[Event]) -> Result<(), String> {
    let mut ops: Vec<Event> = events.to_vec();
    ops.sort_by_key(|e| e.call);
    let known = ops.iter().filter(|e| e.known()).count();
    if known == 0 {
        return Ok(());
    }
    // The operations that may come next after `done`, from state `s`: those called before
    // the first return of an operation not yet placed.
    let candidates = |done: &Bits, s: &State| -> Vec<(usize, State)> {
        let deadline = (0..ops.len())
            .filter(|&i| !done.has(i))
            .filter_map(|i| ops[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        (0..ops.len())
            .take_while(|&i| ops[i].call < deadline)
            .filter(|&i| !done.has(i))
            .filter_map(|i| step(s, &ops[i].op).map(|next| (i, next)))
            .collect()
    };
    let start = Bits::new(ops.len());
    let mut seen: HashSet<(Bits, State)> = HashSet::new();
    let mut stack = vec![Frame {
        next: candidates(&start, &None),
        done: start,
        known_done: 0,
    }];
    let mut deepest = (0, Bits::new(ops.len()));
    while let Some(top) = stack.last_mut() {
        let Some((i, state)) = top.next.pop() else {
            stack.pop();
            continue;
        };
        let done = top.done.with(i);
        let known_done = top.known_done + usize::from(ops[i].known());
        if known_done == known {
            return Ok(());
        }
        if known_done > deepest.0 {
            deepest = (known_done, done.clone());
        }
        if !seen.insert((done.clone(), state)) {
            continue;
        }
        let next = candidates(&done, &state);
        stack.push(Frame {
            done,
            known_done,
            next,
        });
    }
    let stuck = (0..ops.len())
        .filter(|&i| !deepest.1.has(i) && ops[i].known())
        .min_by_key(|&i| ops[i].ret)
        .map(|i| format!("{:?}", ops[i]))
        .unwrap_or_default();
    Err(format!(
        "not linearizable: {} of {known} answered operations placed; none can place {stuck}",
        deepest.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(op: Op, call: u64, ret: u64) -> Event {
        Event {
            op,
            call,
            ret: Some(ret),
        }
    }
    fn put(value: u64, rev: u64) -> Op {
        Op::Put {
            value,
            rev: Some(rev),
        }
    }
    fn get(read: Option<(u64, u64)>) -> Op {
        Op::Get { read }
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let h = [
            ev(get(None), 0, 1),
            ev(put(1, 5), 2, 3),
            ev(get(Some((1, 5))), 4, 5),
            ev(
                Op::Update {
                    value: 2,
                    expected: 5,
                    outcome: Some(Ok(7)),
                },
                6,
                7,
            ),
            ev(
                Op::Update {
                    value: 3,
                    expected: 5,
                    outcome: Some(Err(())),
                },
                8,
                9,
            ),
            ev(
                Op::Create {
                    value: 4,
                    outcome: Some(Err(())),
                },
                10,
                11,
            ),
            ev(get(Some((2, 7))), 12, 13),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn a_stale_read_is_caught() {
        let h = [
            ev(put(1, 5), 0, 1),
            ev(put(2, 6), 2, 3),
            ev(get(Some((1, 5))), 4, 5),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn overlapping_operations_may_take_either_order() {
        // The read overlaps the second put: it may see either value.
        for seen in [(1, 5), (2, 6)] {
            let h = [
                ev(put(1, 5), 0, 1),
                ev(put(2, 6), 2, 10),
                ev(get(Some(seen)), 3, 9),
            ];
            assert_eq!(check(&h), Ok(()), "{seen:?}");
        }
        // Two reads that disagree on the order of two writes cannot both be right.
        let h = [
            ev(put(1, 5), 0, 20),
            ev(put(2, 6), 0, 20),
            ev(get(Some((2, 6))), 1, 2),
            ev(get(Some((1, 5))), 3, 4),
        ];
        assert!(check(&h).is_err(), "revisions only grow");
    }

    #[test]
    fn unknown_outcomes_may_or_may_not_have_happened() {
        let lost = |value| Event {
            op: Op::Put { value, rev: None },
            call: 2,
            ret: None,
        };
        // Seen later: it happened (its revision learnt from the read).
        let h = [ev(put(1, 5), 0, 1), lost(2), ev(get(Some((2, 9))), 5, 6)];
        assert_eq!(check(&h), Ok(()));
        // Never seen: it did not.
        let h = [ev(put(1, 5), 0, 1), lost(2), ev(get(Some((1, 5))), 5, 6)];
        assert_eq!(check(&h), Ok(()));
        // A value nobody wrote is never linearizable.
        let h = [ev(put(1, 5), 0, 1), lost(2), ev(get(Some((3, 9))), 5, 6)];
        assert!(check(&h).is_err());
    }

    #[test]
    fn compare_and_set_must_see_the_revision() {
        let h = [
            ev(put(1, 5), 0, 1),
            ev(put(2, 6), 2, 3),
            ev(
                Op::Update {
                    value: 3,
                    expected: 5,
                    outcome: Some(Ok(7)),
                },
                4,
                5,
            ),
        ];
        assert!(
            check(&h).is_err(),
            "updated from a revision overwritten before"
        );
        let h = [
            ev(put(1, 5), 0, 1),
            ev(
                Op::Update {
                    value: 3,
                    expected: 5,
                    outcome: Some(Err(())),
                },
                2,
                3,
            ),
        ];
        assert!(check(&h).is_err(), "refused although the revision matched");
        // Expecting revision 0 is expecting no value.
        let h = [
            ev(
                Op::Update {
                    value: 1,
                    expected: 0,
                    outcome: Some(Ok(3)),
                },
                0,
                1,
            ),
            ev(
                Op::Update {
                    value: 2,
                    expected: 0,
                    outcome: Some(Err(())),
                },
                2,
                3,
            ),
        ];
        assert_eq!(check(&h), Ok(()));
        let h = [ev(
            Op::Update {
                value: 2,
                expected: 0,
                outcome: Some(Err(())),
            },
            0,
            1,
        )];
        assert!(check(&h).is_err(), "refused with no value there");
    }
}
