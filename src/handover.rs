//! The planned hand-over: when the master's task is asked to stop (a
//! Marathon restart, scale-down or upgrade), give the role to a replica
//! before stopping, so no acknowledged write is lost.
//!
//! Order matters: writes are paused first, so the replicas can catch up to a
//! fixed offset; only then is a Sentinel asked to fail over, and the server
//! is stopped once the Sentinels name another master. The pause outlasts the
//! demotion, so a write can never be acknowledged by the old master after the
//! promotion. Everything is bounded by `SHUTDOWN_FAILOVER_TIMEOUT_S`: the
//! server always stops by then, hand-over or not.

use std::time::Duration;

use tokio::time::{Instant, sleep, timeout_at};
use tracing::{info, warn};

use crate::endpoint::Endpoint;
use crate::probe::{Probe, Role};
use crate::zk::Zk;

/// What the hand-over needs to know.
pub struct HandOver<'a> {
    /// Probes with the group's password.
    pub probe: &'a Probe,
    /// The local server.
    pub local: Endpoint,
    /// This task's announced address (what the Sentinels call it).
    pub me: Endpoint,
    /// `MASTER_NAME`.
    pub name: &'a str,
    /// `SHUTDOWN_FAILOVER_TIMEOUT_S`.
    pub budget: Duration,
}

impl HandOver<'_> {
    /// Runs the hand-over if this server is a master and Sentinels are
    /// registered; returns at the latest when the budget is spent.
    pub async fn run(&self, zk: &Zk) {
        let started = Instant::now();
        let deadline = started + self.budget;
        match timeout_at(deadline, self.steps(zk, deadline)).await {
            Ok(Ok(new)) => info!(addr = %self.me, master = %new, ms = started.elapsed().as_millis() as u64,
                "hand-over done; stopping the old master"),
            Ok(Err(why)) => info!(addr = %self.me, reason = why, "no hand-over; stopping the server"),
            Err(_) => warn!(addr = %self.me, budget_s = self.budget.as_secs(),
                "hand-over did not finish within SHUTDOWN_FAILOVER_TIMEOUT_S; stopping the server anyway"),
        }
    }

    async fn steps(&self, zk: &Zk, deadline: Instant) -> Result<Endpoint, String> {
        if !matches!(self.probe.role(&self.local).await, Ok(Role::Master)) {
            return Err("not a master".into());
        }
        let sentinels: Vec<Endpoint> = zk
            .registered(&zk.sentinels_dir())
            .await
            .map_err(|e| format!("cannot list sentinels: {e}"))?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        if sentinels.is_empty() {
            return Err("no sentinel registered".into());
        }
        // 1. Pause writes until the deadline (plus a margin: the server is
        //    stopped before the pause could lapse).
        let pause_ms = (deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(5)).as_millis();
        self.probe
            .cmd(&self.local, &["CLIENT", "PAUSE", &pause_ms.to_string(), "WRITE"])
            .await?;
        info!(addr = %self.me, pause_ms = pause_ms as u64, "writes paused for the hand-over");
        // 2. Let a replica reach the master's offset.
        let patience = Instant::now() + deadline.saturating_duration_since(Instant::now()) / 2;
        let caught_up = self.wait_for_replica_offset(patience).await?;
        info!(addr = %self.me, replica = %caught_up, "a replica has every write");
        // 3. Ask a Sentinel to fail over.
        let mut asked = None;
        for s in &sentinels {
            match self.probe.cmd(s, &["SENTINEL", "FAILOVER", self.name]).await {
                Ok(_) => {
                    asked = Some(s.clone());
                    break;
                }
                Err(e) => warn!(sentinel = %s, error = %e, "SENTINEL FAILOVER refused"),
            }
        }
        let asked = asked.ok_or("no sentinel accepted SENTINEL FAILOVER")?;
        info!(sentinel = %asked, "failover requested");
        // 4. Wait until the Sentinels name another live master.
        loop {
            for s in &sentinels {
                if let Ok(Some(m)) = self.probe.sentinel_master(s, self.name).await
                    && m != self.me
                    && self.probe.is_master(&m).await
                {
                    return Ok(m);
                }
            }
            if Instant::now() >= deadline {
                return Err("the sentinels did not name another master in time".into());
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every online replica has the master's offset, so that
    /// whichever one Sentinel promotes has every acknowledged write. A
    /// replica that lags past `patience` is left behind if another one is
    /// complete (Sentinel prefers the replica with the higher offset).
    async fn wait_for_replica_offset(&self, patience: Instant) -> Result<Endpoint, String> {
        loop {
            let info = self.probe.info(&self.local, "replication").await?;
            let master_offset: i64 = info
                .iter()
                .find(|(k, _)| k == "master_repl_offset")
                .and_then(|(_, v)| v.parse().ok())
                .ok_or("INFO replication without master_repl_offset")?;
            let online: Vec<ReplicaLine> = info
                .iter()
                .filter(|(k, _)| k.starts_with("slave"))
                .filter_map(|(_, v)| replica_line(v))
                .filter(|r| r.online)
                .collect();
            let complete = online.iter().filter(|r| r.offset >= master_offset).count();
            let best = online.iter().max_by_key(|r| r.offset).map(|r| r.addr.clone());
            match best {
                None => return Err("no online replica".into()),
                Some(b) if complete == online.len() => return Ok(b),
                Some(b) if complete > 0 && Instant::now() >= patience => {
                    warn!(
                        complete,
                        online = online.len(),
                        "a replica still lags; handing over to a complete one"
                    );
                    return Ok(b);
                }
                Some(_) => {}
            }
            sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One `slaveN:ip=…,port=…,state=online,offset=…,lag=…` value.
#[derive(Debug, PartialEq, Eq)]
struct ReplicaLine {
    addr: Endpoint,
    online: bool,
    offset: i64,
}

fn replica_line(v: &str) -> Option<ReplicaLine> {
    let field = |k: &str| v.split(',').find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='));
    let addr = Endpoint::parse(&format!("{} {}", field("ip")?, field("port")?)).ok()?;
    Some(ReplicaLine {
        addr,
        online: field("state")? == "online",
        offset: field("offset")?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replica_lines() {
        assert_eq!(
            replica_line("ip=10.0.0.2,port=6380,state=online,offset=1234,lag=0"),
            Some(ReplicaLine {
                addr: Endpoint::new("10.0.0.2", 6380),
                online: true,
                offset: 1234
            })
        );
        assert_eq!(
            replica_line("ip=10.0.0.2,port=6380,state=wait_bgsave,offset=0,lag=0").map(|r| r.online),
            Some(false)
        );
        assert_eq!(replica_line("garbage"), None);
        assert_eq!(replica_line("ip=x y,port=1,state=online,offset=1"), None);
    }
}
