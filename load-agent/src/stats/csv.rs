//! Locust-compatible CSV files: PREFIX_stats.csv, PREFIX_stats_history.csv, PREFIX_failures.csv.
//!
//! Headers are exactly Locust's (2.x). Unlike Locust, whose history percentiles are cumulative unless
//! --csv-full-history, our history rows hold exact per-second windows, one row per request name and an
//! "Aggregated" row per second.

use std::io::{self, Write};

use super::{Collector, PERCENTILES, Summary};
use crate::clock::iso8601;

pub const STATS_HEADER: &str = "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,\
Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,\
50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%";

pub const HISTORY_HEADER: &str = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,\
50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,\
Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,\
Total Min Response Time,Total Max Response Time,Total Average Content Size";

pub const FAILURES_HEADER: &str = "Method,Name,Error,Occurrences,First Seen,Last Seen";

/// Quotes a field when CSV needs it.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}

fn percentiles(entry: &Summary) -> String {
    if entry.requests == 0 {
        return vec!["N/A"; PERCENTILES.len()].join(",");
    }
    PERCENTILES.iter().map(|&q| format!("{}", entry.percentile_ms(q).round() as u64)).collect::<Vec<_>>().join(",")
}

/// Cumulative figures per name and aggregated; rates over `duration_s`.
pub fn write_stats_csv(out: &mut impl Write, stats: &Collector, duration_s: f64) -> io::Result<()> {
    writeln!(out, "{STATS_HEADER}")?;
    let duration_s = duration_s.max(1e-9);
    for entry in stats.entries().chain(std::iter::once(stats.total())) {
        let entry = &entry.summary();
        writeln!(
            out,
            "{},{},{},{},{},{:.6},{},{},{},{:.6},{:.6},{}",
            field(&entry.method),
            field(&entry.name),
            entry.requests,
            entry.failures,
            entry.percentile_ms(0.5).round() as u64,
            entry.mean_ms(),
            (entry.min_us as f64 / 1000.0).round() as u64,
            (entry.max_us as f64 / 1000.0).round() as u64,
            entry.average_content_bytes(),
            entry.requests as f64 / duration_s,
            entry.failures as f64 / duration_s,
            percentiles(entry)
        )?;
    }
    Ok(())
}

/// One row per request name and one aggregated row per closed one-second window.
pub fn write_history_csv(out: &mut impl Write, stats: &Collector) -> io::Result<()> {
    writeln!(out, "{HISTORY_HEADER}")?;
    for window in stats.history() {
        let total = &window.cumulative_total;
        let totals = format!(
            "{},{},{},{:.6},{},{},{}",
            total.requests,
            total.failures,
            total.percentile_ms(0.5).round() as u64,
            total.mean_ms(),
            (total.min_us as f64 / 1000.0).round() as u64,
            (total.max_us as f64 / 1000.0).round() as u64,
            total.average_content_bytes()
        );
        for entry in window.entries.iter().chain(std::iter::once(&window.total)).map(|e| &e.summary) {
            writeln!(
                out,
                "{},{},{},{},{:.6},{:.6},{},{}",
                window.start_unix_s,
                window.users,
                field(&entry.method),
                field(&entry.name),
                entry.requests as f64,
                entry.failures as f64,
                percentiles(entry),
                totals
            )?;
        }
    }
    Ok(())
}

pub fn write_failures_csv(out: &mut impl Write, stats: &Collector) -> io::Result<()> {
    writeln!(out, "{FAILURES_HEADER}")?;
    for failure in stats.failures() {
        writeln!(
            out,
            "{},{},{},{},{},{}",
            field(&failure.key.method),
            field(&failure.key.name),
            field(&failure.key.error),
            failure.occurrences,
            iso8601(failure.first_seen_unix_s),
            iso8601(failure.last_seen_unix_s)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_have_locust_headers_and_one_row_per_name_plus_aggregated() {
        let mut c = Collector::new(1_700_000_000);
        c.record("GET", "/a", 1500, 10, None);
        c.record("POST", "/b,c", 2500, 0, Some("HTTPError 500"));
        c.close_window(2);
        let mut stats = Vec::new();
        write_stats_csv(&mut stats, &c, 1.0).unwrap();
        let stats = String::from_utf8(stats).unwrap();
        let lines: Vec<&str> = stats.lines().collect();
        assert_eq!(lines[0], STATS_HEADER);
        assert_eq!(lines.len(), 4);
        assert!(lines[2].starts_with("POST,\"/b,c\",1,1,"), "{}", lines[2]);
        assert!(lines[3].starts_with(",Aggregated,2,1,"), "{}", lines[3]);
        let mut history = Vec::new();
        write_history_csv(&mut history, &c).unwrap();
        let history = String::from_utf8(history).unwrap();
        assert_eq!(history.lines().next().unwrap(), HISTORY_HEADER);
        assert_eq!(history.lines().count(), 4);
        let mut failures = Vec::new();
        write_failures_csv(&mut failures, &c).unwrap();
        let failures = String::from_utf8(failures).unwrap();
        assert_eq!(
            failures.lines().nth(1).unwrap(),
            "POST,\"/b,c\",HTTPError 500,1,2023-11-14T22:13:20Z,2023-11-14T22:13:20Z"
        );
    }
}
