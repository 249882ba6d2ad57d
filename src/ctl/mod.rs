//! `rzkctl`, the operator's command: the group's status from the same
//! snapshot the launchers decide on ([`crate::view::status`]), and a
//! planned switchover, which `rzkctl` only asks for: it writes an intent
//! (`<root>/switchover`) that the master's launcher carries out with the
//! same procedure as its own hand-over ([`crate::policy::switchover`]),
//! and reports how it went. Killing `rzkctl` changes nothing.

use std::time::Duration;

use tokio::time::{Instant, sleep};
use tracing::error;

use crate::config::CtlConfig;
use crate::model::{Cause, Endpoint, History, Intent, Pause, show_ms, unix_ms};
use crate::observe::observe;
use crate::policy::speak::switch_blockers;
use crate::policy::switchover::plan;
use crate::probe::Probe;
use crate::snapshot::{Scope, Snapshot};
use crate::view::status::{dash, status as group_status, table};
use crate::zk::Zk;

pub mod args;

/// Connects read-only; `None` (logged) when the group cannot be read.
async fn connect(cfg: &CtlConfig) -> Option<Zk> {
    Zk::connect_read_only(&cfg.common.zk)
        .await
        .map_err(|e| error!(error = %e, "cannot read the group"))
        .ok()
}

/// The whole group, nodes and the Sentinels' replicas included.
const WHOLE_GROUP: Scope = Scope {
    local_server: None,
    local_sentinel: None,
    nodes: true,
    sentinel_replicas: true,
};

/// Connects read-only and takes one look at the whole group; `None`
/// (logged) when the group cannot be read.
async fn look(cfg: &CtlConfig) -> Option<(Zk, Probe, Snapshot)> {
    let zk = connect(cfg).await?;
    zk.speak_as_group(cfg.common.tls.as_ref())
        .await
        .map_err(|e| error!(error = %e, path = %zk.tls_path(), "cannot read what the group speaks"))
        .ok()?;
    let probe = Probe::of(&cfg.common);
    let snap = observe(&zk, &probe, &cfg.common.master_name, &WHOLE_GROUP)
        .await
        .map_err(|e| error!(error = %e, "cannot read the group"))
        .ok()?;
    Some((zk, probe, snap))
}

/// `rzkctl status [--json]`: prints the table (or JSON) and returns the exit
/// code: 0 healthy, 1 degraded or unreadable.
pub async fn status(cfg: CtlConfig, json: bool) -> i32 {
    let Some((_zk, _probe, snap)) = look(&cfg).await else {
        return 1;
    };
    let s = group_status(&snap);
    // Shown first, whatever the verdict.
    let ok = show(json, &s, || table(&s)) && s.healthy;
    if ok { 0 } else { 1 }
}

/// How often `rzkctl` looks while it waits.
const POLL: Duration = Duration::from_millis(100);

/// `rzkctl switchover [--to IP:PORT] [--timeout S]`: asks the master's
/// launcher to hand the role to a replica with no acknowledged write lost.
/// Returns 0 once the launcher reports it done and the record and every
/// Sentinel name the new master; 1 with the reason otherwise.
///
/// The steps: plan from one look (a refusal writes nothing); write the
/// intent, with `--to` exclusive (every other replica's launcher holds its
/// replica back while it lives), until `now + timeout`; wait for the
/// master's launcher to write the result; wait for the record and the
/// Sentinels; remove the intent. If `rzkctl` dies on the way, the
/// launcher carries on, and an intent past its deadline is dropped by
/// every launcher.
pub async fn switchover(cfg: CtlConfig, to: Option<Endpoint>, timeout: Duration) -> i32 {
    let started = Instant::now();
    let deadline = started + timeout;
    let Some((zk, _probe, snap)) = look(&cfg).await else {
        return 1;
    };
    let master = match plan(&snap, to.as_ref()) {
        Ok(m) => m,
        Err(why) => return fail(format!("switchover refused, nothing changed: {why}")),
    };
    let intent = Intent {
        id: uuid::Uuid::new_v4().to_string(),
        from: master.clone(),
        exclusive: to.is_some(),
        to,
        deadline_ms: unix_ms() + timeout.as_millis() as u64,
        by: who(),
        result: None,
        cause: Cause::Switchover,
    };
    // A live intent is someone else's switchover under way; a finished or
    // expired one is replaced.
    let expected = match zk.read_switchover().await {
        Ok(None) => None,
        Ok(Some((data, v))) => match Intent::parse(&data) {
            Ok(i) if i.live(unix_ms()) => {
                return fail(format!(
                    "switchover refused, nothing changed: another one is under way ({}, {} s left)",
                    i.by,
                    i.deadline_ms.saturating_sub(unix_ms()) / 1000
                ));
            }
            _ => Some(v),
        },
        Err(e) => return fail(format!("switchover failed: cannot read {}: {e}", zk.switchover_path())),
    };
    if let Err(e) = zk.write_switchover(&intent.to_bytes(), expected).await {
        return fail(format!("switchover failed: cannot write {}: {e}", zk.switchover_path()));
    }
    let code = match wait_for_result(&zk, &intent, deadline).await {
        Ok((new, paused)) => match wait_for_agreement(&cfg, &zk, &new, deadline).await {
            Ok(()) => {
                println!(
                    "switched over from {master} to {new} in {:.1} s ({paused})",
                    started.elapsed().as_secs_f32()
                );
                0
            }
            Err(why) => fail(format!("switchover to {new} done, but {why}")),
        },
        Err(why) => fail(format!("switchover failed: {why}")),
    };
    if let Ok(Some((data, v))) = zk.read_switchover().await
        && Intent::parse(&data).is_ok_and(|i| i.id == intent.id)
    {
        let _ = zk.delete_switchover(v).await;
    }
    code
}

/// Waits until the master's launcher writes how the switchover ended:
/// the new master and how long writes were paused, or why it failed.
async fn wait_for_result(zk: &Zk, intent: &Intent, deadline: Instant) -> Result<(Endpoint, String), String> {
    loop {
        match zk.read_switchover().await {
            Ok(None) => return Err("the intent was removed before the master's launcher wrote how it ended".into()),
            Ok(Some((data, _))) => match Intent::parse(&data) {
                Ok(i) if i.id == intent.id => {
                    if let Some(r) = i.result.as_deref() {
                        return match r.strip_prefix("done ").map(|d| d.split_once("; ").unwrap_or((d, ""))) {
                            Some((new, paused)) => Endpoint::parse(new)
                                .map(|e| (e, paused.to_string()))
                                .map_err(|e| format!("odd result {r:?}: {e}")),
                            None => Err(r.strip_prefix("failed: ").unwrap_or(r).to_string()),
                        };
                    }
                }
                _ => return Err("the intent was replaced by someone else".into()),
            },
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err("timed out waiting for the master's launcher to carry it out".into());
        }
        sleep(POLL).await;
    }
}

/// Waits until the record and every registered Sentinel name `new`.
async fn wait_for_agreement(cfg: &CtlConfig, zk: &Zk, new: &Endpoint, deadline: Instant) -> Result<(), String> {
    let probe = Probe::of(&cfg.common);
    loop {
        let snap = observe(zk, &probe, &cfg.common.master_name, &Scope::default()).await;
        let disagree = match &snap {
            Err(e) => Some(e.to_string()),
            Ok(s) if s.record.master() != Some(new) => Some(format!("the record names {:?}", s.record.master())),
            Ok(s) => s
                .sentinels
                .iter()
                .find(|x| s.answer_of(x).is_none_or(|a| a.master != *new))
                .map(|x| format!("Sentinel {x} does not name it yet")),
        };
        let Some(why) = disagree else { return Ok(()) };
        if Instant::now() >= deadline {
            return Err(format!("timed out waiting for the record and every Sentinel: {why}"));
        }
        sleep(POLL).await;
    }
}

/// Prints `why` to stderr as `rzkctl: <why>`, and returns exit code 1.
fn fail(why: impl std::fmt::Display) -> i32 {
    eprintln!("rzkctl: {why}");
    1
}

/// Who runs this `rzkctl` (for the intent and the pause).
fn who() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("rzkctl on {} (pid {})", host.trim(), std::process::id())
}

/// How long `rzkctl pause` waits for every Sentinel to see every replica
/// at priority 0: a Sentinel reads a replica's `INFO` every 10 s.
const PAUSE_CONFIRM: Duration = Duration::from_secs(20);

/// `rzkctl pause [--for D] [--reason R]`: writes `<root>/pause` (replacing
/// any), then waits until no registered Sentinel sees a live replica above
/// priority 0 (the launchers set 0). 0 once they do; 1 when the pause
/// could not be written, or is written but not yet confirmed.
pub async fn pause(cfg: CtlConfig, duration: Duration, reason: String) -> i32 {
    let Some((zk, probe, _)) = look(&cfg).await else {
        return 1;
    };
    let started = Instant::now();
    let p = Pause {
        until_ms: unix_ms() + duration.as_millis() as u64,
        by: who(),
        reason,
    };
    let written = match zk.read_pause().await {
        Ok(v) => zk.write_pause(&p.to_bytes(), v.map(|(_, version)| version)).await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        let path = zk.pause_path();
        return fail(format!("pause failed, nothing changed: cannot write {path}: {e}"));
    }
    loop {
        let promotable = match observe(&zk, &probe, &cfg.common.master_name, &WHOLE_GROUP).await {
            Err(e) => vec![e.to_string()],
            Ok(snap) => snap
                .sentinel_replicas
                .iter()
                .flat_map(|(s, rs)| {
                    // A replica it sees down it would not promote (and it
                    // never forgets a dead one).
                    rs.iter()
                        .filter(|r| r.healthy && r.priority > 0)
                        .map(move |r| format!("Sentinel {s} sees {} at priority {}", r.addr, r.priority))
                })
                .collect(),
        };
        if promotable.is_empty() {
            println!(
                "paused until {} ({:.1} s to confirm): no failover and no role change until then or `rzkctl resume`",
                show_ms(p.until_ms),
                started.elapsed().as_secs_f32()
            );
            return 0;
        }
        if started.elapsed() >= PAUSE_CONFIRM {
            return fail(format!(
                "paused until {}, but not confirmed after {} s: {}",
                show_ms(p.until_ms),
                PAUSE_CONFIRM.as_secs(),
                promotable.join("; ")
            ));
        }
        sleep(POLL * 5).await;
    }
}

/// `rzkctl resume`: removes `<root>/pause`; the launchers give the
/// replicas their priorities back at their next look.
pub async fn resume(cfg: CtlConfig) -> i32 {
    let Some((zk, _probe, snap)) = look(&cfg).await else {
        return 1;
    };
    if let Err(e) = zk.delete_pause().await {
        return fail(format!("resume failed: cannot delete {}: {e}", zk.pause_path()));
    }
    match snap.pause {
        Some(p) => println!(
            "resumed (the pause by {} until {} is removed)",
            p.by,
            show_ms(p.until_ms)
        ),
        None => println!("resumed (the group was not paused)"),
    }
    0
}

/// `rzkctl history [--json]`: the last changes of master, oldest first.
/// Exit 0; 1 when it cannot be read.
pub async fn history(cfg: CtlConfig, json: bool) -> i32 {
    let Some(zk) = connect(&cfg).await else {
        return 1;
    };
    let h = match zk.read_history().await {
        Ok(h) => h,
        Err(e) => return fail(format!("cannot read {}: {e}", zk.history_path())),
    };
    if show(json, &h, || history_table(&h)) { 0 } else { 1 }
}

/// Prints `value` as pretty JSON, or the `table`; false (logged) when it
/// cannot be encoded.
fn show<T: serde::Serialize>(json: bool, value: &T, table: impl FnOnce() -> String) -> bool {
    if !json {
        print!("{}", table());
        return true;
    }
    serde_json::to_string_pretty(value)
        .inspect(|text| println!("{text}"))
        .inspect_err(|e| error!(error = %e, "cannot encode the answer as JSON"))
        .is_ok()
}

/// The history as a table for a terminal.
fn history_table(h: &History) -> String {
    let mut out = format!(
        "{:<20}  {:<10}  {:<22}  {:<22}  {}\n",
        "TIME", "CAUSE", "OLD", "NEW", "EPOCH"
    );
    for c in &h.0 {
        out += &format!(
            "{:<20}  {:<10}  {:<22}  {:<22}  {}\n",
            show_ms(c.at_ms),
            c.cause.as_str(),
            dash(c.old.as_ref()),
            c.new.to_string(),
            dash(c.epoch)
        );
    }
    out
}

/// How long `rzkctl tls` waits for every task to speak the new way.
const TLS_SWITCH: Duration = Duration::from_secs(30);

/// `rzkctl tls on|off`: writes `<root>/tls`, which every task with
/// `TLS_TRANSITION=yes` follows, then waits until every registered server
/// and Sentinel answers speaking it. 0 once they do; 1 when it could not
/// be written, or some task does not answer so within 30 s (a task
/// without `TLS_TRANSITION=yes` never will: `rzkctl tls` the other way
/// brings the group back). Needs the TLS files, as the tasks have them.
pub async fn tls(cfg: CtlConfig, on: bool) -> i32 {
    let Some(tls) = cfg.common.tls.clone() else {
        return fail(
            "tls refused, nothing changed: set TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_CERT_FILE (and TLS_TRANSITION=yes) as the tasks have them",
        );
    };
    let Some((zk, probe, snap)) = look(&cfg).await else {
        return 1;
    };
    // Only when every task can follow: one left speaking the old way
    // could not talk to the others.
    let speakers = match zk.speakers().await {
        Ok(s) => s,
        Err(e) => {
            let dir = zk.speakers_dir();
            return fail(format!("tls refused, nothing changed: cannot read {dir}: {e}"));
        }
    };
    let word = if on { "on" } else { "off" };
    let blockers = switch_blockers(&speakers, &snap.nodes, &snap.sentinels, on);
    if !blockers.is_empty() {
        return fail(format!(
            "tls {word} refused, nothing changed: {} task(s) could not follow (every task needs the TLS files and TLS_TRANSITION=yes first): {}",
            blockers.len(),
            blockers.join("; ")
        ));
    }
    let started = Instant::now();
    if let Err(e) = zk.write_group_tls(on).await {
        let path = zk.tls_path();
        return fail(format!("tls failed, nothing changed: cannot write {path}: {e}"));
    }
    tls.speak(on);
    let said = if on { "TLS" } else { "plain text" };
    let tasks: Vec<Endpoint> = snap.nodes.iter().chain(&snap.sentinels).cloned().collect();
    loop {
        let mut silent = vec![];
        for ep in &tasks {
            if let Err(e) = probe.cmd(ep, &["PING"]).await {
                silent.push(format!("{ep} ({e})"));
            }
        }
        if silent.is_empty() {
            println!(
                "the group speaks {said}: {} tasks answer so ({:.1} s)",
                tasks.len(),
                started.elapsed().as_secs_f32()
            );
            return 0;
        }
        if started.elapsed() >= TLS_SWITCH {
            return fail(format!(
                "{} says {word}, but after {} s these tasks do not answer in {said} (do they run with TLS_TRANSITION=yes?): {}",
                zk.tls_path(),
                TLS_SWITCH.as_secs(),
                silent.join("; ")
            ));
        }
        sleep(POLL * 5).await;
    }
}
