//! Seeded randomness: the generator every stream of a run uses, and the
//! few distributions the simulation draws from.
//!
//! Every stream is a `Xoshiro256PlusPlus` rather than `SmallRng`: rand
//! documents `SmallRng` as non-portable (another algorithm on 32-bit targets
//! or in a later release), and a seed must replay the same run on any
//! machine. For the same reason the exponential distribution uses [`ln`]
//! below, built from IEEE-754 `+ - * /` only (which are exactly rounded
//! everywhere), instead of `f64::ln`, which calls the platform's libm.
//!
//! Each role (arrivals, hold times, latencies, each node) gets its own
//! stream derived from the run seed (`fleet::sim`), so drawing one more
//! latency does not shift every later arrival: a small change to the
//! simulator perturbs the trace locally.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, RngExt};
use std::time::Duration;

/// The generator used for every stream.
pub type SimRng = Xoshiro256PlusPlus;

/// A draw from the exponential distribution with mean `mean`.
pub fn exponential<R: Rng + ?Sized>(rng: &mut R, mean: Duration) -> Duration {
    // `random::<f64>()` is in [0, 1); `1 - u` is in (0, 1], so `ln` is finite.
    let u = 1.0 - rng.random::<f64>();
    let mean_ns = mean.as_nanos() as f64;
    // `as` saturates: a freak draw becomes a long duration, never a wrap.
    Duration::from_nanos((-ln(u) * mean_ns) as u64)
}

/// A draw uniform in `[low, high]`.
pub fn uniform<R: Rng + ?Sized>(rng: &mut R, low: Duration, high: Duration) -> Duration {
    let low_ns = u64::try_from(low.as_nanos()).unwrap_or(u64::MAX);
    let high_ns = u64::try_from(high.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(low_ns..=high_ns.max(low_ns)))
}

/// Terms of the atanh series in [`ln`]; with |s| <= 0.172 the 14th term is
/// below 1e-20 relative, past the last bit of an `f64`.
const LN_SERIES_TERMS: u32 = 14;

/// The natural logarithm of a positive, finite, normal `x`, computed with
/// exactly rounded operations only, so that it gives the same bits on every
/// platform: `x = m * 2^e` with `m` in `[sqrt(1/2), sqrt(2))`, then
/// `ln m = 2 atanh(s)`, `s = (m - 1) / (m + 1)`.
pub fn ln(x: f64) -> f64 {
    assert!(x.is_normal() && x > 0.0, "ln of {x}");
    const MANTISSA_BITS: u32 = 52;
    const EXPONENT_BIAS: i64 = 1023;
    let bits = x.to_bits();
    let mut exponent = ((bits >> MANTISSA_BITS) & 0x7ff) as i64 - EXPONENT_BIAS;
    let mut m = f64::from_bits(
        (bits & ((1 << MANTISSA_BITS) - 1)) | (EXPONENT_BIAS as u64) << MANTISSA_BITS,
    );
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        exponent += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut power = s;
    let mut sum = 0.0;
    for k in 0..LN_SERIES_TERMS {
        sum += power / f64::from(2 * k + 1);
        power *= s2;
    }
    2.0 * sum + exponent as f64 * std::f64::consts::LN_2
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ln_agrees_with_libm_to_the_last_bits() {
        let check = |x: f64| {
            let (ours, libm) = (ln(x), x.ln());
            let tolerance = 4.0 * f64::EPSILON * libm.abs().max(1.0);
            assert!(
                (ours - libm).abs() <= tolerance,
                "ln({x}) = {ours}, libm {libm}"
            );
        };
        // (0, 1] densely: the range the exponential draws use.
        for k in 1..=10_000 {
            check(f64::from(k) / 10_000.0);
        }
        // Then geometrically over the whole normal range.
        let mut x = 1e-300_f64;
        for _ in 0..4_000 {
            check(x);
            x *= 1.41;
        }
        assert!(x > 1e296, "the sweep reached {x}");
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(2.0_f64.powi(-53)), -53.0 * std::f64::consts::LN_2);
    }

    #[test]
    fn exponential_has_the_right_mean() {
        let mut rng = SimRng::seed_from_u64(1);
        let mean = Duration::from_millis(100);
        let draws = 20_000u32;
        let total: Duration = (0..draws).map(|_| exponential(&mut rng, mean)).sum();
        let got = total / draws;
        // The standard error is mean / sqrt(draws), about 0.7 ms here.
        assert!(
            got > Duration::from_millis(96) && got < Duration::from_millis(104),
            "{got:?}"
        );
    }

    #[test]
    fn uniform_stays_in_range() {
        let mut rng = SimRng::seed_from_u64(2);
        let (low, high) = (Duration::from_micros(200), Duration::from_millis(2));
        for _ in 0..1000 {
            let d = uniform(&mut rng, low, high);
            assert!(d >= low && d <= high, "{d:?}");
        }
        assert_eq!(uniform(&mut rng, high, high), high);
    }
}
