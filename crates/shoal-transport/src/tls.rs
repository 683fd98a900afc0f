//! Mutual-TLS configuration for QUIC between cluster nodes.
//!
//! A [`ClusterTls`] holds one quinn server configuration and one client configuration built
//! from the same three inputs: the cluster CA certificate(s), this node's certificate chain
//! and this node's private key. Both directions require the peer to present a certificate
//! signed by the cluster CA (mutual TLS), both use TLS 1.3 only (QUIC has no other) and
//! both offer the single ALPN protocol [`ALPN`].
//!
//! Every node dials every other node with the server name [`CLUSTER_SERVER_NAME`]; see
//! the [`crate::certs`] module doc for why membership is proven by the CA signature and
//! not by an address or a per-node name.
//!
//! [`ClusterTls::load`] checks everything it can before a socket exists, so a node with
//! a broken certificate directory fails at start-up with an error that names the file:
//! missing or unreadable file, no PEM block of the expected kind, a key that does not
//! belong to the certificate, or a certificate the CA did not sign or that lacks the
//! server/client usages.
//!
//! The crypto provider is always passed explicitly (`ring`): nothing here relies on a
//! process-wide default provider, which rustls 0.23 would otherwise demand.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;

/// The ALPN protocol every node offers and requires.
pub const ALPN: &[u8] = b"shoal/1";

/// The server name every node dials with; every node certificate carries it as a DNS SAN.
pub const CLUSTER_SERVER_NAME: &str = "shoal-cluster";

/// Where a node's TLS material lives on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file with the cluster CA certificate(s): the only trust anchors.
    pub ca: PathBuf,
    /// PEM file with this node's certificate, optionally followed by intermediates.
    pub cert: PathBuf,
    /// PEM file with this node's private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The layout written by `shoal certs init DIR` and `shoal certs node NAME DIR`:
    /// `DIR/ca.pem`, `DIR/NAME.pem`, `DIR/NAME.key`.
    pub fn in_dir(dir: &Path, name: &str) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        }
    }
}

/// What a PEM input is and where it came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemInput {
    /// `"CA certificate"`, `"certificate"` or `"key"`.
    pub kind: &'static str,
    /// The file it was read from; `None` for in-memory PEM.
    pub path: Option<PathBuf>,
}

impl PemInput {
    pub(crate) fn file(kind: &'static str, path: &Path) -> PemInput {
        PemInput {
            kind,
            path: Some(path.to_path_buf()),
        }
    }

    pub(crate) fn memory(kind: &'static str) -> PemInput {
        PemInput { kind, path: None }
    }
}

impl fmt::Display for PemInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{} file `{}`", self.kind, path.display()),
            None => write!(f, "in-memory {}", self.kind),
        }
    }
}

/// Why TLS material could not be turned into a [`ClusterTls`].
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read (missing, permissions, ...).
    #[error("{input}: cannot read: {error}")]
    Read {
        input: PemInput,
        #[source]
        error: std::io::Error,
    },
    /// The input has a malformed PEM block.
    #[error("{input}: not valid PEM: {reason}")]
    NotPem { input: PemInput, reason: String },
    /// No `CERTIFICATE` block was found.
    #[error("{input}: no CERTIFICATE block")]
    NoCertificate { input: PemInput },
    /// The node certificate names no node: its subject has no common name
    /// (`shoal certs node NAME` writes the name there).
    #[error("{input}: the certificate's subject has no common name (the node's name)")]
    NoName { input: PemInput },
    /// No `PRIVATE KEY` block (PKCS#8, `EC PRIVATE KEY` or `RSA PRIVATE KEY`) was found.
    #[error("{input}: no PRIVATE KEY block")]
    NoKey { input: PemInput },
    /// A CA certificate cannot serve as a trust anchor.
    #[error("{input}: certificate #{index} is not a usable CA certificate: {reason}")]
    BadCa {
        input: PemInput,
        index: usize,
        reason: String,
    },
    /// The private key is not one the crypto provider can sign with.
    #[error("{input}: unsupported or invalid private key: {reason}")]
    BadKey { input: PemInput, reason: String },
    /// The private key does not belong to the certificate.
    #[error("{key} does not match {cert}: {reason}")]
    KeyMismatch {
        cert: PemInput,
        key: PemInput,
        reason: String,
    },
    /// The certificate is not a valid cluster node certificate under the CA.
    #[error("{cert} is not a valid node certificate for {ca} ({role}): {reason}")]
    NotClusterCert {
        cert: PemInput,
        ca: PemInput,
        /// `"server"` or `"client"`: which usage failed.
        role: &'static str,
        reason: String,
    },
    /// rustls or quinn refused the assembled configuration.
    #[error("TLS configuration: {reason}")]
    Config { reason: String },
}

/// Server and client QUIC configurations for one node, both doing mutual TLS against the
/// cluster CA. Cheap to clone.
#[derive(Clone)]
pub struct ClusterTls {
    server: quinn::ServerConfig,
    client: quinn::ClientConfig,
    name: Arc<str>,
    /// The CA certificates trusted (DER), to tell whether a reload would
    /// change the fleet's trust.
    ca: Arc<[CertificateDer<'static>]>,
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTls")
            .field("alpn", &String::from_utf8_lossy(ALPN))
            .field("server_name", &CLUSTER_SERVER_NAME)
            .finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// Reads and checks the three PEM files and builds both configurations.
    pub fn load(files: &TlsFiles) -> Result<ClusterTls, TlsError> {
        let ca = PemInput::file("CA certificate", &files.ca);
        let cert = PemInput::file("certificate", &files.cert);
        let key = PemInput::file("key", &files.key);
        let ca_pem = read(&ca, &files.ca)?;
        let cert_pem = read(&cert, &files.cert)?;
        let key_pem = read(&key, &files.key)?;
        Self::build((&ca, &ca_pem), (&cert, &cert_pem), (&key, &key_pem))
    }

    /// Builds both configurations from PEM text held in memory (the same checks as
    /// [`ClusterTls::load`]). `ca_pem` may hold several CA certificates; all are trusted.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<ClusterTls, TlsError> {
        Self::build(
            (&PemInput::memory("CA certificate"), ca_pem.as_bytes()),
            (&PemInput::memory("certificate"), cert_pem.as_bytes()),
            (&PemInput::memory("key"), key_pem.as_bytes()),
        )
    }

    /// The quinn server configuration (transport parameters not yet set).
    pub fn server_config(&self) -> quinn::ServerConfig {
        self.server.clone()
    }

    /// The quinn client configuration (transport parameters not yet set).
    pub fn client_config(&self) -> quinn::ClientConfig {
        self.client.clone()
    }

    fn build(
        (ca_input, ca_pem): (&PemInput, &[u8]),
        (cert_input, cert_pem): (&PemInput, &[u8]),
        (key_input, key_pem): (&PemInput, &[u8]),
    ) -> Result<ClusterTls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let ca_certs = parse_certificates(ca_input, ca_pem)?;
        let ca: Arc<[CertificateDer<'static>]> = ca_certs.clone().into();
        let mut roots = RootCertStore::empty();
        for (index, der) in ca_certs.into_iter().enumerate() {
            roots.add(der).map_err(|e| TlsError::BadCa {
                input: ca_input.clone(),
                index,
                reason: e.to_string(),
            })?;
        }
        let roots = Arc::new(roots);

        let chain = parse_certificates(cert_input, cert_pem)?;
        let name = certificate_name(&chain[0]).ok_or_else(|| TlsError::NoName {
            input: cert_input.clone(),
        })?;
        let key = parse_key(key_input, key_pem)?;
        check_key_matches(&provider, &chain, &key, cert_input, key_input)?;

        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(config_error)?;
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(config_error)?;
        check_chain(
            &chain,
            server_verifier.as_ref(),
            client_verifier.as_ref(),
            cert_input,
            ca_input,
        )?;

        let mut server_crypto = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config_error)?;
        server_crypto.alpn_protocols = vec![ALPN.to_vec()];

        let mut client_crypto = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(config_error)?;
        client_crypto.alpn_protocols = vec![ALPN.to_vec()];

        let server = QuicServerConfig::try_from(server_crypto).map_err(config_error)?;
        let client = QuicClientConfig::try_from(client_crypto).map_err(config_error)?;
        Ok(ClusterTls {
            server: quinn::ServerConfig::with_crypto(Arc::new(server)),
            client: quinn::ClientConfig::new(Arc::new(client)),
            name: name.into(),
            ca,
        })
    }

    /// Whether `other` trusts exactly the CA certificates this one trusts.
    pub fn same_ca(&self, other: &ClusterTls) -> bool {
        self.ca == other.ca
    }

    /// The node's name, as its certificate states it (subject common
    /// name): the one name this node may have in the fleet.
    pub fn node_name(&self) -> &str {
        &self.name
    }
}

/// The subject common name of a certificate: a node's name (see
/// [`crate::certs`]). `None` if it does not parse or has none.
pub fn certificate_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

fn config_error(e: impl fmt::Display) -> TlsError {
    TlsError::Config {
        reason: e.to_string(),
    }
}

pub(crate) fn read(input: &PemInput, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        input: input.clone(),
        error,
    })
}

/// All `CERTIFICATE` blocks in order; other block kinds are skipped.
pub(crate) fn parse_certificates(
    input: &PemInput,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NotPem {
            input: input.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            input: input.clone(),
        });
    }
    Ok(certs)
}

pub(crate) fn parse_key(input: &PemInput, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            input: input.clone(),
        },
        other => TlsError::NotPem {
            input: input.clone(),
            reason: other.to_string(),
        },
    })
}

pub(crate) fn check_key_matches(
    provider: &CryptoProvider,
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    cert_input: &PemInput,
    key_input: &PemInput,
) -> Result<(), TlsError> {
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::BadKey {
            input: key_input.clone(),
            reason: e.to_string(),
        })?;
    match CertifiedKey::new(chain.to_vec(), signing_key).keys_match() {
        // `Unknown` means the provider cannot tell; the handshake would then be the judge.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(e) => Err(TlsError::KeyMismatch {
            cert: cert_input.clone(),
            key: key_input.clone(),
            reason: e.to_string(),
        }),
    }
}

/// Verifies our own chain the way a peer will, in both roles, so that a certificate from the
/// wrong CA, without the cluster SAN or without one of the two usages fails here, not at the
/// first handshake on some other node.
fn check_chain(
    chain: &[CertificateDer<'static>],
    as_server: &dyn ServerCertVerifier,
    as_client: &dyn rustls::server::danger::ClientCertVerifier,
    cert_input: &PemInput,
    ca_input: &PemInput,
) -> Result<(), TlsError> {
    let (end_entity, intermediates) =
        chain.split_first().ok_or_else(|| TlsError::NoCertificate {
            input: cert_input.clone(),
        })?;
    let now = UnixTime::now();
    let server_name = ServerName::try_from(CLUSTER_SERVER_NAME).map_err(config_error)?;
    let not_cluster = |role: &'static str, e: rustls::Error| TlsError::NotClusterCert {
        cert: cert_input.clone(),
        ca: ca_input.clone(),
        role,
        reason: e.to_string(),
    };
    as_server
        .verify_server_cert(end_entity, intermediates, &server_name, &[], now)
        .map_err(|e| not_cluster("server", e))?;
    as_client
        .verify_client_cert(end_entity, intermediates, now)
        .map_err(|e| not_cluster("client", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::MemoryCa;

    struct Dir {
        _tmp: tempfile::TempDir,
        path: PathBuf,
    }

    /// A CA and two nodes on disk.
    fn cluster() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().to_path_buf();
        crate::certs::init_ca(&path).unwrap();
        crate::certs::issue_node("node-1", &path).unwrap();
        crate::certs::issue_node("node-2", &path).unwrap();
        Dir { _tmp: tmp, path }
    }

    fn load_err(files: &TlsFiles) -> String {
        let err = ClusterTls::load(files).unwrap_err();
        err.to_string()
    }

    #[test]
    fn loads_a_valid_node() {
        let dir = cluster();
        ClusterTls::load(&TlsFiles::in_dir(&dir.path, "node-1")).unwrap();
    }

    #[test]
    fn key_of_another_node_is_refused() {
        let dir = cluster();
        let files = TlsFiles {
            key: dir.path.join("node-2.key"),
            ..TlsFiles::in_dir(&dir.path, "node-1")
        };
        let err = ClusterTls::load(&files).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("node-2.key") && msg.contains("node-1.pem"),
            "{msg}"
        );
        assert!(msg.contains("does not match"), "{msg}");
    }

    #[test]
    fn missing_file_is_named() {
        let dir = cluster();
        let msg = load_err(&TlsFiles::in_dir(&dir.path, "node-9"));
        assert!(
            msg.contains("node-9.pem") && msg.contains("cannot read"),
            "{msg}"
        );
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let dir = cluster();
        let good = TlsFiles::in_dir(&dir.path, "node-1");
        let garbage = dir.path.join("garbage");
        let cases: [(&str, &[u8]); 5] = [
            ("text", b"hello, I am not a certificate\n"),
            ("binary", &[0, 159, 146, 150, 255, 0, 1]),
            ("empty", b""),
            (
                "bad base64",
                b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            ),
            (
                "bad DER",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ),
        ];
        for (what, contents) in cases {
            std::fs::write(&garbage, contents).unwrap();
            for files in [
                TlsFiles {
                    ca: garbage.clone(),
                    ..good.clone()
                },
                TlsFiles {
                    cert: garbage.clone(),
                    ..good.clone()
                },
                TlsFiles {
                    key: garbage.clone(),
                    ..good.clone()
                },
            ] {
                let msg = load_err(&files);
                assert!(msg.contains("garbage"), "{what}: {msg}");
            }
        }
        std::fs::write(&garbage, b"not pem").unwrap();
        let msg = load_err(&TlsFiles {
            cert: garbage.clone(),
            ..good.clone()
        });
        assert!(msg.contains("no CERTIFICATE block"), "{msg}");
        let msg = load_err(&TlsFiles {
            key: garbage.clone(),
            ..good.clone()
        });
        assert!(msg.contains("no PRIVATE KEY block"), "{msg}");
        // A certificate where the key should be.
        let msg = load_err(&TlsFiles {
            key: good.cert.clone(),
            ..good.clone()
        });
        assert!(
            msg.contains("node-1.pem") && msg.contains("no PRIVATE KEY block"),
            "{msg}"
        );
    }

    #[test]
    fn certificate_from_another_ca_is_refused() {
        let dir = cluster();
        let other = MemoryCa::new().unwrap();
        let foreign = other.issue("node-1").unwrap();
        let cert = dir.path.join("foreign.pem");
        let key = dir.path.join("foreign.key");
        std::fs::write(&cert, &foreign.cert_pem).unwrap();
        std::fs::write(&key, &foreign.key_pem).unwrap();
        let err = ClusterTls::load(&TlsFiles {
            ca: dir.path.join("ca.pem"),
            cert,
            key,
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::NotClusterCert { .. }), "{err}");
        assert!(err.to_string().contains("foreign.pem"), "{err}");
        // Every CA has its own subject name, so webpki says what happened instead of
        // matching our CA by name and reporting a bad signature.
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    }

    #[test]
    fn in_memory_errors_say_so() {
        let ca = MemoryCa::new().unwrap();
        let node = ca.issue("node-1").unwrap();
        let err = ClusterTls::from_pem(ca.cert_pem(), "junk", &node.key_pem).unwrap_err();
        assert_eq!(
            err.to_string(),
            "in-memory certificate: no CERTIFICATE block"
        );
    }
}
