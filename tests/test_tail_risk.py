"""Experiment tail-risk: its building blocks against independent references (a NumPy Merton
series, Black-Scholes replication, Poisson jump counts) and the experiment run small."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from conftest import check_run_folder
from scipy.stats import norm

import hedgejax as hj
from hedgejax.experiments import tail_risk as tr
from hedgejax.experiments._framework import ConfigError, run_experiment

DT = 1.0 / 252


def merton_put_numpy(spot, strike, tau, vol, rate, jump_rate, jump_mean, jump_std, terms=60):
    """Merton (1976) eq. 19, written here with scipy: a Poisson mixture of Black-Scholes puts
    with vol_n^2 = vol^2 + n jump_std^2 / tau and r_n = rate - jump_rate kbar
    + n (jump_mean + jump_std^2 / 2) / tau, weights Poisson(jump_rate (1 + kbar) tau)."""
    spot, strike = np.asarray(spot, float), np.asarray(strike, float)
    kbar = math.expm1(jump_mean + 0.5 * jump_std ** 2)
    lam = jump_rate * (1 + kbar) * tau
    total = np.zeros(np.broadcast(spot, strike).shape)
    for n in range(terms):
        weight = math.exp(-lam + n * math.log(lam) - math.lgamma(n + 1)) if lam > 0 else (
            1.0 if n == 0 else 0.0)
        sd = math.sqrt(vol ** 2 * tau + n * jump_std ** 2)
        r_n = rate - jump_rate * kbar + n * (jump_mean + 0.5 * jump_std ** 2) / tau
        d1 = (np.log(spot / strike) + r_n * tau) / sd + 0.5 * sd
        total = total + weight * (strike * math.exp(-r_n * tau) * norm.cdf(sd - d1)
                                  - spot * norm.cdf(-d1))
    return total


MERTON = dict(vol=0.15, jump_rate=0.6, jump_mean=-0.12, jump_std=0.08)


def test_daily_log_jumps_are_the_poisson_jumps():
    """Rerunning on the same key with jump_rate = 0 keeps the diffusion draws: the recovered
    daily jumps are exactly 0 on jump-free days, and the number of jump days is binomial
    with P = 1 - e^{-jump_rate dt} (within 4 standard errors)."""
    n, days, rate = 3000, 40, 4.0
    grid = hj.TimeGrid(days * DT, days)
    world = hj.Merton(100.0, 0.2, rate, -0.1, 0.05, 0.01, drift=0.06)
    calm = hj.Merton(100.0, 0.2, 0.0, -0.1, 0.05, 0.01, drift=0.06)
    key = jax.random.key(3)
    jumps = tr.daily_log_jumps(hj.simulate(world, grid, n, key), hj.simulate(calm, grid, n, key),
                               rate, float(world.mean_relative_jump), DT)
    assert jumps.shape == (n, days)
    jumped = np.abs(jumps) > 1e-4
    # off the jump days the two worlds' log returns differ by the compensator alone
    assert np.max(np.abs(jumps[~jumped])) < 2e-5
    p = 1 - math.exp(-rate * DT)
    count, expected = jumped.sum(), n * days * p
    assert abs(count - expected) < 4 * math.sqrt(n * days * p * (1 - p))
    # a day with one jump (nearly all of them) has log size N(-0.1, 0.05^2)
    sizes = jumps[jumped]
    assert abs(sizes.mean() + 0.1) < 4 * 0.05 / math.sqrt(sizes.size) + 0.1 * p


def test_one_period_programme_pays_the_put_payoff_less_its_premium(x64):
    """Bought at t0 and held to expiry: the programme's wealth is S_T + payoff - premium
    e^{rT} on every path, the premium being the Merton price (checked against the NumPy
    series written above)."""
    rate, days = 0.03, 21
    paths = np.asarray(hj.simulate(hj.BlackScholes(100.0, 0.25, rate), hj.TimeGrid(days * DT,
                                                                                 days),
                                   500, jax.random.key(1)))
    pricing = hj.Merton(100.0, MERTON["vol"], MERTON["jump_rate"], MERTON["jump_mean"],
                        MERTON["jump_std"], rate)
    out = tr.put_programme(paths, pricing, 0.9, days, days, rate)
    premium = 100.0 * merton_put_numpy(1.0, 0.9, days * DT, rate=rate, **MERTON)
    assert out["premium"][0, 0] == pytest.approx(premium, rel=1e-10)
    payoff = np.maximum(90.0 - paths[:, -1], 0.0)
    expected = paths[:, -1] + payoff - premium * math.exp(rate * days * DT)
    np.testing.assert_allclose(out["wealth"][:, -1], expected, rtol=0, atol=1e-9)


def test_rolling_marks_and_trades_are_model_prices(x64):
    """Every roll sells the old put and the daily marks hold it at its Merton value (NumPy
    series): trades exactly, table marks to 1e-4 of the strike."""
    rate, days, roll, life = 0.02, 50, 10, 30
    paths = np.asarray(hj.simulate(hj.Merton(100.0, 0.2, 1.0, -0.1, 0.1, rate),
                                   hj.TimeGrid(days * DT, days), 40, jax.random.key(2)))
    pricing = hj.Merton(100.0, MERTON["vol"], MERTON["jump_rate"], MERTON["jump_mean"],
                        MERTON["jump_std"], rate)
    out = tr.put_programme(paths, pricing, 0.95, life, roll, rate)
    strikes = 0.95 * paths[:, [0, 10, 20, 30, 40]]
    np.testing.assert_allclose(out["strike"], strikes)
    sale = merton_put_numpy(paths[:, 20], strikes[:, 1], (life - roll) * DT, rate=rate,
                            **MERTON)
    np.testing.assert_allclose(out["proceeds"][:, 2], sale, rtol=1e-9, atol=1e-10)
    # wealth on day 27 (the put bought on day 20 has 23 days left)
    cash = (-out["premium"][:, :3] + out["proceeds"][:, :3]) @ np.exp(
        rate * DT * (27 - np.array([0, 10, 20])))
    mark = merton_put_numpy(paths[:, 27], strikes[:, 2], (life - 7) * DT, rate=rate, **MERTON)
    np.testing.assert_allclose(out["wealth"][:, 27], paths[:, 27] + cash + mark,
                               atol=1e-4 * strikes[:, 2].max())


def test_dynamic_replication_matches_the_puts_in_their_own_world():
    """In a Black-Scholes world at the pricing vol, without costs, daily delta replication
    of the rolled puts ends where buying them ends: mean difference 0 within 4 standard
    errors, and a difference small against the puts' own P&L."""
    vol, rate, days = 0.2, 0.02, 63
    world = hj.BlackScholes(100.0, vol, rate, drift=0.08)
    paths = np.asarray(hj.simulate(world, hj.TimeGrid(days * DT, days), 4000,
                                   jax.random.key(4)))
    puts = tr.put_programme(paths, hj.BlackScholes(100.0, vol, rate), 0.95, 42, 21, rate)
    synthetic = tr.dynamic_replication(paths, vol, 0.95, 42, 21, rate)
    gap = synthetic["wealth"][:, -1] - puts["wealth"][:, -1]
    assert abs(gap.mean()) < 4 * gap.std(ddof=1) / math.sqrt(gap.size)
    put_pnl = puts["wealth"][:, -1] - paths[:, -1] * 1.0
    assert gap.std() < 0.15 * put_pnl.std()


def test_drawdown_and_expected_shortfall_by_hand():
    wealth = np.array([[100.0, 120.0, 90.0, 130.0, 104.0], [100.0, 99.0, 98.0, 97.0, 96.0]])
    np.testing.assert_allclose(tr.max_drawdown(wealth), [0.25, 0.04])
    returns = np.linspace(-0.5, 0.49, 100)          # worst 5: -0.50 .. -0.46
    assert tr.expected_shortfall(returns, 0.95) == pytest.approx(0.48)


def test_experiment_puts_hold_their_floor_where_replication_gaps(tmp_path):
    folder = run_experiment("tail-risk", out=tmp_path, progress=False, show=False,
                            overrides={"paths": 1000, "days": 63})
    payload = check_run_folder(folder, "tail-risk")
    rows = {(r["programme"], r["paths"]): r for r in payload["table"]}
    assert len(rows) == 9
    # The puts guarantee the monthly floor by no-arbitrage (a put is worth at least
    # K e^{-r tau} - S): never breached, crash or not; the replication's delta is set before
    # a gap, so on crash paths it falls through the floor (58% of them at the default
    # 20,000 paths; asserted with a wide margin).
    assert rows[("put programme", "all")]["p_floor_breach"] == 0
    assert rows[("dynamic replication", "crash")]["p_floor_breach"] > 0.2


@pytest.mark.parametrize("overrides, key", [
    ({"pricing": "black"}, "pricing"),
    ({"put_days": 10, "roll_days": 21}, "put_days"),
    ({"moneyness": 0.0}, "moneyness"),
    ({"put_spread": 0.6}, "put_spread"),
    ({"paths": 50}, "paths"),
    ({"roll_days": 300}, "roll_days"),
])
def test_bad_config_names_the_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError, match=key):
        run_experiment("tail-risk", out=tmp_path, progress=False, show=False,
                       overrides=overrides)
