"""Path-dependent instruments: barriers, Asians, lookbacks, forward starts, one-touches and
variance swaps.

Each one declares the **path state** its payoff needs (a running extreme, a knocked or
touched flag, a running sum of fixings, a fixed strike, the realised variance so far) and
how one step of a simulation updates it. `hedge()`, `mc_price()` and `simulate()` carry
that state through their scan for every path (never a paths x steps array), and its pricers
(`price(model, inst, spot, t, state=...)`) are conditioned on it, so every strategy works
mid-life.

Conventions (as for the European instruments): strikes, barriers and cash in currency,
times in years from t = 0, log-spot is the natural log of the spot.

Schedules. `monitoring=n` (barriers, lookbacks) and `fixings=n` (Asians) mean n equally
spaced dates maturity x k / n, k = 1..n (t = 0 is not a date; a lookback's running extreme
starts at the spot at t = 0). In `hedge()` every date must be a time of the hedging grid
(`ValueError` otherwise); an Asian's `fixings=None` means one fixing per grid step up to its
maturity there (and in `mc_price`, one per simulation step), while `price()` prices
`fixings=None` as a continuous average. `monitoring=None` is continuous monitoring: in
simulation, between grid times the path's extreme is drawn from the Brownian bridge
conditioned on the two endpoints (exact for Black-Scholes, with the step's starting
variance for Heston and the diffusion part for Merton; module `_hedge`), so a barrier is hit
with the right probability and no grid bias.

The path state at time t when none is given (`state=None`) is that of a path that was flat
at the current spot until t: extremes at the spot, past fixings equal to the spot, a forward
start's strike at moneyness x spot, no realised variance, and a barrier knocked (or a touch
made) only if the spot is at or beyond it (for discrete monitoring: and a date has passed).
Greeks hold the state fixed (the hedger's delta: the path so far cannot move).
"""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._instruments import AbstractInstrument
from ._validate import (
    check,
    check_finite,
    check_nonnegative,
    check_positive,
    float_param,
    is_concrete,
)

PathState = dict[str, jax.Array]

BARRIER_KINDS = ("down-and-out", "down-and-in", "up-and-out", "up-and-in")
OPTIONS = ("call", "put")
AVERAGES = ("arithmetic", "geometric")
PAY_AT = ("hit", "expiry")

# Relative tolerance when counting the schedule dates at or before a time t (float32 times
# on the grid are within a few ulps of the dates).
_DATE_TOL = 1e-5


class PathStep(eqx.Module):
    """What one simulation step tells the path state, for every path.

    Attributes:
        step: index j of the grid time just reached (int32 scalar, 1..n_steps).
        time: t_j (years).
        dt: the step length (years; static).
        prev_log_spot: log S at t_{j-1}, shape (n_paths,).
        log_spot: log S at t_j, shape (n_paths,).
        low, high: the minimum and maximum of log S over [t_{j-1}, t_j]: drawn from the
            Brownian bridge between the endpoints when a continuously monitored instrument
            needs them, else the smaller and larger endpoint.
    """

    step: jax.Array
    time: jax.Array
    dt: float = eqx.field(static=True)
    prev_log_spot: jax.Array
    log_spot: jax.Array
    low: jax.Array
    high: jax.Array


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {name}={value!r}")


def _check_count(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be None or an integer >= 1, got {name}={value!r}")


def dates_done(t: jax.Array, maturity: jax.Array, n: int) -> jax.Array:
    """How many of the n dates maturity x k / n (k = 1..n) are at or before t (float)."""
    k = jnp.floor(t * n / maturity + _DATE_TOL)
    return jnp.clip(k, 0, n)


def _is_date(step: jax.Array, dt: float, maturity: jax.Array, n: int) -> jax.Array:
    """Whether grid step j (time j dt) is one of the n dates maturity x k / n, the dates
    being on the grid (every `per` steps)."""
    per = jnp.maximum(jnp.round(maturity / (n * dt)), 1).astype(jnp.int32)
    return (step % per == 0) & (step >= per) & (step <= n * per)


def _vanilla(option: str, spot: jax.Array, strike: jax.Array) -> jax.Array:
    sign = 1.0 if option == "call" else -1.0
    return jnp.maximum(sign * (spot - strike), 0.0)


class AbstractPathDependent(AbstractInstrument):
    """An instrument whose payoff depends on the path, through a path state it declares.

    Subclasses implement `path_state`, `update` and `path_payoff`; `payoff(spot)` is the
    payoff of a path that stayed at `spot` (a flat path). A pricer registered for a
    path-dependent type has the signature `fn(model, inst, log_spot, tau, state)`.
    """

    @property
    def continuous(self) -> bool:
        """Whether the simulation must draw each step's extremes from the Brownian bridge."""
        return False

    @abc.abstractmethod
    def path_state(self, log_spot: jax.Array, t: jax.Array) -> PathState:
        """The state of a path that was flat at exp(log_spot) until time t (years); arrays
        shaped like `log_spot`."""

    @abc.abstractmethod
    def update(self, state: PathState, step: PathStep) -> PathState:
        """The state after one simulation step."""

    @abc.abstractmethod
    def path_payoff(self, state: PathState, spot: jax.Array, rate: jax.Array) -> jax.Array:
        """Cash at maturity given the state at maturity and S_T (`rate`: the continuously
        compounded rate at which cash paid before maturity accrues to it)."""

    def payoff(self, spot: jax.Array) -> jax.Array:
        log_spot = jnp.log(spot)
        return self.path_payoff(self.path_state(log_spot, self.maturity), spot,
                                jnp.zeros_like(log_spot))

    def smoothed_payoff(self, spot: jax.Array, width: jax.Array) -> jax.Array:
        raise TypeError(f"{type(self).__name__} is path-dependent: it has no smoothed "
                        "payoff of S_T (mc_greeks uses finite differences for it)")

    def schedule(self) -> tuple[str, int] | None:
        """(name, n) of the instrument's discrete dates, which must lie on a hedging grid,
        or None."""
        return None

    def check_state(self, state: PathState, name: str = "state") -> None:
        """Raise `ValueError` naming the entry when a given state is out of its range
        (concrete values; the names and types are checked by `price`/`greeks`)."""


class Barrier(AbstractPathDependent):
    """A barrier option: a European call or put that is knocked out (or in) when the spot
    touches `barrier`.

    Args:
        strike: strike (currency, > 0).
        barrier: barrier level (currency, > 0).
        maturity: years (> 0).
        kind: "down-and-out", "down-and-in", "up-and-out" or "up-and-in".
        option: "call" or "put".
        rebate: cash (>= 0) paid **at expiry** to the holder of a knocked-out option (out
            kinds), or of an in option that was never knocked in (in kinds).
        monitoring: None for continuous monitoring, or n >= 1 equally spaced dates
            maturity x k / n (module docstring).

    Path state: ``knocked`` (bool), whether the barrier has been reached (at or beyond it).
    Pricing under Black-Scholes: Merton (1973), Reiner and Rubinstein (1991) with the rebate
    at expiry; discrete monitoring by the Broadie, Glasserman and Kou (1997) shift.
    """

    strike: jax.Array = eqx.field(converter=float_param("strike"))
    barrier: jax.Array = eqx.field(converter=float_param("barrier"))
    maturity: jax.Array = eqx.field(converter=float_param("maturity"))
    kind: str = eqx.field(static=True, default="down-and-out")
    option: str = eqx.field(static=True, default="call")
    rebate: jax.Array = eqx.field(converter=float_param("rebate"), default=0.0)
    monitoring: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_positive("strike", self.strike)
        check_positive("barrier", self.barrier)
        check_positive("maturity", self.maturity)
        check_nonnegative("rebate", self.rebate)
        _check_choice("kind", self.kind, BARRIER_KINDS)
        _check_choice("option", self.option, OPTIONS)
        _check_count("monitoring", self.monitoring)

    @property
    def down(self) -> bool:
        return self.kind.startswith("down")

    @property
    def knock_in(self) -> bool:
        return self.kind.endswith("-in")

    @property
    def continuous(self) -> bool:
        return self.monitoring is None

    def schedule(self):
        return None if self.monitoring is None else ("monitoring", self.monitoring)

    def beyond(self, log_spot: jax.Array) -> jax.Array:
        """Whether log_spot is at or beyond the barrier."""
        log_b = jnp.log(self.barrier)
        return log_spot <= log_b if self.down else log_spot >= log_b

    def path_state(self, log_spot, t):
        knocked = self.beyond(log_spot)
        if self.monitoring is not None:
            knocked = knocked & (dates_done(t, self.maturity, self.monitoring) >= 1)
        return {"knocked": knocked}

    def update(self, state, step):
        if self.monitoring is None:
            hit = self.beyond(step.low if self.down else step.high)
        else:
            hit = (_is_date(step.step, step.dt, self.maturity, self.monitoring)
                   & self.beyond(step.log_spot))
        return {"knocked": state["knocked"] | hit}

    def path_payoff(self, state, spot, rate):
        vanilla = _vanilla(self.option, spot, self.strike)
        rebate = jnp.broadcast_to(self.rebate, vanilla.shape).astype(vanilla.dtype)
        if self.knock_in:
            return jnp.where(state["knocked"], vanilla, rebate)
        return jnp.where(state["knocked"], rebate, vanilla)


class OneTouch(AbstractPathDependent):
    """Pays `payout` if the spot touches `barrier` before `maturity` (continuous
    monitoring). The direction is decided at inception: a touch from above if the spot then
    is above the barrier, else from below.

    Args:
        barrier: level (currency, > 0).
        maturity: years (> 0).
        payout: cash paid (finite).
        pay_at: "hit" (paid when the barrier is touched; in a hedge the cash accrues at
            the world's rate to the horizon, with the touch dated at the end of the grid
            step in which it happens) or "expiry" (paid at maturity).

    Path state: ``down`` (bool, a touch from above), ``touched`` (bool) and ``hit_time``
    (years; the maturity while untouched). Pricing under Black-Scholes: Rubinstein and Reiner
    (1991), binary barrier options (Haug 2007, section 4.19).
    """

    barrier: jax.Array = eqx.field(converter=float_param("barrier"))
    maturity: jax.Array = eqx.field(converter=float_param("maturity"))
    payout: jax.Array = eqx.field(converter=float_param("payout"), default=1.0)
    pay_at: str = eqx.field(static=True, default="hit")

    def __check_init__(self):
        check_positive("barrier", self.barrier)
        check_positive("maturity", self.maturity)
        check_finite("payout", self.payout)
        _check_choice("pay_at", self.pay_at, PAY_AT)

    @property
    def continuous(self) -> bool:
        return True

    def path_state(self, log_spot, t):
        log_b = jnp.log(self.barrier)
        touched = log_spot == log_b
        hit_time = jnp.where(touched, t, self.maturity).astype(log_spot.dtype)
        return {"down": log_spot > log_b, "touched": touched, "hit_time": hit_time}

    def update(self, state, step):
        log_b = jnp.log(self.barrier)
        hit = jnp.where(state["down"], step.low <= log_b, step.high >= log_b)
        new = hit & ~state["touched"]
        hit_time = jnp.where(new, step.time.astype(state["hit_time"].dtype),
                             state["hit_time"])
        return {"down": state["down"], "touched": state["touched"] | hit,
                "hit_time": hit_time}

    def path_payoff(self, state, spot, rate):
        payout = jnp.broadcast_to(self.payout, spot.shape).astype(spot.dtype)
        if self.pay_at == "hit":
            payout = payout * jnp.exp(rate * (self.maturity - state["hit_time"]))
        return jnp.where(state["touched"], payout, jnp.zeros_like(payout))


class Lookback(AbstractPathDependent):
    """A lookback option on the running minimum or maximum of the spot since t = 0.

    Floating strike (`strike=None`): a call pays S_T - min S, a put max S - S_T. Fixed
    strike: a call pays max(max S - strike, 0), a put max(strike - min S, 0).

    Args:
        maturity: years (> 0).
        strike: None (floating strike) or the fixed strike (currency, > 0).
        option: "call" or "put".
        monitoring: None (continuous) or n dates maturity x k / n; the spot at t = 0 always
            counts.

    Path state: ``extreme``, the **log** of the running minimum (floating call, fixed put)
    or maximum (floating put, fixed call); a running minimum above the spot (or maximum
    below it) is impossible on a path and is priced as the spot itself. Pricing under
    Black-Scholes: Goldman, Sosin and Gatto (1979) floating, Conze and Viswanathan (1991)
    fixed; discrete monitoring by the Broadie, Glasserman and Kou (1999) shift of the
    extreme.
    """

    maturity: jax.Array = eqx.field(converter=float_param("maturity"))
    strike: jax.Array | None = eqx.field(
        converter=lambda x: None if x is None else float_param("strike")(x), default=None)
    option: str = eqx.field(static=True, default="call")
    monitoring: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_positive("maturity", self.maturity)
        check_positive("strike", self.strike)
        _check_choice("option", self.option, OPTIONS)
        _check_count("monitoring", self.monitoring)

    @property
    def floating(self) -> bool:
        return self.strike is None

    @property
    def uses_min(self) -> bool:
        """Whether the payoff reads the running minimum (else the maximum)."""
        return (self.option == "call") == self.floating

    @property
    def continuous(self) -> bool:
        return self.monitoring is None

    def schedule(self):
        return None if self.monitoring is None else ("monitoring", self.monitoring)

    def path_state(self, log_spot, t):
        return {"extreme": log_spot}

    def update(self, state, step):
        if self.monitoring is None:
            point = step.low if self.uses_min else step.high
        else:
            date = _is_date(step.step, step.dt, self.maturity, self.monitoring)
            point = jnp.where(date, step.log_spot, state["extreme"])
        pick = jnp.minimum if self.uses_min else jnp.maximum
        return {"extreme": pick(state["extreme"], point)}

    def path_payoff(self, state, spot, rate):
        extreme = jnp.exp(state["extreme"])
        if self.floating:
            return _vanilla(self.option, spot, extreme)
        return _vanilla(self.option, extreme, self.strike)


class Asian(AbstractPathDependent):
    """An average-price Asian option: a call pays max(A - strike, 0), a put
    max(strike - A, 0), A the arithmetic or geometric mean of the spot at the fixings.

    Args:
        strike: currency (> 0).
        maturity: years (> 0).
        option: "call" or "put".
        average: "arithmetic" or "geometric".
        fixings: None or n >= 1 fixings at maturity x k / n, k = 1..n (module docstring:
            None is every step of the hedging grid in `hedge()`, every simulation step in
            `mc_price`, a continuous average in `price()`).

    Path state: ``total``, the sum of the fixings so far (of S, or of log S for the geometric
    average). Pricing under Black-Scholes: geometric by Kemna and Vorst (1990) and its
    discrete version; arithmetic by moment matching (Turnbull and Wakeman 1991, Levy 1992)
    conditioned on the accrued average.
    """

    strike: jax.Array = eqx.field(converter=float_param("strike"))
    maturity: jax.Array = eqx.field(converter=float_param("maturity"))
    option: str = eqx.field(static=True, default="call")
    average: str = eqx.field(static=True, default="arithmetic")
    fixings: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_positive("strike", self.strike)
        check_positive("maturity", self.maturity)
        _check_choice("option", self.option, OPTIONS)
        _check_choice("average", self.average, AVERAGES)
        _check_count("fixings", self.fixings)

    @property
    def geometric(self) -> bool:
        return self.average == "geometric"

    def schedule(self):
        return None if self.fixings is None else ("fixings", self.fixings)

    def check_state(self, state, name="state"):
        if not self.geometric:
            check(f"{name}['total']", state["total"], lambda a: a >= 0,
                  ">= 0 (a sum of prices)")

    def _fixing(self, log_spot):
        return log_spot if self.geometric else jnp.exp(log_spot)

    def path_state(self, log_spot, t):
        if self.fixings is None:
            done = t / self.maturity     # a continuous average: the fraction elapsed
        else:
            done = dates_done(t, self.maturity, self.fixings)
        return {"total": done * self._fixing(log_spot)}

    def update(self, state, step):
        if self.fixings is None:
            raise ValueError("Asian.fixings must be resolved to a number of fixings before "
                             "simulation (hedge() and mc_price() do it)")
        date = _is_date(step.step, step.dt, self.maturity, self.fixings)
        fixing = self._fixing(step.log_spot)
        return {"total": state["total"] + jnp.where(date, fixing, jnp.zeros_like(fixing))}

    def path_payoff(self, state, spot, rate):
        n = 1.0 if self.fixings is None else self.fixings
        mean = state["total"] / n
        average = jnp.exp(mean) if self.geometric else mean
        return _vanilla(self.option, average, self.strike)


class ForwardStart(AbstractPathDependent):
    """A forward-start option: at `start` its strike is fixed at moneyness x S(start); at
    `maturity` it pays like a European call or put with that strike.

    Args:
        start: the strike-fixing time (years, >= 0 and < maturity; in `hedge()` a grid time).
        maturity: years (> 0).
        moneyness: strike / S(start) (> 0).
        option: "call" or "put".

    Path state: ``strike``, the strike once fixed (before `start`, moneyness x the current
    spot). Pricing under Black-Scholes: Rubinstein (1991).
    """

    start: jax.Array = eqx.field(converter=float_param("start"))
    maturity: jax.Array = eqx.field(converter=float_param("maturity"))
    moneyness: jax.Array = eqx.field(converter=float_param("moneyness"), default=1.0)
    option: str = eqx.field(static=True, default="call")

    def __check_init__(self):
        check_nonnegative("start", self.start)
        check_positive("maturity", self.maturity)
        check_positive("moneyness", self.moneyness)
        _check_choice("option", self.option, OPTIONS)
        # compare with a concrete maturity in numpy (a jnp comparison would be staged inside
        # a trace, e.g. fit's step, even for concrete arrays); both traced: a run-time check
        maturity = self.maturity
        if is_concrete(maturity):
            maturity = np.asarray(maturity)
        elif is_concrete(self.start):
            return
        check("start", self.start, lambda a: a < maturity,
              "< maturity (the strike is fixed before expiry)")

    def check_state(self, state, name="state"):
        check(f"{name}['strike']", state["strike"], lambda a: a > 0, "finite and > 0")

    def path_state(self, log_spot, t):
        return {"strike": self.moneyness * jnp.exp(log_spot)}

    def update(self, state, step):
        fix = jnp.round(self.start / step.dt).astype(jnp.int32) == step.step
        return {"strike": jnp.where(fix, self.moneyness * jnp.exp(step.log_spot),
                                    state["strike"])}

    def path_payoff(self, state, spot, rate):
        return _vanilla(self.option, spot, state["strike"])


class VarianceSwap(AbstractPathDependent):
    """A variance swap: pays notional x (realised variance - strike_vol^2) at maturity.

    Realised variance is the sum of the squared log returns of the simulation grid up to
    maturity divided by the maturity (each return annualised by the grid's dt: the mean
    of r_i^2 / dt), with zero mean assumed.

    Args:
        maturity: years (> 0).
        strike_vol: the variance strike's square root, an annual vol (>= 0).
        notional: currency per unit of annual variance (finite; the vega notional is
            2 x strike_vol x notional).

    Path state: ``sum_sq``, the sum of the squared log returns so far. Prices: accrued plus
    the model's expected remaining variance (Black-Scholes vol^2; Merton vol^2 plus the
    jumps' jump_rate x E[J^2]; Heston theta + (v - theta)(1 - e^{-kappa tau})/(kappa tau),
    Gatheral 2006, ch. 11); continuous-monitoring limits (the daily grid adds about
    (r - q - vol^2 / 2)^2 dt).
    """

    maturity: jax.Array = eqx.field(converter=float_param("maturity"))
    strike_vol: jax.Array = eqx.field(converter=float_param("strike_vol"))
    notional: jax.Array = eqx.field(converter=float_param("notional"), default=1.0)

    def __check_init__(self):
        check_positive("maturity", self.maturity)
        check_nonnegative("strike_vol", self.strike_vol)
        check_finite("notional", self.notional)

    def check_state(self, state, name="state"):
        check(f"{name}['sum_sq']", state["sum_sq"], lambda a: a >= 0,
              ">= 0 (a sum of squared returns)")

    def path_state(self, log_spot, t):
        return {"sum_sq": jnp.zeros_like(log_spot)}

    def update(self, state, step):
        last = jnp.round(self.maturity / step.dt).astype(jnp.int32)
        r = step.log_spot - step.prev_log_spot
        return {"sum_sq": state["sum_sq"] + jnp.where(step.step <= last, r * r,
                                                      jnp.zeros_like(r))}

    def path_payoff(self, state, spot, rate):
        realised = state["sum_sq"] / self.maturity
        return self.notional * (realised - self.strike_vol**2)


PATH_DEPENDENT = (Barrier, OneTouch, Lookback, Asian, ForwardStart, VarianceSwap)


# Draw streams of the Brownian bridge's minimum and maximum (the models use the low ids,
# the costs 14 and 15).
BRIDGE_STREAMS = (12, 13)


def path_step(model, before, after, step: jax.Array, time: jax.Array, dt: float, draws,
              bridge: bool) -> PathStep:
    """The `PathStep` of one simulation step from the world state `before` to `after`.

    With `bridge`, the step's minimum and maximum of log S are drawn from the Brownian
    bridge between the endpoints x0, x1 with the variance rate s2 the model reports for the
    step (`model.bridge_variance(before)`): given U uniform,
    min = (x0 + x1 - sqrt((x1 - x0)^2 - 2 s2 dt log U)) / 2 and the same with + for the
    maximum (independent draws), exactly the laws of the extremes of a Brownian motion with
    drift pinned at both ends (Glasserman 2004, section 6.4; Beaglehole, Dybvig and Zhou
    1997). A model without one (historical paths) gives the endpoints.
    """
    x0, x1 = before.log_spot, after.log_spot
    low, high = jnp.minimum(x0, x1), jnp.maximum(x0, x1)
    var = model.bridge_variance(before) if bridge else None
    if var is not None:
        var = jnp.asarray(var, x0.dtype)
        d2 = (x1 - x0) ** 2
        spread_low = jnp.sqrt(d2 - 2.0 * var * dt * jnp.log(draws.uniform(BRIDGE_STREAMS[0])))
        spread_high = jnp.sqrt(d2 - 2.0 * var * dt * jnp.log(draws.uniform(BRIDGE_STREAMS[1])))
        low = jnp.minimum(0.5 * (x0 + x1 - spread_low), low)
        high = jnp.maximum(0.5 * (x0 + x1 + spread_high), high)
    return PathStep(step=step, time=time, dt=dt, prev_log_spot=x0, log_spot=x1, low=low,
                    high=high)


def _unstacked(book) -> list:
    """The book's instruments, one module each, in the order they were given."""
    out = [None] * len(book)
    for group, idx in zip(book.groups, book.positions, strict=True):
        for j, i in enumerate(idx):
            out[i] = jax.tree.map(lambda x, j=j: x[j], group)
    return out


def on_grid(book, grid):
    """`book` ready for simulation on `grid`: an Asian's `fixings=None` becomes one fixing per
    grid step to its maturity, and every schedule (monitoring dates, fixings, a forward
    start's strike date) is checked to fall on grid times (`ValueError` naming the field
    otherwise). Traced maturities are not checked."""
    import numpy as np

    from ._validate import is_concrete

    dt = grid.dt
    resolve = False
    for group in book.groups:
        if not isinstance(group, AbstractPathDependent):
            continue
        maturity = group.maturity
        if not is_concrete(maturity):
            if isinstance(group, Asian) and group.fixings is None:
                raise ValueError(
                    "Asian.fixings=None (one fixing per grid step) needs a concrete maturity "
                    "to count the steps; under jax.jit/vmap/grad build the book outside the "
                    "traced function or give fixings=n")
            continue
        maturity = np.asarray(maturity, dtype=float)
        tol = max(1e-9, 8 * float(np.finfo(np.asarray(group.maturity).dtype).eps))
        name = type(group).__name__
        if isinstance(group, Asian) and group.fixings is None:
            resolve = True
        schedule = group.schedule()
        if schedule is not None:
            field, n = schedule
            per = maturity / (n * dt)
            bad = (np.abs(per - np.rint(per)) > tol * np.maximum(per, 1.0)) | (np.rint(per) < 1)
            if np.any(bad):
                m = float(maturity[bad][0])
                raise ValueError(
                    f"{name}.{field}={n} puts its dates every {m / n:.6g} years, which are not "
                    f"times of the hedging grid (dt={dt:.6g} years): {field} must divide the "
                    f"maturity's {m / dt:.6g} grid steps")
        if isinstance(group, ForwardStart) and is_concrete(group.start):
            start = np.asarray(group.start, dtype=float)
            steps = start / dt
            off = (np.abs(steps - np.rint(steps)) > tol * np.maximum(steps, 1.0)) & (
                start <= grid.maturity)
            if np.any(off):
                raise ValueError(
                    f"ForwardStart.start={float(start[off][0]):.6g} is not a time of the "
                    f"hedging grid (dt={dt:.6g} years): the strike is fixed at a grid time")
    if not resolve:
        return book
    import dataclasses

    from ._instruments import Book

    instruments = []
    for inst in _unstacked(book):
        if isinstance(inst, Asian) and inst.fixings is None:
            steps = int(np.rint(float(inst.maturity) / dt))
            inst = dataclasses.replace(inst, fixings=max(steps, 1))
        instruments.append(inst)
    return Book(instruments, book.quantity)
