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
    """A matplotlib (figure, axes) pair on the non-interactive backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = size or (5.5 * ncols, 4.0 * nrows)
    return plt.subplots(nrows, ncols, figsize=size, squeeze=False)


def histograms(ax, samples: dict[str, Any], bins: int = 80, xlabel: str = "P&L at T") -> None:
    """Overlaid step histograms on common bins (densities), one per label."""
    arrays = {k: np.asarray(v, dtype=float) for k, v in samples.items()}
    lo = min(np.percentile(a, 0.2) for a in arrays.values())
    hi = max(np.percentile(a, 99.8) for a in arrays.values())
    edges = np.linspace(lo, hi, bins + 1)
    for label, a in arrays.items():
        ax.hist(np.clip(a, lo, hi), bins=edges, histtype="step", density=True, label=label,
                linewidth=1.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)


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
