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

#[derive(Debug, Clone)]
pub struct FaultPlan {
    rules: Vec<(Pattern, Fault)>,
}

impl FaultPlan {
    /// The plan in the environment, if the variable is set.
    pub fn from_env() -> Result<Option<FaultPlan>, String> {
        match std::env::var(ENV_VAR) {
            Ok(text) if !text.trim().is_empty() => FaultPlan::parse(&text).map(Some),
            _ => Ok(None),
        }
    }

    pub fn parse(text: &str) -> Result<FaultPlan, String> {
        let mut rules = Vec::new();
        for rule in text.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let Some((glob, fault)) = rule.split_once('=') else {
                return Err(format!("{ENV_VAR}: {rule:?} is not <cell-glob>=<fault>"));
            };
            let pattern = Pattern::new(glob.trim()).map_err(|e| format!("{ENV_VAR}: bad glob {glob:?}: {e}"))?;
            let fault = match fault.trim().split_once(':') {
                None => match fault.trim() {
                    "panic" => Fault::Panic,
                    "hang" => Fault::Hang,
                    "abort" => Fault::Abort,
                    "error" => Fault::Error,
                    other => return Err(format!("{ENV_VAR}: unknown fault {other:?}")),
                },
                Some(("transient", n)) => Fault::Transient {
                    attempts: n.parse().map_err(|_| format!("{ENV_VAR}: transient:{n}: not a count of attempts"))?,
                },
                Some(("sleep", ms)) => Fault::Sleep(Duration::from_millis(
                    ms.parse().map_err(|_| format!("{ENV_VAR}: sleep:{ms}: not a number of milliseconds"))?,
                )),
                Some(_) => return Err(format!("{ENV_VAR}: unknown fault {fault:?}")),
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
