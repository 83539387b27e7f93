"""Price surfaces (`hedge(..., pricing="surface")`) against the exact pricers they stand in
for: errors on held-out states, build time, and hedge P&L on common random numbers.

What it measures (float32, the default dtype):

1. Accuracy on held-out states. For each world (= hedge model) -- Heston W4 (S0 = 100,
   v0 = theta = 0.04, kappa = 1.5, xi = 0.5, rho = -0.7) and Merton (S0 = 100, vol 0.2,
   jump_rate 1, jump_mean -0.1, jump_std 0.15) -- the book is one ATM call (K = 100, T = 1)
   on `TimeGrid(1, 252)`, and surfaces are built (`eqx.filter_jit(_surface.build)`, as
   `hedge()` does) with `PriceSurface()` (32 x 10 x 16 nodes) and
   `PriceSurface(n_x=64, n_v=14)` (n_v is unused by Merton). Held-out states are the world's
   simulated states (log-spot and, for Heston, variance) on 1,024 paths at steps 0, 25, 63,
   126, 189, 227, 245, 250 and 251: states the paths visit, not interpolation nodes. There
   the surface's value and Greeks are compared with the exact pricer's (`book_value_log`,
   and `_greeks_log` for delta, gamma and vega by autodiff): |price error| / current spot,
   |delta error| (per unit of the book), |gamma error| / |exact gamma| where |exact gamma| >
   1e-4, and |vega error| / max |exact vega| over all held-out states of that world (vega
   against the model's `vega_field`: Heston's current variance, Merton's vol). Max, 99th
   percentile and median, split into time to maturity >= 1 month and < 1 month, next to the
   issue's targets (delta 1e-4 per unit, gamma 1e-3 relative, price 1e-5 x spot; vega has
   none). The exact pricer runs in float32 too, so its own rounding is part of the error.
   Build time: median of `--repeats` steady-state calls of the jitted build; compile time:
   the first call less that.

2. Hedge P&L on common random numbers: `hedge(world, EuropeanCall(100, 1), DeltaHedge(),
   Proportional(0.001), TimeGrid(1, 63), 4096 paths, key(0), pricing=p)` for p = "exact" and
   "surface", per world, and Heston with `DeltaGammaHedge(EuropeanCall(100, 1.5))` on 1,024
   paths x 21 steps. Reported: the difference of the P&L means in standard errors of the
   exact run's mean, of the stds in standard errors of its std (std / sqrt(2 n)), both
   against the target 0.2, and the per-path RMS and max |difference|. The wall times include
   compilation (the Heston exact run is the slow one).

Run: `python experiments/surface_accuracy.py` (about 2-5 minutes on 2 CPU cores; results in
experiments/results/surface_accuracy.json and .md); `--quick` for a smoke run with tiny
sizes (results under runs/).
"""

from __future__ import annotations

import os
import statistics
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import hedgejax as hj
from hedgejax import _surface
from hedgejax._hedge import _expiry_steps, _greeks_log
from hedgejax._instruments import as_book
from hedgejax._pricing.registry import book_value_log
from hedgejax._random import Draws, key_words
from hedgejax._report import write_report
from hedgejax.cli import OneLineParser

ROOT = Path(__file__).resolve().parents[1]

SPOT = 100.0
MONTH = 1.0 / 12.0
# The issue's targets (per unit of the book; gamma where |gamma| > GAMMA_FLOOR).
TARGETS = {"price/S": 1e-5, "delta": 1e-4, "gamma rel": 1e-3, "vega rel": None}
GAMMA_FLOOR = 1e-4
P_TARGET = 0.2
SETTINGS = {"32x10x16": hj.PriceSurface(), "64x14x16": hj.PriceSurface(n_x=64, n_v=14)}

FULL = dict(n_steps=252, steps=(0, 25, 63, 126, 189, 227, 245, 250, 251), n_paths=1024,
            pnl=(4096, 63), gamma_pnl=(1024, 21))
QUICK = dict(n_steps=24, steps=(0, 6, 12, 18, 22, 23), n_paths=64, pnl=(256, 8),
             gamma_pnl=(128, 6))

_build = eqx.filter_jit(_surface.build)


def heston() -> hj.Heston:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hj.FellerWarning)  # W4's Heston violates Feller
        return hj.Heston(SPOT, v0=0.04, kappa=1.5, theta=0.04, xi=0.5, rho=-0.7)


def merton() -> hj.Merton:
    return hj.Merton(SPOT, 0.2, 1.0, -0.1, 0.15)


WORLDS = {"heston": heston, "merton": merton}


def _fmt(x: float | None) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.1e}"


def _states(model, grid: hj.TimeGrid, steps, n_paths: int, seed: int = 7) -> dict[int, Any]:
    """The world's state at the grid steps `steps` on `n_paths` simulated paths."""
    index = jnp.arange(n_paths, dtype=jnp.uint32)
    words = key_words(jax.random.key(seed))
    state = model.init(index)
    step = jax.jit(lambda s, i: model.step(s, i * grid.dt, grid.dt,
                                           Draws(words, index, i, jnp.float32)))
    out = {}
    for i in range(max(steps) + 1):
        if i in steps:
            out[i] = state
        state = step(state, jnp.uint32(i))
    return out


@eqx.filter_jit
def _exact(model, book, expiry, dt, i, state):
    """Exact value, delta, gamma and vega per path at grid step i."""
    alive = tuple(e > i for e in expiry)
    t = i.astype(jnp.float32) * dt
    hm = model.conditioned(state)
    spot = jnp.exp(state.log_spot)
    value = book_value_log(hm, book, state.log_spot, t, alive)
    return (value, *_greeks_log(hm, book, state.log_spot, spot, t, alive))


@eqx.filter_jit
def _surf(surface, expiry, i, state):
    """The surface's value, delta, gamma and vega per path at grid step i."""
    alive = tuple(e > i for e in expiry)
    spot = jnp.exp(state.log_spot)
    value = surface.value(i, state.log_spot, state.variance, alive)
    return (value, *surface.greeks(i, state.log_spot, spot, state.variance, alive))


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t0


def _quantiles(x: np.ndarray) -> dict[str, float | int | None]:
    if x.size == 0:
        return {"max": None, "p99": None, "median": None, "n": 0}
    return {"max": float(x.max()), "p99": float(np.percentile(x, 99)),
            "median": float(np.median(x)), "n": int(x.size)}


def accuracy(name: str, sizes: dict[str, Any], repeats: int) -> tuple[list, list]:
    """Rows of held-out errors (per setting, tau bucket and quantity) and of build times."""
    grid = hj.TimeGrid(1.0, sizes["n_steps"])
    book = as_book(hj.EuropeanCall(100.0, 1.0))
    expiry, _ = _expiry_steps(book, grid)
    model = WORLDS[name]().prepared(float(jnp.max(book.maturities)), grid.dt)
    steps = sizes["steps"]
    states = _states(model, grid, steps, sizes["n_paths"])
    t0 = time.perf_counter()
    exact = {i: [np.asarray(a, np.float64) for a in
                 _exact(model, book, expiry, grid.dt, jnp.int32(i), states[i])]
             for i in steps}
    print(f"{name}: exact prices and Greeks on {len(steps)} x {sizes['n_paths']} held-out "
          f"states in {time.perf_counter() - t0:.1f} s", flush=True)
    vega_max = max(float(np.abs(exact[i][3]).max()) for i in steps)
    tau = {i: 1.0 - i * grid.dt for i in steps}
    rows, builds = [], []
    for label, spec in SETTINGS.items():
        args = (model, book, expiry, model, grid, jnp.float32, spec)
        surface, first = _timed(_build, *args)
        times = [_timed(_build, *args)[1] for _ in range(repeats)]
        median = statistics.median(times)
        builds.append({"model": name, "nodes": label, "n_x": spec.n_x,
                       "n_v": spec.n_v if name == "heston" else 1, "n_t": spec.n_t,
                       "build_s": median, "build_times_s": times,
                       "compile_s": max(first - median, 0.0)})
        buckets = (">= 1 month", "< 1 month")
        errors: dict[str, dict[str, list]] = {b: {q: [] for q in TARGETS} for b in buckets}
        where: dict[str, dict[str, list]] = {b: {q: [] for q in TARGETS} for b in buckets}
        for i in steps:
            value, delta, gamma, vega = (np.asarray(a, np.float64) for a in
                                         _surf(surface, expiry, jnp.int32(i), states[i]))
            e_value, e_delta, e_gamma, e_vega = exact[i]
            for a in (value, delta, gamma, vega):
                if not np.all(np.isfinite(a)):
                    raise RuntimeError(f"{name} {label}: non-finite surface output at {i}")
            spot = np.exp(np.asarray(states[i].log_spot, np.float64))
            var = (np.full_like(spot, np.nan) if states[i].variance is None
                   else np.asarray(states[i].variance, np.float64))
            big = np.abs(e_gamma) > GAMMA_FLOOR
            bucket = buckets[0] if tau[i] >= MONTH - 1e-9 else buckets[1]
            err, at = errors[bucket], where[bucket]
            state = np.stack([np.full_like(spot, i), spot, var], axis=1)
            for q, e, mask in (
                    ("price/S", np.abs(value - e_value) / spot, None),
                    ("delta", np.abs(delta - e_delta), None),
                    ("gamma rel", np.abs(gamma - e_gamma) / np.maximum(np.abs(e_gamma),
                                                                       GAMMA_FLOOR), big),
                    ("vega rel", np.abs(vega - e_vega) / vega_max, None)):
                err[q].append(e if mask is None else e[mask])
                at[q].append(state if mask is None else state[mask])
        for bucket, by_q in errors.items():
            for q, parts in by_q.items():
                e = np.concatenate(parts)
                stats = _quantiles(e)
                worst = None
                if e.size:
                    step, s_worst, v_worst = np.concatenate(where[bucket][q])[np.argmax(e)]
                    worst = {"step": int(step), "spot": float(s_worst),
                             "variance": None if np.isnan(v_worst) else float(v_worst)}
                rows.append({"model": name, "nodes": label, "tau": bucket, "quantity": q,
                             **stats, "target": TARGETS[q], "worst_at": worst})
        worst = {q: max((r["max"] or 0.0) for r in rows
                        if r["nodes"] == label and r["quantity"] == q) for q in TARGETS}
        print(f"{name} {label}: build {median:.2f} s (compile {builds[-1]['compile_s']:.1f} "
              f"s); worst " + ", ".join(f"{q} {_fmt(v)}" for q, v in worst.items()),
              flush=True)
    return rows, builds


def pnl(name: str, strategy_name: str, n_paths: int, n_steps: int) -> dict[str, Any]:
    """Exact against surface hedge P&L on the same paths."""
    world = WORLDS[name]()
    strategy = (hj.DeltaHedge() if strategy_name == "delta" else
                hj.DeltaGammaHedge(hj.EuropeanCall(100.0, 1.5)))
    runs, walls = {}, {}
    for p in ("exact", "surface"):
        result, walls[p] = _timed(lambda p=p: hj.hedge(
            world, hj.EuropeanCall(100.0, 1.0), strategy, hj.Proportional(0.001),
            hj.TimeGrid(1.0, n_steps), n_paths=n_paths, key=jax.random.key(0), pricing=p))
        runs[p] = np.asarray(result.pnl, np.float64)
    exact, surf = runs["exact"], runs["surface"]
    n = exact.size
    se_mean = exact.std(ddof=1) / np.sqrt(n)
    se_std = exact.std(ddof=1) / np.sqrt(2 * n)
    diff = surf - exact
    row = {"model": name, "strategy": strategy_name, "n_paths": n_paths, "n_steps": n_steps,
           "mean_exact": float(exact.mean()), "std_exact": float(exact.std(ddof=1)),
           "mean_surface": float(surf.mean()), "std_surface": float(surf.std(ddof=1)),
           "mean_diff_se": float(abs(surf.mean() - exact.mean()) / se_mean),
           "std_diff_se": float(abs(surf.std(ddof=1) - exact.std(ddof=1)) / se_std),
           "rms_diff": float(np.sqrt(np.mean(diff * diff))),
           "max_diff": float(np.abs(diff).max()),
           "exact_s": walls["exact"], "surface_s": walls["surface"], "target_se": P_TARGET}
    print(f"P&L {name} {strategy_name} {n_paths}x{n_steps}: mean diff "
          f"{row['mean_diff_se']:.3f} se, std diff {row['std_diff_se']:.3f} se, rms "
          f"{_fmt(row['rms_diff'])}, max {_fmt(row['max_diff'])} (exact {walls['exact']:.1f}"
          f" s, surface {walls['surface']:.1f} s)", flush=True)
    return row


def _markdown(report: dict[str, Any]) -> str:
    sizes = report["sizes"]
    steps = ", ".join(str(s) for s in sizes["steps"])

    def para(*text: str) -> list[str]:
        return [*textwrap.wrap("".join(text), 80, break_on_hyphens=False), ""]

    lines = [
        "# Price surfaces against the exact pricers", "",
        f"- date: {report['date']}", f"- machine: {report['machine']}",
        f"- jax {report['jax_version']}, os.cpu_count() = {report['cpu_count']}",
        f"- load average at start / end: {report['load_start']} / {report['load_end']}",
        f"- command: `{report['command']}`",
        f"- total: {report['total_s']:.0f} s", "",
        *para("float32. Book: one ATM call (K = 100, T = 1), hedge model = world: Heston "
              "W4 (v0 = theta = 0.04, kappa = 1.5, xi = 0.5, rho = -0.7) and Merton (vol "
              "0.2, jump_rate 1, jump_mean -0.1, jump_std 0.15), S0 = 100. Surfaces on "
              f"TimeGrid(1, {sizes['n_steps']}); nodes n_x x n_v x n_t (n_v unused by "
              "Merton). Held-out states: the world's simulated states on "
              f"{sizes['n_paths']} paths at steps {steps} (not nodes), split by time to "
              "maturity tau. Errors against the exact pricer (itself in float32), all in "
              "absolute value: price error / current spot, delta error per unit of the "
              "book, gamma error / exact gamma where exact gamma > "
              f"{GAMMA_FLOOR:.0e}, vega error / max exact vega over the held-out states "
              "(vega: Heston d/d variance, Merton d/d vol). Target: the issue's bound "
              "(vega: none)."),
    ]
    for name in WORLDS:
        lines += [f"## {name}: errors on held-out states", "",
                  "| nodes | tau | quantity | max | p99 | median | target |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for r in report["rows"]:
            if r["model"] == name:
                lines.append(f"| {r['nodes']} | {r['tau']} | {r['quantity']} | "
                             f"{_fmt(r['max'])} | {_fmt(r['p99'])} | {_fmt(r['median'])} | "
                             f"{_fmt(r['target'])} |")
        lines += ["", f"{name}: the state of the worst delta error (step, spot, variance):", "",
                  "| nodes | tau | delta err | step | spot | variance |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in report["rows"]:
            if r["model"] == name and r["quantity"] == "delta" and r["worst_at"]:
                w = r["worst_at"]
                lines.append(f"| {r['nodes']} | {r['tau']} | {_fmt(r['max'])} | "
                             f"{w['step']} | {w['spot']:.2f} | {_fmt(w['variance'])} |")
        lines.append("")
    lines += [
        "## Surface build time", "",
        *para(f"Steady state: median of {report['repeats']} calls after the first of the "
              "jitted build (`eqx.filter_jit(_surface.build)`); compile: first call less "
              "that. The machine was shared and loaded during the run (load average above), "
              "so times are indicative only."),
        "| model | nodes | build s | compile s |", "|---|---|---:|---:|"]
    for b in report["builds"]:
        lines.append(f"| {b['model']} | {b['nodes']} | {b['build_s']:.3f} | "
                     f"{b['compile_s']:.1f} |")
    lines += [
        "", "## Hedge P&L on common random numbers", "",
        *para("hedge(world, EuropeanCall(100, 1), strategy, Proportional(0.001), "
              "TimeGrid(1, steps), paths, key(0)) with pricing=\"exact\" and \"surface\" "
              "(default nodes); delta-gamma: DeltaGammaHedge(EuropeanCall(100, 1.5)). "
              "Columns: the absolute difference of the P&L means in standard errors of the "
              "exact run's mean, of the stds in standard errors of its std (std / "
              f"sqrt(2n)), target {P_TARGET} for both; the per-path RMS and max absolute "
              "P&L difference; wall times (including compilation) of the exact and surface "
              "runs."),
        "| model | strategy | n x steps | mean | std | rms | max | exact s | surf s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["pnl"]:
        lines.append(f"| {r['model']} | {r['strategy']} | {r['n_paths']}x{r['n_steps']} | "
                     f"{r['mean_diff_se']:.3f} | {r['std_diff_se']:.3f} | "
                     f"{_fmt(r['rms_diff'])} | {_fmt(r['max_diff'])} | "
                     f"{r['exact_s']:.1f} | {r['surface_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="surface_accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="steady-state build calls timed")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (24-step grid, 64 paths); results under runs/")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    sizes = QUICK if args.quick else FULL
    repeats = 1 if args.quick else args.repeats
    out = args.out or (ROOT / ("runs" if args.quick else "experiments/results") /
                       "surface_accuracy.json")
    load_start = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    t0 = time.perf_counter()
    rows, builds = [], []
    for name in WORLDS:
        r, b = accuracy(name, sizes, repeats)
        rows += r
        builds += b
    pnl_rows = [pnl(name, "delta", *sizes["pnl"]) for name in WORLDS]
    pnl_rows.append(pnl("heston", "delta-gamma", *sizes["gamma_pnl"]))
    total = time.perf_counter() - t0
    print(f"total {total:.0f} s", flush=True)
    write_report(out, "experiments/surface_accuracy.py", rows, _markdown, argv,
                 jax_version=jax.__version__, cpu_count=os.cpu_count(),
                 load_start=load_start,
                 load_end=", ".join(f"{x:.1f}" for x in os.getloadavg()),
                 total_s=total, repeats=repeats, sizes=sizes, targets=TARGETS,
                 builds=builds, pnl=pnl_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
