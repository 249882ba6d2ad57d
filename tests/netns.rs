//! Launchers on a host of their own: a network namespace whose only
//! interface (besides loopback) is a veth end named like a cloud agent's
//! NIC, not `eth0`. Needs root (`ip netns`), as CI runs.

mod common;

use std::process::Command;
use std::time::Duration;

use common::group::*;
use common::*;

/// A namespace with one veth link to the host: `10.213.N.1/30` on the host
/// side, `10.213.N.2/30` on the inside, named `iface`, with the default
/// route through the host. Removed on drop, even when the test fails.
struct Host {
    ns: String,
    host_ip: String,
    ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Host {
    fn new(n: u8, iface: &str) -> Host {
        // rzk<letter><run tag>-<n>: scripts/test.sh removes exactly its own
        // run's after a killed binary (tests/common run_tag).
        let tag = format!("{}-{n}", run_tag());
        let ns = format!("rzks{tag}");
        let outside = format!("rzkh{tag}");
        let inside = format!("rzki{tag}");
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let net = 1 + (std::process::id() % 200) as u8 + n;
        let h = Host {
            ns: ns.clone(),
            host_ip: format!("10.213.{net}.1"),
            ip: format!("10.213.{net}.2"),
        };
        ip(&["netns", "add", &ns]);
        ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside]);
        ip(&["link", "set", &inside, "netns", &ns]);
        ip(&["addr", "add", &format!("{}/30", h.host_ip), "dev", &outside]);
        ip(&["link", "set", &outside, "up"]);
        let in_ns = |args: &[&str]| {
            let mut all = vec!["-n", ns.as_str()];
            all.extend_from_slice(args);
            ip(&all);
        };
        in_ns(&["link", "set", &inside, "name", iface]);
        in_ns(&["addr", "add", &format!("{}/30", h.ip), "dev", iface]);
        in_ns(&["link", "set", iface, "up"]);
        in_ns(&["link", "set", "lo", "up"]);
        in_ns(&["route", "add", "default", "via", &h.host_ip]);
        h
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and so the pair.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// With `NET_IFACE` unset, the task's address is that of the default
/// route's interface (`ens5` here; there is no `eth0`): it is what the
/// record names, and the server answers there from the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_net_iface_the_default_routes_interface_is_used() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "network namespaces need root, as CI runs"
    );
    let host = Host::new(0, "ens5");
    let zk_port = forward_zk(&host.host_ip);
    let g = Group::new("defroute");
    let t = task();
    let mut env: Vec<(&str, String)> = g
        .env(Some(&t))
        .into_iter()
        .filter(|(k, _)| *k != "BIND_IP" && *k != "NET_IFACE")
        .collect();
    env.retain(|(k, _)| *k != "ZK_HOSTS");
    env.push(("ZK_HOSTS", format!("{}:{zk_port}", host.host_ip)));
    let p = Proc::spawn(
        "ip",
        &["netns", "exec", &host.ns, RZK_REDIS, "--repl-diskless-sync-delay", "0"],
        &env,
        t.dir.join("launcher.log"),
    );
    let want = format!("{} {}", host.ip, t.port);
    let record = wait_for(
        "the record of the master in the namespace",
        Duration::from_secs(30),
        || async {
            match g.record().await {
                Some(r) => Ok(r),
                None => Err(format!("no record yet; launcher log:\n{}", p.log())),
            }
        },
    )
    .await;
    assert_eq!(record, want, "the record must name ens5's address");
    assert_eq!(
        role(&want).await.as_deref(),
        Ok("master"),
        "the server must answer on ens5"
    );
    // And without any default route, the launcher says what to set.
    let bare = Host::new(1, "ens6");
    ip(&["-n", &bare.ns, "route", "del", "default"]);
    let t2 = task();
    let out = Command::new("ip")
        .args(["netns", "exec", &bare.ns, RZK_REDIS])
        .env_remove("NET_IFACE")
        .env_remove("BIND_IP")
        .env("ZK_HOSTS", "127.0.0.1:1")
        .env("DATA_DIR", &t2.dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("NET_IFACE") && err.contains("default"), "{err}");
    p.signal(libc::SIGTERM);
    assert!(
        p.wait_exit(Duration::from_secs(20)).is_some(),
        "the launcher did not stop"
    );
    eprintln!("MEASURE default-route interface: record {record}");
}
