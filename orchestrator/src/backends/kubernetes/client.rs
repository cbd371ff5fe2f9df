//! A kube client from the kubeconfig, found as kubectl finds it: an explicit file, else KUBECONFIG, else
//! ~/.kube/config, else the pod's service account (in-cluster). `http://` servers (`kubectl proxy`, test fakes)
//! work as well as `https://` ones (rustls).

use std::path::Path;

use anyhow::{Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::settings::KubernetesRun;

/// The client config of a cluster: `kubeconfig` (else kubectl's search), `context` (else the current one).
pub async fn config(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Config> {
    let options = KubeConfigOptions { context: context.map(str::to_string), ..KubeConfigOptions::default() };
    if let Some(path) = kubeconfig {
        let kubeconfig =
            Kubeconfig::read_from(path).with_context(|| format!("reading the kubeconfig {}", path.display()))?;
        return Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .with_context(|| format!("using the kubeconfig {}", path.display()));
    }
    if context.is_some() {
        // A context only exists in a kubeconfig: no in-cluster fallback.
        return Config::from_kubeconfig(&options)
            .await
            .context("reading the kubeconfig (KUBECONFIG or ~/.kube/config)");
    }
    Config::infer().await.context(
        "finding the cluster: no kubeconfig (KUBECONFIG, ~/.kube/config) and not running in a pod; set \
         kubernetes.kubeconfig or KUBECONFIG",
    )
}

/// A client of a cluster, and its server URL for messages.
pub async fn connect_to(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<(Client, String)> {
    let config = config(kubeconfig, context).await?;
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).with_context(|| format!("building a client for {server}"))?;
    Ok((client, server))
}

/// A client of `run`'s cluster.
pub async fn connect(run: &KubernetesRun) -> Result<(Client, String)> {
    connect_to(run.kubeconfig.as_deref(), run.context.as_deref()).await
}
