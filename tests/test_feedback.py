"""hj.Feedback: delta hedgers' trades move the price (Frey and Stremme 1997)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_run_folder
from scipy.stats import norm

import hedgejax as hj
from hedgejax.experiments._framework import run_experiment


def bs_put_gamma(spot, strike, tau, vol):
    """Black-Scholes gamma (r = q = 0), written independently of hedgejax."""
    d1 = (math.log(spot / strike) + 0.5 * vol * vol * tau) / (vol * math.sqrt(tau))
    return norm.pdf(d1) / (spot * vol * math.sqrt(tau))


def world(qty, impact=1.0, base=None, strike=100.0, maturity=2.0):
    base = hj.BlackScholes(100.0, 0.2) if base is None else base
    return hj.Feedback(base, hj.Book([hj.EuropeanPut(strike, maturity)], quantities=[qty]),
                       impact=impact)


@pytest.mark.parametrize("base, qty, impact", [
    (hj.BlackScholes(100.0, 0.2), 0.0, 1.0),
    pytest.param(hj.Merton(100.0, 0.15, 1.0, -0.1, 0.05), -0.1, 0.0, marks=pytest.mark.slow),
    pytest.param(hj.Heston(100.0, 0.04, 1.5, 0.04, 0.3, -0.7), 0.0, 1.0,
                 marks=pytest.mark.slow),
])
def test_no_share_or_no_impact_is_the_base_world_bit_for_bit(base, qty, impact):
    grid = hj.TimeGrid(0.1, 20)
    hedge_model = hj.BlackScholes(100.0, 0.2)
    feedback = hj.Feedback(base, hj.Book([hj.EuropeanPut(95.0, 1.0)], quantities=[qty]),
                           impact=impact, hedge_model=hedge_model)
    key = jax.random.key(3)
    assert np.array_equal(np.asarray(hj.simulate(feedback, grid, 257, key)),
                          np.asarray(hj.simulate(base, grid, 257, key)))


@pytest.mark.parametrize("qty", [-0.05, 0.05])
def test_realised_vol_matches_frey_stremme_effective_vol(qty):
    # 2-year puts over 5 days: the hedgers' gamma hardly moves over the horizon
    vol, rho, grid, n = 0.2, 1.0, hj.TimeGrid(5 / 252, 5), 20_000
    feedback = world(qty, rho)
    paths = np.asarray(hj.simulate(feedback, grid, n, jax.random.key(7)), dtype=float)
    per_path = np.mean(np.diff(np.log(paths), axis=1) ** 2, axis=1) / grid.dt
    realised = per_path.mean()
    stderr = per_path.std(ddof=1) / math.sqrt(n)
    gamma_book = qty * bs_put_gamma(100.0, 100.0, 2.0, vol)
    expected = (vol / (1.0 + rho * 100.0 * gamma_book)) ** 2
    assert abs(realised - expected) < 4 * stderr
    # and the direction: short gamma amplifies, long gamma dampens, by far more than 4 SE
    assert (realised - vol ** 2) * np.sign(-qty) > 10 * stderr
    assert float(feedback.illiquidity()) == pytest.approx(-rho * 100.0 * gamma_book,
                                                          rel=1e-4)


def test_paths_solve_the_market_clearing_equation():
    # log S_t = log F_t + rho (h(t, S_t) - h(0, S_0)), h = -delta of the hedgers' book,
    # checked with scipy's put delta on the same draws' fundamental paths
    base, rho, qty, grid = hj.BlackScholes(100.0, 0.2), 1.5, -0.1, hj.TimeGrid(0.2, 10)
    feedback = world(qty, rho, base, strike=95.0, maturity=0.5)
    key = jax.random.key(1)
    s = np.asarray(hj.simulate(feedback, grid, 64, key), dtype=float)
    f = np.asarray(hj.simulate(base, grid, 64, key), dtype=float)
    tau = 0.5 - np.asarray(grid.times, dtype=float)
    d1 = (np.log(s / 95.0) + 0.02 * tau) / (0.2 * np.sqrt(tau))
    demand = -qty * (norm.cdf(d1) - 1.0)
    np.testing.assert_allclose(np.log(s), np.log(f) + rho * (demand - demand[:, :1]),
                               atol=2e-5)


def test_past_the_illiquidity_threshold_the_price_gaps_but_stays_finite():
    feedback = world(-0.4, 1.0, strike=95.0, maturity=0.06)
    assert float(jnp.max(feedback.illiquidity(jnp.linspace(90.0, 100.0, 41), 0.05))) > 1
    with pytest.raises(ValueError, match="illiquidity threshold"):
        feedback.effective_vol(0.2, spot=95.0, t=0.05)
    paths = hj.simulate(feedback, hj.TimeGrid(0.05, 25), 2000, jax.random.key(0))
    assert bool(jnp.all(jnp.isfinite(paths)))


@pytest.mark.slow
def test_runs_inside_hedge_jit_vmap_and_grad():
    feedback = world(-0.05)
    bs = hj.BlackScholes(100.0, 0.2)
    grid = hj.TimeGrid(0.1, 25)
    res = hj.hedge(feedback, hj.EuropeanCall(100.0, 0.1), hj.DeltaHedge(), None, grid, 512,
                   jax.random.key(0), hedge_model=bs)
    assert bool(jnp.all(jnp.isfinite(res.pnl)))
    with pytest.raises(ValueError, match="hedge_model must be able to price"):
        hj.hedge(feedback, hj.EuropeanCall(100.0, 0.1), hj.DeltaHedge(), None, grid, 8, 0)
    levels = jax.vmap(lambda r: world(-0.05, r).illiquidity())(jnp.array([0.5, 1.0]))
    np.testing.assert_allclose(levels[1], 2 * levels[0], rtol=1e-5)

    def end_spread(rho):
        paths = hj.simulate(world(-0.05, rho), hj.TimeGrid(5 / 252, 5), 64, jax.random.key(2))
        return jnp.mean(jnp.log(paths[:, -1] / 100.0) ** 2)

    with jax.enable_x64(True):
        rho = jnp.float64(1.0)
        grad = jax.grad(end_spread)(rho)
        h = 1e-5
        fd = (end_spread(rho + h) - end_spread(rho - h)) / (2 * h)
    assert float(grad) == pytest.approx(float(fd), rel=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(impact=-0.1), "impact must be finite and >= 0"),
    (dict(impact=float("nan")), "impact must be finite"),
    (dict(impact=[1.0, 2.0]), "impact must be a scalar"),
    (dict(hedgers="puts"), "hedgers must be a Book"),
    (dict(hedgers=hj.Digital(100.0, 1.0)), "hedgers must hold European calls and puts"),
    (dict(model="bs"), "model must be a model"),
    (dict(hedge_model=3.0), "hedge_model must be a model"),
])
def test_bad_parameters_raise_naming_them(kwargs, message):
    args = dict(model=hj.BlackScholes(100.0, 0.2), hedgers=hj.EuropeanPut(100.0, 1.0),
                impact=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        hj.Feedback(**args)


@pytest.mark.slow
def test_experiment_runs_small(tmp_path):
    folder = run_experiment("feedback", out=tmp_path, progress=False, show=False,
                            overrides={"paths": 2000, "shares": [0.1], "horizon": 0.1})
    payload = check_run_folder(folder, "feedback")
    rows = {r["hedgers"]: r for r in payload["table"]}
    # short-gamma insurers raise the realised vol, long-gamma market makers lower it
    none, up, down = (rows[k]["realised_vol"] for k in ("no hedgers", "portfolio insurers",
                                                         "market makers"))
    assert down < none < up


def test_traced_impact_runs_under_jit_and_helpers_refuse_bad_inputs():
    import jax

    import hedgejax as hj

    base = hj.BlackScholes(100.0, 0.2)
    hedgers = hj.Book([hj.EuropeanPut(95.0, 1.0)], quantities=[-0.05])
    grid = hj.TimeGrid(5 / 252, 5)

    def mean_spot(impact):
        return hj.simulate(hj.Feedback(base, hedgers, impact), grid, 8,
                           jax.random.key(0)).mean()

    assert float(jax.jit(mean_spot)(0.5)) == pytest.approx(float(mean_spot(0.5)), rel=1e-6)
    world = hj.Feedback(base, hedgers, 1.0)
    for call, name in [(lambda: world.illiquidity(-1.0), "spot"),
                       (lambda: world.illiquidity(float("nan")), "spot"),
                       (lambda: world.illiquidity(t=-1.0), "t"),
                       (lambda: world.effective_vol(-0.2), "vol"),
                       (lambda: world.effective_vol(float("nan")), "vol")]:
        with pytest.raises(ValueError, match=f"^{name} must be"):
            call()
    with pytest.raises(ValueError, match="mc_greeks bumps the model's spot"):
        hj.mc_greeks(world, hj.EuropeanCall(100.0, 0.25), 16, jax.random.key(0))
