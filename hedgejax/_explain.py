"""Reports of a P&L explain (`hedge(..., attribution=True)`): the desk's statistics of each
term (`explain_summary`), the same as an 80-column text table (`explain_table`) and a figure
(`plot_explain`: the mean and std of each term, and a waterfall of one path).

The terms are those of `Attribution` (module `hedgejax._attribution`): per-path arrays in
time-T currency, > 0 a gain to the holder of the book, summing to the P&L.

Statistics (NumPy, float64, over the n_paths paths):
    mean, std (sample, ddof = 1), stderr = std / sqrt(n_paths) (standard error of the mean),
    var_share = Cov(term, P&L) / Var(P&L), the covariance ("Euler") allocation of the P&L's
        variance to its terms: the shares sum to 1 because the terms sum to the P&L; a
        negative share is a term that offsets the others (Tasche, "Euler allocation: theory
        and practice", 2007, sec. 2; the same split desks use for risk contributions),
    p05, p95: the 5th and 95th percentiles (linear interpolation, `numpy.percentile`).
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

import numpy as np

from ._attribution import TERMS, Attribution

# The total row's `term` in `explain_summary`.
TOTAL = "pnl"
# Statistics of each row of `explain_summary`, in order (after `term`).
SUMMARY_STATS = ("mean", "stderr", "std", "var_share", "p05", "p95")


def _term_arrays(attribution: Any, pnl: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The terms as float64 arrays (n_paths,) and the P&L (given, or the terms' sum), checked:
    an `Attribution`, 1-D arrays of one length >= 2, finite, and `pnl` their sum to rounding."""
    if not isinstance(attribution, Attribution):
        raise ValueError(f"attribution must be an Attribution (from hedge(..., "
                         f"attribution=True)), got {type(attribution).__name__}")
    raw = attribution.terms()
    dtypes = [np.asarray(v).dtype for v in raw.values()]
    terms = {name: np.asarray(v, dtype=np.float64) for name, v in raw.items()}
    shape = terms[TERMS[0]].shape
    for name, values in terms.items():
        if values.ndim != 1 or values.shape != shape:
            raise ValueError(f"attribution.{name} must have shape (n_paths,) like "
                             f"attribution.{TERMS[0]} {shape}, got shape {values.shape}")
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ValueError(f"attribution.{name} is not finite on path {int(bad[0])} "
                             f"({values[bad[0]]!r})")
    if shape[0] < 2:
        raise ValueError(f"attribution must have at least 2 paths for a std, got "
                         f"n_paths={shape[0]}")
    total = sum(terms.values())
    if pnl is None:
        return terms, total
    pnl = np.asarray(pnl, dtype=np.float64)
    if pnl.shape != shape:
        raise ValueError(f"pnl must have shape (n_paths,) = {shape} like the attribution, got "
                         f"shape {pnl.shape}")
    bad = np.flatnonzero(~np.isfinite(pnl))
    if bad.size:
        raise ValueError(f"pnl is not finite on path {int(bad[0])} ({pnl[bad[0]]!r})")
    # the terms' sum is the P&L up to the rounding of ~20 float operations per step
    eps = max(float(np.finfo(d).eps) if np.issubdtype(d, np.floating) else 0.0 for d in dtypes)
    scale = sum(np.abs(v) for v in terms.values()) + np.abs(pnl)
    gap = np.abs(total - pnl)
    worst = int(np.argmax(gap - 1e3 * eps * scale))
    if gap[worst] > 1e3 * eps * scale[worst] + 1e-300:
        raise ValueError(f"pnl is not the sum of the attribution's terms: on path {worst} "
                         f"pnl={float(pnl[worst])!r} but the terms sum to "
                         f"{float(total[worst])!r} (pass the pnl of the same hedge() run)")
    return terms, pnl


def _stats(values: np.ndarray, pnl: np.ndarray, var_pnl: float) -> dict[str, Any]:
    n = values.size
    std = float(np.std(values, ddof=1))
    cov = float(np.sum((values - values.mean()) * (pnl - pnl.mean())) / (n - 1))
    p05, p95 = np.percentile(values, [5.0, 95.0])
    return {"mean": float(values.mean()), "stderr": std / math.sqrt(n), "std": std,
            "var_share": cov / var_pnl if var_pnl > 0 else None,
            "p05": float(p05), "p95": float(p95)}


def explain_summary(attribution: Attribution, pnl: Any = None) -> list[dict[str, Any]]:
    """The desk's statistics of each term of a P&L explain, and of the P&L.

    Args:
        attribution: `HedgeResult.attribution` from `hedge(..., attribution=True)`: per-path
            terms, each of shape (n_paths,) with n_paths >= 2, in time-T currency.
        pnl: the P&L of the same run, shape (n_paths,) (`HedgeResult.pnl`); None: the sum of
            the terms. When given, it must be the terms' sum to rounding.

    Returns:
        One dict per term in the order of `TERMS` (delta, gamma, theta, vega, vanna, volga,
        carry, dividends, commission, spread, impact, slippage, residual), then the total row
        (`term` = "pnl"), each with keys
            term: the term's name,
            mean, stderr (standard error of the mean), std (sample std, ddof 1), p05, p95
                (5th and 95th percentiles): in time-T currency, > 0 a gain,
            var_share: Cov(term, P&L) / Var(P&L), the term's share of the P&L variance (the
                shares of the terms sum to 1, the total row's is 1; None when the P&L does
                not vary),
            zero: True when the term is 0 on every path (False for the total row).
        The total row's statistics are the P&L's. Plain Python floats (JSON-ready).

    Raises:
        ValueError: `attribution` is not an `Attribution`; arrays not of one shape
            (n_paths,), fewer than 2 paths, a non-finite value (naming the term and the
            path), or `pnl` not the terms' sum.

    Statistics: module docstring (the variance share is the Euler allocation; Tasche 2007).

    Example:
        >>> import jax, hedgejax as hj
        >>> res = hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.25),
        ...                hj.DeltaHedge(), hj.Proportional(1e-3), hj.TimeGrid(0.25, 10),
        ...                200, jax.random.key(0), attribution=True)
        >>> rows = hj.explain_summary(res.attribution, res.pnl)
        >>> [r["term"] for r in rows][:3], rows[-1]["term"], rows[-1]["var_share"]
        (['delta', 'gamma', 'theta'], 'pnl', 1.0)
    """
    terms, pnl = _term_arrays(attribution, pnl)
    var_pnl = float(np.var(pnl, ddof=1))
    rows = [{"term": name, **_stats(values, pnl, var_pnl), "zero": not np.any(values)}
            for name, values in terms.items()]
    total = {"term": TOTAL, **_stats(pnl, pnl, var_pnl), "zero": False}
    if var_pnl > 0:
        total["var_share"] = 1.0
    rows.append(total)
    return rows


def _cell(value: Any) -> str:
    """4 significant digits with thousands separators (the experiments' table format)."""
    from .experiments._framework import format_value

    return format_value(value, "n/a")


def _share(value: float | None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.1%}"
    return text.lstrip("-") if float(text[:-1]) == 0 else text


_LABELS = {"mean": "mean", "stderr": "SE of mean", "std": "std", "var_share": "var share",
           "p05": "5th pct", "p95": "95th pct"}


def explain_table(attribution: Attribution, pnl: Any = None, *, show_zero: bool = False,
                  unit: str = "$", width: int = 80) -> str:
    """The P&L explain as a plain-text table of at most `width` columns (`explain_summary`):
    one row per term, then the P&L; columns mean, SE of mean, std, var share (of the P&L's
    variance), 5th and 95th percentiles, money in `unit` at T (> 0 is a gain). Numbers have 4
    significant digits and thousands separators. Terms that are 0 on every path are left out
    unless `show_zero`, and a footnote names them; when the columns do not fit `width`, the
    percentiles are dropped.

    Args:
        attribution, pnl: as `explain_summary`.
        show_zero: also list the terms that are 0 on every path.
        unit: the currency's name in the heading ("$", "EUR", ...).
        width: the widest line (characters, >= 60).

    Returns:
        The table, lines separated by "\\n" (no trailing newline).

    Raises:
        ValueError: as `explain_summary`, or `width` < 60.

    Example:
        >>> import jax, hedgejax as hj
        >>> res = hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.25),
        ...                hj.DeltaHedge(), hj.Proportional(1e-3), hj.TimeGrid(0.25, 10),
        ...                200, jax.random.key(0), attribution=True)
        >>> print(hj.explain_table(res.attribution, res.pnl).splitlines()[0])
        P&L explain over 200 paths ($ at T; > 0 is a gain)
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 60:
        raise ValueError(f"width must be an integer >= 60 (characters), got width={width!r}")
    rows = explain_summary(attribution, pnl)
    n_paths = np.asarray(attribution.delta).shape[0]
    zero = [r["term"] for r in rows if r["zero"]]
    shown = [r for r in rows if show_zero or not r["zero"]]

    def cells(row: dict[str, Any], stats: tuple[str, ...]) -> list[str]:
        label = "P&L (total)" if row["term"] == TOTAL else row["term"]
        return [label] + [_share(row[s]) if s == "var_share" else _cell(row[s]) for s in stats]

    for stats in (SUMMARY_STATS, SUMMARY_STATS[:4], SUMMARY_STATS[:3]):
        head = ["term"] + [_LABELS[s] for s in stats]
        body = [cells(r, stats) for r in shown]
        widths = [max(len(line[j]) for line in [head, *body]) for j in range(len(head))]
        line_width = sum(widths) + 2 * (len(widths) - 1)
        if line_width <= width:
            break

    def fmt(line: list[str]) -> str:
        first = line[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "-" * min(line_width, width)
    out = [f"P&L explain over {n_paths:,} paths ({unit} at T; > 0 is a gain)", fmt(head), rule]
    out += [fmt(line) for line in body[:-1]] + [rule, fmt(body[-1])]
    notes = (["var share: Cov(term, P&L) / Var(P&L); the terms' shares sum to 100%."]
             if "var_share" in stats else [])
    if zero and not show_zero:
        notes.append("Zero on every path, not shown: " + ", ".join(zero) + ".")
    if stats != SUMMARY_STATS:
        dropped = ", ".join(_LABELS[s] for s in SUMMARY_STATS[len(stats):])
        notes.append(f"Left out to fit {width} columns: {dropped}.")
    for note in notes:
        out += textwrap.wrap(note, width)
    return "\n".join(out)


def _median_path(pnl: np.ndarray) -> int:
    """The path whose P&L is the median (the lower middle one for an even count)."""
    order = np.argsort(pnl, kind="stable")
    return int(order[(pnl.size - 1) // 2])


def plot_explain(attribution: Attribution, path: int | None = None, title: str = "", *,
                 pnl: Any = None, show_zero: bool = False, unit: str = "currency"):
    """A figure of a P&L explain, two panels:

    (a) the mean (with a +/- 2 standard-error whisker) and the std of each term over the
        paths, and of the P&L, as horizontal bars;
    (b) a waterfall of one path: each term a floating bar from the running sum before it to
        the sum after it (green a gain, red a loss), ending at that path's P&L (blue).

    Args:
        attribution, pnl: as `explain_summary` (the terms, shape (n_paths,), time-T money).
        path: the path of the waterfall, 0 <= path < n_paths; None: the path whose P&L is
            the median.
        title: the figure's title (none when "").
        show_zero: also draw the terms that are 0 on every path (left out by default; a
            note under panel (a) names them).
        unit: the currency's name on the axes ("currency at T" by default, "$ at T" ...).

    Returns:
        A matplotlib `Figure` (Agg canvas, not registered with pyplot: nothing to close;
        `fig.savefig("explain.png")` writes it).

    Raises:
        ValueError: as `explain_summary`, or `path` not a path index.

    Example:
        >>> import jax, hedgejax as hj
        >>> res = hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.25),
        ...                hj.DeltaHedge(), hj.Proportional(1e-3), hj.TimeGrid(0.25, 10),
        ...                200, jax.random.key(0), attribution=True)
        >>> fig = hj.plot_explain(res.attribution, pnl=res.pnl, unit="$")
        >>> [ax.get_ylabel() for ax in fig.axes]
        ['P&L term', '$ at T']
        >>> fig.savefig("explain.png")       # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    from ._plots import _tick

    terms, pnl = _term_arrays(attribution, pnl)
    rows = explain_summary(attribution, pnl)
    n = pnl.size
    if path is None:
        path, which = _median_path(pnl), "the median P&L"
    else:
        if isinstance(path, bool) or not isinstance(path, (int, np.integer)) or not (
                0 <= path < n):
            raise ValueError(f"path must be a path index in [0, {n - 1}], got path={path!r}")
        path, which = int(path), "chosen"
    shown = [r for r in rows[:-1] if show_zero or not r["zero"]]
    left_out = [r["term"] for r in rows[:-1] if r["zero"] and not show_zero]
    money = f"{unit} at T"

    fig = Figure(figsize=(12.0, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax_stats, ax_path = fig.subplots(1, 2, width_ratios=[1.0, 1.25])

    # (a) mean and std: the P&L at the bottom, the terms above it in their order
    bars = [*shown, rows[-1]]
    labels = ["P&L" if r["term"] == TOTAL else r["term"] for r in bars]
    y = np.arange(len(bars))[::-1].astype(float)
    h = 0.38
    ax_stats.barh(y + h / 2, [r["mean"] for r in bars], height=h, color="tab:blue",
                  xerr=[2 * r["stderr"] for r in bars], capsize=2, label="mean (+/- 2 SE)")
    ax_stats.barh(y - h / 2, [r["std"] for r in bars], height=h, color="tab:gray",
                  label="std")
    ax_stats.axvline(0.0, color="k", linewidth=0.6)
    ax_stats.axhline(0.5, color="k", linewidth=0.4, linestyle=":")   # terms | P&L
    ax_stats.set_yticks(y, labels)
    note = ("\n" + textwrap.fill(f"(0 on every path, not drawn: {', '.join(left_out)})", 70)
            if left_out else "")
    ax_stats.set_xlabel(f"{money} (> 0 is a gain){note}")
    ax_stats.set_ylabel("P&L term")
    ax_stats.set_title(f"(a) mean and std of each term over {n:,} paths", fontsize=10)
    ax_stats.legend(fontsize=8, loc="best")
    ax_stats.xaxis.set_major_formatter(FuncFormatter(_tick))
    ax_stats.grid(axis="x", alpha=0.3)

    # (b) the waterfall of one path
    names = [r["term"] for r in shown]
    values = np.array([terms[name][path] for name in names])
    before = np.concatenate([[0.0], np.cumsum(values)[:-1]])
    x = np.arange(len(names) + 1)
    colors = ["tab:green" if v >= 0 else "tab:red" for v in values]
    ax_path.bar(x[:-1], values, bottom=before, color=colors, width=0.7)
    ax_path.bar(x[-1], pnl[path], color="tab:blue", width=0.7)
    after = before + values
    for i in range(len(names)):   # connectors: the running sum carried to the next bar
        ax_path.plot([x[i] - 0.35, x[i + 1] + 0.35], [after[i], after[i]], color="k",
                     linewidth=0.5)
    span = max(float(np.max(np.abs(np.concatenate([before, after, [pnl[path]]])))), 1e-300)
    for xi, v, top in zip(x, [*values, pnl[path]], [*np.maximum(before, after),
                                                      max(pnl[path], 0.0)], strict=True):
        ax_path.annotate(_cell(float(v)), (xi, top), xytext=(0, 2), textcoords="offset points",
                         ha="center", va="bottom", fontsize=7)
    ax_path.axhline(0.0, color="k", linewidth=0.6)
    ax_path.set_xticks(x, [*names, "P&L"], rotation=40, ha="right")
    ax_path.set_xlabel("P&L term (running sum, left to right)")
    ax_path.set_ylabel(money)
    ax_path.set_title(f"(b) path {path:,} ({which}): P&L {_cell(float(pnl[path]))} "
                      f"{unit}", fontsize=10)
    ax_path.yaxis.set_major_formatter(FuncFormatter(_tick))
    ax_path.set_ylim(*_padded(ax_path.get_ylim(), span))
    ax_path.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def _padded(limits: tuple[float, float], span: float) -> tuple[float, float]:
    """Y limits with room above the bars for their value labels."""
    lo, hi = limits
    return lo, hi + 0.08 * max(hi - lo, span)
