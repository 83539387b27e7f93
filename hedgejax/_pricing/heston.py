"""Semi-analytic Heston prices of European calls and puts, in JAX so `greeks()` and
`jax.grad` differentiate them with respect to spot, time and every model parameter.

Method: a damped Fourier inversion on a tilted contour with an optimal damping (Lord and
Kahl, "Optimal Fourier inversion in semi-analytical option pricing", J. Comp. Finance 10(4),
2007; Andersen and Lake, "Robust high-precision option pricing by Fourier transforms: contour
deformations and double-exponential quadrature", 2018). With X = log(S_T / F),
F = S e^{(r - q) tau} the forward, k = log(F / K) and phi(z) = E[e^{i z X}] in the
cancellation-free "little Heston trap" form (Albrecher, Mayer, Schoutens, Tistaert 2007;
Andersen and Lake 2018),

    call = e^{-r tau} [ R(alpha) - F / pi * int_0^inf Re( e^{i z k} phi(z - i) z'(u)
                                                        / (z (z - i)) ) du ],
    z(u) = u (1 + i tan w) - i alpha,

where R(alpha) is 0 for alpha > 0, F for -1 < alpha < 0 and F - K for alpha < -1 (residues
of the poles at z = 0 and z = i).

Damping. The integrand's size at u = 0 is exp(psi(alpha)),
psi(alpha) = alpha k + log E[e^{(alpha + 1) X}] - log|alpha (alpha + 1)|. The moments exist
only inside a strip whose edges are where the explosion time of Andersen and Piterbarg
("Moment explosions in stochastic volatility models", Finance Stoch. 11, 2007) equals tau;
they are found by bisection. On the out-of-the-money side (alpha > 0 when F < K: the call;
alpha < -1 otherwise: the put, always the smaller of the two, so there is no cancellation)
psi is convex, and a safeguarded Newton iteration from the Black-Scholes optimum finds its
minimum: a saddle point, where the integrand is a smooth bump. This is what keeps prices 10
standard deviations out of the money (1e-21 of spot) at full relative precision. Lewis's line
alpha = -1/2 is used instead only when the side's integrand is larger by a factor of 1e6
(float64; 1e3 in float32), i.e. when the strip is very narrow. If the Chernoff bound
E[(e^X - e^{-k})^+] <= e^{alpha k} E[e^{(alpha+1) X}] alpha^alpha / (alpha+1)^(alpha+1) (and its
mirror for puts) is below the dtype's smallest normal number, the price is exactly 0 to that
precision and is returned as 0 (e.g. beyond the bounded support of S_T when rho = -1).

Tilt. The contour is tilted by tan w = -sign(r) tan(pi / 12), r = rho - xi k / (v0 +
kappa theta tau): the characteristic function then decays like exp(-lambda u) with
lambda = (v0 + kappa theta tau) / xi (sqrt(1 - rho^2) - r tan w) > 0 even at |rho| = 1.
(QuantLib's angled contour tilts only where r k < 0; measured here, tilting against r is
also right on the other side.) Lewis's line is never tilted.

Quadrature: Gauss-Legendre on three panels, [0, b] with b = 8 bump widths (the Gaussian
width 1 / sqrt(d^2 log E[e^{pX}] / dp^2), or the distance of alpha to a pole when smaller),
[b, m] in log u with m = min(max(64 b, 8 / sqrt(w)), end) where the algebraic decay
1 / |z (z - i)| dominates, and [m, end] in u, with end = b + max(40 / lambda, 12 / sqrt(w))
(w the expected total variance). 224 characteristic-function evaluations per price in
float64, 160 in float32. The damping, tilt and panels are held out of differentiation
(`stop_gradient`): the integral does not depend on them.

Accuracy, float64, against QuantLib 1.44's AnalyticHestonEngine (three variants at 1e-13)
and 40-digit mpmath on a grid of 3087 points x call and put (T 1 day..30 years, K / S
0.25..4, rho in [-1, 1], xi up to 5, v0 from 1e-4, Feller violated 10x;
experiments/heston_accuracy.py, results in experiments/results/heston_accuracy.md): max
error 3.5e-10 x spot, max relative error 6.6e-9 for prices above 1e-6 x spot (the 32
refused prices aside, see below); delta, vega and theta within 1.2e-7 relative of Richardson
finite differences of QuantLib, gamma within 1.5e-5 (one case at rho = 0.99, T = 5 misses
the 1e-6 target; another "miss" is finite-difference noise on a 1e-20 price). float32: max
error 6.6e-7 x spot.

Refusal: at |rho| = 1 (to within 5e-7) the characteristic function decays only on a tilted
contour, and when the out-of-the-money side of the moment strip is narrower than 0.03 in
alpha (e.g. xi = 5, kappa theta tiny) or only Lewis's line is left, the integral is not
resolved. The price then raises `ValueError` naming the parameters (an equinox runtime error
under jit) instead of returning an unresolved number: 32 of the grid's 6174 prices
(experiments/results/heston_accuracy.md). Use |rho| < 1 or Monte Carlo there.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._instruments import EuropeanCall, EuropeanPut
from .._models.heston import Heston
from .._numerics import ordered_sum
from .._validate import is_concrete
from .normal import norm_cdf
from .registry import register_pricer

# Quadrature: Gauss-Legendre nodes on the bump and on the tail (module docstring), per
# precision: float64 needs more nodes to reach its 1e-10 relative target in the hardest regimes
# (30-year maturities with xi = 5), float32 stops at its own rounding level.
_NODES = {"float64": (64, 64, 96), "float32": (48, 48, 64)}
# The middle panel, geometric, covers [b, max(b * _GEOMETRIC_SPAN, 8 / sqrt(w))] (b the bump
# panel's end, w the expected total variance), where the algebraic decay 1 / |z (z - i)| of the
# integrand or the spread of the variance's law sets the scale.
_GEOMETRIC_SPAN = 64.0
_BUMP_WIDTHS = 8.0   # the bump panel spans this many bump widths
_TAIL_DECAY = 40.0   # the tail panel ends where the integrand has decayed by e^-40
_SLOPE_FLOOR = 1e-3
_MAX_TAIL_PERIODS = 16.0  # most oscillations the tail panel is trusted with (untilted)
# An out-of-the-money side of the moment strip narrower than this (in alpha) is not resolved
# (rho near +-1 with a large xi and a long maturity).
_NARROW_STRIP = 0.03
_NEAR_ONE_RHO = 0.02   # |rho| within this of 1 and the side narrower than
_VANISHING_STRIP = 1e-4  # this: not resolved either (measured: 30 years, xi 2..5, rho 0.999)
_GAUSSIAN_REACH = 12.0  # ... and not before 12 / sqrt(w) (w the expected total variance)
_TAN_TILT = float(np.tan(np.pi / 12))
# Moment strip search: bisection on log(p - 1) (or log(-p)) over [_LOG_P_MIN, _LOG_P_MAX].
_LOG_P_MIN, _LOG_P_MAX = float(np.log(1e-8)), float(np.log(1e8))
# |alpha| is capped here: beyond it the Chernoff bound at the cap decides (module docstring).
_ALPHA_CAP = 1e4
_STRIP_ITERATIONS = 48
_NEWTON_ITERATIONS = 12
# Lewis's line (alpha = -1/2, no tilt) is used only when the out-of-the-money side's integrand
# is larger than its own by more than this factor (log): the side's tilted contour decays
# exponentially even where the horizontal line does not (|rho| near 1).
# The factor is the rounding error the dtype can afford to amplify: 1e6 in float64 (prices
# still to ~1e-10 relative), 1e3 in float32.
_LEWIS_PREFERENCE = {"float64": float(np.log(1e6)), "float32": float(np.log(1e3))}
# alpha stays inside this fraction of its side of the moment strip (QuantLib uses 0.99; half
# leaves the tilted contour room before the strip's edge, which it moves towards).
_STRIP_SHRINK = 0.5
# Total variance floor: keeps scales finite for v0 = theta = 0 or tau -> 0.
_MIN_TOTAL_VARIANCE = 1e-12
# Closer to expiry than this (years, about 5 minutes) the price is Black-Scholes with the
# expected total variance: the damped integrand's scales become degenerate there.
_NEAR_EXPIRY = 1e-5


def _gauss_legendre_unit(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [0, 1]."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return 0.5 * (nodes + 1.0), 0.5 * weights


_RULES = {name: tuple(_gauss_legendre_unit(n) for n in counts)
          for name, counts in _NODES.items()}


def log_characteristic(z: jax.Array, tau: jax.Array, v0: jax.Array, kappa: jax.Array,
                       theta: jax.Array, xi: jax.Array, rho: jax.Array) -> jax.Array:
    """log E[exp(i z X)] for X = log(S_tau / F) under Heston, z complex in the strip.

    Little-trap form (Albrecher et al. 2007) as written by Andersen and Lake (2018), which
    avoids cancellation: with a = z^2 + i z, beta = kappa - i rho xi z and
    d = sqrt(beta^2 + xi^2 a) (principal branch), r = beta - d is computed as
    -xi^2 a / (beta + d) when Re(beta conj(d)) > 0 and directly otherwise,
    y = expm1(-d tau) / (2 d), and

        log phi = kappa theta / xi^2 (r tau - 2 log1p(-r y)) + v0 a y / (1 - r y).

    r / xi^2 is formed without dividing by xi^2 on the first branch, so small xi is accurate.
    Everything broadcasts; tau in years, variances annual.
    """
    a = z * (z + 1j)
    beta = kappa - 1j * (rho * xi) * z
    d = jnp.sqrt(beta * beta + (xi * xi) * a)
    same_side = jnp.real(beta * jnp.conj(d)) > 0
    r_over_xi2 = (jnp.where(same_side, -a, beta - d)
                  / jnp.where(same_side, beta + d, xi * xi))
    r = (xi * xi) * r_over_xi2
    y = jnp.expm1(-d * tau) / (2.0 * d)
    a_coef = kappa * theta * (r_over_xi2 * tau - 2.0 * jnp.log1p(-r * y) / (xi * xi))
    return a_coef + v0 * (a * y / (1.0 - r * y))


def expected_total_variance(tau, v0, kappa, theta) -> jax.Array:
    """E[int_0^tau v_s ds] = theta tau + (v0 - theta)(1 - e^{-kappa tau}) / kappa (years x
    annual variance)."""
    return theta * tau - (v0 - theta) * jnp.expm1(-kappa * tau) / kappa


def explosion_time(p: jax.Array, kappa, xi, rho) -> jax.Array:
    """Time at which E[S_t^p] becomes infinite under Heston (Andersen and Piterbarg 2007),
    +inf when it never does. With b = kappa - rho xi p and D = b^2 - xi^2 p (p - 1):
    p in [0, 1] or (D >= 0 and b >= 0): never; D >= 0, b < 0: log((-b + sqrt D) / (-b -
    sqrt D)) / sqrt D; D < 0: (2 / g)(pi / 2 + arctan(b / g)), g = sqrt(-D)."""
    b = kappa - rho * xi * p
    disc = b * b - xi * xi * p * (p - 1.0)
    real_root = disc >= 0
    root = jnp.sqrt(jnp.where(real_root, disc, 1.0))
    gap = -b - root
    finite_real = real_root & (b < 0) & (gap > 0)
    t_real = jnp.log((-b + root) / jnp.where(finite_real, gap, 1.0)) / root
    gamma = jnp.sqrt(jnp.where(real_root, 1.0, -disc))
    t_complex = (2.0 / gamma) * (0.5 * np.pi + jnp.arctan(b / gamma))
    t = jnp.where(real_root, jnp.where(finite_real, t_real, jnp.inf), t_complex)
    return jnp.where((p >= 0) & (p <= 1), jnp.inf, t)


def _strip_edge(tau, kappa, xi, rho, side: float) -> jax.Array:
    """The edge of the moment strip beyond p = 1 (side = +1) or below p = 0 (side = -1):
    where the explosion time reaches tau, by bisection in log|p - p0|, capped at 1e8."""
    origin = 1.0 if side > 0 else 0.0
    shape = jnp.shape(tau * kappa * xi * rho)
    dtype = jnp.result_type(tau)
    lo = jnp.full(shape, _LOG_P_MIN, dtype)
    hi = jnp.full(shape, _LOG_P_MAX, dtype)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        finite = explosion_time(origin + side * jnp.exp(mid), kappa, xi, rho) > tau
        return jnp.where(finite, mid, lo), jnp.where(finite, hi, mid)

    lo, _ = lax.fori_loop(0, _STRIP_ITERATIONS, body, (lo, hi))
    return origin + side * jnp.exp(lo)


def _contour(log_moneyness, tau, v0, kappa, theta, xi, rho):
    """Damping alpha, tilt tan(w), bump width s and tail decay lambda for each option
    (module docstring). Inputs are held constant (no derivative flows through)."""
    k = log_moneyness

    def log_moment(p):
        return jnp.real(log_characteristic(-1j * p, tau, v0, kappa, theta, xi, rho))

    def psi(alpha):
        return alpha * k + log_moment(alpha + 1.0) - jnp.log(jnp.abs(alpha * (alpha + 1.0)))

    def derivative(fn):
        # Forward mode only (elementwise functions): cheaper to compile than reverse mode.
        return lambda x: jax.jvp(fn, (x,), (jnp.ones_like(x),))[1]

    dpsi = derivative(psi)

    call_side = k < 0
    upper = _strip_edge(tau, kappa, xi, rho, 1.0) - 1.0    # alpha < p+ - 1
    lower = _strip_edge(tau, kappa, xi, rho, -1.0) - 1.0   # alpha > p- - 1
    # Brackets: (0, c (p+ - 1)) or (-1 + c (p- - 1 + 1), -1), c = _STRIP_SHRINK.
    lo = jnp.where(call_side, 0.0, jnp.maximum(-1.0 + _STRIP_SHRINK * (lower + 1.0),
                                               -_ALPHA_CAP))
    hi = jnp.where(call_side, jnp.minimum(_STRIP_SHRINK * upper, _ALPHA_CAP), -1.0)
    # Start near the Black-Scholes optimum with the same total variance w: for large |alpha|,
    # psi'(alpha) = 0 reads w alpha^2 + k alpha - 2 = 0; take the root on the chosen side.
    total_var = jnp.maximum(expected_total_variance(tau, v0, kappa, theta), _MIN_TOTAL_VARIANCE)
    root = jnp.sqrt(k * k + 8.0 * total_var)
    start = jnp.where(call_side, -k + root, -k - root) / (2.0 * total_var) - 0.5
    alpha = jnp.where(call_side, jnp.clip(start, 0.5 * jnp.minimum(hi, 1.0), 0.5 * hi),
                      jnp.clip(start, 0.5 * (lo - 1.0), -1.0 - 0.5 * jnp.minimum(-1.0 - lo, 1.0)))
    # Every option its own Newton state (v0 may be an array of per-path variances).
    shape = jnp.broadcast_shapes(*(jnp.shape(x) for x in (k, tau, v0, kappa, theta, xi, rho)))
    alpha, lo, hi = (jnp.broadcast_to(x, shape) for x in (alpha, lo, hi))

    def newton(_, state):
        alpha, lo, hi = state
        slope, curvature = jax.jvp(dpsi, (alpha,), (jnp.ones_like(alpha),))
        lo = jnp.where(slope > 0, lo, alpha)
        hi = jnp.where(slope > 0, alpha, hi)
        step = alpha - slope / curvature
        ok = (step >= lo) & (step <= hi) & jnp.isfinite(step)
        return jnp.where(ok, step, 0.5 * (lo + hi)), lo, hi

    alpha, _, _ = lax.fori_loop(0, _NEWTON_ITERATIONS, newton, (alpha, lo, hi))
    # Lewis's line alpha = -1/2 when the out-of-the-money side is worse (a narrow strip).
    lewis = jnp.full_like(alpha, -0.5)
    preference = _LEWIS_PREFERENCE["float64" if k.dtype == jnp.float64 else "float32"]
    use_lewis = ~(psi(alpha) <= psi(lewis) + preference)
    alpha = jnp.where(use_lewis, lewis, alpha)

    second = derivative(derivative(log_moment))(alpha + 1.0)
    # The bump's width: the Gaussian part's, or the distance to the nearer pole of
    # 1 / (z (z - i)) (at alpha = 0 and -1) when alpha is closer to it (a Lorentzian peak).
    width = jnp.minimum(1.0 / jnp.sqrt(jnp.maximum(second, _MIN_TOTAL_VARIANCE)),
                        jnp.minimum(jnp.abs(alpha), jnp.abs(alpha + 1.0)))

    level = v0 + kappa * theta * tau
    r = rho - xi * k / jnp.where(level > 0, level, 1.0)
    # No tilt on Lewis's line: between the poles at Im z = 0 and 1 any tilt would cross one.
    tan_tilt = jnp.where(use_lewis, 0.0, -_TAN_TILT * jnp.sign(r))
    # A floor only against lambda = 0 (rho = +-1 on an untilted line).
    slope = jnp.maximum(jnp.sqrt(jnp.maximum(1.0 - rho * rho, 0.0)) - tan_tilt * r,
                        _SLOPE_FLOOR)
    decay = jnp.maximum(level / xi * slope, _MIN_TOTAL_VARIANCE)
    # Chernoff bound on the out-of-the-money price over F at this alpha:
    # (e^x - e^-k)^+ <= e^{(alpha+1) x + alpha k} sup_x(...) gives for alpha > 0
    # log(call / F) <= alpha k + log M(alpha + 1) - log(alpha + 1) + alpha log(alpha / (alpha + 1))
    # and for alpha < -1 the mirror image for the put. Below the dtype's tiny it is 0.
    ratio_log = jnp.log(jnp.abs(alpha) / jnp.abs(alpha + 1.0))
    bound = alpha * k + log_moment(alpha + 1.0) + jnp.where(
        alpha > 0, -jnp.log1p(alpha) + alpha * ratio_log,
        -jnp.log(-alpha) + (alpha + 1.0) * ratio_log)
    # No variance at all (v0 = 0 and kappa theta tau = 0): S_T = F, the out-of-the-money
    # value is exactly 0.
    degenerate = level <= 0
    negligible = degenerate | (~use_lewis & (bound < np.log(jnp.finfo(k.dtype).tiny)))
    # On the untilted line the tail panel must resolve the oscillation e^{i u (k - rho
    # level / xi)} over its decay; past _MAX_TAIL_PERIODS periods the price is not certified.
    frequency = jnp.abs(k - rho * level / xi)
    periods = _TAIL_DECAY * frequency / (2.0 * np.pi * decay)
    # Only where the line does not decay at all (|rho| = 1 up to the floor): elsewhere the
    # measured errors stay within the targets (experiments/results/heston_accuracy.md).
    no_decay = jnp.sqrt(jnp.maximum(1.0 - rho * rho, 0.0)) < _SLOPE_FLOOR
    side_width = jnp.where(call_side, upper, -1.0 - lower)
    near_one = 1.0 - jnp.abs(rho) < _NEAR_ONE_RHO
    uncertified = ((no_decay & use_lewis & (periods > _MAX_TAIL_PERIODS))
                   | (no_decay & (side_width < _NARROW_STRIP))
                   | (near_one & (side_width < _VANISHING_STRIP)))
    return (alpha, tan_tilt, width, decay, negligible, jnp.sqrt(total_var), uncertified)


def _otm_and_forward(model: Heston, log_spot, strike, tau):
    """(value of the out-of-the-money option, forward minus strike in present value, whether
    the call is the out-of-the-money one), tau > 0."""
    params = (model.v0, model.kappa, model.theta, model.xi, model.rho, model.rate, model.div)
    dtype = jnp.result_type(log_spot, strike, tau, *params)
    args = (log_spot, strike, tau, *params)
    return _otm_and_forward_arrays(*(jnp.asarray(x, dtype) for x in args))


@jax.jit
def _otm_and_forward_arrays(log_spot, strike, tau, v0, kappa, theta, xi, rho, rate, div):
    # Compiled on its own so that eager calls of `price` do not dispatch the loops of
    # `_contour` op by op (inside an outer jit this is inlined).
    dtype = log_spot.dtype
    log_forward = log_spot + (rate - div) * tau
    log_moneyness = log_forward - jnp.log(strike)
    held = [lax.stop_gradient(x) for x in (log_moneyness, tau, v0, kappa, theta, xi, rho)]
    alpha, tan_tilt, width, decay, negligible, total_sd, uncertified = _contour(*held)
    # A negligible price (below the dtype's tiny, by the Chernoff bound) is 0; its integral
    # is evaluated at a harmless damping so that nothing non-finite reaches the derivatives.
    alpha = jnp.where(negligible, jnp.where(alpha > 0, 1.0, -2.0), alpha)
    width = jnp.where(negligible, 1.0, width)
    decay = jnp.where(negligible, 1.0, decay)
    total_sd = jnp.where(negligible, 1.0, total_sd)

    def last(x):
        return jnp.expand_dims(x, -1)

    (bump_x, bump_w), (geo_x, geo_w), (tail_x, tail_w) = (
        (x.astype(dtype), w.astype(dtype))
        for x, w in _RULES["float64" if dtype == jnp.float64 else "float32"])
    # Three panels: the bump [0, b] and the tail [b, b + L] split at m = min(b * span, b + L):
    # Gauss-Legendre in log u on [b, m] (algebraic decay), in u on [m, b + L] (exponential
    # decay and oscillation).
    bump_end = last(_BUMP_WIDTHS * width)
    # The tail ends after e^-40 of the asymptotic exponential decay, and not before the
    # Gaussian part of a nearly Black-Scholes law (small xi) has decayed by e^-72.
    end = bump_end + last(jnp.maximum(_TAIL_DECAY / decay, _GAUSSIAN_REACH / total_sd))
    split = jnp.minimum(jnp.maximum(bump_end * _GEOMETRIC_SPAN,
                                    last(_BUMP_WIDTHS / total_sd)), end)
    log_span = jnp.log(split / bump_end)
    geo_u = bump_end * jnp.exp(log_span * geo_x)
    u = jnp.concatenate([bump_end * bump_x, geo_u, split + (end - split) * tail_x], -1)
    weights = jnp.concatenate([bump_end * bump_w, log_span * geo_u * geo_w,
                               (end - split) * tail_w], -1)
    direction = 1.0 + 1j * last(tan_tilt)
    z = u * direction - 1j * last(alpha)
    z_shift = z - 1j
    exponent = (1j * z * last(log_moneyness)
                + log_characteristic(z_shift, last(tau), last(v0), last(kappa), last(theta),
                                     last(xi), last(rho)))
    integrand = jnp.real(jnp.exp(exponent) * direction / (z * z_shift))
    integral = ordered_sum(weights * integrand, axis=-1)
    forward = jnp.exp(log_forward)
    discount = jnp.exp(-rate * tau)
    # R(alpha) - F / pi * integral is the call (alpha > 0), call - (F - K) (alpha < -1) or
    # call - F (alpha = -1/2): in each case the out-of-the-money option's forward value
    # follows by adding back what is not it.
    lewis = (alpha > -1.0) & (alpha < 0.0)
    call_otm = log_moneyness < 0
    undiscounted = -forward / np.pi * integral
    forward_minus_strike = forward - strike
    otm = jnp.where(lewis,
                    undiscounted + jnp.where(call_otm, forward, strike),
                    undiscounted)
    otm = discount * jnp.where(negligible, 0.0, jnp.maximum(otm, 0.0))
    pv_forward_minus_strike = discount * forward_minus_strike
    return otm, pv_forward_minus_strike, call_otm, uncertified


def _vanilla(model: Heston, log_spot, strike, tau, sign: float) -> jax.Array:
    live = tau > 0
    near = live & (tau < _NEAR_EXPIRY)
    tau_safe = jnp.where(live & ~near, tau, 1.0)
    otm, pv_fwd_minus_strike, call_otm, uncertified = _otm_and_forward(
        model, log_spot, strike, tau_safe)
    if sign > 0:
        value = otm + jnp.where(call_otm, 0.0, pv_fwd_minus_strike)
    else:
        value = otm + jnp.where(call_otm, -pv_fwd_minus_strike, 0.0)
    spot = jnp.exp(log_spot)
    intrinsic = jnp.maximum(sign * (spot - strike), 0.0)
    value = jnp.where(near, _near_expiry(model, log_spot, strike, tau, sign), value)
    value = jnp.where(live, value, intrinsic)
    return _refuse_uncertified(value, uncertified & live & ~near, model, strike, tau)


def _near_expiry(model: Heston, log_spot, strike, tau, sign: float) -> jax.Array:
    """Within _NEAR_EXPIRY of maturity: Black-Scholes with Heston's expected total variance
    (the Heston correction is O(xi^2 tau) relative there, below 1e-5)."""
    tau = jnp.clip(tau, 1e-12, _NEAR_EXPIRY)
    total_var = jnp.maximum(expected_total_variance(tau, model.v0, model.kappa, model.theta),
                            _MIN_TOTAL_VARIANCE)
    sd = jnp.sqrt(total_var)
    d1 = (log_spot - jnp.log(strike) + (model.rate - model.div) * tau) / sd + 0.5 * sd
    share = jnp.exp(log_spot - model.div * tau) * norm_cdf(sign * d1)
    cash = strike * jnp.exp(-model.rate * tau) * norm_cdf(sign * (d1 - sd))
    return jnp.maximum(sign * (share - cash), 0.0)


def _refuse_uncertified(value, uncertified, model: Heston, strike, tau) -> jax.Array:
    """Raise where the quadrature cannot be trusted (module docstring): `ValueError` for
    concrete values, an equinox runtime error under jit."""
    if is_concrete(uncertified):
        if np.any(np.asarray(uncertified)):
            raise ValueError(_UNCERTIFIED.format(
                rho=_shown(model.rho), xi=_shown(model.xi), v0=_shown(model.v0),
                kappa=_shown(model.kappa), theta=_shown(model.theta),
                strike=_shown(strike), tau=_shown(tau)))
        return value
    return eqx.error_if(value, uncertified, _UNCERTIFIED.format(
        rho="rho", xi="xi", v0="v0", kappa="kappa", theta="theta", strike="K", tau="tau"))


_UNCERTIFIED = (
    "Heston price not certified: the moment strip is too narrow for a damped contour and the "
    "characteristic function barely decays (rho={rho}, xi={xi}, v0={v0}, kappa={kappa}, "
    "theta={theta}, strike={strike}, tau={tau}); |rho| = 1 with a huge xi * sqrt(tau) is "
    "outside what the Fourier pricer resolves: use |rho| < 1 or Monte Carlo (hj.mc_price)")


def _shown(x) -> str:
    arr = np.asarray(x)
    return f"{arr.item():.6g}" if arr.size == 1 else f"array of shape {arr.shape}"


@register_pricer(Heston, EuropeanCall)
def _heston_call(model: Heston, inst: EuropeanCall, log_spot, tau) -> jax.Array:
    return _vanilla(model, log_spot, inst.strike, tau, 1.0)


@register_pricer(Heston, EuropeanPut)
def _heston_put(model: Heston, inst: EuropeanPut, log_spot, tau) -> jax.Array:
    return _vanilla(model, log_spot, inst.strike, tau, -1.0)
