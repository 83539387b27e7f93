"""Merton prices and simulation for any expected number of jumps jump_rate x T, 0 to 10,000.

References, none produced by hedgejax: the Poisson mixture of Black-Scholes prices in
Merton's own form (BS with vol_n, r_n, weights of lambda' = lambda (1 + kbar)) evaluated here in
mpmath at 20 digits, with weights by the recurrence w_{n+1} = w_n m / (n + 1) from the mode
(log-space start) and terms added until they are 1e-30 of the largest; central finite
differences of it; Poisson survival probabilities summed here with `math`; Monte Carlo within
4 standard errors with fixed seeds. Two regression values come from the issue: 52.502
(jump_rate x T = 50) and 11.58 (jump_rate x T = 100), where the former 64-term series gave
49.69 and 0.0023.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest

import hedgejax as hj
from hedgejax._models.merton import (
    MAX_JUMP_MEAN,
    Merton,
    poisson_count,
    poisson_window_terms,
    window_covers,
)

# ---------------------------------------------------------------------------------------------
# Independent reference (mpmath).
# ---------------------------------------------------------------------------------------------


@functools.cache
def merton_series(kind, S, K, T, vol, lam, jm, js, r=0.0, q=0.0) -> float:
    """Merton (1976) eq. 19: sum_n P(N = n; lambda' T) BS(S, K, T, vol_n, r_n, q), with
    vol_n^2 T = vol^2 T + n js^2 and r_n T = (r - lam k) T + n log(1 + k), at 20 digits.
    kind "digital" pays 1 at T if S_T > K; a put is the call less the forward (parity)."""
    if kind == "put":
        return merton_series("call", S, K, T, vol, lam, jm, js, r, q) - (
            S * math.exp(-q * T) - K * math.exp(-r * T))
    with mp.workdps(20):
        S, K, T, vol, lam, jm, js, r, q = (mp.mpf(x) for x in (S, K, T, vol, lam, jm, js, r, q))
        k = mp.expm1(jm + js * js / 2)
        mean = lam * (1 + k) * T

        def bs(n):
            sd = mp.sqrt(vol * vol * T + n * js * js)
            rate_T = (r - lam * k) * T + n * mp.log1p(k)
            d1 = (mp.log(S / K) + rate_T - q * T) / sd + sd / 2
            d2 = d1 - sd
            if kind == "call":
                return S * mp.exp(-q * T) * mp.ncdf(d1) - K * mp.exp(-rate_T) * mp.ncdf(d2)
            return mp.exp(-rate_T) * mp.ncdf(d2)

        if mean == 0:
            return float(bs(0))
        mode = int(mp.floor(mean))
        w_mode = mp.exp(mode * mp.log(mean) - mean - mp.loggamma(mode + 1))
        total, w, n = mp.mpf(0), w_mode, mode
        while w > mp.mpf("1e-30") * w_mode or n <= mean:
            total += w * bs(n)
            n += 1
            w = w * mean / n
        w, n = w_mode * mode / mean, mode - 1
        while n >= 0 and w > mp.mpf("1e-30") * w_mode:
            total += w * bs(n)
            w = w * n / mean
            n -= 1
        return float(total)


def _instrument(kind, K, T):
    return {"call": hj.EuropeanCall, "put": hj.EuropeanPut, "digital": hj.Digital}[kind](K, T)


def _within(estimate, expected, se, n_se=4.0):
    assert abs(float(estimate) - expected) <= n_se * float(se), (
        f"{float(estimate)} vs {expected}: {abs(float(estimate) - expected) / float(se):.2f} SE")


# (S, vol, jump_rate, jump_mean, jump_std, rate, div, K, T): jump_rate x T from 0 to 10,000;
# the issue's cases (lambda T = 50, 100, 1000, 10000 with the issue's parameters); up-jumps
# whose share-measure mean lambda' T exceeds lambda T.
CASES = [
    (100.0, 0.2, 0.0, -0.1, 0.1, 0.03, 0.01, 95.0, 1.0),
    (100.0, 0.2, 0.3, -0.1, 0.1, 0.03, 0.01, 105.0, 1.0),
    (100.0, 0.25, 5.0, -0.05, 0.1, 0.02, 0.0, 100.0, 1.0),
    (100.0, 0.1, 10.0, 0.0, 0.2, 0.03, 0.01, 100.0, 5.0),
    (100.0, 0.15, 100.0, -0.01, 0.02, 0.02, 0.0, 100.0, 1.0),
    (100.0, 0.15, 1000.0, -0.01, 0.02, 0.02, 0.0, 100.0, 1.0),
    (100.0, 0.1, 2500.0, 0.002, 0.01, 0.01, 0.02, 110.0, 4.0),
    (100.0, 0.15, 10000.0, -0.01, 0.02, 0.02, 0.0, 100.0, 1.0),
]
_IDS = [f"lamT={c[2] * c[8]:g}" for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=_IDS)
def test_prices_match_independent_series_float64(x64, case):
    S, vol, lam, jm, js, r, q, K, T = case
    model = Merton(S, vol, lam, jm, js, rate=r, div=q)
    for kind in ("call", "put", "digital"):
        value = float(hj.price(model, _instrument(kind, K, T)))
        reference = merton_series(kind, S, K, T, vol, lam, jm, js, r, q)
        np.testing.assert_allclose(value, reference, rtol=1e-10, err_msg=kind)


def test_prices_match_independent_series_float32():
    """The default precision, every case at once: one compiled, vmapped price with the static
    hint `series_terms` sized for the largest mean (the traced path, checked at run time).
    Measured at most 2.2e-6 relative."""
    largest = max(lam * T * max(1.0, math.exp(jm + js * js / 2))
                  for _, _, lam, jm, js, _, _, _, T in CASES)
    terms = poisson_window_terms(largest)

    @jax.jit
    @jax.vmap
    def prices(p):
        model = Merton(*p[:5], rate=p[5], div=p[6], series_terms=terms)
        return jnp.stack([hj.price(model, _instrument(kind, p[7], p[8]))
                          for kind in ("call", "put", "digital")])

    values = np.asarray(prices(jnp.asarray(CASES, jnp.float32)))
    assert values.dtype == np.float32
    for case, row in zip(CASES, values, strict=True):
        S, vol, lam, jm, js, r, q, K, T = case
        for kind, value in zip(("call", "put", "digital"), row, strict=True):
            reference = merton_series(kind, S, K, T, vol, lam, jm, js, r, q)
            np.testing.assert_allclose(float(value), reference, rtol=1e-5,
                                       err_msg=f"{kind} lamT={lam * T:g}")


def test_issue_regressions(x64):
    """The issue's two cases, with the values it gives (the former series: 49.69, 0.0023)."""
    first = Merton(100.0, vol=0.1, jump_rate=10.0, jump_mean=0.0, jump_std=0.2, rate=0.03,
                   div=0.01)
    assert abs(float(hj.price(first, hj.EuropeanCall(100.0, 5.0))) - 52.502) < 5e-4
    second = Merton(100.0, 0.15, jump_rate=100.0, jump_mean=-0.01, jump_std=0.02, rate=0.02)
    assert abs(float(hj.price(second, hj.EuropeanCall(100.0, 1.0))) - 11.58) < 5e-3
    thousand = second.replace(jump_rate=1000.0)
    assert float(hj.price(thousand, hj.EuropeanCall(100.0, 1.0))) > 28.0   # was 0.0


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("jump_rate", [0.0, 1.0])
@pytest.mark.parametrize("jump_mean, jump_std", [(800.0, 0.1), (0.0, 40.0), (None, 0.0)])
def test_overflowing_mean_jump_factor_is_refused(request, precision, jump_rate, jump_mean,
                                                 jump_std):
    """exp(jump_mean + jump_std^2/2) beyond the largest float makes every price NaN (the drift
    compensator is jump_rate x inf, NaN even at jump_rate 0): refused at construction, naming
    both parameters. None: just above log(largest float) of the precision. Just below it, with
    no jumps, the price is Black-Scholes."""
    if precision == "float64":
        request.getfixturevalue("x64")
    limit = float(np.log(np.finfo(precision).max))
    mean = limit + 0.01 if jump_mean is None else jump_mean
    with pytest.raises(ValueError, match="jump_mean.*jump_std"):
        Merton(100.0, 0.2, jump_rate, mean, jump_std)
    call = hj.EuropeanCall(100.0, 1.0)
    no_jumps = hj.price(Merton(100.0, 0.2, 0.0, limit - 1.0, 0.0), call)
    expected = hj.price(hj.BlackScholes(100.0, 0.2), call)
    assert no_jumps.dtype == np.dtype(precision)
    np.testing.assert_allclose(float(no_jumps), float(expected), rtol=1e-6)


def test_cap_raises():
    model = Merton(100.0, 0.2, 2 * MAX_JUMP_MEAN, -0.001, 0.001)
    with pytest.raises(ValueError, match="cap"):
        hj.price(model, hj.EuropeanCall(100.0, 1.0))


# ---------------------------------------------------------------------------------------------
# Greeks at a large mean.
# ---------------------------------------------------------------------------------------------


def test_greeks_match_finite_differences_at_a_large_mean(x64):
    """lambda T = 1000: greeks() (compiled, series sized by `prepared`) against central
    differences of the reference."""
    kind = "call"
    S, vol, lam, jm, js, r, q, K, T = 100.0, 0.15, 1000.0, -0.01, 0.02, 0.02, 0.0, 95.0, 1.0
    g = hj.greeks(Merton(S, vol, lam, jm, js, rate=r, div=q), _instrument(kind, K, T))

    def ref(S=S, vol=vol):
        return merton_series(kind, S, K, T, vol, lam, jm, js, r, q)

    h = 1e-3
    np.testing.assert_allclose(float(g.delta), (ref(S=S + h) - ref(S=S - h)) / (2 * h),
                               rtol=1e-6)
    hv = 1e-4
    np.testing.assert_allclose(float(g.vega), (ref(vol=vol + hv) - ref(vol=vol - hv)) / (2 * hv),
                               rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Traced use: an error, never a wrong number.
# ---------------------------------------------------------------------------------------------

_ISSUE = Merton(100.0, 0.15, 100.0, -0.01, 0.02, rate=0.02)
_CALL = hj.EuropeanCall(100.0, 1.0)


def test_traced_price_needing_more_terms_raises():
    """Under jax.jit the jump rate is traced: the series has the default 64 terms (enough up
    to lambda T ~ 18), and lambda T = 100 raises an error naming jump_rate x tau."""
    price = jax.jit(lambda lam: hj.price(_ISSUE.replace(jump_rate=lam), _CALL))
    assert abs(float(price(1.0)) - merton_series(
        "call", 100.0, 100.0, 1.0, 0.15, 1.0, -0.01, 0.02, 0.02)) < 1e-4
    with pytest.raises(Exception, match="jump_rate x tau"):
        jax.block_until_ready(price(100.0))
    # The same inside greeks() (eqx.filter_jit) and under jax.grad, where the price itself
    # is dead code.
    with pytest.raises(Exception, match="jump_rate x tau"):
        jax.block_until_ready(jax.jit(
            lambda lam: hj.greeks(_ISSUE.replace(jump_rate=lam), _CALL).delta)(100.0))
    gradient = jax.jit(jax.grad(lambda lam: hj.price(_ISSUE.replace(jump_rate=lam), _CALL)))
    with pytest.raises(Exception, match="jump_rate x tau"):
        jax.block_until_ready(gradient(100.0))


def test_traced_price_with_a_static_hint_is_right():
    hinted = _ISSUE.replace(series_terms=poisson_window_terms(100.0))
    value = jax.jit(lambda lam: hj.price(hinted.replace(jump_rate=lam), _CALL))(100.0)
    reference = merton_series("call", 100.0, 100.0, 1.0, 0.15, 100.0, -0.01, 0.02, 0.02)
    np.testing.assert_allclose(float(value), reference, rtol=1e-5)


def test_traced_hedge_and_simulation_needing_more_terms_raise():
    """hedge()'s jitted scan with a traced jump rate: the hedger's in-loop price raises; a
    simulation step with jump_rate x dt = 100 raises naming jump_rate x dt."""
    grid = hj.TimeGrid(1.0, 10)
    with pytest.raises(Exception, match="jump_rate x tau"):
        jax.block_until_ready(jax.jit(lambda lam: hj.hedge(
            _ISSUE.replace(jump_rate=lam), _CALL, hj.DeltaHedge(), None, grid, 64,
            jax.random.key(0)).pnl)(100.0))
    with pytest.raises(Exception, match="jump_rate x dt"):
        jax.block_until_ready(jax.jit(lambda lam: hj.simulate(
            _ISSUE.replace(jump_rate=lam), hj.TimeGrid(1.0, 1), 64, jax.random.key(0)))(100.0))


def test_prepared_sizes_the_hints():
    model = Merton(100.0, 0.2, 50.0, 0.02, 0.05, rate=0.01)
    ready = model.prepared(2.0, dt=0.01)
    growth = math.exp(0.02 + 0.5 * 0.05**2)
    assert ready.series_terms == poisson_window_terms(50.0 * 2.0 * growth)
    assert ready.step_terms == poisson_window_terms(50.0 * 0.01)
    assert ready.risk_neutral().series_terms == ready.series_terms
    assert ready.replace(vol=0.3).step_terms == ready.step_terms
    world = hj.BlackScholes(100.0, 0.2)
    assert world.prepared(2.0, 0.01) is world   # the default hook: unchanged


def test_sized_window_covers_every_smaller_mean():
    """poisson_window_terms(M) covers (by the run-time test) every mean m <= M."""
    rng = np.random.default_rng(0)
    for top in np.concatenate([[0.01, 0.5, 1.0, 18.0, 75.0, 76.0], rng.uniform(0, 1e4, 40)]):
        terms = poisson_window_terms(top)
        means = np.concatenate([np.linspace(0, top, 500), top - rng.uniform(0, 3, 50)])
        means = means[means >= 0]
        with np.errstate(all="ignore"):
            assert np.all(window_covers(means, terms, np)), top


# ---------------------------------------------------------------------------------------------
# Simulation: jump counts and Monte Carlo.
# ---------------------------------------------------------------------------------------------


def _survival(mean, j):
    """P(N >= j) for N ~ Poisson(mean), summed in log space from the nearer tail."""
    def pmf(i):
        return math.exp(i * math.log(mean) - mean - math.lgamma(i + 1))
    if j > mean:
        return math.fsum(pmf(i) for i in range(j, j + 40 + int(20 * math.sqrt(mean))))
    return 1.0 - math.fsum(pmf(i) for i in range(max(0, j - 40 - int(20 * math.sqrt(mean))), j))


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("mean", [0.7, 40.0, 5000.0])
def test_poisson_count_inverts_the_survival_function(precision, mean):
    """Uniforms just below / above P(N >= j) give j / j - 1, for j across the distribution,
    where the resolution of the uniforms allows (2^-24 in float32, 2^-53 in float64)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", precision == "float64")
    try:
        dtype = jnp.float32 if precision == "float32" else jnp.float64
        eps = 2.0**-24 if precision == "float32" else 2.0**-53
        sd = math.sqrt(mean)
        js = np.unique(np.clip(np.round(mean + sd * np.linspace(-9, 9, 61)), 1, None)).astype(int)
        survival = np.array([_survival(mean, int(j)) for j in js])
        # the neighbours P(N >= j +- 1) differ by P(N = j - 1), P(N = j): the margin must
        # stay below both, and above the uniforms' resolution
        gap = np.array([min(math.exp(i * math.log(mean) - mean - math.lgamma(i + 1))
                            for i in (j - 1, j)) for j in js])
        margin = np.maximum(np.minimum(survival, 1 - survival) * 1e-6, 4 * eps)
        keep = (survival > 2 * margin) & (1 - survival > 2 * margin) & (gap > 3 * margin)
        js, survival, margin = js[keep], survival[keep], margin[keep]
        assert js.size >= 3
        below = poisson_count(mean, jnp.asarray(survival - margin, dtype))
        above = poisson_count(mean, jnp.asarray(survival + margin, dtype))
        np.testing.assert_array_equal(np.asarray(below), js)
        np.testing.assert_array_equal(np.asarray(above), js - 1)
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.mark.parametrize(
    "kind, params, n_steps",
    [
        # one step with jump_rate 100 (the issue's bias: 64 jumps a step at most)
        ("call", (100.0, 0.1, 100.0, -0.01, 0.02, 0.03, 0.0, 100.0, 0.5), 1),
        ("call", (100.0, 0.1, 1000.0, -0.005, 0.01, 0.0, 0.0, 100.0, 1.0), 1),
        ("put", (100.0, 0.2, 300.0, -0.02, 0.01, 0.01, 0.01, 95.0, 1.0), 4),
    ],
    ids=["lamT=50-1step", "lamT=1000-1step", "lamT=300-4steps"],
)
def test_monte_carlo_matches_series(kind, params, n_steps):
    S, vol, lam, jm, js, r, q, K, T = params
    model = Merton(S, vol, lam, jm, js, rate=r, div=q)
    value, se = hj.mc_price(model, _instrument(kind, K, T), 2**16, jax.random.key(17),
                            n_steps=n_steps)
    _within(value, merton_series(kind, S, K, T, vol, lam, jm, js, r, q), se)


def test_merton_hedge_at_a_large_mean_books_the_right_price():
    """jump_rate 100 over T = 0.5 (lambda T = 50): V0 is the series price, and the
    Merton-on-Merton hedge error has mean 0 (within 4 SE), no phantom gain."""
    S, vol, lam, jm, js, r = 100.0, 0.1, 100.0, -0.01, 0.02, 0.03
    model = Merton(S, vol, lam, jm, js, rate=r)
    call = hj.EuropeanCall(100.0, 0.5)
    result = hj.hedge(model, call, hj.DeltaHedge(), None, hj.TimeGrid(0.5, 10), 2**11,
                      jax.random.key(5))
    np.testing.assert_allclose(float(result.initial_price),
                               merton_series("call", S, 100.0, 0.5, vol, lam, jm, js, r),
                               rtol=1e-5)
    error = np.asarray(result.hedge_error, np.float64)
    _within(error.mean(), 0.0, error.std(ddof=1) / math.sqrt(error.size))
