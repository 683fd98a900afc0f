//! Cluster certificates: one private CA per cluster and the node certificates it signs.
//!
//! Used by `shoal certs init DIR` ([`init_ca`]) and `shoal certs node NAME DIR`
//! ([`issue_node`]), and in memory by tests and the single-process demo ([`MemoryCa`]).
//!
//! # Trust model: membership is the CA signature
//! Every node certificate carries two DNS subject alternative names: the node's own
//! `NAME` and the fixed name [`CLUSTER_SERVER_NAME`] (`shoal-cluster`). Every node dials
//! every peer with the server name `shoal-cluster`, whatever the peer's address. So a peer
//! is accepted because the cluster CA signed its certificate, not because its certificate
//! matches the address gossip handed us: addresses are learnt at run time from gossip and
//! change when nodes are renumbered, and binding certificates to IP addresses would mean
//! reissuing on every move. The node's own name is in the certificate for humans and logs.
//!
//! The consequence is that any holder of any cluster-signed key can stand in for any node.
//! Keep `ca.key` off the nodes (it is only needed to issue certificates) and treat every
//! `NAME.key` as a cluster secret. Both key files are written with mode `0600`.
//!
//! # Usages
//! A node both serves and dials, so its certificate has both the ServerAuth and the
//! ClientAuth extended key usages (a server-only certificate used as a client is refused
//! with TLS alert 43). The CA has path length 0: it signs node certificates only.
//!
//! # Validity
//! The CA is valid for [`CA_VALIDITY_DAYS`] (about 20 years) and node certificates for
//! [`NODE_VALIDITY_DAYS`] (about 10 years), both starting one hour in the past to absorb
//! clock skew between the issuing machine and the nodes. There is no automatic renewal and
//! no revocation list; a fleet of load balancers must not stop gossiping because a
//! certificate quietly expired. Revoking a node means rotating the CA and reissuing.
//!
//! # Files
//! `DIR/ca.pem`, `DIR/ca.key`, `DIR/NAME.pem`, `DIR/NAME.key`. Nothing is ever
//! overwritten: existing files are refused, and files are created with `create_new`, so
//! two concurrent runs cannot clobber each other either.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::tls::{self, CLUSTER_SERVER_NAME, ClusterTls, PemInput, TlsError, TlsFiles};

/// File name of the CA certificate inside a certificate directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a certificate directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// How long a new CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 20 * 365 + 5;
/// How long a new node certificate is valid.
pub const NODE_VALIDITY_DAYS: i64 = 10 * 365 + 2;
/// Longest node name: one DNS label.
pub const NODE_NAME_LEN_MAX: usize = 63;

/// Bytes of the CA key identifier in the CA's common name.
const CA_NAME_ID_BYTES: usize = 8;
const CLOCK_SKEW_ALLOWANCE_HOURS: i64 = 1;
const KEY_FILE_MODE: u32 = 0o600;
const CERT_FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o700;

/// The files written by [`init_ca`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CaFiles {
    /// `DIR/ca.pem` and `DIR/ca.key`.
    pub fn in_dir(dir: &Path) -> CaFiles {
        CaFiles {
            cert: dir.join(CA_CERT_FILE),
            key: dir.join(CA_KEY_FILE),
        }
    }
}

/// The files written by [`issue_node`], plus the CA certificate they chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl NodeFiles {
    /// The files a node loads with [`ClusterTls::load`].
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

/// A freshly issued node certificate and key, PEM encoded.
#[derive(Clone)]
pub struct NodePem {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for NodePem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodePem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Why a certificate could not be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The node name cannot be a DNS label or collides with the CA files.
    #[error("node name `{name}`: {reason}")]
    BadName { name: String, reason: &'static str },
    /// The output file exists; nothing is overwritten.
    #[error("file `{}` already exists; refusing to overwrite it", path.display())]
    Exists { path: PathBuf },
    /// The certificate directory could not be created.
    #[error("directory `{}`: cannot create: {error}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    /// An output file could not be written.
    #[error("file `{}`: cannot write: {error}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    /// The CA private key cannot be parsed or used for signing.
    #[error("{input}: not a usable CA private key: {reason}")]
    BadCaKey { input: PemInput, reason: String },
    /// The CA certificate cannot be used to issue certificates.
    #[error("{input}: not a usable CA certificate: {reason}")]
    BadCaCert { input: PemInput, reason: String },
    /// rcgen refused to generate a key or certificate.
    #[error("generating {what}: {reason}")]
    Generate { what: String, reason: String },
    /// Reading or checking PEM material failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Creates a new cluster CA in `dir` (created with mode `0700` if missing): writes
/// `dir/ca.pem` and `dir/ca.key` (mode `0600`). Refuses if either file exists.
pub fn init_ca(dir: &Path) -> Result<CaFiles, CertError> {
    let files = CaFiles::in_dir(dir);
    refuse_existing(&[&files.cert, &files.key])?;
    MemoryCa::new()?.write_files(dir)
}

/// Issues a certificate for node `name` from the CA in `dir`: reads `dir/ca.pem` and
/// `dir/ca.key`, writes `dir/NAME.pem` and `dir/NAME.key` (mode `0600`). Refuses if either
/// output file exists. The written files are checked to load with [`ClusterTls::load`]'s
/// checks before anything is written.
pub fn issue_node(name: &str, dir: &Path) -> Result<NodeFiles, CertError> {
    validate_node_name(name)?;
    let ca_files = CaFiles::in_dir(dir);
    let tls_files = TlsFiles::in_dir(dir, name);
    let files = NodeFiles {
        ca: ca_files.cert.clone(),
        cert: tls_files.cert,
        key: tls_files.key,
    };
    refuse_existing(&[&files.cert, &files.key])?;
    let ca = MemoryCa::load(&ca_files)?;
    let node = ca.issue(name)?;
    ClusterTls::from_pem(ca.cert_pem(), &node.cert_pem, &node.key_pem)?;
    write_new(&files.key, &node.key_pem, KEY_FILE_MODE)?;
    write_new(&files.cert, &node.cert_pem, CERT_FILE_MODE)?;
    Ok(files)
}

/// Checks that `name` is one lowercase DNS label (`a-z`, `0-9`, `-`, at most 63
/// characters, no leading or trailing `-`) and is not `ca`, which names the CA files.
pub fn validate_node_name(name: &str) -> Result<(), CertError> {
    let bad = |reason| {
        Err(CertError::BadName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > NODE_NAME_LEN_MAX {
        return bad("is longer than 63 characters (one DNS label)");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad("may contain only lowercase letters a-z, digits 0-9 and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return bad("must not start or end with '-'");
    }
    if name == "ca" {
        return bad("is reserved: `ca.pem` and `ca.key` are the CA's files");
    }
    Ok(())
}

/// A cluster CA held in memory: generates one ([`MemoryCa::new`]) or loads one from disk
/// ([`MemoryCa::load`]), and issues node certificates ([`MemoryCa::issue`],
/// [`MemoryCa::node`]). The single-process demo and the tests run whole clusters from one.
pub struct MemoryCa {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key: KeyPair,
}

impl fmt::Debug for MemoryCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCa").finish_non_exhaustive()
    }
}

impl MemoryCa {
    /// Generates a new CA key pair and self-signed CA certificate.
    pub fn new() -> Result<MemoryCa, CertError> {
        let key = KeyPair::generate().map_err(generate_error("the CA key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "shoal");
        // A name unique to this CA: webpki picks the trust anchor by subject name, so with
        // one fixed name a certificate from another shoal CA is reported as a bad
        // signature under ours instead of as an unknown issuer.
        let key_id: String = params
            .key_identifier(&key)
            .iter()
            .take(CA_NAME_ID_BYTES)
            .map(|b| format!("{b:02x}"))
            .collect();
        dn.push(DnType::CommonName, format!("shoal cluster CA {key_id}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY_DAYS);
        let cert = params
            .self_signed(&key)
            .map_err(generate_error("the CA certificate"))?;
        Ok(MemoryCa {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            key,
        })
    }

    /// Loads the CA certificate and key written by [`init_ca`] and checks they belong
    /// together.
    pub fn load(files: &CaFiles) -> Result<MemoryCa, CertError> {
        let cert_input = PemInput::file("CA certificate", &files.cert);
        let key_input = PemInput::file("CA key", &files.key);
        let cert_pem = tls::read(&cert_input, &files.cert)?;
        let key_pem = tls::read(&key_input, &files.key)?;
        Self::from_pem_inputs((&cert_input, &cert_pem), (&key_input, &key_pem))
    }

    /// Like [`MemoryCa::load`], from PEM text.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<MemoryCa, CertError> {
        Self::from_pem_inputs(
            (&PemInput::memory("CA certificate"), cert_pem.as_bytes()),
            (&PemInput::memory("CA key"), key_pem.as_bytes()),
        )
    }

    fn from_pem_inputs(
        (cert_input, cert_pem): (&PemInput, &[u8]),
        (key_input, key_pem): (&PemInput, &[u8]),
    ) -> Result<MemoryCa, CertError> {
        let cert_der = tls::parse_certificates(cert_input, cert_pem)?.swap_remove(0);
        let key_der = tls::parse_key(key_input, key_pem)?;
        let PrivateKeyDer::Pkcs8(pkcs8) = &key_der else {
            return Err(CertError::BadCaKey {
                input: key_input.clone(),
                reason: "not a PKCS#8 (`PRIVATE KEY`) block".to_string(),
            });
        };
        let key = KeyPair::try_from(pkcs8.secret_pkcs8_der()).map_err(|e| CertError::BadCaKey {
            input: key_input.clone(),
            reason: e.to_string(),
        })?;
        let provider = rustls::crypto::ring::default_provider();
        tls::check_key_matches(
            &provider,
            std::slice::from_ref(&cert_der),
            &key_der,
            cert_input,
            key_input,
        )?;
        Issuer::from_ca_cert_der(&cert_der, &key).map_err(|e| CertError::BadCaCert {
            input: cert_input.clone(),
            reason: e.to_string(),
        })?;
        let cert_pem = String::from_utf8_lossy(cert_pem).into_owned();
        Ok(MemoryCa {
            cert_der,
            cert_pem,
            key,
        })
    }

    /// The CA certificate, PEM encoded: every node's trust anchor.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM encoded (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Issues a certificate for node `name` (see [`validate_node_name`]) with SANs
    /// `name` and `shoal-cluster` and both ServerAuth and ClientAuth usages.
    pub fn issue(&self, name: &str) -> Result<NodePem, CertError> {
        validate_node_name(name)?;
        let what = || format!("the certificate for node `{name}`");
        let key = KeyPair::generate().map_err(|e| CertError::Generate {
            what: format!("the key for node `{name}`"),
            reason: e.to_string(),
        })?;
        let mut params =
            CertificateParams::new(vec![name.to_string(), CLUSTER_SERVER_NAME.to_string()])
                .map_err(|e| CertError::Generate {
                    what: what(),
                    reason: e.to_string(),
                })?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "shoal");
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, NODE_VALIDITY_DAYS);
        let issuer = Issuer::from_ca_cert_der(&self.cert_der, &self.key).map_err(|e| {
            CertError::Generate {
                what: what(),
                reason: e.to_string(),
            }
        })?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| CertError::Generate {
                what: what(),
                reason: e.to_string(),
            })?;
        Ok(NodePem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a certificate for node `name` and builds its [`ClusterTls`], without files.
    pub fn node(&self, name: &str) -> Result<ClusterTls, CertError> {
        let node = self.issue(name)?;
        Ok(ClusterTls::from_pem(
            &self.cert_pem,
            &node.cert_pem,
            &node.key_pem,
        )?)
    }

    /// Writes `dir/ca.pem` and `dir/ca.key` (mode `0600`), creating `dir` (mode `0700`) if
    /// missing, so that [`issue_node`] can issue from this CA later. Refuses if either file
    /// exists.
    pub fn write_files(&self, dir: &Path) -> Result<CaFiles, CertError> {
        let files = CaFiles::in_dir(dir);
        refuse_existing(&[&files.cert, &files.key])?;
        create_dir(dir)?;
        write_new(&files.key, &self.key.serialize_pem(), KEY_FILE_MODE)?;
        write_new(&files.cert, &self.cert_pem, CERT_FILE_MODE)?;
        Ok(files)
    }
}

fn generate_error(what: &'static str) -> impl Fn(rcgen::Error) -> CertError {
    move |e| CertError::Generate {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

fn set_validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(CLOCK_SKEW_ALLOWANCE_HOURS);
    params.not_after = now + time::Duration::days(days);
}

/// Checked before any work so that a refused run writes nothing; [`write_new`] still uses
/// `create_new`, which closes the race with a concurrent writer.
fn refuse_existing(paths: &[&Path]) -> Result<(), CertError> {
    for path in paths {
        if path.exists() {
            return Err(CertError::Exists {
                path: path.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(dir).map_err(|error| CertError::CreateDir {
        path: dir.to_path_buf(),
        error,
    })
}

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), CertError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            CertError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            CertError::Write {
                path: path.to_path_buf(),
                error,
            }
        }
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| CertError::Write {
            path: path.to_path_buf(),
            error,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn generated_files_load() {
        let tmp = dir();
        let certs = tmp.path().join("certs");
        let ca = init_ca(&certs).unwrap();
        assert_eq!(ca, CaFiles::in_dir(&certs));
        let node = issue_node("node-1", &certs).unwrap();
        assert_eq!(node.tls_files(), TlsFiles::in_dir(&certs, "node-1"));
        ClusterTls::load(&node.tls_files()).unwrap();
        issue_node("node-2", &certs).unwrap();
        ClusterTls::load(&TlsFiles::in_dir(&certs, "node-2")).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = dir();
        let ca = init_ca(tmp.path()).unwrap();
        let node = issue_node("node-1", tmp.path()).unwrap();
        for key in [&ca.key, &node.key] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        }
    }

    #[test]
    fn existing_files_are_never_overwritten() {
        let tmp = dir();
        let ca = init_ca(tmp.path()).unwrap();
        let ca_pem = std::fs::read(&ca.cert).unwrap();
        let err = init_ca(tmp.path()).unwrap_err();
        assert!(
            matches!(&err, CertError::Exists { path } if *path == ca.cert),
            "{err}"
        );
        assert!(err.to_string().contains("ca.pem"), "{err}");
        assert_eq!(std::fs::read(&ca.cert).unwrap(), ca_pem);

        let node = issue_node("node-1", tmp.path()).unwrap();
        let node_pem = std::fs::read(&node.cert).unwrap();
        let err = issue_node("node-1", tmp.path()).unwrap_err();
        assert!(err.to_string().contains("node-1.pem"), "{err}");
        assert_eq!(std::fs::read(&node.cert).unwrap(), node_pem);

        // A stray key alone also blocks issuing, and nothing is written.
        std::fs::write(tmp.path().join("node-2.key"), "stray").unwrap();
        let err = issue_node("node-2", tmp.path()).unwrap_err();
        assert!(err.to_string().contains("node-2.key"), "{err}");
        assert!(!tmp.path().join("node-2.pem").exists());
    }

    #[test]
    fn bad_names_are_refused() {
        let tmp = dir();
        init_ca(tmp.path()).unwrap();
        let long = "a".repeat(NODE_NAME_LEN_MAX + 1);
        for name in [
            "",
            "Node1",
            "-a",
            "a-",
            "a_b",
            "a.b",
            "../x",
            "ca",
            long.as_str(),
        ] {
            let err = issue_node(name, tmp.path()).unwrap_err();
            assert!(matches!(err, CertError::BadName { .. }), "{name:?}: {err}");
            assert!(err.to_string().contains(&format!("`{name}`")), "{err}");
        }
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            2,
            "only the CA files"
        );
        validate_node_name(&"a".repeat(NODE_NAME_LEN_MAX)).unwrap();
        validate_node_name("lb-0").unwrap();
    }

    #[test]
    fn issuing_without_a_ca_names_the_missing_file() {
        let tmp = dir();
        let err = issue_node("node-1", tmp.path()).unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
        assert!(err.to_string().contains("cannot read"), "{err}");
    }

    #[test]
    fn ca_key_must_match_ca_certificate() {
        let tmp = dir();
        init_ca(tmp.path()).unwrap();
        let other = MemoryCa::new().unwrap();
        std::fs::write(tmp.path().join(CA_KEY_FILE), other.key_pem()).unwrap();
        let err = issue_node("node-1", tmp.path()).unwrap_err();
        assert!(
            matches!(err, CertError::Tls(TlsError::KeyMismatch { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("ca.key"), "{err}");
    }

    #[test]
    fn memory_ca_round_trips_through_files() {
        let tmp = dir();
        let ca = MemoryCa::new().unwrap();
        ca.write_files(tmp.path()).unwrap();
        let node = issue_node("node-1", tmp.path()).unwrap();
        // The node issued from the files is trusted by a node issued in memory.
        let tls = ClusterTls::load(&node.tls_files()).unwrap();
        drop(tls);
        let loaded = MemoryCa::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        let pem = loaded.issue("node-2").unwrap();
        ClusterTls::from_pem(ca.cert_pem(), &pem.cert_pem, &pem.key_pem).unwrap();
        assert!(
            !format!("{pem:?}").contains("PRIVATE KEY"),
            "Debug must not print keys"
        );
    }
}
