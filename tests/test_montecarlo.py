"""Monte Carlo prices and Greeks against Black-Scholes closed forms written here."""

import math

import jax
import pytest

import hedgejax as hj

S0, VOL, R, Q = 100.0, 0.2, 0.03, 0.01


def _n(x):
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _cdf(x):
    return 0.5 * math.erfc(-x / math.sqrt(2))


def _bs(strike, t, put=False):
    """Price, delta, gamma, vega of a European option (closed form)."""
    sd = VOL * math.sqrt(t)
    d1 = (math.log(S0 / strike) + (R - Q) * t) / sd + 0.5 * sd
    d2 = d1 - sd
    df_q, df_r = math.exp(-Q * t), math.exp(-R * t)
    if put:
        price = strike * df_r * _cdf(-d2) - S0 * df_q * _cdf(-d1)
        delta = -df_q * _cdf(-d1)
    else:
        price = S0 * df_q * _cdf(d1) - strike * df_r * _cdf(d2)
        delta = df_q * _cdf(d1)
    gamma = df_q * _n(d1) / (S0 * sd)
    vega = S0 * df_q * _n(d1) * math.sqrt(t)
    return {"price": price, "delta": delta, "gamma": gamma, "vega": vega}


def _model():
    """Built inside each test, after the x64 fixture, so parameters have its precision."""
    return hj.BlackScholes(S0, VOL, R, Q)


CASES = [(100.0, 1.0, False), (90.0, 0.5, True), (120.0, 0.25, False)]


def _option(strike, t, put):
    return (hj.EuropeanPut if put else hj.EuropeanCall)(strike, t)


@pytest.mark.parametrize("strike, t, put", CASES)
@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("control", [None, "underlying"])
def test_mc_price_within_4_se(x64, strike, t, put, antithetic, control):
    price, se = hj.mc_price(_model(), _option(strike, t, put), 2**15, jax.random.key(11),
                            antithetic=antithetic, control_variate=control)
    assert abs(float(price) - _bs(strike, t, put)["price"]) < 4 * float(se)


def test_variance_reduction_shrinks_the_standard_error(x64):
    call = hj.EuropeanCall(90.0, 1.0)  # in the money: the underlying explains most variance
    key = jax.random.key(3)
    _, plain = hj.mc_price(_model(), call, 2**15, key)
    _, anti = hj.mc_price(_model(), call, 2**15, key, antithetic=True)
    _, cv = hj.mc_price(_model(), call, 2**15, key, control_variate="underlying")
    assert float(anti) < 0.7 * float(plain)
    assert float(cv) < 0.5 * float(plain)


@pytest.mark.parametrize("strike, t, put", CASES)
def test_pathwise_delta_and_vega_within_4_se(x64, strike, t, put):
    exact = _bs(strike, t, put)
    est = hj.mc_greeks(_model(), _option(strike, t, put), 2**16, jax.random.key(5))
    for name in ("delta", "vega"):
        g = est[name]
        assert abs(float(g.value) - exact[name]) < 4 * float(g.stderr), name


@pytest.mark.parametrize("strike, t, put", CASES)
def test_smoothed_gamma_within_4_se_plus_stated_bias(x64, strike, t, put):
    """Gamma from the smoothed payoff: documented bias ~0.15% at smoothing 0.03; we allow
    0.5% of gamma on top of 4 standard errors."""
    exact = _bs(strike, t, put)["gamma"]
    g = hj.mc_greeks(_model(), _option(strike, t, put), 2**16, jax.random.key(6))["gamma"]
    assert abs(float(g.value) - exact) < 4 * float(g.stderr) + 0.005 * exact


def test_antithetic_greeks_agree(x64):
    est = hj.mc_greeks(_model(), hj.EuropeanCall(100.0, 1.0), 2**15, jax.random.key(8),
                       antithetic=True)
    exact = _bs(100.0, 1.0)
    assert abs(float(est["delta"].value) - exact["delta"]) < 4 * float(est["delta"].stderr)


def test_simulate_antithetic_mirrors_the_log_increments(x64):
    grid = hj.TimeGrid(1.0, 5)
    base = hj.simulate(_model(), grid, 8, jax.random.key(1))
    mirror = hj.simulate(_model(), grid, 8, jax.random.key(1), antithetic=True)
    drift = (R - Q - 0.5 * VOL**2) * grid.dt
    inc_base = jax.numpy.diff(jax.numpy.log(base), axis=1) - drift
    inc_mirror = jax.numpy.diff(jax.numpy.log(mirror), axis=1) - drift
    assert float(jax.numpy.max(jax.numpy.abs(inc_base + inc_mirror))) < 1e-12


@pytest.mark.parametrize(
    "kwargs, needle",
    [({"n_paths": 7, "antithetic": True}, "n_paths"),
     ({"n_paths": 0}, "n_paths"),
     ({"n_paths": 64, "control_variate": "bs"}, "control_variate"),
     ({"n_paths": 64, "n_steps": 0}, "n_steps")],
)
def test_bad_mc_arguments(kwargs, needle):
    n_paths = kwargs.pop("n_paths")
    with pytest.raises(ValueError, match=needle):
        hj.mc_price(_model(), hj.EuropeanCall(100.0, 1.0), n_paths, jax.random.key(0), **kwargs)


def test_mc_price_of_a_book_is_refused():
    book = hj.Book([hj.EuropeanCall(100.0, 1.0)])
    with pytest.raises(ValueError, match="instrument"):
        hj.mc_price(_model(), book, 64, jax.random.key(0))
    with pytest.raises(ValueError, match="smoothing"):
        hj.mc_greeks(_model(), hj.EuropeanCall(100.0, 1.0), 64, jax.random.key(0), smoothing=0)


@pytest.mark.slow  # half a minute of compiling and training: the slow tier
def test_pathwise_greeks_through_heston_qe_match_the_fourier_greeks(x64):
    """mc_greeks differentiates through the QE simulation (vega is w.r.t. v0); the reference
    is autodiff of the semi-analytic Heston price (checked against QuantLib elsewhere). QE at
    32 steps has a bias far below the standard errors here."""
    import warnings

    warnings.simplefilter("ignore", hj.FellerWarning)
    model = hj.Heston(100.0, v0=0.04, kappa=1.5, theta=0.04, xi=0.5, rho=-0.7, rate=0.01)
    call = hj.EuropeanCall(100.0, 0.5)
    exact = hj.greeks(model, call)
    est = hj.mc_greeks(model, call, 2**16, jax.random.key(3), n_steps=32)
    for name in ("delta", "vega"):
        g = est[name]
        assert abs(float(g.value) - float(getattr(exact, name))) < 4 * float(g.stderr), name
    g = est["gamma"]
    assert abs(float(g.value) - float(exact.gamma)) < 4 * float(g.stderr) + 0.005 * float(
        exact.gamma)
