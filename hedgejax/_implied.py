"""Black-Scholes implied volatility of European calls and puts.

The price is inverted in Black's normalised form (Jaeckel 2006, "By implication",
Wilmott; Jaeckel 2015, "Let's be rational", Wilmott pp. 40-53). With the forward
F = S e^{(r-q)tau}, the discounted share S e^{-q tau} and strike K e^{-r tau},

    x = ln(F / K),   s = vol sqrt(tau),   norm = sqrt(S e^{-q tau} K e^{-r tau}),
    b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2)     (a call, divided by norm).

A put is mapped to a call by parity and an in-the-money option to its out-of-the-money twin
(b(x, s) - b(-x, s) is the normalised intrinsic value), so only the time value

    beta = (price - intrinsic) / norm  in  (0, b_max),   b_max = e^{-|x|/2},

of the out-of-the-money call at theta = -|x| <= 0 is inverted. Its distance to the upper
bound, gamma = (upper bound - price) / norm = b_max - beta (the upper bound is S e^{-q tau}
for a call, K e^{-r tau} for a put), is taken from the price directly, so that prices near
the upper bound keep their precision.

Solver (Jaeckel 2015, sections 3-5, written afresh for arrays under `lax`): the s axis is cut
at s_l < s_c = sqrt(2|theta|) (b's inflection point) < s_h into four branches. The initial
guess comes from Jaeckel's lower map f_l(s) = 2 pi |theta| N(-|theta| / (sqrt 3 s))^3 /
sqrt 27 (inverted in closed form) below s_l, from cubic Hermite interpolation of s(beta)
between s_l, s_c and s_h, and from the upper map f_u(s) = N(-s/2) above s_h; the maps are
joined to b by cubic Hermite interpolants in beta instead of Jaeckel's rational cubics. Then
a fixed number (4) of third-order Householder steps on Jaeckel's objectives: 1/ln b(s) -
1/ln beta in the lowest branch, b(s) - beta in the middle, ln(gamma / (b_max - b(s))) in the
upper branch where beta > b_max / 2. Every step is safeguarded by a bracket [lo, hi] of the
root, rigorous from the start (e^{theta/2} N(-s/2) <= gamma <= 2 cosh(theta/2)
N(|theta|/s - s/2) at the root) and narrowed by each evaluation, falling back to bisection
when a step leaves it; an element stops moving once its step is below one ulp. Measured on
4,000 random (theta, s) with |theta| <= 30 and s in 1e-4..40: two steps reach 6e-15, the
other two are margin.

b(theta, s) is evaluated without cancellation as in Jaeckel 2015 (section 2): by N directly
where b > 0.85 b_max roughly (h + t > 0.85, h = theta/s, t = s/2), by the scaled
complementary error function erfcx (Cody 1969; `jax.scipy.special.erfcx`) elsewhere,

    b = exp(-(h^2 + t^2)/2) [erfcx(-(h+t)/sqrt 2) - erfcx(-(h-t)/sqrt 2)] / 2,

and for small t by the Taylor series of Y(h+t) - Y(h-t), Y = N/phi the Mills ratio, whose
derivatives follow from Y' = 1 + h Y (so Y^(n+1) = h Y^(n) + n Y^(n-1)).

Accuracy (tests/test_implied_vol.py): in float64 the round trip vol -> price -> vol agrees to
1e-10 relative on vol 0.01..5, K/S 0.1..10, tau 1 day..30 years wherever the price carries
that information, i.e. where a relative vol change of 1e-10 moves the price by at least
~45 ulps (vega vol / price >= 1e-4). Elsewhere the vol is not identifiable from a float64
price: deep in the money at low vol the time value is below the price's rounding, deep out
of the money the price underflows; the solver then returns the vol of the rounded time value
(0 when it rounds to 0, or when the normalised time value is below the smallest normal
float); such a vol reprices the given price to within a few ulps of S e^{-q tau} +
K e^{-r tau} (measured: 5e-16 of it over 15,000 random quotes, spot 1e-3..1e6, ln(K/S) in
-8..8, tau 1e-4..100 years). In float32 (eps 1.2e-7) the round trip holds to 1e-4 relative
where vega vol / price >= 1e-2 (measured 1.1e-5), and the repricing to 1e-6 of S e^{-q tau} +
K e^{-r tau}.

Compilation: one program per input length bucket (a power of two >= 8) and precision for
concrete inputs, about 1 s to compile on a CPU; under `jit`/`vmap`/`grad` it is part of the
caller's program.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import erfcx, ndtri

from ._instruments import AbstractInstrument, Book, EuropeanCall, EuropeanPut
from ._pricing.normal import norm_cdf
from ._validate import as_float, check, float_dtype, is_concrete, runtime_checked

# Householder steps after the initial guess (Jaeckel needs 2 after his rational-cubic guess,
# and so do the Hermite-joined maps here, measured; two more are margin; a step below one ulp
# freezes an element). Their number does not change the compiled program's size.
_ITERATIONS = 4
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_INV_SQRT_2PI = 1.0 / _SQRT_2PI
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_SQRT3 = math.sqrt(3.0)
_LOWER_MAP_SCALE = 2.0 * math.pi / math.sqrt(27.0)
# A price below its intrinsic value by no more than this many ulps of S e^{-q tau} +
# K e^{-r tau} (the rounding of the intrinsic value itself) counts as on the bound: vol 0.
_INTRINSIC_ULPS = 4.0


# -- the normalised Black function -------------------------------------------------------------

def _normalised_call_and_gap(theta: jax.Array, s: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(b(theta, s), b_max - b(theta, s)) for theta <= 0 and s >= 0 (module docstring), both
    relative-accurate; the gap e^{theta/2} N(-h-t) + e^{-theta/2} N(h-t) has no cancellation.

    (The error functions run once on stacked arguments: XLA's compile time grows faster
    than linearly with the size of the fused elementwise program.)"""
    eps = jnp.finfo(s.dtype).eps
    live = s > 0
    s = jnp.where(live, s, 1.0)
    h, t = theta / s, 0.5 * s
    b_max = jnp.exp(0.5 * theta)
    cdf_plus, cdf_minus, cdf_gap = norm_cdf(jnp.stack([h + t, h - t, -h - t]))
    scaled = erfcx(jnp.stack([-(h + t), -(h - t), -h]) * _INV_SQRT2)
    direct = cdf_plus * b_max - cdf_minus / b_max
    scale = jnp.exp(-0.5 * (h * h + t * t))
    via_erfcx = 0.5 * scale * (scaled[0] - scaled[1])
    # Y(h+t) - Y(h-t) = 2 sum_k Y^(2k+1)(h) t^(2k+1) / (2k+1)!, 13th order in t: below the
    # threshold 2 eps^(1/16) the first omitted term is below eps relative (Jaeckel 2015, 2.3)
    y0 = math.sqrt(math.pi / 2.0) * scaled[2]         # Y(h)
    derivs = [y0, 1.0 + h * y0]
    for n in range(1, 13):
        derivs.append(h * derivs[n] + n * derivs[n - 1])
    series = jnp.zeros_like(h)
    for k in reversed(range(7)):
        series = series * t * t + derivs[2 * k + 1] / float(math.factorial(2 * k + 1))
    # (scale underflows to 0 first where the derivatives overflow: h^13 for |h| > 1e23)
    small_t = jnp.where(scale > 0, scale * _INV_SQRT_2PI * 2.0 * t * series, 0.0)
    b = jnp.where(t < 2.0 * eps ** (1.0 / 16.0), small_t,
                  jnp.where(h + t > 0.85, direct, via_erfcx))
    gap = cdf_gap * b_max + cdf_minus / b_max
    return jnp.where(live, jnp.maximum(b, 0.0), 0.0), jnp.where(live, gap, b_max)


def _rough_call(theta: jax.Array, s: jax.Array) -> jax.Array:
    """b(theta, s) by the erfcx form, or N's where h + t > 0.85: accurate to a few ulps except
    for small s (the small-t cancellation); for the initial guess's branch points only."""
    s = jnp.maximum(s, jnp.finfo(s.dtype).tiny)
    h, t = theta / s, 0.5 * s
    b_max = jnp.exp(0.5 * theta)
    cdf_plus, cdf_minus = norm_cdf(jnp.stack([h + t, h - t]))
    scaled = erfcx(jnp.stack([-(h + t), -(h - t)]) * _INV_SQRT2)
    via_erfcx = 0.5 * jnp.exp(-0.5 * (h * h + t * t)) * (scaled[0] - scaled[1])
    return jnp.maximum(jnp.where(h + t > 0.85, cdf_plus * b_max - cdf_minus / b_max,
                                 via_erfcx), 0.0)


def _normalised_vega(theta: jax.Array, s: jax.Array) -> jax.Array:
    """db/ds = exp(-(theta^2/s^2 + s^2/4) / 2) / sqrt(2 pi) (0 at s = 0 unless theta = 0)."""
    live = s > 0
    s_safe = jnp.where(live, s, 1.0)
    vega = _INV_SQRT_2PI * jnp.exp(-0.5 * ((theta / s_safe) ** 2 + 0.25 * s_safe * s_safe))
    return jnp.where(live, vega, jnp.where(theta == 0, _INV_SQRT_2PI, 0.0))


# -- initial guess ----------------------------------------------------------------------------

def _hermite(x, x0, x1, y0, y1, slope0, slope1):
    """Cubic Hermite interpolation at x of y between (x0, y0) and (x1, y1) with the slopes
    dy/dx at the ends (x clipped into [x0, x1])."""
    width = x1 - x0
    width = jnp.where(width > 0, width, 1.0)
    u = jnp.clip((x - x0) / width, 0.0, 1.0)
    h00 = (1 + 2 * u) * (1 - u) ** 2
    h10 = u * (1 - u) ** 2
    h01 = u * u * (3 - 2 * u)
    h11 = u * u * (u - 1)
    return h00 * y0 + h10 * width * slope0 + h01 * y1 + h11 * width * slope1


def _initial_guess(beta, gamma, theta):
    """(s0, lo, hi, objective) per element: the start, a bracket of the root and the
    objective's kind (0: 1/ln b, 1: b - beta, 2: ln of the gap to b_max).

    The branch points s_l < s_c < s_h (Jaeckel 2015, section 4) only shape the start and
    choose the objective; the bracket is rigorous whatever their rounding:
    e^{theta/2} N(-s/2) <= gamma <= 2 cosh(theta/2) N(|theta|/s - s/2) at the root."""
    tiny = jnp.finfo(beta.dtype).tiny
    abs_theta = -theta
    b_max = jnp.exp(0.5 * theta)
    s_c = jnp.sqrt(2.0 * abs_theta)
    # at s_c, h + t = 0: b_c = e^{theta/2} (1 - erfcx(sqrt|theta|)) / 2
    b_c = 0.5 * b_max * (1.0 - erfcx(jnp.sqrt(abs_theta)))
    v_c = _normalised_vega(theta, s_c)
    v_c_safe = jnp.maximum(v_c, tiny)
    s_l = jnp.maximum(s_c - b_c / v_c_safe, 0.0)
    s_h = jnp.where(v_c > tiny, s_c + (b_max - b_c) / v_c_safe, s_c)
    b_l, b_h = _rough_call(theta, jnp.stack([s_l, s_h]))
    v_l, v_h = _normalised_vega(theta, jnp.stack([s_l, s_h]))

    # lowest branch: f_l(s) = scale |theta| N(z)^3, z = -|theta| / (sqrt3 s), tends to b(s)
    # as s -> 0 (Jaeckel 2015, eq. 4.5) and inverts in closed form; f(beta) is the cubic
    # Hermite interpolant with f(0) = 0, f'(0) = 1 and f_l's value and slope df_l/dbeta at b_l
    abs_theta_safe = jnp.maximum(abs_theta, tiny)
    s_l_safe = jnp.maximum(s_l, tiny)
    z_l = -abs_theta / (_SQRT3 * s_l_safe)
    cdf_l, f_h = norm_cdf(jnp.stack([z_l, -0.5 * s_h]))
    f_l = _LOWER_MAP_SCALE * abs_theta * cdf_l ** 3
    df_l = (_LOWER_MAP_SCALE * abs_theta * 3 * cdf_l ** 2 * jnp.exp(-0.5 * z_l * z_l)
            * _INV_SQRT_2PI * abs_theta / (_SQRT3 * s_l_safe ** 2)) / jnp.maximum(v_l, tiny)
    f_low = _hermite(beta, 0.0, b_l, 0.0, f_l, 1.0, df_l)
    root = jnp.cbrt(jnp.clip(f_low, tiny, f_l) / (_LOWER_MAP_SCALE * abs_theta_safe))

    # upper branch: f_u(s) = N(-s/2) ~ gamma / 2 as s -> infinity; f(gamma) is the cubic
    # Hermite interpolant in gamma = b_max - beta with f(0) = 0, f'(0) = 1/2 and f_u's value
    # f_h and slope at gamma_h = b_max - b_h
    gamma_h = jnp.maximum(b_max - b_h, tiny)
    df_h = 0.5 * _INV_SQRT_2PI * jnp.exp(-0.125 * s_h * s_h) / jnp.maximum(v_h, tiny)
    f_up = _hermite(gamma, 0.0, gamma_h, 0.0, f_h, 0.5, df_h)

    quantiles = ndtri(jnp.clip(jnp.stack([
        root, f_up, gamma / (2.0 * jnp.cosh(0.5 * theta)), gamma / b_max]), tiny, 0.5))
    s_low = abs_theta / (_SQRT3 * jnp.maximum(-quantiles[0], tiny))
    s_up = -2.0 * quantiles[1]
    s_mid_low = _hermite(beta, b_l, b_c, s_l, s_c, 1 / jnp.maximum(v_l, tiny), 1 / v_c_safe)
    s_mid_high = _hermite(beta, b_c, b_h, s_c, s_h, 1 / v_c_safe, 1 / jnp.maximum(v_h, tiny))

    # the bracket: s/2 - |theta|/s <= m from above, N(-s/2) <= gamma / b_max from below
    m = -quantiles[2]
    hi = (m + jnp.sqrt(m * m + 2.0 * abs_theta)) * (1 + 1e-6) + tiny
    lo = jnp.maximum(-2.0 * quantiles[3], 0.0) * (1 - 1e-6)

    lowest, mid_low, mid_high = beta < b_l, beta < b_c, beta <= b_h
    s0 = jnp.where(lowest, s_low, jnp.where(mid_low, s_mid_low,
                                             jnp.where(mid_high, s_mid_high, s_up)))
    kind = jnp.where(lowest, 0, jnp.where(~mid_high & (beta > 0.5 * b_max), 2, 1))
    s0 = jnp.where(jnp.isfinite(s0) & (s0 > lo) & (s0 < hi), s0, 0.5 * (lo + hi))
    return s0, lo, hi, kind


# -- Householder iteration --------------------------------------------------------------------

def _solve_normalised(beta: jax.Array, gamma: jax.Array, theta: jax.Array) -> jax.Array:
    """s = vol sqrt(tau) with b(theta, s) = beta = b_max - gamma; beta, gamma > 0, theta <= 0."""
    eps = jnp.finfo(beta.dtype).eps
    s, lo, hi, kind = _initial_guess(beta, gamma, theta)
    ln_beta = jnp.log(beta)

    def step(_, carry):
        s, lo, hi, done = carry
        b, gap = _normalised_call_and_gap(theta, s)
        vega = _normalised_vega(theta, s)
        below = jnp.where(kind == 2, gap > gamma, b < beta)
        above = jnp.where(kind == 2, gap < gamma, b > beta)
        lo = jnp.where(below, jnp.maximum(lo, s), lo)
        hi = jnp.where(above, jnp.minimum(hi, s), hi)
        # b''/b' and b'''/b' (Jaeckel 2015, eq. 3.4)
        h = theta / s
        b_halley = h * h / s - 0.25 * s
        b_hh3 = b_halley * b_halley - 3.0 * (h / s) ** 2 - 0.25
        # 0: g = 1/ln b - 1/ln beta
        ln_b = jnp.log(b)
        vega_over_b = vega / b
        newton0 = (ln_beta - ln_b) * ln_b / ln_beta / vega_over_b
        factor = 1 + 2 / ln_b
        halley0 = b_halley - vega_over_b * factor
        hh30 = (b_hh3 + 2 * vega_over_b ** 2 * (1 + 3 / ln_b * (1 + 1 / ln_b))
                - 3 * b_halley * vega_over_b * factor)
        # 1: g = b - beta
        newton1 = (beta - b) / vega
        # 2: g = ln(gamma / (b_max - b))
        g_prime = vega / gap
        newton2 = -jnp.log(gamma / gap) / g_prime
        halley2 = b_halley + g_prime
        hh32 = b_hh3 + g_prime * (2 * g_prime + 3 * b_halley)
        newton = jnp.where(kind == 0, newton0, jnp.where(kind == 1, newton1, newton2))
        halley = jnp.where(kind == 0, halley0, jnp.where(kind == 1, b_halley, halley2))
        hh3 = jnp.where(kind == 0, hh30, jnp.where(kind == 1, b_hh3, hh32))
        factor = (1 + 0.5 * halley * newton) / (1 + newton * (halley + hh3 * newton / 6))
        # Newton's step where the higher derivatives are not finite (e.g. theta = 0 and a
        # tiny s, where XLA may form theta^2 / s^3 = 0 / 0)
        ds = newton * jnp.where(jnp.isfinite(factor) & (factor > 0), factor, 1.0)
        ds = jnp.maximum(ds, -0.5 * s)
        proposed = s + ds
        converged = jnp.abs(ds) <= eps * s
        inside = (proposed > lo) & (proposed < hi)          # False for NaN
        moved = jnp.where(converged, proposed, jnp.where(inside, proposed, 0.5 * (lo + hi)))
        return jnp.where(done, s, moved), lo, hi, done | converged

    s, *_ = lax.fori_loop(0, _ITERATIONS, step, (s, lo, hi, jnp.zeros(s.shape, bool)))
    return s


# -- in currency ------------------------------------------------------------------------------

def _market(spot, strike, tau, rate, div, sign):
    """(x, S e^{-q tau}, K e^{-r tau}, intrinsic, upper bound) of a call (sign 1) or put (-1)."""
    share = spot * jnp.exp(-div * tau)
    cash = strike * jnp.exp(-rate * tau)
    x = jnp.log(spot / strike) + (rate - div) * tau
    # share - cash = share (1 - e^{-x}): near the money without the cancellation of the
    # difference (at spot = strike, x = (r - q) tau is exact to rounding)
    forward_minus_strike = jnp.where(jnp.abs(x) < 1, -share * jnp.expm1(-x), share - cash)
    intrinsic = jnp.maximum(sign * forward_minus_strike, 0.0)
    upper = jnp.where(sign > 0, share, cash)
    return x, share, cash, intrinsic, upper


def black_scholes_vega(vol, spot, strike, tau, rate=0.0, div=0.0):
    """Black-Scholes vega dP/dvol (per 1.00 of vol; the same for a call and a put) =
    S e^{-q tau} phi(d1) sqrt(tau), computed as sqrt(S e^{-q tau} K e^{-r tau}) b'(s) sqrt(tau)
    so that it neither overflows nor turns NaN at tiny or huge vol (0 at vol = 0 off the
    money). Inputs broadcast; units as `implied_vol`."""
    x, share, cash, _, _ = _market(spot, strike, tau, rate, div, 1.0)
    root_tau = jnp.sqrt(tau)
    return (jnp.sqrt(share) * jnp.sqrt(cash) * _normalised_vega(-jnp.abs(x), vol * root_tau)
            * root_tau)


@jax.custom_jvp
def _implied_vol_array(price, spot, strike, tau, rate, div, sign):
    """Implied vol of broadcast arrays (valid inputs; see `implied_vol`)."""
    x, share, cash, intrinsic, upper = _market(spot, strike, tau, rate, div, sign)
    norm = jnp.sqrt(share) * jnp.sqrt(cash)
    tiny = jnp.finfo(price.dtype).tiny
    beta = jnp.maximum(price - intrinsic, 0.0) / norm
    gamma = (upper - price) / norm
    theta = -jnp.abs(x)
    zero = beta < tiny      # on the intrinsic bound, or a time value below normal floats
    beta_safe = jnp.where(zero, jnp.exp(0.5 * theta) * 0.25, beta)
    gamma_safe = jnp.where(zero | ~(gamma > 0), jnp.exp(0.5 * theta) * 0.75, gamma)
    s = _solve_normalised(beta_safe, gamma_safe, theta)
    return jnp.where(zero, 0.0, s / jnp.sqrt(tau))


@_implied_vol_array.defjvp
def _implied_vol_jvp(primals, tangents):
    # implicit function theorem: P(vol(z), z) = price, so dvol = (dprice - dP/dz dz) / vega
    # (analytic Black-Scholes partials, e.g. Hull, "Options, Futures and Other Derivatives")
    price, spot, strike, tau, rate, div, sign = primals
    d_price, d_spot, d_strike, d_tau, d_rate, d_div, _ = tangents
    vol = _implied_vol_array(*primals)
    x, share, cash, _, _ = _market(spot, strike, tau, rate, div, sign)
    root_tau = jnp.sqrt(tau)
    sd = vol * root_tau
    d1 = x / sd + 0.5 * sd
    d2 = d1 - sd
    vega = black_scholes_vega(vol, spot, strike, tau, rate, div)
    share_leg, cash_leg = sign * norm_cdf(sign * d1), sign * norm_cdf(sign * d2)
    d_other = (share_leg * jnp.exp(-div * tau) * d_spot
               - cash_leg * jnp.exp(-rate * tau) * d_strike
               + (-div * share * share_leg + rate * cash * cash_leg) * d_tau
               + vega * vol / (2 * tau) * d_tau
               + tau * cash * cash_leg * d_rate
               - tau * share * share_leg * d_div)
    return vol, (d_price - d_other) / vega


# -- validation and the public function -------------------------------------------------------

def _instrument_arrays(instrument: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(strike, maturity, sign) of a European call/put (arrays broadcast) or a Book of them
    (shape (n,), in the order given); sign 1 for calls, -1 for puts."""
    def one(inst, where=""):
        if isinstance(inst, (EuropeanCall, EuropeanPut)):
            sign = 1.0 if isinstance(inst, EuropeanCall) else -1.0
            return inst.strike, inst.maturity, jnp.full(jnp.shape(inst.strike), sign,
                                                          float_dtype())
        raise ValueError(
            f"instrument{where} must be a EuropeanCall or EuropeanPut (implied_vol inverts the "
            f"Black-Scholes price of European options), got {type(inst).__name__}")

    if isinstance(instrument, Book):
        parts = [one(g, " (in the Book)") for g in instrument.groups]
        order = np.argsort(np.concatenate([np.asarray(idx) for idx in instrument.positions]))
        return tuple(jnp.concatenate([jnp.broadcast_to(p[i], jnp.shape(p[0]))
                                      for p in parts])[order] for i in range(3))
    if not isinstance(instrument, AbstractInstrument):
        raise ValueError("instrument must be a EuropeanCall or EuropeanPut (or a Book of them), "
                         f"got {type(instrument).__name__}")
    return one(instrument)


def _where(index: tuple, shape: tuple, own_shape: tuple, name: str) -> str:
    if not shape:
        return name
    if tuple(own_shape) == tuple(shape):
        return f"{name}[{', '.join(map(str, index))}]"
    return f"{name} (element [{', '.join(map(str, index))}] of the inputs broadcast together)"


# Codes of `_violations`, in the order they are reported.
_OK, _EXPIRED, _NOT_FINITE, _BELOW, _ABOVE = range(5)


def _violations(price, spot, strike, tau, rate, div, sign):
    """(code, intrinsic, upper) per element: the first no-arbitrage violation (`_OK` if none);
    a price below the intrinsic value by no more than its rounding counts as on it."""
    _, share, cash, intrinsic, upper = _market(spot, strike, tau, rate, div, sign)
    tol = jnp.where(intrinsic > 0, _INTRINSIC_ULPS * jnp.finfo(price.dtype).eps
                    * (share + cash), 0.0)
    code = jnp.where(~(tau > 0), _EXPIRED, jnp.where(
        ~jnp.isfinite(price), _NOT_FINITE, jnp.where(
            price < intrinsic - tol, _BELOW, jnp.where(price >= upper, _ABOVE, _OK))))
    return code, intrinsic, upper


@jax.jit
def _checked_program(price, spot, strike, tau, rate, div, sign):
    """The vols with `_violations`' codes and bounds: concrete inputs run as one program."""
    code, intrinsic, upper = _violations(price, spot, strike, tau, rate, div, sign)
    vol = _implied_vol_array(jnp.where(code == _OK, price, 0.5 * (intrinsic + upper)), spot,
                             strike, jnp.where(code == _EXPIRED, 1.0, tau), rate, div, sign)
    return vol, code, intrinsic, upper


def _bucket(n: int) -> int:
    """Padded length of n elements: a power of two >= 8, so that few programs compile."""
    return max(8, 1 << (n - 1).bit_length())


def _eager(price, spot, strike, maturity, t, rate, div, sign, own_shapes) -> jax.Array:
    """Concrete inputs (broadcast, host arrays): one compiled program per length bucket,
    then ValueError naming the first element outside the bounds, if any."""
    shape = price.shape
    n = price.size
    flat = [np.pad(a.reshape(-1), (0, _bucket(n) - n), mode="edge") if n else
            np.zeros(8, a.dtype) for a in (price, spot, strike, maturity, t, rate, div, sign)]
    price_, spot_, strike_, maturity_, t_, rate_, div_, sign_ = flat
    tau_ = maturity_ - t_
    vol, code, intrinsic, upper = (np.asarray(a)[:n] for a in _checked_program(
        price_, spot_, strike_, tau_, rate_, div_, sign_))
    bad = np.flatnonzero(code != _OK)
    if bad.size:
        k = bad[0]
        i = np.unravel_index(k, shape) if shape else ()
        i = tuple(int(j) for j in i)
        kind = "call" if sign_[k] > 0 else "put"
        when = f", at t {t_[k]:g}" if t_[k] != 0 else ""
        option = f"a {kind} with strike {strike_[k]:g} and maturity {maturity_[k]:g}{when}"
        label = _where(i, shape, own_shapes["price"], "price")
        if code[k] == _EXPIRED:
            raise ValueError(f"time to maturity (maturity - t) must be > 0, got "
                             f"{_where(i, shape, own_shapes['maturity'], 'maturity')} - t = "
                             f"{maturity_[k]:g} - {t_[k]:g} = {tau_[k]:g}")
        if code[k] == _NOT_FINITE:
            raise ValueError(f"{label} must be finite, got {price_[k]}")
        if code[k] == _BELOW:
            bound = ("max(S e^{-q tau} - K e^{-r tau}, 0)" if sign_[k] > 0
                     else "max(K e^{-r tau} - S e^{-q tau}, 0)")
            raise ValueError(f"{label} = {price_[k]:.10g} is below the no-arbitrage lower "
                             f"bound {intrinsic[k]:.10g} ({bound}, the intrinsic value) of "
                             f"{option}: no volatility gives this price")
        bound = "S e^{-q tau}, the discounted share" if sign_[k] > 0 else \
            "K e^{-r tau}, the discounted strike"
        raise ValueError(f"{label} = {price_[k]:.10g} is at or above the no-arbitrage upper "
                         f"bound {upper[k]:.10g} ({bound}) of {option}: only an infinite "
                         "volatility reaches it")
    return jnp.asarray(vol.reshape(shape))


def _traced(price, spot, strike, tau, rate, div, t, sign) -> jax.Array:
    """Traced inputs (under jit, vmap, grad): the checks run with the computation, as
    `eqx.error_if` naming the parameter (`runtime_checked`'s convention)."""
    code, _, _ = _violations(price, spot, strike, tau, rate, div, sign)
    failures = jnp.stack([
        jnp.any(~(jnp.isfinite(spot) & (spot > 0))),
        jnp.any(~(jnp.isfinite(rate) & jnp.isfinite(div) & jnp.isfinite(t))),
        jnp.any(code == _EXPIRED),
        jnp.any(code == _NOT_FINITE),
        jnp.any(code == _BELOW),
        jnp.any(code == _ABOVE),
    ])
    suffix = " (a traced value, checked at run time)"
    messages = (
        "spot must be finite and > 0" + suffix,
        "rate, div and t must be finite" + suffix,
        "time to maturity (maturity - t) must be > 0" + suffix,
        "price must be finite" + suffix,
        "price must be at or above the no-arbitrage lower bound, the intrinsic value "
        "max(w (S e^{-q tau} - K e^{-r tau}), 0) (w = 1 call, -1 put)" + suffix,
        "price must be below the no-arbitrage upper bound (S e^{-q tau} for a call, "
        "K e^{-r tau} for a put)" + suffix,
    )
    price = eqx.branched_error_if(price, jnp.any(failures), jnp.argmax(failures), messages)
    return _implied_vol_jit(price, spot, strike, tau, rate, div, sign)


def implied_vol(price: Any, instrument: EuropeanCall | EuropeanPut | Book, spot: Any,
                rate: Any = 0.0, div: Any = 0.0, t: Any = 0.0) -> jax.Array:
    """Black-Scholes implied volatility of European call and put prices.

    The vol that makes the Black-Scholes-Merton price of `instrument` equal to `price`, by
    Jaeckel's method in normalised form ("Let's be rational", Wilmott 2015; see this module's
    docstring for the algorithm and its accuracy): a fixed number of safeguarded third-order
    Householder steps under `lax`, so it runs under `jax.jit` and `jax.vmap`, and for
    thousands of quotes in one vectorised call.

    Args:
        price: option price(s) in currency, per unit of the option, at time `t`.
        instrument: a `EuropeanCall` or `EuropeanPut` (strike and maturity may be arrays,
            e.g. `EuropeanCall(strike=jnp.array([90., 100.]), maturity=1.)`), or a `Book` of
            them (shape (n,) in the order given; quantities are ignored).
        spot: price of the underlying at `t` (currency, > 0).
        rate: continuously compounded risk-free rate per year.
        div: continuous dividend yield per year.
        t: valuation time in years, any finite value as in `hj.price` (a negative t values
            the option before time 0); the time to maturity is tau = maturity - t > 0.

    `price`, the instrument's strike and maturity, `spot`, `rate`, `div` and `t` broadcast
    together; the result has their broadcast shape (for a Book: (n,) broadcast with the
    rest), in the working precision (float32, float64 under `jax_enable_x64`).

    Returns:
        Annualised implied volatility (e.g. 0.2 for 20%), >= 0. A price on its intrinsic
        value (within rounding: 4 ulps of S e^{-q tau} + K e^{-r tau} below it) gives 0, as
        does a normalised time value below the smallest normal float. Where the price does
        not carry the vol to working precision (deep in the money at low vol; see the module
        docstring) the vol of the rounded price is returned.

    Derivatives (`jax.grad`, `jax.jvp`): by the implicit function theorem, d vol / d price =
    1 / vega and d vol / d z = -(dP/dz) / vega for z in spot, strike, maturity, t, rate, div
    (analytic Black-Scholes partials). At vol = 0, or where vega underflows, the vol is not
    differentiable: its derivatives there are infinite or NaN.

    Raises:
        ValueError: naming the offending element (index and value), for a price that is not
            finite, below the lower bound max(S e^{-q tau} - K e^{-r tau}, 0) of a call
            (max(K e^{-r tau} - S e^{-q tau}, 0) of a put), or at or above the upper bound
            S e^{-q tau} of a call (K e^{-r tau} of a put); for maturity - t <= 0, a spot
            that is not > 0, a rate, div or t that is not finite; and for instruments other
            than European calls and puts, naming their type. Under `jax.jit`/`jax.vmap` the
            same checks run when the computation runs (an `EquinoxRuntimeError` naming the
            parameter, as `hedgejax._validate.runtime_checked` describes).

    Example:
        >>> import hedgejax as hj
        >>> vol = hj.implied_vol(10.450583572185565, hj.EuropeanCall(100.0, 1.0), 100.0,
        ...                      rate=0.05)
        >>> round(float(vol), 4)
        0.2
    """
    strike, maturity, sign = _instrument_arrays(runtime_checked(instrument))
    price = as_float(price, "price")
    spot = as_float(spot, "spot")
    rate = as_float(rate, "rate")
    div = as_float(div, "div")
    t = as_float(t, "t")
    check("spot", spot, lambda a: a > 0, "finite and > 0")
    for name, value in (("rate", rate), ("div", div), ("t", t)):
        check(name, value, lambda a: np.ones(np.shape(a), bool), "finite")
    own_shapes = {"price": jnp.shape(price), "maturity": jnp.shape(maturity)}
    inputs = (price, spot, strike, maturity, t, rate, div, sign)
    names = ("price", "spot", "strike", "maturity", "t", "rate", "div")
    try:
        jnp.broadcast_shapes(*(jnp.shape(a) for a in inputs))
    except ValueError:
        shapes = ", ".join(f"{n} {jnp.shape(a)}" for n, a in zip(names, inputs, strict=False)
                           if jnp.shape(a))
        raise ValueError(f"price, the instrument's strike and maturity, spot, rate, div and t "
                         f"must broadcast together, got shapes {shapes}") from None
    if all(is_concrete(a) for a in inputs):
        return _eager(*np.broadcast_arrays(*(np.asarray(a) for a in inputs)), own_shapes)
    price, spot, strike, maturity, t, rate, div, sign = jnp.broadcast_arrays(*inputs)
    return _traced(price, spot, strike, maturity - t, rate, div, t, sign)


_implied_vol_jit = jax.jit(_implied_vol_array)
