//! The role guard of a supervised server: does its role still fit the group?
//!
//! - **A stranded replica**: the server it follows no longer answers as a
//!   master, and Sentinel did not reconfigure it, because the failover
//!   happened before Sentinel had learned of it (Sentinel discovers
//!   replicas from the master's INFO, every 10 s). If that server died, the
//!   replica would follow a dead address for ever. If it was demoted, the
//!   replica stays linked to it: a chain Sentinel never sees (the new
//!   master's INFO lists only its own replicas), so Sentinel could never
//!   promote it, and it is lost when the middle server goes. After
//!   `settle` (Sentinel gets the first chance) it is re-pointed at the
//!   master the bootstrap decision finds. Linked or not: the link state
//!   says nothing about whether the other end is still a master.
//! - **A stale master**: a master that hung (or was cut off) long enough to
//!   be failed over, and came back still believing it is master. Clients
//!   with a stale view keep writing to it, and those writes are lost when
//!   it is demoted. Sentinel demotes it once it notices; the guard demotes
//!   it as soon as a majority of the registered Sentinels name another live
//!   master (and none names this one) on two looks in a row.
//!
//! The guard never promotes anything, and it only ever does what Sentinel
//! itself would do.

use std::time::Duration;

use tokio::time::Instant;

use crate::model::{Endpoint, Role};
use crate::policy::bootstrap::{Decision, Observation, decide};
use crate::snapshot::Snapshot;

/// What the guard remembers between two looks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardMemory {
    /// Since when the local replica's master has not answered as a master.
    pub stranded_since: Option<Instant>,
    /// The previous look already found this master outvoted.
    pub outvoted_once: bool,
    /// When the guard last asked for this master's demotion: a look begun
    /// before that still sees a master, and is no reason to demote (and
    /// drop its clients) again.
    pub demoted_at: Option<Instant>,
}

/// What the guard asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardAction {
    /// Point the local replica at `to` (`REPLICAOF`), away from `from`.
    Repoint {
        /// The server it follows now, no longer a master.
        from: Endpoint,
        /// The live master.
        to: Endpoint,
    },
    /// Turn the local master into a replica of `to`.
    Demote { to: Endpoint },
}

/// One look of the guard of task `me` at `snap` (whose `local` is its
/// server). `mem` is updated; the caller clears `stranded_since` once a
/// re-point succeeded.
pub fn guard(
    snap: &Snapshot,
    me: &Endpoint,
    mem: &mut GuardMemory,
    now: Instant,
    settle: Duration,
) -> Option<GuardAction> {
    match snap.local.as_ref().map(|l| &l.role) {
        Some(Role::Replica { master, .. }) => {
            mem.outvoted_once = false;
            if snap.is_live_master(master) {
                mem.stranded_since = None;
                return None;
            }
            let since = *mem.stranded_since.get_or_insert(now);
            if now.duration_since(since) < settle {
                return None;
            }
            match decide(&Observation::from_snapshot(snap, me, false)) {
                Decision::Replicate { master: live, .. } if live != *master => Some(GuardAction::Repoint {
                    from: master.clone(),
                    to: live,
                }),
                _ => None,
            }
        }
        Some(Role::Master) => {
            mem.stranded_since = None;
            if mem.demoted_at.is_some_and(|t| snap.taken <= t) {
                return None;
            }
            // A failover under way may be promoting this very server (the
            // Sentinels name the old master until it is confirmed): the
            // guard waits until it ended.
            if snap.answers.iter().any(|a| a.failover) {
                mem.outvoted_once = false;
                return None;
            }
            match majority_master(snap, me) {
                Some(other) if mem.outvoted_once => {
                    mem.outvoted_once = false;
                    mem.demoted_at = Some(now);
                    Some(GuardAction::Demote { to: other })
                }
                other => {
                    mem.outvoted_once = other.is_some();
                    None
                }
            }
        }
        _ => {
            *mem = GuardMemory::default();
            None
        }
    }
}

/// Another live master that a majority of the registered Sentinels name,
/// provided none of them names `me`.
pub fn majority_master(snap: &Snapshot, me: &Endpoint) -> Option<Endpoint> {
    let views = snap.sentinel_views();
    if views.iter().any(|c| c.addr == *me) {
        return None;
    }
    let registered = snap.sentinels.len();
    views
        .into_iter()
        .find(|c| c.live_master && c.addr != *me && 2 * c.votes > registered)
        .map(|c| c.addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Record;
    use crate::policy::fixtures::*;

    const SETTLE: Duration = Duration::from_secs(5);

    /// Runs the guard of server `me` over `looks` snapshots, one second
    /// apart, and returns what each look asked for.
    fn run(me: u16, looks: &[Snapshot]) -> Vec<Option<GuardAction>> {
        let t0 = Instant::now();
        let mut mem = GuardMemory::default();
        looks
            .iter()
            .enumerate()
            .map(|(i, s)| guard(s, &ep(me), &mut mem, t0 + Duration::from_secs(i as u64), SETTLE))
            .collect()
    }

    fn repeat(s: Snapshot, n: usize) -> Vec<Snapshot> {
        vec![s; n]
    }

    #[test]
    fn a_healthy_group_is_left_alone() {
        assert!(run(2, &repeat(healthy(2), 8)).iter().all(Option::is_none));
        assert!(run(1, &repeat(healthy(1), 8)).iter().all(Option::is_none));
    }

    /// Master 1 died; the Sentinels promoted 3, but replica 2 joined too
    /// late for them to know it, so it still follows 1.
    fn stranded() -> Snapshot {
        let mut s = healthy(2);
        s.servers = vec![replica(2, 1), master(3)];
        s.local = Some(replica(2, 1));
        s.nodes = vec![ep(2), ep(3)];
        s.answers = vec![says(21, 3, 2), says(22, 3, 2), says(23, 3, 2)];
        s.record = Record::Valid {
            master: ep(3),
            version: 4,
        };
        s
    }

    #[test]
    fn a_stranded_replica_is_re_pointed_after_the_settle_time() {
        let acts = run(2, &repeat(stranded(), 7));
        assert!(
            acts[..5].iter().all(Option::is_none),
            "Sentinel gets the first 5 s: {acts:?}"
        );
        assert_eq!(acts[5], Some(GuardAction::Repoint { from: ep(1), to: ep(3) }));
    }

    #[test]
    fn a_replica_chained_behind_a_demoted_master_is_re_pointed() {
        // 1 was demoted and follows 3; replica 2 is still linked to 1: a
        // chain. The link is up, and that must not fool the guard.
        let mut s = stranded();
        s.servers = vec![replica(1, 3), replica(2, 1), master(3)];
        s.nodes = vec![ep(1), ep(2), ep(3)];
        let acts = run(2, &repeat(s, 6));
        assert_eq!(acts[5], Some(GuardAction::Repoint { from: ep(1), to: ep(3) }));
    }

    #[test]
    fn a_master_that_comes_back_resets_the_stranded_clock() {
        let mut looks = repeat(stranded(), 4);
        looks.push(healthy(2));
        looks.extend(repeat(stranded(), 5));
        let acts = run(2, &looks);
        assert!(acts.iter().all(Option::is_none), "{acts:?}");
    }

    #[test]
    fn a_stranded_replica_with_no_live_master_anywhere_waits() {
        let mut s = stranded();
        s.servers = vec![replica(2, 1)];
        s.nodes = vec![ep(2)];
        assert!(run(2, &repeat(s, 10)).iter().all(Option::is_none));
    }

    #[test]
    fn a_stranded_replica_never_follows_itself() {
        // The record and a stale Sentinel name this task.
        let mut s = stranded();
        s.servers = vec![replica(2, 1)];
        s.answers = vec![says(21, 2, 5)];
        s.record = Record::Valid {
            master: ep(2),
            version: 4,
        };
        assert!(run(2, &repeat(s, 10)).iter().all(Option::is_none));
    }

    /// Master 1 hung and was failed over to 3; it woke up still a master.
    fn outvoted(votes_for_3: usize) -> Snapshot {
        let mut s = healthy(1);
        s.servers = vec![master(1), replica(2, 3), master(3)];
        s.answers = (0..3)
            .map(|i| {
                if i < votes_for_3 {
                    says(21 + i as u16, 3, 2)
                } else {
                    says(21 + i as u16, 4, 1)
                }
            })
            .collect();
        s
    }

    #[test]
    fn a_stale_master_outvoted_by_a_majority_is_demoted_on_the_second_look() {
        let acts = run(1, &repeat(outvoted(2), 3));
        assert_eq!(acts[0], None, "one look is not enough");
        assert_eq!(acts[1], Some(GuardAction::Demote { to: ep(3) }));
    }

    #[test]
    fn looks_begun_before_a_demotion_do_not_demote_again() {
        let t0 = Instant::now();
        let mut mem = GuardMemory::default();
        let stale = |taken: Instant| Snapshot { taken, ..outvoted(2) };
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(guard(&stale(at(0)), &ep(1), &mut mem, at(0), SETTLE), None);
        let demote = Some(GuardAction::Demote { to: ep(3) });
        assert_eq!(guard(&stale(at(1)), &ep(1), &mut mem, at(1), SETTLE), demote);
        // Two more looks that began before the demotion, still a master.
        assert_eq!(guard(&stale(at(0)), &ep(1), &mut mem, at(2), SETTLE), None);
        assert_eq!(guard(&stale(at(1)), &ep(1), &mut mem, at(2), SETTLE), None);
        // The demotion did not take: looks after it decide again.
        assert_eq!(guard(&stale(at(2)), &ep(1), &mut mem, at(2), SETTLE), None);
        assert_eq!(guard(&stale(at(3)), &ep(1), &mut mem, at(3), SETTLE), demote);
    }

    #[test]
    fn a_master_is_not_demoted_while_a_failover_runs() {
        // 3 was just promoted; the Sentinels still name 1 until the
        // promotion is confirmed, and the leader flags the failover.
        let mut s = outvoted(0);
        s.answers = vec![says(21, 1, 1), says(22, 1, 1), says(23, 1, 1)];
        s.answers[0].failover = true;
        s.servers = vec![master(1), master(3)];
        s.local = Some(master(3));
        assert!(run(3, &repeat(s.clone(), 5)).iter().all(Option::is_none));
        s.answers[0].failover = false;
        let acts = run(3, &repeat(s, 3));
        assert_eq!(
            acts[1],
            Some(GuardAction::Demote { to: ep(1) }),
            "without the flag it would be"
        );
    }

    #[test]
    fn a_minority_does_not_demote() {
        assert!(run(1, &repeat(outvoted(1), 5)).iter().all(Option::is_none));
    }

    #[test]
    fn a_master_any_sentinel_still_names_is_not_demoted() {
        let mut s = outvoted(2);
        s.answers[2] = says(23, 1, 1);
        assert!(run(1, &repeat(s, 5)).iter().all(Option::is_none));
    }

    #[test]
    fn the_named_master_must_be_live() {
        let mut s = outvoted(3);
        s.servers = vec![master(1), replica(3, 1)];
        assert!(run(1, &repeat(s, 5)).iter().all(Option::is_none));
    }

    #[test]
    fn a_ghost_raises_the_majority() {
        // Two of four registered Sentinels is not a majority.
        let mut s = outvoted(2);
        s.sentinels.push(sentinel(24));
        assert!(run(1, &repeat(s, 5)).iter().all(Option::is_none));
    }

    #[test]
    fn outvoted_looks_must_be_in_a_row() {
        let looks = vec![outvoted(2), healthy(1), outvoted(2), healthy(1), outvoted(2)];
        assert!(run(1, &looks).iter().all(Option::is_none));
    }

    #[test]
    fn no_local_server_clears_the_memory() {
        let mut mem = GuardMemory {
            stranded_since: Some(Instant::now()),
            outvoted_once: true,
            demoted_at: Some(Instant::now()),
        };
        assert_eq!(guard(&world(), &ep(1), &mut mem, Instant::now(), SETTLE), None);
        assert_eq!(mem, GuardMemory::default());
    }
}
