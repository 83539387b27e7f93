"""Hedging with a listed option as well as the underlying: delta-gamma and delta-vega.

The strategy holds `units` of a listed option (its `instrument`) and shares of the
underlying. The option's Greeks come from the hedge model by autodiff (`obs.option_delta`,
`obs.option_gamma`, `obs.option_vega`, per unit); it trades at its market price
(`obs.option_price`: the world model's price when the world can price it, else the hedge
model's) and pays its own `costs`, charged per unit at that price (e.g. `Spread(0.05)` is 5
cents a unit). Positions are tuples (shares, units).

Example:
    >>> import jax, hedgejax as hj
    >>> model = hj.BlackScholes(100.0, 0.2)
    >>> strategy = hj.DeltaGammaHedge(hj.EuropeanCall(100.0, 0.5), costs=hj.Spread(0.02))
    >>> res = hj.hedge(model, hj.EuropeanCall(105.0, 0.25), strategy, hj.Proportional(1e-3),
    ...                hj.TimeGrid(0.25, 63), n_paths=1000, key=jax.random.key(0))
    >>> res.pnl.shape
    (1000,)
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._costs import AbstractCost
from .._instruments import AbstractInstrument
from .._validate import check_int
from .base import AbstractStrategy, Observation

# Below this |Greek| per unit the option cannot neutralise the book's; hold no option.
_TINY = 1e-12


def _neutralising_units(book_greek: jax.Array, option_greek: jax.Array) -> jax.Array:
    """Units of the option that cancel the book's Greek: -book / option (0 where the option
    has no exposure)."""
    usable = jnp.abs(option_greek) > _TINY
    return jnp.where(usable, -book_greek / jnp.where(usable, option_greek, 1.0), 0.0)


class _OptionHedge(AbstractStrategy):
    instrument: AbstractInstrument
    costs: AbstractCost | None = None
    every: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        if not isinstance(self.instrument, AbstractInstrument):
            raise ValueError(f"instrument must be an instrument (e.g. EuropeanCall), got "
                             f"{type(self.instrument).__name__}")
        if self.costs is not None and not isinstance(self.costs, AbstractCost):
            raise ValueError(f"costs must be an AbstractCost or None, got "
                             f"{type(self.costs).__name__}")
        check_int("every", self.every, 1)

    @property
    def option(self) -> AbstractInstrument:
        return self.instrument

    @property
    def option_costs(self) -> AbstractCost | None:
        return self.costs

    def _units(self, obs: Observation) -> jax.Array:
        raise NotImplementedError

    def __call__(self, obs: Observation, position: tuple[jax.Array, jax.Array]):
        units = self._units(obs)
        shares = -(obs.delta + units * obs.option_delta)
        if self.every == 1:
            return shares, units
        now = obs.step % self.every == 0
        return jnp.where(now, shares, position[0]), jnp.where(now, units, position[1])


class DeltaGammaHedge(_OptionHedge):
    """Gamma-neutral with the listed option, then delta-neutral with shares, every `every`
    steps: units = -gamma_book / gamma_option, shares = -(delta_book + units delta_option).

    Attributes:
        instrument: the listed option (maturity at or after the grid's end; a longer-dated
            option keeps its gamma away from the expiry spike).
        costs: its trading costs per unit at its market price (None: frictionless).
        every: rebalance every k steps (static int >= 1).
    """

    def _units(self, obs: Observation) -> jax.Array:
        return _neutralising_units(obs.gamma, obs.option_gamma)


class DeltaVegaHedge(_OptionHedge):
    """Vega-neutral with the listed option, then delta-neutral with shares, every `every`
    steps: units = -vega_book / vega_option, shares = -(delta_book + units delta_option).

    Vega is against the hedge model's volatility parameter (`vol` for Black-Scholes, the
    current variance for Heston); the ratio does not depend on that choice. Under Heston,
    this neutralises the book's exposure to the variance factor that shares cannot hedge.

    Attributes:
        instrument: the listed option (maturity at or after the grid's end).
        costs: its trading costs per unit at its market price (None: frictionless).
        every: rebalance every k steps (static int >= 1).
    """

    def _units(self, obs: Observation) -> jax.Array:
        if obs.vega is None or obs.option_vega is None:
            raise ValueError("DeltaVegaHedge needs a hedge model with a volatility parameter "
                             "(Black-Scholes, Heston or Merton)")
        return _neutralising_units(obs.vega, obs.option_vega)
