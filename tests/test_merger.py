"""MergerTarget (merger arbitrage world) and the merger-arbitrage experiment, against
independent references: the offer and stand-alone limits, the mixture price written in
NumPy/scipy, Monte Carlo at 4 standard errors, finite differences."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_run_folder
from scipy.stats import norm

import hedgejax as hj
from hedgejax.experiments._framework import run_experiment

STOCK = dict(acquirer_spot=100.0, standalone_spot=35.0, acquirer_vol=0.25, standalone_vol=0.3,
             exchange_ratio=0.5, q=0.8, p=0.9, close=0.5, correlation=0.4, rate=0.03)


def _bs(spot, strike, vol, rate, tau, call):
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol**2) * tau) / (vol * math.sqrt(tau))
    d2 = d1 - vol * math.sqrt(tau)
    if call:
        return spot * norm.cdf(d1) - strike * math.exp(-rate * tau) * norm.cdf(d2)
    return strike * math.exp(-rate * tau) * norm.cdf(-d2) - spot * norm.cdf(-d1)


def _mixture(strike, maturity, call, *, acquirer_spot, standalone_spot, acquirer_vol,
             standalone_vol, exchange_ratio, q, close, rate, cash=0.0, **_):
    """q x option on cash_T + ratio A_T + (1 - q) x option on V_T, written separately."""
    cash_T = cash * math.exp(rate * (maturity - close))
    k_a = (strike - cash_T) / exchange_ratio
    offer = exchange_ratio * _bs(acquirer_spot, k_a, acquirer_vol, rate, maturity, call)
    return q * offer + (1 - q) * _bs(standalone_spot, strike, standalone_vol, rate, maturity,
                                     call)


def test_price_is_the_mixture_and_spread_is_implied_probability(x64):
    deal = hj.MergerTarget(**STOCK)
    # S0 = q O + (1 - q) V with O = 0.5 x 100: independent arithmetic
    assert float(deal.spot) == pytest.approx(0.8 * 50 + 0.2 * 35, rel=1e-12)
    assert float(deal.spread) == pytest.approx(0.2 * (50 - 35), rel=1e-12)
    assert float(deal.implied_probability()) == pytest.approx(0.8, rel=1e-12)
    for strike, maturity, call in [(42.0, 0.5, False), (48.0, 0.75, True), (30.0, 1.0, False)]:
        inst = (hj.EuropeanCall if call else hj.EuropeanPut)(strike, maturity)
        assert float(hj.price(deal, inst)) == pytest.approx(
            _mixture(strike, maturity, call, **STOCK), rel=1e-10)
    # a cash + stock deal, strike above the cash part
    mixed = deal.replace(cash=10.0, exchange_ratio=0.4)
    assert float(hj.price(mixed, hj.EuropeanPut(45.0, 0.6))) == pytest.approx(
        _mixture(45.0, 0.6, False, **{**STOCK, "cash": 10.0, "exchange_ratio": 0.4}),
        rel=1e-10)
    # delta by autodiff vs a central difference of the price in the target's spot
    put = hj.EuropeanPut(42.0, 0.5)
    h = 1e-4
    fd = (float(hj.price(deal, put, deal.spot + h)) - float(hj.price(deal, put, deal.spot - h))
          ) / (2 * h)
    assert float(hj.greeks(deal, put).delta) == pytest.approx(fd, rel=1e-6)


def test_limits_certain_deal_is_the_offer_and_no_deal_is_standalone(x64):
    grid = hj.TimeGrid(0.5, 5)
    key = jax.random.key(3)
    certain = hj.MergerTarget(**{**STOCK, "q": 1.0, "p": 1.0})
    end = hj.merger_paths(certain, grid, 64, key)
    np.testing.assert_allclose(end.target, 0.5 * end.acquirer, rtol=1e-12)
    assert bool(jnp.all(end.status == 1))
    cash_deal = hj.MergerTarget(**{**STOCK, "q": 1.0, "p": 1.0, "cash": 42.0,
                                   "exchange_ratio": 0.0})
    paths = hj.simulate(cash_deal, grid, 16, key)
    times = np.asarray(grid.times)
    np.testing.assert_allclose(paths, np.broadcast_to(42.0 * np.exp(-0.03 * (0.5 - times)),
                                                      paths.shape), rtol=1e-12)
    never = hj.MergerTarget(**{**STOCK, "q": 0.0, "p": 0.0})
    full = hj.merger_paths(never, grid, 64, key, keep_path=True)
    np.testing.assert_allclose(full.target, full.standalone, rtol=1e-12)
    # the target's paths are the ones hj.simulate gives for the same key
    np.testing.assert_allclose(hj.merger_paths(hj.MergerTarget(**STOCK), grid, 32, key,
                                               keep_path=True).target,
                               hj.simulate(hj.MergerTarget(**STOCK), grid, 32, key),
                               rtol=1e-12)


def test_monte_carlo_mean_and_put_price_within_4_se():
    deal = hj.MergerTarget(**STOCK)
    grid = hj.TimeGrid(0.5, 4)
    n = 200_000
    end = hj.merger_paths(deal, grid, n, jax.random.key(7))
    s_T = np.asarray(end.target, dtype=np.float64)
    # real world (p = 0.9): E[S_T] = p O_T + (1 - p) V_T forwards, drifts at rate
    growth = math.exp(0.03 * 0.5)
    expected = (0.9 * 50 + 0.1 * 35) * growth
    assert abs(s_T.mean() - expected) < 4 * s_T.std() / math.sqrt(n)
    assert abs(float(np.mean(np.asarray(end.status) == 1)) - 0.9) < 4 * math.sqrt(
        0.09 / n)
    # risk-neutral put price by simulation vs the NumPy mixture
    put = hj.EuropeanPut(42.0, 0.5)
    mc, se = hj.mc_price(deal, put, n, jax.random.key(8), n_steps=4)
    assert abs(float(mc) - _mixture(42.0, 0.5, False, **STOCK)) < 4 * float(se)


@pytest.mark.parametrize("change, match", [
    ({"p": 1.2}, "p must be in \\[0, 1\\]"),
    ({"q": -0.1}, "q must be in \\[0, 1\\]"),
    ({"exchange_ratio": -0.5}, "exchange_ratio must be finite and >= 0"),
    ({"cash": -1.0}, "cash must be finite and >= 0"),
    ({"exchange_ratio": 0.0, "cash": 0.0}, "cash \\+ exchange_ratio must be > 0"),
    ({"close": 0.0}, "close must be finite and > 0"),
    ({"correlation": 1.5}, "correlation must be in \\[-1, 1\\]"),
    ({"standalone_vol": -0.2}, "standalone_vol must be finite and > 0"),
    ({"acquirer_spot": 0.0}, "acquirer_spot must be finite and > 0"),
    ({"rate": float("nan")}, "rate must be finite"),
])
def test_bad_parameters_raise(change, match):
    with pytest.raises(ValueError, match=match):
        hj.MergerTarget(**{**STOCK, **change})


def test_uncovered_prices_raise():
    deal = hj.MergerTarget(**STOCK)
    with pytest.raises(ValueError, match="close <= maturity"):
        hj.price(deal, hj.EuropeanPut(42.0, 0.25))
    with pytest.raises(ValueError, match="random_close"):
        hj.price(deal.replace(random_close=True), hj.EuropeanPut(42.0, 1.0))


def test_experiment_mean_pnl_is_the_probability_edge(tmp_path):
    folder = run_experiment("merger-arbitrage", out=tmp_path, progress=False, show=False,
                            overrides={"paths": 20_000, "steps": 2, "p_grid": [0.7, 0.95]})
    payload = check_run_folder(folder, "merger-arbitrage")
    rows = payload["table"]
    assert len(rows) == 6
    # E[P&L] = shares (p - q) e^{rT} (O - V) (puts: plus their edge under p), within 4 SE
    for row in rows:
        assert abs(row["mean_pnl"] - row["theory_mean"]) < 4 * row["stderr"]


def test_implied_probability_and_paths_refuse_what_they_cannot_read():
    import jax

    import hedgejax as hj

    deal = hj.MergerTarget(100.0, 35.0, 0.25, 0.3, exchange_ratio=0.5, q=0.8, close=0.5)
    # (S - V) / (O - V) by hand: S = 45 between V = 35 and O = 50
    assert float(deal.implied_probability(45.0)) == pytest.approx(10.0 / 15.0, rel=1e-6)
    for price in (float("nan"), -5.0, 60.0):
        with pytest.raises(ValueError, match="target_price must be finite and in"):
            deal.implied_probability(price)
    flat = hj.MergerTarget(100.0, 50.0, 0.25, 0.3, exchange_ratio=0.5, q=0.8, close=0.5)
    with pytest.raises(ValueError, match="differs from standalone_spot"):
        flat.implied_probability()
    with pytest.raises(ValueError, match="grid must be a TimeGrid"):
        hj.merger_paths(deal, "x", 10, jax.random.key(0))
    with pytest.raises(ValueError, match="mc_greeks bumps the model's spot"):
        hj.mc_greeks(deal, hj.EuropeanPut(42.0, 0.5), 16, jax.random.key(0))
