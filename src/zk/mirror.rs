//! A watched copy of what every look at the group reads from ZooKeeper:
//! the master record and the two registration lists; and the history, which
//! a write of the record appends to.
//!
//! Every launcher looks at the group about once a second (the admin view,
//! the watcher's reconcile, the fence's Sentinel list). Read from ZooKeeper
//! each time, an idle group of 3+3+1 cost thousands of requests a minute,
//! and one ensemble could serve few groups. With one persistent recursive
//! watch on the group's root, an idle group costs ZooKeeper its session
//! pings, and a change costs each session one read.
//!
//! Correctness rests on four rules:
//! - a copy is served only while the session is connected and the watch is
//!   known to be registered ("armed"); otherwise reads go to ZooKeeper;
//! - every event under the root, every reconnect (events during a
//!   disconnection are lost, ZOOKEEPER-4698) and every write of our own
//!   forgets the copies it may have made stale;
//! - after a reconnect the watch is registered again before a copy is
//!   served: the client (`zookeeper-client` 0.11.2) re-sends only data,
//!   exist and child watches on a reconnect, never persistent ones, so the
//!   server it reconnected to (after a ZooKeeper server died or was cut
//!   off) would send no event, and a copy would stay stale for good;
//! - a read stores its result only if nothing was forgotten while it was
//!   in flight (a generation count), so an answer older than an event can
//!   never be kept after the event.
//!
//! A copy can be older than ZooKeeper by the time an event takes to arrive,
//! as any read is by the time its answer takes; every write of the record
//! is a compare-and-set, so a decision on a stale copy fails and re-looks.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::{oneshot, watch};
use tracing::{debug, warn};
use zookeeper_client::{AddWatchMode, Client, EventType, PersistentWatcher, SessionState, StateWatcher};

use crate::model::{Endpoint, Record};

/// What a read of one part answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kept {
    /// The record.
    Master(Record),
    /// A data node's data and version (`None`: no node).
    Node(Option<(Vec<u8>, i32)>),
    /// A registration list.
    List(Vec<(String, Endpoint)>),
}

/// One kept answer, with the generation it belongs to.
#[derive(Debug, Default)]
struct Entry {
    generation: u64,
    value: Option<Kept>,
}

impl Entry {
    fn forget(&mut self) {
        self.generation += 1;
        self.value = None;
    }
}

/// What a persistent-watch event or a write touched: the node of the same
/// name under the root, and for the last three its children too (see
/// [`Mirror::part_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Master,
    Switchover,
    Pause,
    Tls,
    History,
    Sentinels,
    Nodes,
    Diverged,
}

/// The copies, one [`Entry`] per [`Part`] (indexed by `part as usize`;
/// the last part sizes the table).
#[derive(Debug, Default)]
struct Copies {
    armed: bool,
    entries: [Entry; Part::Diverged as usize + 1],
}

/// The copies of one session, shared by the clones of its [`super::Zk`].
#[derive(Debug)]
pub(crate) struct Mirror {
    root: String,
    copies: Mutex<Copies>,
    /// Counts the watch's events about the record, the switchover intent,
    /// the pause or the TLS node: a launcher looks again at once when one
    /// changes.
    changes: watch::Sender<u64>,
    /// Dropped with the mirror: tells the event task to end.
    _stop: oneshot::Sender<()>,
}

/// A read's ticket: the generation to store its answer under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

impl Mirror {
    /// A mirror of `root` that serves nothing until [`Mirror::follow`] arms it.
    pub(crate) fn new(root: &str) -> (Arc<Mirror>, oneshot::Receiver<()>) {
        let (stop, stopped) = oneshot::channel();
        let m = Mirror {
            root: root.to_string(),
            copies: Mutex::new(Copies::default()),
            changes: watch::channel(0).0,
            _stop: stop,
        };
        (Arc::new(m), stopped)
    }

    fn copies(&self) -> MutexGuard<'_, Copies> {
        self.copies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Which part a path under the root belongs to (`None`: the lock and
    /// anything else nobody keeps a copy of).
    pub(crate) fn part_of(&self, path: &str) -> Option<Part> {
        let rest = path.strip_prefix(&self.root)?;
        let under = |dir: &str| rest == dir || rest.strip_prefix(dir).is_some_and(|r| r.starts_with('/'));
        Some(match rest {
            "/master" => Part::Master,
            "/switchover" => Part::Switchover,
            "/pause" => Part::Pause,
            "/tls" => Part::Tls,
            "/history" => Part::History,
            _ if under("/sentinels") => Part::Sentinels,
            _ if under("/nodes") => Part::Nodes,
            _ if under("/diverged") => Part::Diverged,
            _ => return None,
        })
    }

    /// The count of changes to the record, the intent, the pause or the TLS
    /// node that the watch told of.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// A watch event about `path`: forgets the copy it made stale and, for
    /// the record, the intent, the pause, the TLS node or the root, counts
    /// a change.
    fn changed(&self, path: &str) {
        self.touched(path);
        if matches!(
            self.part_of(path),
            Some(Part::Master | Part::Switchover | Part::Pause | Part::Tls)
        ) || path == self.root
        {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// Forgets what `path` (a changed znode) may have made stale. The root
    /// itself (deleted, re-created) forgets everything.
    pub(crate) fn touched(&self, path: &str) {
        let mut c = self.copies();
        match self.part_of(path) {
            Some(p) => c.entries[p as usize].forget(),
            None if path == self.root => c.entries.iter_mut().for_each(Entry::forget),
            None => {}
        }
    }

    /// The copy of `part`, if armed and kept.
    pub(crate) fn get(&self, part: Part) -> Option<Kept> {
        let c = self.copies();
        c.armed.then(|| c.entries[part as usize].value.clone()).flatten()
    }

    /// A ticket to take before reading `part` from ZooKeeper.
    pub(crate) fn ticket(&self, part: Part) -> Ticket {
        Ticket(self.copies().entries[part as usize].generation)
    }

    /// Keeps what `part` was read as with `t`, unless something was
    /// forgotten since.
    pub(crate) fn keep(&self, part: Part, t: Ticket, v: Kept) {
        let mut c = self.copies();
        let e = &mut c.entries[part as usize];
        if e.generation == t.0 {
            e.value = Some(v);
        }
    }

    fn arm(&self, armed: bool) {
        let mut c = self.copies();
        c.entries.iter_mut().for_each(Entry::forget);
        c.armed = armed;
    }

    /// Follows the session's events until the session ends or the mirror
    /// is dropped. `watch` is the persistent recursive watch on `root`,
    /// registered before this starts (so the mirror is armed at once), with
    /// `client`, which registers it again after every reconnect (bounded by
    /// `limit`; until that succeeds, reads go to ZooKeeper).
    pub(crate) async fn follow(
        me: Weak<Mirror>,
        client: Client,
        root: String,
        limit: std::time::Duration,
        mut watch: PersistentWatcher,
        mut states: StateWatcher,
        mut stopped: oneshot::Receiver<()>,
    ) {
        if let Some(m) = me.upgrade() {
            m.arm(states.state() == SessionState::SyncConnected);
        }
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                event = watch.changed() => {
                    let Some(m) = me.upgrade() else { return };
                    match event.event_type {
                        EventType::Session if event.session_state.is_terminated() => {
                            m.arm(false);
                            return;
                        }
                        EventType::Session => {}
                        _ => {
                            debug!(path = %event.path, kind = ?event.event_type, "znode changed; copy forgotten");
                            m.changed(&event.path);
                        }
                    }
                }
                state = states.changed() => {
                    let Some(m) = me.upgrade() else { return };
                    match state {
                        // Events sent while disconnected are lost, and the
                        // server may not know the watch: register it again,
                        // then start over.
                        SessionState::SyncConnected => {
                            m.arm(false);
                            drop(m);
                            let again = tokio::time::timeout(limit, client.watch(&root, AddWatchMode::PersistentRecursive)).await;
                            let Some(m) = me.upgrade() else { return };
                            match again {
                                Ok(Ok(w)) => {
                                    debug!(root = %root, "persistent watch registered again after a reconnect");
                                    watch = w;
                                    m.arm(client.state() == SessionState::SyncConnected);
                                }
                                Ok(Err(e)) => warn!(root = %root, error = %e, "persistent watch not registered again after a reconnect; reading ZooKeeper until the next one"),
                                Err(_) => warn!(root = %root, "persistent watch not registered again within {limit:?} after a reconnect; reading ZooKeeper until the next one"),
                            }
                        }
                        s if s.is_terminated() => {
                            m.arm(false);
                            return;
                        }
                        s => {
                            if s != SessionState::Disconnected {
                                warn!(state = ?s, "ZooKeeper session state; reading ZooKeeper directly");
                            }
                            m.arm(false)
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror() -> Arc<Mirror> {
        let (m, _) = Mirror::new("/g");
        m.arm(true);
        m
    }

    fn list() -> Vec<(String, Endpoint)> {
        vec![("a".into(), Endpoint::new("10.0.0.1", 26379))]
    }

    #[test]
    fn serves_nothing_until_armed() {
        let (m, _) = Mirror::new("/g");
        let t = m.ticket(Part::Master);
        m.keep(Part::Master, t, Kept::Master(Record::Missing));
        assert_eq!(m.get(Part::Master), None, "not armed: every read goes to ZooKeeper");
        m.arm(true);
        assert_eq!(m.get(Part::Master), None, "arming forgets");
        let t = m.ticket(Part::Master);
        m.keep(Part::Master, t, Kept::Master(Record::Missing));
        assert_eq!(m.get(Part::Master), Some(Kept::Master(Record::Missing)));
        m.arm(false);
        assert_eq!(m.get(Part::Master), None, "a disconnected session serves no copy");
    }

    #[test]
    fn an_answer_older_than_an_event_is_not_kept() {
        let m = mirror();
        let t = m.ticket(Part::Sentinels);
        // The event arrives while the read is in flight.
        m.touched("/g/sentinels/a");
        m.keep(Part::Sentinels, t, Kept::List(list()));
        assert_eq!(m.get(Part::Sentinels), None);
        let t = m.ticket(Part::Sentinels);
        m.keep(Part::Sentinels, t, Kept::List(list()));
        assert_eq!(m.get(Part::Sentinels), Some(Kept::List(list())));
        // A reconnect forgets too.
        let t = m.ticket(Part::Sentinels);
        m.arm(true);
        m.keep(Part::Sentinels, t, Kept::List(list()));
        assert_eq!(m.get(Part::Sentinels), None);
    }

    #[test]
    fn the_record_and_the_intent_count_as_changes() {
        let m = mirror();
        let rx = m.changes();
        for path in [
            "/g/nodes/x",
            "/g/sentinels/a",
            "/g/lock/lock-1",
            "/g2/master",
            "/g/mastery",
        ] {
            m.changed(path);
        }
        assert_eq!(*rx.borrow(), 0, "registrations, the lock and other paths are no change");
        m.changed("/g/master");
        m.changed("/g/switchover");
        m.changed("/g");
        assert_eq!(*rx.borrow(), 3);
        assert!(rx.has_changed().unwrap());
    }

    #[test]
    fn events_forget_only_their_part() {
        let m = mirror();
        let keep_all = |m: &Mirror| {
            let t = m.ticket(Part::Master);
            m.keep(Part::Master, t, Kept::Master(Record::Missing));
            for p in [Part::Sentinels, Part::Nodes] {
                let t = m.ticket(p);
                m.keep(p, t, Kept::List(list()));
            }
        };
        let kept = |m: &Mirror| {
            (
                m.get(Part::Master).is_some(),
                m.get(Part::Sentinels).is_some(),
                m.get(Part::Nodes).is_some(),
            )
        };
        keep_all(&m);
        m.touched("/g/lock/lock-0001");
        assert_eq!(kept(&m), (true, true, true), "the lock is nobody's copy");
        m.touched("/g/master");
        assert_eq!(kept(&m), (false, true, true));
        keep_all(&m);
        m.touched("/g/nodes/x");
        assert_eq!(kept(&m), (true, true, false));
        keep_all(&m);
        m.touched("/g/sentinels");
        assert_eq!(kept(&m), (true, false, true));
        keep_all(&m);
        m.touched("/g");
        assert_eq!(kept(&m), (false, false, false), "the root forgets everything");
        keep_all(&m);
        m.touched("/g2/master");
        m.touched("/g/mastery");
        m.touched("/g/nodesx/a");
        assert_eq!(kept(&m), (true, true, true), "other paths are not ours");
        let t = m.ticket(Part::History);
        m.keep(Part::History, t, Kept::Node(None));
        m.changed("/g/history");
        assert_eq!(
            (kept(&m), m.get(Part::History)),
            ((true, true, true), None),
            "the history forgets only its copy"
        );
    }
}
