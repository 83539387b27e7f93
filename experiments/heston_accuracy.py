"""Heston pricer accuracy: hedgejax's semi-analytic Heston prices and Greeks against independent
references over a hard grid.

Grid (`grid()`): T in {1 day, 7 days, 0.1, 0.5, 1, 5, 30 years} x K/S in {0.25, 0.5, 0.8, 1,
1.25, 2, 4} x rho in {-1, -0.99, -0.7, 0, 0.7, 0.99, 1} x nine (v0, kappa, theta, xi) regimes
(`REGIMES`: xi from 0.1 to 5, v0 from 1e-4 to 1, Feller ratio 2 kappa theta / xi^2 from 16
down to 0.1, i.e. violated 10x), S = 100, r = 0.02, q = 0.01: 3087 points, each priced as a
call and as a put (6174 prices).

References (tests/heston_reference.py, no hedgejax in them): the out-of-the-money option of
each point by `reference()` (median of three QuantLib 1.44 AnalyticHestonEngine variants:
Andersen-Lake angled contour and optimal control variate with exp-sinh and Gauss-Lobatto
quadrature at 1e-13; 40-digit mpmath where they disagree; at |rho| = 1 the exact zero beyond
the support of S_T or the engines cross-checked against an extrapolation in rho), the
in-the-money one by put-call parity. Greeks (delta, gamma, vega = d/dv0, theta) on a subset of
calls: Richardson-extrapolated central differences of one QuantLib engine
(`fd_greeks`).

Targets (float64): |error| <= 1e-8 x spot, and relative error <= 1e-6 where the reference is
above 1e-6 x spot; Greeks within 1e-6 relative (with an absolute floor: 1e-8 for delta,
1e-8 / S for gamma, 1e-8 x S for vega and theta, the price target carried over). float32
(the default dtype) is reported against the same references, without a target.

Run: `python -m experiments.heston_accuracy` (results in experiments/results/heston_accuracy
.json and .md); `--quick` for a small grid (results under runs/).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import heston_reference as ref  # noqa: E402  (tests/ is not a package)

SPOT, RATE, DIV = 100.0, 0.02, 0.01
TS = (1.0 / 365.0, 7.0 / 365.0, 0.1, 0.5, 1.0, 5.0, 30.0)
MONEYNESS = (0.25, 0.5, 0.8, 1.0, 1.25, 2.0, 4.0)
RHOS = (-1.0, -0.99, -0.7, 0.0, 0.7, 0.99, 1.0)
# name: (v0, kappa, theta, xi); Feller ratio 2 kappa theta / xi^2 in the comment.
REGIMES = {
    "standard": (0.04, 1.5, 0.04, 0.5),                   # 0.48
    "low_xi": (0.04, 2.0, 0.04, 0.1),                     # 16
    "feller_10x": (0.04, 0.5, 0.04, math.sqrt(0.4)),      # 0.1
    "low_v0": (1e-4, 1.0, 0.04, math.sqrt(0.8)),          # 0.1
    "xi2": (0.1, 2.0, 0.1, 2.0),                          # 0.1
    "xi5": (0.25, 5.0, 0.25, 5.0),                        # 0.1
    "xi5_low_v0": (1e-4, 5.0, 0.25, 5.0),                 # 0.1
    "xi1_low_v0": (0.0025, 1.0, 0.05, 1.0),               # 0.1
    "high_v0": (1.0, 3.0, 0.2, 1.5),                      # 0.53
}
QUICK = dict(ts=(7.0 / 365.0, 1.0), moneyness=(0.5, 1.0, 2.0), rhos=(-1.0, -0.7, 0.99),
             regimes=("standard", "xi5"))
ABS_TARGET, REL_TARGET, REL_FLOOR = 1e-8, 1e-6, 1e-6
GREEK_REL = 1e-6
GREEK_NAMES = ("delta", "gamma", "vega", "theta")


def grid(quick: bool = False) -> list[dict[str, Any]]:
    """The grid points: regime name, Feller ratio and the out-of-the-money `ref.Case`."""
    ts, ms, rhos = (QUICK["ts"], QUICK["moneyness"], QUICK["rhos"]) if quick else (
        TS, MONEYNESS, RHOS)
    regimes = {k: REGIMES[k] for k in QUICK["regimes"]} if quick else REGIMES
    points = []
    for (name, (v0, kappa, theta, xi)), T, m, rho in itertools.product(
            regimes.items(), ts, ms, rhos):
        strike = SPOT * m
        forward = SPOT * math.exp((RATE - DIV) * T)
        kind = "call" if strike >= forward else "put"
        case = ref.heston_case(kind, SPOT, v0, kappa, theta, xi, rho, strike, T, rate=RATE,
                               div=DIV)
        points.append({"regime": name, "feller": case.feller_ratio, "case": case})
    return points


# ---------------------------------------------------------------------------------------------
# hedgejax, batched.
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def x64(enabled: bool):
    import jax

    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", enabled)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


def _columns(cases, dtype):
    import jax.numpy as jnp

    fields = ("spot", "v0", "kappa", "theta", "xi", "rho", "rate", "div", "strike", "T")
    return [jnp.asarray(np.array([getattr(c, f) for c in cases]), dtype) for f in fields]


def hj_prices(cases: list[ref.Case], dtype) -> tuple[np.ndarray, np.ndarray, float]:
    """(calls, puts, seconds) from hedgejax for every case (its kind ignored): one jitted,
    vmapped call per option type; seconds excludes compilation (a second, timed call)."""
    import jax

    import hedgejax as hj

    def batch(instrument):
        def one(s, v0, kappa, theta, xi, rho, rate, div, strike, T):
            model = hj.Heston(s, v0, kappa, theta, xi, rho, rate=rate, div=div)
            return hj.price(model, instrument(strike, T))

        return jax.jit(jax.vmap(one))

    # The pricer refuses (raises for the whole batch) the few prices it cannot resolve (|rho|
    # = 1 with a vanishing moment strip): those are found first with its own criterion and
    # reported as refused (NaN, counted as outside the targets).
    from hedgejax._pricing.heston import _contour

    cols = _columns(cases, dtype)
    spot, v0, kappa, theta, xi, rho, rate, div, strike, T = cols
    log_moneyness = jax.numpy.log(spot / strike) + (rate - div) * T
    refused = np.asarray(jax.jit(_contour)(log_moneyness, T, v0, kappa, theta, xi, rho)[-1])
    keep = [c[~refused] for c in cols]
    out, seconds = [], 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hj.FellerWarning)
        for instrument in (hj.EuropeanCall, hj.EuropeanPut):
            fn = batch(instrument)
            jax.block_until_ready(fn(*keep))
            t0 = time.perf_counter()
            values = jax.block_until_ready(fn(*keep))
            seconds += time.perf_counter() - t0
            full = np.full(len(cases), np.nan)
            full[~refused] = np.asarray(values, dtype=float)
            out.append(full)
    return out[0], out[1], seconds


def hj_call_greeks(cases: list[ref.Case]) -> dict[str, np.ndarray]:
    """hedgejax's call Greeks (float64) for every case."""
    import jax

    import hedgejax as hj

    def one(s, v0, kappa, theta, xi, rho, rate, div, strike, T):
        model = hj.Heston(s, v0, kappa, theta, xi, rho, rate=rate, div=div)
        return hj.greeks(model, hj.EuropeanCall(strike, T))

    import jax.numpy as jnp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hj.FellerWarning)
        g = jax.jit(jax.vmap(one))(*_columns(cases, jnp.float64))
    return {name: np.asarray(getattr(g, name), dtype=float) for name in GREEK_NAMES}


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------


def _errors(values: np.ndarray, refs: np.ndarray, spots: np.ndarray) -> dict[str, np.ndarray]:
    abs_err = np.abs(values - refs)
    big = np.abs(refs) > REL_FLOOR * spots
    rel = np.where(big, abs_err / np.where(big, np.abs(refs), 1.0), 0.0)
    bad = ~np.isfinite(values)
    # Refused prices (NaN) count as failures but not in the error maxima.
    abs_s = np.where(bad, np.nan, abs_err / spots)
    rel = np.where(bad, np.nan, rel)
    ok = (abs_s <= ABS_TARGET) & (rel <= REL_TARGET)
    return {"abs_over_spot": abs_s, "rel": rel, "ok": ok, "rel_counted": big}


def _summ(err: dict[str, np.ndarray], mask: np.ndarray | None = None) -> dict[str, Any]:
    m = np.ones_like(err["ok"]) if mask is None else mask
    n = int(m.sum())
    if n == 0:
        return {"n": 0}
    return {"n": n, "max_abs_over_spot": float(np.nanmax(err["abs_over_spot"][m])),
            "max_rel_above_floor": float(np.nanmax(err["rel"][m])),
            "n_fail": int(np.sum(~err["ok"][m])), "pass_rate": float(np.mean(err["ok"][m]))}


def _greek_floor(name: str, spot: float) -> float:
    return {"delta": 1e-8, "gamma": 1e-8 / spot, "vega": 1e-8 * spot,
            "theta": 1e-8 * spot}[name]


def greek_subset(points: list[dict[str, Any]], n: int) -> list[ref.Case]:
    """Up to `n` calls spread over the grid: |rho| < 1, T >= 7 days, reference price above
    1e-6 x spot (where finite differences of the reference resolve the Greeks)."""
    eligible = [p for p in points if abs(p["case"].rho) < 1.0 and p["case"].T > 2.0 / 365.0
                and p["ref_call"] > 1e-6 * SPOT]
    if not eligible:
        return []
    step = max(1, len(eligible) // n)
    return [p["case"]._replace(kind="call") for p in eligible[::step][:n]]


def _fd_engine(case: ref.Case):
    """The first primary QuantLib engine finite at `case` (one engine, so the finite
    differences are smooth)."""
    values = ref.ql_prices(case, ref.QL_PRIMARY)
    for name in ref.QL_PRIMARY:
        if math.isfinite(values[name]):
            return lambda c, name=name: ref.ql_price(c, name)
    return None


def run(quick: bool, n_greeks: int, use_mpmath: bool) -> dict[str, Any]:
    import jax

    points = grid(quick)
    cases = [p["case"] for p in points]
    spots = np.array([c.spot for c in cases])

    t0 = time.perf_counter()
    for p in points:
        r = ref.reference(p["case"], use_mpmath="auto" if use_mpmath else False)
        otm = r.value
        itm = ref.parity(p["case"], otm)
        p["ref_source"], p["ref_spread"] = r.source, r.spread
        # certain: the references agree within a tenth of the targets
        p["ref_certain"] = r.spread <= ref.agreement_tolerance(p["case"], otm)
        p["ref_call"], p["ref_put"] = (otm, itm) if p["case"].kind == "call" else (itm, otm)
    ref_seconds = time.perf_counter() - t0
    print(f"references: {len(points)} points in {ref_seconds:.1f} s", flush=True)

    ref_calls = np.array([p["ref_call"] for p in points])
    ref_puts = np.array([p["ref_put"] for p in points])
    refs = np.concatenate([ref_calls, ref_puts])
    spots2 = np.concatenate([spots, spots])

    certain = np.array([p["ref_certain"] for p in points] * 2)
    results: dict[str, Any] = {}
    raw: dict[str, np.ndarray] = {}
    for label, enable_x64 in (("float64", True), ("float32", False)):
        with x64(enable_x64):
            import jax.numpy as jnp

            dtype = jnp.float64 if enable_x64 else jnp.float32
            t0 = time.perf_counter()
            calls, puts, seconds = hj_prices(cases, dtype)
            total = time.perf_counter() - t0
        values = np.concatenate([calls, puts])
        err = _errors(values, refs, spots2)
        raw[label] = values
        results[label] = {"summary": _summ(err, certain), "err": err,
                          "uncertain": _summ(err, ~certain), "seconds_steady": seconds,
                          "seconds_with_compile": total,
                          "n_refused": int(np.sum(~np.isfinite(values)))}
        print(f"hedgejax {label}: {len(values)} prices, steady {seconds:.3f} s "
              f"(with compile {total:.1f} s); max |err|/S "
              f"{results[label]['summary']['max_abs_over_spot']:.3g}, max rel "
              f"{results[label]['summary']['max_rel_above_floor']:.3g}, "
              f"{results[label]['summary']['n_fail']} outside the float64 targets "
              f"({int(np.sum(~np.isfinite(np.concatenate([calls, puts]))))} refused)",
              flush=True)

    # Per-regime breakdowns (float64 and float32).
    regime = np.array([p["regime"] for p in points] * 2)
    T_arr = np.array([c.T for c in cases] * 2)
    rho_arr = np.array([c.rho for c in cases] * 2)
    m_arr = np.array([c.strike / c.spot for c in cases] * 2)
    kind_arr = np.array(["call"] * len(cases) + ["put"] * len(cases))
    breakdown = []
    for axis, arr, keys in (("regime", regime, list(REGIMES)), ("T", T_arr, TS),
                            ("rho", rho_arr, RHOS), ("K/S", m_arr, MONEYNESS),
                            ("kind", kind_arr, ["call", "put"])):
        for key in keys:
            mask = (arr == key) & certain
            if not mask.any():
                continue
            row = {"axis": axis, "value": key}
            for label in ("float64", "float32"):
                row[label] = _summ(results[label]["err"], mask)
            breakdown.append(row)

    def describe(i: int, label: str) -> dict[str, Any]:
        j = i % len(cases)
        c = cases[j]._replace(kind="call" if i < len(cases) else "put")
        err = results[label]["err"]
        return {"case": c.label(), "regime": points[j]["regime"], "reference": float(refs[i]),
                "ref_source": points[j]["ref_source"], "ref_spread": points[j]["ref_spread"],
                "hedgejax": float(raw[label][i]), "abs_over_spot": float(err["abs_over_spot"][i]),
                "rel": float(err["rel"][i])}

    worst = {}
    for label in ("float64", "float32"):
        err = results[label]["err"]
        key_abs = np.where(certain, np.nan_to_num(err["abs_over_spot"], nan=-1.0), -1.0)
        key_rel = np.where(certain, np.nan_to_num(err["rel"], nan=-1.0), -1.0)
        by_abs = np.argsort(-key_abs)[:15]
        by_rel = np.argsort(-key_rel)[:15]
        worst[label] = {"by_abs": [describe(int(i), label) for i in by_abs],
                        "by_rel": [describe(int(i), label) for i in by_rel if err["rel"][i] > 0]}

    # Reference quality.
    sources: dict[str, int] = {}
    for p in points:
        sources[p["ref_source"]] = sources.get(p["ref_source"], 0) + 1
    def otm_ref(p):
        return p["ref_call"] if p["case"].kind == "call" else p["ref_put"]

    certain_points = [p for p in points if p["ref_certain"]]
    spread_rel = [p["ref_spread"] / abs(otm_ref(p)) for p in certain_points
                  if abs(otm_ref(p)) > REL_FLOOR * SPOT]
    uncertain_points = [p for p in points if not p["ref_certain"]]
    ref_quality = {
        "sources": sources,
        "n_uncertain_points": len(uncertain_points),
        "uncertain_examples": [
            {"case": p["case"].label(), "reference": otm_ref(p), "spread": p["ref_spread"],
             "source": p["ref_source"]}
            for p in sorted(uncertain_points, key=lambda p: -p["ref_spread"])[:10]],
        "max_spread_over_spot": max((p["ref_spread"] for p in certain_points),
                                    default=0.0) / SPOT,
        "n_uncertain_rho_below_1": sum(abs(p["case"].rho) < 1 for p in uncertain_points),
        "max_spread_rel_above_floor": max(spread_rel) if spread_rel else 0.0,
        "seconds": ref_seconds,
    }

    # Greeks.
    greek_cases = greek_subset(points, n_greeks)
    greek_rows: list[dict[str, Any]] = []
    greek_summary: dict[str, Any] = {}
    if greek_cases:
        t0 = time.perf_counter()
        fd = []
        for c in greek_cases:
            fn = _fd_engine(c)
            fd.append(ref.fd_greeks(c, fn, names=GREEK_NAMES) if fn else None)
        fd_seconds = time.perf_counter() - t0
        with x64(True):
            t0 = time.perf_counter()
            hj_g = hj_call_greeks(greek_cases)
            hj_seconds = time.perf_counter() - t0
        for name in GREEK_NAMES:
            rels, fails = [], 0
            for i, (c, f) in enumerate(zip(greek_cases, fd, strict=True)):
                if f is None:
                    continue
                got, want = hj_g[name][i], f[name]
                err = abs(got - want)
                tol = GREEK_REL * abs(want) + _greek_floor(name, c.spot)
                rel = err / abs(want) if want != 0 else math.inf
                if abs(want) > 100 * _greek_floor(name, c.spot):
                    rels.append(rel)
                if not err <= tol:
                    fails += 1
                    greek_rows.append({"greek": name, "case": c.label(), "fd": want,
                                       "hedgejax": float(got), "rel": rel})
            greek_summary[name] = {"n": sum(f is not None for f in fd),
                                   "n_rel": len(rels), "max_rel": max(rels) if rels else None,
                                   "median_rel": float(np.median(rels)) if rels else None,
                                   "n_fail": fails}
        greek_summary["seconds_fd"] = fd_seconds
        greek_summary["seconds_hedgejax_with_compile"] = hj_seconds
        greek_rows.sort(key=lambda r: -r["rel"])
        print(f"greeks: {len(greek_cases)} calls; " + ", ".join(
            f"{n} max rel {greek_summary[n]['max_rel']:.3g} ({greek_summary[n]['n_fail']} fail)"
            for n in GREEK_NAMES if greek_summary[n]["max_rel"] is not None), flush=True)

    summary = {label: results[label]["summary"] | {
        "uncertain_reference": results[label]["uncertain"],
        "seconds_steady": results[label]["seconds_steady"],
        "n_refused": results[label]["n_refused"],
        "seconds_with_compile": results[label]["seconds_with_compile"]}
        for label in ("float64", "float32")}
    return {"n_points": len(points), "n_prices": 2 * len(points), "summary": summary,
            "reference_quality": ref_quality, "worst": worst, "greeks": greek_summary,
            "greek_failures": greek_rows[:30], "breakdown": breakdown,
            "jax": jax.__version__}


# ---------------------------------------------------------------------------------------------
# Output.
# ---------------------------------------------------------------------------------------------


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


def _markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    q = report["reference_quality"]
    lines = [
        "# Heston pricer accuracy on the hard grid", "",
        f"- date: {report['date']}", f"- machine: {report['machine']}",
        f"- command: `{report['command']}`", f"- run time: {report['run_seconds']:.0f} s", "",
        f"{report['n_points']} grid points (T 1 day..30 years, K/S 0.25..4, rho -1..1, xi up "
        "to 5, v0 from 1e-4, Feller ratio down to 0.1), each priced as a call and a put: "
        f"{report['n_prices']} prices. Targets (float64): |err| <= {ABS_TARGET:g} x spot and "
        f"relative error <= {REL_TARGET:g} where the reference exceeds {REL_FLOOR:g} x spot.",
        "",
        "The tables count the prices whose references agree within a tenth of the targets "
        f"({2 * (report['n_points'] - q['n_uncertain_points'])} prices); the "
        f"{2 * q['n_uncertain_points']} others ({2 * q['n_uncertain_rho_below_1']} of them "
        "with |rho| < 1; at |rho| = 1 the QuantLib engines and the extrapolation in rho can "
        "disagree by up to ~1e-5 relative) are summarised separately below.",
        "",
        "| dtype | prices | max abs err / spot | max rel err (ref > 1e-6 S) | outside targets "
        "| pass rate | steady s | s with compile |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in ("float64", "float32"):
        r = s[label]
        lines.append(f"| {label} | {r['n']} | {_fmt(r['max_abs_over_spot'])} | "
                     f"{_fmt(r['max_rel_above_floor'])} | {r['n_fail']} | "
                     f"{100 * r['pass_rate']:.2f}% | {r['seconds_steady']:.3f} | "
                     f"{r['seconds_with_compile']:.1f} |")
    lines += [
        "", "Refused (the pricer raises rather than return an unresolved number; counted "
        "above as outside the targets): "
        + ", ".join(f"{label} {s[label]['n_refused']}" for label in ("float64", "float32"))
        + ".",
        "", "## References", "",
        f"Sources of the reference values: {q['sources']} (quantlib: median of three "
        "QuantLib engines that agree within a tenth of the targets; mpmath: 40-digit "
        "integral where they do not; support: exactly 0 beyond the support of S_T at "
        "|rho| = 1; rho_limit: extrapolation to |rho| = 1). Largest spread between agreeing "
        f"references where they agree: {q['max_spread_over_spot']:.3g} x spot, "
        f"{q['max_spread_rel_above_floor']:.3g} relative (prices above 1e-6 x spot). "
        f"Reference time {q['seconds']:.0f} s.", "",
        f"Points whose references disagree by more than a tenth of the targets: "
        f"{q['n_uncertain_points']}. hedgejax there (float64): max abs err / spot "
        f"{_fmt(s['float64']['uncertain_reference'].get('max_abs_over_spot'))}, max rel "
        f"{_fmt(s['float64']['uncertain_reference'].get('max_rel_above_floor'))}, "
        f"{s['float64']['uncertain_reference'].get('n_fail', 0)} of "
        f"{s['float64']['uncertain_reference'].get('n', 0)} outside the targets (not "
        "conclusive where the reference spread itself exceeds them). Largest spreads:", "",
        "| case | reference | spread | source |", "|---|---:|---:|---|",
        *[f"| {u['case']} | {u['reference']:.10g} | {u['spread']:.3g} | {u['source']} |"
          for u in q["uncertain_examples"]], "",
        "## Breakdown (float64 | float32)", "",
        "| axis | value | n | f64 max abs/S | f64 max rel | f64 fail | f32 max abs/S | "
        "f32 max rel |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["breakdown"]:
        a, b = row["float64"], row["float32"]
        value = row["value"]
        if row["axis"] == "T" and isinstance(value, float) and value < 0.05:
            value = f"{round(value * 365)}/365"
        lines.append(f"| {row['axis']} | {value} | {a['n']} | {_fmt(a['max_abs_over_spot'])} | "
                     f"{_fmt(a['max_rel_above_floor'])} | {a['n_fail']} | "
                     f"{_fmt(b['max_abs_over_spot'])} | {_fmt(b['max_rel_above_floor'])} |")
    for label in ("float64",):
        for key, title in (("by_abs", "absolute error / spot"), ("by_rel", "relative error")):
            lines += ["", f"## Worst {label} cases by {title}", "",
                      "| case | regime | reference (source) | hedgejax | abs/S | rel |",
                      "|---|---|---:|---:|---:|---:|"]
            for w in report["worst"][label][key][:10]:
                lines.append(f"| {w['case']} | {w['regime']} | {w['reference']:.10g} "
                             f"({w['ref_source']}) | {w['hedgejax']:.10g} | "
                             f"{w['abs_over_spot']:.3g} | {w['rel']:.3g} |")
    g = report["greeks"]
    if g:
        lines += ["", "## Greeks (calls, float64, against Richardson finite differences of "
                  "QuantLib)", "",
                  f"Target: relative {GREEK_REL:g} plus an absolute floor (1e-8 delta, "
                  "1e-8/S gamma, 1e-8 S vega and theta). Finite differences "
                  f"{g['seconds_fd']:.0f} s, hedgejax {g['seconds_hedgejax_with_compile']:.0f} s "
                  "with compile.", "",
                  "| greek | n | max rel err (n above 100x floor) | median rel err | "
                  "outside target |",
                  "|---|---:|---:|---:|---:|"]
        for name in GREEK_NAMES:
            r = g[name]
            lines.append(f"| {name} | {r['n']} | {_fmt(r['max_rel'])} ({r['n_rel']}) | "
                         f"{_fmt(r['median_rel'])} | {r['n_fail']} |")
        if report["greek_failures"]:
            lines += ["", "| greek | case | finite differences | hedgejax | rel |",
                      "|---|---|---:|---:|---:|"]
            for r in report["greek_failures"][:15]:
                lines.append(f"| {r['greek']} | {r['case']} | {r['fd']:.10g} | "
                             f"{r['hedgejax']:.10g} | {r['rel']:.3g} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from hedgejax._report import write_report
    from hedgejax.cli import OneLineParser

    parser = OneLineParser(prog="heston_accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid (results in runs/)")
    parser.add_argument("--greeks", type=int, default=60,
                        help="number of calls whose Greeks are checked (default 60)")
    parser.add_argument("--no-mpmath", action="store_true",
                        help="never call mpmath (QuantLib only) for the references")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.greeks < 0:
        parser.error("--greeks must be >= 0")
    out = args.out or (ROOT / ("runs" if args.quick else "experiments/results")
                       / "heston_accuracy.json")
    t0 = time.perf_counter()
    result = run(args.quick, 12 if args.quick else args.greeks, not args.no_mpmath)
    result["run_seconds"] = time.perf_counter() - t0
    rows = result.pop("breakdown")
    write_report(out, "experiments/heston_accuracy.py", rows,
                 lambda report: _markdown(report | {"breakdown": report["rows"]}), argv,
                 **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
