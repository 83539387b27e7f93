"""Portfolio insurance by a synthetic protective put.

An insurer holds `shares` shares of the underlying and wants them worth at least `floor`
= shares x strike at T. A protective put (shares x a European put at `strike`) does that:
shares x (S_T + max(K - S_T, 0)) = shares x max(S_T, K). Instead of buying the put, the
insurer replicates it by trading the underlying. That is what `hedge()` does for a *short*
put: hedging a book of -shares puts delta-neutral holds h = -delta_book = shares x
delta_put shares (< 0: a short stock position) financed in the cash account, which is the
replicating portfolio of shares long puts.

The identity (conventions of `hedge()`, module docstring of `_hedge.py`; everything in
time-T money, r the world's rate). The book is -shares puts, so its hedge-model price is
V0 = -shares x P0 (P0 the price of one put) and its value at T is -shares x put(S_T), with
put(S_T) = max(K - S_T, 0). With G the financed gains of the hedge position (dividends
reinvested) and C its transaction costs, `hedge()` returns

    pnl = hedge_error - C = -shares put(S_T) + shares P0 e^{rT} + G - C.

The self-financing replicating portfolio starts with the premium shares x P0 in cash
(money the insurer sets aside instead of buying the put), holds h shares financed in that
account and pays its costs from it, so at T it is worth

    X_T = shares P0 e^{rT} + G - C = pnl + shares put(S_T).

The insured portfolio is the stock leg plus the replicating portfolio:

    value = shares S_T + X_T = shares max(S_T, K) + pnl,

so the replication error value - shares max(S_T, K) is exactly `pnl`: `hedge_error` (the
discrete-hedging and model error) less the costs. Dividends the stock leg receives are not
part of `value` (think of them as paid out to the holder as they come; with div = 0 there
are none); the hedge position's dividends are, as in `hedge()`.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ._costs import AbstractCost
from ._grid import TimeGrid
from ._hedge import HedgeResult, hedge
from ._instruments import Book, EuropeanPut
from ._models.base import AbstractModel
from ._repr import module_repr
from ._strategies import DeltaHedge
from ._strategies.base import AbstractStrategy
from ._validate import as_float, check_positive


class InsuranceResult(eqx.Module):
    """Per-path outcome of `protective_put`; money is in currency at T (time-T money) unless
    stated otherwise.

    Attributes:
        value: the insured portfolio at T: the stock leg shares x S_T (its dividends not
            included) plus the replicating portfolio X_T (premium shares x P0 accrued at the
            rate, plus the hedge's financed gains, less its costs). Ideally
            shares x max(S_T, strike).
        floor: shares x strike, the value insured (scalar; broadcasts against `value`).
        shortfall: max(floor - value, 0) >= 0: how far the insurance failed.
        replication_error: value - shares x max(S_T, strike) (> 0: the insurer ends above
            the protective put's payoff). Equals `result.pnl`; its part before costs is
            `result.hedge_error`.
        cost: transaction costs of the replication, accrued to T (>= 0; `result.cost`).
        premium: shares x P0, the hedge model's price at t0 of the protective puts: what
            buying the insurance outright would cost, in t0 money (scalar).
        result: the `HedgeResult` of hedging the short puts (book = -shares puts).
    """

    __repr__ = module_repr

    value: jax.Array
    floor: jax.Array
    shortfall: jax.Array
    replication_error: jax.Array
    cost: jax.Array
    premium: jax.Array
    result: HedgeResult

    @property
    def terminal_spot(self) -> jax.Array:
        """S_T per path."""
        return self.result.terminal_spot


def protective_put(
    model: AbstractModel,
    strike: Any,
    grid: TimeGrid,
    n_paths: int,
    key: jax.Array,
    *,
    shares: Any = 1.0,
    strategy: AbstractStrategy | None = None,
    costs: AbstractCost | None = None,
    hedge_model: AbstractModel | None = None,
    **hedge_kwargs: Any,
) -> InsuranceResult:
    """Insure `shares` shares of the underlying to a floor of `strike` per share at the end
    of `grid` by replicating a protective put with the underlying (a synthetic put).

    The put (strike `strike`, currency; maturity `grid.maturity`, years) is replicated by
    hedging a book of -shares puts with `strategy` in `hedge()`; see the module docstring
    for the identity value = shares x max(S_T, strike) + pnl.

    Args:
        model: the world that moves the underlying.
        strike: the floor per share (currency, > 0).
        grid: the hedging grid; the put matures at its end.
        n_paths: number of simulated paths.
        key: a `jax.random` key (the same key gives the same paths as `hedge()`).
        shares: shares of the underlying insured (> 0).
        strategy: how the replicating position is rebalanced (default `DeltaHedge()`).
        costs: transaction costs of the replication (None: frictionless).
        hedge_model: what the insurer believes (its deltas drive the replication and its
            put price is the premium); defaults to `model`.
        **hedge_kwargs: passed to `hedge()` (`unwind`, `chunk_size`, `block_size`,
            `devices`, `progress`).

    Returns:
        An `InsuranceResult` with per-path `value`, `shortfall`, `replication_error`,
        `cost`, the scalar `floor` and `premium`, and the underlying `result`.

    Example:
        >>> import jax, hedgejax as hj
        >>> ins = hj.protective_put(hj.BlackScholes(100.0, 0.2), 95.0, hj.TimeGrid(1.0, 252),
        ...                         n_paths=1000, key=jax.random.key(0))
        >>> ins.value.shape
        (1000,)
    """
    if not isinstance(grid, TimeGrid):
        raise ValueError(f"grid must be a TimeGrid (maturity > 0 years), got "
                         f"{type(grid).__name__}")
    strike = as_float(strike)
    shares = as_float(shares)
    check_positive("strike", strike)
    check_positive("shares", shares)
    if jnp.ndim(strike) or jnp.ndim(shares):
        raise ValueError(f"strike and shares must be scalars, got shapes {jnp.shape(strike)} "
                         f"and {jnp.shape(shares)}")
    strategy = DeltaHedge() if strategy is None else strategy
    book = Book([EuropeanPut(strike, grid.maturity)], quantities=jnp.reshape(-shares, (1,)))
    result = hedge(model, book, strategy, costs, grid, n_paths, key,
                   hedge_model=hedge_model, **hedge_kwargs)
    s_T = result.terminal_spot
    replicating = result.pnl + shares * jnp.maximum(strike - s_T, 0.0)   # X_T
    value = shares * s_T + replicating
    floor = (shares * strike).astype(value.dtype)
    return InsuranceResult(
        value=value,
        floor=floor,
        shortfall=jnp.maximum(floor - value, 0.0),
        replication_error=result.pnl,
        cost=result.cost,
        premium=-result.initial_price,
        result=result,
    )
