//! Fencing: a master that nobody can confirm stops taking writes.
//!
//! A master cut off from the group by a partition keeps acknowledging the
//! writes of clients on its side, and `min-replicas-to-write` does not stop
//! it when a replica is cut off with it. Meanwhile the Sentinels fail over;
//! on healing the old master is demoted and every write it took since the
//! cut is gone. Patroni's answer is a leader lease: a leader that cannot
//! renew its key in the DCS within its TTL demotes itself. redis-zk has two
//! independent witnesses, so a master needs one of them at least every
//! `FENCE_AFTER_MS`:
//!
//! - ZooKeeper: the session is connected and `<root>/master` names it;
//! - the Sentinels: a majority of the registered ones (the last list seen)
//!   answer and name it.
//!
//! When neither has held for `FENCE_AFTER_MS`, the launcher makes the server
//! refuse writes (raising `min-replicas-to-write` above any possible count,
//! so clients get `-NOREPLICAS`); when a witness names it again the fence is
//! lifted. A ZooKeeper outage alone never fences while the Sentinels
//! confirm, nor does losing every Sentinel while ZooKeeper confirms.
//!
//! The clock starts when the server is first seen as master, so a replica
//! just promoted has `FENCE_AFTER_MS` for the record and the Sentinels to
//! catch up with it.

use std::time::Duration;

use tokio::time::Instant;

use crate::model::Endpoint;

/// What the two witnesses said in one look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Witnesses {
    /// ZooKeeper: `Some(record's master)` when the session is connected and
    /// the record was read in time (`Some(None)`: no usable record); `None`
    /// when ZooKeeper could not be asked.
    pub zk: Option<Option<Endpoint>>,
    /// How many Sentinels are registered (the last list seen).
    pub registered: usize,
    /// The answer of each registered Sentinel that answered in time.
    pub sentinels: Vec<Endpoint>,
}

impl Witnesses {
    /// Whether at least one witness confirms `me` as the master.
    pub fn confirm(&self, me: &Endpoint) -> bool {
        let by_zk = matches!(&self.zk, Some(Some(m)) if m == me);
        let votes = self.sentinels.iter().filter(|m| *m == me).count();
        let by_sentinels = self.registered > 0 && votes * 2 > self.registered;
        by_zk || by_sentinels
    }

    /// Why `me` is not confirmed, in words, for the log line of a fence.
    pub fn why_not(&self, me: &Endpoint) -> String {
        let zk = match &self.zk {
            None => "ZooKeeper unreachable".to_string(),
            Some(None) => "the record names no master".to_string(),
            Some(Some(m)) if m == me => "the record names this server".to_string(),
            Some(Some(m)) => format!("the record names {m}"),
        };
        let votes = self.sentinels.iter().filter(|m| *m == me).count();
        format!(
            "{zk}; {votes} of {} registered Sentinels name this server ({} answered)",
            self.registered,
            self.sentinels.len()
        )
    }
}

/// What the fence remembers between looks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FenceMemory {
    /// When a witness last confirmed this master (or when it was first seen
    /// as master); `None` while it is not a master.
    pub confirmed_at: Option<Instant>,
    /// Whether the server is fenced now.
    pub fenced: bool,
}

/// What to do after a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceAction {
    /// Nothing changes.
    Keep,
    /// Make the server refuse writes: unconfirmed for this long.
    Fence(Duration),
    /// Let it take writes again (a witness confirms it, or it is no longer
    /// master and must not keep the setting if it is promoted later).
    Lift,
}

/// One step of the fence: `master` is whether the local server answers as
/// master now, `confirmed` whether a witness confirms it. `after` is
/// `FENCE_AFTER_MS`; `None` disables fencing.
pub fn fence_step(
    master: bool,
    confirmed: bool,
    now: Instant,
    after: Option<Duration>,
    mem: &mut FenceMemory,
) -> FenceAction {
    if !master {
        mem.confirmed_at = None;
        return if std::mem::take(&mut mem.fenced) {
            FenceAction::Lift
        } else {
            FenceAction::Keep
        };
    }
    let since = *mem.confirmed_at.get_or_insert(now);
    if confirmed {
        mem.confirmed_at = Some(now);
        return if std::mem::take(&mut mem.fenced) {
            FenceAction::Lift
        } else {
            FenceAction::Keep
        };
    }
    let Some(after) = after else {
        return FenceAction::Keep;
    };
    let unconfirmed = now.saturating_duration_since(since);
    if !mem.fenced && unconfirmed >= after {
        mem.fenced = true;
        FenceAction::Fence(unconfirmed)
    } else {
        FenceAction::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::ep;

    fn w(zk: Option<Option<Endpoint>>, registered: usize, sentinels: &[Endpoint]) -> Witnesses {
        Witnesses {
            zk,
            registered,
            sentinels: sentinels.to_vec(),
        }
    }

    #[test]
    fn either_witness_confirms() {
        let me = ep(1);
        // ZooKeeper alone.
        assert!(w(Some(Some(ep(1))), 3, &[]).confirm(&me));
        // A majority of the registered Sentinels alone.
        assert!(w(None, 3, &[ep(1), ep(1)]).confirm(&me));
        assert!(w(Some(None), 1, &[ep(1)]).confirm(&me));
        // Not a majority: 2 of 4, or 1 of 3 with the others silent.
        assert!(!w(None, 4, &[ep(1), ep(1), ep(2)]).confirm(&me));
        assert!(!w(None, 3, &[ep(1)]).confirm(&me));
        // The record names another, the Sentinels are split.
        assert!(!w(Some(Some(ep(2))), 3, &[ep(1), ep(2), ep(2)]).confirm(&me));
        // No Sentinel registered and no ZooKeeper: nobody confirms.
        assert!(!w(None, 0, &[]).confirm(&me));
        let why = w(None, 3, &[ep(1)]).why_not(&me);
        assert!(why.contains("ZooKeeper unreachable") && why.contains("1 of 3"), "{why}");
    }

    #[test]
    fn fences_after_the_deadline_and_lifts_on_confirmation() {
        let after = Some(Duration::from_millis(3000));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut m = FenceMemory::default();
        assert_eq!(fence_step(true, true, at(0), after, &mut m), FenceAction::Keep);
        // Unconfirmed from 500 ms on: nothing until 3 s after the last
        // confirmation, then one fence, then nothing more.
        assert_eq!(fence_step(true, false, at(500), after, &mut m), FenceAction::Keep);
        assert_eq!(fence_step(true, false, at(2999), after, &mut m), FenceAction::Keep);
        assert_eq!(
            fence_step(true, false, at(3000), after, &mut m),
            FenceAction::Fence(Duration::from_millis(3000))
        );
        assert!(m.fenced);
        assert_eq!(fence_step(true, false, at(9000), after, &mut m), FenceAction::Keep);
        // A witness returns: lifted once.
        assert_eq!(fence_step(true, true, at(9500), after, &mut m), FenceAction::Lift);
        assert_eq!(fence_step(true, true, at(10_000), after, &mut m), FenceAction::Keep);
        // Demoted while fenced: lifted, so a later promotion takes writes.
        assert_eq!(
            fence_step(true, false, at(13_000), after, &mut m),
            FenceAction::Fence(Duration::from_millis(3000))
        );
        assert_eq!(fence_step(false, false, at(13_500), after, &mut m), FenceAction::Lift);
        assert_eq!(fence_step(false, false, at(14_000), after, &mut m), FenceAction::Keep);
    }

    #[test]
    fn a_new_master_gets_the_whole_delay() {
        let after = Some(Duration::from_millis(3000));
        let t0 = Instant::now();
        let mut m = FenceMemory::default();
        // A replica for a long time, never confirmed as master.
        assert_eq!(fence_step(false, false, t0, after, &mut m), FenceAction::Keep);
        let promoted = t0 + Duration::from_secs(60);
        assert_eq!(fence_step(true, false, promoted, after, &mut m), FenceAction::Keep);
        assert_eq!(
            fence_step(true, false, promoted + Duration::from_millis(2900), after, &mut m),
            FenceAction::Keep
        );
        assert!(matches!(
            fence_step(true, false, promoted + Duration::from_millis(3100), after, &mut m),
            FenceAction::Fence(_)
        ));
    }

    #[test]
    fn disabled_never_fences() {
        let t0 = Instant::now();
        let mut m = FenceMemory::default();
        for s in 0..100 {
            assert_eq!(
                fence_step(true, false, t0 + Duration::from_secs(s), None, &mut m),
                FenceAction::Keep
            );
        }
    }
}
