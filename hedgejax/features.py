"""Features for learned hedging policies: `NeuralHedge(key, features=(...))`.

A feature is a plain function `f(obs, position) -> array` of the `Observation` at a step and
the position held before the decision (shares, or `(shares, units)` for a policy that also
trades listed options). It returns one value per path, shaped like `obs.spot`, or `width`
values per path, shaped like `obs.spot` plus a last axis of `width` (stack columns with
`axis=-1`); a scalar is broadcast to every path. Inside `hedge()` the per-path arrays of the
observation have any leading shape (the loop lays paths out as rows of 64, e.g. (16, 64)
for 1,024 paths), so write features elementwise and put columns last.
Values should be O(1) (the network's inputs are not normalised): divide sizes by the book's
size, take logs of ratios of prices, express distances in volatilities.

The public features are below; those with a parameter are factories
(`log_moneyness(100.0)`), the others are the functions themselves (`time_to_maturity`).

=====================================  ===================================================
feature                                value per path
=====================================  ===================================================
`log_moneyness(reference)`             log(S / reference)
`time_to_maturity`                     tau, years to the grid's end
`sqrt_time_to_maturity`                sqrt(tau)
`position(scale)`                      shares held before the decision / scale
`option_units(count, scale)`           listed-option units held / scale, (n_paths, count)
`delta(scale)`                         the book's delta / scale (shares)
`gamma(scale)`                         asinh(Gamma x S / scale)
`vega(scale)`                          vega / (S x scale)
`volatility`                           sqrt(obs.variance), the world's instantaneous vol
`constant(value)`                      value
`realised_vol`                         sqrt(obs.realised_variance), per sqrt(year)
`running_max(instrument, relative_to)`  log(M / S) or log(M / K), M a lookback's running max
`running_min(instrument, relative_to)`  log(m / S) or log(m / K), m its running min
`average(instrument, relative_to)`     (log(A / S) or log(A / K), fraction of fixings done)
`barrier_distance(vol, instrument)`    log(S / H) / (vol sqrt(tau_H)), >= 0 before a touch
`knocked(instrument)`                  1.0 once the barrier is reached (touched), else 0.0
`forward_strike(instrument)`           log(K / S), K a forward start's strike
=====================================  ===================================================

Path features read the book's path state (`obs.path`, filled by `hedge()` for a book with
path-dependent instruments; names as in `hedgejax._exotics`). `instrument` is the index of
the instrument in the book as it was given (`Book([...])` order); None picks the first
instrument of the kind the feature reads (a `Lookback` tracking a maximum for
`running_max`, an `Asian` for `average`, ...). Every feature raises `ValueError` naming
itself and what is missing when the observation cannot provide it (no path-dependent
instrument of that kind, a world without variance, ...); under `jax.jit` that happens when
the policy is traced.

A custom feature is any function of (obs, position):

    >>> import jax, jax.numpy as jnp, hedgejax as hj
    >>> def cost_rate(obs, position):
    ...     return 100.0 * obs.cost_rate          # e.g. 0.1 for 10 bp
    >>> policy = hj.NeuralHedge(jax.random.key(0), features=(
    ...     hj.features.log_moneyness(100.0), hj.features.sqrt_time_to_maturity,
    ...     hj.features.position(), hj.features.delta(), cost_rate))

A function returning j > 1 columns declares it, as an attribute (`f.width = j`) or by
wrapping it: `hj.features.Feature(f, width=j)`. A function that reads
`obs.realised_variance` declares `needs_realised_variance = True` (as `realised_vol` does)
so that `NeuralHedge` tracks it.

The features mirror pfhedge's (`pfhedge.features`: LogMoneyness, TimeToMaturity, PrevHedge,
Volatility, Barrier, MaxLogMoneyness, ...) and the state variables of Deep Hedging (Buehler,
Gonon, Teichmann and Wood, 2019, section 5), as functions of the observation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from ._exotics import Asian, Barrier, ForwardStart, Lookback, OneTouch, dates_done
from ._validate import check_finite, check_int, check_positive, real_scalar

__all__ = [
    "Feature", "average", "barrier_distance", "constant", "default_features", "delta",
    "forward_strike",
    "gamma", "knocked", "log_moneyness", "option_units", "position", "realised_vol",
    "running_max", "running_min", "sqrt_time_to_maturity", "time_to_maturity", "vega",
    "volatility", "width_of",
]

if TYPE_CHECKING:
    from ._strategies.base import Observation

RELATIVE_TO = ("spot", "strike")


class Feature:
    """A feature with fixed parameters: `Feature(fn, width, params)(obs, position)` is
    `fn(obs, position, **dict(params))`. What the factories in this module return; also a
    way to give a custom function its `width` (columns per path).

    Args:
        fn: the function `fn(obs, position, **params) -> (n_paths,) or (n_paths, width)`.
        width: the number of columns it returns (int >= 1).
        params: ((name, value), ...) passed to `fn` as keywords (hashable values).
        needs_realised_variance: whether it reads `obs.realised_variance`.

    Immutable, compared and hashed by value: two features with the same function and
    parameters are equal (a policy rebuilt with them reuses its compiled code).
    """

    __slots__ = ("fn", "width", "params", "needs_realised_variance")

    def __init__(self, fn: Callable, width: int = 1, params: tuple = (),
                 needs_realised_variance: bool = False):
        if not callable(fn):
            raise ValueError(f"fn must be a function of (obs, position), got fn={fn!r}")
        params = tuple((str(k), v) for k, v in dict(params).items())
        try:
            hash(params)
        except TypeError:
            raise ValueError(f"params must hold hashable values, got params={params!r}") from None
        for name, value in (("fn", fn), ("width", check_int("width", width, 1)),
                            ("params", params),
                            ("needs_realised_variance", bool(needs_realised_variance))):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Feature is immutable")

    def _key(self) -> tuple:
        return (self.fn, self.width, self.params, self.needs_realised_variance)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Feature) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __call__(self, obs: Observation, position: Any) -> jax.Array:
        return self.fn(obs, position, **dict(self.params))

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", repr(self.fn)).lstrip("_")
        args = ", ".join(f"{k}={v!r}" for k, v in self.params)
        return f"{name}({args})"


def width_of(feature: Callable) -> int:
    """Columns per path that `feature` returns: its `width` attribute, 1 if it has none."""
    return getattr(feature, "width", 1)


# ----------------------------------------------------------------- helpers


def _dtype(obs: Observation):
    return obs.spot.dtype


def _per_path(x: jax.Array, obs: Observation) -> jax.Array:
    return jnp.broadcast_to(jnp.asarray(x, _dtype(obs)), obs.spot.shape)


def _safe_sqrt(x: jax.Array) -> jax.Array:
    """sqrt(max(x, 0)) with a finite gradient at 0 (the "double where" trick)."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _shares(position: Any) -> jax.Array:
    return position[0] if isinstance(position, tuple) else position


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {name}={value!r}")
    return value


def _path_params(instrument: Any, relative_to: Any) -> tuple:
    return (("instrument", _check_instrument(instrument)),
            ("relative_to", _check_choice("relative_to", relative_to, RELATIVE_TO)))


def _check_instrument(instrument: Any) -> int | None:
    if instrument is None:
        return None
    return check_int("instrument", instrument, 0)


def _scale(name: str, scale: Any) -> float:
    check_positive(name, scale)
    return real_scalar(name, scale)


def _pick(obs: Observation, feature: str, what: str, fits: Callable[[Any], bool],
          instrument: int | None) -> tuple[Any, dict]:
    """(the instrument, its path state) that a path feature reads: instrument number
    `instrument` of the book as given, or the first one for which `fits(group)` holds.
    The instrument's fields are scalars; the state's arrays are shaped like obs.spot."""
    if obs.book is None or obs.path is None:
        raise ValueError(
            f"hj.features.{feature} reads the book's path state (obs.path), which hedge() "
            f"provides for a book with {what}; this observation has none (obs.path is None)")
    book = obs.book
    order = sorted((i, g, j) for g, idx in enumerate(book.positions) for j, i in enumerate(idx))
    if instrument is not None:
        if instrument >= len(order):
            raise ValueError(f"instrument must be an index in [0, {len(order) - 1}] of the book's "
                             f"instruments, got instrument={instrument} ({feature})")
        _, g, j = order[instrument]
        if not fits(book.groups[g]) or obs.path[g] is None:
            raise ValueError(
                f"hj.features.{feature} needs {what}; the book's instrument {instrument} is a "
                f"{type(book.groups[g]).__name__}")
    else:
        found = [(g, j) for _, g, j in order if fits(book.groups[g]) and obs.path[g] is not None]
        if not found:
            kinds = sorted({type(grp).__name__ for grp in book.groups})
            raise ValueError(f"hj.features.{feature} needs {what}; the book holds "
                             f"{', '.join(kinds)}")
        g, j = found[0]
    inst = jax.tree.map(lambda x: x[j], book.groups[g])
    state = {name: value[j] for name, value in obs.path[g].items()}
    return inst, state


# ----------------------------------------------------------------- state of the market


def _log_moneyness(obs, position, reference):
    spot = obs.spot
    return jnp.log(spot / jnp.asarray(reference, spot.dtype))


def log_moneyness(reference: float = 100.0) -> Feature:
    """log(S / reference): the log-moneyness against a reference price (currency, > 0;
    e.g. the book's strike). pfhedge's `LogMoneyness`."""
    return Feature(_log_moneyness, params=(("reference", _scale("reference", reference)),))


def time_to_maturity(obs: Observation, position: Any) -> jax.Array:
    """tau = years from t_i to the end of the hedging grid (`obs.time_to_maturity`).
    pfhedge's `TimeToMaturity`."""
    return _per_path(obs.time_to_maturity, obs)


def sqrt_time_to_maturity(obs: Observation, position: Any) -> jax.Array:
    """sqrt(tau), tau the years to the grid's end: the diffusion time scale (vol x sqrt(tau)
    is the typical log-move to the end), 0 at the end with a finite gradient there. The
    feature `NeuralHedge` has always used."""
    return jnp.broadcast_to(_safe_sqrt(jnp.asarray(obs.time_to_maturity, _dtype(obs))),
                            obs.spot.shape)


def _position(obs, position, scale):
    dtype = _dtype(obs)
    return _shares(position).astype(dtype) / jnp.asarray(scale, dtype)


def position(scale: float = 1.0) -> Feature:
    """The shares held before this decision (0 at t0) divided by `scale` (shares, > 0: the
    book's typical delta). Lets a policy learn no-trade behaviour under costs. pfhedge's
    `PrevHedge`."""
    return Feature(_position, params=(("scale", _scale("scale", scale)),))


def _option_units(obs, position, count, scale):
    if not isinstance(position, tuple):
        raise ValueError("hj.features.option_units reads the listed-option units held, but "
                         "the position is shares only (the policy trades no listed option)")
    units = position[1]
    if units.shape != obs.spot.shape + (count,):
        raise ValueError(f"hj.features.option_units(count={count}) expects units of shape "
                         f"{obs.spot.shape + (count,)}, got {units.shape}")
    dtype = _dtype(obs)
    return units.astype(dtype) / jnp.asarray(scale, dtype)


def option_units(count: int, scale: float = 1.0) -> Feature:
    """The units of each of `count` listed options held before this decision, divided by
    `scale`; shape (n_paths, count). For a policy that trades listed options
    (`NeuralHedge(options=...)`, whose default features include it)."""
    count = check_int("count", count, 1)
    return Feature(_option_units, width=count,
                   params=(("count", count), ("scale", _scale("scale", scale))))


def _delta(obs, position, scale):
    dtype = _dtype(obs)
    return obs.delta.astype(dtype) / jnp.asarray(scale, dtype)


def delta(scale: float = 1.0) -> Feature:
    """The book's delta under the hedge model (shares per unit spot move) / `scale`."""
    return Feature(_delta, params=(("scale", _scale("scale", scale)),))


def _gamma(obs, position, scale):
    spot = obs.spot
    return jnp.arcsinh(obs.gamma.astype(spot.dtype) * spot / jnp.asarray(scale, spot.dtype))


def gamma(scale: float = 1.0) -> Feature:
    """asinh(Gamma x S / scale): the book's gamma as the change of its delta (shares) per unit
    log-move of the spot, signed and compressed (~Gamma S / scale when small, ~log when
    large, as for an at-the-money book near expiry)."""
    return Feature(_gamma, params=(("scale", _scale("scale", scale)),))


def _vega(obs, position, scale):
    if obs.vega is None:
        raise ValueError("hj.features.vega needs the book's vega (obs.vega), which needs a hedge "
                         "model with a volatility parameter (Black-Scholes, Heston, Merton); "
                         "this observation has vega=None")
    spot = obs.spot
    return obs.vega.astype(spot.dtype) / (spot * jnp.asarray(scale, spot.dtype))


def vega(scale: float = 1.0) -> Feature:
    """vega / (S x scale): the book's sensitivity to the hedge model's volatility parameter
    (`vol` for Black-Scholes and Merton, the variance `v0` for Heston; `obs.vega`) per unit
    of spot and of `scale`. ValueError when the hedge model has no such parameter."""
    return Feature(_vega, params=(("scale", _scale("scale", scale)),))


def _constant(obs, position, value):
    return _per_path(value, obs)


def constant(value: float) -> Feature:
    """`value` on every path (finite). pfhedge's `Zeros`/`Ones`, and its `Volatility` in a
    Black-Scholes world (the constant sigma, which `volatility` does not read: such a world
    reports no variance)."""
    check_finite("value", value)
    return Feature(_constant, params=(("value", real_scalar("value", value)),))


def volatility(obs: Observation, position: Any) -> jax.Array:
    """sqrt(v): the world's instantaneous volatility (per sqrt(year)) in stochastic
    volatility worlds (`obs.variance`, e.g. Heston). ValueError for worlds that report no
    variance (Black-Scholes). pfhedge's `Volatility`."""
    if obs.variance is None:
        raise ValueError("hj.features.volatility needs a world that reports its variance "
                         "(e.g. Heston); this one reports variance=None")
    return _safe_sqrt(obs.variance.astype(_dtype(obs)))


def realised_vol(obs: Observation, position: Any) -> jax.Array:
    """sqrt(realised variance so far): sqrt(sum_k (log S_k - log S_{k-1})^2 / t_i) over the
    grid's steps up to t_i (0 at t = 0), per sqrt(year). `NeuralHedge` fills
    `obs.realised_variance` from its own memory when one of its features declares
    `needs_realised_variance` (this one does); ValueError when it is None."""
    if obs.realised_variance is None:
        raise ValueError("hj.features.realised_vol reads obs.realised_variance, which "
                         "NeuralHedge fills in (hedge() alone leaves it None)")
    return _safe_sqrt(obs.realised_variance.astype(_dtype(obs)))


realised_vol.needs_realised_variance = True


# ----------------------------------------------------------------- the book's path state


def _lookback_fits(want_max: bool, fixed: bool) -> Callable[[Any], bool]:
    return lambda g: (isinstance(g, Lookback) and (not g.uses_min) == want_max
                      and (g.strike is not None or not fixed))


def _running(obs, want_max, instrument, relative_to):
    feature = "running_max" if want_max else "running_min"
    what = f"a Lookback tracking the running {'maximum' if want_max else 'minimum'}"
    if relative_to == "strike":
        what += " with a fixed strike"
    inst, state = _pick(obs, feature, what, _lookback_fits(want_max, relative_to == "strike"),
                        instrument)
    dtype = _dtype(obs)
    extreme = state["extreme"].astype(dtype)    # log of the running extreme
    if relative_to == "spot":
        return extreme - jnp.log(obs.spot)
    if inst.strike is None:
        raise ValueError(f"hj.features.{feature}(relative_to='strike') needs a fixed-strike "
                         "Lookback; this one has a floating strike")
    return extreme - jnp.log(jnp.asarray(inst.strike, dtype))


def _running_max(obs, position, instrument, relative_to):
    return _running(obs, True, instrument, relative_to)


def _running_min(obs, position, instrument, relative_to):
    return _running(obs, False, instrument, relative_to)


def running_max(instrument: int | None = None, relative_to: str = "spot") -> Feature:
    """log(M / S) (relative_to="spot", >= 0) or log(M / K) ("strike"): M the running maximum
    of a `Lookback` that tracks it (a floating-strike put or a fixed-strike call; its path
    state "extreme", the log of M, as monitored), K its fixed strike. pfhedge's
    `MaxLogMoneyness` is log(M / K) with K the strike."""
    return Feature(_running_max, params=_path_params(instrument, relative_to))


def running_min(instrument: int | None = None, relative_to: str = "spot") -> Feature:
    """log(m / S) (relative_to="spot", <= 0) or log(m / K) ("strike"): m the running minimum
    of a `Lookback` that tracks it (a floating-strike call or a fixed-strike put), K its
    fixed strike."""
    return Feature(_running_min, params=_path_params(instrument, relative_to))


def _average(obs, position, instrument, relative_to):
    inst, state = _pick(obs, "average", "an Asian", lambda g: isinstance(g, Asian), instrument)
    dtype = _dtype(obs)
    t = jnp.asarray(obs.time, dtype)
    maturity = jnp.asarray(inst.maturity, dtype)
    if inst.fixings is None:      # a continuous average: "total" is fraction x average
        done = jnp.clip(t / maturity, 0.0, 1.0)
        fraction = done
    else:
        done = dates_done(t, maturity, inst.fixings).astype(dtype)
        fraction = done / inst.fixings
    started = done > 0
    total = state["total"].astype(dtype)
    mean = total / jnp.where(started, done, 1.0)
    log_spot = jnp.log(obs.spot)
    log_average = mean if inst.geometric else jnp.log(jnp.where(started, mean, 1.0))
    log_average = jnp.where(started, log_average, log_spot)   # no fixing yet: A = S
    reference = log_spot if relative_to == "spot" else jnp.log(jnp.asarray(inst.strike, dtype))
    return jnp.stack([log_average - reference, _per_path(fraction, obs)], axis=-1)


def average(instrument: int | None = None, relative_to: str = "spot") -> Feature:
    """Two columns: log(A / S) (relative_to="spot") or log(A / K) ("strike"), and the
    fraction of the fixings done; A the average of an `Asian`'s fixings so far (arithmetic
    or geometric, as its payoff; its path state "total" over the count of fixing dates at
    or before t_i), K its strike. Before the first fixing A is taken as S. Width 2."""
    return Feature(_average, width=2, params=_path_params(instrument, relative_to))


def _barrier_fits(g) -> bool:
    return isinstance(g, (Barrier, OneTouch))


def _barrier_distance(obs, position, vol, instrument, cap):
    inst, state = _pick(obs, "barrier_distance", "a Barrier or OneTouch", _barrier_fits,
                        instrument)
    dtype = _dtype(obs)
    log_ratio = jnp.log(obs.spot) - jnp.log(jnp.asarray(inst.barrier, dtype))   # log(S / H)
    if isinstance(inst, Barrier):
        distance = log_ratio if inst.down else -log_ratio
    else:
        distance = jnp.where(state["down"], log_ratio, -log_ratio)
    tau = jnp.asarray(inst.maturity, dtype) - jnp.asarray(obs.time, dtype)
    scale = jnp.asarray(vol, dtype) * jnp.sqrt(jnp.maximum(tau, jnp.asarray(1e-8, dtype)))
    return jnp.clip(distance / scale, -cap, cap)


def barrier_distance(vol: float, instrument: int | None = None, cap: float = 5.0) -> Feature:
    """The distance to a barrier in volatilities: log(S / H) / (vol sqrt(tau_H)) for a
    down barrier, log(H / S) / (vol sqrt(tau_H)) for an up barrier (a OneTouch: by its
    direction), so >= 0 on the side not yet crossed; H the barrier of a `Barrier` or
    `OneTouch`, tau_H the years to its maturity (floored at 1e-8), clipped to [-cap, cap]
    (beyond a few vols the barrier hardly matters, and near expiry the ratio diverges).

    `vol` (annual, > 0) is a fixed volatility that sets the scale, e.g. the hedge model's
    `vol` for Black-Scholes or sqrt(theta) for Heston; with the observation's own
    volatility use a custom feature. The Black-Scholes first-passage probability is a
    function of this distance (Reiner and Rubinstein 1991), which is why it is O(1).
    pfhedge's `Barrier` feature is the knocked flag below."""
    check_positive("vol", vol)
    check_positive("cap", cap)
    return Feature(_barrier_distance,
                   params=(("vol", real_scalar("vol", vol)),
                           ("instrument", _check_instrument(instrument)),
                           ("cap", real_scalar("cap", cap))))


def _knocked(obs, position, instrument):
    inst, state = _pick(obs, "knocked", "a Barrier or OneTouch", _barrier_fits, instrument)
    flag = state["knocked"] if isinstance(inst, Barrier) else state["touched"]
    return flag.astype(_dtype(obs))


def knocked(instrument: int | None = None) -> Feature:
    """1.0 where a `Barrier` has been knocked (its path state "knocked", as monitored) or a
    `OneTouch` touched ("touched"), else 0.0. pfhedge's `Barrier` feature."""
    return Feature(_knocked, params=(("instrument", _check_instrument(instrument)),))


def _forward_strike(obs, position, instrument):
    inst, state = _pick(obs, "forward_strike", "a ForwardStart",
                        lambda g: isinstance(g, ForwardStart), instrument)
    dtype = _dtype(obs)
    # the strike is fixed at the first grid time >= start (start is a grid time; the
    # relative tolerance absorbs float32 rounding of the observation's time)
    fixed = jnp.asarray(obs.time, dtype) >= jnp.asarray(inst.start, dtype) * (1 - 1e-5)
    after = jnp.log(state["strike"].astype(dtype)) - jnp.log(obs.spot)
    before = jnp.broadcast_to(jnp.log(jnp.asarray(inst.moneyness, dtype)), after.shape)
    return jnp.where(fixed, after, before)


def forward_strike(instrument: int | None = None) -> Feature:
    """log(K / S): a `ForwardStart`'s strike relative to the spot. Before its start date
    the strike is not fixed yet and will be moneyness x S(start), so the feature is
    log(moneyness); from the start date on, log(K / S) with the fixed K."""
    return Feature(_forward_strike, params=(("instrument", _check_instrument(instrument)),))


def default_features(reference: float = 100.0, book_scale: float = 1.0,
                     variance: bool = False) -> tuple:
    """`NeuralHedge`'s features when none are given: (log_moneyness(reference),
    sqrt_time_to_maturity, position(book_scale), delta(book_scale)), and `volatility` with
    `variance=True`."""
    out = (log_moneyness(reference), sqrt_time_to_maturity, position(book_scale),
           delta(book_scale))
    return out + (volatility,) if variance else out
