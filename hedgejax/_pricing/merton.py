"""Merton (1976) jump-diffusion prices by the Poisson series, in JAX so that `greeks()` and
`jax.grad` differentiate them (spot, vol, rate, time and the jump parameters).

Conditioning on the number n of jumps before maturity, log S_T is normal, so a European price
is a Poisson mixture of Black-Scholes prices (Merton 1976, eq. 19):

    V = sum_n e^{-lam' tau} (lam' tau)^n / n! * BS(S, K, tau, sigma_n, r_n, q),
    lam' = lam (1 + kbar),  sigma_n^2 = vol^2 + n jump_std^2 / tau,
    r_n = r - lam kbar + n log(1 + kbar) / tau,  log(1 + kbar) = jump_mean + jump_std^2/2.

It is evaluated here in the equivalent forward form, which never forms e^{-r_n tau} (that
overflows for large n and very negative jumps): with n-jump forward
F_n = S e^{(r - q - lam kbar) tau + n (jump_mean + jump_std^2/2)} and total variance
v_n = vol^2 tau + n jump_std^2,

    call = S e^{-q tau} sum_n w'_n N(d1_n) - K e^{-r tau} sum_n w_n N(d2_n),
    d1_n = (log(F_n / K) + v_n / 2) / sqrt(v_n),  d2_n = d1_n - sqrt(v_n),

where w_n = P(n jumps) for Poisson(lam tau) and w'_n the same for Poisson(lam' tau) (the
jump count under the share measure); w'_n is exactly the weight of the series above. The
exponent of F_n is summed as (r - q) tau + m (g - kbar) + (n - m) g, m = lam tau,
g = log(1 + kbar), so that n g and lam tau kbar (both ~100 at m = 10,000) never cancel.

Which terms. Each sum runs over its own window of a static number W of jump counts that
starts at a count following its mean m (lam tau for w, lam' tau for w'): start
max(0, floor(m - 8.66 sqrt m)), weights exp(log P(N = n)) in log space (Loader's form, see
`hedgejax._models.merton`). W is chosen so that less than 1e-16 of the Poisson mass lies
outside the window: W = 24 terms for m = 1, 56 for 10, 192 for 100, 560 for 1,000, 1,736 for
10,000 (~17 sqrt(m) + 20, a multiple of 8). W is sized from the values whenever jump_rate,
the jump law and tau are known (a plain `hj.price` call, also under eager jax.grad); when they
are traced (inside jit/vmap) W is the model's static hint `series_terms` (default 64: m up to
18), which `greeks()`, `hedge()` and the Monte Carlo entry points set before compiling
(`Merton.prepared`). A traced price whose mean its window does not cover raises an error at
run time (`eqx.error_if`, threaded through the weights so that it also fires under jax.grad)
naming jump_rate x tau and the remedy, never a wrong number. The cap: jump_rate x tau x
max(1, 1 + kbar) above MAX_JUMP_MEAN = 1e5 expected jumps raises ValueError (5,440 terms
there).

Accuracy, measured against an independent series in mpmath at 20 digits
(tests/test_merton_series.py; calls, puts, digitals at lam T = 0, 0.3, 5, 50, 100, 1,000 and
10,000): float64 relative error at most 6e-15 (tested at 1e-10), also 1e-14 at lam T = 50,000
and 99,000; float32 (the default) at most 2.2e-6 on those cases, but up to about 3e-4 for a
day's maturity at jump_rate x T = 10,000 or deep out of the money (the float32 Black-Scholes
terms alone are 3e-5 off there; use float64 for such books). The issue's cases: vol 0.1, lam 10, T 5
(jump_mean 0, jump_std 0.2, r 0.03, q 0.01): 52.50228; vol 0.15, lam 100, jump_mean -0.01,
jump_std 0.02, r 0.02, T 1: 11.58054 (the former 64-term series gave 49.69 and 0.0023).
Derivatives in every parameter are exact (autodiff), finite at jump_rate = 0. The series axis
is the last axis: every price broadcasts over `log_spot` of any shape.

Cost. The price is one compiled kernel per window size (shared by calls, puts and digitals).
In hedge()'s loop (Merton world and hedger, vol 0.2, jump mean -0.1, std 0.1, ATM call T = 1,
delta hedge, float32, 2^14 paths x 252 steps, 2-core CPU shared with other jobs, process CPU
seconds, best of 4, three interleaved rounds): jump_rate 1 (W = 24) 1.07-1.26 s against
2.26-2.70 s with the former 64-term series; jump_rate 10 (W = 56) 2.91-3.04 s against
2.44-2.61 s (a per-step cost of the moving window that does not grow with the paths: at 2^16
paths the same run took 21.1 s against 30.4 s).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._instruments import Digital, EuropeanCall, EuropeanPut
from .._models.merton import (
    DEFAULT_SERIES_TERMS,
    Merton,
    _concrete_max,
    _concrete_value,
    covered_mean,
    log_poisson_pmf,
    poisson_window_terms,
    window_covers,
    window_start,
)
from .._numerics import ordered_sum
from .normal import norm_cdf
from .registry import register_pricer


def _poisson_window(mean: jax.Array, terms: int) -> tuple[jax.Array, jax.Array]:
    """(counts, P(N = counts)) over the window of `terms` counts for N ~ Poisson(mean), along
    a new last axis.

    Weights are exp(log pmf) (Loader's form, free of overflow and cancellation). At mean = 0
    (no jumps) the window starts at 0 and the weights are replaced by the exact
    e^{-mean} mean^n / n! for n <= 3 and 0 beyond (a "double where"), so that derivatives in
    the mean stay finite and exact to third order there: d P(N=1) / d mean = 1 at mean = 0.
    The window start carries no derivative; the weights do (d log w_n / dm = n / m - 1).
    """
    mean = jnp.asarray(mean)[..., None]
    dtype = mean.dtype
    positive = mean > 0
    safe_mean = jnp.where(positive, mean, 1.0)
    counts = window_start(safe_mean) + jnp.arange(terms, dtype=dtype)
    low = jnp.where(counts == 0, 1.0, jnp.where(
        counts == 1, mean, jnp.where(counts == 2, mean * mean / 2,
                                     jnp.where(counts == 3, mean * mean * mean / 6, 0.0))))
    near_zero = jnp.exp(-mean) * low
    weights = jnp.where(positive, jnp.exp(log_poisson_pmf(counts, safe_mean)), near_zero)
    return counts, weights


class _Params(NamedTuple):
    """The parameters a price depends on (the kernel's argument: the model's static hints and
    unused fields stay out of its compilation key)."""

    vol: jax.Array
    jump_rate: jax.Array
    jump_mean: jax.Array
    jump_std: jax.Array
    rate: jax.Array
    div: jax.Array


def _plan(model: Merton, tau) -> tuple[int, bool]:
    """Static window size for pricing at `tau`, and whether a run-time check is needed: sized
    from the values (in NumPy) when jump_rate, tau and the jump law are known now (the larger
    of the means lam tau and lam (1 + kbar) tau); else the model's hint `series_terms` or the
    default, checked at run time."""
    rate, tau = _concrete_value(model.jump_rate), _concrete_value(tau)
    jump_mean, jump_std = _concrete_value(model.jump_mean), _concrete_value(model.jump_std)
    if rate is None or tau is None or jump_mean is None or jump_std is None:
        hint = model.series_terms
        return (DEFAULT_SERIES_TERMS if hint is None else hint), True
    growth = np.exp(jump_mean + 0.5 * jump_std * jump_std)   # 1 + kbar
    mean = rate * np.maximum(tau, 0.0) * np.maximum(growth, 1.0)
    return poisson_window_terms(_concrete_max(mean)), False


def _checked(means: list, live, terms: int) -> list:
    """`means`, threaded through a run-time error where a live price's mean is not covered.
    The check is threaded through the means (not the price) so that it runs whenever the
    weights are used: under jax.grad the primal price itself is dead code."""
    uncovered = jnp.zeros(jnp.shape(live), bool)
    for m in means:
        uncovered = uncovered | ~window_covers(m, terms)
    return list(eqx.error_if(
        tuple(means), live & uncovered,
        f"Merton price: jump_rate x tau (the expected number of jumps to maturity; x (1 + "
        f"kbar) under the share measure) needs more than the {terms} Poisson series terms "
        f"this traced (jit/vmap) price has, enough up to about "
        f"{covered_mean(terms):.4g}. Call model = model.prepared(horizon=<longest time to "
        "maturity>) on the concrete model before jax.jit, or build it with "
        "Merton(..., series_terms=N) (a static hint; "
        "hedgejax._models.merton.poisson_window_terms(jump_rate x tau) gives N)"))


def _log1p_minus_identity(kbar: jax.Array, g: jax.Array) -> jax.Array:
    """g - kbar = log(1 + kbar) - kbar for g = log(1 + kbar), without cancellation: for
    |g| < 0.1 by its series -g^2/2 - g^3/6 - ... (to g^12, relative error < 1e-17)."""
    small = jnp.abs(g) < 0.1
    x = jnp.where(small, g, 0.0)
    series = 0.0
    for k in range(12, 1, -1):
        series = (series + 1.0 / math.factorial(k)) * x
    return jnp.where(small, -series * x, g - kbar)


class _Legs:
    """The series' two sums for one model, strike and time to maturity (series axis last),
    over windows of `terms` jump counts.

    tau is replaced by 1 where tau <= 0 so that the expired branch stays finite (the caller
    selects the payoff there: the "double where" that keeps derivatives finite).
    """

    def __init__(self, model: _Params, log_spot, strike, tau, terms: int, needs_check: bool):
        self.live = tau > 0
        tau_safe = jnp.where(self.live, tau, 1.0)
        self.tau = tau_safe
        log_jump_growth = model.jump_mean + 0.5 * model.jump_std * model.jump_std  # log(1+kbar)
        kbar = jnp.expm1(log_jump_growth)
        mean = model.jump_rate * tau_safe
        means = [mean, mean * jnp.exp(log_jump_growth)]  # lam tau, lam' tau = lam (1+kbar) tau
        if needs_check:
            means = _checked(means, self.live, terms)
        # log(F_n / K) = log(S / K) + (r - q) tau + n g - lam tau kbar, g = log(1 + kbar),
        # written as ... + m (g - kbar) + (n - m) g with m = lam tau: for large means n g and
        # lam tau kbar nearly cancel (float32 digitals were 1e-5 off at lam tau = 10,000).
        self.mean = mean[..., None]
        self.base = (jnp.asarray(log_spot)[..., None] - jnp.log(strike)[..., None]
                     + ((model.rate - model.div) * tau_safe
                        + mean * _log1p_minus_identity(kbar, log_jump_growth))[..., None])
        self.growth = log_jump_growth[..., None]
        self.diffusion_variance = (model.vol * model.vol * tau_safe)[..., None]
        self.jump_variance = (model.jump_std * model.jump_std)[..., None]
        self.means = means
        self.terms = terms

    def _sum(self, mean, sign, shift: float) -> jax.Array:
        """sum_n w_n N(sign (d_n)), d_n = log(F_n / K) / sd_n + shift sd_n, over the window
        of Poisson(mean) (shift +1/2: d1, -1/2: d2)."""
        counts, weights = _poisson_window(mean, self.terms)
        sd = jnp.sqrt(self.diffusion_variance + counts * self.jump_variance)
        d = (self.base + (counts - self.mean) * self.growth) * (1.0 / sd) + shift * sd
        return ordered_sum(weights * norm_cdf(sign * d), axis=-1)

    def share(self, sign) -> jax.Array:
        """sum_n w'_n N(sign d1_n)."""
        return self._sum(self.means[1], sign, 0.5)

    def cash(self, sign) -> jax.Array:
        """sum_n w_n N(sign d2_n)."""
        return self._sum(self.means[0], sign, -0.5)


# The kernel is compiled (one XLA computation per window size, shared by calls, puts and
# digitals: the kind is an argument) rather than run op by op: a plain `price` call then costs
# one compilation per size instead of one per operation. Inside an enclosing jit/grad/vmap it
# is traced inline as usual, where the kind is a constant and the unused leg is dead code.
@eqx.filter_jit
def _kernel(model: _Params, log_spot, strike, tau, sign, digital, cash, terms: int,
            needs_check: bool) -> jax.Array:
    """sign = +1 (call, digital call) or -1 (put, digital put); digital: bool, cash-or-
    nothing paying `cash` (call = S e^{-q tau} sum w' N(d1) - K e^{-r tau} sum w N(d2),
    digital = cash e^{-r tau} sum w N(d2), with +-d for puts)."""
    legs = _Legs(model, log_spot, strike, tau, terms, needs_check)
    spot = jnp.exp(log_spot)
    discount = jnp.exp(-model.rate * legs.tau)
    cash_leg = legs.cash(sign)
    vanilla = sign * (spot * jnp.exp(-model.div * legs.tau) * legs.share(sign)
                      - strike * discount * cash_leg)
    value = jnp.where(digital, cash * discount * cash_leg, vanilla)
    intrinsic = jnp.maximum(sign * (spot - strike), 0.0)
    # The expired digital is decided in log space, as for Black-Scholes (exp(log K) != K).
    in_the_money = sign * (log_spot - jnp.log(strike)) > 0
    payoff = jnp.where(digital, jnp.where(in_the_money, cash, jnp.zeros_like(cash)), intrinsic)
    return jnp.where(legs.live, value, payoff)


def _price(model: Merton, log_spot, strike, tau, sign: float, digital: bool = False,
           cash=0.0) -> jax.Array:
    dtype = jnp.result_type(strike)
    params = _Params(model.vol, model.jump_rate, model.jump_mean, model.jump_std, model.rate,
                     model.div)
    return _kernel(params, jnp.asarray(log_spot), strike, tau, jnp.asarray(sign, dtype),
                   jnp.asarray(digital), jnp.asarray(cash, dtype), *_plan(model, tau))


@register_pricer(Merton, EuropeanCall)
def _call(model: Merton, inst: EuropeanCall, log_spot, tau) -> jax.Array:
    return _price(model, log_spot, inst.strike, tau, 1.0)


@register_pricer(Merton, EuropeanPut)
def _put(model: Merton, inst: EuropeanPut, log_spot, tau) -> jax.Array:
    return _price(model, log_spot, inst.strike, tau, -1.0)


@register_pricer(Merton, Digital)
def _digital(model: Merton, inst: Digital, log_spot, tau) -> jax.Array:
    """Cash-or-nothing: cash e^{-r tau} sum_n w_n N(+-d2_n)."""
    return _price(model, log_spot, inst.strike, tau, -1.0 if inst.put else 1.0, True,
                  inst.cash)
