//! The `shoal-sim` command: run one scenario with one seed, or a swarm of
//! seeds over every scenario, and print `SEED=…` before anything else so
//! that any failure can be replayed.
//!
//! ```text
//! shoal-sim run <scenario> --seed N [--policy P] [--plant-bug B]
//! shoal-sim swarm [--seeds A..B] [--scenario NAME]
//! shoal-sim list
//! ```
//!
//! Exit status: 0 when every run kept every invariant, 1 when one broke,
//! 2 for a usage error.

use anyhow::{Context, Result, anyhow, bail};
use shoal_core::Policy;
use shoal_sim::report::Delay;
use shoal_sim::{PlantedBug, Report, Scenario};
use std::ops::Range;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage:
  shoal-sim run <scenario> --seed N [--policy least-conn|round-robin|random|first-available] [--plant-bug NAME]
  shoal-sim swarm [--seeds A..B] [--scenario NAME]
  shoal-sim list";

/// Seeds a swarm runs when none are given.
const SWARM_SEEDS_DEFAULT: Range<u64> = 0..100;

fn main() -> ExitCode {
    let args = std::env::args().skip(1).collect::<Vec<_>>();
    match dispatch(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("shoal-sim: {e:#}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Runs the command; `Ok(false)` when an invariant broke.
fn dispatch(args: &[String]) -> Result<bool> {
    let (command, rest) = args.split_first().ok_or_else(|| anyhow!("no command"))?;
    match command.as_str() {
        "run" => run_one(rest),
        "swarm" => swarm(rest),
        "list" => {
            for name in Scenario::names() {
                println!("{name}");
            }
            Ok(true)
        }
        other => bail!("unknown command `{other}`"),
    }
}

/// A command's arguments: positionals and `--flag value` pairs.
#[derive(Debug)]
struct Args<'a> {
    positional: Vec<&'a str>,
    flags: Vec<(&'a str, &'a str)>,
}

impl<'a> Args<'a> {
    /// Splits `args`, refusing flags not in `known`.
    fn parse(args: &'a [String], known: &[&str]) -> Result<Args<'a>> {
        let mut positional = Vec::new();
        let mut flags = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if let Some(flag) = arg.strip_prefix("--") {
                if !known.contains(&flag) {
                    bail!("unknown flag `--{flag}`");
                }
                let value = it
                    .next()
                    .ok_or_else(|| anyhow!("`--{flag}` needs a value"))?;
                flags.push((flag, value.as_str()));
            } else {
                positional.push(arg.as_str());
            }
        }
        Ok(Args { positional, flags })
    }

    /// The last value given for `--name`.
    fn flag(&self, name: &str) -> Option<&'a str> {
        self.flags
            .iter()
            .rev()
            .find(|(f, _)| *f == name)
            .map(|(_, v)| *v)
    }
}

fn scenario(name: &str, seed: u64) -> Result<Scenario> {
    Scenario::by_name(name, seed).ok_or_else(|| {
        anyhow!(
            "unknown scenario `{name}`; expected one of {}",
            Scenario::names().collect::<Vec<_>>().join(", ")
        )
    })
}

fn run_one(args: &[String]) -> Result<bool> {
    let args = Args::parse(args, &["seed", "policy", "plant-bug"])?;
    let [name] = args.positional[..] else {
        bail!("`run` takes exactly one scenario name");
    };
    let seed = args
        .flag("seed")
        .ok_or_else(|| anyhow!("`run` needs `--seed N`"))?
        .parse::<u64>()
        .context("`--seed`")?;
    // First, before anything can fail or panic.
    println!("SEED={seed}");
    let mut s = scenario(name, seed)?;
    if let Some(p) = args.flag("policy") {
        s = s.with_policy(p.parse::<Policy>()?);
    }
    if let Some(b) = args.flag("plant-bug") {
        let names = PlantedBug::ALL.map(PlantedBug::as_str).join(", ");
        let bug = PlantedBug::from_name(b)
            .ok_or_else(|| anyhow!("unknown bug `{b}`; expected one of {names}"))?;
        s = s.with_bug(bug);
    }
    println!(
        "scenario {}: {} backends, policy {}, {:?}, connect timeout {:?}, retries {}, {} clients/s for {:?}, {} faults",
        s.name,
        s.backends,
        s.policy,
        s.health,
        s.connect_timeout,
        s.retries,
        s.arrivals_per_sec,
        s.duration,
        s.faults.len()
    );
    match shoal_sim::run(&s, seed) {
        Ok(report) => {
            println!("{report}");
            Ok(true)
        }
        Err(v) => {
            println!("FAILED: {v}");
            Ok(false)
        }
    }
}

fn parse_seeds(text: &str) -> Result<Range<u64>> {
    let bad = || anyhow!("`--seeds {text}`: expected A..B or A..=B");
    let (a, b) = text.split_once("..").ok_or_else(bad)?;
    let start = a.parse::<u64>().map_err(|_| bad())?;
    let end = match b.strip_prefix('=') {
        Some(b) => b
            .parse::<u64>()
            .map_err(|_| bad())?
            .checked_add(1)
            .ok_or_else(bad)?,
        None => b.parse::<u64>().map_err(|_| bad())?,
    };
    if start >= end {
        bail!("`--seeds {text}` is empty");
    }
    Ok(start..end)
}

fn swarm(args: &[String]) -> Result<bool> {
    let args = Args::parse(args, &["seeds", "scenario"])?;
    if !args.positional.is_empty() {
        bail!("`swarm` takes no positional arguments");
    }
    let seeds = match args.flag("seeds") {
        Some(text) => parse_seeds(text)?,
        None => SWARM_SEEDS_DEFAULT,
    };
    let names = match args.flag("scenario") {
        Some(name) => {
            scenario(name, 0)?;
            vec![name]
        }
        None => Scenario::names().collect(),
    };
    let mut runs = 0u64;
    let mut failed = Vec::new();
    let mut closest = Closest::default();
    for seed in seeds {
        for name in &names {
            let s = scenario(name, seed)?;
            runs += 1;
            match shoal_sim::run(&s, seed) {
                Ok(r) => {
                    println!(
                        "SEED={seed} {name}: ok trace={:016x} clients={} refused={} events={}",
                        r.trace_hash,
                        r.clients,
                        r.refused_no_backend + r.refused_retries,
                        r.events
                    );
                    closest.update(&r);
                }
                Err(v) => {
                    println!("SEED={seed} {name}: FAILED: {v}");
                    failed.push(format!("{name} --seed {seed}"));
                }
            }
        }
    }
    println!("swarm: {runs} runs, {} failed", failed.len());
    closest.print();
    for f in &failed {
        println!("  replay: cargo run -p shoal-sim -- run {f}");
    }
    Ok(failed.is_empty())
}

/// The observed delay that came closest to its bound, per kind, to show how
/// much room the bounds leave.
#[derive(Debug, Default)]
struct Closest {
    detection: Option<(f64, String)>,
    recovery: Option<(f64, String)>,
}

impl Closest {
    fn update(&mut self, r: &Report) {
        let keep = |slot: &mut Option<(f64, String)>, delays: &[Delay], bound: Duration| {
            for d in delays {
                let share = d.after.as_secs_f64() / bound.as_secs_f64();
                if slot.as_ref().is_none_or(|(best, _)| share > *best) {
                    let what = format!(
                        "{:?} of {:?} ({} --seed {}, backend {})",
                        d.after, bound, r.scenario, r.seed, d.backend
                    );
                    *slot = Some((share, what));
                }
            }
        };
        keep(&mut self.detection, &r.detections, r.bounds.detection);
        keep(&mut self.recovery, &r.recoveries, r.bounds.recovery);
    }

    fn print(&self) {
        for (kind, slot) in [("detection", &self.detection), ("recovery", &self.recovery)] {
            if let Some((share, what)) = slot {
                println!("slowest {kind}: {:.1}% of its bound, {what}", share * 100.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_parse() {
        assert_eq!(parse_seeds("3..7").unwrap(), 3..7);
        assert_eq!(parse_seeds("3..=7").unwrap(), 3..8);
        assert!(parse_seeds("7..3").is_err());
        assert!(parse_seeds("7").is_err());
        assert!(parse_seeds("a..b").is_err());
    }

    #[test]
    fn flags_are_checked() {
        let args = ["steady", "--seed", "4"].map(String::from);
        let parsed = Args::parse(&args, &["seed"]).unwrap();
        assert_eq!(parsed.positional, vec!["steady"]);
        assert_eq!(parsed.flag("seed"), Some("4"));
        assert!(Args::parse(&args, &["policy"]).is_err());
        let dangling = ["--seed"].map(String::from);
        assert!(Args::parse(&dangling, &["seed"]).is_err());
    }
}
