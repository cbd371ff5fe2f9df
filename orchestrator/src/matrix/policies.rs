//! A policy entry resolved for one app: `hpa` reads and checks its manifest, `static` its replicas per service,
//! `rl` goes to [`crate::matrix::rl_policy`].

use std::collections::BTreeMap;
use std::path::Path;

use load_agent::tree::{self, Located};
use load_agent::yaml::ConfigError;

use crate::app::AppModel;
use crate::cell::ResolvedPolicy;
use crate::hpa::{self};
use crate::matrix::file::{Paths, PolicyKind, PolicySpec};
use crate::matrix::manifests::check_manifests_against_app;
use crate::matrix::rl_policy;
use crate::settings::simulator::SimulatorSettings;

/// Resolves the policy entry `spec`, at field path `at`, for `app`. `None`: an rl policy limited to other apps
/// (`rl.apps`) has no cell for this one. An rl policy trains on the simulator with `simulator`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn resolve_for_app(
    spec: &PolicySpec,
    at: &str,
    matrix_file: &Path,
    base: &Path,
    paths: &Paths,
    app: &AppModel,
    matrix_apps: &[String],
    matrix_scenarios: &[String],
    simulator: SimulatorSettings,
) -> Result<Option<ResolvedPolicy>, ConfigError> {
    if spec.kind != PolicyKind::Rl && spec.rl.is_some() {
        return Err(ConfigError::new(matrix_file, format!("{at}.rl"), "only a policy of kind rl takes an rl block"));
    }
    match spec.kind {
        PolicyKind::Rl => {
            rl_policy::resolve_entry(spec, at, matrix_file, base, paths, app, matrix_apps, matrix_scenarios, simulator)
        }
        _ => Ok(Some(resolve_policy(spec, at, matrix_file, base, paths, app)?)),
    }
}

fn resolve_policy(
    spec: &PolicySpec,
    at: &str,
    matrix_file: &Path,
    base: &Path,
    paths: &Paths,
    app: &AppModel,
) -> Result<ResolvedPolicy, ConfigError> {
    let err = |field: &str, message: String| ConfigError::new(matrix_file, format!("{at}.{field}"), message);
    match spec.kind {
        PolicyKind::Hpa => {
            if spec.replicas.is_some() {
                return Err(err("replicas", "an hpa policy takes its replicas from the manifest".into()));
            }
            let Some(manifest) = &spec.manifest else {
                return Err(err(
                    "manifest",
                    "missing: an hpa policy names a manifest file under the baselines directory".into(),
                ));
            };
            let baselines_dir = base.join(&paths.baselines);
            let manifest_file = baselines_dir.join(&app.name).join(manifest);
            match tree::locate(&baselines_dir, &manifest_file) {
                Located::File(_) => {}
                Located::Outside => return Err(err("manifest", tree::leaves(manifest, &baselines_dir))),
                Located::Missing => {
                    return Err(err(
                        "manifest",
                        format!(
                            "unknown baseline {manifest:?} for app {:?}: {} does not exist",
                            app.name,
                            manifest_file.display()
                        ),
                    ));
                }
            }
            let manifests = hpa::load_manifests(&manifest_file)?;
            check_manifests_against_app(&manifests, &manifest_file, app)?;
            Ok(ResolvedPolicy::Hpa { name: spec.name.clone(), manifest_file, manifests })
        }
        PolicyKind::Rl => unreachable!("rl entries are resolved by rl_policy"),
        PolicyKind::Static => {
            if spec.manifest.is_some() {
                return Err(err("manifest", "a static policy takes no manifest".into()));
            }
            let Some(value) = &spec.replicas else {
                return Err(err("replicas", "missing: give min, max, a number, or a map of service to number".into()));
            };
            let replicas = static_replicas(value, app, matrix_file, at)?;
            Ok(ResolvedPolicy::Static { name: spec.name.clone(), replicas })
        }
    }
}

/// Resolves a static policy's `replicas` value for every service; an error names `{at}.replicas` or a service in it.
fn static_replicas(
    value: &serde_json::Value,
    app: &AppModel,
    matrix_file: &Path,
    at: &str,
) -> Result<BTreeMap<String, u32>, ConfigError> {
    let err = |service: Option<&str>, message: String| {
        let field = match service {
            None => format!("{at}.replicas"),
            Some(name) => format!("{at}.replicas.{name}"),
        };
        ConfigError::new(matrix_file, field, message)
    };
    // `service`: where a count given for one service was written.
    let check = |name: &str, count: u64, service: Option<&str>| -> Result<u32, ConfigError> {
        let limits = &app.services[app.service_index(name).expect("known service")].replicas;
        if count < limits.min as u64 || count > limits.max as u64 {
            return Err(err(
                service,
                format!("{count} replicas for {name:?} is outside {}..{}", limits.min, limits.max),
            ));
        }
        Ok(count as u32)
    };
    let mut out = BTreeMap::new();
    match value {
        serde_json::Value::String(word) if word == "min" || word == "max" => {
            for s in &app.services {
                out.insert(s.name.clone(), if word == "min" { s.replicas.min } else { s.replicas.max });
            }
        }
        serde_json::Value::Number(n) if n.as_u64().is_some() => {
            for s in &app.services {
                out.insert(s.name.clone(), check(&s.name, n.as_u64().expect("checked"), None)?);
            }
        }
        serde_json::Value::Object(map) => {
            for s in &app.services {
                out.insert(s.name.clone(), s.replicas.initial());
            }
            for (name, count) in map {
                if app.service_index(name).is_none() {
                    return Err(err(Some(name), format!("unknown service {name:?} of app {:?}", app.name)));
                }
                let Some(count) = count.as_u64() else {
                    return Err(err(Some(name), format!("must be a whole number, got {count}")));
                };
                out.insert(name.clone(), check(name, count, Some(name))?);
            }
        }
        other => return Err(err(None, format!("must be min, max, a whole number or a map, got {other}"))),
    }
    Ok(out)
}
