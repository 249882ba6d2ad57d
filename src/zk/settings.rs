//! How ZooKeeper is reached: the settings, the `ZK_HOSTS` connect string
//! and ZooKeeper paths. Pure parsing, kept next to the ZooKeeper code that
//! uses it; configuration calls it to refuse a bad value (exit 2) before
//! any connection is tried.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::model::{Secret, is_valid_host};
use zookeeper_client::{TlsCa, TlsCerts, TlsDynamicCerts, TlsIdentity};

use crate::tls::{Refresh, Tls};

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
    /// The CA (and identity) for `tcp+tls://` servers.
    pub tls: Option<ZkTls>,
}

/// The certificates of a session over TLS: the files in service, and the
/// client's copy of them, which [`ZkTls::refresh`] updates live (new
/// connections of the same session use it).
#[derive(Debug, Clone)]
pub struct ZkTls {
    /// The files, checked.
    pub files: Tls,
    /// What the client connects with.
    pub certs: TlsDynamicCerts,
}

impl ZkTls {
    /// The client's certificates from `files`.
    pub fn new(files: Tls) -> Result<ZkTls, String> {
        let certs = TlsDynamicCerts::new(client_certs(&files)?);
        Ok(ZkTls { files, certs })
    }

    /// Looks at the files; a new set that passes the checks is handed to
    /// the client.
    pub fn refresh(&self) -> Refresh {
        let r = self.files.refresh();
        if let Refresh::Loaded(_) = &r {
            match client_certs(&self.files) {
                Ok(c) => self.certs.update(c),
                Err(e) => return Refresh::Refused(e),
            }
        }
        r
    }
}

fn client_certs(files: &Tls) -> Result<TlsCerts, String> {
    let m = files.current();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut b = TlsCerts::builder().with_ca(TlsCa::from_pem(&text(&m.ca_pem)).map_err(|e| e.to_string())?);
    if let Some((c, k)) = &m.identity {
        b = b.with_identity(TlsIdentity::from_pem(&text(c), &text(k)).map_err(|e| e.to_string())?);
    }
    b.build().map_err(|e| e.to_string())
}

/// A ZooKeeper path: absolute, no trailing slash, no empty or `.`/`..` parts.
pub fn is_valid_zk_path(p: &str) -> bool {
    p.len() > 1
        && p.starts_with('/')
        && p[1..]
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\0'))
}

/// The prefix of a `ZK_HOSTS` entry reached over TLS (the client crate's
/// syntax).
pub const TLS_SCHEME: &str = "tcp+tls://";

/// Parses `ZK_HOSTS`: `host[:port],…[/chroot]`, every entry prefixed with
/// `tcp+tls://` when ZooKeeper is reached over TLS (all or none). Returns
/// the connect string, with the default port 2181 filled in and the prefix
/// kept, and the chroot.
pub fn parse_zk_hosts(s: &str) -> Option<(String, Option<String>)> {
    let s = s.trim();
    let tls = s.starts_with(TLS_SCHEME);
    let bare = s.replace(TLS_SCHEME, "");
    let (list, chroot) = match bare.find('/') {
        Some(i) => (&bare[..i], Some(&bare[i..])),
        None => (bare.as_str(), None),
    };
    if let Some(c) = chroot
        && c != "/"
        && !is_valid_zk_path(c)
    {
        return None;
    }
    // All or none: a mixed list would send the session in clear text to
    // some servers.
    if s.split(',').any(|e| e.trim().starts_with(TLS_SCHEME) != tls) {
        return None;
    }
    let scheme = if tls { TLS_SCHEME } else { "" };
    let hosts = list.split(',').map(|entry| {
        let entry = entry.trim();
        let (host, port) = match entry.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p > 0)?),
            None => (entry, 2181),
        };
        is_valid_host(host).then(|| format!("{scheme}{host}:{port}"))
    });
    let hosts: Vec<String> = hosts.collect::<Option<_>>()?;
    let chroot = chroot.filter(|c| *c != "/").map(str::to_owned);
    Some((hosts.join(","), chroot))
}

/// Whether a connect string (as [`parse_zk_hosts`] returns it) reaches
/// ZooKeeper over TLS.
pub fn is_tls(hosts: &str) -> bool {
    hosts.starts_with(TLS_SCHEME)
}

/// The `host:port` entries of a connect string (as [`parse_zk_hosts`]
/// returns it), with the names that need resolving: an IP literal needs
/// none.
pub fn connect_entries(hosts: &str) -> Vec<(&str, u16)> {
    hosts
        .split(',')
        .filter_map(|e| {
            let (h, p) = e.rsplit_once(':')?;
            Some((h, p.parse().ok()?))
        })
        .collect()
}

/// One entry of the connect string, `(host, port)`, and what it resolved
/// to: its addresses, or why none.
pub type Resolved<'a> = ((&'a str, u16), Result<Vec<IpAddr>, String>);

/// The connect string handed to the ZooKeeper client: every entry as the
/// address(es) it resolved to, in order, each address once.
///
/// The client resolves a name itself only when it connects, and then takes
/// the first of its addresses that accepts a connection: a name that
/// resolves to every server of the ensemble (DC/OS's `master.mesos`) would
/// pin the session to one server, and a server that accepts connections
/// but does not answer (cut off, frozen, without quorum) would hold it
/// until the session expires. Given every address, the client tries one
/// after the other, in a shuffled order, as ZooKeeper's own client does.
///
/// An entry of `resolved` that did not resolve is left out as long as
/// another did; with none resolved, the answer is every entry's error.
pub fn expanded_connect_string(resolved: &[Resolved<'_>]) -> Result<String, String> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for ((_, port), r) in resolved {
        for ip in r.iter().flatten() {
            let a = SocketAddr::new(*ip, *port);
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    if out.is_empty() {
        let why: Vec<String> = resolved
            .iter()
            .map(|((h, p), r)| match r {
                Ok(_) => format!("{h}:{p}: no address"),
                Err(e) => format!("{h}:{p}: {e}"),
            })
            .collect();
        return Err(format!("no ZooKeeper address resolved ({})", why.join("; ")));
    }
    // `SocketAddr`'s display brackets an IPv6 address, as the client reads it.
    Ok(out.iter().map(SocketAddr::to_string).collect::<Vec<_>>().join(","))
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
        assert_eq!(
            parse_zk_hosts("tcp+tls://a,tcp+tls://b:2182/x"),
            Some(("tcp+tls://a:2181,tcp+tls://b:2182".into(), Some("/x".into())))
        );
        assert!(is_tls("tcp+tls://a:2181") && !is_tls("a:2181"));
        for bad in [
            "",
            ",",
            "a:",
            "a:0",
            "a:70000",
            "a:x",
            "a,,b",
            "a/x/",
            "a//x",
            "a b",
            "/x",
            "tcp+tls://a,b",
            "a,tcp+tls://b",
            "tcp+tls://",
            "tcp+tls:///x",
        ] {
            assert_eq!(parse_zk_hosts(bad), None, "{bad:?} should be rejected");
        }
    }

    #[test]
    fn connect_entries_split_host_and_port() {
        assert_eq!(
            connect_entries("master.mesos:2181,10.0.0.1:2182"),
            vec![("master.mesos", 2181), ("10.0.0.1", 2182)]
        );
        let (hosts, _) = parse_zk_hosts("zk-1.zk,zk-2.zk:2181/redis").unwrap();
        assert_eq!(connect_entries(&hosts), vec![("zk-1.zk", 2181), ("zk-2.zk", 2181)]);
    }

    #[test]
    fn every_address_of_every_name_is_handed_over_once() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // master.mesos resolving to three masters, a list naming one of
        // them again, and an IPv6 address.
        let resolved = vec![
            (
                ("master.mesos", 2181),
                Ok(vec![ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")]),
            ),
            (("zk-2.zk", 2181), Ok(vec![ip("10.0.0.2")])),
            (
                ("zk-6.zk", 2181),
                Err("failed to lookup address information".to_string()),
            ),
            (("10.0.0.9", 2182), Ok(vec![ip("10.0.0.9")])),
            (("zk6", 2181), Ok(vec![ip("fd00::1")])),
        ];
        assert_eq!(
            expanded_connect_string(&resolved).unwrap(),
            "10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181,10.0.0.9:2182,[fd00::1]:2181"
        );
        // The same address on another port is another server.
        let resolved = vec![
            (("a", 2181), Ok(vec![ip("10.0.0.1")])),
            (("b", 2182), Ok(vec![ip("10.0.0.1")])),
        ];
        assert_eq!(
            expanded_connect_string(&resolved).unwrap(),
            "10.0.0.1:2181,10.0.0.1:2182"
        );
    }

    #[test]
    fn nothing_resolved_says_why_for_each_name() {
        let resolved = vec![
            (
                ("master.mesos", 2181),
                Err("failed to lookup address information".to_string()),
            ),
            (("zk-1.zk", 2181), Ok(vec![])),
        ];
        let e = expanded_connect_string(&resolved).unwrap_err();
        assert!(e.contains("master.mesos:2181: failed to lookup"), "{e}");
        assert!(e.contains("zk-1.zk:2181: no address"), "{e}");
    }
}
