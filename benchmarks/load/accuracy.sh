#!/usr/bin/env bash
# Percentile accuracy: feeds 1,000,000 heavy-tailed latencies per data set (log-normal, Pareto α 1.1, loopback with
# slow calls and timeouts; fixed seed) through load_agent::stats::Collector and compares every Locust percentile
# with the exact sorted-array value. Extra arguments go to the checker, e.g. `--file latencies_us.txt` (one real
# latency per line, in microseconds) or `--values 5000000 --seed 7`. Exit code 1 if any percentile is off by > 1 %.
# Usage: benchmarks/load/accuracy.sh [ARGS...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/accuracy"
cargo build -q --release
timeout 600 ./target/release/load-agent-accuracy "$@"
