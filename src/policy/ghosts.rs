//! The ghost-reset gate: when may the watcher send `SENTINEL RESET`?
//!
//! Sentinels never forget dead peers, and Marathon restarts Sentinels on new
//! ports, so ghosts pile up and raise the majority a failover needs. A reset
//! makes one Sentinel forget everything and relearn the live peers (hello
//! messages every 2 s) and replicas. Resetting is safe only one Sentinel at
//! a time, never during a failover or while the master is seen down, and
//! never while another Sentinel is still relearning (which also keeps two
//! watchers from resetting two Sentinels at once). A count that is too high
//! must be seen on two looks in a row: registrations lag after a ZooKeeper
//! session expiry. And the Sentinel must see at least one of its peers down:
//! a live Sentinel that is not registered (an operator's, or one whose
//! registration is late) also raises the count, and resetting a Sentinel
//! over it would only make it relearn the same peer, reset after reset.

use std::time::Duration;

use tokio::time::Instant;

use crate::model::Endpoint;
use crate::snapshot::Snapshot;

/// What the gate remembers between looks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GhostMemory {
    /// When the last reset was sent.
    pub last_reset: Option<Instant>,
    /// The Sentinel that counted too many peers at the previous look.
    pub suspect: Option<Endpoint>,
}

/// The Sentinel to reset now, if any. The caller sets `mem.last_reset`
/// when it sent the reset.
pub fn ghost_reset(snap: &Snapshot, mem: &mut GhostMemory, now: Instant, spacing: Duration) -> Option<Endpoint> {
    if mem.last_reset.is_some_and(|t| now.duration_since(t) < spacing) {
        return None;
    }
    let expected_peers = snap.sentinels.len().saturating_sub(1);
    let live_replicas = snap.nodes.len().saturating_sub(1);
    let mut target = None;
    for s in &snap.sentinels {
        let Some(a) = snap.answer_of(s) else { continue };
        if a.failover || a.master_down || a.peers < expected_peers || a.replicas < live_replicas {
            return None;
        }
        if a.peers > expected_peers && a.dead_peers.is_some_and(|d| d > 0) && target.is_none() {
            target = Some(s.clone());
        }
    }
    if target.is_some() && target == mem.suspect {
        mem.suspect = None;
        target
    } else {
        mem.suspect = target;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::*;

    const SPACING: Duration = Duration::from_secs(6);

    /// Sentinel 21 still counts a dead peer (3 instead of 2).
    fn ghost() -> Snapshot {
        let mut s = healthy(0);
        s.answers[0].peers = 3;
        s.answers[0].dead_peers = Some(1);
        s
    }

    fn run(looks: &[Snapshot], step: Duration) -> (Vec<Option<Endpoint>>, GhostMemory) {
        let t0 = Instant::now();
        let mut mem = GhostMemory::default();
        let acts = looks
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let now = t0 + step * i as u32;
                let r = ghost_reset(s, &mut mem, now, SPACING);
                if r.is_some() {
                    mem.last_reset = Some(now);
                }
                r
            })
            .collect();
        (acts, mem)
    }

    #[test]
    fn a_ghost_seen_twice_is_reset() {
        let (acts, _) = run(&[ghost(), ghost()], Duration::from_secs(2));
        assert_eq!(acts, vec![None, Some(sentinel(21))]);
    }

    #[test]
    fn a_live_unregistered_peer_is_never_reset_away() {
        let mut live = ghost();
        live.answers[0].dead_peers = Some(0);
        assert!(
            run(&vec![live; 6], Duration::from_secs(2))
                .0
                .iter()
                .all(Option::is_none)
        );
        // Not known to be dead (it did not list its peers): no reset either.
        let mut unknown = ghost();
        unknown.answers[0].dead_peers = None;
        assert!(
            run(&vec![unknown; 6], Duration::from_secs(2))
                .0
                .iter()
                .all(Option::is_none)
        );
    }

    #[test]
    fn a_healthy_group_is_never_reset() {
        assert!(
            run(&vec![healthy(0); 6], Duration::from_secs(2))
                .0
                .iter()
                .all(Option::is_none)
        );
    }

    #[test]
    fn no_reset_during_a_failover_or_with_the_master_down() {
        let mut f = ghost();
        f.answers[1].failover = true;
        assert!(run(&vec![f; 4], Duration::from_secs(2)).0.iter().all(Option::is_none));
        let mut d = ghost();
        d.answers[2].master_down = true;
        assert!(run(&vec![d; 4], Duration::from_secs(2)).0.iter().all(Option::is_none));
    }

    #[test]
    fn no_reset_while_a_sentinel_is_still_relearning() {
        let mut s = ghost();
        s.answers[1].peers = 1;
        assert!(
            run(&vec![s.clone(); 4], Duration::from_secs(2))
                .0
                .iter()
                .all(Option::is_none)
        );
        let mut r = ghost();
        r.answers[2].replicas = 1;
        assert!(run(&vec![r; 4], Duration::from_secs(2)).0.iter().all(Option::is_none));
    }

    #[test]
    fn resets_are_spaced() {
        let (acts, _) = run(&vec![ghost(); 8], Duration::from_secs(1));
        let at: Vec<usize> = acts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_some())
            .map(|(i, _)| i)
            .collect();
        // Second look, then not before 6 s have passed, then two looks again.
        assert_eq!(at, vec![1]);
        let (acts, _) = run(&vec![ghost(); 12], Duration::from_secs(1));
        let at: Vec<usize> = acts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_some())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at, vec![1, 8]);
    }

    #[test]
    fn a_count_seen_once_is_not_enough() {
        let (acts, mem) = run(&[ghost(), healthy(0), ghost()], Duration::from_secs(2));
        assert!(acts.iter().all(Option::is_none));
        assert_eq!(mem.suspect, Some(sentinel(21)));
    }

    #[test]
    fn a_sentinel_that_did_not_answer_is_skipped() {
        let mut s = ghost();
        s.answers.remove(1);
        let (acts, _) = run(&[s.clone(), s], Duration::from_secs(2));
        assert_eq!(acts, vec![None, Some(sentinel(21))]);
    }
}
