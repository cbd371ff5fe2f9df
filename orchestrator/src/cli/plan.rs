//! `orch plan`: the cells of a matrix, listed without running them.

use std::process::ExitCode;

use super::config_error;
use crate::matrix::Matrix;

/// `orch plan`: each cell is printed as soon as it is resolved, so a large matrix shows its first cells at once and
/// the cells are never all held in memory.
pub fn plan(matrix_file: &std::path::Path) -> ExitCode {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut count = 0usize;
    let mut write_error = None;
    let mut header_written = false;
    let result = Matrix::load_each(matrix_file, &mut |cell| {
        if write_error.is_some() {
            return;
        }
        let c = &cell.config;
        let mut line = String::new();
        if !header_written {
            header_written = true;
            line.push_str(&format!(
                "{:<70} {:<18} {:<20} {:<12} {:>6} {:<8}\n",
                "CELL", "APP", "POLICY", "SCENARIO", "SEED", "BACKEND"
            ));
        }
        line.push_str(&format!(
            "{:<70} {:<18} {:<20} {:<12} {:>6} {:<8}\n",
            cell.id,
            c.app.name,
            c.policy.name(),
            c.scenario.name,
            c.seed,
            c.backend.name()
        ));
        count += 1;
        // Flushed every so often, so a reader sees the first cells while the rest are resolved.
        let written = out.write_all(line.as_bytes()).and_then(|()| if count % 64 == 1 { out.flush() } else { Ok(()) });
        if let Err(e) = written {
            write_error = Some(e);
        }
    });
    if let Err(e) = result {
        return config_error(e);
    }
    let finished = match write_error {
        Some(e) => Err(e),
        None if !header_written => writeln!(
            out,
            "{:<70} {:<18} {:<20} {:<12} {:>6} {:<8}\n0 cells",
            "CELL", "APP", "POLICY", "SCENARIO", "SEED", "BACKEND"
        )
        .and_then(|()| out.flush()),
        None => writeln!(out, "{count} cells").and_then(|()| out.flush()),
    };
    match finished {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`orch plan m.yaml | head`) is no failure of the plan.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the plan: {e}");
            ExitCode::FAILURE
        }
    }
}
