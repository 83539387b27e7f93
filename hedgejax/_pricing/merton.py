"""Merton (1976) jump-diffusion prices by the Poisson series, in JAX so that `greeks()` and
`jax.grad` differentiate them (spot, vol, rate, time and the jump parameters).

Conditioning on the number n of jumps before maturity, log S_T is normal, so a European price
is a Poisson mixture of Black-Scholes prices (Merton 1976, eq. 19):

    V = sum_n e^{-lam' tau} (lam' tau)^n / n! * BS(S, K, tau, sigma_n, r_n, q),
    lam' = lam (1 + kbar),  sigma_n^2 = vol^2 + n jump_std^2 / tau,
    r_n = r - lam kbar + n log(1 + kbar) / tau,  log(1 + kbar) = jump_mean + jump_std^2/2.

It is evaluated here in the equivalent forward form, which never forms e^{-r_n tau} (that
overflows for large n and very negative jumps): with n-jump forward
F_n = S e^{(r - q - lam kbar) tau + n (jump_mean + jump_std^2/2)} and total variance
v_n = vol^2 tau + n jump_std^2,

    call = S e^{-q tau} sum_n w'_n N(d1_n) - K e^{-r tau} sum_n w_n N(d2_n),
    d1_n = (log(F_n / K) + v_n / 2) / sqrt(v_n),  d2_n = d1_n - sqrt(v_n),

where w_n = P(n jumps) for Poisson(lam tau) and w'_n the same for Poisson(lam' tau) (the
jump count under the share measure); w'_n is exactly the weight of the series above.

The series is cut at `SERIES_TERMS` = 64 terms (n = 0..63). The neglected weight is the
Poisson tail P(n >= 64) of mean max(lam tau, lam' tau): 4e-30 for a mean of 10 and
4e-15 for a mean of 20, so prices are exact to double precision for any mean up to ~20
(e.g. 10 jumps a year over 2 years). The series axis is the last axis: every price
broadcasts over `log_spot` of any shape.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .._instruments import Digital, EuropeanCall, EuropeanPut
from .._models.merton import Merton
from .normal import norm_cdf
from .registry import register_pricer

SERIES_TERMS = 64

_JUMP_COUNTS = np.arange(SERIES_TERMS, dtype=np.float64)
_LOG_FACTORIALS = np.array([math.lgamma(n + 1.0) for n in range(SERIES_TERMS)])


def _poisson_weights(mean: jax.Array) -> jax.Array:
    """P(N = n), n = 0 .. SERIES_TERMS-1, for N ~ Poisson(mean), along a new last axis.

    Computed in log space, exp(n log(mean) - mean - log n!), free of overflow. At mean = 0
    (no jumps) the log is replaced by the exact weights e^{-mean} mean^n / n! for n <= 3 and
    0 beyond (a "double where"), so that derivatives in the mean stay finite and exact to
    third order there: d P(N=1) / d mean = 1 at mean = 0.
    """
    mean = jnp.asarray(mean)[..., None]
    dtype = mean.dtype
    positive = mean > 0
    safe_mean = jnp.where(positive, mean, 1.0)
    counts = _JUMP_COUNTS.astype(dtype)
    log_weight = counts * jnp.log(safe_mean) - mean - _LOG_FACTORIALS.astype(dtype)
    low_terms = [jnp.ones_like(mean), mean, mean * mean / 2, mean * mean * mean / 6]
    high_terms = jnp.zeros(mean.shape[:-1] + (SERIES_TERMS - len(low_terms),), dtype)
    near_zero = jnp.exp(-mean) * jnp.concatenate([*low_terms, high_terms], axis=-1)
    return jnp.where(positive, jnp.exp(log_weight), near_zero)


def _series_terms(model: Merton, log_spot, strike, tau):
    """Per-jump-count quantities, series axis last: (live, tau_safe, w, w', d1_n, d2_n).

    tau is replaced by 1 where tau <= 0 so that the expired branch stays finite (the caller
    selects the payoff there: the "double where" that keeps derivatives finite).
    """
    live = tau > 0
    tau_safe = jnp.where(live, tau, 1.0)
    log_jump_growth = model.jump_mean + 0.5 * model.jump_std * model.jump_std  # log(1+kbar)
    kbar = jnp.expm1(log_jump_growth)
    jump_count_mean = model.jump_rate * tau_safe
    weights = _poisson_weights(jump_count_mean)
    share_weights = _poisson_weights(jump_count_mean * (1.0 + kbar))

    counts = _JUMP_COUNTS.astype(weights.dtype)
    log_moneyness = (jnp.asarray(log_spot)[..., None] - jnp.log(strike)[..., None]
                     + ((model.rate - model.div - model.jump_rate * kbar) * tau_safe)[..., None]
                     + counts * log_jump_growth[..., None])
    variance = (model.vol * model.vol * tau_safe)[..., None] + counts * (
        model.jump_std * model.jump_std)[..., None]
    sd = jnp.sqrt(variance)
    d1 = log_moneyness / sd + 0.5 * sd
    return live, tau_safe, weights, share_weights, d1, d1 - sd


def _vanilla(model: Merton, log_spot, strike, tau, sign: float) -> jax.Array:
    live, tau_safe, weights, share_weights, d1, d2 = _series_terms(model, log_spot, strike, tau)
    spot = jnp.exp(log_spot)
    share_leg = jnp.sum(share_weights * norm_cdf(sign * d1), axis=-1)
    cash_leg = jnp.sum(weights * norm_cdf(sign * d2), axis=-1)
    value = sign * (spot * jnp.exp(-model.div * tau_safe) * share_leg
                    - strike * jnp.exp(-model.rate * tau_safe) * cash_leg)
    intrinsic = jnp.maximum(sign * (spot - strike), 0.0)
    return jnp.where(live, value, intrinsic)


@register_pricer(Merton, EuropeanCall)
def _call(model: Merton, inst: EuropeanCall, log_spot, tau) -> jax.Array:
    return _vanilla(model, log_spot, inst.strike, tau, 1.0)


@register_pricer(Merton, EuropeanPut)
def _put(model: Merton, inst: EuropeanPut, log_spot, tau) -> jax.Array:
    return _vanilla(model, log_spot, inst.strike, tau, -1.0)


@register_pricer(Merton, Digital)
def _digital(model: Merton, inst: Digital, log_spot, tau) -> jax.Array:
    """Cash-or-nothing: cash e^{-r tau} sum_n w_n N(+-d2_n)."""
    live, tau_safe, weights, _, _, d2 = _series_terms(model, log_spot, inst.strike, tau)
    sign = -1.0 if inst.put else 1.0
    probability = jnp.sum(weights * norm_cdf(sign * d2), axis=-1)
    value = inst.cash * jnp.exp(-model.rate * tau_safe) * probability
    # The expired payoff is decided in log space, as for Black-Scholes (exp(log K) != K).
    in_the_money = sign * (log_spot - jnp.log(inst.strike)) > 0
    payoff = jnp.where(in_the_money, inst.cash, jnp.zeros_like(inst.cash))
    return jnp.where(live, value, payoff)
