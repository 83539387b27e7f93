"""Closed-form prices of a variance swap under Black-Scholes, Heston and Merton, conditioned on
the realised variance so far, in JAX so that `greeks()` differentiates them.

At time t = maturity - tau, with `sum_sq` the sum of the squared log returns so far, the swap
pays notional x ((sum_sq + remaining) / maturity - strike_vol^2) at maturity, so its value is

    V = notional e^{-r tau} ((sum_sq + E_t[remaining]) / maturity - strike_vol^2),

where E_t[remaining] is the expected quadratic variation of log S over [t, maturity]
(Demeterfi, Derman, Kamal and Zou 1999, "A guide to volatility and variance swaps", J.
Derivatives 6(4); Gatheral 2006, "The Volatility Surface", ch. 11):

    Black-Scholes:  vol^2 tau;
    Merton:         (vol^2 + jump_rate (jump_mean^2 + jump_std^2)) tau (each jump adds its
                    squared log size, E[(log J)^2] = jump_mean^2 + jump_std^2);
    Heston:         theta tau + (v0 - theta)(1 - e^{-kappa tau}) / kappa, the integral of
                    E[v_s] = theta + (v0 - theta) e^{-kappa s}; v0 is the current variance
                    (`hedge()` sets it per path through `Heston.conditioned`), and the
                    factor (1 - e^{-kappa tau}) / kappa = tau E(-kappa tau),
                    E(z) = expm1(z) / z, is exact as kappa tau -> 0.

These are the continuous-monitoring limits. The swap's realised variance is the sum of the
squared returns of the simulation grid without removing the mean: each step of length dt adds
on average (r - q - vol^2/2)^2 dt^2 besides the variance (Black-Scholes; about 4e-6 of annual
variance for a daily grid at r - q - vol^2/2 = 3%), which these prices leave out, as do the
discrete grid's higher-order Heston and jump terms. Values do not depend on the spot (delta and
gamma are 0). Expired (tau <= 0): the payoff, notional (sum_sq / maturity - strike_vol^2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._exotics import VarianceSwap
from .._models.black_scholes import BlackScholes
from .._models.heston import Heston
from .._models.merton import Merton
from .lookback import exprel
from .registry import register_pricer


def _value(inst: VarianceSwap, rate, log_spot, tau, state, remaining) -> jax.Array:
    """The swap's value given `remaining(tau)`, the expected variance to come (tau > 0)."""
    sum_sq = jnp.asarray(state["sum_sq"]).astype(log_spot.dtype)
    live = tau > 0
    tau_live = jnp.where(live, tau, 0.0)
    expected = jnp.where(live, remaining(jnp.where(live, tau, 1.0)), 0.0)
    value = inst.notional * jnp.exp(-rate * tau_live) * (
        (sum_sq + expected) / inst.maturity - inst.strike_vol**2)
    return value + jnp.zeros_like(log_spot)


@register_pricer(BlackScholes, VarianceSwap)
def _black_scholes(model: BlackScholes, inst: VarianceSwap, log_spot, tau, state):
    """Variance swap under Black-Scholes: remaining variance vol^2 tau."""
    return _value(inst, model.rate, log_spot, tau, state, lambda s: model.vol**2 * s)


@register_pricer(Merton, VarianceSwap)
def _merton(model: Merton, inst: VarianceSwap, log_spot, tau, state):
    """Variance swap under Merton: (vol^2 + jump_rate (jump_mean^2 + jump_std^2)) tau."""
    rate_of_variance = model.vol**2 + model.jump_rate * (model.jump_mean**2
                                                         + model.jump_std**2)
    return _value(inst, model.rate, log_spot, tau, state, lambda s: rate_of_variance * s)


@register_pricer(Heston, VarianceSwap)
def _heston(model: Heston, inst: VarianceSwap, log_spot, tau, state):
    """Variance swap under Heston: theta tau + (v0 - theta)(1 - e^{-kappa tau}) / kappa."""
    def remaining(s):
        return model.theta * s + (model.v0 - model.theta) * s * exprel(-model.kappa * s)
    return _value(inst, model.rate, log_spot, tau, state, remaining)
