//! Reading a strict chain as one record per statement: each `pending`
//! statement record (written before the statement ran) gets the rows,
//! duration and outcome its later `outcomes` record gives it.
//!
//! The outcome of a statement lands in the group commit after its results,
//! so it is normally a few records behind its intent. Records are held back
//! (in chain order) only while the oldest of them is still pending, and at
//! most [`WINDOW`] of them: an intent whose outcome never comes (the proxy
//! crashed while the statement ran) or comes much later (a long statement)
//! is then given out still `pending`, and an outcome that finds no held
//! intent is given out as the `outcomes` record it is.

use std::collections::{HashMap, VecDeque};

use super::record::{AuditRecord, RecordKind, StatementOutcome, OUTCOME_PENDING};

/// Most records held back waiting for an outcome.
pub const WINDOW: usize = 100_000;

/// Folds outcomes into their statements; items that are not records (read
/// errors) keep their place in the order.
pub struct Merger<E> {
    queue: VecDeque<Result<AuditRecord, E>>,
    /// Seq of each held pending record → its absolute position.
    pending: HashMap<u64, u64>,
    /// Absolute position of `queue[0]`.
    base: u64,
}

impl<E> Default for Merger<E> {
    fn default() -> Self {
        Merger {
            queue: VecDeque::new(),
            pending: HashMap::new(),
            base: 0,
        }
    }
}

fn is_pending(r: &AuditRecord) -> bool {
    r.kind == RecordKind::Statement && r.outcome == OUTCOME_PENDING
}

impl<E> Merger<E> {
    /// Takes the next item in chain order; appends to `out` whatever can now
    /// be given out.
    pub fn push(
        &mut self,
        item: Result<AuditRecord, E>,
        out: &mut VecDeque<Result<AuditRecord, E>>,
    ) {
        match item {
            Ok(r) if r.kind == RecordKind::Outcomes => {
                let list = r.outcomes.clone().flatten().unwrap_or_default();
                let unmatched: Vec<StatementOutcome> =
                    list.into_iter().filter(|o| !self.complete(o)).collect();
                if !unmatched.is_empty() {
                    let mut rest = r;
                    rest.outcomes = Some(Some(unmatched));
                    self.queue.push_back(Ok(rest));
                }
            }
            Ok(r) => {
                if is_pending(&r) {
                    let at = self.base + self.queue.len() as u64;
                    self.pending.insert(r.seq, at);
                }
                self.queue.push_back(Ok(r));
            }
            Err(e) => self.queue.push_back(Err(e)),
        }
        self.drain(out, false);
    }

    /// Everything still held, pending or not (end of input).
    pub fn finish(&mut self, out: &mut VecDeque<Result<AuditRecord, E>>) {
        self.drain(out, true);
    }

    /// Gives the held intent `o.of` its outcome; false when none is held.
    fn complete(&mut self, o: &StatementOutcome) -> bool {
        let Some(at) = self.pending.remove(&o.of) else {
            return false;
        };
        let Some(Ok(r)) = self.queue.get_mut((at - self.base) as usize) else {
            return false;
        };
        r.rows = o.rows;
        r.duration_us = o.duration_us;
        r.outcome = o.outcome.clone();
        true
    }

    fn drain(&mut self, out: &mut VecDeque<Result<AuditRecord, E>>, all: bool) {
        while let Some(front) = self.queue.front() {
            let held = match front {
                Ok(r) => self.pending.contains_key(&r.seq) && is_pending(r),
                Err(_) => false,
            };
            if held && !all && self.queue.len() <= WINDOW {
                break;
            }
            if let Some(Ok(r)) = self.queue.front() {
                if held {
                    self.pending.remove(&r.seq);
                }
            }
            if let Some(item) = self.queue.pop_front() {
                out.push_back(item);
            }
            self.base += 1;
        }
    }
}

/// One chain's records, merged (for sources read whole, like a stream).
pub fn merge_all(chain: Vec<AuditRecord>) -> Vec<AuditRecord> {
    let mut m = Merger::<()>::default();
    let mut out = VecDeque::new();
    for r in chain {
        m.push(Ok(r), &mut out);
    }
    m.finish(&mut out);
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::audit::record::{AuditRecordInput, GENESIS_HASH, OUTCOME_OK};

    fn stmt(seq: u64, outcome: &str) -> AuditRecord {
        let mut i = AuditRecordInput::new(RecordKind::Statement, UNIX_EPOCH);
        i.outcome = outcome.into();
        AuditRecord::from_input(i, seq, GENESIS_HASH.into())
    }

    fn outcomes(seq: u64, of: &[(u64, u64)]) -> AuditRecord {
        let mut r = AuditRecord::from_input(
            AuditRecordInput::new(RecordKind::Outcomes, UNIX_EPOCH),
            seq,
            GENESIS_HASH.into(),
        );
        r.outcomes = Some(Some(
            of.iter()
                .map(|&(of, rows)| StatementOutcome {
                    of,
                    rows,
                    duration_us: 10,
                    outcome: OUTCOME_OK.into(),
                })
                .collect(),
        ));
        r
    }

    fn run(input: Vec<AuditRecord>) -> Vec<(u64, String, u64)> {
        let mut m = Merger::<()>::default();
        let mut out = VecDeque::new();
        for r in input {
            m.push(Ok(r), &mut out);
        }
        m.finish(&mut out);
        out.into_iter()
            .map(|r| {
                let r = r.unwrap();
                (r.seq, r.outcome, r.rows)
            })
            .collect()
    }

    #[test]
    fn outcomes_fold_into_their_intents_in_chain_order() {
        let got = run(vec![
            stmt(1, OUTCOME_PENDING),
            stmt(2, "ok"),
            stmt(3, OUTCOME_PENDING),
            outcomes(4, &[(3, 2), (1, 1)]),
            stmt(5, OUTCOME_PENDING),
        ]);
        assert_eq!(
            got,
            vec![
                (1, "ok".into(), 1),
                (2, "ok".into(), 0),
                (3, "ok".into(), 2),
                // Never completed (a crash): given out as it is.
                (5, OUTCOME_PENDING.into(), 0),
            ]
        );
    }

    #[test]
    fn an_outcome_without_a_held_intent_is_kept() {
        let got = run(vec![outcomes(1, &[(99, 1)]), stmt(2, "ok")]);
        assert_eq!(got, vec![(1, "ok".into(), 0), (2, "ok".into(), 0)]);
    }

    #[test]
    fn the_window_bounds_what_is_held() {
        let mut input = vec![stmt(1, OUTCOME_PENDING)];
        input.extend((2..=(WINDOW as u64 + 2)).map(|s| stmt(s, "ok")));
        input.push(outcomes(WINDOW as u64 + 3, &[(1, 5)]));
        let got = run(input);
        assert_eq!(got[0], (1, OUTCOME_PENDING.into(), 0));
        // The late outcome is given out on its own.
        assert_eq!(got.last().unwrap().0, WINDOW as u64 + 3);
        assert_eq!(got.len(), WINDOW + 3);
    }
}
