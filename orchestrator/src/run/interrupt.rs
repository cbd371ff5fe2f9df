//! Ctrl-C (SIGINT, SIGTERM, SIGHUP) for `orch run`: the first asks the run to stop gracefully, the second exits
//! at once after the registered hard-stop action has left the files consistent.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use crate::cell::CancelToken;

/// Exit code of an interrupted run (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

type HardStop = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub struct Interrupt {
    signals: AtomicU32,
    /// Cancelled by the first signal: the run's token, which the supervisor polls.
    run: CancelToken,
    hard_stop: Mutex<Option<HardStop>>,
}

impl Interrupt {
    pub fn new() -> Arc<Interrupt> {
        Arc::new(Interrupt::default())
    }

    /// Routes this process's termination signals here (once per process).
    pub fn install(self: &Arc<Self>) -> Result<()> {
        let me = Arc::clone(self);
        ctrlc::set_handler(move || me.signal()).context("installing the Ctrl-C handler")
    }

    /// What a signal does; public so a caller can stop a run without a real signal.
    pub fn signal(&self) {
        let n = self.signals.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            self.run.cancel();
            eprintln!("\nstopping: no new cells start, running ones are cancelled (Ctrl-C again to exit at once)");
            return;
        }
        eprintln!("exiting at once");
        if let Some(stop) = self.hard_stop.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            stop();
        }
        std::process::exit(EXIT_INTERRUPTED.into());
    }

    pub fn requested(&self) -> bool {
        self.run.is_cancelled()
    }

    /// The action a second signal runs before the process exits (kill the cells, record them cancelled).
    pub fn on_hard_stop(&self, stop: HardStop) {
        *self.hard_stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop);
    }

    pub fn clear_hard_stop(&self) {
        *self.hard_stop.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
