"""Closed-form Black-Scholes prices of lookback and forward-start options, conditioned on the
path state (the running extreme; the fixed strike), in JAX so that `greeks()` differentiates
them. Only prices live here; every Greek is autodiff.

Notation: S spot, b = r - q the cost of carry, sigma the vol, T = tau the time left (years),
s = sigma sqrt(T), h = b sqrt(T) / sigma, N the normal CDF, n its density.

Lookbacks (continuous monitoring). Two building blocks price the part of the payoff that the
future path still decides:

    G(S, X) = e^{-rT} E[(max_{[t,T]} S - X)^+]   for X >= S (Conze and Viswanathan 1991),
    H(S, X) = e^{-rT} E[(X - min_{[t,T]} S)^+]   for X <= S,

    G = S e^{-qT} N(d1) - X e^{-rT} N(d1 - s)
        + S e^{-rT} sigma^2 / (2b) [e^{bT} N(d1) - (S/X)^{-2b/sigma^2} N(d1 - 2h)],
    H = X e^{-rT} N(s - d1) - S e^{-qT} N(-d1)
        + S e^{-rT} sigma^2 / (2b) [(S/X)^{-2b/sigma^2} N(2h - d1) - e^{bT} N(-d1)],
    d1 = (log(S/X) + (b + sigma^2/2) T) / s   (Haug 2007, "The Complete Guide to Option
    Pricing Formulas", 2nd ed., sections 4.15.1 and 4.15.2).

With M >= S the running maximum and m <= S the running minimum (the state's `extreme`; a
state on the wrong side of the spot is taken as the spot, the continuous extreme including
the current spot), the prices are (Goldman, Sosin and Gatto 1979 floating strike; Conze and
Viswanathan 1991 fixed strike, both cases of strike against the extreme):

    floating call (S_T - min):  S e^{-qT} - m e^{-rT} + H(S, m)
    floating put (max - S_T):   M e^{-rT} - S e^{-qT} + G(S, M)
    fixed call (max - K)^+:     e^{-rT} (M - K)^+ + G(S, max(K, M))
    fixed put (K - min)^+:      e^{-rT} (K - m)^+ + H(S, min(K, m))

r = q. The bracket / b is 0/0 at b = 0. Where |h| < eps^(1/6) (eps the dtype's machine
epsilon: 2.4e-3 in float64, 0.07 in float32) the same term is evaluated in the exact
division-free form (x = log(S/X), c = T + 2x / sigma^2, d0 = x / s + s / 2)

    G's term = S e^{-rT} e^{-2bx/sigma^2} [(sigma^2 T / 2 + x) E(bc) N(d0 + h) + s D(d0, h)],
    H's term = S e^{-qT} [s D(d0, h) - (sigma^2 T / 2 + x) E(-bc) N(h - d0)],

with E(z) = expm1(z) / z and D(d, h) = (N(d + h) - N(d - h)) / (2h), each by its Taylor
series near 0 (errors below eps). At b = 0 it is S e^{-rT} [s n(d0) + (sigma^2 T/2 + x) N(d0)]
for G. Elsewhere the textbook form is used, whose rounding error relative to the term is
about eps / |h| (at most eps^(5/6)); its large factor e^{-2bx/sigma^2} N(.) is formed as
exp(-2bx/sigma^2 + log N(.)), which cannot overflow. Measured in float64 against 40-digit
mpmath, both forms are within 1.5e-12 of the term on either side of the threshold (and
within 3e-14 in the division-free form). Values and all derivatives are
continuous across b = 0 (rho included).

Discrete monitoring (`monitoring=n`, dates every dt = maturity / n): Broadie, Glasserman and
Kou (1999), "Connecting discrete and continuous path-dependent options", Finance Stoch. 3:
the discrete maximum is, to o(sqrt(dt)), e^{-a} times the continuous maximum of a path whose
running maximum starts at M e^{a}, a = beta sigma sqrt(dt), beta = -zeta(1/2)/sqrt(2 pi)
= 0.5826 (the minimum: e^{a} times, from m e^{-a}). Hence, with phi = e^{-a} (max) or e^{a}
(min) and the shifted extreme clamped to the spot's side as above,

    fixed:    phi V_cont(S, extreme / phi, K / phi),
    floating: phi V_cont(S, extreme / phi) + sign (1 - phi) S e^{-qT}  (sign +1 call, -1 put).

The correction is asymptotic (o(sqrt(dt)); it assumes whole periods dt ahead, so between dates,
where the next one is nearer, it is rougher still) and it underprices slightly, more so with
fewer dates left. Measured against a discrete numpy Monte Carlo (400,000 and 200,000
antithetic paths; S = 100, sigma 0.3, r 0.05, q 0.02, T = 1; floating and fixed calls and
puts; tests/test_lookback_pricing.py): with 52 weekly dates ahead -0.03% to -0.3% of the
price, with 26 left mid-life (extreme at or away from the spot) -0.3% to -1.0%, with 12
monthly dates -0.2% to -1.6%; the uncorrected continuous price is 6% to 30% too high there.

Expired (tau <= 0): the payoff of the state (`Lookback.path_payoff`).

Accuracy. float64: within 1e-12 relative of a 50-digit mpmath evaluation of the same
formulas, and of QuantLib's AnalyticContinuousFloating/FixedLookbackEngine (tested at 1e-8) on
ITM/ATM/OTM strikes, maturities of 1 day to 2 years, dividends, extremes equal to and away
from the spot, except deep out-of-the-money fixed strikes (prices ~1e-6 of the spot), where
QuantLib's own rounding reaches 1e-9 and these prices stay within 1e-12 of mpmath; at r = q,
where QuantLib divides by zero, within 1e-10 of its prices Richardson-extrapolated in b.
Greeks (autodiff) match central differences of QuantLib's prices to the differences' own
accuracy. float32: prices above 1e-5 of the spot within 6e-5 relative of float64 (1e-5
typical; the worst, a one-day option at vol 0.05, loses digits to cancelling terms of the
spot's size), r = q included.

Forward start (Rubinstein 1991, "Pay now, choose later", Risk 4): before `start`, with
tau_s = start - t and T' = maturity - start, the price is S e^{-q tau_s} BS(1, moneyness, T')
(BS the Black-Scholes price of the call or put, spot 1, strike = moneyness), which does not
read the state; from `start` on, the Black-Scholes vanilla with the state's `strike`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr

from .._exotics import ForwardStart, Lookback
from .._models.black_scholes import BlackScholes
from .black_scholes import _vanilla
from .normal import norm_cdf
from .registry import register_pricer

# Broadie, Glasserman and Kou (1999): beta = -zeta(1/2) / sqrt(2 pi).
BGK_BETA = 0.5825971579390106

_INV_SQRT_2PI = 0.3989422804014327


def _small(dtype) -> float:
    """Threshold of the series branches: eps^(1/6) of the dtype."""
    return float(jnp.finfo(dtype).eps) ** (1.0 / 6.0)


def exprel(z: jax.Array) -> jax.Array:
    """E(z) = expm1(z) / z (1 at z = 0), with finite, accurate derivatives of every order:
    a Taylor series to z^5 where |z| < eps^(1/6) (truncation below eps), else the ratio."""
    small = jnp.abs(z) < _small(z.dtype)
    zs = jnp.where(small, z, 0.0)
    series = 1.0 + zs * (1 / 2 + zs * (1 / 6 + zs * (1 / 24 + zs * (1 / 120 + zs / 720))))
    zb = jnp.where(small, 1.0, z)
    return jnp.where(small, series, jnp.expm1(zb) / zb)


def _norm_pdf(x):
    return _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)


def _central_difference_series(d, h):
    """(N(d + h) - N(d - h)) / (2h) by its Taylor series in h (|h| small): n(d) [1 +
    h^2 He2(d) / 6 + h^4 He4(d) / 120] (He the Hermite polynomials)."""
    d2 = d * d
    h2 = h * h
    return _norm_pdf(d) * (1.0 + h2 * ((d2 - 1.0) / 6.0
                                       + h2 * (d2 * d2 - 6.0 * d2 + 3.0) / 120.0))


def _extreme_term(model: BlackScholes, log_spot, log_level, tau, upper: bool):
    """G (upper: a level X >= S, the maximum) or H (X <= S, the minimum) of the module
    docstring; tau > 0."""
    vol, r, q = model.vol, model.rate, model.div
    b = r - q
    var = vol * vol
    sqrt_t = jnp.sqrt(tau)
    s = vol * sqrt_t
    x = log_spot - log_level
    h = b * sqrt_t / vol
    d0 = x / s + 0.5 * s
    d1 = d0 + h
    spot = jnp.exp(log_spot)
    level = jnp.exp(log_level)
    disc_r = jnp.exp(-r * tau)
    disc_q = jnp.exp(-q * tau)

    small = jnp.abs(h) < _small(h.dtype)
    # Division-free form where b is small (module docstring): inputs kept small elsewhere.
    b_s = jnp.where(small, b, 0.0)
    h_s = b_s * sqrt_t / vol
    c = tau + 2.0 * x / var
    coeff = 0.5 * var * tau + x
    diff = s * _central_difference_series(d0, h_s)
    # Textbook form where |h| is not small: b kept away from 0 elsewhere.
    b_l = jnp.where(small, 1.0, b)
    h_l = b_l * sqrt_t / vol
    reflect = -2.0 * b_l * x / var          # log of (S/X)^{-2b/sigma^2}
    ratio = 0.5 * var / b_l
    if upper:
        vanilla = spot * disc_q * norm_cdf(d1) - level * disc_r * norm_cdf(d1 - s)
        near = spot * disc_r * jnp.exp(-2.0 * b_s * x / var) * (
            coeff * exprel(b_s * c) * norm_cdf(d0 + h_s) + diff)
        d1_l = d0 + h_l
        far = spot * ratio * (disc_q * norm_cdf(d1_l)
                              - disc_r * jnp.exp(reflect + log_ndtr(d1_l - 2.0 * h_l)))
    else:
        vanilla = level * disc_r * norm_cdf(s - d1) - spot * disc_q * norm_cdf(-d1)
        near = spot * disc_q * (diff - coeff * exprel(-b_s * c) * norm_cdf(h_s - d0))
        d1_l = d0 + h_l
        far = spot * ratio * (disc_r * jnp.exp(reflect + log_ndtr(2.0 * h_l - d1_l))
                              - disc_q * norm_cdf(-d1_l))
    return vanilla + jnp.where(small, near, far)


def _continuous(model: BlackScholes, inst: Lookback, log_spot, tau, log_extreme, log_strike):
    """The continuously monitored price (tau > 0) with the extreme on the spot's side."""
    upper = not inst.uses_min
    spot = jnp.exp(log_spot)
    disc_r = jnp.exp(-model.rate * tau)
    disc_q = jnp.exp(-model.div * tau)
    extreme = jnp.exp(log_extreme)
    if inst.floating:
        future = _extreme_term(model, log_spot, log_extreme, tau, upper)
        sign = 1.0 if inst.option == "call" else -1.0
        return sign * (spot * disc_q - extreme * disc_r) + future
    # Fixed strike: the level is the strike when it is beyond the extreme, else the extreme.
    beyond = log_strike > log_extreme if upper else log_strike < log_extreme
    level = jnp.where(beyond, log_strike, log_extreme)
    future = _extreme_term(model, log_spot, level, tau, upper)
    sign = 1.0 if upper else -1.0
    strike = jnp.exp(log_strike)
    return disc_r * jnp.maximum(sign * (extreme - strike), 0.0) + future


def _on_spot_side(log_extreme, log_spot, upper: bool):
    """The extreme, or the spot where the extreme is on the wrong side of it (the extreme's
    derivative is kept where it is on the right side or equal)."""
    wrong = log_extreme < log_spot if upper else log_extreme > log_spot
    return jnp.where(wrong, log_spot, log_extreme)


@register_pricer(BlackScholes, Lookback)
def _lookback(model: BlackScholes, inst: Lookback, log_spot, tau, state) -> jax.Array:
    """Lookback price at tau = maturity - t given the running extreme (module docstring)."""
    upper = not inst.uses_min
    log_extreme = jnp.asarray(state["extreme"]).astype(log_spot.dtype)
    log_spot, log_extreme = jnp.broadcast_arrays(log_spot, log_extreme)
    log_strike = None if inst.floating else jnp.log(inst.strike)
    live = tau > 0
    tau_safe = jnp.where(live, tau, 1.0)
    if inst.monitoring is None:
        ext = _on_spot_side(log_extreme, log_spot, upper)
        value = _continuous(model, inst, log_spot, tau_safe, ext, log_strike)
        payoff_state = {"extreme": ext}
    else:
        # Broadie-Glasserman-Kou: the extreme shifted outward by a, the result scaled by phi.
        a = BGK_BETA * model.vol * jnp.sqrt(inst.maturity / inst.monitoring)
        shift = a if upper else -a
        ext = _on_spot_side(log_extreme + shift, log_spot, upper)
        strike = None if inst.floating else log_strike + shift
        phi = jnp.exp(-shift)
        value = phi * _continuous(model, inst, log_spot, tau_safe, ext, strike)
        if inst.floating:
            sign = 1.0 if inst.option == "call" else -1.0
            value = value + sign * (1.0 - phi) * jnp.exp(log_spot - model.div * tau_safe)
        payoff_state = {"extreme": log_extreme}
    payoff = inst.path_payoff(payoff_state, jnp.exp(log_spot), model.rate)
    return jnp.where(live, value, payoff)


@register_pricer(BlackScholes, ForwardStart)
def _forward_start(model: BlackScholes, inst: ForwardStart, log_spot, tau,
                   state) -> jax.Array:
    """Forward-start price at tau = maturity - t (module docstring)."""
    sign = 1.0 if inst.option == "call" else -1.0
    strike = jnp.asarray(state["strike"]).astype(log_spot.dtype)
    log_spot, strike = jnp.broadcast_arrays(log_spot, strike)
    to_start = tau - (inst.maturity - inst.start)      # start - t
    before = to_start > 0
    to_start_safe = jnp.where(before, to_start, 0.0)
    unit = _vanilla(model, jnp.zeros_like(log_spot), inst.moneyness,
                    inst.maturity - inst.start, sign)
    forward = jnp.exp(log_spot - model.div * to_start_safe) * unit
    # After the start the strike is the state's (safe where it is not used).
    strike_safe = jnp.where(before, jnp.ones_like(strike), strike)
    after = _vanilla(model, log_spot, strike_safe, tau, sign)
    return jnp.where(before, forward, after)
