//! Whether the group may switch between plain text and TLS now
//! (`rzkctl tls on|off`): only when every task can follow, since a task
//! left speaking the old way cannot talk to the others (replication,
//! Sentinel's links, the watcher's subscriptions).

use crate::model::{Endpoint, Speaker};

/// The tasks that could not follow a switch to TLS (`on`) or to plain
/// text, each with why, from the `<root>/speakers` registrations (child
/// name and what its data parsed to) and the servers and Sentinels
/// registered under `/nodes` and `/sentinels`. A registered server or
/// Sentinel without a speaker registration runs a launcher too old to say
/// what it speaks, and is counted as one that cannot follow. Empty: the
/// switch may go ahead.
pub fn switch_blockers(
    speakers: &[(String, Result<Speaker, String>)],
    nodes: &[Endpoint],
    sentinels: &[Endpoint],
    on: bool,
) -> Vec<String> {
    let (way, why) = if on {
        ("TLS", "has no TLS files")
    } else {
        ("plain text", "speaks only TLS (no TLS_TRANSITION=yes)")
    };
    let mut out = vec![];
    for (name, s) in speakers {
        match s {
            Err(e) => out.push(format!("speakers/{name}: unreadable ({e})")),
            Ok(s) if !s.can_speak(on) => {
                let at = s.addr.as_ref().map_or(String::new(), |a| format!(" {a}"));
                out.push(format!("{}{at} {why}, so it cannot speak {way}", s.kind));
            }
            Ok(_) => {}
        }
    }
    let said: Vec<&Endpoint> = speakers
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok()?.addr.as_ref())
        .collect();
    for (kind, list) in [("rzk-redis", nodes), ("rzk-sentinel", sentinels)] {
        for ep in list.iter().filter(|e| !said.contains(e)) {
            out.push(format!(
                "{kind} {ep} does not say what it speaks (a launcher older than this check)"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::*;

    fn speaker(kind: &str, addr: Option<Endpoint>, plain: bool, tls: bool) -> (String, Result<Speaker, String>) {
        let s = Speaker {
            kind: kind.into(),
            addr,
            plain,
            tls,
        };
        (format!("{kind}-x"), Ok(s))
    }

    #[test]
    fn a_switch_waits_for_every_task_to_be_able_to_follow() {
        let both = |n| speaker("rzk-redis", Some(ep(n)), true, true);
        let nodes = [ep(1), ep(2)];
        let sentinels = [sentinel(5)];
        let mut all = vec![
            both(1),
            both(2),
            speaker("rzk-sentinel", Some(sentinel(5)), true, true),
            speaker("rzk-watcher", None, true, true),
        ];
        assert!(switch_blockers(&all, &nodes, &sentinels, true).is_empty());
        assert!(switch_blockers(&all, &nodes, &sentinels, false).is_empty());

        // A plain-only watcher blocks `on`, not `off`.
        all[3] = speaker("rzk-watcher", None, true, false);
        let b = switch_blockers(&all, &nodes, &sentinels, true);
        assert_eq!(b, ["rzk-watcher has no TLS files, so it cannot speak TLS"]);
        assert!(switch_blockers(&all, &nodes, &sentinels, false).is_empty());

        // A TLS-only server blocks `off`.
        all[3] = speaker("rzk-watcher", None, true, true);
        all[1] = speaker("rzk-redis", Some(ep(2)), false, true);
        let b = switch_blockers(&all, &nodes, &sentinels, false);
        assert_eq!(
            b,
            ["rzk-redis 10.0.0.2 6379 speaks only TLS (no TLS_TRANSITION=yes), so it cannot speak plain text"]
        );

        // A registered Sentinel that says nothing, and garbage.
        let _ = all.remove(2);
        all.push(("x".into(), Err("expected value".into())));
        let b = switch_blockers(&all, &nodes, &sentinels, true);
        assert_eq!(
            b,
            [
                "speakers/x: unreadable (expected value)",
                "rzk-sentinel 10.0.0.5 26379 does not say what it speaks (a launcher older than this check)"
            ]
        );
    }
}
