//! How a cell ends: the errors cell code returns to say why, and the exit codes of the process that ran it.

use std::time::Duration;

/// Exit codes of `orch cell` (and of the Job that runs it).
pub const EXIT_SUCCEEDED: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
/// EX_TEMPFAIL of sysexits.h.
pub const EXIT_TRANSIENT: i32 = 75;
pub const EXIT_PANICKED: i32 = 101;
pub const EXIT_CANCELLED: i32 = 130;

/// How long a cancelled cell may take to wind down (stop remote load, restore a cluster, flush files) before its
/// process exits anyway.
pub const CANCEL_GRACE: Duration = Duration::from_secs(6);

/// An error worth retrying: the cell itself is fine, something around it failed (a backend that did not answer,
/// a lost connection). Cell code returns it (inside an anyhow chain) to ask for a retry.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransientError(pub String);

/// The cell stopped because it was asked to.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// The exit code an error chain asks for: cancelled, transient (worth a retry) or failed.
pub fn exit_code_of(error: &anyhow::Error) -> i32 {
    if error.is::<Cancelled>() {
        EXIT_CANCELLED
    } else if error.chain().any(|cause| cause.is::<TransientError>()) {
        EXIT_TRANSIENT
    } else {
        EXIT_FAILED
    }
}
