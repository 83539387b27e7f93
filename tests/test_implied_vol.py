"""Black-Scholes implied volatility (`implied_vol`, hedgejax/_implied.py) against independent
references: prices from mpmath at 40 digits (round trip vol -> price -> vol over a wide grid),
QuantLib's `blackFormulaImpliedStdDev`, the closed-form vega for d vol / d price, finite
differences for the other derivatives; refusals naming the element; jit, vmap; the CLI."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
import QuantLib as ql

import hedgejax as hj
from hedgejax import cli
from hedgejax._implied import implied_vol

SPOT, RATE, DIV = 100.0, 0.03, 0.01


def _mp_price_vega(spot, strike, tau, vol, rate, div, call):
    """Black-Scholes-Merton price and vega at 40 significant digits (mpmath), as floats."""
    with mp.workdps(40):
        spot, strike, tau, vol, rate, div = map(mp.mpf, (spot, strike, tau, vol, rate, div))
        sd = vol * mp.sqrt(tau)
        d1 = (mp.log(spot / strike) + (rate - div) * tau) / sd + sd / 2
        w = 1 if call else -1
        price = w * (spot * mp.exp(-div * tau) * mp.ncdf(w * d1)
                     - strike * mp.exp(-rate * tau) * mp.ncdf(w * (d1 - sd)))
        vega = spot * mp.exp(-div * tau) * mp.npdf(d1) * mp.sqrt(tau)
        return float(price), float(vega)


def _grid(vols, moneyness, taus):
    """Flattened grid (vol, K/S, tau, sign) over calls (1) and puts (-1), with mpmath prices
    and vegas."""
    v, k, tau, sign = (a.ravel() for a in np.meshgrid(vols, moneyness, taus, [1.0, -1.0],
                                                       indexing="ij"))
    price, vega = np.array([_mp_price_vega(SPOT, SPOT * kk, tt, vv, RATE, DIV, s > 0)
                            for vv, kk, tt, s in zip(v, k, tau, sign, strict=True)]).T
    return v, k, tau, sign, price, vega


def _solve(price, moneyness, tau, sign):
    """implied_vol of calls and puts of one flattened grid: two calls of one compiled program
    (the option type is an input array of it, not a static setting)."""
    out = np.empty_like(price)
    for kind, s in ((hj.EuropeanCall, 1.0), (hj.EuropeanPut, -1.0)):
        m = sign == s
        option = kind(strike=SPOT * moneyness[m], maturity=tau[m])
        out[m] = np.asarray(implied_vol(price[m], option, SPOT, rate=RATE, div=DIV))
    return out


def test_round_trip_wide_grid_float64(x64):
    """vol -> price (mpmath) -> vol to 1e-10 relative on vol 0.01..5, K/S 0.1..10, tau one
    day..30 years, calls and puts, wherever the float64 price carries the vol to that
    precision: a relative vol change of 1e-10 must move the price by >= 1e-14 of itself
    (~45 ulps), i.e. vega vol / price >= 1e-4. Deep in the money at low vol (time value
    below the price's rounding) and where the price underflows, it does not; there the
    returned vol must reprice the given price to within its rounding."""
    vols = np.geomspace(0.01, 5.0, 14)
    moneyness = np.geomspace(0.1, 10.0, 17)
    taus = np.geomspace(1 / 365, 30.0, 11)
    v, k, tau, sign, price, vega = _grid(vols, moneyness, taus)
    # at vol 5 over decades a call's price rounds to its upper bound S e^{-q tau} (a put's to
    # K e^{-r tau}): refused (test_refusals_name_the_element), so left out here
    upper = np.where(sign > 0, SPOT * np.exp(-DIV * tau), SPOT * k * np.exp(-RATE * tau))
    keep = price < upper * (1 - 4e-16)
    assert keep.mean() > 0.98
    v, k, tau, sign, price, vega = (a[keep] for a in (v, k, tau, sign, price, vega))
    got = _solve(price, k, tau, sign)
    assert np.all(np.isfinite(got)) and np.all(got >= 0)

    identifiable = (price > 1e-280) & (vega * v >= 1e-4 * price)
    err = np.abs(got / v - 1)
    assert identifiable.mean() > 0.45          # the test covers half the grid ...
    for corner in (v == vols[0], v == vols[-1], k == moneyness[0], k == moneyness[-1],
                   tau == taus[0], tau == taus[-1]):
        assert (identifiable & corner).any()   # ... and every edge of it
    worst = np.argmax(np.where(identifiable, err, 0))
    assert err[identifiable].max() < 1e-10, (v[worst], k[worst], tau[worst], sign[worst])

    # elsewhere: a vol consistent with the rounded price (at worst a few ulps of the bound)
    rest = np.flatnonzero(~identifiable)[::5]
    repriced = np.array([_mp_price_vega(SPOT, SPOT * k[i], tau[i], got[i], RATE, DIV,
                                        sign[i] > 0)[0] if got[i] > 0 else
                         max(sign[i] * (SPOT * math.exp(-DIV * tau[i])
                                        - SPOT * k[i] * math.exp(-RATE * tau[i])), 0.0)
                         for i in rest])
    scale = SPOT * np.exp(-DIV * tau[rest]) + SPOT * k[rest] * np.exp(-RATE * tau[rest])
    assert np.all(np.abs(repriced - price[rest]) <= 1e-14 * scale)


def test_round_trip_float32():
    """float32 (the default): 1e-4 relative where vega vol / price >= 1e-2 (float32's eps is
    1.2e-7) and the price is well inside float32's range, on vol 0.05..2, K/S 0.5..2, tau
    0.02..5 years."""
    v, k, tau, sign, price, vega = _grid(np.geomspace(0.05, 2.0, 6), np.geomspace(0.5, 2.0, 7),
                                         np.geomspace(0.02, 5.0, 5))
    got = _solve(price.astype(np.float32), k, tau, sign)
    assert got.dtype == np.float32 and np.all(np.isfinite(got))
    identifiable = (price > 1e-30) & (vega * v >= 1e-2 * price)   # float32's range: 1e-38
    assert identifiable.mean() > 0.6
    assert np.max(np.abs(got / v - 1)[identifiable]) < 1e-4


def test_against_quantlib(x64):
    """QuantLib's blackFormulaImpliedStdDev (Newton-safe to accuracy 1e-14) on 36 quotes."""
    rng = np.random.default_rng(7)
    n = 36
    vol = rng.uniform(0.05, 1.0, n)
    strike = SPOT * np.exp(rng.uniform(-0.5, 0.5, n))
    tau = rng.uniform(0.05, 5.0, n)
    rate, div = rng.uniform(-0.01, 0.06, n), rng.uniform(0.0, 0.04, n)
    call = rng.uniform(size=n) < 0.5
    ql_vol, price = np.empty(n), np.empty(n)
    for i in range(n):
        kind = ql.Option.Call if call[i] else ql.Option.Put
        forward = SPOT * math.exp((rate[i] - div[i]) * tau[i])
        discount = math.exp(-rate[i] * tau[i])
        price[i] = ql.blackFormula(kind, strike[i], forward, vol[i] * math.sqrt(tau[i]),
                                   discount)
        ql_vol[i] = ql.blackFormulaImpliedStdDev(kind, strike[i], forward, price[i], discount,
                                                 0.0, 0.3, 1e-14, 1000) / math.sqrt(tau[i])
    book = hj.Book([(hj.EuropeanCall if c else hj.EuropeanPut)(kk, tt)
                    for c, kk, tt in zip(call, strike, tau, strict=True)])
    got = np.asarray(implied_vol(price, book, SPOT, rate=rate, div=div))
    np.testing.assert_allclose(got, ql_vol, rtol=1e-9)
    np.testing.assert_allclose(got, vol, rtol=1e-9)


def test_edges_x64(x64):
    """On the intrinsic bound: 0; a price 0 out of the money: 0; a tiny at-the-money price:
    b = erf(s / 2 sqrt 2) ~ s / sqrt(2 pi), so vol = sqrt(2 pi) price / spot; a price just
    below the upper bound: a large vol that reprices it."""
    call = hj.EuropeanCall(jnp.array([80.0, 120.0, 100.0, 100.0]), 1.0)
    price = jnp.array([20.0, 0.0, 1e-300, 100.0 - 1e-9])
    got = np.asarray(implied_vol(price, call, 100.0))
    assert got[0] == 0 and got[1] == 0
    assert got[2] == pytest.approx(math.sqrt(2 * math.pi) * 1e-302, rel=1e-12)
    assert 10 < got[3] < 30
    assert _mp_price_vega(100.0, 100.0, 1.0, got[3], 0.0, 0.0, True)[0] == pytest.approx(
        100.0 - 1e-9, abs=1e-13)


def test_shapes_book_and_broadcasting():
    """Strike and maturity arrays broadcast with price, spot, rate; a Book gives its
    instruments' vols in the order given; the result's dtype is the working precision."""
    strikes = jnp.array([90.0, 100.0, 110.0])
    prices = jnp.array([[14.0, 8.0, 4.0], [12.0, 7.0, 3.5]])
    got = implied_vol(prices, hj.EuropeanCall(strikes, 1.0), jnp.array([[100.0], [99.0]]))
    assert got.shape == (2, 3) and got.dtype == jnp.float32
    for i, j in np.ndindex(2, 3):
        single = implied_vol(prices[i, j], hj.EuropeanCall(strikes[j], 1.0), [100.0, 99.0][i])
        assert float(got[i, j]) == pytest.approx(float(single), rel=1e-6)
    book = hj.Book([hj.EuropeanPut(95.0, 0.5), hj.EuropeanCall(105.0, 1.0),
                    hj.EuropeanPut(100.0, 2.0)], quantities=[-3.0, 1.0, 2.0])
    got = implied_vol(jnp.array([4.0, 6.0, 9.0]), book, 100.0, rate=0.01)
    expected = [implied_vol(4.0, hj.EuropeanPut(95.0, 0.5), 100.0, rate=0.01),
                implied_vol(6.0, hj.EuropeanCall(105.0, 1.0), 100.0, rate=0.01),
                implied_vol(9.0, hj.EuropeanPut(100.0, 2.0), 100.0, rate=0.01)]
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-6)


def _closed_form_vega(vol, spot, strike, tau, rate, div):
    d1 = (math.log(spot / strike) + (rate - div + vol * vol / 2) * tau) / (vol * math.sqrt(tau))
    return spot * math.exp(-div * tau) * math.exp(-d1 * d1 / 2) / math.sqrt(2 * math.pi) \
        * math.sqrt(tau)


@pytest.mark.parametrize("kind", [hj.EuropeanCall, hj.EuropeanPut])
def test_gradients(x64, kind):
    """d vol / d price = 1 / vega (closed form); d vol / d (spot, strike, maturity, t, rate,
    div) equal central finite differences of implied_vol itself; and the implied vol of the
    library's own price is the identity, derivative 1."""
    spot, strike, maturity, t, rate, div = 100.0, 95.0, 1.5, 0.25, 0.04, 0.015
    vol = 0.3
    tau = maturity - t
    price = _mp_price_vega(spot, strike, tau, vol, rate, div, kind is hj.EuropeanCall)[0]

    def f(price, spot, strike, maturity, t, rate, div):
        return implied_vol(price, kind(strike, maturity), spot, rate=rate, div=div, t=t)

    args = (price, spot, strike, maturity, t, rate, div)
    grads = jax.grad(f, argnums=tuple(range(7)))(*args)
    assert float(grads[0]) == pytest.approx(
        1 / _closed_form_vega(vol, spot, strike, tau, rate, div), rel=1e-10)
    for i in range(1, 7):
        step = 1e-6 * max(abs(args[i]), 1.0)
        up = list(args)
        down = list(args)
        up[i] += step
        down[i] -= step
        fd = (float(f(*up)) - float(f(*down))) / (2 * step)
        assert float(grads[i]) == pytest.approx(fd, rel=1e-6, abs=1e-9), i

    def round_trip(vol):
        model = hj.BlackScholes(spot, vol, rate, div)
        return implied_vol(hj.price(model, kind(strike, maturity), t=t), kind(strike, maturity),
                           spot, rate=rate, div=div, t=t)

    value, slope = jax.value_and_grad(round_trip)(vol)
    assert float(value) == pytest.approx(vol, rel=1e-12)
    assert float(slope) == pytest.approx(1.0, rel=1e-9)


def test_jit_and_vmap_pass_through():
    """Under jit and vmap (prices and strikes traced) the vols are the eager ones; a price out
    of bounds under jit is refused when the program runs, naming the bound."""
    option = hj.EuropeanCall(100.0, 1.0)
    prices = jnp.array([4.0, 8.0, 12.0])
    eager = implied_vol(prices, option, 100.0, rate=0.02)
    jitted = jax.jit(lambda p, s: implied_vol(p, option, s, rate=0.02))
    np.testing.assert_allclose(jitted(prices, 100.0), eager, rtol=1e-6)
    strikes = jnp.array([100.0, 100.0, 100.0])
    mapped = jax.vmap(lambda p, k: implied_vol(p, hj.EuropeanCall(k, 1.0), 100.0, rate=0.02))(
        prices, strikes)
    np.testing.assert_allclose(mapped, eager, rtol=1e-6)
    with pytest.raises(Exception, match="no-arbitrage upper bound"):
        jax.block_until_ready(jitted(jnp.array([4.0, 150.0, 12.0]), 100.0))


_CALLS = hj.EuropeanCall(jnp.array([100.0, 80.0, 120.0]), 1.0)


@pytest.mark.parametrize("price, instrument, kwargs, match", [
    ([5.0, 101.0, 1.0], _CALLS, {},
     r"price\[1\] = 101 is at or above the no-arbitrage upper bound 100 \(S e\^\{-q tau\}"),
    ([5.0, 100.0, 1.0], _CALLS, {}, r"price\[1\] = 100 is at or above"),
    ([5.0, 15.0, 1.0], _CALLS, {},
     r"price\[1\] = 15 is below the no-arbitrage lower bound 20 .* strike 80"),
    ([5.0, 21.0, -0.5], _CALLS, {}, r"price\[2\] = -0.5 is below the no-arbitrage lower"),
    ([5.0, 21.0, float("nan")], _CALLS, {}, r"price\[2\] must be finite, got nan"),
    ([5.0, float("inf"), 1.0], _CALLS, {}, r"price\[1\] must be finite, got inf"),
    (3.0, hj.EuropeanPut(jnp.array([100.0, 130.0]), 1.0), {},
     r"price \(element \[1\] of the inputs broadcast together\) = 3 is below .* a put "
     r"with strike 130"),
    (115.0, hj.EuropeanPut(120.0, 1.0), {"rate": 0.05},
     r"price = 115 is at or above the no-arbitrage upper bound 114.1\d* \(K e\^\{-r tau\}"),
    (1.0, hj.Digital(100.0, 1.0), {}, r"EuropeanCall or EuropeanPut .* got Digital"),
    ([1.0, 1.0], hj.Book([hj.EuropeanCall(100.0, 1.0), hj.Digital(100.0, 1.0)]), {},
     r"instrument \(in the Book\) must be a EuropeanCall or EuropeanPut.* got Digital"),
    ([5.0, 5.0], hj.EuropeanCall(100.0, jnp.array([1.0, 0.5])), {"t": 0.75},
     r"time to maturity \(maturity - t\) must be > 0, got maturity\[1\] - t = 0.5 - 0.75"),
    (5.0, hj.EuropeanCall(100.0, 1.0), {"spot": -100.0}, r"spot must be finite and > 0"),
    (5.0, hj.EuropeanCall(100.0, 1.0), {"rate": float("nan")}, r"rate must be finite"),
    ("5", hj.EuropeanCall(100.0, 1.0), {}, r"price must be a real number"),
])
def test_refusals_name_the_element(price, instrument, kwargs, match):
    kwargs = {"spot": 100.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        implied_vol(price, instrument, **kwargs)


def test_negative_maturity_is_refused_by_the_instrument():
    with pytest.raises(ValueError, match="maturity must be finite and > 0"):
        implied_vol(5.0, hj.EuropeanCall(100.0, -1.0), 100.0)


def test_on_the_intrinsic_bound_within_rounding():
    """A price below the intrinsic value by rounding (here 1 ulp of the discounted share in
    float32) is on the bound, vol 0; one clearly below it is refused."""
    bound = 100.0 - 80.0 * math.exp(-0.05)
    got = implied_vol(np.float32(bound) - np.float32(4e-6), hj.EuropeanCall(80.0, 1.0), 100.0,
                      rate=0.05)
    assert float(got) == 0.0
    with pytest.raises(ValueError, match="below the no-arbitrage lower bound"):
        implied_vol(bound - 1e-3, hj.EuropeanCall(80.0, 1.0), 100.0, rate=0.05)


# -- CLI ---------------------------------------------------------------------------------------

def test_cli_table_and_json(capsys, x64):
    assert cli.main(["implied-vol", "--price", "10.450583572185565", "--strike", "100",
                     "--maturity", "1", "--spot", "100", "--rate", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "implied vol" in out and "0.200000" in out and "vega" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert cli.main(["implied-vol", "--price", "5.573526022256971", "--strike", "100",
                     "--maturity", "1", "--spot", "100", "--rate", "0.05", "--put", "--json",
                     "--x64"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["command"] == "implied-vol"
    assert payload["results"]["implied_vol"] == pytest.approx(0.2, rel=1e-12)
    assert payload["results"]["vega"] == pytest.approx(
        _closed_form_vega(0.2, 100.0, 100.0, 1.0, 0.05, 0.0), rel=1e-12)


@pytest.mark.parametrize("argv, match", [
    (["--price", "120"], "--price 120 is at or above the no-arbitrage upper bound"),
    (["--price", "-1"], "--price -1 is below the no-arbitrage lower bound"),
    (["--price", "nan"], "--price must be finite"),
    (["--price", "5", "--strike", "0"], "--strike must be > 0"),
    (["--price", "5", "--maturity", "1", "--time", "1"], "--maturity must be after --time"),
    (["--price", "1e39"], "--price 1e39 overflows float32"),
    (["--strike", "100"], "required: --price"),
])
def test_cli_bad_input_one_line_exit_2(capsys, argv, match):
    with pytest.raises(SystemExit) as exc:
        cli.main(["implied-vol", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_inputs_that_do_not_broadcast_are_named():
    with pytest.raises(ValueError, match=r"must broadcast together.*price \(3,\).*strike \(2,\)"):
        hj.implied_vol(np.array([5.0, 6.0, 7.0]), hj.EuropeanCall(np.array([100.0, 110.0]), 1.0),
                       100.0)
