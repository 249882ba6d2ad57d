//! The watcher's reconciliation: does the record name the master the
//! Sentinels confirm?
//!
//! Pub/sub loses messages, so the watcher compares on every (re)connect and
//! on a timer. Writes are compare-and-set on the version it read, and only
//! when the record differs: N watchers make one version bump per failover.

use crate::model::{Endpoint, Record, RecordView};
use crate::policy::bootstrap::sentinels_choice;
use crate::snapshot::Snapshot;

/// The write that makes the record name the confirmed master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordWrite {
    /// The master to record.
    pub master: Endpoint,
    /// The version to compare-and-set against; `None` creates the node.
    pub expected: Option<i32>,
}

/// The master the Sentinels confirm (newest epoch, then votes, then the
/// record, then the lowest address; only a live master counts).
pub fn confirmed_master(snap: &Snapshot) -> Option<Endpoint> {
    sentinels_choice(&snap.sentinel_views(), &RecordView::of(&snap.record), None)
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
    })
}

/// What reconciliation writes, if anything. With no confirmed master the
/// record is left alone: the watcher never writes what it cannot confirm.
pub fn reconcile(snap: &Snapshot) -> Option<RecordWrite> {
    record_write(&snap.record, &confirmed_master(snap)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::*;

    #[test]
    fn a_matching_record_is_left_alone() {
        assert_eq!(reconcile(&healthy(0)), None);
    }

    #[test]
    fn a_record_behind_a_failover_is_corrected_with_cas() {
        let mut s = healthy(0);
        s.servers = vec![replica(1, 2), master(2), replica(3, 2)];
        s.answers = vec![says(21, 2, 2), says(22, 2, 2), says(23, 2, 2)];
        assert_eq!(
            reconcile(&s),
            Some(RecordWrite {
                master: ep(2),
                expected: Some(3)
            })
        );
    }

    #[test]
    fn a_sentinel_that_missed_the_failover_is_outranked_by_epoch() {
        // Two Sentinels still name the old master 1 (alive again, before
        // its demotion); one names 2 at the newer epoch: 2 wins.
        let mut s = healthy(0);
        s.servers = vec![master(1), master(2), replica(3, 2)];
        s.answers = vec![says(21, 1, 1), says(22, 1, 1), says(23, 2, 2)];
        assert_eq!(reconcile(&s).map(|w| w.master), Some(ep(2)));
    }

    #[test]
    fn a_garbage_record_is_replaced_by_version() {
        let mut s = healthy(0);
        s.record = Record::Unusable { version: 7 };
        assert_eq!(
            reconcile(&s),
            Some(RecordWrite {
                master: ep(1),
                expected: Some(7)
            })
        );
    }

    #[test]
    fn a_missing_record_is_created() {
        let mut s = healthy(0);
        s.record = Record::Missing;
        assert_eq!(reconcile(&s).map(|w| w.expected), Some(None));
    }

    #[test]
    fn nothing_is_written_without_a_confirmed_master() {
        let mut s = healthy(0);
        s.servers = vec![replica(2, 1)];
        assert_eq!(reconcile(&s), None, "the Sentinels' master does not answer as master");
        s.answers.clear();
        assert_eq!(reconcile(&s), None, "no Sentinel answered");
    }

    #[test]
    fn unregistered_sentinels_do_not_vote() {
        // A ghost's stale answer (Sentinel 29 is not registered) is ignored.
        let mut s = healthy(0);
        s.servers.push(master(4));
        s.answers.push(says(29, 4, 9));
        assert_eq!(reconcile(&s), None);
    }
}
