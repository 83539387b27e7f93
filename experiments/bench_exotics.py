"""Benchmark "exotics": W1-style hedging of path-dependent books against a vanilla book.

W1's setting (Black-Scholes world and hedge model, S0 = 100, vol 0.2, T = 1 year, 252 daily
steps, `DeltaHedge()`, `Proportional(0.001)`, float32), with the book one of:

- vanilla: 1 ATM call (W1 itself, the baseline of every ratio);
- barrier: 1 down-and-out call, K = 100, H = 90, continuously monitored (the path state is a
  knocked flag, each step draws the Brownian bridge's minimum);
- barrier-discrete: the same, monitored at every grid step (daily; no bridge);
- asian: an arithmetic Asian call with daily fixings (Levy moment matching per path and step);
- lookback: a floating-strike lookback call (bridge minimum);
- mixed: a down-and-out call, an Asian, a lookback and a European put in one book.

Every row runs in the same process as the vanilla row on the same paths and steps: `vs
vanilla` is the row's throughput over the vanilla book's (target, issue 14: the barrier book
within 2x, i.e. a ratio >= 0.5). Each row: median of `--repeats` steady-state calls (fresh
keys) after a first call (key 0), compile time = first call minus the median, the process's
peak RSS so far.

Run: `python experiments/bench_exotics.py` (results in experiments/results/bench_exotics.json
and .md), `--quick` for a smoke test (tiny sizes, runs/bench_exotics.json).
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax

import hedgejax as hj
from hedgejax._report import write_report
from hedgejax.cli import OneLineParser

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.5    # barrier book's throughput over the vanilla book's (within 2x)


def books(n_steps: int) -> dict[str, hj.Book]:
    """The books, discretely monitored ones at every one of the `n_steps` grid steps."""
    dao = hj.Barrier(100.0, 90.0, 1.0)
    return {
        "vanilla": hj.Book([hj.EuropeanCall(100.0, 1.0)]),
        "barrier": hj.Book([dao]),
        "barrier-discrete": hj.Book([hj.Barrier(100.0, 90.0, 1.0, monitoring=n_steps)]),
        "asian": hj.Book([hj.Asian(100.0, 1.0)]),
        "lookback": hj.Book([hj.Lookback(1.0)]),
        "mixed": hj.Book([dao, hj.Asian(100.0, 1.0), hj.Lookback(1.0),
                          hj.EuropeanPut(95.0, 1.0)], [1.0, 1.0, 0.5, -2.0]),
    }


def measure(name: str, book: hj.Book, n_paths: int, n_steps: int,
            repeats: int) -> dict[str, Any]:
    model = hj.BlackScholes(100.0, 0.2)
    grid = hj.TimeGrid(1.0, n_steps)

    def run(seed: int) -> hj.HedgeResult:
        return jax.block_until_ready(hj.hedge(model, book, hj.DeltaHedge(),
                                              hj.Proportional(0.001), grid, n_paths,
                                              jax.random.key(seed)))

    t0 = time.perf_counter()
    first = run(0)
    first_s = time.perf_counter() - t0
    times = []
    for seed in range(1, repeats + 1):
        t0 = time.perf_counter()
        run(seed)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"book": name, "n_paths": n_paths, "n_steps": n_steps, "repeats": repeats,
            "median_s": median, "first_call_s": first_s,
            "compile_s": max(first_s - median, 0.0),
            "mpath_steps_per_s": n_paths * n_steps / median / 1e6,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "pnl_mean": float(first.pnl.mean()), "pnl_std": float(first.pnl.std())}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Path-dependent books, W1 setting (issue 14)", "",
        f"{report['date']}; {report['machine']}; `{report['command']}`.", "",
        "Each book hedged daily for a year with its Black-Scholes delta; `vs van.` is its",
        "throughput over the vanilla call's in the same run (target: barrier >= 0.5).", "",
        "| book             | paths   | M p-s/s | vs van. | compile s | RSS MiB |",
        "|------------------|---------|---------|---------|-----------|---------|",
    ]
    for r in report["rows"]:
        lines.append(f"| {r['book']:<16} | {r['n_paths']:>7,} | {r['mpath_steps_per_s']:7.1f} "
                     f"| {r['vs_vanilla']:7.2f} | {r['compile_s']:9.2f} | "
                     f"{r['peak_rss_mib']:7,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="bench_exotics", description=__doc__.splitlines()[0])
    parser.add_argument("--log2-paths", type=int, default=16, help="paths = 2^this")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the first")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, 1 repeat, results in runs/")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON output (default experiments/results/bench_exotics.json, "
                             "runs/bench_exotics.json with --quick)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or not 6 <= args.log2_paths <= 24:
        parser.error("--repeats must be >= 1 and --log2-paths in [6, 24]")
    n_paths, n_steps = (2**8, 16) if args.quick else (2**args.log2_paths, 252)
    repeats = 1 if args.quick else args.repeats
    out = args.out or (ROOT / ("runs" if args.quick else "experiments/results") /
                       "bench_exotics.json")
    if out.suffix != ".json":
        parser.error(f"--out must end in .json, got {str(out)!r}")
    rows = []
    for name, book in books(n_steps).items():
        row = measure(name, book, n_paths, n_steps, repeats)
        row["vs_vanilla"] = row["mpath_steps_per_s"] / (rows[0] if rows else row)[
            "mpath_steps_per_s"]
        rows.append(row)
        print(f"{name}: {row['mpath_steps_per_s']:.1f} M path-steps/s, "
              f"{row['vs_vanilla']:.2f}x vanilla, compile {row['compile_s']:.2f} s",
              flush=True)
    barrier = next(r for r in rows if r["book"] == "barrier")
    write_report(out, "experiments/bench_exotics.py", rows, markdown, argv,
                 target_barrier_vs_vanilla=TARGET,
                 target_met=barrier["vs_vanilla"] >= TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
