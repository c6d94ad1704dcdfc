//! Runs the deterministic simulator over seeds.
//!
//! - `sim --seeds A..B`: runs seeds A to B-1; prints failures in full, progress sparsely,
//!   seeds per second, and last `N seeds, F failures`. Exits 0 only without failures.
//! - `sim --seeds A..B --trace-hash`: prints only `SEED HASH` per seed and the final count
//!   on stdout (failures, progress and speed go to stderr), so two runs can be diffed to
//!   check that every seed replays.
//! - `sim --seed S`: runs one seed and describes it.
//! - `sim --seed S --trace-hash`: prints only the trace hash.
//! - `sim --seed S --trace`: also prints the whole trace.
//! - `--clients N` with either: every scenario gets exactly N clients (else 1 to 4).
//! - `sim --seed S --plant NAME`: runs one seed with a plant armed (to see how it is caught).
//! - `sim --plants [--max-seeds N]`: arms each plant of `sansa::plants::Plant::ALL` on every
//!   client and runs seeds (300 by default) until an invariant catches it; prints
//!   `PLANT: caught at seed S` or `PLANT: not caught in N seeds` per plant, then
//!   `P plants, C caught`. Exits 0 only when every plant was caught.

use std::process::ExitCode;
use std::time::Instant;

use sansa::plants::Plant;
use sansa_conformance::sim::plants::{hunt, report};
use sansa_conformance::sim::{run_scenario, Scenario};

fn usage() -> ExitCode {
    eprintln!(
        "usage: sim --seeds A..B [--trace-hash] | --seed S [--trace-hash | --trace] [--clients N] [--plant NAME] | --plants [--max-seeds N]"
    );
    ExitCode::from(2)
}

fn scenario(seed: u64, clients: Option<usize>) -> Scenario {
    match clients {
        Some(n) => Scenario::with_clients(seed, n),
        None => Scenario::from_seed(seed),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut seeds: Option<(u64, u64)> = None;
    let mut seed: Option<u64> = None;
    let mut hash_only = false;
    let mut full_trace = false;
    let mut clients: Option<usize> = None;
    let mut plant: Option<Plant> = None;
    let mut plants = false;
    let mut max_seeds = 300u64;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--seeds" => {
                let Some((a, b)) = args.get(i + 1).and_then(|s| s.split_once("..")) else { return usage() };
                let (Ok(a), Ok(b)) = (a.parse(), b.parse()) else { return usage() };
                seeds = Some((a, b));
                i += 1;
            }
            "--seed" => {
                let Some(Ok(s)) = args.get(i + 1).map(|s| s.parse()) else { return usage() };
                seed = Some(s);
                i += 1;
            }
            "--plant" => {
                let Some(p) = args.get(i + 1).and_then(|n| Plant::ALL.into_iter().find(|p| p.name() == n)) else {
                    return usage();
                };
                plant = Some(p);
                i += 1;
            }
            "--clients" => {
                let Some(Ok(n)) = args.get(i + 1).map(|s| s.parse()) else { return usage() };
                clients = Some(n);
                i += 1;
            }
            "--max-seeds" => {
                let Some(Ok(n)) = args.get(i + 1).map(|s| s.parse()) else { return usage() };
                max_seeds = n;
                i += 1;
            }
            "--plants" => plants = true,
            "--trace-hash" => hash_only = true,
            "--trace" => full_trace = true,
            _ => return usage(),
        }
        i += 1;
    }
    if plants {
        return run_plants(max_seeds);
    }
    match (seeds, seed) {
        (Some((a, b)), None) => run_many(a, b, clients, hash_only),
        (None, Some(s)) => run_one(s, clients, plant, hash_only, full_trace),
        _ => usage(),
    }
}

fn run_plants(max_seeds: u64) -> ExitCode {
    let mut results = Vec::new();
    for plant in Plant::ALL {
        let r = hunt(plant, max_seeds);
        if let Some((_, broke)) = &r.caught {
            eprintln!("{}: broke {broke:?}", plant.name());
        }
        println!("{}", r.line());
        results.push(r);
    }
    let (lines, all) = report(&results);
    if let Some(last) = lines.last() {
        println!("{last}");
    }
    if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// With `hash_lines`, stdout holds only what a replay must reproduce: `SEED HASH` lines and
/// the count; everything else (timing above all) goes to stderr.
fn run_many(a: u64, b: u64, clients: Option<usize>, hash_lines: bool) -> ExitCode {
    // Wall-clock time here only measures throughput; it never reaches a simulation.
    let started = Instant::now();
    let total = b.saturating_sub(a);
    let mut failures = 0u64;
    let step = (total / 10).max(1);
    for (n, seed) in (a..b).enumerate() {
        let (_, report) = run_scenario(&scenario(seed, clients));
        if hash_lines {
            println!("{seed} {:016x}", report.trace_hash);
        }
        if report.failed() {
            failures += 1;
            if hash_lines {
                eprintln!("{}", report.failure_text());
            } else {
                println!("{}", report.failure_text());
            }
        }
        if (n as u64 + 1).is_multiple_of(step) {
            eprintln!("{}/{total} seeds, {failures} failures", n + 1);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let speed = format!("{:.1} seeds/second ({total} seeds in {secs:.2}s)", total as f64 / secs.max(1e-9));
    if hash_lines {
        eprintln!("{speed}");
    } else {
        println!("{speed}");
    }
    println!("{total} seeds, {failures} failures");
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run_one(seed: u64, clients: Option<usize>, plant: Option<Plant>, hash_only: bool, full_trace: bool) -> ExitCode {
    let mut scenario = scenario(seed, clients);
    scenario.config.plant = plant;
    let (sim, report) = run_scenario(&scenario);
    if hash_only {
        println!("{:016x}", report.trace_hash);
        return if report.failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS };
    }
    let c = &scenario.config;
    println!("seed {seed}");
    println!("cluster: {} brokers, topics {:?}", c.brokers, c.topics);
    for (i, k) in c.clients.iter().enumerate() {
        println!(
            "client {i}: bootstrap via brokers {:?}, request timeout {:?}, setup timeout {:?}, reconnect backoff {:?}..{:?}, metadata max age {:?}",
            k.bootstrap, k.request_timeout, k.connection_setup_timeout, k.reconnect_backoff.0, k.reconnect_backoff.1, k.metadata_max_age
        );
    }
    if let Some(security) = c.security {
        println!("listener: {security:?}");
    }
    println!("network: {:?}", c.profile);
    println!("faults end at {:.3}s; schedule:", scenario.faults_end.as_secs_f64());
    for (at, a) in &scenario.actions {
        println!("  {:>10.3}s  {a:?}", at.as_secs_f64());
    }
    println!("commands:");
    for (id, r) in sim.requests() {
        let outcome = r.outcomes.first().map_or("NONE".to_string(), |(t, e)| {
            format!("{} after {:.3}s", sansa_conformance::sim::scenario::outcome_kind(e), (*t - r.issued).as_secs_f64())
        });
        println!("  {:<8} {:>10.3}s  {:<60} {outcome}", id.to_string(), r.issued.as_secs_f64(), r.what);
    }
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for (_, e) in sim.trace().events() {
        let name = format!("{e:?}");
        let name = name.split([' ', '{']).next().unwrap_or("").to_string();
        *kinds.entry(name).or_default() += 1;
    }
    if full_trace {
        println!("trace:");
        for (at, e) in sim.trace().events() {
            println!("  {:>12.6}s  {e}", at.as_secs_f64());
        }
        println!("sends:");
        for (key, e) in sim.history().sends() {
            let outcomes: Vec<String> =
                e.outcomes.iter().map(|(t, o)| format!("{:.6}s {o:?}", t.as_secs_f64())).collect();
            println!(
                "  {key:<8} {:>10.6}s {}{} key {:?} id {:?} {} due {:.6}s: {}",
                e.sent.as_secs_f64(),
                e.topic,
                e.partition.map_or(String::new(), |p| format!("-{p}")),
                e.key,
                e.id.map(|i| i.0),
                e.refused.as_deref().unwrap_or(""),
                e.deadline.as_secs_f64(),
                outcomes.join(", ")
            );
        }
        println!("logs:");
        for ((t, p), log) in sim.history().logs() {
            let values: Vec<String> = log
                .iter()
                .map(|(o, v)| {
                    let v = v.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                    format!("{o}:{}", v.split(':').next().unwrap_or(""))
                })
                .collect();
            println!("  {t}-{p}: {}", values.join(" "));
        }
    }
    println!("trace: {} events {kinds:?}", sim.trace().events().len());
    println!("outcomes: {:?}", report.outcomes);
    let h = sim.history();
    let acked = h.records().values().filter(|r| !r.acks.is_empty()).count();
    println!(
        "records: {} sent, {acked} acked, {} consumed; {} probes",
        h.records().len(),
        h.consumed_records().len(),
        sim.probes().len()
    );
    let mut sends = std::collections::BTreeMap::<String, usize>::new();
    for e in h.sends().values() {
        let kind = match (&e.refused, e.outcomes.first()) {
            (Some(r), _) => format!("refused {r}"),
            (None, Some((_, Ok(_)))) => "acked".into(),
            (None, Some((_, Err(k)))) => k.clone(),
            (None, None) => "NONE".into(),
        };
        *sends.entry(kind).or_default() += 1;
    }
    let producers: Vec<String> = c
        .clients
        .iter()
        .enumerate()
        .filter_map(|(i, k)| {
            let p = k.producer.as_ref()?;
            Some(format!(
                "client {i}: acks {:?} idempotence {:?} {:?} batch {} linger {:?} buffer {} delivery timeout {:?}",
                p.acks,
                p.enable_idempotence,
                p.compression,
                p.batch_size,
                p.linger,
                p.buffer_memory,
                p.delivery_timeout
            ))
        })
        .collect();
    println!("producers: {producers:#?}");
    for (i, k) in c.clients.iter().enumerate() {
        let Some(m) = &k.consumer else { continue };
        let x = &m.config;
        println!(
            "member {i}: {:?} {:?} {:?} session {:?} heartbeat {:?} max poll {:?}/{} auto-commit {} every {:?} listener {} buffer {} partition bytes {}",
            x.group_protocol,
            x.assignors,
            x.isolation_level,
            x.session_timeout,
            x.heartbeat_interval,
            x.max_poll_interval,
            x.max_poll_records,
            x.enable_auto_commit,
            x.auto_commit_interval,
            m.listener,
            x.fetch_buffer_memory,
            x.max_partition_fetch_bytes
        );
    }
    println!("consumers: {}", sansa_conformance::sim::consumers::summary(&h.consumer));
    println!("sends: {sends:?}");
    println!(
        "{} steps, {:.3}s virtual, trace hash {:016x}",
        report.steps,
        report.virtual_time.as_secs_f64(),
        report.trace_hash
    );
    if report.failed() {
        println!("{}", report.failure_text());
        ExitCode::FAILURE
    } else {
        println!("ok");
        ExitCode::SUCCESS
    }
}
