//! The plants runner: each deliberate bug of [`sansa::plants::Plant::ALL`] armed on every
//! client, over seeds, until an invariant catches it. A seed counts as a catch only when it
//! passes without the plant, so a failure the core has anyway never passes for a catch.

use sansa::plants::Plant;

use super::scenario::{run_planted, Scenario};

/// What became of one plant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlantResult {
    /// The plant.
    pub plant: Plant,
    /// The first seed that caught it, with the invariants that broke.
    pub caught: Option<(u64, Vec<&'static str>)>,
    /// Seeds tried.
    pub seeds: u64,
}

impl PlantResult {
    /// The line `sim --plants` prints.
    pub fn line(&self) -> String {
        match &self.caught {
            Some((seed, _)) => format!("{}: caught at seed {seed}", self.plant.name()),
            None => format!("{}: not caught in {} seeds", self.plant.name(), self.seeds),
        }
    }
}

/// Runs `plant` over seeds `0..max_seeds`, stopping at the first that catches it.
pub fn hunt(plant: Plant, max_seeds: u64) -> PlantResult {
    for seed in 0..max_seeds {
        let scenario = Scenario::from_seed(seed);
        let (_, planted) = run_planted(&scenario, Some(plant));
        if !planted.failed() {
            continue;
        }
        let (_, clean) = run_planted(&scenario, None);
        if !clean.failed() {
            let broke = planted.violations.iter().map(|v| v.invariant).collect();
            return PlantResult { plant, caught: Some((seed, broke)), seeds: seed + 1 };
        }
    }
    PlantResult { plant, caught: None, seeds: max_seeds }
}

/// The full report: one line per plant, then `P plants, C caught`; and whether every plant
/// was caught.
pub fn report(results: &[PlantResult]) -> (Vec<String>, bool) {
    let mut lines: Vec<String> = results.iter().map(PlantResult::line).collect();
    let caught = results.iter().filter(|r| r.caught.is_some()).count();
    lines.push(format!("{} plants, {caught} caught", results.len()));
    (lines, caught == results.len())
}
