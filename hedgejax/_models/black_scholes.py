"""Black-Scholes world: geometric Brownian motion stepped exactly in log space."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from .._random import Draws
from .._validate import as_float, check_finite, check_positive
from .base import AbstractModel, ModelState


class BlackScholes(AbstractModel):
    """Geometric Brownian motion dS/S = mu dt + vol dW.

    Args:
        spot: price of the underlying at t=0 (currency, > 0).
        vol: annualised volatility (> 0, e.g. 0.2 for 20%).
        rate: continuously compounded risk-free rate (per year).
        div: continuously compounded dividend yield (per year).
        drift: real-world drift mu of the price (per year). `None` means risk-neutral,
            mu = rate - div.

    Stepping is exact: log S_{t+dt} = log S_t + (mu - vol^2/2) dt + vol sqrt(dt) Z.

    Example:
        >>> model = BlackScholes(spot=100.0, vol=0.2, rate=0.01)
        >>> model.replace(vol=0.25).vol    # a validated copy; works under jax.grad too
        Array(0.25, dtype=float32)
    """

    spot: jax.Array
    vol: jax.Array
    rate: jax.Array
    div: jax.Array
    drift: jax.Array | None
    vega_field: ClassVar[str] = "vol"

    def __init__(self, spot, vol, rate=0.0, div=0.0, drift=None):
        self.spot = as_float(spot, "spot", scalar=True)
        self.vol = as_float(vol, "vol", scalar=True)
        self.rate = as_float(rate, "rate", scalar=True)
        self.div = as_float(div, "div", scalar=True)
        self.drift = None if drift is None else as_float(drift, "drift", scalar=True)

    def __check_init__(self):
        check_positive("spot", self.spot)
        check_positive("vol", self.vol)
        check_finite("rate", self.rate)
        check_finite("div", self.div)
        check_finite("drift", self.drift)

    @property
    def mu(self) -> jax.Array:
        """The drift used for simulation: `drift`, or rate - div when it is None."""
        return self.rate - self.div if self.drift is None else self.drift

    def init(self, path_index: jax.Array) -> ModelState:
        log_spot = jnp.broadcast_to(jnp.log(self.spot), path_index.shape)
        return ModelState(log_spot=log_spot)

    def step(self, state: ModelState, t: jax.Array, dt: float, draws: Draws) -> ModelState:
        z = draws.normal(0)
        vol = self.vol.astype(z.dtype)
        mean = (self.mu.astype(z.dtype) - 0.5 * vol * vol) * dt
        return ModelState(log_spot=state.log_spot + mean + (vol * dt**0.5) * z)

    def bridge_variance(self, state: ModelState) -> jax.Array:
        """vol^2: the bridge is exact for Black-Scholes."""
        return self.vol * self.vol

    def risk_neutral(self) -> BlackScholes:
        return BlackScholes(self.spot, self.vol, self.rate, self.div, drift=None)
