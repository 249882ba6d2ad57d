//! How ZooKeeper is reached: the settings, the `ZK_HOSTS` connect string
//! and ZooKeeper paths. Pure parsing, kept next to the ZooKeeper code that
//! uses it; configuration calls it to refuse a bad value (exit 2) before
//! any connection is tried.

use std::time::Duration;

use crate::model::{Secret, is_valid_host};

/// How ZooKeeper is reached, shared by all three binaries.
#[derive(Debug, Clone)]
pub struct ZkConfig {
    /// `host:port,host:port`, every host with an explicit port.
    pub hosts: String,
    /// The `/chroot` suffix of `ZK_HOSTS`, created when missing.
    pub chroot: Option<String>,
    /// `ZK_ROOT`: the group's root, relative to the chroot.
    pub root: String,
    /// `ZK_SESSION_TIMEOUT_MS`.
    pub session_timeout: Duration,
    /// `ZK_CONNECT_TIMEOUT_S`: how long to try before giving up at start.
    pub connect_timeout: Duration,
    /// `ZK_DIGEST` as `user:password`.
    pub digest: Option<Secret>,
    /// Create the chroot, the root and its directories on connect (the
    /// launchers); a reader (`rzkctl`) creates nothing.
    pub create: bool,
}

/// A ZooKeeper path: absolute, no trailing slash, no empty or `.`/`..` parts.
pub fn is_valid_zk_path(p: &str) -> bool {
    p.len() > 1
        && p.starts_with('/')
        && p[1..]
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\0'))
}

/// Parses `ZK_HOSTS`: `host[:port],…[/chroot]`. Returns the connect string,
/// with the default port 2181 filled in, and the chroot.
pub fn parse_zk_hosts(s: &str) -> Option<(String, Option<String>)> {
    let s = s.trim();
    let (list, chroot) = match s.find('/') {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    if let Some(c) = chroot
        && c != "/"
        && !is_valid_zk_path(c)
    {
        return None;
    }
    let mut hosts = Vec::new();
    for entry in list.split(',') {
        let entry = entry.trim();
        let (host, port) = match entry.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p > 0)?),
            None => (entry, 2181),
        };
        if !is_valid_host(host) {
            return None;
        }
        hosts.push(format!("{host}:{port}"));
    }
    let chroot = chroot.filter(|c| *c != "/").map(str::to_owned);
    Some((hosts.join(","), chroot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zk_hosts_forms() {
        assert_eq!(parse_zk_hosts("a"), Some(("a:2181".into(), None)));
        assert_eq!(
            parse_zk_hosts("a:1,b:2/x/y"),
            Some(("a:1,b:2".into(), Some("/x/y".into())))
        );
        assert_eq!(
            parse_zk_hosts("10.0.0.1,10.0.0.2:2182/"),
            Some(("10.0.0.1:2181,10.0.0.2:2182".into(), None))
        );
        for bad in [
            "", ",", "a:", "a:0", "a:70000", "a:x", "a,,b", "a/x/", "a//x", "a b", "/x",
        ] {
            assert_eq!(parse_zk_hosts(bad), None, "{bad:?} should be rejected");
        }
    }
}
