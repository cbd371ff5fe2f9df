//! Simulator throughput: service-seconds simulated per CPU-second, on one thread.
//!
//! Run: `taskset -c 1 cargo bench -p orchestrator --bench simulator`
//! Reports, for Online Boutique (11 services) under each 900 s GRLScaler scenario, the bare simulator stepped with
//! fixed replicas (the default model, then the legacy one, side by side) and a whole cell under the HPA
//! controller (observations, pod samples, decisions), without file output.

use std::path::Path;
use std::time::Duration;

use orchestrator::backends::sim::{simulate, simulator_for};
use orchestrator::cell::ClusterBackend;
use orchestrator::matrix::Matrix;
use orchestrator::run::policies::build_policy;
use orchestrator::settings::simulator::SimulatorSettings;

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f` repeatedly for at least `budget` of CPU time; returns (runs, CPU seconds).
fn measure(budget: Duration, mut f: impl FnMut()) -> (u64, f64) {
    f(); // warm-up
    let start = thread_cpu_time();
    let mut runs = 0;
    while thread_cpu_time() - start < budget {
        f();
        runs += 1;
    }
    (runs, (thread_cpu_time() - start).as_secs_f64())
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let matrix_file = dir.path().join("bench.yaml");
    let experiments = root.join("experiments");
    std::fs::write(
        &matrix_file,
        format!(
            "name: bench\nseeds: [1]\napps: [online-boutique]\nscenarios: [offpeak, peak, rushsale, fluctuating]\n\
             policies:\n  - {{name: hpa-cpu-60, kind: hpa, manifest: hpa-cpu-60.yaml}}\n  - {{name: static-max, kind: static, replicas: max}}\n\
             paths: {{apps: {0}/apps, scenarios: {0}/scenarios, baselines: {1}/baselines}}\n",
            experiments.display(),
            root.display()
        ),
    )
    .unwrap();
    let matrix = Matrix::load(&matrix_file).expect("bench matrix");
    let budget = Duration::from_millis(1500);
    println!("{:<12} {:<22} {:>8} {:>14} {:>22}", "scenario", "what", "runs", "ms per cell", "service-s per CPU-s");
    // (service-seconds, CPU seconds) of the fixed-replica runs: default model, legacy model.
    let mut totals = [(0.0, 0.0); 2];
    for cell in &matrix.cells {
        let services = cell.config.app.services.len() as f64;
        let mut legacy = cell.config.clone();
        legacy.simulator = Some(SimulatorSettings::LEGACY);
        let rows: Vec<(&str, (u64, f64))> = match cell.config.policy.name() {
            "static-max" => [("simulator, fixed", &cell.config), ("simulator, fixed, legacy", &legacy)]
                .into_iter()
                .map(|(what, config)| {
                    let run = measure(budget, || {
                        let mut sim = simulator_for(config);
                        let max: Vec<u32> = config.app.services.iter().map(|s| s.replicas.max).collect();
                        sim.reset(&max);
                        while let Some(second) = sim.advance() {
                            std::hint::black_box(&second);
                        }
                    });
                    (what, run)
                })
                .collect(),
            _ => {
                let config = &cell.config;
                let run = measure(budget, || {
                    let mut policy = build_policy(config);
                    std::hint::black_box(simulate(&cell.id, config, policy.as_mut(), |_| {}, |_, _, _, _, _| {}));
                });
                vec![("whole cell, HPA", run)]
            }
        };
        for (what, (runs, cpu)) in rows {
            let service_seconds = runs as f64 * cell.config.scenario.duration_s() * services;
            if what.starts_with("simulator") {
                let total = &mut totals[what.ends_with("legacy") as usize];
                total.0 += service_seconds;
                total.1 += cpu;
            }
            println!(
                "{:<12} {:<22} {:>8} {:>14.3} {:>22.0}",
                cell.config.scenario.name,
                what,
                runs,
                1000.0 * cpu / runs as f64,
                service_seconds / cpu
            );
        }
    }
    let rate = |(service_seconds, cpu): (f64, f64)| service_seconds / cpu;
    println!(
        "simulator, fixed replicas, all four scenarios: {:.0} service-seconds per CPU-second (legacy model {:.0}, \
         ratio {:.2})",
        rate(totals[0]),
        rate(totals[1]),
        rate(totals[0]) / rate(totals[1])
    );
}
