//! `load-agent`: replays scenario files with Locust's semantics.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use load_agent::engine::{RunHandle, RunPlan, Target};
use load_agent::scenario::{LoadShape, Scenario, Stage};
use load_agent::server::ServerConfig;
use load_agent::stats::{write_console_report, write_failures_csv, write_history_csv, write_stats_csv};

/// A Locust-equivalent load generator.
///
/// `load-agent --listen ADDR` serves the HTTP control API that `orch` drives (runs, per-second stats, files).
/// `load-agent run` replays a scenario file (the format of experiments/scenarios/) against a target, like
/// `locust --headless`, prints Locust's end-of-run tables and can write Locust's CSV files.
#[derive(Parser)]
#[command(version, about, long_about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Serve the control API on this address, e.g. 127.0.0.1:8089 or 0.0.0.0:8089 (port 0 picks a free port; the
    /// first line on stdout says which).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Bearer token every call but /v1/health must carry; required when not listening on loopback.
    #[arg(long, env = "LOAD_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A target runs may use, host:port; repeatable. Without any, targets are unrestricted on loopback only.
    #[arg(long = "allow-target", value_name = "HOST:PORT")]
    allow_targets: Vec<String>,
    /// Where runs keep their files; they stay downloadable after a restart.
    #[arg(long, default_value = "load-agent-data")]
    data_dir: PathBuf,
    /// Most users one run may have on this agent.
    #[arg(long, default_value_t = 50_000)]
    max_users: u32,
    /// Runs at once.
    #[arg(long, default_value_t = 2)]
    max_runs: usize,
    /// Largest request body the API accepts, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario headless against a target.
    Run {
        /// The scenario file.
        scenario: PathBuf,
        /// The target, e.g. http://127.0.0.1:8080
        #[arg(long)]
        host: String,
        /// Replace the scenario's shape by this many users.
        #[arg(long, short = 'u')]
        users: Option<u32>,
        /// Users started per second with --users.
        #[arg(long, short = 'r', default_value_t = 1.0)]
        spawn_rate: f64,
        /// Stop after this long: 90, 30s, 5m, 1h30m.
        #[arg(long, short = 't')]
        run_time: Option<String>,
        /// Write PREFIX_stats.csv, PREFIX_stats_history.csv and PREFIX_failures.csv.
        #[arg(long)]
        csv: Option<String>,
        /// Seed of the users' random choices.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Worker threads [default: number of cores].
        #[arg(long)]
        threads: Option<usize>,
        /// Most users this run may have.
        #[arg(long, default_value_t = 50_000)]
        max_users: u32,
    },
}

/// Exit code for bad input.
const EXIT_USAGE: u8 = 2;

/// Parses `90`, `30s`, `5m`, `1h30m` into seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        return if seconds > 0.0 {
            Ok(Duration::from_secs_f64(seconds))
        } else {
            Err(format!("{text:?} is not positive"))
        };
    }
    let (mut total, mut number) = (0.0, String::new());
    for c in text.chars() {
        match c {
            '0'..='9' | '.' => number.push(c),
            'h' | 'm' | 's' => {
                let value: f64 = number.parse().map_err(|_| format!("bad duration {text:?}"))?;
                total += value
                    * match c {
                        'h' => 3600.0,
                        'm' => 60.0,
                        _ => 1.0,
                    };
                number.clear();
            }
            _ => return Err(format!("bad duration {text:?}: use e.g. 90, 30s, 5m, 1h30m")),
        }
    }
    if !number.is_empty() || total <= 0.0 {
        return Err(format!("bad duration {text:?}: use e.g. 90, 30s, 5m, 1h30m"));
    }
    Ok(Duration::from_secs_f64(total))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Run { scenario, host, users, spawn_rate, run_time, csv, seed, threads, max_users }) => {
            headless(scenario, host, users, spawn_rate, run_time, csv, seed, threads, max_users)
        }
        None => match cli.server.listen {
            Some(_) => serve(cli.server),
            None => {
                eprintln!("error: give --listen ADDR to serve the control API, or the run command (see --help)");
                ExitCode::from(EXIT_USAGE)
            }
        },
    }
}

fn serve(args: ServerArgs) -> ExitCode {
    let listen = args.listen.expect("checked");
    let loopback = listen.ip().is_loopback();
    if !loopback && args.token.as_deref().is_none_or(str::is_empty) {
        eprintln!("error: --listen {listen} is not a loopback address: give --token (or LOAD_AGENT_TOKEN)");
        return ExitCode::from(EXIT_USAGE);
    }
    let config = ServerConfig {
        token: args.token.filter(|t| !t.is_empty()),
        allow_targets: args.allow_targets,
        listening_on_loopback: loopback,
        data_dir: args.data_dir,
        max_users: args.max_users,
        max_runs: args.max_runs.max(1),
        max_body_bytes: args.max_body_bytes,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {listen}: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let address = listener.local_addr().expect("bound");
        println!("listening on {address}");
        let _ = std::io::stdout().flush();
        match load_agent::server::serve(listener, config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

#[allow(clippy::too_many_arguments)] // the run command's flags, one to one
fn headless(
    scenario: PathBuf,
    host: String,
    users: Option<u32>,
    spawn_rate: f64,
    run_time: Option<String>,
    csv: Option<String>,
    seed: u64,
    threads: Option<usize>,
    max_users: u32,
) -> ExitCode {
    let mut parsed = match Scenario::load(&scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let target = match Target::parse(&host) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --host: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let deadline = match run_time.as_deref().map(parse_duration).transpose() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --run-time: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(users) = users {
        if spawn_rate.is_nan() || spawn_rate <= 0.0 {
            eprintln!("error: --spawn-rate must be positive");
            return ExitCode::from(EXIT_USAGE);
        }
        // Like `locust --users`: one stage that lasts until --run-time (or until stopped).
        let end = deadline.map_or(f64::MAX, |d| d.as_secs_f64());
        parsed.shape = LoadShape::Stages(vec![Stage { end, users, spawn_rate }]);
    } else if deadline.is_none() && parsed.shape.duration_s() > 86_400.0 {
        eprintln!("error: the scenario runs for over a day; give --run-time");
        return ExitCode::from(EXIT_USAGE);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime.enable_all().build().expect("tokio runtime");
    let plan =
        RunPlan { scenario: parsed, target, seed, agent_index: 0, agent_count: 1, start_at: None, deadline, max_users };
    let started = Instant::now();
    let (handle, state) = runtime.block_on(async move {
        let handle = RunHandle::start(plan);
        let state = tokio::select! {
            state = handle.wait() => state,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("stopping (Ctrl-C)");
                handle.stop();
                handle.wait().await
            }
        };
        (handle, state)
    });
    let duration_s = started.elapsed().as_secs_f64();
    let status = handle.status();
    let collector = handle.collector();
    let stats = collector.lock().expect("collector lock");
    let mut stdout = std::io::stdout().lock();
    let _ = write_console_report(&mut stdout, &stats, duration_s);
    if let Some(reason) = &status.health.reason {
        let _ = writeln!(stdout, "warning: results are suspect: {reason}");
    }
    if let Some(prefix) = csv {
        let write = |suffix: &str, f: &dyn Fn(&mut BufWriter<File>) -> std::io::Result<()>| -> std::io::Result<()> {
            let path = format!("{prefix}_{suffix}.csv");
            let mut out = BufWriter::new(File::create(Path::new(&path))?);
            f(&mut out)?;
            out.flush()
        };
        let written = write("stats", &|out| write_stats_csv(out, &stats, duration_s))
            .and_then(|_| write("stats_history", &|out| write_history_csv(out, &stats)))
            .and_then(|_| write("failures", &|out| write_failures_csv(out, &stats)));
        if let Err(e) = written {
            eprintln!("error: writing CSV files with prefix {prefix:?}: {e}");
            return ExitCode::FAILURE;
        }
    }
    match status.error {
        Some(error) => {
            eprintln!("error: the run failed: {error}");
            ExitCode::FAILURE
        }
        None => {
            eprintln!("run {state:?} after {duration_s:.1} s");
            ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("2.5s").unwrap().as_millis(), 2500);
        for bad in ["0", "-3", "5x", "m", "10m5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
