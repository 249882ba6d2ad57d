//! What a launcher checks on its machine before it starts, after the
//! configuration was parsed: its address (an interface lookup), `DATA_DIR`
//! (created and tested for writability) and the program it will run. Each
//! failure is a [`ConfigError`]: exit 2 with one line, before ZooKeeper is
//! touched, like a bad variable.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, Listen};
use crate::model::{Endpoint, Identity};

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
            let found = ifaces.iter().find_map(|i| match (i.name == wanted, i.ip()) {
                (true, std::net::IpAddr::V4(v4)) => Some(v4),
                _ => None,
            });
            match found {
                Some(ip) => ip,
                None => {
                    let mut names: Vec<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
                    names.sort_unstable();
                    names.dedup();
                    return Err(ConfigError::new(
                        "NET_IFACE",
                        wanted,
                        format!(
                            "an interface with an IPv4 address (found: {}), or set BIND_IP",
                            names.join(", ")
                        ),
                    ));
                }
            }
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

/// Creates `DATA_DIR` when missing and checks that it is writable, so a
/// launcher fails at start (exit 2) rather than after it joined the group:
/// Redis and Sentinel rewrite their config files through a temporary file in
/// that directory.
pub fn prepare_data_dir(dir: &Path) -> Result<(), ConfigError> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let fail = |e: std::io::Error| {
        ConfigError::new(
            "DATA_DIR",
            dir.display().to_string(),
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

/// When started as root: makes `data_dir` (when given) and everything in it
/// owned by [`RUN_AS`], then drops to that user, its group and no other
/// groups, so that neither the launcher nor its child runs as root.
/// Marathon creates persistent volumes owned by root; this is what lets an
/// image start as root for them, as the official image's `gosu` entrypoint
/// does. Called before any thread, socket or ZooKeeper session exists.
/// Returns the uid it dropped to, `None` when it was not root.
pub fn drop_root(data_dir: Option<&Path>) -> Result<Option<u32>, ConfigError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let Some((uid, gid)) = lookup_user(RUN_AS) else {
        return Err(ConfigError::new(
            "USER",
            "root",
            format!(
                "a user named {RUN_AS} to run as (a launcher started as root drops to it): create it, or start the launcher as another user"
            ),
        ));
    };
    if let Some(dir) = data_dir {
        let fail = |e: std::io::Error| {
            ConfigError::new(
                "DATA_DIR",
                dir.display().to_string(),
                format!("a directory root can create and hand to the {RUN_AS} user ({e})"),
            )
        };
        std::fs::create_dir_all(dir).map_err(fail)?;
        chown_tree(dir, uid, gid).map_err(fail)?;
    }
    let fail = |what: &str| {
        ConfigError::new(
            "USER",
            "root",
            format!(
                "to switch to the {RUN_AS} user ({what}: {})",
                std::io::Error::last_os_error()
            ),
        )
    };
    // SAFETY: plain system calls on a process that has no other thread yet.
    // The group list goes first and the uid last: after setuid, root's
    // right to change groups is gone.
    unsafe {
        if libc::setgroups(1, &gid) != 0 {
            return Err(fail("setgroups"));
        }
        if libc::setgid(gid) != 0 {
            return Err(fail("setgid"));
        }
        if libc::setuid(uid) != 0 {
            return Err(fail("setuid"));
        }
    }
    Ok(Some(uid))
}

/// The uid and gid of `name` from the password database.
fn lookup_user(name: &str) -> Option<(libc::uid_t, libc::gid_t)> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the strings it points
    // into live in `buf`, which we do not read.
    let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
}

/// Hands `dir` and everything under it to `uid:gid`, without following
/// symbolic links (a link in a volume must not give away a file elsewhere).
/// Files already owned by the user are left alone, so a large volume
/// costs a walk, not a write per file.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            chown_tree(&entry?.path(), uid, gid)?;
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
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
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
        .ok_or_else(|| ConfigError::new(var, shown.clone(), format!("an executable {what}, by path or on PATH")))
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
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
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
}
