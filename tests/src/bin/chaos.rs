//! `chaos`: the chaos run (see `shoal_e2e::chaos`) for minutes: five real
//! `shoal` processes on hosts of their own (network namespaces on one
//! bridge), clients through a round-robin name, faults drawn from a
//! printed seed; prints a line per fault as it happens and the summary.
//!
//! ```text
//! cargo build --release -p shoal
//! cargo run --release -p shoal-e2e --bin chaos -- --minutes 5 [--seed N]
//! ```
//!
//! Needs root (it re-runs itself in new network, mount and PID
//! namespaces), iproute2, util-linux, nftables and dnsmasq. Exit code 0
//! if the run passed, 1 if it found something, 2 for bad arguments.

use clap::Parser;
use shoal_e2e::chaos::{self, Resolution};
use std::process::ExitCode;
use std::time::Duration;

/// Longest run accepted, minutes.
const MINUTES_MAX: f64 = 24.0 * 60.0;

/// The chaos run: a fleet of five under client load and a random fault
/// schedule (kill -9, SIGTERM, backend death, partition), each fault
/// undone once the fleet has detected it.
#[derive(Debug, Parser)]
#[command(name = "chaos")]
struct Args {
    /// Minutes of load and faults (the settle and the end check come after).
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    /// The seed of the fault schedule (default: drawn from the clock and printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Mean seconds between two faults (each gap 0.5 to 1.5 times it).
    #[arg(long, default_value_t = 20.0)]
    fault_s: f64,
    /// Also write the summary to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// How clients find the nodes: `static` (a zone naming every node,
    /// dead or alive) or `fleet` (each node's own `[dns]` answer, which
    /// drops a node once the fleet sees it gone, behind a forwarding
    /// dnsmasq).
    #[arg(long, value_enum, default_value_t = Dns::Static)]
    dns: Dns,
    /// Write dnsmasq's log (every query, its serial number and client,
    /// with the seconds since dnsmasq started) to this file at the end.
    #[arg(long)]
    dns_log: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Dns {
    Static,
    Fleet,
}

fn main() -> ExitCode {
    if let Some(code) = shoal_e2e::node::rerun_with_sibling_shoal() {
        return code;
    }
    let args = Args::parse();
    if !(args.minutes > 0.0 && args.minutes <= MINUTES_MAX) {
        eprintln!(
            "--minutes {}: more than 0, at most {MINUTES_MAX}",
            args.minutes
        );
        return ExitCode::from(2);
    }
    if !(1.0..=3600.0).contains(&args.fault_s) {
        eprintln!("--fault-s {}: 1..=3600", args.fault_s);
        return ExitCode::from(2);
    }
    let seed = args.seed.unwrap_or_else(shoal_e2e::soak::clock_seed);
    if !shoal_e2e::netns::inside() {
        // The same program, seed fixed, inside namespaces of its own.
        println!("SEED={seed}");
        let mut again: Vec<String> = std::env::args().skip(1).collect();
        if args.seed.is_none() {
            again.extend(["--seed".to_owned(), seed.to_string()]);
        }
        return match shoal_e2e::netns::exec_inside(&again) {
            Ok(s) => ExitCode::from(s.code().unwrap_or(1).clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("running chaos inside namespaces: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut params = chaos::params_long(seed, Duration::from_secs_f64(args.minutes * 60.0));
    params.churn_every = Duration::from_secs_f64(args.fault_s);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let resolution = match args.dns {
        Dns::Static => Resolution::Static,
        Dns::Fleet => Resolution::Fleet,
    };
    let outcome = match rt.block_on(chaos::run(params, resolution, args.dns_log.as_deref())) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("chaos could not run: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let summary = chaos::summary(&outcome, resolution);
    println!("{summary}");
    if let Some(out) = &args.out
        && let Err(e) = std::fs::write(out, &summary)
    {
        eprintln!("writing {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
