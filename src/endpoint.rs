//! Addresses: the `"<ip> <port>"` wire format and this task's own identity.
//!
//! Everything peers learn about a task (the master record, `/nodes`,
//! `/sentinels`, what Redis and Sentinel announce) is one [`Endpoint`], so that
//! the same task is named the same way everywhere. Data read from ZooKeeper
//! is untrusted; [`Endpoint::parse`] is strict and never panics.

use std::fmt;
use std::net::Ipv4Addr;

use crate::config::{ConfigError, Listen};

/// A host and a port, written as `"<host> <port>"`: ASCII, one space, no
/// newline. Clients parse `/redis/master` in this format, so it never changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// An IPv4 literal or a hostname.
    pub host: String,
    /// 1..=65535.
    pub port: u16,
}

/// Why a record could not be used. Logged with the znode path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not ASCII text of the expected shape.
    #[error("expected \"<ipv4-or-hostname> <port>\", got {0}")]
    Shape(String),
    /// The host part is neither an IPv4 literal nor a hostname.
    #[error("bad host {0:?}")]
    Host(String),
    /// The port is not a number from 1 to 65535.
    #[error("bad port {0:?} (expected 1-65535)")]
    Port(String),
}

/// Longest record we bother to parse; anything longer is garbage.
const MAX_RECORD: usize = 300;

impl Endpoint {
    /// Builds an endpoint from parts already known to be valid.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    /// Parses `"<ipv4-or-hostname> <1-65535>"` exactly: one space, no
    /// surrounding whitespace, no newline.
    pub fn parse_bytes(data: &[u8]) -> Result<Endpoint, ParseError> {
        let shown = || {
            if data.len() > 64 {
                format!("{} bytes", data.len())
            } else {
                format!("{:?}", String::from_utf8_lossy(data))
            }
        };
        if data.is_empty() || data.len() > MAX_RECORD || !data.is_ascii() {
            return Err(ParseError::Shape(shown()));
        }
        // ASCII was checked, so this cannot fail.
        let s = std::str::from_utf8(data).map_err(|_| ParseError::Shape(shown()))?;
        Self::parse(s)
    }

    /// Same as [`Endpoint::parse_bytes`] for text.
    pub fn parse(s: &str) -> Result<Endpoint, ParseError> {
        let mut parts = s.split(' ');
        let (Some(host), Some(port), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ParseError::Shape(format!("{s:?}")));
        };
        if !is_valid_host(host) {
            return Err(ParseError::Host(host.into()));
        }
        let port_ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        match port.parse::<u16>() {
            Ok(p) if port_ok && p > 0 => Ok(Endpoint::new(host, p)),
            _ => Err(ParseError::Port(port.into())),
        }
    }

    /// The record bytes, as written to ZooKeeper.
    pub fn to_record(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.host, self.port)
    }
}

/// True for an IPv4 literal or an RFC 1123 hostname. A dotted name whose last
/// label is numeric must be a valid IPv4 literal, so `1.2.3.999` is rejected
/// rather than taken for a hostname.
pub fn is_valid_host(h: &str) -> bool {
    if h.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    if h.is_empty() || h.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = h.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    labels.iter().all(label_ok) && !labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// Where this task listens and what it tells peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The address the child binds (besides 127.0.0.1).
    pub bind: Ipv4Addr,
    /// The port the child listens on.
    pub port: u16,
    /// What peers use: `ANNOUNCE_*`, else the bind address and port. It is
    /// registered in ZooKeeper and given to Redis/Sentinel as announce-ip/port.
    pub announce: Endpoint,
}

impl Identity {
    /// The local endpoint the launcher's own probes use.
    pub fn local(&self) -> Endpoint {
        Endpoint::new(self.bind.to_string(), self.port)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_records() {
        assert_eq!(Endpoint::parse("10.0.3.7 31457"), Ok(Endpoint::new("10.0.3.7", 31457)));
        assert_eq!(
            Endpoint::parse("redis-1.example.com 6379"),
            Ok(Endpoint::new("redis-1.example.com", 6379))
        );
        assert_eq!(Endpoint::parse("h 1").unwrap().to_string(), "h 1");
        let e = Endpoint::new("127.0.0.5", 40000);
        assert_eq!(Endpoint::parse_bytes(&e.to_record()), Ok(e));
    }

    #[test]
    fn rejects_garbage() {
        let big = vec![b'x'; 10 * 1024];
        let bad: &[&[u8]] = &[
            b"",
            b"hello",
            b"1.2.3.4 99999",
            b"1.2.3.4 0",
            b"1.2.3.4 +80",
            b"1.2.3.4  80",
            b"1.2.3.4 80\n",
            b" 1.2.3.4 80",
            b"1.2.3.4 80 x",
            b"1.2.3.999 80",
            b"-bad 80",
            b"a_b 80",
            b"\xff\xfe 80",
            &big,
        ];
        for b in bad {
            assert!(
                Endpoint::parse_bytes(b).is_err(),
                "{:?} should be rejected",
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic sweep over short byte strings around the format.
        let alphabet = b"0123456789. :-ax\n\xff";
        let mut buf = Vec::new();
        for n in 0..200_000u32 {
            buf.clear();
            let mut k = n;
            while k > 0 {
                buf.push(alphabet[(k % alphabet.len() as u32) as usize]);
                k /= alphabet.len() as u32;
            }
            let _ = Endpoint::parse_bytes(&buf);
        }
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
}
