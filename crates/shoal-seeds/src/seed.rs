//! Seed syntax: [`parse_seed`] checks one `host:port` string without any I/O,
//! so config validation can reject a bad seed before anything is resolved.
//!
//! Accepted forms: `ip4:port`, `[ip6]:port`, `name:port`, where `name` is a
//! DNS name (letters, digits, `-`, `_`; labels of 1 to 63 characters; 253
//! characters at most, one trailing `.` allowed) and `port` is 1 to 65535.
//! A host made only of digits and dots must be a valid IPv4 address: it is
//! never sent to the DNS as a name.

use crate::SeedError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest DNS name, in characters, without the trailing dot (RFC 1035).
const NAME_CHARS_MAX: usize = 253;
/// Longest DNS label, in characters (RFC 1035).
const LABEL_CHARS_MAX: usize = 63;

/// One parsed seed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seed {
    /// An IP literal: needs no query.
    Addr(SocketAddr),
    /// A DNS name, resolved to all its A and AAAA addresses, each with `port`.
    Name { host: String, port: u16 },
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Addr(addr) => write!(f, "{addr}"),
            Self::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Checks the syntax of one seed. Does no I/O.
pub fn parse_seed(s: &str) -> Result<Seed, SeedError> {
    if s.is_empty() {
        return Err(SeedError::syntax(s, "empty, expected `host:port`"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SeedError::syntax(
            s,
            "contains whitespace or control characters",
        ));
    }

    if let Some(rest) = s.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(SeedError::syntax(s, "missing `]` after the IPv6 address"));
        };
        let port = match after.strip_prefix(':') {
            Some(port) => parse_port(s, port)?,
            None if after.is_empty() => {
                return Err(SeedError::syntax(s, "missing port, expected `[ipv6]:port`"));
            }
            None => {
                return Err(SeedError::syntax(
                    s,
                    format!("unexpected `{after}` after `]`, expected `:port`"),
                ));
            }
        };
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| SeedError::syntax(s, format!("`{inside}` is not an IPv6 address")))?;
        return Ok(Seed::Addr(SocketAddr::new(IpAddr::V6(ip), port)));
    }

    let Some((host, port)) = s.rsplit_once(':') else {
        if s.parse::<IpAddr>().is_ok() {
            return Err(SeedError::syntax(s, "missing port, expected `ip:port`"));
        }
        return Err(SeedError::syntax(s, "missing port, expected `host:port`"));
    };
    if host.contains(':') {
        let reason = if s.parse::<Ipv6Addr>().is_ok() || host.parse::<Ipv6Addr>().is_ok() {
            "an IPv6 address must be in brackets: `[ipv6]:port`"
        } else {
            "too many `:`, expected `host:port` or `[ipv6]:port`"
        };
        return Err(SeedError::syntax(s, reason));
    }
    let port = parse_port(s, port)?;
    if host.is_empty() {
        return Err(SeedError::syntax(s, "missing host before `:`"));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Seed::Addr(SocketAddr::new(IpAddr::V4(ip), port)));
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(SeedError::syntax(
            s,
            format!("`{host}` is not a valid IPv4 address"),
        ));
    }
    check_name(s, host)?;
    Ok(Seed::Name {
        host: host.to_owned(),
        port,
    })
}

fn parse_port(seed: &str, port: &str) -> Result<u16, SeedError> {
    if port.is_empty() {
        return Err(SeedError::syntax(seed, "missing port after `:`"));
    }
    // Digits only: `u16::from_str` would also take a leading `+`.
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SeedError::syntax(
            seed,
            format!("port `{port}` is not a number"),
        ));
    }
    match port.parse::<u16>() {
        Ok(0) => Err(SeedError::syntax(seed, "port 0 cannot be dialed")),
        Ok(port) => Ok(port),
        Err(_) => Err(SeedError::syntax(seed, "port out of range")),
    }
}

fn check_name(seed: &str, host: &str) -> Result<(), SeedError> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > NAME_CHARS_MAX {
        return Err(SeedError::syntax(
            seed,
            format!(
                "host name is {} characters long, at most {NAME_CHARS_MAX} allowed",
                name.len()
            ),
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(SeedError::syntax(
                seed,
                format!("host name `{host}` has an empty label"),
            ));
        }
        if label.len() > LABEL_CHARS_MAX {
            return Err(SeedError::syntax(
                seed,
                format!(
                    "label `{label}` is {} characters long, at most {LABEL_CHARS_MAX} allowed",
                    label.len()
                ),
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(SeedError::syntax(
                seed,
                format!("host name `{host}` contains `{c}`"),
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(SeedError::syntax(
                seed,
                format!("label `{label}` starts or ends with `-`"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> String {
        match parse_seed(s) {
            Err(SeedError::Syntax { seed, reason }) => {
                assert_eq!(seed, s, "the error names the seed");
                reason
            }
            other => panic!("`{s}`: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn a_seed_with_control_characters_is_named_on_one_line() {
        // From fuzz/corpus/config/regression-newline-in-seed.
        let e = parse_seed("lb\n.example:7946\r").unwrap_err();
        assert_eq!(e.seed(), Some("lb\n.example:7946\r"), "kept as configured");
        assert_eq!(
            e.to_string(),
            "seed `lb\\n.example:7946\\r`: contains whitespace or control characters"
        );
    }

    #[test]
    fn ip_literals_are_addresses() {
        assert_eq!(
            parse_seed("10.0.0.5:7946").unwrap(),
            Seed::Addr("10.0.0.5:7946".parse().unwrap())
        );
        assert_eq!(
            parse_seed("[2001:db8::5]:7946").unwrap(),
            Seed::Addr("[2001:db8::5]:7946".parse().unwrap())
        );
        assert_eq!(
            parse_seed("[::1]:1").unwrap(),
            Seed::Addr("[::1]:1".parse().unwrap())
        );
    }

    #[test]
    fn names_keep_host_and_port() {
        assert_eq!(
            parse_seed("lb.example:7946").unwrap(),
            Seed::Name {
                host: "lb.example".into(),
                port: 7946
            }
        );
        assert_eq!(
            parse_seed("lb.example.:65535").unwrap(),
            Seed::Name {
                host: "lb.example.".into(),
                port: 65535
            }
        );
        assert_eq!(
            parse_seed("node-1:80").unwrap(),
            Seed::Name {
                host: "node-1".into(),
                port: 80
            }
        );
        assert_eq!(
            parse_seed("lb.example:7946").unwrap().to_string(),
            "lb.example:7946"
        );
        assert_eq!(parse_seed("[::1]:80").unwrap().to_string(), "[::1]:80");
    }

    #[test]
    fn bad_ports_are_named() {
        assert_eq!(reason("lb.example:99999"), "port out of range");
        assert_eq!(
            SeedError::syntax("lb.example:99999", "port out of range").to_string(),
            "seed `lb.example:99999`: port out of range"
        );
        assert_eq!(reason("lb.example:0"), "port 0 cannot be dialed");
        assert_eq!(reason("lb.example:"), "missing port after `:`");
        assert_eq!(reason("lb.example:+80"), "port `+80` is not a number");
        assert_eq!(reason("lb.example:http"), "port `http` is not a number");
        assert_eq!(reason("[::1]:x"), "port `x` is not a number");
    }

    #[test]
    fn missing_parts_are_named() {
        assert_eq!(reason(""), "empty, expected `host:port`");
        assert_eq!(reason("lb.example"), "missing port, expected `host:port`");
        assert_eq!(reason("10.0.0.1"), "missing port, expected `ip:port`");
        assert_eq!(reason(":80"), "missing host before `:`");
        assert_eq!(reason("[::1]"), "missing port, expected `[ipv6]:port`");
        assert_eq!(reason("[::1"), "missing `]` after the IPv6 address");
        assert_eq!(
            reason("[::1]80"),
            "unexpected `80` after `]`, expected `:port`"
        );
    }

    #[test]
    fn bad_hosts_are_named() {
        assert_eq!(
            reason("::1:80"),
            "an IPv6 address must be in brackets: `[ipv6]:port`"
        );
        assert_eq!(
            reason("2001:db8::1"),
            "an IPv6 address must be in brackets: `[ipv6]:port`"
        );
        assert_eq!(
            reason("a:b:c"),
            "too many `:`, expected `host:port` or `[ipv6]:port`"
        );
        assert_eq!(
            reason("[lb.example]:80"),
            "`lb.example` is not an IPv6 address"
        );
        assert_eq!(
            reason("300.1.1.1:80"),
            "`300.1.1.1` is not a valid IPv4 address"
        );
        assert_eq!(reason("10.0.0:80"), "`10.0.0` is not a valid IPv4 address");
        assert_eq!(
            reason("lb..example:80"),
            "host name `lb..example` has an empty label"
        );
        assert_eq!(
            reason("lb example:80"),
            "contains whitespace or control characters"
        );
        assert_eq!(
            reason(" lb.example:80"),
            "contains whitespace or control characters"
        );
        assert_eq!(reason("lb/x:80"), "host name `lb/x` contains `/`");
        assert_eq!(
            reason("-lb.example:80"),
            "label `-lb` starts or ends with `-`"
        );
        let long_label = "a".repeat(64);
        assert_eq!(
            reason(&format!("{long_label}.example:80")),
            format!("label `{long_label}` is 64 characters long, at most 63 allowed")
        );
        let long_name = vec!["abcdefghi"; 26].join(".");
        assert_eq!(
            reason(&format!("{long_name}:80")),
            "host name is 259 characters long, at most 253 allowed"
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "[",
            "]",
            "[]",
            "[]:",
            "[]:80",
            ":",
            "::",
            ":::",
            "[:]:1",
            "a:",
            ".:1",
            "..:1",
            "é:1",
            "[::1]:65536",
            "0:1",
            "1.2.3.4.5:1",
            "\u{0}:1",
            "x:99999999999999999999",
        ] {
            let _ = parse_seed(s);
        }
    }
}
