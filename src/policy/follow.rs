//! Following a takeover: when may a Sentinel be re-pointed at the master
//! the record names?
//!
//! After a total loss, a launcher takes over and writes the record; the
//! Sentinels still monitor the dead master and would never learn the new
//! one. But after an ordinary failover the record and a Sentinel disagree
//! for a moment too, until the watcher writes the record or the gossip
//! reaches that Sentinel; re-pointing then would fight Sentinel itself. So
//! a Sentinel is re-pointed only when the record names a live master, the
//! master it names is not live, and all that has lasted `settle`. A
//! Sentinel whose own master is alive is never re-pointed: its live view
//! wins over the record (the watcher corrects the record).
//!
//! A failover holds the re-point back only once it chose a replica to
//! promote (its `failover-state` past `select_slave`): that one is left to
//! finish, and its Sentinel then names the new master. A failover still
//! waiting to be elected has chosen nothing. After a takeover, Sentinels
//! retry the failover of the dead master for ever (every
//! `2 × failover-timeout`, each try flagged up to `failover-timeout` while it
//! waits for votes); waiting for such a try to end let a peer still in it
//! turn the re-pointed Sentinels back (see [`also_behind`]).

use std::time::Duration;

use tokio::time::Instant;

use crate::model::Endpoint;
use crate::snapshot::Snapshot;

/// What the follower does after one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Follow {
    /// Nothing to do until the record changes.
    Idle,
    /// Look again after this long: the question is still open.
    Recheck(Duration),
    /// Re-point the Sentinel at this master.
    Repoint(Endpoint),
}

/// One look of the follower of Sentinel `own` at `snap`. `mismatch_since`
/// is its memory.
pub fn follow(
    snap: &Snapshot,
    own: &Endpoint,
    mismatch_since: &mut Option<Instant>,
    now: Instant,
    settle: Duration,
) -> Follow {
    let Some(recorded) = snap.record.master().filter(|r| snap.is_live_master(r)) else {
        *mismatch_since = None;
        return Follow::Idle;
    };
    match snap.answer_of(own) {
        // Our Sentinel monitors nothing of that name (a re-point that
        // failed half-way, an operator's REMOVE): its master is not live.
        None if snap.unknown_name.contains(own) => {}
        // Our own Sentinel did not answer: ask again soon.
        None => return Follow::Recheck(Duration::from_secs(1)),
        Some(a) if a.master == *recorded || snap.is_live_master(&a.master) => {
            *mismatch_since = None;
            return Follow::Idle;
        }
        Some(a) if a.promoting => return Follow::Recheck(Duration::from_secs(1)),
        Some(_) => {}
    }
    let since = *mismatch_since.get_or_insert(now);
    if now.duration_since(since) < settle {
        return Follow::Recheck(Duration::from_millis(500));
    }
    *mismatch_since = None;
    Follow::Repoint(recorded.clone())
}

/// The other registered Sentinels (not `own`) that still name a master
/// that is not live, or monitor nothing of that name, and promote no
/// replica: once `own` is re-pointed at `to`, they are re-pointed with it
/// at once, even one whose failover waits for votes. One by one, each
/// follower's settle apart, a re-pointed Sentinel (whose epoch starts again
/// at 0) is turned back by the hello of one that still names the old
/// master at the epoch of the last failover (Sentinel sends its hello to
/// its peers directly, every 2 s); and a peer left out while it waited for
/// votes did that in one CI run, over and over, for 40 s.
pub fn also_behind(snap: &Snapshot, own: &Endpoint, to: &Endpoint) -> Vec<Endpoint> {
    snap.sentinels
        .iter()
        .filter(|s| *s != own)
        .filter(|s| match snap.answer_of(s) {
            None => snap.unknown_name.contains(s),
            Some(a) => a.master != *to && !snap.is_live_master(&a.master) && !a.promoting,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Record;
    use crate::policy::fixtures::*;

    const SETTLE: Duration = Duration::from_secs(3);

    /// Total loss: every server of the old group (1, 2, 3) is gone; a
    /// takeover made 4 master and recorded it. Sentinel 21 still monitors 1.
    fn taken_over() -> Snapshot {
        let mut s = healthy(0);
        s.servers = vec![master(4)];
        s.nodes = vec![ep(4)];
        s.record = Record::Valid {
            master: ep(4),
            version: 9,
        };
        s
    }

    fn run(looks: &[Snapshot], step: Duration) -> Vec<Follow> {
        let t0 = Instant::now();
        let mut since = None;
        looks
            .iter()
            .enumerate()
            .map(|(i, s)| follow(s, &sentinel(21), &mut since, t0 + step * i as u32, SETTLE))
            .collect()
    }

    #[test]
    fn after_a_takeover_the_sentinel_follows_once_the_disagreement_lasted() {
        let acts = run(&vec![taken_over(); 8], Duration::from_millis(500));
        assert_eq!(acts[0], Follow::Recheck(Duration::from_millis(500)));
        assert!(acts[1..6].iter().all(|a| matches!(a, Follow::Recheck(_))), "{acts:?}");
        assert_eq!(acts[6], Follow::Repoint(ep(4)));
    }

    #[test]
    fn the_other_sentinels_behind_are_re_pointed_with_it() {
        let mut s = taken_over();
        assert_eq!(also_behind(&s, &sentinel(21), &ep(4)), vec![sentinel(22), sentinel(23)]);
        // Failing the dead master over, waiting for votes: re-pointed all
        // the same (left behind, its hello turns the others back).
        s.answers[2].failover = true;
        assert_eq!(also_behind(&s, &sentinel(21), &ep(4)), vec![sentinel(22), sentinel(23)]);
        // Promoting a replica it chose: left to finish.
        s.answers[2].promoting = true;
        assert_eq!(also_behind(&s, &sentinel(21), &ep(4)), vec![sentinel(22)]);
        // Already following: left alone.
        s.answers[1] = says(22, 4, 0);
        s.answers[2] = says(23, 4, 0);
        assert_eq!(also_behind(&s, &sentinel(21), &ep(4)), Vec::<Endpoint>::new());
        // One that monitors nothing of that name is re-pointed too.
        s.answers.remove(1);
        s.unknown_name = vec![sentinel(22)];
        assert_eq!(also_behind(&s, &sentinel(21), &ep(4)), vec![sentinel(22)]);
        // Whose master is alive: never.
        assert!(also_behind(&healthy(0), &sentinel(21), &ep(4)).is_empty());
    }

    #[test]
    fn a_sentinel_that_agrees_with_the_record_is_idle() {
        assert_eq!(run(&[healthy(0)], Duration::ZERO), vec![Follow::Idle]);
    }

    #[test]
    fn a_sentinel_whose_master_is_alive_is_never_re_pointed() {
        // The record is stale (names 4, a live master of another view);
        // our Sentinel's master 1 is alive: its live view wins.
        let mut s = taken_over();
        s.servers = vec![master(1), master(4)];
        assert!(
            run(&vec![s; 10], Duration::from_secs(1))
                .iter()
                .all(|a| *a == Follow::Idle)
        );
    }

    #[test]
    fn a_record_naming_a_dead_master_is_not_followed() {
        let mut s = taken_over();
        s.servers = vec![];
        assert!(
            run(&vec![s; 10], Duration::from_secs(1))
                .iter()
                .all(|a| *a == Follow::Idle)
        );
    }

    #[test]
    fn a_failover_waiting_for_votes_does_not_hold_the_re_point_back() {
        let mut s = taken_over();
        s.answers[0].failover = true;
        let acts = run(&vec![s.clone(); 8], Duration::from_millis(500));
        assert_eq!(acts[6], Follow::Repoint(ep(4)), "{acts:?}");
        // One that chose a replica to promote does, while it runs.
        let mut promoting = s.clone();
        promoting.answers[0].promoting = true;
        let acts = run(&vec![promoting; 10], Duration::from_secs(1));
        assert!(
            acts.iter().all(|a| *a == Follow::Recheck(Duration::from_secs(1))),
            "{acts:?}"
        );
        // Once the promoted replica answers as master, the Sentinel names
        // it: alive, so the Sentinel is left alone.
        s.servers.push(master(2));
        s.answers[0] = says(21, 2, 3);
        s.answers[0].monitored = ep(1);
        s.answers[0].failover = true;
        s.answers[0].promoting = true;
        assert!(
            run(&vec![s; 10], Duration::from_secs(1))
                .iter()
                .all(|a| *a == Follow::Idle)
        );
    }

    #[test]
    fn a_missing_or_garbage_record_is_never_followed() {
        let mut s = taken_over();
        s.record = Record::Unusable { version: 2 };
        assert_eq!(run(&[s.clone()], Duration::ZERO), vec![Follow::Idle]);
        s.record = Record::Missing;
        assert_eq!(run(&[s], Duration::ZERO), vec![Follow::Idle]);
    }

    #[test]
    fn our_own_sentinel_not_answering_means_look_again() {
        let mut s = taken_over();
        s.answers.retain(|a| a.sentinel != sentinel(21));
        assert_eq!(run(&[s], Duration::ZERO), vec![Follow::Recheck(Duration::from_secs(1))]);
    }

    #[test]
    fn a_sentinel_that_monitors_nothing_follows_the_record() {
        let mut s = taken_over();
        s.answers.retain(|a| a.sentinel != sentinel(21));
        s.unknown_name.push(sentinel(21));
        let acts = run(&vec![s.clone(); 8], Duration::from_millis(500));
        assert_eq!(acts[6], Follow::Repoint(ep(4)), "{acts:?}");
        // ...but not towards a record whose master is dead.
        s.servers.clear();
        assert_eq!(run(&[s], Duration::ZERO), vec![Follow::Idle]);
    }

    #[test]
    fn agreement_in_between_restarts_the_settle_time() {
        // Three looks of disagreement, one of agreement, three again: never
        // three seconds in a row.
        let mut looks = vec![taken_over(); 3];
        looks.push(healthy(0));
        looks.extend(vec![taken_over(); 3]);
        let acts = run(&looks, Duration::from_secs(1));
        assert!(!acts.iter().any(|a| matches!(a, Follow::Repoint(_))), "{acts:?}");
    }
}
