//! The launcher's own files in `DATA_DIR`, beside the server's: the
//! replication mark (where the data stood in the replication history,
//! [`crate::policy::diverged`]) and the kept copy of data a full sync is
//! about to replace. Both start with `.rzk-`, which the ownership rule of
//! [`crate::startup`] counts as a launcher's.

use std::io;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::metrics::metrics;
use crate::model::{Endpoint, KEPT_DIR, unix_ms};
use crate::policy::diverged::{Divergence, Mark};
use crate::render::{TlsPaths, write_private};
use crate::tls::Material;

/// The replication mark, rewritten at every look (by rename, so a reader
/// never sees half of it).
pub const MARK: &str = ".rzk-repl";

/// Where the checked copies of the TLS files go (see [`install_tls`]).
pub const TLS_DIR: &str = ".rzk-tls";

/// Writes the checked TLS files `m` into `dir/.rzk-tls` (each by rename,
/// private to the launcher's user), where the child's config names them:
/// the child reads a set the launcher has checked, also when it restarts.
pub fn install_tls(dir: &Path, m: &Material) -> io::Result<TlsPaths> {
    let (cert, key) = m
        .identity
        .as_ref()
        .ok_or_else(|| io::Error::other("no certificate to install"))?;
    let home = dir.join(TLS_DIR);
    std::fs::create_dir_all(&home)?;
    let paths = TlsPaths {
        cert: home.join("cert.pem"),
        key: home.join("key.pem"),
        ca: home.join("ca.pem"),
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    write_private(&paths.ca, &text(&m.ca_pem))?;
    write_private(&paths.key, &text(key))?;
    write_private(&paths.cert, &text(cert))?;
    Ok(paths)
}

/// Writes `mark` into `dir`.
pub fn write_mark(dir: &Path, mark: &Mark) -> io::Result<()> {
    let tmp = dir.join(format!("{MARK}.tmp"));
    std::fs::write(&tmp, mark.to_text())?;
    std::fs::rename(&tmp, dir.join(MARK))
}

/// The mark in `dir`, if there is a readable one.
pub fn read_mark(dir: &Path) -> Option<Mark> {
    Mark::parse(&std::fs::read_to_string(dir.join(MARK)).ok()?)
}

/// The files the server loads at start (Redis's default names): `dump.rdb`,
/// `appendonly.aof`, and what `appendonlydir` holds, as paths relative to
/// `dir`.
fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["dump.rdb", "appendonly.aof"]
        .iter()
        .map(PathBuf::from)
        .filter(|f| dir.join(f).is_file())
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir.join("appendonlydir")) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                out.push(Path::new("appendonlydir").join(e.file_name()));
            }
        }
    }
    out.sort();
    out
}

/// Bytes of data the server will load at start. Unreadable counts as none.
pub fn data_size(dir: &Path) -> u64 {
    data_files(dir)
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len()))
        .sum()
}

/// When a data file was last modified (Unix milliseconds), the latest of
/// them; `None` when there is none or one cannot be read.
pub fn data_written_ms(dir: &Path) -> Option<u64> {
    let mut latest = None;
    for f in data_files(dir) {
        let t = std::fs::metadata(dir.join(f)).and_then(|m| m.modified()).ok()?;
        let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
        latest = latest.max(Some(ms));
    }
    latest
}

/// What [`keep_aside`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// The data files are kept in this directory.
    Copy(PathBuf),
    /// Not kept: once the sync replaces them, the copy would take `need`
    /// bytes and the file system has `free`.
    NoRoom { need: u64, free: u64 },
    /// There were no data files.
    NoData,
}

/// Keeps the data files of `dir` (and its mark) in `dir/.rzk-diverged/<stamp_ms>`,
/// by hard links: the copy costs nothing until the server's full sync
/// replaces the originals, and then exactly their size, which the file
/// system must have free. Older copies are removed once this one is made.
pub fn keep_aside(dir: &Path, stamp_ms: u64) -> io::Result<Kept> {
    let files = data_files(dir);
    if files.is_empty() {
        return Ok(Kept::NoData);
    }
    let need = data_size(dir);
    let st = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    if free < need {
        return Ok(Kept::NoRoom { need, free });
    }
    let target = dir.join(KEPT_DIR).join(stamp_ms.to_string());
    std::fs::create_dir_all(target.join("appendonlydir"))?;
    for f in &files {
        std::fs::hard_link(dir.join(f), target.join(f))?;
    }
    if dir.join(MARK).is_file() {
        std::fs::copy(dir.join(MARK), target.join(MARK))?;
    }
    newest_only(dir, &target)?;
    Ok(Kept::Copy(target))
}

/// Keeps the data files of `dir` aside ([`keep_aside`]) because of `d`,
/// and says so: the old data's `mark` and the `master` (its address,
/// history and offset) it was compared with, when known.
pub fn keep_logged(dir: &Path, d: &Divergence, mark: Option<&Mark>, master: Option<(&Endpoint, &str, i64)>) {
    let (old_replid, old_offset, marked_at) = match mark {
        Some(m) => (Some(m.replid.as_str()), Some(m.offset), Some(m.at_ms)),
        None => (None, None, None),
    };
    let (master, master_replid, master_offset) = match master {
        Some((a, r, o)) => (Some(a.to_string()), Some(r), Some(o)),
        None => (None, None, None),
    };
    match keep_aside(dir, unix_ms()) {
        Ok(Kept::Copy(path)) => {
            metrics().diverged_copies.inc();
            warn!(path = %path.display(), divergence = ?d, old_replid, old_offset, marked_at_ms = marked_at,
                master, master_replid, master_offset,
                "DIVERGED: the old data may hold writes the master never had; kept aside before the full sync replaces it");
        }
        Ok(Kept::NoRoom { need, free }) => {
            warn!(need_bytes = need, free_bytes = free, divergence = ?d, old_offset, master_offset,
                "DIVERGED, NOT KEPT: no room for a copy of the old data; the full sync replaces it");
        }
        Ok(Kept::NoData) => warn!(divergence = ?d, master,
            "DIVERGED, NOT KEPT: the data may hold writes the master never had, and no data file is on disk to keep"),
        Err(e) => warn!(error = %e, divergence = ?d, "could not keep the old data aside; the full sync replaces it"),
    }
}

/// The file of a kept copy that holds the writes a running master made
/// past its new master's copy, as the replication stream carried them
/// (replayable with `redis-cli --pipe`).
pub const WRITES: &str = "writes.resp";

/// Keeps `stream` (commands in RESP) as [`WRITES`] in
/// `dir/.rzk-diverged/<stamp_ms>`; older copies are removed once it is
/// written.
pub fn keep_writes(dir: &Path, stamp_ms: u64, stream: &[u8]) -> io::Result<PathBuf> {
    let target = dir.join(KEPT_DIR).join(stamp_ms.to_string());
    std::fs::create_dir_all(&target)?;
    let tmp = target.join(format!("{WRITES}.tmp"));
    std::fs::write(&tmp, stream)?;
    std::fs::rename(&tmp, target.join(WRITES))?;
    newest_only(dir, &target)?;
    Ok(target)
}

/// Removes every kept copy in `dir` but `newest`.
fn newest_only(dir: &Path, newest: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(dir.join(KEPT_DIR))?.flatten() {
        if e.path() != newest {
            std::fs::remove_dir_all(e.path())?;
        }
    }
    Ok(())
}

/// The kept copy in `dir`, if there is one.
pub fn kept_copy(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join(KEPT_DIR))
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u64>().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rzk-datadir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_mark_is_written_and_read_back() {
        let d = scratch("mark");
        assert_eq!(read_mark(&d), None);
        let m = Mark {
            replid: "a".repeat(40),
            offset: 7,
            at_ms: 9,
        };
        write_mark(&d, &m).unwrap();
        assert_eq!(read_mark(&d), Some(m));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_data_files_are_kept_by_hard_links_and_outlive_their_replacement() {
        let d = scratch("keep");
        assert_eq!(keep_aside(&d, 1).unwrap(), Kept::NoData);
        std::fs::create_dir_all(d.join("appendonlydir")).unwrap();
        std::fs::write(d.join("appendonlydir/appendonly.aof.1.base.rdb"), b"base").unwrap();
        std::fs::write(d.join("appendonlydir/appendonly.aof.1.incr.aof"), b"*1\r\n").unwrap();
        std::fs::write(d.join("redis.conf"), b"not data").unwrap();
        assert_eq!(data_size(&d), 8);
        let Kept::Copy(first) = keep_aside(&d, 100).unwrap() else {
            panic!()
        };
        let Kept::Copy(second) = keep_aside(&d, 200).unwrap() else {
            panic!()
        };
        assert!(!first.exists(), "only the newest copy is kept");
        assert_eq!(kept_copy(&d), Some(second.clone()));
        assert!(!second.join("redis.conf").exists());
        // The server's sync replaces the originals (a new file, the old
        // one unlinked): the copy still holds the old content.
        std::fs::remove_file(d.join("appendonlydir/appendonly.aof.1.base.rdb")).unwrap();
        std::fs::write(d.join("appendonlydir/appendonly.aof.2.base.rdb"), b"new").unwrap();
        assert_eq!(
            std::fs::read(second.join("appendonlydir/appendonly.aof.1.base.rdb")).unwrap(),
            b"base"
        );
        let third = keep_writes(&d, 300, b"*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(kept_copy(&d), Some(third.clone()));
        assert!(!second.exists());
        assert_eq!(std::fs::read(third.join(WRITES)).unwrap(), b"*1\r\n$4\r\nPING\r\n");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
