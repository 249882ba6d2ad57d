//! The watcher's reconciliation: does the record name the master the
//! Sentinels confirm?
//!
//! Pub/sub loses messages, so the watcher compares on every (re)connect and
//! on a timer. Writes are compare-and-set on the version it read, and only
//! when the record differs: N watchers make one version bump per failover.

use crate::model::{Cause, Change, Endpoint, Intent, Record};
use crate::policy::bootstrap::sentinels_choice;
use crate::snapshot::Snapshot;

/// The write that makes the record name the confirmed master, and the
/// change it is, for `<root>/history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordWrite {
    /// The master to record.
    pub master: Endpoint,
    /// The version to compare-and-set against; `None` creates the node.
    pub expected: Option<i32>,
    /// The master the record named.
    pub old: Option<Endpoint>,
    /// Why it changes.
    pub cause: Cause,
    /// The Sentinels' epoch of the new master, when they name it.
    pub epoch: Option<u64>,
}

impl RecordWrite {
    /// The history entry of this write, made at `at_ms`.
    pub fn change(&self, at_ms: u64) -> Change {
        Change {
            at_ms,
            old: self.old.clone(),
            new: self.master.clone(),
            epoch: self.epoch,
            cause: self.cause,
        }
    }
}

/// How long after its deadline an intent still explains a change of its
/// master: the record follows the Sentinels within seconds.
const INTENT_EXPLAINS_MS: u64 = 60_000;

/// Why the master moved from `old`: the cause of an intent addressed to
/// `old` (a switchover, a hand-over, a crash failover) that is live or
/// ended at most a minute ago, else `otherwise`.
pub fn cause(intent: Option<&Intent>, old: Option<&Endpoint>, now_ms: u64, otherwise: Cause) -> Cause {
    match intent {
        Some(i) if Some(&i.from) == old && now_ms <= i.deadline_ms + INTENT_EXPLAINS_MS => i.cause,
        _ => otherwise,
    }
}

/// The master the Sentinels confirm (newest epoch, then votes, then the
/// record, then the lowest address; only a live master counts).
pub fn confirmed_master(snap: &Snapshot) -> Option<Endpoint> {
    sentinels_choice(&snap.sentinel_views(), snap.record.master(), None)
}

/// The write that makes `record` name `master`, or `None` when it does.
pub fn record_write(record: &Record, master: &Endpoint) -> Option<RecordWrite> {
    let expected = match record {
        Record::Valid { master: m, .. } if m == master => return None,
        Record::Missing => None,
        Record::Valid { version, .. } | Record::Unusable { version } => Some(*version),
    };
    Some(RecordWrite {
        master: master.clone(),
        expected,
        old: record.master().cloned(),
        cause: Cause::Failover,
        epoch: None,
    })
}

/// What reconciliation writes, if anything. With no confirmed master the
/// record is left alone: the watcher never writes what it cannot confirm.
/// The cause is the intent's that explains it, else a failover; the epoch
/// is the newest of the Sentinels that name the new master.
pub fn reconcile(snap: &Snapshot, now_ms: u64) -> Option<RecordWrite> {
    let w = record_write(&snap.record, &confirmed_master(snap)?)?;
    Some(RecordWrite {
        cause: cause(snap.intent.as_ref(), w.old.as_ref(), now_ms, Cause::Failover),
        epoch: snap.epoch_of(&w.master),
        ..w
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::*;

    #[test]
    fn a_matching_record_is_left_alone() {
        assert_eq!(reconcile(&healthy(0), 0), None);
    }

    #[test]
    fn a_record_behind_a_failover_is_corrected_with_cas() {
        let mut s = healthy(0);
        s.servers = vec![replica(1, 2), master(2), replica(3, 2)];
        s.answers = vec![says(21, 2, 2), says(22, 2, 2), says(23, 2, 2)];
        assert_eq!(
            reconcile(&s, 0),
            Some(RecordWrite {
                master: ep(2),
                expected: Some(3),
                old: Some(ep(1)),
                cause: Cause::Failover,
                epoch: Some(2),
            })
        );
        // An intent addressed to the old master explains the change, until
        // a minute after its deadline.
        let i = Intent {
            id: "x".into(),
            from: ep(1),
            to: None,
            exclusive: false,
            deadline_ms: 1000,
            by: "hand-over of 1".into(),
            result: Some("done".into()),
            cause: Cause::HandOver,
        };
        s.intent = Some(i.clone());
        assert_eq!(reconcile(&s, 61_000).map(|w| w.cause), Some(Cause::HandOver));
        assert_eq!(reconcile(&s, 61_001).map(|w| w.cause), Some(Cause::Failover));
        s.intent = Some(Intent { from: ep(3), ..i });
        assert_eq!(reconcile(&s, 0).map(|w| w.cause), Some(Cause::Failover));
    }

    #[test]
    fn a_sentinel_that_missed_the_failover_is_outranked_by_epoch() {
        // Two Sentinels still name the old master 1 (alive again, before
        // its demotion); one names 2 at the newer epoch: 2 wins.
        let mut s = healthy(0);
        s.servers = vec![master(1), master(2), replica(3, 2)];
        s.answers = vec![says(21, 1, 1), says(22, 1, 1), says(23, 2, 2)];
        assert_eq!(reconcile(&s, 0).map(|w| w.master), Some(ep(2)));
    }

    #[test]
    fn a_garbage_record_is_replaced_by_version() {
        let mut s = healthy(0);
        s.record = Record::Unusable { version: 7 };
        assert_eq!(
            reconcile(&s, 0),
            Some(RecordWrite {
                master: ep(1),
                expected: Some(7),
                old: None,
                cause: Cause::Failover,
                epoch: Some(1),
            })
        );
    }

    #[test]
    fn a_missing_record_is_created() {
        let mut s = healthy(0);
        s.record = Record::Missing;
        assert_eq!(reconcile(&s, 0).map(|w| w.expected), Some(None));
    }

    #[test]
    fn nothing_is_written_without_a_confirmed_master() {
        let mut s = healthy(0);
        s.servers = vec![replica(2, 1)];
        assert_eq!(
            reconcile(&s, 0),
            None,
            "the Sentinels' master does not answer as master"
        );
        s.answers.clear();
        assert_eq!(reconcile(&s, 0), None, "no Sentinel answered");
    }

    #[test]
    fn unregistered_sentinels_do_not_vote() {
        // A ghost's stale answer (Sentinel 29 is not registered) is ignored.
        let mut s = healthy(0);
        s.servers.push(master(4));
        s.answers.push(says(29, 4, 9));
        assert_eq!(reconcile(&s, 0), None);
    }
}
