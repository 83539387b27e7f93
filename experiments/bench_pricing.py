"""Benchmark: the cost of the robust Heston and Merton pricers (issue 10), against the pricers
they replaced, run in the same process.

Rows (float32, the default):
- "price": one jitted call pricing 2^14 calls at different spots, each with its own
  variance (as `hedge()` does with a Heston hedge model conditioned on the path's variance);
  prices per second.
- "hedge": a long ATM call (S0 = K = 100, T = 1) delta-hedged every step at 10 bp in the
  model's own world, with the same model as hedge model: Heston (v0 = theta = 0.04,
  kappa = 1.5, xi = 0.5, rho = -0.7) on 2^12 paths x 63 steps; Merton (vol 0.15, 1 jump a
  year, jump mean -0.1, jump std 0.1) on 2^14 paths x 252 steps; path-steps per second.

The baselines are the pricers hedgejax shipped before: experiments/baselines/
heston_lewis96.py and merton_series64.py. Each variant is registered in turn and JAX's
caches are cleared between them, so every call compiles the variant it names. The ratio is
new / baseline throughput (below 1: the new pricer is slower).

Run: `python experiments/bench_pricing.py` (results in experiments/results/
bench_pricing.json and .md), `--quick` for a smoke test.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

import hedgejax as hj
from hedgejax._pricing import registry
from hedgejax._report import write_report
from hedgejax.cli import OneLineParser

ROOT = Path(__file__).resolve().parents[1]


def _models() -> dict[str, Any]:
    warnings.simplefilter("ignore", hj.FellerWarning)
    return {
        "heston": hj.Heston(100.0, v0=0.04, kappa=1.5, theta=0.04, xi=0.5, rho=-0.7),
        "merton": hj.Merton(100.0, vol=0.15, jump_rate=1.0, jump_mean=-0.1, jump_std=0.1),
    }


def _pricers(name: str) -> dict[str, Any]:
    """{variant: (call pricer, put pricer)} for the model `name`."""
    if str(ROOT) not in sys.path:   # run as a script: the baselines live in experiments/
        sys.path.insert(0, str(ROOT))
    if name == "heston":
        from experiments.baselines import heston_lewis96 as old
    else:
        from experiments.baselines import merton_series64 as old
    model_type = type(_models()[name])
    current = (registry._PRICERS[(model_type, hj.EuropeanCall)],
               registry._PRICERS[(model_type, hj.EuropeanPut)])

    def old_call(model, inst, log_spot, tau):
        return old._vanilla(model, log_spot, inst.strike, tau, 1.0)

    def old_put(model, inst, log_spot, tau):
        return old._vanilla(model, log_spot, inst.strike, tau, -1.0)

    return {"baseline": (old_call, old_put), "robust": current}


def _timed(fn, repeats: int) -> tuple[float, float]:
    """(median steady-state seconds, compile seconds = first call minus the median)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(0))
    first = time.perf_counter() - t0
    times = []
    for seed in range(1, repeats + 1):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(seed))
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return median, max(first - median, 0.0)


def measure(name: str, variant: str, kind: str, n: int, n_steps: int,
            repeats: int) -> dict[str, Any]:
    model = _models()[name]
    call = hj.EuropeanCall(100.0, 1.0)
    if kind == "price":
        spots = jnp.linspace(70.0, 140.0, n)
        if name == "heston":
            # a variance per option, as `conditioned` sets it (the constructor takes scalars)
            model = eqx.tree_at(lambda m: m.v0, model, jnp.linspace(0.005, 0.09, n))
        priced = jax.jit(lambda s, m: hj.price(m, call, spot=s))

        def fn(seed):
            return priced(spots + 1e-3 * seed, model)
        work = n
    else:
        grid = hj.TimeGrid(1.0, n_steps)

        def fn(seed):
            return hj.hedge(model, call, hj.DeltaHedge(), hj.Proportional(0.001), grid,
                            n_paths=n, key=jax.random.key(seed), hedge_model=model).pnl
        work = n * n_steps
    median, compile_s = _timed(fn, repeats)
    row = {"model": name, "variant": variant, "kind": kind, "n": n, "n_steps": n_steps,
           "median_s": median, "per_s": work / median, "compile_s": compile_s,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    unit = "prices/s" if kind == "price" else "path-steps/s"
    print(f"{name} {kind} {variant}: {row['per_s'] / 1e6:.3f} M {unit}, compile "
          f"{compile_s:.2f} s", flush=True)
    return row


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Benchmark: robust Heston and Merton pricers against the ones they replaced", "",
        f"- date: {report['date']}", f"- machine: {report['machine']}",
        f"- command: `{report['command']}`", "",
        "float32. price: 2^14 calls per jitted call (Heston with a variance per option). "
        "hedge: long ATM call, T = 1, delta-hedged every step at 10 bp, the world's model as "
        "hedge model (Heston 2^12 paths x 63 steps, Merton 2^14 x 252). Baselines: the "
        "previous pricers (experiments/baselines/), same process, caches cleared between "
        "variants. Ratio = robust / baseline throughput. Peak RSS is the process's "
        "high-water mark so far.", "",
        "| model | workload | variant | M per s | ratio | compile s | peak RSS MiB |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    base = {(r["model"], r["kind"]): r for r in report["rows"] if r["variant"] == "baseline"}
    for r in report["rows"]:
        ratio = r["per_s"] / base[(r["model"], r["kind"])]["per_s"]
        unit = "prices" if r["kind"] == "price" else "path-steps"
        lines.append(f"| {r['model']} | {r['kind']} ({unit}) | {r['variant']} | "
                     f"{r['per_s'] / 1e6:.3f} | {ratio:.2f} | {r['compile_s']:.2f} | "
                     f"{r['peak_rss_mib']:,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="bench_pricing", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    repeats = 1 if args.quick else args.repeats
    sizes = {"heston": {"price": (2**14, 0), "hedge": (2**12, 63)},
             "merton": {"price": (2**14, 0), "hedge": (2**14, 252)}}
    if args.quick:
        sizes = {m: {"price": (2**10, 0), "hedge": (2**8, 8)} for m in sizes}
    out = args.out or (ROOT / ("runs" if args.quick else "experiments/results") /
                       "bench_pricing.json")
    rows = []
    for name in ("heston", "merton"):
        model_type = type(_models()[name])
        saved = (registry._PRICERS[(model_type, hj.EuropeanCall)],
                 registry._PRICERS[(model_type, hj.EuropeanPut)])
        try:
            for variant, (call_fn, put_fn) in _pricers(name).items():
                registry._PRICERS[(model_type, hj.EuropeanCall)] = call_fn
                registry._PRICERS[(model_type, hj.EuropeanPut)] = put_fn
                jax.clear_caches()
                for kind, (n, n_steps) in sizes[name].items():
                    rows.append(measure(name, variant, kind, n, n_steps, repeats))
        finally:
            registry._PRICERS[(model_type, hj.EuropeanCall)] = saved[0]
            registry._PRICERS[(model_type, hj.EuropeanPut)] = saved[1]
            jax.clear_caches()
    write_report(out, "experiments/bench_pricing.py", rows, _markdown, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
