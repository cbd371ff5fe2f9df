//! `executor: kubernetes`: each cell attempt runs as a Kubernetes Job running `orch cell` (docs/scale-out.md).
//!
//! The settings are the matrix's `executor:` section ([`crate::matrix::executor`]).
//!
//! The supervisor is unchanged: for each attempt it starts a local `orch cell-job` process (instead of
//! `orch cell`) that creates the ConfigMap (config.yaml, status.json) and the Job, follows its pod, answers
//! SIGTERM by deleting the Job (the kubelet then sends the cell SIGTERM and its grace), prints the cell
//! container's log (stderr.log) and exits with the container's exit code: 0, 1, 75, 101, 130 as `orch cell`;
//! an evicted, OOM-killed or vanished pod is a transient failure (75). Timeouts, retries and the failure budget
//! stay the supervisor's. Results reach logs/<run-tag>/ through the shared claim (mounted with subPath
//! <run-tag>). At the end of the run (and on a second Ctrl-C) every Job and ConfigMap labelled with the run is
//! deleted and orch waits until the API no longer lists them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::json;

use crate::backends::kubernetes::act::label_value;
use crate::backends::kubernetes::api::explain;
use crate::cell::CancelToken;
use crate::cell::outcome::CANCEL_GRACE;
use crate::cell::outcome::{EXIT_CANCELLED, EXIT_FAILED, EXIT_TRANSIENT};
use crate::matrix::executor::JobExecutor;
use crate::run_folder;

/// The run folder's copy of the run's [`JobExecutor`].
pub const RUN_FILE: &str = "executor.json";
/// Where the results claim is mounted in a cell's pod.
pub const MOUNT: &str = "/run/orch";
/// Environment passed from `orch run` to the cells' containers when set (fault injection for tests).
const PASSED_ENV: [&str; 1] = [crate::run::fault::ENV_VAR];

impl JobExecutor {
    /// The executor with the variables of this `orch run` to pass on.
    pub fn with_environment(mut self) -> JobExecutor {
        for name in PASSED_ENV {
            if let Ok(value) = std::env::var(name) {
                self.env.insert(name.to_string(), value);
            }
        }
        self
    }
}

/// A DNS label from free text: lowercase letters, digits and '-'.
fn dns_part(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out.truncate(max);
    out.trim_matches('-').to_string()
}

/// The 8 hex digits that end a cell id.
fn hash8(cell_id: &str) -> &str {
    cell_id.rsplit('-').next().unwrap_or(cell_id)
}

/// `orch-<tag>-<hash8>`, cut to stay a DNS label with room for `-<attempt>`.
pub fn config_map_name(tag: &str, cell_id: &str) -> String {
    format!("orch-{}-{}", dns_part(tag, 40), dns_part(hash8(cell_id), 8))
}

pub fn job_name(tag: &str, cell_id: &str, attempt: u32) -> String {
    format!("{}-{attempt}", config_map_name(tag, cell_id))
}

fn labels(tag: &str, cell_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/managed-by".to_string(), "orch".to_string()),
        ("orch.run".to_string(), label_value(tag)),
        ("orch.cell".to_string(), label_value(hash8(cell_id))),
    ])
}

pub fn run_selector(tag: &str) -> String {
    format!("orch.run={}", label_value(tag))
}

/// The ConfigMap carrying the cell's config.yaml and status.json.
pub fn config_map(exec: &JobExecutor, tag: &str, cell_id: &str, cell_dir: &Path) -> Result<ConfigMap> {
    let read = |name: &str| {
        std::fs::read_to_string(cell_dir.join(name))
            .with_context(|| format!("reading {}", cell_dir.join(name).display()))
    };
    let value = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": config_map_name(tag, cell_id), "namespace": exec.namespace, "labels": labels(tag, cell_id)},
        "data": {
            (run_folder::CONFIG_YAML): read(run_folder::CONFIG_YAML)?,
            (run_folder::STATUS_JSON): read(run_folder::STATUS_JSON)?,
        }
    });
    serde_json::from_value(value).context("building the ConfigMap")
}

/// The Job of one attempt: an init container copies the ConfigMap into the cell's folder on the claim, then
/// `orch cell` runs; no retries of its own (backoffLimit 0: the supervisor retries).
pub fn job(exec: &JobExecutor, tag: &str, cell_id: &str, attempt: u32) -> Result<Job> {
    let mut job_labels = labels(tag, cell_id);
    job_labels.insert("orch.attempt".into(), attempt.to_string());
    let resources = json!({"cpu": exec.cpu, "memory": exec.memory});
    let env: Vec<serde_json::Value> = exec.env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
    let copy = format!("mkdir -p {MOUNT}/{cell_id} && cp /config/config.yaml /config/status.json {MOUNT}/{cell_id}/");
    let mut spec = json!({
        "backoffLimit": 0,
        "activeDeadlineSeconds": exec.deadline_s,
        "template": {
            "metadata": {"labels": job_labels},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": CANCEL_GRACE.as_secs() + 4,
                "volumes": [
                    {"name": "results", "persistentVolumeClaim": {"claimName": exec.pvc}},
                    {"name": "config", "configMap": {"name": config_map_name(tag, cell_id)}}
                ],
                "initContainers": [{
                    "name": "config", "image": exec.image, "command": ["sh", "-c", copy],
                    "volumeMounts": [{"name": "results", "mountPath": MOUNT, "subPath": tag},
                                     {"name": "config", "mountPath": "/config"}]
                }],
                "containers": [{
                    "name": "cell", "image": exec.image,
                    "command": ["orch", "cell", "--run-dir", MOUNT, "--cell", cell_id, "--attempt", attempt.to_string()],
                    "env": env,
                    "resources": {"requests": resources, "limits": resources},
                    "volumeMounts": [{"name": "results", "mountPath": MOUNT, "subPath": tag}]
                }]
            }
        }
    });
    if let Some(ttl) = exec.ttl_after_finished_s {
        spec["ttlSecondsAfterFinished"] = ttl.into();
    }
    if let Some(account) = &exec.service_account {
        spec["template"]["spec"]["serviceAccountName"] = account.clone().into();
    }
    let value = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(tag, cell_id, attempt), "namespace": exec.namespace, "labels": job_labels},
        "spec": spec
    });
    serde_json::from_value(value).context("building the Job")
}

/// Why a container waits when waiting will not help: the image cannot be pulled (worth another attempt: a
/// registry can fail for a moment) or the pod's spec is wrong (not worth one).
fn stuck(reason: &str) -> Option<i32> {
    match reason {
        "ErrImagePull" | "ImagePullBackOff" => Some(EXIT_TRANSIENT),
        "InvalidImageName" | "ErrImageNeverPull" | "CreateContainerConfigError" => Some(EXIT_FAILED),
        _ => None,
    }
}

/// How the attempt's pod ended, if it has: the exit code, and why when the cell could not record it itself.
fn pod_outcome(pod: &Pod) -> Option<(i32, Option<String>)> {
    let status = pod.status.as_ref()?;
    let disrupted = status.conditions.iter().flatten().any(|c| c.type_ == "DisruptionTarget" && c.status == "True");
    if status.phase.as_deref() == Some("Failed") && (disrupted || status.reason.as_deref() == Some("Evicted")) {
        let why = status.message.clone().or(status.reason.clone()).unwrap_or_else(|| "disrupted".into());
        return Some((EXIT_TRANSIENT, Some(format!("the cell's pod was evicted or preempted: {why}"))));
    }
    let containers = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    for container in containers {
        if let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref())
            && let Some(reason) = waiting.reason.as_deref()
            && let Some(code) = stuck(reason)
        {
            let message = waiting.message.as_deref().unwrap_or_default();
            let why = format!(
                "container {} ({}) of the cell's pod cannot start: {reason}: {message}",
                container.name, container.image
            );
            return Some((code, Some(why)));
        }
    }
    let cell = status.container_statuses.iter().flatten().find(|c| c.name == "cell")?;
    let terminated = cell.state.as_ref()?.terminated.as_ref()?;
    let code = terminated.exit_code;
    let reason = terminated.reason.clone().unwrap_or_default();
    if reason == "OOMKilled" || code == 137 {
        return Some((EXIT_TRANSIENT, Some(format!("the cell's container was killed ({reason}, exit code {code})"))));
    }
    Some((code, None))
}

/// `orch cell-job`: one attempt of a cell as a Job; returns the exit code for the supervisor.
pub fn run_attempt(run_dir: &Path, cell_id: &str, attempt: u32) -> i32 {
    match attempt_inner(run_dir, cell_id, attempt) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            record_failure(&run_folder::cell_dir(run_dir, cell_id), attempt, &format!("{e:#}"));
            let transient = e.chain().any(|c| c.is::<crate::cell::TransientError>());
            if transient { EXIT_TRANSIENT } else { EXIT_FAILED }
        }
    }
}

fn attempt_inner(run_dir: &Path, cell_id: &str, attempt: u32) -> Result<i32> {
    let exec: JobExecutor = run_folder::read_json(&run_dir.join(RUN_FILE)).context("reading the run's executor")?;
    let tag = run_dir.file_name().and_then(|n| n.to_str()).context("the run folder has no name")?.to_string();
    let cell_dir = run_folder::cell_dir(run_dir, cell_id);
    let cancel = CancelToken::new();
    {
        let cancel = cancel.clone();
        ctrlc::set_handler(move || {
            cancel.cancel();
        })
        .context("handling SIGTERM")?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a runtime")?;
    runtime.block_on(async {
        let (client, server) =
            crate::backends::kubernetes::client::connect_to(exec.kubeconfig.as_deref(), exec.context.as_deref())
                .await?;
        let jobs: Api<Job> = Api::namespaced(client.clone(), &exec.namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &exec.namespace);
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &exec.namespace);
        let map = config_map(&exec, &tag, cell_id, &cell_dir)?;
        let map_name = config_map_name(&tag, cell_id);
        let what = format!("ConfigMap {}/{map_name}", exec.namespace);
        match maps.create(&PostParams::default(), &map).await {
            Ok(_) => {}
            // An earlier attempt's: its data is replaced.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let body = json!({"data": map.data});
                maps.patch(&map_name, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                    .map_err(|e| explain(e, "updating", &what))?;
            }
            Err(e) => return Err(explain(e, "creating", &what)),
        }
        let job = job(&exec, &tag, cell_id, attempt)?;
        let name = job_name(&tag, cell_id, attempt);
        delete_earlier_attempts(&jobs, &tag, cell_id).await?;
        let what = format!("Job {}/{name}", exec.namespace);
        jobs.create(&PostParams::default(), &job).await.map_err(|e| explain(e, "creating", &what))?;
        eprintln!("job {name} created on {server} in namespace {}", exec.namespace);
        let outcome = follow(&jobs, &pods, &name, &cancel).await;
        if let Ok(Ended { pod: Some(pod), .. }) = &outcome {
            let params = LogParams { container: Some("cell".into()), ..LogParams::default() };
            if let Ok(log) = pods.logs(pod, &params).await {
                eprint!("{log}");
            }
        }
        if let Ok(Ended { why: Some(why), .. }) = &outcome {
            eprintln!("error: {why}");
            record_failure(&cell_dir, attempt, why);
        }
        // The attempt is over (or cancelled): its Job goes, so nothing of it keeps running.
        let params =
            DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..DeleteParams::default() };
        let _ = jobs.delete(&name, &params).await;
        Ok(outcome?.code)
    })
}

/// Deletes the Jobs of the cell's earlier attempts still listed (one killed with its `orch cell-job` on a timeout
/// keeps running otherwise) and waits until they are gone: two attempts never write the same cell folder.
async fn delete_earlier_attempts(jobs: &Api<Job>, tag: &str, cell_id: &str) -> Result<()> {
    let selector =
        ListParams::default().labels(&format!("{},orch.cell={}", run_selector(tag), label_value(hash8(cell_id))));
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = jobs.list(&selector).await.map_err(|e| explain(e, "listing", "the cell's earlier Jobs"))?.items;
        if listed.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} earlier Jobs of cell {cell_id} still listed after 30 s", listed.len());
        }
        for job in &listed {
            let name = job.metadata.name.as_deref().unwrap_or_default();
            match jobs.delete(name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(explain(e, "deleting", &format!("Job {name}"))),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How an attempt's Job ended.
struct Ended {
    /// The exit code for the supervisor, as `orch cell`'s.
    code: i32,
    /// The pod, if one ran (its log is the cell's stderr).
    pod: Option<String>,
    /// Why it ended, when the cell could not record that itself (evicted, OOM-killed, lost, the Job failed).
    why: Option<String>,
}

/// Records a failure the cell could not record itself in its status.json, where the supervisor reads it.
fn record_failure(cell_dir: &Path, attempt: u32, message: &str) {
    let Ok(mut status) = run_folder::read_status(cell_dir) else { return };
    if status.attempt == attempt && status.state == crate::run_folder::CellState::Running {
        status.finish(
            crate::run_folder::CellState::Failed,
            Some(message.to_string()),
            Vec::new(),
            run_folder::now_unix_s(),
        );
        if let Err(e) = run_folder::write_status(cell_dir, &status) {
            eprintln!("error: recording the failure in status.json: {e:#}");
        }
    }
}

/// Follows the Job's pod until it ends; SIGTERM deletes the Job (foreground: the kubelet stops the cell with its
/// grace). Returns the exit code and the pod's name.
async fn follow(jobs: &Api<Job>, pods: &Api<Pod>, name: &str, cancel: &CancelToken) -> Result<Ended> {
    let selector = ListParams::default().labels(&format!("job-name={name}"));
    let mut seen: Option<String> = None;
    let mut cancelled_at: Option<Instant> = None;
    loop {
        if cancel.is_cancelled() && cancelled_at.is_none() {
            cancelled_at = Some(Instant::now());
            let params =
                DeleteParams { propagation_policy: Some(PropagationPolicy::Foreground), ..DeleteParams::default() };
            jobs.delete(name, &params).await.map_err(|e| explain(e, "deleting", &format!("Job {name}")))?;
        }
        let listed = pods.list(&selector).await.map_err(|e| explain(e, "listing", &format!("the pods of Job {name}")));
        match listed {
            Ok(list) => match list.items.first() {
                Some(pod) => {
                    seen = pod.metadata.name.clone();
                    if let Some((code, why)) = pod_outcome(pod) {
                        return Ok(Ended { code, pod: seen, why });
                    }
                }
                None if cancelled_at.is_some() => return Ok(Ended { code: EXIT_CANCELLED, pod: seen, why: None }),
                None if seen.is_some() => {
                    let why = format!("the pod of Job {name} disappeared before it finished (node lost?)");
                    return Ok(Ended { code: EXIT_TRANSIENT, pod: None, why: Some(why) });
                }
                None => {}
            },
            Err(e) if cancelled_at.is_some() => return Err(e),
            Err(e) => eprintln!("warning: {e:#}"),
        }
        if let Ok(job) = jobs.get(name).await
            && let Some(failed) = job
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Failed" && c.status == "True")
        {
            // The pod may have ended since it was listed: its exit code, when it has one, says more.
            if let Ok(list) = pods.list(&selector).await
                && let Some(pod) = list.items.first()
                && let Some((code, why)) = pod_outcome(pod)
            {
                return Ok(Ended { code, pod: pod.metadata.name.clone(), why });
            }
            let why = format!("Job {name} failed: {}", failed.message.or(failed.reason).unwrap_or_default());
            return Ok(Ended { code: EXIT_FAILED, pod: seen, why: Some(why) });
        }
        if cancelled_at.is_some_and(|t| t.elapsed() > CANCEL_GRACE + Duration::from_secs(2)) {
            return Ok(Ended { code: EXIT_CANCELLED, pod: seen, why: None });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Deletes every Job, pod and ConfigMap of the run and waits (bounded) until the API lists none. Called when no
/// attempt of this `orch run` is alive (before the first, after the last, on a second Ctrl-C), so whatever is still
/// running is stale and is killed at once: its pods are deleted with grace 0 too (the garbage collector would give
/// a deleted Job's pods their full grace), so it cannot overwrite the state its cell's folder records.
pub fn clean_up_run(exec: &JobExecutor, tag: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime
        .block_on(async {
            let (client, _) =
                crate::backends::kubernetes::client::connect_to(exec.kubeconfig.as_deref(), exec.context.as_deref())
                    .await?;
            let jobs: Api<Job> = Api::namespaced(client.clone(), &exec.namespace);
            let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &exec.namespace);
            let pods: Api<Pod> = Api::namespaced(client, &exec.namespace);
            let selector = ListParams::default().labels(&run_selector(tag));
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let listed_jobs =
                    jobs.list(&selector).await.map_err(|e| explain(e, "listing", "the run's Jobs"))?.items;
                let listed_maps =
                    maps.list(&selector).await.map_err(|e| explain(e, "listing", "the run's ConfigMaps"))?.items;
                let listed_pods =
                    pods.list(&selector).await.map_err(|e| explain(e, "listing", "the run's pods"))?.items;
                if listed_jobs.is_empty() && listed_maps.is_empty() && listed_pods.is_empty() {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    bail!(
                        "{} Jobs, {} pods and {} ConfigMaps of run {tag} still listed after 30 s",
                        listed_jobs.len(),
                        listed_pods.len(),
                        listed_maps.len()
                    );
                }
                for job in &listed_jobs {
                    let _ = jobs.delete(job.metadata.name.as_deref().unwrap_or_default(), &params).await;
                }
                for pod in &listed_pods {
                    let _ = pods.delete(pod.metadata.name.as_deref().unwrap_or_default(), &params).await;
                }
                for map in &listed_maps {
                    let _ = maps.delete(map.metadata.name.as_deref().unwrap_or_default(), &params).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .map_err(|e: anyhow::Error| anyhow!("cleaning up run {tag}'s Jobs: {e:#}"))
}

/// `--dry-run` with the Job executor: the objects each cell's first attempt would create.
pub fn print_dry_run(exec: &JobExecutor, tag: &str, cells: &[crate::cell::Cell]) -> Result<()> {
    for cell in cells {
        let job = job(exec, tag, &cell.id, 1)?;
        let map_path = format!("/api/v1/namespaces/{}/configmaps", exec.namespace);
        let job_path = format!("/apis/batch/v1/namespaces/{}/jobs", exec.namespace);
        let map = json!({"metadata": {"name": config_map_name(tag, &cell.id), "labels": labels(tag, &cell.id)},
                         "data": {(run_folder::CONFIG_YAML): "<the cell's config.yaml>",
                                  (run_folder::STATUS_JSON): "<its status>"}});
        println!("dry-run: POST {map_path} {map}");
        println!("dry-run: POST {job_path} {}", serde_json::to_string(&job)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::executor::{ExecutorSection, is_dns_label, resolve};

    fn exec() -> JobExecutor {
        let section: ExecutorSection = load_agent::yaml::from_str(
            "kind: kubernetes\nnamespace: orch-runs\nimage: orch:abc\nresults: {pvc: orch-results}\nttl_after_finished: 1h\n",
            Path::new("m.yaml"),
        )
        .unwrap();
        resolve(Some(&section), Duration::from_secs(600), Path::new("m.yaml")).unwrap().unwrap()
    }

    #[test]
    fn names_are_dns_labels_within_63_characters() {
        let id = "online-boutique.hpa-cpu-60.peak.s1-3f2c1e0a";
        let name = job_name("A_very_Long.run-tag-that-goes-on-and-on-and-on-and-on", id, 12);
        assert!(name.len() <= 63 && is_dns_label(&name), "{name}");
        assert!(name.ends_with("-3f2c1e0a-12"), "{name}");
    }

    #[test]
    fn the_job_runs_orch_cell_on_the_claim_without_retries_of_its_own() {
        let job = job(&exec(), "t1", "shop.static.steady.s1-0123abcd", 2).unwrap();
        let value = serde_json::to_value(&job).unwrap();
        assert_eq!(value["spec"]["backoffLimit"], 0);
        assert_eq!(value["spec"]["activeDeadlineSeconds"], 660);
        assert_eq!(value["spec"]["ttlSecondsAfterFinished"], 3600);
        let pod = &value["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(
            pod["containers"][0]["command"],
            json!([
                "orch",
                "cell",
                "--run-dir",
                "/run/orch",
                "--cell",
                "shop.static.steady.s1-0123abcd",
                "--attempt",
                "2"
            ])
        );
        assert_eq!(pod["containers"][0]["volumeMounts"][0]["subPath"], "t1");
        assert_eq!(pod["volumes"][0]["persistentVolumeClaim"]["claimName"], "orch-results");
        assert_eq!(value["metadata"]["labels"]["orch.attempt"], "2");
    }

    #[test]
    fn bad_sections_name_their_field() {
        for (yaml, field) in [
            ("kind: kubernetes\nresults: {pvc: r}", "executor.image"),
            ("kind: kubernetes\nimage: i", "executor.results"),
            ("kind: kubernetes\nimage: i\nresults: {collect: true}", "executor.results.collect"),
            ("kind: kubernetes\nimage: i\nresults: {pvc: R}", "executor.results.pvc"),
            ("kind: kubernetes\nimage: i\nresults: {pvc: r}\nnamespace: A", "executor.namespace"),
            (
                "kind: kubernetes\nimage: i\nresults: {pvc: r}\nresources: {cpu: x, memory: 1Gi}",
                "executor.resources.cpu",
            ),
            ("image: i", "executor.kind"),
        ] {
            let section: ExecutorSection = load_agent::yaml::from_str(yaml, Path::new("m.yaml")).unwrap();
            let e = resolve(Some(&section), Duration::from_secs(1), Path::new("m.yaml")).unwrap_err();
            assert_eq!(e.field, field, "{yaml}: {e}");
        }
    }
}
