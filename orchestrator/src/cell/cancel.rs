//! The one way a cell is asked to stop: a token its owner cancels (on a signal) and long-running cell code polls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::outcome::Cancelled;

/// Cheap to clone; every clone sees the same cancellation.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Asks whoever holds a clone to wind down; true if this call was the first to ask.
    pub fn cancel(&self) -> bool {
        !self.0.swap(true, Ordering::SeqCst)
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(Cancelled)` once cancelled: `token.check()?` in a loop stops it with the error the cell process reads
    /// as "cancelled".
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() { Err(Cancelled) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_cancellation_and_only_the_first_cancel_reports_it() {
        let token = CancelToken::new();
        let held = token.clone();
        assert!(held.check().is_ok());
        assert!(token.cancel());
        assert!(!token.cancel());
        assert!(held.is_cancelled());
        assert!(held.check().is_err());
    }
}
