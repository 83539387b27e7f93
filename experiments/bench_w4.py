"""Benchmark W4: hedging in a Heston world with Black-Scholes deltas.

Workload W4 (docs/architecture.md, "Benchmark workloads"): W1's trade (long 1 ATM call,
S0 = K = 100, T = 1, 252 daily steps, `DeltaHedge(every=1)`, `Proportional(0.001)`, float32) in a
Heston world (v0 = theta = 0.04, kappa = 1.5, xi = 0.5, rho = -0.7, Andersen QE), hedged with
Black-Scholes deltas at a fixed implied vol of 0.2 (`hedge_model=BlackScholes(100, 0.2)`). W1
(a Black-Scholes world) is measured in the same process, so the ratio shows what the Heston
step costs.

Reports path-steps/s (median of `--repeats` steady-state calls), compile time (first call
minus the median), peak RSS of the process, and the P&L statistics of both worlds: the
model-risk answer (how much worse BS deltas do when volatility is stochastic).

Run: `python experiments/bench_w4.py` (2^18 and 2^20 paths; results in
experiments/results/bench_w4.json and .md), `--quick` for a smoke test.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import jax

import hedgejax as hj
from hedgejax._report import log2_list, write_report
from hedgejax.cli import OneLineParser

ROOT = Path(__file__).resolve().parents[1]


def worlds() -> dict[str, Any]:
    warnings.simplefilter("ignore", hj.FellerWarning)  # W4's Heston violates Feller
    return {
        "W4 heston world, BS deltas": hj.Heston(100.0, v0=0.04, kappa=1.5, theta=0.04,
                                                 xi=0.5, rho=-0.7),
        "W1 black-scholes world": hj.BlackScholes(100.0, 0.2),
    }


def measure(name: str, world, n_paths: int, n_steps: int, repeats: int) -> dict[str, Any]:
    call = hj.EuropeanCall(100.0, 1.0)
    grid = hj.TimeGrid(1.0, n_steps)
    hedger = hj.BlackScholes(100.0, 0.2)

    def run(seed: int):
        return hj.hedge(world, call, hj.DeltaHedge(), hj.Proportional(0.001), grid,
                        n_paths=n_paths, key=jax.random.key(seed), hedge_model=hedger)

    t0 = time.perf_counter()
    result = jax.block_until_ready(run(0))
    first = time.perf_counter() - t0
    times = []
    for seed in range(1, repeats + 1):
        t0 = time.perf_counter()
        jax.block_until_ready(run(seed))
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    stats = hj.summary(result)
    row = {
        "world": name, "n_paths": n_paths, "n_steps": n_steps, "median_s": median,
        "mpath_steps_per_s": n_paths * n_steps / median / 1e6,
        "compile_s": max(first - median, 0.0),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **{k: stats[k] for k in ("mean", "std", "es", "mean_cost", "std_hedge_error",
                                 "hedge_effectiveness")},
    }
    print(f"{name} 2^{n_paths.bit_length() - 1}: {row['mpath_steps_per_s']:.1f} M "
          f"path-steps/s, compile {row['compile_s']:.2f} s, std hedge error "
          f"{row['std_hedge_error']:.4f}, ES99 {row['es']:.4f}", flush=True)
    return row


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Benchmark W4: Heston world hedged with Black-Scholes deltas", "",
        f"- date: {report['date']}", f"- machine: {report['machine']}",
        f"- command: `{report['command']}`", "",
        "Long 1 ATM call, T=1, 252 daily delta hedges at 10 bp, float32. Heston: v0=theta="
        "0.04, kappa=1.5, xi=0.5, rho=-0.7 (QE); the hedger uses Black-Scholes at vol 0.2. "
        "W1 (Black-Scholes world, same hedger) is measured in the same process. Peak RSS is "
        "the process's high-water mark so far (it includes earlier rows).", "",
        "| world | paths | M path-steps/s | vs W1 | compile s | std hedge error | ES 99% "
        "| mean cost | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    w1 = {r["n_paths"]: r for r in report["rows"] if r["world"].startswith("W1")}
    for r in report["rows"]:
        ratio = r["mpath_steps_per_s"] / w1[r["n_paths"]]["mpath_steps_per_s"]
        lines.append(
            f"| {r['world']} | 2^{r['n_paths'].bit_length() - 1} | "
            f"{r['mpath_steps_per_s']:.1f} | {ratio:.2f} | {r['compile_s']:.2f} | "
            f"{r['std_hedge_error']:.4f} | {r['es']:.4f} | {r['mean_cost']:.4f} | "
            f"{r['peak_rss_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="bench_w4", description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=log2_list, default=[18, 20],
                        help="log2 path counts (18,20)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=252)
    parser.add_argument("--quick", action="store_true", help="2^12 paths, 20 steps")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    log2 = args.paths
    if args.repeats < 1 or args.steps < 1:
        parser.error("--repeats and --steps must be >= 1")
    if args.quick:
        log2, steps, repeats = [12], 20, 1
    else:
        steps, repeats = args.steps, args.repeats
    out = args.out or (ROOT / ("runs" if args.quick else "experiments/results") /
                       "bench_w4.json")
    rows = [measure(name, world, 2**k, steps, repeats)
            for k in log2 for name, world in worlds().items()]
    write_report(out, "experiments/bench_w4.py", rows, _markdown, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
