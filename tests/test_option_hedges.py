"""DeltaGammaHedge and DeltaVegaHedge: hedging with a listed option as well as shares.

The reference is a NumPy float64 re-implementation of the conventions of docs/architecture.md, with
the option as a second traded asset, using closed-form Black-Scholes prices and Greeks written
here (SciPy's ndtr) on the paths `hj.simulate` returns for the same key.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.special import ndtr

import hedgejax as hj

S0, VOL, RATE, DIV = 100.0, 0.25, 0.03, 0.01


def _bs(spot, strike, tau, vol=VOL, rate=RATE, div=DIV):
    """Call price, delta, gamma, vega (per 1.00 vol); intrinsic value when tau <= 0."""
    if tau <= 0:
        zero = np.zeros_like(spot)
        return np.maximum(spot - strike, 0.0), (spot > strike) * 1.0, zero, zero
    sd = vol * np.sqrt(tau)
    d1 = (np.log(spot / strike) + (rate - div) * tau) / sd + 0.5 * sd
    d2 = d1 - sd
    pdf = np.exp(-0.5 * d1 * d1) / np.sqrt(2 * np.pi)
    price = spot * np.exp(-div * tau) * ndtr(d1) - strike * np.exp(-rate * tau) * ndtr(d2)
    delta = np.exp(-div * tau) * ndtr(d1)
    gamma = np.exp(-div * tau) * pdf / (spot * sd)
    vega = spot * np.exp(-div * tau) * pdf * np.sqrt(tau)
    return price, delta, gamma, vega


def _reference(paths, grid, book_strike, book_maturity, opt_strike, opt_maturity, greek,
               rate_cost, half_spread):
    """Per-path hedge error, cost and trade count of a delta-gamma (greek=2) or delta-vega (greek=3)
    hedge of one long call with a listed call."""
    n, dt, T = grid.n_steps, grid.maturity / grid.n_steps, grid.maturity
    shares = np.zeros(paths.shape[0])
    units = np.zeros(paths.shape[0])
    gains = np.zeros(paths.shape[0])
    cost = np.zeros(paths.shape[0])
    trades = np.zeros(paths.shape[0], dtype=int)
    for i in range(n):
        t = i * dt
        s, s_next = paths[:, i], paths[:, i + 1]
        book = _bs(s, book_strike, book_maturity - t)
        opt = _bs(s, opt_strike, opt_maturity - t)
        opt_next = _bs(s_next, opt_strike, opt_maturity - t - dt)
        new_units = -book[greek] / opt[greek]
        new_shares = -(book[1] + new_units * opt[1])
        cost += (rate_cost * np.abs(new_shares - shares) * s
                 + half_spread * np.abs(new_units - units)) * np.exp(RATE * (T - t))
        trades += (np.abs(new_shares - shares) > 1e-9).astype(int)
        trades += (np.abs(new_units - units) > 1e-9).astype(int)
        shares, units = new_shares, new_units
        to_end = np.exp(RATE * (T - t - dt))
        gains += shares * (s_next * np.exp(DIV * dt) - s * np.exp(RATE * dt)) * to_end
        gains += units * (opt_next[0] - opt[0] * np.exp(RATE * dt)) * to_end
    v0 = _bs(np.asarray(S0), book_strike, book_maturity)[0]
    payoff = np.maximum(paths[:, -1] - book_strike, 0.0)
    return payoff - v0 * np.exp(RATE * T) + gains, cost, trades


@pytest.mark.parametrize("kind,greek", [("gamma", 2), ("vega", 3)])
def test_matches_numpy_reference(x64, kind, greek):
    model = hj.BlackScholes(S0, VOL, RATE, DIV)
    grid = hj.TimeGrid(0.25, 20)
    listed = hj.EuropeanCall(95.0, 0.5)
    cls = hj.DeltaGammaHedge if kind == "gamma" else hj.DeltaVegaHedge
    strategy = cls(listed, costs=hj.Spread(0.02))
    key = jax.random.key(3)
    res = hj.hedge(model, hj.EuropeanCall(105.0, 0.25), strategy, hj.Proportional(0.001),
                   grid, n_paths=300, key=key)
    paths = np.asarray(hj.simulate(model, grid, 300, key))
    error, cost, trades = _reference(paths, grid, 105.0, 0.25, 95.0, 0.5, greek, 0.001, 0.02)
    np.testing.assert_allclose(np.asarray(res.hedge_error), error, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.asarray(res.cost), cost, rtol=1e-9, atol=1e-9)
    # a trade of each instrument at each step (but where a far out-of-the-money path's
    # ratios no longer move)
    np.testing.assert_array_equal(np.asarray(res.n_trades), trades)
    assert np.median(trades) == 2 * grid.n_steps


def test_delta_gamma_beats_delta_under_black_scholes():
    """Gamma-neutral hedging removes the leading discrete-hedging error term (Derman-Kamal's
    gamma-weighted sum), so at the same frequency its hedge error is far smaller."""
    model = hj.BlackScholes(S0, 0.2)
    grid = hj.TimeGrid(0.25, 13)  # weekly
    book = hj.EuropeanCall(100.0, 0.25)
    key = jax.random.key(0)
    delta = hj.hedge(model, book, hj.DeltaHedge(), None, grid, 20_000, key)
    gamma = hj.hedge(model, book, hj.DeltaGammaHedge(hj.EuropeanCall(100.0, 0.5)), None,
                     grid, 20_000, key)
    ratio = float(np.std(gamma.hedge_error) / np.std(delta.hedge_error))
    assert ratio < 0.5, ratio
    se = float(np.std(gamma.hedge_error)) / np.sqrt(20_000)
    assert abs(float(np.mean(gamma.hedge_error))) < 4 * se + 1e-3


@pytest.mark.slow  # compiles Heston/neural hedges for a minute: the slow tier
def test_delta_vega_beats_delta_under_heston():
    """Shares alone cannot hedge the variance factor; a second option can."""
    with pytest.warns(hj.FellerWarning):
        model = hj.Heston(spot=100.0, v0=0.04, theta=0.04, kappa=1.5, xi=0.5, rho=-0.7)
    grid = hj.TimeGrid(0.25, 10)
    book = hj.EuropeanCall(105.0, 0.25)
    key = jax.random.key(1)
    delta = hj.hedge(model, book, hj.DeltaHedge(), None, grid, 2_000, key)
    vega = hj.hedge(model, book, hj.DeltaVegaHedge(hj.EuropeanCall(100.0, 0.5)), None, grid,
                    2_000, key)
    ratio = float(np.std(vega.hedge_error) / np.std(delta.hedge_error))
    assert ratio < 0.6, ratio


@pytest.mark.slow  # ~11 s of compilation: the slow tier
def test_option_costs_charged_per_unit():
    model = hj.BlackScholes(S0, 0.2)
    grid = hj.TimeGrid(0.25, 5)
    book = hj.EuropeanCall(100.0, 0.25)
    listed = hj.EuropeanCall(100.0, 0.5)
    key = jax.random.key(2)
    free = hj.hedge(model, book, hj.DeltaGammaHedge(listed), None, grid, 64, key)
    paid = hj.hedge(model, book, hj.DeltaGammaHedge(listed, costs=hj.Fixed(1.0)), None, grid,
                    64, key)
    np.testing.assert_allclose(paid.hedge_error, free.hedge_error, rtol=1e-6)
    # one fee per option trade: every step, plus the unwind is not charged (unwind=False)
    np.testing.assert_allclose(paid.cost - free.cost, grid.n_steps * 1.0, rtol=1e-6)
    unwound = hj.hedge(model, book, hj.DeltaGammaHedge(listed, costs=hj.Fixed(1.0)), None,
                       grid, 64, key, unwind=True)
    np.testing.assert_allclose(unwound.cost - free.cost, grid.n_steps + 1.0, rtol=1e-6)


def test_every_holds_both_positions():
    model = hj.BlackScholes(S0, 0.2)
    grid = hj.TimeGrid(0.25, 12)
    strategy = hj.DeltaGammaHedge(hj.EuropeanCall(100.0, 0.5), every=4)
    res = hj.hedge(model, hj.EuropeanCall(100.0, 0.25), strategy, None, grid, 64,
                   jax.random.key(0))
    assert int(np.max(res.n_trades)) == 2 * 3


def test_gradient_through_option_hedge():
    model = hj.BlackScholes(S0, 0.2)
    grid = hj.TimeGrid(0.25, 8)

    def mean_pnl(half_spread):
        strategy = hj.DeltaGammaHedge(hj.EuropeanCall(100.0, 0.5),
                                      costs=hj.Spread(half_spread))
        res = hj.hedge(model, hj.EuropeanCall(100.0, 0.25), strategy, None, grid, 256,
                       jax.random.key(0))
        return res.pnl.mean()

    g = jax.grad(mean_pnl)(0.05)
    assert np.isfinite(float(g)) and float(g) < 0  # a wider spread costs more


def test_validation():
    listed = hj.EuropeanCall(100.0, 0.5)
    with pytest.raises(ValueError, match="instrument"):
        hj.DeltaGammaHedge(100.0)
    with pytest.raises(ValueError, match="costs"):
        hj.DeltaVegaHedge(listed, costs=0.01)
    with pytest.raises(ValueError, match="every"):
        hj.DeltaGammaHedge(listed, every=0)
    with pytest.raises(ValueError, match="maturity must be >="):
        hj.hedge(hj.BlackScholes(S0, 0.2), hj.EuropeanCall(100.0, 1.0),
                 hj.DeltaGammaHedge(listed), None, hj.TimeGrid(1.0, 10), 64, jax.random.key(0))
