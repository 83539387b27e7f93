"""Benchmark W3: all Greeks of a 1,000-option book, autodiff vs bump-and-revalue.

The book (workload W3 of docs/architecture.md): 1,000 European calls and puts, strikes uniform
in [50, 150], maturities uniform in [0.1, 2] years, quantities in [-100, 100], under
Black-Scholes and (when available) Heston. Both methods give per-instrument and total Greeks
(delta, gamma, vega, theta, rho, vanna, volga) in float64 and are compiled with `jax.jit`:

- autodiff: `hj.greeks(model, book, per_instrument=True)` (one compiled call; forward mode,
  since four inputs feed a thousand outputs) and the book totals `hj.greeks(model, book)`
  (one reverse pass for first order, forward-over-reverse for second order);
- bump-and-revalue: central finite differences of the vector of instrument prices, all 13
  revaluations (base, spot +-h, vol +-h, rate +-h, time +-h, 4 spot-vol corners) in one
  jitted function; bumps relative 1e-4 (spot), absolute 1e-4 (vol, rate, time).

Both are timed in the same process as ahead-of-time compiled executables (median of
`--repeats` steady-state calls; compile time reported separately) and the maximum relative
difference between their Greeks is printed, to show they agree. For scale, QuantLib's
per-instrument bump loop (13 NPVs per option in Python) is timed on Black-Scholes.

Run: `python experiments/bench_w3.py` (writes experiments/results/bench_w3.json and .md),
`--quick` for a smoke test (100 options, Black-Scholes only, results under runs/: the
Heston rows cost about 40 s of compilation on a 2-core CPU, and the full run measures them).
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import hedgejax as hj  # noqa: E402
from hedgejax._report import write_report  # noqa: E402
from hedgejax.cli import OneLineParser  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("delta", "gamma", "vega", "theta", "rho", "vanna", "volga")


def make_book(n: int, seed: int = 0) -> hj.Book:
    rng = np.random.default_rng(seed)
    strikes = rng.uniform(50.0, 150.0, n)
    maturities = rng.uniform(0.1, 2.0, n)
    is_call = rng.random(n) < 0.5
    quantities = rng.integers(-100, 101, n).astype(float)
    insts = [(hj.EuropeanCall if c else hj.EuropeanPut)(k, t)
             for k, t, c in zip(strikes, maturities, is_call, strict=True)]
    return hj.Book(insts, quantities)


def models() -> dict[str, Any]:
    out = {"black_scholes": hj.BlackScholes(100.0, 0.2, 0.02, 0.01)}
    if hasattr(hj, "Heston"):
        warnings.simplefilter("ignore", hj.FellerWarning)  # W3's Heston violates Feller
        out["heston"] = hj.Heston(100.0, v0=0.04, kappa=1.5, theta=0.04, xi=0.5, rho=-0.7,
                                  rate=0.02, div=0.01)
    return out


@eqx.filter_jit
def bump_greeks(model, book):
    """Per-instrument Greeks by central differences of the instrument price vector."""
    vega_field = model.vega_field

    def prices(ds=0.0, dv=0.0, dr=0.0, dt_=0.0):
        m = eqx.tree_at(lambda m: (m.spot, getattr(m, vega_field), m.rate), model,
                        (model.spot * (1 + ds), getattr(model, vega_field) + dv,
                         model.rate + dr))
        per_group = []
        for group, qty in zip(book.groups, book.quantities, strict=True):
            def one(inst, m=m):
                return hj.price(m, inst, t=dt_)
            per_group.append(qty * jax.vmap(one)(group))
        return book._in_order(per_group)

    hs, hv, hr, ht = 1e-4, 1e-4, 1e-4, 1e-4
    s_abs = model.spot * hs
    base = prices()
    up_s, dn_s = prices(ds=hs), prices(ds=-hs)
    up_v, dn_v = prices(dv=hv), prices(dv=-hv)
    up_r, dn_r = prices(dr=hr), prices(dr=-hr)
    up_t, dn_t = prices(dt_=ht), prices(dt_=-ht)
    pp, pm = prices(ds=hs, dv=hv), prices(ds=hs, dv=-hv)
    mp, mm = prices(ds=-hs, dv=hv), prices(ds=-hs, dv=-hv)
    return {
        "delta": (up_s - dn_s) / (2 * s_abs),
        "gamma": (up_s - 2 * base + dn_s) / s_abs**2,
        "vega": (up_v - dn_v) / (2 * hv),
        "theta": (up_t - dn_t) / (2 * ht),
        "rho": (up_r - dn_r) / (2 * hr),
        "vanna": (pp - pm - mp + mm) / (4 * s_abs * hv),
        "volga": (up_v - 2 * base + dn_v) / hv**2,
    }


def _aot(fn, *args) -> tuple[Any, float]:
    """Ahead-of-time compile `fn(*args)`; returns (executable, compile seconds)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def _median_time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def quantlib_bump_seconds(model, book, limit: int = 200) -> float | None:
    """Seconds for per-instrument bump-and-revalue with QuantLib (13 NPVs per option, a Python
    loop: how bumping is usually done), scaled from the first `limit` options."""
    try:
        import QuantLib as ql
    except ImportError:
        return None
    today = ql.Date(1, 1, 2026)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    spot = ql.SimpleQuote(float(model.spot))
    vol = ql.SimpleQuote(float(model.vol))
    rate = ql.SimpleQuote(float(model.rate))
    div = ql.FlatForward(today, float(model.div), dc)
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(spot), ql.YieldTermStructureHandle(div),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(rate), dc)),
        ql.BlackVolTermStructureHandle(
            ql.BlackConstantVol(today, ql.NullCalendar(), ql.QuoteHandle(vol), dc)))
    engine = ql.AnalyticEuropeanEngine(process)
    options = []
    for group in book.groups:
        kind = ql.Option.Call if isinstance(group, hj.EuropeanCall) else ql.Option.Put
        for k, t in zip(np.asarray(group.strike), np.asarray(group.maturity), strict=True):
            expiry = today + max(int(round(float(t) * 365)), 1)
            opt = ql.VanillaOption(ql.PlainVanillaPayoff(kind, float(k)),
                                   ql.EuropeanExercise(expiry))
            opt.setPricingEngine(engine)
            options.append(opt)
    options = options[:limit]
    bumps = [(spot, 1e-4 * spot.value()), (vol, 1e-4), (rate, 1e-4)]
    t0 = time.perf_counter()
    for opt in options:
        opt.NPV()
        for quote, h in bumps:  # up and down for each: 6 revaluations
            base = quote.value()
            for sign in (1, -1):
                quote.setValue(base + sign * h)
                opt.NPV()
            quote.setValue(base)
        for _ in range(6):  # time bumps and spot-vol corners: 6 more revaluations
            spot.setValue(spot.value())
            opt.NPV()
    elapsed = time.perf_counter() - t0
    return elapsed * len(book) / len(options)


def measure(name: str, model, book: hj.Book, repeats: int,
            with_quantlib: bool) -> dict[str, Any]:
    """Time autodiff and bump-and-revalue Greeks of `book` under `model`."""
    t0 = jnp.zeros(())
    n = len(book)
    per_exe, per_compile = _aot(
        lambda m, b: hj.greeks(m, b, t=t0, per_instrument=True), model, book)
    tot_exe, tot_compile = _aot(lambda m, b: hj.greeks(m, b, t=t0), model, book)
    bump_exe, bump_compile = _aot(bump_greeks, model, book)
    per_s = _median_time(lambda: per_exe(model, book), repeats)
    tot_s = _median_time(lambda: tot_exe(model, book), repeats)
    bump_s = _median_time(lambda: bump_exe(model, book), repeats)
    call_s = _median_time(lambda: hj.greeks(model, book, per_instrument=True), repeats)
    ad = per_exe(model, book)
    bumped = bump_exe(model, book)
    agreement = {}
    for g in NAMES:
        a = np.asarray(getattr(ad, g))
        b = np.asarray(bumped[g])
        scale = np.max(np.abs(a)) + 1e-300
        agreement[g] = float(np.max(np.abs(a - b)) / scale)
    ql_s = (quantlib_bump_seconds(model, book)
            if with_quantlib and name == "black_scholes" else None)
    print(f"{name}: autodiff per-instrument {per_s * 1e3:.3f} ms, totals "
          f"{tot_s * 1e3:.3f} ms, bump {bump_s * 1e3:.3f} ms -> x{bump_s / per_s:.1f} "
          f"(totals x{bump_s / tot_s:.1f}); compile {per_compile:.2f} s; "
          f"max rel diff {max(agreement.values()):.1e}"
          + (f"; QuantLib bump loop {ql_s:.3f} s" if ql_s else ""), flush=True)
    return {
        "model": name, "n_options": n,
        "autodiff_per_instrument_s": per_s, "autodiff_totals_s": tot_s,
        "autodiff_call_with_dispatch_s": call_s, "bump_s": bump_s,
        "speedup": bump_s / per_s, "speedup_totals": bump_s / tot_s,
        "autodiff_compile_s": per_compile, "autodiff_totals_compile_s": tot_compile,
        "bump_compile_s": bump_compile, "quantlib_bump_loop_s": ql_s,
        "max_rel_diff_vs_bump": agreement,
        "book_totals": {g: float(jnp.sum(getattr(ad, g))) for g in NAMES},
    }


def run(n: int, repeats: int, with_quantlib: bool,
        only: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    book = make_book(n)
    return [measure(name, model, book, repeats, with_quantlib)
            for name, model in models().items() if only is None or name in only]


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Benchmark W3: Greeks of a 1,000-option book", "",
        f"- date: {report['date']}", f"- machine: {report['machine']}",
        f"- command: `{report['command']}`", "",
        "Delta, gamma, vega, theta, rho, vanna, volga, per instrument and for the book, in "
        "float64. Times are steady-state medians of ahead-of-time compiled executables "
        "(no Python dispatch), so both methods are measured the same way; `call` is "
        "`hj.greeks(model, book, per_instrument=True)` as a user calls it, dispatch "
        "included. `x` = bump time / autodiff time. Bump-and-revalue is central finite "
        "differences, vectorised over instruments and jitted (13 revaluations of the price "
        "vector in one compiled function): the strongest bumping baseline we could write. "
        "`QuantLib loop` bumps each option through QuantLib objects in Python (13 NPVs per "
        "option), as bumping is usually done. `max rel diff` = largest gap between the two "
        "methods' Greeks relative to the largest Greek of that kind.", "",
        "| model | options | autodiff per-instrument ms | autodiff totals ms | call ms "
        "| bump ms | x (per-instr.) | x (totals) | compile s (autodiff / bump) "
        "| QuantLib loop s | max rel diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        ql_s = r["quantlib_bump_loop_s"]
        lines.append(
            f"| {r['model']} | {r['n_options']} | {r['autodiff_per_instrument_s'] * 1e3:.3f} "
            f"| {r['autodiff_totals_s'] * 1e3:.3f} | "
            f"{r['autodiff_call_with_dispatch_s'] * 1e3:.3f} | {r['bump_s'] * 1e3:.3f} | "
            f"{r['speedup']:.1f}x | {r['speedup_totals']:.1f}x | "
            f"{r['autodiff_compile_s']:.2f} / {r['bump_compile_s']:.2f} | "
            f"{'-' if ql_s is None else f'{ql_s:.3f}'} | "
            f"{max(r['max_rel_diff_vs_bump'].values()):.1e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="bench_w3", description=__doc__.splitlines()[0])
    parser.add_argument("--options", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true",
                        help="100 options, 2 repeats, Black-Scholes only")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-quantlib", action="store_true",
                        help="skip the QuantLib per-instrument bump loop")
    args = parser.parse_args(argv)
    if args.options < 1 or args.repeats < 1:
        parser.error("--options and --repeats must be >= 1")
    n, repeats = (100, 2) if args.quick else (args.options, args.repeats)
    out = args.out or (ROOT / ("runs" if args.quick else "experiments/results") /
                       "bench_w3.json")
    rows = run(n, repeats, not args.no_quantlib, ("black_scholes",) if args.quick else None)
    write_report(out, "experiments/bench_w3.py", rows, _markdown, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
