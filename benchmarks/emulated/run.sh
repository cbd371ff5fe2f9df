#!/usr/bin/env bash
# Emulator throughput: Online Boutique requests served per second by `orch emulate`, loaded by 2 local
# `load-agent run` processes with no wait between requests, next to the same agents against nginx's `return 200`
# (the ceiling the agents reach on the same cores). Two ways of sharing the 2 cores, each round:
#   pinned:   the emulator alone on core 0, both agents on core 1 (taskset)
#   shared:   no pinning, the scheduler spreads all three processes over both cores
# The app model is Online Boutique with every deployment allowed 200 replicas and started at 200, so pod capacity
# (not the emulator) is never the limit; service times are slept as in every emulated cell.
# Usage: benchmarks/emulated/run.sh [ROUNDS=3] [SECONDS=15] [USERS_PER_AGENT=400]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rounds=${1:-3}; seconds=${2:-15}; users=${3:-400}
work="$here/.work"; rm -rf "$work"; mkdir -p "$work"

command -v nginx >/dev/null || { apt-get update -qq; apt-get install -y -qq nginx >/dev/null; }
(cd "$root" && cargo build -q --release -p orchestrator -p load-agent)
orch="$root/target/release/orch"; agent="$root/target/release/load-agent"
sed -e 's/replicas: {min: 1, max: [0-9]*}/replicas: {min: 1, max: 200}/' \
  "$root/experiments/apps/online-boutique.yaml" > "$work/online-boutique-wide.yaml"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port=$(free_port)
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 100000000;
  server { listen 127.0.0.1:$nginx_port; location / { return 200 "ok"; } }
}
CONF
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Entry requests the emulator answered, by code, from its /metrics: "total ok".
served() {
  python3 -c '
import sys, urllib.request
total = ok = 0.0
for line in urllib.request.urlopen("http://" + sys.argv[1] + "/metrics").read().decode().splitlines():
    if line.startswith("istio_requests_total{") and "source_workload=\"unknown\"" in line:
        value = float(line.rsplit(" ", 1)[1]); total += value
        if "response_code=\"200\"" in line or "response_code=\"302\"" in line: ok += value
print(int(total), int(ok))' "$1"
}

# Two agents at once with the same users each; prints their summed requests/s (their own end-of-run figures).
agents() { # CPUSET SCENARIO URL
  local cpus=$1 scenario=$2 url=$3 pin=()
  [ "$cpus" = "-" ] || pin=(taskset -c "$cpus")
  for i in 0 1; do
    "${pin[@]}" "$agent" run "$scenario" --host "$url" --users "$users" --spawn-rate 100000 --run-time "${seconds}s" \
      --threads 1 --seed "$i" --only-summary --csv "$work/agent$i" --exit-code-on-error 0 >/dev/null 2>&1 &
    pids+=($!)
  done
  wait "${pids[-1]}" "${pids[-2]}"
  awk -F, '$2=="Aggregated" {sum += $10} END {printf "%.0f", sum}' "$work/agent0_stats.csv" "$work/agent1_stats.csv"
}

ceiling() { # APP_CPUS AGENT_CPUS
  local pin=(); [ "$1" = "-" ] || pin=(taskset -c "$1")
  "${pin[@]}" nginx -c "$work/nginx.conf" & local pid=$!; pids+=($pid); sleep 1
  agents "$2" "$here/nowait-root.yaml" "http://127.0.0.1:$nginx_port"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

emulated() { # APP_CPUS AGENT_CPUS SCENARIO -> "served_per_s failed_per_s cpu_us_per_request agents_per_s"
  local pin=(); [ "$1" = "-" ] || pin=(taskset -c "$1")
  local port control; port=$(free_port); control=$(free_port)
  "${pin[@]}" "$orch" emulate "$work/online-boutique-wide.yaml" --listen "127.0.0.1:$port" \
    --control-listen "127.0.0.1:$control" --replicas max > "$work/emulate.out" 2>&1 & local pid=$!; pids+=($pid)
  for _ in $(seq 50); do grep -q "control listening" "$work/emulate.out" 2>/dev/null && break; sleep 0.1; done
  agents "$2" "$3" "http://127.0.0.1:$port" > "$work/agents.rate" &
  local runner=$!
  sleep 3; read -r t0 ok0 < <(served "127.0.0.1:$control"); s0=$(date +%s.%N); c0=$(cpu_ticks "$pid")
  sleep $((seconds - 5)); read -r t1 ok1 < <(served "127.0.0.1:$control"); s1=$(date +%s.%N); c1=$(cpu_ticks "$pid")
  wait "$runner"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 -c "
import os, sys
t0, o0, t1, o1, s0, s1, c0, c1 = map(float, sys.argv[1:])
d, n = s1 - s0, t1 - t0
cpu_s = (c1 - c0) / os.sysconf('SC_CLK_TCK')
print(f'{n / d:.0f} {(n - (o1 - o0)) / d:.0f} {cpu_s * 1e6 / max(n, 1):.0f}')" \
    "$t0" "$ok0" "$t1" "$ok1" "$s0" "$s1" "$c0" "$c1" | tr '\n' ' '
  cat "$work/agents.rate"; echo
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
printf '| round | cores | nginx ceiling (agents) | GET /cart: served/s | failed/s | app CPU µs/req | agents/s | mix: served/s | failed/s | app CPU µs/req | agents/s |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for r in $(seq 1 "$rounds"); do
  for layout in pinned shared; do
    if [ "$layout" = pinned ]; then app_cpus=0; agent_cpus=1; else app_cpus=-; agent_cpus=-; fi
    n=$(ceiling "$app_cpus" "$agent_cpus")
    read -r cs cf cc ca < <(emulated "$app_cpus" "$agent_cpus" "$here/cart-nowait.yaml")
    read -r ms mf mc ma < <(emulated "$app_cpus" "$agent_cpus" "$here/mix-nowait.yaml")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
      "$r" "$layout" "$n" "$cs" "$cf" "$cc" "$ca" "$ms" "$mf" "$mc" "$ma"
  done
done
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
