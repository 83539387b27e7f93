"""Tests of `hj.hedge()` against docs/architecture.md ("Conventions") (conventions).

Every expected value is computed here, independently of hedgejax: closed-form Black-Scholes
prices and Greeks written below in NumPy/SciPy, a NumPy float64 re-implementation of the
hedging conventions run on the paths `hj.simulate` returns (the same paths `hedge()` sees for
the same model, grid and key), exact identities, and Derman & Kamal's (1999) discrete-hedging
error formula. Monte Carlo assertions are in standard errors with fixed seeds.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from scipy.special import ndtr

import hedgejax as hj

# ---------------------------------------------------------------------------------------
# Closed-form Black-Scholes-Merton (continuous dividend yield q), float64 NumPy.
# ---------------------------------------------------------------------------------------


def _d1_d2(spot, strike, tau, vol, rate, div):
    sd = vol * np.sqrt(tau)
    d1 = (np.log(spot / strike) + (rate - div) * tau) / sd + 0.5 * sd
    return d1, d1 - sd


def bs_price(spot, strike, tau, vol, rate=0.0, div=0.0, sign=1.0):
    """Call (sign=+1) or put (sign=-1) price; intrinsic value when tau <= 0."""
    spot = np.asarray(spot, dtype=float)
    if tau <= 0:
        return np.maximum(sign * (spot - strike), 0.0)
    d1, d2 = _d1_d2(spot, strike, tau, vol, rate, div)
    return sign * (spot * np.exp(-div * tau) * ndtr(sign * d1)
                   - strike * np.exp(-rate * tau) * ndtr(sign * d2))


def bs_delta(spot, strike, tau, vol, rate=0.0, div=0.0, sign=1.0):
    """dV/dS: e^{-q tau} N(d1) for a call, e^{-q tau} (N(d1) - 1) for a put."""
    d1, _ = _d1_d2(np.asarray(spot, dtype=float), strike, tau, vol, rate, div)
    return np.exp(-div * tau) * (ndtr(d1) - (sign < 0))


def bs_gamma(spot, strike, tau, vol, rate=0.0, div=0.0):
    spot = np.asarray(spot, dtype=float)
    d1, _ = _d1_d2(spot, strike, tau, vol, rate, div)
    return np.exp(-div * tau) * np.exp(-0.5 * d1 * d1) / (
        math.sqrt(2 * math.pi) * spot * vol * np.sqrt(tau))


def bs_vega(spot, strike, tau, vol, rate=0.0, div=0.0):
    """dV/dvol per 1.00 of vol: S e^{-q tau} phi(d1) sqrt(tau)."""
    d1, _ = _d1_d2(spot, strike, tau, vol, rate, div)
    return spot * math.exp(-div * tau) * math.exp(-0.5 * d1 * d1) / math.sqrt(
        2 * math.pi) * math.sqrt(tau)


# ---------------------------------------------------------------------------------------
# NumPy re-implementation of the conventions (docs/architecture.md) for a book of calls
# and puts.
# ---------------------------------------------------------------------------------------

# A position change counts as a trade when it is not (numerically) zero. Strategies that
# hold produce trades of exactly 0; every other trade in these tests is far above this.
TRADE_EPS = 1e-9


def reference_hedge(paths, maturity, legs, vol, rate, div, policy, cost_fn, unwind=False):
    """Hedge a book of calls/puts along `paths` following the conventions of docs/architecture.md.

    legs: list of (sign, strike, expiry, quantity), sign +1 call / -1 put.
    policy(i, delta, gamma, position, spot, tau_to_grid_end) -> target shares.
    cost_fn(trade, spot) -> currency.
    """
    paths = np.asarray(paths, dtype=float)
    n_paths, n_steps = paths.shape[0], paths.shape[1] - 1
    dt = maturity / n_steps
    times = np.arange(n_steps + 1) * dt
    expiry_step = [int(round(e / dt)) for _, _, e, _ in legs]
    v0 = sum(q * bs_price(paths[0, 0], k, e, vol, rate, div, s) for s, k, e, q in legs)

    position = np.zeros(n_paths)
    gains = np.zeros(n_paths)
    cost = np.zeros(n_paths)
    n_trades = np.zeros(n_paths, dtype=int)
    trades = []
    for i in range(n_steps):
        spot, t = paths[:, i], times[i]
        delta = np.zeros(n_paths)
        gamma = np.zeros(n_paths)
        for (s, k, e, q), step in zip(legs, expiry_step, strict=True):
            if step > i:  # alive: not yet expired and paid
                delta += q * bs_delta(spot, k, e - t, vol, rate, div, s)
                gamma += q * bs_gamma(spot, k, e - t, vol, rate, div)
        target = policy(i, delta, gamma, position, spot, maturity - t)
        trade = target - position
        trades.append(trade)
        cost += cost_fn(trade, spot) * np.exp(rate * (maturity - t))
        n_trades += np.abs(trade) > TRADE_EPS
        gains += target * (paths[:, i + 1] * np.exp(div * dt) - spot * np.exp(rate * dt)) * (
            np.exp(rate * (maturity - times[i + 1])))
        position = target

    book_T = np.zeros(n_paths)
    for (s, k, e, q), step in zip(legs, expiry_step, strict=True):
        if step <= n_steps:  # pays at its expiry; the cash accrues at `rate` to T
            payoff = np.maximum(s * (paths[:, step] - k), 0.0)
            book_T += q * payoff * np.exp(rate * (maturity - times[step]))
        else:  # matures after the grid: worth its price at T
            book_T += q * bs_price(paths[:, -1], k, e - maturity, vol, rate, div, s)
    if unwind:
        cost = cost + cost_fn(-position, paths[:, -1])
        n_trades = n_trades + (np.abs(position) > TRADE_EPS)
    unhedged = book_T - v0 * np.exp(rate * maturity)
    hedge_error = unhedged + gains
    return dict(pnl=hedge_error - cost, hedge_error=hedge_error, cost=cost, n_trades=n_trades,
                unhedged_pnl=unhedged, final_position=position, initial_price=v0,
                trades=np.array(trades).T)


def delta_policy(i, delta, gamma, position, spot, tau):
    return -delta


def every_policy(k):
    return lambda i, delta, gamma, position, spot, tau: -delta if i % k == 0 else position


def static_policy(i, delta, gamma, position, spot, tau):
    return -delta if i == 0 else position


def no_hedge_policy(i, delta, gamma, position, spot, tau):
    return np.zeros_like(position)


def band_policy(width):
    return lambda i, delta, gamma, position, spot, tau: np.clip(
        position, -delta - width, -delta + width)


def whalley_wilmott_policy(risk_aversion, cost_rate, rate):
    """Whalley & Wilmott (1997): half-width (3/2 e^{-r tau} c S Gamma^2 / gamma)^(1/3)."""
    def policy(i, delta, gamma, position, spot, tau):
        half = np.cbrt(1.5 * np.exp(-rate * tau) * cost_rate * spot * gamma**2 / risk_aversion)
        return np.clip(position, -delta - half, -delta + half)
    return policy


def proportional(c):
    return lambda trade, spot: c * np.abs(trade) * spot


def assert_matches(res, ref, rtol=1e-9, atol=1e-9):
    for name in ("pnl", "hedge_error", "cost", "unhedged_pnl", "final_position"):
        np.testing.assert_allclose(np.asarray(getattr(res, name)), ref[name], rtol=rtol,
                                   atol=atol, err_msg=name)
    np.testing.assert_array_equal(np.asarray(res.n_trades), ref["n_trades"])
    np.testing.assert_allclose(float(res.initial_price), ref["initial_price"], rtol=1e-12)


# Common precision setup (float64): one call with r, q, a real-world drift != r - q.
S0, K, T, VOL, R, Q, MU = 100.0, 105.0, 0.5, 0.25, 0.05, 0.02, 0.11
N_STEPS, N_PATHS = 20, 256


def _setup():
    model = hj.BlackScholes(S0, VOL, rate=R, div=Q, drift=MU)
    grid = hj.TimeGrid(T, N_STEPS)
    key = jax.random.key(20240611)
    paths = np.asarray(hj.simulate(model, grid, N_PATHS, key), dtype=float)
    return model, grid, key, paths


CALL_LEG = [(1.0, K, T, 1.0)]
C = 0.002  # proportional cost rate


@pytest.mark.parametrize(
    "make_strategy, policy",
    [
        (lambda: hj.DeltaHedge(every=1), delta_policy),
        (lambda: hj.DeltaHedge(every=3), every_policy(3)),
        (lambda: hj.StaticHedge(), static_policy),
        (lambda: hj.NoHedge(), no_hedge_policy),
        (lambda: hj.BandHedge(0.03), band_policy(0.03)),
        (lambda: hj.WhalleyWilmott(0.5), whalley_wilmott_policy(0.5, C, R)),
    ],
    ids=["delta1", "delta3", "static", "nohedge", "band", "whalley_wilmott"],
)
def test_matches_numpy_reimplementation(x64, make_strategy, policy):
    model, grid, key, paths = _setup()
    res = hj.hedge(model, hj.EuropeanCall(K, T), make_strategy(), hj.Proportional(C), grid,
                   N_PATHS, key)
    ref = reference_hedge(paths, T, CALL_LEG, VOL, R, Q, policy, proportional(C))
    assert res.pnl.shape == (N_PATHS,)
    assert_matches(res, ref)
    # hj.simulate returns the paths hedge() sees.
    np.testing.assert_allclose(np.asarray(res.terminal_spot), paths[:, -1], rtol=1e-14)
    # V0 is the closed-form price (drift plays no part in it).
    np.testing.assert_allclose(float(res.initial_price), bs_price(S0, K, T, VOL, R, Q),
                               rtol=1e-12)


def test_no_hedge_is_payoff_minus_financed_price(x64):
    model, grid, key, paths = _setup()
    res = hj.hedge(model, hj.EuropeanPut(K, T), hj.NoHedge(), hj.Proportional(C), grid,
                   N_PATHS, key)
    v0 = bs_price(S0, K, T, VOL, R, Q, sign=-1.0)
    expected = np.maximum(K - paths[:, -1], 0.0) - v0 * math.exp(R * T)
    np.testing.assert_allclose(np.asarray(res.pnl), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(res.hedge_error), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(res.unhedged_pnl), expected, rtol=1e-10,
                               atol=1e-10)
    assert np.all(np.asarray(res.n_trades) == 0)
    assert np.all(np.asarray(res.cost) == 0.0)
    assert np.all(np.asarray(res.final_position) == 0.0)


def test_static_hedge_closed_form(x64):
    # With q = 0 the financed gains of a constant holding h telescope:
    #   sum_i h (S_{i+1} - S_i e^{r dt}) e^{r (T - t_{i+1})} = h (S_T - S_0 e^{rT}).
    model = hj.BlackScholes(S0, VOL, rate=R, drift=MU)
    grid = hj.TimeGrid(T, N_STEPS)
    key = jax.random.key(7)
    s_T = np.asarray(hj.simulate(model, grid, N_PATHS, key), dtype=float)[:, -1]
    res = hj.hedge(model, hj.EuropeanCall(K, T), hj.StaticHedge(), hj.Proportional(C), grid,
                   N_PATHS, key)
    h0 = -bs_delta(S0, K, T, VOL, R)
    unhedged = np.maximum(s_T - K, 0.0) - bs_price(S0, K, T, VOL, R) * math.exp(R * T)
    cost = C * abs(h0) * S0 * math.exp(R * T)
    assert np.all(np.asarray(res.n_trades) == 1)
    np.testing.assert_allclose(np.asarray(res.final_position), h0, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(res.cost), cost, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(res.hedge_error),
                               unhedged + h0 * (s_T - S0 * math.exp(R * T)),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(res.pnl),
                               unhedged + h0 * (s_T - S0 * math.exp(R * T)) - cost,
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n_steps", [52, 252])
def test_delta_hedge_unbiased_and_derman_kamal(n_steps):
    # True model, risk-neutral world, no costs: the financed share gains are a martingale and
    # E[payoff] = V0 e^{rT}, so E[hedge_error] = 0 exactly for any n_steps.
    # Derman & Kamal (1999): std(hedge error) ~ sqrt(pi/4) * vega * vol / sqrt(N) for an ATM
    # option (leading order in 1/N). With 2^15 paths the sampling error of the std is ~0.6%
    # (relative SE sqrt((kurtosis - 1) / 4n), kurtosis < 10), small against the 6% band.
    n_paths = 2**15
    model = hj.BlackScholes(100.0, 0.2)
    res = hj.hedge(model, hj.EuropeanCall(100.0, 1.0), hj.DeltaHedge(every=1), None,
                   hj.TimeGrid(1.0, n_steps), n_paths, jax.random.key(11))
    he = np.asarray(res.hedge_error, dtype=float)
    se = he.std(ddof=1) / math.sqrt(n_paths)
    assert abs(he.mean()) < 4 * se
    predicted = math.sqrt(math.pi / 4) * bs_vega(100.0, 100.0, 1.0, 0.2) * 0.2 / math.sqrt(
        n_steps)
    assert abs(he.std(ddof=1) / predicted - 1) < 0.06
    # No costs charged, pnl is the hedge error.
    assert np.all(np.asarray(res.cost) == 0.0)
    np.testing.assert_array_equal(np.asarray(res.pnl), np.asarray(res.hedge_error))


# ---------------------------------------------------------------------------------------
# Costs
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "make_costs, per_trade",
    [
        (lambda: hj.Proportional(0.002), lambda tr, s: 0.002 * np.abs(tr) * s),
        (lambda: hj.Spread(0.05), lambda tr, s: 0.05 * np.abs(tr)),
        (lambda: hj.Fixed(0.1), lambda tr, s: 0.1 * (np.abs(tr) > TRADE_EPS)),
        (lambda: hj.Proportional(0.001) + hj.Spread(0.02) + hj.Fixed(0.05),
         lambda tr, s: 0.001 * np.abs(tr) * s + 0.02 * np.abs(tr)
         + 0.05 * (np.abs(tr) > TRADE_EPS)),
    ],
    ids=["proportional", "spread", "fixed", "sum"],
)
def test_costs_on_common_random_numbers(x64, make_costs, per_trade):
    model, grid, key, paths = _setup()
    call = hj.EuropeanCall(K, T)
    free = hj.hedge(model, call, hj.DeltaHedge(every=1), None, grid, N_PATHS, key)
    paid = hj.hedge(model, call, hj.DeltaHedge(every=1), make_costs(), grid, N_PATHS, key)
    cost = np.asarray(paid.cost)
    assert np.all(cost > 0)
    np.testing.assert_allclose(np.asarray(paid.hedge_error), np.asarray(free.hedge_error),
                               rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.asarray(paid.pnl), np.asarray(free.pnl) - cost,
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(paid.n_trades), np.asarray(free.n_trades))
    ref = reference_hedge(paths, T, CALL_LEG, VOL, R, Q, delta_policy, per_trade)
    np.testing.assert_allclose(cost, ref["cost"], rtol=1e-10, atol=1e-12)


def test_fixed_fee_is_per_trade():
    key = jax.random.key(3)
    grid = hj.TimeGrid(1.0, N_STEPS)
    call = hj.EuropeanCall(100.0, 1.0)
    # r = 0: nothing accrues, the fee is exactly 50 per trade. A band makes n_trades vary.
    res = hj.hedge(hj.BlackScholes(100.0, 0.2), call, hj.BandHedge(0.05), hj.Fixed(50.0),
                   grid, 512, key)
    n = np.asarray(res.n_trades)
    assert n.min() < n.max()  # the check covers different trade counts
    np.testing.assert_allclose(np.asarray(res.cost), 50.0 * n, rtol=1e-6)
    # r > 0: each fee accrues from its trade time to T: 50 n <= cost <= 50 n e^{rT}.
    r = 0.05
    res = hj.hedge(hj.BlackScholes(100.0, 0.2, rate=r), call, hj.BandHedge(0.05),
                   hj.Fixed(50.0), grid, 512, key)
    n = np.asarray(res.n_trades)
    cost = np.asarray(res.cost)
    assert np.all(cost >= 50.0 * n * (1 - 1e-6))
    assert np.all(cost <= 50.0 * n * math.exp(r * 1.0) * (1 + 1e-6))
    assert np.all(cost > 50.0 * n * (1 + 1e-4))  # something did accrue (r > 0)


def test_fixed_fee_accrual_exact_when_trading_every_step(x64):
    # A delta-hedged straddle with q > 0 trades at every step (see STRADDLE_LEGS), so the
    # fee accrued to T is exactly 50 sum_i e^{r (T - t_i)} on every path.
    model, grid, key, paths = _setup()
    res = hj.hedge(model, _straddle(), hj.DeltaHedge(every=1), hj.Fixed(50.0), grid,
                   N_PATHS, key)
    ref = reference_hedge(paths, T, STRADDLE_LEGS, VOL, R, Q, delta_policy,
                          lambda tr, s: 0 * tr)
    assert np.all(np.abs(ref["trades"]) > 1e-6)  # premise: every step trades
    assert np.all(np.asarray(res.n_trades) == N_STEPS)
    t = np.arange(N_STEPS) * (T / N_STEPS)
    np.testing.assert_allclose(np.asarray(res.cost), 50.0 * np.sum(np.exp(R * (T - t))),
                               rtol=1e-12)


def test_proportional_cost_recomputed_and_unwind(x64):
    model, grid, key, paths = _setup()
    call = hj.EuropeanCall(K, T)
    res = hj.hedge(model, call, hj.DeltaHedge(every=1), hj.Proportional(C), grid, N_PATHS,
                   key)
    # c * sum_i |h_i - h_{i-1}| S_i e^{r (T - t_i)} with closed-form deltas, h_{-1} = 0.
    times = np.arange(N_STEPS) * (T / N_STEPS)
    h = -bs_delta(paths[:, :-1], K, T - times, VOL, R, Q)
    trades = np.diff(h, axis=1, prepend=0.0)
    expected = C * np.sum(np.abs(trades) * paths[:, :-1] * np.exp(R * (T - times)), axis=1)
    np.testing.assert_allclose(np.asarray(res.cost), expected, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(res.final_position), h[:, -1], rtol=1e-10,
                               atol=1e-14)

    # unwind=True: sell the final position at S_T, pay c |h| S_T (already time-T money).
    unw = hj.hedge(model, call, hj.DeltaHedge(every=1), hj.Proportional(C), grid, N_PATHS,
                   key, unwind=True)
    unwind_cost = C * np.abs(h[:, -1]) * paths[:, -1]
    traded = np.abs(h[:, -1]) > TRADE_EPS
    assert traded.mean() > 0.5
    np.testing.assert_allclose(np.asarray(unw.cost), expected + unwind_cost, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(unw.pnl), np.asarray(res.pnl) - unwind_cost,
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(unw.hedge_error), np.asarray(res.hedge_error),
                               rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(np.asarray(unw.n_trades), np.asarray(res.n_trades) + traded)
    np.testing.assert_allclose(np.asarray(unw.final_position),
                               np.asarray(res.final_position), rtol=1e-13)


# ---------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------

def test_zero_band_is_delta_hedging(x64):
    model, grid, key, _ = _setup()
    call = hj.EuropeanCall(K, T)
    band = hj.hedge(model, call, hj.BandHedge(0.0), hj.Proportional(C), grid, N_PATHS, key)
    delta = hj.hedge(model, call, hj.DeltaHedge(every=1), hj.Proportional(C), grid, N_PATHS,
                     key)
    for name in ("pnl", "hedge_error", "cost", "final_position"):
        np.testing.assert_allclose(np.asarray(getattr(band, name)),
                                   np.asarray(getattr(delta, name)), rtol=1e-13, atol=1e-13,
                                   err_msg=name)
    np.testing.assert_array_equal(np.asarray(band.n_trades), np.asarray(delta.n_trades))


def test_wider_band_trades_less_and_costs_less():
    model = hj.BlackScholes(100.0, 0.2)
    grid = hj.TimeGrid(0.25, 63)
    call = hj.EuropeanCall(100.0, 0.25)
    key = jax.random.key(8)
    trades, costs, stds = [], [], []
    for w in (0.0, 0.02, 0.05, 0.1, 0.2):
        res = hj.hedge(model, call, hj.BandHedge(w), hj.Proportional(0.002), grid, 1024, key)
        trades.append(float(np.mean(np.asarray(res.n_trades))))
        costs.append(float(np.mean(np.asarray(res.cost))))
        stds.append(float(np.std(np.asarray(res.hedge_error))))
    assert np.all(np.diff(trades) < 0), trades
    assert np.all(np.diff(costs) < 0), costs
    # ... at the price of a larger hedging error.
    assert stds[-1] > stds[0], stds


# A straddle with a dividend yield: its delta e^{-q tau} (2 N(d1) - 1) keeps moving (by about
# q dt even deep in or out of the money), so every rebalance is a real trade.
STRADDLE_LEGS = [(1.0, K, T, 1.0), (-1.0, K, T, 1.0)]


def _straddle():
    return hj.Book([hj.EuropeanCall(K, T), hj.EuropeanPut(K, T)])


@pytest.mark.parametrize("every", [3, 7])
def test_delta_hedge_every_k_trades_ceil_n_over_k(x64, every):
    model, grid, key, paths = _setup()
    res = hj.hedge(model, _straddle(), hj.DeltaHedge(every=every), hj.Proportional(C), grid,
                   N_PATHS, key)
    ref = reference_hedge(paths, T, STRADDLE_LEGS, VOL, R, Q, every_policy(every),
                          proportional(C))
    rebalances = ref["trades"][:, ::every]
    assert np.all(np.abs(rebalances) > 1e-6)  # premise: every rebalance trades
    held = np.delete(ref["trades"], np.s_[::every], axis=1)
    assert np.all(held == 0.0)
    assert np.all(np.asarray(res.n_trades) == math.ceil(N_STEPS / every))
    np.testing.assert_allclose(np.asarray(res.pnl), ref["pnl"], rtol=1e-9, atol=1e-9)


def test_delta_hedge_every_n_steps_is_static_hedge(x64):
    model, grid, key, _ = _setup()
    call = hj.EuropeanCall(K, T)
    once = hj.hedge(model, call, hj.DeltaHedge(every=N_STEPS), hj.Proportional(C), grid,
                    N_PATHS, key)
    static = hj.hedge(model, call, hj.StaticHedge(), hj.Proportional(C), grid, N_PATHS, key)
    np.testing.assert_allclose(np.asarray(once.pnl), np.asarray(static.pnl), rtol=1e-13,
                               atol=1e-13)
    assert np.all(np.asarray(once.n_trades) == 1)


def test_whalley_wilmott_between_static_and_delta():
    model = hj.BlackScholes(100.0, 0.2, rate=0.02)
    grid = hj.TimeGrid(0.25, 63)
    call = hj.EuropeanCall(100.0, 0.25)
    key = jax.random.key(9)
    costs = hj.Proportional(0.002)
    means = {}
    for name, strategy in (("static", hj.StaticHedge()), ("delta", hj.DeltaHedge(every=1)),
                           ("ww_low", hj.WhalleyWilmott(0.1)),
                           ("ww_high", hj.WhalleyWilmott(10.0))):
        res = hj.hedge(model, call, strategy, costs, grid, 1024, key)
        for field in ("pnl", "hedge_error", "cost"):
            assert np.all(np.isfinite(np.asarray(getattr(res, field))))
        n = np.asarray(res.n_trades)
        assert np.all((n >= 1) & (n <= 63))
        means[name] = (n.mean(), float(np.mean(np.asarray(res.cost))),
                       float(np.std(np.asarray(res.hedge_error))))
    # Trades and costs strictly between hedging once and hedging every step; more risk
    # aversion means a narrower band: more trades, more cost, less hedging error.
    for i in (0, 1):
        assert means["static"][i] < means["ww_low"][i] < means["ww_high"][i] < means["delta"][i]
    assert means["ww_high"][2] < means["ww_low"][2]


# ---------------------------------------------------------------------------------------
# Books and maturities
# ---------------------------------------------------------------------------------------

def test_book_with_expiry_inside_grid(x64):
    r, vol = 0.03, 0.2
    model = hj.BlackScholes(100.0, vol, rate=r)
    grid = hj.TimeGrid(1.0, 252)
    key = jax.random.key(12)
    n_paths = 1024
    legs = [(1.0, 100.0, 1.0, 1.0), (-1.0, 95.0, 0.5, -2.0)]
    book = hj.Book([hj.EuropeanCall(100.0, 1.0), hj.EuropeanPut(95.0, 0.5)],
                   quantities=[1.0, -2.0])
    paths = np.asarray(hj.simulate(model, grid, n_paths, key), dtype=float)
    v0 = bs_price(100.0, 100.0, 1.0, vol, r) - 2.0 * bs_price(100.0, 95.0, 0.5, vol, r,
                                                              sign=-1.0)
    # The put pays at t = 0.5 (column 126) and the cash accrues at r to T = 1.
    expected = (np.maximum(paths[:, -1] - 100.0, 0.0)
                - 2.0 * np.maximum(95.0 - paths[:, 126], 0.0) * math.exp(r * 0.5)
                - v0 * math.exp(r))

    unhedged = hj.hedge(model, book, hj.NoHedge(), None, grid, n_paths, key)
    np.testing.assert_allclose(float(unhedged.initial_price), v0, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(unhedged.unhedged_pnl), expected, rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(np.asarray(unhedged.pnl), expected, rtol=1e-10, atol=1e-10)

    res = hj.hedge(model, book, hj.DeltaHedge(every=1), None, grid, n_paths, key)
    np.testing.assert_allclose(np.asarray(res.unhedged_pnl), expected, rtol=1e-10,
                               atol=1e-10)
    # After t = 0.5 the put is gone: the hedge follows the call's delta alone.
    ref = reference_hedge(paths, 1.0, legs, vol, r, 0.0, delta_policy, lambda tr, s: 0 * tr)
    np.testing.assert_allclose(np.asarray(res.hedge_error), ref["hedge_error"], rtol=1e-9,
                               atol=1e-9)
    assert hj.summary(res)["hedge_effectiveness"] > 0.99


def test_instrument_maturing_after_grid_is_valued_at_model_price(x64):
    r, q, vol = 0.04, 0.01, 0.25
    model = hj.BlackScholes(100.0, vol, rate=r, div=q)
    grid = hj.TimeGrid(1.0, N_STEPS)
    key = jax.random.key(13)
    paths = np.asarray(hj.simulate(model, grid, N_PATHS, key), dtype=float)
    res = hj.hedge(model, hj.EuropeanCall(110.0, 2.0), hj.DeltaHedge(every=1), None, grid,
                   N_PATHS, key)
    v0 = bs_price(100.0, 110.0, 2.0, vol, r, q)
    expected = bs_price(paths[:, -1], 110.0, 1.0, vol, r, q) - v0 * math.exp(r)
    np.testing.assert_allclose(float(res.initial_price), v0, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(res.unhedged_pnl), expected, rtol=1e-10,
                               atol=1e-10)
    ref = reference_hedge(paths, 1.0, [(1.0, 110.0, 2.0, 1.0)], vol, r, q, delta_policy,
                          lambda tr, s: 0 * tr)
    np.testing.assert_allclose(np.asarray(res.hedge_error), ref["hedge_error"], rtol=1e-9,
                               atol=1e-9)


# ---------------------------------------------------------------------------------------
# Model risk: hedge_model != model
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("world_vol, hedger_vol", [(0.3, 0.2), (0.2, 0.3)])
def test_hedge_model_differs_from_world(world_vol, hedger_vol):
    # V0 is the hedger's price. In a risk-neutral world the financed share gains of any
    # adapted strategy have zero mean and E[payoff] = e^{rT} C(world vol), so exactly
    #   E[hedge_error] = e^{rT} (C(world vol) - C(hedger vol)),
    # which is the expected gamma P&L  E int 1/2 Gamma_imp S^2 (s_real^2 - s_imp^2) dt:
    # a long call bought at too low a vol gains, at too high a vol loses.
    r, n_paths = 0.03, 2**13
    world = hj.BlackScholes(100.0, world_vol, rate=r)
    hedger = hj.BlackScholes(100.0, hedger_vol, rate=r)
    res = hj.hedge(world, hj.EuropeanCall(100.0, 1.0), hj.DeltaHedge(every=1), None,
                   hj.TimeGrid(1.0, 52), n_paths, jax.random.key(5), hedge_model=hedger)
    np.testing.assert_allclose(float(res.initial_price),
                               bs_price(100.0, 100.0, 1.0, hedger_vol, r), rtol=1e-5)
    he = np.asarray(res.hedge_error, dtype=float)
    se = he.std(ddof=1) / math.sqrt(n_paths)
    expected = math.exp(r) * (bs_price(100.0, 100.0, 1.0, world_vol, r)
                              - bs_price(100.0, 100.0, 1.0, hedger_vol, r))
    assert abs(he.mean() - expected) < 4 * se
    assert np.sign(he.mean()) == np.sign(world_vol - hedger_vol)
    assert abs(he.mean()) > 50 * se
    # Hedging with the wrong vol still removes most of the variance.
    assert np.var(he) < 0.05 * np.var(np.asarray(res.unhedged_pnl, dtype=float))


def test_hedge_model_drives_prices_and_deltas(x64):
    # The world (vol 0.35, real-world drift) moves the paths; V0 and the deltas are the
    # hedger's (vol 0.2): the re-implementation, run with the hedger's vol on the world's
    # paths, must agree path by path.
    world = hj.BlackScholes(S0, 0.35, rate=R, div=Q, drift=MU)
    hedger = hj.BlackScholes(S0, VOL, rate=R, div=Q)
    grid = hj.TimeGrid(T, N_STEPS)
    key = jax.random.key(21)
    paths = np.asarray(hj.simulate(world, grid, N_PATHS, key), dtype=float)
    res = hj.hedge(world, hj.EuropeanCall(K, T), hj.DeltaHedge(every=1), hj.Proportional(C),
                   grid, N_PATHS, key, hedge_model=hedger)
    ref = reference_hedge(paths, T, CALL_LEG, VOL, R, Q, delta_policy, proportional(C))
    assert_matches(res, ref)


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------

class _WorldWithoutPrice(hj.BlackScholes):
    """Black-Scholes dynamics under a type that has no registered pricer."""


def _args():
    return dict(model=hj.BlackScholes(100.0, 0.2), book=hj.EuropeanCall(100.0, 1.0),
                strategy=hj.DeltaHedge(), costs=None, grid=hj.TimeGrid(1.0, 4), n_paths=8,
                key=jax.random.key(0))


def test_hedge_model_that_cannot_price_raises():
    args = _args()
    with pytest.raises(ValueError, match="hedge_model"):
        hj.hedge(**{**args, "model": _WorldWithoutPrice(100.0, 0.2)})
    with pytest.raises(ValueError, match="hedge_model"):
        hj.hedge(**args, hedge_model=_WorldWithoutPrice(100.0, 0.2))
    # A world without prices works when the hedger has one.
    res = hj.hedge(**{**args, "model": _WorldWithoutPrice(100.0, 0.2)},
                   hedge_model=hj.BlackScholes(100.0, 0.2))
    assert np.all(np.isfinite(np.asarray(res.pnl)))


def test_non_finite_results_raise():
    args = _args()
    # exp(1e4 * dt) overflows: S_T is infinite.
    with pytest.raises((ValueError, RuntimeError), match="non-finite"):
        res = hj.hedge(**{**args, "model": hj.BlackScholes(100.0, 0.2, drift=1e4)})
        jax.block_until_ready(res.pnl)


@pytest.mark.parametrize("n_paths", [0, -3, 2.5, True, "8"])
def test_bad_n_paths_raises(n_paths):
    with pytest.raises(ValueError, match="n_paths"):
        hj.hedge(**{**_args(), "n_paths": n_paths})


@pytest.mark.parametrize(
    "name, value",
    [("model", "black-scholes"), ("strategy", "delta"), ("strategy", hj.Proportional),
     ("costs", 0.001), ("grid", 252)],
)
def test_wrong_types_raise(name, value):
    with pytest.raises(ValueError, match=name):
        hj.hedge(**{**_args(), name: value})


@pytest.mark.parametrize("value", ["call", 100.0, None])
def test_wrong_book_type_raises(value):
    # The message names what is expected (an instrument) rather than the argument `book`.
    with pytest.raises(ValueError, match="book"):
        hj.hedge(**{**_args(), "book": value})


def test_wrong_hedge_model_type_raises():
    with pytest.raises(ValueError, match="hedge_model"):
        hj.hedge(**_args(), hedge_model="black-scholes")
