//! Checks before a cell starts, one clear error per agent: reachable, the token accepted, the same protocol
//! version, not busy with another run, and allowed to run its share of the users.

use std::time::Duration;

use load_agent::client::{AgentClient, ClientError};

/// How long a pre-flight call may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// An agent to check: its name, client and where its token comes from (for the message).
pub struct Candidate<'a> {
    pub name: &'a str,
    pub client: &'a AgentClient,
    pub token_env: Option<&'a str>,
}

/// Why an agent may not take part; `who` names it as [`describe`] does.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("{who} is unreachable: no answer within {} s", TIMEOUT.as_secs())]
    Silent { who: String },
    #[error("{who} is unreachable: {message}")]
    Unreachable { who: String, message: String },
    #[error("{who} does not answer as a load agent: {detail}")]
    NotAnAgent { who: String, detail: String },
    #[error("{who} refused the token (401): {hint}")]
    TokenRefused { who: String, hint: String },
    /// Its info call failed, or it speaks another protocol version.
    #[error("{who}: {detail}")]
    Refused { who: String, detail: String },
    #[error("{who} is busy: {active_runs} run(s) going on; wait for them to end or stop them (POST /v1/runs/ID/stop)")]
    Busy { who: String, active_runs: usize },
    #[error("{who} allows at most {max_users} users per run (--max-users), and its share of this scenario is {share}")]
    TooManyUsers { who: String, max_users: u32, share: u64 },
}

fn describe(name: &str, url: &str) -> String {
    if name.is_empty() { format!("agent {url}") } else { format!("agent {name} ({url})") }
}

/// Checks one agent that must run `users` users at most; the error names it.
pub async fn check(agent: &Candidate<'_>, users: u64) -> Result<(), PreflightError> {
    let url = agent.client.url();
    let who = describe(agent.name, url);
    let timed_out = || PreflightError::Silent { who: who.clone() };
    match tokio::time::timeout(TIMEOUT, agent.client.health()).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(ClientError::Transport { message, .. })) => return Err(PreflightError::Unreachable { who, message }),
        Ok(Err(e)) => return Err(PreflightError::NotAnAgent { who, detail: strip(&e) }),
        Ok(Ok(_)) => {}
    }
    let info = match tokio::time::timeout(TIMEOUT, agent.client.info()).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(e)) if e.status() == Some(401) => {
            let hint = match agent.token_env {
                Some(variable) if std::env::var_os(variable).is_some_and(|v| !v.is_empty()) => {
                    format!("the token in {variable} is not the agent's")
                }
                Some(variable) => format!("{variable} is not set; put the agent's token there"),
                None => "give the agent's token".to_string(),
            };
            return Err(PreflightError::TokenRefused { who, hint });
        }
        Ok(Err(e)) => return Err(PreflightError::Refused { who, detail: strip(&e) }),
        Ok(Ok(info)) => info,
    };
    if let Err(e) = agent.client.ensure_compatible(&info) {
        return Err(PreflightError::Refused { who, detail: strip(&e) });
    }
    if info.active_runs > 0 {
        return Err(PreflightError::Busy { who, active_runs: info.active_runs });
    }
    if (info.limits.max_users as u64) < users {
        return Err(PreflightError::TooManyUsers { who, max_users: info.limits.max_users, share: users });
    }
    Ok(())
}

/// A client error's text without the `agent URL: ` prefix the caller already gives.
pub fn strip(error: &ClientError) -> String {
    let text = error.to_string();
    let prefix = format!("agent {}: ", error.agent());
    text.strip_prefix(&prefix).map(str::to_string).unwrap_or(text)
}
