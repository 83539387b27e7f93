"""JAX transformations through `hj.hedge()`: jit, vmap and grad.

Gradients are checked against central finite differences on common random numbers (the same
key gives the same normal draws whatever the parameters), in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hedgejax as hj

N_STEPS, N_PATHS = 20, 512


def _world(vol=0.2):
    return hj.BlackScholes(100.0, vol, rate=0.03, div=0.01)


def _run(model, strategy=None, costs=None, n_paths=N_PATHS, book=None, grid=None):
    return hj.hedge(model, hj.EuropeanCall(100.0, 0.5) if book is None else book,
                    hj.DeltaHedge(every=1) if strategy is None else strategy,
                    hj.Proportional(0.002) if costs is None else costs,
                    hj.TimeGrid(0.5, N_STEPS) if grid is None else grid, n_paths,
                    jax.random.key(42))


def _assert_same_result(a, b, rtol):
    for name in ("pnl", "hedge_error", "cost", "unhedged_pnl", "final_position",
                 "terminal_spot", "initial_price"):
        np.testing.assert_allclose(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)),
                                   rtol=rtol, atol=rtol, err_msg=name)
    np.testing.assert_array_equal(np.asarray(a.n_trades), np.asarray(b.n_trades))


def test_jit_matches_eager(x64):
    model = _world()
    eager = _run(model)
    jitted = jax.jit(lambda m: _run(m))(model)
    _assert_same_result(jitted, eager, rtol=1e-12)
    # Under jit the vol is a tracer; a different vol gives a different result.
    other = jax.jit(lambda v: _run(model.replace(vol=v)))(jnp.asarray(0.3))
    _assert_same_result(other, _run(model.replace(vol=0.3)), rtol=1e-12)
    assert not np.allclose(np.asarray(other.pnl), np.asarray(eager.pnl))


def test_vmap_over_vol_matches_separate_calls(x64):
    model = _world()
    vols = jnp.asarray([0.15, 0.2, 0.35])
    batched = jax.vmap(lambda v: _run(model.replace(vol=v)))(vols)
    assert batched.pnl.shape == (3, N_PATHS)
    assert batched.initial_price.shape == (3,)
    for j, v in enumerate([0.15, 0.2, 0.35]):
        one = _run(model.replace(vol=v))
        _assert_same_result(jax.tree.map(lambda x, j=j: x[j], batched), one, rtol=1e-10)


def _central_difference(f, x, h):
    return (float(f(x + h)) - float(f(x - h))) / (2 * h)


def test_grad_vol_matches_finite_difference(x64):
    # mean pnl is smooth in vol on common random numbers (paths, deltas and V0 all move
    # smoothly; |trade| has kinks only at trade = 0, which a step h moves by ~1e-7 shares,
    # changing the mean by far less than the tolerance). Central FD error: O(h^2 f''') ~
    # 1e-10 plus round-off ~ 1e-16 |f| / h ~ 1e-10, so rtol 1e-6 is generous.
    model = _world()

    def mean_pnl(v):
        return jnp.mean(_run(model.replace(vol=v)).pnl)

    g = float(jax.grad(mean_pnl)(jnp.asarray(0.2)))
    fd = _central_difference(mean_pnl, 0.2, 1e-5)
    assert np.isfinite(g) and abs(g) > 1e-3
    np.testing.assert_allclose(g, fd, rtol=1e-6)


def test_grad_cost_rate_is_exact(x64):
    # The hedge does not depend on the proportional rate c (DeltaHedge), so mean pnl is
    # exactly linear in c: d mean(pnl)/dc = -mean(cost)/c, and a central difference is exact
    # up to round-off (~1e-16 |pnl| / h).
    model = _world()
    c = 0.002

    def mean_pnl(rate):
        return jnp.mean(_run(model, costs=hj.Proportional(rate)).pnl)

    g = float(jax.grad(mean_pnl)(jnp.asarray(c)))
    fd = _central_difference(mean_pnl, c, 1e-4)
    mean_cost = float(jnp.mean(_run(model, costs=hj.Proportional(c)).cost))
    assert mean_cost > 0
    np.testing.assert_allclose(g, -mean_cost / c, rtol=1e-10)
    np.testing.assert_allclose(g, fd, rtol=1e-8)


def test_grad_band_width_matches_finite_difference(x64):
    # Per path the P&L is continuous and piecewise smooth in the width (a clip), so the mean
    # of the pathwise derivative is the derivative of the mean; a central difference over
    # [w - h, w + h] differs from it only through the kinks (a path's position touching a
    # band edge) crossed inside that interval, an effect that shrinks with h. With h = 1e-4 w
    # and 4096 paths such crossings move the difference by ~1e-4 relative (measured between
    # 2e-5 and 6e-4 over seeds and grids); 1% leaves a wide margin while any error of the
    # gradient itself (e.g. a dropped dependence through the carried position) is larger.
    model = hj.BlackScholes(100.0, 0.2, rate=0.02)
    grid = hj.TimeGrid(0.25, N_STEPS)
    book = hj.EuropeanCall(100.0, 0.25)
    w = 0.05

    def mean_pnl(width):
        return jnp.mean(_run(model, strategy=hj.BandHedge(width), book=book, grid=grid,
                             n_paths=4096).pnl)

    g = float(jax.grad(mean_pnl)(jnp.asarray(w)))
    fd = _central_difference(mean_pnl, w, 1e-4 * w)
    assert np.isfinite(g) and abs(g) > 0.1
    np.testing.assert_allclose(g, fd, rtol=1e-2)


def test_grad_of_pnl_std_wrt_vol_is_finite():
    model = hj.BlackScholes(100.0, 0.2)

    def risk(v):
        return hj.risk.std(_run(model.replace(vol=v)).pnl)

    g = jax.grad(risk)(jnp.asarray(0.2))
    assert np.isfinite(float(g)) and float(g) != 0.0


@pytest.mark.parametrize(
    "strike, maturity",
    [(100.0, 0.5),      # ATM: ordinary gamma
     (300.0, 0.5),      # deep OTM: gamma underflows to 0
     (20.0, 0.5),       # deep ITM: gamma underflows to 0
     (130.0, 0.05)],    # OTM near expiry: gamma -> 0 over the last steps
)
@pytest.mark.parametrize("dtype64", [False, True], ids=["f32", "f64"])
def test_grad_whalley_wilmott_risk_aversion_is_finite(request, strike, maturity, dtype64):
    if dtype64:
        request.getfixturevalue("x64")
    model = hj.BlackScholes(100.0, 0.2)
    book = hj.EuropeanCall(strike, maturity)
    grid = hj.TimeGrid(maturity, N_STEPS)

    def objective(a):
        res = _run(model, strategy=hj.WhalleyWilmott(a), book=book, grid=grid, n_paths=256)
        return hj.risk.mean_cost_variance(res, 1.0)

    value, g = jax.value_and_grad(objective)(jnp.asarray(1.0))
    assert np.isfinite(float(value))
    assert np.isfinite(float(g))
    if strike == 100.0:
        # At the money the band (so the cost and the hedge error) depends on a.
        assert float(g) != 0.0


def test_grad_whalley_wilmott_matches_finite_difference(x64):
    # Same reasoning as for the band width: piecewise smooth per path; h = 1e-4 a.
    model = hj.BlackScholes(100.0, 0.2, rate=0.02)
    grid = hj.TimeGrid(0.25, N_STEPS)
    book = hj.EuropeanCall(100.0, 0.25)
    a = 1.0

    def mean_pnl(ra):
        return jnp.mean(_run(model, strategy=hj.WhalleyWilmott(ra), book=book, grid=grid,
                             n_paths=4096).pnl)

    g = float(jax.grad(mean_pnl)(jnp.asarray(a)))
    fd = _central_difference(mean_pnl, a, 1e-4 * a)
    assert np.isfinite(g) and abs(g) > 1e-4
    np.testing.assert_allclose(g, fd, rtol=1e-2)
