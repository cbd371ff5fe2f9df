//! `orch emulate`: serve an app model on its own, for benchmarks, manual load tests and trying the pod-control
//! API; the control plane ticks once per emulated second until Ctrl-C or SIGTERM.
//!
//! In the burning mode (`--cpu burn`) every pod is a CPU cgroup of this process: made before the addresses are
//! printed, removed when the emulator is dropped on Ctrl-C or SIGTERM, or at exit; a `kill -9` leaves them to the
//! next burning start's sweep. A group that cannot be made stops the command with that one error, none left.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use load_agent::yaml::ConfigError;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::burn_pods::BurnError;
use super::server::Emulator;
use crate::app::AppModel;
use crate::settings::emulated::EmulatorSettings;

/// Replicas each deployment starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartReplicas {
    Initial,
    Max,
    /// This many for every deployment, within its bounds.
    Each(u32),
}

/// `--replicas` written as neither initial, max nor a number.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}: give initial, max or a number of replicas")]
pub struct BadStartReplicas(String);

/// Why the standalone emulator stopped before Ctrl-C.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot handle termination signals: {0}")]
    Signals(std::io::Error),
    /// The emulator could not listen, or (burning) could not make its pods' groups.
    #[error(transparent)]
    Start(std::io::Error),
    /// A burning pod of the starting replicas could not be made.
    #[error(transparent)]
    Replicas(BurnError),
}

impl std::str::FromStr for StartReplicas {
    type Err = BadStartReplicas;
    fn from_str(text: &str) -> Result<StartReplicas, BadStartReplicas> {
        match text {
            "initial" => Ok(StartReplicas::Initial),
            "max" => Ok(StartReplicas::Max),
            n => n.parse().map(StartReplicas::Each).map_err(|_| BadStartReplicas(n.to_string())),
        }
    }
}

pub struct Options {
    pub app_file: PathBuf,
    pub listen: SocketAddr,
    pub control_listen: SocketAddr,
    pub model: EmulatorSettings,
    pub replicas: StartReplicas,
    pub request_timeout: Duration,
    pub seed: u64,
}

/// Loads the app (errors name the file and field) — before anything listens.
pub fn load(options: &Options) -> Result<AppModel, ConfigError> {
    AppModel::load(&options.app_file)
}

/// Serves until Ctrl-C, SIGTERM or SIGHUP.
pub fn serve(app: AppModel, options: Options) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("emulator")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
        // Caught before the first pod group is made: a signal's default action would leave the groups behind.
        let mut stop = StopSignals::install().map_err(ServeError::Signals)?;
        let emulator = Emulator::start(
            &app,
            &options.model,
            options.listen,
            options.control_listen,
            options.seed,
            options.request_timeout,
        )
        .await
        .map_err(ServeError::Start)?;
        let replicas: Vec<u32> = app
            .services
            .iter()
            .map(|s| match options.replicas {
                StartReplicas::Initial => s.replicas.initial(),
                StartReplicas::Max => s.replicas.max,
                StartReplicas::Each(n) => n.clamp(s.replicas.min, s.replicas.max),
            })
            .collect();
        // Dropping the emulator on the way out removes the groups already made.
        emulator.cluster.try_reset(&replicas).map_err(ServeError::Replicas)?;
        println!("app listening on {}", emulator.target_url());
        println!("control listening on {}", emulator.control_url());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let cluster = emulator.cluster.clone();
        let time_scale = options.model.time_scale;
        let ticker = tokio::spawn(async move {
            let origin = Instant::now();
            let mut t = 0u64;
            loop {
                t += 1;
                let due = origin + Duration::from_secs_f64(t as f64 / time_scale);
                tokio::time::sleep_until(due.into()).await;
                cluster.tick(t);
            }
        });
        stop.next().await;
        ticker.abort();
        drop(emulator);
        Ok(())
    })
}

/// The signals that end the emulator: Ctrl-C, SIGTERM (service managers) and SIGHUP (the terminal went away).
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    /// Takes the signals over from now on; one that arrives before [`StopSignals::next`] is kept for it.
    fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }
}
