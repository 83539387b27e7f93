"""Semi-analytic Heston prices of European calls and puts, in JAX so `greeks()` and
`jax.grad` differentiate them with respect to spot, time and every model parameter.

Method: a damped Fourier inversion along a deformed contour with an optimal damping
(Lord and Kahl, "Optimal Fourier inversion in semi-analytical option pricing", J. Comp.
Finance 10(4), 2007) and the contour tilt of Andersen and Lake ("Robust high-precision option
pricing by Fourier transforms: contour deformations and double-exponential quadrature",
2018; the tilt rule is the one QuantLib's AnalyticHestonEngine uses for its angled contour).
With X = log(S_T / F), F = S e^{(r - q) tau} the forward, k = log(F / K) and
phi(z) = E[e^{i z X}] in the "little Heston trap" form (Albrecher, Mayer, Schoutens,
Tistaert 2007; the cancellation-free variant of Andersen and Lake),

    call = e^{-r tau} [ R(alpha) - F / pi * int_0^inf Re( e^{i z k} phi(z - i) z'(u)
                                                        / (z (z - i)) ) du ],
    z(u) = u (1 + i tan w) - i alpha,

where the residue term R(alpha) is 0 for alpha > 0, F for -1 < alpha < 0 and F - K for
alpha < -1 (so alpha > 0 integrates the call, alpha < -1 the put). The damping alpha is chosen
per option, as the minimiser of the integrand's size at u = 0,

    psi(alpha) = alpha k + log E[e^{(alpha + 1) X}] - log|alpha (alpha + 1)|,

inside the moment strip: the moments E[e^{p X}] exist only while the explosion time of
Andersen and Piterbarg ("Moment explosions in stochastic volatility models", Finance Stoch.
11, 2007) exceeds tau, and the strip edges are found by bisection. The side is the
out-of-the-money option (alpha > 0 when F < K, alpha < -1 otherwise: it is the smaller of
the two prices, so its value is computed with relative accuracy, with no cancellation);
alpha = -1/2 (Lewis's line) is used instead when its psi is smaller, which happens when the
strip is narrow (long maturities with large xi). psi is convex, and a safeguarded Newton
iteration finds its minimum. With this alpha the integrand is close to a Gaussian bump of
width 1 / sqrt(d^2/dp^2 log E[e^{p X}]) at u = 0 (a saddle point), so even prices 10
standard deviations out of the money (1e-21 of spot) come out to full relative precision.

The contour is tilted by the angle w = sign(k) pi / 12 when (rho - xi k / (v0 + kappa theta
tau)) k < 0, which turns the oscillation of e^{i u k} into exponential decay. The integral is
then taken with Gauss-Legendre on two panels: 32 nodes on the bump [0, 8 s] (s the bump's
width) and 64 nodes on [8 s, 8 s + 40 / lambda], where lambda is the asymptotic exponential
decay rate of the integrand along the contour, (v0 + kappa theta tau) / xi (sqrt(1 - rho^2)
- tan(w) r): the integrand has decayed by e^{-40} at the end. 96 characteristic-function
evaluations per price, as before. The damping, tilt and node placement are held out of
differentiation (`stop_gradient`): the integral does not depend on them.

Accuracy, float64, measured against QuantLib's AnalyticHestonEngine (adaptive Gauss-Lobatto
at relative tolerance 1e-13) and 30-digit mpmath integrals over a grid of T from 1 day to 30
years, K / S from 0.25 to 4, xi up to 5, rho in [-1, 1], Feller violated 10x and v0 from
1e-4 (experiments/heston_accuracy.py, results in experiments/results/heston_accuracy.md):
see that report for the figures. In float32 (the default) the quadrature is the same and the
error is set by float32 rounding (about 1e-6 of spot).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._instruments import EuropeanCall, EuropeanPut
from .._models.heston import Heston
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
_LEWIS_PREFERENCE = float(np.log(1e3))
# alpha stays inside this fraction of the moment strip.
_STRIP_SHRINK = 0.99
# Total variance floor: keeps scales finite for v0 = theta = 0 or tau -> 0.
_MIN_TOTAL_VARIANCE = 1e-12


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
    # Brackets as QuantLib's OptimalAlpha: (0, 0.99 (p+ - 1)) or (-1 + 0.99 (p- - 1 + 1), -1).
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
    use_lewis = ~(psi(alpha) <= psi(lewis) + _LEWIS_PREFERENCE)
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
    slope = jnp.maximum(jnp.sqrt(jnp.maximum(1.0 - rho * rho, 0.0)) - tan_tilt * r, 1e-3)
    decay = jnp.maximum(level / xi * slope, _MIN_TOTAL_VARIANCE)
    # Chernoff bound on the out-of-the-money price over F at this alpha:
    # (e^x - e^-k)^+ <= e^{(alpha+1) x + alpha k} sup_x(...) gives for alpha > 0
    # log(call / F) <= alpha k + log M(alpha + 1) - log(alpha + 1) + alpha log(alpha / (alpha + 1))
    # and for alpha < -1 the mirror image for the put. Below the dtype's tiny it is 0.
    ratio_log = jnp.log(jnp.abs(alpha) / jnp.abs(alpha + 1.0))
    bound = alpha * k + log_moment(alpha + 1.0) + jnp.where(
        alpha > 0, -jnp.log1p(alpha) + alpha * ratio_log,
        -jnp.log(-alpha) + (alpha + 1.0) * ratio_log)
    negligible = ~use_lewis & (bound < np.log(jnp.finfo(k.dtype).tiny))
    return alpha, tan_tilt, width, decay, negligible, jnp.sqrt(total_var)


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
    alpha, tan_tilt, width, decay, negligible, total_sd = _contour(*held)
    # A negligible price (below the dtype's tiny, by the Chernoff bound) is 0; its integral
    # is evaluated at a harmless damping so that nothing non-finite reaches the derivatives.
    alpha = jnp.where(negligible, jnp.where(alpha > 0, 1.0, -2.0), alpha)
    width = jnp.where(negligible, 1.0, width)
    decay = jnp.where(negligible, 1.0, decay)

    def last(x):
        return jnp.expand_dims(x, -1)

    (bump_x, bump_w), (geo_x, geo_w), (tail_x, tail_w) = (
        (x.astype(dtype), w.astype(dtype))
        for x, w in _RULES["float64" if dtype == jnp.float64 else "float32"])
    # Three panels: the bump [0, b] and the tail [b, b + L] split at m = min(b * span, b + L):
    # Gauss-Legendre in log u on [b, m] (algebraic decay), in u on [m, b + L] (exponential
    # decay and oscillation).
    bump_end = last(_BUMP_WIDTHS * width)
    end = bump_end + last(_TAIL_DECAY / decay)
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
    integral = jnp.sum(weights * integrand, axis=-1)
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
    return otm, pv_forward_minus_strike, call_otm


def _vanilla(model: Heston, log_spot, strike, tau, sign: float) -> jax.Array:
    live = tau > 0
    tau_safe = jnp.where(live, tau, 1.0)
    otm, pv_fwd_minus_strike, call_otm = _otm_and_forward(model, log_spot, strike, tau_safe)
    if sign > 0:
        value = otm + jnp.where(call_otm, 0.0, pv_fwd_minus_strike)
    else:
        value = otm + jnp.where(call_otm, -pv_fwd_minus_strike, 0.0)
    spot = jnp.exp(log_spot)
    intrinsic = jnp.maximum(sign * (spot - strike), 0.0)
    return jnp.where(live, value, intrinsic)


@register_pricer(Heston, EuropeanCall)
def _heston_call(model: Heston, inst: EuropeanCall, log_spot, tau) -> jax.Array:
    return _vanilla(model, log_spot, inst.strike, tau, 1.0)


@register_pricer(Heston, EuropeanPut)
def _heston_put(model: Heston, inst: EuropeanPut, log_spot, tau) -> jax.Array:
    return _vanilla(model, log_spot, inst.strike, tau, -1.0)
