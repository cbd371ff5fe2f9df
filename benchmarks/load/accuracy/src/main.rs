//! Percentile accuracy of load-agent's statistics.
//!
//! Feeds large latency sets (heavy-tailed, generated from a fixed seed, or read from a file of real measurements)
//! through `load_agent::stats::Collector` exactly as the engine records requests, and compares every Locust
//! percentile (50 % … 100 %) with the exact value of the sorted array. Checked:
//!
//! - each request name's entry and the "Aggregated" total of one collector;
//! - the total of two collectors merged from their snapshots (the multi-agent path: serialized histograms);
//! - the figure written to `PREFIX_stats.csv` (whole milliseconds, as Locust writes them).
//!
//! "Exact" is the nearest-rank percentile, the ceil(q·n)-th smallest value (HdrHistogram's definition); Locust's
//! own definition takes the (floor(q·n)+1)-th smallest, one rank higher at most, and is reported too.
//!
//! Usage: load-agent-accuracy [--values N] [--seed S] [--file LATENCIES_US.txt]...
//! Exit code 1 when any histogram percentile is off by more than 1 %.

use std::path::PathBuf;

use load_agent::stats::{AGGREGATED, Collector, Entry, PERCENTILES, StatsSnapshot, write_stats_csv};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Pareto};

/// Requests are spread over this many names, so per-name entries and the aggregate are both exercised.
const NAMES: [&str; 3] = ["/a", "/b", "/c"];
/// Goal: every percentile within 1 % of the exact value.
const GOAL: f64 = 0.01;
/// Generated values are capped here (10 minutes, in microseconds), inside the histogram's one-hour range.
const CAP_US: u64 = 600_000_000;

struct Dataset {
    name: String,
    latencies_us: Vec<u64>,
}

fn generated(values: usize, seed: u64) -> Vec<Dataset> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let to_us = |ms: f64| ((ms * 1000.0).round() as u64).clamp(1, CAP_US);

    // Log-normal, median 25 ms, sigma 1: a typical web service; p99.99 near 1 s.
    let lognormal = LogNormal::new(25f64.ln(), 1.0).unwrap();
    let a = (0..values).map(|_| to_us(lognormal.sample(&mut rng))).collect();

    // Pareto, scale 1 ms, alpha 1.1: an extremely heavy tail (infinite variance).
    let pareto = Pareto::new(1.0, 1.1).unwrap();
    let b = (0..values).map(|_| to_us(pareto.sample(&mut rng))).collect();

    // Loopback-like: 96 % around 150 µs, 3.5 % slow calls around 20 ms, 0.5 % timeouts of 5–30 s.
    let fast = LogNormal::new(0.15f64.ln(), 0.5).unwrap();
    let slow = LogNormal::new(20f64.ln(), 1.0).unwrap();
    let c = (0..values)
        .map(|_| {
            let u: f64 = rng.r#gen();
            to_us(if u < 0.96 {
                fast.sample(&mut rng)
            } else if u < 0.995 {
                slow.sample(&mut rng)
            } else {
                rng.gen_range(5_000.0..30_000.0)
            })
        })
        .collect();

    vec![
        Dataset { name: "log-normal (median 25 ms, σ 1)".into(), latencies_us: a },
        Dataset { name: "Pareto (1 ms, α 1.1)".into(), latencies_us: b },
        Dataset { name: "loopback + slow calls + 5–30 s timeouts".into(), latencies_us: c },
    ]
}

fn from_file(path: &PathBuf) -> Dataset {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let latencies_us = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.parse::<f64>().unwrap_or_else(|e| panic!("{}: {l:?}: {e}", path.display())).round() as u64)
        .map(|v| v.max(1))
        .collect::<Vec<_>>();
    assert!(!latencies_us.is_empty(), "{}: no latencies", path.display());
    Dataset { name: format!("file {}", path.display()), latencies_us }
}

/// Nearest-rank percentile of a sorted array: the ceil(q·n)-th smallest value.
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let n = sorted.len();
    sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1]
}

/// Locust's definition (`calculate_response_time_percentile`): the (floor(q·n)+1)-th smallest value.
fn locust_rank(sorted: &[u64], q: f64) -> u64 {
    let n = sorted.len();
    sorted[((q * n as f64).floor() as usize).min(n - 1)]
}

fn rel(got: f64, truth: f64) -> f64 {
    (got - truth).abs() / truth
}

/// Worst relative error of an entry's percentiles against the exact values of `sorted`, against both definitions.
fn worst(entry: &Entry, sorted: &[u64]) -> (f64, f64) {
    let mut w = (0.0f64, 0.0f64);
    for q in PERCENTILES {
        let got = entry.percentile_ms(q);
        w.0 = w.0.max(rel(got, nearest_rank(sorted, q) as f64 / 1000.0));
        w.1 = w.1.max(rel(got, locust_rank(sorted, q) as f64 / 1000.0));
    }
    w
}

/// The Aggregated row's percentile columns of PREFIX_stats.csv, as load-agent writes them.
fn csv_percentiles(collector: &Collector) -> Vec<f64> {
    let mut out = Vec::new();
    write_stats_csv(&mut out, collector, 60.0).expect("writing into memory");
    let text = String::from_utf8(out).expect("UTF-8 CSV");
    let row = text.lines().find(|l| l.split(',').nth(1) == Some(AGGREGATED)).expect("an Aggregated row");
    let fields: Vec<&str> = row.split(',').collect();
    fields[fields.len() - PERCENTILES.len()..].iter().map(|f| f.parse().expect("numeric percentile")).collect()
}

fn main() {
    let mut values = 1_000_000usize;
    let mut seed = 1u64;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--values" => values = args.next().and_then(|v| v.parse().ok()).expect("--values N"),
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).expect("--seed S"),
            "--file" => files.push(PathBuf::from(args.next().expect("--file PATH"))),
            _ => {
                eprintln!("usage: load-agent-accuracy [--values N] [--seed S] [--file LATENCIES_US.txt]...");
                std::process::exit(2);
            }
        }
    }
    let mut datasets = generated(values, seed);
    datasets.extend(files.iter().map(from_file));

    let mut overall_histogram = 0.0f64;
    let mut overall_locust = 0.0f64;
    let mut overall_csv_over_10ms = 0.0f64;
    for data in &datasets {
        let n = data.latencies_us.len();
        // One collector with everything (windows closed as the engine does, every "second" of 100,000 requests),
        // and two halves that are merged from their snapshots as the orchestrator merges several agents.
        let mut one = Collector::new(0);
        let mut halves = [Collector::new(0), Collector::new(0)];
        let mut per_name: Vec<Vec<u64>> = vec![Vec::with_capacity(n / NAMES.len() + 1); NAMES.len()];
        for (i, &us) in data.latencies_us.iter().enumerate() {
            let name = NAMES[i % NAMES.len()];
            one.record("GET", name, us, 2, None);
            halves[i % 2].record("GET", name, us, 2, None);
            per_name[i % NAMES.len()].push(us);
            if i % 100_000 == 99_999 {
                one.close_window(1);
            }
        }
        let merged = StatsSnapshot::merge(&[halves[0].snapshot(), halves[1].snapshot()]).expect("snapshots merge");
        let mut sorted = data.latencies_us.clone();
        sorted.sort_unstable();
        for names in &mut per_name {
            names.sort_unstable();
        }
        let csv = csv_percentiles(&one);

        println!("\n### {} — {} latencies\n", data.name, n);
        println!("| percentile | exact (ms) | load-agent (ms) | rel. error | merged agents (ms) | CSV figure (ms) | CSV rel. error |");
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        let total = one.total();
        for (k, q) in PERCENTILES.iter().enumerate() {
            let exact = nearest_rank(&sorted, *q) as f64 / 1000.0;
            let got = total.percentile_ms(*q);
            let csv_err = rel(csv[k], exact);
            if exact >= 10.0 {
                overall_csv_over_10ms = overall_csv_over_10ms.max(csv_err);
            }
            println!(
                "| {} % | {:.3} | {:.3} | {:.4} % | {:.3} | {} | {:.2} % |",
                q * 100.0,
                exact,
                got,
                100.0 * rel(got, exact),
                merged.total().percentile_ms(*q),
                csv[k],
                100.0 * csv_err
            );
        }
        let mut w = worst(total, &sorted);
        let m = worst(merged.total(), &sorted);
        w = (w.0.max(m.0), w.1.max(m.1));
        for entry in one.entries() {
            let k = NAMES.iter().position(|n| *n == entry.name).expect("known name");
            let e = worst(entry, &per_name[k]);
            w = (w.0.max(e.0), w.1.max(e.1));
        }
        assert_eq!(merged.total().requests, n as u64);
        // How far apart the two exact definitions themselves are (adjacent order statistics in a heavy tail).
        let gap = PERCENTILES
            .iter()
            .map(|&q| rel(locust_rank(&sorted, q) as f64, nearest_rank(&sorted, q) as f64))
            .fold(0.0f64, f64::max);
        println!(
            "\nworst relative error over the aggregate, the {} names and the merged snapshots: {:.4} % \
             (against Locust's rank definition: {:.4} %; the two exact definitions differ by up to {:.4} % here)",
            NAMES.len(),
            100.0 * w.0,
            100.0 * w.1,
            100.0 * gap
        );
        overall_histogram = overall_histogram.max(w.0);
        overall_locust = overall_locust.max(w.1);
    }
    println!(
        "\nWORST histogram percentile error: {:.4} % (nearest rank), {:.4} % (Locust's rank); goal {:.0} %: {}",
        100.0 * overall_histogram,
        100.0 * overall_locust,
        100.0 * GOAL,
        if overall_histogram <= GOAL { "met" } else { "NOT met" }
    );
    println!(
        "CSV figures are whole milliseconds (as Locust writes them): worst error {:.2} % where the exact value is \
         ≥ 10 ms; below that the rounding alone exceeds 1 %.",
        100.0 * overall_csv_over_10ms
    );
    if overall_histogram > GOAL {
        std::process::exit(1);
    }
}
