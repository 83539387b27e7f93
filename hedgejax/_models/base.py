"""The model interface: how the world moves, one step at a time, for all paths at once."""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, NamedTuple

import equinox as eqx
import jax

from .._random import Draws
from .._repr import module_repr


class ModelState(NamedTuple):
    """What a model carries from step to step, for every path.

    Attributes:
        log_spot: log of the underlying's price, shape (n_paths,).
        variance: instantaneous variance (per year) for stochastic-volatility models, shape
            (n_paths,); None for models without one. Strategies see it as `obs.variance`.
        aux: any other model-specific state (e.g. an index into historical data), or None.
    """

    log_spot: jax.Array
    variance: jax.Array | None = None
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
    __repr__ = module_repr

    @abc.abstractmethod
    def init(self, path_index: jax.Array) -> ModelState:
        """State at t=0 for the paths with these global indices."""

    @abc.abstractmethod
    def step(self, state: ModelState, t: jax.Array, dt: float, draws: Draws) -> ModelState:
        """Advance every path from t to t+dt (years) using `draws`."""

    @abc.abstractmethod
    def risk_neutral(self) -> AbstractModel:
        """The same model under the risk-neutral measure (drift r - q)."""

    @property
    def max_paths(self) -> int | None:
        """The most paths this model can produce (data-backed models hold finitely many);
        None means unlimited. `hedge()` and `simulate()` refuse larger `n_paths`."""
        return None

    def conditioned(self, state: ModelState) -> AbstractModel:
        """This model as a hedger uses it after observing the world's `state` at a step.

        Black-Scholes ignores the state; a stochastic-volatility hedge model sets its current
        variance to the observed `state.variance` (per path), so its Greeks are conditional
        on what the hedger sees. The default returns the model unchanged.
        """
        return self

    def bridge_variance(self, state: ModelState) -> jax.Array | None:
        """The variance rate (per year) of log-spot's diffusion over the step that starts
        in `state`, used to draw the step's extremes from the Brownian bridge for
        continuously monitored instruments (module `_exotics`); None (the default) means
        the model has none and only the grid points are monitored."""
        return None

    def prepared(self, horizon: float | None = None, dt: float | None = None) -> AbstractModel:
        """This model as a compiled (jit) computation should receive it when it prices with
        time to maturity up to `horizon` years and steps the simulation by `dt` years.

        Entry points that jit (`greeks`, `hedge`, `simulate`, `mc_price`, ...) call it on
        the concrete model before tracing, so that a model whose traced computation has a
        static size that depends on its parameters (Merton's Poisson series and per-step
        jump count) can size it from their values. The default returns the model unchanged.
        """
        return self

    def replace(self, **changes: Any) -> AbstractModel:
        """A copy with some fields changed, validated like the constructor.

        Works with tracers, so it is the idiom for differentiating with respect to a
        parameter: `jax.grad(lambda v: f(model.replace(vol=v)))(0.2)`.
        """
        return dataclasses.replace(self, **changes)



