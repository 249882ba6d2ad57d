//! Sentinel pub/sub events. The payload comes from the network and is
//! untrusted: the parser is strict, total and never panics.

use crate::model::Endpoint;

/// A `+switch-master` event: Sentinel promoted `new` in place of `old`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchMaster {
    /// The Sentinel master name.
    pub name: String,
    /// The master that was replaced.
    pub old: Endpoint,
    /// The promoted master.
    pub new: Endpoint,
}

/// A payload that is not a well-formed `+switch-master` event; the text
/// says what is wrong, for the log line that drops it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadEvent(String);

/// Parses `<name> <old-ip> <old-port> <new-ip> <new-port>`: ASCII, exactly
/// five fields separated by single spaces.
pub fn parse_switch_master(payload: &[u8]) -> Result<SwitchMaster, BadEvent> {
    let text = std::str::from_utf8(payload)
        .ok()
        .filter(|t| t.is_ascii() && t.len() <= 600)
        .ok_or_else(|| BadEvent(format!("not short ASCII text ({} bytes)", payload.len())))?;
    let fields: Vec<&str> = text.split(' ').collect();
    let [name, old_ip, old_port, new_ip, new_port] = fields.as_slice() else {
        return Err(BadEvent(format!(
            "expected 5 space-separated fields, got {}: {text:?}",
            fields.len()
        )));
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(BadEvent(format!("bad master name in {text:?}")));
    }
    let ep = |ip: &str, port: &str| {
        Endpoint::parse(&format!("{ip} {port}")).map_err(|e| BadEvent(format!("{e} in {text:?}")))
    };
    Ok(SwitchMaster {
        name: name.to_string(),
        old: ep(old_ip, old_port)?,
        new: ep(new_ip, new_port)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_event() {
        let e = parse_switch_master(b"mymaster 127.0.0.2 20001 127.0.0.3 20002").unwrap();
        assert_eq!(e.name, "mymaster");
        assert_eq!(e.old, Endpoint::new("127.0.0.2", 20001));
        assert_eq!(e.new, Endpoint::new("127.0.0.3", 20002));
    }

    #[test]
    fn rejects_malformed_payloads() {
        for bad in [
            &b""[..],
            b"mymaster",
            b"mymaster 1.2.3.4 1 5.6.7.8",
            b"mymaster 1.2.3.4 1 5.6.7.8 2 extra",
            b"mymaster 1.2.3.4 1 5.6.7.8 70000",
            b"mymaster 1.2.3.4 1 5.6.7.8 0",
            b"mymaster  1.2.3.4 1 5.6.7.8 2",
            b"mymaster 1.2.3.4 1 5.6.7.8 2\n",
            b"my\x01master 1.2.3.4 1 5.6.7.8 2",
            b"mymaster 1.2.3.4 1 not_a_host 2",
            b"\xff\xfe 1.2.3.4 1 5.6.7.8 2",
        ] {
            assert!(parse_switch_master(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse_switch_master(&vec![b'a'; 100_000]).is_err());
    }

    #[test]
    fn never_panics_on_noise() {
        let alphabet = b"m 1.2:\n\xff0";
        let mut buf = Vec::new();
        for n in 0..100_000u32 {
            buf.clear();
            let mut k = n;
            while k > 0 {
                buf.push(alphabet[(k % alphabet.len() as u32) as usize]);
                k /= alphabet.len() as u32;
            }
            let _ = parse_switch_master(&buf);
        }
    }
}
