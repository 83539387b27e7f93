"""Transaction cost models. A cost model maps a trade (shares, signed) executed at a price
(currency per share) to a cost in currency, >= 0. Combine models with `+`.

Example:
    >>> import hedgejax as hj
    >>> costs = hj.Proportional(0.001) + hj.Fixed(50.0)
    >>> float(costs(jnp.asarray(200.0), jnp.asarray(100.0)))    # 0.1% of 20,000 + 50
    70.0
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

from ._validate import as_float, check_nonnegative, check_positive

# A trade smaller than this (in shares) is no trade: it is neither counted nor charged
# a fixed fee. Strategies that hold their position produce trades of exactly zero.
TRADE_TOLERANCE = 1e-9


def is_trade(trade: jax.Array) -> jax.Array:
    """Whether `trade` (shares) counts as a trade."""
    return jnp.abs(trade) > TRADE_TOLERANCE


class AbstractCost(eqx.Module):
    """Cost in currency (>= 0) of trading `trade` shares at `price` per share."""

    @abc.abstractmethod
    def __call__(self, trade: jax.Array, price: jax.Array) -> jax.Array:
        ...

    @abc.abstractmethod
    def proportional_rate(self, price: jax.Array) -> jax.Array:
        """The cost per unit of traded value for small trades (what Whalley-Wilmott's band
        calls the proportional cost rate): cost / (|trade| x price) to first order."""

    @property
    def is_smooth(self) -> bool:
        """Whether the cost is continuous in the trade (`Fixed` is not)."""
        return True

    @property
    def is_random(self) -> bool:
        """Whether the charged cost has noise (`charge` then needs standard normal draws)."""
        return False

    def charge(self, trade: jax.Array, price: jax.Array,
               noise: jax.Array | None = None) -> jax.Array:
        """The cost actually charged inside `hedge()`. `noise` is a standard normal array
        of the trade's shape, drawn per path and step when `is_random`; deterministic
        costs ignore it and charge `self(trade, price)` (for random ones, `__call__` is
        the expected cost)."""
        return self(trade, price)

    def smoothed(self, temperature: float) -> AbstractCost:
        """A differentiable surrogate for gradients (`fit` uses it with non-smooth costs; the
        objective it reports is always computed with the true costs). Smooth costs return
        themselves; `Fixed` replaces its 0/1 charge by per_trade x (1 - exp(-|trade| / T))
        with temperature T in shares."""
        return self

    def __add__(self, other: AbstractCost) -> AbstractCost:
        if not isinstance(other, AbstractCost):
            return NotImplemented
        return CostSum(_terms(self) + _terms(other))


def _terms(cost: AbstractCost) -> tuple[AbstractCost, ...]:
    return cost.terms if isinstance(cost, CostSum) else (cost,)


class NoCost(AbstractCost):
    """Frictionless trading."""

    def __call__(self, trade, price):
        return jnp.zeros_like(trade * price)

    def proportional_rate(self, price):
        return jnp.zeros_like(price)


class Proportional(AbstractCost):
    """One-way proportional cost: `rate` x |trade| x price (e.g. 0.001 = 10 bp)."""

    rate: jax.Array = eqx.field(converter=as_float)

    def __check_init__(self):
        check_nonnegative("rate", self.rate)

    def __call__(self, trade, price):
        return self.rate * jnp.abs(trade) * price

    def proportional_rate(self, price):
        return jnp.broadcast_to(self.rate, jnp.shape(price)).astype(jnp.result_type(price))


class Fixed(AbstractCost):
    """A fixed fee `per_trade` (currency) for every trade, whatever its size."""

    per_trade: jax.Array = eqx.field(converter=as_float)

    def __check_init__(self):
        check_nonnegative("per_trade", self.per_trade)

    def __call__(self, trade, price):
        return jnp.where(is_trade(trade), self.per_trade, 0.0) * jnp.ones_like(price)

    def proportional_rate(self, price):
        return jnp.zeros_like(price)

    @property
    def is_smooth(self) -> bool:
        return False

    def smoothed(self, temperature: float) -> AbstractCost:
        return SmoothFixed(self.per_trade, temperature)


class SmoothFixed(AbstractCost):
    """Surrogate of `Fixed` for gradients: per_trade x (1 - exp(-|trade| / temperature)).

    It is 0 for no trade and tends to per_trade for trades much larger than `temperature`
    (shares), so shrinking or avoiding trades lowers it smoothly. It is not the cost charged:
    `fit` differentiates it but reports the objective under `Fixed`.
    """

    per_trade: jax.Array = eqx.field(converter=as_float)
    temperature: jax.Array = eqx.field(converter=as_float)

    def __check_init__(self):
        check_nonnegative("per_trade", self.per_trade)
        check_positive("temperature", self.temperature)

    def __call__(self, trade, price):
        soft = -jnp.expm1(-jnp.abs(trade) / self.temperature)
        return self.per_trade * soft * jnp.ones_like(price)

    def proportional_rate(self, price):
        return jnp.zeros_like(price)


class Spread(AbstractCost):
    """Paying half the bid-ask spread: `half_spread` (currency per share) x |trade|."""

    half_spread: jax.Array = eqx.field(converter=as_float)

    def __check_init__(self):
        check_nonnegative("half_spread", self.half_spread)

    def __call__(self, trade, price):
        return self.half_spread * jnp.abs(trade) * jnp.ones_like(price)

    def proportional_rate(self, price):
        return self.half_spread / price


class CostSum(AbstractCost):
    """The sum of several cost models (what `a + b` builds)."""

    terms: tuple[AbstractCost, ...]

    def __call__(self, trade, price):
        return sum(term(trade, price) for term in self.terms)

    @property
    def is_random(self) -> bool:
        return any(term.is_random for term in self.terms)

    def charge(self, trade, price, noise=None):
        return sum(term.charge(trade, price, noise) for term in self.terms)

    def proportional_rate(self, price):
        return sum(term.proportional_rate(price) for term in self.terms)

    @property
    def is_smooth(self) -> bool:
        return all(term.is_smooth for term in self.terms)

    def smoothed(self, temperature: float) -> AbstractCost:
        return CostSum(tuple(term.smoothed(temperature) for term in self.terms))
