//! Locust's end-of-run console tables: request statistics, response time percentiles, error report.

use std::io::{self, Write};

use super::{Collector, Entry, PERCENTILES};

const NAME_WIDTH: usize = 50;

fn row(out: &mut impl Write, entry: &Entry, duration_s: f64) -> io::Result<()> {
    let entry = &entry.summary();
    let fail_pct = if entry.requests == 0 { 0.0 } else { 100.0 * entry.failures as f64 / entry.requests as f64 };
    writeln!(
        out,
        "{:<8} {:<NAME_WIDTH$} {:>7} {:>12} | {:>7.0} {:>7.0} {:>7.0} {:>7.0} | {:>7.2} {:>11.2}",
        entry.method,
        entry.name,
        entry.requests,
        format!("{}({:.2}%)", entry.failures, fail_pct),
        entry.mean_ms(),
        entry.min_us as f64 / 1000.0,
        entry.max_us as f64 / 1000.0,
        entry.percentile_ms(0.5),
        entry.requests as f64 / duration_s,
        entry.failures as f64 / duration_s,
    )
}

/// Writes the three tables Locust prints when a headless run ends.
pub fn write_console_report(out: &mut impl Write, stats: &Collector, duration_s: f64) -> io::Result<()> {
    let duration_s = duration_s.max(1e-9);
    let rule = format!("{}|{}|{}|{}", "-".repeat(8), "-".repeat(NAME_WIDTH + 2), "-".repeat(21), "-".repeat(53));
    writeln!(
        out,
        "{:<8} {:<NAME_WIDTH$} {:>7} {:>12} | {:>7} {:>7} {:>7} {:>7} | {:>7} {:>11}",
        "Type", "Name", "# reqs", "# fails", "Avg", "Min", "Max", "Med", "req/s", "failures/s"
    )?;
    writeln!(out, "{rule}")?;
    for entry in stats.entries() {
        row(out, entry, duration_s)?;
    }
    writeln!(out, "{rule}")?;
    row(out, stats.total(), duration_s)?;
    writeln!(out)?;

    writeln!(out, "Response time percentiles (exact to 0.1 %)")?;
    write!(out, "{:<8} {:<NAME_WIDTH$}", "Type", "Name")?;
    for q in PERCENTILES {
        write!(out, " {:>7}", format!("{}%", q * 100.0))?;
    }
    writeln!(out, " {:>7}", "# reqs")?;
    for entry in stats.entries().chain(std::iter::once(stats.total())) {
        let entry = entry.summary();
        write!(out, "{:<8} {:<NAME_WIDTH$}", entry.method, entry.name)?;
        for q in PERCENTILES {
            write!(out, " {:>7.0}", entry.percentile_ms(q))?;
        }
        writeln!(out, " {:>7}", entry.requests)?;
    }
    writeln!(out)?;

    let failures: Vec<_> = stats.failures().collect();
    if !failures.is_empty() {
        writeln!(out, "Error report")?;
        writeln!(out, "{:>13}  Error", "# occurrences")?;
        for failure in failures {
            writeln!(
                out,
                "{:>13}  {} {}: {}",
                failure.occurrences, failure.key.method, failure.key.name, failure.key.error
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}
