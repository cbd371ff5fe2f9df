#!/usr/bin/env bash
# RL quality benchmark: GNN-PPO vs the HPA CPU-target grid on Online Boutique, GRLScaler scenarios, 5 seeds.
#   benchmarks/rl/quality.sh [MATRIX]     (default experiments/rl-quality.yaml; experiments/rl-tune.yaml tunes)
# Trains one model per seed, runs every cell, then prints the table and the comparison with the tuned HPA, with
# 95 % bootstrap confidence intervals (benchmarks/rl/quality.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
matrix=${1:-experiments/rl-quality.yaml}
cargo build --release -q -p orchestrator
tag="$(basename "$matrix" .yaml)-$(date -u +%Y%m%dT%H%M%SZ)"
./target/release/orch run "$matrix" --tag "$tag" --logs-dir logs
python3 benchmarks/rl/quality.py "logs/$tag/summary.csv"
