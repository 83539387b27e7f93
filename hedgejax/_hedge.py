"""`hedge()`: the one loop. Simulates the world step by step, lets the strategy rebalance,
charges costs and accrues P&L, for all paths at once, in one compiled `lax.scan`.

Conventions (docs/architecture.md, "Conventions"). The user holds the book, bought at t0 at
the hedge model's price V0 and financed at the world's `rate`. At step i (time t_i) the
hedger observes S_i, chooses h_i shares (held over [t_i, t_{i+1})) and pays
costs(h_i - h_{i-1}, S_i); h_{-1} = 0. Holding h_i gains
g_i = h_i (S_{i+1} e^{q dt} - S_i e^{r dt}). In time-T money:

    hedge_error = book value at T - V0 e^{rT} + sum_i g_i e^{r(T - t_{i+1})}
    cost        = sum_i cost_i e^{r(T - t_i)}
    pnl         = hedge_error - cost

The book's value at T is its payoffs (instruments expiring inside the grid pay at their
maturity and the cash accrues at `rate`) plus the hedge model's price of instruments that
mature after the grid ends.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ._attribution import ACCUMULATED, Attribution, cost_parts, sensitivities, vol_state
from ._costs import AbstractCost, NoCost, is_trade
from ._devices import default_device_count
from ._exotics import AbstractPathDependent, PathStep, on_grid, path_step
from ._grid import TimeGrid
from ._instruments import AbstractInstrument, Book, as_book
from ._models.base import AbstractModel, ModelState
from ._numerics import ordered_sum
from ._pricing.registry import book_value_log, has_pricer
from ._random import Draws, key_words
from ._repr import module_repr
from ._scan import checkpointed_scan
from ._strategies.base import AbstractStrategy, Observation
from ._surface import (
    PRICINGS,
    BookSurface,
    PriceSurface,
    build as build_surface,
    supports_surface,
)
from ._validate import (
    NonFiniteError,
    check_grid_fits,
    check_int,
    check_memory,
    check_n_paths,
    float_dtype,
    is_concrete,
    runtime_checked,
)


class Trace(eqx.Module):
    """One run of `hedge()` step by step, for the first k paths (`hedge(..., record=k)`):
    what a plot of a hedge, or an inspection of a learned policy, needs. Step i is the
    decision at t_i = i dt, i = 0 .. n_steps - 1; index n_steps of `spot`, `variance` and
    `path` is the horizon T.

    Attributes:
        time: t_0 .. t_n in years, shape (n_steps + 1,).
        spot: S at each grid time (currency), shape (k, n_steps + 1).
        variance: the world's instantaneous variance (per year), shape (k, n_steps + 1), for
            stochastic-volatility worlds; None otherwise.
        delta: the book's delta under the hedge model observed at t_i (shares), shape
            (k, n_steps).
        position: shares held over [t_i, t_{i+1}) (the decision at t_i), shape (k, n_steps).
        option_units: units of the listed option(s) held over [t_i, t_{i+1}), shape
            (k, n_steps) when `strategy.option` is one instrument, (k, n_steps, m) when it
            is a tuple of m (also m = 1); None without.
        trade: shares bought at t_i (sold if < 0), shape (k, n_steps).
        cost: transaction cost paid at t_i for all trades of the step (currency at t_i, not
            accrued), shape (k, n_steps). With `unwind=True` the unwinding trade at T and
            its cost are not in the trace (they are in `HedgeResult.cost`).
        path: the book's path state at each grid time, aligned with `book.groups`: None for
            a European group, else a dict name -> array of shape (k, n_steps + 1, m) for the
            group's m instruments (names as in `hedgejax._exotics`).
    """

    __repr__ = module_repr

    time: jax.Array
    spot: jax.Array
    variance: jax.Array | None
    delta: jax.Array
    position: jax.Array
    option_units: jax.Array | None
    trade: jax.Array
    cost: jax.Array
    path: tuple


class HedgeResult(eqx.Module):
    """Per-path outcome of `hedge()`; money amounts are in time-T currency.

    Attributes:
        pnl: hedge_error - cost (currency; > 0 is a gain to the holder of the book).
        hedge_error: P&L before costs: book value at T - V0 e^{rT} + hedge gains.
        cost: transaction costs paid, accrued to T (>= 0).
        n_trades: number of trades (including the initial one at t0).
        unhedged_pnl: P&L of holding the book unhedged on the same paths
            (book value at T - V0 e^{rT}).
        final_position: shares held after the last decision (before any unwind).
        terminal_spot: S_T.
        initial_price: V0, the hedge model's price of the book at t0 (scalar).
        trace: with `hedge(..., record=k)`, a `Trace` of the first k paths step by step;
            None otherwise.
        attribution: with `hedge(..., attribution=True)`, the P&L explain of every path
            (`Attribution`: delta, gamma, theta, vega, ..., costs by kind, residual, each
            (n_paths,), summing to `pnl`); None otherwise.
    """

    __repr__ = module_repr

    pnl: jax.Array
    hedge_error: jax.Array
    cost: jax.Array
    n_trades: jax.Array
    unhedged_pnl: jax.Array
    final_position: jax.Array
    terminal_spot: jax.Array
    initial_price: jax.Array
    trace: Trace | None = None
    attribution: Attribution | None = None


def _expiry_steps(book: Book,
                  grid: TimeGrid) -> tuple[tuple[jax.Array, ...], tuple[bool, bool]]:
    """Grid step at which each instrument expires (n_steps + 1: after the grid ends), and
    whether any expires strictly inside the grid and whether any outlives it (both known
    statically when maturities are; True when they are traced)."""
    dt, n = grid.dt, grid.n_steps
    steps = []
    inside = beyond = False
    for group in book.groups:
        m = group.maturity
        if is_concrete(m):
            m = np.asarray(m, dtype=float)
            e = np.rint(m / dt)
            if np.any(e < 1):
                raise ValueError(
                    f"maturity must be at least half a step ({dt / 2:.3g} years) of the grid, "
                    f"got maturity={m[e < 1].min():.6g}"
                )
            # a float32 maturity is only within its own rounding of the grid time
            tol = max(1e-9, 8 * float(np.finfo(np.asarray(group.maturity).dtype).eps))
            on_grid = np.abs(m - e * dt) <= tol * max(1.0, grid.maturity)
            if np.any((e <= n) & ~on_grid):
                warnings.warn(
                    "a maturity inside the hedging horizon is not on the time grid; it is "
                    f"moved to the nearest grid time (dt={dt:.6g} years)", stacklevel=3)
            inside = inside or bool(np.any(e < n))
            beyond = beyond or bool(np.any(e > n))
            steps.append(jnp.asarray(np.minimum(e, n + 1), dtype=jnp.int32))
        else:
            e = jnp.round(m / dt).astype(jnp.int32)
            steps.append(jnp.minimum(e, n + 1))
            inside = beyond = True
    return tuple(steps), (inside, beyond)


def _snap_maturities(book: Book, expiry: tuple[jax.Array, ...], grid: TimeGrid) -> Book:
    """Maturities inside the grid moved to their grid time (so tau is exactly 0 at expiry)."""
    def snapped(group, e):
        return jnp.where(e <= grid.n_steps, e * grid.dt, group.maturity).astype(
            group.maturity.dtype)
    return eqx.tree_at(lambda b: tuple(g.maturity for g in b.groups), book,
                       tuple(snapped(g, e) for g, e in zip(book.groups, expiry, strict=True)))


def _payoffs_at(book: Book, expiry, step: jax.Array, spot: jax.Array, path: tuple,
                rate: jax.Array) -> jax.Array:
    """Sum of quantity x payoff over the instruments that expire at `step` (a path-dependent
    one's payoff reads its path state, `path[k]` for group k)."""
    total = jnp.zeros_like(spot)
    for group, qty, e, state in zip(book.groups, book.quantities, expiry, path, strict=True):
        def one(inst, q, e_i, state):
            if state is None:
                payoff = inst.payoff(spot)
            else:
                payoff = inst.path_payoff(state, spot, rate)
            return jnp.where(e_i == step, q, 0.0) * payoff
        total = total + ordered_sum(jax.vmap(one)(group, qty, e, state), axis=0)
    return total


def _path_init(book: Book, log_spot: jax.Array) -> tuple:
    """Each group's path state at t = 0 (None for European groups)."""
    return tuple(jax.vmap(lambda inst: inst.path_state(log_spot, jnp.zeros((), log_spot.dtype)))(g)
                 if isinstance(g, AbstractPathDependent) else None for g in book.groups)


def _path_update(book: Book, path: tuple, step: PathStep) -> tuple:
    """Each group's path state after one step."""
    return tuple(None if state is None else
                 jax.vmap(lambda inst, s: inst.update(s, step))(g, state)
                 for g, state in zip(book.groups, path, strict=True))


def _needs_bridge(book: Book) -> bool:
    return any(isinstance(g, AbstractPathDependent) and g.continuous for g in book.groups)


def _greeks_log(model, book, log_spot, spot, t, alive=None, path=None):
    """(delta, gamma, vega) of `book` per path under `model`, by autodiff in log-spot (no log
    in the step), then the chain rule to spot: dV/dS = V_x / S, d2V/dS2 = (V_xx - V_x) / S^2.
    Vega is against `model.vega_field` (None if the model has none). Unused Greeks are dead
    code that XLA removes.

    Forward mode only (the value is elementwise in the paths, so a tangent of ones gives
    each path's derivative): reverse mode would transpose the pricers' broadcasts over
    quadrature nodes and series terms into reductions, whose rounding XLA compiles
    differently for different numbers of paths, and per-path results would then depend on
    the chunk size."""
    def value(x):
        return book_value_log(model, book, x, t, alive, path)

    def slope(x):
        return jax.jvp(value, (x,), (jnp.ones_like(x),))[1]

    v_x, v_xx = jax.jvp(slope, (log_spot,), (jnp.ones_like(log_spot),))
    delta = v_x / spot
    gamma = (v_xx - v_x) / (spot * spot)
    name = model.vega_field
    vega = None
    if name:
        def value_at(p):
            bumped = eqx.tree_at(lambda m: getattr(m, name), model, p)
            return book_value_log(bumped, book, log_spot, t, alive, path)

        p0 = getattr(model, name)
        _, vega = jax.jvp(value_at, (p0,), (jnp.ones_like(p0),))
        vega = jnp.broadcast_to(vega, log_spot.shape)
    return delta, gamma, vega


class _Surfaces(NamedTuple):
    """Price surfaces standing in for the exact pricers (`pricing="surface"`): of the book
    and of the hedging option under the hedge model, and of the option at its market price;
    None where the exact pricer is used."""

    book: BookSurface | None = None
    option: BookSurface | None = None
    market: BookSurface | None = None


def _observe(hedge_model, book, expiry, costs, step, t, t_end, state, spot,
             listed=None, option_price=None, surfaces=_Surfaces(), path=None) -> Observation:
    alive = tuple(e > step for e in expiry)
    if surfaces.book is not None:
        delta, gamma, vega = surfaces.book.greeks(step, state.log_spot, spot, state.variance,
                                                  alive)
    else:
        delta, gamma, vega = _greeks_log(hedge_model.conditioned(state), book,
                                         state.log_spot, spot, t, alive, path)
    extra = {}
    if listed is not None:
        greeks = []
        for option in listed.books:
            if surfaces.option is not None:
                greeks.append(surfaces.option.greeks(step, state.log_spot, spot,
                                                     state.variance))
            else:
                greeks.append(_greeks_log(hedge_model.conditioned(state), option,
                                          state.log_spot, spot, t))
        o_delta, o_gamma, o_vega = (listed.join([g[j] for g in greeks]) for j in range(3))
        extra = dict(option_price=option_price, option_delta=o_delta, option_gamma=o_gamma,
                     option_vega=o_vega)
    dtype = spot.dtype
    return Observation(
        step=step, time=t, time_to_maturity=(t_end - t).astype(dtype), spot=spot,
        delta=delta, gamma=gamma, cost_rate=costs.proportional_rate(spot),
        rate=jnp.asarray(hedge_model.rate, dtype), variance=state.variance, vega=vega,
        book=book, path=path if any(p is not None for p in (path or ())) else None, **extra)


# Random streams of the listed options' costs (option j uses the j-th; models use the low
# ids, the barrier bridge 12 and 13, the underlying's cost 15).
_OPTION_COST_STREAMS = (14, 11, 10, 9, 8)


class _Listed(eqx.Module):
    """The listed options a strategy trades (`strategy.option`): one instrument (positions
    (shares, units) with units (n_paths,)) or a tuple of k (units (n_paths, k)).

    Attributes:
        books: each option as a one-instrument Book.
        costs: each option's costs (`NoCost()` for None).
        several: the strategy gave a tuple (static).
    """

    books: tuple
    costs: tuple
    several: bool = eqx.field(static=True)

    def join(self, columns):
        """Per-option arrays (n_paths,) as the strategy sees them."""
        if any(c is None for c in columns):
            return None
        return jnp.stack(columns, axis=-1) if self.several else columns[0]

    def column(self, units, j):
        return units[..., j] if self.several else units


def _listed(strategy: AbstractStrategy) -> _Listed | None:
    """The listed options `strategy` trades, or None."""
    option = strategy.option
    if option is None:
        return None
    several = isinstance(option, (tuple, list))
    options = tuple(option) if several else (option,)
    costs = strategy.option_costs
    if not several:
        costs = (costs,)
    elif costs is None:
        costs = (None,) * len(options)
    else:
        costs = tuple(costs)
    return _Listed(books=tuple(as_book(o) for o in options),
                   costs=tuple(NoCost() if c is None else c for c in costs), several=several)


def _option_market(model, hedge_model, option):
    """The model whose price the listed option trades at: the world's if it can price it,
    else the hedge model's."""
    return model if has_pricer(model, option) else hedge_model


# Paths per block: blocks run one after another, each the whole scan. Measured on the 2-core
# CPU at 2^20 paths x 252 steps (M path-steps/s, 1 core / 2 cores): unblocked 113 / 209,
# 2^14 136 / 183, 2^17 134 / 203, 2^18 132 / 218. Small blocks keep one core's state in
# cache but starve XLA's threads; 2^18 is best on both.
DEFAULT_BLOCK_SIZE = 2**18
# Reverse-mode gradients store only the carry entering each of about sqrt(n) segments of
# steps and recompute the rest (two-level checkpointing, module `_scan`;
# experiments/results/grad_memory.md). A switch only for benchmarks that measure the
# difference; it does not change forward results (bit for bit).
CHECKPOINT_STEP = True
_LANES = 64
# Draw streams of the costs' noise (models use the low stream ids).
_COST_STREAM = 15


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _split(position, has_option):
    return position if has_option else (position, None)


class _Prepared(eqx.Module):
    """`hedge()`'s validated inputs, as the compiled loop (`_run`) receives them.

    Attributes:
        model, hedge_model: the world and the hedger's model (each `prepared` for the run).
        book: the book, maturities inside the grid snapped to grid times and path-dependent
            schedules resolved on the grid.
        strategy, costs, grid: as given (costs: `NoCost()` for None).
        n_paths: paths in the whole run (static).
        key: the `jax.random` key.
        expiry: per book group, the grid step at which each instrument expires
            (n_steps + 1: after the grid's end).
        ends: (an instrument expires strictly inside the grid, one outlives it), static.
        unwind: sell the hedge at T (static).
        block_size: paths per block (static).
        surface: (the surfaces' node counts or None, the hedge model is the world), static.
        attribution: also accumulate the P&L explain's terms (static).
    """

    model: AbstractModel
    hedge_model: AbstractModel
    book: Book
    strategy: AbstractStrategy
    costs: AbstractCost
    grid: TimeGrid
    n_paths: int = eqx.field(static=True)
    key: jax.Array
    expiry: tuple
    ends: tuple[bool, bool] = eqx.field(static=True)
    unwind: bool = eqx.field(static=True)
    block_size: int = eqx.field(static=True)
    surface: tuple = eqx.field(static=True)
    attribution: bool = eqx.field(static=True, default=False)


class _Carry(eqx.Module):
    """What the hedging loop carries from one step to the next, for every path of a block
    (money in time-T currency).

    Attributes:
        world: the world model's state (log-spot, variance, ...).
        spot: S_i.
        position: shares held (a tuple (shares, option units) when the strategy trades a
            listed option).
        gains: the hedge's gains so far.
        cost: transaction costs so far.
        n_trades: trades so far (int32).
        paid: payoffs of instruments that expired inside the grid, accrued to T.
        memory: the strategy's own state (None for stateless strategies).
        option_price: the listed option's market price at t_i (zeros without one).
        path: each book group's path state (None for European groups; module `_exotics`).
        explain: the P&L explain's running sums (dict term -> array, module
            `_attribution`), None without `attribution`.
    """

    world: ModelState
    spot: jax.Array
    position: Any
    gains: jax.Array
    cost: jax.Array
    n_trades: jax.Array
    paid: jax.Array
    memory: Any
    option_price: jax.Array
    path: tuple
    explain: Any = None


def _simulate(prep: _Prepared, words, block, path_index, surfaces=_Surfaces(),
              record: bool = False):
    """Per-path outcomes for the paths with these global indices (a multiple of `block`):
    blocks of `block` paths run one after another, each the whole scan over steps. With
    `record` (one block), also the per-step quantities of a `Trace`, time-major."""
    model, hedge_model, book, strategy, costs, grid = (
        prep.model, prep.hedge_model, prep.book, prep.strategy, prep.costs, prep.grid)
    expiry = prep.expiry
    dtype = float_dtype()
    n, dt, t_end = grid.n_steps, grid.dt, grid.maturity
    inside, outlives = prep.ends
    r = jnp.asarray(model.rate, dtype)
    q = jnp.asarray(model.div, dtype)
    carry_growth = jnp.exp(r * dt)
    div_growth = jnp.exp(q * dt)
    listed = _listed(strategy)
    has_option = listed is not None
    bridge = _needs_bridge(book)

    def option_price(state, step, t):
        prices = []
        for option in listed.books:
            if surfaces.market is not None:
                prices.append(surfaces.market.value(step, state.log_spot,
                                                    state.variance).astype(dtype))
            else:
                market = _option_market(model, hedge_model, option)
                prices.append(book_value_log(market.conditioned(state), option,
                                             state.log_spot, jnp.asarray(t, dtype)
                                             ).astype(dtype))
        return listed.join(prices)

    def charge_options(trade_units, prices, draws):
        """Cost of trading `trade_units` of the listed options, and the trades made."""
        cost = 0.0
        trades = jnp.zeros(prices.shape[:-1] if listed.several else prices.shape, jnp.int32)
        for j, option_costs in enumerate(listed.costs):
            o_trade = listed.column(trade_units, j)
            cost = cost + charge(option_costs, o_trade, listed.column(prices, j), draws,
                                 _OPTION_COST_STREAMS[j])
            trades = trades + is_trade(o_trade).astype(jnp.int32)
        return cost, trades

    def charge(cost_model, trade, price, draws, stream):
        noise = draws.normal(stream) if cost_model.is_random else None
        return cost_model.charge(trade, price, noise)

    explain = prep.attribution

    def charged_parts(ex, trade, shares_price, units_trade, prices, draws, accrue):
        """`ex` less the costs of these trades, by kind, accrued by `accrue`."""
        legs = [(costs, trade, shares_price, _COST_STREAM)]
        if has_option:
            legs += [(c, listed.column(units_trade, j), listed.column(prices, j),
                      _OPTION_COST_STREAMS[j]) for j, c in enumerate(listed.costs)]
        ex = dict(ex)
        for cost_model, leg_trade, price, stream in legs:
            noise = draws.normal(stream) if cost_model.is_random else None
            for kind, amount in cost_parts(cost_model, leg_trade, price, noise).items():
                ex[kind] = ex[kind] - amount * accrue
        return ex

    def explain_step(ex, c, world, new_spot, shares, units, t, i, trade, draws, to_end):
        """The explain's sums after step i (module `_attribution`)."""
        now = hedge_model.conditioned(c.world)
        alive = tuple(e > i for e in expiry)
        g = sensitivities(now, book, c.world.log_spot, c.spot, t, alive, c.path)
        net = [g.delta + shares, g.gamma, g.theta, g.vega, g.vanna, g.volga]
        held = g.value + shares * c.spot
        if has_option:
            for j, option in enumerate(listed.books):
                u = listed.column(units, j)
                o = sensitivities(now, option, c.world.log_spot, c.spot, t)
                net = [a + u * b for a, b in zip(net, (o.delta, o.gamma, o.theta, o.vega,
                                                        o.vanna, o.volga), strict=True)]
                held = held + u * listed.column(c.option_price, j)
        d_delta, d_gamma, d_theta, d_vega, d_vanna, d_volga = net
        ds = new_spot - c.spot
        dv = (vol_state(hedge_model.conditioned(world), ds.shape)
              - vol_state(now, ds.shape)).astype(dtype)
        step_terms = dict(
            delta=d_delta * ds, gamma=0.5 * d_gamma * ds * ds, theta=d_theta * dt,
            vega=d_vega * dv, vanna=d_vanna * ds * dv, volga=0.5 * d_volga * dv * dv,
            carry=-held * jnp.expm1(r * dt), dividends=shares * new_spot * jnp.expm1(q * dt))
        ex = {k: v + step_terms[k].astype(dtype) * to_end if k in step_terms else v
              for k, v in ex.items()}
        held_units = _split(c.position, has_option)[1]
        return charged_parts(ex, trade, c.spot, None if units is None else units - held_units,
                             c.option_price, draws, jnp.exp(r * (t_end - t)))

    def run_block(path_index):
        world0 = model.init(path_index)
        world0 = world0._replace(log_spot=world0.log_spot.astype(dtype))
        zeros = jnp.zeros(path_index.shape, dtype)
        if has_option:
            k = len(listed.books)
            position0 = (zeros, jnp.zeros(path_index.shape + (k,), dtype) if listed.several
                         else zeros)
        else:
            position0 = zeros
        price0 = option_price(world0, jnp.int32(0), 0.0) if has_option else zeros
        carry0 = _Carry(world=world0, spot=jnp.exp(world0.log_spot), position=position0,
                        gains=zeros, cost=zeros,
                        n_trades=jnp.zeros(path_index.shape, jnp.int32), paid=zeros,
                        memory=strategy.init_state(position0), option_price=price0,
                        path=_path_init(book, world0.log_spot),
                        explain={k: zeros for k in ACCUMULATED} if explain else None)

        def body(c: _Carry, i):
            t = i.astype(dtype) * dt
            obs = _observe(hedge_model, book, expiry, costs, i, t, t_end, c.world, c.spot,
                           listed, c.option_price, surfaces, c.path)
            target, memory = strategy.decide(obs, c.position, c.memory)
            target = jax.tree.map(lambda x: x.astype(dtype), target)
            shares, units = _split(target, has_option)
            held, held_units = _split(c.position, has_option)
            draws = Draws(words, path_index, i, dtype)
            trade = shares - held
            cost_i = charge(costs, trade, c.spot, draws, _COST_STREAM)
            n_trades = c.n_trades + is_trade(trade).astype(jnp.int32)
            if has_option:
                o_cost, o_trades = charge_options(units - held_units, c.option_price, draws)
                cost_i = cost_i + o_cost
                n_trades = n_trades + o_trades
            cost = c.cost + cost_i * jnp.exp(r * (t_end - t))

            world = model.step(c.world, t, dt, draws)
            new_spot = jnp.exp(world.log_spot)
            to_end = jnp.exp(r * (t_end - t - dt))
            gains = c.gains + shares * (new_spot * div_growth - c.spot * carry_growth) * to_end
            o_price = c.option_price
            if has_option:
                new_price = option_price(world, i + 1, t + dt)
                held_value = units * (new_price - o_price * carry_growth)
                if listed.several:
                    held_value = ordered_sum(held_value, axis=-1)
                gains = gains + held_value * to_end
                o_price = new_price
            ex = c.explain
            if explain:
                ex = explain_step(ex, c, world, new_spot, shares, units, t, i, trade, draws,
                                  to_end)
            path = c.path
            if any(state is not None for state in path):
                path = _path_update(book, path, path_step(
                    model, c.world, world, i + 1, t + dt, dt, draws, bridge))
            paid = c.paid
            if inside:  # instruments expiring before the grid's end pay at their maturity
                pay_step = jnp.where(i + 1 < n, i + 1, -1)  # at the end: paid after the loop
                paid = paid + _payoffs_at(book, expiry, pay_step, new_spot, path, r) * to_end
            new = _Carry(world=world, spot=new_spot, position=target, gains=gains,
                         cost=cost, n_trades=n_trades, paid=paid, memory=memory,
                         option_price=o_price, path=path, explain=ex)
            if not record:
                return new, None
            return new, dict(spot=c.spot, variance=c.world.variance, delta=obs.delta,
                             position=shares, units=units, trade=trade, cost=cost_i,
                             path=c.path)

        if record:
            c, steps = lax.scan(body, carry0, jnp.arange(n, dtype=jnp.int32))
        elif CHECKPOINT_STEP:     # sqrt(n) segments of checkpointed steps (module _scan)
            c = checkpointed_scan(jax.checkpoint(body), carry0, n)
        else:
            c, _ = lax.scan(body, carry0, jnp.arange(n, dtype=jnp.int32))
        shares, units = _split(c.position, has_option)
        cost, n_trades, spot_T = c.cost, c.n_trades, c.spot

        book_T = c.paid + _payoffs_at(book, expiry, jnp.asarray(n), spot_T, c.path, r)
        if outlives:  # instruments maturing after the grid's end are valued there
            alive = tuple(e > n for e in expiry)
            if surfaces.book is not None:
                later = surfaces.book.value(jnp.int32(n), c.world.log_spot, c.world.variance,
                                            alive)
            else:
                later = book_value_log(hedge_model.conditioned(c.world), book,
                                       c.world.log_spot, jnp.asarray(t_end, dtype), alive,
                                       c.path)
            book_T = book_T + later
        ex = c.explain
        if prep.unwind:
            draws = Draws(words, path_index, jnp.asarray(n, jnp.int32), dtype)
            cost = cost + charge(costs, -shares, spot_T, draws, _COST_STREAM)
            n_trades = n_trades + is_trade(shares).astype(jnp.int32)
            if has_option:
                o_cost, o_trades = charge_options(-units, c.option_price, draws)
                cost = cost + o_cost
                n_trades = n_trades + o_trades
            if explain:
                ex = charged_parts(ex, -shares, spot_T, None if units is None else -units,
                                   c.option_price, draws, 1.0)
        outputs = book_T, c.gains, cost, n_trades, shares, spot_T
        if explain:
            outputs = outputs + tuple(ex[k] for k in ACCUMULATED)
        if not record:
            return outputs
        final = dict(spot=c.spot, variance=c.world.variance, path=c.path)
        return outputs, (steps, final)

    # Paths are laid out as rows of _LANES: XLA splits the rows among its threads, so every
    # thread runs whole vectorised rows and no path ever takes a scalar remainder loop (its
    # exp/log would round differently), whatever the thread or device count.
    n_blocks = path_index.shape[0] // block
    rows = path_index.reshape(n_blocks, block // _LANES, _LANES)
    if record:
        outputs, (steps, final) = run_block(rows[0])
        return tuple(x.reshape(-1) for x in outputs), _trace(steps, final, grid)
    if n_blocks == 1:
        outputs = run_block(rows[0])
    else:
        outputs = lax.map(run_block, rows)
    return tuple(x.reshape(-1) for x in outputs)


def _trace(steps: dict, final: dict, grid: TimeGrid) -> Trace:
    """A `Trace` from the recorded scan: per-step arrays (n, rows, lanes, ...) and the final
    ones (rows, lanes, ...) to path-major (paths, time, ...)."""
    def paths_first(x):     # (time, rows, lanes, *rest) -> (paths, time, *rest)
        return jnp.moveaxis(x.reshape(x.shape[0], -1, *x.shape[3:]), 1, 0)

    def with_final(x, last):
        return paths_first(jnp.concatenate([x, last[None]], axis=0))

    def state(x, last):     # group arrays (m, rows, lanes): paths first, group last
        both = jnp.concatenate([x, last[None]], axis=0)            # (n + 1, m, rows, lanes)
        both = both.reshape(both.shape[0], both.shape[1], -1)      # (n + 1, m, paths)
        return jnp.transpose(both, (2, 0, 1))                      # (paths, n + 1, m)

    variance = (None if final["variance"] is None
                else with_final(steps["variance"], final["variance"]))
    units = steps["units"]
    path = tuple(None if g is None else {name: state(g[name], final["path"][j][name])
                                         for name in g}
                 for j, g in enumerate(steps["path"]))
    n = grid.n_steps
    dtype = steps["spot"].dtype
    return Trace(time=jnp.arange(n + 1, dtype=dtype) * jnp.asarray(grid.dt, dtype),
                 spot=with_final(steps["spot"], final["spot"]), variance=variance,
                 delta=paths_first(steps["delta"]), position=paths_first(steps["position"]),
                 option_units=None if units is None else paths_first(units),
                 trade=paths_first(steps["trade"]), cost=paths_first(steps["cost"]),
                 path=path)


def padded_paths(n_paths: int) -> int:
    """n_paths rounded up to whole rows of _LANES paths."""
    return _round_up(n_paths, _LANES)


def _layout(n_paths: int, block_size: int) -> tuple[int, int]:
    """(block, padded path count). Every block holds a multiple of _LANES paths (padding is
    simulated, then dropped): XLA then runs the same vectorised code on every path, with no
    scalar remainder loop, so results are bit-identical across block and chunk sizes."""
    padded = _round_up(n_paths, _LANES)
    block = _round_up(min(block_size, padded), _LANES)
    return block, _round_up(padded, block)


# The parts of the P&L, in the order a non-finite value is traced back to its source:
# (what, the usual cause).
_PARTS = (
    ("the simulated spot", "the model's parameters (e.g. an exploding drift or variance)"),
    ("the book's price at t = 0", "the hedge model's parameters"),
    ("the book's value at the horizon", "the payoffs or the hedge model's parameters"),
    ("the hedge's gains", "the strategy's positions or the hedge model's Greeks"),
    ("the transaction cost", "the cost model's parameters"),
)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {name}={value!r}")
    return bool(value)


def _check_finite_result(result: HedgeResult, path_offset: int) -> None:
    """Raise NonFiniteError naming the first non-finite part of the P&L (eager runs)."""
    _check_finite_pnl(result, path_offset)
    if result.attribution is not None:
        for name, values in result.attribution.terms().items():
            bad = np.flatnonzero(~np.isfinite(np.asarray(values)))
            if bad.size:
                raise NonFiniteError(
                    f"hedge(): the P&L explain's {name} term is non-finite on {bad.size:,} of "
                    f"{np.size(values):,} paths (first: path {path_offset + int(bad[0]):,}); "
                    "check the hedge model's Greeks (its pricer near expiry)")


def _check_finite_pnl(result: HedgeResult, path_offset: int) -> None:
    parts = (result.terminal_spot, result.initial_price, result.unhedged_pnl,
             result.hedge_error, result.cost)
    if bool(jnp.all(jnp.isfinite(result.pnl))) and all(
            bool(jnp.all(jnp.isfinite(x))) for x in parts):
        return
    for (what, cause), values in zip(_PARTS, parts, strict=True):
        bad = np.flatnonzero(~np.isfinite(np.atleast_1d(np.asarray(values))))
        if bad.size:
            where = ("" if np.ndim(values) == 0 else
                     f" on {bad.size:,} of {np.size(values):,} paths (first: path "
                     f"{path_offset + int(bad[0]):,})")
            raise NonFiniteError(f"hedge(): {what} is non-finite{where}; check {cause}")
    raise NonFiniteError("hedge(): the P&L is non-finite (overflow in P&L = hedge error - "
                         "cost); check the costs and the size of the book")


def _build_surfaces(prep: _Prepared, dtype) -> _Surfaces:
    """The price surfaces of `pricing="surface"` (module `_surface`), built inside the
    compiled call where the pricer is one a surface stands in for: the book's and the
    hedging option's under the hedge model, and the option's under its market model
    (reused when the world is the hedge model). `surface`: (use surfaces, the hedge model
    is the world)."""
    model, hedge_model, book, strategy, grid, expiry = (
        prep.model, prep.hedge_model, prep.book, prep.strategy, prep.grid, prep.expiry)
    spec, same = prep.surface
    if spec is None:
        return _Surfaces()

    def maybe(pricing_model, a_book, expiry_steps):
        if not supports_surface(pricing_model, a_book):
            return None
        return build_surface(pricing_model, a_book, expiry_steps, model, grid, dtype, spec)

    book_surface = maybe(hedge_model, book, expiry)
    # several listed options are priced exactly (a surface per option is not built)
    if strategy.option is None or isinstance(strategy.option, (tuple, list)):
        return _Surfaces(book=book_surface)
    option = as_book(strategy.option)
    # the option matures at or after the grid's end: alive at every step
    never = tuple(jnp.full(g.maturity.shape, grid.n_steps + 1, jnp.int32)
                  for g in option.groups)
    option_surface = maybe(hedge_model, option, never)
    if has_pricer(model, option) and not same:
        market_surface = maybe(model, option, never)
    else:
        market_surface = option_surface
    return _Surfaces(book=book_surface, option=option_surface, market=market_surface)


@eqx.filter_jit
def _run(prep: _Prepared, n_paths: int, path_offset: jax.Array,
         check_inside: bool = True, record: bool = False) -> HedgeResult:
    """Per-path results of global paths path_offset .. path_offset + n_paths - 1 (with
    `record`: in one block, with their `Trace`)."""
    dtype = float_dtype()
    model, grid = prep.model, prep.grid
    surfaces = _build_surfaces(prep, dtype)
    r = jnp.asarray(model.rate, dtype)
    words = key_words(prep.key)
    if surfaces.book is not None:   # from the same call of the pricer as the nodes
        v0 = surfaces.book.initial
    else:
        v0 = book_value_log(prep.hedge_model, prep.book, jnp.log(model.spot).astype(dtype),
                            jnp.zeros((), dtype))
    block, padded = _layout(n_paths, padded_paths(n_paths) if record else prep.block_size)
    path_index = path_offset + jnp.arange(padded, dtype=jnp.uint32)
    trace = None
    if record:
        outputs, trace = _simulate(prep, words, block, path_index, surfaces, record=True)
        trace = jax.tree.map(lambda x: x[:n_paths] if x.ndim > 1 else x, trace)
    else:
        outputs = _simulate(prep, words, block, path_index, surfaces)
    book_T, gains, cost, n_trades, position, spot_T = (x[:n_paths] for x in outputs[:6])

    unhedged = book_T - v0 * jnp.exp(r * grid.maturity)
    hedge_error = unhedged + gains
    pnl = hedge_error - cost
    if check_inside:    # traced by the caller: no host check afterwards, so check here
        bad = jnp.stack([~jnp.all(jnp.isfinite(x)) for x in (spot_T, v0, book_T, gains, cost)])
        messages = tuple(f"hedge(): {what} is non-finite on some paths; check {cause}"
                         for what, cause in _PARTS)
        # on every output, so that the check runs whichever of them the caller uses
        pnl, hedge_error, cost, unhedged, position, spot_T = (
            eqx.branched_error_if(x, jnp.any(bad), jnp.argmax(bad), messages)
            for x in (pnl, hedge_error, cost, unhedged, position, spot_T))
    attribution = None
    if prep.attribution and not record:
        attribution = _attribution(pnl, [x[:n_paths] for x in outputs[6:]], check_inside)
    return HedgeResult(pnl=pnl, hedge_error=hedge_error, cost=cost, n_trades=n_trades,
                       unhedged_pnl=unhedged, final_position=position, terminal_spot=spot_T,
                       initial_price=v0, trace=trace, attribution=attribution)


def _attribution(pnl, sums, check_inside: bool) -> Attribution:
    """The `Attribution` from the explain's sums: the residual is what they leave of the
    P&L (summed in the order of `TERMS`, as `Attribution.total`)."""
    terms = dict(zip(ACCUMULATED, sums, strict=True))
    explained = terms[ACCUMULATED[0]]
    for name in ACCUMULATED[1:]:
        explained = explained + terms[name]
    terms["residual"] = pnl - explained
    if check_inside:
        bad = jnp.stack([~jnp.all(jnp.isfinite(terms[k])) for k in ACCUMULATED])
        messages = tuple(f"hedge(): the P&L explain's {k} term is non-finite on some paths; "
                         "check the hedge model's Greeks (its pricer near expiry)"
                         for k in ACCUMULATED)
        terms = {k: eqx.branched_error_if(v, jnp.any(bad), jnp.argmax(bad), messages)
                 for k, v in terms.items()}
    return Attribution(**terms)


def _global_devices(local: tuple) -> list:
    """The devices sharing the paths: `local` in a single process; in a multi-process run
    (`jax.distributed.initialize()`), the same number of devices from every process, ordered
    by process then device id, so every process agrees on which paths each device owns."""
    if jax.process_count() == 1:
        return list(local)
    k = len(local)
    chosen = []
    for process in range(jax.process_count()):
        mine = sorted((d for d in jax.devices() if d.process_index == process),
                      key=lambda d: d.id)
        chosen += mine[:k]
    return chosen


def _dispatch(prep: _Prepared, local: tuple, n_paths: int, path_offset: int) -> HedgeResult:
    """`_run` of global paths [path_offset, path_offset + n_paths), split over the `local`
    devices: device g computes one contiguous slice with the same single-device program, so
    the per-path results are bit-identical whatever the device or process count (an
    SPMD-partitioned program compiles differently: measured 1 ulp in the deltas). The
    devices run at once, one thread each. The slices are assembled into one array
    sharded over a 1-D mesh of the devices (`NamedSharding`) when they tile it exactly,
    gathered on the first device otherwise (single process only)."""
    traced = not all(is_concrete(x) for x in jax.tree.leaves(eqx.filter(prep, eqx.is_array)))
    result = _dispatch_run(prep, local, n_paths, path_offset, traced)
    if not traced:
        _check_finite_result(result, path_offset)
    return result


def _dispatch_run(prep, local, n_paths, path_offset, traced) -> HedgeResult:
    # The compiled program depends on the paths it runs (n_paths here), not on the whole
    # run's count: every chunk, and every run with the same chunk size, shares one program.
    prep = dataclasses.replace(prep, n_paths=0)
    devices = _global_devices(local)
    if len(devices) == 1:
        return _run(prep, n_paths, jnp.uint32(path_offset), traced)
    per = _round_up(-(-n_paths // len(devices)), _LANES)
    dynamic, static = eqx.partition(prep, eqx.is_array)
    if traced:
        # Inside jax.jit / vmap / grad the slices cannot be placed on devices from Python:
        # the same per-device programs run one after another where the trace runs, so the
        # results are those of the multi-device run, bit for bit.
        parts = [_run(prep, per, jnp.uint32(path_offset + g * per), True)
                 for g in range(len(devices))]
        return jax.tree.map(
            lambda *xs: jnp.concatenate(xs)[:n_paths] if jnp.ndim(xs[0]) else xs[0], *parts)

    def on(device):
        here = eqx.combine(jax.device_put(dynamic, device), static)
        offset = jnp.uint32(path_offset + devices.index(device) * per)
        return _run(here, per, jax.device_put(offset, device), False)

    # `eqx.filter_jit` waits for its result (to raise `error_if` errors at the call), so
    # each device gets a thread of its own to run at the same time as the others.
    with ThreadPoolExecutor(len(local)) as pool:
        parts = list(pool.map(on, local))
    mesh = Mesh(np.asarray(devices), ("paths",))
    sharding = NamedSharding(mesh, P("paths"))

    def assemble(*xs):
        if jnp.ndim(xs[0]) == 0:
            return xs[0]
        if per * len(devices) == n_paths:
            return jax.make_array_from_single_device_arrays((n_paths,), sharding, list(xs))
        return jnp.concatenate([jax.device_put(x, local[0]) for x in xs])[:n_paths]

    return jax.tree.map(assemble, *parts)


def _check_multiprocess(n_paths: int, chunk_size: int | None, n_devices: int) -> None:
    """In a multi-process run every device's slice must be whole: n_paths (and chunk_size)
    a multiple of 64 x the devices of all processes."""
    if jax.process_count() == 1:
        return
    unit = _LANES * n_devices * jax.process_count()
    for name, value in (("n_paths", n_paths), ("chunk_size", chunk_size)):
        if value is not None and value % unit:
            raise ValueError(f"{name} must be a multiple of {unit} (64 x {n_devices} devices x "
                             f"{jax.process_count()} processes) in a multi-process run, got "
                             f"{name}={value}")
    if chunk_size is not None and n_paths % chunk_size:
        raise ValueError(f"n_paths must be a multiple of chunk_size in a multi-process run, "
                         f"got n_paths={n_paths}, chunk_size={chunk_size}")


def hedge(
    model: AbstractModel,
    book: Book | AbstractInstrument,
    strategy: AbstractStrategy,
    costs: AbstractCost | None,
    grid: TimeGrid,
    n_paths: int,
    key: jax.Array,
    *,
    hedge_model: AbstractModel | None = None,
    unwind: bool = False,
    block_size: int = DEFAULT_BLOCK_SIZE,
    chunk_size: int | None = None,
    devices: int | None = None,
    progress: bool = False,
    pricing: str = "auto",
    record: int | None = None,
    attribution: bool = False,
) -> HedgeResult:
    """Simulate hedging `book` with `strategy` over `grid` on `n_paths` paths of `model`.

    Args:
        model: the world that moves the underlying.
        book: what the user holds (an instrument is one unit of it). Path-dependent
            instruments (`hj.Barrier`, `hj.Asian`, `hj.Lookback`, `hj.ForwardStart`,
            `hj.OneTouch`, `hj.VarianceSwap`) carry their path state through the loop;
            their discrete dates must be grid times (module `hedgejax._exotics`).
        strategy: how the hedge position (shares of the underlying) is chosen each step.
        costs: transaction costs (None: frictionless).
        grid: the hedging time grid; its end is the horizon T.
        n_paths: number of simulated paths (>= 1).
        key: a `jax.random` key; the same key gives the same paths whatever else changes.
        hedge_model: what the hedger believes (its autodiff Greeks drive the strategy and
            its price is V0); defaults to `model`.
        unwind: sell the hedge at T and pay its cost.
        block_size: paths simulated together (a performance knob: blocks run one after
            another with their state in cache). Results do not depend on it: every draw is
            a function of the key and the global path index.
        chunk_size: simulate the paths in chunks of this many, one compiled call after
            another, to bound the working memory of very large runs (the per-path results
            are still returned; `stream_summary` keeps only statistics, and
            `iter_hedge_chunks` yields chunk by chunk). Bit-identical to an unchunked run.
        devices: how many local devices share the paths (data parallel over the path axis:
            each device simulates one contiguous slice of the paths, the result is sharded
            over a 1-D mesh of them). Default (None): on a CPU, as many of the local CPU
            devices as get `hedgejax._devices.MIN_PATH_STEPS_PER_DEVICE` path-steps each
            (`import hedgejax` makes one CPU device per core unless jax is already running
            or told otherwise; README "Scale"), else 1; 1 on a GPU, in a multi-process run
            and under `jax.jit`/`vmap`/`grad`. After `jax.distributed.initialize()`, every
            process runs the same call and `devices` of each process's devices share the
            paths (n_paths a multiple of 64 x all those devices); the result is one global
            array. Per-path results are bit-identical whatever the device or process count.
            Under `jax.jit`, `jax.vmap` or `jax.grad` the per-device programs run one after
            another on the traced computation's device, without the parallelism (bit for
            bit the same results under `jit`; to rounding under `vmap` and `grad`).
        progress: show a progress bar over chunks.
        pricing: how the hedge model's book values and Greeks are computed per path and
            step. "exact": its pricer (Heston's Fourier integral, Merton's series) at every
            path and step. "surface": for Heston and Merton hedge models, a Chebyshev price
            surface per grid step built once per call from the exact pricer at interpolation
            nodes (module `hedgejax._surface`; Gass et al. 2018), with a Black-Scholes
            control variate; hundreds of times faster, accurate to the figures in
            experiments/results/surface_accuracy.md; other hedge models are priced exactly.
            "auto" (default): "surface" where the hedge model supports one and the run has
            at least `SURFACE_MIN_PATH_STEPS` paths x steps (below that compiling and
            building the surface costs more than pricing every path), unless a cost is
            charged per trade (`Fixed`, `SmoothFixed`: the surface's delta noise, about
            1e-6 share per unit, would trigger fees on steps where the exact delta does not
            move), else "exact". With surfaces `n_trades` of a delta hedge can exceed the
            exact run's for the same reason. `hj.PriceSurface(n_x, n_v,
            n_t)`: surfaces with chosen node counts (more accurate, slower). V0 is always
            the exact price. A book holding a path-dependent instrument (`hj.Barrier`,
            `hj.VarianceSwap`, ...) is always priced exactly: its path state is not a
            surface coordinate.
        record: k >= 1 (at most n_paths and `MAX_RECORD`): also return, in
            `result.trace`, the first k paths step by step (`Trace`: spot, variance, delta,
            position, option units, trade, cost, path state). They are recomputed in a
            second, small compiled run (the same paths bit for bit, whatever the layout), so
            the main run is the unrecorded one and is not slowed.
        attribution: also explain every path's P&L (`result.attribution`, an
            `hj.Attribution`): the P&L split into delta, gamma, theta, vega, vanna, volga,
            carry, dividends, costs by kind (commission, spread, impact, slippage) and an
            unexplained residual, accrued to T and summing to `pnl` (module
            `hedgejax._attribution` gives the definitions). The Greeks of the explain are the
            hedge model's, from its exact pricer (also where `pricing` uses surfaces). It
            computes four more derivatives of the book per path and step, so a run is
            slower (about 2-4x for Black-Scholes books). The P&L is unchanged: bit for bit
            for Black-Scholes worlds, to rounding (1e-15) where XLA fuses the added Greeks of
            Heston or Merton pricers with the strategy's differently.

    Returns:
        A `HedgeResult` with per-path P&L, hedge error, cost and trade count (module docstring
        gives the conventions). `jax.jit`, `jax.vmap` and `jax.grad` pass through.

    Example:
        >>> import jax, hedgejax as hj
        >>> res = hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 1.0),
        ...                hj.DeltaHedge(), hj.Proportional(0.001), hj.TimeGrid(1.0, 252),
        ...                n_paths=1000, key=jax.random.key(0))
        >>> res.pnl.shape
        (1000,)
    """
    prep, local = _prepare(model, book, strategy, costs, grid, n_paths, key, hedge_model,
                           unwind, block_size, devices, pricing, chunk_size, attribution)
    _check_multiprocess(prep.n_paths, chunk_size, len(local))
    # the per-path results (7 fields, 20 with the explain), twice over while chunks are joined
    itemsize = jnp.dtype(float_dtype()).itemsize
    fields = 20 if prep.attribution else 7
    check_memory(2 * fields * itemsize * _round_up(prep.n_paths, _LANES),
                 f"hedge() with n_paths={prep.n_paths:,} (its per-path results)",
                 "use hj.stream_summary for statistics of many paths, or "
                 "hj.iter_hedge_chunks to process them chunk by chunk")
    if record is not None:
        record = check_int("record", record, 1)
        if record > min(prep.n_paths, MAX_RECORD):
            raise ValueError(f"record must be an integer in [1, min(n_paths, {MAX_RECORD:,})], "
                             f"got record={record} with n_paths={prep.n_paths:,}")
    if chunk_size is None:
        result = _dispatch(prep, local, prep.n_paths, 0)
    else:
        chunks = list(_chunks(prep, local, chunk_size, progress))
        result = jax.tree.map(lambda *xs: jnp.concatenate(xs) if jnp.ndim(xs[0]) else xs[0],
                              *chunks)
    if record is None:
        return result
    small = dataclasses.replace(prep, n_paths=0, attribution=False)
    traced = not all(is_concrete(x) for x in jax.tree.leaves(eqx.filter(prep, eqx.is_array)))
    trace = _run(small, record, jnp.uint32(0), traced, record=True).trace
    return dataclasses.replace(result, trace=trace)


# Most paths `hedge(..., record=k)` records: the trace holds about 8 arrays of k x n_steps.
MAX_RECORD = 2**16


def _prepare(model, book, strategy, costs, grid, n_paths, key, hedge_model, unwind,
             block_size, devices, pricing="auto", chunk_size=None,
             attribution=False) -> tuple[_Prepared, tuple]:
    """Validate `hedge()`'s inputs: the prepared inputs of `_run` and the local devices
    that share the paths."""
    if not isinstance(pricing, PriceSurface) and (not isinstance(pricing, str)
                                                  or pricing not in PRICINGS):
        raise ValueError(f"pricing must be one of {PRICINGS} or a hj.PriceSurface, got "
                         f"pricing={pricing!r}")
    same = hedge_model is None or hedge_model is model
    if not isinstance(book, (Book, AbstractInstrument)):
        raise ValueError(f"book must be a Book or an instrument, got {type(book).__name__}")
    book = as_book(book)
    costs = NoCost() if costs is None else costs
    hedge_model = model if hedge_model is None else hedge_model
    _check_types(model, book, strategy, costs, grid, hedge_model)
    model, hedge_model, book, strategy, costs = runtime_checked(
        (model, hedge_model, book, strategy, costs))
    n_paths = check_n_paths(n_paths, model)
    check_grid_fits(model, grid)
    _check_lags(strategy, grid)
    if isinstance(key, int):
        key = jax.random.key(key)
    book = on_grid(book, grid)
    expiry, ends = _expiry_steps(book, grid)
    book = _snap_maturities(book, expiry, grid)
    model = _prepared(model, book, strategy.option, grid)
    hedge_model = _prepared(hedge_model, book, strategy.option, grid)
    block_size = check_int("block_size", block_size, 1)
    if devices is None:
        n_devices = default_device_count(n_paths, grid.n_steps,
                                         (model, hedge_model, book, strategy, costs, key),
                                         chunk_size)
    else:
        n_devices = check_int("devices", devices, 1)
    if n_devices > jax.local_device_count():
        raise ValueError(f"devices must be <= {jax.local_device_count()} (the local devices), "
                         f"got devices={n_devices}")
    surface = _use_surface(pricing, hedge_model, book, strategy, model, costs, n_paths,
                           grid.n_steps)
    prep = _Prepared(model=model, hedge_model=hedge_model, book=book, strategy=strategy,
                     costs=costs, grid=grid, n_paths=n_paths, key=key, expiry=expiry,
                     ends=ends, unwind=bool(unwind), block_size=block_size,
                     surface=(surface, same), attribution=_check_bool("attribution", attribution))
    return prep, tuple(jax.local_devices()[:n_devices])


# `pricing="auto"` builds surfaces from this many path-steps (paths x grid steps) on, per
# hedge model: below it, compiling and building the surface costs more than pricing every
# path exactly (measured with compile time included: Heston's exact route is ~100x slower
# per path-step, Merton's ~15x, and Merton's surface compiles longer than its exact loop).
SURFACE_MIN_PATH_STEPS = {"Heston": 2**15, "Merton": 2**21}


def _use_surface(pricing, hedge_model, book, strategy, model, costs, n_paths,
                 n_steps) -> PriceSurface | None:
    """The surfaces' node counts when `pricing` builds surfaces for this hedge, else None."""
    if pricing == "exact":
        return None
    option = strategy.option
    candidates = [(hedge_model, book)]
    if option is not None and not isinstance(option, (tuple, list)):
        candidates += [(hedge_model, as_book(option)), (model, as_book(option))]
    if not any(supports_surface(m, b) for m, b in candidates):
        return None
    if isinstance(pricing, PriceSurface):
        return pricing
    if pricing == "auto":
        if n_paths * n_steps < SURFACE_MIN_PATH_STEPS.get(type(hedge_model).__name__,
                                                        2**15):
            return None
        if _charges_per_trade(costs, strategy):
            return None
    return PriceSurface()


def _charges_per_trade(costs, strategy) -> bool:
    """Whether a cost is charged per trade whatever its size (`Fixed`, `SmoothFixed`): a
    surface's deltas carry interpolation noise of about 1e-6 share per unit of the book, so
    a delta hedge would trade (and pay the fee) on steps where the exact delta is constant
    to 1e-9, e.g. deep in or out of the money."""
    from ._costs import Fixed, SmoothFixed

    found = False
    for tree in (costs, strategy):
        for node in jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, Fixed | SmoothFixed)):
            found = found or isinstance(node, Fixed | SmoothFixed)
    return found


def _check_lags(strategy: AbstractStrategy, grid: TimeGrid) -> None:
    """Every ExecutionLag in the strategy (wrappers nest) must be shorter than the grid."""
    from ._strategies.wrappers import ExecutionLag

    for node in jax.tree.leaves(strategy, is_leaf=lambda x: isinstance(x, ExecutionLag)):
        if isinstance(node, ExecutionLag):
            node.check_grid(grid.n_steps)


def _prepared(model: AbstractModel, book: Book, option, grid: TimeGrid) -> AbstractModel:
    """`model.prepared(horizon, dt)` for this hedge (before it is compiled): prices up to the
    longest maturity of the book and the hedging option(s) (when concrete), steps of
    grid.dt."""
    options = () if option is None else tuple(option) if isinstance(option, (tuple, list)) \
        else (option,)
    books = (book,) + tuple(as_book(o) for o in options)
    maturities = [g.maturity for b in books for g in b.groups]
    horizon = None
    if all(is_concrete(m) for m in maturities):
        horizon = max(float(jnp.max(m)) for m in maturities)
    return model.prepared(horizon, grid.dt)


def _chunks(prep: _Prepared, local: tuple, chunk_size: int,
            progress: bool) -> Iterator[HedgeResult]:
    """Per-path results of global paths [start, start + chunk_size), chunk after chunk. Every
    chunk has the same size (the last is padded), so one compilation serves all."""
    chunk_size = check_int("chunk_size", chunk_size, 1)
    n_paths = prep.n_paths
    for start in _progress_range(range(0, n_paths, chunk_size), progress):
        part = _dispatch(prep, local, chunk_size, start)
        keep = n_paths - start
        yield jax.tree.map(lambda x, keep=keep: x[:keep] if jnp.ndim(x) else x, part)


def iter_hedge_chunks(model: AbstractModel, book: Book | AbstractInstrument,
                      strategy: AbstractStrategy, costs: AbstractCost | None, grid: TimeGrid,
                      n_paths: int, key: jax.Array, *, chunk_size: int,
                      hedge_model: AbstractModel | None = None, unwind: bool = False,
                      block_size: int = DEFAULT_BLOCK_SIZE, devices: int | None = None,
                      progress: bool = False, pricing: str = "auto",
                      attribution: bool = False) -> Iterator[HedgeResult]:
    """`hedge()` chunk by chunk: yields the `HedgeResult` of global paths 0..chunk_size-1,
    then the next chunk, and so on (the last may be shorter). Concatenated, they equal
    `hedge(..., n_paths, key)` bit for bit; only one chunk is in memory at a time."""
    prep, local = _prepare(model, book, strategy, costs, grid, n_paths, key, hedge_model,
                           unwind, block_size, devices, pricing, chunk_size, attribution)
    _check_multiprocess(prep.n_paths, chunk_size, len(local))
    yield from _chunks(prep, local, chunk_size, progress)


def _progress_range(starts: range, progress: bool):
    if not progress:
        yield from starts
        return
    from rich.progress import track

    yield from track(starts, description="hedge", transient=True)


def _check_types(model, book, strategy, costs, grid, hedge_model) -> None:
    for name, value, kind in (("model", model, AbstractModel),
                              ("hedge_model", hedge_model, AbstractModel),
                              ("strategy", strategy, AbstractStrategy),
                              ("costs", costs, AbstractCost), ("grid", grid, TimeGrid)):
        if not isinstance(value, kind):
            raise ValueError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
    if not has_pricer(hedge_model, book):
        raise ValueError(
            f"hedge_model must be able to price the book; {type(hedge_model).__name__} cannot "
            "(pass hedge_model=BlackScholes(...) for a world without prices)")
    option = strategy.option
    if isinstance(option, (tuple, list)):
        _check_listed(strategy, option, hedge_model, grid)
    elif option is not None:
        if not isinstance(option, AbstractInstrument):
            raise ValueError("strategy.option must be an instrument, got "
                             f"{type(option).__name__}")
        if isinstance(option, AbstractPathDependent):
            raise ValueError("strategy.option must be a European instrument (a listed call, "
                             f"put or digital), got the path-dependent {type(option).__name__}")
        if not has_pricer(hedge_model, as_book(option)):
            raise ValueError(f"hedge_model must be able to price the strategy's option; "
                             f"{type(hedge_model).__name__} cannot")
        costs = strategy.option_costs
        if costs is not None and not isinstance(costs, AbstractCost):
            raise ValueError("strategy.option_costs must be an AbstractCost, got "
                             f"{type(costs).__name__}")
        maturity = option.maturity
        if is_concrete(maturity) and float(maturity) < grid.maturity * (1 - 1e-9):
            raise ValueError(f"the hedging option's maturity must be >= the grid's maturity "
                             f"({grid.maturity:g} years), got maturity={float(maturity):g}")


def _check_listed(strategy, options, hedge_model, grid) -> None:
    """Several listed options (`strategy.option` a tuple): each a European instrument the
    hedge model prices, maturing at or after the grid's end; one cost (or None) each."""
    if not options:
        raise ValueError("strategy.option must be an instrument or a non-empty tuple of them, "
                         "got an empty tuple")
    costs = strategy.option_costs
    if costs is not None:
        if not isinstance(costs, (tuple, list)) or len(costs) != len(options):
            raise ValueError(f"strategy.option_costs must be None or a tuple of {len(options)} "
                             f"costs (one per listed option), got {costs!r}")
        for j, c in enumerate(costs):
            if c is not None and not isinstance(c, AbstractCost):
                raise ValueError(f"strategy.option_costs[{j}] must be an AbstractCost or None, "
                                 f"got {type(c).__name__}")
        random = [j for j, c in enumerate(costs) if c is not None and c.is_random]
        if random and max(random) >= len(_OPTION_COST_STREAMS):
            raise ValueError(f"random option costs are supported for the first "
                             f"{len(_OPTION_COST_STREAMS)} listed options, got one for "
                             f"option {max(random)}")
    for j, option in enumerate(options):
        name = f"strategy.option[{j}]"
        if not isinstance(option, AbstractInstrument):
            raise ValueError(f"{name} must be an instrument, got {type(option).__name__}")
        if isinstance(option, AbstractPathDependent):
            raise ValueError(f"{name} must be a European instrument (a listed call, put or "
                             f"digital), got the path-dependent {type(option).__name__}")
        if jnp.ndim(option.maturity) != 0:
            raise ValueError(f"{name} must be one instrument (scalar fields), got maturity of "
                             f"shape {jnp.shape(option.maturity)}")
        if not has_pricer(hedge_model, as_book(option)):
            raise ValueError(f"hedge_model must be able to price {name}; "
                             f"{type(hedge_model).__name__} cannot")
        maturity = option.maturity
        if is_concrete(maturity) and float(maturity) < grid.maturity * (1 - 1e-9):
            raise ValueError(f"{name}'s maturity must be >= the grid's maturity "
                             f"({grid.maturity:g} years), got maturity={float(maturity):g}")
