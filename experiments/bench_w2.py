"""Benchmark W2: learning a no-trade band by gradient descent through the hedge.

Workload W2 (docs/architecture.md, "Benchmark workloads"): an ATM call (S0 = K = 100, T = 0.25,
vol 0.2, r = 0), 63 steps, `Proportional(0.002)`, objective `risk.mean_cost_variance(lam=0.1)`,
float32; `fit` of a `BandHedge` width from 0.05 shares (adam, cosine-decaying learning rate
from 1e-2, fresh paths every step). Reports:

- the wall time of the fit to convergence (compile included, and steady state), the fitted
  width and how much it moved over the last 50 steps;
- the cost of one gradient evaluation (value and gradient of the objective w.r.t. the band)
  relative to one forward evaluation of the objective, at 2^16 and 2^18 paths (target
  <= 4x, the cheap-gradient principle), with the peak RSS of each, every measurement in its
  own process so memory is attributed to it alone.

Run: `python experiments/bench_w2.py` (results in experiments/results/bench_w2.json and .md),
`--quick` for a smoke test.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _setup():
    import hedgejax as hj

    model = hj.BlackScholes(100.0, 0.2)
    call = hj.EuropeanCall(100.0, 0.25)
    grid = hj.TimeGrid(0.25, 63)
    return hj, model, call, grid, hj.Proportional(0.002), hj.risk.mean_cost_variance(lam=0.1)


def worker(kind: str, n_paths: int, repeats: int) -> dict[str, Any]:
    import equinox as eqx
    import jax

    hj, model, call, grid, costs, objective = _setup()
    strategy = hj.BandHedge(0.1)

    def loss(s, key):
        return objective(hj.hedge(model, call, s, costs, grid, n_paths, key))

    fn = (eqx.filter_jit(loss) if kind == "forward"
          else eqx.filter_jit(eqx.filter_value_and_grad(loss)))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(strategy, jax.random.key(0)))
    first = time.perf_counter() - t0
    times = []
    for seed in range(1, repeats + 1):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(strategy, jax.random.key(seed)))
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"kind": kind, "n_paths": n_paths, "median_s": median,
            "compile_s": max(first - median, 0.0),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def fit_to_convergence(steps: int, n_paths: int) -> dict[str, Any]:
    import jax
    import numpy as np
    import optax

    hj, model, call, grid, costs, objective = _setup()

    def run(seed):
        return hj.fit(hj.BandHedge(0.05), objective, model, call, costs, grid,
                      key=jax.random.key(seed), steps=steps, n_paths=n_paths, progress=False,
                      optimizer=optax.adam(optax.cosine_decay_schedule(1e-2, steps)))

    t0 = time.perf_counter()
    fitted, history = run(0)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    run(1)
    second = time.perf_counter() - t0
    widths = np.asarray(jax.nn.softplus(history.params[:, 0]))
    tail = widths[-50:] if steps >= 50 else widths
    return {"steps": steps, "n_paths": n_paths, "wall_s_first": first,
            "wall_s_steady": second, "width": float(fitted.width),
            "width_moved_last_50_steps": float((tail.max() - tail.min()) / tail.mean()),
            "final_objective": float(history.objective[-10:].mean())}


def _spawn(kind: str, n_paths: int, repeats: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, str(n_paths),
                           str(repeats)], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _markdown(report: dict[str, Any]) -> str:
    f = report["fit"]
    lines = [
        "# Benchmark W2: fitting a no-trade band", "",
        f"- date: {report['date']}", f"- machine: {report['machine']}",
        f"- command: `{report['command']}`", "",
        "ATM call, T=0.25, 63 steps, vol 0.2, proportional cost 0.002, objective E[cost] + "
        "0.1 Var[hedge error], float32.", "",
        f"Fit to convergence: {f['steps']} adam steps (cosine-decaying rate from 1e-2) at "
        f"{f['n_paths']} paths per step: **{f['wall_s_first']:.1f} s** including compilation, "
        f"{f['wall_s_steady']:.1f} s steady state; fitted width {f['width']:.4f} shares, "
        f"which moved {100 * f['width_moved_last_50_steps']:.2f}% over the last 50 steps.", "",
        "One gradient evaluation (value and gradient w.r.t. the band) against one forward "
        "evaluation of the objective, each in its own process:", "",
        "| paths | forward s | gradient s | gradient / forward | forward peak RSS MiB "
        "| gradient peak RSS MiB | compile s (fwd / grad) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| 2^{r['n_paths'].bit_length() - 1} | {r['forward_s']:.3f} | "
            f"{r['gradient_s']:.3f} | {r['ratio']:.2f}x | {r['forward_rss_mib']:.0f} | "
            f"{r['gradient_rss_mib']:.0f} | {r['forward_compile_s']:.2f} / "
            f"{r['gradient_compile_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from hedgejax._report import log2_list, write_report
    from hedgejax.cli import OneLineParser

    parser = OneLineParser(prog="bench_w2", description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=log2_list, default=[16, 18],
                        help="log2 path counts (16,18)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fit-steps", type=int, default=300)
    parser.add_argument("--fit-paths", type=int, default=2**14)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    log2 = args.paths
    if min(args.repeats, args.fit_steps, args.fit_paths) < 1:
        parser.error("--repeats, --fit-steps and --fit-paths must be >= 1")
    if args.quick:
        log2, repeats, fit_steps, fit_paths = [10], 1, 10, 256
    else:
        repeats, fit_steps, fit_paths = args.repeats, args.fit_steps, args.fit_paths
    out = args.out or (ROOT / ("runs" if args.quick else "experiments/results") /
                       "bench_w2.json")
    rows = []
    for k in log2:
        fwd, grad = _spawn("forward", 2**k, repeats), _spawn("gradient", 2**k, repeats)
        rows.append({"n_paths": 2**k, "forward_s": fwd["median_s"],
                     "gradient_s": grad["median_s"], "ratio": grad["median_s"] / fwd["median_s"],
                     "forward_rss_mib": fwd["peak_rss_mib"],
                     "gradient_rss_mib": grad["peak_rss_mib"],
                     "forward_compile_s": fwd["compile_s"],
                     "gradient_compile_s": grad["compile_s"]})
        print(f"2^{k}: forward {fwd['median_s']:.3f} s, gradient {grad['median_s']:.3f} s "
              f"({rows[-1]['ratio']:.2f}x); RSS {fwd['peak_rss_mib']:.0f} / "
              f"{grad['peak_rss_mib']:.0f} MiB", flush=True)
    fit_row = fit_to_convergence(fit_steps, fit_paths)
    print(f"fit: {fit_row['wall_s_first']:.1f} s (steady {fit_row['wall_s_steady']:.1f} s), "
          f"width {fit_row['width']:.4f}", flush=True)
    write_report(out, "experiments/bench_w2.py", rows, _markdown, argv, fit=fit_row)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        sys.exit(0)
    sys.exit(main())
