"""Convertible bond (hedgejax/_convertible.py) and the convertible-arbitrage experiment.

References are independent of the pricer: the Tsiveriotis-Fernandes split and Black-Scholes
in scipy, Merton's series in NumPy (experiments/jump_risk.py's `merton_put`, with put-call
parity), a NumPy Monte Carlo of the jump-to-default model, central finite differences."""

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
from hedgejax.experiments.jump_risk import merton_put

SPOT, VOL, RATE, DIV = 100.0, 0.25, 0.03, 0.01
FACE, RATIO, T = 100.0, 0.8, 1.5


def tf_reference(spot, vol, rate, div, face, ratio, maturity, coupon=0.0, spread=0.0):
    """Tsiveriotis-Fernandes (1998) value of a European convertible without default: the
    face, paid when not converted (prob N(-d2)), and the coupons at rate + spread; the
    shares received on conversion, E[e^{-rT} ratio S_T 1{ratio S_T > face}], at the rate."""
    strike = face / ratio
    sd = vol * math.sqrt(maturity)
    d1 = (math.log(spot / strike) + (rate - div) * maturity) / sd + 0.5 * sd
    d2 = d1 - sd
    risky = math.exp(-(rate + spread) * maturity)
    return (face * risky * norm.cdf(-d2) + coupon * face * maturity * risky
            + ratio * spot * math.exp(-div * maturity) * norm.cdf(d1))


def bs_call(spot, strike, vol, rate, div, maturity):
    sd = vol * math.sqrt(maturity)
    d1 = (math.log(spot / strike) + (rate - div) * maturity) / sd + 0.5 * sd
    return (spot * math.exp(-div * maturity) * norm.cdf(d1)
            - strike * math.exp(-rate * maturity) * norm.cdf(d1 - sd))


@pytest.mark.parametrize("spot", [60.0, 100.0, 125.0, 200.0])
def test_no_credit_is_bond_plus_calls(x64, spot):
    model = hj.BlackScholes(spot, VOL, RATE, DIV)
    cb = hj.Convertible(FACE, RATIO, T, coupon=0.02)
    expected = (FACE * (1 + 0.02 * T) * math.exp(-RATE * T)
                + RATIO * bs_call(spot, FACE / RATIO, VOL, RATE, DIV, T))
    assert float(hj.price(model, cb)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("spread", [0.01, 0.05])
@pytest.mark.parametrize("spot", [70.0, 125.0, 180.0])
def test_credit_spread_is_tsiveriotis_fernandes(x64, spot, spread):
    model = hj.BlackScholes(spot, VOL, RATE, DIV)
    cb = hj.Convertible(FACE, RATIO, T, coupon=0.03, credit_spread=spread)
    expected = tf_reference(spot, VOL, RATE, DIV, FACE, RATIO, T, 0.03, spread)
    assert float(hj.price(model, cb)) == pytest.approx(expected, rel=1e-12)
    # the spread lowers only the cash the bond pays: deep in the money (always converted)
    # the convertible is worth its shares whatever the spread, and far out of the money it
    # is the risky bond floor
    deep = hj.BlackScholes(1e4, VOL, RATE, DIV)
    shares = RATIO * 1e4 * math.exp(-DIV * T) + 0.03 * FACE * T * math.exp(-(RATE + spread) * T)
    assert float(hj.price(deep, cb)) == pytest.approx(shares, rel=1e-10)
    far = hj.BlackScholes(1e-2, VOL, RATE, DIV)
    floor = FACE * (1 + 0.03 * T) * math.exp(-(RATE + spread) * T)
    assert float(hj.price(far, cb)) == pytest.approx(floor, rel=1e-12)


def test_default_model_matches_monte_carlo(x64):
    """lambda > 0: against a NumPy Monte Carlo of the contract (exponential default time, the
    pre-default share at drift r - q + lambda eta, recovery at default), at 4 SE."""
    hazard, recovery, jump, coupon = 0.08, 0.35, 0.6, 0.02
    cb = hj.Convertible(FACE, RATIO, T, coupon=coupon, hazard=hazard, recovery=recovery,
                        default_jump=jump)
    model = hj.BlackScholes(SPOT, VOL, RATE, DIV)
    rng = np.random.default_rng(7)
    n = 400_000
    tau = rng.exponential(1.0 / hazard, n)
    z = rng.standard_normal(n)
    s_T = SPOT * np.exp((RATE - DIV + hazard * jump - 0.5 * VOL**2) * T + VOL * math.sqrt(T) * z)
    alive = tau > T
    pv = np.where(alive,
                  math.exp(-RATE * T) * (np.maximum(FACE, RATIO * s_T) + coupon * FACE * T),
                  np.exp(-RATE * np.minimum(tau, T)) * recovery * FACE)
    mc, se = pv.mean(), pv.std() / math.sqrt(n)
    assert abs(float(hj.price(model, cb)) - mc) < 4 * se
    # and the default lowers the price by far more than the Monte Carlo error
    assert float(hj.price(model, hj.Convertible(FACE, RATIO, T, coupon=coupon))) > mc + 50 * se


def test_large_spot_limit_with_default(x64):
    hazard, recovery, jump = 0.05, 0.4, 0.7
    cb = hj.Convertible(FACE, RATIO, T, coupon=0.01, credit_spread=0.02, hazard=hazard,
                        recovery=recovery, default_jump=jump)
    spot = 1e5
    value = float(hj.price(hj.BlackScholes(spot, VOL, RATE, DIV), cb))
    annuity = (1 - math.exp(-(RATE + hazard) * T)) / (RATE + hazard)
    expected = (RATIO * spot * math.exp(-(DIV + hazard * (1 - jump)) * T)
                + 0.01 * FACE * T * math.exp(-(RATE + 0.02 + hazard) * T)
                + recovery * FACE * hazard * annuity)
    assert value == pytest.approx(expected, rel=1e-10)


def test_merton_no_credit_is_bond_plus_merton_calls(x64):
    jumps = (0.4, -0.12, 0.08)
    model = hj.Merton(SPOT, 0.18, *jumps, rate=RATE)
    strike = FACE / RATIO
    put = merton_put(SPOT, strike, T, 0.18, RATE, *jumps)
    call = put + SPOT - strike * math.exp(-RATE * T)          # parity, no dividend
    expected = FACE * math.exp(-RATE * T) + RATIO * call
    assert float(hj.price(model, hj.Convertible(FACE, RATIO, T))) == pytest.approx(
        expected, rel=1e-9)


def test_greeks_match_finite_differences(x64):
    cb = hj.Convertible(FACE, RATIO, T, coupon=0.02, credit_spread=0.03, hazard=0.04,
                        default_jump=0.5)
    model = hj.BlackScholes(SPOT, VOL, RATE, DIV)
    g = hj.greeks(model, cb)

    def value(spot=SPOT, vol=VOL):
        return float(hj.price(hj.BlackScholes(spot, vol, RATE, DIV), cb))

    h = 1e-3 * SPOT
    assert float(g.delta) == pytest.approx((value(SPOT + h) - value(SPOT - h)) / (2 * h),
                                           rel=1e-6)
    assert float(g.gamma) == pytest.approx(
        (value(SPOT + h) - 2 * value() + value(SPOT - h)) / h**2, rel=1e-4)
    e = 1e-5
    assert float(g.vega) == pytest.approx((value(vol=VOL + e) - value(vol=VOL - e)) / (2 * e),
                                          rel=1e-7)
    # credit sensitivity through the instrument's fields
    d_spread = jax.grad(lambda s: hj.price(model, hj.Convertible(
        FACE, RATIO, T, coupon=0.02, credit_spread=s, hazard=0.04, default_jump=0.5)))(0.03)

    def at(s):
        return float(hj.price(model, hj.Convertible(FACE, RATIO, T, coupon=0.02,
                                                    credit_spread=s, hazard=0.04,
                                                    default_jump=0.5)))
    assert float(d_spread) == pytest.approx((at(0.03 + e) - at(0.03 - e)) / (2 * e), rel=1e-7)
    assert float(d_spread) < 0


def test_transforms_and_float32():
    model = hj.BlackScholes(SPOT, VOL, RATE, DIV)
    cb = hj.Convertible(FACE, RATIO, T, credit_spread=0.02)
    assert hj.price(model, cb).dtype == jnp.float32
    eager = hj.price(model, cb)
    jitted = jax.jit(lambda c: hj.price(model, c))(cb)
    assert float(jitted) == pytest.approx(float(eager), rel=1e-6)
    spreads = jnp.array([0.0, 0.02, 0.05])
    batch = jax.vmap(lambda s: hj.price(model, hj.Convertible(FACE, RATIO, T,
                                                              credit_spread=s)))(spreads)
    assert batch.shape == (3,) and bool(jnp.all(jnp.diff(batch) < 0))
    # at expiry the price is the payoff
    assert float(hj.price(model, cb, spot=150.0, t=T)) == pytest.approx(RATIO * 150.0)
    assert float(hj.price(model, cb, spot=90.0, t=T)) == pytest.approx(FACE)


@pytest.mark.parametrize("field, value, allowed", [
    ("face", 0.0, "finite and > 0"),
    ("conversion_ratio", -1.0, "finite and > 0"),
    ("maturity", 0.0, "finite and > 0"),
    ("coupon", -0.01, "finite and >= 0"),
    ("credit_spread", -0.02, "finite and >= 0"),
    ("hazard", float("nan"), "finite and >= 0"),
    ("recovery", 1.5, "in \\[0, 1\\]"),
    ("default_jump", -0.1, "in \\[0, 1\\]"),
])
def test_bad_parameters_raise(field, value, allowed):
    args = {"face": FACE, "conversion_ratio": RATIO, "maturity": T, field: value}
    with pytest.raises(ValueError, match=f"{field} must be {allowed}, got {field}="):
        hj.Convertible(**args)
    # a traced value out of range is refused when the price runs
    with pytest.raises(Exception, match=f"Convertible.{field} must be"):
        jax.jit(lambda v: hj.price(hj.BlackScholes(SPOT, VOL), hj.Convertible(
            **{**args, field: v})))(value).block_until_ready()


def test_delta_hedge_earns_the_credit_spread_and_nothing_else():
    """No default in the world, the bond bought at the Tsiveriotis-Fernandes price with a
    3% spread and delta-hedged daily at the true vol: the mean P&L is the credit discount
    accrued to T, (V(spread 0) - V(spread 3%)) e^{rT}, within 4 standard errors."""
    model = hj.BlackScholes(SPOT, VOL, RATE, DIV)
    cb = hj.Convertible(FACE, RATIO, 1.0, coupon=0.02, credit_spread=0.03)
    riskless = hj.Convertible(FACE, RATIO, 1.0, coupon=0.02)
    res = hj.hedge(model, cb, hj.DeltaHedge(), hj.NoCost(), hj.TimeGrid(1.0, 126), 4000,
                   jax.random.key(3))
    s = hj.summary(res)
    expected = float(hj.price(model, riskless) - hj.price(model, cb)) * math.exp(RATE)
    assert abs(s["mean"] - expected) < 4 * s["stderr"]
    assert s["std"] < 0.2 * s["unhedged_std"]


@pytest.mark.slow  # about 14 s: eleven hedges and a default-world scan compile
def test_experiment_runs_small(tmp_path):
    folder = run_experiment("convertible-arbitrage", out=tmp_path, progress=False, show=False,
                            overrides={"paths": 2000, "maturity": 0.25,
                                       "realised_vols": [0.15, 0.25, 0.35],
                                       "rebalance_days": [1, 5]})
    payload = check_run_folder(folder, "convertible-arbitrage")
    rows = {r["scenario"]: r for r in payload["table"]}
    # gamma P&L: the mean P&L of the daily delta hedge is the theory's
    # (V(realised vol) - price paid) e^{rT} within 4 standard errors, in every vol world
    vol_rows = [r for r in rows.values() if r["scenario"].startswith("realised vol")]
    assert len(vol_rows) >= 3
    for r in vol_rows:
        assert abs(r["mean_pnl"] - r["theory_mean"]) < 4 * r["stderr"] + 1e-3, r


@pytest.mark.parametrize("hazard,maturity", [(10.0, 10.0), (90.0, 1.0), (50.0, 2.0)])
def test_a_bond_certain_to_default_is_refused_by_name(hazard, maturity):
    import hedgejax as hj

    with pytest.raises(ValueError, match="hazard x maturity must be <= 50"):
        hj.Convertible(100.0, 0.8, maturity, hazard=hazard)
