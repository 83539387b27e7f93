"""Heston world: stochastic variance, simulated by Andersen's QE scheme or full-truncation Euler.

Dynamics under the risk-neutral measure (time in years, v an annual variance, continuously
compounded rate r and dividend yield q):

    dS/S = (r - q) dt + sqrt(v) dW1
    dv   = kappa (theta - v) dt + xi sqrt(v) dW2,        d<W1, W2> = rho dt.

References: Heston (1993); Andersen, "Simple and efficient simulation of the Heston stochastic
volatility model", J. Comp. Finance 11(3), 2008 (QE scheme and its martingale correction);
Lord, Koekkoek and van Dijk, "A comparison of biased simulation schemes for stochastic
volatility models", Quant. Finance 10(2), 2010 (full truncation Euler).
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from .._random import Draws
from .._validate import (
    as_float,
    check,
    check_finite,
    check_nonnegative,
    check_positive,
    is_concrete,
)
from .base import AbstractModel, ModelState

# Andersen's switching level between the quadratic and the exponential QE branches.
_PSI_SWITCH = 1.5
_SCHEMES = ("qe", "euler")


class FellerWarning(UserWarning):
    """The Feller condition 2 kappa theta >= xi^2 fails: the variance can reach zero."""


def _safe_sqrt(x: jax.Array) -> jax.Array:
    """sqrt(max(x, 0)) with a zero (not infinite) derivative at 0, so pathwise gradients
    through paths whose variance touches zero stay finite."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


class Heston(AbstractModel):
    """Heston (1993) stochastic-volatility world.

    Args:
        spot: price of the underlying at t=0 (currency, > 0).
        v0: instantaneous variance at t=0 (annual variance, >= 0; 0.04 is 20% vol). After
            `conditioned()` it is an array with one variance per path.
        kappa: speed of mean reversion of the variance (per year, > 0).
        theta: long-run variance (annual variance, >= 0).
        xi: volatility of variance (per sqrt(year), > 0). For xi -> 0 the model tends to
            Black-Scholes with the deterministic variance path; use `BlackScholes` there.
        rho: correlation of the spot and variance Brownian motions, in [-1, 1].
        rate: continuously compounded risk-free rate (per year).
        div: continuously compounded dividend yield (per year).
        scheme: simulation scheme (static): "qe" (default) or "euler".

    Dynamics (risk-neutral; there is no separate real-world drift, `risk_neutral()` is the
    model itself): dS/S = (r - q) dt + sqrt(v) dW1, dv = kappa (theta - v) dt + xi sqrt(v) dW2,
    corr(dW1, dW2) = rho. When the Feller condition 2 kappa theta >= xi^2 fails the variance
    reaches zero with positive probability; the model is still valid and a `FellerWarning`
    says so (for concrete parameter values only).

    Schemes (per step of length dt, all paths at once):

    - "qe": Andersen's (2008) quadratic-exponential scheme for the variance (switch at
      psi_c = 1.5; `draws.uniform(1)`), log-spot by his K0..K4 discretisation with
      gamma1 = gamma2 = 1/2 (`draws.normal(0)` independent), including the martingale
      correction of his section 7.2, so E[S_{t+dt} | S_t, v_t] = S_t e^{(r-q) dt} exactly
      (where the correction exists, always for rho <= 0; otherwise the plain K0 is used).
      The variance is never negative, and the weak error is small even at coarse steps.
    - "euler": full-truncation Euler (Lord et al. 2010) with v+ = max(v, 0) in the drift and
      diffusion (`draws.normal(1)` for the variance, `draws.normal(0)` for the independent
      part of the spot). Its weak error is first order in dt and large at coarse steps when
      the Feller condition fails (the variance spends time pinned at zero); it is here as a
      baseline. The state's `variance` is the truncated max(v, 0) that the scheme uses;
      the untruncated auxiliary value is carried in `ModelState.aux`.

    `greeks()` reports vega, vanna and volga with respect to `v0` (per 1.00 of annual
    variance, not of vol): vega = dV/dv0.

    `ModelState.variance` carries the current variance of every path; `hedge()` passes it
    to strategies as `obs.variance`, and `conditioned(state)` sets `v0` to it so a Heston
    hedge model's Greeks are conditional on the observed variance.

    Example:
        >>> model = Heston(spot=100.0, v0=0.04, kappa=1.5, theta=0.04, xi=0.3, rho=-0.7)
        >>> model.replace(xi=0.25).xi    # a validated copy; works under jax.grad too
        Array(0.25, dtype=float32)
    """

    spot: jax.Array
    v0: jax.Array
    kappa: jax.Array
    theta: jax.Array
    xi: jax.Array
    rho: jax.Array
    rate: jax.Array
    div: jax.Array
    scheme: str = eqx.field(static=True)
    vega_field: ClassVar[str] = "v0"

    def __init__(self, spot, v0, kappa, theta, xi, rho, rate=0.0, div=0.0, scheme="qe"):
        self.spot = as_float(spot, "spot", scalar=True)
        self.v0 = as_float(v0, "v0", scalar=True)
        self.kappa = as_float(kappa, "kappa", scalar=True)
        self.theta = as_float(theta, "theta", scalar=True)
        self.xi = as_float(xi, "xi", scalar=True)
        self.rho = as_float(rho, "rho", scalar=True)
        self.rate = as_float(rate, "rate", scalar=True)
        self.div = as_float(div, "div", scalar=True)
        self.scheme = scheme

    def __check_init__(self):
        if self.scheme not in _SCHEMES:
            raise ValueError(f"scheme must be one of {_SCHEMES}, got scheme={self.scheme!r}")
        check_positive("spot", self.spot)
        check_nonnegative("v0", self.v0)
        check_positive("kappa", self.kappa)
        check_nonnegative("theta", self.theta)
        check_positive("xi", self.xi)
        check("rho", self.rho, lambda a: abs(a) <= 1, "finite and in [-1, 1]")
        check_finite("rate", self.rate)
        check_finite("div", self.div)
        values = (self.kappa, self.theta, self.xi)
        if all(is_concrete(v) for v in values):
            kappa, theta, xi = (np.asarray(v, dtype=float) for v in values)
            if np.any(2.0 * kappa * theta < xi * xi):
                warnings.warn(FellerWarning(
                    "Feller condition 2*kappa*theta >= xi**2 fails "
                    f"(2*kappa*theta={np.max(2.0 * kappa * theta):.4g}, "
                    f"xi**2={np.max(xi * xi):.4g}): the variance can reach zero; the model "
                    "is still valid"), stacklevel=3)

    def init(self, path_index: jax.Array) -> ModelState:
        log_spot = jnp.broadcast_to(jnp.log(self.spot), path_index.shape)
        variance = jnp.broadcast_to(self.v0, path_index.shape)
        aux = variance if self.scheme == "euler" else None
        return ModelState(log_spot=log_spot, variance=variance, aux=aux)

    def step(self, state: ModelState, t: jax.Array, dt: float, draws: Draws) -> ModelState:
        if self.scheme == "euler":
            return self._euler_step(state, dt, draws)
        return self._qe_step(state, dt, draws)

    def _params(self, dtype):
        return tuple(jnp.asarray(p, dtype) for p in (self.kappa, self.theta, self.xi,
                                                       self.rho, self.rate, self.div))

    def _qe_step(self, state: ModelState, dt: float, draws: Draws) -> ModelState:
        z_spot = draws.normal(0)
        uniform = draws.uniform(1)
        dtype = z_spot.dtype
        kappa, theta, xi, rho, rate, div = self._params(dtype)
        v = state.variance.astype(dtype)

        # Conditional mean and variance of v_{t+dt} given v_t (exact moments of the CIR law).
        decay = jnp.exp(-kappa * dt)
        one_minus = -jnp.expm1(-kappa * dt)
        mean = theta + (v - theta) * decay
        var = (v * xi * xi * decay * one_minus / kappa
               + theta * xi * xi * one_minus * one_minus / (2.0 * kappa))
        has_mean = mean > 0
        mean_safe = jnp.where(has_mean, mean, 1.0)
        psi = jnp.where(has_mean, var / (mean_safe * mean_safe), 0.0)

        # Quadratic branch (psi <= psi_c): v' = a (b + Z)^2. psi is clipped so that the
        # branch not taken stays finite and has finite derivatives.
        psi_q = jnp.clip(psi, 1e-12, _PSI_SWITCH)
        two_over = 2.0 / psi_q
        b2 = two_over - 1.0 + jnp.sqrt(two_over) * jnp.sqrt(two_over - 1.0)
        a = mean / (1.0 + b2)
        b = jnp.sqrt(b2)
        v_quad = a * jnp.square(b + ndtri(uniform))

        # Exponential branch (psi > psi_c): atom of mass p at zero, exponential tail of rate
        # beta; inverse CDF of the uniform.
        psi_e = jnp.maximum(psi, _PSI_SWITCH)
        p = (psi_e - 1.0) / (psi_e + 1.0)
        beta = (1.0 - p) / mean_safe
        above = uniform > p
        tail = jnp.log((1.0 - p) / jnp.where(above, 1.0 - uniform, 1.0 - p)) / beta
        v_exp = jnp.where(above, tail, 0.0)

        quadratic = psi <= _PSI_SWITCH
        v_next = jnp.where(has_mean, jnp.where(quadratic, v_quad, v_exp), 0.0)

        # Log-spot: Andersen's (2008) eq. (33) with gamma1 = gamma2 = 1/2.
        half_dt = 0.5 * dt
        k1 = half_dt * (kappa * rho / xi - 0.5) - rho / xi
        k2 = half_dt * (kappa * rho / xi - 0.5) + rho / xi
        k3 = half_dt * (1.0 - rho * rho)
        k4 = k3
        k0_plain = -rho * kappa * theta * dt / xi
        # Martingale correction (Andersen section 7.2): K0* = -log E[e^{A v'} | v] - (K1 +
        # K3/2) v with A = K2 + K4/2, where that expectation is finite.
        big_a = k2 + 0.5 * k4
        quad_den = 1.0 - 2.0 * big_a * a
        quad_ok = quad_den > 1e-6
        quad_den_safe = jnp.where(quad_ok, quad_den, 1.0)
        log_m_quad = big_a * b2 * a / quad_den_safe - 0.5 * jnp.log(quad_den_safe)
        exp_den = beta - big_a
        exp_ok = exp_den > 1e-6 * beta
        exp_den_safe = jnp.where(exp_ok, exp_den, beta)
        log_m_exp = jnp.log(p + beta * (1.0 - p) / exp_den_safe)
        log_m = jnp.where(quadratic, log_m_quad, log_m_exp)
        corrected = jnp.where(quadratic, quad_ok, exp_ok) & has_mean
        k0 = jnp.where(corrected, -log_m - (k1 + 0.5 * k3) * v, k0_plain)

        diffusion = _safe_sqrt(k3 * v + k4 * v_next)
        log_spot = (state.log_spot + (rate - div) * dt + k0 + k1 * v + k2 * v_next
                    + diffusion * z_spot)
        return ModelState(log_spot=log_spot, variance=v_next)

    def _euler_step(self, state: ModelState, dt: float, draws: Draws) -> ModelState:
        z_spot = draws.normal(0)
        z_var = draws.normal(1)
        dtype = z_spot.dtype
        kappa, theta, xi, rho, rate, div = self._params(dtype)
        v_aux = state.aux.astype(dtype)
        v_plus = jnp.maximum(v_aux, 0.0)
        vol_sqrt_dt = _safe_sqrt(v_plus) * dt**0.5
        v_aux_next = v_aux + kappa * (theta - v_plus) * dt + xi * vol_sqrt_dt * z_var
        z_corr = rho * z_var + _safe_sqrt(1.0 - rho * rho) * z_spot
        log_spot = state.log_spot + (rate - div - 0.5 * v_plus) * dt + vol_sqrt_dt * z_corr
        return ModelState(log_spot=log_spot, variance=jnp.maximum(v_aux_next, 0.0),
                          aux=v_aux_next)

    def risk_neutral(self) -> Heston:
        return self

    def bridge_variance(self, state: ModelState) -> jax.Array:
        """The variance at the start of the step, max(v, 0) (the bridge then treats it as
        constant over the step: an approximation of order dt)."""
        return jnp.maximum(state.variance, 0.0)

    def conditioned(self, state: ModelState) -> Heston:
        """This model with `v0` set to the observed variance of every path (shape
        (n_paths,)), so prices and Greeks are conditional on the current variance."""
        if state.variance is None:
            return self
        return eqx.tree_at(lambda m: m.v0, self, state.variance)
