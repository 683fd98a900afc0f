//! [`SeedError`]: why a seed could not be turned into addresses, or why a
//! [`SeedResolver`](crate::SeedResolver) could not be built. Each message is
//! one line that names the seed (or the setting) and the value.

/// Everything that can go wrong with seeds. Per-seed variants carry the seed
/// string exactly as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    /// The seed is not `host:port`, `ip:port` or `[ipv6]:port`. `seed` is
    /// as configured; the message shows its control characters escaped.
    #[error("seed `{}`: {reason}", escape_controls(.seed))]
    Syntax { seed: String, reason: String },

    /// The DNS answered that the name does not exist (NXDOMAIN).
    #[error("seed `{seed}`: no such name `{host}` (NXDOMAIN from {resolver})")]
    NoSuchName {
        seed: String,
        host: String,
        resolver: String,
    },

    /// The name exists but has neither A nor AAAA records.
    #[error("seed `{seed}`: name `{host}` has no A or AAAA records (asked {resolver})")]
    NoAddresses {
        seed: String,
        host: String,
        resolver: String,
    },

    /// No answer came within the seed's time bound.
    #[error("seed `{seed}`: no answer for `{host}` within {timeout_ms} ms (asked {resolver})")]
    Timeout {
        seed: String,
        host: String,
        timeout_ms: u64,
        resolver: String,
    },

    /// Any other failure of the lookup (refused, server failure, I/O...).
    #[error("seed `{seed}`: lookup of `{host}` failed (asked {resolver}): {reason}")]
    Lookup {
        seed: String,
        host: String,
        resolver: String,
        reason: String,
    },

    /// The seed resolved, but some of its addresses were dropped because the
    /// result already held `addresses_max` addresses.
    #[error(
        "seed `{seed}`: {dropped} address(es) dropped, the result is capped at {addresses_max} addresses"
    )]
    AddressesCapped {
        seed: String,
        dropped: usize,
        addresses_max: usize,
    },

    /// A [`SeedLimits`](crate::SeedLimits) field has a value that cannot work.
    #[error("seed limits: `{field}` = {value}: {reason}")]
    Limits {
        field: &'static str,
        value: u64,
        reason: &'static str,
    },

    /// The system resolver configuration (e.g. `/etc/resolv.conf`) could not
    /// be read.
    #[error("system resolver configuration: {reason}")]
    SystemConfig { reason: String },
}

/// `s` with its control characters escaped (a newline as `\n`): a value
/// quoted in an error message (a seed here, a key or field in
/// shoal-config) must keep the message one line, so it cannot forge a log
/// line (found by fuzz/fuzz_targets/config.rs).
pub fn escape_controls(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl SeedError {
    /// The seed this error is about, if it is about one.
    pub fn seed(&self) -> Option<&str> {
        match self {
            Self::Syntax { seed, .. }
            | Self::NoSuchName { seed, .. }
            | Self::NoAddresses { seed, .. }
            | Self::Timeout { seed, .. }
            | Self::Lookup { seed, .. }
            | Self::AddressesCapped { seed, .. } => Some(seed),
            Self::Limits { .. } | Self::SystemConfig { .. } => None,
        }
    }

    pub(crate) fn syntax(seed: &str, reason: impl Into<String>) -> Self {
        Self::Syntax {
            seed: seed.to_owned(),
            reason: reason.into(),
        }
    }
}
