//! `rzkctl switchover`: whether a planned change of master may start, and
//! to whom. Decided from one snapshot before anything is touched, so that a
//! refusal changes nothing.

use crate::model::{Endpoint, Record, Role};
use crate::observe::Snapshot;
use crate::policy::status::replica_not_promotable;

/// What the switchover will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The master now (the record names it and it answers as master).
    pub master: Endpoint,
    /// The replica that must win (`--to`), or `None`: Sentinel picks among
    /// the promotable replicas.
    pub target: Option<Endpoint>,
    /// Replicas made unpromotable for the duration (`--to` only), with the
    /// priority to restore.
    pub hold_back: Vec<(Endpoint, u32)>,
}

/// Plans a switchover away from the recorded master; `to` must be one of its
/// registered, linked, synced, promotable replicas. `Err` says why not.
pub fn plan(snap: &Snapshot, to: Option<&Endpoint>) -> Result<Plan, String> {
    let master = match &snap.record {
        Record::Valid { master, .. } if snap.is_live_master(master) => master.clone(),
        Record::Valid { master, .. } => return Err(format!("the recorded master {master} does not answer as master")),
        _ => return Err("the record names no master".into()),
    };
    let replicas: Vec<_> = snap
        .nodes
        .iter()
        .filter_map(|n| snap.server(n))
        .filter(|s| matches!(&s.role, Role::Replica { master: m, .. } if *m == master))
        .collect();
    let promotable =
        |s: &&crate::observe::ServerState| replica_not_promotable(s.link_up, s.sync_in_progress, s.priority).is_none();
    if snap.sentinels.is_empty() {
        return Err("no Sentinel is registered to fail over".into());
    }
    let Some(to) = to else {
        if !replicas.iter().any(promotable) {
            return Err(format!("{master} has no promotable replica"));
        }
        return Ok(Plan {
            master,
            target: None,
            hold_back: vec![],
        });
    };
    if *to == master {
        return Err(format!("{to} is already the master"));
    }
    if !snap.nodes.contains(to) {
        return Err(format!("{to} is not a registered redis node"));
    }
    let Some(t) = snap.server(to) else {
        return Err(format!("{to} does not answer"));
    };
    match &t.role {
        Role::Replica { master: m, .. } if *m == master => {}
        Role::Replica { master: m, .. } => return Err(format!("{to} is a replica of {m}, not of the master {master}")),
        _ => return Err(format!("{to} is not a replica")),
    }
    if let Some(why) = replica_not_promotable(t.link_up, t.sync_in_progress, t.priority) {
        return Err(format!("{to} cannot be promoted: {}", why.as_str()));
    }
    let hold_back = replicas
        .iter()
        .filter(|s| s.addr != *to && s.priority > 0)
        .map(|s| (s.addr.clone(), s.priority))
        .collect();
    Ok(Plan {
        master,
        target: Some(to.clone()),
        hold_back,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::*;

    #[test]
    fn to_a_synced_replica_holds_the_others_back() {
        let p = plan(&healthy(9), Some(&ep(2))).unwrap();
        assert_eq!(p.master, ep(1));
        assert_eq!(p.target, Some(ep(2)));
        assert_eq!(p.hold_back, vec![(ep(3), 100)]);
        let p = plan(&healthy(9), None).unwrap();
        assert_eq!((p.target, p.hold_back.len()), (None, 0));
    }

    #[test]
    fn refusals_name_the_reason() {
        let s = healthy(9);
        assert!(plan(&s, Some(&ep(1))).unwrap_err().contains("already the master"));
        assert!(plan(&s, Some(&ep(7))).unwrap_err().contains("not a registered"));
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
    }
}
