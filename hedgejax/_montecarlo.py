"""Monte Carlo: simulated paths, prices and Greeks with standard errors.

Prices are under the risk-neutral version of the model (`model.risk_neutral()`), discounted
at `model.rate`; every estimate comes with its standard error (currency, same units as the
estimate). Variance reduction:

- antithetic variates: every path has a mirror driven by the same counters with z -> -z and
  u -> 1 - u; the standard error is computed from the n/2 independent pair averages.
- control variate "underlying": the discounted terminal spot e^{-rT} S_T, whose mean is known
  exactly (S_0 e^{-qT}); the coefficient is the sample regression slope (bias O(1/n)).
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._exotics import AbstractPathDependent, on_grid, path_step
from ._grid import TimeGrid
from ._instruments import AbstractInstrument, Book, Digital
from ._models.base import AbstractModel
from ._pricing.registry import _announce_non_finite
from ._random import Draws, key_words
from ._repr import module_repr
from ._validate import (
    check_grid_fits,
    check_int,
    check_memory,
    check_n_paths,
    check_positive,
    float_dtype,
    runtime_checked,
)


def _scan_paths(model: AbstractModel, grid: TimeGrid, n_paths: int, key: jax.Array,
                antithetic: bool, keep_path: bool):
    dtype = float_dtype()
    words = key_words(key)
    path_index = jnp.arange(n_paths, dtype=jnp.uint32)
    state = model.init(path_index)
    state = state._replace(log_spot=state.log_spot.astype(dtype))

    def body(state, i):
        state = model.step(state, i.astype(dtype) * grid.dt, grid.dt,
                           Draws(words, path_index, i, dtype, antithetic))
        return state, (state.log_spot if keep_path else None)

    last, log_spots = lax.scan(body, state, jnp.arange(grid.n_steps, dtype=jnp.int32))
    if keep_path:
        return jnp.exp(jnp.concatenate([state.log_spot[None], log_spots]).T)
    return jnp.exp(last.log_spot)


_simulate = eqx.filter_jit(_scan_paths)


def _scan_path_payoffs(model: AbstractModel, inst: AbstractPathDependent, grid: TimeGrid,
                       n_paths: int, key: jax.Array, antithetic: bool):
    """(S_T, payoff at maturity) of a path-dependent instrument on each path: its path state
    is carried through the scan (Brownian-bridge extremes for continuous monitoring; module
    `_exotics`), nothing per step is stored."""
    dtype = float_dtype()
    words = key_words(key)
    path_index = jnp.arange(n_paths, dtype=jnp.uint32)
    world = model.init(path_index)
    world = world._replace(log_spot=world.log_spot.astype(dtype))
    zero = jnp.zeros((), dtype)
    bridge = inst.continuous

    def body(carry, i):
        world, path = carry
        draws = Draws(words, path_index, i, dtype, antithetic)
        t = i.astype(dtype) * grid.dt
        after = model.step(world, t, grid.dt, draws)
        step = path_step(model, world, after, i + 1, t + grid.dt, grid.dt, draws, bridge)
        return (after, inst.update(path, step)), None

    carry0 = (world, inst.path_state(world.log_spot, zero))
    (world, path), _ = lax.scan(body, carry0, jnp.arange(grid.n_steps, dtype=jnp.int32))
    spot_T = jnp.exp(world.log_spot)
    return spot_T, inst.path_payoff(path, spot_T, jnp.asarray(model.rate, dtype))


_path_payoffs = eqx.filter_jit(_scan_path_payoffs)


def _path_sample(model, inst, n_paths, key, n_steps, antithetic):
    """(S_T, payoff) of `inst` under the risk-neutral model, `n_steps` steps to maturity;
    antithetic pairs as two halves (base then mirror)."""
    maturity = float(np.asarray(inst.maturity))
    grid = TimeGrid(maturity, n_steps)
    inst = on_grid(Book([inst]), grid).groups[0]
    inst = jax.tree.map(lambda x: x[0], inst)
    rn = model.risk_neutral().prepared(dt=grid.dt)
    if not antithetic:
        return _path_payoffs(rn, inst, grid, n_paths, key, False)
    half = n_paths // 2
    parts = [_path_payoffs(rn, inst, grid, half, key, mirror) for mirror in (False, True)]
    return tuple(jnp.concatenate(xs) for xs in zip(*parts, strict=True))


def simulate(model: AbstractModel, grid: TimeGrid, n_paths: int, key: jax.Array, *,
             antithetic: bool = False, instrument: AbstractInstrument | None = None
             ) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Spot paths of shape (n_paths, n_steps + 1), column j at time grid.times[j].

    Stores every step: meant for small runs and plots (`hedge()` never stores paths). The
    paths are exactly those `hedge()` sees for the same model, grid and key; with
    `antithetic=True`, their mirror images (z -> -z, u -> 1 - u).

    With `instrument` (maturing at the grid's end), returns (paths, payoff): its payoff at
    maturity on each path, shape (n_paths,), as `hedge()` computes it on the same paths
    (a path-dependent instrument's state is carried through the steps, with the same
    Brownian-bridge extremes for continuous monitoring).
    """
    n_paths = check_n_paths(n_paths, model)
    check_grid_fits(model, grid)
    itemsize = jnp.dtype(float_dtype()).itemsize
    check_memory(2 * itemsize * n_paths * (grid.n_steps + 1),
                 f"simulate() of {n_paths:,} paths x {grid.n_steps + 1:,} times",
                 "simulate stores every step; use hedge() or stream_summary for "
                 "statistics of many paths")
    model = runtime_checked(model)
    prepared = model.prepared(dt=grid.dt)
    paths = _simulate(prepared, grid, n_paths, key, bool(antithetic), True)
    if instrument is None:
        return paths
    if not isinstance(instrument, AbstractInstrument):
        raise ValueError(f"instrument must be an instrument, got {type(instrument).__name__}")
    instrument = runtime_checked(instrument)
    maturity = float(np.asarray(instrument.maturity))
    if abs(maturity - grid.maturity) > 1e-6 * grid.maturity:
        raise ValueError(f"instrument.maturity must be the grid's end ({grid.maturity:g} "
                         f"years) in simulate, got maturity={maturity:g}")
    if not isinstance(instrument, AbstractPathDependent):
        return paths, instrument.payoff(paths[:, -1])
    inst = jax.tree.map(lambda x: x[0], on_grid(Book([instrument]), grid).groups[0])
    _, payoff = _path_payoffs(prepared, inst, grid, n_paths, key, bool(antithetic))
    return paths, payoff


def _terminal_spots(model, maturity, n_paths, key, n_steps, antithetic):
    """S_T under the risk-neutral model: n_paths paths, or n_paths/2 pairs when antithetic
    (returned as two halves, base then mirror)."""
    grid = TimeGrid(maturity, n_steps)
    rn = model.risk_neutral().prepared(dt=grid.dt)
    if not antithetic:
        return _simulate(rn, grid, n_paths, key, False, False)
    half = n_paths // 2
    return jnp.concatenate([_simulate(rn, grid, half, key, False, False),
                            _simulate(rn, grid, half, key, True, False)])


def _mean_and_stderr(samples: jax.Array, antithetic: bool) -> tuple[jax.Array, jax.Array]:
    if antithetic:
        half = samples.shape[0] // 2
        samples = 0.5 * (samples[:half] + samples[half:])
    n = samples.shape[0]
    return jnp.mean(samples), jnp.std(samples, ddof=1) / np.sqrt(n)


def _check_mc_args(model, instrument, n_paths, n_steps, antithetic):
    if not isinstance(instrument, AbstractInstrument):
        raise ValueError(
            f"instrument must be a single instrument, got {type(instrument).__name__}")
    model.risk_neutral()    # a world without a risk-neutral measure is refused first
    n_paths = check_n_paths(n_paths, model)
    if n_paths < 2:     # the standard error (and a control variate's slope) needs two
        raise ValueError(f"n_paths must be >= 2 (a standard error needs two paths), got "
                         f"n_paths={n_paths}")
    n_steps = check_int("n_steps", n_steps, 1)
    if antithetic and (n_paths < 4 or n_paths % 2):
        raise ValueError(
            f"n_paths must be even and >= 4 with antithetic=True, got n_paths={n_paths}")
    # terminal spots, payoffs and the control variate's copies: a few arrays of n_paths
    check_memory(6 * jnp.dtype(float_dtype()).itemsize * n_paths,
                 f"Monte Carlo over n_paths={n_paths:,}",
                 "average several runs with different keys instead")
    maturity = float(np.asarray(instrument.maturity))
    return n_paths, n_steps, maturity


def mc_price(model: AbstractModel, instrument: AbstractInstrument, n_paths: int,
             key: jax.Array, n_steps: int = 1, *, antithetic: bool = False,
             control_variate: str | None = None) -> tuple[jax.Array, jax.Array]:
    """Monte Carlo price at t=0 of a European instrument: (price, standard error).

    Args:
        model: the world; simulated under `model.risk_neutral()`.
        instrument: a European instrument (payoff of S_T at its maturity), or a
            path-dependent one (`hj.Barrier`, `hj.Asian`, ...: its path state is carried
            through the simulation; continuous monitoring draws each step's extremes from
            the Brownian bridge, so barriers and lookbacks have no grid bias under
            Black-Scholes even with one step; discrete dates and fixings must fall on the
            n_steps grid, and an Asian's `fixings=None` fixes at every step).
        n_paths: number of paths, >= 2 (even and >= 4 with antithetic variates).
        key: a `jax.random` key.
        n_steps: simulation steps to maturity (one is exact for Black-Scholes Europeans).
        antithetic: use antithetic pairs (module docstring).
        control_variate: None or "underlying" (module docstring).

    Example:
        >>> import jax, hedgejax as hj
        >>> p, se = hj.mc_price(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 1.0),
        ...                     2**16, jax.random.key(0), antithetic=True,
        ...                     control_variate="underlying")
        >>> abs(float(p) - 7.9656) < 4 * float(se)
        True
    """
    n_paths, n_steps, maturity = _check_mc_args(model, instrument, n_paths, n_steps,
                                                antithetic)
    model, instrument = runtime_checked((model, instrument))
    if control_variate not in (None, "underlying"):
        raise ValueError(
            f"control_variate must be None or 'underlying', got {control_variate!r}")
    discount = jnp.exp(-model.rate * maturity)
    if isinstance(instrument, AbstractPathDependent):
        spot_T, payoff = _path_sample(model, instrument, n_paths, key, n_steps, antithetic)
    else:
        spot_T = _terminal_spots(model, maturity, n_paths, key, n_steps, antithetic)
        payoff = instrument.payoff(spot_T)
    discounted = discount * payoff
    if control_variate == "underlying":
        control = discount * spot_T
        known = model.spot * jnp.exp(-model.div * maturity)
        c = control - jnp.mean(control)
        beta = jnp.sum(c * (discounted - jnp.mean(discounted))) / jnp.sum(c * c)
        discounted = discounted - beta * (control - known)
    mean, stderr = _mean_and_stderr(discounted, antithetic)
    return _announce_non_finite(
        "mc_price()", {"_out": (mean, stderr), "price": mean, "standard error": stderr},
        f"{type(instrument).__name__} under {type(model).__name__}",
        "overflow in the simulated payoffs: check the parameters or enable jax_enable_x64")


class MCGreek(eqx.Module):
    """A Monte Carlo estimate and its standard error (same units)."""

    value: jax.Array
    stderr: jax.Array
    __repr__ = module_repr


def mc_greeks(model: AbstractModel, instrument: AbstractInstrument, n_paths: int,
              key: jax.Array, n_steps: int = 1, *, antithetic: bool = False,
              smoothing: float = 0.03) -> dict[str, MCGreek]:
    """Monte Carlo delta, vega and gamma at t=0 with standard errors, by pathwise
    differentiation through the simulation (forward-mode autodiff per path).

    - delta = E[d(discounted payoff)/dS_0] and vega = E[d(discounted payoff)/d vol] (vol is
      the model's `vega_field`: `vol` for Black-Scholes, `v0` for Heston): unbiased for
      payoffs that are continuous in S_T (calls, puts). For a digital the pathwise
      derivative is zero almost surely, so its delta and vega use the smoothed payoff too.
    - gamma: the pathwise second derivative of the payoff smoothed over a width
      w = `smoothing` x strike x sd(log S_T) (`AbstractInstrument.smoothed_payoff`: softplus
      for calls and puts, a sigmoid for digitals; sd(log S_T) is measured on the paths and
      held constant under differentiation). Scaling by the spread of S_T keeps the relative
      bias, about (1.8 x smoothing)^2 / 2 (0.15% at the default 0.03), the same across
      maturities and vols, in exchange for a variance growing like 1/smoothing. Digital
      gammas (a third derivative of the payoff) are very noisy: prefer the closed form.

    - path-dependent instruments (`hj.Barrier`, `hj.Asian`, ...): central finite
      differences on common random numbers, bumping the spot and the vol parameter by
      `GREEK_BUMP` (1%) of their values (bias O(bump^2); `smoothing` is not used).

    Returns a dict name -> `MCGreek(value, stderr)` for "delta", "gamma", "vega".
    """
    n_paths, n_steps, maturity = _check_mc_args(model, instrument, n_paths, n_steps,
                                                antithetic)
    model, instrument = runtime_checked((model, instrument))
    check_positive("smoothing", smoothing)
    vega_name = model.vega_field
    fields = {f.name for f in dataclasses.fields(model)
              if not isinstance(getattr(type(model), f.name, None), property)}
    if "spot" not in fields or vega_name not in fields:
        raise ValueError(
            f"mc_greeks bumps the model's spot and vol fields; {type(model).__name__} has "
            f"{'no vol field' if 'spot' in fields else 'a derived spot'} (it wraps or combines "
            "other models): take Greeks of its parts, or finite differences of mc_price")
    if isinstance(instrument, AbstractPathDependent):
        return _bumped_greeks(model, instrument, n_paths, key, n_steps, antithetic, maturity)
    smooth = not _continuous(instrument)

    def discounted(spot, vol, smoothed):
        m = eqx.tree_at(lambda m: (m.spot, getattr(m, vega_name)), model, (spot, vol))
        spot_T = _terminal_spots(m, maturity, n_paths, key, n_steps, antithetic)
        if smoothed:
            spread = lax.stop_gradient(jnp.std(jnp.log(spot_T)))
            width = smoothing * instrument.strike * spread
            payoff = instrument.smoothed_payoff(spot_T, width)
        else:
            payoff = instrument.payoff(spot_T)
        return jnp.exp(-model.rate * maturity) * payoff

    s0, vol0 = model.spot, getattr(model, vega_name)
    one = jnp.ones_like(s0)
    _, delta = jax.jvp(lambda s: discounted(s, vol0, smooth), (s0,), (one,))
    _, vega = jax.jvp(lambda v: discounted(s0, v, smooth), (vol0,), (one,))

    def smooth_delta(s):
        return jax.jvp(lambda x: discounted(x, vol0, True), (s,), (one,))[1]

    _, gamma = jax.jvp(smooth_delta, (s0,), (one,))
    return {name: MCGreek(*_mean_and_stderr(samples, antithetic))
            for name, samples in (("delta", delta), ("gamma", gamma), ("vega", vega))}


# Relative bumps of mc_greeks for path-dependent instruments (of the spot and of the vol
# parameter): central differences have a bias O(bump^2), about 1e-4 relative here.
GREEK_BUMP = 0.01


def _bumped_greeks(model, instrument, n_paths, key, n_steps, antithetic, maturity):
    """Central finite differences of the discounted payoff on common random numbers (the
    same draws at every bump), per path, so the standard errors are those of the
    differences. Unbiased to O(bump^2) even for the discontinuous payoffs of barriers and
    touches (where pathwise derivatives are zero almost surely), at the price of a variance
    growing like 1/bump for those."""
    vega_name = model.vega_field
    s0, vol0 = model.spot, getattr(model, vega_name)
    h_s, h_v = GREEK_BUMP * s0, GREEK_BUMP * vol0

    def sample(spot, vol):
        m = eqx.tree_at(lambda m: (m.spot, getattr(m, vega_name)), model, (spot, vol))
        _, payoff = _path_sample(m, instrument, n_paths, key, n_steps, antithetic)
        return jnp.exp(-model.rate * maturity) * payoff

    mid, up, down = sample(s0, vol0), sample(s0 + h_s, vol0), sample(s0 - h_s, vol0)
    delta = (up - down) / (2 * h_s)
    gamma = (up - 2 * mid + down) / (h_s * h_s)
    vega = (sample(s0, vol0 + h_v) - sample(s0, vol0 - h_v)) / (2 * h_v)
    return {name: MCGreek(*_mean_and_stderr(samples, antithetic))
            for name, samples in (("delta", delta), ("gamma", gamma), ("vega", vega))}


def _continuous(instrument: AbstractInstrument) -> bool:
    """Whether the payoff is continuous in S_T (pathwise first derivatives are unbiased)."""
    return not isinstance(instrument, Digital)
