"""Tests of `hj.protective_put` (portfolio insurance by a synthetic put).

The identity checked: value = shares S_T + X_T, with X_T the self-financing replicating
portfolio of shares long puts (premium shares P0 in cash, h_i = shares x put delta shares,
financed at r, dividends on the hedge reinvested, costs paid from the account), so that
value - shares max(S_T, K) = pnl of hedging the short puts. The reference is a NumPy float64
re-implementation on the paths `hj.simulate` returns (the paths `hedge()` sees).
Monte Carlo assertions are in standard errors with fixed keys.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from scipy.special import ndtr

import hedgejax as hj


def bs_put(spot, strike, tau, vol, rate, div):
    """Black-Scholes-Merton put price and delta (float64 NumPy)."""
    spot = np.asarray(spot, dtype=float)
    sd = vol * np.sqrt(tau)
    d1 = (np.log(spot / strike) + (rate - div) * tau) / sd + 0.5 * sd
    d2 = d1 - sd
    price = strike * np.exp(-rate * tau) * ndtr(-d2) - spot * np.exp(-div * tau) * ndtr(-d1)
    delta = np.exp(-div * tau) * (ndtr(d1) - 1.0)
    return price, delta


def test_value_matches_numpy_replication(x64):
    s0, k, t_end, vol, r, q, mu = 100.0, 95.0, 0.5, 0.25, 0.04, 0.015, 0.09
    shares, c, n_steps, n_paths = 3.0, 0.002, 20, 256
    model = hj.BlackScholes(s0, vol, rate=r, div=q, drift=mu)
    grid = hj.TimeGrid(t_end, n_steps)
    key = jax.random.key(5)
    ins = hj.protective_put(model, k, grid, n_paths, key, shares=shares,
                            costs=hj.Proportional(c))

    paths = np.asarray(hj.simulate(model, grid, n_paths, key), dtype=float)
    dt = t_end / n_steps
    p0, _ = bs_put(s0, k, t_end, vol, r, q)
    x = np.full(n_paths, shares * p0 * math.exp(r * t_end))   # premium in cash, at T
    cost = np.zeros(n_paths)
    held = np.zeros(n_paths)
    for i in range(n_steps):
        t, s, s_next = i * dt, paths[:, i], paths[:, i + 1]
        h = shares * bs_put(s, k, t_end - t, vol, r, q)[1]    # replicating long puts
        cost += c * np.abs(h - held) * s * math.exp(r * (t_end - t))
        x += h * (s_next * math.exp(q * dt) - s * math.exp(r * dt)) * math.exp(
            r * (t_end - t - dt))
        held = h
    x -= cost
    s_T = paths[:, -1]
    value = shares * s_T + x

    np.testing.assert_allclose(float(ins.premium), shares * p0, rtol=1e-12)
    np.testing.assert_allclose(float(ins.floor), shares * k, rtol=1e-15)
    np.testing.assert_allclose(np.asarray(ins.value), value, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(ins.cost), cost, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(ins.replication_error),
                               value - shares * np.maximum(s_T, k), atol=1e-9)
    np.testing.assert_allclose(np.asarray(ins.shortfall), np.maximum(shares * k - value, 0.0),
                               atol=1e-9)
    np.testing.assert_allclose(np.asarray(ins.terminal_spot), s_T, rtol=1e-14)
    # The underlying hedge is of the short puts: V0 = -premium, position = +shares x delta.
    np.testing.assert_allclose(float(ins.result.initial_price), -shares * p0, rtol=1e-12)
    assert np.all(np.asarray(ins.result.final_position) <= 0.0)
    np.testing.assert_array_equal(np.asarray(ins.replication_error), np.asarray(ins.result.pnl))


def test_no_hedge_keeps_the_premium_in_cash(x64):
    # With NoHedge the "replication" is the premium accrued: value = shares (S_T + P0 e^{rT}).
    model = hj.BlackScholes(100.0, 0.2, rate=0.05)
    grid = hj.TimeGrid(1.0, 5)
    ins = hj.protective_put(model, 100.0, grid, 128, jax.random.key(2), shares=2.0,
                            strategy=hj.NoHedge())
    p0, _ = bs_put(100.0, 100.0, 1.0, 0.2, 0.05, 0.0)
    s_T = np.asarray(ins.terminal_spot, float)
    np.testing.assert_allclose(np.asarray(ins.value), 2.0 * (s_T + p0 * math.exp(0.05)),
                               rtol=1e-12)
    assert np.all(np.asarray(ins.cost) == 0.0)


def _bs_insurance(n_steps, n_paths=8192, costs=None, key=3, strike=100.0, shares=1.0):
    model = hj.BlackScholes(100.0, 0.2)
    return hj.protective_put(model, strike, hj.TimeGrid(1.0, n_steps), n_paths,
                             jax.random.key(key), costs=costs, shares=shares)


def test_frictionless_replication_error_unbiased_and_shrinks_with_steps():
    coarse, fine = _bs_insurance(50), _bs_insurance(200)
    stds = []
    for ins in (coarse, fine):
        err = np.asarray(ins.replication_error, float)
        se = err.std(ddof=1) / math.sqrt(err.size)
        assert abs(err.mean()) < 4 * se
        np.testing.assert_array_equal(np.asarray(ins.cost), 0.0)
        stds.append(err.std(ddof=1))
    # Discrete hedging error ~ 1/sqrt(n_steps): 4x the steps halves the std.
    assert 0.4 < stds[1] / stds[0] < 0.6


def test_insured_value_holds_the_floor():
    ins = _bs_insurance(200)
    value, floor = np.asarray(ins.value, float), float(ins.floor)
    s_T = np.asarray(ins.terminal_spot, float)
    premium = float(ins.premium)
    assert 7.5 < premium < 8.5   # ATM 1y put at 20% vol: 7.97
    # Uninsured, the expected shortfall below the floor is E[(K - S_T)^+] = P0 (r = 0).
    uninsured = np.maximum(floor - s_T, 0.0)
    assert abs(uninsured.mean() - premium) < 4 * uninsured.std() / math.sqrt(s_T.size)
    # Insured, it is a small fraction of that, and rarely more than 1% of the floor.
    assert ins.shortfall.mean() < 0.05 * premium
    assert np.mean(value < floor - 0.01 * floor) < 0.02
    assert np.median(value - floor) >= 0.0
    assert np.all(np.asarray(ins.shortfall) >= 0.0)


def test_costs_lower_the_value_by_the_cost():
    free = _bs_insurance(50)
    costly = _bs_insurance(50, costs=hj.Proportional(0.002))
    cost = np.asarray(costly.cost, float)
    assert np.all(cost >= 0.0) and cost.mean() > 0.0
    # Same key, same paths and trades (delta hedging ignores costs): per path the insured
    # value is lower by exactly the cost paid.
    np.testing.assert_allclose(np.asarray(free.value, float) - np.asarray(costly.value, float),
                               cost, rtol=1e-4, atol=1e-4)
    err = np.asarray(costly.replication_error, float)
    assert abs(err.mean() + cost.mean()) < 4 * err.std(ddof=1) / math.sqrt(err.size)
    assert costly.shortfall.mean() > free.shortfall.mean()


def test_merton_jumps_create_gap_risk():
    # Same total variance: the diffusion world has vol = the Merton world's total vol. Each
    # is hedged with its own model (fair premium, unbiased replication). Downward jumps make
    # the synthetic put (linear in the jump) deliver less than the put (convex): gap risk.
    merton = hj.Merton(100.0, 0.1, jump_rate=0.5, jump_mean=-0.2, jump_std=0.1)
    diffusion = hj.BlackScholes(100.0, float(merton.total_vol))
    grid = hj.TimeGrid(1.0, 50)   # the grid of _bs_insurance(50): one compilation less
    out = {}
    for name, model in (("merton", merton), ("diffusion", diffusion)):
        ins = hj.protective_put(model, 100.0, grid, 8192, jax.random.key(1))
        err = np.asarray(ins.replication_error, float)
        assert abs(err.mean()) < 4 * err.std(ddof=1) / math.sqrt(err.size)
        shortfall = np.asarray(ins.shortfall, float)
        out[name] = (shortfall.mean(), np.mean(shortfall > 1.0), err.std())
    (m_mean, m_prob, m_std), (d_mean, d_prob, d_std) = out["merton"], out["diffusion"]
    assert m_mean > 5 * d_mean          # measured 2.09 against 0.19
    assert m_prob > 3 * d_prob          # P(shortfall > 1% of the floor): 28% against 6%
    assert m_std > 3 * d_std            # 5.3 against 0.92


def test_shares_scale_linearly():
    one = _bs_insurance(50, strike=90.0, key=4)
    many = _bs_insurance(50, strike=90.0, key=4, shares=250.0)
    for name in ("value", "replication_error", "shortfall", "premium", "floor"):
        np.testing.assert_allclose(np.asarray(getattr(many, name)),
                                   250.0 * np.asarray(getattr(one, name)), rtol=1e-5,
                                   atol=250.0 * 1e-4, err_msg=name)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(strike=0.0), r"strike must be finite and > 0"),
        (dict(strike=-5.0), r"strike must be finite and > 0"),
        (dict(strike=float("nan")), r"strike must be finite and > 0"),
        (dict(shares=0.0), r"shares must be finite and > 0"),
        (dict(shares=-1.0), r"shares must be finite and > 0"),
        (dict(grid=(1.0, 10)), r"grid must be a TimeGrid"),
        (dict(strike=[90.0, 100.0]), r"strike and shares must be scalars"),
    ],
)
def test_validation(kwargs, match):
    args = dict(model=hj.BlackScholes(100.0, 0.2), strike=100.0, grid=hj.TimeGrid(1.0, 10),
                n_paths=16, key=jax.random.key(0))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        hj.protective_put(**args)


@pytest.mark.parametrize("maturity", [0.0, -1.0])
def test_grid_maturity_must_be_positive(maturity):
    with pytest.raises(ValueError, match=r"maturity must be .*> 0"):
        hj.protective_put(hj.BlackScholes(100.0, 0.2), 100.0, hj.TimeGrid(maturity, 10), 16,
                          jax.random.key(0))
