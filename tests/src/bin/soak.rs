//! `soak`: a fleet of real `shoal` processes under client load, node churn
//! and backend churn for minutes, sampled every minute, then checked for
//! what is left; writes a Markdown report (see `shoal_e2e::soak`).
//!
//! ```text
//! cargo build --release -p shoal
//! cargo run --release -p shoal-e2e --bin soak -- --minutes 30 [--sample-s 60] \
//!     [--seed N] [--churn-s 30] [--out docs/soak.md] [--self-check leak|no-settle]
//! ```
//!
//! Exit code 0 if the run passed, 1 if it found something (the findings
//! head the report), 2 for bad arguments. `--self-check` gives the soak a
//! wrong behaviour (a client that leaks a connection, or no wait for the
//! settle) to see its end check fail.

use anyhow::{Context, Result, bail, ensure};
use shoal_e2e::soak::{self, Params, SelfCheck};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

/// Longest run accepted, minutes.
const MINUTES_MAX: f64 = 24.0 * 60.0;

#[derive(Debug)]
struct Args {
    params: Params,
    minutes: f64,
    out: PathBuf,
}

fn usage() -> &'static str {
    "usage: soak --minutes M [--sample-s 60] [--seed N] [--churn-s 30] [--out docs/soak.md] [--self-check leak|no-settle]"
}

fn parse_args() -> Result<Args> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 % 1_000_000_007)
        .unwrap_or(1);
    let mut minutes = 30.0;
    let mut sample_s = 60.0;
    let mut churn_s = None;
    let mut seed = seed;
    let mut out = PathBuf::from("docs/soak.md");
    let mut self_check = None;
    let mut flags = shoal_e2e::node::Flags::new(usage());
    while let Some(flag) = flags.next_flag() {
        let mut value = || flags.value(&flag);
        match flag.as_str() {
            "--minutes" => {
                minutes = value()?.parse().context("--minutes")?;
                ensure!(
                    minutes > 0.0 && minutes <= MINUTES_MAX,
                    "--minutes: more than 0, at most {MINUTES_MAX}"
                );
            }
            "--sample-s" => {
                sample_s = value()?.parse().context("--sample-s")?;
                ensure!((1.0..=3600.0).contains(&sample_s), "--sample-s: 1..=3600");
            }
            "--churn-s" => {
                let s: f64 = value()?.parse().context("--churn-s")?;
                ensure!((1.0..=3600.0).contains(&s), "--churn-s: 1..=3600");
                churn_s = Some(s);
            }
            "--seed" => seed = value()?.parse().context("--seed")?,
            "--out" => out = PathBuf::from(value()?),
            "--self-check" => {
                self_check = Some(match value()?.as_str() {
                    "leak" => SelfCheck::Leak,
                    "no-settle" => SelfCheck::NoSettle,
                    other => bail!("--self-check {other:?}: leak or no-settle"),
                })
            }
            other => return Err(flags.unknown(other)),
        }
    }
    let mut params = Params::long(seed, Duration::from_secs_f64(minutes * 60.0));
    params.sample_every = Duration::from_secs_f64(sample_s);
    if let Some(s) = churn_s {
        params.churn_every = Duration::from_secs_f64(s);
    }
    params.self_check = self_check;
    Ok(Args {
        params,
        minutes,
        out,
    })
}

/// `git` `args` in the working directory, its output trimmed.
fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

/// The commit, and whether the code the run built (the crates and the
/// harness) differed from it.
fn git_commit() -> String {
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    match git(&["status", "--porcelain", "--", "crates", "tests"]) {
        Some(s) if !s.is_empty() => {
            format!("{commit}` (with uncommitted changes in crates/ or tests/)")
        }
        _ => format!("{commit}`"),
    }
}

fn main() -> ExitCode {
    let (args, rt) = match shoal_e2e::node::tool_start(parse_args) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let outcome = match rt.block_on(soak::run(args.params.clone())) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("soak could not run: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut cmd = format!(
        "cargo run --release -p shoal-e2e --bin soak -- --minutes {} --sample-s {} --seed {} --churn-s {}",
        args.minutes,
        args.params.sample_every.as_secs_f64(),
        args.params.seed,
        args.params.churn_every.as_secs_f64()
    );
    match args.params.self_check {
        Some(SelfCheck::Leak) => cmd.push_str(" --self-check leak"),
        Some(SelfCheck::NoSettle) => cmd.push_str(" --self-check no-settle"),
        None => {}
    }
    let provenance = format!(
        "Written by `tests/src/bin/soak.rs` (`just soak MINUTES`) at commit `{}, {} cores; to run it again: `{cmd}`.",
        git_commit(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let md = outcome.markdown(&provenance);
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&args.out, &md) {
        eprintln!("writing {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    eprintln!("report written to {}", args.out.display());
    if outcome.passed() {
        eprintln!("PASS (SEED={})", args.params.seed);
        ExitCode::SUCCESS
    } else {
        eprintln!("FAIL (SEED={}):", args.params.seed);
        for f in &outcome.findings {
            eprintln!("  - {f}");
        }
        ExitCode::FAILURE
    }
}
