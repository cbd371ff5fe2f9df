//! `orch emulate`: serve an app model on its own, for benchmarks, manual load tests and trying the pod-control
//! API; the control plane ticks once per emulated second until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use load_agent::yaml::ConfigError;

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
    /// The emulator could not listen.
    #[error(transparent)]
    Start(std::io::Error),
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

/// Serves until Ctrl-C or SIGTERM.
pub fn serve(app: AppModel, options: Options) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("emulator")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
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
        emulator.cluster.reset(&replicas);
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
        load_agent::signals::termination_signal().await;
        ticker.abort();
        drop(emulator);
        Ok(())
    })
}
