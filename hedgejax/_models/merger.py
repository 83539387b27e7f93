"""Merger (risk) arbitrage world: a target's shares under a pending cash or stock-for-stock
offer, which completes (the target becomes the offer) or breaks (the target falls back to its
stand-alone value) at resolution.

Three prices, in currency per share:

- the acquirer's A_t and the target's stand-alone value V_t: correlated geometric Brownian
  motions (no dividends), stepped exactly in log space;
- the offer per target share, O = cash + exchange_ratio x A. Cash paid at resolution earns
  `rate` afterwards, so the completed target is worth cash e^{r (t - t_res)} + ratio A_t;
- the target's market price. Before resolution the market values the outcome at its
  risk-neutral (market-implied) deal probability q:

      S_t = q (cash D(t) + ratio A_t) + (1 - q) V_t,

  D(t) the value at t of 1 paid at resolution: e^{-r (close - t)} for a known close date,
  lambda / (lambda + r) for an exponential resolution time of mean `close` (lambda =
  1 / close). The deal spread is O - S = (1 - q)(O - V) (with D = 1), so the spread is the
  implied deal probability q = (S - V) / (O - V) (Brown and Raymond 1986, "Risk arbitrage
  and the prediction of successful corporate takeovers", Financial Management 15(3)).
  After resolution S_t = cash e^{r (t - t_res)} + ratio A_t (completed) or V_t (broken):
  a jump up by (1 - q)(O - V) or down by q (O - V).

The deal completes with the real-world probability p, which may differ from q: p > q is the
risk premium merger arbitrageurs earn for bearing break risk, many small gains and a rare
large loss (Mitchell and Pulvino 2001, "Characteristics of risk and return in risk
arbitrage", J. Finance 56(6): "picking up nickels in front of a steamroller"; Baker and
Savasoglu 2002, "Limited arbitrage in mergers and acquisitions", J. Financial Economics 64).
`risk_neutral()` sets p = q and the drifts to `rate`, under which e^{-rt} S_t is a
martingale; the deal outcome is independent of A and V.

Prices of European calls and puts on the target (`hj.price`, `hj.greeks`) are covered when
the deal resolves at a known date `close` no later than the option's maturity T: the
mixture q x (option on O_T) + (1 - q) x (option on V_T), with Black-Scholes legs (an
option on cash_T + ratio A_T struck at K is `ratio` options on A struck at
(K - cash_T) / ratio, cash_T = cash e^{r (T - close)}). Not covered (ValueError): a random
resolution time, and options maturing before the close (an option on a sum of log-normals).
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._grid import TimeGrid
from .._instruments import EuropeanCall, EuropeanPut
from .._pricing.normal import norm_cdf
from .._pricing.registry import register_pricer
from .._random import Draws, key_words
from .._validate import (
    as_float,
    check,
    check_finite,
    check_n_paths,
    check_nonnegative,
    check_positive,
    float_dtype,
    is_concrete,
    runtime_checked,
)
from .base import AbstractModel, ModelState

# Deal status carried per path in `MergerState.status`.
PENDING, COMPLETED, BROKEN = 0, 1, 2

# Streams of `Draws` used at every step.
_ACQUIRER_STREAM, _STANDALONE_STREAM, _TIMING_STREAM, _OUTCOME_STREAM = 0, 1, 2, 3


def _unit_interval(a):
    return (a >= 0) & (a <= 1)


def _correlation(a):
    return (a >= -1) & (a <= 1)


class MergerState(NamedTuple):
    """`ModelState.aux` of a `MergerTarget`, per path (shape (n_paths,) each).

    Attributes:
        log_acquirer: log of the acquirer's price A_t.
        log_standalone: log of the target's stand-alone value V_t.
        status: 0 pending, 1 completed, 2 broken (int32).
        resolved_at: the time of resolution (years; `close` while pending).
    """

    log_acquirer: jax.Array
    log_standalone: jax.Array
    status: jax.Array
    resolved_at: jax.Array


class MergerTarget(AbstractModel):
    """The target of a pending cash or stock-for-stock offer (module docstring for the maths).

    Args:
        acquirer_spot: the acquirer's share price A_0 (currency, > 0).
        standalone_spot: the target's stand-alone value V_0 (currency per share, > 0): what
            it trades at if the deal breaks (e.g. its undisturbed pre-announcement price).
        acquirer_vol, standalone_vol: annualised vols of A and V (> 0).
        cash: cash paid per target share at completion (currency, >= 0).
        exchange_ratio: acquirer shares paid per target share at completion (>= 0; cash and
            exchange_ratio not both 0).
        p: real-world probability that the deal completes, in [0, 1] (None: q).
        q: the market's (risk-neutral) deal probability, in [0, 1], which sets the price
            S_t = q (cash D(t) + ratio A_t) + (1 - q) V_t. The spread is (1 - q)(O - V).
        close: the known resolution date (years, > 0); with `random_close=True` the mean of
            an exponential resolution time (memoryless: each step of dt resolves with
            probability 1 - e^{-dt / close}). A known date between two grid times resolves
            at the next one.
        correlation: of the Brownian motions of A and V, in [-1, 1].
        rate: continuously compounded risk-free rate (per year); cash earns it after close.
        acquirer_drift, standalone_drift: real-world drifts of A and V (per year); None
            means `rate` (risk-neutral).
        random_close: static; the resolution time is exponential of mean `close`.

    The model's `spot` is the target's price S_0, `div` is 0 (no dividends pending the deal)
    and `vega_field` is "standalone_vol". Prices of calls and puts on the target under this
    model read a target price S other than S_0 as a move of the stand-alone value, with A
    and q fixed: V = (S - q (cash D + ratio A)) / (1 - q) (q < 1), so delta = dV/dS x the
    option's sensitivity to V; `conditioned(state)` sets A, V and q (0 broken, 1 completed)
    per path for `hj.hedge`. `hj.mc_greeks` (pathwise in `spot`) is not supported.

    ModelState: `log_spot` is log S_t, `aux` a `MergerState` (log A, log V, status,
    resolution time); `merger_paths` returns all of them.

    Raises:
        ValueError: naming the parameter, for spots or vols <= 0, negative cash or
            exchange_ratio (or both 0), p or q outside [0, 1], close <= 0, correlation
            outside [-1, 1], non-finite rate or drifts, and with `random_close`,
            1 / close + rate <= 0.

    Example:
        >>> import hedgejax as hj
        >>> deal = hj.MergerTarget(acquirer_spot=100.0, standalone_spot=35.0,
        ...                        acquirer_vol=0.25, standalone_vol=0.3,
        ...                        exchange_ratio=0.5, q=0.8, p=0.9, close=0.5)
        >>> round(float(deal.spot), 4)                   # 0.8 x 50 + 0.2 x 35
        47.0
        >>> round(float(deal.implied_probability()), 4)  # (S - V) / (O - V)
        0.8
    """

    acquirer_spot: jax.Array
    standalone_spot: jax.Array
    acquirer_vol: jax.Array
    standalone_vol: jax.Array
    cash: jax.Array
    exchange_ratio: jax.Array
    p: jax.Array
    q: jax.Array
    close: jax.Array
    correlation: jax.Array
    rate: jax.Array
    acquirer_drift: jax.Array | None
    standalone_drift: jax.Array | None
    random_close: bool = eqx.field(static=True)
    vega_field: ClassVar[str] = "standalone_vol"

    def __init__(self, acquirer_spot, standalone_spot, acquirer_vol, standalone_vol, *,
                 cash=0.0, exchange_ratio=0.0, q, close, p=None, correlation=0.0, rate=0.0,
                 acquirer_drift=None, standalone_drift=None, random_close: bool = False):
        self.acquirer_spot = as_float(acquirer_spot, "acquirer_spot", scalar=True)
        self.standalone_spot = as_float(standalone_spot, "standalone_spot", scalar=True)
        self.acquirer_vol = as_float(acquirer_vol, "acquirer_vol", scalar=True)
        self.standalone_vol = as_float(standalone_vol, "standalone_vol", scalar=True)
        self.cash = as_float(cash, "cash", scalar=True)
        self.exchange_ratio = as_float(exchange_ratio, "exchange_ratio", scalar=True)
        self.q = as_float(q, "q", scalar=True)
        self.p = self.q if p is None else as_float(p, "p", scalar=True)
        self.close = as_float(close, "close", scalar=True)
        self.correlation = as_float(correlation, "correlation", scalar=True)
        self.rate = as_float(rate, "rate", scalar=True)
        self.acquirer_drift = (None if acquirer_drift is None
                               else as_float(acquirer_drift, "acquirer_drift", scalar=True))
        self.standalone_drift = (None if standalone_drift is None
                                 else as_float(standalone_drift, "standalone_drift",
                                               scalar=True))
        if not isinstance(random_close, (bool, np.bool_)):
            raise ValueError(f"random_close must be True or False, got {random_close!r}")
        self.random_close = bool(random_close)

    def __check_init__(self):
        check_positive("acquirer_spot", self.acquirer_spot)
        check_positive("standalone_spot", self.standalone_spot)
        check_positive("acquirer_vol", self.acquirer_vol)
        check_positive("standalone_vol", self.standalone_vol)
        check_nonnegative("cash", self.cash)
        check_nonnegative("exchange_ratio", self.exchange_ratio)
        check("cash + exchange_ratio", self.cash + self.exchange_ratio, lambda a: a > 0,
              "> 0 (an offer of cash and/or acquirer shares)")
        check("p", self.p, _unit_interval, "in [0, 1]")
        check("q", self.q, _unit_interval, "in [0, 1]")
        check_positive("close", self.close)
        check("correlation", self.correlation, _correlation, "in [-1, 1]")
        check_finite("rate", self.rate)
        check_finite("acquirer_drift", self.acquirer_drift)
        check_finite("standalone_drift", self.standalone_drift)
        if self.random_close:
            check("1 / close + rate", 1.0 / self.close + self.rate, lambda a: a > 0,
                  "> 0 (the value lambda / (lambda + rate) of cash paid at an exponential "
                  "resolution time)")

    def replace(self, **changes) -> MergerTarget:
        """A copy with some parameters changed, validated like the constructor (works with
        tracers: `jax.grad(lambda q: f(deal.replace(q=q)))(0.8)`)."""
        names = ("acquirer_spot", "standalone_spot", "acquirer_vol", "standalone_vol", "cash",
                 "exchange_ratio", "q", "close", "p", "correlation", "rate", "acquirer_drift",
                 "standalone_drift", "random_close")
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise ValueError(f"MergerTarget has no parameter {', '.join(unknown)} (parameters: "
                             f"{', '.join(names)})")
        return MergerTarget(**{**{n: getattr(self, n) for n in names}, **changes})

    # --- the contract of AbstractModel -------------------------------------------------

    @property
    def spot(self) -> jax.Array:
        """The target's price S_0 = q (cash D(0) + ratio A_0) + (1 - q) V_0 (currency)."""
        return self.target_price(jnp.log(self.acquirer_spot), jnp.log(self.standalone_spot),
                                 jnp.asarray(PENDING), self.close, jnp.zeros(()))

    @property
    def div(self) -> jax.Array:
        """0: no dividends are modelled pending the deal."""
        return jnp.zeros_like(self.rate)

    @property
    def mu_acquirer(self) -> jax.Array:
        return self.rate if self.acquirer_drift is None else self.acquirer_drift

    @property
    def mu_standalone(self) -> jax.Array:
        return self.rate if self.standalone_drift is None else self.standalone_drift

    def cash_discount(self, t: jax.Array) -> jax.Array:
        """D(t): value at time t (years) of 1 paid at resolution, for a pending deal."""
        if self.random_close:
            intensity = 1.0 / self.close
            return jnp.broadcast_to(intensity / (intensity + self.rate), jnp.shape(t))
        return jnp.exp(-self.rate * (self.close - t))

    def offer_value(self, t: jax.Array | float = 0.0,
                    acquirer: jax.Array | None = None) -> jax.Array:
        """Value at t of the offer pending resolution, cash D(t) + ratio A (currency; A
        defaults to `acquirer_spot`)."""
        acquirer = self.acquirer_spot if acquirer is None else acquirer
        return self.cash * self.cash_discount(jnp.asarray(t)) + self.exchange_ratio * acquirer

    @property
    def spread(self) -> jax.Array:
        """The deal spread at t=0, offer value - target price = (1 - q)(O - V) (currency)."""
        return self.offer_value() - self.spot

    def implied_probability(self, target_price: jax.Array | float | None = None
                            ) -> jax.Array:
        """The deal probability implied by a target price (default S_0): (S - V) / (O - V),
        O the offer's value at t=0 and V `standalone_spot` (Brown and Raymond 1986).

        Raises ValueError (concrete inputs) when the offer equals the stand-alone value (no
        spread to read a probability from) or when `target_price` is not finite or lies
        outside [min(V, O), max(V, O)], where no probability in [0, 1] prices it."""
        target = self.spot if target_price is None else as_float(target_price, "target_price")
        standalone = self.standalone_spot
        offer = self.offer_value()
        if is_concrete(target) and is_concrete(offer) and is_concrete(standalone):
            t_, o_, v_ = (np.asarray(x, dtype=float) for x in (target, offer, standalone))
            if np.any(o_ == v_):
                raise ValueError(f"implied_probability needs an offer ({float(o_):g}) that "
                                 f"differs from standalone_spot ({float(v_):g})")
            lo, hi = min(float(o_), float(v_)), max(float(o_), float(v_))
            if not np.all(np.isfinite(t_)) or np.any((t_ < lo) | (t_ > hi)):
                raise ValueError(f"target_price must be finite and in [{lo:g}, {hi:g}] (between "
                                 f"the stand-alone value and the offer), got {t_}")
        return (target - standalone) / (offer - standalone)

    def target_price(self, log_acquirer, log_standalone, status, resolved_at, t) -> jax.Array:
        """S_t from A, V, the status and resolution time (module docstring)."""
        acquirer, standalone = jnp.exp(log_acquirer), jnp.exp(log_standalone)
        pending = self.q * self.offer_value(t, acquirer) + (1.0 - self.q) * standalone
        completed = (self.cash * jnp.exp(self.rate * (t - resolved_at))
                     + self.exchange_ratio * acquirer)
        return jnp.where(status == PENDING, pending,
                         jnp.where(status == COMPLETED, completed, standalone))

    def init(self, path_index: jax.Array) -> ModelState:
        shape = path_index.shape
        aux = MergerState(
            log_acquirer=jnp.broadcast_to(jnp.log(self.acquirer_spot), shape),
            log_standalone=jnp.broadcast_to(jnp.log(self.standalone_spot), shape),
            status=jnp.full(shape, PENDING, jnp.int32),
            resolved_at=jnp.broadcast_to(self.close, shape))
        return ModelState(log_spot=jnp.broadcast_to(jnp.log(self.spot), shape), aux=aux)

    def step(self, state: ModelState, t: jax.Array, dt: float, draws: Draws) -> ModelState:
        aux: MergerState = state.aux
        z_acquirer = draws.normal(_ACQUIRER_STREAM)
        dtype = z_acquirer.dtype
        rho = self.correlation.astype(dtype)
        z_standalone = (rho * z_acquirer
                        + jnp.sqrt(jnp.maximum(1.0 - rho * rho, 0.0))
                        * draws.normal(_STANDALONE_STREAM))

        def gbm(log_x, mu, vol, z):
            mu, vol = mu.astype(dtype), vol.astype(dtype)
            return log_x + (mu - 0.5 * vol * vol) * dt + vol * dt**0.5 * z

        log_a = gbm(aux.log_acquirer, self.mu_acquirer, self.acquirer_vol, z_acquirer)
        log_v = gbm(aux.log_standalone, self.mu_standalone, self.standalone_vol, z_standalone)
        t_next = t + dt
        if self.random_close:
            due = draws.uniform(_TIMING_STREAM) < -jnp.expm1(-dt / self.close.astype(dtype))
        else:
            # a close date between grid times resolves at the next one (1e-4 dt: rounding)
            due = jnp.broadcast_to(t_next >= self.close.astype(dtype) - 1e-4 * dt,
                                   log_a.shape)
        resolve = (aux.status == PENDING) & due
        completes = draws.uniform(_OUTCOME_STREAM) < self.p.astype(dtype)
        status = jnp.where(resolve, jnp.where(completes, COMPLETED, BROKEN), aux.status)
        resolved_at = jnp.where(resolve, t_next, aux.resolved_at)
        log_spot = jnp.log(self.target_price(log_a, log_v, status, resolved_at, t_next))
        new = MergerState(log_a, log_v, status.astype(jnp.int32), resolved_at)
        return ModelState(log_spot=log_spot.astype(state.log_spot.dtype), aux=new)

    def risk_neutral(self) -> MergerTarget:
        """p = q, drifts = rate."""
        return eqx.tree_at(lambda m: (m.p, m.acquirer_drift, m.standalone_drift), self,
                           (self.q, None, None), is_leaf=lambda x: x is None)

    def conditioned(self, state: ModelState) -> MergerTarget:
        """This model at the observed A, V and deal status of every path: q becomes 1 on
        completed paths and 0 on broken ones (shape (n_paths,) fields)."""
        aux = state.aux
        if not isinstance(aux, MergerState):
            return self
        q = jnp.where(aux.status == PENDING, self.q,
                      jnp.where(aux.status == COMPLETED, 1.0, 0.0)).astype(self.q.dtype)
        return eqx.tree_at(lambda m: (m.acquirer_spot, m.standalone_spot, m.q), self,
                           (jnp.exp(aux.log_acquirer).astype(self.acquirer_spot.dtype),
                            jnp.exp(aux.log_standalone).astype(self.standalone_spot.dtype),
                            q))


# ---------------------------------------------------------------------------------------
# Prices of European options on the target (known close date <= maturity)
# ---------------------------------------------------------------------------------------


def _black_scholes(spot, strike, vol, rate, tau, sign):
    """Black-Scholes price (no dividend), tau > 0, strike > 0."""
    sd = vol * jnp.sqrt(tau)
    d1 = (jnp.log(spot / strike) + rate * tau) / sd + 0.5 * sd
    d2 = d1 - sd
    return sign * (spot * norm_cdf(sign * d1) - strike * jnp.exp(-rate * tau) * norm_cdf(sign * d2))


def _target_option(model: MergerTarget, inst, log_spot, tau, sign: float) -> jax.Array:
    if model.random_close:
        raise ValueError("price of an option on a MergerTarget with random_close=True is not "
                         "covered (no closed form): use hj.mc_price")
    maturity = inst.maturity
    if is_concrete(maturity) and is_concrete(model.close):
        if np.any(np.asarray(model.close) > np.asarray(maturity)):
            raise ValueError(
                f"price of an option on a MergerTarget needs close <= maturity (the deal "
                f"resolved by expiry), got close={float(np.max(model.close)):g}, "
                f"maturity={float(np.min(maturity)):g}; use hj.mc_price")
    else:
        maturity = eqx.error_if(maturity, jnp.any(model.close > maturity),
                                "MergerTarget option price needs close <= maturity")
    r = model.rate
    t = maturity - tau
    live = tau > 0
    tau_safe = jnp.where(live, tau, 1.0)
    spot = jnp.exp(log_spot)
    strike = inst.strike
    q = model.q
    acquirer = model.acquirer_spot
    offer_now = model.offer_value(t, acquirer)
    # the stand-alone value consistent with this target price (A and q fixed)
    below_one = q < 1
    standalone = jnp.where(below_one,
                           (spot - q * offer_now) / jnp.where(below_one, 1.0 - q, 1.0),
                           model.standalone_spot)
    # offer leg: O_T = cash_T + ratio A_T
    cash_T = model.cash * jnp.exp(r * (maturity - model.close))
    ratio = model.exchange_ratio
    has_shares = ratio > 0
    strike_a = (strike - cash_T) / jnp.where(has_shares, ratio, 1.0)
    positive = strike_a > 0
    option_a = ratio * _black_scholes(acquirer, jnp.where(positive, strike_a, 1.0),
                                      model.acquirer_vol, r, tau_safe, sign)
    discount = jnp.exp(-r * tau_safe)
    # a strike at or below the cash part: the call is a forward, the put worthless
    deep = jnp.where(sign > 0, ratio * acquirer + (cash_T - strike) * discount, 0.0)
    share_offer = jnp.where(positive, option_a, deep)
    cash_offer = discount * jnp.maximum(sign * (cash_T - strike), 0.0)
    offer_leg = jnp.where(has_shares, share_offer, cash_offer)
    standalone_leg = _black_scholes(standalone, strike, model.standalone_vol, r, tau_safe,
                                    sign)
    value = q * offer_leg + (1.0 - q) * standalone_leg
    return jnp.where(live, value, jnp.maximum(sign * (spot - strike), 0.0))


@register_pricer(MergerTarget, EuropeanCall)
def _call(model: MergerTarget, inst: EuropeanCall, log_spot, tau) -> jax.Array:
    return _target_option(model, inst, log_spot, tau, 1.0)


@register_pricer(MergerTarget, EuropeanPut)
def _put(model: MergerTarget, inst: EuropeanPut, log_spot, tau) -> jax.Array:
    return _target_option(model, inst, log_spot, tau, -1.0)


# ---------------------------------------------------------------------------------------
# Paths of all three prices
# ---------------------------------------------------------------------------------------


class MergerPaths(NamedTuple):
    """Simulated prices of a `MergerTarget` world (currency per share), shape (n_paths,) at
    the grid's end, or (n_paths, n_steps + 1) with `keep_path=True`.

    Attributes:
        target: the target's price S (the paths `hj.simulate` gives for the same key).
        acquirer: the acquirer's price A.
        standalone: the target's stand-alone value V.
        status: 0 pending, 1 completed, 2 broken (int32).
    """

    target: jax.Array
    acquirer: jax.Array
    standalone: jax.Array
    status: jax.Array


@eqx.filter_jit
def _scan(model: MergerTarget, grid: TimeGrid, n_paths: int, key: jax.Array,
          keep_path: bool) -> MergerPaths:
    dtype = float_dtype()
    words = key_words(key)
    path_index = jnp.arange(n_paths, dtype=jnp.uint32)
    state = model.init(path_index)
    state = state._replace(log_spot=state.log_spot.astype(dtype))

    def view(state):
        aux = state.aux
        return MergerPaths(jnp.exp(state.log_spot), jnp.exp(aux.log_acquirer),
                           jnp.exp(aux.log_standalone), aux.status)

    def body(state, i):
        state = model.step(state, i.astype(dtype) * grid.dt, grid.dt,
                           Draws(words, path_index, i, dtype))
        return state, (view(state) if keep_path else None)

    last, history = lax.scan(body, state, jnp.arange(grid.n_steps, dtype=jnp.int32))
    if not keep_path:
        return view(last)
    first = view(state)
    return jax.tree.map(lambda a, rest: jnp.concatenate([a[None], rest]).T, first, history)


def merger_paths(model: MergerTarget, grid: TimeGrid, n_paths: int, key: jax.Array, *,
                 keep_path: bool = False) -> MergerPaths:
    """Target, acquirer and stand-alone prices and the deal status of `n_paths` paths of
    `model` (real-world: p and the drifts; pass `model.risk_neutral()` for q), at the end of
    `grid` or at every grid time with `keep_path=True`. Draws are those of `hj.simulate`
    and `hj.hedge` for the same key: the target's paths are identical.

    Example:
        >>> import hedgejax as hj, jax
        >>> deal = hj.MergerTarget(100.0, 35.0, 0.25, 0.3, exchange_ratio=0.5, q=1.0,
        ...                        close=0.5)
        >>> end = hj.merger_paths(deal, hj.TimeGrid(0.5, 5), 4, jax.random.key(0))
        >>> bool(jax.numpy.allclose(end.target, 0.5 * end.acquirer))   # completed: O
        True
    """
    if not isinstance(model, MergerTarget):
        raise ValueError(f"model must be a MergerTarget, got {type(model).__name__}")
    if not isinstance(model, MergerTarget):
        raise ValueError(f"model must be a MergerTarget, got {type(model).__name__}")
    if not isinstance(grid, TimeGrid):
        raise ValueError(f"grid must be a TimeGrid, got {type(grid).__name__}")
    n_paths = check_n_paths(n_paths, model)
    model = runtime_checked(model)
    return _scan(model, grid, n_paths, key, bool(keep_path))
