//! The regressions list: `simulations/regressions.toml`, fleet runs that
//! once failed or came closest to a bound, each kept as `{scenario, seed}`
//! (and whether the `[quick]` variant is meant). `cargo test` replays every
//! entry; `shoal-sim regressions` does too. A failing seed goes in with a
//! note saying what it found.
//!
//! An entry whose failure is a known problem in shoal-core, not yet fixed,
//! names the invariant it breaks (`known_violation`): the tests then
//! require that it still breaks exactly that one, so the harness keeps
//! showing the problem, and the entry must be updated (the field removed)
//! the day the core is fixed and the run passes.

use serde::Deserialize;

/// The list, compiled in.
pub const REGRESSIONS_TOML: &str = include_str!("../../regressions.toml");

/// One kept run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regression {
    /// A scenario name (a file in `scenarios/`, or `fleet-swarm`).
    pub scenario: String,
    pub seed: u64,
    /// Run the scenario's `[quick]` variant.
    #[serde(default)]
    pub quick: bool,
    /// A policy other than the scenario's.
    pub policy: Option<String>,
    /// What the run found.
    #[serde(default)]
    pub note: String,
    /// The invariant the run still breaks because of an open core problem
    /// (its `Display` name, e.g. `view`); see the module doc.
    pub known_violation: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    regression: Vec<Regression>,
}

/// Parses a regressions file.
pub fn parse(text: &str) -> Result<Vec<Regression>, String> {
    toml::from_str::<File>(text)
        .map(|f| f.regression)
        .map_err(|e| e.to_string())
}

/// The compiled-in list.
pub fn all() -> Vec<Regression> {
    parse(REGRESSIONS_TOML).unwrap_or_else(|e| panic!("regressions.toml: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_parses_and_names_known_scenarios() {
        for r in all() {
            assert!(
                super::super::FleetScenario::named(&r.scenario, r.seed).is_some(),
                "{r:?}"
            );
            if let Some(p) = &r.policy {
                p.parse::<super::super::Chooser>().unwrap();
            }
        }
        assert!(
            parse("[[regression]]\nscenario = \"x\"\n").is_err(),
            "seed missing"
        );
    }
}
