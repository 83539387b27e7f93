"""The strategy interface: given what the hedger observes, choose the hedge position."""

from __future__ import annotations

import abc

import equinox as eqx
import jax


class Observation(eqx.Module):
    """What the hedger sees at step i (time t_i), for every path.

    Attributes:
        step: step index i (int scalar).
        time: t_i in years.
        time_to_maturity: years from t_i to the end of the hedging grid.
        spot: S_i, shape (n_paths,).
        delta: the book's delta under the hedge model (shares per unit spot move), by
            autodiff, shape (n_paths,). Delta-neutral means position = -delta.
        gamma: the book's gamma under the hedge model, by autodiff.
        cost_rate: the costs' proportional rate at S_i (cost per unit traded value).
        rate: the hedge model's continuously compounded rate.
        variance: the world's instantaneous variance (per year) at t_i for stochastic
            volatility worlds (e.g. Heston), shape (n_paths,); None otherwise.
    """

    step: jax.Array
    time: jax.Array
    time_to_maturity: jax.Array
    spot: jax.Array
    delta: jax.Array
    gamma: jax.Array
    cost_rate: jax.Array
    rate: jax.Array
    variance: jax.Array | None = None


class AbstractStrategy(eqx.Module):
    """Maps (observation, current position in shares) to the target position in shares.

    Called once per step inside the compiled loop, vectorised over paths. The position
    before the first decision is 0; the trade is target - position.
    """

    @abc.abstractmethod
    def __call__(self, obs: Observation, position: jax.Array) -> jax.Array:
        ...
