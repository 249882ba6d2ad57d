//! Network partitions, Jepsen-style: every task on a host of its own (a
//! network namespace with its own `eth0` on a bridge), cut off with
//! `iptables` inside the namespaces, with the Marathon files' Redis
//! arguments (`--min-replicas-to-write 1 --min-replicas-max-lag 10`),
//! `SENTINEL_DOWN_AFTER_MS=5000` and the default `FENCE_AFTER_MS` (3000).
//!
//! The test process sits on the bridge with three addresses: `.1` for a
//! plain client that stays on the old master's side of every cut, `.2` for
//! ZooKeeper (a forwarder to the test's ZooKeeper on loopback, so a host
//! cut off from `.2` is cut off from ZooKeeper), and `.3` for a client on
//! the majority's side, which follows `<root>/master` and counts a write
//! only when `WAIT 1` confirms it.
//!
//! Needs root (`ip netns`, `iptables`), as CI runs. Everything is removed
//! after each test, even when it fails.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::group::*;
use common::net::Net;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const FENCE_AFTER_MS: u64 = 3000;
const DOWN_AFTER_MS: u64 = 5000;
const CUT: Duration = Duration::from_secs(20);
const REDIS_PORT: u16 = 6379;
const SENTINEL_PORT: u16 = 26379;
const ADMIN_PORT: u16 = 8080;

/// The group: redis on hosts 1–3, Sentinels on 4–6, watchers on 7–8.
struct Cluster {
    net: Net,
    g: Group,
    /// The namespace of each member: redis, then sentinels, then watchers.
    ns: Vec<String>,
    /// The ZooKeeper forwarder's port on the bridge.
    zk_port: u16,
    /// The Sentinels' `down-after-milliseconds`.
    down_after_ms: u64,
}

impl Cluster {
    async fn start(tag: &str) -> Cluster {
        Cluster::start_with(tag, DOWN_AFTER_MS).await
    }

    /// [`Cluster::start`] with the Sentinels' `down-after-milliseconds`.
    async fn start_with(tag: &str, down_after_ms: u64) -> Cluster {
        let net = Net::new();
        let zk_port = forward_zk(&net.ip(2));
        let mut c = Cluster {
            net,
            g: Group::new(tag),
            ns: vec![],
            zk_port,
            down_after_ms,
        };
        let kinds = [
            ("redis", 1u8),
            ("redis", 2),
            ("redis", 3),
            ("sentinel", 4),
            ("sentinel", 5),
            ("sentinel", 6),
            ("watcher", 7),
            ("watcher", 8),
        ];
        for (kind, i) in kinds {
            c.launch(kind, i);
            if kind == "redis" && i == 1 {
                wait_for("the first master's record", Duration::from_secs(30), || async {
                    c.g.record().await.ok_or_else(|| "no record yet".to_string())
                })
                .await;
            }
        }
        c.settle().await;
        c
    }

    /// Starts a task of `kind` on host `10 + i`, a namespace of its own.
    fn launch(&mut self, kind: &str, i: u8) {
        let (name, ip) = self.net.host(i);
        let g = &mut self.g;
        let t = Task {
            ip: ip.clone(),
            port: if kind == "sentinel" { SENTINEL_PORT } else { REDIS_PORT },
            dir: task().dir,
        };
        let mut env: Vec<(&str, String)> = g.env((kind != "watcher").then_some(&t));
        env.retain(|(k, _)| !["ZK_HOSTS", "SENTINEL_DOWN_AFTER_MS"].contains(k));
        env.push(("ZK_HOSTS", format!("{}:{}", self.net.ip(2), self.zk_port)));
        env.push(("SENTINEL_DOWN_AFTER_MS", self.down_after_ms.to_string()));
        env.push(("ADMIN_PORT", ADMIN_PORT.to_string()));
        let bin = match kind {
            "redis" => RZK_REDIS,
            "sentinel" => RZK_SENTINEL,
            _ => RZK_WATCHER,
        };
        let mut args = vec!["netns", "exec", name.as_str(), bin];
        if kind == "redis" {
            args.extend([
                "--repl-diskless-sync-delay",
                "0",
                "--min-replicas-to-write",
                "1",
                "--min-replicas-max-lag",
                "10",
            ]);
        }
        let proc = Proc::spawn("ip", &args, &env, t.dir.join("launcher.log"));
        let m = Member {
            task: t,
            proc,
            admin: Some(ADMIN_PORT),
        };
        // Members in order: redis, then sentinels, then watchers.
        let at = match kind {
            "redis" => {
                g.redis.push(m);
                g.redis.len() - 1
            }
            "sentinel" => {
                g.sentinels.push(m);
                g.redis.len() + g.sentinels.len() - 1
            }
            _ => {
                g.watchers.push(m);
                self.ns.len()
            }
        };
        self.ns.insert(at, name);
    }

    /// Waits until the group is healthy and every Sentinel knows every
    /// replica as promotable.
    async fn settle(&self) {
        let g = &self.g;
        let master = g.wait_healthy(Duration::from_secs(60)).await;
        // Sentinel learns of replicas from the master's INFO, every 10 s: a
        // cut before every Sentinel knows every replica as promotable could
        // only end in -failover-abort-no-good-slave (seen once in CI).
        let replicas: Vec<String> = g.redis.iter().map(Member::addr).filter(|a| *a != master).collect();
        let sentinels: Vec<String> = g.sentinels.iter().map(Member::addr).collect();
        wait_sentinels_know(&sentinels, &replicas, None, Duration::from_secs(30)).await;
    }

    fn ns_of(&self, addr: &str) -> &str {
        let mut members = self.g.redis.iter().chain(&self.g.sentinels).chain(&self.g.watchers);
        let i = members.position(|m| m.addr() == addr).expect("a member");
        &self.ns[i]
    }

    /// The addresses of every member except `except`, plus ZooKeeper's and
    /// the majority client's.
    fn all_but(&self, except: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = self
            .g
            .redis
            .iter()
            .chain(&self.g.sentinels)
            .chain(&self.g.watchers)
            .map(|m| m.task.ip.clone())
            .filter(|ip| !except.iter().any(|e| e.starts_with(&format!("{ip} "))))
            .collect();
        v.push(self.net.ip(2));
        v.push(self.net.ip(3));
        v
    }
}

/// A Redis client on a chosen source address, speaking RESP itself (the
/// redis crate cannot bind its source), so the test can sit on either side
/// of a cut.
async fn resp(from: &str, to: &str, cmds: &[&[&str]]) -> Result<Vec<String>, String> {
    let (ip, port) = to.split_once(' ').ok_or("bad address")?;
    let target = format!("{ip}:{port}").parse().map_err(|e| format!("{e}"))?;
    let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(format!("{from}:0").parse().unwrap())
        .map_err(|e| e.to_string())?;
    let mut s = tokio::time::timeout(Duration::from_millis(500), sock.connect(target))
        .await
        .map_err(|_| "connect timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let out = resp_encode(cmds);
    let io = async {
        s.write_all(&out).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        // Every reply here is one line: +OK, :n or -ERR.
        while buf.iter().filter(|b| **b == b'\n').count() < cmds.len() {
            let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed".to_string());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok(String::from_utf8_lossy(&buf).lines().map(str::to_string).collect())
    };
    tokio::time::timeout(Duration::from_millis(1500), io)
        .await
        .map_err(|_| "reply timeout".to_string())?
}

/// What a writer saw.
#[derive(Debug, Default)]
struct Tally {
    acked: Vec<(String, Instant)>,
    refused: Vec<(Instant, String)>,
}

/// A writer from `from`: with `wait` > 0 it follows `<root>/master` (read
/// again after every failure) and counts a write only when `WAIT <wait>`
/// confirms it (the majority's client); with 0 it keeps writing plain
/// `SET`s to `master` (a client on the old master's side).
fn writer(
    from: String,
    root: String,
    master: String,
    wait: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Tally> {
    let follow = wait > 0;
    tokio::spawn(async move {
        let mut t = Tally::default();
        let mut target = master;
        let c = zk_client().await;
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            i += 1;
            let key = format!("w{wait}:{i}");
            let n = wait.to_string();
            let r = if follow {
                resp(&from, &target, &[&["SET", &key, "v"], &["WAIT", &n, "1000"]]).await
            } else {
                resp(&from, &target, &[&["SET", &key, "v"]]).await
            };
            let ok = match &r {
                Ok(lines) if follow => {
                    lines.first().map(String::as_str) == Some("+OK")
                        && lines
                            .get(1)
                            .and_then(|l| l.strip_prefix(':'))
                            .and_then(|n| n.parse::<usize>().ok())
                            .unwrap_or(0)
                            >= wait
                }
                Ok(lines) => lines.first().map(String::as_str) == Some("+OK"),
                Err(_) => false,
            };
            if ok {
                t.acked.push((key, Instant::now()));
            } else {
                t.refused.push((Instant::now(), format!("{r:?}")));
                if follow && let Some((data, _)) = zk_get(&c, &format!("{root}/master")).await {
                    target = String::from_utf8_lossy(&data).into_owned();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        t
    })
}

/// Waits (40 s at most) until `old` is a replica of `new` with its link up.
async fn follows(old: &str, new: &str) {
    wait_for(
        "the old master to follow the new one",
        Duration::from_secs(40),
        || async {
            let role = role(old).await?;
            if role != "slave" {
                return Err(format!("{old}: {role}, record {new}"));
            }
            let host = info_field(old, "replication", "master_host").await?;
            let port = info_field(old, "replication", "master_port").await?;
            let link = info_field(old, "replication", "master_link_status").await?;
            if format!("{host} {port}") == new && link == "up" {
                Ok(())
            } else {
                Err(format!("{old}: {role} of {host} {port} (link {link}), record {new}"))
            }
        },
    )
    .await;
}

/// Acknowledged keys missing from `master` (checked from the host).
async fn lost(master: &str, acked: &[(String, Instant)]) -> Vec<String> {
    let keys: Vec<String> = acked.iter().map(|(k, _)| k.clone()).collect();
    missing_keys(master, None, &keys).await
}

/// The scenario the fence exists for: the master's host and `with` (none,
/// or one replica's host) cut off from ZooKeeper, the Sentinels, the other
/// replica(s) and the majority's client, but not from each other, for 20 s.
async fn master_cut_off(tag: &str, with_replica: bool) {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start(tag).await;
    let g = &c.g;
    let old = g.record().await.unwrap();
    let replica = g.redis.iter().map(Member::addr).find(|a| *a != old).unwrap();
    let mut minority = vec![old.as_str()];
    if with_replica {
        minority.push(replica.as_str());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let plain = writer(c.net.ip(1), g.root.clone(), old.clone(), 0, stop.clone());
    let waiting = writer(c.net.ip(3), g.root.clone(), old.clone(), 1, stop.clone());
    let all = writer(c.net.ip(3), g.root.clone(), old.clone(), 2, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sides: Vec<&str> = minority.iter().map(|a| c.ns_of(a)).collect();
    let cut = Instant::now();
    c.net.cut(&sides, &c.all_but(&minority));
    // The record moves to a server of the majority while the cut lasts.
    let new = wait_for("the record to move to the majority's side", CUT, || async {
        match g.record().await {
            Some(r) if !minority.contains(&r.as_str()) => Ok(r),
            other => Err(format!("record {other:?}")),
        }
    })
    .await;
    let moved_after = cut.elapsed();
    tokio::time::sleep(CUT.saturating_sub(cut.elapsed())).await;
    c.net.heal();
    let healed = Instant::now();
    // The old master comes back as a replica of the new one.
    follows(&old, &new).await;
    let rejoined_after = healed.elapsed();
    // The majority's client writes to the new master with WAIT 1 again
    // (during the cut it may have had no replica to acknowledge).
    let from = c.net.ip(3);
    wait_for(
        "a WAIT 1 write to the new master after healing",
        Duration::from_secs(20),
        || async {
            match resp(&from, &new, &[&["SET", "after-heal", "v"], &["WAIT", "1", "1000"]]).await {
                Ok(l) if l.first().map(String::as_str) == Some("+OK") && l.get(1).is_some_and(|n| n != ":0") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let (plain, waiting, all) = (plain.await.unwrap(), waiting.await.unwrap(), all.await.unwrap());
    let master = g.record().await.unwrap();
    assert_eq!(master, new, "the record moved again after healing");

    // The fence: the old master's first refusal after the cut.
    let fenced_at = plain
        .refused
        .iter()
        .find(|(at, why)| *at > cut && why.contains("NOREPLICAS"))
        .map(|(at, _)| at.duration_since(cut));
    let plain_lost = lost(&master, &plain.acked).await;
    let wait_lost = lost(&master, &waiting.acked).await;
    let all_lost = lost(&master, &all.acked).await;
    let acked_after_cut = plain.acked.iter().filter(|(_, at)| *at > cut).count();
    let plain_lost_after_cut = plain
        .acked
        .iter()
        .filter(|(k, at)| *at > cut && plain_lost.contains(k))
        .count();
    eprintln!(
        "MEASURE {tag}: fenced {fenced_at:?} after the cut; record moved after {moved_after:?}; old master rejoined {rejoined_after:?} after healing; plain client: {} acknowledged ({acked_after_cut} after the cut), {} lost ({plain_lost_after_cut} acknowledged after the cut); WAIT 1 client: {} acknowledged, {} lost; WAIT 2 client: {} acknowledged, {} lost",
        plain.acked.len(),
        plain_lost.len(),
        waiting.acked.len(),
        wait_lost.len(),
        all.acked.len(),
        all_lost.len()
    );
    let fenced_at = fenced_at.unwrap_or_else(|| {
        panic!("the old master never refused a write after the cut ({acked_after_cut} acknowledged after it)")
    });
    assert!(
        fenced_at <= Duration::from_millis(FENCE_AFTER_MS + 1000),
        "the old master refused writes only {fenced_at:?} after the cut"
    );
    // The majority's WAIT 1 client loses nothing: whatever a replica had
    // confirmed before the cut, the other replica had received too (the
    // master sends both the same stream), and after the cut the client
    // could only write to the new master. WAIT for every replica neither.
    assert!(
        wait_lost.is_empty(),
        "the WAIT 1 client lost {} of {} writes ({} of them acknowledged after the cut): {:?}",
        wait_lost.len(),
        waiting.acked.len(),
        waiting
            .acked
            .iter()
            .filter(|(k, at)| *at > cut && wait_lost.contains(k))
            .count(),
        &wait_lost[..wait_lost.len().min(5)]
    );
    assert!(
        all_lost.is_empty(),
        "the WAIT 2 client lost {} writes: {:?}",
        all_lost.len(),
        &all_lost[..all_lost.len().min(5)]
    );

    // Everything the old master acknowledged before the record moved away
    // from it but after the cut is lost; the fence bounds how much.
    assert!(
        plain
            .acked
            .iter()
            .filter(|(_, at)| *at > cut + Duration::from_millis(FENCE_AFTER_MS + 1000))
            .count()
            == 0,
        "the old master acknowledged writes after its fence deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_and_one_replica_cut_off() {
    master_cut_off("cut-master-replica", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_alone_cut_off() {
    master_cut_off("cut-master", false).await;
}

/// A Sentinel false positive: the Sentinels cut off from the master's host
/// (`SENTINEL_DOWN_AFTER_MS=1000`), while its replicas, ZooKeeper and both
/// clients still reach it. The Sentinels fail the live master over; its
/// launcher, which cannot renew the Sentinels' lease either, fences it
/// before the promotion. The record-following `WAIT 1` client loses
/// nothing; once the cut heals, the old master rejoins as a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_cut_off_from_a_live_master() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start_with("cut-sentinels", 1000).await;
    let g = &c.g;
    let old = g.record().await.unwrap();
    let oi = g.redis.iter().position(|m| m.addr() == old).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let plain = writer(c.net.ip(1), g.root.clone(), old.clone(), 0, stop.clone());
    let waiting = writer(c.net.ip(3), g.root.clone(), old.clone(), 1, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sentinels: Vec<String> = g.sentinels.iter().map(|m| m.task.ip.clone()).collect();
    let cut = Instant::now();
    c.net.cut(&[c.ns_of(&old)], &sentinels);
    let new = wait_for("the record to move", CUT, || async {
        match g.record().await {
            Some(r) if r != old => Ok(r),
            other => Err(format!("record {other:?}")),
        }
    })
    .await;
    let moved_after = cut.elapsed();
    let ni = g.redis.iter().position(|m| m.addr() == new).unwrap();
    // The writers go on for a while on the new master before the cut heals.
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.net.heal();
    let healed = Instant::now();
    follows(&old, &new).await;
    let rejoined_after = healed.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (plain, waiting) = (plain.await.unwrap(), waiting.await.unwrap());
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let wait_lost = lost(&master, &waiting.acked).await;
    let plain_lost = lost(&master, &plain.acked).await;
    // How the old master rejoined: a partial resynchronization keeps its
    // data (nothing diverged); a full one replaces it, and the new master
    // logs by how many bytes the old one had gone past it.
    let resync = g.redis[ni]
        .proc
        .log()
        .lines()
        .filter(|l| l.contains("resynchronization") || l.contains("Full resync"))
        .map(str::to_string)
        .collect::<Vec<_>>()
        .join(" | ");
    eprintln!("MEASURE the old master's resynchronization, as the new master logged it: {resync}");
    // Its launcher compared it with the new master before demoting it: no
    // client write past the promotion (the fence came first), only the
    // Sentinels' hellos and the pings, so nothing kept.
    let old_log = g.redis[oi].proc.log();
    let demoted = old_log
        .lines()
        .find(|l| l.contains("holds nothing the master lacks") || l.contains("DIVERGED"));
    eprintln!("MEASURE the old master's demotion: {demoted:?}");
    // The fence and the promotion, by the two servers' own clocks (one
    // machine): the launcher's FENCED line, the new master's switch.
    let fenced = g.redis[oi]
        .proc
        .log()
        .lines()
        .find(|l| l.contains("FENCED"))
        .map(str::to_string);
    let promoted = g.redis[ni]
        .proc
        .log()
        .lines()
        .rfind(|l| l.contains("MASTER MODE enabled"))
        .map(str::to_string);
    let fenced_ms = fenced.as_deref().and_then(launcher_ms);
    let promoted_ms = promoted.as_deref().and_then(redis_ms);
    eprintln!(
        "MEASURE Sentinels cut off from a live master: record moved {moved_after:?} after the cut; fenced at {fenced_ms:?}, promoted at {promoted_ms:?} (ms of the day); rejoined {rejoined_after:?} after healing; WAIT 1 client: {} acknowledged, {} lost; plain client: {} acknowledged, {} lost",
        waiting.acked.len(),
        wait_lost.len(),
        plain.acked.len(),
        plain_lost.len()
    );
    let (Some(f), Some(p)) = (fenced_ms, promoted_ms) else {
        panic!(
            "no fence ({fenced:?}) or no promotion ({promoted:?}) in the logs\n{}",
            g.diagnose().await
        );
    };
    assert!(f < p, "fenced {} ms after the promotion\n{}", f - p, g.diagnose().await);
    assert_none_lost("the WAIT 1 client", &wait_lost, waiting.acked.len());
    assert!(
        demoted.is_some_and(|l| l.contains("holds nothing the master lacks")),
        "the old master's launcher did not compare it with the new master before demoting it, or kept a copy:\n{old_log}"
    );
}

/// No fence, no failover, nothing lost, while ZooKeeper is cut off from
/// every task for 20 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_alone_cut_off() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start("cut-zk").await;
    let g = &c.g;
    let master = g.record().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let plain = writer(c.net.ip(1), g.root.clone(), master.clone(), 0, stop.clone());
    let waiting = writer(c.net.ip(3), g.root.clone(), master.clone(), 1, stop.clone());
    let all: Vec<&str> = c.ns.iter().map(String::as_str).collect();
    c.net.cut(&all, &[c.net.ip(2)]);
    tokio::time::sleep(CUT).await;
    c.net.heal();
    stop.store(true, Ordering::SeqCst);
    let (plain, waiting) = (plain.await.unwrap(), waiting.await.unwrap());
    for s in &g.sentinels {
        assert_eq!(
            sentinel_master(&s.addr()).await.as_deref(),
            Ok(master.as_str()),
            "a Sentinel moved"
        );
    }
    assert_eq!(role(&master).await.as_deref(), Ok("master"));
    assert!(
        plain.refused.is_empty(),
        "writes refused: {:?}",
        &plain.refused[..plain.refused.len().min(3)]
    );
    let (pl, wl) = (lost(&master, &plain.acked).await, lost(&master, &waiting.acked).await);
    assert!(
        pl.is_empty() && wl.is_empty(),
        "lost {} plain, {} WAIT",
        pl.len(),
        wl.len()
    );
    g.wait_healthy(Duration::from_secs(60)).await;
    eprintln!(
        "MEASURE ZooKeeper cut off 20 s: {} plain and {} WAIT writes, none refused or lost, no failover",
        plain.acked.len(),
        waiting.acked.len()
    );
}

/// One Sentinel's host cut off from everything: the data path does not
/// notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sentinel_cut_off() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start("cut-sentinel").await;
    let g = &c.g;
    let master = g.record().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let plain = writer(c.net.ip(1), g.root.clone(), master.clone(), 0, stop.clone());
    let s = g.sentinels[0].addr();
    c.net.cut(&[c.ns_of(&s)], &c.all_but(&[s.as_str()]));
    tokio::time::sleep(Duration::from_secs(10)).await;
    c.net.heal();
    stop.store(true, Ordering::SeqCst);
    let plain = plain.await.unwrap();
    assert!(
        plain.refused.is_empty(),
        "writes refused: {:?}",
        &plain.refused[..plain.refused.len().min(3)]
    );
    assert_eq!(g.record().await.as_deref(), Some(master.as_str()), "the record moved");
    assert!(lost(&master, &plain.acked).await.is_empty());
    g.wait_healthy(Duration::from_secs(60)).await;
    eprintln!(
        "MEASURE one Sentinel cut off 10 s: {} writes, none refused or lost",
        plain.acked.len()
    );
}

/// A replica's host cut off until its `/ready` turns 503 (it has heard
/// nothing from its master for more than `READY_MAX_LAG_S`, 10 s), then
/// healed: it rejoins and its `/ready` is 200 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_rejoins() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start("cut-replica").await;
    let g = &c.g;
    let master = g.record().await.unwrap();
    let r = g.redis.iter().find(|m| m.addr() != master).unwrap();
    let addr = r.addr();
    let cut = Instant::now();
    c.net.cut(&[c.ns_of(&addr)], &c.all_but(&[addr.as_str()]));
    // The test's host address is not cut: it still reads the admin API.
    wait_for(
        "the cut-off replica's /ready to turn 503",
        Duration::from_secs(25),
        || async {
            match http_get(&r.task.ip, ADMIN_PORT, "/ready").await {
                Ok((503, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let unready_after = cut.elapsed();
    c.net.heal();
    let healed = Instant::now();
    wait_for("the replica to be ready again", Duration::from_secs(30), || async {
        match http_get(&r.task.ip, ADMIN_PORT, "/ready").await {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let took = healed.elapsed();
    assert_eq!(g.record().await.as_deref(), Some(master.as_str()), "the record moved");
    g.wait_healthy(Duration::from_secs(60)).await;
    eprintln!("MEASURE replica cut off: /ready 503 after {unready_after:?}, 200 again {took:?} after healing");
}

/// The master and one replica cut off, with clients that know one address:
/// a writer goes only through HAProxy, configured with the docs' recipe
/// (`docs/haproxy.cfg`), which runs on a host of its own on the majority's
/// side (a marathon-lb host), in front of 4 redis tasks, so that the
/// majority keeps a replica to confirm `WAIT 1` (and satisfy
/// `min-replicas-to-write 1`). A second proxy with the same recipe on the
/// test's host, which both sides reach, shows the fenced old master
/// leaving its pool before the promotion. Then:
/// - nothing the writer saw confirmed by `WAIT 1` is lost;
/// - its first confirmed write comes at most 1.5 s after the record moved;
/// - the old master leaves both pools and never comes back, healed,
///   fenced, then demoted;
/// - an idle client connected straight to the old master from a host on
///   its side is dropped when it is demoted after the heal, and nothing
///   of the test stays connected to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_and_one_replica_cut_off_behind_a_proxy() {
    use common::haproxy::*;
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start("cut-proxy").await;
    c.launch("redis", 9);
    c.settle().await;
    let (proxy_ns, proxy_ip) = c.net.host(10);
    let g = &c.g;
    let old = g.record().await.unwrap();
    let replica = g.redis.iter().map(Member::addr).find(|a| *a != old).unwrap();
    let minority = [old.as_str(), replica.as_str()];
    // The writer's proxy, on the majority's side of the cut.
    let proxy = Haproxy::start(g, Some(&proxy_ip), Some(&proxy_ns));
    proxy.wait_only_up("redis_write", &old, Duration::from_secs(10)).await;
    // The proxy both sides reach (the test's own host): it sees the fence.
    let seeing = Haproxy::start(g, None, None);
    seeing.wait_only_up("redis_write", &old, Duration::from_secs(10)).await;
    let pool = PoolWatch::start(&proxy, "redis_write");
    let seen_pool = PoolWatch::start(&seeing, "redis_write");
    let record = RecordWatch::start(&g.root).await;
    let direct = idle_connection(&old, "rzk-direct-idle", Duration::from_secs(120)).await;
    let writer = ProxyWriter::start(proxy.write.clone(), "cut");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sides: Vec<&str> = minority.iter().map(|a| c.ns_of(a)).collect();
    let mut others = c.all_but(&minority);
    others.push(proxy_ip.clone());
    let cut = Instant::now();
    c.net.cut(&sides, &others);
    let (moved_at, new) = record.wait_moved(&old, CUT).await;
    assert!(
        !minority.contains(&new.as_str()),
        "the record moved to {new}, on the cut side"
    );
    proxy.wait_only_up("redis_write", &new, Duration::from_secs(10)).await;
    tokio::time::sleep(CUT.saturating_sub(cut.elapsed())).await;
    c.net.heal();
    let healed = Instant::now();
    wait_for(
        "the old master to follow the new one",
        Duration::from_secs(40),
        || async {
            let role = role(&old).await?;
            let host = info_field(&old, "replication", "master_host").await.unwrap_or_default();
            let port = info_field(&old, "replication", "master_port").await.unwrap_or_default();
            if role == "slave" && format!("{host} {port}") == new {
                Ok(())
            } else {
                Err(format!("{old}: {role} of {host} {port}"))
            }
        },
    )
    .await;
    let followed = Instant::now();
    // Dropped as it was demoted: at the latest a look (1 s) after the role
    // change was seen.
    let direct_closed = tokio::time::timeout(Duration::from_secs(2), direct)
        .await
        .ok()
        .and_then(|r| r.unwrap());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ledger = writer.finish().await;
    let stale: Vec<String> = common::haproxy::client_names(&old)
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("rzk-"))
        .collect();
    let wait_keys: Vec<String> = ledger.wait_acked.iter().map(|(k, _)| k.clone()).collect();
    let plain: Vec<String> = ledger.plain_ok.iter().map(|(k, _)| k.clone()).collect();
    let wait_lost = missing_keys(&new, None, &wait_keys).await;
    let plain_lost = missing_keys(&new, None, &plain).await;
    let first = ledger.first_ack_after(moved_at);
    let left = pool.left_for_good(&old, cut).map(|t| t - cut);
    let seen_left = seen_pool.left_for_good(&old, cut).map(|t| t - cut);
    let fenced = g
        .redis
        .iter()
        .find(|m| m.addr() == old)
        .unwrap()
        .proc
        .log()
        .contains("FENCED");
    eprintln!(
        "MEASURE proxy, master + 1 replica cut off: record moved {:?} after the cut; first WAIT-confirmed write through the proxy {first:?} after the move; write gap {:?}; {}; old master out of the writer's pool {left:?} after the cut, out of the pool of the proxy both sides reach {seen_left:?} after the cut (fenced: {fenced}); followed the new master {:?} after the heal; idle client straight to it closed {:?} after that",
        moved_at - cut,
        ledger.gap_around(moved_at),
        ledger.tally(wait_lost.len(), plain_lost.len()),
        followed - healed,
        direct_closed.map(|t| t.saturating_duration_since(healed)),
    );
    assert!(
        ledger.wait_acked.iter().any(|(_, at)| *at < cut),
        "the writer confirmed nothing before the cut: {:?}",
        &ledger.errors[..ledger.errors.len().min(5)]
    );
    assert!(
        wait_lost.is_empty(),
        "{} of {} writes confirmed by WAIT 1 lost: {:?}",
        wait_lost.len(),
        wait_keys.len(),
        &wait_lost[..wait_lost.len().min(5)]
    );
    let first = first.unwrap_or_else(|| panic!("no write confirmed after the record moved"));
    assert!(
        first <= Duration::from_millis(1500),
        "the first write confirmed through the proxy came {first:?} after the record moved; pool: {}",
        pool.describe(moved_at)
    );
    assert!(
        left.is_some(),
        "the old master {old} did not leave the writer's pool for good: {}",
        pool.describe(cut)
    );
    // The proxy that still reaches it drops it for its fence (/master 503),
    // before the Sentinels could promote another (down-after), and never
    // takes it back: fenced, then a replica.
    let seen_left = seen_left.unwrap_or_else(|| {
        panic!(
            "the old master never left for good the pool of the proxy that reaches it: {}",
            seen_pool.describe(cut)
        )
    });
    assert!(
        fenced && seen_left < moved_at - cut,
        "the old master left the pool of the proxy that reaches it {seen_left:?} after the cut, the record moved {:?} after it (fenced: {fenced}): {}",
        moved_at - cut,
        seen_pool.describe(cut)
    );
    assert!(
        direct_closed.is_some(),
        "the idle client connected straight to the old master was not dropped within 2 s of its demotion"
    );
    assert!(stale.is_empty(), "the old master {old} still has the clients {stale:?}");
}

/// A probe of a host cut off by a partition: the connection kept from the
/// last probe gives up at the probe's timeout (1 s) and is not kept, and the
/// next probe's TCP connect gives up at `probe::CONNECT_TIMEOUT` (0.3 s), not
/// at the probe's own timeout: every look at a cut peer after the first
/// costs that much, not the whole probe. Told apart by the errors, not by a
/// clock: a kept connection still used would fail with "no reply to PING",
/// and without the bound the connect would fail with "no TCP connection
/// within 1s". Before the cut, a port where nothing listens is refused,
/// which a launcher reads as "not running".
#[tokio::test(flavor = "current_thread")]
async fn a_probe_to_a_cut_host_gives_up_at_the_connect_bound() {
    use redis_zk::model::Endpoint;
    use redis_zk::probe::{CONNECT_TIMEOUT, Probe, ProbeError};
    let mut net = Net::new();
    let (ns, ip) = net.host(1);
    let t = Task {
        ip: ip.clone(),
        port: REDIS_PORT,
        dir: fresh_dir("probe-cut-"),
    };
    let _server = redis_server_in(Some(&ns), &t, &["--protected-mode", "no"]);
    let ep = Endpoint::new(ip.clone(), REDIS_PORT);
    let probe = Probe::new(None, Duration::from_secs(1));
    let nobody = Endpoint::new(ip, REDIS_PORT + 1);
    match probe.ping(&nobody).await {
        Err(e) if e.is_refused() => {}
        other => panic!("{nobody} before the cut: expected a refused connection, got {other:?}"),
    }
    wait_for("the server in the namespace", Duration::from_secs(10), || async {
        probe.ping(&ep).await.map_err(|e| e.to_string())
    })
    .await;
    net.isolate(&[&ns]);
    match probe.ping(&ep).await {
        Err(ProbeError::Timeout { command, .. }) if command == "PING" => {}
        other => panic!("{ep} cut off, on the kept connection: expected no reply to PING, got {other:?}"),
    }
    match probe.ping(&ep).await {
        Err(ProbeError::Connect {
            why, refused: false, ..
        }) if why == format!("no TCP connection within {CONNECT_TIMEOUT:?}") => {}
        other => panic!("{ep} cut off: expected no TCP connection within {CONNECT_TIMEOUT:?}, got {other:?}"),
    }
}

/// A connection kept from the last probe that its server closed since
/// (here the server drops its clients, as a demotion does; a restarted
/// server closes them all) is replaced at once: the next probe answers,
/// on a new connection. One still open is used again: no new connection.
#[tokio::test(flavor = "current_thread")]
async fn a_kept_connection_its_server_closed_is_replaced_at_once() {
    use redis_zk::model::Endpoint;
    use redis_zk::probe::Probe;
    let t = task();
    let _server = plain_redis_server(&t);
    let ep = Endpoint::new(t.ip.clone(), t.port);
    let probe = Probe::new(None, Duration::from_secs(1));
    wait_for("redis-server up", Duration::from_secs(10), || async {
        probe.ping(&ep).await.map_err(|e| e.to_string())
    })
    .await;
    // Each read of the count is a connection of its own.
    let received = || async {
        info_field(&t.addr(), "stats", "total_connections_received")
            .await
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let before = received().await;
    for _ in 0..3 {
        probe.ping(&ep).await.unwrap();
    }
    assert_eq!(
        received().await - before,
        1,
        "three probes opened connections of their own"
    );
    // The kept connection among them (a count's connection may still be
    // open too).
    let dropped = redis_cmd(&t.addr(), None, &["CLIENT", "KILL", "TYPE", "normal"]).await;
    assert!(
        matches!(dropped, Ok(redis::Value::Int(n)) if n >= 1),
        "CLIENT KILL: {dropped:?}"
    );
    let before = received().await;
    probe
        .ping(&ep)
        .await
        .unwrap_or_else(|e| panic!("the probe after its connection was closed: {e}"));
    assert_eq!(received().await - before, 2, "the probe did not open a new connection");
}
