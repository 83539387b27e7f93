"""Tests of the strategy wrappers `Limits`, `ExecutionLag` and `MoveBased`.

Expected values come from a NumPy float64 re-implementation of the hedging conventions
(docs/architecture.md, "Conventions") with closed-form Black-Scholes Greeks, run on the
paths `hj.simulate`
returns (the same paths `hedge()` sees for the same model, grid and key), from exact
identities with the unwrapped strategies, and from Monte Carlo orderings with fixed seeds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ndtr

import hedgejax as hj

S0, K, T, VOL, R, Q, MU = 100.0, 105.0, 0.5, 0.25, 0.05, 0.02, 0.11
N_STEPS, N_PATHS = 20, 128
C = 0.002  # proportional cost rate
K2, T2 = 100.0, 0.75  # the listed option of the option-trading test strategy
TRADE_EPS = 1e-9


# ---------------------------------------------------------------------------------------
# NumPy reference
# ---------------------------------------------------------------------------------------

def bs_price(spot, strike, tau, vol=VOL, rate=R, div=Q):
    spot = np.asarray(spot, dtype=float)
    if tau <= 0:
        return np.maximum(spot - strike, 0.0)
    sd = vol * np.sqrt(tau)
    d1 = (np.log(spot / strike) + (rate - div) * tau) / sd + 0.5 * sd
    return spot * np.exp(-div * tau) * ndtr(d1) - strike * np.exp(-rate * tau) * ndtr(d1 - sd)


def bs_delta(spot, strike, tau, vol=VOL, rate=R, div=Q):
    sd = vol * np.sqrt(tau)
    d1 = (np.log(spot / strike) + (rate - div) * tau) / sd + 0.5 * sd
    return np.exp(-div * tau) * ndtr(d1)


def reference(paths, policy, c=C):
    """Hedge one long call (K, T) along `paths`. Positions are (shares, option units);
    policy(i, obs, held) -> the position held over [t_i, t_{i+1}), obs a dict with spot,
    delta (the book's) and option_delta (per unit of the listed call (K2, T2))."""
    n_paths, n = paths.shape[0], paths.shape[1] - 1
    dt = T / n
    held = (np.zeros(n_paths), np.zeros(n_paths))
    gains, cost = np.zeros(n_paths), np.zeros(n_paths)
    n_trades = np.zeros(n_paths, dtype=int)
    trades = []
    for i in range(n):
        t, spot, nxt = i * dt, paths[:, i], paths[:, i + 1]
        obs = dict(spot=spot, delta=bs_delta(spot, K, T - t),
                   option_delta=bs_delta(spot, K2, T2 - t))
        shares, units = policy(i, obs, held)
        trade = shares - held[0]
        trades.append(trade)
        cost += c * np.abs(trade) * spot * np.exp(R * (T - t))
        n_trades += (np.abs(trade) > TRADE_EPS).astype(int)
        n_trades += (np.abs(units - held[1]) > TRADE_EPS).astype(int)
        to_end = np.exp(R * (T - t - dt))
        gains += shares * (nxt * np.exp(Q * dt) - spot * np.exp(R * dt)) * to_end
        gains += units * (bs_price(nxt, K2, T2 - t - dt)
                          - bs_price(spot, K2, T2 - t) * np.exp(R * dt)) * to_end
        held = (shares, units)
    hedge_error = (np.maximum(paths[:, -1] - K, 0.0) - bs_price(S0, K, T) * np.exp(R * T)
                   + gains)
    return dict(pnl=hedge_error - cost, hedge_error=hedge_error, cost=cost, n_trades=n_trades,
                final_position=held[0], trades=np.array(trades).T)


def assert_matches(res, ref, tol=1e-9):
    for name in ("pnl", "hedge_error", "cost", "final_position"):
        np.testing.assert_allclose(np.asarray(getattr(res, name)), ref[name], rtol=tol,
                                   atol=tol, err_msg=name)
    np.testing.assert_array_equal(np.asarray(res.n_trades), ref["n_trades"])


def assert_identical(a, b):
    for name in ("pnl", "hedge_error", "cost", "final_position", "n_trades"):
        np.testing.assert_array_equal(np.asarray(getattr(a, name)),
                                      np.asarray(getattr(b, name)), err_msg=name)


# Reference policies: functions of (i, obs, held) returning (shares, units).

def delta_ref(i, obs, held):
    return -obs["delta"], np.zeros_like(obs["delta"])


def band_ref(width):
    def policy(i, obs, held):
        return np.clip(held[0], -obs["delta"] - width, -obs["delta"] + width), held[1]
    return policy


def option_ref(units):
    def policy(i, obs, held):
        u = np.full_like(obs["delta"], units)
        return -(obs["delta"] + u * obs["option_delta"]), u
    return policy


def every_other_ref(i, obs, held):
    return (-obs["delta"], held[1]) if i % 2 == 0 else held


def limits_ref(inner, max_position=np.inf, max_trade=np.inf):
    def policy(i, obs, held):
        shares, units = inner(i, obs, held)
        shares = np.clip(shares, -max_position, max_position)
        return np.clip(shares, held[0] - max_trade, held[0] + max_trade), units
    return policy


def lag_ref(inner, steps):
    decided = []

    def policy(i, obs, held):
        zero = np.zeros_like(obs["delta"])
        latest = decided[-1] if decided else (zero, zero)
        decided.append(inner(i, obs, latest))
        return decided[i - steps] if i >= steps else (zero, zero)
    return policy


def move_ref(threshold, inner=delta_ref):
    last = {}

    def policy(i, obs, held):
        spot = obs["spot"]
        go = np.ones_like(spot, dtype=bool) if i == 0 else (
            np.abs(spot / last["spot"] - 1.0) >= threshold)
        shares, units = inner(i, obs, held)
        last["spot"] = np.where(go, spot, last.get("spot", spot))
        return np.where(go, shares, held[0]), np.where(go, units, held[1])
    return policy


# Test strategies of hedgejax's protocol, written here.

class OptionDelta(hj.AbstractStrategy):
    """Holds `units` of a listed call (K2, T2) and delta-hedges book and option in shares."""

    units: float = 0.5

    @property
    def option(self):
        return hj.EuropeanCall(K2, T2)

    def __call__(self, obs, position):
        units = jnp.full_like(obs.delta, self.units)
        return -(obs.delta + units * obs.option_delta), units


class EveryOther(hj.AbstractStrategy):
    """Stateful: delta-hedges on its own even-numbered calls (a per-path call counter)."""

    def __call__(self, obs, position):
        raise TypeError("stateful")

    def init_state(self, position):
        return jnp.zeros(position.shape, jnp.int32)

    def decide(self, obs, position, state):
        return jnp.where(state % 2 == 0, -obs.delta, position), state + 1


def _setup():
    model = hj.BlackScholes(S0, VOL, rate=R, div=Q, drift=MU)
    grid = hj.TimeGrid(T, N_STEPS)
    key = jax.random.key(20240611)
    paths = np.asarray(hj.simulate(model, grid, N_PATHS, key), dtype=float)
    return model, grid, key, paths


def _hedge(model, grid, key, strategy):
    return hj.hedge(model, hj.EuropeanCall(K, T), strategy, hj.Proportional(C), grid,
                    N_PATHS, key)


# ---------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------

def test_limits_matches_numpy_and_respects_caps(x64):
    model, grid, key, paths = _setup()
    max_position, max_trade = 0.6, 0.05
    res = _hedge(model, grid, key, hj.Limits(hj.DeltaHedge(), max_position=max_position,
                                             max_trade=max_trade))
    ref = reference(paths, limits_ref(delta_ref, max_position, max_trade))
    assert_matches(res, ref)
    trades = ref["trades"]
    positions = np.cumsum(trades, axis=1)
    assert np.all(np.abs(trades) <= max_trade + 1e-12)
    assert np.all(np.abs(positions) <= max_position + 1e-12)
    # Premise: both limits bind somewhere (the call's delta starts near 0.45 and ends near
    # 0 or 1), and some steps are unconstrained.
    assert np.any(np.abs(np.abs(trades) - max_trade) < 1e-12)
    assert np.any(np.abs(np.abs(positions) - max_position) < 1e-12)
    assert np.any(np.abs(trades) < 0.5 * max_trade)
    assert np.all(np.abs(np.asarray(res.final_position)) <= max_position + 1e-12)


def test_limits_that_never_bind_are_the_inner_strategy_bit_for_bit(x64):
    model, grid, key, _ = _setup()
    limits = hj.Limits(hj.DeltaHedge(), max_position=1e9, max_trade=1e9)
    assert_identical(_hedge(model, grid, key, limits), _hedge(model, grid, key, hj.DeltaHedge()))


def test_limits_with_option_and_stateful_inner(x64):
    # Only the shares are limited; the option units pass through. A stateful inner
    # strategy keeps its state through the wrapper.
    model, grid, key, paths = _setup()
    res = _hedge(model, grid, key, hj.Limits(OptionDelta(0.5), max_trade=0.1))
    ref = reference(paths, limits_ref(option_ref(0.5), max_trade=0.1))
    assert_matches(res, ref)
    assert np.any(np.abs(np.abs(ref["trades"]) - 0.1) < 1e-12)  # premise: the cap binds

    res = _hedge(model, grid, key, hj.Limits(EveryOther(), max_position=0.5))
    ref = reference(paths, limits_ref(every_other_ref, max_position=0.5))
    assert_matches(res, ref)
    assert np.any(np.asarray(res.n_trades) < N_STEPS // 2)  # premise: the cap binds


def test_limits_call_and_forwarding():
    inner = OptionDelta(0.5)
    limits = hj.Limits(inner, max_position=0.2)
    assert limits.option == inner.option and limits.option_costs is None
    obs = hj.Observation(step=jnp.asarray(3), time=jnp.asarray(0.1),
                         time_to_maturity=jnp.asarray(0.4), spot=jnp.full(3, 100.0),
                         delta=jnp.asarray([0.1, 0.5, -0.9]), gamma=jnp.zeros(3),
                         cost_rate=jnp.zeros(3), rate=jnp.asarray(0.0),
                         option_delta=jnp.asarray([0.0, 0.0, 0.0]))
    shares, units = limits(obs, (jnp.zeros(3), jnp.zeros(3)))
    np.testing.assert_allclose(np.asarray(shares), [-0.1, -0.2, 0.2])
    np.testing.assert_allclose(np.asarray(units), [0.5, 0.5, 0.5])
    with pytest.raises(TypeError, match="stateful"):
        hj.Limits(EveryOther(), max_trade=1.0)(obs, jnp.zeros(3))


# ---------------------------------------------------------------------------------------
# ExecutionLag
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "make_inner, inner_ref, steps",
    [
        (lambda: hj.DeltaHedge(), delta_ref, 1),
        (lambda: hj.BandHedge(0.05), band_ref(0.05), 3),
        (lambda: OptionDelta(0.5), option_ref(0.5), 2),
        (lambda: EveryOther(), every_other_ref, 1),
    ],
    ids=["delta_1", "band_3", "option_2", "stateful_1"],
)
def test_execution_lag_matches_numpy(x64, make_inner, inner_ref, steps):
    # The inner strategy sees its own latest decision (the band is computed around it, not
    # around the lagged fill); the fill at step i is the decision of step i - steps.
    model, grid, key, paths = _setup()
    res = _hedge(model, grid, key, hj.ExecutionLag(make_inner(), steps))
    ref = reference(paths, lag_ref(inner_ref, steps))
    assert_matches(res, ref)
    assert np.all(ref["trades"][:, :steps] == 0.0)  # nothing filled before step `steps`
    # Orders pending at the end are never filled: the last position is a decision made
    # `steps` steps before the last one (the reference checks it exactly).
    assert np.any(np.abs(ref["trades"][:, -1]) > 1e-6)


def test_execution_lag_increases_hedge_error(x64):
    # Delta hedging with a lag of k steps misses sum_i (Delta_{i-k} - Delta_i) dS_i on top
    # of the discrete-hedging error, an extra error that grows with k. On this grid the std
    # ratios measured over six seeds were 1.9-2.3 (lag 1 against none) and 1.4-1.7 (lag 3
    # against lag 1); this seed gives 1.86 and 1.69.
    model, grid, key, _ = _setup()
    stds = [float(np.std(np.asarray(_hedge(model, grid, key, strategy).hedge_error)))
            for strategy in (hj.DeltaHedge(), hj.ExecutionLag(hj.DeltaHedge(), 1),
                             hj.ExecutionLag(hj.DeltaHedge(), 3))]
    assert stds[0] * 1.5 < stds[1] and stds[1] * 1.2 < stds[2], stds


# ---------------------------------------------------------------------------------------
# MoveBased
# ---------------------------------------------------------------------------------------

def test_move_based_limits_are_delta_and_static_hedging(x64):
    model, grid, key, paths = _setup()
    assert_identical(_hedge(model, grid, key, hj.MoveBased(1e-12)),
                     _hedge(model, grid, key, hj.DeltaHedge(every=1)))
    static = _hedge(model, grid, key, hj.MoveBased(1e6))
    assert_matches(static, reference(paths, lambda i, obs, held: (
        delta_ref(i, obs, held) if i == 0 else held)))
    assert np.all(np.asarray(static.n_trades) == 1)


@pytest.mark.parametrize(
    "make, policy",
    [
        (lambda: hj.MoveBased(0.03), move_ref(0.03)),
        (lambda: hj.MoveBased(0.02, hj.BandHedge(0.02)), move_ref(0.02, band_ref(0.02))),
        (lambda: hj.Limits(hj.MoveBased(0.02), max_trade=0.1),
         limits_ref(move_ref(0.02), max_trade=0.1)),
        (lambda: hj.ExecutionLag(hj.MoveBased(0.03), 1), lag_ref(move_ref(0.03), 1)),
        (lambda: hj.MoveBased(0.03, OptionDelta(0.5)), move_ref(0.03, option_ref(0.5))),
    ],
    ids=["delta", "band", "limits_of_move", "lag_of_move", "option"],
)
def test_move_based_matches_numpy(x64, make, policy):
    model, grid, key, paths = _setup()
    res = _hedge(model, grid, key, make())
    ref = reference(paths, policy)
    assert_matches(res, ref)
    n = ref["n_trades"]
    assert np.any(n > 2) and np.any(n < N_STEPS - 2)  # premise: it trades, and it holds


def test_move_based_stateful_inner_advances_only_at_rebalances(x64):
    # EveryOther counts its own calls: inside MoveBased it is consulted only at rebalances,
    # so it delta-hedges at every other *rebalance*.
    model, grid, key, paths = _setup()
    memory = {}

    def policy(i, obs, held):
        spot = obs["spot"]
        if i == 0:
            memory.update(last=spot, count=np.zeros(spot.shape, dtype=int))
            go = np.ones(spot.shape, dtype=bool)
        else:
            go = np.abs(spot / memory["last"] - 1.0) >= 0.02
        inner = np.where(memory["count"] % 2 == 0, -obs["delta"], held[0])
        memory["count"] = memory["count"] + go
        memory["last"] = np.where(go, spot, memory["last"])
        return np.where(go, inner, held[0]), held[1]

    res = _hedge(model, grid, key, hj.MoveBased(0.02, EveryOther()))
    ref = reference(paths, policy)
    assert_matches(res, ref)
    assert np.any(ref["n_trades"] > 2)


def test_move_based_trades_fall_with_threshold(x64):
    model, grid, key, _ = _setup()
    trades, costs, stds = [], [], []
    for threshold in (0.005, 0.01, 0.03, 0.1):
        res = _hedge(model, grid, key, hj.MoveBased(threshold))
        trades.append(float(np.mean(np.asarray(res.n_trades))))
        costs.append(float(np.mean(np.asarray(res.cost))))
        stds.append(float(np.std(np.asarray(res.hedge_error))))
    assert np.all(np.diff(trades) < 0), trades
    assert np.all(np.diff(costs) < 0), costs
    assert stds[-1] > stds[0], stds


# ---------------------------------------------------------------------------------------
# Validation, stateless calls, transformations
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: hj.Limits(hj.DeltaHedge()), "max_position"),
        (lambda: hj.Limits(hj.DeltaHedge(), max_position=0.0), "max_position"),
        (lambda: hj.Limits(hj.DeltaHedge(), max_position=-1.0), "max_position"),
        (lambda: hj.Limits(hj.DeltaHedge(), max_trade=0.0), "max_trade"),
        (lambda: hj.Limits(hj.DeltaHedge(), max_trade=float("nan")), "max_trade"),
        (lambda: hj.Limits(hj.DeltaHedge(), max_position=1.0, max_trade=float("inf")),
         "max_trade"),
        (lambda: hj.Limits("delta", max_trade=1.0), "strategy"),
        (lambda: hj.ExecutionLag(hj.DeltaHedge(), 0), "steps"),
        (lambda: hj.ExecutionLag(hj.DeltaHedge(), 1.5), "steps"),
        (lambda: hj.ExecutionLag(hj.DeltaHedge(), True), "steps"),
        (lambda: hj.ExecutionLag(None), "strategy"),
        (lambda: hj.MoveBased(0.0), "threshold"),
        (lambda: hj.MoveBased(-0.01), "threshold"),
        (lambda: hj.MoveBased(float("nan")), "threshold"),
        (lambda: hj.MoveBased(0.01, strategy=0.5), "strategy"),
    ],
)
def test_bad_parameters_raise(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_bad_limits_name_the_allowed_range():
    with pytest.raises(ValueError, match=r"max_trade must be finite and > 0, got max_trade="):
        hj.Limits(hj.DeltaHedge(), max_trade=-0.5)
    with pytest.raises(ValueError, match=r"steps must be an integer >= 1"):
        hj.ExecutionLag(hj.DeltaHedge(), steps=-2)


def test_stateful_wrappers_refuse_stateless_calls():
    obs = hj.Observation(step=jnp.asarray(0), time=jnp.asarray(0.0),
                         time_to_maturity=jnp.asarray(1.0), spot=jnp.full(2, 100.0),
                         delta=jnp.full(2, 0.5), gamma=jnp.zeros(2), cost_rate=jnp.zeros(2),
                         rate=jnp.asarray(0.0))
    for strategy in (hj.ExecutionLag(hj.DeltaHedge()), hj.MoveBased(0.01),
                     hj.Limits(hj.MoveBased(0.01), max_trade=1.0)):
        with pytest.raises(TypeError, match="keeps state"):
            strategy(obs, jnp.zeros(2))
    lag = hj.ExecutionLag(OptionDelta(), 2)
    assert lag.option == OptionDelta().option and lag.option_costs is None
    assert hj.MoveBased(0.01, OptionDelta()).option == OptionDelta().option


def test_jit_vmap_grad_pass_through(x64):
    model, grid, key, _ = _setup()

    def mean_pnl(max_trade, threshold=0.02):
        strategy = hj.Limits(hj.MoveBased(threshold), max_trade=max_trade)
        return jnp.mean(_hedge(model, grid, key, strategy).pnl)

    # Per path, P&L is piecewise smooth in max_trade (a clip): the mean of the pathwise
    # derivative is the derivative of the mean away from kinks; with h = 1e-6 few paths
    # cross one, so a central difference agrees to ~1e-3. The threshold's trigger is a
    # comparison: no gradient flows to it.
    g_trade, g_threshold = jax.grad(mean_pnl, argnums=(0, 1))(jnp.asarray(0.1),
                                                               jnp.asarray(0.02))
    fd = (float(mean_pnl(0.1 + 1e-6)) - float(mean_pnl(0.1 - 1e-6))) / 2e-6
    assert np.isfinite(float(g_trade)) and abs(float(g_trade)) > 1e-3
    np.testing.assert_allclose(float(g_trade), fd, rtol=1e-3)
    assert float(g_threshold) == 0.0
    values = jax.vmap(mean_pnl)(jnp.asarray([0.1, 0.3]))
    np.testing.assert_allclose(np.asarray(values),
                               [float(mean_pnl(0.1)), float(mean_pnl(0.3))], atol=1e-13)
