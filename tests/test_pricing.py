"""Closed-form Black-Scholes prices and autodiff Greeks against independent references.

References: Black-Scholes-Merton formulas with dividend yield written here with `math`,
QuantLib's AnalyticEuropeanEngine, and the payoff at expiry. No expected value is produced
by hedgejax itself.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hedgejax as hj

GREEK_NAMES = ("delta", "gamma", "vega", "theta", "rho", "vanna", "volga")


# ---------------------------------------------------------------------------------------------
# Independent closed forms (math only).
# ---------------------------------------------------------------------------------------------


def _N(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _n(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _d1_d2(S, K, T, vol, r, q):
    sd = vol * math.sqrt(T)
    d1 = (math.log(S / K) + (r - q + 0.5 * vol * vol) * T) / sd
    return d1, d1 - sd


def bs_reference(kind: str, S, K, T, vol, r=0.0, q=0.0) -> dict[str, float]:
    """Price and the seven Greeks of a European call/put (units as in hedgejax: vega and rho
    per 1.00, theta = dV/dt in calendar time per year)."""
    d1, d2 = _d1_d2(S, K, T, vol, r, q)
    dq, dr = math.exp(-q * T), math.exp(-r * T)
    gamma = dq * _n(d1) / (S * vol * math.sqrt(T))
    vega = S * dq * _n(d1) * math.sqrt(T)
    decay = -S * dq * _n(d1) * vol / (2.0 * math.sqrt(T))
    if kind == "call":
        price = S * dq * _N(d1) - K * dr * _N(d2)
        delta = dq * _N(d1)
        theta = decay - r * K * dr * _N(d2) + q * S * dq * _N(d1)
        rho = K * T * dr * _N(d2)
    else:
        price = K * dr * _N(-d2) - S * dq * _N(-d1)
        delta = -dq * _N(-d1)
        theta = decay + r * K * dr * _N(-d2) - q * S * dq * _N(-d1)
        rho = -K * T * dr * _N(-d2)
    vanna = -dq * _n(d1) * d2 / vol
    volga = vega * d1 * d2 / vol
    return dict(price=price, delta=delta, gamma=gamma, vega=vega, theta=theta, rho=rho,
                vanna=vanna, volga=volga)


def digital_reference(S, K, T, vol, r=0.0, q=0.0, cash=1.0, put=False) -> dict[str, float]:
    """Cash-or-nothing digital: price cash e^{-rT} N(+-d2) and its Greeks (except theta)."""
    d1, d2 = _d1_d2(S, K, T, vol, r, q)
    sign = -1.0 if put else 1.0
    dr = math.exp(-r * T)
    price = cash * dr * _N(sign * d2)
    delta = sign * cash * dr * _n(d2) / (S * vol * math.sqrt(T))
    gamma = -sign * cash * dr * _n(d2) * d1 / (S * S * vol * vol * T)
    vega = -sign * cash * dr * _n(d2) * d1 / vol
    rho = -T * price + sign * cash * dr * _n(d2) * math.sqrt(T) / vol
    return dict(price=price, delta=delta, gamma=gamma, vega=vega, rho=rho)


def _close(actual, expected, rtol, atol=0.0):
    np.testing.assert_allclose(float(actual), expected, rtol=rtol, atol=atol)


def _instrument(kind, K, T):
    return hj.EuropeanCall(K, T) if kind == "call" else hj.EuropeanPut(K, T)


# ---------------------------------------------------------------------------------------------
# Vanilla prices and Greeks.
# ---------------------------------------------------------------------------------------------

SPOT, VOL, RATE, DIV = 100.0, 0.25, 0.03, 0.015


@pytest.mark.parametrize("kind", ["call", "put"])
@pytest.mark.parametrize("strike", [80.0, 100.0, 120.0])
@pytest.mark.parametrize("maturity", [0.1, 1.0, 3.0])
def test_vanilla_price_and_all_greeks_match_closed_form(x64, kind, strike, maturity):
    model = hj.BlackScholes(SPOT, VOL, rate=RATE, div=DIV)
    inst = _instrument(kind, strike, maturity)
    ref = bs_reference(kind, SPOT, strike, maturity, VOL, RATE, DIV)
    _close(hj.price(model, inst), ref["price"], rtol=1e-10)
    g = hj.greeks(model, inst)
    assert g.delta.dtype == jnp.float64
    for name in GREEK_NAMES:
        # atol only matters where a Greek crosses zero (e.g. vanna when d2 ~ 0).
        _close(getattr(g, name), ref[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["call", "put"])
def test_greeks_at_later_time_and_other_spot_use_remaining_maturity(x64, kind):
    model = hj.BlackScholes(SPOT, 0.3, rate=0.05, div=0.02)
    inst = _instrument(kind, 95.0, 1.5)
    spot, t = 104.0, 0.6
    ref = bs_reference(kind, spot, 95.0, 1.5 - t, 0.3, 0.05, 0.02)
    _close(hj.price(model, inst, spot=spot, t=t), ref["price"], rtol=1e-10)
    g = hj.greeks(model, inst, spot=spot, t=t)
    for name in GREEK_NAMES:
        _close(getattr(g, name), ref[name], rtol=1e-10, atol=1e-12)


def test_long_call_theta_is_negative_and_rho_positive(x64):
    g = hj.greeks(hj.BlackScholes(100.0, 0.2, rate=0.02), hj.EuropeanCall(100.0, 1.0))
    assert float(g.theta) < 0.0
    assert float(g.rho) > 0.0
    assert float(g.vega) > 0.0


def test_greeks_match_finite_differences_of_price(x64):
    """A check of the units (per 1.00 vol / rate, calendar-time theta) independent of any
    formula: central differences of hj.price itself."""
    model = hj.BlackScholes(100.0, 0.22, rate=0.04, div=0.01)
    inst = hj.EuropeanPut(105.0, 0.75)
    g = hj.greeks(model, inst, t=0.1)
    h = 1e-5

    def p(m=model, spot=100.0, t=0.1):
        return float(hj.price(m, inst, spot=spot, t=t))

    _close(g.delta, (p(spot=100 + h) - p(spot=100 - h)) / (2 * h), rtol=1e-7)
    _close(g.vega, (p(model.replace(vol=0.22 + h)) - p(model.replace(vol=0.22 - h))) / (2 * h),
           rtol=1e-7)
    _close(g.rho, (p(model.replace(rate=0.04 + h)) - p(model.replace(rate=0.04 - h))) / (2 * h),
           rtol=1e-7)
    _close(g.theta, (p(t=0.1 + h) - p(t=0.1 - h)) / (2 * h), rtol=1e-7)


# ---------------------------------------------------------------------------------------------
# QuantLib.
# ---------------------------------------------------------------------------------------------


def _quantlib_option(payoff, S, T_days, vol, r, q):
    ql = pytest.importorskip("QuantLib")
    today = ql.Date(15, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    rts = ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc, ql.Continuous))
    qts = ql.YieldTermStructureHandle(ql.FlatForward(today, q, dc, ql.Continuous))
    vts = ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), vol, dc))
    process = ql.BlackScholesMertonProcess(ql.QuoteHandle(ql.SimpleQuote(S)), qts, rts, vts)
    option = ql.EuropeanOption(payoff(ql), ql.EuropeanExercise(today + T_days))
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    return option


@pytest.mark.parametrize(
    "kind, S, K, days, vol, r, q",
    [
        ("call", 100.0, 100.0, 365, 0.2, 0.05, 0.02),
        ("put", 100.0, 120.0, 730, 0.35, 0.01, 0.03),
        ("call", 90.0, 80.0, 73, 0.15, -0.005, 0.0),
        ("put", 110.0, 95.0, 146, 0.4, 0.07, 0.01),
    ],
)
def test_vanilla_matches_quantlib(x64, kind, S, K, days, vol, r, q):
    option = _quantlib_option(
        lambda ql: ql.PlainVanillaPayoff(ql.Option.Call if kind == "call" else ql.Option.Put,
                                         K), S, days, vol, r, q)
    T = days / 365.0  # Actual365Fixed: exact
    model = hj.BlackScholes(S, vol, rate=r, div=q)
    inst = _instrument(kind, K, T)
    g = hj.greeks(model, inst)
    _close(hj.price(model, inst), option.NPV(), rtol=1e-8)
    _close(g.delta, option.delta(), rtol=1e-8)
    _close(g.gamma, option.gamma(), rtol=1e-8)
    _close(g.vega, option.vega(), rtol=1e-8)  # QuantLib: per 1.00 of vol
    _close(g.rho, option.rho(), rtol=1e-8)  # QuantLib: per 1.00 of rate
    _close(g.theta, option.theta(), rtol=1e-8)  # QuantLib: per year, dV/dt


@pytest.mark.parametrize("put", [False, True])
def test_digital_matches_quantlib(x64, put):
    S, K, days, vol, r, q, cash = 100.0, 110.0, 365, 0.25, 0.03, 0.01, 5.0
    option = _quantlib_option(
        lambda ql: ql.CashOrNothingPayoff(ql.Option.Put if put else ql.Option.Call, K, cash),
        S, days, vol, r, q)
    model = hj.BlackScholes(S, vol, rate=r, div=q)
    inst = hj.Digital(K, 1.0, cash=cash, put=put)
    g = hj.greeks(model, inst)
    _close(hj.price(model, inst), option.NPV(), rtol=1e-8)
    _close(g.delta, option.delta(), rtol=1e-8)
    _close(g.vega, option.vega(), rtol=1e-8)
    _close(g.rho, option.rho(), rtol=1e-8)
    _close(g.theta, option.theta(), rtol=1e-8)


# ---------------------------------------------------------------------------------------------
# Parity, digitals, expiry.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strike", [60.0, 100.0, 150.0])
@pytest.mark.parametrize("maturity", [0.05, 1.0, 5.0])
def test_put_call_parity(x64, strike, maturity):
    S, r, q = 100.0, 0.04, 0.025
    model = hj.BlackScholes(S, 0.3, rate=r, div=q)
    c = float(hj.price(model, hj.EuropeanCall(strike, maturity)))
    p = float(hj.price(model, hj.EuropeanPut(strike, maturity)))
    forward_gap = S * math.exp(-q * maturity) - strike * math.exp(-r * maturity)
    assert abs((c - p) - forward_gap) <= 1e-12 * max(S, strike)


@pytest.mark.parametrize("put", [False, True])
@pytest.mark.parametrize("strike", [80.0, 100.0, 120.0])
def test_digital_price_and_greeks_match_closed_form(x64, put, strike):
    S, T, vol, r, q, cash = 100.0, 0.8, 0.3, 0.04, 0.01, 2.5
    model = hj.BlackScholes(S, vol, rate=r, div=q)
    inst = hj.Digital(strike, T, cash=cash, put=put)
    ref = digital_reference(S, strike, T, vol, r, q, cash=cash, put=put)
    _close(hj.price(model, inst), ref["price"], rtol=1e-10)
    g = hj.greeks(model, inst)
    for name in ("delta", "gamma", "vega", "rho"):
        _close(getattr(g, name), ref[name], rtol=1e-9, atol=1e-12)
    # theta: central difference of the closed-form price in calendar time.
    h = 1e-6
    up = digital_reference(S, strike, T - h, vol, r, q, cash=cash, put=put)["price"]
    down = digital_reference(S, strike, T + h, vol, r, q, cash=cash, put=put)["price"]
    _close(g.theta, (up - down) / (2 * h), rtol=1e-6, atol=1e-9)


def test_digital_call_plus_put_is_discounted_cash(x64):
    model = hj.BlackScholes(100.0, 0.2, rate=0.05)
    total = hj.price(model, hj.Digital(97.0, 2.0, cash=3.0)) + hj.price(
        model, hj.Digital(97.0, 2.0, cash=3.0, put=True))
    _close(total, 3.0 * math.exp(-0.05 * 2.0), rtol=1e-13)


def _assert_greeks_finite(g):
    for name in GREEK_NAMES:
        value = np.asarray(getattr(g, name))
        assert np.all(np.isfinite(value)), f"{name}={value}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("put", [False, True])
def test_digital_at_the_money_near_expiry_is_finite(x64, dtype, put):
    jax.config.update("jax_enable_x64", dtype == "float64")  # x64 fixture restores it
    model = hj.BlackScholes(100.0, 0.2, rate=0.03, div=0.01)
    cases = [(hj.Digital(100.0, 1e-6, put=put), 0.0),
             (hj.Digital(100.0, 1e-9, put=put), 0.0),
             (hj.Digital(100.0, 1.0, put=put), 1.0 - 1e-8)]
    for inst, t in cases:
        value = float(hj.price(model, inst, t=t))
        assert math.isfinite(value) and -1e-6 <= value <= 1.0 + 1e-6
        _assert_greeks_finite(hj.greeks(model, inst, t=t))
    if dtype == "float64":
        # At S = K with tau -> 0, N(d2) -> 1/2: the price tends to half the cash.
        for inst, t in cases:
            assert abs(float(hj.price(model, inst, t=t)) - 0.5) < 1e-3


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_greeks_at_expiry_are_finite(x64, dtype):
    """Every instrument type expiring exactly at t, at and away from the strike. One book holds
    them all (a NaN in any one makes the book's totals NaN), plus a live option."""
    jax.config.update("jax_enable_x64", dtype == "float64")
    model = hj.BlackScholes(100.0, 0.2, rate=0.03, div=0.01)
    book = hj.Book([hj.EuropeanCall(100.0, 1.0), hj.EuropeanPut(100.0, 1.0),
                    hj.EuropeanCall(90.0, 1.0), hj.EuropeanPut(90.0, 1.0),
                    hj.Digital(100.0, 1.0), hj.Digital(110.0, 1.0, put=True),
                    hj.Digital(100.0, 1.0, put=True), hj.EuropeanCall(100.0, 2.0)],
                   [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, -1.0])
    for spot in (90.0, 100.0, 110.0):
        _assert_greeks_finite(hj.greeks(model, book, spot=spot, t=1.0))
    _assert_greeks_finite(hj.greeks(model, hj.EuropeanCall(100.0, 1.0), t=1.0))


def _expired_prices(model, strike, spot):
    return {
        "call": hj.price(model, hj.EuropeanCall(strike, 1.0), spot=spot, t=1.0),
        "put": hj.price(model, hj.EuropeanPut(strike, 1.0), spot=spot, t=1.0),
        "digital call": hj.price(model, hj.Digital(strike, 1.0, cash=2.0), spot=spot, t=1.0),
        "digital put": hj.price(model, hj.Digital(strike, 1.0, cash=2.0, put=True),
                                spot=spot, t=1.0),
    }


@pytest.mark.parametrize("strike", [37.0, 100.0, 1234.5])
def test_price_at_expiry_is_the_payoff(x64, strike):
    """At t = maturity every instrument is worth its payoff at that spot."""
    model = hj.BlackScholes(100.0, 0.2, rate=0.03)
    for spot in (0.5 * strike, 0.995 * strike, 1.005 * strike, 1.5 * strike):
        expected = {
            "call": max(spot - strike, 0.0),
            "put": max(strike - spot, 0.0),
            "digital call": 2.0 if spot > strike else 0.0,
            "digital put": 2.0 if spot < strike else 0.0,
        }
        for name, value in _expired_prices(model, strike, spot).items():
            assert float(value) == pytest.approx(expected[name], rel=1e-12, abs=1e-12), (
                f"{name} strike={strike} spot={spot}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_expired_digital_at_the_strike_pays_nothing(x64, dtype):
    """Digital(K).payoff(K) is 0 for the call (pays if S > K) and for the put (S < K), so an
    expired digital with the spot exactly at the strike is worth 0. The strikes are chosen so
    that exp(log(K)) rounds above K for some and below K for others."""
    jax.config.update("jax_enable_x64", dtype == "float64")
    model = hj.BlackScholes(100.0, 0.2, rate=0.03)
    wrong = []
    for strike in (37.0, 50.0, 90.0, 100.0, 110.0, 123.0, 1234.5):
        for name in ("digital call", "digital put"):
            value = float(_expired_prices(model, strike, strike)[name])
            if value != 0.0:
                wrong.append(f"{name} K=S={strike}: {value}")
    assert not wrong, wrong


def test_expired_vanilla_delta_is_the_payoff_slope(x64):
    model = hj.BlackScholes(100.0, 0.2, rate=0.03, div=0.01)
    assert float(hj.greeks(model, hj.EuropeanCall(100.0, 1.0), spot=110.0, t=1.0).delta) == (
        pytest.approx(1.0, abs=1e-12))
    assert float(hj.greeks(model, hj.EuropeanCall(100.0, 1.0), spot=90.0, t=1.0).delta) == (
        pytest.approx(0.0, abs=1e-12))
    assert float(hj.greeks(model, hj.EuropeanPut(100.0, 1.0), spot=90.0, t=1.0).delta) == (
        pytest.approx(-1.0, abs=1e-12))


# ---------------------------------------------------------------------------------------------
# Books.
# ---------------------------------------------------------------------------------------------


def _mixed_book():
    specs = [
        ("call", hj.EuropeanCall(95.0, 0.5), 3.0),
        ("digital", hj.Digital(105.0, 1.0, cash=10.0), -2.0),
        ("put", hj.EuropeanPut(90.0, 1.5), 1.5),
        ("call", hj.EuropeanCall(120.0, 2.0), -4.0),
        ("digital put", hj.Digital(98.0, 0.25, put=True), 7.0),
        ("put", hj.EuropeanPut(110.0, 0.75), 0.5),
    ]
    return specs, hj.Book([s[1] for s in specs], [s[2] for s in specs])


def test_book_price_and_greeks_are_quantity_weighted_sums(x64):
    model = hj.BlackScholes(100.0, 0.27, rate=0.02, div=0.01)
    specs, book = _mixed_book()
    spot, t = 102.0, 0.1
    expected_price = sum(q * float(hj.price(model, inst, spot=spot, t=t)) for _, inst, q in specs)
    _close(hj.price(model, book, spot=spot, t=t), expected_price, rtol=1e-12)
    g_book = hj.greeks(model, book, spot=spot, t=t)
    per_inst = [(q, hj.greeks(model, inst, spot=spot, t=t)) for _, inst, q in specs]
    for name in GREEK_NAMES:
        expected = sum(q * float(getattr(g, name)) for q, g in per_inst)
        _close(getattr(g_book, name), expected, rtol=1e-10, atol=1e-12)


def test_book_vanilla_part_matches_closed_form_sum(x64):
    """The vanilla part of the mixed book against the formulas directly (not via hj)."""
    model = hj.BlackScholes(100.0, 0.27, rate=0.02, div=0.01)
    specs, _ = _mixed_book()
    vanilla = [(k, inst, q) for k, inst, q in specs if k in ("call", "put")]
    book = hj.Book([s[1] for s in vanilla], [s[2] for s in vanilla])
    refs = [(q, bs_reference(k, 100.0, float(inst.strike), float(inst.maturity), 0.27, 0.02,
                             0.01)) for k, inst, q in vanilla]
    g = hj.greeks(model, book)
    _close(hj.price(model, book), sum(q * r["price"] for q, r in refs), rtol=1e-10)
    for name in GREEK_NAMES:
        _close(getattr(g, name), sum(q * r[name] for q, r in refs), rtol=1e-10, atol=1e-12)


def test_book_preserves_instrument_order():
    specs, book = _mixed_book()
    assert len(book) == len(specs)
    np.testing.assert_allclose(np.asarray(book.maturities),
                               [float(s[1].maturity) for s in specs], rtol=1e-7)
    np.testing.assert_allclose(np.asarray(book.quantity), [s[2] for s in specs], rtol=1e-7)


def test_book_default_quantities_are_one(x64):
    model = hj.BlackScholes(100.0, 0.2)
    call, put = hj.EuropeanCall(100.0, 1.0), hj.EuropeanPut(100.0, 1.0)
    book = hj.Book([call, put])
    np.testing.assert_array_equal(np.asarray(book.quantity), [1.0, 1.0])
    ref = bs_reference("call", 100.0, 100.0, 1.0, 0.2)["price"] + bs_reference(
        "put", 100.0, 100.0, 1.0, 0.2)["price"]
    _close(hj.price(model, book), ref, rtol=1e-12)


def test_large_random_book_matches_closed_form(x64):
    rng = np.random.default_rng(20240601)
    n = 1000
    strikes = rng.uniform(50.0, 150.0, n)
    maturities = rng.uniform(0.1, 2.0, n)
    is_call = rng.random(n) < 0.5
    quantities = rng.normal(0.0, 10.0, n)
    instruments = [hj.EuropeanCall(k, m) if c else hj.EuropeanPut(k, m)
                   for k, m, c in zip(strikes, maturities, is_call, strict=True)]
    book = hj.Book(instruments, quantities)
    S, vol, r, q = 100.0, 0.22, 0.03, 0.012
    model = hj.BlackScholes(S, vol, rate=r, div=q)
    refs = [bs_reference("call" if c else "put", S, k, m, vol, r, q)
            for k, m, c in zip(strikes, maturities, is_call, strict=True)]
    # math.fsum: the reference sum carries no rounding of its own.
    expected_price = math.fsum(w * r_["price"] for w, r_ in zip(quantities, refs, strict=True))
    _close(hj.price(model, book), expected_price, rtol=1e-10)
    g = hj.greeks(model, book)
    for name in ("delta", "gamma", "vega", "rho"):
        expected = math.fsum(w * r_[name] for w, r_ in zip(quantities, refs, strict=True))
        _close(getattr(g, name), expected, rtol=1e-10)


# ---------------------------------------------------------------------------------------------
# Construction and transformations.
# ---------------------------------------------------------------------------------------------


def test_positional_construction_is_strike_then_maturity():
    for cls in (hj.EuropeanCall, hj.EuropeanPut, hj.Digital):
        inst = cls(110.0, 0.5)
        assert float(inst.strike) == 110.0
        assert float(inst.maturity) == 0.5
    d = hj.Digital(110.0, 0.5, 3.0, True)
    assert float(d.cash) == 3.0 and d.put is True


def test_payoffs():
    spots = jnp.asarray([50.0, 99.0, 100.0, 101.0, 150.0])
    np.testing.assert_allclose(hj.EuropeanCall(100.0, 1.0).payoff(spots), [0, 0, 0, 1, 50])
    np.testing.assert_allclose(hj.EuropeanPut(100.0, 1.0).payoff(spots), [50, 1, 0, 0, 0])
    np.testing.assert_allclose(hj.Digital(100.0, 1.0, cash=4.0).payoff(spots), [0, 0, 0, 4, 4])
    np.testing.assert_allclose(hj.Digital(100.0, 1.0, cash=4.0, put=True).payoff(spots),
                               [4, 4, 0, 0, 0])


def test_vmap_over_spots_equals_loop_of_closed_forms(x64):
    model = hj.BlackScholes(100.0, 0.3, rate=0.02, div=0.01)
    call = hj.EuropeanCall(100.0, 1.0)
    spots = np.linspace(60.0, 160.0, 21)
    prices = jax.vmap(lambda s: hj.price(model, call, spot=s))(jnp.asarray(spots))
    expected = [bs_reference("call", s, 100.0, 1.0, 0.3, 0.02, 0.01)["price"] for s in spots]
    np.testing.assert_allclose(np.asarray(prices), expected, rtol=1e-10)
    # vmapped Greeks too (the whole Greeks pytree gets a batch axis).
    gs = jax.vmap(lambda s: hj.greeks(model, call, spot=s))(jnp.asarray(spots))
    np.testing.assert_allclose(
        np.asarray(gs.gamma),
        [bs_reference("call", s, 100.0, 1.0, 0.3, 0.02, 0.01)["gamma"] for s in spots],
        rtol=1e-10)


def test_grad_and_jit_through_price(x64):
    model = hj.BlackScholes(100.0, 0.3, rate=0.02, div=0.01)
    put = hj.EuropeanPut(110.0, 0.7)
    ref = bs_reference("put", 95.0, 110.0, 0.7, 0.3, 0.02, 0.01)
    delta = jax.grad(lambda s: hj.price(model, put, spot=s))(95.0)
    _close(delta, ref["delta"], rtol=1e-10)
    gamma = jax.grad(jax.grad(lambda s: hj.price(model, put, spot=s)))(95.0)
    _close(gamma, ref["gamma"], rtol=1e-10)
    vega = jax.grad(lambda v: hj.price(model.replace(vol=v), put, spot=95.0))(0.3)
    _close(vega, ref["vega"], rtol=1e-10)
    jitted = jax.jit(hj.price)(model, put, 95.0)
    _close(jitted, ref["price"], rtol=1e-10)
    filtered = eqx.filter_jit(hj.greeks)(model, put, 95.0)
    _close(filtered.rho, ref["rho"], rtol=1e-10)


def test_float32_is_default_and_close_to_closed_form():
    model = hj.BlackScholes(100.0, 0.2, rate=0.03, div=0.01)
    call = hj.EuropeanCall(105.0, 1.0)
    value = hj.price(model, call)
    assert value.dtype == jnp.float32
    ref = bs_reference("call", 100.0, 105.0, 1.0, 0.2, 0.03, 0.01)
    _close(value, ref["price"], rtol=1e-5)
    g = hj.greeks(model, call)
    for name in GREEK_NAMES:
        _close(getattr(g, name), ref[name], rtol=2e-4, atol=1e-5)


def test_per_instrument_greeks_are_positions_in_order_and_sum_to_the_book(x64):
    model = hj.BlackScholes(100.0, 0.25, 0.02, 0.01)
    insts = [hj.EuropeanCall(100.0, 1.0), hj.EuropeanPut(90.0, 0.5), hj.Digital(110.0, 2.0),
             hj.EuropeanCall(120.0, 0.25), hj.EuropeanPut(80.0, 1.5)]
    qty = [3.0, -2.0, 5.0, 1.0, -4.0]
    book = hj.Book(insts, qty)
    per = hj.greeks(model, book, per_instrument=True)
    total = hj.greeks(model, book)
    for name in ("delta", "gamma", "vega", "theta", "rho", "vanna", "volga"):
        column = np.asarray(getattr(per, name))
        assert column.shape == (len(insts),)
        expected = [q * float(getattr(hj.greeks(model, i), name)) for q, i in zip(qty, insts,
                                                                                   strict=True)]
        np.testing.assert_allclose(column, expected, rtol=1e-12, atol=1e-14)
        assert column.sum() == pytest.approx(float(getattr(total, name)), rel=1e-10, abs=1e-12)
    with pytest.raises(ValueError, match="Book"):
        hj.greeks(model, insts[0], per_instrument=True)
