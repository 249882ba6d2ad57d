//! The deployment files: Marathon app and group definitions validated against
//! Marathon's own JSON Schema (vendored in `marathon/schema/`), our own
//! invariants on them, and the Dockerfile's entrypoints and users.
//!
//! Each check is a function over the file's text, so the tests can also show
//! that a broken file is rejected (a test that cannot fail proves nothing).

use std::path::{Path, PathBuf};

use redis_zk::config::{Bin, vars::VARS};
use serde_json::Value;

const GROUP_SCHEMA_ID: &str =
    "https://raw.githubusercontent.com/mesosphere/marathon/master/docs/docs/rest-api/public/api/v2/schema/";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema_dir() -> PathBuf {
    let dir = repo().join("marathon/schema");
    assert!(
        dir.join("AppDefinition.json").is_file(),
        "Marathon's schema is expected at {}",
        dir.display()
    );
    dir
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Serves `./AppDefinition.json` (referred to by Group.json) from disk: the
/// validator must never go to the network.
struct LocalSchemas(Value);

impl jsonschema::Retrieve for LocalSchemas {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        if uri.as_str().ends_with("/AppDefinition.json") {
            Ok(self.0.clone())
        } else {
            Err(format!("no local copy of {uri}").into())
        }
    }
}

/// Validates `doc` against `AppDefinition.json` or `Group.json`; returns the
/// schema errors, one line each.
fn schema_errors(schema_file: &str, doc: &Value) -> Vec<String> {
    let dir = schema_dir();
    let app = read_json(&dir.join("AppDefinition.json"));
    let schema = read_json(&dir.join(schema_file));
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .with_base_uri(format!("{GROUP_SCHEMA_ID}{schema_file}"))
        .with_retriever(LocalSchemas(app))
        .build(&schema)
        .unwrap_or_else(|e| panic!("{schema_file} does not compile: {e}"));
    validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Our own rules for one app definition, beyond the schema.
fn invariant_errors(app: &Value) -> Vec<String> {
    let mut errs = vec![];
    let id = app["id"].as_str().unwrap_or("?").to_string();
    let component = id.rsplit('/').next().unwrap_or("");
    let binary = format!("rzk-{component}");
    if !repo().join("bins").join(format!("{binary}.rs")).is_file() {
        errs.push(format!("{id}: no binary {binary} for this app"));
    }
    if app.get("cmd").is_some() {
        errs.push(format!(
            "{id}: uses cmd, which bypasses the image's entrypoint; use args"
        ));
    }
    if app["networks"] != serde_json::json!([{ "mode": "host" }]) {
        errs.push(format!("{id}: networks must be [{{\"mode\":\"host\"}}]"));
    }
    if app.get("portDefinitions").is_none() {
        errs.push(format!("{id}: host networking needs portDefinitions"));
    }
    let unique = serde_json::json!(["hostname", "UNIQUE"]);
    let has_unique = app["constraints"].as_array().is_some_and(|c| c.contains(&unique));
    if !has_unique {
        errs.push(format!("{id}: needs the constraint [\"hostname\",\"UNIQUE\"]"));
    }
    // The admin API: a port named "admin", ADMIN_PORT naming its index,
    // a MESOS_HTTP health check on /health and a readiness check on /ready
    // (a deployment waits for each new task's sync before the next).
    let ports = app["portDefinitions"].as_array().cloned().unwrap_or_default();
    match ports.iter().position(|p| p["name"] == "admin") {
        None => errs.push(format!("{id}: needs a port named admin")),
        Some(i) => {
            if app["env"]["ADMIN_PORT"] != format!("$PORT{i}").as_str() {
                errs.push(format!("{id}: env ADMIN_PORT must be \"$PORT{i}\", the admin port"));
            }
            let checks = app["healthChecks"].as_array().cloned().unwrap_or_default();
            // The check that kills a task never depends on ZooKeeper: the
            // watcher's /health follows its session, its /liveness does not.
            let health_path = if component == "watcher" { "/liveness" } else { "/health" };
            let http_health = |h: &Value| {
                h["protocol"] == "MESOS_HTTP" && h["path"] == health_path && h["portIndex"].as_u64() == Some(i as u64)
            };
            // The redis app also has a TCP check of its Redis port: the
            // check marathon-lb needs there to write any check into the
            // backend (see marathon_lb_errors).
            let tcp_of_port_0 = |h: &Value| h["protocol"] == "MESOS_TCP" && h["portIndex"].as_u64() == Some(0);
            let want = if component == "redis" { 2 } else { 1 };
            if checks.len() != want
                || !checks.first().is_some_and(http_health)
                || (want == 2 && !tcp_of_port_0(&checks[1]))
            {
                errs.push(format!(
                    "{id}: needs exactly one health check, MESOS_HTTP on {health_path} of port {i}{}",
                    if want == 2 {
                        ", then for marathon-lb a MESOS_TCP check of port 0"
                    } else {
                        ""
                    }
                ));
            }
            if component == "redis" {
                errs.extend(marathon_lb_errors(app, i).into_iter().map(|e| format!("{id}: {e}")));
            }
            let ready = app["readinessChecks"].as_array().cloned().unwrap_or_default();
            let ready_ok = |r: &Value| {
                r["protocol"] == "HTTP"
                    && r["path"] == "/ready"
                    && r["portName"] == "admin"
                    && r["timeoutSeconds"].as_u64() < r["intervalSeconds"].as_u64()
            };
            if ready.len() != 1 || !ready_ok(&ready[0]) {
                errs.push(format!(
                    "{id}: needs one readiness check, HTTP on /ready of the admin port, timeout below interval"
                ));
            }
        }
    }
    let kill_grace = app["taskKillGracePeriodSeconds"].as_u64();
    match kill_grace {
        None => errs.push(format!("{id}: needs an explicit taskKillGracePeriodSeconds")),
        Some(g) if component == "redis" => {
            let hand_over: u64 = app["env"]["SHUTDOWN_FAILOVER_TIMEOUT_S"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(20);
            if g <= hand_over {
                errs.push(format!(
                    "{id}: taskKillGracePeriodSeconds {g} must exceed SHUTDOWN_FAILOVER_TIMEOUT_S {hand_over}"
                ));
            }
        }
        Some(_) => {}
    }
    let bin = Bin::ALL.iter().find(|b| b.name() == binary);
    let allowed: Vec<&str> = VARS
        .iter()
        .filter(|v| bin.is_some_and(|b| v.read_by(*b)))
        .map(|v| v.name)
        .collect();
    for key in app["env"]
        .as_object()
        .map(|m| m.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if !allowed.contains(&key.as_str()) {
            errs.push(format!("{id}: env {key} is not read by {binary}"));
        }
    }
    let instances = app["instances"].as_u64().unwrap_or(0);
    // Two watchers: the record must not wait for Marathon to replace the
    // only one when its agent dies.
    if component == "watcher" && instances < 2 {
        errs.push(format!("{id}: ship at least 2 watchers, on different hosts"));
    }
    // Both secrets come from the DC/OS secret store, never as literals.
    let secrets = app["secrets"].as_object().cloned().unwrap_or_default();
    for var in ["REDIS_PASSWORD", "ZK_DIGEST"] {
        let named = app["env"][var]["secret"].as_str();
        if !named.is_some_and(|k| secrets.get(k).is_some_and(|s| s["source"].is_string())) {
            errs.push(format!("{id}: env {var} must name a secret declared in \"secrets\""));
        }
    }
    if component == "redis" {
        // Redis needs a core of its own, and room beyond maxmemory for the
        // fork's copy-on-write pages and replica output buffers.
        if app["cpus"].as_f64().unwrap_or(0.0) < 1.0 {
            errs.push(format!("{id}: needs at least 1 cpu"));
        }
        let mem_mib = app["mem"].as_f64().unwrap_or(0.0);
        let args: Vec<&str> = app["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let maxmemory = args
            .iter()
            .position(|a| *a == "--maxmemory")
            .and_then(|i| args.get(i + 1))
            .and_then(|v| bytes(v));
        match maxmemory {
            None => errs.push(format!("{id}: needs --maxmemory in its args")),
            Some(b) if b as f64 > 0.6 * mem_mib * 1024.0 * 1024.0 => errs.push(format!(
                "{id}: --maxmemory {b} bytes is more than 60% of mem {mem_mib} MiB"
            )),
            Some(_) => {}
        }
    }
    // An upgrade may take down at most a minority at once.
    let min_health = app["upgradeStrategy"]["minimumHealthCapacity"].as_f64().unwrap_or(1.0);
    let max_down = instances as f64 * (1.0 - min_health);
    if component != "watcher" && max_down.floor() as u64 >= instances.div_ceil(2) {
        errs.push(format!(
            "{id}: minimumHealthCapacity {min_health} lets an upgrade take down a majority"
        ));
    }
    errs
}

/// What marathon-lb needs to build the write backend of the recipe from the
/// redis app's labels (read from its `marathon_lb.py` and `config.py`):
/// - the Redis port (index 0) in TCP mode, in a group marathon-lb serves;
/// - a Marathon health check of that port (marathon-lb writes no check
///   options for a port without one) whose protocol is TCP (an HTTP check
///   switches the backend to HTTP mode);
/// - `HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX` the admin port's index, so
///   that `{healthCheckPort}` is each task's admin port (marathon-lb counts
///   an app's ports by service port, ascending, as Marathon assigns them);
/// - the admin port itself not exposed (`HAPROXY_<i>_ENABLED` false).
fn marathon_lb_errors(app: &Value, admin: usize) -> Vec<String> {
    let mut errs = vec![];
    let labels = &app["labels"];
    let label = |k: &str| labels[k].as_str();
    if label("HAPROXY_GROUP").is_none_or(str::is_empty) {
        errs.push("needs HAPROXY_GROUP, the marathon-lb group that serves it".to_string());
    }
    if label("HAPROXY_0_ENABLED") != Some("true") {
        errs.push("HAPROXY_0_ENABLED must be true: marathon-lb's --strict-mode serves only enabled ports".to_string());
    }
    if label("HAPROXY_0_MODE") != Some("tcp") {
        errs.push("HAPROXY_0_MODE must be tcp".to_string());
    }
    if label("HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX") != Some(admin.to_string().as_str()) {
        errs.push(format!(
            "HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX must be {admin}, the admin port"
        ));
    }
    if label(&format!("HAPROXY_{admin}_ENABLED")) != Some("false") {
        errs.push(format!(
            "HAPROXY_{admin}_ENABLED must be false: the admin port is not for clients"
        ));
    }
    // marathon-lb's get_health_check(app, 0): the first check with a fixed
    // port, or of port index 0.
    let check = app["healthChecks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h.get("port").is_some() || h["portIndex"].as_u64() == Some(0));
    match check.and_then(|h| h["protocol"].as_str()) {
        Some("TCP" | "MESOS_TCP") => {}
        other => errs.push(format!(
            "marathon-lb takes the Redis port's health check from the first check of port index 0, which must be TCP or MESOS_TCP, not {other:?}"
        )),
    }
    match marathon_lb_backend(app, &EXAMPLE_TASKS) {
        Ok(rendered) => errs.extend(recipe_differences(&rendered)),
        Err(e) => errs.push(e),
    }
    errs
}

/// A backend as HAProxy applies it: its directives other than servers
/// (sorted), and each server's address with its options as sorted
/// `keyword argument` pairs, `default-server` options folded in.
type Backend = (Vec<String>, Vec<(String, Vec<String>)>);

fn backend_semantics(lines: &[&str]) -> Backend {
    // Server keywords that take no argument (of those the recipe could use).
    const FLAGS: [&str; 4] = ["check", "backup", "disabled", "send-proxy"];
    let options = |words: &[&str]| -> Vec<String> {
        let mut out = vec![];
        let mut i = 0;
        while i < words.len() {
            if FLAGS.contains(&words[i]) || i + 1 == words.len() {
                out.push(words[i].to_string());
                i += 1;
            } else {
                out.push(format!("{} {}", words[i], words[i + 1]));
                i += 2;
            }
        }
        out
    };
    let mut defaults = vec![];
    let mut other = vec![];
    let mut servers = vec![];
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"default-server") => defaults.extend(options(&words[1..])),
            // server <name> <address> [options]: the name is the writer's.
            Some(&"server") if words.len() >= 3 => servers.push((words[2].to_string(), options(&words[3..]))),
            _ => other.push(words.join(" ")),
        }
    }
    for (_, opts) in &mut servers {
        // A server's own option wins over default-server's.
        let own: Vec<String> = opts.iter().map(|o| o.split(' ').next().unwrap().to_string()).collect();
        opts.extend(
            defaults
                .iter()
                .filter(|d| !own.contains(&d.split(' ').next().unwrap().to_string()))
                .cloned(),
        );
        opts.sort();
    }
    other.sort();
    servers.sort();
    (other, servers)
}

/// How the backend marathon-lb renders from the labels differs from the
/// recipe's `redis_write` (`docs/haproxy.cfg`, the one `tests/proxy.rs`
/// and `tests/partition.rs` run): nothing, when HAProxy would run them the
/// same way. The recipe's `defaults` lines count for it; marathon-lb's own
/// defaults differ (`timeout connect 3s`), so the rendered backend must
/// set them itself. `balance roundrobin` is HAProxy's default. The
/// recipe's `timeout client` and `timeout server` need no match: in TCP
/// mode marathon-lb's default `timeout tunnel 3600s` supersedes both once
/// a connection is made.
fn recipe_differences(rendered: &str) -> Vec<String> {
    let recipe = std::fs::read_to_string(repo().join("docs/haproxy.cfg")).expect("docs/haproxy.cfg");
    let defaults = haproxy_section(&recipe, "defaults", "");
    let want = backend_semantics(&haproxy_section(&recipe, "backend", "redis_write"));
    let backend_name = rendered
        .lines()
        .find_map(|l| l.strip_prefix("backend "))
        .unwrap_or("")
        .to_string();
    let mut got = backend_semantics(&haproxy_section(rendered, "backend", &backend_name));
    got.0
        .retain(|l| l != "balance roundrobin" && !defaults.contains(&l.as_str()));
    let mut errs = vec![];
    if want.0.is_empty() || want.1.is_empty() {
        errs.push("docs/haproxy.cfg has no backend redis_write with servers".to_string());
    }
    if got.0 != want.0 {
        errs.push(format!(
            "marathon-lb's backend has the directives {:?} (beyond the recipe's defaults), the recipe's redis_write {:?}",
            got.0, want.0
        ));
    }
    if got.1 != want.1 {
        errs.push(format!(
            "marathon-lb's servers are {:?}, the recipe's {:?}",
            got.1, want.1
        ));
    }
    for d in &defaults {
        if !haproxy_section(rendered, "backend", &backend_name).contains(d)
            && !d.starts_with("timeout client")
            && !d.starts_with("timeout server")
        {
            errs.push(format!(
                "the recipe's default {d:?} is not in marathon-lb's backend (marathon-lb's own defaults differ)"
            ));
        }
    }
    errs
}

/// Python's `str.format` with named fields only, as marathon-lb fills its
/// templates: an unknown field is an error (marathon-lb's `KeyError`).
fn py_format(template: &str, fields: &[(&str, String)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let (c, after) = (&rest[i..i + 1], &rest[i + 1..]);
        if after.starts_with(c) {
            out.push_str(c);
            rest = &after[1..];
            continue;
        }
        if c == "}" {
            return Err(format!("a single '}}' in {template:?}"));
        }
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
        let name = &after[..end];
        let v = fields
            .iter()
            .find(|(k, _)| *k == name)
            .ok_or_else(|| format!("marathon-lb has no field {{{name}}} for {template:?}"))?;
        out.push_str(&v.1);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The docs' example tasks: (address, Redis port, admin port).
const EXAMPLE_TASKS: [(&str, u16, u16); 3] = [
    ("10.0.3.7", 31457, 31458),
    ("10.0.3.8", 31022, 31023),
    ("10.0.3.9", 31788, 31789),
];

/// The frontend and backend marathon-lb writes for the redis app's port 0
/// (service port 10101) with these tasks, following its code for a TCP
/// port with a TCP health check and a health check port index (server ids
/// left out: marathon-lb hashes them from the names). Only the paths the
/// app relies on are followed; anything else is an error.
fn marathon_lb_backend(app: &Value, tasks: &[(&str, u16, u16)]) -> Result<String, String> {
    let label = |k: &str| app["labels"][k].as_str().map(|v| v.replace("\r\n", "\n"));
    let backend = format!(
        "{}_10101",
        app["id"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches('/')
            .replace('/', "_")
    );
    let mode = label("HAPROXY_0_MODE").unwrap_or_else(|| "tcp".into());
    if mode != "tcp" {
        return Err(format!("mode {mode}: only the TCP path is followed"));
    }
    let check = app["healthChecks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h.get("port").is_some() || h["portIndex"].as_u64() == Some(0))
        .ok_or("no health check of port 0: marathon-lb would write no check")?;
    let hc = |port: u16| -> Vec<(&str, String)> {
        let n = |k: &str| check[k].as_u64().unwrap_or(0).to_string();
        vec![
            ("healthCheckPortIndex", n("portIndex")),
            ("healthCheckPort", port.to_string()),
            (
                "healthCheckProtocol",
                check["protocol"].as_str().unwrap_or("").to_string(),
            ),
            ("healthCheckPath", check["path"].as_str().unwrap_or("/").to_string()),
            ("healthCheckTimeoutSeconds", n("timeoutSeconds")),
            ("healthCheckIntervalSeconds", n("intervalSeconds")),
            ("healthCheckGracePeriodSeconds", n("gracePeriodSeconds")),
            ("healthCheckMaxConsecutiveFailures", n("maxConsecutiveFailures")),
            (
                "healthCheckFalls",
                (check["maxConsecutiveFailures"].as_u64().unwrap_or(0) + 1).to_string(),
            ),
            ("healthCheckPortOptions", format!(" port {port}")),
        ]
    };
    let mut out = py_format(
        &label("HAPROXY_0_FRONTEND_HEAD").unwrap_or_else(|| {
            "\nfrontend {backend}\n  bind {bindAddr}:{servicePort}{sslCert}{bindOptions}\n  mode {mode}\n".into()
        }),
        &[
            ("backend", backend.clone()),
            ("bindAddr", "*".into()),
            ("servicePort", "10101".into()),
            ("sslCert", String::new()),
            ("bindOptions", String::new()),
            ("mode", mode.clone()),
        ],
    )?;
    out.push_str(&format!("  use_backend {backend}\n"));
    out.push_str(&py_format(
        &label("HAPROXY_0_BACKEND_HEAD")
            .unwrap_or_else(|| "\nbackend {backend}\n  balance {balance}\n  mode {mode}\n".into()),
        &[
            ("backend", backend.clone()),
            ("balance", "roundrobin".into()),
            ("mode", mode.clone()),
        ],
    )?);
    out.push_str(&py_format(
        &label("HAPROXY_0_BACKEND_TCP_HEALTHCHECK_OPTIONS").unwrap_or_default(),
        &hc(tasks[0].2),
    )?);
    let server_check = label("HAPROXY_0_BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS").unwrap_or_else(|| {
        "check inter {healthCheckIntervalSeconds}s fall {healthCheckFalls}{healthCheckPortOptions}".into()
    });
    let server = label("HAPROXY_0_BACKEND_SERVER_OPTIONS").unwrap_or_else(|| {
        "  server {serverName} {host_ipv4}:{port} id {serverId}{cookieOptions}{healthCheckOptions}{otherOptions}\n"
            .into()
    });
    for (ip, port, admin) in tasks {
        let checks = py_format(server_check.trim(), &hc(*admin))?;
        let checks = if checks.is_empty() {
            checks
        } else {
            format!(" {checks}")
        };
        let line = py_format(
            &server,
            &[
                ("host", ip.to_string()),
                ("host_ipv4", ip.to_string()),
                ("port", port.to_string()),
                ("serverName", format!("{}_{port}", ip.replace('.', "_"))),
                ("serverId", "ID".into()),
                ("cookieOptions", String::new()),
                ("healthCheckOptions", checks),
                ("otherOptions", String::new()),
            ],
        )?;
        out.push_str(&line.replace(" id ID", ""));
    }
    Ok(out)
}

/// The lines of the section `kind name` of an HAProxy config, trimmed,
/// without comments and blank lines.
fn haproxy_section<'a>(cfg: &'a str, kind: &str, name: &str) -> Vec<&'a str> {
    let header = format!("{kind} {name}");
    let header = header.trim();
    cfg.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(char::is_whitespace) || l.starts_with('#'))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// A Redis memory size (`600mb`, `1gb`, `1048576`) in bytes, as Redis reads
/// it: `k`/`m`/`g` are powers of 1000, `kb`/`mb`/`gb` of 1024.
fn bytes(v: &str) -> Option<u64> {
    let v = v.to_ascii_lowercase();
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits.parse().ok()?;
    let mult = match &v[digits.len()..] {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1_000_000,
        "mb" => 1024 * 1024,
        "g" => 1_000_000_000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    Some(n * mult)
}

fn app_files() -> Vec<PathBuf> {
    ["redis", "sentinel", "watcher"]
        .iter()
        .map(|n| repo().join(format!("marathon/{n}.json")))
        .collect()
}

#[test]
fn app_definitions_pass_marathons_schema_and_our_invariants() {
    for f in app_files() {
        let app = read_json(&f);
        let errs = schema_errors("AppDefinition.json", &app);
        assert!(errs.is_empty(), "{}: schema errors:\n{}", f.display(), errs.join("\n"));
        let errs = invariant_errors(&app);
        assert!(errs.is_empty(), "{}:\n{}", f.display(), errs.join("\n"));
    }
}

#[test]
fn group_passes_the_schema_and_matches_the_app_files() {
    let group = read_json(&repo().join("marathon/group.json"));
    let errs = schema_errors("Group.json", &group);
    assert!(errs.is_empty(), "group.json schema errors:\n{}", errs.join("\n"));
    assert_eq!(group["id"], "/redis");
    let apps = group["apps"].as_array().expect("group.json has apps");
    assert_eq!(apps.len(), 3);
    for (app, file) in apps.iter().zip(app_files()) {
        let errs = invariant_errors(app);
        assert!(errs.is_empty(), "group.json:\n{}", errs.join("\n"));
        let mut without_deps = app.clone();
        without_deps.as_object_mut().unwrap().remove("dependencies");
        assert_eq!(
            without_deps,
            read_json(&file),
            "group.json's app differs from {}",
            file.display()
        );
    }
    assert_eq!(
        apps[1]["dependencies"],
        serde_json::json!(["/redis/redis"]),
        "sentinel depends on redis"
    );
    // The fence must come before the Sentinels can promote another master:
    // FENCE_AFTER_MS plus a check and the witnesses' timeout (2 s) below
    // SENTINEL_DOWN_AFTER_MS.
    let ms = |app: &Value, var: &str, default: u64| -> u64 {
        app["env"][var]
            .as_str()
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let fence = ms(&apps[0], "FENCE_AFTER_MS", 3000);
    let down = ms(&apps[1], "SENTINEL_DOWN_AFTER_MS", 5000);
    assert!(
        fence > 0 && fence + 2000 <= down,
        "FENCE_AFTER_MS {fence} must be at least 2000 below SENTINEL_DOWN_AFTER_MS {down}"
    );
    assert_eq!(
        apps[2]["dependencies"],
        serde_json::json!(["/redis/sentinel"]),
        "watcher depends on sentinel"
    );
}

#[test]
fn broken_definitions_are_caught() {
    let good = read_json(&repo().join("marathon/redis.json"));
    let mut with_cmd = good.clone();
    with_cmd["cmd"] = "rzk-redis".into();
    assert!(
        invariant_errors(&with_cmd).iter().any(|e| e.contains("cmd")),
        "cmd must be rejected"
    );
    let mut bad_schema = good.clone();
    bad_schema["instances"] = "three".into();
    assert!(
        !schema_errors("AppDefinition.json", &bad_schema).is_empty(),
        "the schema must reject a string instance count"
    );
    let mut bad_key = good.clone();
    bad_key["healthcheck"] = Value::Bool(true);
    assert!(
        !schema_errors("AppDefinition.json", &bad_key).is_empty(),
        "the schema must reject unknown keys"
    );
    let mut bridge = good.clone();
    bridge["networks"] = serde_json::json!([{ "mode": "container/bridge" }]);
    assert!(
        !invariant_errors(&bridge).is_empty(),
        "bridge networking must be rejected"
    );
    let mut stray_env = good.clone();
    stray_env["env"]["RECONCILE_INTERVAL_S"] = "5".into();
    assert!(
        invariant_errors(&stray_env)
            .iter()
            .any(|e| e.contains("RECONCILE_INTERVAL_S"))
    );
    let mut short_kill = good.clone();
    short_kill["taskKillGracePeriodSeconds"] = 5.into();
    assert!(
        !invariant_errors(&short_kill).is_empty(),
        "a kill grace below the hand-over timeout must be rejected"
    );
    let mut tcp_check = good.clone();
    tcp_check["healthChecks"][0] = serde_json::json!({"protocol": "MESOS_TCP", "portIndex": 0});
    assert!(
        invariant_errors(&tcp_check).iter().any(|e| e.contains("MESOS_HTTP")),
        "a TCP health check must be rejected: it is green before the sync"
    );
    let mut no_ready = good.clone();
    no_ready.as_object_mut().unwrap().remove("readinessChecks");
    assert!(invariant_errors(&no_ready).iter().any(|e| e.contains("readiness")));
    let mut wrong_admin = good.clone();
    wrong_admin["env"]["ADMIN_PORT"] = "$PORT0".into();
    assert!(invariant_errors(&wrong_admin).iter().any(|e| e.contains("ADMIN_PORT")));
    let mut one_cpu = good.clone();
    one_cpu["cpus"] = 0.5.into();
    assert!(invariant_errors(&one_cpu).iter().any(|e| e.contains("cpu")));
    let mut no_headroom = good.clone();
    let i = no_headroom["args"]
        .as_array()
        .unwrap()
        .iter()
        .position(|a| a == "--maxmemory")
        .unwrap();
    no_headroom["args"][i + 1] = "900mb".into();
    assert!(invariant_errors(&no_headroom).iter().any(|e| e.contains("60%")));
    let mut literal = good.clone();
    literal["env"]["REDIS_PASSWORD"] = "hunter2".into();
    assert!(invariant_errors(&literal).iter().any(|e| e.contains("REDIS_PASSWORD")));
    let mut one_watcher = read_json(&repo().join("marathon/watcher.json"));
    one_watcher["instances"] = 1.into();
    assert!(invariant_errors(&one_watcher).iter().any(|e| e.contains("2 watchers")));
    let mut majority = good;
    majority["upgradeStrategy"]["minimumHealthCapacity"] = 0.0.into();
    assert!(
        !invariant_errors(&majority).is_empty(),
        "an upgrade that can stop a majority must be rejected"
    );
    let mut group = read_json(&repo().join("marathon/group.json"));
    group["apps"][0]["cmd"] = "x".into();
    assert!(!invariant_errors(&group["apps"][0]).is_empty());
    group["apps"][0]["instances"] = "x".into();
    assert!(
        !schema_errors("Group.json", &group).is_empty(),
        "Group.json must check its apps against AppDefinition.json"
    );
}

/// The head marathon-lb writes before every app (its `HAPROXY_HEAD`
/// template), cut to what `haproxy -c` can check on a machine without
/// marathon-lb's Lua files, state directory and stats socket.
const MARATHON_LB_DEFAULTS: &str = "global
  maxconn 50000
defaults
  retries                   3
  maxconn               10000
  timeout connect          3s
  timeout client          30s
  timeout server          30s
  timeout tunnel        3600s
  option            dontlognull
  option            redispatch
";

#[test]
fn marathon_lb_builds_the_recipes_write_backend() {
    let app = read_json(&repo().join("marathon/redis.json"));
    let rendered = marathon_lb_backend(&app, &EXAMPLE_TASKS).expect("marathon-lb renders the redis app");
    let errs = recipe_differences(&rendered);
    assert!(errs.is_empty(), "{}\nrendered:\n{rendered}", errs.join("\n"));
    // The docs show exactly what marathon-lb writes for the labels, and the
    // recipe exactly as the proxy tests run it.
    let operating = std::fs::read_to_string(repo().join("docs/operating.md")).unwrap();
    assert!(
        operating.contains(&format!("```\n{}```\n", rendered.trim_start())),
        "docs/operating.md must show marathon-lb's lines for the labels, exactly:\n{rendered}"
    );
    let recipe = std::fs::read_to_string(repo().join("docs/haproxy.cfg")).unwrap();
    assert!(
        operating.contains(&format!("```\n{recipe}```\n")),
        "docs/operating.md must show docs/haproxy.cfg exactly"
    );
    // HAProxy itself accepts it, behind marathon-lb's defaults.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, format!("{MARATHON_LB_DEFAULTS}{rendered}")).unwrap();
    let out = std::process::Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .expect("run haproxy -c (bash scripts/test.sh installs haproxy)");
    assert!(
        out.status.success(),
        "haproxy -c rejects marathon-lb's config: {}{}\n{rendered}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn broken_marathon_lb_labels_are_caught() {
    let good = read_json(&repo().join("marathon/redis.json"));
    assert!(marathon_lb_errors(&good, 1).is_empty());
    let broken = |f: &dyn Fn(&mut Value), what: &str, expect: &str| {
        let mut app = good.clone();
        f(&mut app);
        let errs = invariant_errors(&app);
        assert!(
            errs.iter().any(|e| e.contains(expect)),
            "{what} must be rejected with {expect:?}; errors: {errs:?}"
        );
    };
    broken(
        &|a| {
            a["labels"].as_object_mut().unwrap().remove("HAPROXY_GROUP");
        },
        "no HAPROXY_GROUP",
        "HAPROXY_GROUP",
    );
    broken(&|a| a["labels"]["HAPROXY_0_MODE"] = "http".into(), "HTTP mode", "tcp");
    broken(
        &|a| {
            a["labels"].as_object_mut().unwrap().remove("HAPROXY_0_ENABLED");
        },
        "the Redis port not enabled (strict mode)",
        "HAPROXY_0_ENABLED",
    );
    broken(
        &|a| a["labels"]["HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX"] = "0".into(),
        "checks on the Redis port",
        "admin port",
    );
    broken(
        &|a| {
            a["labels"].as_object_mut().unwrap().remove("HAPROXY_1_ENABLED");
        },
        "the admin port exposed",
        "HAPROXY_1_ENABLED",
    );
    broken(
        &|a| {
            a["healthChecks"].as_array_mut().unwrap().truncate(1);
        },
        "no TCP check of the Redis port",
        "MESOS_TCP",
    );
    broken(
        &|a| {
            let l = &mut a["labels"]["HAPROXY_0_BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS"];
            *l = l.as_str().unwrap().replace("fall 2", "fall 3").into();
        },
        "a slower fall than the recipe's",
        "servers",
    );
    broken(
        &|a| {
            let l = &mut a["labels"]["HAPROXY_0_BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS"];
            *l = l
                .as_str()
                .unwrap()
                .replace(" on-marked-down shutdown-sessions", "")
                .into();
        },
        "no shutdown-sessions",
        "servers",
    );
    broken(
        &|a| {
            let l = &mut a["labels"]["HAPROXY_0_BACKEND_TCP_HEALTHCHECK_OPTIONS"];
            *l = l.as_str().unwrap().replace("/master", "/health").into();
        },
        "a check of /health",
        "directives",
    );
    broken(
        &|a| {
            let l = &mut a["labels"]["HAPROXY_0_BACKEND_HEAD"];
            *l = l.as_str().unwrap().replace("  timeout connect 500ms\n", "").into();
        },
        "marathon-lb's 3 s connect timeout",
        "timeout connect 500ms",
    );
    broken(
        &|a| a["labels"]["HAPROXY_0_BACKEND_TCP_HEALTHCHECK_OPTIONS"] = "  option httpchk GET {path}\n".into(),
        "a field marathon-lb does not have",
        "no field {path}",
    );
}

/// A Dockerfile's final stages: (name, ENTRYPOINT, USER, WORKDIR, HEALTHCHECK?).
#[derive(Debug, Default, Clone)]
struct Stage {
    name: String,
    entrypoint: Option<String>,
    user: Option<String>,
    workdir: Option<String>,
    healthcheck: bool,
}

/// Parses the instructions of a Dockerfile (continuations joined); USER and
/// WORKDIR are inherited from a `FROM <earlier stage>`.
fn stages(text: &str) -> Vec<Stage> {
    let joined = text.replace("\\\n", " ");
    let mut out: Vec<Stage> = vec![];
    for line in joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (inst, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match inst.to_ascii_uppercase().as_str() {
            "FROM" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let base = words[0];
                let name = if words.len() == 3 && words[1].eq_ignore_ascii_case("AS") {
                    words[2]
                } else {
                    ""
                };
                let inherited = out.iter().find(|s| s.name == base).cloned().unwrap_or_default();
                // ENTRYPOINT is reset per stage here on purpose (each target
                // must name its own binary); USER, WORKDIR and HEALTHCHECK
                // are inherited from a parent stage, as Docker does.
                out.push(Stage {
                    name: name.to_string(),
                    entrypoint: None,
                    ..inherited
                });
            }
            "ENTRYPOINT" => out.last_mut().unwrap().entrypoint = Some(rest.to_string()),
            "USER" => out.last_mut().unwrap().user = Some(rest.to_string()),
            "WORKDIR" => out.last_mut().unwrap().workdir = Some(rest.to_string()),
            "HEALTHCHECK" => out.last_mut().unwrap().healthcheck = true,
            _ => {}
        }
    }
    out
}

fn dockerfile_errors(text: &str) -> Vec<String> {
    let mut errs = vec![];
    let all = stages(text);
    for target in ["redis", "sentinel", "watcher"] {
        let Some(s) = all.iter().find(|s| s.name == target) else {
            errs.push(format!("no stage {target}"));
            continue;
        };
        let entry: Option<Vec<String>> = s.entrypoint.as_deref().and_then(|e| serde_json::from_str(e).ok());
        match entry {
            None => errs.push(format!(
                "{target}: ENTRYPOINT must be exec form (a JSON array), got {:?}",
                s.entrypoint
            )),
            Some(argv) => {
                let bin = argv.last().and_then(|p| p.rsplit('/').next()).unwrap_or("");
                if bin != format!("rzk-{target}") || !repo().join("bins").join(format!("{bin}.rs")).is_file() {
                    errs.push(format!(
                        "{target}: ENTRYPOINT {argv:?} must end with rzk-{target} from bins/"
                    ));
                }
            }
        }
        match s.user.as_deref() {
            None | Some("root" | "0" | "0:0") => errs.push(format!("{target}: must run as a non-root USER")),
            Some(_) => {}
        }
        if s.workdir.as_deref() != Some("/data") {
            errs.push(format!("{target}: WORKDIR must be /data"));
        }
        if !s.healthcheck {
            errs.push(format!("{target}: needs a HEALTHCHECK"));
        }
    }
    errs
}

#[test]
fn dockerfile_has_exec_entrypoints_and_non_root_users() {
    let text = std::fs::read_to_string(repo().join("docker/Dockerfile")).unwrap();
    let errs = dockerfile_errors(&text);
    assert!(errs.is_empty(), "docker/Dockerfile:\n{}", errs.join("\n"));
    // And the checks bite.
    let shell_form = text.replace(
        r#"ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/rzk-watcher"]"#,
        "ENTRYPOINT /usr/local/bin/rzk-watcher",
    );
    assert!(dockerfile_errors(&shell_form).iter().any(|e| e.contains("exec form")));
    let as_root = text.replacen("USER redis", "USER root", 1);
    assert!(dockerfile_errors(&as_root).iter().any(|e| e.contains("non-root")));
    let renamed = text.replace("/usr/local/bin/rzk-sentinel\"]", "/usr/local/bin/rzk-sentinelle\"]");
    assert!(dockerfile_errors(&renamed).iter().any(|e| e.contains("sentinel")));
}

#[test]
fn memory_sizes_read_as_redis_reads_them() {
    assert_eq!(bytes("600mb"), Some(600 * 1024 * 1024));
    assert_eq!(bytes("1GB"), Some(1 << 30));
    assert_eq!(bytes("5m"), Some(5_000_000));
    assert_eq!(bytes("1234"), Some(1234));
    assert_eq!(bytes("lots"), None);
    assert_eq!(bytes("12tb"), None);
}

/// Errors of the persistent variant beyond the app invariants: AOF, a
/// local persistent volume that is DATA_DIR, residency, no over-capacity
/// (a resident task can't be placed twice), and a start as root so the
/// launcher can hand the root-owned volume to `redis`.
fn persistent_errors(app: &Value) -> Vec<String> {
    let mut errs = vec![];
    if app["env"]["PERSISTENCE"] != "aof" {
        errs.push("env PERSISTENCE must be aof".to_string());
    }
    let volumes = app["container"]["volumes"].as_array().cloned().unwrap_or_default();
    let data_dir = app["env"]["DATA_DIR"].as_str().unwrap_or("");
    let mounted = volumes.iter().any(|v| {
        let path = v["containerPath"].as_str().unwrap_or("");
        v["persistent"]["size"].as_u64().is_some_and(|s| s > 0)
            && v["mode"] == "RW"
            && !path.starts_with('/')
            && data_dir == format!("/mnt/mesos/sandbox/{path}")
    });
    if !mounted {
        errs.push(format!(
            "DATA_DIR {data_dir:?} must be a RW local persistent volume (sandbox-relative containerPath)"
        ));
    }
    if !app["residency"].is_object() {
        errs.push("needs residency".to_string());
    }
    if app["upgradeStrategy"]["maximumOverCapacity"].as_f64() != Some(0.0) {
        errs.push("a resident app needs maximumOverCapacity 0".to_string());
    }
    let as_root = serde_json::json!({"key": "user", "value": "0"});
    if !app["container"]["docker"]["parameters"]
        .as_array()
        .is_some_and(|p| p.contains(&as_root))
    {
        errs.push("must start as root (docker parameter user=0) to hand the volume to redis".to_string());
    }
    errs
}

#[test]
fn the_persistent_redis_app_passes_the_schema_and_keeps_its_data() {
    let app = read_json(&repo().join("marathon/redis-persistent.json"));
    let errs = schema_errors("AppDefinition.json", &app);
    assert!(
        errs.is_empty(),
        "redis-persistent.json schema errors:\n{}",
        errs.join("\n")
    );
    let mut errs = invariant_errors(&app);
    errs.extend(persistent_errors(&app));
    assert!(errs.is_empty(), "redis-persistent.json:\n{}", errs.join("\n"));
    // It is the plain app plus persistence, nothing else drifts.
    let plain = read_json(&repo().join("marathon/redis.json"));
    for key in [
        "args",
        "healthChecks",
        "readinessChecks",
        "portDefinitions",
        "constraints",
        "secrets",
    ] {
        assert_eq!(
            app[key], plain[key],
            "redis-persistent.json's {key} differs from redis.json"
        );
    }
    // And the checks bite.
    let mut no_residency = app.clone();
    no_residency.as_object_mut().unwrap().remove("residency");
    assert!(persistent_errors(&no_residency).iter().any(|e| e.contains("residency")));
    let mut elsewhere = app.clone();
    elsewhere["env"]["DATA_DIR"] = "/data".into();
    assert!(persistent_errors(&elsewhere).iter().any(|e| e.contains("DATA_DIR")));
    let mut rdb = app;
    rdb["env"]["PERSISTENCE"] = "none".into();
    assert!(!persistent_errors(&rdb).is_empty());
}

/// `scripts/render-group.sh` makes a second group from the one file: it
/// passes the schema and the invariants, and shares no app id, ZooKeeper
/// root or secret with the shipped group.
#[test]
fn a_second_group_rendered_from_the_script_collides_with_nothing() {
    let out = std::process::Command::new("bash")
        .arg(repo().join("scripts/render-group.sh"))
        .args([
            "/cache",
            "/redis-cache",
            "registry.example.org/",
            "9.9.9",
            "zk-a:2181,zk-b:2181",
        ])
        .output()
        .expect("run scripts/render-group.sh (needs jq)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    let errs = schema_errors("Group.json", &second);
    assert!(errs.is_empty(), "rendered group schema errors:\n{}", errs.join("\n"));
    let first = read_json(&repo().join("marathon/group.json"));
    let ids = |g: &Value| -> Vec<String> {
        let mut v = vec![g["id"].as_str().unwrap().to_string()];
        v.extend(
            g["apps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_string()),
        );
        v
    };
    let (a, b) = (ids(&first), ids(&second));
    assert_eq!(b, ["/cache", "/cache/redis", "/cache/sentinel", "/cache/watcher"]);
    for id in &b {
        assert!(!a.contains(id), "{id} is in both groups");
    }
    for app in second["apps"].as_array().unwrap() {
        let errs = invariant_errors(app);
        assert!(errs.is_empty(), "rendered {}:\n{}", app["id"], errs.join("\n"));
        assert_eq!(app["env"]["ZK_ROOT"], "/redis-cache");
        assert_eq!(app["env"]["ZK_HOSTS"], "zk-a:2181,zk-b:2181");
        let c = app["id"].as_str().unwrap().rsplit('/').next().unwrap();
        assert_eq!(
            app["container"]["docker"]["image"],
            format!("registry.example.org/redis-zk-{c}:9.9.9")
        );
        for dep in app["dependencies"].as_array().into_iter().flatten() {
            assert!(
                b.contains(&dep.as_str().unwrap().to_string()),
                "{c} depends on {dep} outside its group"
            );
        }
        for (_, secret) in app["secrets"].as_object().unwrap() {
            assert!(secret["source"].as_str().unwrap().starts_with("cache/"), "{secret}");
        }
    }
    assert_ne!(first["apps"][0]["env"]["ZK_ROOT"], second["apps"][0]["env"]["ZK_ROOT"]);
    // Bad ids are refused, with exit 2.
    for bad in [["cache", "/x"], ["/cache", "x"], ["/Cache", "/x"], ["/cache/", "/x"]] {
        let st = std::process::Command::new("bash")
            .arg(repo().join("scripts/render-group.sh"))
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(st.status.code(), Some(2), "{bad:?} accepted");
    }
}
