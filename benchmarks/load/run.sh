#!/usr/bin/env bash
# Side-by-side throughput of load generators against one nginx on loopback.
# nginx (one worker) runs on core 0; each generator in turn runs alone on core 1 with the same users and no wait.
# Usage: benchmarks/load/run.sh [ROUNDS=3] [SECONDS=15] [USERS=64]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rounds=${1:-3}; seconds=${2:-15}; users=${3:-64}
work="$here/.work"; mkdir -p "$work"

command -v nginx >/dev/null && command -v wrk >/dev/null || { apt-get update -qq; apt-get install -y -qq nginx wrk >/dev/null; }
[ -x "$here/.venv/bin/locust" ] || { python3 -m venv "$here/.venv"; "$here/.venv/bin/pip" install -q locust; }
(cd "$root" && cargo build -q --release -p load-agent)
(cd "$here/goose-peer" && cargo build -q --release)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 100000000;
  server { listen 127.0.0.1:$port; location / { return 200 "ok"; } }
}
CONF
taskset -c 0 nginx -c "$work/nginx.conf" &
nginx_pid=$!
trap 'kill $nginx_pid 2>/dev/null || true; wait 2>/dev/null || true' EXIT
sleep 1
url="http://127.0.0.1:$port"

run_wrk() { taskset -c 1 wrk -t1 -c"$users" -d"${seconds}s" "$url/" | awk '/Requests\/sec/ {print $2}'; }
run_agent() {
  # `load-agent run` exits 1 when any request failed (a few resets at the end of a saturated run); keep its figures.
  { taskset -c 1 "$root/target/release/load-agent" run "$here/nowait.yaml" --host "$url" --users "$users" \
    --spawn-rate 10000 --run-time "${seconds}s" --threads 1 2>/dev/null || true; } | awk '/Aggregated/ {print $(NF-1); exit}'
}
run_goose() {
  taskset -c 1 "$here/goose-peer/target/release/goose-peer" -H "$url" -u "$users" -r 10000 -t "${seconds}s" \
    --report-file "$work/goose.json" >/dev/null 2>&1
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(next(r["requests_per_second"] for r in d["raw_request_metrics"] if r["name"] == "Aggregated"))' "$work/goose.json"
}
run_locust() {
  (cd "$work" && taskset -c 1 "$here/.venv/bin/locust" -f "$here/locustfile.py" --headless -u "$users" -r 10000 \
    -t "${seconds}s" -H "$url" --csv "$work/locust" --only-summary >/dev/null 2>&1 || true)
  awk -F, '$2=="Aggregated" {print $10}' "$work/locust_stats.csv"
}

printf '| round | wrk (ceiling) | load-agent | Goose | Locust FastHttpUser |\n|---|---:|---:|---:|---:|\n'
for r in $(seq 1 "$rounds"); do
  w=$(run_wrk); a=$(run_agent); g=$(run_goose); l=$(run_locust)
  printf '| %s | %.0f | %.0f | %.0f | %.0f |\n' "$r" "$w" "$a" "$g" "$l"
  echo "$w $a $g $l" >> "$work/rounds.$$"
done
python3 - "$work/rounds.$$" <<'PY'
import statistics, sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1])]
med = [statistics.median(col) for col in zip(*rows)]
print(f"| median | {med[0]:.0f} | {med[1]:.0f} | {med[2]:.0f} | {med[3]:.0f} |")
print(f"\nload-agent / Locust: {med[1] / med[3]:.1f}x; load-agent / Goose: {med[1] / med[2]:.1f}x; load-agent / wrk: {med[1] / med[0]:.2f}")
PY
rm -f "$work/rounds.$$"
