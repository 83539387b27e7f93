"""No-trade bands: trade only when the position leaves a band around delta-neutral, and then
only to the nearest edge of the band (the optimal policy under proportional costs).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._validate import as_float, check_nonnegative, check_positive
from .base import AbstractStrategy, Observation


def trade_to_band(position: jax.Array, target: jax.Array, half_width: jax.Array) -> jax.Array:
    """The position after trading to the nearest edge of [target - w, target + w]."""
    return jnp.clip(position, target - half_width, target + half_width)


class BandHedge(AbstractStrategy):
    """Constant no-trade band of half-width `width` shares around -delta.

    `BandHedge(0.0)` is delta hedging every step.
    """

    width: jax.Array = eqx.field(converter=as_float)

    def __check_init__(self):
        check_nonnegative("width", self.width)

    def __call__(self, obs: Observation, position: jax.Array) -> jax.Array:
        return trade_to_band(position, -obs.delta, self.width)


def _safe_cbrt(x: jax.Array) -> jax.Array:
    """Cube root of x >= 0 with a finite gradient at 0 (the "double where" trick). For x > 0
    the derivative 1/(3 x^(2/3)) stays finite even for subnormal float32 x."""
    positive = x > 0
    return jnp.where(positive, jnp.cbrt(jnp.where(positive, x, 1.0)), 0.0)


class WhalleyWilmott(AbstractStrategy):
    """Whalley & Wilmott (1997) asymptotic band for proportional costs and exponential
    utility with absolute `risk_aversion` gamma (per unit of currency):

        half-width = (3/2 * exp(-r tau) * c * S * Gamma^2 / gamma)^(1/3)  shares,

    with c the costs' proportional rate, Gamma the hedge model's book gamma (autodiff),
    tau the time to maturity. The gradient stays finite as Gamma -> 0.
    """

    risk_aversion: jax.Array = eqx.field(converter=as_float)

    def __check_init__(self):
        check_positive("risk_aversion", self.risk_aversion)

    def half_width(self, obs: Observation) -> jax.Array:
        x = (1.5 * jnp.exp(-obs.rate * obs.time_to_maturity) * obs.cost_rate * obs.spot
             * obs.gamma**2 / self.risk_aversion)
        return _safe_cbrt(x)

    def __call__(self, obs: Observation, position: jax.Array) -> jax.Array:
        return trade_to_band(position, -obs.delta, self.half_width(obs))
