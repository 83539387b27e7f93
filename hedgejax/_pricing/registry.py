"""`price()` and `greeks()`: one differentiable price per (model, instrument) pair, and every
Greek from JAX autodiff of it. No Greek formula is written by hand anywhere in hedgejax.

Conventions: prices in currency at time `t` (years); delta, gamma w.r.t. spot; vega per 1.00
of the model's vol parameter (not per 1%); rho per 1.00 of rate; theta = dV/dt per year
(calendar time passing, so a long call's theta is negative); vanna = d2V/dS dvol;
volga = d2V/dvol2. Divide by 100 for per-vol-point or per-rate-point figures, by 365 for
per-day theta.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._exotics import AbstractPathDependent
from .._instruments import AbstractInstrument, Book
from .._models.base import AbstractModel
from .._numerics import ordered_sum
from .._validate import (
    NonFiniteError,
    as_float,
    checked,
    is_concrete,
    runtime_checked,
)

# (model type, instrument type) -> fn(model, instrument, log_spot, tau) -> value
Pricer = Callable[[AbstractModel, AbstractInstrument, jax.Array, jax.Array], jax.Array]
_PRICERS: dict[tuple[type, type], Pricer] = {}


def register_pricer(model_type: type, instrument_type: type) -> Callable[[Pricer], Pricer]:
    """Register `fn(model, instrument, log_spot, tau)` as the price of an instrument type under
    a model type. `tau` is time to maturity in years and may be <= 0 (expired: the pricer
    returns the payoff, with finite derivatives). Everything must broadcast over `log_spot`.
    """

    def decorator(fn: Pricer) -> Pricer:
        _PRICERS[(model_type, instrument_type)] = fn
        return fn

    return decorator


def has_pricer(model: AbstractModel, instrument: AbstractInstrument | Book) -> bool:
    """Whether `price(model, instrument)` is defined."""
    groups = instrument.groups if isinstance(instrument, Book) else (instrument,)
    return all((type(model), type(g)) in _PRICERS for g in groups)


def _pricer(model: AbstractModel, instrument: AbstractInstrument) -> Pricer:
    try:
        return _PRICERS[(type(model), type(instrument))]
    except KeyError:
        raise TypeError(
            f"no price for {type(instrument).__name__} under {type(model).__name__}"
        ) from None


def instrument_value(fn: Pricer, model: AbstractModel, inst: AbstractInstrument,
                     log_spot: jax.Array, t: jax.Array, state=None) -> jax.Array:
    """`fn`'s price of `inst` at time t. A path-dependent instrument's pricer also gets its
    path state: `state`, or when None that of a path flat at the spot until t (held fixed
    under differentiation: Greeks are at a given path state; module `_exotics`)."""
    tau = inst.maturity - t
    if not isinstance(inst, AbstractPathDependent):
        return fn(model, inst, log_spot, tau)
    if state is None:
        state = jax.tree.map(lax.stop_gradient, inst.path_state(log_spot, t))
    return fn(model, inst, log_spot, tau, state)


def book_value_log(model: AbstractModel, book: Book, log_spot: jax.Array, t: jax.Array,
                   alive: tuple[jax.Array, ...] | None = None,
                   states: tuple | None = None) -> jax.Array:
    """Value of `book` at time t for log-spot array `log_spot` (any shape).

    `alive`, if given, holds one boolean per instrument of each group: instruments that are
    not alive (already expired and paid) contribute nothing and have zero Greeks.
    `states`, if given, holds one entry per group: None for European instruments, else the
    group's path state (a dict of arrays, leading axis one per instrument of the group, then
    shaped like `log_spot`); None prices every path-dependent instrument at the flat-path
    state (module `_exotics`).
    """
    total = jnp.zeros_like(log_spot)
    for k, (group, qty) in enumerate(zip(book.groups, book.quantities, strict=True)):
        fn = _pricer(model, group)
        live = None if alive is None else alive[k]
        state = None if states is None else states[k]

        def one(inst, q, live, state, fn=fn):
            v = q * instrument_value(fn, model, inst, log_spot, t, state)
            return v if live is None else jnp.where(live, v, 0.0)

        values = jax.vmap(one)(group, qty, live, state)
        total = total + ordered_sum(values, axis=0)
    return total


def price(model: AbstractModel, instrument: AbstractInstrument | Book,
          spot: jax.Array | float | None = None, t: jax.Array | float = 0.0,
          state: dict | tuple | None = None) -> jax.Array:
    """Price at time `t` (years) of an instrument or a `Book` when the underlying is at `spot`
    (defaults to `model.spot`). For a book: sum of quantity x price.

    `t` is any finite time: the option has maturity - t years left, so a negative t prices it
    earlier than the grid's start. Raises ValueError for a negative or non-finite spot, a
    non-finite t, or values that are not real numbers.

    `state`: for a path-dependent instrument (`hj.Barrier`, `hj.Asian`, ...), its path
    state at t, a dict named as in the instrument's docstring (e.g. ``{"knocked": False}``
    for a barrier, ``{"extreme": log(running min)}`` for a floating lookback call); for a
    Book, a tuple with one entry per group (`book.groups`). None: the state of a path that
    stayed at `spot` until t (module `hedgejax._exotics`).

    Example:
        >>> import hedgejax as hj
        >>> model = hj.BlackScholes(spot=100.0, vol=0.2)
        >>> float(hj.price(model, hj.EuropeanCall(100.0, 1.0)))   # doctest: +ELLIPSIS
        7.96...
    """
    model, instrument = runtime_checked((model, instrument))
    spot = model.spot if spot is None else as_float(spot, "spot")
    t = as_float(t, "t")
    spot = checked("spot", spot, lambda a: a >= 0, "finite and >= 0")
    t = checked("t", t, lambda a: a == a, "finite")
    log_spot = jnp.log(spot)
    if isinstance(instrument, Book):
        value = book_value_log(model, instrument, log_spot, t,
                               states=_as_state(state, instrument))
    else:
        value = instrument_value(_pricer(model, instrument), model, instrument, log_spot, t,
                                 _as_state(state, instrument))
    return _announce_non_finite(
        "price()", {"price": value},
        f"{type(instrument).__name__} under {type(model).__name__}",
        "overflow in the working precision: check the parameters (e.g. a large rate x "
        "maturity) or enable jax_enable_x64")


def _as_state(state, instrument):
    """`state` checked against what `instrument` (or a Book) carries: None, or for a
    path-dependent instrument a dict with exactly its state's names, booleans where it has
    flags, finite reals in range elsewhere (`ValueError` naming the entry otherwise); for a
    Book a tuple with one entry per group (`book.groups`): None for European groups, else
    a dict whose arrays have one entry per instrument of the group first."""
    if state is None:
        return None
    if isinstance(instrument, Book):
        groups = instrument.groups
        if not isinstance(state, (tuple, list)) or len(state) != len(groups):
            raise ValueError(
                f"state must be a tuple with one entry per group of the book "
                f"({len(groups)}: {', '.join(type(g).__name__ for g in groups)}; "
                f"book.groups), got {type(state).__name__}"
                + (f" of length {len(state)}" if isinstance(state, (tuple, list)) else ""))
        return tuple(_as_state_of(entry, group, f"state[{k}]", len(idx))
                     for k, (entry, group, idx) in enumerate(
                         zip(state, groups, instrument.positions, strict=True)))
    return _as_state_of(state, instrument, "state", None)


def _as_state_of(state, inst, name, group_size):
    if not isinstance(inst, AbstractPathDependent):
        if state is None:
            return None
        raise ValueError(f"{name} is only for path-dependent instruments (Barrier, Asian, "
                         f"...), got a state for {type(inst).__name__}")
    if state is None:
        if group_size is None:
            return None
        raise ValueError(f"{name} must be the {type(inst).__name__} group's state dict, got "
                         "None (pass state=None for the whole book instead)")
    template = inst.path_state(jnp.zeros(()), jnp.zeros(())) if group_size is None else \
        jax.vmap(lambda i: i.path_state(jnp.zeros(()), jnp.zeros(())))(inst)
    if not isinstance(state, dict) or set(state) != set(template):
        raise ValueError(f"{name} of a {type(inst).__name__} must be a dict with the keys "
                         f"{sorted(template)}, got "
                         + (f"keys {sorted(state)}" if isinstance(state, dict)
                            else type(state).__name__))
    out = {}
    for key, like in template.items():
        label = f"{name}[{key!r}]"
        value = state[key]
        if like.dtype == bool:
            if isinstance(value, (bool, np.bool_)) or (
                    isinstance(value, (jax.Array, np.ndarray)) and value.dtype == bool):
                out[key] = jnp.asarray(value)
            else:
                raise ValueError(f"{label} must be a boolean (True/False), got {value!r}")
        else:
            out[key] = checked(label, as_float(value, label), lambda a: a == a, "finite")
        if group_size is not None and (jnp.ndim(out[key]) == 0
                                       or jnp.shape(out[key])[0] != group_size):
            raise ValueError(f"{label} must have a leading axis of {group_size} (one entry per "
                             f"instrument of the group), got shape {jnp.shape(out[key])}")
    inst.check_state(out, name)
    return out


def _announce_non_finite(where: str, values: dict, what: str, hint: str):
    """`values` (one array, or a Greeks) unchanged if finite; else NonFiniteError naming the
    non-finite quantities (eagerly), or the same message from an `eqx.error_if` when the
    values are traced. Returns the single value or the Greeks."""
    arrays = dict(values)
    if len(arrays) == 1:
        (name, value), = arrays.items()
        out = value
    else:
        out = arrays.pop("_out")
    names = list(arrays)
    if all(is_concrete(v) for v in arrays.values()):
        bad = [n for n in names if not bool(jnp.all(jnp.isfinite(arrays[n])))]
        if bad:
            verb = "is" if len(bad) == 1 else "are"
            raise NonFiniteError(f"{where}: {', '.join(bad)} of {what} {verb} not finite; "
                                 f"{hint}")
        return out
    flags = jnp.stack([~jnp.all(jnp.isfinite(arrays[n])) for n in names])
    message = f"{where}: a result of {what} is not finite (traced); {hint}"
    return jax.tree.map(lambda x: eqx.error_if(x, jnp.any(flags), message), out)


class Greeks(eqx.Module):
    """Sensitivities of a price (units in the module docstring)."""

    delta: jax.Array
    gamma: jax.Array
    vega: jax.Array
    theta: jax.Array
    rho: jax.Array
    vanna: jax.Array
    volga: jax.Array

    def as_dict(self) -> dict[str, float]:
        """The Greeks as Python floats (concrete scalar values only)."""
        return {name: float(getattr(self, name)) for name in _GREEK_NAMES}

    def __repr__(self) -> str:
        values = [getattr(self, name) for name in _GREEK_NAMES]
        if all(is_concrete(v) and jnp.ndim(v) == 0 for v in values):
            body = ", ".join(f"{n}={float(v):.6g}" for n, v in zip(_GREEK_NAMES, values,
                                                                   strict=True))
            return f"Greeks({body})"
        return eqx.tree_pformat(self)


_GREEK_NAMES = ("delta", "gamma", "vega", "theta", "rho", "vanna", "volga")


def _vega_path(model: AbstractModel):
    name = model.vega_field
    return lambda m: getattr(m, name)


def _greeks_impl(model: AbstractModel, instrument, spot: jax.Array, t: jax.Array,
                 state=None) -> Greeks:
    where_vol = _vega_path(model)

    def value(s, vol, rate, time):
        m = eqx.tree_at(lambda m: (where_vol(m), m.rate), model, (vol, rate))
        return price(m, instrument, s, time, state)

    vol = where_vol(model)
    args = (spot, vol, model.rate, t)
    # One reverse pass: delta, vega, rho and theta of the whole instrument or book.
    delta, vega, rho, theta = jax.grad(value, argnums=(0, 1, 2, 3))(*args)
    # Forward-over-reverse for the second order in (spot, vol).
    hess = jax.jacfwd(jax.grad(value, argnums=(0, 1)), argnums=(0, 1))(*args)
    (gamma, vanna), (_, volga) = hess
    return Greeks(delta=delta, gamma=gamma, vega=vega, theta=theta, rho=rho,
                  vanna=vanna, volga=volga)


_greeks = eqx.filter_jit(_greeks_impl)


def _position_values(model: AbstractModel, book: Book, spot, vol, rate, t) -> jax.Array:
    """Value of each position (quantity x price), in the order the instruments were given."""
    m = eqx.tree_at(lambda m: (_vega_path(model)(m), m.rate), model, (vol, rate))
    per_group = []
    for group, qty in zip(book.groups, book.quantities, strict=True):
        fn = _pricer(m, group)
        values = jax.vmap(lambda inst, fn=fn: instrument_value(fn, m, inst, jnp.log(spot), t))
        per_group.append(qty * values(group))
    return book._in_order(per_group)


@eqx.filter_jit
def _greeks_per_instrument(model: AbstractModel, book: Book, spot: jax.Array,
                           t: jax.Array) -> Greeks:
    # Many outputs (one per position), four inputs: forward mode is the efficient direction.
    def values(*args):
        return _position_values(model, book, *args)

    args = (spot, _vega_path(model)(model), model.rate, t)
    delta, vega, rho, theta = jax.jacfwd(values, argnums=(0, 1, 2, 3))(*args)
    second = jax.jacfwd(jax.jacfwd(values, argnums=(0, 1)), argnums=(0, 1))(*args)
    (gamma, vanna), (_, volga) = second
    return Greeks(delta=delta, gamma=gamma, vega=vega, theta=theta, rho=rho, vanna=vanna,
                  volga=volga)


@eqx.filter_jit
def _greeks_at_zero(model: AbstractModel, book: Book, t: jax.Array,
                    per_instrument: bool) -> Greeks:
    """The Greeks at spot 0, where autodiff through log(spot) is undefined.

    S = 0 is absorbing in every priced model (Black-Scholes, Heston, Merton: the dynamics
    are multiplicative), so near S = 0 every path ends below any positive strike and
    V(S) = e^{-r tau} payoff(0) + payoff'(0+) e^{-q tau} S + o(S). Hence the limits:
    delta = e^{-q tau} payoff'(0+) (0 for a call, -e^{-q tau} for a put), gamma = vega =
    vanna = volga = 0, and theta, rho those of e^{-r tau} payoff(0) (e.g. a put:
    theta = r K e^{-r tau}, rho = -tau K e^{-r tau}).
    """
    def values(rate, time):
        per_group = []
        for group, qty in zip(book.groups, book.quantities, strict=True):
            tau = jnp.maximum(group.maturity - time, 0.0)
            at_zero = jax.vmap(lambda g: g.payoff(jnp.zeros_like(g.strike)))(group)
            per_group.append(qty * jnp.exp(-rate * tau) * at_zero)
        return book._in_order(per_group)

    slopes = []
    for group, qty in zip(book.groups, book.quantities, strict=True):
        tau = jnp.maximum(group.maturity - t, 0.0)
        slope = jax.vmap(lambda g: jax.grad(g.payoff)(jnp.zeros_like(g.strike)))(group)
        slopes.append(qty * jnp.exp(-model.div * tau) * slope)
    delta = book._in_order(slopes)
    rho, theta = jax.jacfwd(values, argnums=(0, 1))(model.rate, t)
    zero = jnp.zeros_like(delta)
    out = Greeks(delta=delta, gamma=zero, vega=zero, theta=theta, rho=rho, vanna=zero,
                 volga=zero)
    return out if per_instrument else jax.tree.map(jnp.sum, out)


def _with_zero_spot_limits(model, instrument, spot, t, per_instrument, compute) -> Greeks:
    """`compute(spot)`, except at spot 0 (concrete or traced), where the limits are used."""
    book = instrument if isinstance(instrument, Book) else Book([instrument])
    for group in book.groups:
        _pricer(model, group)       # TypeError when the model cannot price it, as elsewhere
    if is_concrete(spot):
        if float(spot) == 0.0:
            return _greeks_at_zero(model, book, t, per_instrument)
        return compute(spot)
    at_zero = spot == 0
    regular = compute(jnp.where(at_zero, jnp.ones_like(spot), spot))
    limit = _greeks_at_zero(model, book, t, per_instrument)
    return jax.tree.map(lambda a, b: jnp.where(at_zero, a, b), limit, regular)


def prepared_for(model: AbstractModel, instrument: AbstractInstrument | Book,
                 t: jax.Array | float = 0.0) -> AbstractModel:
    """`model.prepared(horizon)` for pricing `instrument` (or a book) at time `t` and later:
    horizon = the longest maturity - t, when both are concrete (else `model` unchanged)."""
    groups = instrument.groups if isinstance(instrument, Book) else (instrument,)
    maturities = [g.maturity for g in groups]
    if not all(is_concrete(x) for x in (*maturities, t)):
        return model
    horizon = max(float(jnp.max(m)) for m in maturities) - float(jnp.min(t))
    return model.prepared(horizon)


def greeks(model: AbstractModel, instrument: AbstractInstrument | Book,
           spot: jax.Array | float | None = None, t: jax.Array | float = 0.0, *,
           per_instrument: bool = False, state: dict | tuple | None = None) -> Greeks:
    """All Greeks of an instrument or a `Book` by autodiff of `price` (see module docstring
    for units). For a book, the totals: one reverse pass gives delta, vega, rho and theta,
    forward-over-reverse gives gamma, vanna and volga.

    With `per_instrument=True` (books only) each Greek is an array with one entry per
    position, in the order the instruments were given: quantity x the instrument's Greek,
    so the entries sum to the book's total.

    At spot 0 (absorbing in every priced model) the Greeks are their limits: delta =
    e^{-q tau} x the payoff's slope at 0 (0 for a call, -e^{-q tau} for a put), gamma,
    vega, vanna, volga 0, theta and rho those of e^{-r tau} x payoff(0).

    Every model parameter has a gradient too: `jax.grad(lambda m: hj.price(m, inst))(model)`
    returns d price / d parameter for each field of the model (e.g. kappa, xi, rho of Heston).

    Example:
        >>> import hedgejax as hj
        >>> g = hj.greeks(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 1.0))
        >>> round(float(g.delta), 4)
        0.5398
    """
    model, instrument = runtime_checked((model, instrument))
    spot = model.spot if spot is None else as_float(spot, "spot")
    t = as_float(t, "t")
    spot = checked("spot", spot, lambda a: a >= 0, "finite and >= 0")
    t = checked("t", t, lambda a: a == a, "finite")
    if jnp.ndim(spot) or jnp.ndim(t):
        raise ValueError(
            f"spot and t must be scalars for greeks, got shapes {jnp.shape(spot)} and "
            f"{jnp.shape(t)}; for many spots use jax.vmap(lambda s: hj.greeks(model, "
            "instrument, spot=s))(spots)")
    model = prepared_for(model, instrument, t)
    groups = instrument.groups if isinstance(instrument, Book) else (instrument,)
    if any(isinstance(g, AbstractPathDependent) for g in groups):
        if is_concrete(spot) and float(spot) == 0.0:
            raise ValueError("spot must be > 0 for the Greeks of a path-dependent instrument, "
                             "got spot=0.0")
        state = _as_state(state, instrument)
        if per_instrument and state is not None:
            raise ValueError("per_instrument=True takes no state (the flat-path state is "
                             "used); price each instrument with its own state instead")
        if not per_instrument:
            return _checked_greeks(_greeks(model, instrument, spot, t, state), model,
                                   instrument, spot)
    elif state is not None:
        raise ValueError("state is only for path-dependent instruments (Barrier, Asian, "
                         f"...), got a state for {type(instrument).__name__}")
    if per_instrument:
        if not isinstance(instrument, Book):
            raise ValueError("per_instrument=True needs a Book, got "
                             f"{type(instrument).__name__}")
        return _checked_greeks(_with_zero_spot_limits(
            model, instrument, spot, t, True,
            lambda s: _greeks_per_instrument(model, instrument, s, t)), model, instrument,
            spot)
    out = _with_zero_spot_limits(model, instrument, spot, t, False,
                                 lambda s: _greeks(model, instrument, s, t))
    return _checked_greeks(out, model, instrument, spot)


def _checked_greeks(out: Greeks, model, instrument, spot) -> Greeks:
    return _announce_non_finite(
        "greeks()", {"_out": out, **{n: getattr(out, n) for n in _GREEK_NAMES}},
        f"{type(instrument).__name__} under {type(model).__name__}"
        + (f" at spot={float(spot):.6g}" if is_concrete(spot) else ""),
        "the spot, vol or maturity is too extreme for the working precision (e.g. a spot "
        "below 1e-20 of the strike); enable jax_enable_x64 or move the inputs")
