//! Carrying out the one switchover procedure ([`crate::policy::switchover`])
//! on the master: for an intent written by `rzkctl switchover`, and for the
//! launcher's own hand-over when its task is asked to stop. Each turn takes
//! a fresh look, asks the policy for the next step, and performs it
//! through the executor; the cadence follows the phase (writes paused:
//! every 20 ms).

use std::time::Duration;

use tokio::time::{Instant, sleep};
use tracing::{info, warn};

use crate::act::Action;
use crate::launch::Own;
use crate::observe::Observer;
use crate::policy::switchover::{Outcome, Phase, Procedure, Step, step};

/// How often it looks, per phase: writes flowing, writes paused, waiting
/// for the Sentinels.
fn cadence(phase: &Phase) -> Duration {
    match phase {
        Phase::Prepare => Duration::from_millis(200),
        Phase::Paused { .. } => Duration::from_millis(20),
        Phase::Requested | Phase::Ask { .. } => Duration::from_millis(50),
    }
}

/// Runs procedure `p` to its end and returns how it ended, and how long
/// writes were paused. `what` names it in the log ("hand-over",
/// "switchover").
pub async fn carry_out(
    own: &Own<'_>,
    observer: &Observer,
    mut p: Procedure,
    what: &str,
) -> (Outcome, Option<Duration>) {
    let executor = own.executor();
    let mut last_log: Option<Instant> = None;
    loop {
        let snap = observer.fresh().await;
        let other_nodes = snap.nodes.iter().any(|n| *n != own.me);
        match step(&snap, &own.me, other_nodes, &mut p, Instant::now()) {
            Step::Wait(why) => {
                if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
                    last_log = Some(Instant::now());
                    info!(addr = %own.me, reason = %why, "{what} waits");
                }
                sleep(cadence(&p.phase)).await;
            }
            Step::Pause(d) => match executor.execute(&Action::PauseWrites(d), None).await {
                Ok(()) => info!(addr = %own.me, pause_ms = d.as_millis() as u64, "writes paused for the {what}"),
                Err(e) => return (Outcome::Unsafe(format!("cannot pause writes: {e}")), None),
            },
            Step::Request(first) => {
                let mut refusals = vec![];
                for s in std::iter::once(&first).chain(snap.sentinels.iter().filter(|s| **s != first)) {
                    match executor.execute(&Action::RequestFailover(s.clone()), None).await {
                        Ok(()) => info!(sentinel = %s, "failover requested"),
                        // Another Sentinel (or this one) already runs it.
                        Err(e) if e.to_string().contains("INPROG") => {
                            info!(sentinel = %s, "a failover is already under way")
                        }
                        Err(e) => {
                            warn!(sentinel = %s, error = %e, "SENTINEL FAILOVER refused");
                            refusals.push(format!("{s}: {e}"));
                            continue;
                        }
                    }
                    p.phase = Phase::Requested;
                    p.requested_at = Some(Instant::now());
                    break;
                }
                match p.phase {
                    Phase::Requested => {}
                    // After a crash there is nothing to wait for: the
                    // Sentinels' own rules decide.
                    Phase::Ask { .. } => {
                        return (
                            Outcome::Aborted(format!("every Sentinel refused ({})", refusals.join("; "))),
                            None,
                        );
                    }
                    _ => sleep(Duration::from_millis(200)).await,
                }
            }
            Step::Finish(outcome) => {
                match &outcome {
                    // The old master follows the new one now, as Sentinel
                    // would a few seconds later; only then may it take
                    // requests again: paused writes then fail with
                    // READONLY instead of being lost, and its clients are
                    // dropped so that they find the new master (Follow).
                    // (After a crash there is no server left to follow.)
                    Outcome::Done(_) if snap.local.is_none() => {}
                    Outcome::Done(new) => {
                        if let Err(e) = executor.execute(&Action::Follow(new.clone()), None).await {
                            warn!(old = %own.me, error = %e, "could not make the old master a replica; Sentinel will")
                        }
                    }
                    // Nothing was asked of the Sentinels, or they gave it
                    // up, or the bound passed with every Sentinel still
                    // naming it: the master is still the master and takes
                    // writes again.
                    Outcome::Aborted(_) => {
                        let _ = executor.execute(&Action::Unpause, None).await;
                    }
                    Outcome::TimedOut(_)
                        if matches!(p.phase, Phase::Paused { .. })
                            || snap.registered_answers().all(|a| a.master == own.me) =>
                    {
                        let _ = executor.execute(&Action::Unpause, None).await;
                    }
                    _ => {}
                }
                let paused = p.paused_at.map(|at| at.elapsed());
                if let Some(d) = paused {
                    info!(addr = %own.me, paused_ms = d.as_millis() as u64, outcome = outcome.label(), "{what} ended");
                }
                return (outcome, paused);
            }
        }
    }
}
