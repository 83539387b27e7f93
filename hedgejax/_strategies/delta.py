"""Time-based strategies: never hedge, hedge once, or delta-hedge every k steps."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._validate import check_int
from .base import AbstractStrategy, Observation


class NoHedge(AbstractStrategy):
    """Hold no shares: P&L is the book's payoff less its financed price."""

    def __call__(self, obs: Observation, position: jax.Array) -> jax.Array:
        return jnp.zeros_like(position)


class StaticHedge(AbstractStrategy):
    """Delta-hedge once at t0 and hold that position to the end."""

    def __call__(self, obs: Observation, position: jax.Array) -> jax.Array:
        return jnp.where(obs.step == 0, -obs.delta, position)


class DeltaHedge(AbstractStrategy):
    """Rebalance to delta-neutral (position = -book delta) every `every` steps, starting at
    t0; hold in between.
    """

    every: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        check_int("every", self.every, 1)

    def __call__(self, obs: Observation, position: jax.Array) -> jax.Array:
        if self.every == 1:
            return -obs.delta
        return jnp.where(obs.step % self.every == 0, -obs.delta, position)
