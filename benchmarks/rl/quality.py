#!/usr/bin/env python3
"""Quality of an RL policy against the HPA CPU-target grid, from a run's summary.csv (standard library only).

Definitions (docs/BENCHMARKS.md, "RL autoscalers"):
- a policy *meets the SLO* when, on every scenario, its mean share of seconds whose p95 exceeds the SLO is at most
  BOUND_PCT (5 %);
- the *tuned HPA* is the HPA target that meets the SLO with the fewest pod-minutes (summed over the scenarios);
- the RL policy *wins* when its SLO-violation seconds (mean over scenarios) are no more than the tuned HPA's and its
  pod-minutes are at least 20 % fewer.
Confidence intervals: 95 % percentile bootstrap over seeds, stratified by scenario (seeds resampled with replacement
within each scenario, the same draw for both policies so the comparison is paired), 10,000 resamples, seeded.

usage: quality.py RUN_DIR/summary.csv [RL_POLICY ...]
"""
import csv
import os
import random
import sys
from collections import defaultdict

BOUND_PCT = 5.0
RESAMPLES = 10_000
SEED = 20260


def load(path):
    rows = list(csv.DictReader(open(path)))
    # data[policy][scenario][seed] = (pod_minutes, slo_violation_seconds_pct)
    data = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        data[r["policy"]][r["scenario"]][int(r["seed"])] = (float(r["pod_minutes"]), float(r["slo_violation_seconds_pct"]))
    return data


def mean(xs):
    return sum(xs) / len(xs)


def totals(cells, draw):
    """Pod-minutes summed over scenarios and violation % averaged over them, for one draw of seeds per scenario."""
    pods = sum(mean([cells[s][seed][0] for seed in seeds]) for s, seeds in draw.items())
    viol = mean([mean([cells[s][seed][1] for seed in seeds]) for s, seeds in draw.items()])
    return pods, viol


def ci(values):
    values = sorted(values)
    return values[int(0.025 * len(values))], values[int(0.975 * len(values)) - 1]


def main():
    data = load(sys.argv[1])
    rl_policies = sys.argv[2:] or [p for p in data if not p.startswith("hpa-")]
    scenarios = sorted(next(iter(data.values())).keys())
    seeds = {s: sorted(next(iter(data.values()))[s].keys()) for s in scenarios}
    full = {s: seeds[s] for s in scenarios}

    print(f"| policy | " + " | ".join(f"{s} pod-min | {s} viol. %" for s in scenarios) + " | total pod-min | mean viol. % | meets |")
    print("|---" * (2 * len(scenarios) + 4) + "|")
    meets = {}
    for policy in sorted(data, key=lambda p: (not p.startswith("hpa-"), p)):
        cells = data[policy]
        per = [(mean([cells[s][k][0] for k in seeds[s]]), mean([cells[s][k][1] for k in seeds[s]])) for s in scenarios]
        meets[policy] = all(v <= BOUND_PCT for _, v in per)
        pods, viol = totals(cells, full)
        print(f"| {policy} | " + " | ".join(f"{p:.1f} | {v:.2f}" for p, v in per) + f" | {pods:.1f} | {viol:.2f} | {'yes' if meets[policy] else 'no'} |")

    hpas = [p for p in data if p.startswith("hpa-") and meets[p]]
    # QUALITY_REFERENCE=hpa-cpu-NN compares against that target instead (e.g. when none meets the bound).
    reference = os.environ.get("QUALITY_REFERENCE")
    if reference:
        tuned = reference
        print(f"\nreference HPA: {tuned} (given by QUALITY_REFERENCE, not tuned)")
    elif not hpas:
        print("\nno HPA target meets the SLO bound (QUALITY_REFERENCE=hpa-cpu-NN compares against one anyway)")
        return
    else:
        tuned = min(hpas, key=lambda p: totals(data[p], full)[0])
        print(f"\ntuned HPA: {tuned} (cheapest target with violation seconds <= {BOUND_PCT} % on every scenario)")
    rng = random.Random(SEED)
    draws = [{s: [rng.choice(seeds[s]) for _ in seeds[s]] for s in scenarios} for _ in range(RESAMPLES)]
    for policy in rl_policies:
        if policy not in data:
            continue
        t_pods, t_viol = totals(data[tuned], full)
        r_pods, r_viol = totals(data[policy], full)
        saving = 100.0 * (1.0 - r_pods / t_pods)
        savings, diffs = [], []
        for draw in draws:
            tp, tv = totals(data[tuned], draw)
            rp, rv = totals(data[policy], draw)
            savings.append(100.0 * (1.0 - rp / tp))
            diffs.append(rv - tv)
        s_lo, s_hi = ci(savings)
        d_lo, d_hi = ci(diffs)
        better_slo = sum(d <= 0 for d in diffs) / len(diffs)
        win = r_viol <= t_viol and saving >= 20.0
        print(
            f"{policy} vs {tuned}: pod-minutes {r_pods:.1f} vs {t_pods:.1f}, saving {saving:.1f} % "
            f"[95 % CI {s_lo:.1f}, {s_hi:.1f}]; violation seconds {r_viol:.2f} % vs {t_viol:.2f} %, "
            f"difference {r_viol - t_viol:+.2f} pp [95 % CI {d_lo:+.2f}, {d_hi:+.2f}], "
            f"P(no worse) {better_slo:.2f}; goal (no worse SLO, >= 20 % saving): {'MET' if win else 'not met'}"
        )


if __name__ == "__main__":
    main()
