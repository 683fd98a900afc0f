//! What `run` and `check-config` share: reading the configuration file and
//! loading the cluster certificates it names. `check-config` is this and
//! nothing more, so a file it passes is one `run` gets past too (until a
//! socket cannot be bound).

use shoal_config::Config;
use shoal_transport::{ClusterTls, TlsError, TlsFiles};
use std::path::Path;

/// A configuration with its cluster certificates loaded and verified.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub config: Config,
    /// With `[cluster]`: the node's TLS configuration, built from
    /// `cluster.ca`, `cluster.cert` and `cluster.key`.
    pub tls: Option<ClusterTls>,
}

/// Reads and validates the file at `path`, then loads and checks the
/// cluster certificates exactly as the fleet would at start-up. The error
/// is one line naming the file and the field that was wrong.
pub(crate) fn load(path: &Path) -> Result<Loaded, String> {
    let config = Config::from_file(path).map_err(|e| e.to_string())?;
    let tls = config
        .cluster
        .as_ref()
        .map(|c| {
            ClusterTls::load(&TlsFiles {
                ca: c.ca.clone(),
                cert: c.cert.clone(),
                key: c.key.clone(),
            })
            .map_err(|e| format!("{}: {}: {e}", path.display(), tls_field(&e)))
        })
        .transpose()?;
    if let Some(tls) = &tls {
        shoal_runtime::fleet::check_name(&config.node.name, tls)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(Loaded { config, tls })
}

/// The `[cluster]` field a certificate error is about. shoal-transport
/// names the file and its role, not the configuration field, which is
/// what an operator edits.
fn tls_field(e: &TlsError) -> &'static str {
    let by_kind = |kind: &str| match kind {
        "CA certificate" => "cluster.ca",
        "key" => "cluster.key",
        _ => "cluster.cert",
    };
    match e {
        TlsError::Read { input, .. }
        | TlsError::NotPem { input, .. }
        | TlsError::NoCertificate { input }
        | TlsError::NoName { input }
        | TlsError::NoKey { input }
        | TlsError::BadCa { input, .. }
        | TlsError::BadKey { input, .. } => by_kind(input.kind),
        TlsError::KeyMismatch { .. } => "cluster.key",
        TlsError::NotClusterCert { .. } => "cluster.cert",
        TlsError::Config { .. } => "cluster",
    }
}
