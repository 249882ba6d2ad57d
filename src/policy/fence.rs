//! Fencing: a master that may be failed over stops acknowledging writes
//! before the failover can complete.
//!
//! A master cut off from its Sentinels keeps acknowledging the writes of
//! clients on its side, and `min-replicas-to-write` does not stop it when a
//! replica is cut off with it. Meanwhile the Sentinels fail it over; every
//! write it took after the promotion is then lost. Patroni's answer is a
//! leader lease; redis-zk reads its lease from the Sentinels themselves.
//!
//! **The lease.** A Sentinel can call the master subjectively down only
//! once a ping to it has waited `down-after-milliseconds` (or, with its
//! link down, once the last good reply is that old). Each answer to
//! `SENTINEL MASTER` says how long its oldest ping has waited, so it
//! carries a lower bound: this Sentinel cannot see the master down before
//! `asked + down-after − pending` (the launcher's clock, from when it
//! asked; the answer can only be fresher). A failover Sentinel starts on
//! its own needs `quorum` Sentinels that see the master down (`o_down`).
//! So while more than `registered − quorum` Sentinels hold a lease, none
//! can start: the group's lease ends when fewer than that many do
//! ([`lease_end`]). A Sentinel whose host refused the connection runs no
//! Sentinel; one started there later needs `down-after` from its start.
//!
//! The fence makes the server refuse writes (`min-replicas-to-write` above
//! any possible count: `-NOREPLICAS`) [`MARGIN`] before the lease ends, or
//! `FENCE_AFTER_MS` after it was last renewed, whichever comes first, and
//! lifts it once the lease is renewed. ZooKeeper has no say: a ZooKeeper
//! outage alone never fences, and a ZooKeeper that still names this master
//! does not stop a fence that the Sentinels' lease calls for. Only with no
//! Sentinel registered at all, when nobody can fail it over, does
//! ZooKeeper's record confirm the master instead. A failover forced by an
//! operator (`SENTINEL FAILOVER`) needs no `o_down`: the freeze of the
//! switchover procedure covers it.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::Endpoint;
use crate::reply::Timing;
use crate::snapshot::Snapshot;

/// How long before the lease ends the fence goes up: the time it takes to
/// decide and to set it, on a loaded machine.
pub const MARGIN: Duration = Duration::from_millis(200);

/// The earliest moment a Sentinel that answered at `asked` with `t` could
/// see the master subjectively down, if no reply reaches it from then on.
pub fn sentinel_lease(asked: Instant, t: &Timing) -> Instant {
    let waited = if t.disconnected {
        t.last_ok_ms
    } else {
        t.ping_pending_ms
    };
    asked + Duration::from_millis(t.down_after_ms.saturating_sub(waited))
}

/// What the fence remembers between looks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FenceMemory {
    /// Each registered Sentinel's lease, from its last answer.
    pub leases: BTreeMap<Endpoint, Instant>,
    /// The Sentinels' `quorum` and `down-after-milliseconds`, last seen.
    pub quorum: usize,
    /// See `quorum`.
    pub down_after: Duration,
    /// When the group's lease was last renewed (or the server first seen
    /// as master); `None` while it is not a master.
    pub renewed_at: Option<Instant>,
    /// The end of the group's lease at the last renewal: a look renews the
    /// lease only when it moves that end forward.
    pub last_end: Option<Instant>,
    /// The group's lease has held at least once since the server became
    /// master (a new master gets `FENCE_AFTER_MS` until it does).
    pub held: bool,
    /// Whether the server is fenced now.
    pub fenced: bool,
}

/// Learns each registered Sentinel's lease from `snap`, seen by master
/// `me`: one that names `me` and does not see it down holds one; one that
/// names another master or sees it down holds none; one whose host refused
/// the connection, or that does not know the master's name, holds
/// `down-after` from now.
pub fn learn(mem: &mut FenceMemory, snap: &Snapshot, me: &Endpoint) {
    for a in snap.registered_answers() {
        mem.quorum = a.timing.quorum.max(1);
        mem.down_after = Duration::from_millis(a.timing.down_after_ms);
        let lease = if a.master == *me && !a.master_down {
            sentinel_lease(snap.taken, &a.timing)
        } else {
            snap.taken
        };
        mem.leases.insert(a.sentinel.clone(), lease);
    }
    // Neither a Sentinel that is not running nor one that does not monitor
    // this master can call it down before `down-after` from now.
    for r in snap.refused.iter().chain(&snap.unknown_name) {
        mem.leases.insert(r.clone(), snap.taken + mem.down_after);
    }
    mem.leases.retain(|s, _| snap.sentinels.contains(s));
}

/// Until when fewer than `quorum` of the `registered` Sentinels can see the
/// master down; `None` when that is already not so. No Sentinel registered:
/// `None` too (the caller asks ZooKeeper instead).
pub fn lease_end(mem: &FenceMemory, registered: usize) -> Option<Instant> {
    if registered == 0 {
        return None;
    }
    let holders = registered.saturating_sub(mem.quorum.max(1)) + 1;
    let mut ends: Vec<Instant> = mem.leases.values().copied().collect();
    ends.sort_unstable_by(|a, b| b.cmp(a));
    ends.get(holders - 1).copied()
}

/// What to do after a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceAction {
    /// Nothing changes.
    Keep,
    /// Make the server refuse writes: unconfirmed since this long.
    Fence(Duration),
    /// Let it take writes again (the lease is renewed, or it is no longer
    /// master and must not keep the setting if it is promoted later).
    Lift,
}

/// When the fence must go up, with the group's lease `lease` as known now.
pub fn deadline(mem: &FenceMemory, lease: Option<Instant>, after: Duration) -> Option<Instant> {
    let capped = mem.renewed_at? + after;
    match lease {
        Some(end) if mem.held => Some(capped.min(end.checked_sub(MARGIN).unwrap_or(end))),
        _ => Some(capped),
    }
}

/// One step of the fence at `now`: `master` is whether the local server
/// answers as master, `lease` the group's lease (or, with no Sentinel
/// registered, ZooKeeper's confirmation as a lease of `after`). `after` is
/// `FENCE_AFTER_MS`; `None` disables fencing.
pub fn fence_step(
    master: bool,
    lease: Option<Instant>,
    now: Instant,
    after: Option<Duration>,
    mem: &mut FenceMemory,
) -> FenceAction {
    let lift = |mem: &mut FenceMemory| {
        if std::mem::take(&mut mem.fenced) {
            FenceAction::Lift
        } else {
            FenceAction::Keep
        }
    };
    if !master {
        mem.renewed_at = None;
        mem.last_end = None;
        mem.held = false;
        return lift(mem);
    }
    let since = *mem.renewed_at.get_or_insert(now);
    if let Some(end) = lease
        && end > now + MARGIN
        && mem.last_end.is_none_or(|l| end > l)
    {
        mem.last_end = Some(end);
        mem.renewed_at = Some(now);
        mem.held = true;
        return lift(mem);
    }
    let Some(after) = after else {
        return FenceAction::Keep;
    };
    let due = deadline(mem, lease, after).is_none_or(|d| now >= d);
    if !mem.fenced && due {
        mem.fenced = true;
        FenceAction::Fence(now.saturating_duration_since(since))
    } else {
        FenceAction::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::*;

    const AFTER: Option<Duration> = Some(Duration::from_millis(3000));

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_sentinels_lease_is_down_after_less_what_its_pending_ping_waited() {
        let t0 = Instant::now();
        let calm = Timing {
            down_after_ms: 1000,
            ..Timing::default()
        };
        assert_eq!(sentinel_lease(t0, &calm), t0 + ms(1000));
        let pending = Timing {
            ping_pending_ms: 300,
            last_ok_ms: 900,
            ..calm
        };
        assert_eq!(sentinel_lease(t0, &pending), t0 + ms(700));
        let link_down = Timing {
            disconnected: true,
            ..pending
        };
        assert_eq!(sentinel_lease(t0, &link_down), t0 + ms(100));
        let past = Timing {
            ping_pending_ms: 5000,
            ..calm
        };
        assert_eq!(sentinel_lease(t0, &past), t0);
    }

    #[test]
    fn the_group_lease_ends_when_a_quorum_could_see_the_master_down() {
        let mut s = healthy(1);
        let mut mem = FenceMemory::default();
        learn(&mut mem, &s, &ep(1));
        assert_eq!(lease_end(&mem, 3), Some(s.taken + ms(1000)));
        // One Sentinel's ping waits 600 ms, another sees the master down:
        // with quorum 2 of 3, two must hold a lease: the second best.
        s.answers[0].timing.ping_pending_ms = 600;
        s.answers[1].master_down = true;
        learn(&mut mem, &s, &ep(1));
        assert_eq!(lease_end(&mem, 3), Some(s.taken + ms(400)));
        // Two name another master: only one holds a lease, too few.
        let mut other = healthy(1);
        other.answers[0] = says(21, 2, 2);
        other.answers[1] = says(22, 2, 2);
        let mut mem = FenceMemory::default();
        learn(&mut mem, &other, &ep(1));
        assert_eq!(lease_end(&mem, 3), Some(other.taken));
        // A Sentinel that did not answer keeps the lease of its last answer.
        let mut later = healthy(1);
        later.taken = s.taken + ms(500);
        later.answers.remove(2);
        let mut mem = FenceMemory::default();
        learn(&mut mem, &s, &ep(1));
        learn(&mut mem, &later, &ep(1));
        assert_eq!(mem.leases[&sentinel(23)], s.taken + ms(1000));
        // A refused one holds down-after from now.
        let mut refused = later.clone();
        refused.answers.truncate(1);
        refused.refused = vec![sentinel(22), sentinel(23)];
        let mut mem = FenceMemory::default();
        learn(&mut mem, &refused, &ep(1));
        assert_eq!(lease_end(&mem, 3), Some(refused.taken + ms(1000)));
        // So does one that does not monitor this master's name.
        let mut unknown = later.clone();
        unknown.answers.truncate(1);
        unknown.unknown_name = vec![sentinel(22), sentinel(23)];
        let mut mem = FenceMemory::default();
        learn(&mut mem, &unknown, &ep(1));
        assert_eq!(lease_end(&mem, 3), Some(unknown.taken + ms(1000)));
        assert_eq!(lease_end(&mem, 0), None);
    }

    #[test]
    fn fences_before_the_lease_ends_and_lifts_when_it_is_renewed() {
        let t0 = Instant::now();
        let at = |n: u64| t0 + ms(n);
        let mut m = FenceMemory::default();
        assert_eq!(
            fence_step(true, Some(at(1000)), at(0), AFTER, &mut m),
            FenceAction::Keep
        );
        // No renewal: the fence goes up MARGIN before the lease ends.
        assert_eq!(
            fence_step(true, Some(at(1000)), at(700), AFTER, &mut m),
            FenceAction::Keep
        );
        assert_eq!(
            fence_step(true, Some(at(1000)), at(800), AFTER, &mut m),
            FenceAction::Fence(ms(800))
        );
        assert_eq!(
            fence_step(true, Some(at(1000)), at(900), AFTER, &mut m),
            FenceAction::Keep
        );
        // Renewed: lifted once.
        assert_eq!(
            fence_step(true, Some(at(3000)), at(2000), AFTER, &mut m),
            FenceAction::Lift
        );
        assert_eq!(
            fence_step(true, Some(at(3500)), at(2500), AFTER, &mut m),
            FenceAction::Keep
        );
        // Demoted while fenced: lifted, so a later promotion takes writes.
        assert_eq!(
            fence_step(true, Some(at(3500)), at(3400), AFTER, &mut m),
            FenceAction::Fence(ms(900))
        );
        assert_eq!(fence_step(false, None, at(3500), AFTER, &mut m), FenceAction::Lift);
    }

    #[test]
    fn a_long_lease_not_renewed_is_capped_by_fence_after() {
        let t0 = Instant::now();
        let mut m = FenceMemory::default();
        let long = Some(t0 + Duration::from_secs(30));
        assert_eq!(fence_step(true, long, t0, AFTER, &mut m), FenceAction::Keep);
        // No fresh answer moves the lease: FENCE_AFTER_MS after the last
        // renewal, although the lease itself runs for 30 s.
        assert_eq!(fence_step(true, long, t0 + ms(2900), AFTER, &mut m), FenceAction::Keep);
        assert_eq!(
            fence_step(true, long, t0 + ms(3000), AFTER, &mut m),
            FenceAction::Fence(ms(3000))
        );
        let renewed = Some(t0 + Duration::from_secs(33));
        assert_eq!(
            fence_step(true, renewed, t0 + ms(3500), AFTER, &mut m),
            FenceAction::Lift
        );
    }

    #[test]
    fn a_new_master_gets_fence_after_to_be_confirmed() {
        let t0 = Instant::now();
        let mut m = FenceMemory::default();
        // Promoted; the Sentinels name the old master for a moment.
        assert_eq!(fence_step(true, None, t0, AFTER, &mut m), FenceAction::Keep);
        assert_eq!(fence_step(true, None, t0 + ms(2900), AFTER, &mut m), FenceAction::Keep);
        assert!(matches!(
            fence_step(true, None, t0 + ms(3000), AFTER, &mut m),
            FenceAction::Fence(_)
        ));
    }

    #[test]
    fn disabled_never_fences() {
        let t0 = Instant::now();
        let mut m = FenceMemory::default();
        for s in 0..100 {
            assert_eq!(
                fence_step(true, None, t0 + Duration::from_secs(s), None, &mut m),
                FenceAction::Keep
            );
        }
    }
}
