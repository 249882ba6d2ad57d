//! What a launcher checks on its machine before it starts, after the
//! configuration was parsed: its address (an interface lookup), `DATA_DIR`
//! (created and tested for writability) and the program it will run. Each
//! failure is a [`ConfigError`]: exit 2 with one line, before ZooKeeper is
//! touched, like a bad variable.

use std::path::{Path, PathBuf};

use crate::config::{Common, ConfigError, Listen};
use crate::model::{Endpoint, Identity};
use crate::tls::Tls;

/// The interface of the default IPv4 route, from the text of
/// `/proc/net/route`: destination and mask 0, route up; the lowest metric
/// wins when there are several, as it does for the kernel.
pub fn default_route_iface(route: &str) -> Option<String> {
    route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, flags, metric, mask) = (f.first()?, f.get(1)?, f.get(3)?, f.get(6)?, f.get(7)?);
            let up = u32::from_str_radix(flags, 16).ok()? & 1 == 1;
            (*dest == "00000000" && *mask == "00000000" && up)
                .then(|| (metric.parse::<u64>().unwrap_or(u64::MAX), iface.to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// Whether the user `uid` (group `gid`) has `perm` (`0o4` read, `0o1`
/// execute or enter) on the file of `m`: through its owner, group or
/// others bits, the one class that applies, as the kernel decides.
fn permits(m: &std::fs::Metadata, uid: u32, gid: u32, perm: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let shift = if m.uid() == uid {
        6
    } else if m.gid() == gid {
        3
    } else {
        0
    };
    m.mode() >> shift & perm != 0
}

/// A launcher started as root reads the TLS files again, for a rotation,
/// as the [`RUN_AS`] user: each must be readable by it (owner, group or
/// others), or the first rotation would fail long after the start.
fn readable_after_the_drop(files: &crate::tls::Files, names: [&'static str; 3]) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let Some(user) = nix::unistd::User::from_name(RUN_AS).ok().flatten() else {
        return Ok(()); // run_as_redis says what is wrong
    };
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    let mut paths = vec![(names[2], &files.ca)];
    if let Some((c, k)) = &files.identity {
        paths.extend([(names[0], c), (names[1], k)]);
    }
    for (var, path) in paths {
        let Ok(m) = std::fs::metadata(path) else { continue };
        if !permits(&m, uid, gid, 0o4) {
            return Err(ConfigError::new(
                var,
                path.display().to_string(),
                format!(
                    "a file the {RUN_AS} user can read (the launcher drops to it and reads the file again at each rotation): owner {}, group {}, mode {:o}; give it to that user or its group",
                    m.uid(),
                    m.gid(),
                    m.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// With TLS, the task's certificate must carry the names peers reach it
/// by: its announce address, and its bind address when that differs (its
/// Sentinel reaches it there). Checks the files again with those names;
/// a certificate without one is exit 2, naming `TLS_CERT_FILE`.
pub fn check_tls_names(common: &mut Common, id: &Identity) -> Result<(), ConfigError> {
    let Some(tls) = &common.tls else { return Ok(()) };
    let mut names = vec![id.announce.host.clone()];
    if id.bind.to_string() != id.announce.host {
        names.push(id.bind.to_string());
    }
    let files = tls.files().clone();
    readable_after_the_drop(&files, ["TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_CERT_FILE"])?;
    if let Some(z) = &common.zk.tls {
        readable_after_the_drop(
            z.files.files(),
            ["ZK_TLS_CERT_FILE", "ZK_TLS_KEY_FILE", "ZK_TLS_CA_CERT_FILE"],
        )?;
    }
    let cert = files
        .identity
        .as_ref()
        .map_or(String::new(), |(c, _)| c.display().to_string());
    let checked = crate::tls::Tls::new(files, names)
        .map_err(|why| ConfigError::new("TLS_CERT_FILE", cert, format!("a certificate for this task: {why}")))?;
    if common.tls.as_ref().is_some_and(Tls::follows_group) {
        checked.follow_group();
    }
    common.tls = Some(checked);
    Ok(())
}

/// Resolves the task address: `BIND_IP`, else the IPv4 address of
/// `NET_IFACE`, else that of the default route's interface; then the
/// announced address. A missing interface is a configuration error (exit
/// 2) that lists the interfaces that do exist.
pub fn resolve(listen: &Listen) -> Result<Identity, ConfigError> {
    let bind = match listen.bind_ip {
        Some(ip) => ip,
        None => {
            let wanted = match &listen.iface {
                Some(name) => name.clone(),
                None => std::fs::read_to_string("/proc/net/route")
                    .ok()
                    .as_deref()
                    .and_then(default_route_iface)
                    .ok_or_else(|| {
                        ConfigError::new(
                            "NET_IFACE",
                            "",
                            "an interface name: it is unset and this host has no default IPv4 route to take it from; set NET_IFACE or BIND_IP",
                        )
                    })?,
            };
            let ifaces = if_addrs::get_if_addrs().unwrap_or_default();
            let found = ifaces.iter().find_map(|i| match i.ip() {
                std::net::IpAddr::V4(v4) if i.name == wanted => Some(v4),
                _ => None,
            });
            let Some(ip) = found else {
                let mut names: Vec<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                let list = names.join(", ");
                let expected = format!("an interface with an IPv4 address (found: {list}), or set BIND_IP");
                return Err(ConfigError::new("NET_IFACE", wanted, expected));
            };
            ip
        }
    };
    let announce = Endpoint::new(
        listen.announce_ip.clone().unwrap_or_else(|| bind.to_string()),
        listen.announce_port.unwrap_or(listen.port),
    );
    Ok(Identity {
        bind,
        port: listen.port,
        announce,
    })
}

/// A bad `DATA_DIR`, and what was expected of it.
fn bad_dir(dir: &Path, expected: String) -> ConfigError {
    ConfigError::new("DATA_DIR", dir.display().to_string(), expected)
}

/// Creates `DATA_DIR` when missing and checks that it is writable, so a
/// launcher fails at start (exit 2) rather than after it joined the group:
/// Redis and Sentinel rewrite their config files through a temporary file in
/// that directory.
pub fn prepare_data_dir(dir: &Path) -> Result<(), ConfigError> {
    let uid = nix::unistd::geteuid();
    let fail = |e: std::io::Error| {
        bad_dir(
            dir,
            format!("a directory this user (uid {uid}) can write, with every parent directory open to it ({e})"),
        )
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".rzk-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)
}

/// The user a launcher started as root runs as: Debian's `redis-server`
/// package creates it, and the images are built from those packages.
pub const RUN_AS: &str = "redis";

/// `DATA_DIR` as a launcher has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDir<'a> {
    /// The binary keeps no files (`rzk-watcher`).
    NotUsed,
    /// `DATA_DIR` is unset: the working directory.
    Unset,
    /// `DATA_DIR` as set.
    Set(&'a Path),
}

/// When started as root: checks, changing nothing, that `data` may be
/// handed to [`RUN_AS`] ([`check_own_dir`]); then creates it, hands it over
/// and drops to that user, its group and no other groups, so that neither
/// the launcher nor its child runs as root. Marathon creates persistent
/// volumes owned by root; this is what lets an image start as root for
/// them, as the official image's `gosu` entrypoint does. Call it after
/// every other check and before any thread, socket or ZooKeeper session
/// exists. Returns the uid it dropped to, `None` when it was not root.
pub fn run_as_redis(data: DataDir) -> Result<Option<u32>, ConfigError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name(RUN_AS).ok().flatten().ok_or_else(|| {
        ConfigError::new(
            "USER",
            "root",
            format!(
                "a user named {RUN_AS} to run as (a launcher started as root drops to it): create it, or start the launcher as another user"
            ),
        )
    })?;
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    match data {
        DataDir::NotUsed => {}
        DataDir::Unset => {
            return Err(ConfigError::new(
                "DATA_DIR",
                "",
                format!(
                    "a directory set explicitly: a launcher started as root hands DATA_DIR to the {RUN_AS} user, and never takes the working directory for it; set DATA_DIR to this task's own directory (the images use /data)"
                ),
            ));
        }
        DataDir::Set(dir) => {
            let homes = homes_of_others(RUN_AS);
            let plan = check_own_dir(dir, uid, gid, &homes).map_err(|why| {
                bad_dir(
                    dir,
                    format!("a directory that is clearly this task's own to hand to the {RUN_AS} user: {why}"),
                )
            })?;
            let fail = |e: std::io::Error| {
                bad_dir(
                    dir,
                    format!("a directory root can create and hand to the {RUN_AS} user ({e})"),
                )
            };
            std::fs::create_dir_all(dir).map_err(fail)?;
            if plan.create {
                std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).map_err(fail)?;
            }
            for p in &plan.chown {
                std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(fail)?;
            }
        }
    }
    let fail = |what: &str, e: nix::Error| {
        ConfigError::new("USER", "root", format!("to switch to the {RUN_AS} user ({what}: {e})"))
    };
    // A parent-death signal the launcher was started with (a supervisor's,
    // or a test harness's) is cleared by the kernel when the credentials
    // change: read it first and set it again after, so that the launcher
    // still dies with its parent.
    let pdeathsig = nix::sys::prctl::get_pdeathsig().ok().flatten();
    let parent = nix::unistd::getppid();
    // The group list goes first and the uid last: after setuid, root's
    // right to change groups is gone.
    nix::unistd::setgroups(&[user.gid]).map_err(|e| fail("setgroups", e))?;
    nix::unistd::setgid(user.gid).map_err(|e| fail("setgid", e))?;
    nix::unistd::setuid(user.uid).map_err(|e| fail("setuid", e))?;
    if let Some(sig) = pdeathsig {
        nix::sys::prctl::set_pdeathsig(sig).map_err(|e| fail("prctl(PR_SET_PDEATHSIG)", e))?;
        // The parent may have died while the signal was cleared.
        if nix::unistd::getppid() != parent {
            let _ = nix::sys::signal::raise(sig);
        }
    }
    Ok(Some(uid))
}

/// What handing `DATA_DIR` over takes, decided before anything changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handover {
    /// It does not exist yet: create it (its missing parents stay root's).
    pub create: bool,
    /// The entries to give to the user: owned by root, on the directory's
    /// own file system, never a symbolic link.
    pub chown: Vec<PathBuf>,
}

/// The entries a launcher may find in a data directory it made before, or
/// that its server writes (besides `temp-*`, `.rzk-*`, and `*.log`: a log
/// the launcher's own output was redirected to by root's shell): anything
/// else in a directory root owns means the directory is someone else's.
const OWN_ENTRIES: &[&str] = &[
    "redis.conf",
    "sentinel.conf",
    "dump.rdb",
    "appendonlydir",
    "appendonly.aof",
    "lost+found",
];

/// Whether `real` (an absolute path with symbolic links resolved) is a
/// system directory, a home, or above one; `homes` are the home directories
/// of the users other than [`RUN_AS`].
pub fn path_refusal(real: &Path, homes: &[PathBuf]) -> Option<String> {
    const SYSTEM_TREES: &[&str] = &[
        "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/sys", "/usr",
    ];
    const SYSTEM_PARENTS: &[&str] = &[
        "/home", "/media", "/mnt", "/opt", "/root", "/run", "/srv", "/tmp", "/var",
    ];
    if real == Path::new("/") {
        return Some("it is the root directory".into());
    }
    if let Some(t) = SYSTEM_TREES.iter().find(|t| real.starts_with(t)) {
        return Some(format!("it is in the system tree {t}"));
    }
    let depth = real.components().count() - 1;
    if depth == 1 && real != Path::new("/data") {
        return Some("it is a top-level directory (of those only the image's /data is taken)".into());
    }
    if depth == 2
        && let Some(p) = SYSTEM_PARENTS.iter().find(|p| real.parent() == Some(Path::new(p)))
    {
        return Some(format!("it is a system directory (directly in {p})"));
    }
    if let Some(h) = homes.iter().find(|h| h.starts_with(real)) {
        return Some(format!("it is the home directory {}, or above it", h.display()));
    }
    None
}

/// The home directories of the users other than `except` in
/// `/etc/passwd` (the files a chown of a home would take from its user).
fn homes_of_others(except: &str) -> Vec<PathBuf> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7 && f[0] != except && f[5].starts_with('/') && f[5] != "/").then(|| PathBuf::from(f[5]))
        })
        .collect()
}

/// Checks that `dir` is clearly a launcher's own directory to hand to
/// `uid`/`gid`, without changing anything, and lists what to change:
/// - its real path is no system directory or home ([`path_refusal`]);
/// - every directory above it lets `uid` through;
/// - it is missing, empty, already `uid`'s, or holds only what a launcher
///   and its server write there (`OWN_ENTRIES`);
/// - nothing in it belongs to a third user.
///
/// Symbolic links are never followed nor changed, and the walk does not
/// enter another file system (a mount inside the directory is left alone).
pub fn check_own_dir(dir: &Path, uid: u32, gid: u32, homes: &[PathBuf]) -> Result<Handover, String> {
    use std::os::unix::fs::MetadataExt;
    // The nearest existing directory, resolved, and what is still missing.
    let mut existing = std::path::absolute(dir).map_err(|e| e.to_string())?;
    let mut missing = vec![];
    while !existing.exists() {
        missing.push(existing.file_name().ok_or("no existing parent")?.to_owned());
        existing = existing.parent().ok_or("no existing parent")?.to_path_buf();
    }
    let mut real = std::fs::canonicalize(&existing).map_err(|e| format!("{}: {e}", existing.display()))?;
    let create = !missing.is_empty();
    for m in missing.iter().rev() {
        real.push(m);
    }
    if let Some(why) = path_refusal(&real, homes) {
        return Err(format!("{} ({why})", real.display()));
    }
    for a in real.ancestors().skip(1) {
        let Ok(m) = std::fs::metadata(a) else { continue };
        if !permits(&m, uid, gid, 0o1) {
            return Err(format!(
                "the {RUN_AS} user may not enter {} (mode {:o})",
                a.display(),
                m.mode() & 0o7777
            ));
        }
    }
    if create {
        return Ok(Handover { create, chown: vec![] });
    }
    let top = std::fs::symlink_metadata(&real).map_err(|e| e.to_string())?;
    if top.uid() != 0 && top.uid() != uid {
        return Err(format!("{} belongs to uid {}", real.display(), top.uid()));
    }
    if top.uid() != uid {
        let entries = std::fs::read_dir(&real).map_err(|e| e.to_string())?;
        for e in entries {
            let name = e.map_err(|e| e.to_string())?.file_name();
            let name = name.to_string_lossy();
            let own = OWN_ENTRIES.contains(&name.as_ref())
                || name.starts_with("temp-")
                || name.starts_with(".rzk-")
                || name.ends_with(".log");
            if !own {
                return Err(format!(
                    "{} is root's and holds {name:?}, which no launcher writes",
                    real.display()
                ));
            }
        }
    }
    let mut chown = vec![];
    walk(&real, top.dev(), uid, gid, &mut chown)?;
    Ok(Handover { create, chown })
}

/// Lists the entries under `p` (itself included) to hand over, on file
/// system `dev`; a third user's entry is a refusal.
fn walk(p: &Path, dev: u64, uid: u32, gid: u32, out: &mut Vec<PathBuf>) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    if m.file_type().is_symlink() || m.dev() != dev {
        return Ok(());
    }
    if m.uid() != 0 && m.uid() != uid {
        return Err(format!("{} belongs to uid {}", p.display(), m.uid()));
    }
    if m.uid() != uid || m.gid() != gid {
        out.push(p.to_path_buf());
    }
    if m.is_dir() {
        for e in std::fs::read_dir(p).map_err(|e| format!("{}: {e}", p.display()))? {
            walk(&e.map_err(|e| e.to_string())?.path(), dev, uid, gid, out)?;
        }
    }
    Ok(())
}

/// Resolves a program name the way `execvp` would, so that a missing binary
/// is a configuration error at start, not a failure after the lock is taken.
pub fn resolve_program(name: &str, path_var: Option<&str>) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_exec(&p).then_some(p);
    }
    std::env::split_paths(path_var?)
        .map(|dir| dir.join(name))
        .find(|p| is_exec(p))
}

/// [`resolve_program`] for the variable `var` (whose default program is
/// `what`): a configuration error when it is missing or not executable.
pub fn program(var: &'static str, name: &Path, what: &str) -> Result<PathBuf, ConfigError> {
    let path = std::env::var("PATH").ok();
    let shown = name.display().to_string();
    resolve_program(&shown, path.as_deref())
        .ok_or_else(|| ConfigError::new(var, shown, format!("an executable {what}, by path or on PATH")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn data_dir_is_created_and_checked() {
        let base = std::env::temp_dir().join(format!("rzk-datadir-{}", std::process::id()));
        let dir = base.join("a/b");
        prepare_data_dir(&dir).unwrap();
        assert!(dir.is_dir());
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// The refusal of a directory this user cannot write. Root can write
    /// anywhere, and root is how CI runs, so the check runs in a copy of this
    /// test binary started as `nobody` (uid 65534) on a root-owned,
    /// read-only directory; as another user it runs in place.
    #[test]
    fn data_dir_that_this_user_cannot_write_is_refused() {
        const CHILD: &str = "RZK_TEST_READONLY_DATA_DIR";
        if let Some(dir) = std::env::var_os(CHILD) {
            let e = prepare_data_dir(Path::new(&dir)).expect_err("a read-only DATA_DIR was accepted");
            assert_eq!(e.var, "DATA_DIR");
            assert!(e.expected.contains("Permission denied"), "{e}");
            println!("refused: {e}");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let base = tempfile::tempdir().unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = base.path().join("ro");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        // A copy of this test binary where `nobody` can run it, wherever
        // the checkout lives (a home directory may be closed to others).
        let exe = base.path().join("startup-test");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cmd = std::process::Command::new(&exe);
        cmd.args([
            "--exact",
            "startup::tests::data_dir_that_this_user_cannot_write_is_refused",
            "--nocapture",
        ])
        .env(CHILD, &dir);
        if nix::unistd::geteuid().is_root() {
            cmd.uid(65534).gid(65534);
        }
        let out = cmd.output().expect("run this test binary again");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("refused: invalid DATA_DIR"),
            "{text}"
        );
    }

    #[test]
    fn resolve_prefers_bind_ip_and_announce() {
        let l = Listen {
            iface: Some("does-not-exist0".into()),
            bind_ip: Some("127.0.0.9".parse().unwrap()),
            port: 7000,
            announce_ip: None,
            announce_port: None,
        };
        let id = resolve(&l).unwrap();
        assert_eq!(id.announce, Endpoint::new("127.0.0.9", 7000));
        let l2 = Listen {
            announce_ip: Some("203.0.113.9".into()),
            announce_port: Some(31000),
            ..l.clone()
        };
        assert_eq!(resolve(&l2).unwrap().announce, Endpoint::new("203.0.113.9", 31000));
        let l3 = Listen { bind_ip: None, ..l };
        let e = resolve(&l3).unwrap_err();
        assert_eq!(e.var, "NET_IFACE");
        assert!(e.expected.contains("lo"), "{e}");
    }

    #[test]
    fn default_route_interface() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            ens5\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
            ens5\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            down0\t00000000\t0100A8C0\t0002\t0\t0\t1\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_iface(route).as_deref(), Some("ens5"));
        let no_default = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
            lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\n";
        assert_eq!(default_route_iface(no_default), None);
        assert_eq!(default_route_iface(""), None);
        assert_eq!(default_route_iface("garbage\n\t\t\n00000000"), None);
    }

    #[test]
    fn resolve_reads_interface() {
        let l = Listen {
            iface: Some("lo".into()),
            bind_ip: None,
            port: 1,
            announce_ip: None,
            announce_port: None,
        };
        assert_eq!(resolve(&l).unwrap().bind, Ipv4Addr::LOCALHOST);
    }

    #[test]
    fn missing_programs_are_config_errors() {
        let e = program(
            "REDIS_SERVER_BIN",
            Path::new("/nonexistent/redis-server"),
            "redis-server",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid REDIS_SERVER_BIN=\"/nonexistent/redis-server\": expected an executable redis-server, by path or on PATH"
        );
        let e = program("REDIS_SENTINEL_BIN", Path::new("/nope"), "redis-sentinel").unwrap_err();
        assert_eq!(e.var, "REDIS_SENTINEL_BIN");
        assert_eq!(
            program("REDIS_SERVER_BIN", Path::new("/bin/sh"), "sh").unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert!(program("X", Path::new("sh"), "sh").unwrap().is_absolute());
    }

    #[test]
    fn system_directories_and_homes_are_never_taken() {
        let homes = [
            PathBuf::from("/home/alice"),
            PathBuf::from("/var/www"),
            PathBuf::from("/srv/app/home"),
        ];
        for refused in [
            "/",
            "/tmp",
            "/home",
            "/etc",
            "/var",
            "/srv",
            "/mnt",
            "/etc/redis",
            "/usr/local/data",
            "/var/lib",
            "/var/tmp",
            "/home/alice",
            "/root/data",
            "/tmp/x",
            "/var/www",
            "/srv/app",
            "/proc/1",
            "/bin/x",
        ] {
            assert!(
                path_refusal(Path::new(refused), &homes).is_some(),
                "{refused} was accepted"
            );
        }
        for taken in [
            "/data",
            "/mnt/mesos/sandbox/data",
            "/tmp/rzk-local-group/redis1",
            "/var/lib/redis-zk/a",
            "/home/alice/rzk",
            "/srv/rzk/data",
        ] {
            assert_eq!(path_refusal(Path::new(taken), &homes), None, "{taken}");
        }
    }

    #[test]
    fn a_directory_is_taken_only_when_clearly_a_launchers_own() {
        let base = tempfile::Builder::new()
            .prefix("rzk-own-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        // Missing: created, nothing else to change.
        let missing = base.path().join("a/b");
        assert_eq!(
            check_own_dir(&missing, me, gid, &[]).unwrap(),
            Handover {
                create: true,
                chown: vec![]
            }
        );
        // Launcher files only, and a symbolic link out that is never followed.
        let own = base.path().join("own");
        std::fs::create_dir(&own).unwrap();
        std::fs::write(own.join("redis.conf"), "").unwrap();
        std::os::unix::fs::symlink("/etc", own.join("appendonlydir")).unwrap();
        let plan = check_own_dir(&own, me, gid, &[]).unwrap();
        assert!(plan.chown.iter().all(|p| !p.ends_with("appendonlydir")), "{plan:?}");
        // Something no launcher writes, in a directory not yet the user's.
        if me != 0 {
            return; // the rest needs root-owned entries: tests/ownership.rs
        }
        let foreign = base.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("notes.txt"), "").unwrap();
        let e = check_own_dir(&foreign, 999, 999, &[]).unwrap_err();
        assert!(e.contains("notes.txt"), "{e}");
        // A third user's file anywhere in it.
        let shared = base.path().join("shared");
        std::fs::create_dir_all(shared.join("appendonlydir")).unwrap();
        let f = shared.join("appendonlydir/x.aof");
        std::fs::write(&f, "").unwrap();
        std::os::unix::fs::lchown(&f, Some(4242), None).unwrap();
        let e = check_own_dir(&shared, 999, 999, &[]).unwrap_err();
        assert!(e.contains("uid 4242"), "{e}");
    }
}
