"""Trainable strategies: `LearnedBand`, `AsymmetricBand` and `NeuralHedge`.

What is asserted: widths are positive by construction for any parameters; gradients through
`hj.hedge()` are finite (also where gamma -> 0 and at expiry) and agree with central finite
differences on common random numbers; the degenerate cases reduce exactly to the classical
strategies; and, when `hj.fit` is available, training does what the theory says (no costs:
the deep-hedging policy stays near Black-Scholes delta; proportional costs: the learned band
is at least as good as the best constant band on fresh paths).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import hedgejax as hj
from hedgejax._strategies.bands import inverse_softplus
from hedgejax._strategies.base import Observation
from hedgejax._strategies.learned import AsymmetricBand, LearnedBand
from hedgejax._strategies.neural import NeuralHedge

N_STEPS, N_PATHS = 20, 2**10
MATURITY = 0.25


def _world():
    return hj.BlackScholes(100.0, 0.2, rate=0.02)


def _run(strategy, book=None, costs=None, n_paths=N_PATHS, key=42, model=None):
    return hj.hedge(_world() if model is None else model,
                    hj.EuropeanCall(100.0, MATURITY) if book is None else book, strategy,
                    hj.Proportional(0.005) if costs is None else costs,
                    hj.TimeGrid(MATURITY, N_STEPS), n_paths, jax.random.key(key))


def _perturbed(strategy, key, scale):
    """`strategy` with every trainable leaf moved by scale x N(0, 1) noise."""
    params, static = eqx.partition(strategy, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    flat = flat + scale * jax.random.normal(key, flat.shape, flat.dtype)
    return eqx.combine(unravel(flat), static)


def _observation(n, key, *, tau=0.1, gamma_scale=1.0, cost_rate=0.005):
    """Random observations, including gamma exactly 0 and very large gamma."""
    k1, k2 = jax.random.split(key)
    spot = 100.0 * jnp.exp(0.5 * jax.random.normal(k1, (n,)))
    gamma = gamma_scale * jax.random.normal(k2, (n,)) ** 3
    gamma = gamma.at[:4].set(jnp.asarray([0.0, -0.0, 1e6, -1e6]))
    return Observation(step=jnp.asarray(3), time=jnp.asarray(0.1),
                       time_to_maturity=jnp.asarray(tau), spot=spot,
                       delta=-jnp.clip(gamma, -1.0, 1.0), gamma=gamma,
                       cost_rate=jnp.full((n,), cost_rate), rate=jnp.asarray(0.02))


# ---------------------------------------------------------------- construction and shapes

@pytest.mark.parametrize("asymmetric", [False, True])
@pytest.mark.parametrize("whalley_wilmott", [False, True])
def test_learned_band_widths_positive_for_random_parameters(asymmetric, whalley_wilmott):
    base = LearnedBand(jax.random.key(0), hidden=8, depth=2, asymmetric=asymmetric,
                       whalley_wilmott=whalley_wilmott)
    @eqx.filter_jit
    def widths_and_target(band, obs, position):
        return band.half_widths(obs), band(obs, position)

    for seed in range(3):
        band = _perturbed(base, jax.random.key(seed), scale=2.0)
        for tau in (0.0, 0.1, 2.0):
            obs = _observation(256, jax.random.key(100 + seed), tau=tau)
            position = 2.0 * jax.random.normal(jax.random.key(seed), (256,))
            (lower, upper), target = widths_and_target(band, obs, position)
            assert lower.shape == upper.shape == (256,)
            assert bool(jnp.all(lower > 0) & jnp.all(upper > 0))
            assert bool(jnp.all(jnp.isfinite(lower)) & jnp.all(jnp.isfinite(upper)))
            assert bool(jnp.all(target >= -obs.delta - lower - 1e-6))
            assert bool(jnp.all(target <= -obs.delta + upper + 1e-6))


def test_learned_band_initial_width():
    # Zero output layer: width = init_width + softplus(raw_ww) x WW exactly.
    obs = _observation(64, jax.random.key(1))
    plain = LearnedBand(jax.random.key(0), init_width=0.07, whalley_wilmott=False)
    lower, upper = plain.half_widths(obs)
    np.testing.assert_allclose(np.asarray(lower), 0.07, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(lower), np.asarray(upper))
    ww = LearnedBand(jax.random.key(0), init_width=0.07, init_ww=1.0)
    expected = 0.07 + np.asarray(hj.WhalleyWilmott(1.0).half_width(obs))
    np.testing.assert_allclose(np.asarray(ww.half_widths(obs)[0]), expected, rtol=1e-5)


def test_asymmetric_band_widths_and_validation():
    band = AsymmetricBand(lower=0.05, upper=0.125)
    np.testing.assert_allclose(float(band.lower_width), 0.05, rtol=1e-6)
    np.testing.assert_allclose(float(band.upper_width), 0.125, rtol=1e-6)
    assert float(inverse_softplus(0.0)) == -np.inf
    assert float(jax.nn.softplus(inverse_softplus(0.0))) == 0.0
    for seed in range(5):  # any raw parameters give positive widths
        raw = 5.0 * jax.random.normal(jax.random.key(seed), (2,))
        other = eqx.tree_at(lambda b: (b.raw_lower, b.raw_upper), band, (raw[0], raw[1]))
        assert float(other.lower_width) > 0 and float(other.upper_width) > 0
    with pytest.raises(ValueError, match="lower"):
        AsymmetricBand(-0.1, 0.1)
    with pytest.raises(ValueError, match="upper"):
        AsymmetricBand(0.1, float("nan"))
    with pytest.raises(ValueError, match="init_width"):
        LearnedBand(jax.random.key(0), init_width=0.0)
    with pytest.raises(ValueError, match="init_ww"):  # a zero coefficient could never move
        LearnedBand(jax.random.key(0), init_ww=0.0)
    with pytest.raises(ValueError, match="hidden"):
        NeuralHedge(jax.random.key(0), hidden=0)
    with pytest.raises(ValueError, match="variance"):
        NeuralHedge(jax.random.key(0), variance_feature=True)(
            _observation(8, jax.random.key(0)), jnp.zeros(8))


# ---------------------------------------------------------------- reductions to known hedges

@pytest.mark.slow  # compiles six float64 hedges (~12 s): the slow tier
def test_degenerate_strategies_equal_classical_ones_per_path(x64):
    delta_hedge = hj.DeltaHedge(every=1)
    delta = _run(delta_hedge)
    res = _run(AsymmetricBand(0.0, 0.0))
    np.testing.assert_array_equal(np.asarray(res.pnl), np.asarray(delta.pnl))
    np.testing.assert_array_equal(np.asarray(res.n_trades), np.asarray(delta.n_trades))

    # The untrained NeuralHedge decides exactly what DeltaHedge decides (its output layer is
    # exact zeros), eagerly and compiled, for any observation and position...
    decide = eqx.filter_jit(lambda strategy, obs, position: strategy(obs, position))
    for seed in range(3):
        policy = NeuralHedge(jax.random.key(seed), hidden=8, book_scale=2.0)
        obs = _observation(256, jax.random.key(10 + seed))
        position = 3.0 * jax.random.normal(jax.random.key(20 + seed), (256,))
        expected = np.asarray(delta_hedge(obs, position))
        np.testing.assert_array_equal(np.asarray(policy(obs, position)), expected)
        np.testing.assert_array_equal(np.asarray(decide(policy, obs, position)), expected)
    # ...but inside hedge() the network changes the compiled step and XLA may evaluate the
    # book's delta itself to the last bit differently (7e-15 on jax 0.12's CPU), so the
    # P&L agrees to rounding, and the trades are the same.
    res = _run(NeuralHedge(jax.random.key(3)))
    np.testing.assert_allclose(np.asarray(res.pnl), np.asarray(delta.pnl), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(res.n_trades), np.asarray(delta.n_trades))
    for width in (0.03, 0.2):
        band = _run(hj.BandHedge(width))
        asym = _run(AsymmetricBand(width, width))
        # softplus(inverse_softplus(w)) = w to ~1 ulp; the paths are the same draws.
        np.testing.assert_allclose(np.asarray(asym.pnl), np.asarray(band.pnl),
                                   rtol=0, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(asym.n_trades), np.asarray(band.n_trades))


# ---------------------------------------------------------------- gradients

def _gamma_vanishing_book():
    """Deep ITM and OTM calls (gamma ~ 0) and a call expiring at step 4 of 20 (afterwards its
    gamma and delta are exactly 0, and at step 3 it is one step from expiry)."""
    return hj.Book([hj.EuropeanCall(40.0, MATURITY), hj.EuropeanCall(250.0, MATURITY),
                    hj.EuropeanCall(100.0, 4 * MATURITY / N_STEPS)])


@pytest.mark.parametrize("make", [
    # each compiles for ~10 s: the slow tier
    pytest.param(lambda: LearnedBand(jax.random.key(0), asymmetric=True, init_ww=1.0),
                 marks=pytest.mark.slow),
    pytest.param(lambda: NeuralHedge(jax.random.key(2), hidden=8), marks=pytest.mark.slow),
], ids=["learned", "neural"])
def test_gradients_finite_where_gamma_vanishes(x64, make):
    strategy = _perturbed(make(), jax.random.key(9), scale=0.3)
    params, static = eqx.partition(strategy, eqx.is_inexact_array)

    def objective(params):
        res = _run(eqx.combine(params, static), book=_gamma_vanishing_book())
        return hj.risk.mean_cost_variance(res, 0.1)

    grads = jax.grad(objective)(params)
    flat, _ = ravel_pytree(grads)
    assert bool(jnp.all(jnp.isfinite(flat)))
    assert float(jnp.max(jnp.abs(flat))) > 0  # the objective does depend on the parameters


def test_learned_band_gradient_finite_at_expiry_with_zero_gamma_and_costs(x64):
    band = _perturbed(LearnedBand(jax.random.key(0), asymmetric=True, init_ww=1.0),
                      jax.random.key(4), scale=0.5)
    params, static = eqx.partition(band, eqx.is_inexact_array)
    obs = _observation(64, jax.random.key(2), tau=0.0, cost_rate=0.0)
    obs = eqx.tree_at(lambda o: o.gamma, obs, jnp.zeros(64))

    def total_width(params):
        return jnp.sum(jnp.stack(eqx.combine(params, static).half_widths(obs)))

    flat, _ = ravel_pytree(jax.grad(total_width)(params))
    assert bool(jnp.all(jnp.isfinite(flat)))


@pytest.mark.parametrize("make", [
    lambda: LearnedBand(jax.random.key(0), init_ww=1.0),
    lambda: AsymmetricBand(0.05, 0.1),
], ids=["learned", "asymmetric"])
def test_gradient_matches_central_differences(x64, make):
    # mean_cost_variance on 2^12 paths with common random numbers. Each path's P&L is
    # continuous but only piecewise smooth in the band parameters (clip and |trade| have
    # kinks), so a central difference is exact up to O(h^2 f''') ~ 1e-9 relative unless a
    # kink of some path lies within h of the point; then that path adds at most half its
    # derivative jump / n_paths. Measured at h = 1e-4: |fd - ad| / |grad| <= 3e-5 (typically
    # 1e-9); the bound 1e-3 x |grad| is ~30x that, while a wrong term would be O(|grad|).
    strategy = _perturbed(make(), jax.random.key(5), scale=0.3)
    params, static = eqx.partition(strategy, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)

    @jax.jit
    def objective(x):
        res = _run(eqx.combine(unravel(x), static), n_paths=2**12, key=3)
        return hj.risk.mean_cost_variance(res, 0.1)

    grad = jax.jit(jax.grad(objective))(flat)
    scale = float(jnp.linalg.norm(grad))
    assert np.isfinite(scale) and scale > 1e-3
    h = 1e-4
    for seed in range(3):
        direction = jax.random.normal(jax.random.key(10 + seed), flat.shape)
        direction = direction / jnp.linalg.norm(direction)
        ad = float(grad @ direction)
        fd = (float(objective(flat + h * direction))
              - float(objective(flat - h * direction))) / (2 * h)
        assert abs(fd - ad) <= 1e-3 * scale, (seed, ad, fd)


# ---------------------------------------------------------------- training (needs hj.fit)

def _require_fit():
    if not hasattr(hj, "fit"):
        pytest.skip("hedgejax has no fit() yet")


@pytest.mark.slow  # compiles Heston/neural hedges for a minute: the slow tier
def test_neural_hedge_without_costs_learns_close_to_delta():
    # Frictionless Black-Scholes: delta hedging is the continuous-time optimum for the
    # entropic risk, so training (from the exact delta hedge) should only learn a small
    # discrete-time correction. Measured (float32, this seed): mean |target + delta| over
    # the 20 x 4096 observations of a fresh simulation = 0.012 shares (largest near expiry,
    # 0.022 at the last step). The bound 0.04 shares is ~3x that; a policy that had lost
    # the hedge (e.g. a constant position) would be ~0.2 shares or more away.
    _require_fit()
    model, book = hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, MATURITY)
    grid = hj.TimeGrid(MATURITY, N_STEPS)
    fitted, history = hj.fit(NeuralHedge(jax.random.key(0)),
                             lambda r: hj.risk.entropic(r.pnl, 1.0), model, book, None, grid,
                             optimizer=optax.adam(1e-3), steps=200, n_paths=2**12,
                             key=jax.random.key(1), progress=False)
    assert np.all(np.isfinite(np.asarray(history.objective)))

    # Replay the fitted policy on fresh paths (the same draws hedge() would use).
    @eqx.filter_jit
    def distance_to_delta(policy, paths):
        position = jnp.zeros(paths.shape[0], paths.dtype)
        distance = []
        for i in range(N_STEPS):
            t = i * grid.dt
            spot = paths[:, i]
            delta = jax.vmap(jax.grad(lambda s, t=t: hj.price(model, book, s, t)))(spot)
            obs = Observation(step=jnp.asarray(i), time=jnp.asarray(t, paths.dtype),
                              time_to_maturity=jnp.asarray(MATURITY - t, paths.dtype),
                              spot=spot, delta=delta, gamma=jnp.zeros_like(spot),
                              cost_rate=jnp.zeros_like(spot),
                              rate=jnp.asarray(0.0, paths.dtype))
            position = policy(obs, position)
            distance.append(jnp.abs(position + delta))
        return jnp.mean(jnp.stack(distance))

    mean_distance = float(distance_to_delta(fitted, hj.simulate(model, grid, 2**12,
                                                               jax.random.key(77))))
    assert mean_distance < 0.04, mean_distance


def _per_path_objective(res, lam):
    """Per-path terms whose mean is mean_cost_variance(res, lam) exactly: the paired standard
    error of a difference of two objectives is the std of the difference of these / sqrt(n)
    (delta method; the error in the estimated mean hedge error is second order)."""
    n = res.hedge_error.shape[0]
    centred = res.hedge_error - jnp.mean(res.hedge_error)
    return res.cost + lam * centred**2 * n / (n - 1)


@pytest.mark.slow  # half a minute of compiling and training: the slow tier
def test_learned_band_not_worse_than_best_constant_band_on_fresh_paths():
    # Proportional cost 1% and lam = 0.1: on 2^15 fresh paths the best constant band (width
    # 0.2 of a grid) scores ~1.05 and Whalley-Wilmott at its best risk aversion ~1.08, while
    # the fitted LearnedBand scores ~0.99, a gap of several standard errors. The test only
    # asserts "not worse within 2 paired SE", and the constant band is chosen on the
    # evaluation paths themselves, which favours it.
    _require_fit()
    lam = 0.1
    model, book = hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, MATURITY)
    grid, costs = hj.TimeGrid(MATURITY, N_STEPS), hj.Proportional(0.01)

    def objective(res):
        return hj.risk.mean_cost_variance(res, lam)

    fitted, history = hj.fit(LearnedBand(jax.random.key(0), init_ww=1.0), objective, model,
                             book, costs, grid, optimizer=optax.adam(3e-2), steps=150,
                             n_paths=2**12, key=jax.random.key(2), progress=False)
    assert np.all(np.isfinite(np.asarray(history.objective)))

    fresh, n_fresh = jax.random.key(2024), 2**15
    learned = _per_path_objective(hj.hedge(model, book, fitted, costs, grid, n_fresh, fresh),
                                  lam)
    widths = jnp.asarray([0.1, 0.15, 0.2, 0.25, 0.3])
    constant = jax.jit(jax.vmap(lambda w: _per_path_objective(
        hj.hedge(model, book, hj.BandHedge(w), costs, grid, n_fresh, fresh), lam)))(widths)
    best = int(jnp.argmin(jnp.mean(constant, axis=1)))
    difference = learned - constant[best]
    stderr = float(jnp.std(difference) / np.sqrt(n_fresh))
    assert float(jnp.mean(difference)) <= 2 * stderr, (
        float(jnp.mean(learned)), float(jnp.mean(constant[best])), stderr)
