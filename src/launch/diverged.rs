//! Nothing thrown away silently (`PERSISTENCE=aof`): while the server
//! runs, the launcher marks where its data stands in the replication
//! history; when a task comes back on its old `DATA_DIR` and is about to
//! start as a replica, whose full sync replaces the data, it compares the
//! last mark with the new master ([`crate::policy::diverged`]) and keeps
//! the old files aside when they went past the master, or when it cannot
//! tell. (A master demoted while it runs keeps its own writes through the
//! executor's demotion, [`crate::act`].) While a kept copy exists, with any
//! persistence, the server is registered under `<root>/diverged` for
//! `rzkctl status`, and counted.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::datadir;
use crate::metrics::metrics;
use crate::model::{Endpoint, unix_ms};
use crate::observe::server_state;
use crate::policy::diverged::{Divergence, Mark, assess};
use crate::probe::Probe;
use crate::session::Keeper;
use crate::snapshot::Snapshot;

/// Before the server starts as a replica of `master` on the data in `dir`:
/// keeps that data aside when it may hold writes `master` never had.
pub async fn keep_before_sync(probe: &Probe, dir: &Path, master: &Endpoint) {
    if datadir::data_size(dir) == 0 {
        return;
    }
    let mark = datadir::read_mark(dir);
    let written = datadir::data_written_ms(dir);
    let Some(m) = server_state(probe, master, master).await else {
        warn!(master = %master, "the master does not answer INFO; keeping the old data aside, unable to compare");
        datadir::keep_logged(
            dir,
            &Divergence::Unknown("the master did not answer".into()),
            mark.as_ref(),
            None,
        );
        return;
    };
    let d = assess(mark.as_ref(), written, &m);
    if d.keep() {
        datadir::keep_logged(dir, &d, mark.as_ref(), Some((master, &m.replid, m.offset)));
    } else {
        info!(master = %master, old_offset = mark.as_ref().map(|m| m.offset), master_offset = m.offset, divergence = ?d,
            "the old data holds nothing the master lacks; the full sync replaces it");
    }
}

/// What the launcher remembers between looks.
pub struct Marks {
    dir: PathBuf,
    /// Whether marks are written (`PERSISTENCE=aof`: only then does a
    /// restart find the data again).
    pub marking: bool,
    written: RefCell<Option<(String, i64)>>,
    /// Whether the last mark was written by a look that found the same
    /// position as the one before it (so no write was under way).
    settled: Cell<bool>,
    failed: Cell<bool>,
    registered: RefCell<Option<String>>,
}

impl Marks {
    pub fn new(dir: PathBuf, marking: bool) -> Marks {
        Marks {
            dir,
            marking,
            written: RefCell::new(None),
            settled: Cell::new(false),
            failed: Cell::new(false),
            registered: RefCell::new(None),
        }
    }

    /// Writes the mark `(replid, offset)` of a look begun at `at_ms`;
    /// whether it was written (a failure is logged once in a row).
    fn write(&self, (replid, offset): (String, i64), at_ms: u64) -> bool {
        let mark = Mark {
            replid: replid.clone(),
            offset,
            at_ms,
        };
        match datadir::write_mark(&self.dir, &mark) {
            Ok(()) => {
                *self.written.borrow_mut() = Some((replid, offset));
                self.failed.set(false);
                true
            }
            Err(e) => {
                if !self.failed.replace(true) {
                    warn!(dir = %self.dir.display(), error = %e, "could not write the replication mark");
                }
                false
            }
        }
    }

    /// After a hand-over: waits (until `until`) for the old master, now a
    /// replica, to be linked to the new master, and marks it then. The
    /// mark is in the new master's history, so a restart on this data
    /// keeps nothing (its files change at the stop, after any earlier
    /// mark, which a previous history's mark cannot survive).
    pub async fn mark_followed(&self, probe: &Probe, local: &Endpoint, until: std::time::Instant) {
        while std::time::Instant::now() < until {
            let began = unix_ms();
            if let Some(s) = server_state(probe, local, local).await
                && !s.is_master()
                && s.link_up
                && !s.replid.is_empty()
            {
                self.write((s.replid, s.offset), began);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        warn!(addr = %local, "the old master was not linked to the new one in time; its last mark stays");
    }

    /// At every look: marks where the local server's data stands, when it
    /// moved and once more at the first look that finds it still (a mark
    /// is trusted only when no data file was written after its look
    /// began, see [`crate::policy::diverged::assess`]), and keeps the `<root>/diverged` registration of `me` and
    /// the gauge in step with the kept copy on disk.
    pub async fn look(&self, snap: &Snapshot, keeper: &Keeper, me: &Endpoint) {
        if let Some(l) = &snap.local
            && self.marking
            && !l.replid.is_empty()
        {
            let now = (l.replid.clone(), l.offset);
            let moved = self.written.borrow().as_ref() != Some(&now);
            if moved || !self.settled.get() {
                let began = snap.taken.elapsed().as_millis() as u64;
                if self.write(now, unix_ms().saturating_sub(began)) {
                    self.settled.set(!moved);
                }
            }
        }
        let kept = datadir::kept_copy(&self.dir).is_some();
        metrics().diverged_copy.set(i64::from(kept));
        let registered = self.registered.borrow().clone();
        match (kept, registered) {
            (true, None) => {
                let path = format!("{}/{}", keeper.zk().diverged_dir(), uuid::Uuid::new_v4());
                keeper.register(&path, &me.to_record());
                *self.registered.borrow_mut() = Some(path);
            }
            (false, Some(path)) => {
                info!(dir = %self.dir.display(), "the kept copy is gone");
                keeper.unregister(&path).await;
                *self.registered.borrow_mut() = None;
            }
            _ => {}
        }
    }
}
