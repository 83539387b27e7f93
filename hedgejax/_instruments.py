"""What the user holds: European options, digitals, and books of them.

Conventions: strikes and cash amounts in currency, maturities in years from t=0. In a
`Book`, quantity > 0 is long (the user holds the option), < 0 short.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._repr import module_repr
from ._validate import as_float, check_finite, check_positive, float_param


class AbstractInstrument(eqx.Module):
    """A European claim paying `payoff(S_T)` at `maturity` (years).

    Concrete instruments have a `maturity` field (years, array). It is not declared here as
    an `AbstractVar`, which would move it ahead of `strike` in the positional order.
    """

    __repr__ = module_repr

    @abc.abstractmethod
    def payoff(self, spot: jax.Array) -> jax.Array:
        """Cash paid at maturity when the underlying ends at `spot`."""

    @abc.abstractmethod
    def smoothed_payoff(self, spot: jax.Array, width: jax.Array) -> jax.Array:
        """A smooth version of `payoff`, its kink or jump spread over about `width` (currency)
        around the strike. Used only for Monte Carlo second derivatives (`mc_greeks` gamma);
        it tends to `payoff` as width -> 0."""


def _check_strike_maturity(instrument: AbstractInstrument) -> None:
    check_positive("strike", instrument.strike)
    check_positive("maturity", instrument.maturity)


class EuropeanCall(AbstractInstrument):
    """European call: pays max(S_T - strike, 0) at `maturity` (years)."""

    strike: jax.Array = eqx.field(converter=float_param("strike"))
    maturity: jax.Array = eqx.field(converter=float_param("maturity"))

    def __check_init__(self):
        _check_strike_maturity(self)

    def payoff(self, spot: jax.Array) -> jax.Array:
        return jnp.maximum(spot - self.strike, 0.0)

    def smoothed_payoff(self, spot: jax.Array, width: jax.Array) -> jax.Array:
        return width * jax.nn.softplus((spot - self.strike) / width)


class EuropeanPut(AbstractInstrument):
    """European put: pays max(strike - S_T, 0) at `maturity` (years)."""

    strike: jax.Array = eqx.field(converter=float_param("strike"))
    maturity: jax.Array = eqx.field(converter=float_param("maturity"))

    def __check_init__(self):
        _check_strike_maturity(self)

    def payoff(self, spot: jax.Array) -> jax.Array:
        return jnp.maximum(self.strike - spot, 0.0)

    def smoothed_payoff(self, spot: jax.Array, width: jax.Array) -> jax.Array:
        return width * jax.nn.softplus((self.strike - spot) / width)


class Digital(AbstractInstrument):
    """Cash-or-nothing digital: pays `cash` at `maturity` if S_T > strike (or S_T < strike
    when `put=True`), else nothing.
    """

    strike: jax.Array = eqx.field(converter=float_param("strike"))
    maturity: jax.Array = eqx.field(converter=float_param("maturity"))
    cash: jax.Array = eqx.field(converter=float_param("cash"), default=1.0)
    put: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        _check_strike_maturity(self)
        check_finite("cash", self.cash)

    def payoff(self, spot: jax.Array) -> jax.Array:
        above = spot < self.strike if self.put else spot > self.strike
        return jnp.where(above, self.cash, jnp.zeros_like(self.cash))

    def smoothed_payoff(self, spot: jax.Array, width: jax.Array) -> jax.Array:
        sign = -1.0 if self.put else 1.0
        return self.cash * jax.nn.sigmoid(sign * (spot - self.strike) / width)


def _stack(instruments: Sequence[AbstractInstrument]) -> AbstractInstrument:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *instruments)


class Book(eqx.Module):
    """A portfolio: instruments x quantities, any mix of strikes and maturities.

    Instruments of the same kind are stored stacked (array fields of shape (n,)) so that
    pricing a book of thousands of options is one vectorised computation.

    Args:
        instruments: the options held.
        quantities: units of each (> 0 long, < 0 short); default 1 each.

    Example:
        >>> book = Book([EuropeanCall(100.0, 1.0), EuropeanPut(90.0, 0.5)],
        ...             quantities=[10_000, -5_000])
        >>> len(book)
        2
    """

    groups: tuple[AbstractInstrument, ...]
    quantities: tuple[jax.Array, ...]
    positions: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    __repr__ = module_repr

    def __init__(self, instruments: Sequence[AbstractInstrument],
                 quantities: Sequence[float] | jax.Array | None = None):
        if isinstance(instruments, AbstractInstrument):
            instruments = [instruments]
        instruments = list(instruments)
        if not instruments:
            raise ValueError("instruments must hold at least one instrument, got instruments=[]")
        for i, inst in enumerate(instruments):
            if not isinstance(inst, AbstractInstrument):
                raise ValueError(
                    f"instruments[{i}] must be an instrument (e.g. EuropeanCall), got {inst!r}"
                )
            for field in dataclasses.fields(inst):
                value = getattr(inst, field.name)
                if isinstance(value, jax.Array) and value.ndim != 0:
                    raise ValueError(
                        f"instruments[{i}].{field.name} must be a scalar in a Book or a "
                        f"hedge, got shape {value.shape} (one option per instrument: list "
                        "several instruments in the Book)")
        if quantities is None:
            quantities = [1.0] * len(instruments)
        if np.ndim(quantities) != 1 or len(quantities) != len(instruments):
            raise ValueError(
                "quantities must have one entry per instrument, got "
                f"len(quantities)={np.size(quantities)} for {len(instruments)} instruments"
            )
        quantities = as_float(quantities, "quantities")
        check_finite("quantities", quantities)

        by_structure: dict = {}
        for i, inst in enumerate(instruments):
            by_structure.setdefault(jax.tree.structure(inst), []).append(i)
        self.positions = tuple(tuple(idx) for idx in by_structure.values())
        self.groups = tuple(_stack([instruments[i] for i in idx]) for idx in self.positions)
        self.quantities = tuple(quantities[np.asarray(idx)] for idx in self.positions)

    def __check_init__(self):
        for quantity in self.quantities:
            check_finite("quantities", quantity)

    def __len__(self) -> int:
        return sum(len(idx) for idx in self.positions)

    @property
    def maturities(self) -> jax.Array:
        """Maturities (years) in the order the instruments were given."""
        return self._in_order([g.maturity for g in self.groups])

    @property
    def quantity(self) -> jax.Array:
        """Quantities in the order the instruments were given."""
        return self._in_order(list(self.quantities))

    def _in_order(self, per_group: list[jax.Array]) -> jax.Array:
        order = np.argsort(np.concatenate([np.asarray(idx) for idx in self.positions]))
        return jnp.concatenate(per_group)[order]


def as_book(instrument: AbstractInstrument | Book) -> Book:
    """A `Book` holding one unit of `instrument`, or `instrument` itself if it is a Book."""
    return instrument if isinstance(instrument, Book) else Book([instrument])
