//! A Marathon-like rolling restart of a group's redis tasks, one task at a
//! time, gated as the orchestrator gates it (`promotion.rs`; `migration.rs`
//! runs it with Valkey replacements).

use std::time::{Duration, Instant};

use super::group::*;
use super::*;

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
