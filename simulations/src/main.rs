//! The `shoal-sim` command: run one scenario with one seed, or a swarm of
//! seeds over every scenario, and print `SEED=…` before anything else so
//! that any failure can be replayed.
//!
//! ```text
//! shoal-sim run <scenario|file.toml> --seed N [--policy P] [--plant-bug B] [--quick] [--keep-going]
//! shoal-sim swarm [--seeds A..B] [--scenario NAME] [--quick]
//! shoal-sim regressions
//! shoal-sim list
//! ```
//!
//! A scenario is a file compiled in from `simulations/scenarios/` (one
//! node or many: `shoal-sim list` shows them), the seed-drawn
//! `fleet-swarm` or one-node `chaos`, or a path to a scenario file. This file
//! is the only place that reads a file (such a path) or the wall clock (to
//! report simulated seconds per wall second); the library does neither.
//!
//! Exit status: 0 when every run kept every invariant, 1 when one broke,
//! 2 for a usage error.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use shoal_sim::fleet::scenario::{CHAOS_NAME, SWARM_NAME};
use shoal_sim::fleet::{self, Chooser, FleetBug, FleetReport, FleetScenario};
use std::ops::Range;
use std::process::ExitCode;

/// The simulator's command line.
#[derive(Debug, Parser)]
#[command(
    name = "shoal-sim",
    about = "Deterministic simulation of shoal fleets on a virtual clock, replayable from a seed",
    long_about = "Deterministic simulation of shoal fleets on a virtual clock, replayable from a \
                  seed. Every run prints SEED=... first. Exit status: 0 when every run kept every \
                  invariant, 1 when one broke, 2 for a usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario with one seed and print its report.
    Run(RunArgs),
    /// Many seeds over the one-node scenarios, chaos and fleet-swarm (or one scenario).
    Swarm(SwarmArgs),
    /// Replay simulations/regressions.toml.
    Regressions,
    /// The balance-quality study: every policy and reference chooser on the study's
    /// scenarios, written as a Markdown table.
    Study(StudyArgs),
    /// List the scenarios.
    List,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A scenario compiled in from simulations/scenarios/ (see `list`), `fleet-swarm`,
    /// `chaos`, or a path to a scenario file ending in .toml.
    scenario: String,
    /// The seed: the same seed gives the same run.
    #[arg(long)]
    seed: u64,
    /// How the nodes choose a backend: least-conn, local-least-conn, round-robin, random,
    /// first-available, or a reference chooser (power-of-two, global-argmin, oracle).
    /// Default: the scenario's.
    #[arg(long)]
    policy: Option<Chooser>,
    /// Run with a deliberate bug in the nodes, to see an invariant catch it.
    #[arg(long = "plant-bug", value_name = "BUG")]
    plant_bug: Option<String>,
    /// The scenario's `[quick]` variant (fewer nodes, shorter).
    #[arg(long)]
    quick: bool,
    /// Note broken invariants and run to the end, for every figure.
    #[arg(long = "keep-going")]
    keep_going: bool,
}

#[derive(Debug, clap::Args)]
struct SwarmArgs {
    /// Seeds to run, `A..B` or `A..=B`.
    #[arg(long, value_parser = parse_seeds, default_value = "0..100")]
    seeds: Range<u64>,
    /// Only this scenario (default: the one-node scenarios, chaos and fleet-swarm).
    #[arg(long)]
    scenario: Option<String>,
    /// The scenarios' `[quick]` variants.
    #[arg(long)]
    quick: bool,
}

#[derive(Debug, clap::Args)]
struct StudyArgs {
    /// Seeds per scenario and chooser, `A..B` or `A..=B`.
    #[arg(long, value_parser = parse_seeds, default_value = "1..11")]
    seeds: Range<u64>,
    /// Where the Markdown goes.
    #[arg(long, default_value = "simulations/RESULTS.md")]
    out: String,
    /// Only this study scenario (repeatable; default: every one). For quick
    /// experiments: RESULTS.md is the whole study.
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Only this chooser (repeatable; default: every one). The oracle always
    /// runs: the ratios divide by it.
    #[arg(long = "chooser", value_name = "NAME")]
    choosers: Vec<Chooser>,
}

/// What a swarm runs when no scenario is named: the one-node scenarios
/// (the single-node simulator's), the one-node `chaos` and `fleet-swarm`.
const SWARM_SCENARIOS_DEFAULT: [&str; 6] = [
    "steady",
    "die-and-recover",
    "flapping",
    "all-die-one-recovers",
    CHAOS_NAME,
    SWARM_NAME,
];

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("shoal-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the command; `Ok(false)` when an invariant broke.
fn dispatch(command: Command) -> Result<bool> {
    match command {
        Command::Run(args) => run_one(&args),
        Command::Swarm(args) => swarm(&args),
        Command::Regressions => regressions(),
        Command::Study(args) => study(&args),
        Command::List => {
            println!("scenarios (simulations/scenarios/):");
            for name in FleetScenario::names() {
                let s = FleetScenario::named(name, 0).expect("listed")?;
                println!("  {name:<22} {}", s.description);
            }
            println!("  {SWARM_NAME:<22} drawn from the seed: fleet size, network and fault mix");
            println!(
                "  {CHAOS_NAME:<22} drawn from the seed: one node, health settings and backend changes"
            );
            Ok(true)
        }
    }
}

/// A scenario by name (compiled in, `fleet-swarm` or `chaos`) or by path.
fn fleet_scenario(name: &str, seed: u64, quick: bool) -> Result<Option<FleetScenario>> {
    let s = match FleetScenario::named(name, seed) {
        Some(s) => s?,
        None if name.ends_with(".toml") => FleetScenario::from_toml(&read_scenario_file(name)?)?,
        None => return Ok(None),
    };
    Ok(Some(if quick { s.quick() } else { s }))
}

/// The CLI reads the scenario file a user named; the library never does
/// I/O, so the rule against reading files is lifted here only.
#[allow(clippy::disallowed_methods)]
fn read_scenario_file(path: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading scenario file `{path}`"))
}

/// Wall-clock time, for the simulated-seconds-per-wall-second figure only.
#[allow(clippy::disallowed_methods)]
fn wall_now() -> std::time::Instant {
    std::time::Instant::now()
}

/// The command that replays a fleet run.
fn replay(name: &str, seed: u64, chooser: Option<Chooser>, quick: bool) -> String {
    let mut cmd = format!("cargo run --release -p shoal-sim -- run {name} --seed {seed}");
    if let Some(c) = chooser {
        cmd.push_str(&format!(" --policy {c}"));
    }
    if quick {
        cmd.push_str(" --quick");
    }
    cmd
}

fn run_fleet(s: FleetScenario, args: &RunArgs, name: &str, seed: u64) -> Result<bool> {
    let mut s = s;
    let chooser = args.policy;
    if let Some(c) = chooser {
        s = s.with_chooser(c);
    }
    if let Some(b) = args.plant_bug.as_deref() {
        let names = FleetBug::ALL.map(FleetBug::as_str).join(", ");
        let bug = FleetBug::from_name(b)
            .ok_or_else(|| anyhow!("unknown bug `{b}`; expected one of {names}"))?;
        s = s.with_bug(bug);
    }
    let quick = args.quick;
    println!(
        "scenario {} ({}): {} nodes ({} seeds), {} backends, policy {}, {} clients/s for {} ms, {} faults{}",
        s.name,
        s.description,
        s.nodes,
        s.seeds,
        s.backends.count,
        s.chooser,
        s.workload.arrivals_per_sec,
        s.duration_ms,
        s.faults.len(),
        if quick { ", quick variant" } else { "" }
    );
    for (at, action) in s.schedule()? {
        println!("  at {:>9} ms: {action:?}", at.as_millis());
    }
    let keep_going = args.keep_going;
    let started = wall_now();
    let result = if keep_going {
        fleet::sim::run_keep_going(&s, seed)
    } else {
        fleet::run(&s, seed)
    };
    let wall = started.elapsed().as_secs_f64();
    match result {
        Ok(report) => {
            println!("{report}");
            print_speed(&report, wall);
            if let Some(v) = report.violations.first() {
                println!("FAILED: {v}");
                println!("replay: {}", replay(name, seed, chooser, quick));
                return Ok(false);
            }
            Ok(true)
        }
        Err(v) => {
            println!("FAILED: {v}");
            println!("replay: {}", replay(name, seed, chooser, quick));
            Ok(false)
        }
    }
}

fn print_speed(r: &FleetReport, wall: f64) {
    let simulated = r.end.as_secs_f64();
    println!(
        "  speed: {simulated:.1} simulated s in {wall:.2} wall s = {:.1} simulated s per wall s ({} nodes, {:.0} events per wall s)",
        simulated / wall.max(1e-9),
        r.nodes,
        r.events as f64 / wall.max(1e-9)
    );
}

fn run_one(args: &RunArgs) -> Result<bool> {
    let (name, seed) = (args.scenario.as_str(), args.seed);
    // First, before anything can fail or panic.
    println!("SEED={seed}");
    let quick = args.quick;
    let Some(s) = fleet_scenario(name, seed, quick)? else {
        bail!(
            "unknown scenario `{name}`; expected one of {}, {SWARM_NAME}, {CHAOS_NAME} or a .toml path",
            FleetScenario::names().collect::<Vec<_>>().join(", ")
        );
    };
    run_fleet(s, args, name, seed)
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

fn swarm(args: &SwarmArgs) -> Result<bool> {
    let seeds = args.seeds.clone();
    let quick = args.quick;
    let names = match args.scenario.as_deref() {
        Some(name) => {
            if fleet_scenario(name, 0, quick)?.is_none() {
                bail!("unknown scenario `{name}`");
            }
            vec![name]
        }
        None => SWARM_SCENARIOS_DEFAULT.to_vec(),
    };
    let mut runs = 0u64;
    let mut failed = Vec::new();
    let mut closest = Closest::default();
    let mut simulated = 0.0;
    let started = wall_now();
    for seed in seeds {
        for name in &names {
            let s = fleet_scenario(name, seed, quick)?.expect("checked above");
            runs += 1;
            match fleet::run(&s, seed) {
                Ok(r) => {
                    simulated += r.end.as_secs_f64();
                    println!(
                        "SEED={seed} {name}: ok trace={:016x} nodes={} policy={} clients={} refused={} drains={} events={} membership={:?} view={:?}{}",
                        r.trace_hash,
                        r.nodes,
                        r.chooser,
                        r.clients.arrived,
                        r.clients.refused(),
                        r.drains.commands,
                        r.events,
                        r.membership_convergence,
                        r.view_convergence,
                        r.budget.as_ref().map_or(String::new(), |b| format!(
                            " budget={} peak={:.3}",
                            b.limit,
                            f64::from(b.peak) / f64::from(b.limit)
                        ))
                    );
                    closest.update(&r);
                }
                Err(v) => {
                    println!("SEED={seed} {name}: FAILED: {v}");
                    failed.push(replay(name, seed, None, quick));
                }
            }
        }
    }
    println!(
        "swarm: {runs} runs, {} failed; simulated {simulated:.0} s in {:.1} wall s",
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    closest.print();
    for f in &failed {
        println!("  replay: {f}");
    }
    Ok(failed.is_empty())
}

/// Replays `simulations/regressions.toml`.
fn regressions() -> Result<bool> {
    let mut failed = 0;
    for r in fleet::regressions::all() {
        let s = fleet_scenario(&r.scenario, r.seed, r.quick)?
            .ok_or_else(|| anyhow!("regression names unknown scenario `{}`", r.scenario))?;
        let chooser = r.policy.as_deref().map(str::parse::<Chooser>).transpose()?;
        let s = match chooser {
            Some(c) => s.with_chooser(c),
            None => s,
        };
        match (fleet::run(&s, r.seed), &r.known_violation) {
            (Ok(rep), None) => println!(
                "SEED={} {}: ok trace={:016x}",
                r.seed, r.scenario, rep.trace_hash
            ),
            (Err(v), Some(known)) if &v.invariant.to_string() == known => {
                println!(
                    "SEED={} {}: known core problem still open: {v}",
                    r.seed, r.scenario
                );
            }
            (Ok(_), Some(known)) => {
                failed += 1;
                println!(
                    "SEED={} {}: no longer breaks `{known}`: fixed? remove `known_violation`",
                    r.seed, r.scenario
                );
            }
            (Err(v), _) => {
                failed += 1;
                println!("SEED={} {}: FAILED: {v}", r.seed, r.scenario);
                println!(
                    "  replay: {}",
                    replay(&r.scenario, r.seed, chooser, r.quick)
                );
            }
        }
    }
    Ok(failed == 0)
}

/// The observed delay that came closest to its bound, per kind, to show how
/// much room the bounds leave.
#[derive(Debug, Default)]
struct Closest {
    slots: [Option<(f64, String)>; 4],
}

impl Closest {
    const KINDS: [&str; 4] = ["detection", "recovery", "view staleness", "drain staleness"];

    fn update(&mut self, r: &FleetReport) {
        let b = &r.bounds;
        // A backend full at its capacity fails checks: no recovery bound.
        let full = r.backend_stats.iter().any(|s| s.full_refusals > 0);
        let seen = [
            // Every node's pool holding a dead backend unavailable: with
            // shared checks a node that does not check it follows the
            // checkers (its own flips may come much later, harmlessly).
            (r.fleet_detections.count > 0).then_some((r.fleet_detections.max, b.shared_detection)),
            (r.backend_recoveries.count > 0 && !full)
                .then_some((r.backend_recoveries.max, b.recovery)),
            Some((r.view_staleness_max, b.view)),
            (r.drains.commands > 0).then_some((r.drains.staleness_max, b.drain)),
        ];
        for (slot, seen) in self.slots.iter_mut().zip(seen) {
            let Some((after, bound)) = seen else {
                continue;
            };
            let share = after.as_secs_f64() / bound.as_secs_f64();
            if slot.as_ref().is_none_or(|(best, _)| share > *best) {
                let what = format!("{after:?} of {bound:?} ({} --seed {})", r.scenario, r.seed);
                *slot = Some((share, what));
            }
        }
    }

    fn print(&self) {
        for (kind, slot) in Closest::KINDS.iter().zip(&self.slots) {
            if let Some((share, what)) = slot {
                println!("slowest {kind}: {:.1}% of its bound, {what}", share * 100.0);
            }
        }
    }
}

/// Scenarios of the balance-quality study.
const STUDY_SCENARIOS: [&str; 6] = [
    "steady-state",
    "skewed-dns",
    "sparse-long-lived",
    "burst-herd",
    "churn",
    "heterogeneous",
];

/// The balance-quality study (issue 4, item 6): every chooser on the
/// scenarios where the fleet view matters, averaged over seeds.
fn study(args: &StudyArgs) -> Result<bool> {
    let seeds = args.seeds.clone();
    let out = args.out.as_str();
    println!("SEED={}..{}", seeds.start, seeds.end);
    let mut md = String::new();
    md.push_str("# Balance quality by policy\n\n");
    md.push_str(&format!(
        "Produced by `cargo run --release -p shoal-sim -- study --seeds {}..{}` (do not edit by hand). \
         Every figure is the mean over the seeds. Metrics, sampled every 50 ms from 2 s after the first client until the last arrives (decision 60): **peak/mean** is \
         the busiest backend's active connections over the mean across backends (1.00 = perfectly even), \
         time-averaged, and its p99 over samples; **busiest p99** is the p99 over samples of the busiest \
         backend's count; **÷ oracle** divides by the oracle's figure. `least-conn` is shoal's \
         (own counts first, decision 58, with early reports, decision 61); `power-of-two` is the least-conn before it (two candidates \
         at random, the lesser reported load). `global-argmin` takes the candidate with the fewest \
         reported connections (ties to the lowest index): every node sees the same stale view and \
         herds onto the same backend. `oracle` takes the true fleet-wide minimum, instantly: the \
         bound no real policy reaches. With weights (`heterogeneous`) every count is per unit of \
         weight: peak/mean is the busiest backend's connections per unit of weight over the fleet's, \
         and the argmin and the oracle compare `(connections + 1) / weight`. Goal (issue 13): \
         `least-conn` within 1.05 × the oracle's average and 1.10 × its p99 on every scenario; \
         `least-conn` publishes a change of counts early (decision 61).\n\n",
        seeds.start, seeds.end
    ));
    for name in STUDY_SCENARIOS {
        if !args.scenarios.is_empty() && !args.scenarios.iter().any(|s| s == name) {
            continue;
        }
        let base =
            fleet_scenario(name, 0, false)?.ok_or_else(|| anyhow!("no scenario `{name}`"))?;
        md.push_str(&format!("## {name}: {}\n\n", base.description));
        md.push_str("| policy | peak/mean (avg) | ÷ oracle | peak/mean (p99) | ÷ oracle | busiest p99 | mean per backend | refused | invariant breaks |\n");
        md.push_str("|---|---|---|---|---|---|---|---|---|\n");
        // (chooser, avg, p99, busiest, mean, refused, breaks), oracle last.
        let mut rows = Vec::new();
        let choosers = Chooser::ALL.into_iter().filter(|c| {
            args.choosers.is_empty() || args.choosers.contains(c) || *c == Chooser::Oracle
        });
        for chooser in choosers {
            let (mut avg, mut p99, mut busiest, mut mean, mut refused, mut breaks) =
                (0.0, 0.0, 0.0, 0.0, 0u64, 0u64);
            let mut n = 0.0;
            // The seeds' runs are independent: one thread per core.
            let scenarios = seeds
                .clone()
                .map(|seed| {
                    let s = fleet_scenario(name, seed, false)?.expect("exists");
                    Ok((seed, s.with_chooser(chooser)))
                })
                .collect::<Result<Vec<_>>>()?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let chunk = scenarios.len().div_ceil(threads).max(1);
            let runs: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = scenarios
                    .chunks(chunk)
                    .map(|part| {
                        scope.spawn(move || {
                            part.iter()
                                .map(|(seed, s)| fleet::sim::run_keep_going(s, *seed))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("a study run panicked"))
                    .collect()
            });
            for run in runs {
                let report = match run {
                    Ok(r) => r,
                    Err(v) => {
                        eprintln!("{v}");
                        breaks += 1;
                        continue;
                    }
                };
                breaks += report.violations.len() as u64;
                avg += report.balance.peak_over_mean_avg;
                p99 += report.balance.peak_over_mean_p99;
                busiest += f64::from(report.balance.max_active_p99);
                mean += report.balance.mean_active_avg;
                refused += report.clients.refused();
                n += 1.0;
            }
            let n = f64::max(n, 1.0);
            rows.push((
                chooser,
                avg / n,
                p99 / n,
                busiest / n,
                mean / n,
                refused,
                breaks,
            ));
            eprintln!("{name} {chooser}: done");
        }
        let oracle = rows
            .iter()
            .find(|r| r.0 == Chooser::Oracle)
            .map_or((1.0, 1.0), |r| (r.1, r.2));
        for (chooser, avg, p99, busiest, mean, refused, breaks) in rows {
            md.push_str(&format!(
                "| {chooser} | {avg:.3} | {:.3} | {p99:.2} | {:.3} | {busiest:.1} | {mean:.1} | {refused} | {breaks} |\n",
                avg / oracle.0,
                p99 / oracle.1,
            ));
        }
        md.push('\n');
    }
    std::fs::write(out, &md).with_context(|| format!("writing {out}"))?;
    print!("{md}");
    Ok(true)
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
    fn quick_takes_no_value_and_names_resolve() {
        let cli = Cli::try_parse_from(["shoal-sim", "run", "node-crash", "--quick", "--seed", "4"])
            .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run: {cli:?}")
        };
        assert_eq!(
            (run.scenario.as_str(), run.seed, run.quick),
            ("node-crash", 4, true)
        );
        assert!(fleet_scenario("node-crash", 1, true).unwrap().is_some());
        assert!(fleet_scenario("chaos", 1, false).unwrap().is_some());
        assert!(fleet_scenario("steady-ish", 1, false).unwrap().is_none());
        assert!(
            replay("node-crash", 3, Some(Chooser::Oracle), true)
                .ends_with("run node-crash --seed 3 --policy oracle --quick")
        );
    }

    #[test]
    fn flags_are_checked() {
        let parse = |args: &[&str]| Cli::try_parse_from(["shoal-sim"].iter().chain(args));
        assert!(parse(&["run", "steady", "--seed", "4"]).is_ok());
        assert!(parse(&["run", "steady"]).is_err(), "--seed is needed");
        assert!(parse(&["run", "steady", "--seed"]).is_err());
        assert!(parse(&["run", "steady", "--seed", "4", "--policy", "herd"]).is_err());
        assert!(parse(&["swarm", "--seeds", "7..3"]).is_err());
        let Command::Study(study) = parse(&["study"]).unwrap().command else {
            panic!("not study")
        };
        assert_eq!(study.seeds, 1..11);
    }
}
