//! A cell's settings beyond its axes, layered: `defaults`, then `overrides` by axis value, then the include
//! entries merged into it, later layers replacing the fields they set.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use glob::Pattern;
use load_agent::yaml::ConfigError;

use crate::app::{AppModel, Slo};
use crate::matrix::axes::{Axes, Combination};
use crate::matrix::file::{AxisKey, CellSettings, Overrides, check_settings};

/// One axis's overrides: (pattern, key as written, settings). Each key matches a value of its axis, and no value
/// two keys.
type AxisOverrides<'a> = Vec<(Pattern, &'a str, &'a CellSettings)>;

/// The overrides of every axis, checked against the values the combinations have.
pub(crate) struct ParsedOverrides<'a> {
    /// In [`AxisKey::ALL`] order.
    by_axis: Vec<(AxisKey, AxisOverrides<'a>)>,
}

impl<'a> ParsedOverrides<'a> {
    pub fn parse(
        file: &Path,
        overrides: &'a Overrides,
        axes: &Axes,
        combos: &[Combination],
    ) -> Result<ParsedOverrides<'a>, ConfigError> {
        let mut by_axis = Vec::new();
        for axis in AxisKey::ALL {
            let values: BTreeSet<_> = combos.iter().map(|c| axes.value_of(c, axis)).collect();
            let mut parsed: AxisOverrides = Vec::new();
            for (key, settings) in overrides.of(axis) {
                let at = format!("overrides.{}.{key}", axis.key());
                let pattern =
                    Pattern::new(key).map_err(|e| ConfigError::new(file, &at, format!("bad glob {key:?}: {e}")))?;
                if !values.iter().any(|v| pattern.matches(v)) {
                    return Err(ConfigError::new(
                        file,
                        at,
                        format!("matches no {} of the matrix: {values:?}", axis.key()),
                    ));
                }
                for (other, other_key, _) in &parsed {
                    if let Some(both) = values.iter().find(|v| pattern.matches(v) && other.matches(v)) {
                        return Err(ConfigError::new(
                            file,
                            at,
                            format!("{both:?} is matched by {other_key:?} too; give each value one override"),
                        ));
                    }
                }
                check_settings(file, &at, settings)?;
                parsed.push((pattern, key.as_str(), settings));
            }
            by_axis.push((axis, parsed));
        }
        Ok(ParsedOverrides { by_axis })
    }

    /// The overrides that apply to `combo`, in axis order, each with its field path.
    fn matching(&self, axes: &Axes, combo: &Combination) -> Vec<(String, &'a CellSettings)> {
        let mut out = Vec::new();
        for (axis, overrides) in &self.by_axis {
            let value = axes.value_of(combo, *axis);
            if let Some((_, key, settings)) = overrides.iter().find(|(pattern, _, _)| pattern.matches(&value)) {
                out.push((format!("overrides.{}.{key}", axis.key()), *settings));
            }
        }
        out
    }
}

/// The layers of a cell, in the order they apply, each with its field path.
pub(crate) struct Layers<'a> {
    pub defaults: &'a CellSettings,
    pub overrides: &'a ParsedOverrides<'a>,
    /// Indexed by include entry.
    pub include: &'a [CellSettings],
}

impl Layers<'_> {
    /// `combo`'s SLO (the app's, with the layers' fields applied) and timeout; an error names a field of `file`.
    pub fn apply(
        &self,
        file: &Path,
        axes: &Axes,
        combo: &Combination,
        app: &AppModel,
        default_timeout: Duration,
    ) -> Result<(Slo, Duration), ConfigError> {
        let mut layers: Vec<(String, &CellSettings)> = vec![("defaults".into(), self.defaults)];
        layers.extend(self.overrides.matching(axes, combo));
        for &i in &combo.includes {
            layers.push((format!("include[{i}]"), &self.include[i]));
        }
        let mut slo = app.slo.clone();
        let mut timeout = default_timeout;
        for (at, settings) in layers {
            if let Some(slo_override) = &settings.slo {
                if let Some(route) = &slo_override.route {
                    if app.route_index(route).is_none() {
                        return Err(ConfigError::new(
                            file,
                            format!("{at}.slo.route"),
                            format!("app {:?} has no route {route:?}", app.name),
                        ));
                    }
                    slo.route = route.clone();
                }
                if let Some(percentile) = slo_override.percentile {
                    slo.percentile = percentile;
                }
                if let Some(threshold) = slo_override.threshold_ms {
                    slo.threshold_ms = threshold;
                }
            }
            if let Some(t) = settings.timeout {
                timeout = t;
            }
        }
        Ok((slo, timeout))
    }
}
