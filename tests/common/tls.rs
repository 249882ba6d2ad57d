//! TLS fixtures: a throw-away PKI made with the `openssl` CLI ([`Pki`]),
//! a standalone ZooKeeper that also serves a TLS client port ([`ZkTls`]),
//! and small TLS clients for checks ([`redis_tls_cmd`] (rustls),
//! [`zk_tls_client`], [`served_serial`] (`openssl s_client`)).
//!
//! Keys are EC P-256: redis-server 7.0.15 / Sentinel (OpenSSL 3.0),
//! ZooKeeper 3.8 (Java 17, `ssl.keyStore.type=PEM`), rustls (tokio-rustls
//! and the `zookeeper-client` crate) and Python's `ssl` all accept them.
//! Generating the whole PKI takes about 0.1 s.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{RedisConnectionInfo, Value};
use zookeeper_client::{Client, TlsOptions};

use super::{Zk, free_port, fresh_dir, launch_zk_with, wait_zk_ready};

/// Debian's zookeeper.jar manifest lists netty-buffer, -common, -handler,
/// -transport and -transport-native-epoll but not netty-codec, without
/// which `NettyServerCnxnFactory` fails on its first connection
/// (`ClassNotFoundException: io.netty.handler.codec.ByteToMessageDecoder`).
/// Nothing else is missing (the server falls back from epoll to NIO).
const NETTY_CODEC: &str = "/usr/share/java/netty-codec.jar";
const OPENSSL: &str = "/usr/bin/openssl";
/// Validity of the default leaf and of [`LeafOpts::default`], in days.
const LEAF_DAYS: u32 = 30;

/// How [`Pki::leaf`] makes a certificate.
#[derive(Clone, Copy, Debug)]
pub struct LeafOpts {
    /// Validity entirely in the past: it ended a day ago and lasted `days`.
    pub expired: bool,
    /// Validity starting a day from now and lasting `days`.
    pub not_yet_valid: bool,
    /// Signed by the rogue CA ([`Pki::rogue_ca_cert`]) instead of the CA.
    pub signed_by_rogue: bool,
    /// Length of the validity period (at least 1).
    pub days: u32,
}

impl Default for LeafOpts {
    /// Valid now for 30 days, signed by the CA.
    fn default() -> LeafOpts {
        LeafOpts {
            expired: false,
            not_yet_valid: false,
            signed_by_rogue: false,
            days: LEAF_DAYS,
        }
    }
}

/// A CA, a rogue CA, and a leaf certificate signed by the CA, in a fresh
/// kept directory. Every leaf has subjectAltName IP entries for every
/// address the tests use — 127.0.0.1, 127.0.0.2–127.0.0.254 (the IPs
/// [`super::task`] cycles through) and 127.0.2.1–3 (the ZooKeeper
/// ensemble of `scripts/local-group.sh`) — plus `DNS:localhost`, and no
/// extendedKeyUsage, so one leaf serves as server and as client identity.
pub struct Pki {
    dir: PathBuf,
    ca_cert: PathBuf,
    rogue_ca_cert: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    next_serial: AtomicU64,
}

/// The binary's shared [`Pki`], made on first use (what [`ZkTls::start`]
/// uses, so tests can use the same CA for Redis and ZooKeeper).
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(Pki::new)
}

impl Pki {
    /// A new CA (`ca.crt`/`ca.key`), rogue CA (`rogue-ca.crt`/`rogue-ca.key`)
    /// and leaf (`leaf.crt`/`leaf.key`, valid now for 30 days).
    pub fn new() -> Pki {
        let dir = fresh_dir("pki-");
        let pki = Pki {
            ca_cert: dir.join("ca.crt"),
            rogue_ca_cert: dir.join("rogue-ca.crt"),
            cert: dir.join("leaf.crt"),
            key: dir.join("leaf.key"),
            dir,
            next_serial: AtomicU64::new(0x1000),
        };
        pki.make_ca("ca", "rzk test CA");
        pki.make_ca("rogue-ca", "rzk rogue CA");
        fs::write(pki.dir.join("leaf.ext"), leaf_extensions()).expect("write leaf.ext");
        pki.leaf("leaf", LeafOpts::default());
        pki
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// The CA of [`LeafOpts::signed_by_rogue`]: nobody trusts it.
    pub fn rogue_ca_cert(&self) -> &Path {
        &self.rogue_ca_cert
    }

    /// The default leaf's certificate.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// The default leaf's key.
    pub fn key(&self) -> &Path {
        &self.key
    }

    /// The default leaf as a client identity: (certificate, key).
    pub fn identity(&self) -> (&Path, &Path) {
        (&self.cert, &self.key)
    }

    /// A new key and certificate `dir/<name>.crt`, `dir/<name>.key` (the
    /// subject `CN=<name>`, the SANs of every leaf, a serial of its own).
    /// Panics if `name` was used before: files a server may be reading are
    /// only ever replaced with [`Pki::install`].
    pub fn leaf(&self, name: &str, opts: LeafOpts) -> (PathBuf, PathBuf) {
        assert!(opts.days >= 1, "LeafOpts::days must be at least 1");
        assert!(
            !(opts.expired && opts.not_yet_valid),
            "a leaf cannot be both expired and not yet valid"
        );
        let (cert, key) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        assert!(
            !cert.exists() && !key.exists(),
            "leaf {name:?} exists already in {}",
            self.dir.display()
        );
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        // `openssl ca` (not `x509 -req`, which in OpenSSL 3.0 cannot back-date)
        // with a database of its own per call, so that calls may run in parallel.
        let work = self.dir.join(format!("ca-work-{serial:x}"));
        fs::create_dir(&work).expect("create the openssl ca directory");
        fs::write(work.join("index.txt"), "").expect("write index.txt");
        fs::write(work.join("serial"), format!("{serial:X}\n")).expect("write serial");
        fs::write(work.join("ca.cnf"), CA_CONFIG.replace("$dir", p(&work))).expect("write ca.cnf");
        let csr = work.join("leaf.csr");
        let subject = format!("/CN={name}");
        openssl(
            &[
                NEW_KEY_AND_CSR,
                &["-keyout", p(&key), "-out", p(&csr), "-subj", &subject],
            ]
            .concat(),
        );
        let day = Duration::from_secs(86_400);
        let span = day * opts.days;
        let now = SystemTime::now();
        let (start, end) = if opts.expired {
            (now - day - span, now - day)
        } else if opts.not_yet_valid {
            (now + day, now + day + span)
        } else {
            // A minute back, so a clock a little behind still accepts it.
            (now - Duration::from_secs(60), now + span)
        };
        let ca = if opts.signed_by_rogue { "rogue-ca" } else { "ca" };
        let (start, end) = (asn1_time(start), asn1_time(end));
        let (ca_cert, ca_key) = (self.dir.join(format!("{ca}.crt")), self.dir.join(format!("{ca}.key")));
        let (config, ext) = (work.join("ca.cnf"), self.dir.join("leaf.ext"));
        #[rustfmt::skip]
        openssl(&[
            "ca", "-batch", "-notext", "-config", p(&config), "-cert", p(&ca_cert), "-keyfile", p(&ca_key),
            "-extfile", p(&ext), "-startdate", &start, "-enddate", &end, "-in", p(&csr), "-out", p(&cert),
        ]);
        (cert, key)
    }

    /// A fresh key (`dir/mismatched-<n>.key`) that belongs to no certificate.
    pub fn mismatched_key(&self) -> PathBuf {
        let n = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let key = self.dir.join(format!("mismatched-{n:x}.key"));
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            p(&key),
        ]);
        key
    }

    /// Replaces `dst_cert` and `dst_key` with copies of `src_cert` and
    /// `src_key` the way secret stores do: each is written in full under a
    /// temporary name in its destination's directory, then renamed over it
    /// (the certificate first, then the key). A reader sees the old or the
    /// new file, never a half-written one — but between the two renames the
    /// new certificate sits beside the old key.
    pub fn install(&self, src_cert: &Path, src_key: &Path, dst_cert: &Path, dst_key: &Path) {
        let staged: Vec<(PathBuf, &Path)> = [(src_cert, dst_cert), (src_key, dst_key)]
            .into_iter()
            .map(|(src, dst)| {
                let name = dst
                    .file_name()
                    .and_then(|n| n.to_str())
                    .expect("a file name to install to");
                let n = self.next_serial.fetch_add(1, Ordering::Relaxed);
                let tmp = dst.with_file_name(format!(".{name}.tmp-{}-{n:x}", std::process::id()));
                fs::copy(src, &tmp).unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), tmp.display()));
                readable_by_the_redis_group(&tmp);
                (tmp, dst)
            })
            .collect();
        for (tmp, dst) in staged {
            fs::rename(&tmp, dst).unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), dst.display()));
        }
    }

    fn make_ca(&self, name: &str, cn: &str) {
        let (key, cert) = (
            self.dir.join(format!("{name}.key")),
            self.dir.join(format!("{name}.crt")),
        );
        let subject = format!("/CN={cn}");
        #[rustfmt::skip]
        openssl(&[NEW_KEY_AND_CSR, &[
            "-x509", "-days", "3650", "-keyout", p(&key), "-out", p(&cert), "-subj", &subject,
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ]].concat());
    }
}

/// `openssl req` arguments for a new EC P-256 key, unencrypted, and a request.
const NEW_KEY_AND_CSR: &[&str] = &[
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// `openssl ca` needs a database, a serial file and a policy; nothing more.
const CA_CONFIG: &str = "\
[ca]
default_ca = rzk
[rzk]
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir
default_md = sha256
policy = any
unique_subject = no
email_in_dn = no
[any]
commonName = supplied
";

fn leaf_extensions() -> String {
    let mut san = vec!["IP:127.0.0.1".to_string()];
    san.extend((2..=254).map(|i| format!("IP:127.0.0.{i}")));
    san.extend((1..=3).map(|i| format!("IP:127.0.2.{i}")));
    san.push("DNS:localhost".into());
    format!(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectAltName={}\n",
        san.join(",")
    )
}

fn p(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Runs `openssl args…`; panics with its output if it fails.
fn openssl(args: &[&str]) -> String {
    let out = Command::new(OPENSSL)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {OPENSSL}: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `t` as `YYYYMMDDHHMMSSZ` (UTC), what `openssl ca -startdate` takes.
fn asn1_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).expect("a time after 1970").as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The serial number of the certificate in `cert` (upper-case hex, as
/// `openssl x509 -serial` prints it).
pub fn cert_serial(cert: &Path) -> String {
    let out = openssl(&["x509", "-noout", "-serial", "-in", p(cert)]);
    out.trim().trim_start_matches("serial=").to_string()
}

/// The serial of the certificate a TLS server on `ip:port` serves to a new
/// connection (`openssl s_client`, presenting `identity` if given, checking
/// the chain against `ca`; 5 s at most). `Err` if the handshake fails.
pub fn served_serial(ip: &str, port: u16, ca: &Path, identity: Option<(&Path, &Path)>) -> Result<String, String> {
    let connect = format!("{ip}:{port}");
    let mut args = vec![
        "5",
        OPENSSL,
        "s_client",
        "-connect",
        &connect,
        "-CAfile",
        p(ca),
        "-verify_return_error",
    ];
    if let Some((cert, key)) = identity {
        args.extend(["-cert", p(cert), "-key", p(key)]);
    }
    let out = Command::new("timeout")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run openssl s_client: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pem: String = text
        .split_inclusive('\n')
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .take_while(|l| !l.starts_with("-----END CERTIFICATE-----"))
        .collect();
    if !out.status.success() || pem.is_empty() {
        return Err(format!(
            "s_client {connect}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let tmp = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    fs::write(tmp.path(), format!("{pem}-----END CERTIFICATE-----\n")).map_err(|e| e.to_string())?;
    Ok(cert_serial(tmp.path()))
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// Runs one command on a fresh TLS connection to `addr` ("ip port") —
/// rustls (tokio-rustls, the server name the IP), trusting `ca` and
/// presenting `identity` if given; 2 s at most. Server error replies come
/// back as `Err`.
pub async fn redis_tls_cmd(
    addr: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    args: &[&str],
) -> Result<Value, String> {
    let (ip, port) = super::split_addr(addr)?;
    let config = std::sync::Arc::new(client_config(ca, identity)?);
    let fut = async {
        let tls = connect(config, &ip, port).await?;
        // No CLIENT SETINFO: Sentinels reject it.
        let settings = RedisConnectionInfo::default().set_skip_set_lib_name();
        let (mut conn, driver) = redis::aio::MultiplexedConnection::new(&settings, tls)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let (name, rest) = args.split_first().ok_or("empty command")?;
        let mut cmd = redis::cmd(name);
        cmd.arg(rest);
        let reply = tokio::select! {
            r = cmd.query_async::<Value>(&mut conn) => r,
            () = driver => return Err(format!("{addr}: the connection ended")),
        };
        match reply {
            Ok(Value::ServerError(e)) => Err(format!("{addr}: {args:?}: {e:?}")),
            Ok(v) => Ok(v),
            Err(e) => Err(format!("{addr}: {args:?}: {e}")),
        }
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .unwrap_or_else(|_| Err(format!("{addr}: {args:?} timed out")))
}

/// A ZooKeeper session (10 s timeout) over TLS on `connect` (e.g.
/// [`ZkTls::secure_connect_string`]), trusting `ca` and presenting
/// `identity` if given. `Err` if it is not established within 10 s.
pub async fn zk_tls_client(connect: &str, ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Client, String> {
    let read = |f: &Path| fs::read_to_string(f).map_err(|e| format!("read {}: {e}", f.display()));
    let mut tls = TlsOptions::new()
        .with_pem_ca(&read(ca)?)
        .map_err(|e| format!("CA {}: {e}", ca.display()))?;
    if let Some((cert, key)) = identity {
        tls = tls
            .with_pem_identity(&read(cert)?, &read(key)?)
            .map_err(|e| format!("identity {}: {e}", cert.display()))?;
    }
    let connecting = Client::connector()
        .with_session_timeout(super::ZK_SESSION_TIMEOUT)
        .with_tls(tls)
        .connect(connect);
    match tokio::time::timeout(super::ZK_SESSION_TIMEOUT, connecting).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("zk connect {connect}: {e}")),
        Err(_) => Err(format!("zk connect {connect}: timed out")),
    }
}

// ---------------------------------------------------------------------------
// ZooKeeper with a TLS client port
// ---------------------------------------------------------------------------

/// A standalone ZooKeeper (the test server's settings) serving its plain
/// `clientPort` and a `secureClientPort`, both on 127.0.0.1, with Netty
/// (`NettyServerCnxnFactory`, which the TLS port needs) and the Pki's
/// default leaf as its certificate. Killed when dropped. Starting one
/// takes about a second (JVM start; no `restart`: [`Zk::restart`] would
/// start it without netty-codec).
pub struct ZkTls {
    zk: Zk,
    secure_port: u16,
    client_auth: bool,
    ca: PathBuf,
}

impl ZkTls {
    /// With the binary's shared [`pki()`]. `client_auth`:
    /// `ssl.clientAuth=need` (clients must present a certificate signed by
    /// the CA), else `none`.
    pub fn start(client_auth: bool) -> ZkTls {
        ZkTls::start_with(pki(), client_auth)
    }

    /// With `pki`'s CA and default leaf (copied: later [`Pki::install`]s
    /// do not reach the server, which reads them only at start).
    pub fn start_with(pki: &Pki, client_auth: bool) -> ZkTls {
        let dir = fresh_dir("zk-tls-");
        let port = free_port(&["127.0.0.1"]);
        let secure_port = free_port(&["127.0.0.1"]);
        let keystore = dir.join("server.pem");
        let read = |f: &Path| fs::read_to_string(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        fs::write(&keystore, read(pki.key()) + &read(pki.cert())).expect("write server.pem");
        let ca = dir.join("ca.crt");
        fs::copy(pki.ca_cert(), &ca).expect("copy ca.crt");
        fs::write(
            dir.join("zoo.cfg"),
            format!(
                "tickTime={}\nminSessionTimeout=1000\nmaxSessionTimeout=60000\n\
                 dataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 secureClientPort={secure_port}\nsecureClientPortAddress=127.0.0.1\n\
                 serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
                 ssl.keyStore.location={}\nssl.keyStore.type=PEM\n\
                 ssl.trustStore.location={}\nssl.trustStore.type=PEM\n\
                 ssl.clientAuth={}\n\
                 admin.enableServer=false\n4lw.commands.whitelist=*\nmaxClientCnxns=0\n",
                super::ZK_TICK.as_millis(),
                dir.join("data").display(),
                keystore.display(),
                ca.display(),
                if client_auth { "need" } else { "none" },
            ),
        )
        .expect("write zoo.cfg");
        let zk = Zk {
            port,
            pid: AtomicI32::new(launch_zk_with(&dir, None, &[NETTY_CODEC])),
            dir,
        };
        let started = ZkTls {
            zk,
            secure_port,
            client_auth,
            ca,
        };
        wait_zk_ready(&started.zk);
        // The secure port is bound after the plain one answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], secure_port));
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            assert!(
                Instant::now() < deadline,
                "ZooKeeper's secure port {secure_port} not open after 30 s; log tail:\n{}",
                started.zk.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        started
    }

    /// The plain port (`ruok` and the other four-letter words answer here).
    pub fn plain_port(&self) -> u16 {
        self.zk.port()
    }

    pub fn secure_port(&self) -> u16 {
        self.secure_port
    }

    /// `127.0.0.1:<plain port>`.
    pub fn connect_string(&self) -> String {
        self.zk.connect_string()
    }

    /// `tcp+tls://127.0.0.1:<secure port>`.
    pub fn secure_connect_string(&self) -> String {
        format!("tcp+tls://127.0.0.1:{}", self.secure_port)
    }

    pub fn client_auth(&self) -> bool {
        self.client_auth
    }

    /// The server's copy of the CA it trusts.
    pub fn ca_cert(&self) -> &Path {
        &self.ca
    }

    /// The server as a [`Zk`] (pid, pause/resume, four-letter words, log).
    pub fn zk(&self) -> &Zk {
        &self.zk
    }

    pub fn log_tail(&self) -> String {
        self.zk.log_tail()
    }
}

impl Drop for ZkTls {
    fn drop(&mut self) {
        let pid = self.zk.pid();
        // SAFETY: kill(2) and waitpid(2) on our own child, never reaped before.
        unsafe {
            libc::kill(pid, libc::SIGCONT);
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}

/// The client side of the binary's checks when its group runs TLS: set
/// once with [`checks_over_tls`], after which every harness connection to
/// a server or Sentinel ([`super::RedisConn`]) and to the admin API
/// ([`super::http_get`]) is TLS, checked against the CA, with the PKI's
/// leaf as client identity. The scenarios run unchanged over TLS.
pub fn client() -> Option<&'static std::sync::Arc<rustls::ClientConfig>> {
    if PLAIN.load(Ordering::SeqCst) {
        return None;
    }
    CLIENT.get()
}

static CLIENT: OnceLock<std::sync::Arc<rustls::ClientConfig>> = OnceLock::new();
static PLAIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes every check of this binary TLS (see [`client`]).
pub fn checks_over_tls(pki: &Pki) {
    CLIENT.get_or_init(|| std::sync::Arc::new(client_config(pki.ca_cert(), Some(pki.identity())).unwrap()));
    PLAIN.store(false, Ordering::SeqCst);
}

/// Makes the checks plain text again, until the next [`checks_over_tls`]:
/// the benchmark's part T runs a TLS group and a plain one by turns in one
/// process (never both at once).
pub fn checks_in_plain_text() {
    PLAIN.store(true, Ordering::SeqCst);
}

/// A rustls client configuration: `ca` as the only root, `identity` as
/// the client certificate.
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("CA {}: {e}", ca.display()))? {
        roots
            .add(c.map_err(|e| format!("CA {}: {e}", ca.display()))?)
            .map_err(|e| format!("CA {}: {e}", ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    Ok(match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("identity {}: {e}", cert.display()))?
        }
        None => builder.with_no_client_auth(),
    })
}

/// A TLS connection to `ip:port` with `config`, the server checked
/// against the name `ip`.
pub async fn connect(
    config: std::sync::Arc<rustls::ClientConfig>,
    ip: &str,
    port: u16,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let name = rustls::pki_types::ServerName::try_from(ip.to_string()).map_err(|e| format!("{ip}: {e}"))?;
    let tcp = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(|e| format!("{ip}:{port}: connect: {e}"))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("{ip}:{port}: TLS handshake: {e}"))
}

/// Gives `path` to the `redis` group with mode 0640 when the tests run as
/// root: a launcher started as root drops to the `redis` user and reads
/// its TLS files again at each rotation.
pub fn readable_by_the_redis_group(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let group = nix::unistd::Group::from_name("redis")
        .ok()
        .flatten()
        .expect("a redis group (the redis-server package makes it)");
    std::os::unix::fs::chown(path, None, Some(group.gid.as_raw())).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o640)).unwrap();
}

/// The operator's three files, which the rotation replaces in place.
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl Files {
    pub fn new(pki: &Pki) -> Files {
        let dir = fresh_dir("tls-files-");
        let f = Files {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            ca: dir.join("ca.crt"),
        };
        std::fs::copy(pki.ca_cert(), &f.ca).unwrap();
        readable_by_the_redis_group(&f.ca);
        pki.install(pki.cert(), pki.key(), &f.cert, &f.key);
        f
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TLS_CERT_FILE", self.cert.display().to_string()),
            ("TLS_KEY_FILE", self.key.display().to_string()),
            ("TLS_CA_CERT_FILE", self.ca.display().to_string()),
        ]
    }
}

pub fn ip_port(addr: &str) -> (String, u16) {
    let (ip, port) = addr.split_once(' ').unwrap();
    (ip.to_string(), port.parse().unwrap())
}

/// A plain-text `PING` to `ip:port` gets no reply: the connection is
/// reset or closed, or nothing comes back within a second.
pub async fn no_plain_reply(ip: &str, port: u16, request: &[u8]) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(|e| format!("{ip}:{port}: connect: {e}"))?;
    let _ = s.write_all(request).await;
    let mut buf = vec![0; 256];
    match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 && !buf[..n].starts_with(&[0x15, 0x03]) => Err(format!(
            "{ip}:{port} answered plain text: {:?}",
            String::from_utf8_lossy(&buf[..n])
        )),
        // Closed, reset, a TLS alert record, or silence.
        _ => Ok(()),
    }
}
