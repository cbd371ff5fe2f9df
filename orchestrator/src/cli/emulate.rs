//! `orch emulate`: an app model served as the emulated backend does, on its own; the work is in
//! crate::backends::emulated::standalone.

use std::path::PathBuf;
use std::process::ExitCode;

use super::EXIT_CONFIG;
use crate::backends::emulated::CpuMode;
use crate::backends::emulated::burn_pods::BurnError;

#[derive(clap::Args)]
pub struct EmulateArgs {
    /// The app model, e.g. experiments/apps/online-boutique.yaml.
    app: PathBuf,
    /// Where the app listens (HTTP, or RESP for a Redis app).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Where the pod-control API and /metrics listen.
    #[arg(long, default_value = "127.0.0.1:9090")]
    control_listen: std::net::SocketAddr,
    /// Emulated seconds per wall second of control time (pod start-up, metrics windows).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Requests one pod serves at once.
    #[arg(long, default_value_t = 1)]
    pod_concurrency: u32,
    /// Replicas every deployment starts with: initial (the model's), max, or a number (within each one's bounds).
    #[arg(long, default_value = "initial")]
    replicas: crate::backends::emulated::standalone::StartReplicas,
    /// Seconds a request may take inside the app before it fails with 504.
    #[arg(long, default_value_t = 10.0)]
    request_timeout: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How a call's CPU demand is served: `sleep` its service time, or `burn` it for real in a CPU cgroup per pod
    /// whose CFS quota is the pod's CPU limit (needs root, a cgroup v1 cpu controller and --time-scale 1; the
    /// groups go on exit, and a crashed run's are swept by the next start). ORCH_CGROUP_ROOT names the cpu
    /// controller's root instead of the one mounted on the host.
    #[arg(long, value_enum, default_value_t = Cpu::Sleep)]
    cpu: Cpu,
}

/// `--cpu`: the command line's names for [`CpuMode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Cpu {
    Sleep,
    Burn,
}

impl From<Cpu> for CpuMode {
    fn from(cpu: Cpu) -> CpuMode {
        match cpu {
            Cpu::Sleep => CpuMode::Sleep,
            Cpu::Burn => CpuMode::Burn,
        }
    }
}

/// `orch emulate`.
pub fn emulate(args: EmulateArgs) -> ExitCode {
    use crate::backends::emulated::standalone::{Options, load, serve};
    if !(args.time_scale.is_finite() && args.time_scale >= 1.0) {
        eprintln!("error: --time-scale must be at least 1");
        return ExitCode::from(EXIT_CONFIG);
    }
    if args.pod_concurrency == 0 || !(args.request_timeout.is_finite() && args.request_timeout > 0.0) {
        eprintln!("error: --pod-concurrency and --request-timeout must be positive");
        return ExitCode::from(EXIT_CONFIG);
    }
    let cpu = CpuMode::from(args.cpu);
    if cpu == CpuMode::Burn && args.time_scale != 1.0 {
        eprintln!("error: {}", BurnError::Compressed(args.time_scale));
        return ExitCode::from(EXIT_CONFIG);
    }
    let options = Options {
        app_file: args.app,
        listen: args.listen,
        control_listen: args.control_listen,
        model: crate::backends::emulated::EmulatorSettings {
            time_scale: args.time_scale,
            pod_concurrency: args.pod_concurrency,
            cpu,
        },
        replicas: args.replicas,
        request_timeout: std::time::Duration::from_secs_f64(args.request_timeout),
        seed: args.seed,
    };
    let app = match load(&options) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match serve(app, options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
