"""`rebalance()`: what a strategy trades now, for a live book, with the code `hedge()` runs.

A desk holds a book today (time t years since the book's start, spot S, the shares it holds)
and asks its strategy what to trade. `rebalance` builds the `Observation` a strategy sees at
that step with `hedge()`'s own function (`hedgejax._hedge._observe`: the book's Greeks under
the hedge model by autodiff, conditioned on the current variance and the book's path state),
calls the strategy's `decide(obs, position, state)` exactly as `hedge()`'s loop does, and
returns the target, the trade, its estimated cost and the strategy's new state. There is no
second implementation of any strategy: a band, a Whalley-Wilmott band or a policy trained
by `fit` (saved with `hj.save_strategy`, loaded with `hj.load_strategy`) decides here what it
would decide inside a simulation.

Bit-for-bit agreement with `hedge()`. Inside `hedge()` paths are laid out as rows of 64
lanes and a step is the body of a compiled loop. A path evaluated alone as a scalar could
take XLA's scalar code (its exp and log round differently from the vectorised ones), and
XLA contracts a multiply and an add into one fused multiply-add where both land in the same
kernel, so the last bit of a result depends on how the program is split. So `rebalance`
lays its paths out the same way (one path is padded to a row of 64 lanes), runs the
observation and the decision in one compiled program in the working precision, as the body
of a loop with the model, book and strategy closed over (`_decide`), and on a grid time
computes t_i = i x dt in that body as `hedge()` does. Replaying `hedge(..., record=k)`'s
trace step by step then reproduces its positions, trades, costs and deltas bit for bit, in
float64 and float32, for European books under Black-Scholes with every strategy tried:
`DeltaHedge(every=k)`, `WhalleyWilmott`, bands, `MoveBased`, recurrent `NeuralHedge`
(also reading a Heston world's variance), and in float64 `DeltaGammaHedge` (its option's
price to rounding: `hedge()` prices it at t_{i-1} + dt, not i x dt). Greeks are always the
exact pricer's, as in `hedge(..., pricing="exact")`; a `hedge()` run on price surfaces
(`pricing="surface"`, or "auto" for large Heston and Merton runs) differs by the surface's
interpolation error. Measured limits, all at the
last bits (tests/test_rebalance.py): pricers that `hedge()`'s loop compiles with other
contractions, path-dependent ones (barriers: a third of the steps differ by 1-4 ulp of the
delta; lookbacks a few steps; Asians none) and the Fourier-priced Heston hedge model (1-3
steps of 160, 1 ulp); and the log-spot: `rebalance` takes log(S) of the spot it is given,
which is `hedge()`'s log-spot exactly when |log S| is not small (every one of 64,000 spots
near 100, in both precisions); for spots near 1 its last bit can differ.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._costs import AbstractCost, NoCost
from ._exotics import AbstractPathDependent
from ._grid import TimeGrid
from ._hedge import (
    _check_lags,
    _check_types,
    _expiry_steps,
    _listed,
    _observe,
    _path_init,
    _prepared,
    _snap_maturities,
    _split,
    _Surfaces,
)
from ._instruments import AbstractInstrument, Book, as_book
from ._models.base import AbstractModel, ModelState
from ._pricing.registry import book_value_log, has_pricer
from ._repr import module_repr
from ._strategies.base import AbstractStrategy
from ._validate import float_dtype, is_concrete, runtime_checked

# Trading days a year: the default grid steps once a day to the book's last maturity.
TRADING_DAYS = 252
_LANES = 64


class Rebalance(eqx.Module):
    """What `rebalance()` decided. Per-path arrays have the shape of the inputs' paths P:
    () for one book state (a scalar spot), (n,) for n states given at once.

    Attributes:
        target: shares of the underlying to hold after the trade, shape P.
        trade: shares to buy now (< 0: sell), target - position, shape P.
        cost: the estimated cost of the trades (currency, paid now, >= 0), shape P:
            `costs(trade, spot)` plus, for a strategy that trades listed options, each
            option's `option_costs(units traded, its price)`. For a random cost model
            (`RandomSlippage`) this is its expected cost (what its `__call__` returns:
            the lognormal factor has mean 1), not a draw.
        units: units of the listed option(s) to hold, shape P (one option) or P + (k,)
            (k options); None for a strategy that trades shares only.
        trade_units: units of the listed option(s) to buy now; None without options.
        delta: the book's delta under the hedge model (shares per unit of spot), shape P:
            delta-neutral is target = -delta.
        gamma: the book's gamma (per unit of spot), shape P.
        vega: the book's sensitivity to the hedge model's vol parameter (per 1.00 of `vol`
            for Black-Scholes and Merton, per 1.00 of variance for Heston), shape P; None
            for a model without one.
        option_price: the price per unit used for the listed option(s) (given, or the hedge
            model's), shape P or P + (k,); None without options.
        state: the strategy's new state (None for stateless strategies): pass it to the next
            `rebalance` call. Leaves are per-path arrays with leading shape P.
        step: the grid step i of the decision (`hedge()`'s step index).
        time: t in years since the book's start, as the strategy saw it (on a grid time,
            i x dt in the working precision).
    """

    __repr__ = module_repr

    target: jax.Array
    trade: jax.Array
    cost: jax.Array
    units: jax.Array | None
    trade_units: jax.Array | None
    delta: jax.Array
    gamma: jax.Array
    vega: jax.Array | None
    option_price: jax.Array | None
    state: Any
    step: int = eqx.field(static=True)
    time: float = eqx.field(static=True)

    @property
    def position(self) -> Any:
        """The position after the trade, as the next `rebalance` call takes it: the shares,
        or (shares, units) for a strategy that trades listed options."""
        return self.target if self.units is None else (self.target, self.units)


def default_grid(book: Book) -> TimeGrid:
    """Daily steps (252 a year) from the book's start to its last maturity."""
    last = max(float(np.max(np.asarray(g.maturity))) for g in book.groups)
    return TimeGrid(last, max(1, round(TRADING_DAYS * last)))


def rebalance(strategy: AbstractStrategy, book: Book | AbstractInstrument, model: AbstractModel,
              spot: Any, t: float, position: Any, state: Any = None, *,
              grid: TimeGrid | None = None, costs: AbstractCost | None = None,
              variance: Any = None, path_state: Any = None,
              option_price: Any = None) -> Rebalance:
    """The trade `strategy` makes now for `book`, as `hedge()` would decide it at this step.

    Conventions as in `hedge()` (docs/architecture.md): time in years since the book's start
    (its instruments' maturities are measured from there; an instrument's remaining life is
    maturity - t), prices in currency, positions in shares (> 0 long), quantities > 0 long.
    The decision is `strategy.decide(obs, position, state)` on the `Observation` `hedge()`
    builds at a step (module docstring), so any strategy that runs in `hedge()` runs here.

    Args:
        strategy: the strategy (built, fitted by `hj.fit`, or loaded by `hj.load_strategy`).
        book: what is held (an instrument is one unit of it).
        model: the hedge model: its autodiff Greeks drive the strategy (`hedge()`'s
            `hedge_model`). Its own `spot` is ignored (today's is `spot`); a stochastic-vol
            model (Heston) is conditioned on `variance`.
        spot: the underlying's price now (currency, finite > 0): a scalar, or an array of
            shape P for several states at once (scenarios; the other per-path inputs
            broadcast against it).
        t: now, in years since the book's start, in [0, grid end). On a grid time (within
            1e-9 years per year of grid) the step is that time's index i and t is taken as
            hedge()'s i x dt; between grid times, the step is the last grid time before t
            (a step-based schedule such as `DeltaHedge(every=k)` reads it) and t is used as
            given.
        position: what is held before the trade: shares (scalar or shape P), or for a
            strategy that trades listed options a tuple (shares, units), units of shape P
            (one option) or P + (k,) (k options).
        state: the strategy's state returned by the previous call (`Rebalance.state`);
            None: its initial state (right at the book's start; a warning says so for a
            stateful strategy after it).
        grid: the hedging grid the strategy runs on: its end is the horizon (the
            `time_to_maturity` strategies see is grid end - t) and its steps the schedule.
            Default: daily steps (252 a year) to the book's last maturity. Maturities
            inside the grid are moved to their nearest grid time, as in `hedge()`.
        costs: the cost model of share trades (None: free), for the estimated cost and for
            the strategies that read its proportional rate (Whalley-Wilmott bands).
        variance: the current instantaneous variance (per year, >= 0), scalar or shape P:
            required for a hedge model with a variance state (Heston); for other models it
            is shown to the strategy as `obs.variance` (e.g. a policy trained on a Heston
            world's variance) and may be None.
        path_state: the path state of the book's path-dependent instruments (names as in
            `hedgejax._exotics`: a Barrier's "knocked", a Lookback's "extreme" (log of the
            running extreme), an Asian's "total", ...): one entry per instrument in the
            order the book was given, None for European ones and a dict name -> value
            (scalar or shape P) for path-dependent ones; for a one-instrument book, the
            dict itself. Required after the book's start (step > 0) when the book holds a
            path-dependent instrument; at step 0 the default is `hedge()`'s initial state.
        option_price: the market price per unit of the listed option(s) a strategy trades
            (currency, finite >= 0; shape P, or P + (k,) for k options); default: the hedge
            model's price.

    Returns:
        A `Rebalance`: target, trade, estimated cost, the book Greeks seen, the strategy's
        new state (pass `result.position` and `result.state` to the next call).

    Raises:
        ValueError: naming the argument: a strategy, book, model, costs or grid of the
            wrong type or with invalid parameters, a model that cannot price the book (or
            the strategy's options); spot not finite and > 0; t outside [0, grid end);
            position, variance, option_price not finite (variance, option_price < 0);
            shapes that do not broadcast; variance missing for a Heston model; path_state
            missing after the start, with unknown or missing names; a state whose structure
            is not the strategy's.

    Bit-for-bit agreement with `hedge()`: module docstring. `rebalance` itself runs eagerly
    (it validates on the host); the observation and decision are one compiled program,
    compiled once per strategy, book and model structure.

    Example:
        >>> import hedgejax as hj
        >>> r = hj.rebalance(hj.DeltaHedge(), hj.EuropeanCall(100.0, 0.25),
        ...                  hj.BlackScholes(100.0, 0.2), spot=101.3, t=0.1, position=-0.5,
        ...                  grid=hj.TimeGrid(0.25, 63))
        >>> round(float(r.target + r.delta), 6), r.step
        (0.0, 25)
    """
    if not isinstance(book, (Book, AbstractInstrument)):
        raise ValueError(f"book must be a Book or an instrument, got {type(book).__name__}")
    book = as_book(book)
    for name, value, kind in (("strategy", strategy, AbstractStrategy),
                              ("model", model, AbstractModel)):
        if not isinstance(value, kind):
            raise ValueError(f"{name} must be an {kind.__name__}, got {type(value).__name__}")
    if not has_pricer(model, book):
        raise ValueError(f"model must be able to price the book; {type(model).__name__} "
                         "cannot (give the hedge model, e.g. hj.BlackScholes(...))")
    costs = NoCost() if costs is None else costs
    if grid is None:
        grid = default_grid(book)
    try:
        _check_types(model, book, strategy, costs, grid, model)
    except ValueError as err:       # hedge()'s hedge_model is this function's model
        raise ValueError(str(err).replace("hedge_model", "model")) from None
    model, book, strategy, costs = runtime_checked((model, book, strategy, costs))
    _check_lags(strategy, grid)
    from ._exotics import on_grid

    book = on_grid(book, grid)
    expiry, _ = _expiry_steps(book, grid)
    book = _snap_maturities(book, expiry, grid)
    model = _prepared(model, book, strategy.option, grid)
    dtype = float_dtype()
    step, time = _step_of(t, grid, dtype)

    spot = _per_path("spot", spot, dtype, lambda x: x > 0, "finite and > 0")
    listed = _listed(strategy)
    has_option = listed is not None
    shares, units = _position(position, has_option, listed, dtype)
    if variance is not None:
        variance = _per_path("variance", variance, dtype, lambda x: x >= 0,
                             "finite and >= 0 (per year)")
    elif _has_variance(model):
        raise ValueError(f"variance must be given for a {type(model).__name__} hedge model "
                         "(the current instantaneous variance per year, >= 0; e.g. "
                         "variance=0.04 for 20% vol)")
    if option_price is not None:
        if not has_option:
            raise ValueError("option_price is only for a strategy that trades listed "
                             "options; this one trades shares only")
        option_price = _per_path("option_price", option_price, dtype, lambda x: x >= 0,
                                 "finite and >= 0 (currency per unit)")
    k = len(listed.books) if has_option and listed.several else None
    paths = _paths_shape(spot=spot, position=shares, variance=variance, units=units,
                         option_price=option_price, k=k)
    layout = _Layout(paths)
    spot_rows = layout.rows(jnp.broadcast_to(spot, paths))
    variance_rows = None if variance is None else layout.rows(jnp.broadcast_to(variance, paths))
    held = layout.rows(jnp.broadcast_to(shares, paths))
    extra = () if k is None else (k,)
    if has_option:
        held = (held, layout.rows(jnp.broadcast_to(units, paths + extra)))
    price_rows = (None if option_price is None
                  else layout.rows(jnp.broadcast_to(option_price, paths + extra)))
    path_rows = _path_rows(book, path_state, step, step * grid.dt if time is None else time,
                           spot_rows, layout, dtype)
    memory = _memory(strategy, state, held, step, layout)

    on_grid = time is None
    out = _decide(model, book, expiry, costs, strategy, (grid.maturity, grid.dt, on_grid),
                  jnp.int32(step), jnp.asarray(0.0 if on_grid else time, dtype), spot_rows,
                  variance_rows, path_rows, held, memory, price_rows)
    target, target_units, trade, trade_units, cost, delta, gamma, vega, price, memory = out
    back = layout.back
    return Rebalance(
        target=back(target), trade=back(trade), cost=back(cost),
        units=None if target_units is None else back(target_units),
        trade_units=None if trade_units is None else back(trade_units),
        delta=back(delta), gamma=back(gamma), vega=None if vega is None else back(vega),
        option_price=None if price is None else back(price),
        state=jax.tree.map(back, memory), step=step,
        time=float(np.asarray(step, dtype) * np.asarray(grid.dt, dtype)) if on_grid
        else float(time))


# Iterations of the loop that `_decide` runs its step in (see there).
_LOOP_TRIPS = 2


@eqx.filter_jit
def _decide(model, book, expiry, costs, strategy, grid, step, time, spot, variance, path,
            position, memory, option_price):
    """The observation and the decision at one step, for paths laid out in rows of 64 lanes:
    `hedge()`'s loop body up to the trade (module `_hedge`, `_simulate.body`). `grid`:
    (horizon, dt, on a grid time), static.

    Why it is written so, to compile to `hedge()`'s arithmetic: XLA contracts a multiply
    and an add into one fused multiply-add where both land in the same kernel, so the last
    bit of a result depends on how the program is split. Inside `hedge()` the step is the
    body of a loop: what depends only on the model, the book and the strategy (their
    parameters, a network's weights) is loop-invariant and computed once outside it, while
    what depends on the step (t = i x dt, the time to maturity) and on the paths' state is
    computed in the body. So the step runs here as the body of a `lax.scan` too
    (`_LOOP_TRIPS` = 2 iterations of the same step: XLA removes a loop of one), with the
    per-step values as the scanned inputs and the models, book and strategy closed over,
    and on a grid time t is computed from the step in the body as `hedge()` does."""
    horizon, dt, on_grid = grid
    dtype = spot.dtype
    listed = _listed(strategy)
    has_option = listed is not None

    def body(carry, xs):
        step, time, spot, variance, path, position, memory, option_price = xs
        if on_grid:
            time = step.astype(dtype) * dt
        world = ModelState(log_spot=jnp.log(spot), variance=variance)
        if has_option and option_price is None:
            option_price = listed.join([
                book_value_log(model.conditioned(world), option, world.log_spot,
                               time).astype(dtype) for option in listed.books])
        obs = _observe(model, book, expiry, costs, step, time, horizon, world, spot, listed,
                       option_price, _Surfaces(), path)
        target, memory = strategy.decide(obs, position, memory)
        target = jax.tree.map(lambda x: x.astype(dtype), target)
        shares, units = _split(target, has_option)
        held, held_units = _split(position, has_option)
        trade = shares - held
        cost = costs(trade, spot)
        trade_units = None
        if has_option:
            trade_units = units - held_units
            for j, option_costs in enumerate(listed.costs):
                cost = cost + option_costs(listed.column(trade_units, j),
                                           listed.column(option_price, j))
        return carry, (shares, units, trade, trade_units, cost, obs.delta, obs.gamma,
                       obs.vega, option_price, memory)

    inputs = (step, time, spot, variance, path, position, memory, option_price)
    xs = jax.tree.map(lambda x: jnp.broadcast_to(x, (_LOOP_TRIPS,) + jnp.shape(x)), inputs)
    _, outputs = jax.lax.scan(body, None, xs)
    return jax.tree.map(lambda x: x[-1], outputs)


# ------------------------------------------------------------------------------ inputs


def _step_of(t: Any, grid: TimeGrid, dtype) -> tuple[int, Any]:
    """(grid step, time as the strategy sees it) for `t` years since the book's start; the
    time is None on a grid time (then i x dt, as in `hedge()`)."""
    if isinstance(t, (bool, np.bool_, str, bytes)) or not is_concrete(t) or np.ndim(t) != 0:
        raise ValueError(f"t must be a real number (years since the book's start), got t={t!r}")
    try:
        value = float(t)
    except (TypeError, ValueError):
        raise ValueError(f"t must be a real number (years since the book's start), got "
                         f"t={t!r}") from None
    dt, n = grid.dt, grid.n_steps
    # on-grid tolerance: 1e-9 years per year of grid, or a few ulps of the working precision
    # (a float32 time read back from a Trace)
    tol = max(1e-9, 8 * float(np.finfo(np.dtype(dtype)).eps)) * max(1.0, grid.maturity)
    if not math.isfinite(value) or value < -tol or value >= grid.maturity + tol:
        raise ValueError(f"t must be in [0, {grid.maturity:g}) (years since the book's start, "
                         f"before the grid's end), got t={t!r}")
    nearest = round(value / dt)
    if abs(value - nearest * dt) <= tol:
        if nearest >= n:
            raise ValueError(f"t must be before the grid's end {grid.maturity:g} (the last "
                             f"decision is at step {n - 1}), got t={t!r}")
        return nearest, None     # the time is hedge()'s i x dt, computed in the program
    return min(int(math.floor(value / dt)), n - 1), np.asarray(value, dtype)


def _per_path(name: str, value: Any, dtype, ok, allowed: str):
    """`value` as a concrete array of the working dtype, checked elementwise."""
    if value is None or isinstance(value, (str, bytes, bool, np.bool_, complex)):
        raise ValueError(f"{name} must be a real number or array, got {name}={value!r}")
    if not all(is_concrete(x) for x in jax.tree.leaves(value)):
        raise ValueError(f"{name} must be concrete (rebalance runs eagerly; call it outside "
                         "jax.jit/vmap/grad)")
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - ragged lists and other unconvertible objects
        raise ValueError(f"{name} must be a real number or array, got {name}={value!r}") from None
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a real number or array, got {name}={value!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # overflow in the cast
        cast = arr.astype(np.dtype(dtype))
        good = np.isfinite(cast) & np.asarray(ok(cast))
    if not np.all(good):
        if arr.ndim == 0:
            shown, where = arr.item(), ""
        else:
            first = np.argwhere(~np.broadcast_to(good, arr.shape))[0]
            shown, where = arr[tuple(first)].item(), f" (element {first.tolist()})"
        raise ValueError(f"{name} must be {allowed} in {np.dtype(dtype).name}, got "
                         f"{name}={shown!r}{where}")
    return jnp.asarray(cast)


def _position(position: Any, has_option: bool, listed, dtype):
    """(shares, units or None) of the position held before the trade."""
    if has_option:
        if not isinstance(position, tuple) or len(position) != 2:
            raise ValueError("position must be a tuple (shares, option units) for a strategy "
                             f"that trades listed options, got position={position!r}")
        shares = _per_path("position", position[0], dtype, lambda x: True, "finite (shares)")
        units = _per_path("position", position[1], dtype, lambda x: True,
                          "finite (option units)")
        return shares, units
    if isinstance(position, tuple):
        raise ValueError("position must be the shares held (a number or an array); this "
                         "strategy trades no listed option, got a tuple")
    return _per_path("position", position, dtype, lambda x: True, "finite (shares)"), None


def _paths_shape(*, k: int | None, **arrays) -> tuple[int, ...]:
    """The paths' shape P: the broadcast of every per-path input (the option units' and
    prices' last axis of k options excluded)."""
    shapes = {}
    for name, x in arrays.items():
        if x is None:
            continue
        shape = tuple(np.shape(x))
        if k is not None and name in ("units", "option_price"):
            if not shape or shape[-1] != k:
                raise ValueError(f"{name} must have a last axis of {k} (one column per listed "
                                 f"option), got shape {shape}")
            shape = shape[:-1]
        shapes[name] = shape
    try:
        return tuple(np.broadcast_shapes(*shapes.values()))
    except ValueError:
        raise ValueError("spot, position, variance and option_price must broadcast to one "
                         f"shape of paths, got shapes {shapes}") from None


def _has_variance(model: AbstractModel) -> bool:
    """Whether the model carries an instantaneous variance in its state (Heston)."""
    state = jax.eval_shape(model.init, jax.ShapeDtypeStruct((1,), jnp.uint32))
    return state.variance is not None


class _Layout:
    """Paths of shape P as `hedge()` lays them out: flattened, padded (repeating the last
    path) to whole rows of 64 lanes, shape (rows, 64, ...)."""

    def __init__(self, paths: tuple[int, ...]):
        self.paths = paths
        self.n = int(np.prod(paths, dtype=np.int64)) if paths else 1
        if self.n == 0:
            raise ValueError("spot must hold at least one value, got an empty array")
        self.padded = -(-self.n // _LANES) * _LANES

    def rows(self, x: jax.Array) -> jax.Array:
        """(P, ...) -> (rows, 64, ...)."""
        rest = x.shape[len(self.paths):]
        flat = x.reshape((self.n,) + rest)
        if self.padded > self.n:
            fill = jnp.broadcast_to(flat[-1:], (self.padded - self.n,) + rest)
            flat = jnp.concatenate([flat, fill])
        return flat.reshape((self.padded // _LANES, _LANES) + rest)

    def back(self, x: jax.Array) -> jax.Array:
        """(rows, 64, ...) -> (P, ...)."""
        rest = x.shape[2:]
        return x.reshape((self.padded,) + rest)[:self.n].reshape(self.paths + rest)

    def state_rows(self, x: jax.Array, template: jax.Array) -> jax.Array:
        """A group's path-state leaf (P, m) -> (m, rows, 64) (`hedge()`'s group layout)."""
        x = self.rows(x)
        return jnp.moveaxis(x, -1, 0).astype(template.dtype)


def _path_rows(book: Book, path_state: Any, step: int, time, spot_rows, layout: _Layout,
               dtype) -> tuple | None:
    """The book's path state in `hedge()`'s layout: per group None or a dict name -> array
    (m, rows, 64); None when the book holds no path-dependent instrument."""
    dependent = [isinstance(g, AbstractPathDependent) for g in book.groups]
    if not any(dependent):
        if path_state is not None and not (isinstance(path_state, (list, tuple)) and all(
                s is None for s in path_state)):
            raise ValueError("path_state is only for books holding path-dependent instruments "
                             "(Barrier, Lookback, Asian, ...); this book holds none")
        return None
    log_spot = jnp.log(spot_rows)
    if path_state is None:
        if step > 0:
            names = [type(g).__name__ for g, d in zip(book.groups, dependent, strict=True) if d]
            raise ValueError(
                f"path_state must be given after the book's start (step {step} > 0): the book "
                f"holds path-dependent instruments ({', '.join(names)}) whose value depends on "
                "the path so far, e.g. path_state={'knocked': False} for a Barrier")
        return _path_init(book, log_spot)
    per_instrument = _per_instrument(book, path_state)
    t = jnp.asarray(time, dtype)
    groups = []
    for g, (group, idx) in enumerate(zip(book.groups, book.positions, strict=True)):
        if not dependent[g]:
            for i in idx:
                if per_instrument[i] is not None:
                    raise ValueError(f"path_state[{i}] must be None: instrument {i} "
                                     f"({type(group).__name__}) has no path state")
            groups.append(None)
            continue
        templates = jax.vmap(lambda inst: inst.path_state(log_spot, t))(group)
        leaves = {}
        for name, template in templates.items():
            columns = []
            for i in idx:
                entry = per_instrument[i]
                kind = type(group).__name__
                if not isinstance(entry, dict):
                    raise ValueError(f"path_state[{i}] must be a dict of {kind}'s path state "
                                     f"{sorted(templates)}, got {entry!r}")
                unknown = sorted(set(entry) - set(templates))
                missing = sorted(set(templates) - set(entry))
                if unknown or missing:
                    raise ValueError(
                        f"path_state[{i}] for a {kind} must have the keys {sorted(templates)}"
                        + (f"; unknown: {unknown}" if unknown else "")
                        + (f"; missing: {missing}" if missing else ""))
                columns.append(_state_value(f"path_state[{i}][{name!r}]", entry[name],
                                            template.dtype, dtype, layout))
            stacked = jnp.stack(columns, axis=-1)          # (P, m)
            leaves[name] = layout.state_rows(stacked, template)
        groups.append(leaves)
    return tuple(groups)


def _per_instrument(book: Book, path_state: Any) -> list:
    n = len(book)
    if isinstance(path_state, dict):
        if n != 1:
            raise ValueError(f"path_state must be a list with one entry per instrument (None "
                             f"for European ones) for a book of {n} instruments, got a dict")
        return [path_state]
    if not isinstance(path_state, (list, tuple)) or len(path_state) != n:
        raise ValueError(f"path_state must be a list with one entry per instrument of the book "
                         f"({n}; None for European ones), got {path_state!r}")
    return list(path_state)


def _state_value(name: str, value: Any, kind, dtype, layout: _Layout) -> jax.Array:
    """One path-state value as an array of shape P and the state's dtype."""
    if np.dtype(kind) == np.bool_:
        arr = np.asarray(value)
        if arr.dtype != np.bool_ and not (arr.dtype.kind in "iuf" and np.all(
                (arr == 0) | (arr == 1))):
            raise ValueError(f"{name} must be a boolean (true once it has happened), got "
                             f"{value!r}")
        arr = jnp.asarray(arr.astype(bool))
    else:
        arr = _per_path(name, value, dtype, lambda x: True, "finite")
    try:
        return jnp.broadcast_to(arr, layout.paths)
    except ValueError:
        raise ValueError(f"{name} must be a scalar or of the paths' shape {layout.paths}, got "
                         f"shape {np.shape(arr)}") from None


def _memory(strategy: AbstractStrategy, state: Any, held: Any, step: int,
            layout: _Layout) -> Any:
    """The strategy's state in the rows layout: its initial state for None, else `state`
    (leading axes P) checked against the initial state's structure."""
    initial = strategy.init_state(held)
    if state is None:
        if initial is not None and step > 0:
            warnings.warn(f"{type(strategy).__name__} keeps state between steps and no state "
                          f"was given at step {step}: it starts from its initial state, as "
                          "at the book's start (pass the previous Rebalance.state)",
                          stacklevel=3)
        return initial
    if initial is None:
        if jax.tree.leaves(state):
            raise ValueError(f"state must be None for {type(strategy).__name__}, which keeps "
                             "no state between steps")
        return None
    expected = jax.tree.structure(initial)
    if jax.tree.structure(state) != expected:
        raise ValueError(f"state must have the structure of {type(strategy).__name__}'s state "
                         f"{expected}, got {jax.tree.structure(state)} (pass the previous "
                         "Rebalance.state)")

    def one(x, template):
        rest = template.shape[2:]
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"state must hold real arrays, got dtype {arr.dtype}")
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise ValueError("state must be finite (pass the previous Rebalance.state)")
        try:
            arr = np.broadcast_to(arr, layout.paths + rest)
        except ValueError:
            raise ValueError(f"state leaves must have shape {layout.paths + rest} (the paths, "
                             f"then the state's own axes), got {np.shape(x)}") from None
        return layout.rows(jnp.asarray(arr, template.dtype))

    return jax.tree.map(one, state, initial)
