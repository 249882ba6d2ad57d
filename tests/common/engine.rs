//! The two engines, Redis and Valkey, as the tests start and recognise
//! them (`engines.rs`, `migration.rs`).

use super::*;

/// An engine of the matrix: its `ENGINE` value and its programs.
#[derive(Debug, Clone, Copy)]
pub struct EngineCase {
    pub name: &'static str,
    pub server: &'static str,
    pub sentinel: &'static str,
}

pub const REDIS: EngineCase = EngineCase {
    name: "redis",
    server: "redis-server",
    sentinel: "redis-sentinel",
};

pub const VALKEY: EngineCase = EngineCase {
    name: "valkey",
    server: "valkey-server",
    sentinel: "valkey-sentinel",
};

impl EngineCase {
    /// The version its server program reports (`… server v=8.0.1 …`);
    /// fails the test, saying why, when the program is missing.
    pub fn version(&self) -> String {
        let out = std::process::Command::new(self.server)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "{} is needed for this test and could not run ({e}); install it with scripts/deps.sh (bookworm-backports for Valkey)",
                    self.server
                )
            });
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let version = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("v="))
            .unwrap_or_else(|| panic!("{} --version said {text:?}", self.server));
        assert!(
            which(self.sentinel),
            "{} is needed for this test and is not on PATH; install it with scripts/deps.sh",
            self.sentinel
        );
        version.to_string()
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// `field` of `addr`'s `INFO server`.
pub async fn server_field(addr: &str, field: &str) -> Result<String, String> {
    info_field(addr, "server", field).await
}

/// The engine and version `addr` answers with, read as the product reads
/// them (Valkey's `server_name` and `valkey_version`).
pub async fn engine_of(addr: &str) -> Result<(String, String), String> {
    match server_field(addr, "server_name").await {
        Ok(name) if name == "valkey" => Ok((name, server_field(addr, "valkey_version").await?)),
        Ok(other) => Err(format!("{addr}: server_name:{other}")),
        Err(_) => Ok(("redis".into(), server_field(addr, "redis_version").await?)),
    }
}
