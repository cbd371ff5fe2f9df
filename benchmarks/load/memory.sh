#!/usr/bin/env bash
# Peak resident memory of load-agent with USERS users each waiting 10 s between requests, against nginx on loopback.
# Usage: benchmarks/load/memory.sh [USERS=10000] [SECONDS=40]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
users=${1:-10000}; seconds=${2:-40}
work="$here/.work"; mkdir -p "$work"
command -v nginx >/dev/null || { apt-get update -qq; apt-get install -y -qq nginx >/dev/null; }
[ -n "${SKIP_BUILD:-}" ] || (cd "$root" && cargo build -q --release -p load-agent)
ulimit -n "$(ulimit -Hn)"  # one socket per user
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/nginx-mem.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 19500;
daemon off;
pid $work/nginx-mem.pid;
error_log $work/nginx-error.log;
events { worker_connections 19000; }
http {
  access_log off;
  keepalive_timeout 120s;
  keepalive_requests 100000000;
  server { listen 127.0.0.1:$port backlog=8192; location / { return 200 "ok"; } }
}
CONF
nginx -c "$work/nginx-mem.conf" &
nginx_pid=$!
cat > "$work/waiting.yaml" <<YAML
users:
  - name: patient
    wait: {constant: 10}
    tasks: [{name: get, requests: [{method: GET, path: /}]}]
shape: {stages: [{end: $seconds, users: $users, spawn_rate: 1000}]}
YAML
"$root/target/release/load-agent" run "$work/waiting.yaml" --host "http://127.0.0.1:$port" > "$work/memory-report.txt" 2>&1 &
agent=$!
trap 'kill $agent $nginx_pid 2>/dev/null || true; wait 2>/dev/null || true' EXIT
peak=0
while kill -0 "$agent" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$agent/status" 2>/dev/null || echo 0)
  [ "${rss:-0}" -gt "$peak" ] && peak=$rss
  sleep 1
done
requests=$(awk '/Aggregated/ {print $2; exit}' "$work/memory-report.txt")
failures=$(awk '/Aggregated/ {print $3; exit}' "$work/memory-report.txt")
echo "users: $users, requests: $requests, failures: $failures, peak RSS: $((peak / 1024)) MiB"
