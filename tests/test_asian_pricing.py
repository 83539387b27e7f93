"""Black-Scholes prices of `hj.Asian`, conditioned on the accrued average, against QuantLib
1.44's analytic engines (geometric: AnalyticDiscreteGeometricAveragePriceAsianEngine,
AnalyticContinuousGeometricAveragePriceAsianEngine; arithmetic moment matching:
TurnbullWakemanAsianEngine, ContinuousArithmeticAsianLevyEngine) at 1e-8 relative in float64,
Greeks against central finite differences of QuantLib prices, the one-fixing Asian against
the European option, the arithmetic approximation against a numpy Monte Carlo, and finite
values and Greeks in the degenerate states (expiry, all fixings done, surely exercised,
tau tiny, float32).

QuantLib conventions. Actual365Fixed everywhere, flat curves and vol: a date d days after
the reference date is at d / 365 years exactly, so our times are whole days / 365 (t = 0 is
day 0, t < 0 an evaluation date before the averaging starts). The fixings of QuantLib's
discrete option are the dates strictly after the evaluation date; those at or before it are
in the running accumulator (product of the fixings for the geometric average, sum for the
arithmetic) with their count, as our state's ``total`` (sum of log S, or of S) with
`dates_done`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import QuantLib as ql

import hedgejax as hj
from hedgejax._exotics import dates_done

S0, VOL, RATE, DIV = 100.0, 0.25, 0.04, 0.015
START = ql.Date(15, 1, 2025)
DC = ql.Actual365Fixed()
CAL = ql.NullCalendar()


# ---------------------------------------------------------------------------------------
# QuantLib references

def _process(spot, vol, rate, div, ref):
    ts = lambda r: ql.YieldTermStructureHandle(ql.FlatForward(ref, r, DC))   # noqa: E731
    return ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(spot)), ts(div), ts(rate),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(ref, CAL, vol, DC)))


def _payoff(option, strike):
    kind = ql.Option.Call if option == "call" else ql.Option.Put
    return ql.PlainVanillaPayoff(kind, strike)


def ql_discrete(average, option, strike, mat_days, n, t_days, past, spot=S0, vol=VOL,
                rate=RATE, div=DIV):
    """QuantLib price of the discrete Asian with fixings on days mat_days x j / n, at day
    t_days, `past` the fixings at or before it."""
    assert mat_days % n == 0
    ref = START + t_days
    ql.Settings.instance().evaluationDate = ref
    dates = [START + mat_days * j // n for j in range(1, n + 1)]
    future = [d for d in dates if d > ref]
    assert len(past) == n - len(future)
    if average == "geometric":
        acc = float(np.prod(past)) if len(past) else 1.0
        kind = ql.Average.Geometric
        engine = ql.AnalyticDiscreteGeometricAveragePriceAsianEngine
    else:
        acc = float(np.sum(past)) if len(past) else 0.0
        kind = ql.Average.Arithmetic
        engine = ql.TurnbullWakemanAsianEngine
    opt = ql.DiscreteAveragingAsianOption(kind, acc, len(past), future,
                                          _payoff(option, strike),
                                          ql.EuropeanExercise(START + mat_days))
    opt.setPricingEngine(engine(_process(spot, vol, rate, div, ref)))
    return opt.NPV()


def ql_continuous(average, option, strike, mat_days, t_days, running=0.0, spot=S0, vol=VOL,
                  rate=RATE, div=DIV):
    """QuantLib price of the continuous Asian averaging over [START, maturity] at day
    t_days >= 0 (`running`: the average of S so far; seasoned geometric: see
    `ql_continuous_geometric_seasoned`)."""
    ref = START + t_days
    ql.Settings.instance().evaluationDate = ref
    process = _process(spot, vol, rate, div, ref)
    exercise = ql.EuropeanExercise(START + mat_days)
    if average == "geometric":
        assert t_days == 0
        opt = ql.ContinuousAveragingAsianOption(ql.Average.Geometric, _payoff(option, strike),
                                                exercise)
        opt.setPricingEngine(ql.AnalyticContinuousGeometricAveragePriceAsianEngine(process))
    else:
        opt = ql.ContinuousAveragingAsianOption(ql.Average.Arithmetic, START,
                                                _payoff(option, strike), exercise)
        opt.setPricingEngine(ql.ContinuousArithmeticAsianLevyEngine(
            process, ql.QuoteHandle(ql.SimpleQuote(running)), START))
    return opt.NPV()


def ql_continuous_geometric_seasoned(option, strike, mat_days, t_days, total, spot=S0,
                                     vol=VOL, rate=RATE, div=DIV):
    """The seasoned continuous geometric Asian, which QuantLib's engine does not take, as
    its fresh one on a transformed underlying. At t, log A = total + alpha x the log of the
    geometric average over [t, T] (alpha = tau / T), which is the fresh Asian's log average
    for spot e^total S^alpha, vol alpha vol and the dividend that keeps the drift
    alpha (r - q - vol^2 / 2)."""
    alpha = (mat_days - t_days) / mat_days
    vol2 = alpha * vol
    div2 = rate - 0.5 * vol2**2 - alpha * (rate - div - 0.5 * vol**2)
    spot2 = math.exp(total) * spot**alpha
    return ql_continuous("geometric", option, strike, mat_days - t_days, 0,
                         spot=spot2, vol=vol2, rate=rate, div=div2)


def _ours(average, option, strike, mat_days, n, t_days, total, spot=S0, vol=VOL, rate=RATE,
          div=DIV):
    model = hj.BlackScholes(spot, vol, rate, div)
    inst = hj.Asian(strike, mat_days / 365, option=option, average=average, fixings=n)
    return float(hj.price(model, inst, spot=spot, t=t_days / 365, state={"total": total}))


def _past_fixings(n, mat_days, t_days, seed=0):
    """Random fixings for the dates at or before t_days (lognormal around S0)."""
    k = sum(1 for j in range(1, n + 1) if mat_days * j // n <= t_days)
    rng = np.random.default_rng(seed)
    return S0 * np.exp(0.15 * rng.standard_normal(k))


# ---------------------------------------------------------------------------------------
# Discrete fixings vs QuantLib

# (n, maturity days, evaluation day): fresh, before the start, between dates, on a date,
# last period, one fixing, daily fixings.
SCHEDULES = [(4, 364, 0), (4, 364, -30), (4, 364, 150), (4, 364, 182), (12, 360, 345),
             (1, 180, 60), (52, 364, 200), (360, 360, 100), (12, 360, 359)]


@pytest.mark.parametrize("average", ["geometric", "arithmetic"])
@pytest.mark.parametrize("n, mat_days, t_days", SCHEDULES)
def test_discrete_matches_quantlib(x64, average, n, mat_days, t_days):
    past = _past_fixings(n, mat_days, t_days)
    assert len(past) == int(dates_done(t_days / 365, mat_days / 365, n))
    total = float(np.sum(np.log(past) if average == "geometric" else past))
    for option in ("call", "put"):
        for strike in (80.0, 100.0, 120.0):
            ref = ql_discrete(average, option, strike, mat_days, n, t_days, past)
            got = _ours(average, option, strike, mat_days, n, t_days, total)
            assert got == pytest.approx(ref, rel=1e-8, abs=1e-12), (option, strike)


def test_discrete_arithmetic_surely_exercised_matches_quantlib(x64):
    # Accrued fixings so high that K* <= 0: exact value e^{-r tau} (E[A] - K), put 0.
    n, mat_days, t_days = 12, 360, 300
    past = np.full(10, 400.0)
    for option in ("call", "put"):
        ref = ql_discrete("arithmetic", option, 100.0, mat_days, n, t_days, past)
        got = _ours("arithmetic", option, 100.0, mat_days, n, t_days, float(past.sum()))
        assert got == pytest.approx(ref, rel=1e-8, abs=1e-12)
    assert ref == 0.0


# ---------------------------------------------------------------------------------------
# Continuous average vs QuantLib

@pytest.mark.parametrize("mat_days", [30, 365, 730])
def test_continuous_geometric_fresh_matches_quantlib(x64, mat_days):
    for option in ("call", "put"):
        for strike in (80.0, 100.0, 120.0):
            ref = ql_continuous("geometric", option, strike, mat_days, 0)
            got = _ours("geometric", option, strike, mat_days, None, 0, 0.0)
            assert got == pytest.approx(ref, rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("mat_days, t_days", [(365, 100), (730, 700), (365, 364)])
def test_continuous_geometric_seasoned_matches_quantlib(x64, mat_days, t_days):
    # total = (1/T) x integral of log S over [0, t]: here a path that averaged log 95.
    total = t_days / mat_days * math.log(95.0)
    for option in ("call", "put"):
        for strike in (80.0, 100.0, 120.0):
            ref = ql_continuous_geometric_seasoned(option, strike, mat_days, t_days, total)
            got = _ours("geometric", option, strike, mat_days, None, t_days, total)
            assert got == pytest.approx(ref, rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("mat_days, t_days, running", [
    (365, 0, 0.0), (30, 0, 0.0), (730, 0, 0.0), (365, 100, 104.0), (730, 600, 90.0),
    (365, 364, 97.0), (365, 300, 160.0)])
def test_continuous_arithmetic_matches_quantlib(x64, mat_days, t_days, running):
    # running: the average of S over [0, t]; our total = (t / T) x running.
    total = t_days / mat_days * running
    tau, b = (mat_days - t_days) / 365, RATE - DIV
    for option in ("call", "put"):
        for strike in (80.0, 100.0, 120.0):
            if strike > total:
                ref = ql_continuous("arithmetic", option, strike, mat_days, t_days, running)
            else:
                # Surely exercised (QuantLib's log of a negative strike returns NaN): the
                # exact e^{-r tau} (E[A] - K) for the call, 0 for the put.
                mean = total + S0 * math.expm1(b * tau) / (b * mat_days / 365)
                ref = math.exp(-RATE * tau) * (mean - strike) if option == "call" else 0.0
            got = _ours("arithmetic", option, strike, mat_days, None, t_days, total)
            assert got == pytest.approx(ref, rel=1e-8, abs=1e-12), (option, strike)


def test_continuous_before_the_averaging_starts(x64):
    """t < 0 (the window [0, T] opens later). Geometric (exact): the tower property, the
    price at t = -d is e^{-r d} E[price at t = 0 | S_0] (Gauss-Hermite over the lognormal
    S_0; the t = 0 prices are checked against QuantLib above). Arithmetic: the moments of
    the average against a numerical double integral of E[S_u S_v]."""
    from scipy import integrate

    d, T = 0.3, 1.0
    model = hj.BlackScholes(S0, VOL, RATE, DIV)
    z, w = np.polynomial.hermite_e.hermegauss(80)
    spots0 = S0 * np.exp((RATE - DIV - 0.5 * VOL**2) * d + VOL * math.sqrt(d) * z)
    for option in ("call", "put"):
        inst = hj.Asian(100.0, T, option=option, average="geometric")
        at0 = hj.price(model, inst, spot=spots0, t=0.0, state={"total": np.zeros_like(z)})
        ref = math.exp(-RATE * d) * np.sum(w * np.asarray(at0)) / math.sqrt(2 * math.pi)
        got = float(hj.price(model, inst, spot=S0, t=-d, state={"total": 0.0}))
        assert got == pytest.approx(ref, rel=1e-10)

    import equinox as eqx

    from hedgejax._pricing.asian import _arithmetic_moments

    b, v2 = RATE - DIV, VOL**2
    inst = hj.Asian(100.0, T)
    moments = eqx.filter_jit(_arithmetic_moments)
    for tau in (T + d, T, 0.4):
        a = max(tau - T, 0.0)
        mean, logvar = moments(model, inst, 0.0, jnp.asarray(tau))
        m1 = integrate.quad(lambda u: math.exp(b * u), a, tau, epsabs=0, epsrel=1e-13)[0]
        m2 = 2 * integrate.dblquad(lambda v, u: math.exp(b * (u + v) + v2 * u), a, tau,
                                   lambda u: u, tau, epsabs=0, epsrel=1e-13)[0]
        assert float(mean) == pytest.approx(m1 / T, rel=1e-12)
        assert float(logvar) == pytest.approx(math.log(m2 / m1**2), rel=1e-10)


@pytest.mark.parametrize("average, tol", [("geometric", 1e-4), ("arithmetic", 0.02)])
def test_price_across_a_fixing(x64, average, tol):
    """Just before the 3rd of 12 fixings (2 in the state) and at it (3 in the state, the
    3rd at the spot) the prices agree: the fixing's convention is the state's. Exactly
    for the geometric average (up to theta x 2e-6 years); the arithmetic moment matching
    drops by the documented ~0.2% of an at-the-money call (0.013 here, vol 0.25, 12
    fixings; the put by as much: parity is exact): its lognormal fit of the remaining
    fixings changes when one becomes known."""
    model = hj.BlackScholes(S0, VOL, RATE, DIV)
    spot = 104.0
    fix = math.log if average == "geometric" else float
    t_before, t_at = (3 - 2e-5) / 12, 3 / 12           # 2e-5 of a period apart
    assert int(dates_done(t_before, 1.0, 12)) == 2 and int(dates_done(t_at, 1.0, 12)) == 3
    for option in ("call", "put"):
        inst = hj.Asian(100.0, 1.0, option=option, average=average, fixings=12)
        total = fix(97.0) + fix(99.0)
        before = hj.price(model, inst, spot=spot, t=t_before, state={"total": total})
        at = hj.price(model, inst, spot=spot, t=t_at, state={"total": total + fix(spot)})
        assert abs(float(before) - float(at)) < tol
        if average == "arithmetic":
            assert float(at) < float(before)


# ---------------------------------------------------------------------------------------
# Greeks: autodiff vs central finite differences of QuantLib prices

def _fd_greeks(f, spot=S0, vol=VOL, rate=RATE, total=0.0, total_rate=0.0, at_day=None):
    """Fourth-order central finite differences of f(spot, vol, rate, total) (steps 0.1% of
    the spot, 0.001 in vol and rate). theta (t at a fixed state): from the Black-Scholes
    PDE, which an exact price satisfies between fixings (and the discrete moment matching
    too: shifting every remaining fixing time by dt multiplies E[R^2] / E[R]^2 by
    e^{vol^2 dt}), theta = r V - (r - q) S delta - vol^2 S^2 gamma / 2 - total_rate x
    dV/dtotal, total_rate = d total / dt (S / T or log S / T for a continuous average, else
    0); or, given `at_day(d)` (the price d days later at the same state), from steps of a
    day."""
    hs, hv, hr, ht = 1e-3 * spot, 1e-3, 1e-3, 1e-3
    w1 = {-2: 1 / 12, -1: -8 / 12, 1: 8 / 12, 2: -1 / 12}              # first derivative
    w2 = {-2: -1 / 12, -1: 16 / 12, 0: -30 / 12, 1: 16 / 12, 2: -1 / 12}  # second

    def at(ds=0, dv=0, dr=0, dt=0):
        return f(spot + ds * hs, vol + dv * hv, rate + dr * hr, total + dt * ht)

    v = at()
    g = {
        "delta": sum(w * at(ds=i) for i, w in w1.items()) / hs,
        "gamma": sum(w * at(ds=i) for i, w in w2.items()) / hs**2,
        "vega": sum(w * at(dv=i) for i, w in w1.items()) / hv,
        "volga": sum(w * at(dv=i) for i, w in w2.items()) / hv**2,
        "rho": sum(w * at(dr=i) for i, w in w1.items()) / hr,
        "vanna": sum(w * u * at(ds=i, dv=j) for i, w in w1.items() for j, u in w1.items())
        / (hs * hv),
    }
    if at_day is not None:
        g["theta"] = sum(w * at_day(i) for i, w in w1.items()) * 365
        return g
    d_total = (sum(w * at(dt=i) for i, w in w1.items()) / ht) if total_rate else 0.0
    g["theta"] = (rate * v - (rate - DIV) * spot * g["delta"]
                  - 0.5 * vol**2 * spot**2 * g["gamma"] - total_rate * d_total)
    return g


def _check_greeks(average, option, strike, mat_days, n, t_days, total, ref, rtol=5e-6):
    model = hj.BlackScholes(S0, VOL, RATE, DIV)
    inst = hj.Asian(strike, mat_days / 365, option=option, average=average, fixings=n)
    got = hj.greeks(model, inst, spot=S0, t=t_days / 365, state={"total": total}).as_dict()
    for name, value in ref.items():
        assert got[name] == pytest.approx(value, rel=rtol, abs=1e-7 * S0), name


@pytest.mark.parametrize("average, option, strike, n, mat_days, t_days", [
    ("geometric", "put", 110.0, 12, 360, 100), ("arithmetic", "call", 100.0, 12, 360, 100),
    ("arithmetic", "call", 95.0, 12, 360, 0)])
def test_discrete_greeks_match_quantlib_differences(x64, average, option, strike, n,
                                                    mat_days, t_days):
    past = _past_fixings(n, mat_days, t_days, seed=1)
    total = float(np.sum(np.log(past) if average == "geometric" else past))

    def f(spot, vol, rate, _):
        return ql_discrete(average, option, strike, mat_days, n, t_days, past, spot=spot,
                           vol=vol, rate=rate)

    _check_greeks(average, option, strike, mat_days, n, t_days, total, _fd_greeks(f))


def test_continuous_geometric_greeks_match_quantlib_differences(x64):
    mat_days, t_days = 365, 120
    total = t_days / mat_days * math.log(103.0)
    for option, strike in (("call", 100.0), ("call", 90.0)):
        def f(spot, vol, rate, total, option=option, strike=strike):
            return ql_continuous_geometric_seasoned(option, strike, mat_days, t_days, total,
                                                    spot=spot, vol=vol, rate=rate)

        ref = _fd_greeks(f, total=total, total_rate=math.log(S0) / (mat_days / 365))
        _check_greeks("geometric", option, strike, mat_days, None, t_days, total, ref)


def test_continuous_arithmetic_greeks_match_quantlib_differences(x64):
    mat_days, t_days = 365, 120
    total = t_days / mat_days * 103.0
    for option, strike in (("put", 100.0), ("put", 95.0)):
        def f(spot, vol, rate, total, option=option, strike=strike):
            running = total * mat_days / t_days
            return ql_continuous("arithmetic", option, strike, mat_days, t_days, running,
                                 spot=spot, vol=vol, rate=rate)

        def at_day(d, option=option, strike=strike):
            # The same total d days later: the running average total x T / t.
            running = total * mat_days / (t_days + d)
            return ql_continuous("arithmetic", option, strike, mat_days, t_days + d, running)

        # The moment matching of the continuous average is not a solution of the pricing
        # PDE (its window shrinks with t): theta from steps of a day.
        ref = _fd_greeks(f, total=total, at_day=at_day)
        _check_greeks("arithmetic", option, strike, mat_days, None, t_days, total, ref)


def test_surely_exercised_delta_matches_quantlib(x64):
    # K* <= 0: QuantLib's closed-form delta e^{-r tau} (E[A] - accrued) / S.
    n, mat_days, t_days = 12, 360, 300
    past = np.full(10, 400.0)
    opt = ql.DiscreteAveragingAsianOption(
        ql.Average.Arithmetic, float(past.sum()), 10,
        [START + 330, START + 360], _payoff("call", 100.0), ql.EuropeanExercise(START + 360))
    ql.Settings.instance().evaluationDate = START + t_days
    opt.setPricingEngine(ql.TurnbullWakemanAsianEngine(
        _process(S0, VOL, RATE, DIV, START + t_days)))
    model = hj.BlackScholes(S0, VOL, RATE, DIV)
    inst = hj.Asian(100.0, mat_days / 365, fixings=n)
    g = hj.greeks(model, inst, spot=S0, t=t_days / 365, state={"total": float(past.sum())})
    assert float(g.delta) == pytest.approx(opt.delta(), rel=1e-10)
    # d^2/dS^2 of exp(log S) is 0 up to rounding.
    assert abs(float(g.gamma)) < 1e-15 and float(g.vega) == 0.0


# ---------------------------------------------------------------------------------------
# One fixing is the European option

@pytest.mark.parametrize("average", ["geometric", "arithmetic"])
def test_one_fixing_is_european(x64, average):
    model = hj.BlackScholes(S0, VOL, RATE, DIV)
    for option, european in (("call", hj.EuropeanCall), ("put", hj.EuropeanPut)):
        for strike in (70.0, 100.0, 130.0):
            for t, spot in ((0.0, S0), (0.4, 93.0), (0.5 - 1e-4, 101.0), (-0.3, 104.0)):
                inst = hj.Asian(strike, 0.5, option=option, average=average, fixings=1)
                got = hj.price(model, inst, spot=spot, t=t, state={"total": 0.0})
                ref = hj.price(model, european(strike, 0.5), spot=spot, t=t)
                assert float(got) == pytest.approx(float(ref), rel=1e-10, abs=1e-14)


# ---------------------------------------------------------------------------------------
# The arithmetic approximation against Monte Carlo; conventions against hj.mc_price

@pytest.mark.parametrize("vol, bound", [(0.1, 6.4e-3), (0.3, 8.4e-2)])
def test_arithmetic_approximation_within_stated_error_of_monte_carlo(x64, vol, bound):
    """Mid-life (3 of 12 fixings done), T ~ 1 year: a numpy Monte Carlo of the remaining
    fixings (the geometric Asian as control variate, its exact price from QuantLib) agrees
    within 4 standard errors plus the measured approximation error for that vol and
    maturity (experiments/results/asian_approximation.md, max |err| at T = 1)."""
    n, mat_days, t_days = 12, 360, 95
    past = _past_fixings(n, mat_days, t_days, seed=2)
    k = len(past)
    times = np.array([(mat_days * j // n - t_days) / 365 for j in range(k + 1, n + 1)])
    tau = (mat_days - t_days) / 365
    rng = np.random.default_rng(7)
    z = rng.standard_normal((100_000, n - k))
    dw = np.sqrt(np.diff(times, prepend=0.0)) * z
    for sign in (1.0, -1.0):            # antithetic pairs
        log_s = (math.log(S0) + (RATE - DIV - 0.5 * vol**2) * times
                 + sign * vol * np.cumsum(dw, axis=1))
        arith = (past.sum() + np.exp(log_s).sum(axis=1)) / n
        geo = np.exp((np.log(past).sum() + log_s.sum(axis=1)) / n)
        if sign > 0:
            pairs = [(arith, geo)]
        else:
            pairs.append((arith, geo))
    disc = math.exp(-RATE * tau)
    for option, strike in (("call", 100.0), ("put", 100.0), ("call", 115.0), ("put", 85.0)):
        sgn = 1.0 if option == "call" else -1.0
        y = sum(disc * np.maximum(sgn * (a - strike), 0.0) for a, _ in pairs) / 2
        c = sum(disc * np.maximum(sgn * (g - strike), 0.0) for _, g in pairs) / 2
        c_exact = ql_discrete("geometric", option, strike, mat_days, n, t_days, past,
                              vol=vol)
        beta = np.cov(y, c)[0, 1] / np.var(c, ddof=1)
        samples = y - beta * (c - c_exact)
        mc, se = samples.mean(), samples.std(ddof=1) / math.sqrt(len(samples))
        got = _ours("arithmetic", option, strike, mat_days, n, t_days, float(past.sum()),
                    vol=vol)
        assert abs(got - mc) < 4 * se + bound, (option, strike, got, mc, se)


def test_geometric_price_matches_library_monte_carlo():
    # hj.mc_price carries the same state (fixings at T k / n, t = 0 not a fixing).
    model = hj.BlackScholes(S0, 0.3, RATE, DIV)
    inst = hj.Asian(100.0, 1.0, average="geometric", fixings=12)
    mc, se = hj.mc_price(model, inst, 2**16, jax.random.key(3), n_steps=12)
    assert abs(float(hj.price(model, inst)) - float(mc)) < 4 * float(se)


# ---------------------------------------------------------------------------------------
# Degenerate states, vectorisation, float32

VARIANTS = [("geometric", 12), ("arithmetic", 12), ("geometric", None), ("arithmetic", None)]


def _total(average, level, done):
    """The state of `done` fixings (the elapsed fraction for the continuous average), all
    at `level`."""
    return done * (np.log(level) if average == "geometric" else level)


def _batch_values_and_greeks(insts, spots, ts, totals):
    """Prices and Greeks of each instrument at each (spot, t, total), in one compiled
    program."""
    model = hj.BlackScholes(S0, VOL, RATE, DIV)

    @jax.jit
    def run(spots, ts, totals):
        def one(s, t, tot):
            state = {"total": tot}
            return [(hj.price(model, inst, spot=s, t=t, state=state),
                     hj.greeks(model, inst, spot=s, t=t, state=state)) for inst in insts]
        return jax.vmap(one)(spots, ts, totals)

    dtype = jnp.result_type(float)
    return run(*(jnp.asarray(x, dtype) for x in (spots, ts, totals)))


@pytest.mark.parametrize("average, fixings, option", [
    ("geometric", 12, "call"), ("arithmetic", 12, "put"),
    pytest.param("geometric", None, "put", marks=pytest.mark.slow),
    pytest.param("arithmetic", None, "call", marks=pytest.mark.slow)])
def test_degenerate_states_are_finite_float32(average, fixings, option):
    """float32 (the default): at and after expiry (the payoff from the state, delta 0), all
    fixings done, tau tiny with the last fixing (or a sliver of the average) at the money,
    mid-life, and K* <= 0 (the arithmetic call surely exercised, the put 0): finite prices
    and Greeks."""
    T, n = 0.5, fixings or 1
    tau = 1e-4 * T / n
    cases = [  # (spot, t, total)
        (97.0, T, _total(average, 104.0, n)),
        (97.0, T + 0.1, _total(average, 104.0, n)),
        (97.0, T * (1 - 1e-7), _total(average, 104.0, n)),  # all fixings done (discrete)
        *[(s, T - tau, _total(average, 100.0, n - (1 if fixings else tau / T)))
          for s in (100.0, 100.0 + 1e-3, 80.0, 130.0)],
        (100.0, T / 2, _total(average, 100.0, n // 2 if fixings else 0.5)),
        (100.0, T / 2, _total(average, 400.0, n // 2 if fixings else 0.5)),   # K* <= 0
    ]
    spots, ts, totals = (np.array(x) for x in zip(*cases, strict=True))
    inst = hj.Asian(100.0, T, option=option, average=average, fixings=fixings)
    (value, greeks), = _batch_values_and_greeks([inst], spots, ts, totals)
    assert value.dtype == jnp.float32
    assert np.all(np.isfinite(value)) and np.all(value >= 0.0)
    for name in ("delta", "gamma", "vega", "theta", "rho", "vanna", "volga"):
        g = getattr(greeks, name)
        assert np.all(np.isfinite(g)), (name, g)
    payoff = inst.path_payoff({"total": jnp.asarray(totals[:2], jnp.float32)},
                              jnp.asarray(spots[:2], jnp.float32), RATE)
    np.testing.assert_allclose(value[:2], payoff, rtol=1e-6)
    # Expired: no delta; all fixings done (discrete): none either.
    assert np.all(greeks.delta[:3 if fixings else 2] == 0.0)
    if average == "arithmetic":
        accrued = (n // 2 if fixings else 0.5) * 400.0 / n
        if option == "put":
            assert value[-1] == 0.0
        else:       # e^{-r tau} (accrued + the rest of the average - K)
            assert float(value[-1]) > math.exp(-RATE * T / 2) * (accrued - 100.0)


def test_all_fixings_done_before_maturity_is_discounted_payoff(x64):
    # Within the schedule's date tolerance of maturity the last fixing counts as done.
    model = hj.BlackScholes(S0, VOL, RATE, DIV)
    inst = hj.Asian(100.0, 1.0, fixings=12)
    t = 1.0 - 1e-7
    value = hj.price(model, inst, spot=S0, t=t, state={"total": 12 * 103.0})
    assert float(value) == pytest.approx(math.exp(-RATE * 1e-7) * 3.0, rel=1e-12)
    g = hj.greeks(model, inst, spot=S0, t=t, state={"total": 12 * 103.0})
    assert float(g.delta) == 0.0 and float(g.gamma) == 0.0


@pytest.mark.parametrize("average, fixings", VARIANTS)
def test_float32_vectorised_matches_quantlib(average, fixings):
    """float32 prices on a vector of spots and states (one call: the pricer broadcasts
    over the spot and the state) agree with the QuantLib references to 3e-5 relative or
    1e-5 absolute (1e-7 of the spot; prices above 1e-3)."""
    mat_days, t_days = 360, 100
    spots = np.array([80.0, 95.0, 100.0, 105.0, 130.0])
    levels = np.array([90.0, 100.0, 110.0, 100.0, 120.0])
    n = fixings or 1
    done = int(dates_done(t_days / 365, mat_days / 365, fixings)) if fixings else \
        t_days / mat_days
    totals = _total(average, levels, done)
    model = hj.BlackScholes(S0, VOL, RATE, DIV)
    for option in ("call", "put"):
        inst = hj.Asian(100.0, mat_days / 365, option=option, average=average,
                        fixings=fixings)
        got = hj.price(model, inst, spot=spots, t=t_days / 365, state={"total": totals})
        assert got.dtype == jnp.float32
        for spot, level, total, value in zip(spots, levels, totals, np.asarray(got),
                                             strict=True):
            if fixings:
                ref = ql_discrete(average, option, 100.0, mat_days, n, t_days,
                                  np.full(done, level), spot=spot)
            elif average == "geometric":
                ref = ql_continuous_geometric_seasoned(option, 100.0, mat_days, t_days,
                                                       float(total), spot=spot)
            else:
                ref = ql_continuous("arithmetic", option, 100.0, mat_days, t_days, level,
                                    spot=spot)
            if ref > 1e-3:
                assert value == pytest.approx(ref, rel=3e-5, abs=1e-5), (option, spot, level)
