//! Which replica may become master: pure rules, unit-tested without servers.
//!
//! A replica in its first full sync holds nothing, or part of the data. If it
//! is promoted, by Sentinel after the master died, by a hand-over that could
//! not wait, or by a takeover, every other replica then syncs from it and the
//! data is gone everywhere. Patroni refuses to promote a replica that lags
//! more than `maximum_lag_on_failover`; we refuse one that has never
//! finished a sync since its server started.
//!
//! The mechanism is Redis' own `replica-priority`: a replica starts with 0,
//! which Sentinel never promotes, and its launcher restores the configured
//! priority once the first full sync is done. The other rules here read
//! that same mark, so Sentinel, the hand-over and the takeover agree.

use crate::model::{Endpoint, SentinelReplica};

/// What a server's own `INFO replication` says about its sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncState {
    /// `role:master`.
    pub master: bool,
    /// `master_link_status:up`: the replica is connected and has loaded
    /// the master's data (Redis reports `up` only after the full sync).
    pub link_up: bool,
    /// `master_sync_in_progress:1`.
    pub sync_in_progress: bool,
}

impl SyncState {
    /// Reads the fields from `INFO replication`; `None` when it is not a
    /// master's or replica's answer.
    pub fn from_info(info: &[(String, String)]) -> Option<SyncState> {
        let get = |k: &str| info.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        match get("role")? {
            "master" => Some(SyncState {
                master: true,
                link_up: false,
                sync_in_progress: false,
            }),
            "slave" => Some(SyncState {
                master: false,
                link_up: get("master_link_status") == Some("up"),
                sync_in_progress: get("master_sync_in_progress") == Some("1"),
            }),
            _ => None,
        }
    }

    /// The server holds a complete copy: it finished a full sync (or it is
    /// the master, whose data is by definition the group's).
    pub fn has_the_data(&self) -> bool {
        self.master || (self.link_up && !self.sync_in_progress)
    }
}

/// The launcher's gate: `synced` is whether its server has held the data
/// since it started. Returns the priority to set now, once, when the server
/// first holds the data; `None` when nothing changes.
pub fn priority_to_restore(synced: bool, now: SyncState, configured: u32) -> Option<u32> {
    (!synced && now.has_the_data()).then_some(configured)
}

/// Why a replica can't be promoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotPromotable {
    /// `replica-priority 0`: its first full sync has not finished (or the
    /// operator made it never promotable).
    PriorityZero,
    /// The master does not list it as `state=online`: it is still syncing.
    NotOnline,
    /// The Sentinels see it down, disconnected, or with its link down.
    DownForSentinel,
    /// The Sentinels do not know it yet, so they could not pick it.
    UnknownToSentinel,
}

impl NotPromotable {
    /// The reason in words, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            NotPromotable::PriorityZero => "replica-priority 0 (first full sync not finished)",
            NotPromotable::NotOnline => "the master does not list it online (still syncing)",
            NotPromotable::DownForSentinel => "the Sentinels see it down or its link down",
            NotPromotable::UnknownToSentinel => "the Sentinels do not know it yet",
        }
    }
}

/// A live replica of a lost master, as a takeover sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveReplica {
    /// Its address.
    pub addr: Endpoint,
    /// `slave_repl_offset`: how much of the old master's stream it has.
    pub offset: i64,
    /// `slave_priority`: 0 until its first full sync finished.
    pub priority: u32,
}

/// The replica a takeover promotes: the most up-to-date one among those
/// that hold the data (priority above 0), never `me`. `None` when no live
/// replica may be promoted.
pub fn takeover_candidate<'a>(replicas: &'a [LiveReplica], me: &Endpoint) -> Option<&'a LiveReplica> {
    replicas
        .iter()
        .filter(|r| r.addr != *me && r.priority > 0)
        .max_by(|a, b| a.offset.cmp(&b.offset).then(b.addr.cmp(&a.addr)))
}

/// One `slaveN:ip=…,port=…,state=online,offset=…,lag=…` line of the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLine {
    /// Its announced address.
    pub addr: Endpoint,
    /// `state=online`: the full sync is done, the stream flows.
    pub online: bool,
    /// How much of the master's stream it acknowledged.
    pub offset: i64,
}

impl ReplicaLine {
    /// Parses the value of a `slaveN` field; `None` for anything else.
    pub fn parse(v: &str) -> Option<ReplicaLine> {
        let field = |k: &str| v.split(',').find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='));
        let addr = Endpoint::parse(&format!("{} {}", field("ip")?, field("port")?)).ok()?;
        Some(ReplicaLine {
            addr,
            online: field("state")? == "online",
            offset: field("offset")?.parse().ok()?,
        })
    }
}

/// Whether the hand-over could give the role to `line` now, and if not, why.
pub fn handover_check(line: &ReplicaLine, sentinel: &[SentinelReplica]) -> Result<(), NotPromotable> {
    if !line.online {
        return Err(NotPromotable::NotOnline);
    }
    let s = sentinel
        .iter()
        .find(|s| s.addr == line.addr)
        .ok_or(NotPromotable::UnknownToSentinel)?;
    if s.priority == 0 {
        Err(NotPromotable::PriorityZero)
    } else if !s.healthy {
        Err(NotPromotable::DownForSentinel)
    } else {
        Ok(())
    }
}

/// One step of the hand-over, decided from the master's replica lines and
/// a Sentinel's view of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandOverStep {
    /// No replica may be promoted yet: wait (writes still flow) for one to
    /// finish its sync and for the Sentinels to see it. The reasons, per
    /// replica, are for the log.
    WaitForSyncedReplica(Vec<(Endpoint, NotPromotable)>),
    /// Candidates exist but have not all reached `master_offset`: wait.
    CatchUp,
    /// Ask for the failover: every candidate has every write (or, once
    /// `patience_over`, at least this one does).
    Failover(Endpoint),
}

/// Decides the hand-over's next step. Only candidates count: a replica the
/// Sentinels could not promote must neither hold up the hand-over nor be
/// the reason it proceeds.
pub fn handover_step(
    lines: &[ReplicaLine],
    sentinel: &[SentinelReplica],
    master_offset: i64,
    patience_over: bool,
) -> HandOverStep {
    let mut why_not = vec![];
    let mut candidates = vec![];
    for l in lines {
        match handover_check(l, sentinel) {
            Ok(()) => candidates.push(l),
            Err(e) => why_not.push((l.addr.clone(), e)),
        }
    }
    let Some(best) = candidates
        .iter()
        .max_by(|a, b| a.offset.cmp(&b.offset).then(b.addr.cmp(&a.addr)))
    else {
        return HandOverStep::WaitForSyncedReplica(why_not);
    };
    let complete = candidates.iter().filter(|c| c.offset >= master_offset).count();
    if complete == candidates.len() || (complete > 0 && patience_over) {
        HandOverStep::Failover(best.addr.clone())
    } else {
        HandOverStep::CatchUp
    }
}

/// The replica a hand-over should give the role to when several may take
/// it: the one that started last (`uptimes`: address and seconds up). In a
/// rolling restart the others are old tasks the orchestrator is about to
/// stop, and handing over to one of them means a second failover a moment
/// later. `None` when there is no choice to make.
pub fn preferred_successor(uptimes: &[(Endpoint, u64)]) -> Option<&Endpoint> {
    if uptimes.len() < 2 {
        return None;
    }
    uptimes
        .iter()
        .min_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)))
        .map(|(e, _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_youngest_replica_is_preferred() {
        assert_eq!(preferred_successor(&[(ep(2), 5)]), None);
        assert_eq!(preferred_successor(&[(ep(2), 500), (ep(3), 7)]), Some(&ep(3)));
        assert_eq!(preferred_successor(&[(ep(3), 7), (ep(2), 7)]), Some(&ep(2)));
    }

    fn ep(n: u16) -> Endpoint {
        Endpoint::new(format!("10.0.0.{n}"), 6379)
    }

    fn info(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn sync_state_from_info() {
        let syncing = info(&[
            ("role", "slave"),
            ("master_link_status", "down"),
            ("master_sync_in_progress", "1"),
        ]);
        let s = SyncState::from_info(&syncing).unwrap();
        assert!(!s.has_the_data());
        let done = info(&[
            ("role", "slave"),
            ("master_link_status", "up"),
            ("master_sync_in_progress", "0"),
        ]);
        assert!(SyncState::from_info(&done).unwrap().has_the_data());
        assert!(
            SyncState::from_info(&info(&[("role", "master")]))
                .unwrap()
                .has_the_data()
        );
        assert_eq!(SyncState::from_info(&info(&[("role", "sentinel")])), None);
        assert_eq!(SyncState::from_info(&info(&[])), None);
    }

    /// (already synced, role master, link up, sync in progress) → the
    /// priority to set now.
    #[test]
    fn priority_gate_table() {
        let cases: &[(bool, bool, bool, bool, Option<u32>)] = &[
            // Syncing, or link down before the first sync: stay at 0.
            (false, false, false, true, None),
            (false, false, false, false, None),
            (false, false, true, true, None),
            // First full sync done: restore, once.
            (false, false, true, false, Some(50)),
            (true, false, true, false, None),
            // Promoted by hand or by a takeover: it is the data now.
            (false, true, false, false, Some(50)),
            // Once synced, a later resync does not take the priority away.
            (true, false, false, true, None),
        ];
        for &(synced, master, link_up, sync_in_progress, want) in cases {
            let now = SyncState {
                master,
                link_up,
                sync_in_progress,
            };
            assert_eq!(priority_to_restore(synced, now, 50), want, "synced {synced}, {now:?}");
        }
    }

    fn live(n: u16, offset: i64, priority: u32) -> LiveReplica {
        LiveReplica {
            addr: ep(n),
            offset,
            priority,
        }
    }

    #[test]
    fn takeover_skips_unsynced_replicas() {
        let me = ep(9);
        // The unsynced replica has the highest offset it ever could (it
        // counts the stream it is receiving) but holds no data yet.
        let r = [live(1, 500, 100), live(2, 900, 0)];
        assert_eq!(takeover_candidate(&r, &me).map(|r| &r.addr), Some(&ep(1)));
        assert_eq!(takeover_candidate(&[live(2, 900, 0)], &me), None);
        assert_eq!(takeover_candidate(&[], &me), None);
        // Never this task itself.
        assert_eq!(takeover_candidate(&[live(9, 900, 100)], &me), None);
        // Ties on offset go to the lowest address, so every launcher agrees.
        let r = [live(3, 700, 100), live(1, 700, 100), live(2, 100, 100)];
        assert_eq!(takeover_candidate(&r, &me).map(|r| &r.addr), Some(&ep(1)));
    }

    fn line(n: u16, online: bool, offset: i64) -> ReplicaLine {
        ReplicaLine {
            addr: ep(n),
            online,
            offset,
        }
    }

    fn seen(n: u16, priority: u32, healthy: bool) -> SentinelReplica {
        SentinelReplica {
            addr: ep(n),
            priority,
            healthy,
        }
    }

    #[test]
    fn parses_replica_lines() {
        assert_eq!(
            ReplicaLine::parse("ip=10.0.0.2,port=6380,state=online,offset=1234,lag=0"),
            Some(ReplicaLine {
                addr: Endpoint::new("10.0.0.2", 6380),
                online: true,
                offset: 1234
            })
        );
        assert_eq!(
            ReplicaLine::parse("ip=10.0.0.2,port=6380,state=wait_bgsave,offset=0,lag=0").map(|r| r.online),
            Some(false)
        );
        assert_eq!(ReplicaLine::parse("garbage"), None);
        assert_eq!(ReplicaLine::parse("ip=x y,port=1,state=online,offset=1"), None);
    }

    #[test]
    fn parses_sentinel_replicas() {
        let f = info(&[
            ("name", "10.0.0.2:6380"),
            ("ip", "10.0.0.2"),
            ("port", "6380"),
            ("flags", "slave"),
            ("master-link-status", "ok"),
            ("slave-priority", "100"),
        ]);
        assert_eq!(
            SentinelReplica::from_fields(&f),
            Some(SentinelReplica {
                addr: Endpoint::new("10.0.0.2", 6380),
                priority: 100,
                healthy: true
            })
        );
        let mut down = f.clone();
        down[3].1 = "s_down,slave,disconnected".into();
        assert!(!SentinelReplica::from_fields(&down).unwrap().healthy);
        let mut link = f.clone();
        link[4].1 = "err".into();
        assert!(!SentinelReplica::from_fields(&link).unwrap().healthy);
        assert_eq!(SentinelReplica::from_fields(&f[..5]), None, "no priority, no verdict");
        assert_eq!(SentinelReplica::from_fields(&[]), None);
    }

    #[test]
    fn handover_with_no_complete_replica_waits_and_says_why() {
        // Both replicas in their first full sync (the rolling-restart case).
        let lines = [line(1, false, 0), line(2, false, 0)];
        let sentinel = [seen(1, 0, false), seen(2, 0, false)];
        assert_eq!(
            handover_step(&lines, &sentinel, 1000, true),
            HandOverStep::WaitForSyncedReplica(vec![
                (ep(1), NotPromotable::NotOnline),
                (ep(2), NotPromotable::NotOnline)
            ])
        );
        // Online for the master, but its launcher has not restored the
        // priority yet, or the Sentinels have not seen it do so.
        let lines = [line(1, true, 1000)];
        assert_eq!(
            handover_step(&lines, &[seen(1, 0, true)], 1000, true),
            HandOverStep::WaitForSyncedReplica(vec![(ep(1), NotPromotable::PriorityZero)])
        );
        assert_eq!(
            handover_step(&lines, &[], 1000, true),
            HandOverStep::WaitForSyncedReplica(vec![(ep(1), NotPromotable::UnknownToSentinel)])
        );
        assert_eq!(
            handover_step(&lines, &[seen(1, 100, false)], 1000, true),
            HandOverStep::WaitForSyncedReplica(vec![(ep(1), NotPromotable::DownForSentinel)])
        );
        assert_eq!(
            handover_step(&[], &[], 1000, true),
            HandOverStep::WaitForSyncedReplica(vec![])
        );
    }

    #[test]
    fn handover_with_one_complete_replica_ignores_the_syncing_one() {
        let lines = [line(1, true, 1000), line(2, false, 0)];
        let sentinel = [seen(1, 100, true), seen(2, 0, true)];
        // The syncing replica neither holds up the hand-over...
        assert_eq!(
            handover_step(&lines, &sentinel, 1000, false),
            HandOverStep::Failover(ep(1))
        );
        // ...nor is the complete one handed over before it caught up.
        let behind = [line(1, true, 900), line(2, false, 0)];
        assert_eq!(handover_step(&behind, &sentinel, 1000, true), HandOverStep::CatchUp);
    }

    #[test]
    fn handover_with_two_complete_replicas_waits_for_both_until_patience_ends() {
        let sentinel = [seen(1, 100, true), seen(2, 100, true)];
        let both = [line(1, true, 1000), line(2, true, 1000)];
        assert_eq!(
            handover_step(&both, &sentinel, 1000, false),
            HandOverStep::Failover(ep(1))
        );
        let one_lags = [line(1, true, 1000), line(2, true, 400)];
        assert_eq!(handover_step(&one_lags, &sentinel, 1000, false), HandOverStep::CatchUp);
        assert_eq!(
            handover_step(&one_lags, &sentinel, 1000, true),
            HandOverStep::Failover(ep(1))
        );
        let other_leads = [line(1, true, 400), line(2, true, 1000)];
        assert_eq!(
            handover_step(&other_leads, &sentinel, 1000, true),
            HandOverStep::Failover(ep(2))
        );
        let none_complete = [line(1, true, 400), line(2, true, 500)];
        assert_eq!(
            handover_step(&none_complete, &sentinel, 1000, true),
            HandOverStep::CatchUp
        );
    }
}
