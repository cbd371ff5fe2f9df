#!/usr/bin/env bash
# PPO training throughput, orch (dfdx) vs stable-baselines3 (PyTorch), side by side in one run.
#   benchmarks/rl/speed.sh [ROUNDS] [ITERATIONS]
# Each round runs orch's bench (MLP-PPO and GNN-PPO on Online Boutique) and then SB3's PPO on an equivalent
# gymnasium environment (benchmarks/rl/sb3_speed.py), ITERATIONS PPO iterations of 2 x 512 steps each.
# The venv (stable-baselines3 and its PyTorch from PyPI, about 5 GB) is made once under target/sb3-venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-2}
iterations=${2:-3}
venv=target/sb3-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import stable_baselines3" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q stable-baselines3 gymnasium
fi
cargo bench -p orchestrator --bench rl_speed --no-run 2>/dev/null
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$venv/bin/python" -c "import stable_baselines3, torch; print('stable-baselines3', stable_baselines3.__version__, 'torch', torch.__version__)"
for round in $(seq "$rounds"); do
  echo "--- round $round"
  out=$(cargo bench -q -p orchestrator --bench rl_speed -- "$iterations")
  echo "$out"
  obs=$(echo "$out" | awk '/^ENV/ {print $5}')
  "$venv/bin/python" benchmarks/rl/sb3_speed.py "$obs" "$iterations"
done
echo "machine after: load average $(cut -d' ' -f1-3 /proc/loadavg)"
