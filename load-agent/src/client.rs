//! A typed client of the agent's control API, for `orch` and scripts. Every error names the agent.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::protocol::{
    AgentInfo, ApiError, ChangeRun, FileList, Health, PROTOCOL_VERSION, RunCreated, RunList, RunStatus, StartRun,
    WindowList,
};
use crate::stats::StatsSnapshot;

#[derive(Debug)]
pub enum ClientError {
    /// The agent answered with an error status.
    Http { agent: String, status: u16, error: ApiError },
    /// The agent could not be reached, or the connection broke.
    Transport { agent: String, message: String },
    /// The agent answered something this client does not understand (e.g. another protocol version).
    Protocol { agent: String, message: String },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Http { agent, status, error } => match &error.field {
                Some(field) => write!(f, "agent {agent}: {status}: {field}: {}", error.error),
                None => write!(f, "agent {agent}: {status}: {}", error.error),
            },
            ClientError::Transport { agent, message } => write!(f, "agent {agent}: unreachable: {message}"),
            ClientError::Protocol { agent, message } => write!(f, "agent {agent}: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

#[derive(Clone)]
pub struct AgentClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl AgentClient {
    /// A client of the agent at `base_url` (e.g. `http://10.0.0.5:8089`), sending `token` when given.
    pub fn new(base_url: &str, token: Option<String>) -> AgentClient {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        AgentClient { base: base_url.trim_end_matches('/').to_string(), token, http }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let bytes = self.send_raw(request).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol { agent: self.base.clone(), message: format!("unexpected answer: {e}") })
    }

    async fn send_raw(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, ClientError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let transport = |e: reqwest::Error| ClientError::Transport { agent: self.base.clone(), message: e.to_string() };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let error = serde_json::from_slice::<ApiError>(&bytes).unwrap_or_else(|_| ApiError {
            error: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            field: None,
        });
        Err(ClientError::Http { agent: self.base.clone(), status: status.as_u16(), error })
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.send(self.get("/v1/health")).await
    }

    pub async fn info(&self) -> Result<AgentInfo, ClientError> {
        self.send(self.get("/v1/info")).await
    }

    /// Fails unless the agent speaks this client's protocol version.
    pub fn ensure_compatible(&self, info: &AgentInfo) -> Result<(), ClientError> {
        if info.protocol_version == PROTOCOL_VERSION {
            return Ok(());
        }
        Err(ClientError::Protocol {
            agent: self.base.clone(),
            message: format!(
                "speaks protocol version {} (load-agent {}); this orch needs version {PROTOCOL_VERSION}",
                info.protocol_version, info.version
            ),
        })
    }

    pub async fn start_run(&self, start: &StartRun) -> Result<RunCreated, ClientError> {
        self.send(self.http.post(format!("{}/v1/runs", self.base)).json(start)).await
    }

    pub async fn runs(&self) -> Result<RunList, ClientError> {
        self.send(self.get("/v1/runs")).await
    }

    pub async fn status(&self, run: &str) -> Result<RunStatus, ClientError> {
        self.send(self.get(&format!("/v1/runs/{run}"))).await
    }

    /// Closed windows from index `since` on.
    pub async fn windows(&self, run: &str, since: u64) -> Result<WindowList, ClientError> {
        self.send(self.get(&format!("/v1/runs/{run}/windows?since={since}"))).await
    }

    pub async fn stats(&self, run: &str) -> Result<StatsSnapshot, ClientError> {
        self.send(self.get(&format!("/v1/runs/{run}/stats"))).await
    }

    pub async fn change(&self, run: &str, change: &ChangeRun) -> Result<RunStatus, ClientError> {
        self.send(self.http.patch(format!("{}/v1/runs/{run}", self.base)).json(change)).await
    }

    pub async fn stop(&self, run: &str) -> Result<RunStatus, ClientError> {
        self.send(self.http.post(format!("{}/v1/runs/{run}/stop", self.base))).await
    }

    pub async fn files(&self, run: &str) -> Result<FileList, ClientError> {
        self.send(self.get(&format!("/v1/runs/{run}/files"))).await
    }

    pub async fn download(&self, run: &str, name: &str) -> Result<Vec<u8>, ClientError> {
        self.send_raw(self.get(&format!("/v1/runs/{run}/files/{name}"))).await
    }
}
