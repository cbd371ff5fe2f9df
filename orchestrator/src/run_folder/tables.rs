//! The run folder's two tables, written through the csv crate with the precision each column carries: a cell's
//! metrics.csv (a row per second) and the run's summary.csv (a row per cell). The report reads them back by these
//! column names.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};

use crate::cell::{CellSummary, SecondMetrics};

/// metrics.csv's run-level columns, in order; six columns per service follow.
pub const METRICS_COLUMNS: [&str; 9] =
    ["t", "users", "offered_rps", "achieved_rps", "failures", "slo_p50_ms", "slo_p95_ms", "slo_p99_ms", "slo_violated"];
/// metrics.csv's columns of each service, written `<service>_<column>`, services in the app model's order. The CFS
/// columns are the second's periods and throttled periods summed over pods, empty when the backend cannot see them.
pub const METRICS_SERVICE_COLUMNS: [&str; 6] =
    ["ready", "desired", "cpu_util_pct", "cfs_periods", "cfs_throttled_periods", "memory_mib"];

/// A count that may be unknown: an integer, or an empty field.
fn optional_count(value: Option<f64>) -> String {
    value.map_or_else(String::new, |v| format!("{v:.0}"))
}

/// metrics.csv: one row per second of the cell, the run-level columns then six per service.
pub struct MetricsTable {
    out: csv::Writer<File>,
    row: Vec<String>,
}

impl MetricsTable {
    pub fn create(path: &Path, services: &[&str]) -> Result<MetricsTable> {
        let mut out = csv::Writer::from_writer(File::create(path).context("creating metrics.csv")?);
        let mut header: Vec<String> = METRICS_COLUMNS.map(String::from).into();
        for name in services {
            header.extend(METRICS_SERVICE_COLUMNS.map(|column| format!("{name}_{column}")));
        }
        out.write_record(&header).context("writing metrics.csv")?;
        Ok(MetricsTable { out, row: Vec::with_capacity(header.len()) })
    }

    pub fn push(&mut self, s: &SecondMetrics) -> csv::Result<()> {
        self.row.clear();
        self.row.extend([
            s.time_s.to_string(),
            format!("{:.0}", s.users.floor()),
            format!("{:.0}", s.offered_rps),
            format!("{:.1}", s.achieved_rps),
            format!("{:.1}", s.failures),
            format!("{:.3}", s.slo_p50_ms),
            format!("{:.3}", s.slo_p95_ms),
            format!("{:.3}", s.slo_p99_ms),
            (s.slo_violated as u8).to_string(),
        ]);
        for service in &s.services {
            self.row.extend([
                service.ready.to_string(),
                service.desired.to_string(),
                format!("{:.1}", service.cpu_utilization_pct),
                optional_count(service.cfs_periods),
                optional_count(service.cfs_throttled_periods),
                format!("{:.1}", service.memory_mib),
            ]);
        }
        self.out.write_record(&self.row)
    }

    /// Flushed and on disk (before summary.json and the succeeded status say the cell is complete).
    pub fn finish(mut self) -> Result<()> {
        self.out.flush().context("writing metrics.csv")?;
        self.out.get_ref().sync_data().context("syncing metrics.csv")
    }
}

/// summary.csv: a cell's identity, then every figure of its summary in [`CellSummary::figures`]' order.
const IDENTITY_COLUMNS: [&str; 7] = ["cell", "app", "policy", "scenario", "seed", "backend", "duration_s"];

/// The decimals summary.csv writes a figure with.
fn decimals(figure: &str) -> usize {
    match figure {
        "cpu_core_hours" => 4,
        "slo_violation_seconds_pct" | "slo_violation_requests_pct" | "mean_offered_rps" | "mean_achieved_rps" => 2,
        "offered_requests" | "achieved_requests" | "scaling_actions" => 0,
        _ => 3,
    }
}

pub fn write_summary_csv(path: &Path, summaries: &[CellSummary]) -> Result<()> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(IDENTITY_COLUMNS.iter().chain(&CellSummary::FIGURE_NAMES))?;
    for s in summaries {
        let identity =
            [&s.cell, &s.app, &s.policy, &s.scenario, &s.seed.to_string(), &s.backend, &s.duration_s.to_string()]
                .map(|field| field.to_string());
        let figures = s.figures().map(|(name, value)| format!("{value:.*}", decimals(name)));
        out.write_record(identity.iter().chain(&figures))?;
    }
    let bytes = out.into_inner().context("writing summary.csv")?;
    super::write_atomically(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::ServiceSecond;

    fn service(cfs: Option<(f64, f64)>) -> ServiceSecond {
        ServiceSecond {
            ready: 2,
            desired: 3,
            pods: 3,
            cpu_utilization_pct: 61.0,
            cfs_periods: cfs.map(|c| c.0),
            cfs_throttled_periods: cfs.map(|c| c.1),
            memory_mib: 40.0,
        }
    }

    #[test]
    fn metrics_csv_has_six_columns_per_service_and_leaves_unseen_throttling_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let mut table = MetricsTable::create(&path, &["web", "db"]).unwrap();
        table
            .push(&SecondMetrics {
                time_s: 4,
                users: 10.0,
                offered_rps: 20.0,
                achieved_rps: 20.0,
                failures: 0.0,
                slo_p50_ms: 1.0,
                slo_p95_ms: 2.0,
                slo_p99_ms: 3.0,
                slo_violated: false,
                slo_requests: 20.0,
                slo_bad_requests: 0.0,
                services: vec![service(Some((20.0, 7.0))), service(None)],
            })
            .unwrap();
        table.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header.len(), METRICS_COLUMNS.len() + 2 * METRICS_SERVICE_COLUMNS.len());
        assert_eq!(
            &header[9..15],
            [
                "web_ready",
                "web_desired",
                "web_cpu_util_pct",
                "web_cfs_periods",
                "web_cfs_throttled_periods",
                "web_memory_mib"
            ]
        );
        let row: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(&row[9..], ["2", "3", "61.0", "20", "7", "40.0", "2", "3", "61.0", "", "", "40.0"]);
    }
}
