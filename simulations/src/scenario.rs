//! What a run simulates: the backends, the pool's settings, the client load
//! and the backend fault schedule, plus the named scenarios the tests and the
//! `shoal-sim` binary use.
//!
//! A scenario is plain data. Apart from [`Scenario::chaos`], which draws its
//! whole fault schedule and settings from a seed, the named scenarios are
//! fixed; the run seed then decides arrivals, hold times, latencies and
//! every choice the pool makes.

use crate::random::{SimRng, uniform};
use rand::{RngExt, SeedableRng};
use shoal_core::{HealthConfig, Policy};
use std::time::Duration;

/// What a simulated backend does with a new TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BackendState {
    /// Accepts it after one network round trip.
    Up,
    /// Dead host or closed port: answers RST after one round trip.
    Refusing,
    /// Gone from the network: never answers, so the attempt times out.
    Blackholed,
}

impl BackendState {
    /// Whether connections to the backend succeed.
    pub fn is_up(self) -> bool {
        self == BackendState::Up
    }

    /// A short name for logs and the trace.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Up => "up",
            BackendState::Refusing => "refusing",
            BackendState::Blackholed => "blackholed",
        }
    }
}

/// One change in the fault schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Virtual time of the change, from the start of the run.
    pub at: Duration,
    /// Index of the backend (its position in the pool).
    pub backend: usize,
    /// What the backend does from then on.
    pub state: BackendState,
}

/// How long clients keep their connection: a mix of short and long
/// exponential durations, cut at `max` so that a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldTimes {
    pub short_mean: Duration,
    pub long_mean: Duration,
    /// Share of clients with a long connection, in thousandths.
    pub long_per_mille: u32,
    pub max: Duration,
}

/// Round-trip time of the simulated network: a connect or a check to an up
/// (or refusing) backend answers after a time uniform in `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub min: Duration,
    pub max: Duration,
}

/// A deliberate bug in the simulated driver, for tests that prove an
/// invariant can fail. Never set outside such tests (or by hand on the
/// command line, to see a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// Never report a connect or check result, so the pool never learns
    /// that a backend died. Caught by the detection invariant.
    IgnoreHealth,
    /// Forget `release` after a failed connect, leaking a count. Caught by
    /// the count invariant.
    LeakOnConnectFailure,
    /// Report every successful connect and check as a failure, so the pool
    /// takes healthy backends down. Caught by the refusal invariant.
    ReportSuccessAsFailure,
    /// Drop successful check results (a check that passes is never
    /// reported), so a backend that was taken down never comes back.
    /// Caught by the recovery invariant.
    IgnoreCheckSuccesses,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 4] = [
        PlantedBug::IgnoreHealth,
        PlantedBug::LeakOnConnectFailure,
        PlantedBug::ReportSuccessAsFailure,
        PlantedBug::IgnoreCheckSuccesses,
    ];

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            PlantedBug::IgnoreHealth => "ignore-health",
            PlantedBug::LeakOnConnectFailure => "leak-on-connect-failure",
            PlantedBug::ReportSuccessAsFailure => "report-success-as-failure",
            PlantedBug::IgnoreCheckSuccesses => "ignore-check-successes",
        }
    }

    /// The bug named `name`, if any.
    pub fn from_name(name: &str) -> Option<PlantedBug> {
        PlantedBug::ALL.into_iter().find(|b| b.as_str() == name)
    }
}

/// Everything a run simulates except the seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The name `shoal-sim run` knows it by.
    pub name: String,
    /// Number of backends; all start up.
    pub backends: usize,
    /// Each backend's `max_connections`.
    pub max_connections: Option<u32>,
    pub policy: Policy,
    pub health: HealthConfig,
    /// A client's connect attempt to a blackholed backend fails after this.
    pub connect_timeout: Duration,
    /// Further backends a client tries after a failed connect.
    pub retries: u32,
    /// Mean client arrival rate (Poisson arrivals).
    pub arrivals_per_sec: u32,
    /// Clients arrive from the start until this virtual time; the run then
    /// goes on until every client has left and the pool had time to settle.
    pub duration: Duration,
    pub holds: HoldTimes,
    pub latency: Latency,
    /// Backend state changes, in any order.
    pub faults: Vec<Fault>,
    /// Events after which the run is declared stuck.
    pub events_max: u64,
    pub plant_bug: Option<PlantedBug>,
}

/// Named scenarios built from a seed (only `chaos` uses it).
type Constructor = fn(u64) -> Scenario;

const NAMED: [(&str, Constructor); 5] = [
    ("steady", |_| Scenario::steady()),
    ("die-and-recover", |_| Scenario::die_and_recover()),
    ("flapping", |_| Scenario::flapping()),
    ("all-die-one-recovers", |_| Scenario::all_die_one_recovers()),
    ("chaos", Scenario::chaos),
];

impl Scenario {
    /// The names [`Scenario::by_name`] knows.
    pub fn names() -> impl Iterator<Item = &'static str> {
        NAMED.iter().map(|(name, _)| *name)
    }

    /// The scenario called `name`; `seed` only matters for `chaos`.
    pub fn by_name(name: &str, seed: u64) -> Option<Scenario> {
        NAMED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, make)| make(seed))
    }

    /// The base of the named scenarios: three backends with HAProxy's
    /// default checks, shoal's default connect timeout and retries, 100
    /// clients a second, most holding briefly and one in ten for seconds.
    fn base(name: &str) -> Scenario {
        Scenario {
            name: name.to_owned(),
            backends: 3,
            max_connections: None,
            policy: Policy::LeastConn,
            health: HealthConfig::default(),
            connect_timeout: Duration::from_secs(2),
            retries: 2,
            arrivals_per_sec: 100,
            duration: Duration::from_secs(40),
            holds: HoldTimes {
                short_mean: Duration::from_millis(100),
                long_mean: Duration::from_secs(5),
                long_per_mille: 100,
                max: Duration::from_secs(30),
            },
            latency: Latency {
                min: Duration::from_micros(200),
                max: Duration::from_millis(3),
            },
            faults: Vec::new(),
            events_max: 2_000_000,
            plant_bug: None,
        }
    }

    /// No faults: every client is served.
    pub fn steady() -> Scenario {
        Scenario::base("steady")
    }

    /// Backend 1 refuses connections from 10 s to 30 s.
    pub fn die_and_recover() -> Scenario {
        Scenario {
            duration: Duration::from_secs(50),
            faults: vec![
                fault(10_000, 1, BackendState::Refusing),
                fault(30_000, 1, BackendState::Up),
            ],
            ..Scenario::base("die-and-recover")
        }
    }

    /// Backend 0 goes down and up at irregular intervals, some outages
    /// shorter than detection and some longer, some refusing and some
    /// blackholed, while backend 2 has one blackholed outage.
    pub fn flapping() -> Scenario {
        use BackendState::{Blackholed, Refusing, Up};
        Scenario {
            duration: Duration::from_secs(60),
            faults: vec![
                fault(5_000, 0, Refusing),
                fault(6_500, 0, Up),
                fault(9_000, 0, Blackholed),
                fault(18_000, 0, Up),
                fault(19_000, 0, Refusing),
                fault(19_700, 0, Up),
                fault(21_000, 0, Blackholed),
                fault(24_000, 0, Refusing),
                fault(31_000, 0, Up),
                fault(33_000, 0, Refusing),
                fault(33_100, 0, Up),
                fault(33_300, 0, Blackholed),
                fault(40_000, 0, Up),
                fault(12_000, 2, Blackholed),
                fault(27_000, 2, Up),
            ],
            ..Scenario::base("flapping")
        }
    }

    /// Every backend dies at 10 s (one blackholed), backend 2 comes back
    /// at 25 s; the others stay dead to the end.
    pub fn all_die_one_recovers() -> Scenario {
        Scenario {
            duration: Duration::from_secs(45),
            faults: vec![
                fault(10_000, 0, BackendState::Refusing),
                fault(10_000, 1, BackendState::Blackholed),
                fault(10_000, 2, BackendState::Refusing),
                fault(25_000, 2, BackendState::Up),
            ],
            ..Scenario::base("all-die-one-recovers")
        }
    }

    /// Settings and fault schedule drawn from `seed`: 1 to 5 backends, any
    /// policy, random health parameters, sometimes a connection limit, and
    /// each backend changing state up to 8 times.
    pub fn chaos(seed: u64) -> Scenario {
        /// Keeps the scenario's draws apart from the run's streams, which
        /// are derived from the same seed.
        const CHAOS_SALT: u64 = 0x6368_616f_735f_7363;
        const FAULTS_PER_BACKEND_MAX: u32 = 8;
        let mut rng = SimRng::seed_from_u64(seed ^ CHAOS_SALT);
        let ms = |low: u64, high: u64, rng: &mut SimRng| {
            uniform(rng, Duration::from_millis(low), Duration::from_millis(high))
        };
        let interval = ms(500, 3_000, &mut rng);
        let timeout = ms(
            100,
            u64::try_from(interval.as_millis()).unwrap_or(3_000),
            &mut rng,
        );
        let health = HealthConfig {
            interval,
            timeout,
            rise: rng.random_range(1..=4),
            fall: rng.random_range(1..=4),
        };
        let backends = rng.random_range(1..=5);
        let duration = ms(20_000, 60_000, &mut rng);
        let mut faults = Vec::new();
        for backend in 0..backends {
            let mut at = Duration::ZERO;
            for _ in 0..rng.random_range(0..=FAULTS_PER_BACKEND_MAX) {
                at += ms(0, 8_000, &mut rng);
                let state = match rng.random_range(0..4) {
                    0 => BackendState::Refusing,
                    1 => BackendState::Blackholed,
                    _ => BackendState::Up,
                };
                faults.push(Fault { at, backend, state });
            }
        }
        let base = Scenario::base("chaos");
        Scenario {
            backends,
            max_connections: rng.random_bool(0.25).then(|| rng.random_range(1..=20)),
            policy: Policy::ALL[rng.random_range(0..Policy::ALL.len())],
            health,
            connect_timeout: ms(200, 3_000, &mut rng),
            retries: rng.random_range(0..=3),
            arrivals_per_sec: rng.random_range(10..=200),
            duration,
            holds: HoldTimes {
                long_per_mille: rng.random_range(0..=300),
                ..base.holds
            },
            faults,
            ..base
        }
    }

    /// This scenario with another policy.
    pub fn with_policy(self, policy: Policy) -> Scenario {
        Scenario { policy, ..self }
    }

    /// This scenario with a planted bug.
    pub fn with_bug(self, bug: PlantedBug) -> Scenario {
        Scenario {
            plant_bug: Some(bug),
            ..self
        }
    }

    /// Checks that the scenario can run; scenarios are code, so a bad one
    /// is a programmer error and this panics with the reason.
    pub fn assert_valid(&self) {
        let name = &self.name;
        assert!(self.backends > 0, "scenario `{name}`: no backends");
        if let Err(e) = self.health.validate() {
            panic!("scenario `{name}`: health: {e}");
        }
        assert!(
            self.arrivals_per_sec > 0,
            "scenario `{name}`: arrivals_per_sec is 0"
        );
        assert!(
            self.latency.min <= self.latency.max,
            "scenario `{name}`: latency min {:?} over max {:?}",
            self.latency.min,
            self.latency.max
        );
        // An answer slower than a timeout would be a timeout, which the
        // model only produces for blackholed backends.
        assert!(
            self.latency.max < self.health.timeout && self.latency.max < self.connect_timeout,
            "scenario `{name}`: latency max {:?} must stay under the check timeout {:?} and the connect timeout {:?}",
            self.latency.max,
            self.health.timeout,
            self.connect_timeout
        );
        assert!(
            self.holds.short_mean <= self.holds.max && self.holds.long_mean <= self.holds.max,
            "scenario `{name}`: hold means over the hold max"
        );
        for f in &self.faults {
            assert!(
                f.backend < self.backends,
                "scenario `{name}`: fault at {:?} names backend {} of {}",
                f.at,
                f.backend,
                self.backends
            );
        }
    }
}

fn fault(at_ms: u64, backend: usize, state: BackendState) -> Fault {
    Fault {
        at: Duration::from_millis(at_ms),
        backend,
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_scenario_is_valid_and_found_by_name() {
        for name in Scenario::names() {
            for seed in 0..50 {
                let s = Scenario::by_name(name, seed).unwrap();
                assert_eq!(s.name, name);
                s.assert_valid();
            }
        }
        assert_eq!(Scenario::by_name("nope", 0), None);
    }

    #[test]
    fn chaos_depends_on_the_seed_only() {
        assert_eq!(Scenario::chaos(5), Scenario::chaos(5));
        assert_ne!(Scenario::chaos(5), Scenario::chaos(6));
    }

    #[test]
    fn planted_bug_names_round_trip() {
        for bug in PlantedBug::ALL {
            assert_eq!(PlantedBug::from_name(bug.as_str()), Some(bug));
        }
        assert_eq!(PlantedBug::from_name("none"), None);
    }
}
