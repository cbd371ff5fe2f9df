//! Which runs to delete so the data directory does not grow for ever: `--keep-runs N` keeps the newest N runs,
//! `--keep-days D` deletes runs created more than D days ago. Only runs that are over are ever deleted, oldest
//! first; 0 turns a limit off.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most runs kept (the newest); 0 = no limit.
    pub keep_runs: usize,
    /// Runs older than this many days are deleted; 0 = no limit.
    pub keep_days: u64,
}

/// A run as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAge {
    pub id: String,
    pub created_unix_ms: u64,
    pub over: bool,
}

/// Why a run is deleted, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneReason {
    /// More than `--keep-runs` newer runs exist.
    BeyondCount(usize),
    /// Created more than `--keep-days` days ago.
    TooOld(u64),
}

impl std::fmt::Display for PruneReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PruneReason::BeyondCount(n) => write!(f, "beyond the newest {n} runs (--keep-runs {n})"),
            PruneReason::TooOld(days) => write!(f, "created more than {days} days ago (--keep-days {days})"),
        }
    }
}

impl Retention {
    /// The runs to delete, oldest first, with why. Runs still going on count toward `keep_runs` but are never
    /// chosen.
    pub fn select(&self, runs: &[RunAge], now_unix_ms: u64) -> Vec<(String, PruneReason)> {
        let mut newest_first: Vec<&RunAge> = runs.iter().collect();
        newest_first.sort_by(|a, b| (b.created_unix_ms, &b.id).cmp(&(a.created_unix_ms, &a.id)));
        let max_age_ms = Duration::from_secs(self.keep_days.saturating_mul(86_400)).as_millis() as u64;
        let mut chosen: Vec<(String, PruneReason)> = newest_first
            .iter()
            .enumerate()
            .filter(|(_, run)| run.over)
            .filter_map(|(rank, run)| {
                // Age first: it says more about an old run than its rank does.
                let reason = if self.keep_days > 0 && now_unix_ms.saturating_sub(run.created_unix_ms) > max_age_ms {
                    PruneReason::TooOld(self.keep_days)
                } else if self.keep_runs > 0 && rank >= self.keep_runs {
                    PruneReason::BeyondCount(self.keep_runs)
                } else {
                    return None;
                };
                Some((run.id.clone(), reason))
            })
            .collect();
        chosen.reverse();
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 86_400_000;

    fn run(id: &str, created_unix_ms: u64, over: bool) -> RunAge {
        RunAge { id: id.into(), created_unix_ms, over }
    }

    #[test]
    fn the_oldest_runs_that_are_over_go_first() {
        let now = 100 * DAY_MS;
        let runs = [
            run("a", now - 50 * DAY_MS, true),
            run("b", now - 3 * DAY_MS, false),
            run("c", now - 2 * DAY_MS, true),
            run("d", now - DAY_MS, true),
            run("e", now, true),
        ];
        let ids = |retention: Retention| -> Vec<String> {
            retention.select(&runs, now).into_iter().map(|(id, _)| id).collect()
        };
        // Two kept: the newest two; b goes on, so it is never deleted.
        assert_eq!(ids(Retention { keep_runs: 2, keep_days: 0 }), ["a", "c"]);
        assert_eq!(ids(Retention { keep_runs: 0, keep_days: 30 }), ["a"]);
        assert_eq!(ids(Retention { keep_runs: 4, keep_days: 30 }), ["a"]);
        assert!(ids(Retention { keep_runs: 0, keep_days: 0 }).is_empty());
        assert_eq!(ids(Retention { keep_runs: 1, keep_days: 0 }), ["a", "c", "d"]);
        let reasons = Retention { keep_runs: 2, keep_days: 30 }.select(&runs, now);
        assert_eq!(
            reasons,
            [("a".to_string(), PruneReason::TooOld(30)), ("c".to_string(), PruneReason::BeyondCount(2))]
        );
    }
}
