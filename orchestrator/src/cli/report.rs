//! `orch report`: arguments and exit codes; the work is in crate::report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::report::stats::BootstrapConfig;
use crate::report::{self, NotARunFolder, ReportOptions};

/// Render the HTML report of a run folder: reports/<run-tag>/index.html, a page per cell, summary.csv,
/// summary.json and summary.md. The files are self-contained (no script, no network) and open from file://.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// The run folder, e.g. logs/<run-tag>.
    #[arg(required_unless_present = "compare", conflicts_with = "compare")]
    run: Option<PathBuf>,
    /// Where to write the report [default: <reports-dir>/<run-tag>, or <reports-dir>/compare-<A>-vs-<B>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Compare runs side by side, the first being the reference: run tags under --logs-dir, or paths.
    #[arg(long, num_args = 2.., value_name = "TAG")]
    compare: Vec<String>,
    /// Also write <out>.zip holding the report, its exports and the run folder.
    #[arg(long, conflicts_with = "compare")]
    zip: bool,
    /// Where --compare finds run tags.
    #[arg(long, default_value = "logs")]
    logs_dir: PathBuf,
    /// Where reports go without --out.
    #[arg(long, default_value = "reports")]
    reports_dir: PathBuf,
    /// Bootstrap resamples per confidence interval.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..))]
    bootstrap_reps: u64,
    /// Seed of the bootstrap: the same seed and run give the same intervals.
    #[arg(long, default_value_t = 0)]
    bootstrap_seed: u64,
}

/// Exit code for bad input.
const EXIT_BAD_INPUT: u8 = 2;

pub fn run(args: ReportArgs) -> ExitCode {
    let bootstrap =
        BootstrapConfig { reps: args.bootstrap_reps as usize, seed: args.bootstrap_seed, ..BootstrapConfig::default() };
    let result = if args.compare.is_empty() {
        let run_dir = args.run.expect("clap requires a run folder without --compare");
        let out = args.out.unwrap_or_else(|| report::default_out(&run_dir, &args.reports_dir));
        report::render_run(&run_dir, &ReportOptions { out, zip: args.zip, bootstrap })
    } else {
        let dirs: Vec<PathBuf> = args
            .compare
            .iter()
            .map(|tag| if Path::new(tag).is_dir() { PathBuf::from(tag) } else { args.logs_dir.join(tag) })
            .collect();
        let names: Vec<String> =
            dirs.iter().map(|d| d.file_name().map_or("run".into(), |n| n.to_string_lossy().into_owned())).collect();
        let out = args.out.unwrap_or_else(|| args.reports_dir.join(format!("compare-{}", names.join("-vs-"))));
        report::render_comparison(&dirs, &out, &bootstrap)
    };
    match result {
        Ok(outcome) => {
            print_outcome(&outcome);
            ExitCode::SUCCESS
        }
        Err(e) if e.downcast_ref::<NotARunFolder>().is_some() => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_outcome(outcome: &report::ReportOutcome) {
    let incomplete =
        if outcome.incomplete > 0 { format!(", {} incomplete", outcome.incomplete) } else { String::new() };
    eprintln!("report of {} cells{incomplete}: {}", outcome.cells, outcome.index.display());
    for warning in &outcome.warnings {
        eprintln!("warning: {warning}");
    }
    if let Some(zip) = &outcome.zip {
        eprintln!("zip: {}", zip.display());
    }
}

/// The report at the end of `orch run`, into reports/<run-tag>/. False if it could not be written.
pub fn after_run(run_dir: &Path) -> bool {
    let out = report::default_out(run_dir, Path::new("reports"));
    match report::render_run(run_dir, &ReportOptions { out, zip: false, bootstrap: BootstrapConfig::default() }) {
        Ok(outcome) => {
            print_outcome(&outcome);
            true
        }
        Err(e) => {
            eprintln!("error: the report could not be written: {e:#}");
            false
        }
    }
}
