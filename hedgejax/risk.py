"""Risk measures of per-path P&L, all differentiable where the maths allows.

Sign convention: P&L > 0 is a gain. VaR and expected shortfall are reported as positive
losses at confidence `alpha` (e.g. alpha=0.99: the 1% worst outcomes). Risk measures
(`entropic`, `expected_shortfall`, `quadratic_cvar`, an `OCE`) are lower-is-better in
currency; expected utilities (`exponential_utility`, `isoelastic`) are higher-is-better, so
a `fit` objective uses their negative. Utilities (`ExponentialUtility`, `IsoelasticUtility`,
`ShortfallUtility`, or a subclass of `AbstractUtility`) give the optimised certainty
equivalent `oce(utility)` (Ben-Tal & Teboulle 2007), whose level w trains with a strategy.

Example:
    >>> import jax.numpy as jnp
    >>> from hedgejax import risk
    >>> pnl = jnp.arange(100.0) - 50.0          # -50 .. 49
    >>> float(risk.expected_shortfall(pnl, 0.95))   # mean of the 5 worst, as a loss
    48.0
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp

from ._repr import module_repr
from ._validate import (
    NonFiniteError,
    as_float,
    check,
    check_finite,
    check_positive,
    float_param,
    is_concrete,
    real_scalar,
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


# ---------------------------------------------------------------------------------------------
# Quadratic CVaR, utilities and the optimised certainty equivalent
# ---------------------------------------------------------------------------------------------


def _losses_sorted(x: Array) -> Array:
    """Losses -x, largest first."""
    return -jnp.sort(x)


def quadratic_cvar(x: Array, lam: float = 10.0) -> Array:
    """Quadratic CVaR, pfhedge's `quadratic_cvar` / `QuadraticCVaR(lam)`:

        rho(X) = inf_w { w + lam E[max(0, -(X + w))^2] },

    a positive number for a loss (P&L > 0 is a gain). The tail is penalised quadratically:
    the larger `lam` (per currency), the more the worst outcomes weigh. Source: Buehler,
    "Statistical Hedging" (2019, SSRN 2913250, conclusion), as cited by pfhedge. pfhedge's
    docstring writes the penalty as lam ||min(0, X + w)||_2, but its code (and this function)
    uses the mean square E[min(0, X + w)^2]; the values here match its code.

    The infimum is computed exactly, not by bisection: the first-order condition
    E[max(0, L - w)] = 1 / (2 lam) (L = -X the losses) is piecewise linear in w, so with the
    losses sorted L_1 >= ... >= L_n and S_k = L_1 + ... + L_k, w* = (S_k - n / (2 lam)) / k
    for k = #{i : E[max(0, L - L_i)] < 1 / (2 lam)}. (pfhedge bisects between the smallest
    and largest loss, so where the sample spreads less than 1 / (2 lam) about its mean, i.e.
    E[L] - min L < 1 / (2 lam), it stops at w = min L and reports a larger value than the
    infimum; elsewhere the two agree to its bisection's precision.) The gradient is the
    envelope theorem's, d rho / dX_i = -2 lam max(0, L_i - w*) / n, with w* held fixed;
    `jax.jit`, `jax.vmap` and `jax.grad` pass through. Cash invariant: rho(X + c) =
    rho(X) - c.

    Args:
        x: (n_paths,) P&Ls (currency).
        lam: tail weight (per currency), > 0 (pfhedge's `QuadraticCVaR` asks lam >= 1 and
            defaults to 10, as here).

    Raises:
        ValueError: lam not finite and > 0; x not a non-empty 1-D finite array.

    Example:
        >>> import jax.numpy as jnp
        >>> from hedgejax import risk
        >>> round(float(risk.quadratic_cvar(-jnp.arange(10.0), 2.0)), 4)  # pfhedge: 7.9750
        7.975
    """
    check_positive("lam", lam)
    x = _sample(x, "quadratic_cvar")
    return _finite(_quadratic_cvar(x, jnp.asarray(lam, x.dtype)), "quadratic_cvar")


@jax.jit
def _quadratic_cvar(x: Array, lam: Array) -> Array:
    n = x.shape[0]
    base = _scaled_mean(x)
    y = x - base
    target = 0.5 / lam
    losses = lax.stop_gradient(_losses_sorted(y))
    ks = jnp.arange(1, n + 1, dtype=x.dtype)
    sums = jnp.cumsum(losses)
    at_points = (sums - ks * losses) / n      # E[max(0, L - L_k)], nondecreasing in k
    k = jnp.maximum(jnp.sum(at_points < target), 1)
    w = (sums[k - 1] - n * target) / k.astype(x.dtype)
    w = lax.stop_gradient(w)
    return w + lam * jnp.mean(jnp.maximum(-(y + w), 0.0) ** 2) - base


class AbstractUtility(eqx.Module):
    """A utility function u: increasing and concave, applied elementwise to P&Ls (currency).

    Subclasses implement `_u(y)` (u without domain checks); they may override `_du` (u',
    default by autodiff), `unit_slope` (a point y1 with u'(y1) = 1, default 0: a normalised
    utility, u'(0) = 1), `domain` (the infimum of u's domain, default -inf) and `_expected`
    (E[u(y)] over a 1-D array, for a numerically safer mean). Settings are static Python
    floats (validated at construction), so a utility has no trainable leaves.

    `u(x)` (`__call__`) checks that x lies in the domain (ValueError now for concrete x, an
    `eqx.error_if` under `jax.jit`/`vmap`/`grad`) and is differentiable: `jax.grad` gives u'
    (also `derivative(x)`).
    """

    __repr__ = module_repr
    unit_slope: ClassVar[float] = 0.0
    domain: ClassVar[float] = -np.inf

    def _u(self, y: Array) -> Array:
        raise NotImplementedError

    def _du(self, y: Array) -> Array:
        flat = jnp.ravel(y)
        return jax.vmap(jax.grad(self._u))(flat).reshape(jnp.shape(y))

    def _expected(self, y: Array) -> Array:
        return jnp.mean(self._u(y))

    def _slope(self, y: Array) -> Array:
        """u'(y), +inf at and below the domain's edge (for the bisection of `OCE.argmin`)."""
        if np.isfinite(self.domain):
            safe = jnp.where(y > self.domain, y, self.domain + 1.0)
            return jnp.where(y > self.domain, self._du(safe), jnp.inf)
        return self._du(y)

    def _in_domain(self, y: Array, fn: str) -> Array:
        if not np.isfinite(self.domain):
            return y
        message = (f"{fn}: {type(self).__name__} is defined for x > {self.domain:g} only "
                   "(e.g. wealth, not a P&L that can be negative)")
        if is_concrete(y):
            bad = np.flatnonzero(~(np.asarray(y) > self.domain))
            if bad.size:
                raise ValueError(f"{message}: {bad.size:,} of {np.size(y):,} values are "
                                 f"<= {self.domain:g}, first at flat index {int(bad[0]):,}")
            return y
        return eqx.error_if(y, jnp.any(~(y > self.domain)), message)

    def __call__(self, x: Any) -> Array:
        """u(x) elementwise (same shape as x)."""
        x = as_float(x, f"{type(self).__name__} input")
        return self._u(self._in_domain(x, type(self).__name__))

    def derivative(self, x: Any) -> Array:
        """u'(x) elementwise (same shape as x): the marginal utility."""
        x = as_float(x, f"{type(self).__name__} input")
        return self._du(self._in_domain(x, type(self).__name__))

    def expected(self, x: Any) -> Array:
        """E[u(X)] over a 1-D array of outcomes (one per path)."""
        x = _sample(x, type(self).__name__)
        return _finite(self._expected(self._in_domain(x, type(self).__name__)),
                       type(self).__name__)


def _static_setting(name: str, value: Any, ok: Any, allowed: str) -> float:
    value = real_scalar(name, value)
    check(name, value, ok, allowed)
    return value


class ExponentialUtility(AbstractUtility):
    """The normalised exponential (CARA) utility u(x) = (1 - exp(-a x)) / a.

    u(0) = 0 and u'(0) = 1, so its optimised certainty equivalent `oce(ExponentialUtility(a))`
    is exactly the entropic risk (1/a) log E[exp(-a X)] (Ben-Tal & Teboulle 2007, example
    2.1; Buehler et al. 2019, section 3). pfhedge's `exp_utility` is -exp(-a x) = a u(x) - 1,
    an affine transform with the same preferences. `a` > 0 is the absolute risk aversion
    per unit currency.

    Raises:
        ValueError: a not a finite number > 0.
    """

    a: float = eqx.field(static=True)

    def __init__(self, a: float = 1.0):
        self.a = _static_setting("a", a, lambda v: v > 0, "finite and > 0")

    def _u(self, y: Array) -> Array:
        return -jnp.expm1(-self.a * y) / self.a

    def _du(self, y: Array) -> Array:
        return jnp.exp(-self.a * y)

    def _expected(self, y: Array) -> Array:
        # E[e^{-a y}] through logsumexp: no overflow of single terms
        log_mean = logsumexp(-self.a * y) - np.log(y.shape[0])
        return -jnp.expm1(log_mean) / self.a


class IsoelasticUtility(AbstractUtility):
    """The isoelastic (CRRA) utility of wealth x > 0:

        u(x) = x^(1 - a) / (1 - a)   (a != 1),        u(x) = log x   (a = 1),

    with relative risk aversion a > 0; u'(x) = x^(-a), so u'(1) = 1. Defined for x > 0 only:
    u(x) for x <= 0 raises ValueError (eagerly; an `eqx.error_if` under jit). pfhedge's
    `isoelastic_utility` is x^(1 - a) = (1 - a) u(x) for a != 1 (and log x at a = 1); its
    `IsoelasticLoss` allows 0 < a <= 1. Source: Pratt (1964); Merton (1969).

    Raises:
        ValueError: a not a finite number > 0.
    """

    a: float = eqx.field(static=True)
    unit_slope: ClassVar[float] = 1.0
    domain: ClassVar[float] = 0.0

    def __init__(self, a: float):
        self.a = _static_setting("a", a, lambda v: v > 0, "finite and > 0")

    def _u(self, y: Array) -> Array:
        if self.a == 1.0:
            return jnp.log(y)
        return y ** (1.0 - self.a) / (1.0 - self.a)

    def _du(self, y: Array) -> Array:
        return y ** (-self.a)


class ShortfallUtility(AbstractUtility):
    """u(x) = min(x, 0) / (1 - alpha): its optimised certainty equivalent is the expected
    shortfall at confidence alpha (Rockafellar & Uryasev 2000; Ben-Tal & Teboulle 2007):

        ES_alpha(X) = inf_w { w + E[max(0, -X - w)] / (1 - alpha) },

    attained at w = VaR_alpha(X) (the loss quantile). Concave and nondecreasing, not
    strictly: u' = 1 / (1 - alpha) for x < 0, 0 for x > 0 (0 at x = 0 here).

    Raises:
        ValueError: alpha not in (0, 1).
    """

    alpha: float = eqx.field(static=True)

    def __init__(self, alpha: float = 0.99):
        self.alpha = _static_setting("alpha", alpha, lambda a: (a > 0) & (a < 1), "in (0, 1)")

    def _u(self, y: Array) -> Array:
        return jnp.minimum(y, 0.0) / (1.0 - self.alpha)

    def _du(self, y: Array) -> Array:
        return jnp.where(y < 0, 1.0 / (1.0 - self.alpha), 0.0).astype(y.dtype)


def exponential_utility(x: Array, a: float = 1.0) -> Array:
    """Expected exponential utility E[u(X)], u(x) = (1 - exp(-a x)) / a (`ExponentialUtility`).

    Higher is better (a utility, not a risk): `fit` minimises, so use its negative as an
    objective, e.g. `lambda r: -risk.exponential_utility(r.pnl, 1.0)`. pfhedge's
    `EntropicLoss(a)` is E[exp(-a X)] = 1 - a E[u(X)] (same minimiser), and the entropic risk
    is (1/a) log E[exp(-a X)] = (1/a) log(1 - a E[u(X)]) (`risk.entropic`, pfhedge's
    `EntropicRiskMeasure`). Computed through logsumexp (no overflow of single terms).

    Args:
        x: (n_paths,) P&Ls (currency).
        a: risk aversion per unit currency, > 0 (a concrete number).

    Raises:
        ValueError: a not finite and > 0; x not a non-empty 1-D finite array.
        NonFiniteError: E[u(X)] overflows the working precision.
    """
    return ExponentialUtility(a).expected(_sample(x, "exponential_utility"))


def isoelastic(x: Array, a: float) -> Array:
    """Expected isoelastic (CRRA) utility E[u(X)] of wealth X > 0, u(x) = x^(1 - a) / (1 - a)
    (log x at a = 1; `IsoelasticUtility`).

    Higher is better: `fit` minimises, so use its negative as an objective. pfhedge's
    `IsoelasticLoss(a)` is -E[X^(1 - a)] = -(1 - a) E[u(X)] for 0 < a < 1 and -E[log X] at
    a = 1 (same minimiser). X must be a wealth (> 0), e.g. initial capital plus the P&L.

    Args:
        x: (n_paths,) wealth outcomes (currency), all > 0.
        a: relative risk aversion, > 0 (a concrete number).

    Raises:
        ValueError: a not finite and > 0; x not a non-empty 1-D finite array, or some x <= 0
            (eagerly; under jit an `eqx.error_if` raises when the computation runs).
    """
    return IsoelasticUtility(a).expected(_sample(x, "isoelastic"))


@eqx.filter_jit
def _bisect_unit_slope(utility: AbstractUtility, x: Array) -> Array:
    """The w with E[u'(x + w)] = 1, by bisection (u' nonincreasing). Bracket: with y1 the
    point where u'(y1) = 1, w = y1 - max x puts every x + w <= y1 (E[u'] >= 1) and
    w = y1 - min x puts every x + w >= y1 (E[u'] <= 1); the lower end is raised to the
    domain's edge (where u' is +inf). Runs until the midpoint equals an end (the interval
    cannot shrink in the working precision), at most 256 halvings."""
    lo_x, hi_x = jnp.min(x), jnp.max(x)
    y1 = jnp.asarray(utility.unit_slope, x.dtype)
    lo = y1 - hi_x
    if np.isfinite(utility.domain):
        lo = jnp.maximum(lo, utility.domain - lo_x)
    hi = y1 - lo_x

    def excess(w):
        return jnp.mean(utility._slope(x + w)) - 1.0    # nonincreasing in w

    def cond(state):
        lo, hi, i = state
        mid = 0.5 * (lo + hi)
        return (i < 256) & (mid > lo) & (mid < hi)

    def body(state):
        lo, hi, i = state
        mid = 0.5 * (lo + hi)
        above = excess(mid) > 0
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid), i + 1

    lo, hi, _ = lax.while_loop(cond, body, (lo, hi, jnp.zeros((), jnp.int32)))
    return 0.5 * (lo + hi)


class OCE(eqx.Module):
    """The optimised certainty equivalent of a utility u (Ben-Tal & Teboulle 2007; Buehler,
    Gonon, Teichmann & Wood 2019, "Deep hedging", section 3), as a risk measure:

        rho(X) = inf_w { w - E[u(X + w)] }      (currency; lower is better),

    cash invariant (rho(X + c) = rho(X) - c) and convex for concave u. Calling the module
    gives the bracket at its current `w`, an upper bound of rho(X):

        oce(X) = w - E[u(X + w)],

    a trainable scalar leaf (currency) that can be minimised jointly with a strategy's
    parameters (the Deep Hedging recipe: `fit` trains the OCE's `w` with the strategy when
    it is the objective). `infimum(x)` gives rho(X) exactly, `argmin(x)` the minimising w.

    Cases: `oce(ShortfallUtility(alpha))` is expected shortfall (Rockafellar-Uryasev; its
    argmin is VaR) and `oce(ExponentialUtility(a))` the entropic risk
    (1/a) log E[exp(-a X)] (its argmin is that value too). pfhedge: `OCE(utility)`.

    Attributes:
        utility: an `AbstractUtility` (static: no trainable leaves).
        w: scalar (currency), the trainable level.
    """

    __repr__ = module_repr
    utility: AbstractUtility
    w: Array = eqx.field(converter=float_param("w", scalar=True))

    def __check_init__(self):
        if not isinstance(self.utility, AbstractUtility):
            raise ValueError("utility must be an AbstractUtility (e.g. hj.risk."
                             f"ExponentialUtility(1.0)), got {self.utility!r}")
        check_finite("w", self.w)

    def __call__(self, x: Any) -> Array:
        """w - E[u(X + w)] for X an (n_paths,) P&L array or a `HedgeResult` (its `.pnl`), so
        the module is an objective for `fit` and `evaluate` as it is."""
        x = _sample(getattr(x, "pnl", x), "OCE")
        return _finite(self.w - self.utility.expected(x + self.w), "OCE")

    def argmin(self, x: Any) -> Array:
        """The w minimising w - E[u(X + w)] (held out of differentiation). For
        `ShortfallUtility(alpha)`: VaR, the loss with (1 - alpha) n worse ones (the
        minimiser of the Acerbi-Tasche sample ES); otherwise the root of E[u'(X + w)] = 1
        by bisection to the working precision."""
        x = lax.stop_gradient(_sample(getattr(x, "pnl", x), "OCE.argmin"))
        if isinstance(self.utility, ShortfallUtility):
            k = (1.0 - self.utility.alpha) * x.shape[0]
            j = min(int(np.floor(k)), x.shape[0] - 1)
            return _losses_sorted(x)[j]
        return _bisect_unit_slope(self.utility, x)

    def infimum(self, x: Any) -> Array:
        """rho(X) = min over w of w - E[u(X + w)] (currency), exact to the working precision:
        for `ShortfallUtility(alpha)` the sorted-tail ES (`risk.expected_shortfall`), else
        the bracket at `argmin(x)`. Differentiable in x (the envelope theorem: the gradient
        at the minimiser held fixed)."""
        x = _sample(getattr(x, "pnl", x), "OCE.infimum")
        if isinstance(self.utility, ShortfallUtility):
            return expected_shortfall(x, self.utility.alpha)
        w = self.argmin(x)
        return _finite(w - self.utility._expected(x + w), "OCE.infimum")


def oce(utility: AbstractUtility, w: float = 0.0) -> OCE:
    """The optimised certainty equivalent risk measure of `utility` at level `w` (an `OCE`):
    `oce(u)(x)` = w - E[u(x + w)], `oce(u).infimum(x)` = its minimum over w.

    Example:
        >>> import jax.numpy as jnp
        >>> from hedgejax import risk
        >>> pnl = jnp.arange(100.0) - 50.0
        >>> float(risk.oce(risk.ShortfallUtility(0.95)).infimum(pnl))   # = ES at 95%
        48.0
    """
    return OCE(utility, w)
