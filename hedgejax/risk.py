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

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp

from ._validate import (
    NonFiniteError,
    as_float,
    check,
    check_positive,
    is_concrete,
    undefined_effectiveness,
)

Array = jax.Array


def _check_alpha(alpha: float) -> None:
    check("alpha", alpha, lambda a: (a > 0) & (a < 1), "in (0, 1)")


def _sample(x: Any, fn: str, minimum: int = 1) -> Array:
    """`x` as an array of outcomes: real numbers (a list is fine), 1-D (one per path), at
    least `minimum` entries; else ValueError naming the function. Shapes are static, so this
    holds under jit and vmap (per example) too."""
    x = as_float(x, f"risk.{fn} input")
    _check_sample(x, fn, minimum)
    message = f"risk.{fn} input has non-finite values (NaN or inf outcomes)"
    if is_concrete(x):
        bad = np.flatnonzero(~np.isfinite(np.asarray(x)))
        if bad.size:
            raise ValueError(f"{message}: {bad.size:,} of {x.shape[0]:,}, first at index "
                             f"{int(bad[0]):,}")
        return x
    return eqx.error_if(x, ~jnp.all(jnp.isfinite(x)), message)


def _finite(value: Array, fn: str) -> Array:
    """`value`, or NonFiniteError (eagerly; the same text under jit) when a statistic of
    finite outcomes overflows the working precision."""
    message = (f"risk.{fn}: the result overflows {jnp.dtype(value.dtype).name} (finite "
               "outcomes, too large a statistic); enable jax_enable_x64")
    if is_concrete(value):
        if not bool(jnp.all(jnp.isfinite(value))):
            raise NonFiniteError(message)
        return value
    return eqx.error_if(value, ~jnp.all(jnp.isfinite(value)), message)


def _power_of_two_scale(x: Array) -> tuple[Array, Array]:
    """(2^k, 2^-k) with 2^k a little below max |x| (k = 0 if x is all 0), held out of
    differentiation. Multiplying by a power of two is exact, so scaled sums give the
    unscaled result when nothing overflows, and finite ones when a plain sum would. k is
    kept within [-120, 120] so that 2^-k is a normal number (XLA flushes subnormals)."""
    top = lax.stop_gradient(jnp.max(jnp.abs(x)))
    _, exponent = jnp.frexp(jnp.where(top > 0, top, 1.0))    # top = m 2^e, m in [0.5, 1)
    k = jnp.clip(exponent - 3, -120, 120)
    one = jnp.ones((), x.dtype)
    return jnp.ldexp(one, k), jnp.ldexp(one, -k)


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
    """Sample mean. Raises ValueError unless x is 1-D, non-empty and finite (sums are
    scaled by a power of two, so finite outcomes give a finite mean)."""
    x = _sample(x, "mean")
    return _scaled_mean(x)


def _scaled_mean(x: Array) -> Array:
    scale, inverse = _power_of_two_scale(x)
    return scale * jnp.mean(x * inverse)


def _scaled_std(x: Array) -> Array:
    """sqrt(sum (x - mean)^2 / (n - 1)) with the outcomes, then the deviations, scaled by
    powers of two (so neither x - mean nor the squares overflow or underflow)."""
    scale, inverse = _power_of_two_scale(x)
    y = x * inverse
    dev = y - jnp.mean(y)
    inner, inner_inverse = _power_of_two_scale(dev)
    return scale * (inner * jnp.sqrt(jnp.sum((dev * inner_inverse) ** 2) / (x.shape[0] - 1)))


def std(x: Array) -> Array:
    """Sample standard deviation (ddof=1). Raises ValueError unless x is 1-D, finite, with at
    least 2 entries; computed with scaled deviations, so it is finite whenever the true
    value is representable (NonFiniteError otherwise)."""
    x = _sample(x, "std", 2)
    return _finite(_scaled_std(x), "std")


def variance(x: Array) -> Array:
    """Sample variance (ddof=1). Raises ValueError unless x is 1-D, finite, with at least 2
    entries; NonFiniteError if the variance itself overflows the working precision."""
    x = _sample(x, "variance", 2)
    return _finite(_scaled_std(x) ** 2, "variance")


def stderr(x: Array) -> Array:
    """Standard error of the sample mean."""
    x = _sample(x, "stderr", 2)
    return _scaled_std(x) / np.sqrt(x.shape[0])


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
    cost = _sample(result.cost, "mean_cost_variance cost")
    return _finite(_scaled_mean(cost) + lam * variance(result.hedge_error),
                   "mean_cost_variance")


def summary(result: Any, alpha: float = 0.99) -> dict[str, float]:
    """Headline statistics of a `HedgeResult` as plain floats.

    Keys: n_paths, initial_price, mean (of pnl), stderr, std, var, es (at `alpha`, as
    positive losses), mean_hedge_error, std_hedge_error, mean_cost, mean_trades,
    unhedged_std, hedge_effectiveness = 1 - Var(pnl) / Var(unhedged pnl on the same paths).

    Computed in float64 NumPy (moments about the mean), so any finite P&Ls, however large in
    the working precision, give finite statistics. hedge_effectiveness is NaN, and only then,
    when the unhedged P&L does not vary (the ratio is undefined); an
    `UndefinedStatisticWarning` says so.

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
    effectiveness = (1.0 - pnl_var / unhedged_var if unhedged_var > 0
                     else undefined_effectiveness())
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
