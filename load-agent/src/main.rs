//! `load-agent`: replays scenario files with Locust's semantics, headless (`load-agent run`) or as a server that
//! `orch` drives over HTTP (`load-agent --listen`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use load_agent::engine::{RunHandle, RunPlan, Target};
use load_agent::protocol::RunState;
use load_agent::scenario::{LoadShape, Scenario, Stage};
use load_agent::server::{ConnectionLimits, ServerConfig, check_allow_host, shape_over_cap, usable_token};
use load_agent::signals::termination_signal;
use load_agent::stats::{write_console_report, write_failures_csv, write_history_csv, write_stats_csv};

const EXAMPLES: &str = "\
Examples:
  Replay a scenario against a local app for one minute, 50 users, and keep Locust's CSV files:
    load-agent run experiments/scenarios/online-boutique/browse.yaml --host http://127.0.0.1:8080 \\
      --users 50 --spawn-rate 10 --run-time 1m --csv results/boutique

  Serve the control API on this machine only (no token needed on loopback):
    load-agent --listen 127.0.0.1:8089

  Serve it to the network (a token is then required; allow only the app under test as a target):
    LOAD_AGENT_TOKEN=change-me load-agent --listen 0.0.0.0:8089 --allow-target 10.0.0.5:8080 \\
      --data-dir /var/lib/load-agent

The API lives under /v1 (health, info, runs, windows, stats, files) plus /metrics for Prometheus; every route but
/v1/health needs `Authorization: Bearer TOKEN` when a token is set. Runs keep their files in DATA_DIR/runs/<id>/.
Exit codes: 0 success, 1 the run failed (or had failures, see --exit-code-on-error), 2 bad input.";

/// A Locust-equivalent load generator.
///
/// `load-agent run SCENARIO --host URL` replays a scenario file (the format of experiments/scenarios/) against a
/// target like `locust --headless`: it prints Locust's end-of-run tables and, with --csv, writes Locust's CSV files.
///
/// `load-agent --listen ADDR` serves the HTTP control API that `orch` drives: start runs, follow their per-second
/// statistics, change or stop them, download their files. Runs go on by themselves once started, and their files
/// survive a restart of the agent.
#[derive(Parser)]
#[command(
    name = "load-agent",
    version,
    about = "A Locust-equivalent load generator: `load-agent run` replays a scenario headless, \
             `load-agent --listen` serves the control API (see --help for more)",
    long_about,
    after_long_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
#[command(next_help_heading = "Server (control API)")]
struct ServerArgs {
    /// Serve the control API on this address, e.g. 127.0.0.1:8089 or 0.0.0.0:8089. Port 0 picks a free port; the
    /// first line on stdout says which: `listening on IP:PORT`.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    listen: Option<SocketAddr>,
    /// Bearer token every route but /v1/health must carry (`Authorization: Bearer TOKEN`). Required when the
    /// address is not loopback. Prefer the environment variable: command lines are visible to other users.
    /// Surrounding whitespace (a newline from a file) is removed, with a note on stderr; a token of whitespace
    /// only, or with characters other than printable ASCII, is refused (exit 2).
    #[arg(long, env = "LOAD_AGENT_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,
    /// A target runs may use, as HOST:PORT exactly as in the target URL (repeatable). With none: on a loopback
    /// address any target with a token, and only loopback targets (127.0.0.0/8, [::1], localhost) without one;
    /// on any other address no target.
    #[arg(long = "allow-target", value_name = "HOST:PORT")]
    allow_targets: Vec<String>,
    /// Without a token, requests must name this agent in their Host header (its IP and port, or localhost:PORT
    /// on loopback), so no web page can reach it through a DNS name of its own; this allows one more name, with
    /// any port, e.g. for a tunnel (repeatable).
    #[arg(long = "allow-host", value_name = "NAME", value_parser = check_allow_host)]
    allow_hosts: Vec<String>,
    /// Close a connection whose request head has not arrived this long after it opened (or after its first
    /// byte, on a kept-alive connection); a request body gets as long again (else 400): 10, 10s, 1m.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// Close a kept-alive connection without a request for this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Most client connections open at once; at the cap the one quiet the longest is closed for a new one
    /// [default: a quarter of the open-file limit left after 32, between 4 and 1024].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// Where runs keep their files (DATA_DIR/runs/<run id>/); they stay downloadable after a restart.
    #[arg(long, value_name = "DIR", default_value = "load-agent-data")]
    data_dir: PathBuf,
    /// Most users one run may have on this agent; a run asking for more is refused (400).
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    max_users: u32,
    /// Most runs going on at once; one more is refused (409).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    max_runs: u64,
    /// Largest request body the API accepts, in bytes; a larger one is refused (413).
    #[arg(long, value_name = "N", default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Runs kept in DATA_DIR: once there are more, the oldest runs that are over are deleted (at start and after
    /// each run). 0 keeps them all.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    keep_runs: usize,
    /// Runs that are over and were created more than D days ago are deleted (at start and after each run). 0 keeps
    /// them whatever their age.
    #[arg(long, value_name = "D", default_value_t = 30)]
    keep_days: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario headless against a target, like `locust --headless`.
    #[command(after_long_help = EXAMPLES)]
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// The scenario file (YAML, see experiments/scenarios/).
    #[arg(value_name = "SCENARIO.yaml")]
    scenario: PathBuf,
    /// The target: http://host:port[/base] or redis://host:port.
    #[arg(long, short = 'H', value_name = "URL")]
    host: String,
    /// Replace the scenario's shape by this many users (one stage lasting until --run-time or Ctrl-C).
    #[arg(long, short = 'u', value_name = "N")]
    users: Option<u32>,
    /// Users started per second with --users.
    #[arg(long, short = 'r', value_name = "R", default_value_t = 1.0)]
    spawn_rate: f64,
    /// Stop after this long at the latest: 90 (seconds), 30s, 5m, 1h30m.
    #[arg(long, short = 't', value_name = "DURATION")]
    run_time: Option<String>,
    /// Write PREFIX_stats.csv, PREFIX_stats_history.csv and PREFIX_failures.csv (Locust's formats).
    #[arg(long, value_name = "PREFIX")]
    csv: Option<String>,
    /// Seed of the users' random choices (tasks, waits, template variables).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads [default: the number of cores].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Most users this run may have.
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    max_users: u32,
    /// Exit code when some requests failed (Locust's --exit-code-on-error).
    #[arg(long, value_name = "CODE", default_value_t = 1)]
    exit_code_on_error: u8,
    /// Print only the end-of-run tables, no progress lines on stderr.
    #[arg(long)]
    only_summary: bool,
}

/// Exit code for bad input.
const EXIT_USAGE: u8 = 2;

fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// Parses `90`, `30s`, `5m`, `1h30m` into a duration.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {text:?}: use e.g. 90, 30s, 5m, 1h30m");
    if let Ok(seconds) = text.parse::<f64>() {
        return if seconds.is_finite() && seconds > 0.0 {
            Ok(Duration::from_secs_f64(seconds))
        } else {
            Err(format!("{text:?} is not a positive duration"))
        };
    }
    let (mut total, mut number) = (0.0, String::new());
    for c in text.chars() {
        match c {
            '0'..='9' | '.' => number.push(c),
            'h' | 'm' | 's' => {
                let value: f64 = number.parse().map_err(|_| bad())?;
                total += value
                    * match c {
                        'h' => 3600.0,
                        'm' => 60.0,
                        _ => 1.0,
                    };
                number.clear();
            }
            _ => return Err(bad()),
        }
    }
    if !(number.is_empty() && total > 0.0 && total.is_finite()) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses `--listen`: `IP:PORT`, or `HOST:PORT` resolved (e.g. `localhost:8089`).
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    std::net::ToSocketAddrs::to_socket_addrs(text)
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| format!("{text:?} is not an address: give IP:PORT, e.g. 127.0.0.1:8089 or 0.0.0.0:8089"))
}

/// Checks an --allow-target value: `host:port` as a target URL writes it, so it can match.
fn check_allow_target(value: &str) -> Result<(), String> {
    load_agent::server::check_allow_target(value)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Run(args)) => headless(args),
        None if cli.server.listen.is_some() => serve(cli.server),
        None => usage_error("give --listen ADDR to serve the control API, or `run SCENARIO --host URL` (see --help)"),
    }
}

/// After SIGTERM or Ctrl-C the agent stops its runs and writes their files; a second signal, or this long without
/// having exited, ends the process at once (exit code 1), whatever still runs.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

async fn shutdown_signal() {
    termination_signal().await;
    tracing::info!("shutting down: stopping runs and writing their files (a second signal exits at once)");
    // A plain thread, so the bound holds even if every runtime thread were busy.
    std::thread::spawn(|| {
        std::thread::sleep(SHUTDOWN_GRACE);
        eprintln!("error: not shut down {} s after the signal: exiting now", SHUTDOWN_GRACE.as_secs());
        std::process::exit(1);
    });
    tokio::spawn(async {
        termination_signal().await;
        eprintln!("error: a second signal: exiting now, runs may be left interrupted");
        std::process::exit(1);
    });
}

fn serve(args: ServerArgs) -> ExitCode {
    let listen = args.listen.expect("checked by the caller");
    let loopback = listen.ip().is_loopback();
    let token = match args.token.as_deref().filter(|t| !t.is_empty()).map(usable_token).transpose() {
        Ok(token) => token,
        Err(e) => return usage_error(e),
    };
    if token.is_some() && token != args.token {
        eprintln!("note: the token has surrounding whitespace (a newline from a file?); it is used without");
    }
    if !loopback && token.is_none() {
        return usage_error(format!(
            "refusing to listen on {listen} without a token: anyone who can reach it could drive load from this \
             host. Give --token TOKEN (or set LOAD_AGENT_TOKEN), or listen on 127.0.0.1"
        ));
    }
    if let Some(bad) = args.allow_targets.iter().find_map(|t| check_allow_target(t).err()) {
        return usage_error(bad);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = ServerConfig {
        token,
        allow_targets: args.allow_targets,
        allow_hosts: args.allow_hosts,
        listening_on_loopback: loopback,
        local_addr: None,
        connections: ConnectionLimits {
            header_read_timeout: args.header_read_timeout,
            idle_timeout: args.idle_timeout,
            max_connections: args
                .max_connections
                .map_or_else(load_agent::server::default_max_connections, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        },
        data_dir: args.data_dir,
        max_users: args.max_users,
        max_runs: usize::try_from(args.max_runs).unwrap_or(usize::MAX),
        max_body_bytes: args.max_body_bytes,
        keep_runs: args.keep_runs,
        keep_days: args.keep_days,
    };
    if !loopback && config.allow_targets.is_empty() {
        tracing::warn!("no --allow-target given on a non-loopback address: every run will be refused (403)");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return usage_error(format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(listener) => listener,
            Err(e) => return usage_error(format!("cannot listen on {listen}: {e}")),
        };
        let address = match listener.local_addr() {
            Ok(address) => address,
            Err(e) => return usage_error(format!("cannot listen on {listen}: {e}")),
        };
        let data_dir = config.data_dir.display().to_string();
        println!("listening on {address}");
        let _ = std::io::stdout().flush();
        tracing::info!(%address, data_dir, token = config.token.is_some(), "control API ready");
        match load_agent::server::serve(listener, config, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: data directory {data_dir}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Prints a progress line every few seconds on stderr, as Locust's headless mode does.
async fn report_progress(handle: RunHandle) {
    let mut interval = tokio::time::interval(Duration::from_secs(5));
    interval.tick().await;
    loop {
        interval.tick().await;
        let status = handle.status();
        let (requests, failures) = {
            let collector = handle.collector();
            let stats = collector.lock().unwrap_or_else(|e| e.into_inner());
            (stats.total().requests, stats.total().failures)
        };
        eprintln!(
            "[{:>6.0}s] {:?}: {} of {} users, {requests} requests, {failures} failures",
            status.elapsed_s, status.state, status.users, status.target_users
        );
    }
}

fn write_csvs(prefix: &str, stats: &load_agent::stats::Collector, duration_s: f64) -> std::io::Result<()> {
    let write = |suffix: &str, f: &dyn Fn(&mut BufWriter<File>) -> std::io::Result<()>| -> std::io::Result<()> {
        let path = format!("{prefix}_{suffix}.csv");
        let mut out = BufWriter::new(File::create(Path::new(&path))?);
        f(&mut out)?;
        out.flush()
    };
    write("stats", &|out| write_stats_csv(out, stats, duration_s))?;
    write("stats_history", &|out| write_history_csv(out, stats))?;
    write("failures", &|out| write_failures_csv(out, stats))
}

fn headless(args: RunArgs) -> ExitCode {
    let mut scenario = match Scenario::load(&args.scenario) {
        Ok(scenario) => scenario,
        Err(e) => return usage_error(e),
    };
    let target = match Target::parse(&args.host) {
        Ok(target) => target,
        Err(e) => return usage_error(format!("--host: {e}")),
    };
    let deadline = match args.run_time.as_deref().map(parse_duration).transpose() {
        Ok(deadline) => deadline,
        Err(e) => return usage_error(format!("--run-time: {e}")),
    };
    if let Some(users) = args.users {
        if !(args.spawn_rate.is_finite() && args.spawn_rate > 0.0) {
            return usage_error("--spawn-rate must be a positive number");
        }
        // Like `locust --users`: one stage that lasts until --run-time (or Ctrl-C).
        let end = deadline.map_or(f64::MAX, |d| d.as_secs_f64());
        scenario.shape = LoadShape::Stages(vec![Stage { end, users, spawn_rate: args.spawn_rate }]);
        if users > args.max_users {
            return usage_error(format!("--users {users} is above --max-users {}", args.max_users));
        }
    } else if deadline.is_none() && scenario.shape.duration_s() > 86_400.0 {
        return usage_error("the scenario runs for over a day; give --run-time");
    } else if let Some((field, users)) = shape_over_cap(&scenario.shape, 0, 1, args.max_users) {
        return usage_error(format!(
            "{}: shape.{field}: asks for {users} users; at most {} are allowed (--max-users)",
            args.scenario.display(),
            args.max_users
        ));
    }
    if let Some(prefix) = &args.csv {
        // Fail before the run, not after it.
        let parent = Path::new(prefix).parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent
            && !parent.is_dir()
        {
            return usage_error(format!("--csv {prefix}: folder {} does not exist", parent.display()));
        }
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return usage_error(format!("cannot start the runtime: {e}")),
    };
    let plan = RunPlan {
        scenario,
        target,
        seed: args.seed,
        agent_index: 0,
        agent_count: 1,
        start_at: None,
        deadline,
        max_users: args.max_users,
    };
    let started = Instant::now();
    let only_summary = args.only_summary;
    let (handle, state) = runtime.block_on(async move {
        let handle = RunHandle::start(plan);
        let progress = (!only_summary).then(|| tokio::spawn(report_progress(handle.clone())));
        let state = tokio::select! {
            state = handle.wait() => state,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("stopping (Ctrl-C); press it again to stop at once");
                handle.stop();
                tokio::select! {
                    state = handle.wait() => state,
                    _ = tokio::signal::ctrl_c() => RunState::Stopped,
                }
            }
        };
        if let Some(progress) = progress {
            progress.abort();
        }
        (handle, state)
    });
    let status = handle.status();
    // Run time as the engine measured it (from the first user on); wall time if the run never started.
    let duration_s = if status.elapsed_s > 0.0 { status.elapsed_s } else { started.elapsed().as_secs_f64() };
    let collector = handle.collector();
    let stats = collector.lock().unwrap_or_else(|e| e.into_inner());
    {
        let mut stdout = std::io::stdout().lock();
        let _ = write_console_report(&mut stdout, &stats, duration_s);
        if let Some(reason) = &status.health.reason {
            let _ = writeln!(stdout, "warning: the generator was saturated, results are suspect: {reason}");
        }
        let _ = stdout.flush();
    }
    if let Some(prefix) = &args.csv
        && let Err(e) = write_csvs(prefix, &stats, duration_s)
    {
        eprintln!("error: writing the CSV files {prefix}_*.csv: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(error) = status.error {
        eprintln!("error: the run failed: {error}");
        return ExitCode::FAILURE;
    }
    eprintln!("run {} after {duration_s:.1} s", format!("{state:?}").to_lowercase());
    if stats.total().failures > 0 {
        return ExitCode::from(args.exit_code_on_error);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("2.5s").unwrap().as_millis(), 2500);
        for bad in ["0", "-3", "5x", "m", "10m5", "", "inf", "NaN", "0s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_addresses_may_name_a_host() {
        assert_eq!(parse_listen("0.0.0.0:8089").unwrap().to_string(), "0.0.0.0:8089");
        assert!(parse_listen("localhost:0").unwrap().ip().is_loopback());
        for bad in ["8089", "localhost", "not an address:1"] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allow_targets_are_host_and_port() {
        for good in ["10.0.0.5:8080", "localhost:80", "[::1]:8080"] {
            assert!(check_allow_target(good).is_ok(), "{good}");
        }
        for bad in ["10.0.0.5", "http://10.0.0.5:80", "10.0.0.5:http", ":80", "h:99999"] {
            assert!(check_allow_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
