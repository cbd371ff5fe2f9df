//! The axes of a matrix (app, policy, scenario, seed, backend): their values as written, the `exclude` and
//! `include` entries that name them, and the typed [`Combination`] a generic one of
//! [`crate::matrix::combinations`] becomes.

use std::borrow::Cow;
use std::path::Path;

use glob::Pattern;
use load_agent::yaml::ConfigError;
use serde_json::Value;

use crate::cell::Backend;
use crate::limits;
use crate::matrix::combinations::{self, Axis, Origin};
use crate::matrix::file::{AxisKey, CellSettings, MatrixFile, PolicySpec, check_settings, one_or_many, typed};

const AXIS_KEYS: &str = "app, policy, scenario, seed or backend";

/// The values of every axis, checked: none empty, no duplicates, names fit for cell ids.
#[derive(Debug)]
pub(crate) struct Axes {
    pub apps: Vec<String>,
    pub policies: Vec<PolicySpec>,
    pub scenarios: Vec<String>,
    pub seeds: Vec<u64>,
    pub backends: Vec<Backend>,
    /// Whether each axis was written as a list (then its field paths have an index), in [`AxisKey::ALL`] order.
    listed: [bool; 5],
}

impl Axes {
    /// Takes the axes out of `file`.
    pub fn read(file: &mut MatrixFile, path: &Path) -> Result<Axes, ConfigError> {
        let (apps, apps_listed) = one_or_many::<String>(file.apps.take(), path, "apps")?;
        let (policies, policies_listed) = one_or_many::<PolicySpec>(file.policies.take(), path, "policies")?;
        let (scenarios, scenarios_listed) = one_or_many::<String>(file.scenarios.take(), path, "scenarios")?;
        if let Value::Array(items) = &file.seeds
            && items.len() > limits::MAX_SEEDS
        {
            let message = limits::above(format!("{} seeds", items.len()), limits::MAX_SEEDS);
            return Err(ConfigError::new(path, "seeds", message));
        }
        let (seeds, seeds_listed) = one_or_many::<u64>(file.seeds.take(), path, "seeds")?;
        let (backends, backends_listed) = match file.backend.take() {
            Some(value) => one_or_many::<Backend>(value, path, "backend")?,
            None => (vec![Backend::default()], false),
        };
        let axes = Axes {
            apps,
            policies,
            scenarios,
            seeds,
            backends,
            listed: [apps_listed, policies_listed, scenarios_listed, seeds_listed, backends_listed],
        };
        for axis in AxisKey::ALL {
            if axes.len(axis) == 0 {
                return Err(ConfigError::new(path, axis.list(), "needs at least one entry"));
            }
        }
        for axis in AxisKey::ALL {
            check_unique(path, axis.list(), (0..axes.len(axis)).map(|i| axes.value(axis, i).into_owned()))?;
        }
        for (axis, names) in [(AxisKey::App, &axes.apps), (AxisKey::Scenario, &axes.scenarios)] {
            for (i, name) in names.iter().enumerate() {
                check_id_part(path, &axes.path(axis, i), name)?;
            }
        }
        for (i, policy) in axes.policies.iter().enumerate() {
            check_id_part(path, &format!("{}.name", axes.path(AxisKey::Policy, i)), &policy.name)?;
        }
        Ok(axes)
    }

    fn len(&self, axis: AxisKey) -> usize {
        match axis {
            AxisKey::App => self.apps.len(),
            AxisKey::Policy => self.policies.len(),
            AxisKey::Scenario => self.scenarios.len(),
            AxisKey::Seed => self.seeds.len(),
            AxisKey::Backend => self.backends.len(),
        }
    }

    /// The `i`th value of `axis` as combinations and globs see it: a name, or a seed's digits.
    fn value(&self, axis: AxisKey, i: usize) -> Cow<'_, str> {
        match axis {
            AxisKey::App => Cow::Borrowed(&self.apps[i]),
            AxisKey::Policy => Cow::Borrowed(&self.policies[i].name),
            AxisKey::Scenario => Cow::Borrowed(&self.scenarios[i]),
            AxisKey::Seed => Cow::Owned(self.seeds[i].to_string()),
            AxisKey::Backend => Cow::Borrowed(self.backends[i].name()),
        }
    }

    /// The field path of the `i`th value of `axis`: `apps[1]`, or `apps` when it was written as one value.
    pub fn path(&self, axis: AxisKey, i: usize) -> String {
        if self.listed[axis.index()] { format!("{}[{i}]", axis.list()) } else { axis.list().to_string() }
    }

    /// The axes as [`combinations::expand`] takes them, in [`AxisKey::ALL`] order.
    pub fn generic(&self) -> Vec<Axis> {
        AxisKey::ALL
            .into_iter()
            .map(|axis| Axis {
                key: axis.key(),
                list: axis.list(),
                values: (0..self.len(axis)).map(|i| self.value(axis, i).into_owned()).collect(),
            })
            .collect()
    }

    /// Where `axis`'s value of a combination from `origin` was written, for errors about it.
    pub fn field_of(&self, origin: &Origin, axis: AxisKey, include: &[IncludeValues]) -> String {
        match origin {
            Origin::Axes(index) => self.path(axis, index[axis.index()]),
            Origin::Include(i) if include[*i][axis.index()].is_some() => format!("include[{i}].{}", axis.key()),
            Origin::Include(_) => self.path(axis, 0),
        }
    }

    /// The one step from a generic combination to a typed one.
    pub fn combination(&self, generic: &combinations::Combination) -> Result<Combination, NotAValue> {
        let value = |axis: AxisKey| generic.values[axis.index()].as_str();
        let not_a = |axis: AxisKey| NotAValue { axis, value: value(axis).to_string() };
        Ok(Combination {
            app: value(AxisKey::App).to_string(),
            policy: self
                .policies
                .iter()
                .position(|spec| spec.name == value(AxisKey::Policy))
                .ok_or_else(|| not_a(AxisKey::Policy))?,
            scenario: value(AxisKey::Scenario).to_string(),
            seed: value(AxisKey::Seed).parse().map_err(|_| not_a(AxisKey::Seed))?,
            backend: Backend::parse(value(AxisKey::Backend)).ok_or_else(|| not_a(AxisKey::Backend))?,
            origin: generic.origin.clone(),
            includes: generic.includes.clone(),
        })
    }

    /// `combination`'s value of `axis`, as [`Axes::value`] gives it.
    pub fn value_of<'a>(&'a self, combination: &'a Combination, axis: AxisKey) -> Cow<'a, str> {
        match axis {
            AxisKey::App => Cow::Borrowed(&combination.app),
            AxisKey::Policy => Cow::Borrowed(&self.policies[combination.policy].name),
            AxisKey::Scenario => Cow::Borrowed(&combination.scenario),
            AxisKey::Seed => Cow::Owned(combination.seed.to_string()),
            AxisKey::Backend => Cow::Borrowed(combination.backend.name()),
        }
    }

    /// Refuses a product of axes beyond [`limits::MAX_CELLS`] before it is expanded, naming the longest axis.
    pub fn check_cell_count(&self, file: &Path) -> Result<(), ConfigError> {
        let product = AxisKey::ALL.iter().map(|&a| self.len(a)).fold(1usize, usize::saturating_mul);
        if product <= limits::MAX_CELLS {
            return Ok(());
        }
        let longest = AxisKey::ALL.into_iter().max_by_key(|&a| self.len(a)).expect("five axes");
        let factors: Vec<String> = AxisKey::ALL.iter().map(|&a| format!("{} {}", self.len(a), a.list())).collect();
        Err(ConfigError::new(
            file,
            longest.list(),
            limits::above(format!("{} = {product} cells", factors.join(" x ")), limits::MAX_CELLS),
        ))
    }
}

/// A cell of the matrix before anything it names is loaded: one value per axis, and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Combination {
    pub app: String,
    /// Index into [`Axes::policies`] (an include entry names only policies of the matrix).
    pub policy: usize,
    pub scenario: String,
    pub seed: u64,
    pub backend: Backend,
    pub origin: Origin,
    /// The include entries merged into it, in order.
    pub includes: Vec<usize>,
}

/// A generic combination's value that is not one of its axis (include entries are checked, so this is a bug).
#[derive(Debug, thiserror::Error)]
#[error("{value:?} is not a {}", axis.key())]
pub(crate) struct NotAValue {
    pub axis: AxisKey,
    pub value: String,
}

/// Exclude entries: a glob or nothing per axis, in [`AxisKey::ALL`] order.
pub(crate) fn parse_exclude(
    file: &Path,
    entries: &[serde_json::Map<String, Value>],
) -> Result<Vec<Vec<Option<Pattern>>>, ConfigError> {
    let mut out = Vec::new();
    for (e, entry) in entries.iter().enumerate() {
        let mut patterns = vec![None; AxisKey::ALL.len()];
        for (key, value) in entry {
            let at = format!("exclude[{e}].{key}");
            let Some(axis) = AxisKey::from_key(key) else {
                return Err(ConfigError::new(file, at, format!("unknown axis; exclude names {AXIS_KEYS}")));
            };
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => Pattern::escape(&n.to_string()),
                other => {
                    return Err(ConfigError::new(file, at, format!("must be a name, a glob or a seed, got {other}")));
                }
            };
            let pattern =
                Pattern::new(&text).map_err(|e| ConfigError::new(file, &at, format!("bad glob {text:?}: {e}")))?;
            patterns[axis.index()] = Some(pattern);
        }
        out.push(patterns);
    }
    Ok(out)
}

/// An include entry's value per axis (in [`AxisKey::ALL`] order), where it names one.
pub(crate) type IncludeValues = Vec<Option<String>>;

/// Splits each include entry into its axis values and its settings.
pub(crate) fn parse_include(
    file: &Path,
    entries: Vec<serde_json::Map<String, Value>>,
    policies: &[PolicySpec],
) -> Result<(Vec<IncludeValues>, Vec<CellSettings>), ConfigError> {
    let mut values = Vec::new();
    let mut settings = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let mut axis_values = vec![None; AxisKey::ALL.len()];
        let mut rest = serde_json::Map::new();
        for (key, value) in entry {
            let at = format!("include[{i}].{key}");
            let Some(axis) = AxisKey::from_key(&key) else {
                rest.insert(key, value);
                continue;
            };
            let text = match (axis, &value) {
                (AxisKey::Seed, _) => typed::<u64>(value, file, &at)?.to_string(),
                (_, Value::String(s)) => s.clone(),
                (_, other) => return Err(ConfigError::new(file, at, format!("must be a name, got {other}"))),
            };
            match axis {
                AxisKey::App | AxisKey::Scenario => check_id_part(file, &at, &text)?,
                AxisKey::Policy if !policies.iter().any(|p| p.name == text) => {
                    let known: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
                    return Err(ConfigError::new(file, at, format!("unknown policy {text:?}; policies: {known:?}")));
                }
                AxisKey::Backend if Backend::parse(&text).is_none() => {
                    return Err(ConfigError::new(file, at, format!("unknown backend {text:?}")));
                }
                _ => {}
            }
            axis_values[axis.index()] = Some(text);
        }
        let at = format!("include[{i}]");
        let entry_settings: CellSettings = typed(Value::Object(rest), file, &at)?;
        check_settings(file, &at, &entry_settings)?;
        values.push(axis_values);
        settings.push(entry_settings);
    }
    Ok((values, settings))
}

fn check_id_part(file: &Path, at: &str, name: &str) -> Result<(), ConfigError> {
    if is_id_part(name) {
        Ok(())
    } else {
        Err(ConfigError::new(
            file,
            at,
            format!("{name:?} must be letters, digits, '-' or '_' (it is part of cell ids)"),
        ))
    }
}

fn check_unique(file: &Path, field: &str, items: impl Iterator<Item = String>) -> Result<(), ConfigError> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, item) in items.enumerate() {
        if !seen.insert(item.clone()) {
            return Err(ConfigError::new(file, format!("{field}[{i}]"), format!("duplicate entry {item:?}")));
        }
    }
    Ok(())
}

fn is_id_part(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axes() -> Axes {
        let mut file: MatrixFile = serde_json::from_value(serde_json::json!({
            "name": "t",
            "apps": "shop",
            "scenarios": ["peak", "calm"],
            "seeds": [1, 2],
            "policies": [{"name": "fixed", "kind": "static", "replicas": "max"}],
            "backend": "sim",
        }))
        .unwrap();
        Axes::read(&mut file, Path::new("m.yaml")).unwrap()
    }

    #[test]
    fn a_generic_combination_becomes_typed_and_its_values_keep_their_field_paths() {
        let axes = axes();
        let combos = combinations::expand(&axes.generic(), &[], &[]).unwrap();
        assert_eq!(combos.len(), 4);
        let typed = axes.combination(&combos[3]).unwrap();
        assert_eq!((typed.app.as_str(), typed.policy, typed.scenario.as_str()), ("shop", 0, "calm"));
        assert_eq!((typed.seed, typed.backend), (2, Backend::Sim));
        assert_eq!(axes.field_of(&typed.origin, AxisKey::Seed, &[]), "seeds[1]");
        assert_eq!(axes.field_of(&typed.origin, AxisKey::App, &[]), "apps");
        assert_eq!(axes.value_of(&typed, AxisKey::Policy), "fixed");
    }

    #[test]
    fn a_value_outside_its_axis_is_one_error_naming_the_axis() {
        let axes = axes();
        let mut generic = combinations::expand(&axes.generic(), &[], &[]).unwrap().remove(0);
        generic.values[AxisKey::Seed.index()] = "x".into();
        let err = axes.combination(&generic).unwrap_err();
        assert_eq!(err.axis, AxisKey::Seed);
        assert_eq!(err.to_string(), "\"x\" is not a seed");
    }
}
