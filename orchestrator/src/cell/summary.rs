//! A cell's figures over its whole run (its summary.json), and the check that every one is a number.

use serde::{Deserialize, Serialize};

use super::config::Backend;

/// The figures of one cell over its whole run: its summary.json. orch writes every field; a summary written by hand
/// or by another tool needs only the headline figures (cost, SLO, failures, scaling), the fields without a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSummary {
    #[serde(default)]
    pub cell: String,
    #[serde(default)]
    pub app: String,
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub scenario: String,
    #[serde(default)]
    pub seed: u64,
    /// The backend the cell ran on (`sim`, `emulated`); summaries written before it existed are `sim`.
    #[serde(default = "sim")]
    pub backend: String,
    #[serde(default)]
    pub duration_s: u64,
    // Every figure below is finite: see `check_figures`, which runs before a summary is written.
    /// Area under the ready-pod curve, summed over services.
    pub pod_minutes: f64,
    /// CPU requested by every existing pod (ready or starting), over time.
    pub cpu_core_hours: f64,
    /// Seconds in which the SLO percentile of the SLO route exceeded its threshold.
    pub slo_violation_seconds_pct: f64,
    /// Requests to the SLO route slower than the threshold, or failed.
    pub slo_violation_requests_pct: f64,
    pub slo_p50_ms: f64,
    pub slo_p95_ms: f64,
    pub slo_p99_ms: f64,
    #[serde(default)]
    pub overall_p50_ms: f64,
    #[serde(default)]
    pub overall_p95_ms: f64,
    #[serde(default)]
    pub overall_p99_ms: f64,
    pub failure_pct: f64,
    #[serde(default)]
    pub offered_requests: f64,
    #[serde(default)]
    pub achieved_requests: f64,
    #[serde(default)]
    pub mean_offered_rps: f64,
    #[serde(default)]
    pub mean_achieved_rps: f64,
    /// Changes of a deployment's desired replicas.
    pub scaling_actions: u64,
}

/// A figure of a cell's summary that is not a finite number: the cell has no valid summary, and fails with this
/// reason instead of writing a summary.json whose figures read back as null.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("summary figure {figure} is {value}, not a finite number: {reason}")]
pub struct NonFiniteFigure {
    pub figure: &'static str,
    pub value: f64,
    pub reason: &'static str,
}

impl CellSummary {
    /// The names of the summary's figures in summary.json, in the order summary.csv lists them.
    pub const FIGURE_NAMES: [&'static str; 16] = [
        "pod_minutes",
        "cpu_core_hours",
        "slo_violation_seconds_pct",
        "slo_violation_requests_pct",
        "slo_p50_ms",
        "slo_p95_ms",
        "slo_p99_ms",
        "overall_p50_ms",
        "overall_p95_ms",
        "overall_p99_ms",
        "failure_pct",
        "offered_requests",
        "achieved_requests",
        "mean_offered_rps",
        "mean_achieved_rps",
        "scaling_actions",
    ];

    /// Every figure of the summary, by its name in summary.json.
    pub fn figures(&self) -> [(&'static str, f64); 16] {
        let values = [
            self.pod_minutes,
            self.cpu_core_hours,
            self.slo_violation_seconds_pct,
            self.slo_violation_requests_pct,
            self.slo_p50_ms,
            self.slo_p95_ms,
            self.slo_p99_ms,
            self.overall_p50_ms,
            self.overall_p95_ms,
            self.overall_p99_ms,
            self.failure_pct,
            self.offered_requests,
            self.achieved_requests,
            self.mean_offered_rps,
            self.mean_achieved_rps,
            self.scaling_actions as f64,
        ];
        std::array::from_fn(|i| (Self::FIGURE_NAMES[i], values[i]))
    }

    /// The first figure that is NaN or infinite, with why it can be (a run whose requests all failed has no
    /// latency percentiles).
    pub fn check_figures(&self) -> Result<(), NonFiniteFigure> {
        let Some((figure, value)) = self.figures().into_iter().find(|(_, v)| !v.is_finite()) else { return Ok(()) };
        let reason = match figure {
            "slo_p50_ms" | "slo_p95_ms" | "slo_p99_ms" => {
                "no request to the SLO route completed (none was sent, or every one failed), so it has no latency \
                 percentiles"
            }
            "overall_p50_ms" | "overall_p95_ms" | "overall_p99_ms" => {
                "no request completed (none was sent, or every one failed), so there are no latency percentiles"
            }
            _ => "the backend reported a figure that is not a number",
        };
        Err(NonFiniteFigure { figure, value, reason })
    }
}

fn sim() -> String {
    Backend::Sim.name().to_string()
}
