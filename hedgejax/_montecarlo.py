"""Plain Monte Carlo: simulated paths and prices with standard errors."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._grid import TimeGrid
from ._instruments import AbstractInstrument
from ._models.base import AbstractModel
from ._random import Draws, key_words
from ._validate import check_int, check_n_paths, float_dtype


@eqx.filter_jit
def _simulate(model: AbstractModel, grid: TimeGrid, n_paths: int, key: jax.Array):
    dtype = float_dtype()
    words = key_words(key)
    path_index = jnp.arange(n_paths, dtype=jnp.uint32)
    state = model.init(path_index)
    state = state._replace(log_spot=state.log_spot.astype(dtype))

    def body(state, i):
        state = model.step(state, i.astype(dtype) * grid.dt, grid.dt,
                           Draws(words, path_index, i, dtype))
        return state, state.log_spot

    _, log_spots = lax.scan(body, state, jnp.arange(grid.n_steps, dtype=jnp.int32))
    return jnp.exp(jnp.concatenate([state.log_spot[None], log_spots]).T)


def simulate(model: AbstractModel, grid: TimeGrid, n_paths: int, key: jax.Array) -> jax.Array:
    """Spot paths of shape (n_paths, n_steps + 1), column j at time grid.times[j].

    Stores every step: meant for small runs and plots (`hedge()` never stores paths). The
    paths are exactly those `hedge()` sees for the same model, grid and key.
    """
    n_paths = check_n_paths(n_paths, model)
    return _simulate(model, grid, n_paths, key)


def mc_price(model: AbstractModel, instrument: AbstractInstrument, n_paths: int,
             key: jax.Array, n_steps: int = 1) -> tuple[jax.Array, jax.Array]:
    """Monte Carlo price of a European instrument under the risk-neutral version of `model`.

    Returns (price, standard error), both in currency at t=0: the discounted mean payoff
    and its sample standard deviation / sqrt(n_paths). `n_steps` steps to maturity (one is
    exact for Black-Scholes).
    """
    n_steps = check_int("n_steps", n_steps, 1)
    grid = TimeGrid(float(np.asarray(instrument.maturity)), n_steps)
    spots = simulate(model.risk_neutral(), grid, n_paths, key)[:, -1]
    discounted = jnp.exp(-model.rate * grid.maturity) * instrument.payoff(spots)
    return jnp.mean(discounted), jnp.std(discounted, ddof=1) / np.sqrt(n_paths)
