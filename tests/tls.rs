//! TLS end to end (issue 28), against real servers: every check of this
//! binary connects over TLS ([`common::tls::checks_over_tls`]), so the
//! shared scenarios run unchanged with TLS on.
//!
//! One group, ZooKeeper over TLS with client authentication, the scenarios
//! in order: bootstrap; nothing answers plain text; the launchers keep
//! their connections (no handshake per look); the admin pages over
//! HTTPS; `rzkctl status` and `switchover`; redis-py's Sentinel client
//! over TLS; a peer the CA does not sign refused; live rotation under a
//! `WAIT 1` writer; every kind of bad replacement refused; the certificate
//! alert; the SIGTERM hand-over and the SIGKILL failover (the scenarios of
//! tests/engines.rs). Beside it: ZooKeeper over TLS without client
//! authentication, and a client without a certificate refused by one that
//! requires it.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::alerts::{Case, promtool_test_rules, scrape, wait_metric};
use common::engine::REDIS;
use common::group::*;
use common::scenarios::*;
use common::tls::*;
use common::*;

/// The serial `addr` serves, as a client with the CA sees it.
fn serial_at(pki: &Pki, ip: &str, port: u16) -> Result<String, String> {
    served_serial(ip, port, pki.ca_cert(), Some(pki.identity()))
}

/// `INFO` field of a server, over TLS.
async fn field(addr: &str, section: &str, name: &str) -> String {
    info_field(addr, section, name).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_group_end_to_end() {
    let t_all = Instant::now();
    let pki = pki();
    checks_over_tls(pki);
    let zk = ZkTls::start_with(pki, true);
    let files = Files::new(pki);
    let mut g = Group::new("tls");
    g.admin = true;
    // The harness reads ZooKeeper on its plain port; the tasks use TLS.
    g.zk = Some(zk.connect_string());
    g.extra = files.env();
    g.extra.push(("ZK_HOSTS", zk.secure_connect_string()));
    g.extra
        .push(("SHUTDOWN_FAILOVER_TIMEOUT_S", HANDOVER_BUDGET_S.to_string()));
    let mut g = Group::start_with(g, 3, 3, 1).await;
    let master = g.wait_healthy(Duration::from_secs(30)).await;
    let mut times = vec![("bootstrap", t_all.elapsed())];
    for m in g.redis.iter().chain(&g.sentinels) {
        let log = m.proc.log();
        assert!(
            log.contains("connected to ZooKeeper") && log.contains("tcp+tls://"),
            "{} did not connect over TLS:\n{log}",
            m.addr()
        );
    }

    // Nothing answers plain text: not a server, not a Sentinel, not the
    // admin API.
    let t = Instant::now();
    for m in g.redis.iter().chain(&g.sentinels) {
        let (ip, port) = ip_port(&m.addr());
        no_plain_reply(&ip, port, b"PING\r\n").await.unwrap();
        no_plain_reply("127.0.0.1", m.admin.unwrap(), b"GET /health HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
    }
    // A peer whose certificate the CA does not sign: refused by the
    // master, and a launcher given it does not start.
    let (rogue_cert, rogue_key) = pki.leaf(
        "rogue",
        LeafOpts {
            signed_by_rogue: true,
            ..Default::default()
        },
    );
    let refused = redis_tls_cmd(&master, pki.ca_cert(), Some((&rogue_cert, &rogue_key)), &["PING"]).await;
    assert!(
        refused.is_err(),
        "the master answered a client of a rogue CA: {refused:?}"
    );
    let rogue = rzk_redis_with(
        &g,
        &[
            ("TLS_CERT_FILE", rogue_cert.display().to_string()),
            ("TLS_KEY_FILE", rogue_key.display().to_string()),
        ],
    );
    let status = rogue
        .wait_exit(Duration::from_secs(10))
        .expect("a rogue launcher kept running");
    let log = rogue.log();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("TLS_CERT_FILE") && log.contains("not accepted with the CA"),
        "{log}"
    );
    times.push(("plain text and rogue refused", t.elapsed()));
    // The launchers keep their TLS connections: no handshake per look.
    let t = Instant::now();
    launchers_keep_their_connections(&g).await;
    times.push(("connections kept", t.elapsed()));

    // The admin pages over HTTPS, and the certificate's end in /metrics.
    let t = Instant::now();
    let mi = g.master_index().await.unwrap();
    let (code, body) = g.redis[mi].admin_get("/master").await.unwrap();
    assert_eq!(code, 200, "/master of the master: {body}");
    // 200 once a majority of the Sentinels would promote it: a healthy
    // group (above) may not be there yet.
    let replica = &g.redis[(mi + 1) % 3];
    wait_for(
        "/replica of a replica to answer 200",
        Duration::from_secs(20),
        || async {
            match replica.admin_get("/replica").await? {
                (200, _) => Ok(()),
                (code, body) => Err(format!("{code}: {body}")),
            }
        },
    )
    .await;
    for m in g.redis.iter().chain(&g.sentinels).chain(&g.watchers) {
        let (code, body) = m.admin_get("/health").await.unwrap();
        assert_eq!(code, 200, "/health of {}: {body}", m.addr());
        wait_metric(
            m,
            "rzk_tls_cert_not_after_seconds|link=\"redis\"",
            |v| v > 1e9,
            Duration::from_secs(5),
        )
        .await;
        wait_metric(
            m,
            "rzk_tls_cert_not_after_seconds|link=\"zookeeper\"",
            |v| v > 1e9,
            Duration::from_secs(5),
        )
        .await;
    }
    times.push(("admin over HTTPS", t.elapsed()));

    // The HAProxy recipe with the checks over HTTPS, as docs/deploying.md
    // says: the write frontend sends a TLS client to the master.
    let t = Instant::now();
    let words = format!(" check-ssl verify required ca-file {}", pki.ca_cert().display());
    let recipe: String = common::haproxy::RECIPE
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("default-server ") {
                format!("{l}{words}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let servers: Vec<common::haproxy::Backend> = g
        .redis
        .iter()
        .map(|m| common::haproxy::Backend {
            addr: m.addr(),
            admin: m.admin.unwrap(),
        })
        .collect();
    let proxy = common::haproxy::Haproxy::start_with(&recipe, &servers, None, None);
    proxy
        .wait_only_up("redis_write", &master, Duration::from_secs(10))
        .await;
    let via = redis_tls_cmd(
        &proxy.write,
        pki.ca_cert(),
        Some(pki.identity()),
        &["SET", "via-haproxy", "1"],
    )
    .await;
    assert_eq!(
        via.map(|v| value_text(&v)),
        Ok(Some("OK".into())),
        "a TLS client through HAProxy"
    );
    drop(proxy);
    times.push(("HAProxy with checks over HTTPS", t.elapsed()));

    // rzkctl over TLS, and an application's Sentinel client.
    let t = Instant::now();
    let status = status_json(&g).await;
    assert_eq!(status["record"], master.as_str(), "{status}");
    assert_eq!(status["healthy"], true, "{status}");
    let sentinels: Vec<String> = g.sentinels.iter().map(|s| s.addr().replace(' ', ":")).collect();
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls_sentinel_client.py"))
        .args([pki.ca_cert(), pki.cert(), pki.key()])
        .arg("mymaster")
        .args(&sentinels)
        .output()
        .expect("run /usr/bin/python3 (python3-redis: scripts/deps.sh installs it)");
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && said == master,
        "redis-py's Sentinel client over TLS said {said:?} (master {master}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    times.push(("rzkctl status, redis-py", t.elapsed()));

    // Live rotation under a WAIT 1 writer.
    let t = Instant::now();
    rotation(&g, pki, &files).await;
    times.push(("rotation", t.elapsed()));
    let t = Instant::now();
    bad_replacements_are_refused(&g, pki, &files).await;
    times.push(("bad replacements", t.elapsed()));
    let t = Instant::now();
    certificate_alert(&g).await;
    times.push(("alert", t.elapsed()));

    // A switchover with rzkctl, then the shared scenarios.
    let t = Instant::now();
    let master = g.wait_healthy(Duration::from_secs(30)).await;
    let to = g.redis.iter().map(Member::addr).find(|a| *a != master).unwrap();
    let (code, out, err) = g.rzkctl(&["switchover", "--to", &to.replace(' ', ":")]).await;
    assert_eq!(code, 0, "rzkctl switchover over TLS:\n{out}{err}");
    assert_eq!(g.record().await.as_deref(), Some(to.as_str()));
    times.push(("rzkctl switchover", t.elapsed()));
    let t = Instant::now();
    planned_hand_over(&g, REDIS).await;
    times.push(("hand-over", t.elapsed()));
    // The hand-over's task is gone: a new one, so that two replicas are
    // left after the failover.
    g.start_redis();
    g.wait_healthy(Duration::from_secs(30)).await;
    let t = Instant::now();
    failover_into_the_record(&g).await;
    times.push(("failover", t.elapsed()));
    eprintln!("MEASURE tls group in {:?}: {times:?}", t_all.elapsed());
}

/// An rzk-redis of `g` with `env` over the group's, started and returned.
fn rzk_redis_with(g: &Group, env: &[(&'static str, String)]) -> Proc {
    let t = task();
    let mut vars = g.env(Some(&t));
    for (k, v) in env {
        vars.retain(|(e, _)| e != k);
        vars.push((k, v.clone()));
    }
    Proc::spawn(RZK_REDIS, &[], &vars, t.dir.join("launcher.log"))
}

/// A new certificate replaces the files in place: within 10 s the master,
/// a replica, a Sentinel and the admin API serve it; no server restarts,
/// the record stays, no full sync happens, the ZooKeeper sessions stay,
/// and a `WAIT 1` writer sees no failure.
async fn rotation(g: &Group, pki: &Pki, files: &Files) {
    let master = g.wait_healthy(Duration::from_secs(30)).await;
    let mi = g.master_index().await.unwrap();
    let replica = g.redis[(mi + 1) % 3].addr();
    let sentinel = g.sentinels[0].addr();
    let admin = g.redis[mi].admin.unwrap();
    let pids = async || {
        let mut out = vec![];
        for m in &g.redis {
            out.push(field(&m.addr(), "server", "process_id").await);
        }
        out
    };
    let before = pids().await;
    let record = g.record_with_version().await;
    let full_syncs = field(&master, "stats", "sync_full").await;
    let sessions = [
        g.registration_owners("nodes").await,
        g.registration_owners("sentinels").await,
    ];
    let writer = g.start_writer("tlsrot", None, 1);
    wait_for("the writer's first writes", Duration::from_secs(10), || async {
        match info_field(&master, "stats", "total_commands_processed").await {
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (new_cert, new_key) = pki.leaf("rotated", LeafOpts::default());
    let new = cert_serial(&new_cert);
    let t0 = Instant::now();
    pki.install(&new_cert, &new_key, &files.cert, &files.key);
    let (m_ip, m_port) = ip_port(&master);
    let (r_ip, r_port) = ip_port(&replica);
    let (s_ip, s_port) = ip_port(&sentinel);
    let mut served = vec![];
    for (what, ip, port) in [
        ("master", m_ip.as_str(), m_port),
        ("replica", r_ip.as_str(), r_port),
        ("sentinel", s_ip.as_str(), s_port),
        ("admin API", "127.0.0.1", admin),
    ] {
        wait_for(
            &format!("the {what} to serve the new certificate"),
            Duration::from_secs(10).saturating_sub(t0.elapsed()),
            || async {
                match serial_at(pki, ip, port)? {
                    s if s == new => Ok(()),
                    s => Err(format!("serves {s}, new is {new}")),
                }
            },
        )
        .await;
        served.push((what, t0.elapsed()));
    }
    // The Sentinel restarted its redis-sentinel for it; let the writer run
    // a little past the change.
    g.wait_healthy(Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ledger = writer.finish().await;
    assert_eq!(pids().await, before, "a server restarted");
    assert_eq!(g.record_with_version().await, record, "the record moved");
    assert_eq!(
        field(&master, "stats", "sync_full").await,
        full_syncs,
        "a full sync happened"
    );
    let after = [
        g.registration_owners("nodes").await,
        g.registration_owners("sentinels").await,
    ];
    assert_eq!(after, sessions, "a ZooKeeper session changed");
    assert!(ledger.acked.len() > 20, "the writer barely wrote: {ledger:?}");
    assert_eq!(
        ledger.failed, 0,
        "writes failed during the rotation: {:?}",
        ledger.refusals
    );
    let missing = missing_keys(&master, None, &ledger.acked).await;
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    eprintln!(
        "MEASURE tls rotation: new certificate served by {served:?}; {} writes acknowledged, 0 failed, longest gap {:?}",
        ledger.acked.len(),
        ledger.longest_gap
    );
}

/// Each kind of bad replacement is refused, counted, and the certificate
/// in service stays.
async fn bad_replacements_are_refused(g: &Group, pki: &Pki, files: &Files) {
    let master = g.wait_healthy(Duration::from_secs(30)).await;
    let (ip, port) = ip_port(&master);
    let serving = serial_at(pki, &ip, port).unwrap();
    let mi = g.master_index().await.unwrap();
    let m = &g.redis[mi];
    let refused = async || {
        common::alerts::metric(m, "rzk_tls_reloads_total|outcome=\"refused\"")
            .await
            .unwrap()
    };
    let garbage = fresh_dir("tls-garbage-").join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let leaf = |name: &str, opts: LeafOpts| pki.leaf(name, opts);
    let expired = leaf(
        "expired",
        LeafOpts {
            expired: true,
            ..Default::default()
        },
    );
    let early = leaf(
        "early",
        LeafOpts {
            not_yet_valid: true,
            ..Default::default()
        },
    );
    let rogue = leaf(
        "rogue2",
        LeafOpts {
            signed_by_rogue: true,
            ..Default::default()
        },
    );
    let (good_cert, good_key) = leaf("good", LeafOpts::default());
    let kinds: Vec<(&str, PathBuf, PathBuf, &str)> = vec![
        (
            "a key that does not match",
            good_cert.clone(),
            pki.mismatched_key(),
            "do not go together",
        ),
        (
            "a file that does not parse",
            garbage.clone(),
            pki.key().to_path_buf(),
            "not an X.509 certificate",
        ),
        ("an expired certificate", expired.0, expired.1, "expired"),
        ("a certificate not yet valid", early.0, early.1, "not valid before"),
        (
            "a certificate the CA does not sign",
            rogue.0,
            rogue.1,
            "not accepted with the CA",
        ),
    ];
    for (what, cert, key, says) in kinds {
        let (count, logged) = (refused().await, m.proc.log().matches("refusing the replaced").count());
        pki.install(&cert, &key, &files.cert, &files.key);
        let line = wait_for(&format!("{what} to be refused"), Duration::from_secs(10), || async {
            let log = m.proc.log();
            let new: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("refusing the replaced"))
                .skip(logged)
                .collect();
            // The refusal that says why. The install renames the
            // certificate, then the key: a look between the two renames
            // may first refuse the new certificate beside the old key.
            match new.iter().find(|l| l.contains("link=\"redis\"") && l.contains(says)) {
                Some(l) => Ok(l.to_string()),
                None => Err(format!(
                    "no refusal saying {says:?} yet; new refusals {new:?}\n{}",
                    tail(&log)
                )),
            }
        })
        .await;
        assert!(line.contains(says), "{what}: the refusal does not say {says:?}: {line}");
        assert!(refused().await > count, "{what}: not counted");
        assert_eq!(
            serial_at(pki, &ip, port).as_deref(),
            Ok(serving.as_str()),
            "{what}: the certificate in service changed"
        );
    }
    // A good one after them is taken (the tasks started later read it).
    pki.install(&good_cert, &good_key, &files.cert, &files.key);
    let good = cert_serial(&good_cert);
    wait_for(
        "the master to serve a good replacement",
        Duration::from_secs(10),
        || async {
            match serial_at(pki, &ip, port)? {
                s if s == good => Ok(()),
                s => Err(format!("serves {s}, the good one is {good}")),
            }
        },
    )
    .await;
    let loaded = common::alerts::metric(m, "rzk_tls_reloads_total|outcome=\"loaded\"")
        .await
        .unwrap();
    // Each counted for the Redis links and for ZooKeeper's (the same files).
    assert_eq!(loaded, 4.0, "only the rotation and the good replacement were loaded");
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// `RzkTlsCertExpiringSoon` fires when a certificate in service ends
/// within 14 days (promtool, on the group's scraped metrics).
async fn certificate_alert(g: &Group) {
    let all: Vec<&Member> = g.redis.iter().chain(&g.sentinels).chain(&g.watchers).collect();
    // The healthy scrape of a settled group: a Sentinel restarted by the
    // rotation takes a moment before its launcher sees the record match.
    for m in &all {
        wait_metric(m, "rzk_record_matches", |v| v == 1.0, Duration::from_secs(20)).await;
    }
    let healthy = scrape(&all).await;
    let mut phase = healthy.clone();
    // Promtool's clock starts at 0: the end of the Redis links'
    // certificate is set 7 days past the fault's start (minute 10).
    for (series, v) in phase.iter_mut() {
        if series.starts_with("rzk_tls_cert_not_after_seconds{") && series.contains("link=\"redis\"") {
            *v = (7 * 86_400 + 600).to_string();
        }
    }
    promtool_test_rules(
        &healthy,
        &[Case {
            name: "certificate expires in a week",
            phase,
            fires: vec!["RzkTlsCertExpiringSoon"],
            quiet: vec!["RzkNoMaster", "RzkTwoMasters"],
        }],
    );
}

/// ZooKeeper over TLS without client authentication: a launcher with only
/// the CA (no Redis TLS) bootstraps a group, and `rzkctl` reads it; a
/// server that requires a client certificate refuses a client without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_over_tls_with_and_without_client_authentication() {
    let pki = pki();
    let open = ZkTls::start_with(pki, false);
    let mut g = Group::new("zktls");
    g.zk = Some(open.connect_string());
    g.extra = vec![
        ("ZK_HOSTS", open.secure_connect_string()),
        ("ZK_TLS_CA_CERT_FILE", pki.ca_cert().display().to_string()),
    ];
    g.start_redis();
    let record = wait_for("a record written over TLS", Duration::from_secs(30), || async {
        g.record().await.ok_or_else(|| "no record yet".to_string())
    })
    .await;
    let (code, out, err) = g.rzkctl(&["status", "--json"]).await;
    assert!(
        out.contains(&record),
        "rzkctl status over ZooKeeper TLS (exit {code}):\n{out}{err}"
    );

    let strict = ZkTls::start_with(pki, true);
    let out = tokio::process::Command::new(RZKCTL)
        .args(["status"])
        .env_clear()
        .env("ZK_HOSTS", strict.secure_connect_string())
        .env("ZK_ROOT", &g.root)
        .env("ZK_CONNECT_TIMEOUT_S", "3")
        .env("ZK_TLS_CA_CERT_FILE", pki.ca_cert())
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "rzkctl without a client certificate: {err}");
    assert!(
        strict.log_tail().contains("certificate") || err.contains("ZooKeeper"),
        "{err}\n{}",
        strict.log_tail()
    );
}

/// A bare `redis-server` of task `t` serving TLS only, replication too.
fn tls_redis_server(t: &Task, pki: &Pki) -> Proc {
    let port = t.port.to_string();
    let files = [pki.cert(), pki.key(), pki.ca_cert()].map(|f| f.to_str().unwrap());
    redis_server_with(
        t,
        &[
            "--port",
            "0",
            "--tls-port",
            &port,
            "--tls-replication",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
            "--tls-cert-file",
            files[0],
            "--tls-key-file",
            files[1],
            "--tls-ca-cert-file",
            files[2],
        ],
    )
}

/// A master demoted while it runs keeps what only it has, read from its
/// backlog over TLS as a TLS replica reads it (`PSYNC`; tests/persistence.rs
/// has the plain-text cases): two bare TLS servers, the replica promoted
/// by hand, writes past the promotion in two databases, then the
/// executor's demotion with a probe that speaks TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_demoted_live_over_tls_keeps_what_only_it_has() {
    let pki = pki();
    checks_over_tls(pki);
    let (ta, tb) = (task(), task());
    let (_pa, _pb) = (tls_redis_server(&ta, pki), tls_redis_server(&tb, pki));
    for t in [&ta, &tb] {
        wait_for("a bare TLS server answers", Duration::from_secs(10), || async {
            redis_cmd(&t.addr(), None, &["PING"]).await.map(|_| ())
        })
        .await;
    }
    redis_cmd(&ta.addr(), None, &["SET", "before", "1"]).await.unwrap();
    promote_by_hand(&ta, &tb).await;
    redis_pipe(
        &ta.addr(),
        None,
        &[&["SET", "k1", "v1"], &["SELECT", "1"], &["SET", "k2", "v2"]],
    )
    .await
    .unwrap();

    let tls = redis_zk::tls::Tls::new(
        redis_zk::tls::Files {
            ca: pki.ca_cert().to_path_buf(),
            identity: Some((pki.cert().to_path_buf(), pki.key().to_path_buf())),
        },
        vec![],
    )
    .unwrap();
    let probe = redis_zk::probe::Probe::new(None, Duration::from_secs(1)).with_tls(Some(tls));
    demote_with(&probe, &ta, &tb).await;
    assert_eq!(role(&ta.addr()).await.unwrap(), "slave");
    let stream = kept_writes(&ta);
    let text = String::from_utf8_lossy(&stream);
    for w in ["k1", "v1", "k2", "v2"] {
        assert!(text.contains(w), "{w} not kept: {text}");
    }
    assert!(!text.contains("before"), "kept what the new master has: {text}");
}
