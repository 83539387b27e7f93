"""Closed-form prices of lookbacks, forward starts (Black-Scholes) and variance swaps
(Black-Scholes, Heston, Merton), conditioned on the path state, against independent
references: QuantLib's analytic engines, finite differences of QuantLib prices, and numpy
Monte Carlo or quadrature where QuantLib has no engine.

Each price function is compiled once per static instrument layout (`_price` takes the model
and the instrument as arguments), and `hj.greeks` once per layout, to keep the file fast.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import QuantLib as ql
from scipy import integrate

import hedgejax as hj
from hedgejax._pricing.lookback import BGK_BETA

TODAY = ql.Date(15, 1, 2024)
GREEKS = ("delta", "gamma", "vega", "theta", "rho", "vanna", "volga")


# ----------------------------------------------------------------------------- QuantLib
def _process(spot, vol, r, q):
    ql.Settings.instance().evaluationDate = TODAY
    dc = ql.Actual365Fixed()
    curve = lambda x: ql.YieldTermStructureHandle(  # noqa: E731
        ql.FlatForward(TODAY, ql.QuoteHandle(ql.SimpleQuote(x)), dc))
    vol_ts = ql.BlackVolTermStructureHandle(
        ql.BlackConstantVol(TODAY, ql.NullCalendar(), ql.QuoteHandle(ql.SimpleQuote(vol)), dc))
    return ql.BlackScholesMertonProcess(ql.QuoteHandle(ql.SimpleQuote(spot)), curve(q),
                                        curve(r), vol_ts)


def ql_lookback(spot, vol, r, q, days, extreme, strike=None, option="call"):
    """QuantLib's continuous lookback price; maturity `days` / 365 years."""
    proc = _process(spot, vol, r, q)
    ex = ql.EuropeanExercise(TODAY + days)
    typ = ql.Option.Call if option == "call" else ql.Option.Put
    if strike is None:
        opt = ql.ContinuousFloatingLookbackOption(extreme, ql.FloatingTypePayoff(typ), ex)
        opt.setPricingEngine(ql.AnalyticContinuousFloatingLookbackEngine(proc))
    else:
        opt = ql.ContinuousFixedLookbackOption(extreme, ql.PlainVanillaPayoff(typ, strike), ex)
        opt.setPricingEngine(ql.AnalyticContinuousFixedLookbackEngine(proc))
    return opt.NPV()


def ql_lookback_carry_zero(spot, vol, q, days, extreme, strike=None, option="call"):
    """QuantLib has no r = q limit (it divides by b = r - q): Richardson extrapolation of
    the symmetric average over b = +-d, +-d/2 (error O(d^4))."""
    def avg(d):
        return 0.5 * sum(ql_lookback(spot, vol, q + e, q, days, extreme, strike, option)
                         for e in (d, -d))
    d = 1e-3
    return (4.0 * avg(d / 2) - avg(d)) / 3.0


def ql_forward_start(spot, vol, r, q, reset_days, days, moneyness, option="call"):
    proc = _process(spot, vol, r, q)
    typ = ql.Option.Call if option == "call" else ql.Option.Put
    opt = ql.ForwardVanillaOption(moneyness, TODAY + reset_days,
                                  ql.PlainVanillaPayoff(typ, spot),
                                  ql.EuropeanExercise(TODAY + days))
    opt.setPricingEngine(ql.ForwardEuropeanEngine(proc))
    return opt.NPV()


def ql_variance_swap(spot, vol, r, q, days, strike_var, notional, dk, lo, hi):
    proc = _process(spot, vol, r, q)
    swap = ql.VarianceSwap(ql.Position.Long, strike_var, notional, TODAY, TODAY + days)
    calls = list(np.arange(spot, hi + 1e-9, dk))
    puts = list(np.arange(spot, lo - 1e-9, -dk))
    swap.setPricingEngine(ql.ReplicatingVarianceSwapEngine(proc, dk, calls, puts))
    return swap.NPV(), swap.variance()


# ----------------------------------------------------------------------------- hedgejax
@eqx.filter_jit
def _price(model, inst, spot, t, state):
    return hj.price(model, inst, spot, t, state=state)


def _lb_price(spot, vol, r, q, days, extreme, strike=None, option="call", t=0.0,
              monitoring=None):
    model = hj.BlackScholes(spot, vol, r, q)
    inst = hj.Lookback(days / 365, strike=strike, option=option, monitoring=monitoring)
    return float(_price(model, inst, jnp.asarray(float(spot)), jnp.asarray(t),
                        {"extreme": jnp.asarray(math.log(extreme))}))


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


# Running extremes: equal to the spot, and away from it on its side.
FLOATING_CASES = [("call", m) for m in (100.0, 95.0, 70.0)] + \
                 [("put", m) for m in (100.0, 105.0, 140.0)]
# (option, extreme, strike): ITM, ATM and OTM strikes against the extreme and the spot.
FIXED_CASES = [("call", m, k) for m in (100.0, 112.0) for k in (80.0, 100.0, 108.0, 130.0)] + \
              [("put", m, k) for m in (100.0, 88.0) for k in (125.0, 100.0, 92.0, 70.0)]
MARKETS = [(0.25, 0.05, 0.02), (0.4, 0.02, 0.07), (0.15, 0.05, 0.0)]
DAYS = (1, 7, 91, 730)


@pytest.mark.parametrize("vol,r,q", MARKETS)
def test_floating_lookback_vs_quantlib(x64, vol, r, q):
    worst = 0.0
    for option, extreme in FLOATING_CASES:
        for days in DAYS:
            ours = _lb_price(100.0, vol, r, q, days, extreme, None, option)
            ref = ql_lookback(100.0, vol, r, q, days, extreme, None, option)
            worst = max(worst, _rel(ours, ref))
            assert _rel(ours, ref) < 1e-8, (option, extreme, days, ours, ref)
    assert worst < 1e-11


@pytest.mark.parametrize("vol,r,q", MARKETS)
def test_fixed_lookback_vs_quantlib(x64, vol, r, q):
    for option, extreme, strike in FIXED_CASES:
        for days in DAYS:
            ours = _lb_price(100.0, vol, r, q, days, extreme, strike, option)
            ref = ql_lookback(100.0, vol, r, q, days, extreme, strike, option)
            # Deep OTM one-day options are ~1e-30: compare relative above 1e-12 of spot.
            assert abs(ours - ref) < 1e-8 * abs(ref) + 1e-12 * 100.0, \
                (option, extreme, strike, days, ours, ref)


def _mp_lookback(spot, vol, r, q, tau, extreme, strike, option):
    """The same closed forms (module `hedgejax._pricing.lookback`) in 50-digit mpmath, b != 0."""
    mp = pytest.importorskip("mpmath")
    with mp.workdps(50):
        S, vol, r, q, tau = (mp.mpf(v) for v in (spot, vol, r, q, tau))
        b, N = r - q, mp.ncdf
        s = vol * mp.sqrt(tau)

        def bits(X):
            d1 = (mp.log(S / X) + (b + vol**2 / 2) * tau) / s
            return d1, (S / X) ** (-2 * b / vol**2), b * mp.sqrt(tau) / vol
        upper = (option == "call") != (strike is None)
        X = mp.mpf(extreme if strike is None else (max if upper else min)(strike, extreme))
        d1, reflect, h = bits(X)
        k = S * mp.exp(-r * tau) * vol**2 / (2 * b)
        if upper:
            future = (S * mp.exp(-q * tau) * N(d1) - X * mp.exp(-r * tau) * N(d1 - s)
                      + k * (mp.exp(b * tau) * N(d1) - reflect * N(d1 - 2 * h)))
        else:
            future = (X * mp.exp(-r * tau) * N(s - d1) - S * mp.exp(-q * tau) * N(-d1)
                      + k * (reflect * N(2 * h - d1) - mp.exp(b * tau) * N(-d1)))
        if strike is None:
            sign = 1 if option == "call" else -1
            return float(sign * (S * mp.exp(-q * tau) - X * mp.exp(-r * tau)) + future)
        intrinsic = max(extreme - strike, 0.0) if upper else max(strike - extreme, 0.0)
        return float(mp.exp(-r * tau) * intrinsic + future)


def test_lookback_vs_mpmath_deep_out_of_the_money(x64):
    """Where QuantLib's rounding is ~1e-9 relative (prices ~1e-6 of spot) and elsewhere:
    against 50-digit mpmath at 1e-11."""
    for vol, r, q, days, option, extreme, strike in (
            (0.4, 0.02, 0.07, 7, "call", 112.0, 130.0), (0.4, 0.02, 0.07, 1, "put", 100.0, 92.0),
            (0.15, 0.05, 0.0, 7, "put", 100.0, 92.0), (0.2, 0.05, 0.01, 30, "call", 100.0, 125.0),
            (0.25, 0.08, 0.02, 730, "call", 60.0, None), (0.25, 0.08, 0.02, 2, "put", 100.0, None)):
        ours = _lb_price(100.0, vol, r, q, days, extreme, strike, option)
        ref = _mp_lookback(100.0, vol, r, q, days / 365, extreme, strike, option)
        assert ours == pytest.approx(ref, rel=1e-11), (vol, r, q, days, option, extreme, strike)


@pytest.mark.parametrize("days", (3, 182, 2000))
def test_lookback_rate_equal_dividend(x64, days):
    """b = r - q = 0: QuantLib cannot price it; against its prices extrapolated in b."""
    cases = [(None, "call", 100.0), (None, "call", 85.0), (None, "put", 120.0),
             (110.0, "call", 104.0), (95.0, "call", 100.0), (100.0, "put", 100.0),
             (80.0, "put", 90.0)]
    for strike, option, extreme in cases:
        ours = _lb_price(100.0, 0.25, 0.03, 0.03, days, extreme, strike, option)
        ref = ql_lookback_carry_zero(100.0, 0.25, 0.03, days, extreme, strike, option)
        # absolute 1e-11: the cancelling terms of the references are ~S = 100
        assert abs(ours - ref) < 1e-10 * abs(ref) + 1e-11, (strike, option, extreme, ours, ref)


def _bump_model(model, **kw):
    return hj.BlackScholes(kw.get("spot", model.spot), kw.get("vol", model.vol),
                           kw.get("rate", model.rate), model.div)


def _ql_greeks(spot, vol, r, q, days, extreme, strike, option):
    """Central finite differences of QuantLib prices (theta by whole days)."""
    def v(s=spot, sig=vol, rr=r, d=days):
        return ql_lookback(s, sig, rr, q, d, extreme, strike, option)
    hs, hv, hr = 1e-3, 1e-4, 1e-4
    v0 = v()
    out = {
        "delta": (v(s=spot + hs) - v(s=spot - hs)) / (2 * hs),
        "gamma": (v(s=spot + hs) - 2 * v0 + v(s=spot - hs)) / hs**2,
        "vega": (v(sig=vol + hv) - v(sig=vol - hv)) / (2 * hv),
        "rho": (v(rr=r + hr) - v(rr=r - hr)) / (2 * hr),
        "theta": (v(d=days - 1) - v(d=days + 1)) / (2 / 365),
        "volga": (v(sig=vol + 2e-4) - 2 * v0 + v(sig=vol - 2e-4)) / 4e-8,
        "vanna": (v(s=spot + hs, sig=vol + 1e-3) - v(s=spot + hs, sig=vol - 1e-3)
                  - v(s=spot - hs, sig=vol + 1e-3) + v(s=spot - hs, sig=vol - 1e-3))
        / (4 * hs * 1e-3),
    }
    return out


# Spot strictly inside the extreme's side so that both sides of a spot bump are valid.
GREEK_CASES = [(None, "call", 92.0), (None, "put", 109.0), (105.0, "call", 110.0),
               (120.0, "call", 103.0), (97.0, "put", 93.0), (85.0, "put", 95.0)]


@pytest.mark.parametrize("strike,option,extreme", [
    GREEK_CASES[0], *[pytest.param(*case, marks=pytest.mark.slow) for case in GREEK_CASES[1:]]])
def test_lookback_greeks_vs_quantlib_differences(x64, strike, option, extreme):
    spot, vol, r, q, days = 100.0, 0.3, 0.04, 0.015, 182
    model = hj.BlackScholes(spot, vol, r, q)
    inst = hj.Lookback(days / 365, strike=strike, option=option)
    g = hj.greeks(model, inst, spot, 0.0, state={"extreme": math.log(extreme)}).as_dict()
    ref = _ql_greeks(spot, vol, r, q, days, extreme, strike, option)
    tol = {"delta": 1e-7, "gamma": 1e-5, "vega": 1e-6, "rho": 1e-6, "theta": 1e-4,
           "volga": 1e-4, "vanna": 1e-4}
    for name, value in ref.items():
        scale = max(abs(value), 1e-3)
        assert abs(g[name] - value) < tol[name] * scale, (name, g[name], value)


@pytest.mark.parametrize("strike,option", [(None, "call"), (None, "put"), (100.0, "call"),
                                           (110.0, "call"), (100.0, "put"), (90.0, "put")])
def test_lookback_greeks_with_spot_at_the_extreme(x64, strike, option):
    """At S = running extreme (the flat-path state) delta and gamma are the one-sided
    derivatives from the side the spot can be on, extreme held fixed."""
    spot, vol, r, q, days = 100.0, 0.3, 0.04, 0.015, 182
    model = hj.BlackScholes(spot, vol, r, q)
    inst = hj.Lookback(days / 365, strike=strike, option=option)
    g = hj.greeks(model, inst, spot, 0.0, state={"extreme": math.log(spot)})
    if strike is None and option == "call":     # state=None is the same flat path
        flat = hj.greeks(model, inst, spot, 0.0)
        for name in GREEKS:
            assert float(getattr(g, name)) == pytest.approx(float(getattr(flat, name)),
                                                            rel=1e-14)
    inward = 1.0 if inst.uses_min else -1.0
    h = 0.01
    f = [ql_lookback(spot + inward * k * h, vol, r, q, days, spot, strike, option)
         for k in range(4)]
    delta = inward * (-3 * f[0] + 4 * f[1] - f[2]) / (2 * h)
    gamma = (2 * f[0] - 5 * f[1] + 4 * f[2] - f[3]) / h**2
    assert float(g.delta) == pytest.approx(delta, rel=1e-6, abs=1e-9)
    assert float(g.gamma) == pytest.approx(gamma, rel=1e-4, abs=1e-9)


EXPIRY_CASES = [(None, "call", None), (None, "put", None), (100.0, "call", None),
                (100.0, "put", None), (None, "put", 12),
                pytest.param(100.0, "call", 12, marks=pytest.mark.slow),
                pytest.param(None, "call", 12, marks=pytest.mark.slow),
                pytest.param(100.0, "put", 12, marks=pytest.mark.slow)]


@pytest.mark.parametrize("strike,option,monitoring", EXPIRY_CASES)
def test_lookback_at_and_near_expiry_with_spot_at_extreme(x64, strike, option, monitoring):
    """At expiry (t = maturity and after) the price is the payoff of the state; just before,
    within the option's time value (~ S vol sqrt(tau)); Greeks finite, with the spot at the
    running extreme and away from it."""
    vol = 0.3
    model = hj.BlackScholes(100.0, vol, 0.04, 0.015)
    inst = hj.Lookback(0.5, strike=strike, option=option, monitoring=monitoring)
    for spot, extreme in ((100.0, 100.0), (100.0, 100.0 * (0.9 if inst.uses_min else 1.1))):
        state = {"extreme": math.log(extreme)}
        payoff = float(inst.path_payoff({"extreme": jnp.asarray(math.log(extreme))},
                                        jnp.asarray(spot), model.rate))
        for t in (0.5, 0.5 + 1e-3, 0.5 - 1e-12):
            p = float(hj.price(model, inst, spot, t, state=state))
            time_value = spot * vol * math.sqrt(max(0.5 - t, 0.0))
            # (1e-9: discounting over tau = 1e-12 years and rounding)
            assert payoff - 1e-9 <= p <= payoff + time_value + 1e-9, (t, spot, extreme)
            g = hj.greeks(model, inst, spot, t, state=state).as_dict()
            assert all(np.isfinite(v) for v in g.values()), (t, g)


def test_lookback_price_continuous_towards_expiry(x64):
    """Prices approach the payoff as tau -> 0 (continuous monitoring), from both sides of the
    extreme's distance."""
    model = hj.BlackScholes(100.0, 0.3, 0.04, 0.015)
    for strike, option, extreme in ((None, "call", 96.0), (None, "put", 104.0),
                                    (98.0, "call", 101.0), (102.0, "put", 99.0)):
        inst = hj.Lookback(1.0, strike=strike, option=option)
        state = {"extreme": math.log(extreme)}
        payoff = float(inst.path_payoff({"extreme": jnp.asarray(math.log(extreme))},
                                        jnp.asarray(100.0), 0.0))
        near = float(hj.price(model, inst, 100.0, 1.0 - 1e-9, state=state))
        assert near == pytest.approx(payoff, abs=1e-6)


def test_floating_call_dominates_atm_european(x64):
    for vol, r, q, maturity in ((0.2, 0.03, 0.0, 1.0), (0.5, 0.0, 0.04, 0.1),
                                (0.1, 0.08, 0.02, 3.0), (0.3, 0.02, 0.02, 0.5)):
        model = hj.BlackScholes(100.0, vol, r, q)
        lb = float(hj.price(model, hj.Lookback(maturity, option="call")))
        eu = float(hj.price(model, hj.EuropeanCall(100.0, maturity)))
        assert lb > eu > 0.0


@pytest.mark.parametrize("days", (30, 365))
def test_lookback_carry_branch_is_continuous(x64, days):
    """Prices and Greeks agree on both sides of the small-b threshold |h| = eps^(1/6), where
    the division-free form hands over to the textbook one."""
    vol, q = 0.3, 0.02
    tau = days / 365
    threshold = float(np.finfo(np.float64).eps) ** (1 / 6)
    b = threshold * vol / math.sqrt(tau)
    for strike, option, extreme in ((None, "call", 90.0), (None, "put", 100.0),
                                    (120.0, "call", 110.0), (85.0, "put", 95.0)):
        inst = hj.Lookback(tau, strike=strike, option=option)
        below, above = (hj.greeks(hj.BlackScholes(100.0, vol, q + f * b, q), inst, 100.0, 0.0,
                                  state={"extreme": math.log(extreme)}).as_dict()
                        for f in (1 - 1e-9, 1 + 1e-9))
        p_below, p_above = (_lb_price(100.0, vol, q + f * b, q, days, extreme, strike, option)
                            for f in (1 - 1e-9, 1 + 1e-9))
        # The price moves by rho x 2e-9 b across; the branches' rounding is ~1e-12 of it.
        step = 0.5 * (below["rho"] + above["rho"]) * 2e-9 * b
        assert abs(p_above - p_below - step) < 1e-12 * p_above
        for name in GREEKS:
            assert below[name] == pytest.approx(above[name], rel=1e-7, abs=1e-10), name


@pytest.mark.slow  # seconds of compiling: the slow tier keeps the fast one under 12 min
def test_lookback_float32(x64):
    """float32 prices and Greeks are finite and close to float64, also at and near r = q."""
    cases = [(None, "call", 90.0), (None, "put", 100.0), (110.0, "call", 105.0),
             (90.0, "put", 100.0)]
    markets = [(0.25, 0.05, 0.02), (0.25, 0.03, 0.03), (0.25, 0.0301, 0.03), (0.25, 0.1, 0.03)]
    reference = {}
    for strike, option, extreme in cases:
        for vol, r, q in markets:
            reference[strike, option, r] = _lb_price(100.0, vol, r, q, 91, extreme, strike,
                                                      option)
    jax.config.update("jax_enable_x64", False)
    try:
        for strike, option, extreme in cases:
            for vol, r, q in markets:
                p = _lb_price(100.0, vol, r, q, 91, extreme, strike, option)
                assert p == pytest.approx(reference[strike, option, r], rel=2e-5)
        model = hj.BlackScholes(100.0, 0.25, 0.03, 0.03)
        for t in (0.0, 0.25 - 1e-6, 0.25):
            g = hj.greeks(model, hj.Lookback(0.25), 100.0, t)
            assert all(np.isfinite(v) for v in g.as_dict().values())
    finally:
        jax.config.update("jax_enable_x64", True)


def test_lookback_vectorised_and_jitted(x64):
    """Per-path spots and extremes (any shape), under jit, and jit of vmap of grad (delta
    against QuantLib differences)."""
    model = hj.BlackScholes(100.0, 0.25, 0.05, 0.02)
    inst = hj.Lookback(73 / 365, option="put")
    spots = jnp.array([[90.0, 100.0], [95.0, 120.0]])
    extremes = jnp.log(jnp.array([[120.0, 100.0], [130.0, 125.0]]))

    def one(s, e):
        return hj.price(model, inst, s, 0.0, state={"extreme": e})
    prices = jax.jit(one)(spots, extremes)
    deltas = jax.jit(jax.vmap(jax.vmap(jax.grad(one))))(spots, extremes)
    h = 1e-3
    for i in range(2):
        for j in range(2):
            s, m = float(spots[i, j]), math.exp(float(extremes[i, j]))
            assert float(prices[i, j]) == pytest.approx(
                ql_lookback(s, 0.25, 0.05, 0.02, 73, m, None, "put"), rel=1e-8)
            delta = (ql_lookback(s + h, 0.25, 0.05, 0.02, 73, m, None, "put")
                     - ql_lookback(s - h, 0.25, 0.05, 0.02, 73, m, None, "put")) / (2 * h)
            assert float(deltas[i, j]) == pytest.approx(delta, rel=1e-7)


# ------------------------------------------------------------------ discrete monitoring
def _discrete_mc(spot, vol, r, q, maturity, n, n_paths, seed, extreme=None, dates_left=None):
    """Antithetic numpy Monte Carlo of the discrete max and min over the dates ahead (the
    next `dates_left` of the n, one every maturity / n), with the running extreme given."""
    rng = np.random.default_rng(seed)
    dt = maturity / n
    k = n if dates_left is None else dates_left
    z = rng.standard_normal((n_paths // 2, k))
    z = np.concatenate([z, -z])
    logs = math.log(spot) + np.cumsum((r - q - 0.5 * vol**2) * dt + vol * math.sqrt(dt) * z,
                                      axis=1)
    path = np.exp(logs)
    hi = spot if extreme is None else extreme
    lo = spot if extreme is None else extreme
    return path[:, -1], np.maximum(hi, path.max(1)), np.minimum(lo, path.min(1)), k * dt


def _mc_stats(values, discount):
    v = discount * values
    return v.mean(), v.std(ddof=1) / math.sqrt(v.size)


@pytest.mark.parametrize("n,tol", [(52, 0.004), (12, 0.017)])
def test_discrete_lookback_bgk_vs_monte_carlo(x64, n, tol):
    """Broadie-Glasserman-Kou shift against a discrete Monte Carlo (200,000 antithetic
    paths): within 4 standard errors plus `tol` relative (the correction's own error,
    o(sqrt(dt))); the continuous price is far outside that (the test can fail)."""
    spot, vol, r, q, maturity = 100.0, 0.3, 0.05, 0.02, 1.0
    s_t, mx, mn, _ = _discrete_mc(spot, vol, r, q, maturity, n, 200_000, seed=7)
    disc = math.exp(-r * maturity)
    model = hj.BlackScholes(spot, vol, r, q)
    for strike, option, payoff in ((None, "call", s_t - mn), (None, "put", mx - s_t),
                                   (110.0, "call", np.maximum(mx - 110.0, 0.0)),
                                   (95.0, "put", np.maximum(95.0 - mn, 0.0))):
        mc, se = _mc_stats(payoff, disc)
        discrete = float(hj.price(model, hj.Lookback(maturity, strike, option, n)))
        continuous = float(hj.price(model, hj.Lookback(maturity, strike, option)))
        assert abs(discrete - mc) < 4 * se + tol * mc, (strike, option, discrete, mc, se)
        assert abs(continuous - mc) > 0.05 * mc


def test_discrete_lookback_mid_life_vs_monte_carlo(x64):
    """Mid-life on a date (26 of 52 weekly dates left), running extreme away from the spot."""
    spot, vol, r, q, maturity, n = 100.0, 0.3, 0.05, 0.02, 1.0, 52
    model = hj.BlackScholes(spot, vol, r, q)
    for strike, option, extreme in ((None, "put", 112.0), (None, "call", 90.0),
                                    (105.0, "call", 108.0), (100.0, "put", 93.0)):
        s_t, mx, mn, tau = _discrete_mc(spot, vol, r, q, maturity, n, 200_000, seed=11,
                                        extreme=extreme, dates_left=26)
        payoff = {(None, "put"): mx - s_t, (None, "call"): s_t - mn,
                  (105.0, "call"): np.maximum(mx - 105.0, 0.0),
                  (100.0, "put"): np.maximum(100.0 - mn, 0.0)}[strike, option]
        mc, se = _mc_stats(payoff, math.exp(-r * tau))
        inst = hj.Lookback(maturity, strike, option, n)
        ours, continuous = (float(hj.price(model, i, spot, maturity - tau,
                                           state={"extreme": math.log(extreme)}))
                            for i in (inst, hj.Lookback(maturity, strike, option)))
        # The shift's own error with 26 dates left: -0.3% to -1.0% (module docstring).
        assert abs(ours - mc) < 4 * se + 0.012 * mc, (strike, option, ours, mc, se)
        assert abs(continuous - mc) > 0.04 * mc


def test_discrete_lookback_is_the_published_shift(x64):
    """The discrete price is phi V_cont(S, extreme / phi, K / phi) plus sign (1 - phi) S
    e^{-qT} for floating strikes, phi = e^{-+beta sigma sqrt(dt)} (checked against QuantLib's
    continuous prices at the shifted arguments)."""
    spot, vol, r, q, days, n = 100.0, 0.3, 0.05, 0.02, 365, 12
    model = hj.BlackScholes(spot, vol, r, q)
    a = BGK_BETA * vol * math.sqrt(1.0 / n)
    for strike, option, extreme in ((None, "call", 95.0), (None, "put", 100.0),
                                    (105.0, "call", 100.0), (90.0, "put", 97.0)):
        inst = hj.Lookback(days / 365, strike, option, n)
        phi = math.exp(a) if inst.uses_min else math.exp(-a)
        shifted_strike = None if strike is None else strike / phi
        ref = phi * ql_lookback(spot, vol, r, q, days, extreme / phi, shifted_strike, option)
        if strike is None:
            sign = 1.0 if option == "call" else -1.0
            ref += sign * (1 - phi) * spot * math.exp(-q)
        ours = float(hj.price(model, inst, spot, 0.0, state={"extreme": math.log(extreme)}))
        assert ours == pytest.approx(ref, rel=1e-10)


# ------------------------------------------------------------------------ forward start
@pytest.mark.parametrize("option", ["call", "put"])
def test_forward_start_vs_quantlib(x64, option):
    for vol, r, q in ((0.25, 0.05, 0.02), (0.4, 0.01, 0.05), (0.15, 0.03, 0.03)):
        for moneyness in (0.8, 1.0, 1.15):
            for reset, days in ((30, 60), (91, 365), (365, 1000)):
                model = hj.BlackScholes(100.0, vol, r, q)
                inst = hj.ForwardStart(reset / 365, days / 365, moneyness, option)
                ours = float(_price(model, inst, jnp.asarray(100.0), jnp.asarray(0.0),
                                    {"strike": jnp.asarray(7.0)}))   # ignored before start
                ref = ql_forward_start(100.0, vol, r, q, reset, days, moneyness, option)
                assert ours == pytest.approx(ref, rel=1e-8), (vol, r, q, moneyness, reset)


def test_forward_start_mid_life(x64):
    """Before the start the price is S e^{-q (start - t)} BS(1, moneyness, T - start) (QuantLib
    from t, with `days - elapsed`); from the start on, the vanilla with the state's strike."""
    model = hj.BlackScholes(100.0, 0.3, 0.04, 0.01)
    inst = hj.ForwardStart(0.5, 1.5, 1.05, "call")
    # t = 0.2 (73 days): QuantLib's reset in 182.5 - 73 days is not a whole day; use spots.
    for spot in (80.0, 100.0, 125.0):
        ours = float(hj.price(model, inst, spot, 0.2, state={"strike": 1.0}))
        ref = ql_forward_start(spot, 0.3, 0.04, 0.01, 110, 475, 1.05, "call")
        # Same forward-start price with start - t = 110 / 365, T - start = 365 / 365.
        inst_q = hj.ForwardStart(110 / 365, 475 / 365, 1.05, "call")
        assert float(hj.price(model, inst_q, spot, 0.0)) == pytest.approx(ref, rel=1e-8)
        # Scale invariance: the price before the start is proportional to the spot.
        assert ours / spot == pytest.approx(
            float(hj.price(model, inst, 100.0, 0.2)) / 100.0, rel=1e-12)
    for t in (0.5, 0.9, 1.5 - 1e-6):
        for strike, spot in ((95.0, 100.0), (110.0, 100.0), (100.0, 100.0)):
            ours = float(hj.price(model, inst, spot, t, state={"strike": strike}))
            vanilla = float(hj.price(model, hj.EuropeanCall(strike, 1.5), spot, t))
            assert ours == pytest.approx(vanilla, rel=1e-12, abs=1e-12)
    put = hj.ForwardStart(0.5, 1.5, 1.05, "put")
    assert float(hj.price(model, put, 90.0, 1.5, state={"strike": 104.0})) == \
        pytest.approx(14.0, rel=1e-12)
    assert float(hj.price(model, put, 90.0, 2.0, state={"strike": 104.0})) == \
        pytest.approx(14.0, rel=1e-12)


def _ql_european_greeks(spot, vol, r, q, days, strike, option="call"):
    proc = _process(spot, vol, r, q)
    typ = ql.Option.Call if option == "call" else ql.Option.Put
    opt = ql.EuropeanOption(ql.PlainVanillaPayoff(typ, strike), ql.EuropeanExercise(TODAY + days))
    opt.setPricingEngine(ql.AnalyticEuropeanEngine(proc))
    return {"delta": opt.delta(), "gamma": opt.gamma(), "vega": opt.vega(), "rho": opt.rho(),
            "theta": opt.theta()}


def test_forward_start_greeks(x64):
    """Before the start: delta = price / spot, gamma 0, vega against QuantLib differences;
    after it, QuantLib's analytic Greeks of the vanilla with the fixed strike; finite at
    expiry."""
    model = hj.BlackScholes(100.0, 0.3, 0.04, 0.01)
    inst = hj.ForwardStart(91 / 365, 365 / 365, 1.0, "call")
    state = {"strike": 1.0}                           # not read before the start
    g = hj.greeks(model, inst, 100.0, 0.0, state=state)
    h = 0.01
    delta = (ql_forward_start(100 + h, 0.3, 0.04, 0.01, 91, 365, 1.0)
             - ql_forward_start(100 - h, 0.3, 0.04, 0.01, 91, 365, 1.0)) / (2 * h)
    vega = (ql_forward_start(100, 0.3 + 1e-4, 0.04, 0.01, 91, 365, 1.0)
            - ql_forward_start(100, 0.3 - 1e-4, 0.04, 0.01, 91, 365, 1.0)) / 2e-4
    assert float(g.delta) == pytest.approx(delta, rel=1e-8)
    assert float(g.delta) == pytest.approx(ql_forward_start(100, 0.3, 0.04, 0.01, 91, 365, 1.0)
                                           / 100.0, rel=1e-12)
    assert float(g.gamma) == pytest.approx(0.0, abs=1e-12)
    assert float(g.vega) == pytest.approx(vega, rel=1e-6)
    for strike, spot in ((100.0, 103.0), (110.0, 95.0)):
        after = hj.greeks(model, inst, spot, 1.0 - 146 / 365, state={"strike": strike})
        ref = _ql_european_greeks(spot, 0.3, 0.04, 0.01, 146, strike)
        for name, value in ref.items():
            assert float(getattr(after, name)) == pytest.approx(value, rel=1e-10), name
    for t in (1.0, 1.0 - 1e-12):
        g = hj.greeks(model, inst, 100.0, t, state={"strike": 100.0})
        assert all(np.isfinite(v) for v in g.as_dict().values())


# ------------------------------------------------------------------------ variance swaps
def _heston_remaining_quad(v0, kappa, theta, tau):
    """The integral of E[v_s] = theta + (v0 - theta) e^{-kappa s} over [0, tau]."""
    return integrate.quad(lambda s: theta + (v0 - theta) * math.exp(-kappa * s), 0.0, tau,
                          epsabs=1e-15, epsrel=1e-13)[0]


def _swap_value(notional, rate, tau, maturity, sum_sq, remaining, strike_vol):
    return notional * math.exp(-rate * max(tau, 0.0)) * (
        (sum_sq + remaining) / maturity - strike_vol**2)


VS_STATES = [(0.0, 0.0), (0.4, 0.018), (1.0 - 1e-9, 0.05), (1.0, 0.05), (1.3, 0.05)]


def test_variance_swap_black_scholes_and_merton_closed_forms(x64):
    inst = hj.VarianceSwap(1.0, 0.22, notional=1e4)
    bs = hj.BlackScholes(100.0, 0.25, 0.05, 0.02)
    mer = hj.Merton(100.0, 0.15, 0.8, -0.12, 0.18, 0.05, 0.02)
    for t, sum_sq in VS_STATES:
        tau = 1.0 - t
        for model, rate_of_var in ((bs, 0.25**2),
                                   (mer, 0.15**2 + 0.8 * (0.12**2 + 0.18**2))):
            ref = _swap_value(1e4, 0.05, tau, 1.0, sum_sq, rate_of_var * max(tau, 0.0), 0.22)
            ours = float(_price(model, inst, jnp.asarray(100.0), jnp.asarray(t),
                                {"sum_sq": jnp.asarray(sum_sq)}))
            assert ours == pytest.approx(ref, rel=1e-12, abs=1e-9), (type(model), t)


@pytest.mark.filterwarnings("ignore::hedgejax.FellerWarning")
def test_variance_swap_heston_vs_quadrature(x64):
    inst = hj.VarianceSwap(2.0, 0.2, notional=100.0)
    for v0, kappa, theta in ((0.09, 1.5, 0.04), (0.01, 3.0, 0.06), (0.04, 1e-9, 0.02),
                             (0.05, 40.0, 0.03)):
        model = hj.Heston(100.0, v0, kappa, theta, 0.5, -0.7, 0.03, 0.01)
        for t, sum_sq in ((0.0, 0.0), (0.7, 0.03), (2.0 - 1e-7, 0.09), (2.0, 0.09)):
            tau = 2.0 - t
            ref = _swap_value(100.0, 0.03, tau, 2.0, sum_sq,
                              _heston_remaining_quad(v0, kappa, theta, tau), 0.2)
            ours = float(_price(model, inst, jnp.asarray(100.0), jnp.asarray(t),
                                {"sum_sq": jnp.asarray(sum_sq)}))
            assert ours == pytest.approx(ref, rel=1e-11, abs=1e-11), (v0, kappa, theta, t)


def test_variance_swap_heston_per_path_variance(x64):
    """`Heston.conditioned` puts one v0 per path: one price per path."""
    model = hj.Heston(100.0, 0.04, 2.0, 0.05, 0.4, -0.5, 0.02)
    variances = jnp.array([0.01, 0.04, 0.2])
    conditioned = model.conditioned(hj.ModelState(jnp.zeros(3), variances))
    inst = hj.VarianceSwap(1.0, 0.2)
    sums = jnp.array([0.0, 0.01, 0.02])
    ours = hj.price(conditioned, inst, jnp.full(3, 100.0), 0.25, state={"sum_sq": sums})
    for i in range(3):
        ref = _swap_value(1.0, 0.02, 0.75, 1.0, float(sums[i]),
                          _heston_remaining_quad(float(variances[i]), 2.0, 0.05, 0.75), 0.2)
        assert float(ours[i]) == pytest.approx(ref, rel=1e-12)


def test_variance_swap_vs_quantlib_replication(x64):
    """QuantLib's replicating engine (q = 0: it leaves the dividend yield out of its
    forward; strikes 20..400 every 0.1, whose strip error is ~3e-6 of the fair variance)."""
    for vol, r, days in ((0.25, 0.05, 365), (0.4, 0.02, 182)):
        npv, fair = ql_variance_swap(100.0, vol, r, 0.0, days, 0.04, 1e4, 0.1, 20.0, 400.0)
        model = hj.BlackScholes(100.0, vol, r, 0.0)
        inst = hj.VarianceSwap(days / 365, 0.2, notional=1e4)
        ours = float(hj.price(model, inst))
        implied = ours / (1e4 * math.exp(-r * days / 365)) + 0.04
        assert implied == pytest.approx(fair, rel=1e-5)
        assert ours == pytest.approx(npv, rel=1e-5 * fair / abs(fair - 0.04))


def test_variance_swap_black_scholes_daily_monte_carlo(x64):
    """Daily realised variance (the swap's grid definition, mean not removed) under
    Black-Scholes: MC mean = price + the drift term (r - q - vol^2/2)^2 dt, within 4 SE; the
    drift term itself is ~15 SE (the comparison can fail)."""
    vol, r, q, n = 0.2, 0.25, 0.0, 252
    dt = 1.0 / n
    rng = np.random.default_rng(3)
    returns = (r - q - 0.5 * vol**2) * dt + vol * math.sqrt(dt) * rng.standard_normal(
        (100_000, n))
    realised = (returns**2).sum(1)
    inst = hj.VarianceSwap(1.0, 0.0, notional=1.0)
    price = float(hj.price(hj.BlackScholes(100.0, vol, r, q), inst)) * math.exp(r)
    drift = (r - q - 0.5 * vol**2) ** 2 * dt
    mean, se = realised.mean(), realised.std(ddof=1) / math.sqrt(realised.size)
    assert abs(mean - (price + drift)) < 4 * se
    assert drift > 10 * se


def test_variance_swap_merton_daily_monte_carlo(x64):
    """Daily realised variance under Merton (exact compound-Poisson steps): mean = price +
    the drift term m^2 dt, m the log-return's drift per year."""
    vol, lam, mu_j, sd_j, r, q, n = 0.15, 3.0, -0.08, 0.1, 0.02, 0.01, 252
    dt = 1.0 / n
    kbar = math.exp(mu_j + 0.5 * sd_j**2) - 1.0
    rng = np.random.default_rng(5)
    paths = 40_000
    counts = rng.poisson(lam * dt, (paths, n))
    jumps = counts * mu_j + np.sqrt(counts) * sd_j * rng.standard_normal((paths, n))
    drift_per_year = r - q - 0.5 * vol**2 - lam * kbar
    returns = drift_per_year * dt + vol * math.sqrt(dt) * rng.standard_normal((paths, n)) + jumps
    realised = (returns**2).sum(1)
    model = hj.Merton(100.0, vol, lam, mu_j, sd_j, r, q)
    price = float(hj.price(model, hj.VarianceSwap(1.0, 0.0))) * math.exp(r)
    # E[r_i^2] = Var + mean^2: the mean per step includes the jumps' lam mu_j dt.
    mean_step = (drift_per_year + lam * mu_j) * dt
    expected = price + n * mean_step**2
    mean, se = realised.mean(), realised.std(ddof=1) / math.sqrt(realised.size)
    assert abs(mean - expected) < 4 * se
    assert abs(price - 0.15**2) > 10 * se      # the jumps' part is seen


@pytest.mark.filterwarnings("ignore::hedgejax.FellerWarning")
def test_variance_swap_heston_euler_monte_carlo(x64):
    """Integrated variance under Heston by a full-truncation Euler numpy Monte Carlo (its
    discretisation bias is below 1e-4 here), within 4 SE of the price's expectation."""
    v0, kappa, theta, xi, tau, n, paths = 0.09, 2.0, 0.04, 0.5, 1.0, 250, 40_000
    dt = tau / n
    rng = np.random.default_rng(9)
    v = np.full(paths, v0)
    total = np.zeros(paths)
    for _ in range(n):
        vp = np.maximum(v, 0.0)
        total += 0.5 * vp * dt
        v = v + kappa * (theta - vp) * dt + xi * np.sqrt(vp * dt) * rng.standard_normal(paths)
        total += 0.5 * np.maximum(v, 0.0) * dt
    model = hj.Heston(100.0, v0, kappa, theta, xi, -0.7, 0.0)
    price = float(hj.price(model, hj.VarianceSwap(tau, 0.0)))
    mean, se = total.mean(), total.std(ddof=1) / math.sqrt(paths)
    assert abs(mean - price * tau) < 4 * se + 1e-4
    assert abs(theta * tau - price * tau) > 10 * se


def test_variance_swap_greeks(x64):
    """Greeks under Black-Scholes by autodiff against differences of the numpy closed form;
    no spot dependence; finite at expiry."""
    notional, strike_vol, maturity, t, sum_sq = 1e4, 0.2, 1.0, 0.3, 0.02
    vol, r = 0.25, 0.05

    def ref(sig=vol, rr=r, tt=t):
        return _swap_value(notional, rr, maturity - tt, maturity, sum_sq,
                           sig**2 * (maturity - tt), strike_vol)
    inst = hj.VarianceSwap(maturity, strike_vol, notional)
    model = hj.BlackScholes(100.0, vol, r, 0.01)
    g = hj.greeks(model, inst, 100.0, t, state={"sum_sq": sum_sq})
    h = 1e-5
    assert float(g.delta) == 0.0 and float(g.gamma) == 0.0 and float(g.vanna) == 0.0
    assert float(g.vega) == pytest.approx((ref(sig=vol + h) - ref(sig=vol - h)) / (2 * h),
                                          rel=1e-8)
    assert float(g.rho) == pytest.approx((ref(rr=r + h) - ref(rr=r - h)) / (2 * h), rel=1e-8)
    assert float(g.theta) == pytest.approx((ref(tt=t + h) - ref(tt=t - h)) / (2 * h),
                                           rel=1e-8)
    assert float(g.volga) == pytest.approx(
        (ref(sig=vol + 1e-3) - 2 * ref() + ref(sig=vol - 1e-3)) / 1e-6, rel=1e-6)
    for tt in (1.0, 1.0 - 1e-12, 1.5):
        g = hj.greeks(model, inst, 100.0, tt, state={"sum_sq": sum_sq})
        assert all(np.isfinite(v) for v in g.as_dict().values())
