//! The one switchover procedure: a planned change of master with no
//! acknowledged write lost. The master's launcher carries it out, for
//! `rzkctl switchover` (which only writes an intent, Patroni's `/failover`
//! key) and for its own hand-over on SIGTERM alike.
//!
//! Each look at the group ([`Snapshot`]) gives one [`Step`], chosen here
//! from the snapshot and the little the procedure remembers; the launcher
//! performs it through the executor and looks again:
//!
//! 1. **Prepare**, writes still flowing: wait for a candidate, a replica
//!    online for the master that a Sentinel would promote (and, for an
//!    exclusive target, would promote nothing else). A preferred target
//!    is waited for until `prefer_by`, then any candidate will do.
//! 2. **Pause** writes on the master (`CLIENT PAUSE WRITE`), until after
//!    the deadline.
//! 3. **Catch up**: wait until every candidate has the master's offset
//!    (after half the remaining time, one complete candidate is enough).
//! 4. **Request** `SENTINEL FAILOVER` from that Sentinel (the launcher
//!    tries the others when it refuses).
//! 5. **Done** when a registered Sentinel names another live master: the
//!    launcher makes its server that master's replica and lifts the pause,
//!    so paused writes fail with `READONLY` instead of being lost.
//!
//! The same procedure, entered at a later step, answers the failovers the
//! launcher did not plan: the **freeze** ([`Procedure::frozen`], at step
//! 5, writes paused at the Sentinels' first event) and the **crash**
//! ([`Procedure::after_crash`], at step 4: the server died as master, so
//! there is nothing to pause or catch up, and the failover is asked for at
//! once when [`crash_plan`] allows).

use std::time::Duration;

use tokio::time::Instant;

use crate::model::{Endpoint, Record, Role};
use crate::policy::promotion::{NotPromotable, not_promotable};
use crate::reply::SentinelReplica;
use crate::snapshot::Snapshot;

/// Checks, from one snapshot, that a switchover away from the recorded
/// master may start; `to` must be one of its registered, linked, synced,
/// promotable replicas. `Err` says why not: `rzkctl` then writes nothing.
pub fn plan(snap: &Snapshot, to: Option<&Endpoint>) -> Result<Endpoint, String> {
    if let Some(p) = &snap.pause {
        return Err(format!(
            "the group is paused (by {}: {}); `rzkctl resume` first",
            p.by, p.reason
        ));
    }
    let master = match &snap.record {
        Record::Valid { master, .. } if snap.is_live_master(master) => master.clone(),
        Record::Valid { master, .. } => return Err(format!("the recorded master {master} does not answer as master")),
        _ => return Err("the record names no master".into()),
    };
    if snap.sentinels.is_empty() {
        return Err("no Sentinel is registered to fail over".into());
    }
    let Some(to) = to else {
        let promotable =
            snap.nodes.iter().filter_map(|n| snap.server(n)).any(|s| {
                matches!(&s.role, Role::Replica { master: m, .. } if *m == master) && not_promotable(s).is_none()
            });
        return if promotable {
            Ok(master)
        } else {
            Err(format!("{master} has no promotable replica"))
        };
    };
    if *to == master {
        return Err(format!("{to} is already the master"));
    }
    if !snap.nodes.contains(to) {
        return Err(format!("{to} is not a registered redis node"));
    }
    if snap.nofailover.contains(to) {
        return Err(format!(
            "{to} cannot be promoted: its task runs with NOFAILOVER=true (never promoted)"
        ));
    }
    let t = snap.server(to).ok_or_else(|| format!("{to} does not answer"))?;
    match &t.role {
        Role::Replica { master: m, .. } if *m == master => {}
        Role::Replica { master: m, .. } => return Err(format!("{to} is a replica of {m}, not of the master {master}")),
        _ => return Err(format!("{to} is not a replica")),
    }
    if let Some(why) = not_promotable(t) {
        return Err(format!("{to} cannot be promoted: {}", why.as_str()));
    }
    Ok(master)
}

/// Where the procedure is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Writes flow; waiting for a candidate.
    Prepare,
    /// Writes are paused; waiting for the candidates to catch up. Then
    /// `sentinel` (which would pick as wanted) is asked.
    Paused {
        sentinel: Endpoint,
        /// After this, one complete candidate is enough.
        patience: Instant,
    },
    /// Nothing to pause: ask `sentinel` (then the others) at once.
    Ask { sentinel: Endpoint },
    /// A Sentinel accepted `SENTINEL FAILOVER`.
    Requested,
}

/// What the master's launcher remembers while it carries a switchover out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procedure {
    /// The replica that should (or, `exclusive`, must) become master.
    pub to: Option<Endpoint>,
    /// Only `to` may be promoted.
    pub exclusive: bool,
    /// Until when `to` is waited for before any candidate will do.
    pub prefer_by: Instant,
    /// Until when a candidate is waited for with writes flowing.
    pub ready_by: Instant,
    /// When it gives up.
    pub deadline: Instant,
    pub phase: Phase,
    /// When writes were paused.
    pub paused_at: Option<Instant>,
    /// When the failover was asked for (or, frozen, seen).
    pub requested_at: Option<Instant>,
}

/// The most of the time kept for pausing, catching up, failing over and
/// the Sentinels naming the new master, once a candidate is found.
const RESERVE: Duration = Duration::from_secs(2);
/// Past the deadline the pause lasts this much longer, so that it
/// outlives whatever the procedure leaves to the Sentinels.
pub const PAUSE_MARGIN: Duration = Duration::from_secs(5);

impl Procedure {
    /// A procedure starting at `now`, bounded by `budget`, for `to`. A
    /// preferred (not exclusive) target is waited for with at least
    /// `after_preference` left for the rest.
    pub fn new(
        to: Option<Endpoint>,
        exclusive: bool,
        now: Instant,
        budget: Duration,
        after_preference: Duration,
    ) -> Procedure {
        let deadline = now + budget;
        Procedure {
            to,
            exclusive,
            prefer_by: deadline.checked_sub(after_preference).unwrap_or(now).max(now),
            ready_by: deadline - RESERVE.min(budget / 2),
            deadline,
            phase: Phase::Prepare,
            paused_at: None,
            requested_at: None,
        }
    }

    /// The freeze: a failover of this master that the Sentinels started on
    /// their own (or an operator at a Sentinel), seen at `now` and already
    /// answered by a write pause, waited for until `bound` (their
    /// `failover-timeout`).
    pub fn frozen(now: Instant, bound: Duration) -> Procedure {
        Procedure {
            phase: Phase::Requested,
            paused_at: Some(now),
            requested_at: Some(now),
            ..Procedure::new(None, false, now, bound, Duration::ZERO)
        }
    }

    /// The crash: the server died as master at `now`; `sentinel` is asked
    /// first for a failover, and the new master is waited for until
    /// `bound`.
    pub fn after_crash(sentinel: Endpoint, now: Instant, bound: Duration) -> Procedure {
        Procedure {
            phase: Phase::Ask { sentinel },
            ..Procedure::new(None, false, now, bound, Duration::ZERO)
        }
    }
}

/// How a switchover ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `new` is master. The old one follows it and takes requests again.
    Done(Endpoint),
    /// Nothing to do (a replica, or nobody to hand over to); nothing changed.
    Skipped(String),
    /// It could not be done safely; nothing was paused or requested.
    Unsafe(String),
    /// The Sentinels gave the failover up, and still name this master:
    /// writes are resumed.
    Aborted(String),
    /// The deadline passed. Writes stay paused if a failover was requested
    /// (the pause lapses `PAUSE_MARGIN` after the deadline); otherwise they
    /// are resumed.
    TimedOut(String),
}

impl Outcome {
    /// The name the metrics and the intent's result use.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Done(_) => "done",
            Outcome::Skipped(_) => "skipped",
            Outcome::Unsafe(_) => "unsafe",
            Outcome::Aborted(_) => "aborted",
            Outcome::TimedOut(_) => "timeout",
        }
    }
}

/// The next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Look again soon; the reason is for the log.
    Wait(String),
    /// `CLIENT PAUSE <ms> WRITE` on the master.
    Pause(Duration),
    /// Ask this Sentinel first, then the others.
    Request(Endpoint),
    /// The end.
    Finish(Outcome),
}

/// A candidate for Sentinel `view`: online for the master, and promotable
/// in that Sentinel's view.
fn check(online: bool, addr: &Endpoint, view: &[SentinelReplica]) -> Result<(), NotPromotable> {
    if !online {
        return Err(NotPromotable::NotOnline);
    }
    let r = view
        .iter()
        .find(|r| r.addr == *addr)
        .ok_or(NotPromotable::UnknownToSentinel)?;
    if r.priority == 0 {
        Err(NotPromotable::PriorityZero)
    } else if !r.healthy {
        Err(NotPromotable::DownForSentinel)
    } else {
        Ok(())
    }
}

/// The reasons, one per replica (not one per Sentinel that gave it).
fn reasons(mut why_not: Vec<String>) -> Option<String> {
    why_not.sort();
    why_not.dedup();
    (!why_not.is_empty()).then(|| why_not.join("; "))
}

/// Whether the failover of a master whose server just died may be asked
/// for at once: from the launcher's last snapshot `before` the death, the
/// server was master and not fenced; from a look `after` it, no failover
/// runs (one that ended just before the death may still show in `before`)
/// and a registered Sentinel would promote one of its replicas that is
/// online for it (a replica's priority is above 0 only once it has held
/// the data). `Ok` names that Sentinel, to be asked first; `Err` says why
/// not, and the Sentinels' own rules then decide, after their `down-after`.
pub fn crash_plan(before: &Snapshot, after: &Snapshot, fenced: bool) -> Result<Endpoint, String> {
    let Some(local) = before.local.as_ref().filter(|l| l.is_master()) else {
        return Err("it was not master".into());
    };
    if fenced {
        return Err("it was fenced: the Sentinels may be failing it over already".into());
    }
    if after.registered_answers().any(|a| a.failover) {
        return Err("a failover is already under way".into());
    }
    if after.sentinels.is_empty() {
        return Err("no sentinel registered".into());
    }
    let mut why_not = vec![];
    for (s, view) in after.registered_replica_views() {
        for line in &local.replicas {
            match check(line.online, &line.addr, view) {
                Ok(()) => return Ok(s.clone()),
                Err(e) => why_not.push(format!("{}: {}", line.addr, e.as_str())),
            }
        }
    }
    Err(reasons(why_not).map_or_else(
        || "no replica".into(),
        |why| format!("no replica a Sentinel would promote ({why})"),
    ))
}

/// One step of procedure `p` of the master `me` at `now`, from `snap`
/// (observed with the Sentinels' replica views).
pub fn step(snap: &Snapshot, me: &Endpoint, other_nodes: bool, p: &mut Procedure, now: Instant) -> Step {
    if let Phase::Ask { sentinel } = &p.phase {
        return if now >= p.deadline {
            Step::Finish(Outcome::TimedOut("no Sentinel accepted the failover in time".into()))
        } else {
            Step::Request(sentinel.clone())
        };
    }
    if let Some(Role::Replica { master, .. }) = snap.local.as_ref().map(|l| &l.role) {
        return match p.phase {
            Phase::Prepare => Step::Finish(Outcome::Skipped("not a master".into())),
            // The Sentinels demoted it already.
            _ if snap.is_live_master(master) => Step::Finish(Outcome::Done(master.clone())),
            _ => Step::Wait(format!("a replica of {master}, which does not answer as master yet")),
        };
    }
    if p.phase == Phase::Requested {
        // The new master: named by the Sentinel leading the failover (it
        // names the promoted replica as soon as it answers as master), or,
        // once it ended, by a majority.
        let registered = snap.sentinels.len();
        let new = snap
            .registered_answers()
            .map(|a| &a.master)
            .filter(|m| *m != me && snap.is_live_master(m))
            .find(|m| {
                let votes = snap.registered_answers().filter(|a| a.master == **m).count();
                snap.registered_answers().any(|a| a.failover && a.master == **m) || votes * 2 > registered
            });
        // Given up: a look that began after the failover was asked for
        // (when the leader's flag was already up) finds no failover under
        // way, and every Sentinel that answered still names this master.
        let given_up = p.requested_at.is_some_and(|t| snap.taken > t)
            && snap.registered_answers().next().is_some()
            && snap.registered_answers().all(|a| !a.failover && a.master == *me);
        return match new {
            Some(m) => Step::Finish(Outcome::Done(m.clone())),
            None if given_up => Step::Finish(Outcome::Aborted("the Sentinels gave the failover up".into())),
            None if now >= p.deadline => Step::Finish(Outcome::TimedOut(
                "the Sentinels did not name another master in time".into(),
            )),
            None => Step::Wait("waiting for the Sentinels to name the new master".into()),
        };
    }
    let Some(local) = &snap.local else {
        return if now >= p.deadline {
            Step::Finish(Outcome::TimedOut("the server does not answer".into()))
        } else {
            Step::Wait("the server does not answer".into())
        };
    };
    if now >= p.deadline {
        return Step::Finish(Outcome::TimedOut("no failover within the deadline".into()));
    }
    if snap.sentinels.is_empty() {
        return Step::Finish(Outcome::Skipped("no sentinel registered".into()));
    }
    // The candidates each registered Sentinel would pick from.
    let wanted = |addr: &Endpoint| !p.exclusive || p.to.as_ref() == Some(addr);
    let mut why_not = vec![];
    let mut choice: Option<(Endpoint, Vec<Endpoint>)> = None;
    for (s, view) in snap.registered_replica_views() {
        let mut candidates = vec![];
        let mut others_held = true;
        for line in &local.replicas {
            match check(line.online, &line.addr, view) {
                Ok(()) if wanted(&line.addr) => candidates.push(line.addr.clone()),
                Ok(()) => others_held = false,
                Err(e) => why_not.push(format!("{}: {}", line.addr, e.as_str())),
            }
        }
        // A preferred target: a Sentinel that sees it as first choice.
        let preferred =
            p.to.as_ref()
                .is_none_or(|t| view.iter().any(|r| r.addr == *t && r.priority == 1) && candidates.contains(t));
        let fits = !candidates.is_empty() && others_held && (p.exclusive || preferred || now >= p.prefer_by);
        if fits {
            choice = Some((s.clone(), candidates));
            if preferred {
                break;
            }
        }
    }
    match &p.phase {
        Phase::Prepare => match choice {
            Some((sentinel, _)) => {
                p.phase = Phase::Paused {
                    sentinel,
                    patience: now + p.deadline.saturating_duration_since(now) / 2,
                };
                p.paused_at = Some(now);
                Step::Pause(p.deadline.saturating_duration_since(now) + PAUSE_MARGIN)
            }
            None if local.replicas.is_empty() && !other_nodes => {
                Step::Finish(Outcome::Skipped("no replica to hand over to".into()))
            }
            None => {
                let why = reasons(why_not).unwrap_or_else(|| "no replica".into());
                if now >= p.ready_by {
                    Step::Finish(Outcome::Unsafe(format!(
                        "no replica could take over in time ({why}); a failover now would promote a replica without the data"
                    )))
                } else {
                    Step::Wait(format!("waiting for a replica that can take over ({why})"))
                }
            }
        },
        Phase::Paused { sentinel, patience } => {
            let Some((_, candidates)) = &choice else {
                return Step::Wait("the candidates are not promotable for a moment".into());
            };
            let complete = local
                .replicas
                .iter()
                .filter(|l| candidates.contains(&l.addr) && l.offset >= local.offset)
                .count();
            if complete == candidates.len() || (complete > 0 && now >= *patience) {
                Step::Request(sentinel.clone())
            } else {
                Step::Wait("waiting for the candidates to have every write".into())
            }
        }
        Phase::Requested | Phase::Ask { .. } => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::*;
    use crate::reply::SentinelAnswer;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn planning_refuses_with_the_reason_and_accepts_a_synced_replica() {
        let s = healthy(9);
        assert_eq!(plan(&s, Some(&ep(2))), Ok(ep(1)));
        assert_eq!(plan(&s, None), Ok(ep(1)));
        assert!(plan(&s, Some(&ep(1))).unwrap_err().contains("already the master"));
        assert!(plan(&s, Some(&ep(7))).unwrap_err().contains("not a registered"));
        let mut nofailover = s.clone();
        nofailover.nofailover = vec![ep(2)];
        let e = plan(&nofailover, Some(&ep(2))).unwrap_err();
        assert!(e.contains("NOFAILOVER=true"), "{e}");
        assert_eq!(plan(&nofailover, Some(&ep(3))), Ok(ep(1)));
        let mut syncing = healthy(9);
        syncing.servers[1].sync_in_progress = true;
        syncing.servers[1].priority = 0;
        assert!(plan(&syncing, Some(&ep(2))).unwrap_err().contains("cannot be promoted"));
        let mut dead = healthy(9);
        dead.servers.retain(|s| s.addr != ep(2));
        assert!(plan(&dead, Some(&ep(2))).unwrap_err().contains("does not answer"));
        let mut no_sentinels = healthy(9);
        no_sentinels.sentinels.clear();
        assert!(plan(&no_sentinels, None).is_err());
        let mut lost = healthy(9);
        lost.servers.retain(|s| s.addr != ep(1));
        assert!(plan(&lost, None).unwrap_err().contains("does not answer as master"));
        let mut none = healthy(9);
        for s in &mut none.servers[1..] {
            s.priority = 0;
        }
        assert!(plan(&none, None).unwrap_err().contains("no promotable replica"));
        let mut paused = healthy(9);
        paused.pause = Some(crate::model::Pause {
            until_ms: u64::MAX,
            by: "ops".into(),
            reason: "upgrade".into(),
        });
        assert!(
            plan(&paused, Some(&ep(2)))
                .unwrap_err()
                .contains("paused (by ops: upgrade)")
        );
    }

    #[test]
    fn a_crash_is_failed_over_only_with_a_promotable_replica_no_fence_and_no_failover_running() {
        let s = healthy(1);
        assert_eq!(crash_plan(&s, &s, false), Ok(sentinel(21)));
        assert!(crash_plan(&s, &s, true).unwrap_err().contains("fenced"));
        assert!(
            crash_plan(&healthy(2), &healthy(2), false)
                .unwrap_err()
                .contains("not master")
        );
        let mut running = healthy(1);
        running.answers[2].failover = true;
        assert!(crash_plan(&running, &running, false).unwrap_err().contains("under way"));
        // A failover that ended just before the death shows only in the
        // look before it.
        assert_eq!(crash_plan(&running, &s, false), Ok(sentinel(21)));
        let mut alone = healthy(1);
        alone.sentinels.clear();
        assert!(crash_plan(&alone, &alone, false).unwrap_err().contains("no sentinel"));
        // Replicas still syncing: priority 0 for every Sentinel, and the
        // reason names them.
        let mut syncing = healthy(1);
        for (_, view) in &mut syncing.sentinel_replicas {
            for r in view.iter_mut() {
                r.priority = 0;
            }
        }
        let why = crash_plan(&syncing, &syncing, false).unwrap_err();
        assert!(
            why.contains(&ep(2).to_string()) && why.contains(&ep(3).to_string()),
            "{why}"
        );
        // Only the third Sentinel would promote one: it is asked first.
        let mut one = syncing.clone();
        one.sentinel_replicas[2] = would_promote(23, &[3]);
        assert_eq!(crash_plan(&one, &one, false), Ok(sentinel(23)));
        // A Sentinel that is not registered does not count.
        one.sentinels.retain(|s| *s != sentinel(23));
        assert!(crash_plan(&one, &one, false).is_err());
    }

    #[test]
    fn after_a_crash_the_failover_is_asked_for_at_once_and_done_when_a_sentinel_names_the_new_master() {
        let t0 = Instant::now();
        let mut p = Procedure::after_crash(sentinel(22), t0, 10 * SECOND);
        let mut dead = healthy(1);
        dead.local = None;
        dead.servers.retain(|s| s.addr != ep(1));
        assert_eq!(step(&dead, &ep(1), true, &mut p, t0), Step::Request(sentinel(22)));
        p.phase = Phase::Requested;
        p.requested_at = Some(t0);
        let mut later = dead.clone();
        later.taken = t0 + SECOND;
        later
            .answers
            .iter_mut()
            .for_each(|a| a.failover = a.sentinel == sentinel(22));
        assert!(matches!(step(&later, &ep(1), true, &mut p, t0 + SECOND), Step::Wait(_)));
        // The leader names the promoted replica, which answers as master.
        later.answers[1] = says(22, 2, 2);
        later.answers[1].failover = true;
        later.servers.retain(|s| s.addr != ep(2));
        later.servers.push(master(2));
        assert_eq!(
            step(&later, &ep(1), true, &mut p, t0 + SECOND),
            Step::Finish(Outcome::Done(ep(2)))
        );
        // Nobody names a new master by the bound: timed out; asked for too
        // late: timed out as well.
        let mut p = Procedure::after_crash(sentinel(22), t0, 10 * SECOND);
        assert!(matches!(
            step(&dead, &ep(1), true, &mut p, t0 + 10 * SECOND),
            Step::Finish(Outcome::TimedOut(_))
        ));
        p.phase = Phase::Requested;
        p.requested_at = Some(t0);
        let mut silent = dead.clone();
        silent.answers.iter_mut().for_each(|a| a.failover = true);
        assert!(matches!(
            step(&silent, &ep(1), true, &mut p, t0 + 10 * SECOND),
            Step::Finish(Outcome::TimedOut(_))
        ));
    }

    fn run(p: &mut Procedure, snap: &Snapshot, now: Instant) -> Step {
        step(snap, &ep(1), true, p, now)
    }

    #[test]
    fn a_switchover_pauses_catches_up_requests_and_ends_when_the_sentinels_name_the_new_master() {
        let t0 = Instant::now();
        let mut p = Procedure::new(None, false, t0, 20 * SECOND, 8 * SECOND);
        let s = healthy(1);
        assert_eq!(run(&mut p, &s, t0), Step::Pause(25 * SECOND));
        // Replica 3 lags: wait, until patience (half the rest) is over.
        let mut lag = healthy(1);
        lag.local.as_mut().unwrap().offset = 1100;
        lag.local.as_mut().unwrap().replicas[0].offset = 1100;
        assert!(matches!(run(&mut p, &lag, t0 + SECOND), Step::Wait(_)));
        assert_eq!(run(&mut p, &lag, t0 + 11 * SECOND), Step::Request(sentinel(21)));
        assert_eq!(run(&mut p, &s, t0 + SECOND), Step::Request(sentinel(21)));
        p.phase = Phase::Requested;
        assert!(matches!(run(&mut p, &s, t0 + 2 * SECOND), Step::Wait(_)));
        // One Sentinel names 2, with no failover flagged: not yet (a stale
        // answer naming a live master must not end it).
        let mut after = healthy(1);
        after.answers[1] = says(22, 2, 2);
        after.servers[1] = master(2);
        assert!(matches!(run(&mut p, &after, t0 + 3 * SECOND), Step::Wait(_)));
        // The leader of the failover names 2: done.
        after.answers[1].failover = true;
        assert_eq!(run(&mut p, &after, t0 + 3 * SECOND), Step::Finish(Outcome::Done(ep(2))));
        // Or, once it ended, a majority does.
        after.answers[1].failover = false;
        after.answers[2] = says(23, 2, 2);
        assert_eq!(run(&mut p, &after, t0 + 3 * SECOND), Step::Finish(Outcome::Done(ep(2))));
        // Already demoted by the Sentinels: done too.
        let mut demoted = after.clone();
        demoted.local = Some(replica(1, 2));
        assert_eq!(
            run(&mut p, &demoted, t0 + 3 * SECOND),
            Step::Finish(Outcome::Done(ep(2)))
        );
        assert!(matches!(
            run(&mut p, &s, t0 + 21 * SECOND),
            Step::Finish(Outcome::TimedOut(_))
        ));
    }

    #[test]
    fn no_candidate_waits_with_writes_flowing_then_refuses() {
        let t0 = Instant::now();
        let mut p = Procedure::new(None, false, t0, 20 * SECOND, 8 * SECOND);
        let mut s = healthy(1);
        // Both replicas still in their first sync: not online for the
        // master, priority 0 for the Sentinels.
        for l in &mut s.local.as_mut().unwrap().replicas {
            l.online = false;
        }
        let step0 = run(&mut p, &s, t0);
        assert!(
            matches!(&step0, Step::Wait(w) if w.contains("still") || w.contains("link")),
            "{step0:?}"
        );
        // Each replica's reason once, though all three Sentinels gave it.
        let Step::Wait(why) = &step0 else { unreachable!() };
        for r in [ep(2), ep(3)] {
            assert_eq!(why.matches(&format!("{r}: ")).count(), 1, "{why}");
        }
        assert!(matches!(
            run(&mut p, &s, t0 + 18 * SECOND),
            Step::Finish(Outcome::Unsafe(_))
        ));
        // A lone master with nobody registered: nothing to wait for.
        let mut lone = healthy(1);
        lone.local.as_mut().unwrap().replicas.clear();
        let mut p = Procedure::new(None, false, t0, 20 * SECOND, 8 * SECOND);
        assert!(matches!(
            step(&lone, &ep(1), false, &mut p, t0),
            Step::Finish(Outcome::Skipped(_))
        ));
        // A replica: nothing to hand over.
        let mut p = Procedure::new(None, false, t0, 20 * SECOND, 8 * SECOND);
        assert!(matches!(
            step(&healthy(2), &ep(2), true, &mut p, t0),
            Step::Finish(Outcome::Skipped(_))
        ));
    }

    #[test]
    fn an_exclusive_target_needs_a_sentinel_that_would_pick_nothing_else() {
        let t0 = Instant::now();
        let mut p = Procedure::new(Some(ep(2)), true, t0, 30 * SECOND, 8 * SECOND);
        let s = healthy(1);
        assert!(matches!(run(&mut p, &s, t0), Step::Wait(_)), "3 is not held back yet");
        let mut held = healthy(1);
        held.sentinel_replicas[1].1[1].priority = 0;
        assert_eq!(run(&mut p, &held, t0 + SECOND), Step::Pause(34 * SECOND));
        assert_eq!(
            p.phase,
            Phase::Paused {
                sentinel: sentinel(22),
                patience: t0 + SECOND + 29 * SECOND / 2
            }
        );
        // Only the target counts for the catch-up.
        let mut behind = held.clone();
        behind.local.as_mut().unwrap().offset = 1200;
        behind.local.as_mut().unwrap().replicas[0].offset = 1200;
        assert_eq!(run(&mut p, &behind, t0 + 2 * SECOND), Step::Request(sentinel(22)));
    }

    #[test]
    fn a_preferred_target_is_waited_for_then_any_candidate_will_do() {
        let t0 = Instant::now();
        let mut p = Procedure::new(Some(ep(3)), false, t0, 20 * SECOND, 8 * SECOND);
        assert!(matches!(run(&mut p, &healthy(1), t0), Step::Wait(_)));
        assert_eq!(run(&mut p, &healthy(1), t0 + 12 * SECOND), Step::Pause(13 * SECOND));
        let mut p = Procedure::new(Some(ep(3)), false, t0, 20 * SECOND, 8 * SECOND);
        let mut first = healthy(1);
        first.sentinel_replicas[2].1[1].priority = 1;
        assert!(matches!(run(&mut p, &first, t0), Step::Pause(_)));
        assert!(matches!(&p.phase, Phase::Paused { sentinel: s, .. } if *s == sentinel(23)));
    }

    #[test]
    fn a_freeze_ends_done_when_a_new_master_is_named_and_aborted_when_the_failover_is_given_up() {
        let t0 = Instant::now();
        let mut p = Procedure::frozen(t0, 5 * SECOND);
        let mut under_way = healthy(1);
        under_way.taken = t0 + SECOND / 10;
        under_way.answers[0].failover = true;
        assert!(matches!(run(&mut p, &under_way, t0 + SECOND / 10), Step::Wait(_)));
        // A look from before the freeze proves nothing.
        let mut stale = healthy(1);
        stale.taken = t0 - SECOND;
        assert!(matches!(run(&mut p, &stale, t0), Step::Wait(_)));
        let mut given_up = healthy(1);
        given_up.taken = t0 + SECOND;
        let r = run(&mut p, &given_up, t0 + SECOND);
        assert!(matches!(r, Step::Finish(Outcome::Aborted(_))), "{r:?}");
        let mut promoted = under_way.clone();
        promoted.answers[0] = SentinelAnswer {
            failover: true,
            promoting: true,
            ..says(21, 2, 2)
        };
        promoted.servers[1] = master(2);
        let mut p = Procedure::frozen(t0, 5 * SECOND);
        assert_eq!(run(&mut p, &promoted, t0 + SECOND), Step::Finish(Outcome::Done(ep(2))));
        let mut p = Procedure::frozen(t0, 5 * SECOND);
        assert!(matches!(
            run(&mut p, &under_way, t0 + 6 * SECOND),
            Step::Finish(Outcome::TimedOut(_))
        ));
    }

    #[test]
    fn outcomes_have_labels() {
        assert_eq!(Outcome::Done(ep(1)).label(), "done");
        assert_eq!(Outcome::TimedOut(String::new()).label(), "timeout");
    }
}
