"""Merton (1976) jump-diffusion world: geometric Brownian motion plus log-normal price jumps
arriving as a Poisson process, stepped exactly in log space."""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._random import Draws
from .._validate import as_float, check_finite, check_nonnegative, check_positive
from .base import AbstractModel, ModelState

# Largest number of jumps one step can draw. A step with jump_rate * dt = m truncates the
# Poisson count at this value with probability P(N > 64 | m): 6e-31 for m = 10, 1e-15 for
# m = 20 (and 1e-72 for m = 2), so for any sensible step (m is typically far below 1) the
# draw is exact to the resolution of the uniform it comes from. Use more steps if m > 20.
MAX_JUMPS_PER_STEP = 64

# Streams of `Draws` used at every step: the diffusion, the jump count, the jump sizes.
_DIFFUSION_STREAM = 0
_COUNT_STREAM = 1
_JUMP_SIZE_STREAM = 2

_LOG_FACTORIALS = np.array([math.lgamma(k + 1.0) for k in range(MAX_JUMPS_PER_STEP + 1)])


def poisson_count(mean: jax.Array, uniform: jax.Array) -> jax.Array:
    """Poisson(`mean`) counts by inversion of uniforms on (0, 1), without loops.

    N = #{k in 0 .. MAX_JUMPS_PER_STEP-1 : uniform < P(N > k)}, so P(N >= n) is the Poisson
    survival function for n <= MAX_JUMPS_PER_STEP, less the mass above MAX_JUMPS_PER_STEP
    (left out of the table); counts above the cap are returned as MAX_JUMPS_PER_STEP. See
    the module constant for how rarely either matters. The survival function is summed
    from the smallest terms up, so small tail probabilities keep full relative precision even
    in float32. `mean` is a scalar (the same for every path) and may be 0 (then N = 0).

    Returns counts as floats of `uniform`'s dtype, with no derivative (counts are discrete).
    """
    dtype = uniform.dtype
    mean = lax.stop_gradient(jnp.asarray(mean, dtype))
    k = np.arange(MAX_JUMPS_PER_STEP + 1, dtype=np.float64)
    # log P(N = k); xlogy keeps k = 0 finite when mean = 0 (P(N = 0) = 1).
    log_pmf = jax.scipy.special.xlogy(k.astype(dtype), mean) - mean - _LOG_FACTORIALS.astype(dtype)
    pmf = jnp.exp(log_pmf)
    # survival[k] = P(k < N <= MAX) for k = 0 .. MAX-1, summed smallest terms first.
    survival = jnp.cumsum(pmf[::-1])[::-1][1:]
    return jnp.sum(uniform[..., None] < survival, axis=-1).astype(dtype)


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

    Stepping is exact for any dt: over a step the diffusion adds
    (mu - vol^2/2 - jump_rate kbar) dt + vol sqrt(dt) Z (Z from stream 0 of the draws); the
    number of jumps N ~ Poisson(jump_rate dt) is drawn by inversion of a uniform (stream 1;
    `poisson_count`, at most MAX_JUMPS_PER_STEP per step) and, given N, the sum of the log
    jumps is N jump_mean + sqrt(N) jump_std Z' (stream 2), exactly its law.

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
    vega_field: ClassVar[str] = "vol"

    def __init__(self, spot, vol, jump_rate, jump_mean, jump_std, rate=0.0, div=0.0,
                 drift=None):
        self.spot = as_float(spot)
        self.vol = as_float(vol)
        self.jump_rate = as_float(jump_rate)
        self.jump_mean = as_float(jump_mean)
        self.jump_std = as_float(jump_std)
        self.rate = as_float(rate)
        self.div = as_float(div)
        self.drift = None if drift is None else as_float(drift)

    def __check_init__(self):
        check_positive("spot", self.spot)
        check_positive("vol", self.vol)
        check_nonnegative("jump_rate", self.jump_rate)
        check_finite("jump_mean", self.jump_mean)
        check_nonnegative("jump_std", self.jump_std)
        check_finite("rate", self.rate)
        check_finite("div", self.div)
        check_finite("drift", self.drift)

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
        n_jumps = poisson_count(jump_rate * dt, draws.uniform(_COUNT_STREAM))
        jumps = (n_jumps * self.jump_mean.astype(dtype)
                 + jnp.sqrt(n_jumps) * self.jump_std.astype(dtype)
                 * draws.normal(_JUMP_SIZE_STREAM))
        return ModelState(log_spot=state.log_spot + mean + (vol * dt**0.5) * z + jumps)

    def risk_neutral(self) -> Merton:
        return Merton(self.spot, self.vol, self.jump_rate, self.jump_mean, self.jump_std,
                      self.rate, self.div, drift=None)
