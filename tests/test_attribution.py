"""P&L explain (`hedge(..., attribution=True)`): the terms sum to the P&L, the cost terms
to the costs, the Taylor coefficients equal closed forms and finite differences, and the
hedging laws of a delta hedge hold: the residual falls faster than the gamma term as steps
are added (at the rate theory gives), and gamma and theta P&L cancel at the true vol and
differ by (realised - implied variance) x the gamma-weighted integral otherwise."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

import hedgejax as hj
from hedgejax._attribution import TERMS, cost_parts, sensitivities

KEY = jax.random.key(7)


def _bs(spot, strike, tau, vol, r=0.0, q=0.0):
    """Black-Scholes call value and Greeks in float64 (Hull, ch. 19): delta, gamma, theta
    (dV/dt, calendar time), vega, vanna, volga."""
    sq = vol * np.sqrt(tau)
    d1 = (np.log(spot / strike) + (r - q + 0.5 * vol**2) * tau) / sq
    d2 = d1 - sq
    pdf = norm.pdf(d1)
    value = spot * np.exp(-q * tau) * norm.cdf(d1) - strike * np.exp(-r * tau) * norm.cdf(d2)
    delta = np.exp(-q * tau) * norm.cdf(d1)
    gamma = np.exp(-q * tau) * pdf / (spot * sq)
    vega = spot * np.exp(-q * tau) * pdf * np.sqrt(tau)
    theta = (-spot * np.exp(-q * tau) * pdf * vol / (2 * np.sqrt(tau))
             + q * spot * np.exp(-q * tau) * norm.cdf(d1)
             - r * strike * np.exp(-r * tau) * norm.cdf(d2))
    vanna = -np.exp(-q * tau) * pdf * d2 / vol
    volga = vega * d1 * d2 / vol
    return value, delta, gamma, theta, vega, vanna, volga


def test_sensitivities_equal_black_scholes_closed_forms(x64):
    model = hj.BlackScholes(100.0, 0.25, rate=0.03, div=0.01)
    book = hj.Book([hj.EuropeanCall(105.0, 0.75)], quantities=[2.0])
    spot = jnp.array([80.0, 100.0, 130.0])
    t = 0.25
    got = sensitivities(model, book, jnp.log(spot), spot, t)
    want = _bs(np.asarray(spot), 105.0, 0.5, 0.25, 0.03, 0.01)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), 2.0 * w, rtol=1e-9, atol=1e-10)


@pytest.mark.slow
def test_heston_sensitivities_equal_finite_differences(x64):
    warnings.simplefilter("ignore", hj.FellerWarning)
    model = hj.Heston(100.0, v0=0.05, kappa=1.5, theta=0.04, xi=0.5, rho=-0.7)
    call = hj.EuropeanCall(100.0, 0.5)
    spot, t = 104.0, 0.1
    got = sensitivities(model, hj.Book([call]), jnp.log(jnp.array([spot])),
                        jnp.array([spot]), t)

    def p(s=spot, tt=t, v=0.05):
        return float(hj.price(model.replace(v0=v), call, spot=s, t=tt))

    hs, ht, hv = 1e-2, 1e-4, 1e-4
    fd = dict(
        value=p(),
        delta=(p(s=spot + hs) - p(s=spot - hs)) / (2 * hs),
        gamma=(p(s=spot + hs) - 2 * p() + p(s=spot - hs)) / hs**2,
        theta=(p(tt=t + ht) - p(tt=t - ht)) / (2 * ht),
        vega=(p(v=0.05 + hv) - p(v=0.05 - hv)) / (2 * hv),
        vanna=(p(s=spot + hs, v=0.05 + hv) - p(s=spot + hs, v=0.05 - hv)
               - p(s=spot - hs, v=0.05 + hv) + p(s=spot - hs, v=0.05 - hv)) / (4 * hs * hv),
        volga=(p(v=0.05 + hv) - 2 * p() + p(v=0.05 - hv)) / hv**2,
    )
    for name, want in fd.items():
        np.testing.assert_allclose(float(getattr(got, name)[0]), want, rtol=2e-4,
                                   atol=1e-6, err_msg=name)


_ALL_COSTS = (hj.Proportional(0.001) + hj.Fixed(0.01) + hj.Spread(0.02) + hj.Impact(1e-4)
              + hj.RandomSlippage(0.0005, 0.5))


def _cases():
    bs = hj.BlackScholes(100.0, 0.2, rate=0.02, div=0.01)
    heston = hj.Heston(100.0, v0=0.04, kappa=2.0, theta=0.04, xi=0.3, rho=-0.6, rate=0.01)
    merton = hj.Merton(100.0, 0.15, jump_rate=0.5, jump_mean=-0.1, jump_std=0.1)
    call = hj.EuropeanCall(100.0, 0.5)
    short = hj.Book([call, hj.EuropeanPut(95.0, 0.125)], quantities=[1.0, -2.0])
    listed = hj.EuropeanCall(100.0, 1.0)
    return {
        "bs all costs, band": (bs, call, hj.BandHedge(0.05), _ALL_COSTS, {}),
        "bs expiring inside, unwind": (bs, short, hj.DeltaHedge(), _ALL_COSTS,
                                       dict(unwind=True)),
        "bs wrong vol": (bs, call, hj.DeltaHedge(), hj.Proportional(0.002),
                         dict(hedge_model=bs.replace(vol=0.3))),
        "heston": (heston, call, hj.DeltaHedge(), hj.Spread(0.01), {}),
        "merton": (merton, call, hj.DeltaHedge(), None, {}),
        "delta-gamma, option costs": (bs, call, hj.DeltaGammaHedge(
            listed, hj.Proportional(0.01) + hj.RandomSlippage(0.001, 0.3)),
            hj.Proportional(0.001), dict(unwind=True)),
        "barrier": (bs, hj.Barrier(100.0, 120.0, 0.5, kind="up-and-out"), hj.DeltaHedge(),
                    hj.Proportional(0.001), {}),
    }


_SLOW_CASES = ("heston", "merton", "barrier")


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in _SLOW_CASES
                                  else c for c in _cases()])
def test_terms_sum_to_the_pnl_and_costs_to_the_cost(case, x64):
    warnings.simplefilter("ignore", hj.FellerWarning)
    model, book, strategy, costs, extra = _cases()[case]
    res = hj.hedge(model, book, strategy, costs, hj.TimeGrid(0.25, 12), 256, KEY,
                   attribution=True, pricing="exact", **extra)
    a = res.attribution
    assert set(a.terms()) == set(TERMS)
    scale = float(jnp.max(jnp.abs(res.pnl))) + 1.0
    np.testing.assert_allclose(np.asarray(a.total()), np.asarray(res.pnl), rtol=0,
                               atol=1e-12 * scale)
    cost_terms = a.commission + a.spread + a.impact + a.slippage
    np.testing.assert_allclose(np.asarray(cost_terms), -np.asarray(res.cost), rtol=1e-12,
                               atol=1e-12)
    assert bool(jnp.all(a.commission <= 0)) and bool(jnp.all(a.slippage <= 0))
    # the P&L is the run without the explain: bit for bit for Black-Scholes worlds; with a
    # Heston pricer in the loop, jax 0.12's XLA fuses the added Greeks with the strategy's
    # and rounds them differently (measured: 2e-15 absolute)
    plain = hj.hedge(model, book, strategy, costs, hj.TimeGrid(0.25, 12), 256, KEY,
                     pricing="exact", **extra)
    assert plain.attribution is None
    if isinstance(model, hj.BlackScholes):
        np.testing.assert_array_equal(np.asarray(plain.pnl), np.asarray(res.pnl))
    else:
        np.testing.assert_allclose(np.asarray(plain.pnl), np.asarray(res.pnl), rtol=1e-12,
                                   atol=1e-12 * scale)
    if isinstance(model, hj.Heston):
        assert float(jnp.std(a.vega)) > 0 and float(jnp.std(a.volga)) > 0
    else:
        assert float(jnp.max(jnp.abs(a.vega))) == 0.0


def test_cost_parts_split_a_cost_sum_by_kind(x64):
    trade, price = jnp.array([3.0, -2.0, 0.0]), jnp.array([100.0, 101.0, 99.0])
    noise = jnp.array([0.3, -1.0, 2.0])
    parts = cost_parts(_ALL_COSTS, trade, price, noise)
    assert set(parts) == {"commission", "spread", "impact", "slippage"}
    np.testing.assert_allclose(np.asarray(parts["commission"]),
                               0.001 * 100 * np.array([3, 2, 0]) * np.array([1, 1.01, 0])
                               + 0.01 * np.array([1, 1, 0]))
    np.testing.assert_allclose(np.asarray(parts["spread"]), 0.02 * np.array([3, 2, 0]))
    np.testing.assert_allclose(np.asarray(sum(parts.values())),
                               np.asarray(_ALL_COSTS.charge(trade, price, noise)))


def test_delta_hedged_every_step_has_no_delta_term(x64):
    res = hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.5), hj.DeltaHedge(),
                   None, hj.TimeGrid(0.5, 20), 512, KEY, attribution=True)
    assert float(jnp.max(jnp.abs(res.attribution.delta))) < 1e-12
    band = hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.5),
                    hj.BandHedge(0.1), None, hj.TimeGrid(0.5, 20), 512, KEY,
                    attribution=True)
    assert float(jnp.std(band.attribution.delta)) > 0.05


def _slope(ns, values):
    return float(np.polyfit(np.log(ns), np.log(values), 1)[0])


@pytest.mark.parametrize("maturity, residual_rate, gamma_rate", [
    # the option outlives the grid: the value is smooth in (S, t), the third-order Taylor
    # terms are O(dt^{3/2}) per step with mean-zero noise, so the residual's std is
    # sqrt(n) dt^{3/2} ~ 1/n; the gamma term's std falls at most like its Z^2 - 1 noise, 1/sqrt(n)
    (1.0, (-1.1, -0.9), (-0.55, 0.0)),
    # the option expires at the grid's end: near expiry V_SSS ~ 1/(S^2 sigma^2 tau), and the
    # paths within sigma sqrt(tau) of the strike make the residual's variance ~ dt^{3/2}:
    # std ~ n^{-3/4}; the gamma term tends to its path-dependent limit (slope ~ 0)
    pytest.param(0.25, (-0.85, -0.6), (-0.25, 0.0), marks=pytest.mark.slow),
])
def test_residual_falls_faster_than_gamma_at_the_rate_theory_gives(maturity, residual_rate,
                                                                   gamma_rate, x64):
    ns = (16, 32, 64)
    residual, gamma = [], []
    for n in ns:
        a = hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, maturity),
                     hj.DeltaHedge(), None, hj.TimeGrid(0.25, n), 8192, KEY,
                     attribution=True).attribution
        residual.append(float(jnp.std(a.residual)))
        gamma.append(float(jnp.std(a.gamma)))
    r_rate, g_rate = _slope(ns, residual), _slope(ns, gamma)
    assert residual_rate[0] < r_rate < residual_rate[1], (r_rate, residual)
    assert gamma_rate[0] < g_rate < gamma_rate[1], (g_rate, gamma)
    assert r_rate < g_rate - 0.3


@pytest.mark.parametrize("true_vol, hedge_vol", [(0.2, 0.2), (0.3, 0.2), (0.15, 0.25)])
def test_gamma_theta_scalping_identity(true_vol, hedge_vol, x64):
    """Per path, gamma + theta = sum 1/2 Gamma_h (dS^2 - sigma_h^2 S^2 dt) (r = q = 0, the
    Black-Scholes theta -1/2 sigma_h^2 S^2 Gamma_h): rebuilt from the recorded spots with
    scipy's Gamma. On average, dS^2 ~ sigma^2 S^2 dt, so the mean of gamma + theta is
    (sigma^2 - sigma_h^2) x E[sum 1/2 Gamma_h S^2 dt]: 0 at the true vol."""
    n, k, maturity = 32, 4096, 0.25
    world = hj.BlackScholes(100.0, true_vol)
    res = hj.hedge(world, hj.EuropeanCall(100.0, maturity), hj.DeltaHedge(), None,
                   hj.TimeGrid(maturity, n), k, KEY, hedge_model=world.replace(vol=hedge_vol),
                   attribution=True, record=k)
    a, s = res.attribution, np.asarray(res.trace.spot)
    dt = maturity / n
    tau = maturity - dt * np.arange(n)
    gamma = _bs(s[:, :-1], 100.0, tau, hedge_vol)[2]
    ds2 = np.diff(s, axis=1) ** 2
    scalp = np.sum(0.5 * gamma * (ds2 - hedge_vol**2 * s[:, :-1] ** 2 * dt), axis=1)
    both = np.asarray(a.gamma + a.theta)
    np.testing.assert_allclose(both, scalp, rtol=1e-9, atol=1e-9)
    weight = np.sum(0.5 * gamma * s[:, :-1] ** 2 * dt, axis=1)   # gamma-weighted integral
    # paired: gamma + theta - (sigma^2 - sigma_h^2) x weight has mean ~ 0 (to O(dt) bias)
    diff = both - (true_vol**2 - hedge_vol**2) * weight
    se = diff.std(ddof=1) / np.sqrt(k)
    assert abs(diff.mean()) < 4 * se + 2e-3, (diff.mean(), se)
    if true_vol == hedge_vol:
        assert abs(both.mean()) < 4 * both.std(ddof=1) / np.sqrt(k)
    else:
        assert np.sign(both.mean()) == np.sign(true_vol - hedge_vol)
        assert abs(both.mean()) > 10 * both.std(ddof=1) / np.sqrt(k)


def test_attribution_with_chunks_jit_and_float32():
    model, call = hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.5)
    grid = hj.TimeGrid(0.5, 10)

    def run(**kw):
        return hj.hedge(model, call, hj.DeltaHedge(), hj.Proportional(0.001), grid, 200, KEY,
                        attribution=True, **kw)

    whole, chunked = run(), run(chunk_size=64)
    for name in TERMS:
        np.testing.assert_array_equal(np.asarray(getattr(whole.attribution, name)),
                                      np.asarray(getattr(chunked.attribution, name)))
    jitted = jax.jit(lambda v: hj.hedge(model.replace(vol=v), call, hj.DeltaHedge(),
                                        hj.Proportional(0.001), grid, 200, KEY,
                                        attribution=True).attribution.gamma)(0.2)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(whole.attribution.gamma),
                               rtol=1e-5)
    assert whole.attribution.gamma.dtype == jnp.float32
    err = jnp.abs(whole.attribution.total() - whole.pnl)
    assert float(jnp.max(err)) < 1e-5 * (1 + float(jnp.max(jnp.abs(whole.pnl))))


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_attribution_must_be_a_bool(bad):
    with pytest.raises(ValueError, match="attribution must be True or False"):
        hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.5), hj.DeltaHedge(),
                 None, hj.TimeGrid(0.5, 4), 64, KEY, attribution=bad)


def test_hedge_command_explains_the_pnl(capsys):
    import json

    from hedgejax.cli import main

    assert main(["hedge", "--paths", "4096", "--steps", "16", "--maturity", "0.25",
                 "--cost", "0.001", "--explain", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    means = {k[len("explain_"):-len("_mean")]: v for k, v in results.items()
             if k.startswith("explain_") and k.endswith("_mean")}
    assert set(means) == {"gamma", "theta", "commission", "residual"}   # the others are 0
    assert abs(sum(means.values()) - results["mean"]) < 1e-4 * (1 + abs(results["mean"]))
    assert abs(means["commission"] + results["mean_cost"]) < 1e-5
    # hedged at the true vol: gamma and theta cancel on average (the theta term is exact,
    # the gamma term's SE is below its std / sqrt(paths))
    assert abs(means["gamma"] + means["theta"]) < 4 * results["explain_gamma_std"] / 64


def test_with_rates_theta_and_financing_cancel_gamma_on_average(x64):
    """The Black-Scholes equation Theta + 1/2 sigma^2 S^2 Gamma + (r - q) S Delta - r V = 0:
    hedged every step at the true vol, gamma + theta + carry + dividends has mean ~ 0 (the
    financing of the book and the shares and the dividends on them are the last two)."""
    res = hj.hedge(hj.BlackScholes(100.0, 0.2, rate=0.05, div=0.02), hj.EuropeanCall(100.0, 0.5),
                   hj.DeltaHedge(), None, hj.TimeGrid(0.5, 32), 8192, KEY, attribution=True)
    a = res.attribution
    both = np.asarray(a.gamma + a.theta + a.carry + a.dividends)
    assert abs(both.mean()) < 4 * both.std(ddof=1) / np.sqrt(both.size) + 1e-3
    assert abs(float(jnp.mean(a.carry))) > 0.1 and abs(float(jnp.mean(a.dividends))) > 0.1
