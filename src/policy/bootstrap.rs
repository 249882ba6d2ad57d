//! The master-selection decision: a pure function of what was observed.
//!
//! Keeping it free of I/O means every branch, including the dangerous ones
//! (takeover, garbage records, disagreeing Sentinels), is unit-tested without
//! servers, and the launcher's loop reads as observe, decide, act.

use crate::model::{Candidate, Endpoint, Role};
use crate::policy::promotion::takeover_candidate;
use crate::reply::ServerState;
use crate::snapshot::Snapshot;

/// Everything one look at the world found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// This task's announced address. It is never its own master.
    pub me: Endpoint,
    /// The master `<root>/master` names (`None`: no node, or garbage,
    /// already logged by whoever read it).
    pub record: Option<Endpoint>,
    /// Whether the record's address answered `ROLE` master.
    pub record_live: bool,
    /// What the registered Sentinels named, with votes and ROLE results.
    pub sentinel_views: Vec<Candidate>,
    /// Registered redis nodes (`<root>/nodes`) that answered `ROLE` master.
    pub registered_masters: Vec<ServerState>,
    /// How many redis nodes are registered at all.
    pub registered_nodes: usize,
    /// Registered nodes that answer as replicas (their replication offset
    /// and priority), `NOFAILOVER` ones left out: after a lost master, the
    /// data lives there.
    pub live_replicas: Vec<ServerState>,
    /// Every server that answered as a replica, this task's own and
    /// `NOFAILOVER` ones included: their histories tell a stale master
    /// ([`superseded_by`]).
    pub histories: Vec<ServerState>,
    /// `TAKEOVER_GRACE_S` has passed since the first sign of a lost master.
    pub grace_elapsed: bool,
    /// This task runs with `NOFAILOVER=true`: it never becomes master.
    pub nofailover: bool,
    /// The replica this task promoted in a takeover, if it answers as
    /// master: the takeover's master, followed whatever holds the others
    /// back (a pause that began since).
    pub promoted: Option<Endpoint>,
}

impl Observation {
    /// What the decision needs from `snap`, seen from task `me`.
    pub fn from_snapshot(snap: &Snapshot, me: &Endpoint, grace_elapsed: bool) -> Observation {
        let others: Vec<&Endpoint> = snap.nodes.iter().filter(|e| *e != me).collect();
        let registered_masters = others
            .iter()
            .filter_map(|e| snap.server(e))
            .filter(|s| s.is_master())
            .cloned()
            .collect();
        let live_replicas = others
            .iter()
            .filter(|e| !snap.nofailover.contains(e))
            .filter_map(|e| snap.server(e))
            .filter(|s| !s.is_master())
            .cloned()
            .collect();
        Observation {
            me: me.clone(),
            record: snap.record.master().cloned(),
            record_live: snap.record.master().is_some_and(|m| m != me && snap.is_live_master(m)),
            sentinel_views: snap.sentinel_views(),
            registered_masters,
            registered_nodes: snap.nodes.len(),
            live_replicas,
            histories: snap.servers.iter().filter(|s| !s.is_master()).cloned().collect(),
            grace_elapsed,
            nofailover: snap.nofailover.contains(me),
            promoted: None,
        }
    }
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run as a replica of `master`. `fix_record` when the record does not
    /// name it (a CAS write repairs it).
    Replicate { master: Endpoint, fix_record: bool },
    /// Run as master and write the record. `takeover` when a group existed
    /// and lost its master without a failover: worth a loud warning.
    BecomeMaster { takeover: bool },
    /// The group lost its master and no Sentinel replaced it, but a live
    /// replica holds the data: promote it (the one with the highest
    /// replication offset) and replicate from it.
    Promote { replica: Endpoint },
    /// A group exists but shows no live master: re-check until the grace
    /// period ends, so that a failover in progress can finish.
    Wait,
    /// This task would have to become master but runs with
    /// `NOFAILOVER=true`: let go of the lock, so that a task that may
    /// become master decides, and look again later.
    Yield,
}

/// The live master the Sentinels name: the newest configuration epoch
/// first (so a Sentinel that has not yet heard of a failover cannot win with
/// a stale answer), then most votes, then the one the record names
/// (`named`), then the lowest address, so every launcher and watcher that
/// sees the same answers picks the same master. `exclude` (this task) is
/// never chosen.
pub fn sentinels_choice(views: &[Candidate], named: Option<&Endpoint>, exclude: Option<&Endpoint>) -> Option<Endpoint> {
    views
        .iter()
        .filter(|c| c.live_master && Some(&c.addr) != exclude)
        .max_by(|a, b| {
            let rec = |c: &Candidate| named == Some(&c.addr);
            a.epoch
                .cmp(&b.epoch)
                .then(a.votes.cmp(&b.votes))
                .then(rec(a).cmp(&rec(b)))
                .then(b.addr.cmp(&a.addr))
        })
        .map(|c| c.addr.clone())
}

/// Chooses the master. Sources, in order of trust:
/// 1. a live master the Sentinels name (most votes wins);
/// 2. the record, if it answers as master;
/// 3. the replica this task promoted in a takeover, if it answers as master;
/// 4. a registered node that answers as master (guards against a second
///    master when the record is garbage or missing but a group runs). When
///    the record names a dead master, only once the grace period is over:
///    until then the Sentinels may still fail the recorded master over, and
///    a master nobody names may be a stale one (fenced after a partition,
///    not yet demoted) that must not be followed nor written to the record.
///    Never one that a live replica's history has superseded
///    ([`superseded_by`]) when a replica of the newer history can be promoted
///    instead, or when this task's own server holds that history: it holds
///    writes the master never had.
///
/// Without a live master: an empty world is a fresh group; any sign of a
/// group (a record, Sentinels with an opinion, registered nodes) means a
/// lost master, taken over only after the grace period. A task with
/// `NOFAILOVER=true` never becomes master: it yields instead (it may still
/// promote another replica in a takeover).
pub fn decide(o: &Observation) -> Decision {
    match decide_any(o) {
        Decision::BecomeMaster { .. } if o.nofailover => Decision::Yield,
        d => d,
    }
}

fn decide_any(o: &Observation) -> Decision {
    let not_me = |e: &Endpoint| *e != o.me;
    let from_sentinels = sentinels_choice(&o.sentinel_views, o.record.as_ref(), Some(&o.me));
    let from_record = o.record.clone().filter(|r| o.record_live && not_me(r));
    // The takeover's choice: never a replica left on a history that another
    // has moved past, whatever its offset (offsets after a fork do not
    // compare).
    let current: Vec<&ServerState> = o
        .live_replicas
        .iter()
        .filter(|r| superseded_by(r, &o.histories).next().is_none())
        .collect();
    let takeover = takeover_candidate(&current, &o.me);
    let stale = |m: &ServerState| {
        let mut by = superseded_by(m, &o.histories).peekable();
        by.peek().is_some() && (takeover.is_some() || by.any(|r| r.addr == o.me))
    };
    let nodes_trusted = o.record.is_none() || o.grace_elapsed;
    let from_nodes = o
        .registered_masters
        .iter()
        .filter(|m| nodes_trusted && not_me(&m.addr) && !stale(m))
        .map(|m| &m.addr)
        .min()
        .cloned();
    let from_takeover = o.promoted.clone().filter(not_me);
    if let Some(master) = from_sentinels.or(from_record).or(from_takeover).or(from_nodes) {
        let fix_record = o.record.as_ref() != Some(&master);
        return Decision::Replicate { master, fix_record };
    }
    let group_exists = o.record.is_some() || !o.sentinel_views.is_empty() || o.registered_nodes > 0;
    if !group_exists {
        Decision::BecomeMaster { takeover: false }
    } else if o.grace_elapsed {
        // Never take over with this node's own (likely empty) data while a
        // replica of the lost master still holds it: promote the most
        // up-to-date one instead, or the others would resync from nothing.
        // A replica still in its first full sync holds nothing and is
        // skipped, as Sentinel skips it.
        match takeover {
            Some(r) => Decision::Promote {
                replica: r.addr.clone(),
            },
            None => Decision::BecomeMaster { takeover: true },
        }
    } else {
        Decision::Wait
    }
}

/// The replicas whose history has moved past server `m`'s: each one's
/// `master_replid2` is `m`'s `master_replid` (a server was promoted out of
/// `m`'s history since), it holds data of the newer history (its offset
/// reached `second_repl_offset`), and it does not replicate from `m` (a
/// replica put back under `m`, waiting for its full sync, shows the same
/// ids). `m` is then stale, a master fenced after a partition and not yet
/// demoted, say: following it would resync those replicas from it and
/// drop the newer writes.
pub fn superseded_by<'a>(m: &'a ServerState, replicas: &'a [ServerState]) -> impl Iterator<Item = &'a ServerState> {
    replicas.iter().filter(move |r| {
        !m.replid.is_empty()
            && r.addr != m.addr
            && r.replid2 == m.replid
            && r.offset >= r.second_offset
            && !matches!(&r.role, Role::Replica { master, .. } if *master == m.addr)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::master;

    fn ep(n: u16) -> Endpoint {
        Endpoint::new(format!("10.0.0.{n}"), 6379)
    }

    fn live(n: u16, offset: i64, priority: u32) -> ServerState {
        ServerState {
            offset,
            priority,
            ..crate::policy::fixtures::replica(n, 1)
        }
    }

    fn world() -> Observation {
        Observation {
            me: ep(9),
            record: None,
            record_live: false,
            sentinel_views: vec![],
            registered_masters: vec![],
            registered_nodes: 0,
            grace_elapsed: false,
            live_replicas: vec![],
            histories: vec![],
            nofailover: false,
            promoted: None,
        }
    }

    #[test]
    fn a_nofailover_task_never_becomes_master() {
        let nofailover = |o: Observation| Observation { nofailover: true, ..o };
        // A fresh group: it lets a task that may be master bootstrap it.
        assert_eq!(decide(&nofailover(world())), Decision::Yield);
        // A lost group with nobody to promote: no takeover by it.
        let lost = Observation {
            record: Some(ep(1)),
            registered_nodes: 2,
            grace_elapsed: true,
            ..world()
        };
        assert_eq!(decide(&lost), Decision::BecomeMaster { takeover: true });
        assert_eq!(decide(&nofailover(lost.clone())), Decision::Yield);
        // It still promotes a replica that holds the data, and follows a
        // live master.
        let with_replica = Observation {
            live_replicas: vec![live(3, 10, 100)],
            ..lost.clone()
        };
        assert_eq!(decide(&nofailover(with_replica)), Decision::Promote { replica: ep(3) });
        let live_master = Observation {
            record_live: true,
            ..lost
        };
        assert_eq!(
            decide(&nofailover(live_master)),
            Decision::Replicate {
                master: ep(1),
                fix_record: false
            }
        );
    }

    fn cand(n: u16, votes: usize, live: bool) -> Candidate {
        Candidate {
            addr: ep(n),
            votes,
            live_master: live,
            epoch: 0,
        }
    }

    #[test]
    fn fresh_group_bootstraps() {
        assert_eq!(decide(&world()), Decision::BecomeMaster { takeover: false });
    }

    #[test]
    fn garbage_record_alone_is_a_fresh_group() {
        let o = Observation {
            record: None, // garbage
            ..world()
        };
        assert_eq!(decide(&o), Decision::BecomeMaster { takeover: false });
    }

    #[test]
    fn live_record_is_followed() {
        let o = Observation {
            record: Some(ep(1)),
            record_live: true,
            ..world()
        };
        assert_eq!(
            decide(&o),
            Decision::Replicate {
                master: ep(1),
                fix_record: false
            }
        );
    }

    #[test]
    fn sentinels_beat_the_record_and_fix_it() {
        let o = Observation {
            record: Some(ep(1)),
            record_live: true,
            sentinel_views: vec![cand(2, 3, true)],
            ..world()
        };
        assert_eq!(
            decide(&o),
            Decision::Replicate {
                master: ep(2),
                fix_record: true
            }
        );
    }

    #[test]
    fn unconfirmed_sentinel_answer_is_ignored() {
        let o = Observation {
            record: Some(ep(1)),
            record_live: true,
            sentinel_views: vec![cand(2, 3, false)],
            ..world()
        };
        assert_eq!(
            decide(&o),
            Decision::Replicate {
                master: ep(1),
                fix_record: false
            }
        );
    }

    #[test]
    fn most_votes_then_record_wins() {
        let o = Observation {
            record: Some(ep(3)),
            sentinel_views: vec![cand(2, 1, true), cand(3, 1, true), cand(4, 2, true)],
            ..world()
        };
        assert_eq!(
            decide(&o),
            Decision::Replicate {
                master: ep(4),
                fix_record: true
            }
        );
        let o = Observation {
            sentinel_views: vec![cand(2, 1, true), cand(3, 1, true)],
            ..o
        };
        assert_eq!(
            decide(&o),
            Decision::Replicate {
                master: ep(3),
                fix_record: false
            }
        );
    }

    #[test]
    fn a_newer_epoch_beats_more_stale_votes() {
        // Right after a failover: the leader names 2 (epoch 5), two Sentinels
        // still name 1 (epoch 4), and 1 still answers as master for a moment.
        let o = Observation {
            record: Some(ep(1)),
            sentinel_views: vec![
                Candidate {
                    epoch: 4,
                    ..cand(1, 2, true)
                },
                Candidate {
                    epoch: 5,
                    ..cand(2, 1, true)
                },
            ],
            ..world()
        };
        assert_eq!(
            decide(&o),
            Decision::Replicate {
                master: ep(2),
                fix_record: true
            }
        );
    }

    #[test]
    fn dead_record_waits_then_takes_over() {
        let o = Observation {
            record: Some(ep(1)),
            ..world()
        };
        assert_eq!(decide(&o), Decision::Wait);
        let o = Observation {
            grace_elapsed: true,
            ..o
        };
        assert_eq!(decide(&o), Decision::BecomeMaster { takeover: true });
    }

    #[test]
    fn takeover_promotes_the_most_up_to_date_live_replica() {
        let o = Observation {
            record: Some(ep(1)),
            registered_nodes: 2,
            live_replicas: vec![live(2, 100, 100), live(3, 250, 100), live(9, 999, 100)],
            grace_elapsed: true,
            ..world()
        };
        assert_eq!(decide(&o), Decision::Promote { replica: ep(3) });
        // A replica in its first full sync (priority 0) is never promoted,
        // however far its offset got; with no other, this task takes over.
        let unsynced = Observation {
            live_replicas: vec![live(2, 100, 100), live(3, 250, 0)],
            ..o.clone()
        };
        assert_eq!(decide(&unsynced), Decision::Promote { replica: ep(2) });
        let only_unsynced = Observation {
            live_replicas: vec![live(3, 250, 0)],
            ..o.clone()
        };
        assert_eq!(decide(&only_unsynced), Decision::BecomeMaster { takeover: true });
        let o = Observation {
            grace_elapsed: false,
            ..o
        };
        assert_eq!(decide(&o), Decision::Wait);
    }

    #[test]
    fn never_follows_itself() {
        let o = Observation {
            record: Some(ep(9)),
            record_live: true,
            sentinel_views: vec![cand(9, 3, true)],
            registered_masters: vec![master(9)],
            registered_nodes: 1,
            ..world()
        };
        assert_eq!(decide(&o), Decision::Wait);
    }

    #[test]
    fn registered_master_prevents_a_second_master() {
        let o = Observation {
            record: None, // garbage
            registered_masters: vec![master(5)],
            registered_nodes: 2,
            ..world()
        };
        assert_eq!(
            decide(&o),
            Decision::Replicate {
                master: ep(5),
                fix_record: true
            }
        );
    }

    #[test]
    fn a_master_nobody_names_waits_behind_a_dead_record() {
        // The record names a dead master; a registered node answers as
        // master but neither the record nor any Sentinel names it: a stale
        // master, say. The Sentinels get the grace to fail the recorded one
        // over, and whom they name is followed.
        let stale = Observation {
            record: Some(ep(1)),
            registered_masters: vec![master(5)],
            registered_nodes: 3,
            ..world()
        };
        assert_eq!(decide(&stale), Decision::Wait);
        let failed_over = Observation {
            sentinel_views: vec![cand(7, 3, true)],
            ..stale.clone()
        };
        assert_eq!(
            decide(&failed_over),
            Decision::Replicate {
                master: ep(7),
                fix_record: true
            }
        );
        // After the grace, as before: no second master beside it.
        let late = Observation {
            grace_elapsed: true,
            ..stale
        };
        assert_eq!(
            decide(&late),
            Decision::Replicate {
                master: ep(5),
                fix_record: true
            }
        );
    }

    #[test]
    fn the_replica_this_task_promoted_is_followed_through_a_pause() {
        // This task promoted 3 in a takeover; a pause began since, so the
        // grace reads as not over and the dead record would mean Wait.
        let paused = Observation {
            record: Some(ep(1)),
            registered_masters: vec![master(3), master(2)],
            registered_nodes: 3,
            ..world()
        };
        assert_eq!(decide(&paused), Decision::Wait);
        let promoted = Observation {
            promoted: Some(ep(3)),
            ..paused
        };
        let follow3 = Decision::Replicate {
            master: ep(3),
            fix_record: true,
        };
        assert_eq!(decide(&promoted), follow3);
        // After the grace too, before a lower-addressed master nobody names.
        let late = Observation {
            grace_elapsed: true,
            ..promoted.clone()
        };
        assert_eq!(decide(&late), follow3);
        // The Sentinels still win: they may have failed it over since.
        let named = Observation {
            sentinel_views: vec![cand(4, 3, true)],
            ..promoted
        };
        assert_eq!(
            decide(&named),
            Decision::Replicate {
                master: ep(4),
                fix_record: true
            }
        );
    }

    #[test]
    fn a_superseded_master_is_not_followed() {
        // 5 is a stale master on history h1; replica 3 moved on to h2 (its
        // master 1, promoted out of h1, is the dead recorded one).
        let newer = ServerState {
            replid: "h2".into(),
            replid2: "h1".into(),
            second_offset: 900,
            ..live(3, 1500, 100)
        };
        let seen = |rs: Vec<ServerState>| Observation {
            record: Some(ep(1)),
            registered_masters: vec![master(5)],
            registered_nodes: 4,
            live_replicas: rs.iter().filter(|r| r.addr != ep(9)).cloned().collect(),
            histories: rs,
            grace_elapsed: true,
            ..world()
        };
        let follow5 = Decision::Replicate {
            master: ep(5),
            fix_record: true,
        };
        assert_eq!(decide(&seen(vec![newer.clone()])), Decision::Promote { replica: ep(3) });
        // A replica left on h1 behind 5 is never the takeover's choice,
        // however far its offset got: offsets after a fork do not compare.
        let left_behind = ServerState {
            role: Role::Replica {
                master: ep(5),
                state: "up".into(),
            },
            ..live(4, 5000, 100)
        };
        assert_eq!(
            decide(&seen(vec![newer.clone(), left_behind])),
            Decision::Promote { replica: ep(3) }
        );
        // Not superseded: a replica on 5's own history; one whose newer
        // history holds nothing yet; one put back under 5, waiting for its
        // full sync (same ids).
        let nothing_new = ServerState {
            offset: 899,
            ..newer.clone()
        };
        let put_back = ServerState {
            role: Role::Replica {
                master: ep(5),
                state: "connect".into(),
            },
            ..newer.clone()
        };
        for r in [live(3, 1500, 100), nothing_new, put_back] {
            assert_eq!(decide(&seen(vec![r])), follow5);
        }
        // With no replica of the newer history to promote, 5 is still
        // better than this task's empty data.
        let unpromotable = ServerState {
            priority: 0,
            ..newer.clone()
        };
        assert_eq!(decide(&seen(vec![unpromotable])), follow5);
        // But this task's own server, holding the newer history, never
        // follows 5 (a stranded replica's guard): it waits.
        let mine = ServerState { addr: ep(9), ..newer };
        let guard = Observation {
            record: None,
            grace_elapsed: false,
            ..seen(vec![mine])
        };
        assert_eq!(decide(&guard), Decision::Wait);
    }

    #[test]
    fn orphaned_replicas_or_sentinel_opinions_mean_grace() {
        let o = Observation {
            registered_nodes: 2,
            ..world()
        };
        assert_eq!(decide(&o), Decision::Wait);
        let o = Observation {
            sentinel_views: vec![cand(1, 2, false)],
            record: None, // garbage
            ..world()
        };
        assert_eq!(decide(&o), Decision::Wait);
    }
}
