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

from ._validate import as_float, check, check_positive

Array = jax.Array


def _check_alpha(alpha: float) -> None:
    check("alpha", alpha, lambda a: (a > 0) & (a < 1), "in (0, 1)")


def _sample(x: Any, fn: str, minimum: int = 1) -> Array:
    """`x` as an array of outcomes: real numbers (a list is fine), 1-D (one per path), at
    least `minimum` entries; else ValueError naming the function. Shapes are static, so this
    holds under jit and vmap (per example) too."""
    x = as_float(x, f"risk.{fn} input")
    _check_sample(x, fn, minimum)
    return x


def _check_sample(x: Array, fn: str, minimum: int = 1) -> None:
    """Outcomes are a 1-D array (one per path) with at least `minimum` entries."""
    shape = jnp.shape(x)
    if len(shape) != 1:
        raise ValueError(f"risk.{fn} needs a 1-D array of outcomes (one per path), got shape "
                         f"{shape}")
    if shape[0] < minimum:
        raise ValueError(f"risk.{fn} needs at least {minimum} outcome"
                         f"{'s' if minimum > 1 else ''}, got {shape[0]}")


def mean(x: Array) -> Array:
    """Sample mean. Raises ValueError unless x is 1-D and non-empty."""
    return jnp.mean(_sample(x, "mean"))


def std(x: Array) -> Array:
    """Sample standard deviation (ddof=1)."""
    return jnp.sqrt(variance(x))


def variance(x: Array) -> Array:
    """Sample variance (ddof=1). Raises ValueError unless x is 1-D with at least 2 entries."""
    x = _sample(x, "variance", 2)
    n = x.shape[0]
    return jnp.sum((x - jnp.mean(x)) ** 2) / (n - 1)


def stderr(x: Array) -> Array:
    """Standard error of the sample mean."""
    x = _sample(x, "stderr", 2)
    return std(x) / np.sqrt(x.shape[0])


def var(x: Array, alpha: float = 0.99) -> Array:
    """Value at risk: the loss exceeded with probability 1 - alpha, i.e. -quantile(x, 1-alpha)
    (linear interpolation between order statistics)."""
    _check_alpha(alpha)
    x = _sample(x, "var")
    return -jnp.quantile(x, 1.0 - alpha)


def expected_shortfall(x: Array, alpha: float = 0.99) -> Array:
    """Expected shortfall (CVaR): the mean loss in the worst 1 - alpha of outcomes, with the
    boundary order statistic weighted fractionally (Acerbi-Tasche), so it is exact for any n.
    """
    _check_alpha(alpha)
    x = _sample(x, "expected_shortfall")
    weights = _tail_weights(x.shape[0], alpha)
    return -jnp.dot(jnp.sort(x), jnp.asarray(weights, x.dtype))


def _tail_weights(n: int, alpha: float) -> np.ndarray:
    """Weights of the sorted outcomes (worst first) whose dot product is the mean of the worst
    1 - alpha: the boundary order statistic counts fractionally; with fewer paths than the
    tail needs, the single worst outcome."""
    k = (1.0 - alpha) * n
    whole = int(np.floor(k))
    weights = np.zeros(n)
    weights[:whole] = 1.0
    if whole < n:
        weights[whole] = k - whole
    if k < 1.0:
        weights[:] = 0.0
        weights[0] = 1.0
        k = 1.0
    return weights / k


def entropic(x: Array, a: float = 1.0) -> Array:
    """Entropic risk (1/a) log E[exp(-a x)]; `a` > 0 is the risk aversion per unit currency."""
    check_positive("a", a)
    x = _sample(x, "entropic")
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

    Computed in float64 NumPy (moments about the mean), so any finite P&Ls, however large in
    the working precision, give finite statistics. hedge_effectiveness is NaN, and only then,
    when the unhedged P&L does not vary (the ratio is undefined).

    Raises:
        ValueError: fewer than 2 paths, or a non-finite P&L, hedge error, cost or unhedged
            P&L (the message names the field).
    """
    _check_alpha(alpha)
    _check_sample(result.pnl, "summary", 2)
    pnl = np.asarray(result.pnl, dtype=np.float64)
    if not np.all(np.isfinite(pnl)):
        raise ValueError("result.pnl has non-finite values")
    f64 = {name: np.asarray(getattr(result, name), dtype=np.float64)
           for name in ("hedge_error", "cost", "n_trades", "unhedged_pnl")}
    for name, values in f64.items():
        if not np.all(np.isfinite(values)):
            raise ValueError(f"result.{name} has non-finite values")
    unhedged_var = float(np.var(f64["unhedged_pnl"], ddof=1))
    pnl_var = float(np.var(pnl, ddof=1))
    effectiveness = 1.0 - pnl_var / unhedged_var if unhedged_var > 0 else float("nan")
    stats = {
        "initial_price": float(result.initial_price),
        "mean": float(np.mean(pnl)),
        "stderr": float(np.sqrt(pnl_var / pnl.size)),
        "std": float(np.sqrt(pnl_var)),
        "var": float(-np.quantile(pnl, 1.0 - alpha)),
        "es": float(-np.dot(np.sort(pnl), _tail_weights(pnl.size, alpha))),
        "mean_hedge_error": float(np.mean(f64["hedge_error"])),
        "std_hedge_error": float(np.std(f64["hedge_error"], ddof=1)),
        "mean_cost": float(np.mean(f64["cost"])),
        "mean_trades": float(np.mean(f64["n_trades"])),
        "unhedged_std": float(np.sqrt(unhedged_var)),
        "hedge_effectiveness": effectiveness,
    }
    return {"n_paths": int(pnl.size), **stats}
