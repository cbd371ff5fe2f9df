//! The per-second and per-iteration files of a cell: metrics.csv, training.csv and the agents' Locust CSVs.
//!
//! Columns are found by name, so older or newer files with other columns still read; a malformed row is an
//! error naming the file, the line and the column, except a cut-off last line (a cell still running), which is
//! dropped with a warning.

use std::path::Path;

use crate::run_folder::{METRICS_COLUMNS, METRICS_SERVICE_COLUMNS};
use anyhow::{Context, Result, bail};

/// What metrics.csv holds, column by column.
#[derive(Debug, Clone, Default)]
pub struct CellSeries {
    pub t: Vec<f64>,
    pub users: Option<Vec<f64>>,
    pub offered_rps: Option<Vec<f64>>,
    pub achieved_rps: Option<Vec<f64>>,
    pub failures: Option<Vec<f64>>,
    pub slo_p50_ms: Option<Vec<f64>>,
    pub slo_p95_ms: Option<Vec<f64>>,
    pub slo_p99_ms: Option<Vec<f64>>,
    pub services: Vec<ServiceSeries>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ServiceSeries {
    pub name: String,
    pub ready: Option<Vec<f64>>,
    pub desired: Option<Vec<f64>>,
    pub cpu_util_pct: Option<Vec<f64>>,
    /// CFS periods and throttled periods per second; NaN where the backend could not see them.
    pub cfs_periods: Option<Vec<f64>>,
    pub cfs_throttled_periods: Option<Vec<f64>>,
}

impl ServiceSeries {
    pub fn mean_cpu_util_pct(&self) -> Option<f64> {
        let values = self.cpu_util_pct.as_ref()?;
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }

    /// Whether any second has throttling counters (an empty column, or none, means the backend had none).
    pub fn has_throttling(&self) -> bool {
        self.cfs_periods.as_ref().is_some_and(|p| p.iter().any(|v| v.is_finite()))
    }

    /// Per second, throttled periods as a percent of the periods that elapsed: 0 when none elapsed (an idle pod is
    /// not throttled), NaN where unknown.
    pub fn throttled_pct(&self) -> Option<Vec<f64>> {
        let (periods, throttled) = (self.cfs_periods.as_ref()?, self.cfs_throttled_periods.as_ref()?);
        Some(periods.iter().zip(throttled).map(|(&p, &t)| if p == 0.0 { 0.0 } else { 100.0 * t / p }).collect())
    }

    /// The run's throttled periods and periods, over the seconds that have both.
    pub fn throttling_totals(&self) -> Option<(f64, f64)> {
        let (periods, throttled) = (self.cfs_periods.as_ref()?, self.cfs_throttled_periods.as_ref()?);
        let known = periods.iter().zip(throttled).filter(|(p, t)| p.is_finite() && t.is_finite());
        let (mut throttled_sum, mut periods_sum, mut any) = (0.0, 0.0, false);
        for (p, t) in known {
            (throttled_sum, periods_sum, any) = (throttled_sum + t, periods_sum + p, true);
        }
        any.then_some((throttled_sum, periods_sum))
    }
}

/// Column `name` of every row, or why a row could not be read.
struct Table {
    header: Vec<String>,
    rows: Vec<csv::StringRecord>,
    warnings: Vec<String>,
}

impl Table {
    fn read(path: &Path) -> Result<Table> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = std::fs::read(path).with_context(|| format!("{name} cannot be read"))?;
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes.as_slice());
        let header: Vec<String> =
            reader.headers().with_context(|| format!("{name}: no header line"))?.iter().map(String::from).collect();
        if header.iter().all(|h| h.is_empty()) {
            bail!("{name}: empty file");
        }
        let mut rows = Vec::new();
        // A short row is fine only as the last one: a file still being written.
        let mut short_row: Option<(u64, usize)> = None;
        for record in reader.records() {
            let record = record.with_context(|| format!("{name}: malformed CSV"))?;
            let line = record.position().map_or(0, |p| p.line());
            if let Some((previous, fields)) = short_row {
                bail!("{name} line {previous}: {fields} fields, the header has {}", header.len());
            }
            if record.len() != header.len() {
                short_row = Some((line, record.len()));
                if record.len() > header.len() {
                    bail!("{name} line {line}: {} fields, the header has {}", record.len(), header.len());
                }
                continue;
            }
            rows.push(record);
        }
        let mut warnings = Vec::new();
        if let Some((line, _)) = short_row {
            warnings.push(format!("{name} line {line}: cut-off last line ignored"));
        }
        Ok(Table { header, rows, warnings })
    }

    fn column_index(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// Column `name` as numbers; `None` if the file has no such column.
    fn numbers(&self, file: &str, name: &str) -> Result<Option<Vec<f64>>> {
        let Some(index) = self.column_index(name) else { return Ok(None) };
        let mut values = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            let text = &row[index];
            let value = parse_number(text).with_context(|| {
                let line = row.position().map_or(0, |p| p.line());
                format!("{file} line {line}, column {name}: {text:?} is not a number")
            })?;
            values.push(value);
        }
        Ok(Some(values))
    }
}

fn parse_number(text: &str) -> Result<f64> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("N/A") || trimmed.eq_ignore_ascii_case("nan") {
        return Ok(f64::NAN);
    }
    Ok(trimmed.parse::<f64>()?)
}

/// Reads a cell's metrics.csv: only the columns the report draws, streamed (a run has hundreds of these).
pub fn read_metrics(path: &Path) -> Result<CellSeries> {
    const FILE: &str = crate::run_folder::METRICS_CSV;
    // The columns this reads: the load columns (all but slo_violated) and all of each service's but memory.
    let load = &METRICS_COLUMNS[..8];
    let per_service = &METRICS_SERVICE_COLUMNS[..5];
    let bytes = std::fs::read(path).with_context(|| format!("{FILE} cannot be read"))?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes.as_slice());
    let header: Vec<String> = reader
        .byte_headers()
        .with_context(|| format!("{FILE}: no header line"))?
        .iter()
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .collect();
    let ready_suffix = format!("_{}", METRICS_SERVICE_COLUMNS[0]);
    let services: Vec<String> = header.iter().filter_map(|h| h.strip_suffix(&ready_suffix)).map(String::from).collect();
    let mut wanted: Vec<String> = load.iter().map(|c| c.to_string()).collect();
    for service in &services {
        wanted.extend(per_service.iter().map(|column| format!("{service}_{column}")));
    }
    let index: Vec<Option<usize>> = wanted.iter().map(|w| header.iter().position(|h| h == w)).collect();
    if index[0].is_none() {
        bail!("{FILE}: no column `t`");
    }
    let mut columns: Vec<Vec<f64>> = index.iter().map(|_| Vec::with_capacity(1024)).collect();
    let mut record = csv::ByteRecord::new();
    // A short row is fine only as the last one: a file still being written.
    let mut short_row: Option<(u64, usize)> = None;
    while reader.read_byte_record(&mut record).with_context(|| format!("{FILE}: malformed CSV"))? {
        let line = record.position().map_or(0, |p| p.line());
        if let Some((previous, fields)) = short_row {
            bail!("{FILE} line {previous}: {fields} fields, the header has {}", header.len());
        }
        if record.len() != header.len() {
            if record.len() > header.len() {
                bail!("{FILE} line {line}: {} fields, the header has {}", record.len(), header.len());
            }
            short_row = Some((line, record.len()));
            continue;
        }
        for (column, i) in columns.iter_mut().zip(&index) {
            if let Some(i) = *i {
                let field = &record[i];
                let value = parse_bytes(field).with_context(|| {
                    format!(
                        "{FILE} line {line}, column {}: {:?} is not a number",
                        header[i],
                        String::from_utf8_lossy(field)
                    )
                })?;
                column.push(value);
            }
        }
    }
    let mut taken = columns.into_iter().zip(index).map(|(values, i)| i.map(|_| values));
    let mut next = || taken.next().expect("one per wanted column");
    let mut series = CellSeries {
        t: next().expect("t is present"),
        users: next(),
        offered_rps: next(),
        achieved_rps: next(),
        failures: next(),
        slo_p50_ms: next(),
        slo_p95_ms: next(),
        slo_p99_ms: next(),
        services: Vec::new(),
        warnings: Vec::new(),
    };
    for name in services {
        series.services.push(ServiceSeries {
            ready: next(),
            desired: next(),
            cpu_util_pct: next(),
            cfs_periods: next(),
            cfs_throttled_periods: next(),
            name,
        });
    }
    if let Some((line, _)) = short_row {
        series.warnings.push(format!("{FILE} line {line}: cut-off last line ignored"));
    }
    Ok(series)
}

fn parse_bytes(field: &[u8]) -> Result<f64> {
    if let Some(value) = parse_plain_decimal(field) {
        return Ok(value);
    }
    let text = std::str::from_utf8(field)?;
    match text.parse::<f64>() {
        Ok(value) => Ok(value),
        Err(_) => parse_number(text),
    }
}

/// The fast path for what metrics.csv holds: `-?digits[.digits]` with at most 15 significant digits, which an
/// f64 represents exactly before the one division (so the result is the correctly rounded value, as
/// `str::parse` gives). Anything else (exponents, long fractions, NaN) is `None` and takes the general parser.
fn parse_plain_decimal(field: &[u8]) -> Option<f64> {
    let (negative, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let (mut mantissa, mut decimals, mut seen_point, mut significant) = (0u64, 0i32, false, 0);
    for &byte in digits {
        match byte {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + (byte - b'0') as u64;
                significant += 1;
                if seen_point {
                    decimals += 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => return None,
        }
    }
    if significant == 0 || significant > 15 {
        return None;
    }
    const POWERS: [f64; 16] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let value = mantissa as f64 / POWERS[decimals as usize];
    Some(if negative { -value } else { value })
}

/// training.csv: one row per training iteration.
#[derive(Debug, Clone)]
pub struct TrainingSeries {
    /// `env_steps` when present, else `iteration`.
    pub x_name: String,
    pub x: Vec<f64>,
    pub columns: Vec<(String, Vec<f64>)>,
    pub warnings: Vec<String>,
}

impl TrainingSeries {
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
}

pub fn read_training(path: &Path) -> Result<TrainingSeries> {
    let table = Table::read(path)?;
    let file = crate::run_folder::TRAINING_CSV;
    let x_name = ["env_steps", "iteration"]
        .into_iter()
        .find(|c| table.column_index(c).is_some())
        .with_context(|| format!("{file}: needs a column `env_steps` or `iteration`"))?;
    let x = table.numbers(file, x_name)?.expect("column found");
    let mut columns = Vec::new();
    for name in &table.header {
        if name != x_name
            && let Some(values) = table.numbers(file, name)?
        {
            columns.push((name.clone(), values));
        }
    }
    Ok(TrainingSeries { x_name: x_name.to_string(), x, columns, warnings: table.warnings })
}

/// One row of an agent's Locust stats file (Locust's own column names).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestRow {
    pub method: String,
    pub name: String,
    pub requests: String,
    pub failures: String,
    pub median_ms: String,
    pub average_ms: String,
    pub min_ms: String,
    pub max_ms: String,
    pub rps: String,
    pub failures_per_s: String,
    /// 50 %, 66 %, … 100 %, as Locust's header lists them.
    pub percentiles: Vec<String>,
    pub aggregated: bool,
}

/// An agent's locust_stats.csv: the percentile headers and the rows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestTable {
    pub agent: String,
    pub percentile_headers: Vec<String>,
    pub rows: Vec<RequestRow>,
}

pub fn read_locust_stats(path: &Path, agent: &str) -> Result<RequestTable> {
    let table = Table::read(path)?;
    let file = format!("agents/{agent}/locust_stats.csv");
    let column = |name: &str| table.column_index(name).with_context(|| format!("{file}: no column {name:?}"));
    let (method, name, requests, failures) =
        (column("Type")?, column("Name")?, column("Request Count")?, column("Failure Count")?);
    let (median, average, min, max) = (
        column("Median Response Time")?,
        column("Average Response Time")?,
        column("Min Response Time")?,
        column("Max Response Time")?,
    );
    let (rps, fps) = (column("Requests/s")?, column("Failures/s")?);
    let percentile_columns: Vec<usize> = (0..table.header.len()).filter(|&i| table.header[i].ends_with('%')).collect();
    let number = |text: &str, decimals: usize| match text.trim().parse::<f64>() {
        Ok(v) => format!("{v:.decimals$}"),
        Err(_) => text.to_string(),
    };
    let rows = table
        .rows
        .iter()
        .map(|row| RequestRow {
            method: row[method].to_string(),
            name: row[name].to_string(),
            requests: row[requests].to_string(),
            failures: row[failures].to_string(),
            median_ms: number(&row[median], 0),
            average_ms: number(&row[average], 1),
            min_ms: number(&row[min], 0),
            max_ms: number(&row[max], 0),
            rps: number(&row[rps], 2),
            failures_per_s: number(&row[fps], 2),
            percentiles: percentile_columns.iter().map(|&i| row[i].to_string()).collect(),
            aggregated: row[name].eq_ignore_ascii_case("Aggregated"),
        })
        .collect();
    Ok(RequestTable {
        agent: agent.to_string(),
        percentile_headers: percentile_columns.iter().map(|&i| table.header[i].clone()).collect(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn metrics_columns_are_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "metrics.csv",
            "t,users,slo_p95_ms,web_ready,web_desired,web_cpu_util_pct,web_memory_mib,db_ready\n0,10,5.5,1,2,30.0,20,1\n1,12,6.5,2,2,50.0,21,1\n",
        );
        let series = read_metrics(&path).unwrap();
        assert_eq!(series.t, vec![0.0, 1.0]);
        assert_eq!(series.users, Some(vec![10.0, 12.0]));
        assert_eq!(series.offered_rps, None);
        assert_eq!(series.services.len(), 2);
        assert_eq!(series.services[0].name, "web");
        assert_eq!(series.services[0].mean_cpu_util_pct(), Some(40.0));
        assert_eq!(series.services[1].cpu_util_pct, None);
        assert!(!series.services[0].has_throttling(), "an older file without the CFS columns");
    }

    #[test]
    fn throttling_reads_as_percent_of_periods_and_empty_fields_as_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "metrics.csv",
            "t,web_ready,web_cfs_periods,web_cfs_throttled_periods,db_ready,db_cfs_periods,db_cfs_throttled_periods\n\
             0,1,20,5,1,,\n1,1,0,0,1,,\n2,1,10,10,1,,\n",
        );
        let series = read_metrics(&path).unwrap();
        let (web, db) = (&series.services[0], &series.services[1]);
        assert!(web.has_throttling() && !db.has_throttling());
        let pct = web.throttled_pct().unwrap();
        assert_eq!((pct[0], pct[2]), (25.0, 100.0));
        assert_eq!(pct[1], 0.0, "no period elapsed: nothing throttled");
        assert!(db.throttled_pct().unwrap().iter().all(|v| v.is_nan()), "unknown stays unknown");
        assert_eq!(web.throttling_totals(), Some((15.0, 30.0)));
        assert_eq!(db.throttling_totals(), None);
    }

    #[test]
    fn the_decimal_fast_path_agrees_with_the_standard_parser() {
        for text in ["0", "98", "-3", "317.5", "0.983", "1234567.891", "27.823", "-0.05", "100.0", "999999999999999"] {
            assert_eq!(parse_plain_decimal(text.as_bytes()), Some(text.parse::<f64>().unwrap()), "{text}");
        }
        for text in ["1e5", "nan", "", "-", ".", "1.2.3", "12345678901234567", "0.12345678901234567", " 1"] {
            assert_eq!(parse_plain_decimal(text.as_bytes()), None, "{text}");
        }
        assert!(parse_bytes(b"N/A").unwrap().is_nan());
        assert_eq!(parse_bytes(b"1e3").unwrap(), 1000.0);
    }

    #[test]
    fn a_cut_off_last_line_is_dropped_but_a_bad_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cut = write(dir.path(), "metrics.csv", "t,users\n0,1\n1,2\n2");
        let series = read_metrics(&cut).unwrap();
        assert_eq!(series.t.len(), 2);
        assert!(series.warnings[0].contains("line 4"), "{:?}", series.warnings);

        let bad = write(dir.path(), "metrics.csv", "t,users\n0,1\n1\n2,3\n");
        let error = format!("{:#}", read_metrics(&bad).unwrap_err());
        assert!(error.contains("metrics.csv line 3"), "{error}");

        let not_a_number = write(dir.path(), "metrics.csv", "t,users\n0,1\n1,lots\n");
        let error = format!("{:#}", read_metrics(&not_a_number).unwrap_err());
        assert!(error.contains("line 3, column users"), "{error}");
    }

    #[test]
    fn locust_stats_rows_keep_names_and_percentiles() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "locust_stats.csv",
            &format!(
                "{}\nGET,\"/cart, full\",10,1,12,13.456,2,40,100,5.0,0.5,12,13,14,15,16,17,18,19,20,21,40\n,Aggregated,10,1,12,13.4,2,40,100,5.0,0.5,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n",
                load_agent::stats::STATS_HEADER
            ),
        );
        let table = read_locust_stats(&path, "a1").unwrap();
        assert_eq!(table.percentile_headers.len(), 11);
        assert_eq!(table.percentile_headers[5], "95%");
        assert_eq!(table.rows[0].name, "/cart, full");
        assert_eq!(table.rows[0].average_ms, "13.5");
        assert!(table.rows[1].aggregated);
        assert_eq!(table.rows[1].percentiles[0], "N/A");
    }
}
