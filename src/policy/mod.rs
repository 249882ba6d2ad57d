//! Pure policies: each is a function from what was observed (plus the
//! little memory it needs, such as "stranded since") to what to do. No I/O,
//! so every case, including the ones the chaos and failover suites found,
//! is a table-driven unit test.

pub mod bootstrap;
pub mod diverged;
pub mod engine;
pub mod fence;
pub mod follow;
pub mod ghosts;
pub mod guard;
pub mod promotion;
pub mod reconcile;
pub mod speak;
pub mod switchover;

/// Snapshots for the policies' table tests: a group of `10.0.0.N:6379`
/// servers and `10.0.0.N:26379` Sentinels, built up case by case.
#[cfg(test)]
pub(crate) mod fixtures {
    use tokio::time::Instant;

    use crate::model::{Endpoint, Record, Role};
    use crate::reply::{ReplicaLine, SentinelAnswer, SentinelReplica, ServerState, Timing};
    use crate::snapshot::{SessionMark, Snapshot, ZkSession};

    pub fn ep(n: u16) -> Endpoint {
        Endpoint::new(format!("10.0.0.{n}"), 6379)
    }

    pub fn sentinel(n: u16) -> Endpoint {
        Endpoint::new(format!("10.0.0.{n}"), 26379)
    }

    /// A master `n` whose replicas `lines` are online at its offset.
    pub fn master_of(n: u16, lines: &[u16]) -> ServerState {
        ServerState {
            addr: ep(n),
            role: Role::Master,
            link_up: false,
            sync_in_progress: false,
            offset: 1000,
            priority: 0,
            last_io_s: None,
            replicas: lines
                .iter()
                .map(|r| ReplicaLine {
                    addr: ep(*r),
                    online: true,
                    offset: 1000,
                })
                .collect(),
            uptime_s: Some(1000),
            replid: "h1".into(),
            replid2: String::new(),
            second_offset: -1,
            backlog: None,
            engine: None,
        }
    }

    /// A master `n` with no replica lines.
    pub fn master(n: u16) -> ServerState {
        master_of(n, &[])
    }

    /// A synced replica `n` of `of`.
    pub fn replica(n: u16, of: u16) -> ServerState {
        ServerState {
            addr: ep(n),
            role: Role::Replica {
                master: ep(of),
                state: "up".into(),
            },
            link_up: true,
            sync_in_progress: false,
            offset: 1000,
            priority: 100,
            last_io_s: Some(0),
            replicas: vec![],
            uptime_s: Some(1000),
            replid: "h1".into(),
            replid2: String::new(),
            second_offset: -1,
            backlog: None,
            engine: None,
        }
    }

    /// Sentinel `s`'s calm answer naming master `m` at `epoch`.
    pub fn says(s: u16, m: u16, epoch: u64) -> SentinelAnswer {
        SentinelAnswer {
            sentinel: sentinel(s),
            master: ep(m),
            monitored: ep(m),
            epoch,
            peers: 2,
            replicas: 2,
            failover: false,
            promoting: false,
            master_down: false,
            dead_peers: None,
            timing: Timing {
                quorum: 2,
                down_after_ms: 1000,
                failover_timeout_ms: 5000,
                ..Timing::default()
            },
        }
    }

    /// Sentinel `s` would promote each of `replicas` (priority 100).
    pub fn would_promote(s: u16, replicas: &[u16]) -> (Endpoint, Vec<SentinelReplica>) {
        let view = replicas
            .iter()
            .map(|r| SentinelReplica {
                addr: ep(*r),
                priority: 100,
                healthy: true,
            })
            .collect();
        (sentinel(s), view)
    }

    /// An empty world seen by session 1.
    pub fn world() -> Snapshot {
        Snapshot::empty(Instant::now(), SessionMark(1), ZkSession::Connected)
    }

    /// A healthy group: master 1 (recorded, version 3), replicas 2 and 3,
    /// Sentinels 21..23 all naming 1 at epoch 1 and able to promote 2 and
    /// 3; `local` is server `me`.
    pub fn healthy(me: u16) -> Snapshot {
        let servers = vec![master_of(1, &[2, 3]), replica(2, 1), replica(3, 1)];
        Snapshot {
            record: Record::Valid {
                master: ep(1),
                version: 3,
            },
            nodes: vec![ep(1), ep(2), ep(3)],
            sentinels: vec![sentinel(21), sentinel(22), sentinel(23)],
            answers: vec![says(21, 1, 1), says(22, 1, 1), says(23, 1, 1)],
            sentinel_replicas: vec![
                would_promote(21, &[2, 3]),
                would_promote(22, &[2, 3]),
                would_promote(23, &[2, 3]),
            ],
            local: servers.iter().find(|s| s.addr == ep(me)).cloned(),
            servers,
            ..world()
        }
    }
}
