//! The fence's loop: while `rzk-redis` supervises a master, ask the two
//! witnesses whether it is still the master, and make it refuse writes
//! when neither has said so for `FENCE_AFTER_MS`
//! ([`crate::policy::fence`]).
//!
//! The Sentinels are asked first, every check: they answer from memory, so
//! a healthy group costs no ZooKeeper request here. ZooKeeper is asked
//! only when the Sentinels do not confirm, and the list of registered
//! Sentinels is re-read every [`LIST_REFRESH`]; between reads, and during a
//! ZooKeeper outage, the last list seen counts.

use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tracing::{info, warn};

use crate::act::{Executor, LocalAction};
use crate::launch::OwnServer;
use crate::metrics::metrics;
use crate::model::{Endpoint, Role};
use crate::observe::ZkSession;
use crate::policy::fence::{FenceAction, FenceMemory, Witnesses, fence_step};
use crate::zk::Zk;

/// The most a witness may take to answer: a partition must not stretch a
/// check beyond its deadline.
const ASK: Duration = Duration::from_millis(1000);
/// How often the registered Sentinels are re-read from ZooKeeper.
const LIST_REFRESH: Duration = Duration::from_secs(10);
/// `min-replicas-to-write` while fenced: more replicas than can exist.
const FENCED: &str = "2147483647";

/// The fence of one supervised server.
pub struct Fence<'a> {
    /// The server it looks after.
    pub own: OwnServer<'a>,
    /// `FENCE_AFTER_MS`; `None` never fences.
    pub after: Option<Duration>,
}

impl Fence<'_> {
    /// How often it looks: four times per `FENCE_AFTER_MS`, at most once a
    /// second.
    fn every(&self) -> Duration {
        self.after
            .map_or(Duration::from_secs(1), |a| (a / 4).min(Duration::from_secs(1)))
    }

    /// Runs for ever; `sessions` follows the current ZooKeeper session.
    pub async fn run(&self, sessions: watch::Receiver<Zk>) -> std::convert::Infallible {
        let (list_tx, list) = watch::channel(Vec::new());
        let refresh = self.refresh(&sessions, &list_tx);
        let checks = self.checks(&sessions, list);
        tokio::select! {
            never = refresh => match never {},
            never = checks => match never {},
        }
    }

    /// The checks, for ever, with the Sentinel list `list` keeps current.
    async fn checks(
        &self,
        sessions: &watch::Receiver<Zk>,
        list: watch::Receiver<Vec<Endpoint>>,
    ) -> std::convert::Infallible {
        let mut mem = FenceMemory::default();
        // The configured value, put back when the fence is lifted.
        let mut configured = String::from("0");
        let executor = Executor::new(self.own.probe, self.own.name);
        loop {
            sleep(self.every()).await;
            if self.after.is_none() {
                continue;
            }
            let master = matches!(self.own.probe.role(&self.own.local).await, Ok(Role::Master));
            let zk = sessions.borrow().clone();
            // A witness cut off by a partition answers only at its timeout:
            // the deadline does not wait for it (a late confirmation lifts
            // the fence at the next look).
            let deadline = match (mem.confirmed_at, self.after) {
                (Some(t), Some(a)) if master && !mem.fenced => t + a,
                _ => Instant::now() + Duration::from_secs(3600),
            };
            let sentinels = list.borrow().clone();
            let witnesses = if master {
                tokio::select! {
                    // A witness that answered in time wins a tie.
                    biased;
                    w = self.ask(&zk, &sentinels) => w,
                    _ = sleep_until(deadline) => Witnesses { zk: None, registered: sentinels.len(), sentinels: vec![] },
                }
            } else {
                Witnesses::default()
            };
            let confirmed = master && witnesses.confirm(&self.own.me);
            match fence_step(master, confirmed, Instant::now(), self.after, &mut mem) {
                FenceAction::Keep => {}
                FenceAction::Fence(unconfirmed) => {
                    if let Some(v) = self.current().await.filter(|v| v != FENCED) {
                        configured = v;
                    }
                    let set = LocalAction::MinReplicasToWrite { n: FENCED.into() };
                    match executor.local(&self.own.local, &set).await {
                        Ok(()) => {
                            metrics().fences.inc();
                            warn!(addr = %self.own.me, unconfirmed_ms = unconfirmed.as_millis() as u64,
                                why = %witnesses.why_not(&self.own.me),
                                "FENCED: no witness confirmed this master in time; it refuses writes (NOREPLICAS) until one does");
                        }
                        Err(e) => {
                            // Try again at the next look.
                            mem.fenced = false;
                            warn!(addr = %self.own.me, error = %e, "could not fence this master");
                        }
                    }
                }
                FenceAction::Lift => {
                    let set = LocalAction::MinReplicasToWrite { n: configured.clone() };
                    match executor.local(&self.own.local, &set).await {
                        Ok(()) => info!(addr = %self.own.me, master, min_replicas_to_write = %configured,
                            "fence lifted: a witness confirms this master, or it is no longer master"),
                        Err(e) => {
                            mem.fenced = true;
                            warn!(addr = %self.own.me, error = %e, "could not lift the fence; retrying");
                        }
                    }
                }
            }
            metrics().fenced.set(i64::from(mem.fenced));
        }
    }

    /// The server's `min-replicas-to-write`.
    async fn current(&self) -> Option<String> {
        let v = self
            .own
            .probe
            .cmd(&self.own.local, &["CONFIG", "GET", "min-replicas-to-write"])
            .await
            .ok()?;
        match v {
            redis::Value::Array(items) => match items.get(1)? {
                redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                _ => None,
            },
            _ => None,
        }
    }

    /// Keeps `list` equal to the registered Sentinels, read every
    /// [`LIST_REFRESH`] (sooner while it is empty). It runs beside the
    /// checks, so a ZooKeeper that hangs never holds a check up.
    async fn refresh(
        &self,
        sessions: &watch::Receiver<Zk>,
        list: &watch::Sender<Vec<Endpoint>>,
    ) -> std::convert::Infallible {
        loop {
            let zk = sessions.borrow().clone();
            if ZkSession::of(&zk) == ZkSession::Connected
                && let Ok(Ok(found)) = timeout(ASK, zk.registered(&zk.sentinels_dir())).await
            {
                let mut v: Vec<Endpoint> = found.into_iter().map(|(_, e)| e).collect();
                v.sort();
                list.send_replace(v);
            }
            let pause = if list.borrow().is_empty() {
                self.every()
            } else {
                LIST_REFRESH
            };
            sleep(pause).await;
        }
    }

    /// Asks the witnesses: the Sentinels first, ZooKeeper only when they
    /// do not confirm.
    async fn ask(&self, zk: &Zk, sentinels: &[Endpoint]) -> Witnesses {
        let connected = ZkSession::of(zk) == ZkSession::Connected;
        let answers = join_all(sentinels.iter().map(|s| async move {
            timeout(ASK, self.own.probe.sentinel_master(s, self.own.name))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
        }))
        .await;
        let mut w = Witnesses {
            zk: None,
            registered: sentinels.len(),
            sentinels: answers.into_iter().flatten().collect(),
        };
        if !w.confirm(&self.own.me)
            && connected
            && let Ok(Ok(record)) = timeout(ASK, zk.read_master_fresh()).await
        {
            w.zk = Some(record.master().cloned());
        }
        w
    }
}
