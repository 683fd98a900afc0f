//! How a run's nodes choose a backend: one of the five core policies, or a
//! reference chooser for the balance study.
//!
//! The reference choosers go through [`shoal_core::Pool::acquire_with`], so
//! which backends are candidates (health, fleet-down majority, limits,
//! already tried) and the counting stay the pool's; only the choice among
//! the candidates differs:
//! - [`Chooser::GlobalArgmin`]: the candidate with the least reported load
//!   (this node's exact count plus the peers' reports), ties to the lowest
//!   index. Every node that saw the same reports picks the same backend:
//!   this shows the herding that DESIGN.md warns about.
//! - [`Chooser::PowerOfTwo`]: two candidates at random, the one with the
//!   lesser reported load: `least-conn` before decision 58.
//! - [`Chooser::Oracle`]: the candidate with the least TRUE fleet-wide
//!   count, which only the simulator knows, ties at random: perfect,
//!   instantaneous global least-connections, the bound no real policy
//!   reaches.

use serde::Deserialize;
use shoal_core::Policy;
use std::fmt;
use std::str::FromStr;

/// The choice of backend in a fleet run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Chooser {
    /// The pool's own choice with this policy.
    Policy(Policy),
    /// Argmin over the candidates' reported load (see the module doc).
    GlobalArgmin,
    /// Argmin over the true fleet-wide counts (see the module doc).
    Oracle,
    /// Power of two choices over the reported load: `least-conn` before
    /// decision 58, kept to compare with.
    PowerOfTwo,
}

impl Default for Chooser {
    fn default() -> Self {
        Chooser::Policy(Policy::LeastConn)
    }
}

impl Chooser {
    /// Every chooser: the core policies, then the reference choosers.
    pub const ALL: [Chooser; 8] = [
        Chooser::Policy(Policy::LeastConn),
        Chooser::Policy(Policy::LocalLeastConn),
        Chooser::Policy(Policy::RoundRobin),
        Chooser::Policy(Policy::Random),
        Chooser::Policy(Policy::FirstAvailable),
        Chooser::PowerOfTwo,
        Chooser::GlobalArgmin,
        Chooser::Oracle,
    ];

    /// The policy the pools are built with. The reference choosers use
    /// least-conn's, so that the candidates' `load` includes the peers'.
    pub fn pool_policy(self) -> Policy {
        match self {
            Chooser::Policy(p) => p,
            Chooser::GlobalArgmin | Chooser::Oracle | Chooser::PowerOfTwo => Policy::LeastConn,
        }
    }

    /// The name used in scenario files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Chooser::Policy(p) => p.as_str(),
            Chooser::GlobalArgmin => "global-argmin",
            Chooser::Oracle => "oracle",
            Chooser::PowerOfTwo => "power-of-two",
        }
    }
}

impl fmt::Display for Chooser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A chooser name that is none of [`Chooser::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown policy `{0}`; expected one of least-conn, local-least-conn, round-robin, random, first-available, power-of-two, global-argmin, oracle"
)]
pub struct UnknownChooser(pub String);

impl FromStr for Chooser {
    type Err = UnknownChooser;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Chooser::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownChooser(s.to_owned()))
    }
}

impl TryFrom<String> for Chooser {
    type Error = UnknownChooser;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reference_choosers_weigh_the_fleet() {
        for c in Chooser::ALL {
            assert_eq!(c.as_str().parse::<Chooser>(), Ok(c));
        }
        assert!("herd".parse::<Chooser>().is_err());
        assert_eq!(Chooser::Oracle.pool_policy(), Policy::LeastConn);
        assert_eq!(Chooser::GlobalArgmin.pool_policy(), Policy::LeastConn);
    }
}
