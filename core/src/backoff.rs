//! Exponential backoff with jitter, as the Java client applies to reconnects and retries:
//! `initial * 2^attempts`, capped at `max`, then spread by ±20% so that many clients do not
//! retry in step.

use std::time::Duration;

use crate::rand::Rng;

/// Fraction of the delay that jitter may add or remove.
const JITTER: f64 = 0.2;

/// A backoff policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Largest delay, before jitter.
    pub max: Duration,
}

impl Backoff {
    /// The delay after `failures` consecutive failures (1 = the first). Always within
    /// `[0.8 * initial, 1.2 * max]`.
    pub fn delay(&self, failures: u32, rng: &mut Rng) -> Duration {
        let initial = self.initial.as_secs_f64();
        let max = self.max.as_secs_f64().max(initial);
        let exp = failures.saturating_sub(1).min(62);
        let base = (initial * 2f64.powi(exp as i32)).min(max);
        let spread = 1.0 + JITTER * (2.0 * rng.unit() - 1.0);
        Duration::from_secs_f64(base * spread)
    }

    /// The bounds every delay of this policy stays within.
    pub fn bounds(&self) -> (Duration, Duration) {
        let max = self.max.max(self.initial);
        (self.initial.mul_f64(1.0 - JITTER), max.mul_f64(1.0 + JITTER))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_then_caps_within_jitter() {
        let b = Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(1000) };
        let mut rng = Rng::new(7);
        let (lo, hi) = b.bounds();
        let mut last_base = 0.0;
        for failures in 1..20 {
            let d = b.delay(failures, &mut rng);
            assert!(d >= lo && d <= hi, "{failures}: {d:?}");
            let base = (50.0 * 2f64.powi(failures as i32 - 1)).min(1000.0);
            assert!(d.as_secs_f64() * 1000.0 >= base * 0.8 - 1e-6 && d.as_secs_f64() * 1000.0 <= base * 1.2 + 1e-6);
            assert!(base >= last_base);
            last_base = base;
        }
    }
}
