"""The Heston pricer hedgejax shipped before issue 10 (Lewis formula with a Black-Scholes
control variate on a fixed 96-node Gauss-Legendre rule), kept verbatim as the baseline that
experiments/bench_pricing.py times the robust pricer against in the same process. Not
registered and not used by the library: it is wrong in the hard regimes issue 10 lists.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from hedgejax._models.heston import Heston
from hedgejax._pricing.normal import norm_cdf

# Quadrature layout in the scaled variable y = u sqrt(w) (module docstring).
_CORE_END = 9.0
_N_CORE = 32
_N_TAIL = 64
_TAIL_DECAY = 20.0  # the tail ends where |phi_H| has decayed by about e^-20
_Y_MAX = 80.0
# The correction integral fades out between these numbers of standard deviations |k|/sqrt(w).
_FADE_START, _FADE_END = 8.0, 10.0
# Total variance floor: keeps the node scale finite for v0 = theta = 0 or tau -> 0.
_MIN_TOTAL_VARIANCE = 1e-12


def _gauss_legendre_unit(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [0, 1]."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return 0.5 * (nodes + 1.0), 0.5 * weights


_CORE_NODES, _CORE_WEIGHTS = _gauss_legendre_unit(_N_CORE)
_TAIL_NODES, _TAIL_WEIGHTS = _gauss_legendre_unit(_N_TAIL)


def log_characteristic(u: jax.Array, tau: jax.Array, v0: jax.Array, kappa: jax.Array,
                       theta: jax.Array, xi: jax.Array, rho: jax.Array) -> jax.Array:
    """log E[exp(i w X)] at w = u - i/2 for X = log(S_tau / F) under Heston, u real.

    Little-trap form (Albrecher et al. 2007) with beta = kappa - rho xi i w, d = sqrt(beta^2 +
    xi^2 (i w + w^2)), g = (beta - d) / (beta + d). On this line i w + w^2 = u^2 + 1/4 is real
    and positive, so d never vanishes and the principal branches are continuous.
    Everything broadcasts; tau in years, variances annual.
    """
    a = u * u + 0.25
    beta = (kappa - 0.5 * rho * xi) - 1j * (rho * xi * u)
    d = jnp.sqrt(beta * beta + (xi * xi) * a)
    beta_plus_d = beta + d
    # (beta - d) = -xi^2 a / (beta + d): no cancellation and no division by xi^2.
    beta_minus_d_over_xi2 = -a / beta_plus_d
    g = xi * xi * beta_minus_d_over_xi2 / beta_plus_d
    one_minus_e = -jnp.expm1(-d * tau)
    e = 1.0 - one_minus_e
    b_coef = beta_minus_d_over_xi2 * one_minus_e / (1.0 - g * e)
    # log((1 - g e) / (1 - g)) = log1p(g (1 - e) / (1 - g)); over xi^2 it has a finite limit.
    log_ratio = jnp.log1p(g * one_minus_e / (1.0 - g))
    a_coef = kappa * theta * (beta_minus_d_over_xi2 * tau - 2.0 * log_ratio / (xi * xi))
    return a_coef + b_coef * v0


def expected_total_variance(tau, v0, kappa, theta) -> jax.Array:
    """E[int_0^tau v_s ds] = theta tau + (v0 - theta)(1 - e^{-kappa tau}) / kappa (years x
    annual variance)."""
    return theta * tau - (v0 - theta) * jnp.expm1(-kappa * tau) / kappa


def _fade(x: jax.Array) -> jax.Array:
    """1 for |x| <= _FADE_START, 0 for |x| >= _FADE_END, C^2 smootherstep in between."""
    s = jnp.clip((jnp.abs(x) - _FADE_START) / (_FADE_END - _FADE_START), 0.0, 1.0)
    return 1.0 - s * s * s * (10.0 - 15.0 * s + 6.0 * s * s)


def _call(model: Heston, log_spot, strike, tau) -> jax.Array:
    """Heston call value for tau > 0 (the caller handles tau <= 0)."""
    params = (model.v0, model.kappa, model.theta, model.xi, model.rho)
    dtype = jnp.result_type(log_spot, strike, tau, model.rate, model.div, *params)
    log_spot, strike, tau = (jnp.asarray(x, dtype) for x in (log_spot, strike, tau))
    v0, kappa, theta, xi, rho = (jnp.asarray(p, dtype) for p in params)
    rate, div = jnp.asarray(model.rate, dtype), jnp.asarray(model.div, dtype)

    log_moneyness = log_spot + (rate - div) * tau - jnp.log(strike)
    total_var = jnp.maximum(expected_total_variance(tau, v0, kappa, theta),
                            _MIN_TOTAL_VARIANCE)
    total_sd = jnp.sqrt(total_var)
    discount = jnp.exp(-rate * tau)

    # Black-Scholes control variate with the same total variance.
    forward = jnp.exp(log_spot + (rate - div) * tau)
    d1 = log_moneyness / total_sd + 0.5 * total_sd
    control = discount * (forward * norm_cdf(d1) - strike * norm_cdf(d1 - total_sd))

    # Nodes in u = y / sqrt(w), placed per option; held constant under differentiation.
    scale = lax.stop_gradient(total_sd)
    decay = lax.stop_gradient(
        (v0 + kappa * theta * tau) * jnp.sqrt(jnp.maximum(1.0 - rho * rho, 0.0))
        / (xi * total_sd))
    tail_end = jnp.clip(_TAIL_DECAY / decay, _CORE_END, _Y_MAX)
    core_y = jnp.asarray(_CORE_END * _CORE_NODES, dtype)
    core_w = jnp.asarray(_CORE_END * _CORE_WEIGHTS, dtype)
    tail_len = (tail_end - _CORE_END)[..., None]
    tail_y = _CORE_END + tail_len * jnp.asarray(_TAIL_NODES, dtype)
    tail_w = tail_len * jnp.asarray(_TAIL_WEIGHTS, dtype)
    batch = jnp.shape(tail_end)
    y = jnp.concatenate([jnp.broadcast_to(core_y, batch + core_y.shape), tail_y], axis=-1)
    weights = jnp.concatenate([jnp.broadcast_to(core_w, batch + core_w.shape), tail_w],
                              axis=-1)
    u = y / scale[..., None]

    def last(x):
        return jnp.expand_dims(x, -1)

    a = u * u + 0.25
    phase = u * last(log_moneyness)
    # Re[e^{iuk} (phi_H - phi_BS)] with one real exp and two cosines (phi_BS is real here).
    exponent = log_characteristic(u, last(tau), last(v0), last(kappa), last(theta), last(xi),
                                  last(rho)) + 1j * phase
    heston_part = jnp.exp(jnp.real(exponent)) * jnp.cos(jnp.imag(exponent))
    bs_part = jnp.exp(-0.5 * last(total_var) * a) * jnp.cos(phase)
    integrand = (heston_part - bs_part) / a
    integral = jnp.sum(weights * integrand, axis=-1) / scale
    correction = strike * discount * jnp.exp(0.5 * log_moneyness) / np.pi * integral
    return control - _fade(log_moneyness / total_sd) * correction


def _vanilla(model: Heston, log_spot, strike, tau, sign: float) -> jax.Array:
    live = tau > 0
    tau_safe = jnp.where(live, tau, 1.0)
    call = _call(model, log_spot, strike, tau_safe)
    spot = jnp.exp(log_spot)
    if sign < 0:  # put-call parity
        value = call - spot * jnp.exp(-model.div * tau_safe) + strike * jnp.exp(
            -model.rate * tau_safe)
    else:
        value = call
    intrinsic = jnp.maximum(sign * (spot - strike), 0.0)
    return jnp.where(live, value, intrinsic)
