//! HPA manifests checked against the app they scale: every target a service of the app, each scaled by one
//! manifest, replica bounds inside what the app allows. Both hpa policies and RL warm starts read manifests.

use std::collections::BTreeMap;
use std::path::Path;

use load_agent::yaml::ConfigError;

use crate::app::AppModel;
use crate::hpa::HorizontalPodAutoscaler;

pub(crate) fn check_manifests_against_app(
    manifests: &[HorizontalPodAutoscaler],
    file: &Path,
    app: &AppModel,
) -> Result<(), ConfigError> {
    let mut targeted = BTreeMap::new();
    for (d, hpa) in manifests.iter().enumerate() {
        let at = format!("document {}", d + 1);
        let target = &hpa.spec.scale_target_ref.name;
        let Some(index) = app.service_index(target) else {
            return Err(ConfigError::new(
                file,
                format!("{at}: spec.scaleTargetRef.name"),
                format!("deployment {target:?} is not a service of app {:?}", app.name),
            ));
        };
        if let Some(previous) = targeted.insert(target.clone(), d + 1) {
            return Err(ConfigError::new(
                file,
                format!("{at}: spec.scaleTargetRef.name"),
                format!("deployment {target:?} is already scaled by document {previous}"),
            ));
        }
        let service = &app.services[index];
        let min = hpa.spec.min_replicas.unwrap_or(1);
        if min < service.replicas.min as i32 || hpa.spec.max_replicas > service.replicas.max as i32 {
            return Err(ConfigError::new(
                file,
                format!("{at}: spec"),
                format!(
                    "replicas {min}..{} fall outside what app {:?} allows for {target:?} ({}..{})",
                    hpa.spec.max_replicas, app.name, service.replicas.min, service.replicas.max
                ),
            ));
        }
    }
    if manifests.is_empty() {
        return Err(ConfigError::new(file, "", "holds no HorizontalPodAutoscaler"));
    }
    Ok(())
}
