"""`hedge(..., record=k)` (the Trace of the first k paths) and strategies trading several
listed options: checked against quantities recomputed here from the recorded paths with
numpy/scipy Black-Scholes formulas, not against hedge()'s own earlier output."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

import hedgejax as hj

S0, VOL, R = 100.0, 0.2, 0.03
GRID = hj.TimeGrid(0.25, 10)


def bs_call(s, k, tau, vol=VOL, r=R):
    tau = np.maximum(tau, 1e-300)
    d1 = (np.log(s / k) + (r + vol**2 / 2) * tau) / (vol * np.sqrt(tau))
    return s * norm.cdf(d1) - k * np.exp(-r * tau) * norm.cdf(d1 - vol * np.sqrt(tau))


def bs_put(s, k, tau):
    return bs_call(s, k, tau) - s + k * np.exp(-R * tau)


def bs_delta(s, k, tau):
    d1 = (np.log(s / k) + (R + VOL**2 / 2) * tau) / (VOL * np.sqrt(tau))
    return norm.cdf(d1)


def test_trace_of_a_delta_hedge_matches_an_independent_recomputation(x64):
    model = hj.BlackScholes(S0, VOL, rate=R)
    call = hj.EuropeanCall(100.0, 0.25)
    rate = 2e-3
    res = hj.hedge(model, call, hj.DeltaHedge(), hj.Proportional(rate), GRID, 300,
                   jax.random.key(3), record=7)
    tr = res.trace
    n = GRID.n_steps
    assert tr.spot.shape == (7, n + 1) and tr.position.shape == tr.trade.shape == (7, n)
    assert tr.variance is None and tr.option_units is None and tr.path == (None,)
    np.testing.assert_allclose(tr.time, np.arange(n + 1) * GRID.dt, rtol=0, atol=1e-15)
    # the same paths as simulate() and as the main run
    paths = np.asarray(hj.simulate(model, GRID, 300, jax.random.key(3)))[:7]
    np.testing.assert_array_equal(tr.spot, paths)
    np.testing.assert_array_equal(tr.spot[:, -1], res.terminal_spot[:7])
    np.testing.assert_array_equal(tr.position[:, -1], res.final_position[:7])
    # delta hedge of a long call: short N(d1) shares, traded at each step
    tau = 0.25 - tr.time[:-1]
    delta = bs_delta(paths[:, :-1], 100.0, tau)
    np.testing.assert_allclose(tr.delta, delta, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tr.position, -delta, rtol=1e-9, atol=1e-12)
    held = np.concatenate([np.zeros((7, 1)), -delta[:, :-1]], axis=1)
    np.testing.assert_allclose(tr.trade, -delta - held, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tr.cost, rate * np.abs(tr.trade) * paths[:, :-1], rtol=1e-9)
    # the P&L of the recorded paths, rebuilt from the trace
    v0 = bs_call(S0, 100.0, 0.25)
    growth = np.exp(R * GRID.dt)
    to_end = np.exp(R * (0.25 - tr.time[1:]))
    gains = np.sum(tr.position * (paths[:, 1:] - paths[:, :-1] * growth) * to_end, axis=1)
    cost = np.sum(tr.cost * np.exp(R * (0.25 - tr.time[:-1])), axis=1)
    pnl = np.maximum(paths[:, -1] - 100.0, 0.0) - v0 * np.exp(R * 0.25) + gains - cost
    np.testing.assert_allclose(res.pnl[:7], pnl, rtol=1e-9, atol=1e-9)


@pytest.mark.slow  # compile-bound: the fast tier keeps the cheap checks
def test_trace_records_path_state_and_variance():
    heston = hj.Heston(100.0, 0.04, 1.5, 0.04, 0.3, -0.6)
    barrier = hj.Barrier(100.0, 95.0, 0.25, kind="down-and-out")
    res = hj.hedge(heston, barrier, hj.DeltaHedge(), None, GRID, 128, jax.random.key(1),
                   hedge_model=hj.BlackScholes(100.0, 0.2), record=64)
    tr = res.trace
    knocked = np.asarray(tr.path[0]["knocked"])
    assert knocked.shape == (64, GRID.n_steps + 1, 1)
    assert tr.variance.shape == (64, GRID.n_steps + 1) and np.all(tr.variance >= 0)
    # knocked out stays knocked out; a grid spot at or below the barrier is knocked out
    assert np.all(np.diff(knocked[..., 0].astype(int), axis=1) >= 0)
    assert np.all(knocked[..., 0][np.asarray(tr.spot) <= 95.0])
    # the payoff is zero exactly on the knocked paths
    payoff = np.where(knocked[:, -1, 0], 0.0, np.maximum(np.asarray(tr.spot[:, -1]) - 100, 0))
    unhedged = res.unhedged_pnl[:64] + res.initial_price * np.exp(0.0)
    np.testing.assert_allclose(unhedged, payoff, rtol=1e-5, atol=1e-4)


class _TwoOptions(hj.AbstractStrategy):
    """Fixed units of a listed call and a listed put; shares neutralise the delta."""

    units: tuple = (0.5, -0.25)
    one: bool = False

    @property
    def option(self):
        options = (hj.EuropeanCall(100.0, 0.5), hj.EuropeanPut(95.0, 0.5))
        return options[:1] if self.one else options

    @property
    def option_costs(self):
        costs = (hj.Spread(0.01), None)
        return costs[:1] if self.one else costs

    def __call__(self, obs, position):
        k = 1 if self.one else 2
        units = jnp.stack([jnp.full_like(obs.spot, u) for u in self.units[:k]], axis=-1)
        # vary the units with the step so that the options trade
        units = units * (1.0 + 0.1 * obs.step)
        shares = -(obs.delta + jnp.sum(units * obs.option_delta, axis=-1))
        return shares, units


def test_two_listed_options_pnl_and_costs_against_recomputation(x64):
    model = hj.BlackScholes(S0, VOL, rate=R)
    book = hj.EuropeanCall(105.0, 0.25)
    res = hj.hedge(model, book, _TwoOptions(), hj.Proportional(1e-3), GRID, 256,
                   jax.random.key(5), record=5)
    tr = res.trace
    n = GRID.n_steps
    assert tr.option_units.shape == (5, n, 2)
    paths = np.asarray(tr.spot)
    t = np.asarray(tr.time)
    call = bs_call(paths, 100.0, 0.5 - t)
    put = bs_put(paths, 95.0, 0.5 - t)
    units = np.asarray(tr.option_units)
    held = np.concatenate([np.zeros((5, 1, 2)), units[:, :-1]], axis=1)
    du = units - held
    expected_cost = (1e-3 * np.abs(tr.trade) * paths[:, :-1] + 0.01 * np.abs(du[..., 0]))
    np.testing.assert_allclose(tr.cost, expected_cost, rtol=1e-9, atol=1e-12)
    growth = np.exp(R * GRID.dt)
    to_end = np.exp(R * (0.25 - t[1:]))
    gains = (tr.position * (paths[:, 1:] - paths[:, :-1] * growth)
             + units[..., 0] * (call[:, 1:] - call[:, :-1] * growth)
             + units[..., 1] * (put[:, 1:] - put[:, :-1] * growth)) * to_end
    cost = np.sum(tr.cost * np.exp(R * (0.25 - t[:-1])), axis=1)
    v0 = bs_call(S0, 105.0, 0.25)
    pnl = (np.maximum(paths[:, -1] - 105.0, 0) - v0 * np.exp(R * 0.25) + gains.sum(1) - cost)
    np.testing.assert_allclose(res.pnl[:5], pnl, rtol=1e-9, atol=1e-9)
    # every decision trades both options and the shares
    assert np.all(np.asarray(res.n_trades) == 3 * n)


def test_a_tuple_of_one_option_equals_the_single_option_form():
    class Single(_TwoOptions):
        @property
        def option(self):
            return hj.EuropeanCall(100.0, 0.5)

        @property
        def option_costs(self):
            return hj.Spread(0.01)

        def __call__(self, obs, position):
            units = jnp.full_like(obs.spot, 0.5) * (1.0 + 0.1 * obs.step)
            return -(obs.delta + units * obs.option_delta), units

    model = hj.BlackScholes(S0, VOL, rate=R)
    args = (model, hj.EuropeanCall(105.0, 0.25))
    a = hj.hedge(*args, Single(), hj.Proportional(1e-3), GRID, 200, jax.random.key(2))
    b = hj.hedge(*args, _TwoOptions(one=True), hj.Proportional(1e-3), GRID, 200,
                 jax.random.key(2))
    np.testing.assert_array_equal(a.pnl, b.pnl)
    np.testing.assert_array_equal(a.n_trades, b.n_trades)


@pytest.mark.parametrize("option, costs, match", [
    ((), None, "non-empty tuple"),
    ((hj.EuropeanCall(100.0, 0.5),), (None, None), "tuple of 1 costs"),
    ((hj.EuropeanCall(100.0, 0.5), "call"), None, r"strategy.option\[1\] must be an instr"),
    ((hj.Barrier(100.0, 90.0, 0.5),), None, r"strategy.option\[0\] must be a European"),
    ((hj.EuropeanCall(100.0, 0.1),), None, r"option\[0\]'s maturity must be >="),
    ((hj.EuropeanCall(100.0, 0.5),), ("spread",), r"option_costs\[0\] must be an Abstract"),
])
def test_bad_listed_options_are_refused(option, costs, match):
    class Bad(hj.AbstractStrategy):
        @property
        def option(self):
            return option

        @property
        def option_costs(self):
            return costs

        def __call__(self, obs, position):
            return position

    with pytest.raises(ValueError, match=match):
        hj.hedge(hj.BlackScholes(S0, VOL), hj.EuropeanCall(100.0, 0.25), Bad(), None, GRID,
                 64, jax.random.key(0))


@pytest.mark.parametrize("record", [0, -1, 65, 2.5])
def test_bad_record_is_refused(record):
    with pytest.raises(ValueError, match="record"):
        hj.hedge(hj.BlackScholes(S0, VOL), hj.EuropeanCall(100.0, 0.25), hj.DeltaHedge(),
                 None, GRID, 64, jax.random.key(0), record=record)


def test_forward_start_rebuilt_inside_a_trace():
    """ForwardStart's start < maturity check inside a trace (fit's step rebuilds the book):
    concrete against traced fields must not be staged into a boolean."""
    fs = hj.ForwardStart(0.1, 0.25)

    @jax.jit
    def strike_fraction(maturity):
        inst = hj.ForwardStart(0.1, maturity)
        return inst.start / inst.maturity

    assert float(strike_fraction(0.25)) == pytest.approx(0.4)
    eqx_rebuilt = jax.jit(lambda f: f.maturity * 2)(fs)
    assert float(eqx_rebuilt) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="start must be < maturity"):
        hj.ForwardStart(0.3, 0.25)
