"""Risk measures against numpy computations written here, input validation, and the
composability of the public API with jax transformations."""

from __future__ import annotations

import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hedgejax as hj
from hedgejax import risk

# ---------------------------------------------------------------------------------------------
# Independent references.
# ---------------------------------------------------------------------------------------------


def es_reference(x: np.ndarray, alpha: float) -> float:
    """Expected shortfall as a positive loss: -(1/(1-alpha)) * integral over u in [0, 1-alpha]
    of the empirical quantile function, which is x_(i) on ((i-1)/n, i/n]."""
    xs = np.sort(np.asarray(x, np.float64))
    n = xs.size
    tail = 1.0 - alpha
    lo = np.arange(n) / n
    hi = np.arange(1, n + 1) / n
    overlap = np.clip(np.minimum(hi, tail) - lo, 0.0, None)
    if tail < 1.0 / n:  # the whole tail sits inside the worst outcome
        return -float(xs[0])
    return -float(np.dot(overlap, xs) / tail)


def _N(x):
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _n(x):
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def call_price(S, K, T, vol, r=0.0, q=0.0):
    sd = vol * math.sqrt(T)
    d1 = (math.log(S / K) + (r - q) * T) / sd + 0.5 * sd
    return S * math.exp(-q * T) * _N(d1) - K * math.exp(-r * T) * _N(d1 - sd)


def call_vega(S, K, T, vol, r=0.0, q=0.0):
    sd = vol * math.sqrt(T)
    d1 = (math.log(S / K) + (r - q) * T) / sd + 0.5 * sd
    return S * math.exp(-q * T) * _n(d1) * math.sqrt(T)


@pytest.fixture
def sample(x64):
    rng = np.random.default_rng(12345)
    return rng.standard_t(df=4, size=1000) * 3.0 + 0.5


# ---------------------------------------------------------------------------------------------
# Risk measures.
# ---------------------------------------------------------------------------------------------


def test_moments_match_numpy(sample):
    x = jnp.asarray(sample)
    assert float(risk.mean(x)) == pytest.approx(np.mean(sample), rel=1e-13)
    assert float(risk.variance(x)) == pytest.approx(np.var(sample, ddof=1), rel=1e-12)
    assert float(risk.std(x)) == pytest.approx(np.std(sample, ddof=1), rel=1e-12)
    assert float(risk.stderr(x)) == pytest.approx(
        np.std(sample, ddof=1) / math.sqrt(sample.size), rel=1e-12)


def test_std_uses_ddof_one_on_a_tiny_sample(x64):
    # {1, 2, 3, 4}: mean 2.5, sum of squares 5, ddof=1 variance 5/3.
    x = jnp.asarray([1.0, 2.0, 3.0, 4.0])
    assert float(risk.variance(x)) == pytest.approx(5.0 / 3.0, rel=1e-14)
    assert float(risk.std(x)) == pytest.approx(math.sqrt(5.0 / 3.0), rel=1e-14)


@pytest.mark.parametrize("alpha", [0.5, 0.9, 0.95, 0.99, 0.975, 0.9737, 0.999])
def test_var_is_negative_quantile(sample, alpha):
    expected = -np.quantile(sample, 1.0 - alpha)  # numpy default: linear interpolation
    assert float(risk.var(jnp.asarray(sample), alpha)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("alpha", [0.9, 0.95, 0.99, 0.5])  # (1-alpha)*1000 integer
def test_expected_shortfall_integer_tail(sample, alpha):
    k = round((1.0 - alpha) * sample.size)
    worst_mean = -np.mean(np.sort(sample)[:k])
    assert es_reference(sample, alpha) == pytest.approx(worst_mean, rel=1e-10)
    assert float(risk.expected_shortfall(jnp.asarray(sample), alpha)) == pytest.approx(
        worst_mean, rel=1e-10)


@pytest.mark.parametrize("alpha", [0.9737, 0.9991, 0.95 + 1e-4, 0.123456])
def test_expected_shortfall_fractional_tail(sample, alpha):
    assert (1.0 - alpha) * sample.size % 1.0 > 1e-3  # really fractional
    assert float(risk.expected_shortfall(jnp.asarray(sample), alpha)) == pytest.approx(
        es_reference(sample, alpha), rel=1e-10)


def test_expected_shortfall_tail_smaller_than_one_outcome(x64):
    x = np.asarray([3.0, -7.0, 1.0, 0.5, 2.0, -1.0, 4.0, 0.0, 9.0, -2.0])
    assert float(risk.expected_shortfall(jnp.asarray(x), 0.95)) == pytest.approx(7.0)
    assert es_reference(x, 0.95) == pytest.approx(7.0)


def test_expected_shortfall_is_continuous_in_alpha(sample):
    """Acerbi-Tasche weighting makes ES continuous as (1-alpha)n crosses an integer."""
    x = jnp.asarray(sample)
    below = float(risk.expected_shortfall(x, 0.95 - 1e-9))
    at = float(risk.expected_shortfall(x, 0.95))
    above = float(risk.expected_shortfall(x, 0.95 + 1e-9))
    assert abs(below - at) < 1e-5 and abs(above - at) < 1e-5


@pytest.mark.parametrize("alpha", [0.5, 0.9, 0.95, 0.975, 0.99, 0.9737])
def test_expected_shortfall_at_least_var(sample, alpha):
    x = jnp.asarray(sample)
    assert float(risk.expected_shortfall(x, alpha)) >= float(risk.var(x, alpha)) - 1e-12


def test_expected_shortfall_of_normal_sample_is_known_statistic():
    """For N(0, 1) outcomes ES_alpha = n(z)/(1-alpha) with z = N^{-1}(alpha): large sample."""
    z = jax.random.normal(jax.random.key(0), (400_000,))
    alpha = 0.95
    z_alpha = 1.6448536269514722
    expected = _n(z_alpha) / (1 - alpha)
    # Asymptotic sd of the ES estimator is below 3 / sqrt(n (1 - alpha)) here; use 4x.
    tol = 4 * 3.0 / math.sqrt(z.size * (1 - alpha))
    assert abs(float(risk.expected_shortfall(z, alpha)) - expected) < tol
    assert abs(float(risk.var(z, alpha)) - z_alpha) < tol


@pytest.mark.parametrize("a", [0.05, 0.5, 2.0])
def test_entropic_matches_log_mean_exp(sample, a):
    big = -a * sample
    m = big.max()
    expected = (m + math.log(np.mean(np.exp(big - m)))) / a
    assert float(risk.entropic(jnp.asarray(sample), a)) == pytest.approx(expected, rel=1e-12)


def test_entropic_of_normal_is_mean_variance(x64):
    """For N(mu, s^2) outcomes entropic risk is -mu + a s^2 / 2; with the sample's own mean and
    variance the difference is a higher-cumulant term, small for a small a s."""
    rng = np.random.default_rng(7)
    x = rng.normal(1.5, 2.0, 200_000)
    a = 0.1
    expected = -x.mean() + 0.5 * a * x.var()
    assert float(risk.entropic(jnp.asarray(x), a)) == pytest.approx(expected, abs=0.01)


def test_entropic_does_not_overflow(x64):
    x = jnp.asarray([-1000.0, 0.0, 1000.0])
    value = float(risk.entropic(x, 1.0))
    assert value == pytest.approx(1000.0 - math.log(3.0), rel=1e-12)


def test_mean_cost_variance(sample):
    rng = np.random.default_rng(3)
    cost = rng.uniform(0.0, 2.0, sample.size)
    result = SimpleNamespace(cost=jnp.asarray(cost), hedge_error=jnp.asarray(sample))
    for lam in (0.0, 0.5, 3.0):
        expected = cost.mean() + lam * np.var(sample, ddof=1)
        assert float(risk.mean_cost_variance(result, lam)) == pytest.approx(expected, rel=1e-12)


def test_mean_cost_variance_of_a_hedge_result():
    res = hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.25), hj.DeltaHedge(),
                   hj.Proportional(0.001), hj.TimeGrid(0.25, 8), n_paths=500,
                   key=jax.random.key(0))
    cost, err = np.asarray(res.cost, np.float64), np.asarray(res.hedge_error, np.float64)
    expected = cost.mean() + 2.0 * np.var(err, ddof=1)
    assert float(risk.mean_cost_variance(res, 2.0)) == pytest.approx(expected, rel=1e-4)


def _directional_check(f, x, rng, h=1e-6, n_dirs=4, rtol=1e-6):
    grad = np.asarray(jax.grad(f)(jnp.asarray(x)))
    assert np.all(np.isfinite(grad))
    for _ in range(n_dirs):
        v = rng.normal(size=x.shape)
        fd = (float(f(jnp.asarray(x + h * v))) - float(f(jnp.asarray(x - h * v)))) / (2 * h)
        assert float(grad @ v) == pytest.approx(fd, rel=rtol, abs=1e-9)
    return grad


@pytest.mark.parametrize("alpha", [0.95, 0.9737])
def test_expected_shortfall_gradient_matches_finite_differences(sample, alpha):
    rng = np.random.default_rng(0)
    grad = _directional_check(lambda x: risk.expected_shortfall(x, alpha), sample, rng)
    # ES is a weighted mean of the worst outcomes: the weights are -1/((1-alpha) n) at most
    # and sum to -1.
    assert grad.sum() == pytest.approx(-1.0, rel=1e-10)
    assert np.all(grad <= 0.0)


@pytest.mark.parametrize("a", [0.1, 1.0])
def test_entropic_gradient_matches_finite_differences(sample, a):
    rng = np.random.default_rng(1)
    grad = _directional_check(lambda x: risk.entropic(x, a), sample, rng)
    w = np.exp(-a * (sample - sample.min()))
    np.testing.assert_allclose(grad, -w / w.sum(), rtol=1e-10)  # minus the softmax weights


def test_var_and_std_gradients_match_finite_differences(sample):
    rng = np.random.default_rng(2)
    _directional_check(lambda x: risk.std(x), sample, rng)
    _directional_check(lambda x: risk.var(x, 0.9737), sample, rng)


def test_summary_keys_and_values():
    res = hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.25), hj.DeltaHedge(),
                   hj.Proportional(0.001), hj.TimeGrid(0.25, 8), n_paths=500,
                   key=jax.random.key(0))
    s = hj.summary(res, alpha=0.95)
    pnl = np.asarray(res.pnl, np.float64)
    assert s["n_paths"] == 500
    assert s["mean"] == pytest.approx(pnl.mean(), rel=1e-4, abs=1e-6)
    assert s["std"] == pytest.approx(pnl.std(ddof=1), rel=1e-4)
    assert s["var"] == pytest.approx(-np.quantile(pnl, 0.05), rel=1e-4)
    assert s["es"] == pytest.approx(es_reference(pnl, 0.95), rel=1e-4)
    unhedged = np.asarray(res.unhedged_pnl, np.float64)
    assert s["hedge_effectiveness"] == pytest.approx(
        1.0 - pnl.var(ddof=1) / unhedged.var(ddof=1), rel=1e-3)


# ---------------------------------------------------------------------------------------------
# Validation: bad input raises ValueError naming the parameter.
# ---------------------------------------------------------------------------------------------

BAD_INPUTS = [
    ("vol", lambda: hj.BlackScholes(100.0, 0.0)),
    ("vol", lambda: hj.BlackScholes(100.0, -0.2)),
    ("vol", lambda: hj.BlackScholes(100.0, float("nan"))),
    ("spot", lambda: hj.BlackScholes(float("nan"), 0.2)),
    ("spot", lambda: hj.BlackScholes(float("inf"), 0.2)),
    ("spot", lambda: hj.BlackScholes(-1.0, 0.2)),
    ("spot", lambda: hj.BlackScholes(0.0, 0.2)),
    ("rate", lambda: hj.BlackScholes(100.0, 0.2, rate=float("inf"))),
    ("div", lambda: hj.BlackScholes(100.0, 0.2, div=float("nan"))),
    ("drift", lambda: hj.BlackScholes(100.0, 0.2, drift=float("-inf"))),
    ("vol", lambda: hj.BlackScholes(100.0, 0.2).replace(vol=-0.1)),
    ("spot", lambda: hj.BlackScholes(100.0, 0.2).replace(spot=float("nan"))),
    ("maturity", lambda: hj.EuropeanCall(100.0, -1.0)),
    ("maturity", lambda: hj.EuropeanPut(100.0, 0.0)),
    ("maturity", lambda: hj.Digital(100.0, -0.5)),
    ("maturity", lambda: hj.EuropeanCall(100.0, float("nan"))),
    ("strike", lambda: hj.EuropeanCall(-100.0, 1.0)),
    ("strike", lambda: hj.EuropeanPut(0.0, 1.0)),
    ("strike", lambda: hj.Digital(float("inf"), 1.0)),
    ("cash", lambda: hj.Digital(100.0, 1.0, cash=float("nan"))),
    ("maturity", lambda: hj.TimeGrid(-1.0, 10)),
    ("maturity", lambda: hj.TimeGrid(0.0, 10)),
    ("maturity", lambda: hj.TimeGrid(float("inf"), 10)),
    ("n_steps", lambda: hj.TimeGrid(1.0, 0)),
    ("n_steps", lambda: hj.TimeGrid(1.0, -3)),
    ("n_steps", lambda: hj.TimeGrid(1.0, 2.5)),
    ("rate", lambda: hj.Proportional(-0.001)),
    ("per_trade", lambda: hj.Fixed(-1.0)),
    ("half_spread", lambda: hj.Spread(-0.01)),
    ("width", lambda: hj.BandHedge(-0.1)),
    ("every", lambda: hj.DeltaHedge(every=0)),
    ("every", lambda: hj.DeltaHedge(every=-2)),
    ("risk_aversion", lambda: hj.WhalleyWilmott(0.0)),
    ("risk_aversion", lambda: hj.WhalleyWilmott(-1.0)),
    ("quantities", lambda: hj.Book([hj.EuropeanCall(100.0, 1.0)], [1.0, 2.0])),
    ("quantities", lambda: hj.Book([hj.EuropeanCall(100.0, 1.0), hj.EuropeanPut(90.0, 1.0)],
                                   [1.0])),
    ("quantities", lambda: hj.Book([hj.EuropeanCall(100.0, 1.0)], [float("nan")])),
    ("alpha", lambda: risk.var(jnp.ones(10), 1.0)),
    ("alpha", lambda: risk.var(jnp.ones(10), 0.0)),
    ("alpha", lambda: risk.expected_shortfall(jnp.ones(10), 1.5)),
    ("alpha", lambda: risk.expected_shortfall(jnp.ones(10), -0.1)),
    (r"\ba\b", lambda: risk.entropic(jnp.ones(10), 0.0)),
    ("lam", lambda: risk.mean_cost_variance(
        SimpleNamespace(cost=jnp.ones(3), hedge_error=jnp.ones(3)), -1.0)),
    ("n_paths", lambda: hj.simulate(hj.BlackScholes(100.0, 0.2), hj.TimeGrid(1.0, 2), 0,
                                    jax.random.key(0))),
    ("n_paths", lambda: hj.mc_price(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 1.0),
                                    0, jax.random.key(0))),
    ("n_steps", lambda: hj.mc_price(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 1.0),
                                    100, jax.random.key(0), n_steps=0)),
    ("n_paths", lambda: hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 1.0),
                                 hj.DeltaHedge(), None, hj.TimeGrid(1.0, 4), n_paths=0,
                                 key=jax.random.key(0))),
    ("n_paths", lambda: hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 1.0),
                                 hj.DeltaHedge(), None, hj.TimeGrid(1.0, 4), n_paths=-5,
                                 key=jax.random.key(0))),
]


@pytest.mark.parametrize("name, make", BAD_INPUTS,
                         ids=[f"{i}-{name}" for i, (name, _) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_value_error_naming_the_parameter(name, make):
    with pytest.raises(ValueError, match=name):
        make()


def test_cost_validation_survives_composition():
    with pytest.raises(ValueError, match="half_spread"):
        hj.Proportional(0.001) + hj.Spread(-0.05)
    costs = hj.Proportional(0.001) + hj.Fixed(2.0) + hj.Spread(0.01)
    # 0.1% of 150 x 100 + 2 + 0.01 x 150
    assert float(costs(jnp.asarray(-150.0), jnp.asarray(100.0))) == pytest.approx(18.5, rel=1e-6)
    assert float(costs(jnp.asarray(0.0), jnp.asarray(100.0))) == 0.0


def test_valid_edge_inputs_are_accepted():
    hj.BlackScholes(100.0, 0.2, rate=-0.01, div=-0.02, drift=-0.5)  # negative rates are fine
    hj.Proportional(0.0), hj.Fixed(0.0), hj.Spread(0.0), hj.BandHedge(0.0)
    hj.DeltaHedge(every=1)
    hj.TimeGrid(1e-6, 1)
    hj.Book([hj.EuropeanCall(100.0, 1.0)], [-3.0])


# ---------------------------------------------------------------------------------------------
# Composability with jax transformations.
# ---------------------------------------------------------------------------------------------


def test_jit_price_equals_closed_form(x64):
    model = hj.BlackScholes(100.0, 0.25, rate=0.03, div=0.01)
    call = hj.EuropeanCall(110.0, 0.8)
    jitted = jax.jit(hj.price)
    expected = call_price(100.0, 110.0, 0.8, 0.25, 0.03, 0.01)
    assert float(jitted(model, call)) == pytest.approx(expected, rel=1e-12)
    # Same compiled function, new values (arrays are traced, not baked in).
    other = model.replace(spot=jnp.asarray(90.0))
    assert float(jitted(other, call)) == pytest.approx(
        call_price(90.0, 110.0, 0.8, 0.25, 0.03, 0.01), rel=1e-12)


def test_vmap_over_vols_equals_closed_form(x64):
    model = hj.BlackScholes(100.0, 0.2, rate=0.02, div=0.01)
    call = hj.EuropeanCall(105.0, 1.25)
    vols = jnp.linspace(0.05, 0.8, 16)
    prices = jax.vmap(lambda v: hj.price(model.replace(vol=v), call))(vols)
    expected = [call_price(100.0, 105.0, 1.25, float(v), 0.02, 0.01) for v in vols]
    np.testing.assert_allclose(np.asarray(prices), expected, rtol=1e-12)
    vegas = jax.vmap(jax.grad(lambda v: hj.price(model.replace(vol=v), call)))(vols)
    np.testing.assert_allclose(
        np.asarray(vegas), [call_vega(100.0, 105.0, 1.25, float(v), 0.02, 0.01) for v in vols],
        rtol=1e-10)


def test_jit_of_vmap_over_strikes_equals_closed_form(x64):
    model = hj.BlackScholes(100.0, 0.3)
    strikes = jnp.linspace(60.0, 140.0, 9)

    @jax.jit
    def prices(ks):
        return jax.vmap(lambda k: hj.price(model, hj.EuropeanCall(k, 0.5)))(ks)

    np.testing.assert_allclose(np.asarray(prices(strikes)),
                               [call_price(100.0, float(k), 0.5, 0.3) for k in strikes],
                               rtol=1e-12)


def test_replace_under_grad_skips_validation_but_replace_outside_validates():
    model = hj.BlackScholes(100.0, 0.2)
    g = jax.grad(lambda v: hj.price(model.replace(vol=v), hj.EuropeanCall(100.0, 1.0)))(0.2)
    assert math.isfinite(float(g)) and float(g) > 0.0
    with pytest.raises(ValueError, match="vol"):
        model.replace(vol=0.0)
