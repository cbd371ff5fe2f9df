//! Report rendering of a 500-cell run: wall time and bytes of HTML.
//!
//! Run: `cargo bench -p orchestrator --bench report`
//!
//! The run folder is real: Online Boutique (11 services) under the four 900 s GRLScaler scenarios, five
//! policies (four HPA targets and static-max), 25 seeds, run by the simulator into a temporary folder, so every
//! metrics.csv has 900 rows of 75 columns. The report (index, 500 cell pages, exports) is then rendered a few
//! times; the table gives each render's wall time and the HTML it wrote, and the ratio of the median to the time
//! the simulator took to produce the run folder (a figure that holds when the shared machine is busy). The
//! bootstrap uses its default 2000 resamples.

use std::path::Path;
use std::time::Instant;

use orchestrator::matrix::Matrix;
use orchestrator::report::stats::BootstrapConfig;
use orchestrator::report::{ReportOptions, render_run};
use orchestrator::run::runner::{RunOptions, run_matrix};

const SEEDS: u64 = 25;
const RENDERS: usize = 3;

fn folder_bytes(dir: &Path, extension: &str) -> (u64, u64, usize) {
    let (mut total, mut largest, mut files) = (0, 0, 0);
    for entry in walk(dir) {
        if entry.extension().is_some_and(|e| e == extension) {
            let size = std::fs::metadata(&entry).unwrap().len();
            total += size;
            largest = largest.max(size);
            files += 1;
        }
    }
    (total, largest, files)
}

/// Bytes of every `open`...`close` span of `text`.
fn spans(text: &str, open: &str, close: &str) -> usize {
    let mut bytes = 0;
    let mut rest = text;
    while let Some(start) = rest.find(open) {
        let Some(end) = rest[start..].find(close) else { break };
        bytes += end + close.len();
        rest = &rest[start + end + close.len()..];
    }
    bytes
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let matrix_file = dir.path().join("report-bench.yaml");
    let seeds: Vec<String> = (1..=SEEDS).map(|s| s.to_string()).collect();
    std::fs::write(
        &matrix_file,
        format!(
            "name: report-bench\nseeds: [{seeds}]\napps: [online-boutique]\nscenarios: [offpeak, peak, rushsale, fluctuating]\n\
             policies:\n  - {{name: hpa-cpu-40, kind: hpa, manifest: hpa-cpu-40.yaml}}\n  - {{name: hpa-cpu-60, kind: hpa, manifest: hpa-cpu-60.yaml}}\n\
             \x20 - {{name: hpa-cpu-80, kind: hpa, manifest: hpa-cpu-80.yaml}}\n  - {{name: hpa-cpu-60-behavior, kind: hpa, manifest: hpa-cpu-60-behavior.yaml}}\n\
             \x20 - {{name: static-max, kind: static, replicas: max}}\n\
             paths: {{apps: {e}/apps, scenarios: {e}/scenarios, baselines: {b}/baselines}}\n",
            seeds = seeds.join(", "),
            e = root.join("experiments").display(),
            b = root.display()
        ),
    )
    .unwrap();
    let matrix = Matrix::load(&matrix_file).expect("bench matrix");
    let logs = dir.path().join("logs");
    let started = Instant::now();
    let mut options = RunOptions::new(&logs, "bench").expect("run options");
    // Each cell runs in an `orch cell` process, as in `orch run`.
    options.program = env!("CARGO_BIN_EXE_orch").into();
    let outcome = run_matrix(&matrix, &options).expect("run");
    let simulate_s = started.elapsed().as_secs_f64();
    let (csv_bytes, _, csv_files) = folder_bytes(&outcome.run_dir, "csv");
    println!(
        "run folder: {} cells, {} CSV files, {:.1} MB of CSV, simulated in {:.2} s",
        matrix.cells.len(),
        csv_files,
        csv_bytes as f64 / 1e6,
        simulate_s
    );

    // Reference in the same run: only reading every file of the run folder (what any report must do).
    let started = Instant::now();
    let read: usize = walk(&outcome.run_dir).iter().map(|f| std::fs::read(f).unwrap().len()).sum();
    let read_s = started.elapsed().as_secs_f64();
    println!("reading the run folder ({:.1} MB): {read_s:.3} s", read as f64 / 1e6);

    let out = dir.path().join("reports/bench");
    println!(
        "{:>6} {:>10} {:>12} {:>14} {:>16} {:>12}",
        "render", "wall s", "HTML MB", "index KB", "largest cell KB", "pages"
    );
    let mut walls = Vec::new();
    for i in 0..RENDERS {
        let options = ReportOptions { out: out.clone(), zip: false, bootstrap: BootstrapConfig::default() };
        let started = Instant::now();
        let report = render_run(&outcome.run_dir, &options).expect("report");
        let wall = started.elapsed().as_secs_f64();
        walls.push(wall);
        let (html, _, pages) = folder_bytes(&out, "html");
        let (_, largest_cell, _) = folder_bytes(&out.join("cells"), "html");
        assert_eq!(html, report.html_bytes, "the outcome counts every page");
        let index = std::fs::metadata(out.join("index.html")).unwrap().len();
        println!(
            "{:>6} {:>10.3} {:>12.2} {:>14.1} {:>16.1} {:>12}",
            i + 1,
            wall,
            html as f64 / 1e6,
            index as f64 / 1e3,
            largest_cell as f64 / 1e3,
            pages
        );
    }
    walls.sort_by(f64::total_cmp);
    let median = walls[walls.len() / 2];
    // The machine is shared: the ratio to simulating the same cells, measured in the same run, is what holds.
    println!(
        "median wall {median:.3} s (goal < 3 s): {:.2}x the simulation of the cells, {:.0}x the plain read; goal < 5 MB of HTML",
        median / simulate_s,
        median / read_s
    );

    // Where the bytes of the cell pages go.
    let (mut style, mut svg, mut total) = (0, 0, 0);
    for page in walk(&out.join("cells")) {
        let text = std::fs::read_to_string(&page).unwrap();
        total += text.len();
        style += spans(&text, "<style>", "</style>");
        svg += spans(&text, "<svg", "</svg>");
    }
    let pages = walk(&out.join("cells")).len();
    let per_page = |bytes: usize| bytes as f64 / pages as f64 / 1e3;
    println!(
        "cell pages: {:.1} KB each on average: {:.1} KB SVG, {:.1} KB inline CSS, {:.1} KB the rest",
        per_page(total),
        per_page(svg),
        per_page(style),
        per_page(total - svg - style)
    );
}
