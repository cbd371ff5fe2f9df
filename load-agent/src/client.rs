//! A typed client of the agent's control API (the routes of [`crate::protocol`]), for `orch` and scripts.
//!
//! ```no_run
//! # async fn demo(start: load_agent::protocol::StartRun) -> Result<(), load_agent::client::ClientError> {
//! use load_agent::client::AgentClient;
//! let agent = AgentClient::new("http://10.0.0.7:8089", Some("token".into()));
//! agent.ensure_compatible(&agent.info().await?)?;
//! let run = agent.start_run(&start).await?.run_id;
//! let windows = agent.windows(&run, 0).await?.windows;
//! # Ok(()) }
//! ```
//!
//! Every error names the agent's URL, so a controller of several agents can say which one failed.

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::de::DeserializeOwned;

use crate::protocol::{
    AgentInfo, ApiError, ChangeRun, FileList, Health, PROTOCOL_VERSION, RunCreated, RunList, RunStatus, StartRun,
    WindowList,
};
use crate::stats::StatsSnapshot;

#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// The agent answered with an error status; `error` is its [`ApiError`] (naming the field for a 400).
    Http { agent: String, status: u16, error: ApiError },
    /// The agent could not be reached, or the connection broke.
    Transport { agent: String, message: String },
    /// The agent answered something this client does not understand (e.g. another protocol version).
    Protocol { agent: String, message: String },
}

impl ClientError {
    /// The agent's URL.
    pub fn agent(&self) -> &str {
        match self {
            ClientError::Http { agent, .. }
            | ClientError::Transport { agent, .. }
            | ClientError::Protocol { agent, .. } => agent,
        }
    }

    /// The HTTP status, for errors the agent answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
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

/// A client of one agent.
#[derive(Clone)]
pub struct AgentClient {
    base: String,
    /// The parsed base URL, or why it does not parse (reported by every call).
    url: Result<Url, String>,
    token: Option<String>,
    http: reqwest::Client,
}

impl fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the token.
        f.debug_struct("AgentClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

impl AgentClient {
    /// A client of the agent at `base_url` (e.g. `http://10.0.0.5:8089`), sending `token` as a bearer token.
    pub fn new(base_url: &str, token: Option<String>) -> AgentClient {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            // The agent closes connections idle for 60 s (--idle-timeout): drop ours first, so a poll never lands
            // on a connection the agent is closing.
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("the HTTP client builds with these settings");
        let base = base_url.trim_end_matches('/').to_string();
        let url = Url::parse(&base)
            .map_err(|e| format!("bad agent URL: {e}"))
            .and_then(|url| if url.cannot_be_a_base() { Err("bad agent URL: not http(s)".into()) } else { Ok(url) });
        AgentClient { base, url, token: token.filter(|t| !t.is_empty()), http }
    }

    /// The agent's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn protocol(&self, message: impl Into<String>) -> ClientError {
        ClientError::Protocol { agent: self.base.clone(), message: message.into() }
    }

    /// The URL of a route, each segment percent-encoded (a file name cannot change the route).
    fn endpoint(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut url = self.url.clone().map_err(|message| self.protocol(message))?;
        url.path_segments_mut().map_err(|()| self.protocol("bad agent URL"))?.pop_if_empty().extend(segments);
        Ok(url)
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
            error: match String::from_utf8_lossy(&bytes).trim() {
                "" => status.canonical_reason().unwrap_or("error").to_string(),
                text => text.chars().take(200).collect(),
            },
            field: None,
        });
        Err(ClientError::Http { agent: self.base.clone(), status: status.as_u16(), error })
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let bytes = self.send_raw(request).await?;
        serde_json::from_slice(&bytes).map_err(|e| self.protocol(format!("unexpected answer: {e}")))
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T, ClientError> {
        self.send(self.http.get(self.endpoint(segments)?)).await
    }

    /// GET /v1/health (open without a token).
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get(&["v1", "health"]).await
    }

    /// GET /v1/info: version, protocol version, cores, limits, active runs.
    pub async fn info(&self) -> Result<AgentInfo, ClientError> {
        self.get(&["v1", "info"]).await
    }

    /// Fails unless the agent speaks this client's protocol version.
    pub fn ensure_compatible(&self, info: &AgentInfo) -> Result<(), ClientError> {
        if info.protocol_version == PROTOCOL_VERSION {
            return Ok(());
        }
        Err(self.protocol(format!(
            "speaks protocol version {} (load-agent {}); this client needs version {PROTOCOL_VERSION}: \
             run the same load-agent release on both sides",
            info.protocol_version, info.version
        )))
    }

    /// POST /v1/runs: starts a run; it then follows its plan with no further call.
    pub async fn start_run(&self, start: &StartRun) -> Result<RunCreated, ClientError> {
        self.send(self.http.post(self.endpoint(&["v1", "runs"])?).json(start)).await
    }

    /// GET /v1/runs: every run the agent knows, oldest first.
    pub async fn runs(&self) -> Result<RunList, ClientError> {
        self.get(&["v1", "runs"]).await
    }

    /// GET /v1/runs/{id}: the run's status with its last closed window.
    pub async fn status(&self, run: &str) -> Result<RunStatus, ClientError> {
        self.get(&["v1", "runs", run]).await
    }

    /// GET /v1/runs/{id}/windows?since=N: closed windows from index `since` on.
    pub async fn windows(&self, run: &str, since: u64) -> Result<WindowList, ClientError> {
        let mut url = self.endpoint(&["v1", "runs", run, "windows"])?;
        url.query_pairs_mut().append_pair("since", &since.to_string());
        self.send(self.http.get(url)).await
    }

    /// GET /v1/runs/{id}/stats: cumulative statistics with histograms (merge several agents' exactly).
    pub async fn stats(&self, run: &str) -> Result<StatsSnapshot, ClientError> {
        self.get(&["v1", "runs", run, "stats"]).await
    }

    /// PATCH /v1/runs/{id}: a new user target or shape from now on.
    pub async fn change(&self, run: &str, change: &ChangeRun) -> Result<RunStatus, ClientError> {
        self.send(self.http.patch(self.endpoint(&["v1", "runs", run])?).json(change)).await
    }

    /// POST /v1/runs/{id}/stop (idempotent).
    pub async fn stop(&self, run: &str) -> Result<RunStatus, ClientError> {
        self.send(self.http.post(self.endpoint(&["v1", "runs", run, "stop"])?)).await
    }

    /// GET /v1/runs/{id}/files
    pub async fn files(&self, run: &str) -> Result<FileList, ClientError> {
        self.get(&["v1", "runs", run, "files"]).await
    }

    /// GET /v1/runs/{id}/files/{name}: the file's bytes.
    pub async fn download(&self, run: &str, name: &str) -> Result<Vec<u8>, ClientError> {
        self.send_raw(self.http.get(self.endpoint(&["v1", "runs", run, "files", name])?)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::{StatusCode, Uri};

    use super::*;

    /// An in-process stand-in for an agent: records each request's URI and authorization, answers `reply`.
    async fn mock(reply: (StatusCode, &'static str)) -> (String, Arc<Mutex<Vec<(String, Option<String>)>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: axum::http::HeaderMap| {
            let log = log.clone();
            async move {
                let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string());
                log.lock().unwrap().push((uri.to_string(), auth));
                reply
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    #[tokio::test]
    async fn requests_carry_the_token_and_encoded_paths() {
        let (url, seen) = mock((StatusCode::OK, "abc")).await;
        let client = AgentClient::new(&format!("{url}/"), Some("tok".into()));
        assert_eq!(client.download("0123456789abcdef", "../status.json").await.unwrap(), b"abc");
        assert_eq!(client.download("0123456789abcdef", "a b?.csv").await.unwrap(), b"abc");
        let err = client.windows("0123456789abcdef", 7).await.unwrap_err();
        assert!(matches!(err, ClientError::Protocol { .. }), "{err}");
        assert!(err.to_string().starts_with(&format!("agent {url}: unexpected answer")), "{err}");
        let seen = seen.lock().unwrap().clone();
        let uris: Vec<&str> = seen.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(
            uris,
            [
                "/v1/runs/0123456789abcdef/files/..%2Fstatus.json",
                "/v1/runs/0123456789abcdef/files/a%20b%3F.csv",
                "/v1/runs/0123456789abcdef/windows?since=7",
            ]
        );
        assert!(seen.iter().all(|(_, auth)| auth.as_deref() == Some("Bearer tok")));
    }

    #[tokio::test]
    async fn error_answers_become_typed_errors_naming_the_agent() {
        let (url, _) =
            mock((StatusCode::BAD_REQUEST, r#"{"error": "must be at least 1", "field": "agent_count"}"#)).await;
        let err = AgentClient::new(&url, None).runs().await.unwrap_err();
        assert_eq!(err.status(), Some(400));
        assert_eq!(err.agent(), url);
        assert_eq!(err.to_string(), format!("agent {url}: 400: agent_count: must be at least 1"));

        let (url, _) = mock((StatusCode::BAD_GATEWAY, "")).await;
        let err = AgentClient::new(&url, None).info().await.unwrap_err();
        assert_eq!(err.to_string(), format!("agent {url}: 502: Bad Gateway"));

        let err = AgentClient::new("not a url", None).health().await.unwrap_err();
        assert!(matches!(err, ClientError::Protocol { .. }) && err.to_string().contains("not a url"), "{err}");
        let debug = format!("{:?}", AgentClient::new(&url, Some("secret".into())));
        assert!(!debug.contains("secret"), "{debug}");
    }
}
