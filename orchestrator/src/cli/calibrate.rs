//! `orch calibrate`: arguments and exit codes; the work is in crate::calibration.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{config_error, run_setup};
use crate::calibration::{CalibrateOptions, CalibrationSpec, calibrate, default_tag, table_path};
use crate::run::interrupt::EXIT_INTERRUPTED;

#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// The calibration file, e.g. experiments/calibration.yaml.
    spec: PathBuf,
    /// Name of the sweep's run folder under the logs directory [default: <name>-<UTC time>].
    #[arg(long, conflicts_with = "resume")]
    tag: Option<String>,
    /// Continue this sweep: measured points are kept, the others run; the simulator side is computed afresh.
    #[arg(long, value_name = "RUN_TAG")]
    resume: Option<String>,
    #[arg(long, default_value = "logs")]
    logs_dir: PathBuf,
    /// The load-agent binary for the local agents [default: ORCH_LOAD_AGENT_BIN, else next to orch].
    #[arg(long, value_name = "PATH")]
    load_agent_bin: Option<PathBuf>,
}

/// `orch calibrate`.
pub fn run(args: CalibrateArgs) -> ExitCode {
    let spec = match CalibrationSpec::load(&args.spec) {
        Ok(spec) => spec,
        Err(e) => return config_error(e),
    };
    let tag = args.resume.clone().or(args.tag).unwrap_or_else(|| default_tag(&spec));
    let (interrupt, program) = match run_setup(&tag) {
        Ok(setup) => setup,
        Err(code) => return code,
    };
    let options = CalibrateOptions {
        logs_dir: args.logs_dir,
        tag,
        resume: args.resume.is_some(),
        load_agent_bin: args.load_agent_bin,
        program,
        interrupt,
    };
    match calibrate(&spec, &options) {
        Ok(calibration) => {
            let run = &calibration.run;
            eprintln!(
                "{} points: {} measured on the burning emulation, {} failed; table in {}",
                calibration.rows.len(),
                calibration.rows.iter().filter(|r| r.emulated.is_some()).count(),
                run.failed.len(),
                table_path(&run.run_dir).display()
            );
            print!("{}", crate::calibration::table::to_markdown(&calibration.rows));
            for (cell, message) in &run.failed {
                eprintln!("failed: {cell}: {message}");
            }
            if run.interrupted {
                eprintln!(
                    "interrupted: continue with `orch calibrate {} --resume {}`",
                    args.spec.display(),
                    options.tag
                );
                ExitCode::from(EXIT_INTERRUPTED)
            } else if run.failed.is_empty() && run.cancelled == 0 && run.skipped == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
