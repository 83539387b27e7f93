"""Black-Scholes prices of average-price Asian options (`hj.Asian`), conditioned on the
accrued average. Only prices live here; every Greek is autodiff.

Conventions (`hedgejax._exotics`). `fixings=n`: n fixings at maturity x j / n, j = 1..n;
the fixings at or before t = maturity - tau (`dates_done`) are in the state's ``total`` (the
sum of S, or of log S for the geometric average), the others are random. `fixings=None`: a
continuous average over [0, maturity], ``total`` = (1 / maturity) x the integral of S (or
log S) over [0, t]. Before t = 0 (t < 0) nothing has accrued and the averaging window still
starts at 0. The payoff is paid at maturity, so the price is e^{-r tau} x the expected
payoff; when tau <= 0 it is the payoff from the state (`Asian.path_payoff`).

Geometric average (exact). The log of the average is Gaussian: the accrued part plus the
remaining fixings' sum of log S, whose mean and variance are exact for the remaining
fixing times s_j = t_j - t after t (covariance vol^2 min(s_i, s_j)); the price is Black's
formula on that lognormal. Continuous: Kemna and Vorst (1990), Haug (2007) sec. 4.20.1;
discrete: the same Gaussian algebra for the fixing dates (the formula of QuantLib's
AnalyticDiscreteGeometricAveragePriceAsianEngine); both seasoned. Matches QuantLib to
1e-8 relative (tests/test_asian_pricing.py).

Arithmetic average (approximation). The remaining part of the average is replaced by the
lognormal with its exact first two moments (Turnbull and Wakeman 1991 for discrete
fixings, Levy 1992 for the continuous average): with A = (total + R) / n, R the sum of
the remaining fixings, a call pays (1/n) max(R - K', 0) with K' = n K - total. When
K' <= 0 the call is surely exercised and its value e^{-r tau} (E[A] - K) is exact (the put
is 0). Moments: E[R] = S sum_j e^{b s_j}; the second moment enters only through
E[R^2] / E[R]^2 - 1 = sum_{i,j} w_i w_j expm1(vol^2 min(s_i, s_j)) / (sum w)^2, w_j =
e^{b s_j}, b = rate - div, summed in O(n) with suffix sums (accurate when vol^2 tau is
small, in float32 too). The continuous average's moments are the corresponding integrals
(evaluated with 32-point Gauss-Legendre on smooth, entire integrands: exact to rounding for
the parameters of practice). Matches QuantLib's TurnbullWakemanAsianEngine and
ContinuousArithmeticAsianLevyEngine to 1e-8 relative.

Accuracy of the approximation (experiments/results/asian_approximation.md: Monte Carlo with
the geometric Asian as control variate, itself checked against QuantLib's ChoiAsianEngine;
S = 100, r = 0.03, q = 0.01, strikes 80..120, 12 / 52 / 252 fixings and continuous, fresh
and mid-life). The error grows with vol^2 x maturity; max |error| in price (spot 100):

    vol    T = 0.25   T = 1    T = 2
    0.1    0.0005     0.006    0.014
    0.2    0.006      0.036    0.076
    0.3    0.018      0.084    0.18
    0.5    0.058      0.27     0.59

median 0.0055 over the 720 calls. It overprices in-the-money and at-the-money calls (the
fitted lognormal's left tail is too heavy: e.g. +0.59 = 2.2% at vol 0.5, T = 2, K = 80)
and underprices out-of-the-money calls (its right tail is too thin: up to ~10% of prices
above 0.5, 1-2% already at vol 0.1 for K = 110, T = 2). Puts have the calls' absolute
errors (put-call parity is exact). Relative error: median 0.2%.

Conditioning on the accrued average makes the approximation change when a fixing becomes
known: the fit of the remaining fixings, one of them about to be fixed, differs from the
fit of those after it plus the now-known fixing. At each fixing date the arithmetic price
drops by about 0.05% (vol 0.1) to 0.4% (vol 0.5) of an at-the-money call with 12 fixings,
0.01% to 0.1% with 52, 0.002% to 0.02% with 252 (a hedger sees it as a small P&L at the
fixings). The geometric price is continuous across fixings.

Numerics. Branches that do not apply (no fixing left, zero variance, K' <= 0) are evaluated
on safe inputs and selected with `jnp.where`, so the value and its first and second
derivatives are finite everywhere (expiry, all fixings done, tau tiny, float32).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._exotics import Asian, dates_done
from .._models.black_scholes import BlackScholes
from .normal import norm_cdf
from .registry import register_pricer

# Gauss-Legendre nodes and weights on [0, 1] for the continuous average's second moment.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(32)
_GL_X, _GL_W = 0.5 * (_GL_X + 1.0), 0.5 * _GL_W

# Below this log-variance the average is treated as known (deterministic payoff).
_MIN_VAR = 1e-30


def _expm1_over_x(x: jax.Array) -> jax.Array:
    """(e^x - 1) / x, 1 at x = 0, accurate and smoothly differentiable everywhere."""
    small = jnp.abs(x) < 1e-4
    x_safe = jnp.where(small, jnp.ones_like(x), x)
    series = 1.0 + x * (0.5 + x * (1.0 / 6.0 + x / 24.0))
    return jnp.where(small, series, jnp.expm1(x_safe) / x_safe)


def _black(forward: jax.Array, strike: jax.Array, var: jax.Array, sign: float) -> jax.Array:
    """Undiscounted Black price of max(sign (X - strike), 0), X lognormal with mean
    `forward` >= 0 and log-variance `var` >= 0. Any strike: strike <= 0 or var ~ 0 or
    forward = 0 give the deterministic value max(sign (forward - strike), 0)."""
    live = (var > _MIN_VAR) & (forward > 0) & (strike > 0)
    f = jnp.where(live, forward, 1.0)
    k = jnp.where(live, strike, 1.0)
    sd = jnp.sqrt(jnp.where(live, var, 1.0))
    d1 = jnp.log(f / k) / sd + 0.5 * sd
    d2 = d1 - sd
    value = sign * (f * norm_cdf(sign * d1) - k * norm_cdf(sign * d2))
    # No negative prices from rounding; derivatives are the formula's.
    value = value + lax.stop_gradient(jnp.maximum(value, 0.0) - value)
    known = jnp.maximum(sign * (forward - strike), 0.0)
    return jnp.where(live, value, known)


def _discrete_schedule(inst: Asian, tau: jax.Array):
    """Per fixing j = 1..n (last axis): its time after t (s_j, 0 when done) and whether it
    is still to come; tau of any shape."""
    n = inst.fixings
    tau = tau[..., None]
    j = jnp.arange(1, n + 1, dtype=tau.dtype)
    done = dates_done(inst.maturity - tau, inst.maturity, n)
    remaining = j > done
    s = tau - inst.maturity * ((n - j) / n)
    s = jnp.where(remaining, jnp.maximum(s, 0.0), 0.0)
    return j, s, remaining


def _geometric_moments(model: BlackScholes, inst: Asian, log_spot, tau, total):
    """Mean and variance of log(average) given the state."""
    mu = model.rate - model.div - 0.5 * model.vol**2
    var_w = model.vol**2
    if inst.fixings is None:
        T = inst.maturity
        a = jnp.maximum(tau - T, 0.0)            # delay before the window opens (t < 0)
        length = jnp.maximum(tau - a, 0.0)       # remaining window
        spot_term = jnp.where(length > 0, length * log_spot, 0.0)     # finite at spot 0
        mean_rem = (spot_term + mu * 0.5 * length * (tau + a)) / T
        var = var_w * (length**2 * a + length**3 / 3.0) / T**2
        return total + mean_rem, var
    n = inst.fixings
    j, s, remaining = _discrete_schedule(inst, tau)
    m = jnp.sum(remaining, axis=-1).astype(s.dtype)
    spot_term = jnp.where(m > 0, m * log_spot, 0.0)
    mean = (total + spot_term + mu * jnp.sum(s, axis=-1)) / n
    # sum_{i,j remaining} min(s_i, s_j): every later fixing is remaining.
    var = var_w * jnp.sum(s * (2.0 * (n - j) + 1.0), axis=-1) / n**2
    return mean, var


def _arithmetic_moments(model: BlackScholes, inst: Asian, log_spot, tau):
    """E[R] / S and log(E[R^2] / E[R]^2) for R the remaining part of the average (the
    average being total / n + R)."""
    b = model.rate - model.div
    v2 = model.vol**2
    if inst.fixings is None:
        T = inst.maturity
        a = jnp.maximum(tau - T, 0.0)
        length = jnp.maximum(tau - a, 0.0)
        bl = b * length
        h = _expm1_over_x(bl)
        mean = jnp.exp(b * a) * length * h / T
        u = jnp.asarray(_GL_X, dtype=jnp.result_type(tau))
        w = jnp.asarray(_GL_W, dtype=u.dtype)
        lu = length[..., None] * u
        integrand = (jnp.exp(2.0 * b * lu) * jnp.expm1(v2 * lu) * (1.0 - u)
                     * _expm1_over_x(bl[..., None] * (1.0 - u)))
        ratio = 2.0 * jnp.sum(w * integrand, axis=-1) / h**2
        return mean, v2 * a + jnp.log1p(ratio)
    n = inst.fixings
    _, s, remaining = _discrete_schedule(inst, tau)
    w = jnp.where(remaining, jnp.exp(b * s), 0.0)
    sum_w = jnp.sum(w, axis=-1)
    later = jnp.cumsum(w[..., ::-1], axis=-1)[..., ::-1] - w      # sum_{j > i} w_j
    excess = jnp.sum(w * jnp.expm1(v2 * s) * (w + 2.0 * later), axis=-1)
    ratio = excess / jnp.where(sum_w > 0, sum_w**2, 1.0)
    return sum_w / n, jnp.log1p(ratio)


@register_pricer(BlackScholes, Asian)
def _asian(model: BlackScholes, inst: Asian, log_spot, tau, state) -> jax.Array:
    """Price of `inst` at t = maturity - tau given its accrued ``total`` (module docstring)."""
    return _asian_price(model, inst, log_spot, jnp.asarray(tau), state["total"])


# Compiled as one program: called eagerly (`hj.price` outside jit), the few hundred small
# operations would otherwise each be compiled and dispatched on their own (seconds on the
# first call). Inside an outer jit or grad it is inlined.
@eqx.filter_jit
def _asian_price(model: BlackScholes, inst: Asian, log_spot, tau, total) -> jax.Array:
    sign = 1.0 if inst.option == "call" else -1.0
    n = 1.0 if inst.fixings is None else float(inst.fixings)
    discount = jnp.exp(-model.rate * jnp.maximum(tau, 0.0))
    if inst.geometric:
        mean, var = _geometric_moments(model, inst, log_spot, tau, total)
        forward = jnp.exp(mean + 0.5 * var)
        value = _black(forward, inst.strike, var, sign)
    else:
        mean, var = _arithmetic_moments(model, inst, log_spot, tau)
        forward = jnp.exp(log_spot) * mean           # E[remaining part of the average]
        value = _black(forward, inst.strike - total / n, var, sign)
    return discount * value
