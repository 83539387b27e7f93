"""The model interface: how the world moves, one step at a time, for all paths at once."""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, NamedTuple

import equinox as eqx
import jax

from .._random import Draws


class ModelState(NamedTuple):
    """What a model carries from step to step, for every path.

    Attributes:
        log_spot: log of the underlying's price, shape (n_paths,).
        aux: model-specific state (e.g. the variance under Heston), or None.
    """

    log_spot: jax.Array
    aux: Any = None


class AbstractModel(eqx.Module):
    """Dynamics of the underlying. Conventions: time in years, annualised vol, continuously
    compounded `rate` and dividend yield `div`.

    A concrete model implements `init`, `step` and `risk_neutral`; its differentiable
    parameters are array leaves so `jax.grad` and `jax.vmap` pass through it.
    """

    spot: eqx.AbstractVar[jax.Array]
    rate: eqx.AbstractVar[jax.Array]
    div: eqx.AbstractVar[jax.Array]
    # Name of the field that `greeks()` reports vega against ("vol" for Black-Scholes).
    vega_field: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def init(self, path_index: jax.Array) -> ModelState:
        """State at t=0 for the paths with these global indices."""

    @abc.abstractmethod
    def step(self, state: ModelState, t: jax.Array, dt: float, draws: Draws) -> ModelState:
        """Advance every path from t to t+dt (years) using `draws`."""

    @abc.abstractmethod
    def risk_neutral(self) -> AbstractModel:
        """The same model under the risk-neutral measure (drift r - q)."""

    def replace(self, **changes: Any) -> AbstractModel:
        """A copy with some fields changed, validated like the constructor.

        Works with tracers, so it is the idiom for differentiating with respect to a
        parameter: `jax.grad(lambda v: f(model.replace(vol=v)))(0.2)`.
        """
        return dataclasses.replace(self, **changes)



