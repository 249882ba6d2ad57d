//! One look at the world: read ZooKeeper, ask the Sentinels, confirm every
//! candidate with `ROLE`. The result feeds [`crate::decide::decide`].
//!
//! Probes run concurrently with short timeouts, so a group with dead
//! Sentinels still decides in about one probe timeout.

use std::collections::BTreeMap;

use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::decide::{Candidate, Observation, RecordView};
use crate::endpoint::Endpoint;
use crate::probe::Probe;
use crate::promotion::LiveReplica;
use crate::zk::{Record, Zk};

/// What the Sentinels registered under `<root>/sentinels` say the master is:
/// each distinct answer with its number of votes, the newest configuration
/// epoch behind it, and whether it answers ROLE as master. Unreachable Sentinels and malformed answers are logged and
/// left out.
pub async fn sentinel_views(zk: &Zk, probe: &Probe, master_name: &str) -> Result<Vec<Candidate>, String> {
    let sentinels = zk
        .registered(&zk.sentinels_dir())
        .await
        .map_err(|e| format!("listing sentinels: {e}"))?;
    let mut asks = JoinSet::new();
    for (_, s) in sentinels {
        let (probe, name) = (probe.clone(), master_name.to_string());
        asks.spawn(async move { (probe.sentinel_view(&s, &name).await, s) });
    }
    // Per address: (votes, highest configuration epoch among its voters).
    let mut views: BTreeMap<Endpoint, (usize, u64)> = BTreeMap::new();
    while let Some(Ok((answer, sentinel))) = asks.join_next().await {
        match answer {
            Ok(Some((m, epoch))) => {
                let v = views.entry(m).or_default();
                v.0 += 1;
                v.1 = v.1.max(epoch);
            }
            Ok(None) => debug!(sentinel = %sentinel, "sentinel does not know the master name"),
            Err(e) => warn!(sentinel = %sentinel, error = %e, "sentinel did not answer"),
        }
    }
    let live = confirm_masters(probe, views.keys().cloned().collect()).await;
    Ok(views
        .into_iter()
        .map(|(addr, (votes, epoch))| Candidate {
            live_master: live.contains(&addr),
            addr,
            votes,
            epoch,
        })
        .collect())
}

/// The subset of `candidates` that answer ROLE as master, probed concurrently.
pub async fn confirm_masters(probe: &Probe, candidates: Vec<Endpoint>) -> Vec<Endpoint> {
    let mut checks = JoinSet::new();
    for c in candidates {
        let probe = probe.clone();
        checks.spawn(async move { probe.is_master(&c).await.then_some(c) });
    }
    let mut live = Vec::new();
    while let Some(r) = checks.join_next().await {
        if let Ok(Some(c)) = r {
            live.push(c);
        }
    }
    live.sort();
    live
}

/// The nodes among `candidates` that answer as replicas, with their
/// replication offset and priority (`INFO replication`), probed concurrently.
async fn replica_offsets(probe: &Probe, candidates: impl Iterator<Item = Endpoint>) -> Vec<LiveReplica> {
    let mut checks = JoinSet::new();
    for c in candidates {
        let probe = probe.clone();
        checks.spawn(async move {
            let info = probe.info(&c, "replication").await.ok()?;
            let get = |k: &str| info.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if get("role").as_deref() != Some("slave") {
                return None;
            }
            Some(LiveReplica {
                offset: get("slave_repl_offset")?.parse().ok()?,
                priority: get("slave_priority")?.parse().ok()?,
                addr: c,
            })
        });
    }
    let mut out = Vec::new();
    while let Some(r) = checks.join_next().await {
        if let Ok(Some(x)) = r {
            out.push(x);
        }
    }
    out.sort_by(|a, b| a.addr.cmp(&b.addr));
    out
}

/// Observes everything [`crate::decide::decide`] needs. Returns the raw
/// record too, whose version the caller uses for its CAS write.
pub async fn observe(
    zk: &Zk,
    probe: &Probe,
    me: &Endpoint,
    master_name: &str,
    grace_elapsed: bool,
) -> Result<(Observation, Record), String> {
    let record = zk
        .read_master()
        .await
        .map_err(|e| format!("reading {}: {e}", zk.master_path()))?;
    let sentinel_views = sentinel_views(zk, probe, master_name).await?;
    let record_view = RecordView::of(&record);
    let record_live = match record.master() {
        Some(m) if m != me => probe.is_master(m).await,
        _ => false,
    };
    let nodes = zk
        .registered(&zk.nodes_dir())
        .await
        .map_err(|e| format!("listing nodes: {e}"))?;
    let registered_nodes = nodes.len();
    let others: Vec<Endpoint> = nodes.into_iter().map(|(_, e)| e).filter(|e| e != me).collect();
    let registered_masters = confirm_masters(probe, others.clone()).await;
    let live_replicas = replica_offsets(probe, others.into_iter().filter(|e| !registered_masters.contains(e))).await;
    let o = Observation {
        me: me.clone(),
        record: record_view,
        record_live,
        sentinel_views,
        registered_masters,
        registered_nodes,
        grace_elapsed,
        live_replicas,
    };
    Ok((o, record))
}
