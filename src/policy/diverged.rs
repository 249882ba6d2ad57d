//! Whether the data a server restarts with holds writes its new master
//! never had. A task that comes back on its old volume (`PERSISTENCE=aof`)
//! rejoins as a replica, and the full sync replaces its data: writes it
//! acknowledged as master that never reached a replica would vanish
//! without a trace. So the launcher writes, at every look, where its
//! server's data stands in the replication history (a [`Mark`]: the
//! history's id and the offset), and before a restart as a replica
//! compares the last mark with the new master's `INFO` ([`assess`]); the
//! launcher keeps the old files aside when they went past it, or when it
//! cannot tell. A mark is asked for before it is written, so the data can
//! have moved past it: it is trusted as the data's end only when the data
//! files were last written before the look that made it began.
//!
//! A master demoted while it runs ([`live`]) is compared exactly: what it
//! holds past the new master's copy of its history is still in its
//! replication backlog, so the launcher reads that part of the backlog and
//! keeps the commands that wrote data ([`writes`]); the Sentinels' hello
//! messages and the master's pings, which move the offset too, are not
//! writes.

use crate::reply::{ServerState, StreamCommand};

/// Where a server's data stood in the replication history: `replid` (its
/// `master_replid`) and `offset` (its replication offset), at `at_ms`
/// (Unix milliseconds, when the look that asked began).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub replid: String,
    pub offset: i64,
    pub at_ms: u64,
}

impl Mark {
    /// The mark file's one line: `<replid> <offset> <at_ms>`.
    pub fn to_text(&self) -> String {
        format!("{} {} {}\n", self.replid, self.offset, self.at_ms)
    }

    /// Parses [`Mark::to_text`]; `None` for anything else.
    pub fn parse(text: &str) -> Option<Mark> {
        let mut f = text.split_whitespace();
        let replid = f.next()?;
        let offset = f.next()?.parse().ok()?;
        let at_ms = f.next()?.parse().ok()?;
        if f.next().is_some() || replid.len() != 40 || !replid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Mark {
            replid: replid.to_string(),
            offset,
            at_ms,
        })
    }
}

/// How the old data compares with the new master's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Divergence {
    /// The master holds all of it (as of the mark): `behind` bytes less.
    Contained { behind: i64 },
    /// The old data went `past` bytes further than the master's copy of
    /// the same history: writes the master never had.
    Diverged { past: i64 },
    /// It cannot be told (no mark, or another history).
    Unknown(String),
}

impl Divergence {
    /// Whether the old files should be kept aside before a sync replaces
    /// them.
    pub fn keep(&self) -> bool {
        !matches!(self, Divergence::Contained { .. })
    }
}

/// How much earlier than the write a file's modification time can read:
/// the kernel stamps files from its coarse clock, a tick (up to 10 ms)
/// behind; twice that.
pub const MTIME_MARGIN_MS: u64 = 20;

/// Compares the old data's last `mark` with the new `master`'s history.
/// `written_ms` is when the data files were last modified (Unix
/// milliseconds, `None` when unknown). The master holds the old history
/// (`replid2`) up to `second_offset` − 1, as `PSYNC` counts it. The data
/// is contained when the mark is in the master's current history (a
/// replica's copy of what the master wrote), or in its previous one, not
/// past it, and no file was written after the look that made the mark
/// began (a previous master's data may have moved past its mark).
pub fn assess(mark: Option<&Mark>, written_ms: Option<u64>, master: &ServerState) -> Divergence {
    let Some(m) = mark else {
        return Divergence::Unknown("no replication mark from the previous run".into());
    };
    // The master's own history: it wrote all of it and still has it, so
    // the old data (a replica's copy of it) holds nothing it lacks, however
    // far it got after the mark.
    if m.replid == master.replid && m.offset <= master.offset {
        return Divergence::Contained {
            behind: master.offset - m.offset,
        };
    }
    let upto = if m.replid == master.replid {
        master.offset
    } else if m.replid == master.replid2 && master.second_offset > 0 {
        master.second_offset - 1
    } else {
        return Divergence::Unknown(format!(
            "the old data's history {} is neither the master's {} nor its previous one",
            m.replid, master.replid
        ));
    };
    if m.offset > upto {
        return Divergence::Diverged { past: m.offset - upto };
    }
    match written_ms {
        Some(w) if w + MTIME_MARGIN_MS < m.at_ms => Divergence::Contained {
            behind: upto - m.offset,
        },
        Some(w) => Divergence::Unknown(format!(
            "the data files were written at {w} ms, after the last mark (at {} ms, offset {}, the master has {upto}): later writes cannot be ruled out",
            m.at_ms, m.offset
        )),
        None => Divergence::Unknown("the data files' modification time is unknown".into()),
    }
}

/// What a master demoted while it runs holds that its new master lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// Nothing: its history stops at or before where the new master's copy
    /// of it does.
    Contained,
    /// The bytes `from`..=`to` of history `replid`: the launcher reads them
    /// from the old master's backlog (`PSYNC replid from`).
    Read {
        /// The old master's history.
        replid: String,
        /// The first byte the new master never had.
        from: i64,
        /// The old master's last byte.
        to: i64,
    },
    /// It cannot be told; the old data is kept whole.
    Unknown(String),
}

/// Compares the `old` master, about to be demoted, with the `new` one it
/// will follow (see [`assess`] for the offsets).
pub fn live(old: &ServerState, new: &ServerState) -> Live {
    if old.replid == new.replid && old.offset <= new.offset {
        return Live::Contained;
    }
    if old.replid != new.replid2 || new.second_offset <= 0 {
        return Live::Unknown(format!(
            "this server's history {} is neither the new master's {} nor its previous one",
            old.replid, new.replid
        ));
    }
    let upto = new.second_offset - 1;
    if old.offset <= upto {
        return Live::Contained;
    }
    match old.backlog {
        Some((first, last)) if first <= upto + 1 && last >= old.offset => Live::Read {
            replid: old.replid.clone(),
            from: upto + 1,
            to: old.offset,
        },
        _ => Live::Unknown(format!(
            "the {} bytes past the new master's copy (from offset {}) are no longer all in the backlog ({:?})",
            old.offset - upto,
            upto + 1,
            old.backlog
        )),
    }
}

/// Commands of a replication stream that carry no data and are dropped:
/// the master's pings, the Sentinels' hello messages, replication's own.
const NOISE: [&[u8]; 3] = [b"PING", b"PUBLISH", b"REPLCONF"];
/// Commands that frame writes (the database they go to, a transaction):
/// kept with them, but no writes themselves.
const FRAMING: [&[u8]; 3] = [b"SELECT", b"MULTI", b"EXEC"];

fn named(c: &StreamCommand<'_>, names: &[&[u8]]) -> bool {
    c.args
        .first()
        .is_some_and(|name| names.iter().any(|n| name.eq_ignore_ascii_case(n)))
}

/// How many of `commands` wrote data, and the stream to keep: the writes
/// with their framing, as they came (empty when there is no write).
pub fn writes(commands: &[StreamCommand<'_>]) -> (usize, Vec<u8>) {
    let kept: Vec<&StreamCommand<'_>> = commands.iter().filter(|c| !named(c, &NOISE)).collect();
    let n = kept.iter().filter(|c| !named(c, &FRAMING)).count();
    let stream = if n == 0 {
        vec![]
    } else {
        kept.iter().flat_map(|c| c.raw.iter().copied()).collect()
    };
    (n, stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn mark(replid: &str, offset: i64) -> Mark {
        Mark {
            replid: replid.into(),
            offset,
            at_ms: 1000,
        }
    }

    #[test]
    fn the_mark_round_trips_and_refuses_junk() {
        let m = mark(A, 12345);
        assert_eq!(Mark::parse(&m.to_text()), Some(m));
        for bad in [
            "",
            "x 1 2",
            &format!("{A} 1"),
            &format!("{A} one 2"),
            &format!("{A} 1 2 3"),
        ] {
            assert_eq!(Mark::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn old_data_past_what_the_new_master_has_is_diverged() {
        // The new master was promoted at offset 1000 of history A, now at
        // 1500 of history B.
        let mut new = master(2);
        new.replid = B.into();
        new.replid2 = A.into();
        new.offset = 1500;
        new.second_offset = 1001;
        // The old master had reached 1400 of A: 400 bytes the promoted
        // replica never received.
        assert_eq!(
            assess(Some(&mark(A, 1400)), Some(0), &new),
            Divergence::Diverged { past: 400 }
        );
        assert_eq!(
            assess(Some(&mark(A, 1000)), Some(0), &new),
            Divergence::Contained { behind: 0 }
        );
        assert_eq!(
            assess(Some(&mark(A, 900)), Some(0), &new),
            Divergence::Contained { behind: 100 }
        );
        // A replica of the current history, behind: nothing to keep.
        let c = assess(Some(&mark(B, 1200)), Some(0), &new);
        assert_eq!(c, Divergence::Contained { behind: 300 });
        assert!(!c.keep());
        // Ahead on the same history: the master lost what it had.
        assert_eq!(
            assess(Some(&mark(B, 1600)), Some(0), &new),
            Divergence::Diverged { past: 100 }
        );
        // Another history, or no mark: cannot tell, so keep.
        let other = assess(
            Some(&mark("cccccccccccccccccccccccccccccccccccccccc", 1)),
            Some(0),
            &new,
        );
        assert!(matches!(other, Divergence::Unknown(_)) && other.keep());
        assert!(assess(None, Some(0), &new).keep());
        // A master never promoted has no previous history.
        let mut fresh = master(2);
        fresh.replid = B.into();
        assert!(matches!(
            assess(Some(&mark("", 1)), Some(0), &fresh),
            Divergence::Unknown(_)
        ));
    }

    #[test]
    fn data_written_after_the_mark_cannot_be_called_contained() {
        let mut new = master(2);
        new.replid = B.into();
        new.replid2 = A.into();
        new.offset = 1500;
        new.second_offset = 1001;
        let m = mark(A, 900); // at 1000 ms
        let ok = 1000 - MTIME_MARGIN_MS - 1;
        assert_eq!(assess(Some(&m), Some(ok), &new), Divergence::Contained { behind: 100 });
        // In the master's current history the old data is a copy of what
        // the master wrote: contained whenever the files were written.
        assert_eq!(
            assess(Some(&mark(B, 1200)), Some(5000), &new),
            Divergence::Contained { behind: 300 }
        );
        for late in [ok + 1, 1000, 5000] {
            let d = assess(Some(&m), Some(late), &new);
            assert!(matches!(d, Divergence::Unknown(_)) && d.keep(), "{late}: {d:?}");
        }
        assert!(assess(Some(&m), None, &new).keep());
        // Past the master is diverged whatever the files say.
        assert_eq!(
            assess(Some(&mark(A, 1400)), Some(5000), &new),
            Divergence::Diverged { past: 400 }
        );
    }
    #[test]
    fn a_live_master_is_read_exactly_where_it_went_past_the_new_one() {
        let mut new = master(2);
        new.replid = B.into();
        new.replid2 = A.into();
        new.offset = 1500;
        new.second_offset = 1001;
        let mut old = master(1);
        old.replid = A.into();
        old.offset = 1000;
        old.backlog = Some((1, 1000));
        assert_eq!(live(&old, &new), Live::Contained);
        old.offset = 1400;
        old.backlog = Some((1, 1400));
        assert_eq!(
            live(&old, &new),
            Live::Read {
                replid: A.into(),
                from: 1001,
                to: 1400
            }
        );
        // The backlog no longer reaches back to the new master's end.
        old.backlog = Some((1002, 1400));
        assert!(matches!(live(&old, &new), Live::Unknown(_)));
        old.backlog = None;
        assert!(matches!(live(&old, &new), Live::Unknown(_)));
        // Another history altogether.
        old.replid = "cccccccccccccccccccccccccccccccccccccccc".into();
        assert!(matches!(live(&old, &new), Live::Unknown(_)));
    }

    #[test]
    fn pings_and_hellos_are_not_writes() {
        let stream = b"*1\r\n$4\r\nPING\r\n*3\r\n$7\r\npublish\r\n$18\r\n__sentinel__:hello\r\n$1\r\nx\r\n\
*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$4\r\nEXEC\r\n";
        let c = crate::reply::stream_commands(stream).unwrap();
        assert_eq!(writes(&c[..4]), (0, vec![]));
        let (n, kept) = writes(&c);
        assert_eq!(n, 1);
        assert_eq!(
            kept,
            &stream[stream.len() - c[2..].iter().map(|c| c.raw.len()).sum::<usize>()..]
        );
    }
}
