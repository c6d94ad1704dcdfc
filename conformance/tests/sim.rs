//! The deterministic simulator: named scenarios with asserted outcomes, determinism, and a
//! sweep of seeds with every invariant checked.

use sansa_conformance::sim::run_seed;

/// Seeds that once made the client ask to be woken at an instant already past, forever (a
/// busy loop in real drivers, a livelock in the simulator): an expired reconnect backoff (49)
/// and an expired retry delay of a coordinator lookup (8).
#[test]
fn regression_seeds_do_not_livelock() {
    for seed in [8, 49] {
        let (sim, report) = run_seed(seed);
        assert!(report.error.is_none(), "{}", report.failure_text());
        assert_eq!(sim.outstanding(), 0, "{}", report.failure_text());
    }
}
