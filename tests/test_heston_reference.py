"""Heston prices and Greeks in float64 against independent references: the hard cases of the
accuracy targets, QuantLib's published test-suite values, and the known failing cases of the
old pricer with their right values.

Targets: |price error| <= 1e-8 x spot, and relative error <= 1e-6 where the reference exceeds
1e-6 x spot; Greeks (delta, gamma, vega = d/dv0, theta) within 1e-6 relative of
Richardson-extrapolated finite differences of the reference (plus an absolute floor carried
over from the price target: 1e-8 for delta, 1e-8 / S for gamma, 1e-8 x S for vega and theta).

The references are in tests/heston_reference.py (QuantLib, 40-digit mpmath, published
tables; no hedgejax there). hedgejax is evaluated once per module: every price case in one
jitted, vmapped call (call and put pricers in the same compiled function) and the Greek
cases in one more, so the file's time is mostly two compilations.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hedgejax as hj

pytest.importorskip("QuantLib")

import heston_reference as ref  # noqa: E402  (tests/ is on sys.path under pytest)

ABS_TARGET = 1e-8   # x spot
REL_TARGET = 1e-6   # where the reference exceeds REL_FLOOR x spot
REL_FLOOR = 1e-6
GREEK_REL = 1e-6
GREEK_NAMES = ("delta", "gamma", "vega", "theta")

# ---------------------------------------------------------------------------------------------
# Cases.
# ---------------------------------------------------------------------------------------------

case = ref.heston_case


def _lewis():
    out = []
    for strike, (put, call) in ref.LEWIS_PRICES.items():
        out.append((f"lewis_put_{strike:g}", case("put", strike=strike, **ref.LEWIS_PARAMS), put))
        out.append((f"lewis_call_{strike:g}", case("call", strike=strike, **ref.LEWIS_PARAMS),
                    call))
    return out


def _expfit():
    """Both options of every point; the out-of-the-money value is the published one except
    where 40-digit mpmath shows it is wrong (heston_reference.EXPFIT_MPMATH); the other by
    parity."""
    out = []
    for i, (c, published) in enumerate(ref.expfit_cases()):
        otm = ref.EXPFIT_MPMATH.get(i, published)
        days = round(c.T * 365)
        m = ref.EXPFIT_MONEYNESS[i % len(ref.EXPFIT_MONEYNESS)]
        tag = f"expfit_{i}_{days}d_m{m:g}"
        out.append((f"{tag}_{c.kind}", c, otm))
        other = c._replace(kind="put" if c.kind == "call" else "call")
        out.append((f"{tag}_{other.kind}", other, ref.parity(c, otm)))
    return out


def _asymptotic():
    return [(f"asymptotic_m{m:g}", c, v) for m, (c, v) in
            zip(ref.ASYMPTOTIC_MONEYNESS, ref.asymptotic_cases(), strict=True)]


def _cos():
    return [(f"cos_{kind}_{strike:g}", case(kind, strike=strike, **ref.COS_PARAMS), value)
            for kind, strike, value in ref.COS_PRICES]


# Published values with fewer digits than the targets need: (name, case, value, tolerance).
LOW_PRECISION = [
    ("kahl_jaeckel", *ref.KAHL_JAECKEL_CASE, 2e-5),
    *[(f"wilmott_{k:g}", case("call", strike=k, **ref.WILMOTT_PARAMS), v, 1e-6)
      for k, v in ref.WILMOTT_PRICES],
]

# Published values precise enough for the targets.
PUBLISHED = [
    *_lewis(), *_expfit(), *_asymptotic(), *_cos(),
    ("all_integration_put", *ref.ALL_INTEGRATION_CASE),
    ("cos_truncation_1d", *ref.COS_TRUNCATION_CASE),
    ("analytic_cached", *ref.ANALYTIC_CACHED_CASE),
]

KNOWN = [(name, c, v) for name, (c, v) in ref.KNOWN_CASES.items()]

D1, D7 = 1.0 / 365.0, 7.0 / 365.0
# (name, case): the hard regimes of the targets; references from QuantLib, live.
HARD = [
    ("1d_atm_xi5", case("call", 100, 0.25, 5.0, 0.25, 5.0, -0.7, 100, D1, rate=0.02, div=0.01)),
    ("1d_K105_xi5", case("call", 100, 0.25, 5.0, 0.25, 5.0, -0.7, 105, D1, rate=0.02,
                         div=0.01)),
    ("1d_put95_low_v0", case("put", 100, 1e-4, 1.0, 0.04, 0.894, -0.7, 99.5, D1, rate=0.02,
                             div=0.01)),
    ("1d_atm_rho99", case("put", 100, 0.04, 1.5, 0.04, 0.5, 0.99, 100, D1)),
    ("7d_K120_xi2", case("call", 100, 0.1, 2.0, 0.1, 2.0, -0.99, 120, D7, rate=0.02, div=0.01)),
    ("7d_put80_xi2", case("put", 100, 0.1, 2.0, 0.1, 2.0, -0.99, 80, D7, rate=0.02, div=0.01)),
    ("7d_K125_low_v0", case("call", 100, 1e-4, 1.0, 0.04, 0.894, 0.7, 125, D7, rate=0.02,
                            div=0.01)),
    ("0.1y_K200_xi5", case("call", 100, 0.25, 5.0, 0.25, 5.0, 0.99, 200, 0.1, rate=0.02,
                           div=0.01)),
    ("0.1y_put50_xi5", case("put", 100, 0.25, 5.0, 0.25, 5.0, -0.99, 50, 0.1, rate=0.02,
                            div=0.01)),
    ("0.5y_K400_feller10x", case("call", 100, 0.04, 0.5, 0.04, 0.632, 0.7, 400, 0.5, rate=0.02,
                                 div=0.01)),
    ("0.5y_put25_feller10x", case("put", 100, 0.04, 0.5, 0.04, 0.632, -0.7, 25, 0.5, rate=0.02,
                                  div=0.01)),
    ("1y_K400_rho99_xi2", case("call", 100, 0.1, 2.0, 0.1, 2.0, 0.99, 400, 1.0, rate=0.02,
                               div=0.01)),
    ("1y_put25_rho-99_xi5", case("put", 100, 0.25, 5.0, 0.25, 5.0, -0.99, 25, 1.0, rate=0.02,
                                 div=0.01)),
    ("1y_K200_low_xi", case("call", 100, 0.04, 2.0, 0.04, 0.1, -0.7, 200, 1.0, rate=0.02,
                            div=0.01)),
    ("1y_K125_xi5_low_v0", case("call", 100, 1e-4, 5.0, 0.25, 5.0, 0.0, 125, 1.0, rate=0.02,
                                div=0.01)),
    ("5y_K400_xi5", case("call", 100, 0.25, 5.0, 0.25, 5.0, 0.7, 400, 5.0, rate=0.02, div=0.01)),
    ("5y_put25_xi1", case("put", 100, 0.0025, 1.0, 0.05, 1.0, -0.7, 25, 5.0, rate=0.02,
                          div=0.01)),
    ("30y_K400_rho99", case("call", 100, 0.04, 1.5, 0.04, 0.5, 0.99, 400, 30.0, rate=0.02,
                            div=0.01)),
    ("30y_K400_xi5_rho99", case("call", 100, 0.25, 5.0, 0.25, 5.0, 0.99, 400, 30.0, rate=0.02,
                                div=0.01)),
    ("30y_put25_xi2", case("put", 100, 0.1, 2.0, 0.1, 2.0, -0.7, 25, 30.0, rate=0.02, div=0.01)),
    ("30y_atm_high_v0", case("call", 100, 1.0, 3.0, 0.2, 1.5, -0.7, 100, 30.0, rate=0.02,
                             div=0.01)),
    ("1y_atm_rho-1", case("call", 100, 0.04, 1.5, 0.04, 0.5, -1.0, 100, 1.0, rate=0.02,
                          div=0.01)),
    ("1y_put80_rho-1", case("put", 100, 0.04, 1.5, 0.04, 0.5, -1.0, 80, 1.0, rate=0.02,
                            div=0.01)),
    ("1y_K120_rho1_xi5", case("call", 100, 0.25, 5.0, 0.25, 5.0, 1.0, 120, 1.0, rate=0.02,
                              div=0.01)),
    ("1y_K125_rho-1_support", case("call", 100, 0.04, 1.5, 0.04, 0.5, -1.0, 125, 1.0,
                                   rate=0.02, div=0.01)),
    ("0.1y_put80_rho1_support", case("put", 100, 0.04, 1.5, 0.04, 0.5, 1.0, 80, 0.1,
                                     rate=0.02, div=0.01)),
    ("30y_put50_rho-1_low_v0", case("put", 100, 1e-4, 1.0, 0.04, 0.894, -1.0, 50, 30.0,
                                    rate=0.02, div=0.01)),
    ("0.25y_K200_rho1_xi2", case("call", 100, 0.04, 1.0, 0.04, 2.0, 1.0, 200, 0.25, rate=0.02,
                                 div=0.01)),
]

# Calls whose Greeks are checked (|rho| < 1, prices well above the floor).
GREEK_CASES = [
    ("lewis_atm", case("call", strike=100.0, **ref.LEWIS_PARAMS)),
    ("7d_atm", case("call", 100, 0.04, 1.5, 0.04, 0.5, -0.7, 100, D7, rate=0.02, div=0.01)),
    ("7d_K105_xi5", case("call", 100, 0.25, 5.0, 0.25, 5.0, -0.7, 105, D7, rate=0.02,
                         div=0.01)),
    ("0.25y_K200_xi2", ref.KNOWN_CASES["xi2_K200_T0.25"][0]),
    ("1y_K200_feller", ref.KNOWN_CASES["feller_K200_T1"][0]),
    ("0.25y_K200_rho99", ref.KNOWN_CASES["rho99_K200_T0.25"][0]),
    ("1y_K75_low_v0", ref.KNOWN_CASES["v0_1e-4_put75_T1"][0]._replace(kind="call")),
    ("5y_K200_xi5", case("call", 100, 0.25, 5.0, 0.25, 5.0, -0.99, 200, 5.0, rate=0.02,
                         div=0.01)),
    ("30y_K50_rho99", case("call", 100, 0.04, 1.5, 0.04, 0.5, 0.99, 50, 30.0, rate=0.02,
                           div=0.01)),
]


# ---------------------------------------------------------------------------------------------
# hedgejax, evaluated once.
# ---------------------------------------------------------------------------------------------

_FIELDS = ("spot", "v0", "kappa", "theta", "xi", "rho", "rate", "div", "strike", "T")


def _columns(cases):
    return [jnp.asarray(np.array([getattr(c, f) for c in cases]), jnp.float64) for f in _FIELDS]


def _model(s, v0, kappa, theta, xi, rho, rate, div):
    return hj.Heston(s, v0, kappa, theta, xi, rho, rate=rate, div=div)


@jax.jit
def _prices(is_call, *cols):
    def one(call, s, v0, kappa, theta, xi, rho, rate, div, strike, T):
        model = _model(s, v0, kappa, theta, xi, rho, rate, div)
        return jnp.where(call, hj.price(model, hj.EuropeanCall(strike, T)),
                         hj.price(model, hj.EuropeanPut(strike, T)))

    return jax.vmap(one)(is_call, *cols)


@jax.jit
def _call_greeks(*cols):
    def one(s, v0, kappa, theta, xi, rho, rate, div, strike, T):
        return hj.greeks(_model(s, v0, kappa, theta, xi, rho, rate, div),
                         hj.EuropeanCall(strike, T))

    return jax.vmap(one)(*cols)


@pytest.fixture(scope="module")
def x64_module():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture(scope="module")
def hj_price(x64_module):
    """Case -> hedgejax float64 price, for every price case of this module."""
    cases = ([c for _, c, _ in KNOWN + PUBLISHED] + [c for _, c, _, _ in LOW_PRECISION]
             + [c for _, c in HARD])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hj.FellerWarning)
        values = _prices(jnp.asarray([c.kind == "call" for c in cases]), *_columns(cases))
    values = np.asarray(values, dtype=float)
    return dict(zip(cases, values.tolist(), strict=True))


@pytest.fixture(scope="module")
def hj_greeks(x64_module):
    """Case -> {greek: hedgejax float64 value} for the Greek cases."""
    cases = [c for _, c in GREEK_CASES]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hj.FellerWarning)
        g = _call_greeks(*_columns(cases))
    return {c: {n: float(getattr(g, n)[i]) for n in GREEK_NAMES} for i, c in enumerate(cases)}


def assert_within_targets(c: ref.Case, got: float, want: float, what: str = "") -> None:
    err = abs(got - want)
    assert math.isfinite(got), f"{what} {c.label()}: hedgejax {got}"
    assert err <= ABS_TARGET * c.spot, (
        f"{what} {c.label()}: hedgejax {got!r}, reference {want!r}, |err| / spot "
        f"{err / c.spot:.3g} > {ABS_TARGET:g}")
    if abs(want) > REL_FLOOR * c.spot:
        assert err <= REL_TARGET * abs(want), (
            f"{what} {c.label()}: hedgejax {got!r}, reference {want!r}, relative error "
            f"{err / abs(want):.3g} > {REL_TARGET:g}")


# ---------------------------------------------------------------------------------------------
# hedgejax against the references.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, c, want", KNOWN, ids=[k[0] for k in KNOWN])
def test_known_failing_cases(hj_price, name, c, want):
    """The old pricer's failures (hedgejax issue), right values from 40-digit mpmath."""
    assert_within_targets(c, hj_price[c], want, name)


@pytest.mark.parametrize("name, c, want", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_published_quantlib_values(hj_price, name, c, want):
    """QuantLib test-suite tables: Lewis, exponential fitting (multiprecision), asymptotic
    control variate (Feller ratio 5e-4), COS, and single cached values."""
    assert_within_targets(c, hj_price[c], want, name)


@pytest.mark.parametrize("name, c, want, tol", LOW_PRECISION, ids=[p[0] for p in LOW_PRECISION])
def test_published_low_precision_values(hj_price, name, c, want, tol):
    """Published values with few digits: within their own precision (the targets are checked
    against QuantLib for the same cases)."""
    got = hj_price[c]
    assert abs(got - want) <= tol, f"{name}: hedgejax {got!r}, published {want!r}"
    assert_within_targets(c, got, ref.reference(c, use_mpmath=False).value, name)


@pytest.mark.parametrize("name, c", HARD, ids=[h[0] for h in HARD])
def test_hard_cases_against_quantlib(hj_price, name, c):
    """Hard corners of the target grid (1 day to 30 years, xi up to 5, |rho| up to 1, v0 from
    1e-4, Feller violated 10x) against the live QuantLib reference, whose engines must agree
    among themselves first."""
    r = ref.reference(c, use_mpmath=False)
    assert math.isfinite(r.value), r
    assert r.spread <= ref.agreement_tolerance(c, r.value), r
    assert_within_targets(c, hj_price[c], r.value, name)


@pytest.mark.parametrize("name, c", GREEK_CASES, ids=[g[0] for g in GREEK_CASES])
def test_greeks_against_finite_differences(hj_greeks, name, c):
    """delta, gamma, vega (w.r.t. v0) and theta against Richardson finite differences of one
    QuantLib engine (the first primary engine that is finite here)."""
    engine = next(n for n, v in ref.ql_prices(c, ref.QL_PRIMARY).items() if math.isfinite(v))
    fd = ref.fd_greeks(c, lambda x: ref.ql_price(x, engine), names=GREEK_NAMES)
    floors = {"delta": 1e-8, "gamma": 1e-8 / c.spot, "vega": 1e-8 * c.spot,
              "theta": 1e-8 * c.spot}
    bad = []
    for greek in GREEK_NAMES:
        got, want = hj_greeks[c][greek], fd[greek]
        if not abs(got - want) <= GREEK_REL * abs(want) + floors[greek]:
            bad.append(f"{greek}: hedgejax {got!r}, finite differences {want!r} "
                       f"(rel {abs(got - want) / max(abs(want), 1e-300):.3g})")
    assert not bad, f"{name} {c.label()}: " + "; ".join(bad)


# ---------------------------------------------------------------------------------------------
# The references themselves (fast checks; the experiment script runs the big comparison).
# ---------------------------------------------------------------------------------------------


def test_quantlib_engines_reproduce_lewis():
    for strike, (put, call) in ref.LEWIS_PRICES.items():
        for kind, want in (("put", put), ("call", call)):
            values = ref.ql_prices(case(kind, strike=strike, **ref.LEWIS_PARAMS))
            for engine in ref.QL_PRIMARY + ("gatheral_lobatto",):
                assert values[engine] == pytest.approx(want, rel=1e-12, abs=0), (engine, kind,
                                                                                strike)


def test_quantlib_time_change_is_exact():
    """T = 0.5 is not a whole number of days (182.5): `ql_price` goes through the Heston time
    change (n = 182 days); QuantLib with Actual360 and 180 days has T = 0.5 exactly."""
    import QuantLib as ql

    c = case("call", 100, 0.04, 1.5, 0.04, 0.5, -0.7, 110, 0.5, rate=0.03, div=0.01)
    n, scale = ref.ql_time_change(c.T)
    assert n == 182 and scale != 1.0
    today = ql.Date(2, 1, 2024)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual360()
    curve = [ql.YieldTermStructureHandle(ql.FlatForward(today, x, dc, ql.Continuous))
             for x in (c.rate, c.div)]
    process = ql.HestonProcess(*curve, ql.QuoteHandle(ql.SimpleQuote(c.spot)), c.v0, c.kappa,
                               c.theta, c.xi, c.rho)
    option = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call, c.strike),
                              ql.EuropeanExercise(today + 180))
    option.setPricingEngine(ql.AnalyticHestonEngine(ql.HestonModel(process), 1e-13, 10**6))
    assert ref.ql_price(c, "gatheral_lobatto") == pytest.approx(option.NPV(), rel=1e-13, abs=0)


def test_published_tables_agree_with_references():
    """How far QuantLib's published values are from this module's reference (see the data
    notes in heston_reference)."""
    for c, want in ref.asymptotic_cases():
        assert abs(ref.reference(c, use_mpmath=False).value - want) <= 5e-12 * c.spot
    for kind, strike, want in ref.COS_PRICES:
        c = case(kind, strike=strike, **ref.COS_PARAMS)
        assert abs(ref.reference(c, use_mpmath=False).value - want) <= 1e-13 * c.spot
    for i, (c, want) in enumerate(ref.expfit_cases()):
        if i in ref.EXPFIT_MPMATH:
            continue
        got = ref.reference(c, use_mpmath=False).value
        assert abs(got - want) <= 1e-15 * c.spot + 1e-10 * abs(want), (i, got, want)
    for c, want in (ref.ALL_INTEGRATION_CASE, ref.ANALYTIC_CACHED_CASE):
        assert abs(ref.reference(c, use_mpmath=False).value - want) <= 1e-10 * c.spot


def test_mpmath_reproduces_lewis_and_its_contours_agree():
    pytest.importorskip("mpmath")
    c = case("put", strike=90.0, **ref.LEWIS_PARAMS)
    value, contour_diff = ref.mp_price_checked(c)
    assert value == pytest.approx(ref.LEWIS_PRICES[90.0][0], rel=1e-15, abs=0)
    assert contour_diff < 1e-30 * value


def test_mpmath_tiny_price_matches_known_value():
    """The 7-day, K = 150 value (5.3e-21, 9 standard deviations out) from scratch."""
    pytest.importorskip("mpmath")
    c, want = ref.KNOWN_CASES["7d_K150"]
    assert ref.mp_price(c) == pytest.approx(want, rel=1e-14, abs=0)


def test_mpmath_greeks_match_finite_differences():
    pytest.importorskip("mpmath")
    c = case("put", strike=90.0, **ref.LEWIS_PARAMS)
    exact = ref.mp_greeks(c)
    fd = ref.fd_greeks(c, names=("delta", "gamma", "vega"))
    for greek in ("delta", "gamma", "vega"):
        assert fd[greek] == pytest.approx(exact[greek], rel=1e-8, abs=0), greek


def test_support_bound_at_rho_minus_one():
    """rho = -1 bounds S_T above by F exp((v0 + kappa theta T) / xi): a call struck there is
    worth 0; just inside, a QuantLib engine and the rho -> -1 extrapolation agree."""
    c, want = ref.KNOWN_CASES["rho-1_K200_T0.25"]
    assert want == 0.0 and ref.zero_by_support(c)
    r = ref.reference(c)
    assert (r.value, r.source) == (0.0, "support")
    inside = case("call", 100, 0.04, 1.5, 0.04, 0.5, -1.0, 100, 1.0, rate=0.02, div=0.01)
    assert not ref.zero_by_support(inside)
    r = ref.reference(inside)
    assert r.source == "quantlib" and r.spread < 1e-9 * inside.spot, r
