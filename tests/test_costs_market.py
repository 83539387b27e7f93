"""Tests of the market cost models `Impact` and `RandomSlippage` (hedgejax/_costs.py).

Expected values are closed forms written here; Monte Carlo assertions are in standard
errors with fixed keys.
"""

from __future__ import annotations

import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hedgejax as hj

TRADES = np.array([-400.0, -1.5, 0.0, 0.25, 100.0, 2500.0])


# ---------------------------------------------------------------------------------------
# Impact
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0, 2.0])
def test_impact_closed_form(x64, power):
    coef, price = 1e-4, 50.0
    cost = hj.Impact(coef, power)(jnp.asarray(TRADES), jnp.asarray(price))
    expected = coef * np.abs(TRADES) ** (1.0 + power) * price
    np.testing.assert_allclose(np.asarray(cost), expected, rtol=1e-13, atol=0.0)
    assert np.all(np.asarray(cost) >= 0.0)


def test_impact_default_is_square_root_and_power_zero_is_proportional(x64):
    impact = hj.Impact(2e-3)
    assert float(impact.power) == 0.5
    # Square-root impact: a 100-share trade moves the price by 2e-3 x 10 = 2%.
    np.testing.assert_allclose(float(impact(jnp.asarray(100.0), jnp.asarray(80.0))),
                               0.02 * 100 * 80.0, rtol=1e-13)
    trades, prices = jnp.asarray(TRADES), jnp.linspace(50.0, 150.0, TRADES.size)
    np.testing.assert_allclose(np.asarray(hj.Impact(1e-3, 0.0)(trades, prices)),
                               np.asarray(hj.Proportional(1e-3)(trades, prices)), rtol=1e-13)


def test_impact_protocol():
    impact = hj.Impact(1e-3, 0.5)
    price = jnp.array([90.0, 100.0, 110.0])
    assert impact.is_smooth and not impact.is_random
    assert impact.smoothed(0.1) is impact
    # First order in the trade size the cost vanishes for power > 0 ...
    rate = impact.proportional_rate(price)
    assert rate.shape == price.shape and np.all(np.asarray(rate) == 0.0)
    # ... and is coef per unit of traded value for power = 0.
    np.testing.assert_allclose(np.asarray(hj.Impact(1e-3, 0.0).proportional_rate(price)),
                               1e-3, rtol=1e-6)
    # charge ignores noise for a deterministic cost.
    trade = jnp.asarray(50.0)
    assert float(impact.charge(trade, jnp.asarray(100.0), jnp.asarray(3.0))) == float(
        impact(trade, jnp.asarray(100.0)))


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0, 2.0])
def test_impact_gradients_finite_at_zero_trade(x64, power):
    price = jnp.asarray(100.0)

    def cost(coef, power, trade):
        return hj.Impact(coef, power)(trade, price)

    zero = jnp.asarray(0.0)
    grads = jax.grad(cost, argnums=(0, 1, 2))(jnp.asarray(1e-3), jnp.asarray(power), zero)
    for g in grads:
        assert np.isfinite(float(g))
    if power > 0:  # the cost is flat at 0 in every direction
        assert all(float(g) == 0.0 for g in grads)
    # Vectorised and through the module as a pytree (what `fit` differentiates).
    impact = hj.Impact(1e-3, power)
    g = eqx.filter_grad(lambda m: jnp.sum(m(jnp.asarray(TRADES), price)))(impact)
    assert np.isfinite(float(g.coef)) and np.isfinite(float(g.power))
    # Away from 0 the gradients are the analytic ones.
    t = jnp.asarray(-40.0)
    d_coef, d_power, d_trade = jax.grad(cost, argnums=(0, 1, 2))(jnp.asarray(1e-3),
                                                                 jnp.asarray(power), t)
    size = 40.0
    np.testing.assert_allclose(float(d_coef), size ** (1 + power) * 100.0, rtol=1e-12)
    np.testing.assert_allclose(float(d_power),
                               1e-3 * size ** (1 + power) * math.log(size) * 100.0, rtol=1e-12)
    np.testing.assert_allclose(float(d_trade), -1e-3 * (1 + power) * size ** power * 100.0,
                               rtol=1e-12)


def test_impact_in_hedge_static_closed_form_and_finite_gradients(x64):
    # StaticHedge trades once, at t0, to -delta: cost = coef |h0|^(1+p) S0 e^{rT}.
    model = hj.BlackScholes(100.0, 0.2, rate=0.03)
    grid = hj.TimeGrid(0.5, 10)
    call = hj.EuropeanCall(100.0, 0.5)
    book = hj.Book([call], quantities=[-200.0])
    res = hj.hedge(model, book, hj.StaticHedge(), hj.Impact(1e-3, 0.5), grid, 64,
                   jax.random.key(0))
    h0 = float(res.final_position[0])
    np.testing.assert_allclose(np.asarray(res.cost),
                               1e-3 * abs(h0) ** 1.5 * 100.0 * math.exp(0.03 * 0.5),
                               rtol=1e-12)
    # DeltaHedge(every=2) holds on odd steps: trades of exactly 0 inside the loop. The
    # gradient of the mean cost w.r.t. coef and power is still finite.

    def mean_cost(impact):
        out = hj.hedge(model, book, hj.DeltaHedge(every=2), impact, grid, 64,
                       jax.random.key(0))
        return jnp.mean(out.cost)

    g = eqx.filter_grad(mean_cost)(hj.Impact(1e-3, 0.5))
    assert np.isfinite(float(g.coef)) and float(g.coef) > 0
    assert np.isfinite(float(g.power))


# ---------------------------------------------------------------------------------------
# RandomSlippage
# ---------------------------------------------------------------------------------------


def test_random_slippage_closed_form(x64):
    rate, vol, price = 2e-3, 0.4, 80.0
    slip = hj.RandomSlippage(rate, vol)
    trades = jnp.asarray(TRADES)
    noise = jnp.linspace(-2.0, 2.0, TRADES.size)
    # Expected cost = Proportional(rate).
    np.testing.assert_allclose(np.asarray(slip(trades, jnp.asarray(price))),
                               rate * np.abs(TRADES) * price, rtol=1e-13)
    charged = slip.charge(trades, jnp.asarray(price), noise)
    expected = rate * np.exp(vol * np.asarray(noise) - vol**2 / 2) * np.abs(TRADES) * price
    np.testing.assert_allclose(np.asarray(charged), expected, rtol=1e-13)
    assert np.all(np.asarray(charged) >= 0.0)
    # Without noise, the expected cost; with vol = 0, Proportional exactly.
    np.testing.assert_allclose(np.asarray(slip.charge(trades, jnp.asarray(price))),
                               rate * np.abs(TRADES) * price, rtol=1e-13)
    np.testing.assert_allclose(
        np.asarray(hj.RandomSlippage(rate, 0.0).charge(trades, jnp.asarray(price), noise)),
        rate * np.abs(TRADES) * price, rtol=1e-13)


def test_random_slippage_protocol():
    slip = hj.RandomSlippage(1e-3, 0.3)
    price = jnp.array([90.0, 100.0])
    assert slip.is_random and slip.is_smooth
    assert slip.smoothed(0.1) is slip
    np.testing.assert_allclose(np.asarray(slip.proportional_rate(price)), 1e-3, rtol=1e-6)
    assert slip.proportional_rate(price).shape == price.shape


def _hedge(costs, grid, n_paths=4096, key=11, **kw):
    model = hj.BlackScholes(100.0, 0.2)
    return hj.hedge(model, hj.EuropeanCall(100.0, grid.maturity), hj.DeltaHedge(), costs,
                    grid, n_paths, jax.random.key(key), **kw)


def test_random_slippage_mean_cost_matches_proportional():
    rate, vol = 1e-3, 0.5
    grid = hj.TimeGrid(0.25, 20)
    rnd = _hedge(hj.RandomSlippage(rate, vol), grid)
    det = _hedge(hj.Proportional(rate), grid)
    c_rnd, c_det = np.asarray(rnd.cost, float), np.asarray(det.cost, float)
    n = c_rnd.size
    # Same key: same paths and trades, only the charged cost differs.
    np.testing.assert_array_equal(np.asarray(rnd.hedge_error), np.asarray(det.hedge_error))
    np.testing.assert_array_equal(np.asarray(rnd.n_trades), np.asarray(det.n_trades))
    assert np.all(c_rnd >= 0.0)
    se = c_rnd.std(ddof=1) / math.sqrt(n)
    assert abs(c_rnd.mean() - c_det.mean()) < 4 * se
    diff = c_rnd - c_det  # paired: a sharper test of E[random factor] = 1
    assert abs(diff.mean()) < 4 * diff.std(ddof=1) / math.sqrt(n)
    # The noise is really applied: the cost differs from path to path around the expected
    # one, and is not the deterministic cost times one factor per path (a draw per trade
    # averages out over the 20 trades of a path).
    log_ratio = np.log(c_rnd / c_det)
    assert log_ratio.std() > 0.05
    assert log_ratio.std() < 0.5 * vol
    np.testing.assert_allclose(np.asarray(rnd.pnl), np.asarray(rnd.hedge_error - rnd.cost))


def test_random_slippage_factor_is_lognormal_per_path():
    # One step, no unwind: one trade per path, the same size on every path (delta at t0),
    # so cost_random / cost_expected = exp(vol Z - vol^2/2) with Z ~ N(0, 1) per path.
    rate, vol = 1e-3, 0.3
    grid = hj.TimeGrid(0.25, 1)
    rnd = _hedge(hj.RandomSlippage(rate, vol), grid, n_paths=8192)
    det = _hedge(hj.Proportional(rate), grid, n_paths=8192)
    z = (np.log(np.asarray(rnd.cost, float) / np.asarray(det.cost, float)) + vol**2 / 2) / vol
    n = z.size
    assert abs(z.mean()) < 4 / math.sqrt(n)
    assert abs(z.std(ddof=1) - 1.0) < 4 / math.sqrt(2 * n)
    assert np.unique(z).size > n // 2
    # With unwind, the closing trade gets its own draw.
    unw = _hedge(hj.RandomSlippage(rate, vol), grid, n_paths=8192, unwind=True)
    assert np.all(np.asarray(unw.cost) >= np.asarray(rnd.cost))


def test_cost_sum_with_random_slippage_charges_both(x64):
    slip, fixed = hj.RandomSlippage(1e-3, 0.4), hj.Fixed(0.5)
    both = slip + fixed
    assert isinstance(both, hj.CostSum) and both.is_random and not both.is_smooth
    trades, price = jnp.asarray(TRADES), jnp.asarray(100.0)
    noise = jnp.linspace(-1.0, 1.5, TRADES.size)
    np.testing.assert_allclose(np.asarray(both.charge(trades, price, noise)),
                               np.asarray(slip.charge(trades, price, noise)
                                          + fixed(trades, price)), rtol=1e-13)
    grid = hj.TimeGrid(0.25, 10)
    res_both = _hedge(both, grid, n_paths=512)
    res_slip = _hedge(slip, grid, n_paths=512)
    res_det = _hedge(hj.Proportional(1e-3) + fixed, grid, n_paths=512)
    # r = 0: the fixed part is 0.5 per trade; the rest is the random slippage, same draws.
    fixed_part = 0.5 * np.asarray(res_both.n_trades)
    np.testing.assert_allclose(np.asarray(res_both.cost) - fixed_part,
                               np.asarray(res_slip.cost), rtol=1e-10)
    assert not np.allclose(np.asarray(res_both.cost), np.asarray(res_det.cost))


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, name, allowed",
    [
        (lambda: hj.Impact(-1e-3), "coef", ">= 0"),
        (lambda: hj.Impact(float("nan")), "coef", ">= 0"),
        (lambda: hj.Impact(1e-3, -0.1), "power", "[0, 2]"),
        (lambda: hj.Impact(1e-3, 2.5), "power", "[0, 2]"),
        (lambda: hj.Impact(1e-3, float("inf")), "power", "[0, 2]"),
        (lambda: hj.RandomSlippage(-1e-3, 0.2), "rate", ">= 0"),
        (lambda: hj.RandomSlippage(1e-3, -0.2), "vol", "in [0, 3]"),
        (lambda: hj.RandomSlippage(1e-3, float("nan")), "vol", "in [0, 3]"),
        # the case: at vol 100 every charge was 0 (median factor exp(-5,000))
        (lambda: hj.RandomSlippage(1e-3, 100.0), "vol", "in [0, 3]"),
        (lambda: hj.RandomSlippage(1e-3, 3.01), "vol", "in [0, 3]"),
    ],
)
def test_validation(make, name, allowed):
    with pytest.raises(ValueError, match=rf"{name} must be .*{re.escape(allowed)}.*{name}="):
        make()


def test_valid_edges():
    hj.Impact(0.0, 0.0)
    hj.Impact(1e-3, 2.0)
    hj.RandomSlippage(0.0, 0.0)
