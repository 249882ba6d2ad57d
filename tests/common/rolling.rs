//! A Marathon-like rolling restart of a group's redis tasks, one task at a
//! time, gated as the orchestrator gates it (`promotion.rs`; `migration.rs`
//! runs it with Valkey replacements).

use std::time::{Duration, Instant};

use super::group::*;
use super::*;

/// Keys preloaded before a rolling update, and their values' size (16 B).
pub const PRELOAD_KEYS: usize = 500_000;
pub const PRELOAD_VALUE: usize = 16;

/// Waits until `m`'s `/ready` answers 200.
pub async fn ready(m: &Member, within: Duration) {
    wait_for(&format!("{} /ready to answer 200", m.addr()), within, || async {
        match m.admin_get("/ready").await {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// What a rolling update under a writer lost: the preloaded keys still on
/// the master, and the acknowledged writes missing there.
pub struct Losses {
    pub present: usize,
    pub lost: Vec<String>,
}

impl Losses {
    /// Reads them on `master` for the writer's `ledger`.
    pub async fn on(master: &str, ledger: &Ledger) -> Losses {
        Losses {
            present: preloaded_present(master, PRELOAD_KEYS).await.unwrap(),
            lost: missing_keys(master, None, &ledger.acked).await,
        }
    }

    /// For the MEASURE line.
    pub fn summary(&self, ledger: &Ledger) -> String {
        format!(
            "{} of {PRELOAD_KEYS} preloaded keys present; {} WAIT 1 writes acknowledged, {} lost, {} failed, longest pause {:?}",
            self.present,
            ledger.acked.len(),
            self.lost.len(),
            ledger.failed,
            ledger.longest_gap
        )
    }

    /// Nothing lost, and the writer wrote.
    pub fn assert_none(&self, ledger: &Ledger, master: &str) {
        assert_eq!(self.present, PRELOAD_KEYS, "preloaded keys lost (master {master})");
        assert!(ledger.acked.len() > 50, "the writer barely wrote: {ledger:?}");
        assert!(
            self.lost.is_empty(),
            "{} acknowledged writes lost, e.g. {:?}",
            self.lost.len(),
            &self.lost[..self.lost.len().min(5)]
        );
    }
}

/// Replaces Sentinel task `i` as a rolling update does: SIGTERM (it must
/// exit 0), then a task of the app's new version (`g.extra`), ready
/// before this returns its index.
pub async fn replace_sentinel(g: &mut Group, i: usize) -> usize {
    g.sentinels[i].proc.signal(libc::SIGTERM);
    let status = g.sentinels[i]
        .proc
        .wait_exit(Duration::from_secs(30))
        .expect("a Sentinel task stops on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", g.sentinels[i].proc.log());
    let j = g.start_sentinel();
    ready(&g.sentinels[j], Duration::from_secs(60)).await;
    j
}

/// What the orchestrator waits for before it kills the next task.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Gate {
    /// The replacement answers PING (a TCP health check).
    Ping,
    /// The replacement's `/ready` answers 200 (Marathon's readinessChecks).
    Ready,
}

/// Whether `addr` is still in its first full sync: its link to the master
/// not up yet, or a sync in progress. `Err` when it cannot tell.
pub async fn still_syncing(addr: &str) -> Result<(bool, String), String> {
    let reply = redis_cmd(addr, None, &["INFO", "replication"]).await?;
    let link = info_text_field(&reply, "master_link_status")?;
    let in_progress = info_text_field(&reply, "master_sync_in_progress")?;
    Ok((
        link != "up" || in_progress == "1",
        format!("master_link_status:{link} master_sync_in_progress:{in_progress}"),
    ))
}

/// One step of a rolling restart as the orchestrator saw it.
#[derive(Debug)]
pub struct Step {
    /// The previous step's replacement, read just after this step's
    /// SIGTERM was sent: whether it was still syncing, and its state.
    pub previous_at_kill: Option<Result<(bool, String), String>>,
    /// SIGTERM of the old task to the gate passing (printed in the MEASURE
    /// line through `Debug`).
    #[allow(dead_code)]
    pub took: Duration,
    /// The replacement's start to the gate passing (printed likewise).
    #[allow(dead_code)]
    pub replacement_ready: Duration,
    /// `/ready` answered 503 at least once (Ready gate only).
    pub saw_503: bool,
    /// Meanwhile its JSON said it may not be promoted, and why.
    pub saw_unpromotable: Option<String>,
}

/// One Marathon-like rolling restart (`maximumOverCapacity 0`, hostname
/// UNIQUE): kill one old task (SIGTERM, then SIGKILL after the kill
/// grace), start its replacement, wait for `gate`, go on to the next.
pub async fn rolling_restart(g: &mut Group, order: &[usize], kill_grace: Duration, gate: Gate) -> Vec<Step> {
    let mut steps = vec![];
    let mut previous: Option<String> = None;
    for &i in order {
        let t0 = Instant::now();
        g.redis[i].proc.signal(libc::SIGTERM);
        // Read after the signal went out: a replacement still syncing now
        // was syncing when the kill landed.
        let previous_at_kill = match &previous {
            Some(p) => Some(still_syncing(p).await),
            None => None,
        };
        if g.redis[i].proc.wait_exit(kill_grace).is_none() {
            // Marathon's taskKillGracePeriodSeconds ran out.
            g.redis[i].proc.signal(libc::SIGKILL);
            g.redis[i]
                .proc
                .wait_exit(Duration::from_secs(5))
                .expect("SIGKILLed launcher");
        }
        let j = g.start_redis();
        let started = Instant::now();
        let addr = g.redis[j].addr();
        let mut saw_503 = false;
        let mut saw_unpromotable = None;
        match gate {
            Gate::Ping => {
                wait_for("the replacement to answer PING", Duration::from_secs(30), || async {
                    redis_cmd(&addr, None, &["PING"]).await.map(|_| ())
                })
                .await
            }
            Gate::Ready => {
                // Sampled every 100 ms, as a readiness check would be
                // (Marathon's every 2 s in the JSON).
                let member = &g.redis[j];
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    match member.admin_get("/ready").await {
                        Ok((200, _)) => break,
                        Ok((503, body)) => {
                            saw_503 = true;
                            let v: serde_json::Value = serde_json::from_str(&body)
                                .unwrap_or_else(|e| panic!("{addr}: /ready is not JSON ({e}): {body}"));
                            if v["promotable"] == false {
                                saw_unpromotable = v["not_promotable"].as_str().map(String::from);
                            }
                        }
                        _ => {}
                    }
                    assert!(Instant::now() < deadline, "{addr}: /ready never became 200");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        previous = Some(addr.clone());
        steps.push(Step {
            previous_at_kill,
            took: t0.elapsed(),
            replacement_ready: started.elapsed(),
            saw_503,
            saw_unpromotable,
        });
    }
    steps
}
