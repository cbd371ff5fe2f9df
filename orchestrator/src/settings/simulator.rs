//! The matrix's `simulator:` section: which parts of the simulator's model a sim cell uses. The defaults are the
//! most faithful (measured against real CPUs: docs/BENCHMARKS.md, "The simulator against real CPUs"); each part
//! can be switched back to the earlier, simpler model, so results made before can be reproduced.
//!
//! ```yaml
//! simulator:
//!   cpu: cfs               # a CPU limit as CFS applies it: full speed, then a stall until the period ends
//!                          # (`smooth`: a limit is a slower server, the earlier model)
//!   cfs_period_ms: 100     # the kernel's default period (Kubernetes leaves it)
//!   percentiles: sampled   # each second's percentiles are those of its sampled requests (`model`: the
//!                          # distribution's own quantile, no sampling noise)
//!   metrics: phased        # metrics-server's 15 s windows start at a random phase to the HPA's sync
//!                          # (`aligned`: they end exactly at each sync)
//!   pod_spread: true       # each pod's CPU differs from the service's mean as load balancing splits calls
//!   startup: tail          # start-up times with a tail (slow image pulls); `fixed`: the model's ±10 %
//! ```
//!
//! All five set to the earlier model (`cpu: smooth, percentiles: model, metrics: aligned, pod_spread: false,
//! startup: fixed`) is [`SimulatorSettings::LEGACY`]: such cells keep the ids and results they had before.

use serde::{Deserialize, Serialize};

/// How a pod's CPU limit shapes its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuModel {
    /// CFS bandwidth control: the pod runs at full core speed until its quota for the period is spent.
    Cfs,
    /// The limit is a server limit/1000 times as fast as a core.
    Smooth,
}

/// Where a second's latency percentiles come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Percentiles {
    /// Order statistics of the second's requests, drawn from the seed: few requests, noisy percentiles.
    Sampled,
    /// The latency distribution's own quantiles.
    Model,
}

/// When metrics-server's windows close relative to the HPA's sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsTiming {
    /// At a phase drawn from the seed, so a sync sees a sample up to one window old.
    Phased,
    /// At every multiple of the window: each sync sees a window that just closed.
    Aligned,
}

/// How long a new pod takes to become ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Startup {
    /// The model's start-up time times a log-normal factor with a tail (an image pull on a cold node).
    Tail,
    /// The model's start-up time ±10 %, uniform.
    Fixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorSettings {
    pub cpu: CpuModel,
    pub cfs_period_ms: f64,
    pub percentiles: Percentiles,
    pub metrics: MetricsTiming,
    pub pod_spread: bool,
    pub startup: Startup,
}

impl SimulatorSettings {
    /// The model before calibration against real CPUs.
    pub const LEGACY: SimulatorSettings = SimulatorSettings {
        cpu: CpuModel::Smooth,
        cfs_period_ms: 100.0,
        percentiles: Percentiles::Model,
        metrics: MetricsTiming::Aligned,
        pod_spread: false,
        startup: Startup::Fixed,
    };

    pub fn is_legacy(&self) -> bool {
        *self == Self::LEGACY
    }

    /// As a resolved config holds them: nothing for the legacy model (what configs written before these settings
    /// mean), else the settings.
    pub fn unless_legacy(self) -> Option<SimulatorSettings> {
        Some(self).filter(|s| !s.is_legacy())
    }
}

impl Default for SimulatorSettings {
    /// The most faithful model.
    fn default() -> Self {
        SimulatorSettings {
            cpu: CpuModel::Cfs,
            cfs_period_ms: 100.0,
            percentiles: Percentiles::Sampled,
            metrics: MetricsTiming::Phased,
            pod_spread: true,
            startup: Startup::Tail,
        }
    }
}

/// The `simulator:` section as written: every field optional, defaults from [`SimulatorSettings::default`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorSection {
    #[serde(default)]
    pub cpu: Option<CpuModel>,
    #[serde(default)]
    pub cfs_period_ms: Option<f64>,
    #[serde(default)]
    pub percentiles: Option<Percentiles>,
    #[serde(default)]
    pub metrics: Option<MetricsTiming>,
    #[serde(default)]
    pub pod_spread: Option<bool>,
    #[serde(default)]
    pub startup: Option<Startup>,
}

/// Shortest and longest CFS period the kernel accepts (cpu.cfs_period_us: 1 ms to 1 s).
pub const CFS_PERIOD_RANGE_MS: (f64, f64) = (1.0, 1000.0);

impl SimulatorSection {
    /// The settings, or the field at fault (`cfs_period_ms`) and why.
    pub fn resolve(&self) -> Result<SimulatorSettings, (&'static str, String)> {
        let defaults = SimulatorSettings::default();
        let period = self.cfs_period_ms.unwrap_or(defaults.cfs_period_ms);
        let (low, high) = CFS_PERIOD_RANGE_MS;
        if !(period.is_finite() && (low..=high).contains(&period)) {
            return Err(("cfs_period_ms", format!("{period} is not within {low}..={high} ms (the kernel's range)")));
        }
        Ok(SimulatorSettings {
            cpu: self.cpu.unwrap_or(defaults.cpu),
            cfs_period_ms: period,
            percentiles: self.percentiles.unwrap_or(defaults.percentiles),
            metrics: self.metrics.unwrap_or(defaults.metrics),
            pod_spread: self.pod_spread.unwrap_or(defaults.pod_spread),
            startup: self.startup.unwrap_or(defaults.startup),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_section_is_the_faithful_model_and_the_legacy_one_is_all_switched_back() {
        let section: SimulatorSection = serde_yaml::from_str("{}").unwrap();
        assert_eq!(section.resolve().unwrap(), SimulatorSettings::default());
        let legacy: SimulatorSection = serde_yaml::from_str(
            "{cpu: smooth, percentiles: model, metrics: aligned, pod_spread: false, startup: fixed}",
        )
        .unwrap();
        assert!(legacy.resolve().unwrap().is_legacy());
        assert!(!SimulatorSettings::default().is_legacy());
    }

    #[test]
    fn a_period_outside_the_kernels_range_names_its_field() {
        let section: SimulatorSection = serde_yaml::from_str("{cfs_period_ms: 0.5}").unwrap();
        assert_eq!(section.resolve().unwrap_err().0, "cfs_period_ms");
        assert!(serde_yaml::from_str::<SimulatorSection>("{cpu: fast}").is_err());
    }
}
