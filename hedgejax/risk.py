"""Risk measures of per-path P&L, all differentiable where the maths allows.

Sign convention: P&L > 0 is a gain. VaR and expected shortfall are reported as positive
losses at confidence `alpha` (e.g. alpha=0.99: the 1% worst outcomes).

Example:
    >>> import jax.numpy as jnp
    >>> from hedgejax import risk
    >>> pnl = jnp.arange(100.0) - 50.0          # -50 .. 49
    >>> float(risk.expected_shortfall(pnl, 0.95))   # mean of the 5 worst, as a loss
    48.0
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ._validate import check, check_positive

Array = jax.Array


def _check_alpha(alpha: float) -> None:
    check("alpha", alpha, lambda a: (a > 0) & (a < 1), "in (0, 1)")


def mean(x: Array) -> Array:
    """Sample mean."""
    return jnp.mean(x)


def std(x: Array) -> Array:
    """Sample standard deviation (ddof=1)."""
    return jnp.sqrt(variance(x))


def variance(x: Array) -> Array:
    """Sample variance (ddof=1)."""
    n = x.shape[0]
    return jnp.sum((x - jnp.mean(x)) ** 2) / max(n - 1, 1)


def stderr(x: Array) -> Array:
    """Standard error of the sample mean."""
    return std(x) / np.sqrt(x.shape[0])


def var(x: Array, alpha: float = 0.99) -> Array:
    """Value at risk: the loss exceeded with probability 1 - alpha, i.e. -quantile(x, 1-alpha)
    (linear interpolation between order statistics)."""
    _check_alpha(alpha)
    return -jnp.quantile(x, 1.0 - alpha)


def expected_shortfall(x: Array, alpha: float = 0.99) -> Array:
    """Expected shortfall (CVaR): the mean loss in the worst 1 - alpha of outcomes, with the
    boundary order statistic weighted fractionally (Acerbi-Tasche), so it is exact for any n.
    """
    _check_alpha(alpha)
    n = x.shape[0]
    k = (1.0 - alpha) * n
    whole = int(np.floor(k))
    worst = jnp.sort(x)
    weights = np.zeros(n)
    weights[:whole] = 1.0
    if whole < n:
        weights[whole] = k - whole
    if k < 1.0:  # fewer paths than the tail needs: use the single worst outcome
        weights[:] = 0.0
        weights[0] = 1.0
        k = 1.0
    return -jnp.dot(worst, jnp.asarray(weights, x.dtype)) / k


def entropic(x: Array, a: float = 1.0) -> Array:
    """Entropic risk (1/a) log E[exp(-a x)]; `a` > 0 is the risk aversion per unit currency."""
    check_positive("a", a)
    n = x.shape[0]
    return (logsumexp(-a * x) - np.log(n)) / a


def mean_cost_variance(result: Any = None, lam: float = 1.0) -> Any:
    """E[cost] + lam * Var[hedge_error]: the default objective for choosing a band.

    `mean_cost_variance(result, lam)` computes it; `mean_cost_variance(lam=0.1)` (no result)
    returns the objective as a function of a result, for `fit`, `evaluate` and
    `grid_search`. Units: currency (cost) + lam x currency^2, so lam is per currency.
    """
    if result is None or isinstance(result, (int, float)):
        lam = lam if result is None else result
        check("lam", lam, lambda v: v >= 0, "finite and >= 0")
        return lambda res: mean_cost_variance(res, lam)
    check("lam", lam, lambda v: v >= 0, "finite and >= 0")
    return jnp.mean(result.cost) + lam * variance(result.hedge_error)


def summary(result: Any, alpha: float = 0.99) -> dict[str, float]:
    """Headline statistics of a `HedgeResult` as plain floats.

    Keys: n_paths, initial_price, mean (of pnl), stderr, std, var, es (at `alpha`, as
    positive losses), mean_hedge_error, std_hedge_error, mean_cost, mean_trades,
    unhedged_std, hedge_effectiveness = 1 - Var(pnl) / Var(unhedged pnl on the same paths).
    Raises ValueError if any P&L is not finite.
    """
    pnl = result.pnl
    if not bool(jnp.all(jnp.isfinite(pnl))):
        raise ValueError("result.pnl has non-finite values")
    unhedged_var = variance(result.unhedged_pnl)
    effectiveness = jnp.where(unhedged_var > 0, 1.0 - variance(pnl) / unhedged_var, jnp.nan)
    stats = {
        "n_paths": pnl.shape[0],
        "initial_price": result.initial_price,
        "mean": mean(pnl),
        "stderr": stderr(pnl),
        "std": std(pnl),
        "var": var(pnl, alpha),
        "es": expected_shortfall(pnl, alpha),
        "mean_hedge_error": mean(result.hedge_error),
        "std_hedge_error": std(result.hedge_error),
        "mean_cost": mean(result.cost),
        "mean_trades": jnp.mean(result.n_trades.astype(pnl.dtype)),
        "unhedged_std": jnp.sqrt(unhedged_var),
        "hedge_effectiveness": effectiveness,
    }
    return {k: (int(v) if k == "n_paths" else float(v)) for k, v in stats.items()}
