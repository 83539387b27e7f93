"""Helpers the experiments share: the standard statistics row and figure scaffolding."""

from __future__ import annotations

from typing import Any

import numpy as np

# Headers a person reads for the keys of `stats_row` (money in the experiment's currency,
# "$" in the default configs). Experiments add their own in `Outcome.headers`.
STATS_HEADERS = {
    "strategy": "strategy",
    "mean_pnl": "mean P&L ($)",
    "stderr": "std error of mean ($)",
    "std_pnl": "P&L std ($)",
    "var_0.99": "99% VaR ($ loss)",
    "es_0.99": "99% ES ($ loss)",
    "var_0.95": "95% VaR ($ loss)",
    "es_0.95": "95% ES ($ loss)",
    "mean_cost": "mean cost ($)",
    "mean_trades": "trades per path",
    "p95_pnl": "95th pct P&L ($)",
}


def stats_row(label: str, result: Any, alpha: float = 0.99, **extra: Any) -> dict[str, Any]:
    """The comparison row practitioners quote, from a `HedgeResult` (money in time-T
    currency; VaR and ES are positive losses at `alpha`; upside is the 95th percentile)."""
    import hedgejax as hj

    s = hj.summary(result, alpha=alpha)
    return {"strategy": label, "mean_pnl": s["mean"], "stderr": s["stderr"], "std_pnl": s["std"],
            f"var_{alpha:g}": s["var"], f"es_{alpha:g}": s["es"], "mean_cost": s["mean_cost"],
            "mean_trades": s["mean_trades"],
            "p95_pnl": float(np.percentile(np.asarray(result.pnl), 95)), **extra}


def figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] | None = None):
    """A matplotlib (figure, axes) pair on the non-interactive backend, with constrained
    layout (labels and tick labels are never clipped: do not call `tight_layout` on it).
    The framework gives every linear axis thousands separators when it saves the figure
    (`finish_figure`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = size or (5.5 * ncols, 4.0 * nrows)
    return plt.subplots(nrows, ncols, figsize=size, squeeze=False, layout="constrained")


def _tick_formatter():
    from matplotlib.ticker import Formatter

    class Thousands(Formatter):
        """Tick labels with thousands separators (125,000 not 125000) and as many decimals as
        the tick spacing needs (0.25, 0.50), never an offset or a x1e5 multiplier."""

        tick_locs: tuple[float, ...] = ()

        def set_locs(self, locs):
            self.tick_locs = tuple(locs)

        def __call__(self, x, pos=None):
            locs = [v for v in self.tick_locs if np.isfinite(v)] or [x]
            scale = max(abs(v) for v in locs) or 1.0
            decimals = 0
            while decimals < 10 and any(abs(round(v, decimals) - v) > 1e-9 * scale
                                        for v in locs):
                decimals += 1
            text = f"{x:,.{decimals}f}"
            if float(text.replace(",", "")) == 0:
                text = text.lstrip("-")
            return text.replace("-", "\N{MINUS SIGN}")

    return Thousands()


def finish_figure(fig) -> None:
    """What every saved figure gets (the framework calls it): thousands separators on every
    linear axis still using matplotlib's default number format, constrained layout (also
    after a `tight_layout` call) so that no label or tick label is clipped, and x tick labels
    turned 30 degrees where they would run into each other."""
    from matplotlib.ticker import ScalarFormatter

    for ax in fig.get_axes():
        for axis in (ax.xaxis, ax.yaxis):
            default = type(axis.get_major_formatter()) is ScalarFormatter
            if axis.get_scale() == "linear" and default:
                axis.set_major_formatter(_tick_formatter())
    engine = fig.get_layout_engine()
    if engine is None or type(engine).__name__ != "ConstrainedLayoutEngine":
        fig.set_layout_engine("constrained")
    # x tick labels that run into each other are turned 30 degrees
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()
    for ax in fig.get_axes():
        lo, hi = sorted(ax.get_xlim())
        boxes = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels()
                        if t.get_text() and lo <= t.get_position()[0] <= hi),
                       key=lambda b: b.x0)
        if any(a.x1 + 4 > b.x0 for a, b in zip(boxes, boxes[1:], strict=False)):
            ax.tick_params(axis="x", labelrotation=30)


# tick multiples per decade on a log axis, sparsest first (`log_ticks`)
LOG_SUBS = [(1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0),
            (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0),
            (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)]


def log_ticks(axis, min_labels: int = 4) -> None:
    """Label a log-scale axis (`ax.xaxis` or `ax.yaxis`, after plotting) with plain numbers
    at 1-2-5-style multiples, dense enough that at least `min_labels` fall inside the axis
    limits, however narrow the range (matplotlib labels only powers of 10 by default, and
    its minor labels come and go with the range); unlabelled minor ticks at 1..9 x 10^k."""
    import math

    from matplotlib.ticker import FixedLocator, LogLocator, NullFormatter

    axis.axes.autoscale_view()
    lo, hi = sorted(axis.get_view_interval())
    ticks: list[float] = []
    for subs in LOG_SUBS:
        ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)) - 1,
                                              math.ceil(math.log10(hi)) + 1)
                 for m in subs if lo <= m * 10.0 ** k <= hi]
        if len(ticks) >= min_labels:
            break
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(_log_formatter())
    axis.set_minor_locator(LogLocator(subs=tuple(range(1, 10))))
    axis.set_minor_formatter(NullFormatter())


def _log_formatter():
    from matplotlib.ticker import FuncFormatter

    def fmt(x, pos=None):
        return f"{x:,.10g}" if x >= 1 else f"{x:.3g}"

    return FuncFormatter(fmt)


def histograms(ax, samples: dict[str, Any], bins: int = 80, xlabel: str = "P&L at T ($)",
               clip: tuple[float, float] = (0.2, 99.8)) -> None:
    """Overlaid step histograms on common bins (densities), one per label, over the
    `clip` percentiles of all samples together. The tails outside are not drawn (piling
    them into the end bins would draw spikes that are not there); the heights stay the
    density of the whole sample, and a note under the x label says what range is shown.
    The y axis is a density per unit of x ("density (1/$)" when x is in $)."""
    arrays = {k: np.asarray(v, dtype=float) for k, v in samples.items()}
    lo = min(np.percentile(a, clip[0]) for a in arrays.values())
    hi = max(np.percentile(a, clip[1]) for a in arrays.values())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    width = edges[1] - edges[0]
    for label, a in arrays.items():
        ax.hist(a, bins=edges, weights=np.full(a.shape, 1.0 / (a.size * width)),
                histtype="step", label=label, linewidth=1.4)
    # the note goes under the axis label, where it cannot cover a bar
    ax.set_xlabel(f"{xlabel}\n({clip[0]:g}-{clip[1]:g} percentile range shown; tails not "
                  f"drawn)")
    inner = xlabel[xlabel.rfind("(") + 1:-1] if xlabel.endswith(")") else ""
    unit = inner.split(",")[-1].strip()      # "P&L (per option, $)" -> "$"
    ax.set_ylabel(f"density (1/{unit})" if unit else "density")
    ax.legend(fontsize=8)


def plural(count: float, noun: str, plural_noun: str | None = None) -> str:
    """`count` and `noun` as a person writes them: "1 call", "10,000 calls", "2.5 shares"."""
    word = noun if count == 1 else (plural_noun or noun + "s")
    return f"{count:,g} {word}" if count != int(count) else f"{int(count):,} {word}"


def cost_phrase(rate: float, traded: str = "the traded value") -> str:
    """"paying 0.10% of the traded value", or "with no costs" for a rate of 0."""
    if rate == 0:
        return "with no costs"
    return f"paying {rate:.2%} of {traded}"


DAYS_PER_YEAR = 252


def daily_grid(maturity: float):
    """A grid of one step per trading day (252 a year) over `maturity` years rounded to whole
    days; a ValueError naming the config key 'maturity' if that is under one day."""
    import hedgejax as hj

    n_steps = round(maturity * DAYS_PER_YEAR)
    if n_steps < 1:
        raise ValueError(f"config key 'maturity' must be at least one trading day "
                         f"(1/{DAYS_PER_YEAR} years), got {maturity}")
    return hj.TimeGrid(n_steps / DAYS_PER_YEAR, n_steps)


def unhedged_result(result: Any):
    """The book held unhedged on the paths of `result` (its unhedged_pnl), as a HedgeResult
    with no trades and no costs: the no-hedge row without simulating again."""
    import jax.numpy as jnp

    import hedgejax as hj

    zero = jnp.zeros_like(result.unhedged_pnl)
    return hj.HedgeResult(pnl=result.unhedged_pnl, hedge_error=result.unhedged_pnl, cost=zero,
                          n_trades=jnp.zeros(zero.shape, jnp.int32),
                          unhedged_pnl=result.unhedged_pnl, final_position=zero,
                          terminal_spot=result.terminal_spot,
                          initial_price=result.initial_price)
