//! Fault injection, so tests can make chosen cells panic, hang, crash or run slowly through the real binary.
//!
//! `ORCH_FAULT_INJECT="<cell-glob>=<fault>[;<cell-glob>=<fault>...]"`, honoured only by `orch cell` (the process
//! that runs one cell), never by the matrix format. Faults: `panic`, `hang` (sleeps forever, ignoring
//! cancellation), `abort` (dies without writing a status), `error` (a permanent failure), `transient:N` (fails
//! transiently on attempts 1..=N), `sleep:MS` (waits MS milliseconds, honouring cancellation, then runs the cell).
//! The first matching rule applies. `orch run` refuses a malformed value and warns when one is set, so it cannot
//! fire by accident unnoticed.

use std::time::Duration;

use glob::Pattern;

pub const ENV_VAR: &str = "ORCH_FAULT_INJECT";

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Panic,
    Hang,
    Abort,
    Error,
    Transient { attempts: u32 },
    Sleep(Duration),
}

/// A fault plan that does not parse; the message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum FaultPlanError {
    #[error("{ENV_VAR}: {0:?} is not <cell-glob>=<fault>")]
    NotARule(String),
    #[error("{ENV_VAR}: bad glob {glob:?}: {error}")]
    BadGlob { glob: String, error: glob::PatternError },
    #[error("{ENV_VAR}: unknown fault {0:?}")]
    UnknownFault(String),
    #[error("{ENV_VAR}: transient:{0}: not a count of attempts")]
    NotAttempts(String),
    #[error("{ENV_VAR}: sleep:{0}: not a number of milliseconds")]
    NotMilliseconds(String),
}

#[derive(Debug, Clone)]
pub struct FaultPlan {
    rules: Vec<(Pattern, Fault)>,
}

impl FaultPlan {
    /// The plan in the environment, if the variable is set.
    pub fn from_env() -> Result<Option<FaultPlan>, FaultPlanError> {
        match std::env::var(ENV_VAR) {
            Ok(text) if !text.trim().is_empty() => FaultPlan::parse(&text).map(Some),
            _ => Ok(None),
        }
    }

    pub fn parse(text: &str) -> Result<FaultPlan, FaultPlanError> {
        let mut rules = Vec::new();
        for rule in text.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let Some((glob, fault)) = rule.split_once('=') else {
                return Err(FaultPlanError::NotARule(rule.to_string()));
            };
            let pattern =
                Pattern::new(glob.trim()).map_err(|error| FaultPlanError::BadGlob { glob: glob.to_string(), error })?;
            let fault = match fault.trim().split_once(':') {
                None => match fault.trim() {
                    "panic" => Fault::Panic,
                    "hang" => Fault::Hang,
                    "abort" => Fault::Abort,
                    "error" => Fault::Error,
                    other => return Err(FaultPlanError::UnknownFault(other.to_string())),
                },
                Some(("transient", n)) => {
                    Fault::Transient { attempts: n.parse().map_err(|_| FaultPlanError::NotAttempts(n.to_string()))? }
                }
                Some(("sleep", ms)) => Fault::Sleep(Duration::from_millis(
                    ms.parse().map_err(|_| FaultPlanError::NotMilliseconds(ms.to_string()))?,
                )),
                Some(_) => return Err(FaultPlanError::UnknownFault(fault.to_string())),
            };
            rules.push((pattern, fault));
        }
        Ok(FaultPlan { rules })
    }

    pub fn for_cell(&self, cell_id: &str) -> Option<&Fault> {
        self.rules.iter().find(|(pattern, _)| pattern.matches(cell_id)).map(|(_, fault)| fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_the_first_match_wins() {
        let plan = FaultPlan::parse("*.static-max.*=panic; *.s2-*=sleep:250;*=transient:1").unwrap();
        assert_eq!(plan.for_cell("ob.static-max.peak.s2-abc"), Some(&Fault::Panic));
        assert_eq!(plan.for_cell("ob.hpa.peak.s2-abc"), Some(&Fault::Sleep(Duration::from_millis(250))));
        assert_eq!(plan.for_cell("ob.hpa.peak.s1-abc"), Some(&Fault::Transient { attempts: 1 }));
        assert!(FaultPlan::parse("x=hang").unwrap().for_cell("y").is_none());
    }

    #[test]
    fn malformed_plans_are_refused() {
        for bad in ["panic", "*=explode", "*=sleep:soon", "[=panic", "*=transient:-1"] {
            assert!(FaultPlan::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
