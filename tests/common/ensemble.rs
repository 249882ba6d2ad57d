//! A ZooKeeper ensemble of three servers, as production runs it (DC/OS runs
//! 3 or 5 on its masters): each server on a host of its own (a network
//! namespace of [`super::net::Net`], where it can be cut off), on the
//! standard ports 2181, 2888 and 3888, with its `myid`; `tickTime=500`,
//! `initLimit=10`, `syncLimit=4`. (`scripts/local-group.sh --ensemble`
//! runs the same on loopback, `127.0.2.1`–`.3`.)
//!
//! Servers are started with `PR_SET_PDEATHSIG` like every process of the
//! harness, so nothing outlives the test binary.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// One server of the ensemble.
pub struct ZkServer {
    /// Its `myid`, 1 to 3.
    pub id: usize,
    pub ip: String,
    /// Its client port.
    pub port: u16,
    /// Its network namespace, when it has a host of its own.
    pub netns: Option<String>,
    dir: PathBuf,
    pid: AtomicI32,
}

impl ZkServer {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn pid(&self) -> i32 {
        self.pid.load(Ordering::SeqCst)
    }

    pub fn is_running(&self) -> bool {
        pid_alive(self.pid())
    }

    /// Last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.join("zookeeper.log"), 30)
    }

    /// Sends a four-letter word and returns the answer (1 s to connect
    /// and 1 s to answer).
    pub async fn four(&self, word: &str) -> Result<String, String> {
        let io = async {
            let mut s = tokio::net::TcpStream::connect((self.ip.as_str(), self.port))
                .await
                .map_err(|e| format!("{}: {e}", self.addr()))?;
            s.write_all(word.as_bytes()).await.map_err(|e| e.to_string())?;
            let mut out = String::new();
            s.read_to_string(&mut out).await.map_err(|e| e.to_string())?;
            Ok(out)
        };
        tokio::time::timeout(Duration::from_secs(2), io)
            .await
            .unwrap_or_else(|_| Err(format!("{}: {word} timed out", self.addr())))
    }

    /// `leader`, `follower`, or why it does not serve.
    pub async fn mode(&self) -> Result<String, String> {
        let out = self.four("srvr").await?;
        out.lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .map(str::to_string)
            .ok_or_else(|| format!("{}: {}", self.addr(), out.trim()))
    }

    /// The sessions connected to it now (`cons`).
    pub async fn sessions(&self) -> Result<Vec<i64>, String> {
        let out = self.four("cons").await?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let sid = l.split("sid=0x").nth(1)?;
                let hex: String = sid.chars().take_while(char::is_ascii_hexdigit).collect();
                i64::from_str_radix(&hex, 16).ok()
            })
            .collect())
    }
}

/// Three ZooKeeper servers forming one ensemble.
pub struct Ensemble {
    pub servers: Vec<ZkServer>,
}

impl Ensemble {
    /// One server on each of `hosts` (namespace, address), on the standard
    /// ports 2181, 2888 and 3888.
    pub async fn on_hosts(hosts: &[(String, String)]) -> Ensemble {
        let hosts = hosts.iter().map(|(ns, ip)| (Some(ns.clone()), ip.clone())).collect();
        Ensemble::start(hosts, 2181, 2888, 3888).await
    }

    async fn start(hosts: Vec<(Option<String>, String)>, client: u16, quorum: u16, election: u16) -> Ensemble {
        let members: String = hosts
            .iter()
            .enumerate()
            .map(|(i, (_, ip))| format!("server.{}={ip}:{quorum}:{election}\n", i + 1))
            .collect();
        let mut servers = vec![];
        for (i, (netns, ip)) in hosts.into_iter().enumerate() {
            let dir = fresh_dir(&format!("zk{}-", i + 1));
            fs::create_dir_all(dir.join("data")).unwrap();
            fs::write(dir.join("data/myid"), format!("{}\n", i + 1)).unwrap();
            fs::write(
                dir.join("zoo.cfg"),
                format!(
                    "tickTime=500\ninitLimit=10\nsyncLimit=4\n\
                     minSessionTimeout=1000\nmaxSessionTimeout=60000\n\
                     dataDir={}\nclientPort={client}\nclientPortAddress={ip}\n\
                     admin.enableServer=false\n4lw.commands.whitelist=*\nmaxClientCnxns=0\n{members}",
                    dir.join("data").display()
                ),
            )
            .unwrap();
            let pid = launch_zk_in(&dir, netns.as_deref());
            servers.push(ZkServer {
                id: i + 1,
                ip,
                port: client,
                netns,
                dir,
                pid: AtomicI32::new(pid),
            });
        }
        let e = Ensemble { servers };
        e.wait_serving(Duration::from_secs(60)).await;
        e
    }

    /// `ip:port,ip:port,ip:port`.
    pub fn connect_string(&self) -> String {
        self.servers.iter().map(ZkServer::addr).collect::<Vec<_>>().join(",")
    }

    /// SIGKILLs server `i` (index, not myid) and waits until it is gone.
    pub fn kill(&self, i: usize) {
        self.stop_with(i, libc::SIGKILL);
    }

    /// SIGTERMs server `i` and waits until it is gone (a clean stop, as
    /// an upgrade does).
    pub fn stop(&self, i: usize) {
        self.stop_with(i, libc::SIGTERM);
    }

    fn stop_with(&self, i: usize, sig: i32) {
        let s = &self.servers[i];
        let pid = s.pid();
        signal_pid(pid, sig);
        wait_for_sync("a ZooKeeper server to exit", Duration::from_secs(30), || {
            if pid_alive(pid) {
                Err(format!("server {} (pid {pid}) alive", s.id))
            } else {
                Ok(())
            }
        });
    }

    /// Starts server `i` again, on its data (it must not be running).
    pub fn launch(&self, i: usize) {
        let s = &self.servers[i];
        assert!(!s.is_running(), "server {} is running", s.id);
        s.pid.store(launch_zk_in(&s.dir, s.netns.as_deref()), Ordering::SeqCst);
    }

    /// The index of the leader, if a server says it leads.
    pub async fn leader(&self) -> Option<usize> {
        for (i, s) in self.servers.iter().enumerate() {
            if s.is_running() && s.mode().await.as_deref() == Ok("leader") {
                return Some(i);
            }
        }
        None
    }

    /// One line per server: its mode or why it does not serve.
    pub async fn describe(&self) -> String {
        let mut out = vec![];
        for s in &self.servers {
            let state = if s.is_running() {
                match s.mode().await {
                    Ok(m) => m,
                    Err(e) => e,
                }
            } else {
                "stopped".into()
            };
            out.push(format!("server {} {}: {state}", s.id, s.addr()));
        }
        out.join("; ")
    }

    /// Waits until every running server serves (leader or follower) and
    /// exactly one leads; panics with each server's state and log tail.
    pub async fn wait_serving(&self, timeout: Duration) {
        let check = || async {
            let mut leaders = 0;
            for s in self.servers.iter().filter(|s| s.is_running()) {
                match s.mode().await?.as_str() {
                    "leader" => leaders += 1,
                    "follower" => {}
                    other => return Err(format!("server {}: mode {other}", s.id)),
                }
            }
            if leaders == 1 {
                Ok(())
            } else {
                Err(format!("{leaders} leaders"))
            }
        };
        if let Err(last) = try_wait_for(timeout, check).await {
            let logs: Vec<String> = self
                .servers
                .iter()
                .map(|s| format!("--- server {} log:\n{}", s.id, s.log_tail()))
                .collect();
            panic!(
                "the ensemble did not serve within {timeout:?}: {last}; {}\n{}",
                self.describe().await,
                logs.join("\n")
            );
        }
    }
}
