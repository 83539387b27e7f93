"""Indifference prices (hedgejax/_indifference.py): a short at-the-money call in a
Black-Scholes world, hedged daily over 20 trading days, against the Black-Scholes price; the
cash-invariant shortcut e^{-rT} (rho(X) - rho(0)) on the same held-out paths, computed here
from `hedge()`; monotone in the proportional cost rate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

import hedgejax as hj
from hedgejax import risk
from hedgejax._indifference import indifference_price

T = 20 / 250
MODEL = hj.BlackScholes(100.0, 0.2)
CALL = hj.EuropeanCall(100.0, T)
GRID = hj.TimeGrid(T, 20)           # daily
EVAL = 2**14                        # held-out paths (one shape: compiled programs are shared)


def _black_scholes_call(s, k, t, vol):
    d1 = (np.log(s / k) + vol**2 * t / 2) / (vol * np.sqrt(t))
    return s * norm.cdf(d1) - k * norm.cdf(d1 - vol * np.sqrt(t))


BS = _black_scholes_call(100.0, 100.0, T, 0.2)      # 2.2565, r = 0


def entropic(x):
    return risk.entropic(x, 1.0)


@pytest.mark.slow  # compile-bound: the fast tier keeps the cheap checks
def test_neural_hedge_price_near_black_scholes():
    """No costs, daily grid, entropic risk (a = 1): the indifference price of the call is its
    Black-Scholes price plus the risk premium of discrete hedging, about a Var(hedge error)
    / 2 = 0.098 measured (2^17 held-out paths, delta hedging and a policy trained 200 steps
    on 2^13 paths agree within 0.0015): stated tolerance 0 < price - BS < 0.15 (6.6% of the
    price), and the few training steps here leave the price within 4 SE of the untrained
    policy's (which is delta hedging) on the same held-out paths."""
    key = jax.random.key(0)
    out = indifference_price(hj.NeuralHedge(jax.random.key(1)), entropic, MODEL, CALL,
                             hj.Proportional(0.0), GRID, key=key, steps=3, n_paths=512,
                             eval_paths=EVAL)
    assert float(out.model_price) == pytest.approx(BS, rel=1e-5)
    assert 4 * float(out.stderr) < float(out.price) - BS < 0.15
    assert out.history.objective.shape == (3,)
    delta = indifference_price(hj.NeuralHedge(jax.random.key(1)), entropic, MODEL, CALL,
                               hj.Proportional(0.0), GRID, key=key, steps=0, eval_paths=EVAL)
    assert abs(float(out.price) - float(delta.price)) < 4 * float(delta.stderr)
    # hedging removes most of the risk of the short call
    assert float(out.unhedged_price) > float(out.price) + 1.0
    assert float(out.risk_unhedged) > float(out.risk_hedged)


def test_cash_invariant_price_is_discounted_risk_difference():
    """With r > 0, a Book sold and DeltaHedge: price = e^{-rT} (rho(X) - rho(0)), X the short
    book's P&L without the premium on the held-out paths (key split(key)[1]), recomputed
    here with hedge(); the OCE of the normalised exponential utility gives the same price."""
    model = hj.BlackScholes(100.0, 0.2, rate=0.05)
    key = jax.random.key(3)
    out = indifference_price(hj.DeltaHedge(), entropic, model, CALL, hj.Proportional(1e-3),
                             GRID, key=key, steps=0, eval_paths=EVAL)
    sold = hj.Book([CALL], [-1.0])
    res = hj.hedge(model, sold, hj.DeltaHedge(), hj.Proportional(1e-3), GRID, EVAL,
                   jax.random.split(key)[1])
    growth = np.exp(0.05 * T)
    x = np.asarray(res.pnl, float) + float(res.initial_price) * growth
    rho_x = np.log(np.mean(np.exp(-x)))
    assert float(out.price) == pytest.approx(rho_x / growth, abs=2e-5 * max(1.0, rho_x))
    assert float(out.risk_hedged) == pytest.approx(rho_x, abs=1e-4)
    assert float(out.risk_zero) == 0.0
    assert float(out.model_price) == pytest.approx(-float(res.initial_price), rel=1e-6)
    via_oce = indifference_price(hj.DeltaHedge(), risk.oce(risk.ExponentialUtility(1.0)),
                                 model, CALL, hj.Proportional(1e-3), GRID, key=key, steps=0,
                                 eval_paths=EVAL)
    assert float(via_oce.price) == pytest.approx(float(out.price), abs=1e-4)


def test_price_rises_with_cost_rate_fixed_policy():
    """The same (untrained) policy on the same paths: each cost rate adds cost on every path,
    so the price rises strictly with the rate; the expected-shortfall price too."""
    key = jax.random.key(4)
    policy = hj.NeuralHedge(jax.random.key(1))
    for measure in (entropic, lambda x: risk.expected_shortfall(x, 0.9)):
        prices = [float(indifference_price(policy, measure, MODEL, CALL, hj.Proportional(rate),
                                           GRID, key=key, steps=0, eval_paths=EVAL).price)
                  for rate in (0.0, 1e-3, 5e-3)]
        assert prices[0] < prices[1] < prices[2]


def test_bad_arguments_raise():
    variance = risk.variance
    with pytest.raises(ValueError, match="cash"):
        indifference_price(hj.DeltaHedge(), variance, MODEL, CALL, hj.Proportional(1e-3), GRID,
                           key=jax.random.key(0), steps=0, eval_paths=EVAL)
    with pytest.raises(ValueError, match="eval_paths"):
        indifference_price(hj.DeltaHedge(), entropic, MODEL, CALL, None, GRID,
                           key=jax.random.key(0), steps=0, eval_paths=30)
    with pytest.raises(ValueError, match="steps"):
        indifference_price(hj.DeltaHedge(), entropic, MODEL, CALL, None, GRID,
                           key=jax.random.key(0), steps=-1)
    with pytest.raises(ValueError, match="learning_rate"):
        indifference_price(hj.DeltaHedge(), entropic, MODEL, CALL, None, GRID,
                           key=jax.random.key(0), learning_rate=0.0)
    with pytest.raises(ValueError, match="risk_measure"):
        indifference_price(hj.DeltaHedge(), 1.0, MODEL, CALL, None, GRID,
                           key=jax.random.key(0), steps=0)
    with pytest.raises(ValueError, match="strategy"):
        indifference_price("delta", entropic, MODEL, CALL, None, GRID, key=jax.random.key(0))


@pytest.mark.slow
def test_trained_price_rises_with_cost_rate():
    """A policy trained for each cost rate (same keys): 0 < 1e-3 < 5e-3 in price. Measured
    with 200 steps on 2^13 paths and 2^17 held-out paths: 2.354, 2.528, 3.088 (SE 0.0015);
    here 15 steps on 1024 paths."""
    key = jax.random.key(5)
    prices = []
    for rate in (0.0, 1e-3, 5e-3):
        out = indifference_price(hj.NeuralHedge(jax.random.key(1)), entropic, MODEL, CALL,
                                 hj.Proportional(rate), GRID, key=key, steps=15,
                                 n_paths=1024, eval_paths=2**14, learning_rate=1e-3)
        prices.append((float(out.price), float(out.stderr)))
    (p0, s0), (p1, s1), (p2, s2) = prices
    assert p0 + 4 * np.hypot(s0, s1) < p1
    assert p1 + 4 * np.hypot(s1, s2) < p2
    assert abs(p0 - BS) < 0.15


@pytest.mark.slow
def test_expected_shortfall_oce_objective_fits():
    """An OCE objective is passed to fit as it is; the price uses its exact infimum, so it
    equals the price with the sorted-tail ES function on the same fitted strategy's paths."""
    key = jax.random.key(6)
    measure = risk.oce(risk.ShortfallUtility(0.9), w=0.5)
    out = indifference_price(hj.NeuralHedge(jax.random.key(1)), measure, MODEL, CALL,
                             hj.Proportional(1e-3), GRID, key=key, steps=5, n_paths=1024,
                             eval_paths=4096)
    again = indifference_price(out.strategy, lambda x: risk.expected_shortfall(x, 0.9), MODEL,
                               CALL, hj.Proportional(1e-3), GRID, key=key, steps=0,
                               eval_paths=4096)
    assert float(out.price) == pytest.approx(float(again.price), abs=1e-4)
    assert np.all(np.isfinite(out.history.objective))
    assert float(out.price) > BS
    assert bool(jnp.isfinite(out.stderr))


@pytest.mark.parametrize("kwargs, needle", [
    (dict(key=None), "key must be a jax.random key"),
    (dict(fit_options="x"), "fit_options must be None or a dict"),
    (dict(fit_options={"steps": 3}), "fit_options must not set 'steps'"),
    (dict(fit_options={"bogus": 1}), "fit_options has 'bogus'"),
])
def test_bad_key_and_fit_options_are_refused_by_name(kwargs, needle):
    options = dict(key=jax.random.key(0), steps=0, eval_paths=64)
    options.update(kwargs)
    with pytest.raises(ValueError, match=needle):
        hj.indifference_price(hj.DeltaHedge(), lambda x: hj.risk.entropic(x, 1.0),
                              hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.08), None,
                              hj.TimeGrid(0.08, 4), **options)


def test_an_int_seed_is_a_key():
    out = hj.indifference_price(hj.DeltaHedge(), lambda x: hj.risk.entropic(x, 1.0),
                                hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.08), None,
                                hj.TimeGrid(0.08, 4), key=3, steps=0, eval_paths=64)
    assert np.isfinite(float(out.price))
