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

from ._repr import module_repr
from ._validate import check, check_nonnegative, check_positive, float_param

# A trade smaller than this (in shares) is no trade: it is neither counted nor charged
# a fixed fee. Strategies that hold their position produce trades of exactly zero.
TRADE_TOLERANCE = 1e-9


def is_trade(trade: jax.Array) -> jax.Array:
    """Whether `trade` (shares) counts as a trade."""
    return jnp.abs(trade) > TRADE_TOLERANCE


class AbstractCost(eqx.Module):
    """Cost in currency (>= 0) of trading `trade` shares at `price` per share."""

    __repr__ = module_repr

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

    rate: jax.Array = eqx.field(converter=float_param("rate", scalar=True))

    def __check_init__(self):
        check_nonnegative("rate", self.rate)

    def __call__(self, trade, price):
        return self.rate * jnp.abs(trade) * price

    def proportional_rate(self, price):
        return jnp.broadcast_to(self.rate, jnp.shape(price)).astype(jnp.result_type(price))


class Fixed(AbstractCost):
    """A fixed fee `per_trade` (currency) for every trade, whatever its size."""

    per_trade: jax.Array = eqx.field(converter=float_param("per_trade", scalar=True))

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

    per_trade: jax.Array = eqx.field(converter=float_param("per_trade", scalar=True))
    temperature: jax.Array = eqx.field(converter=float_param("temperature", scalar=True))

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

    half_spread: jax.Array = eqx.field(converter=float_param("half_spread", scalar=True))

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


# Largest exponent `Impact` accepts: cost grows like |trade|^(1 + power), at most cubically.
MAX_IMPACT_POWER = 2.0


class Impact(AbstractCost):
    """Market impact: trading moves the execution price against the trader.

    A trade of `trade` shares executes at a price worse by the fraction
    coef x |trade|^power of `price`, so it costs

        coef x |trade|^(1 + power) x price        (currency, >= 0).

    `power=0.5` is square-root impact (cost grows like size^1.5); `power=0` is a
    proportional cost of rate `coef` (the same as `Proportional(coef)`); `power=1` is linear
    impact (cost quadratic in size). `coef` is per share^power: with power=0.5 and
    coef=1e-4, a 10,000-share trade moves the price by 1e-4 x 100 = 1%.

    The cost is continuous in the trade (`is_smooth`), and its gradients with respect to
    `trade`, `coef` and `power` are finite everywhere, at trade = 0 too (they are 0 there
    for power > 0, where d/dpower of |trade|^(1+power) = |trade|^(1+power) log|trade|
    tends to 0).

    Args:
        coef: impact coefficient (>= 0), the price move per share^power as a fraction of
            the price.
        power: exponent of the trade size in the price move, in [0, 2] (default 0.5).
    """

    coef: jax.Array = eqx.field(converter=float_param("coef", scalar=True))
    power: jax.Array = eqx.field(converter=float_param("power", scalar=True), default=0.5)

    def __check_init__(self):
        check_nonnegative("coef", self.coef)
        check("power", self.power, lambda a: (a >= 0) & (a <= MAX_IMPACT_POWER),
              f"finite and in [0, {MAX_IMPACT_POWER:g}]")

    def __call__(self, trade, price):
        size = jnp.abs(trade)
        traded = size > 0
        # The `where` trick: |0|^(1 + power) has a NaN derivative in power (0 x log 0) and,
        # for power = 0, an undefined one in trade; evaluate the power at a safe size
        # (1) where nothing trades and select 0 there, so every gradient is finite.
        safe = jnp.where(traded, size, jnp.ones_like(size))
        scaled = jnp.where(traded, safe ** (1.0 + self.power), jnp.zeros_like(safe))
        return self.coef * scaled * price

    def proportional_rate(self, price):
        # cost / (|trade| price) = coef |trade|^power: coef when power = 0, else 0 to first
        # order in the trade size.
        rate = jnp.where(self.power == 0, self.coef, jnp.zeros_like(self.coef))
        return jnp.broadcast_to(rate, jnp.shape(price)).astype(jnp.result_type(price))


# Largest log-vol of RandomSlippage's factor: its variance exp(9) - 1 is about 8,100.
MAX_SLIPPAGE_VOL = 3.0


class RandomSlippage(AbstractCost):
    """A proportional cost whose rate is random, drawn afresh for every trade.

    Inside `hedge()` a trade of `trade` shares at `price` is charged

        rate x exp(vol x Z - vol^2 / 2) x |trade| x price        (currency, >= 0),

    with Z the standard normal draw the loop supplies for that path and step (`charge`).
    The log-normal factor has mean 1, so the expected cost, what `__call__` returns and
    what strategies see through `proportional_rate`, is `Proportional(rate)`'s. The
    realised rate has coefficient of variation sqrt(exp(vol^2) - 1) (~vol for small vol).

    In a `CostSum`, every random term receives the same draw Z, so two `RandomSlippage`
    terms in one sum are perfectly correlated (one term with the summed rate is clearer).

    Args:
        rate: expected one-way cost rate (>= 0; 0.001 = 10 bp of the traded value).
        vol: standard deviation of the log of the rate's random factor, in [0, 3] (0 gives
            `Proportional(rate)` exactly). Above 3 the factor's variance exp(vol^2) - 1
            exceeds 8,000: its mean of 1 is carried by draws too rare to simulate, and
            every charged cost is about 0 (at vol 100 the median factor is exp(-5,000)).
            Raises ValueError outside [0, 3].
    """

    rate: jax.Array = eqx.field(converter=float_param("rate", scalar=True))
    vol: jax.Array = eqx.field(converter=float_param("vol", scalar=True))

    def __check_init__(self):
        check_nonnegative("rate", self.rate)
        check("vol", self.vol, lambda v: (v >= 0) & (v <= MAX_SLIPPAGE_VOL),
              f"in [0, {MAX_SLIPPAGE_VOL:g}] (beyond, the lognormal factor's mean is carried by "
              "draws too rare to simulate and every charge is about 0)")

    def __call__(self, trade, price):
        return self.rate * jnp.abs(trade) * price

    @property
    def is_random(self) -> bool:
        return True

    def charge(self, trade, price, noise=None):
        if noise is None:
            return self(trade, price)
        factor = jnp.exp(self.vol * noise - 0.5 * self.vol * self.vol)
        return self.rate * factor * jnp.abs(trade) * price

    def proportional_rate(self, price):
        return jnp.broadcast_to(self.rate, jnp.shape(price)).astype(jnp.result_type(price))
