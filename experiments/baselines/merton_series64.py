"""The Merton pricer hedgejax shipped before issue 10 (the Poisson series cut at 64 terms),
kept verbatim as the baseline that experiments/bench_pricing.py times the new pricer against
in the same process. Not registered and not used by the library: it is wrong once
jump_rate x T passes ~30.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from hedgejax._models.merton import Merton
from hedgejax._pricing.normal import norm_cdf

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
