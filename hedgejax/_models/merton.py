"""Merton (1976) jump-diffusion world: geometric Brownian motion plus log-normal price jumps
arriving as a Poisson process, stepped exactly in log space.

Also the Poisson machinery shared with the series price (`hedgejax._pricing.merton`): a
window of a STATIC number of terms starting at a DYNAMIC count, so that any mean is handled
by a fixed-shape (jit-compatible) computation.

The window for a Poisson(m) count starts at n0 = max(0, floor(m - 8.66 sqrt(m))), whose left
tail P(N < n0) <= exp(-8.66^2 / 2) = 5e-17 (Chernoff), and holds `terms` counts
n0 .. n0 + terms - 1. It covers m when the right tail past it is below 5e-17 too, so that less
than 1e-16 of the Poisson mass is left out; the right tail is bounded by
P(N >= n) <= P(N = n) (n + 1) / (n + 1 - m) for n + 1 > m (the pmf ratios beyond n are at most
m / (n + 1)), a cheap scalar test that guards traced use. `poisson_window_terms(m)` is the
static size that covers every mean up to m (checked on a dense grid of means up to 1e5, in
float32 and float64). Log-weights are computed as -stirlerr(n) - log(2 pi n) / 2 - bd0(n, m)
(Loader's form: no cancellation of n log m against log n!): measured against mpmath over the
windows of m = 0.3 .. 1e5, the weights' relative error averaged under the weights is below
3e-15 in float64 and 5e-7 in float32 (n log m - m - log n! directly loses ~1e-11 in float64
and ~1e-2 in float32 at m = 10,000).

Entry points that compile (greeks, hedge, simulate, mc_price, mc_greeks) call
`Merton.prepared(horizon, dt)` first, which sizes the static hints `series_terms` (prices) and
`step_terms` (the per-step jump count) from the concrete parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._random import Draws
from .._validate import (
    as_float,
    check_finite,
    check_int,
    check_nonnegative,
    check_positive,
    is_concrete,
)
from .base import AbstractModel, ModelState

# Poisson mass left out on each side of a window (less than 1e-16 in all).
POISSON_TAIL = 5e-17
# Window start: m - _LEFT_SDS sqrt(m) has P(N < start) <= exp(-_LEFT_SDS^2 / 2) = POISSON_TAIL.
_LEFT_SDS = math.sqrt(2.0 * math.log(1.0 / POISSON_TAIL))
# Static sizing covers POISSON_TAIL / 4 plus two terms (the window start moves by whole
# counts), so that the traced check (at POISSON_TAIL) never refuses a sized window.
_SIZING_TAIL = POISSON_TAIL / 4
_SIZING_MARGIN = 2
# Window sizes are multiples of this (fewer distinct compilations as parameters change).
_TERMS_MULTIPLE = 8
# The largest expected number of jumps (jump_rate x time to maturity, or jump_rate x dt for a
# step) that is accepted; above it the jump part is a diffusion for all purposes, and the
# window (~17 sqrt(m) terms: 5,400 at the cap) grows without need.
MAX_JUMP_MEAN = 1e5
# Terms used when the mean is traced and the model carries no static hint (`series_terms`,
# `step_terms`): enough for a mean up to `covered_mean(64)` = 18.
DEFAULT_SERIES_TERMS = 64
DEFAULT_STEP_TERMS = 64

# Streams of `Draws` used at every step: the diffusion, the jump count, the jump sizes.
_DIFFUSION_STREAM = 0
_COUNT_STREAM = 1
_JUMP_SIZE_STREAM = 2

# Counts below _STIRLING_FROM use log n! from this table; above, Stirling's series.
_STIRLING_FROM = 16
_LOG_FACTORIALS = np.array([math.lgamma(k + 1.0) for k in range(_STIRLING_FROM)])
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def log_poisson_pmf(counts, mean, xp=jnp):
    """log P(N = counts) for N ~ Poisson(mean), mean > 0, counts integer-valued floats >= 0.

    Below 16, n log(m) - m - log n! with a table of log n!; from 16 on, Loader's form
    -stirlerr(n) - log(2 pi n) / 2 - bd0(n, m), bd0 = n log(n / m) + m - n, with stirlerr by
    its asymptotic series (5 terms: truncation below 1.2e-14 at n = 16) and bd0 by a series
    in (n - m) / (n + m) where n is near m, so no large terms cancel. Differentiable in `mean`
    (d/dm = n / m - 1). `xp` is jax.numpy (default) or numpy (static sizing).
    """
    small = counts < _STIRLING_FROM
    index = xp.clip(counts, 0, _STIRLING_FROM - 1).astype(np.int32)
    log_factorial = xp.take(xp.asarray(_LOG_FACTORIALS, dtype=mean.dtype), index)
    direct = counts * xp.log(mean) - mean - log_factorial
    n = xp.maximum(counts, float(_STIRLING_FROM))
    inv = 1.0 / n
    inv2 = inv * inv
    stirlerr = inv * (1 / 12 - inv2 * (1 / 360 - inv2 * (1 / 1260 - inv2 * (
        1 / 1680 - inv2 * (1 / 1188)))))
    diff = n - mean
    # bd0 = n log(n / m) + m - n. Near the mean (|v| < 0.1, v = (n - m) / (n + m)) by the
    # series (n - m) v + 2 n sum_j v^(2j+1) / (2j + 1) (Loader 2000), which never forms the
    # cancelling n log(n / m) and m - n: float32 weights stay within ~1e-7 relative at any
    # mean; the 8 terms leave out less than 1e-17 relative. Further out, by logs.
    v = diff / (n + mean)
    near = xp.abs(v) < 0.1
    v = xp.where(near, v, 0.0)
    v2 = v * v
    tail = 0.0
    for j in range(8, 0, -1):
        tail = (tail + 1.0 / (2 * j + 1)) * v2
    bd0_near = diff * v + 2.0 * n * v * tail
    bd0_far = n * (xp.log(n) - xp.log(mean)) - diff
    bd0 = xp.where(near, bd0_near, bd0_far)
    loader = -stirlerr - _HALF_LOG_2PI - 0.5 * xp.log(n) - bd0
    return xp.where(small, direct, loader)


def window_start(mean, xp=jnp):
    """First count of the window for Poisson(mean): max(0, floor(m - 8.66 sqrt(m))), whose
    left tail is below POISSON_TAIL. No derivative (counts are discrete)."""
    if xp is jnp:
        mean = lax.stop_gradient(mean)
    safe = xp.maximum(mean, 0.0)
    return xp.floor(xp.maximum(safe - _LEFT_SDS * xp.sqrt(safe), 0.0))


def _log_right_tail_bound(end, mean, xp=jnp):
    """log of a bound on P(N >= end) for N ~ Poisson(mean), valid where end + 1 > mean."""
    return (log_poisson_pmf(end, mean, xp)
            + xp.log((end + 1.0) / xp.maximum(end + 1.0 - mean, 1e-30)))


def window_covers(mean, terms: int, xp=jnp):
    """Whether a window of `terms` counts covers Poisson(mean) (module docstring); True for
    mean <= 0 and for NaN (which then propagates into the result). Elementwise, no
    derivative. `xp` is jax.numpy (default) or numpy."""
    if xp is jnp:
        mean = lax.stop_gradient(jnp.asarray(mean))
    positive = mean > 0
    safe = xp.where(positive, mean, 1.0)
    end = window_start(safe, xp) + terms
    ok = (end + 1 > safe) & (_log_right_tail_bound(end, safe, xp) <= math.log(POISSON_TAIL))
    return ~positive | ok


def poisson_window_terms(mean: float) -> int:
    """Static number of window terms that covers Poisson(m) for every m <= `mean` (a
    multiple of 8, at least 8). Raises ValueError above MAX_JUMP_MEAN."""
    mean = float(mean)
    if math.isnan(mean) or mean <= 0:
        return _TERMS_MULTIPLE
    if mean > MAX_JUMP_MEAN:
        raise ValueError(
            f"expected number of jumps {mean:.6g} is above the cap {MAX_JUMP_MEAN:g} of the "
            "Merton Poisson series/count (~17 sqrt(jump_rate x tau) terms per price); there "
            "the jumps act as a diffusion: use fewer, larger jumps, or Black-Scholes at "
            "the total vol")
    start = float(window_start(np.float64(mean), np))
    first = max(start, math.floor(mean))
    ends = first + np.arange(math.ceil(13 * math.sqrt(mean)) + 64, dtype=np.float64)
    bound = _log_right_tail_bound(ends, np.float64(mean), np)
    end = float(ends[np.argmax(bound <= math.log(_SIZING_TAIL))])
    terms = int(end - start) + _SIZING_MARGIN
    return -(-terms // _TERMS_MULTIPLE) * _TERMS_MULTIPLE


@functools.lru_cache(maxsize=64)
def covered_mean(terms: int) -> float:
    """About the largest mean a window of `terms` counts covers (for error messages)."""
    lo, hi = 0.0, MAX_JUMP_MEAN
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if bool(window_covers(np.float64(mid), terms, np)):
            lo = mid
        else:
            hi = mid
    return lo


def _concrete_value(x) -> np.ndarray | None:
    """`x` as a float64 NumPy array when its value is known now: a number, an array, or a
    tracer of jax.grad/jvp outside jit (its primal value); None inside jit or vmap."""
    if isinstance(x, jax.core.Tracer):
        x = lax.stop_gradient(x)
        if isinstance(x, jax.core.Tracer):
            return None
    return np.asarray(x, dtype=np.float64)


def _concrete_max(x) -> float | None:
    """max of `x` (NaN ignored; 0 if all NaN) when its value is known now, else None."""
    values = _concrete_value(x)
    if values is None:
        return None
    values = values[~np.isnan(values)]
    return float(np.max(values)) if values.size else 0.0


def poisson_count(mean: jax.Array, uniform: jax.Array, terms: int | None = None) -> jax.Array:
    """Poisson(`mean`) counts by inversion of uniforms on (0, 1), without loops.

    Over the window n0 .. n0 + W - 1 (module docstring): N = n0 + #{j < W : u < P(N > n0 + j)},
    so P(N >= n) is the Poisson survival function up to the < 1e-16 of mass outside the
    window, below the resolution of the uniforms (2^-24 in float32, 2^-53 in float64): the
    draw is exact to that resolution. Below the mode the test is 1 - u > P(N <= n0 + j) and
    above it u < P(N > n0 + j), each probability summed from its small end, so tail
    probabilities keep full relative precision even in float32. `mean` is a scalar (the same
    for every path) and may be 0 (then N = 0).

    W is sized from `mean` when it is concrete (a number, or an array outside jit); when it
    is traced W is `terms` (default DEFAULT_STEP_TERMS) and a mean the window does not cover
    raises an error at run time, never a wrong count. Returns counts as floats of
    `uniform`'s dtype, with no derivative (counts are discrete).
    """
    top = _concrete_max(mean)
    if top is not None:
        return _poisson_count(mean, uniform, poisson_window_terms(top), False)
    return _poisson_count(mean, uniform, DEFAULT_STEP_TERMS if terms is None else terms, True)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _poisson_count(mean, uniform, terms: int, needs_check: bool) -> jax.Array:
    dtype = uniform.dtype
    mean = lax.stop_gradient(jnp.asarray(mean, dtype))
    positive = mean > 0
    safe = jnp.where(positive, mean, 1.0)[..., None]
    start = window_start(safe)
    counts = start + jnp.arange(terms, dtype=dtype)
    pmf = jnp.where(positive[..., None], jnp.exp(log_poisson_pmf(counts, safe)),
                    (counts == 0).astype(dtype))
    below = jnp.cumsum(pmf, axis=-1)                                  # P(n0 <= N <= n0 + j)
    above = jnp.cumsum(pmf[..., ::-1], axis=-1)[..., ::-1]            # P(n0 + j <= N)
    above = jnp.concatenate([above[..., 1:], jnp.zeros_like(above[..., :1])], axis=-1)
    threshold = jnp.where(counts < jnp.floor(safe), 1 - below, above)
    n = start[..., 0] + jnp.sum(uniform[..., None] < threshold, axis=-1).astype(dtype)
    if needs_check:
        n = eqx.error_if(
            n, ~window_covers(mean, terms),
            f"Merton simulation: jump_rate x dt (the expected number of jumps in one step) "
            f"needs more than the {terms} Poisson terms this traced (jit) step has (enough "
            f"up to about {covered_mean(terms):.4g}). Call model.prepared(dt=...) on the "
            "concrete model before jax.jit, or build it with Merton(..., step_terms=N), or "
            "use more steps")
    return n


class Merton(AbstractModel):
    """Merton (1976) jump-diffusion: a Black-Scholes world whose price also jumps.

    In log space, with N_t a Poisson process of intensity `jump_rate` (jumps per year) and
    i.i.d. jump factors J (the price is multiplied by J at a jump), log J ~ N(jump_mean,
    jump_std^2):

        d log S = (mu - vol^2/2 - jump_rate * kbar) dt + vol dW + log J dN,
        kbar = E[J] - 1 = exp(jump_mean + jump_std^2/2) - 1.

    The term jump_rate * kbar compensates the jumps, so that E[S_t] = S_0 e^{mu t}: `mu` is
    the expected growth rate of the price, jumps included. Under the risk-neutral measure
    (`drift=None`) mu = rate - div and the discounted, dividend-adjusted price
    e^{-(rate - div) t} S_t is a martingale.

    Pathwise derivatives through simulated paths: exact for spot, vol, rate and div, but the
    simulated jump counts carry no derivative, so a gradient w.r.t. `jump_rate` taken
    through `hedge()` or `simulate()` misses the change in the number of jumps (biased). The
    series price (`price`, `greeks`) differentiates exactly in every parameter.

    Args:
        spot: price of the underlying at t=0 (currency, > 0).
        vol: annualised volatility of the diffusion part (> 0, e.g. 0.15 for 15%).
        jump_rate: Poisson intensity, expected jumps per year (>= 0; 0 gives Black-Scholes).
        jump_mean: mean of the log jump factor log J (e.g. -0.1: a typical jump is a ~10%
            fall).
        jump_std: standard deviation of log J (>= 0; 0 makes every jump the same size).
        rate: continuously compounded risk-free rate (per year).
        div: continuously compounded dividend yield (per year).
        drift: real-world expected growth rate mu of the price (per year), including the
            jumps' compensation: E[S_t] = S_0 e^{drift t}. `None` means risk-neutral,
            mu = rate - div.
        series_terms: static hint (keyword only): number of Poisson terms of the series
            price when jump_rate, the jump law or the time to maturity tau are traced
            (inside jit or vmap; outside them the size comes from the values, also under
            jax.grad). None: 64, enough for jump_rate x tau x max(1, 1 + kbar) up to 18. A
            traced price that needs more raises an error at run time, never a wrong number.
            greeks(), hedge(), simulate(), mc_price() and mc_greeks() set it themselves
            (`prepared`); set it (e.g. to `poisson_window_terms(largest mean)`) only to
            trace prices through your own jax.jit with a traced jump_rate, or call
            `model.prepared(horizon)` before jitting.
        step_terms: the same for the per-step jump count of the simulation, jump_rate x dt
            (up to 18 with the default 64).

    Stepping is exact for any dt: over a step the diffusion adds
    (mu - vol^2/2 - jump_rate kbar) dt + vol sqrt(dt) Z (Z from stream 0 of the draws); the
    number of jumps N ~ Poisson(jump_rate dt) is drawn by inversion of a uniform (stream 1;
    `poisson_count`, exact to the uniform's resolution for any jump_rate x dt up to
    MAX_JUMP_MEAN) and, given N, the sum of the log jumps is N jump_mean + sqrt(N) jump_std Z'
    (stream 2), exactly its law.

    Example:
        >>> model = Merton(spot=100.0, vol=0.15, jump_rate=1.0, jump_mean=-0.1, jump_std=0.1)
        >>> round(float(model.total_vol), 4)   # sqrt(vol^2 + jump_rate (mean^2 + std^2))
        0.2062
    """

    spot: jax.Array
    vol: jax.Array
    jump_rate: jax.Array
    jump_mean: jax.Array
    jump_std: jax.Array
    rate: jax.Array
    div: jax.Array
    drift: jax.Array | None
    series_terms: int | None = eqx.field(static=True)
    step_terms: int | None = eqx.field(static=True)
    vega_field: ClassVar[str] = "vol"

    def __init__(self, spot, vol, jump_rate, jump_mean, jump_std, rate=0.0, div=0.0,
                 drift=None, *, series_terms: int | None = None,
                 step_terms: int | None = None):
        self.spot = as_float(spot, "spot", scalar=True)
        self.vol = as_float(vol, "vol", scalar=True)
        self.jump_rate = as_float(jump_rate, "jump_rate", scalar=True)
        self.jump_mean = as_float(jump_mean, "jump_mean", scalar=True)
        self.jump_std = as_float(jump_std, "jump_std", scalar=True)
        self.rate = as_float(rate, "rate", scalar=True)
        self.div = as_float(div, "div", scalar=True)
        self.drift = None if drift is None else as_float(drift, "drift", scalar=True)
        self.series_terms = None if series_terms is None else check_int(
            "series_terms", series_terms, 1)
        self.step_terms = None if step_terms is None else check_int(
            "step_terms", step_terms, 1)

    def __check_init__(self):
        check_positive("spot", self.spot)
        check_positive("vol", self.vol)
        check_nonnegative("jump_rate", self.jump_rate)
        check_finite("jump_mean", self.jump_mean)
        check_nonnegative("jump_std", self.jump_std)
        check_finite("rate", self.rate)
        check_finite("div", self.div)
        check_finite("drift", self.drift)
        _check_mean_jump(self.jump_mean, self.jump_std)

    @property
    def mu(self) -> jax.Array:
        """The drift used for simulation: `drift`, or rate - div when it is None."""
        return self.rate - self.div if self.drift is None else self.drift

    @property
    def mean_relative_jump(self) -> jax.Array:
        """kbar = E[J] - 1 = exp(jump_mean + jump_std^2/2) - 1, the mean relative jump."""
        return jnp.expm1(self.jump_mean + 0.5 * self.jump_std * self.jump_std)

    @property
    def total_vol(self) -> jax.Array:
        """Annualised standard deviation of log returns, jumps included:
        sqrt(vol^2 + jump_rate (jump_mean^2 + jump_std^2))."""
        jump_second_moment = self.jump_mean * self.jump_mean + self.jump_std * self.jump_std
        return jnp.sqrt(self.vol * self.vol + self.jump_rate * jump_second_moment)

    def bridge_variance(self, state: ModelState) -> jax.Array:
        """The diffusion's vol^2: between grid times only the diffusion is bridged; a jump
        inside a step moves the endpoint (an approximation of order jump_rate x dt)."""
        return self.vol * self.vol

    def prepared(self, horizon: float | None = None, dt: float | None = None) -> Merton:
        """This model with its static hints sized for compiled prices with time to maturity
        up to `horizon` (`series_terms`) and simulation steps of `dt` (`step_terms`), from
        the concrete jump parameters; unchanged where they (or `horizon`) are traced. The
        hints then cover every mean the computation meets: jump_rate x tau x max(1, 1 + kbar)
        for tau <= horizon, jump_rate x dt. Raises ValueError above MAX_JUMP_MEAN."""
        changes = {}
        rate = _concrete_max(self.jump_rate)
        if rate is None:
            return self
        jump_mean, jump_std = _concrete_value(self.jump_mean), _concrete_value(self.jump_std)
        horizon = None if horizon is None else _concrete_max(horizon)
        if horizon is not None and jump_mean is not None and jump_std is not None:
            growth = np.exp(jump_mean + 0.5 * jump_std * jump_std)   # 1 + kbar
            mean = _concrete_value(self.jump_rate) * max(horizon, 0.0) * np.maximum(growth, 1.0)
            changes["series_terms"] = poisson_window_terms(_concrete_max(mean))
        if dt is not None:
            changes["step_terms"] = poisson_window_terms(rate * float(dt))
        return dataclasses.replace(self, **changes) if changes else self

    def init(self, path_index: jax.Array) -> ModelState:
        log_spot = jnp.broadcast_to(jnp.log(self.spot), path_index.shape)
        return ModelState(log_spot=log_spot)

    def step(self, state: ModelState, t: jax.Array, dt: float, draws: Draws) -> ModelState:
        z = draws.normal(_DIFFUSION_STREAM)
        dtype = z.dtype
        vol = self.vol.astype(dtype)
        jump_rate = self.jump_rate.astype(dtype)
        compensator = jump_rate * self.mean_relative_jump.astype(dtype)
        mean = (self.mu.astype(dtype) - 0.5 * vol * vol - compensator) * dt
        rate = _concrete_max(self.jump_rate)  # sizes the count's window when known now
        if rate is None:
            terms = DEFAULT_STEP_TERMS if self.step_terms is None else self.step_terms
        else:
            terms = poisson_window_terms(rate * dt)
        n_jumps = _poisson_count(jump_rate * dt, draws.uniform(_COUNT_STREAM), terms,
                                 rate is None)
        jumps = (n_jumps * self.jump_mean.astype(dtype)
                 + jnp.sqrt(n_jumps) * self.jump_std.astype(dtype)
                 * draws.normal(_JUMP_SIZE_STREAM))
        return ModelState(log_spot=state.log_spot + mean + (vol * dt**0.5) * z + jumps)

    def risk_neutral(self) -> Merton:
        return Merton(self.spot, self.vol, self.jump_rate, self.jump_mean, self.jump_std,
                      self.rate, self.div, drift=None, series_terms=self.series_terms,
                      step_terms=self.step_terms)


def _check_mean_jump(jump_mean: jax.Array, jump_std: jax.Array) -> None:
    """The mean jump factor E[J] = exp(jump_mean + jump_std^2 / 2) must be finite in the
    working precision (it enters the drift compensator jump_rate x (E[J] - 1)); above
    log(largest float), about 88.7 in float32 and 709.8 in float64, every price and path
    would be NaN, even at jump_rate = 0. Checked in log space (no overflow warning)."""
    if not (is_concrete(jump_mean) and is_concrete(jump_std)):
        return
    limit = float(np.log(np.finfo(np.asarray(jump_mean).dtype).max))
    log_growth = np.asarray(jump_mean, float) + 0.5 * np.square(np.asarray(jump_std, float))
    if not np.all(log_growth < limit):
        raise ValueError(
            f"jump_mean + jump_std**2 / 2 must be < {limit:.4g} (log of the largest "
            f"{np.asarray(jump_mean).dtype} number: the mean jump factor exp(jump_mean + "
            f"jump_std**2 / 2) overflows), got jump_mean={np.asarray(jump_mean).tolist()!r}, "
            f"jump_std={np.asarray(jump_std).tolist()!r}")
