//! What a launcher checks on its machine before it starts, after the
//! configuration was parsed: its address (an interface lookup), `DATA_DIR`
//! (created and tested for writability) and the program it will run. Each
//! failure is a [`ConfigError`]: exit 2 with one line, before ZooKeeper is
//! touched, like a bad variable.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, Listen};
use crate::model::{Endpoint, Identity};

/// Resolves the task address: `BIND_IP`, else the IPv4 address of
/// `NET_IFACE`; then the announced address. A missing interface is a
/// configuration error (exit 2) that lists the interfaces that do exist.
pub fn resolve(listen: &Listen) -> Result<Identity, ConfigError> {
    let bind = match listen.bind_ip {
        Some(ip) => ip,
        None => {
            let ifaces = if_addrs::get_if_addrs().unwrap_or_default();
            let found = ifaces.iter().find_map(|i| match (i.name == listen.iface, i.ip()) {
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
                        listen.iface.clone(),
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
    let fail = |e: std::io::Error| {
        ConfigError::new(
            "DATA_DIR",
            dir.display().to_string(),
            format!("a directory this user can write ({e})"),
        )
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".rzk-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)
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
            iface: "does-not-exist0".into(),
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
    fn resolve_reads_interface() {
        let l = Listen {
            iface: "lo".into(),
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
