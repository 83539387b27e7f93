"""The strategy interface: given what the hedger observes, choose the hedge position."""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._repr import module_repr


class Observation(eqx.Module):
    """What the hedger sees at step i (time t_i), for every path.

    Attributes:
        step: step index i (int scalar).
        time: t_i in years.
        time_to_maturity: years from t_i to the end of the hedging grid.
        spot: S_i, one per path (shape (n_paths,); inside `hedge()` the paths are laid out
            in rows of 64, so per-path arrays may have any leading shape: compute
            elementwise and put extra columns on a last axis).
        delta: the book's delta under the hedge model (shares per unit spot move), by
            autodiff, shape (n_paths,). Delta-neutral means position = -delta.
        gamma: the book's gamma under the hedge model, by autodiff.
        cost_rate: the costs' proportional rate at S_i (cost per unit traded value).
        rate: the hedge model's continuously compounded rate.
        variance: the world's instantaneous variance (per year) at t_i for stochastic
            volatility worlds (e.g. Heston), shape (n_paths,); None otherwise.
        vega: the book's sensitivity to the hedge model's volatility parameter (its
            `vega_field`: `vol` for Black-Scholes and Merton, the current variance `v0` for
            Heston), by autodiff, shape (n_paths,); None for hedge models without one.
        option_price: for strategies that trade a listed option (`strategy.option`),
            its market price at t_i (the world model's price if it has one, else the hedge
            model's), per unit; None otherwise.
        option_delta, option_gamma, option_vega: that option's Greeks per unit under the
            hedge model (vega against the same parameter as `vega`); None otherwise. When
            the strategy trades k listed options (`strategy.option` is a tuple), these four
            have shape (n_paths, k), column j for option j.
        book: the book being hedged (maturities inside the grid snapped to grid times), so
            that features can read its terms (strikes, barriers); None outside `hedge()`.
        path: the book's path state, aligned with `book.groups`: None for a group of
            European instruments, else that group's path-state dict (names as in
            `hedgejax._exotics`: "knocked", "extreme", "total", "strike", ...), each array
            of shape (m, n_paths) for the group's m instruments; None when the book has no
            path-dependent instrument or outside `hedge()`.
        realised_variance: realised variance so far per year (sum of squared log returns
            of the grid / elapsed years), shape (n_paths,); None from `hedge()`: a strategy
            that tracks it in its own state (`NeuralHedge`) fills it in.
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
    vega: jax.Array | None = None
    option_price: jax.Array | None = None
    option_delta: jax.Array | None = None
    option_gamma: jax.Array | None = None
    option_vega: jax.Array | None = None
    book: Any = None
    path: Any = None
    realised_variance: jax.Array | None = None
    __repr__ = module_repr


class AbstractStrategy(eqx.Module):
    """Maps (observation, current position) to the target position.

    Called once per step inside the compiled loop, vectorised over paths. The position
    before the first decision is 0; the trade is target - position.

    A position is the shares of the underlying, shape (n_paths,). A strategy that also
    trades a listed option names it in `option` (and its trading costs in `option_costs`);
    its positions are then a tuple (shares, units of the option), units of shape
    (n_paths,). A strategy that trades k listed options returns a tuple of k instruments
    from `option` (and a tuple of k costs, or None, from `option_costs`); its positions are
    then (shares, units) with units of shape (n_paths, k).

    Stateless strategies implement `__call__`. A strategy that remembers something between
    steps (the spot at its last trade, orders not yet filled) overrides `init_state` and
    `decide`; `hedge()` carries the state through the loop.
    """

    __repr__ = module_repr

    @abc.abstractmethod
    def __call__(self, obs: Observation, position: Any) -> Any:
        ...

    @property
    def option(self) -> Any:
        """A listed option (an instrument), or a tuple of them, traded besides the
        underlying; None by default."""
        return None

    @property
    def option_costs(self) -> Any:
        """Costs (an `AbstractCost`) of trading `option`, charged per unit at its market
        price; None means frictionless. With a tuple of options: a tuple of costs (one per
        option, None entries frictionless) or None."""
        return None

    def init_state(self, position: Any) -> Any:
        """The strategy's state before the first step, given the initial (zero) position
        (a pytree of per-path arrays). Stateless strategies have None."""
        return None

    def decide(self, obs: Observation, position: Any, state: Any) -> tuple[Any, Any]:
        """(target position, new state) at this step; what `hedge()` calls."""
        return self(obs, position), state


def stateless_only(strategy: AbstractStrategy) -> None:
    """Raise for a stateful strategy where only `__call__` can be used."""
    raise TypeError(f"{type(strategy).__name__} keeps state between steps: use it inside "
                    "hedge(), which calls its decide()")


# Largest networks the learned strategies build (layers are made one by one in Python, and a
# strategy is evaluated for every path at every step).
MAX_HIDDEN = 4096
MAX_DEPTH = 64


def check_network_size(hidden: int, depth: int) -> None:
    """Refuse networks beyond MAX_HIDDEN units or MAX_DEPTH hidden layers, naming them."""
    if hidden > MAX_HIDDEN:
        raise ValueError(f"hidden must be an integer in [1, {MAX_HIDDEN}], got hidden={hidden}")
    if depth > MAX_DEPTH:
        raise ValueError(f"depth must be an integer in [0, {MAX_DEPTH}], got depth={depth}")


def as_key(key: Any) -> jax.Array:
    """A `jax.random` key: a key as given, or an int seed turned into one; else ValueError
    naming `key`."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                                       or (key.dtype == jnp.uint32 and key.shape == (2,))):
        return key
    raise ValueError(f"key must be a jax.random key (e.g. jax.random.key(0)) or an int seed, "
                     f"got key={key!r}")
