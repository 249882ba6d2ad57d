//! Hosts of their own for tests: a bridge, network namespaces on it, and
//! cuts made with `iptables` inside the namespaces. Needs root.
//!
//! A [`Net`] removes its namespaces and bridge when dropped; one kept in a
//! `static` (shared by the tests of a binary) is removed when the test
//! binary exits, by an `atexit` handler.

use std::io::Write;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

/// Runs `cmd args…`, panicking with its stderr when it fails.
pub fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces and links not yet removed, for the exit handler.
static LIVE: Mutex<Vec<(String, bool)>> = Mutex::new(Vec::new());

fn remember(name: &str, netns: bool) {
    static HANDLER: std::sync::Once = std::sync::Once::new();
    HANDLER.call_once(|| {
        extern "C" fn remove_live() {
            let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|p| p.into_inner()));
            for (name, netns) in live {
                remove(&name, netns);
            }
        }
        // SAFETY: registers a plain function, run once at exit.
        unsafe { libc::atexit(remove_live) };
    });
    LIVE.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((name.to_string(), netns));
}

fn remove(name: &str, netns: bool) {
    let args: &[&str] = if netns {
        &["netns", "del", name]
    } else {
        &["link", "del", name]
    };
    let _ = Command::new("ip").args(args).output();
}

/// Takes `name` off the exit handler's list (its owner removes it).
fn forget(name: &str) {
    LIVE.lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(n, _)| n != name);
}

/// The bridge and its namespaces.
pub struct Net {
    pub bridge: String,
    /// `10.214.N`
    pub prefix: String,
    pub tag: String,
    pub namespaces: Vec<String>,
}

impl Net {
    /// A bridge with the addresses `.1`, `.2` and `.3` on this side (the
    /// test process, on the host's own namespace).
    pub fn new() -> Net {
        static NEXT: AtomicU8 = AtomicU8::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        // rzk<letter><run tag>-<slot><n>…: scripts/test.sh removes exactly
        // its own run's after a killed binary (tests/common run_tag). The
        // letters differ from those of tests/netns.rs. Binaries of one run
        // share the run tag, and two of them may make nets at the same
        // time: the slot scripts/test.sh gives each binary
        // (RZK_TEST_PORT_SLOT, one character here, as names have at most
        // 15) keeps their names, subnets and bridge MACs apart. The same
        // name made one binary delete the other's bridge. Run alone, the
        // pid does.
        const CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let slot = std::env::var("RZK_TEST_PORT_SLOT")
            .ok()
            .and_then(|v| v.parse::<usize>().ok());
        let (tag, third, mac) = match slot {
            Some(slot) => (
                format!("{}-{}{n}", super::run_tag(), CHARS[slot % CHARS.len()] as char),
                10 + (slot * 4 + usize::from(n % 4)) % 240,
                slot % 256,
            ),
            None => (
                format!("{}-{n}", super::run_tag()),
                10 + (std::process::id() % 200) as usize / 4 * 4 + usize::from(n % 4),
                0,
            ),
        };
        let net = Net {
            bridge: format!("rzkb{tag}"),
            prefix: format!("10.214.{third}"),
            tag,
            namespaces: vec![],
        };
        let _ = Command::new("ip").args(["link", "del", &net.bridge]).output();
        run("ip", &["link", "add", &net.bridge, "type", "bridge"]);
        remember(&net.bridge, false);
        // A fixed address: a bridge otherwise takes the lowest MAC of its
        // ports, so adding a host could change the MAC behind ZooKeeper's
        // address, and the hosts' stale ARP entries stalled their ZooKeeper
        // sessions into expiry (seen in runs before this line).
        run(
            "ip",
            &[
                "link",
                "set",
                &net.bridge,
                "address",
                &format!("02:52:5a:{mac:02x}:{n:02x}:01"),
            ],
        );
        for host in 1..=3 {
            run(
                "ip",
                &["addr", "add", &format!("{}.{host}/24", net.prefix), "dev", &net.bridge],
            );
        }
        run("ip", &["link", "set", &net.bridge, "up"]);
        net
    }

    pub fn ip(&self, host: u8) -> String {
        format!("{}.{host}", self.prefix)
    }

    /// A host `10 + i` of its own: a namespace whose `eth0` is on the bridge.
    /// Returns the namespace's name and its address.
    pub fn host(&mut self, i: u8) -> (String, String) {
        let ns = format!("rzkn{}{i}", self.tag);
        let outside = format!("rzkv{}{i}", self.tag);
        let ip = self.ip(10 + i);
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        run("ip", &["netns", "add", &ns]);
        remember(&ns, true);
        self.namespaces.push(ns.clone());
        run(
            "ip",
            &[
                "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        );
        run("ip", &["link", "set", &outside, "master", &self.bridge]);
        run("ip", &["link", "set", &outside, "up"]);
        run("ip", &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        (ns, ip)
    }

    /// Cuts every namespace in `side` off from `others` (addresses), both
    /// ways, by dropping packets inside those namespaces. Each namespace's
    /// rules go in with one `iptables-restore`, one transaction: a host loses
    /// every peer at the same instant, as in a real cut, and never, say, the
    /// other replica some 200 ms before the client (one `iptables` call per
    /// rule did that, and a `WAIT 1` client then lost the writes that only
    /// the replica cut off with the master had confirmed). `side` is cut in
    /// order, so the master's host first.
    pub fn cut(&self, side: &[&str], others: &[String]) {
        let mut rules = String::from("*filter\n");
        for ip in others {
            rules.push_str(&format!("-I INPUT -s {ip} -j DROP\n-I OUTPUT -d {ip} -j DROP\n"));
        }
        rules.push_str("COMMIT\n");
        Self::restore(side, &rules);
    }

    /// Cuts each namespace in `side` off from everything but itself (its
    /// `eth0` drops every packet), in one transaction per namespace.
    pub fn isolate(&self, side: &[&str]) {
        Self::restore(
            side,
            "*filter\n-I INPUT -i eth0 -j DROP\n-I OUTPUT -o eth0 -j DROP\nCOMMIT\n",
        );
    }

    fn restore(side: &[&str], rules: &str) {
        for ns in side {
            let mut child = Command::new("ip")
                .args(["netns", "exec", ns, "iptables-restore", "--noflush"])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("iptables-restore in {ns}: {e}"));
            child.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "iptables-restore in {ns}: {}\n{rules}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    pub fn heal(&self) {
        for ns in &self.namespaces {
            run("ip", &["netns", "exec", ns, "iptables", "-F", "INPUT"]);
            run("ip", &["netns", "exec", ns, "iptables", "-F", "OUTPUT"]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            forget(ns);
            remove(ns, true);
        }
        forget(&self.bridge);
        remove(&self.bridge, false);
    }
}
