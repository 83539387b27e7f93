"""No-trade bands: trade only when the position leaves a band around delta-neutral, and then
only to the nearest edge of the band (the optimal policy under proportional costs).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._validate import as_float, check_positive, checked
from .base import AbstractStrategy, Observation


def trade_to_band(position: jax.Array, target: jax.Array, half_width: jax.Array) -> jax.Array:
    """The position after trading to the nearest edge of [target - w, target + w]."""
    return jnp.clip(position, target - half_width, target + half_width)


def inverse_softplus(x: jax.Array) -> jax.Array:
    """The unconstrained parameter whose softplus is `x` >= 0 (-inf for x = 0, so that
    softplus gives exactly 0 back)."""
    x = jnp.asarray(x)
    large = x > 20.0
    safe = jnp.where(large, 1.0, x)
    return jnp.where(large, x + jnp.log1p(-jnp.exp(-x)), jnp.log(jnp.expm1(safe)))


def raw_softplus(name: str, x: float | jax.Array, *, positive: bool = False,
                 owner: str = "") -> jax.Array:
    """The unconstrained parameter for a width-like setting `name` = x (>= 0, or > 0 with
    `positive`): ValueError now for a concrete x out of range, a run-time check (naming it)
    for a traced one. A scalar: one band for the one underlying (batch with jax.vmap)."""
    x = as_float(x, name, scalar=True)
    if positive:
        x = checked(name, x, lambda a: a > 0, "finite and > 0", owner)
    else:
        x = checked(name, x, lambda a: a >= 0, "finite and >= 0", owner)
    return inverse_softplus(x)


class BandHedge(AbstractStrategy):
    """Constant no-trade band of half-width `width` shares around -delta.

    The band is stored as an unconstrained parameter `raw_width` with width =
    softplus(raw_width), so it stays positive whatever an optimiser does to it (`fit`).
    `BandHedge(0.0)` is delta hedging every step (softplus(-inf) = 0 exactly). Gradients
    with respect to the `width` argument need width > 0: at exactly 0 the parametrisation
    is singular (d width / d raw_width = 0 at raw_width = -inf) and the chain rule gives
    NaN; gradients with respect to `raw_width` (what `fit` trains) are finite everywhere.
    """

    raw_width: jax.Array
    _repr_public = {"raw_width": ("width", "width")}

    def __init__(self, width: float | jax.Array):
        self.raw_width = raw_softplus("width", width, owner="BandHedge")

    @property
    def width(self) -> jax.Array:
        """Half-width of the band in shares (>= 0)."""
        return jax.nn.softplus(self.raw_width)

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

        half-width = scale * (3/2 * exp(-r tau) * c * S * Gamma^2 / gamma)^(1/3)  shares,

    with c the costs' proportional rate, Gamma the hedge model's book gamma (autodiff),
    tau the time to maturity. `scale` (default 1, the formula) is the learnable part: `fit`
    trains it, keeping the Whalley-Wilmott shape (stored as softplus of `raw_scale`, so it
    stays positive). The gradient stays finite as Gamma -> 0.
    """

    risk_aversion: jax.Array
    raw_scale: jax.Array
    _repr_public = {"raw_scale": ("scale", "scale")}

    def __init__(self, risk_aversion: float | jax.Array, scale: float | jax.Array = 1.0):
        self.risk_aversion = as_float(risk_aversion, "risk_aversion", scalar=True)
        self.raw_scale = raw_softplus("scale", scale, positive=True, owner="WhalleyWilmott")

    def __check_init__(self):
        check_positive("risk_aversion", self.risk_aversion)

    @property
    def scale(self) -> jax.Array:
        """Multiplier of the Whalley-Wilmott half-width (> 0)."""
        return jax.nn.softplus(self.raw_scale)

    def half_width(self, obs: Observation) -> jax.Array:
        x = (1.5 * jnp.exp(-obs.rate * obs.time_to_maturity) * obs.cost_rate * obs.spot
             * obs.gamma**2 / self.risk_aversion)
        return self.scale * _safe_cbrt(x)

    def __call__(self, obs: Observation, position: jax.Array) -> jax.Array:
        return trade_to_band(position, -obs.delta, self.half_width(obs))
