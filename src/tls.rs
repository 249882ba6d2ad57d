//! TLS: the certificate files, their checks, and the one live copy every
//! connection of the process takes its certificates from.
//!
//! One stack, rustls, for every link: the Redis and Sentinel connections
//! ([`crate::probe`]), ZooKeeper ([`crate::zk`]) and the admin API. A
//! [`Tls`] holds the files' last accepted content. [`Tls::refresh`] looks at
//! the files (a cheap `stat`); when they changed, it loads and checks them,
//! and only a set that passes every check replaces the one in service: a
//! key that does not match, a file that does not parse, a certificate not
//! yet valid or expired, or one the CA does not sign is refused, and the
//! old certificate stays. New connections then use the new set; open ones
//! keep theirs, but for a probe's kept connections, which are replaced at
//! their next use.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;

use crate::model::{show_ms, unix_ms};

/// Whether a server asks its clients for a certificate (`tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthClients {
    /// Required: a client without a certificate the CA signs is refused.
    Yes,
    /// Checked when one is given.
    Optional,
    /// Not asked for.
    No,
}

impl AuthClients {
    /// The value of Redis's `tls-auth-clients`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthClients::Yes => "yes",
            AuthClients::Optional => "optional",
            AuthClients::No => "no",
        }
    }
}

/// Where the PEM files are: the CA that signs the peers, and this
/// process's own certificate (chain) and key, when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub ca: PathBuf,
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// What identifies one version of the files: each file's inode, size and
/// change time. A file replaced by rename gets a new inode.
type Stamp = Vec<(u64, u64, i64, i64)>;

fn stamp(files: &Files) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let mut paths = vec![&files.ca];
    if let Some((c, k)) = &files.identity {
        paths.extend([c, k]);
    }
    paths
        .iter()
        .map(|p| match std::fs::metadata(p) {
            Ok(m) => (m.ino(), m.size(), m.ctime(), m.ctime_nsec()),
            Err(_) => (0, 0, 0, 0),
        })
        .collect()
}

/// One accepted set of the files' content.
#[derive(Clone)]
pub struct Material {
    /// The CA certificates, PEM.
    pub ca_pem: Vec<u8>,
    /// The certificate chain and key, PEM, when the files name them.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The certificate and key, ready to serve (the admin API).
    pub certified: Option<Arc<CertifiedKey>>,
    /// The end of the certificate's validity, in seconds since the epoch.
    pub not_after: Option<u64>,
    /// The certificate's serial number, in hex (for the logs).
    pub serial: Option<String>,
    /// What a connection to a server is made with: the CA, and the
    /// certificate as this process's identity.
    pub client: Arc<rustls::ClientConfig>,
    stamp: Stamp,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The crypto of every TLS link.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads and checks `files`. The certificate must be valid now, be signed
/// by the CA, carry every name of `names` (the names peers reach this
/// process by; empty: none checked) and match its key. The error says
/// which file and why.
pub fn load(files: &Files, names: &[String]) -> Result<Material, String> {
    let stamp = stamp(files);
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let ca_pem = read(&files.ca)?;
    let cas = certificates(&ca_pem, &files.ca)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in &cas {
        roots
            .add(c.clone())
            .map_err(|e| format!("{}: not a usable CA certificate ({e})", files.ca.display()))?;
    }
    let roots = Arc::new(roots);
    let Some((cert_path, key_path)) = &files.identity else {
        return Ok(Material {
            client: client_config(&roots, None)?,
            ca_pem,
            identity: None,
            certified: None,
            not_after: None,
            serial: None,
            stamp,
        });
    };
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let chain = certificates(&cert_pem, cert_path)?;
    let leaf = chain[0].clone();
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: not a PEM private key ({e})", key_path.display()))?;
    let cert = cert_path.display();
    let (not_before, not_after, serial) = validity(&leaf).map_err(|e| format!("{cert}: {e}"))?;
    let provider = provider();
    let certified = CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider)
        .map_err(|e| format!("{cert} and {} do not go together ({e})", key_path.display()))?;
    let now = unix_ms() / 1000;
    if now < not_before {
        let (since, now) = (show_ms(not_before * 1000), show_ms(now * 1000));
        return Err(format!("{cert}: not valid before {since} (now {now})"));
    }
    if now >= not_after {
        return Err(format!("{cert}: expired at {}", show_ms(not_after * 1000)));
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider)
        .build()
        .map_err(|e| format!("{}: {e}", files.ca.display()))?;
    // The chain and the dates are checked as a peer checks them; with no
    // name to check (a client's identity), a name is still needed, and
    // only its mismatch is forgiven.
    let checks: Vec<(&str, bool)> = match names {
        [] => vec![("localhost", false)],
        _ => names.iter().map(|n| (n.as_str(), true)).collect(),
    };
    for (name, must_carry) in checks {
        let server = ServerName::try_from(name.to_string())
            .map_err(|_| format!("{name} is not a name a certificate can carry"))?;
        match verifier.verify_server_cert(&leaf, &chain[1..], &server, &[], UnixTime::now()) {
            Ok(_) => {}
            Err(rustls::Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. })) if !must_carry => {}
            Err(rustls::Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. })) => {
                return Err(format!(
                    "{cert}: does not carry the name {name} that peers reach this task by (add it as a subjectAltName)"
                ));
            }
            Err(e) => {
                return Err(format!(
                    "{cert}: not accepted with the CA of {} ({e})",
                    files.ca.display()
                ));
            }
        }
    }
    Ok(Material {
        client: client_config(&roots, Some((chain, key)))?,
        ca_pem,
        identity: Some((cert_pem, key_pem)),
        certified: Some(Arc::new(certified)),
        not_after: Some(not_after),
        serial: Some(serial),
        stamp,
    })
}

/// The certificates of the PEM file `path` holds (`pem`): at least one.
fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no certificate", path.display()));
    }
    Ok(certs)
}

/// A certificate's validity (not before, not after, in seconds since the
/// epoch) and its serial number in hex.
fn validity(cert: &CertificateDer<'_>) -> Result<(u64, u64, String), String> {
    use x509_cert::der::Decode;
    let c = x509_cert::Certificate::from_der(cert.as_ref()).map_err(|e| format!("not an X.509 certificate ({e})"))?;
    let v = &c.tbs_certificate.validity;
    let serial = c
        .tbs_certificate
        .serial_number
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((
        v.not_before.to_unix_duration().as_secs(),
        v.not_after.to_unix_duration().as_secs(),
        serial,
    ))
}

/// The files and their content in service, shared by every connection of
/// the process (clone it freely).
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

struct Inner {
    files: Files,
    names: Vec<String>,
    current: RwLock<Arc<Material>>,
    /// The version of the files last refused, so that a bad replacement
    /// is refused (and logged) once, not at every look.
    refused: Mutex<Option<Stamp>>,
    /// The version of the files the last look saw: a change is loaded once
    /// it has held for a whole look, so that a certificate and its key
    /// replaced one after the other are never taken half-way.
    seen: Mutex<Option<Stamp>>,
    /// `TLS_TRANSITION=yes`: the task speaks what the group's `<root>/tls`
    /// says, not always TLS.
    follows_group: std::sync::atomic::AtomicBool,
    /// Whether the task's Redis links speak TLS now: always, unless it
    /// follows the group, which starts it in plain text.
    speaking: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.inner.files)
            .field("current", &*self.current())
            .finish()
    }
}

/// What [`Tls::refresh`] found.
#[derive(Debug)]
pub enum Refresh {
    /// The files are as they were.
    Same,
    /// A new set is in service.
    Loaded(Arc<Material>),
    /// The files changed, but the new set was refused; the old one stays.
    Refused(String),
}

impl Tls {
    /// Loads and checks the files (see [`load`]).
    pub fn new(files: Files, names: Vec<String>) -> Result<Tls, String> {
        let m = load(&files, &names)?;
        Ok(Tls {
            inner: Arc::new(Inner {
                files,
                names,
                current: RwLock::new(Arc::new(m)),
                refused: Mutex::new(None),
                seen: Mutex::new(None),
                follows_group: false.into(),
                speaking: true.into(),
            }),
        })
    }

    /// Makes the task follow the group's `<root>/tls` (`TLS_TRANSITION`):
    /// plain text until told otherwise.
    pub fn follow_group(&self) {
        self.inner.follows_group.store(true, Ordering::Relaxed);
        self.speak(false);
    }

    /// Whether the task follows the group's `<root>/tls`.
    pub fn follows_group(&self) -> bool {
        self.inner.follows_group.load(Ordering::Relaxed)
    }

    /// Whether new Redis and Sentinel connections speak TLS.
    pub fn speaking(&self) -> bool {
        self.inner.speaking.load(Ordering::Relaxed)
    }

    /// Sets what new Redis and Sentinel connections speak.
    pub fn speak(&self, tls: bool) {
        self.inner.speaking.store(tls, Ordering::Relaxed);
    }

    /// The files.
    pub fn files(&self) -> &Files {
        &self.inner.files
    }

    /// The set in service.
    pub fn current(&self) -> Arc<Material> {
        self.inner.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes a new set into service when the files changed, have not
    /// changed since the last look, and pass every check.
    pub fn refresh(&self) -> Refresh {
        let now = stamp(&self.inner.files);
        if now == self.current().stamp {
            return Refresh::Same;
        }
        let settled = {
            let mut seen = self.inner.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.replace(now.clone()).as_ref() == Some(&now)
        };
        if !settled {
            return Refresh::Same;
        }
        let mut refused = self.inner.refused.lock().unwrap_or_else(|e| e.into_inner());
        if refused.as_ref() == Some(&now) {
            return Refresh::Same;
        }
        match load(&self.inner.files, &self.inner.names) {
            // Written meanwhile: looked at again next time.
            Ok(m) if m.stamp != now => Refresh::Same,
            Ok(m) if m.identity == self.current().identity && m.ca_pem == self.current().ca_pem => {
                *self.inner.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(m);
                Refresh::Same
            }
            Ok(m) => {
                *refused = None;
                let m = Arc::new(m);
                *self.inner.current.write().unwrap_or_else(|e| e.into_inner()) = m.clone();
                Refresh::Loaded(m)
            }
            Err(e) => {
                *refused = Some(now);
                Refresh::Refused(e)
            }
        }
    }

    /// A server configuration that serves the certificate in service at
    /// each handshake, so a new one is served from the next connection on.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Current(self.clone())));
        Ok(Arc::new(config))
    }
}

/// A client configuration with `roots` as the only CAs and `identity` as
/// the client certificate.
fn client_config(
    roots: &Arc<rustls::RootCertStore>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| e.to_string())?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Loopback(verifier)));
    let config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The CA's check of a server, except that a server reached at
/// `127.0.0.1` or `::1` (a launcher's own server, which also listens on
/// loopback for it and for Mesos's checks) need not carry that name: the
/// connection never leaves the host. Its chain and dates are checked all
/// the same.
#[derive(Debug)]
struct Loopback(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for Loopback {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let local = [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
        let loopback = matches!(server_name, ServerName::IpAddress(ip) if local.contains(&IpAddr::from(*ip)));
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. })) if loopback => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[derive(Debug)]
struct Current(Tls);

impl rustls::server::ResolvesServerCert for Current {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current().certified.clone()
    }
}

/// Whether a file can be read by users other than its owner (a key file
/// should not be).
pub fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}
