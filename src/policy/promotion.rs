//! Which replica may become master, and what priority each launcher gives
//! its own server: pure rules, unit-tested without servers.
//!
//! A replica in its first full sync holds nothing, or part of the data. If it
//! is promoted, by Sentinel after the master died, by a hand-over that could
//! not wait, or by a takeover, every other replica then syncs from it and the
//! data is gone everywhere. Patroni refuses to promote a replica that lags
//! more than `maximum_lag_on_failover`; we refuse one that has never
//! finished a sync since its server started.
//!
//! The mechanism is Redis' own `replica-priority`, which Sentinel reads:
//! 0 is never promoted, and among the others the lowest wins. Each launcher
//! sets its own server's priority, from its own sync state and the
//! switchover intent ([`desired_priority`]); nobody sets another server's.
//! The other rules here read that same mark, so Sentinel, the switchover
//! and the takeover agree.

use crate::model::{Endpoint, Intent};
use crate::reply::ServerState;

/// Why a replica can't be promoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotPromotable {
    /// `replica-priority 0`: its first full sync has not finished, it is
    /// held back by a switchover, or the operator made it never promotable.
    PriorityZero,
    /// Its link is down or a sync is in progress.
    NotOnline,
    /// The Sentinels see it down, disconnected, or with its link down.
    DownForSentinel,
    /// The Sentinels do not know it yet, so they could not pick it.
    UnknownToSentinel,
}

impl NotPromotable {
    /// The reason in words, for logs and status.
    pub fn as_str(self) -> &'static str {
        match self {
            NotPromotable::PriorityZero => "replica-priority 0 (first full sync not finished, or held back)",
            NotPromotable::NotOnline => "its link is down or a sync is in progress",
            NotPromotable::DownForSentinel => "the Sentinels see it down or its link down",
            NotPromotable::UnknownToSentinel => "the Sentinels do not know it as promotable yet",
        }
    }
}

/// Why replica `s` could not be promoted now, from its own `INFO`.
pub fn not_promotable(s: &ServerState) -> Option<NotPromotable> {
    if s.priority == 0 {
        Some(NotPromotable::PriorityZero)
    } else if !s.link_up || s.sync_in_progress {
        Some(NotPromotable::NotOnline)
    } else {
        None
    }
}

/// The priority a launcher gives its own replica now:
/// - 0 until the server has held the data once (`synced`);
/// - 1, Sentinel's first choice, when a live switchover intent names it;
/// - 0 when a live intent names another replica exclusively (`--to`);
/// - otherwise the configured one (0 stays 0: the operator's "never").
pub fn desired_priority(synced: bool, configured: u32, intent: Option<&Intent>, me: &Endpoint, now_ms: u64) -> u32 {
    let live = intent.filter(|i| i.live(now_ms));
    if !synced || configured == 0 {
        0
    } else if live.is_some_and(|i| i.to.as_ref() == Some(me)) {
        1
    } else if live.is_some_and(|i| i.exclusive) {
        0
    } else {
        configured
    }
}

/// The replica a takeover promotes: the most up-to-date one among those
/// that hold the data (priority above 0), never `me`. `None` when no live
/// replica may be promoted.
pub fn takeover_candidate<'a>(replicas: &[&'a ServerState], me: &Endpoint) -> Option<&'a ServerState> {
    replicas
        .iter()
        .copied()
        .filter(|r| r.addr != *me && r.priority > 0)
        .max_by(|a, b| a.offset.cmp(&b.offset).then(b.addr.cmp(&a.addr)))
}

/// The replica a hand-over should give the role to when several may take
/// it: the one that started last (`uptimes`: address and seconds up). In a
/// rolling restart the others are old tasks the orchestrator is about to
/// stop, and handing over to one of them means a second failover a moment
/// later. `None` when there is no choice to make.
pub fn preferred_successor(uptimes: &[(Endpoint, u64)]) -> Option<&Endpoint> {
    if uptimes.len() < 2 {
        return None;
    }
    uptimes
        .iter()
        .min_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)))
        .map(|(e, _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::*;

    #[test]
    fn the_youngest_replica_is_preferred() {
        assert_eq!(preferred_successor(&[(ep(2), 5)]), None);
        assert_eq!(preferred_successor(&[(ep(2), 500), (ep(3), 7)]), Some(&ep(3)));
        assert_eq!(preferred_successor(&[(ep(3), 7), (ep(2), 7)]), Some(&ep(2)));
    }

    fn intent(to: u16, exclusive: bool) -> Intent {
        Intent {
            id: "x".into(),
            from: ep(1),
            to: Some(ep(to)),
            exclusive,
            deadline_ms: 1000,
            by: "test".into(),
            result: None,
        }
    }

    /// (synced, configured, intent, now) → the priority of replica 2.
    #[test]
    fn each_launcher_sets_its_own_priority() {
        let me = ep(2);
        let cases: &[(bool, u32, Option<Intent>, u64, u32)] = &[
            (false, 100, None, 0, 0),
            (true, 100, None, 0, 100),
            (true, 0, None, 0, 0),
            (true, 100, Some(intent(2, false)), 0, 1),
            (true, 100, Some(intent(2, true)), 0, 1),
            (true, 0, Some(intent(2, true)), 0, 0),
            (false, 100, Some(intent(2, true)), 0, 0),
            (true, 100, Some(intent(3, true)), 0, 0),
            (true, 100, Some(intent(3, false)), 0, 100),
            // Expired, or finished: back to the configured priority.
            (true, 100, Some(intent(3, true)), 1000, 100),
            (
                true,
                100,
                Some(Intent {
                    result: Some("done".into()),
                    ..intent(3, true)
                }),
                0,
                100,
            ),
        ];
        for (synced, configured, i, now, want) in cases {
            assert_eq!(
                desired_priority(*synced, *configured, i.as_ref(), &me, *now),
                *want,
                "synced {synced}, configured {configured}, {i:?} at {now}"
            );
        }
    }

    #[test]
    fn takeover_skips_unsynced_replicas() {
        let me = ep(9);
        let with = |n: u16, offset: i64, priority: u32| ServerState {
            offset,
            priority,
            ..replica(n, 1)
        };
        // The unsynced replica has the highest offset it ever could (it
        // counts the stream it is receiving) but holds no data yet.
        let (a, b) = (with(1, 500, 100), with(2, 900, 0));
        assert_eq!(takeover_candidate(&[&a, &b], &me).map(|r| &r.addr), Some(&ep(1)));
        assert_eq!(takeover_candidate(&[&b], &me), None);
        assert_eq!(takeover_candidate(&[], &me), None);
        // Never this task itself.
        let mine = with(9, 900, 100);
        assert_eq!(takeover_candidate(&[&mine], &me), None);
        // Ties on offset go to the lowest address, so every launcher agrees.
        let (c, d, e) = (with(3, 700, 100), with(1, 700, 100), with(2, 100, 100));
        assert_eq!(takeover_candidate(&[&c, &d, &e], &me).map(|r| &r.addr), Some(&ep(1)));
    }

    #[test]
    fn the_promotability_rule() {
        assert_eq!(not_promotable(&replica(2, 1)), None);
        let held = ServerState {
            priority: 0,
            ..replica(2, 1)
        };
        assert_eq!(not_promotable(&held), Some(NotPromotable::PriorityZero));
        let syncing = ServerState {
            link_up: false,
            sync_in_progress: true,
            ..replica(2, 1)
        };
        assert_eq!(not_promotable(&syncing), Some(NotPromotable::NotOnline));
    }
}
