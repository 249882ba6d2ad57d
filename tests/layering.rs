//! The library reads in the data's own order, and the order is enforced:
//! every module uses only modules that come before it in `LAYERS`, which
//! is the order `src/lib.rs` documents and declares. A `crate::x` path to a
//! later module (an upward import) or a cycle between layers fails here,
//! naming the file, the line and both layers.

use std::path::{Path, PathBuf};

/// From the foundation up. A submodule listed on its own (`zk::settings`)
/// is a layer of its own; other submodules belong to their parent's layer.
const LAYERS: &[&str] = &[
    "model",
    "backoff",
    "metrics",
    "tls",
    "zk::settings",
    "config",
    "reply",
    "snapshot",
    "zk",
    "probe",
    "render",
    "observe",
    "policy",
    "view",
    "datadir",
    "act",
    "logging",
    "supervise",
    "session",
    "startup",
    "admin",
    "launch",
    "ctl",
    "cli",
];

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a source file: `src/zk/settings.rs` → `zk::settings`.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|c| c != "mod")
        .collect();
    parts.join("::")
}

/// The layer of a module path: the longest entry of `LAYERS` that is the
/// path or a prefix of it.
fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .enumerate()
        .filter(|(_, l)| module == **l || module.starts_with(&format!("{l}::")))
        .max_by_key(|(_, l)| l.len())
        .map(|(i, _)| i)
}

/// Every `crate::a::b` path on a line, including `use crate::{a, b}` lists.
fn crate_paths(line: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            let end = list.find('}').unwrap_or(list.len());
            for item in list[..end].split(',') {
                let item = item.trim();
                if !item.is_empty() {
                    out.push(item.split("::{").next().unwrap().to_string());
                }
            }
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        out.push(path.trim_end_matches(':').to_string());
    }
    out
}

#[test]
fn every_module_uses_only_layers_before_it() {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    files.sort();
    let mut violations = vec![];
    let mut checked = 0;
    for f in &files {
        let module = module_of(f);
        if module == "lib" {
            continue;
        }
        let own = layer_of(&module).unwrap_or_else(|| panic!("{module} ({}) is in no layer", f.display()));
        for (n, line) in std::fs::read_to_string(f).unwrap().lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for path in crate_paths(code) {
                let Some(used) = layer_of(&path) else { continue };
                checked += 1;
                if used > own {
                    violations.push(format!(
                        "{}:{}: {module} ({}) uses crate::{path} ({}), a later layer",
                        f.display(),
                        n + 1,
                        LAYERS[own],
                        LAYERS[used]
                    ));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} crate paths found: the scan is broken");
    assert!(violations.is_empty(), "upward imports:\n{}", violations.join("\n"));
}

#[test]
fn lib_rs_declares_the_layers_in_order() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';'))
        .collect();
    let expected: Vec<&str> = LAYERS.iter().filter(|l| !l.contains("::")).copied().collect();
    assert_eq!(declared, expected, "src/lib.rs must declare the modules in layer order");
}

#[test]
fn the_scanner_sees_paths_and_lists() {
    assert_eq!(crate_paths("use crate::zk::settings::{a, b};"), ["zk::settings"]);
    assert_eq!(
        crate_paths("use crate::{model::Endpoint, config};"),
        ["model::Endpoint", "config"]
    );
    assert_eq!(crate_paths("let x = crate::probe::fields(&v);"), ["probe::fields"]);
    let index = |name: &str| LAYERS.iter().position(|l| *l == name);
    assert_eq!(layer_of("zk::settings::ZkConfig"), index("zk::settings"));
    assert_eq!(layer_of("zk::Zk"), index("zk"));
    assert!(index("zk::settings") < index("config") && index("config") < index("zk"));
    assert_eq!(layer_of("launch::redis"), layer_of("launch"));
}

/// The modules that must stay pure: no I/O module of the library, and no
/// crate that does I/O. Their every branch is a unit test without servers.
const PURE: &[&str] = &["model", "backoff", "reply", "snapshot", "policy", "view"];
/// The library's modules that do I/O.
const IO: &[&str] = &[
    "zk",
    "probe",
    "observe",
    "act",
    "logging",
    "supervise",
    "session",
    "startup",
    "admin",
    "launch",
    "ctl",
    "cli",
];
/// What a pure module must not name, besides those modules.
const IO_CRATES: &[&str] = &[
    "tokio::net",
    "tokio::process",
    "tokio::fs",
    "std::fs",
    "std::net::Tcp",
    "redis::aio",
    "zookeeper_client",
];

#[test]
fn pure_modules_import_no_io() {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    let mut violations = vec![];
    let mut pure_files = 0;
    for f in &files {
        let module = module_of(f);
        if !PURE
            .iter()
            .any(|p| module == *p || module.starts_with(&format!("{p}::")))
        {
            continue;
        }
        pure_files += 1;
        // Unit tests may do what they like.
        let text = std::fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (n, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap();
            for path in crate_paths(line) {
                if IO.iter().any(|io| path == *io || path.starts_with(&format!("{io}::"))) {
                    violations.push(format!("{}:{}: pure {module} uses crate::{path}", f.display(), n + 1));
                }
            }
            for c in IO_CRATES {
                if line.contains(c) {
                    violations.push(format!("{}:{}: pure {module} uses {c}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(
        pure_files >= 15,
        "only {pure_files} pure files found: the scan is broken"
    );
    assert!(violations.is_empty(), "I/O in pure modules:\n{}", violations.join("\n"));
}
