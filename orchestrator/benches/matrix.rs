//! The main matrix two ways, side by side in one run: every cell in-process on a thread pool (how cells ran before
//! each got its own process), and `orch run` with one supervised `orch cell` process per cell. Both write every
//! cell's files. Prints wall times per round, medians and the ratio.
//!
//!     cargo bench -p orchestrator --bench matrix [-- ROUNDS]

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use orchestrator::matrix::Matrix;
use orchestrator::run::execute::run_cell;

fn in_process(matrix: &Matrix, out: &Path) -> f64 {
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..matrix.max_parallel {
            scope.spawn(|| {
                while let Some(cell) = matrix.cells.get(next.fetch_add(1, Ordering::Relaxed)) {
                    run_cell(cell, &out.join(&cell.id), None).expect("cell runs");
                }
            });
        }
    });
    started.elapsed().as_secs_f64()
}

fn process_per_cell(matrix_file: &Path, logs: &Path, tag: &str) -> f64 {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_orch"))
        .arg("run")
        .arg(matrix_file)
        .args(["--tag", tag, "--logs-dir"])
        .arg(logs)
        .env_remove("ORCH_FAULT_INJECT")
        .output()
        .expect("orch runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let matrix_file = root.join("experiments/matrix.yaml");
    let matrix = Matrix::load(&matrix_file).expect("main matrix");
    let dir = tempfile::tempdir().expect("temp dir");
    println!("{} cells, {} at once, {rounds} rounds", matrix.cells.len(), matrix.max_parallel);
    let (mut threads, mut processes) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let a = in_process(&matrix, &dir.path().join(format!("threads-{round}")));
        let b = process_per_cell(&matrix_file, dir.path(), &format!("processes-{round}"));
        println!("round {}: in-process threads {a:.3} s, process per cell {b:.3} s", round + 1);
        threads.push(a);
        processes.push(b);
    }
    let (a, b) = (median(threads), median(processes));
    println!("median: in-process threads {a:.3} s, process per cell {b:.3} s, ratio {:.2}x", b / a);
    println!(
        "overhead per cell: {:.1} ms of wall time per worker",
        (b - a) * 1000.0 * matrix.max_parallel as f64 / matrix.cells.len() as f64
    );
}
