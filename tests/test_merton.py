"""The Merton (1976) jump-diffusion world against independent references.

References, none produced by hedgejax: the Poisson series written here with `math` in
Merton's own form (a mixture of Black-Scholes prices with adjusted vol and rate, weights of
the share-measure intensity lambda' = lambda (1 + kbar)), which hedgejax evaluates in a
different (forward) form; QuantLib's Fourier pricer for the Bates model reduced to Merton; the
Black-Scholes closed form; central finite differences of the reference; Poisson and normal
moments; and exact identities (parity, the martingale property, the mean of a hedge's P&L).
Monte Carlo assertions are within 4 standard errors with fixed seeds.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hedgejax as hj
import hedgejax._pricing.merton  # noqa: F401  (registers the Merton pricers)
from hedgejax._models.merton import Merton, poisson_count
from hedgejax._random import Draws, key_words

# ---------------------------------------------------------------------------------------------
# Independent references (math only).
# ---------------------------------------------------------------------------------------------


def _N(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def bs_price(kind, S, K, T, vol, r=0.0, q=0.0) -> float:
    """Black-Scholes-Merton call/put/digital ("digital" pays 1 if S_T > K) with yield q."""
    sd = vol * math.sqrt(T)
    d1 = (math.log(S / K) + (r - q) * T) / sd + 0.5 * sd
    d2 = d1 - sd
    if kind == "call":
        return S * math.exp(-q * T) * _N(d1) - K * math.exp(-r * T) * _N(d2)
    if kind == "put":
        return K * math.exp(-r * T) * _N(-d2) - S * math.exp(-q * T) * _N(-d1)
    return math.exp(-r * T) * _N(d2)


def merton_price(kind, S, K, T, vol, lam, jm, js, r=0.0, q=0.0, max_terms=400) -> float:
    """Merton (1976) eq. 19 as printed: sum_n e^{-lam' T} (lam' T)^n / n! BS(sigma_n, r_n),
    lam' = lam (1 + k), sigma_n^2 = vol^2 + n js^2 / T, r_n = r - lam k + n log(1 + k) / T.
    Terms are added until the Poisson weight past its mode is below 1e-300 (no fixed cut)."""
    k = math.exp(jm + 0.5 * js * js) - 1.0
    mean = lam * (1.0 + k) * T
    weight = math.exp(-mean)
    total = 0.0
    for n in range(max_terms):
        if n > 0:
            weight *= mean / n
        if n > mean and weight < 1e-300:
            break
        vol_n = math.sqrt(vol * vol + n * js * js / T)
        rate_n = r - lam * k + n * math.log1p(k) / T
        total += weight * bs_price(kind, S, K, T, vol_n, rate_n, q)
    return total


def quantlib_merton(kind, S, K, days, vol, lam, jm, js, r, q) -> float:
    """QuantLib's BatesEngine (Fourier integration, Gauss-Laguerre with 192 nodes) for the
    Bates model with constant variance (v0 = theta = vol^2, vol-of-vol 1e-7): the Merton
    model up to O(1e-14) relative. The Python bindings of QuantLib wrap `Merton76Process` but
    not `JumpDiffusionEngine`, hence Bates; its jump parameters are QuantLib's (lambda: jumps
    per year, nu: mean of the log jump, delta: its standard deviation), as in Merton76Process.
    Maturity `days` under Actual365Fixed, so T = days / 365 exactly."""
    ql = pytest.importorskip("QuantLib")
    today = ql.Date(15, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    rts = ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc, ql.Continuous))
    qts = ql.YieldTermStructureHandle(ql.FlatForward(today, q, dc, ql.Continuous))
    process = ql.BatesProcess(rts, qts, ql.QuoteHandle(ql.SimpleQuote(S)), vol * vol, 1.0,
                              vol * vol, 1e-7, 0.0, lam, jm, js)
    option_type = ql.Option.Call if kind == "call" else ql.Option.Put
    option = ql.EuropeanOption(ql.PlainVanillaPayoff(option_type, K),
                               ql.EuropeanExercise(today + days))
    option.setPricingEngine(ql.BatesEngine(ql.BatesModel(process), 192))
    return option.NPV()


def _instrument(kind, K, T):
    if kind == "call":
        return hj.EuropeanCall(K, T)
    if kind == "put":
        return hj.EuropeanPut(K, T)
    return hj.Digital(K, T)


def _close(actual, expected, rtol, atol=0.0):
    np.testing.assert_allclose(float(actual), expected, rtol=rtol, atol=atol)


# (vol, jump_rate, jump_mean, jump_std, rate, div): equity-like crashes; frequent large
# two-sided jumps (lambda T up to 10 at T = 2); rare small up-jumps with negative rates.
PARAMS = [
    (0.2, 1.5, -0.1, 0.15, 0.03, 0.01),
    (0.1, 5.0, 0.05, 0.3, 0.05, 0.0),
    (0.3, 0.3, 0.02, 0.05, -0.01, 0.02),
]

# ---------------------------------------------------------------------------------------------
# Prices.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", PARAMS)
def test_series_matches_reference_and_quantlib(x64, params):
    """Calls and puts at strikes 80-120, maturities 91 days to 2 years. The reference series
    agrees to 1e-12 (it is the same mathematics in another form). QuantLib agrees to ~1e-13
    relative when measured; the bound 1e-10 leaves room for its integration (tolerance set by
    its 192-node quadrature, not by the series)."""
    vol, lam, jm, js, r, q = params
    S = 100.0
    model = Merton(S, vol, lam, jm, js, rate=r, div=q)
    for days in (91, 182, 365, 730):
        T = days / 365.0
        for K in (80.0, 90.0, 100.0, 110.0, 120.0):
            for kind in ("call", "put"):
                value = float(hj.price(model, _instrument(kind, K, T)))
                reference = merton_price(kind, S, K, T, vol, lam, jm, js, r, q)
                _close(value, reference, rtol=1e-12, atol=1e-13)
                _close(value, quantlib_merton(kind, S, K, days, vol, lam, jm, js, r, q),
                       rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("params", PARAMS)
def test_put_call_parity_and_digitals(x64, params):
    vol, lam, jm, js, r, q = params
    S, K, T = 95.0, 105.0, 1.3
    model = Merton(S, vol, lam, jm, js, rate=r, div=q)
    call = float(hj.price(model, hj.EuropeanCall(K, T)))
    put = float(hj.price(model, hj.EuropeanPut(K, T)))
    _close(call - put, S * math.exp(-q * T) - K * math.exp(-r * T), rtol=0, atol=1e-12)
    # Digitals: the reference series of Black-Scholes digitals; a call and a put digital
    # together pay the cash for sure.
    cash = 3.0
    up = float(hj.price(model, hj.Digital(K, T, cash=cash)))
    down = float(hj.price(model, hj.Digital(K, T, cash=cash, put=True)))
    _close(up, cash * merton_price("digital", S, K, T, vol, lam, jm, js, r, q), rtol=1e-12)
    _close(up + down, cash * math.exp(-r * T), rtol=1e-13)
    # A digital call is minus the strike derivative of the call (autodiff of hedgejax's call
    # against the reference digital).
    dcall_dk = jax.grad(lambda k: hj.price(model, hj.EuropeanCall(k, T)))(K)
    _close(-dcall_dk, merton_price("digital", S, K, T, vol, lam, jm, js, r, q), rtol=1e-12)


@pytest.mark.parametrize("kind", ["call", "put", "digital"])
@pytest.mark.parametrize("K, T", [(80.0, 0.25), (100.0, 1.0), (120.0, 2.0)])
def test_no_jumps_is_black_scholes(x64, kind, K, T):
    S, vol, r, q = 100.0, 0.25, 0.04, 0.015
    inst = _instrument(kind, K, T)
    expected = bs_price(kind, S, K, T, vol, r, q)
    # jump_rate = 0 whatever the jump law; the jump law is irrelevant then.
    for jm, js in ((-0.2, 0.3), (0.0, 0.0)):
        model = Merton(S, vol, 0.0, jm, js, rate=r, div=q)
        _close(hj.price(model, inst), expected, rtol=1e-12, atol=1e-14)
    # Jumps of size exactly 1 (log J = 0, js = 0) change nothing either.
    _close(hj.price(Merton(S, vol, 3.0, 0.0, 0.0, rate=r, div=q), inst), expected,
           rtol=1e-12, atol=1e-14)


def test_prices_broadcast_over_spots_and_expire_to_the_payoff(x64):
    model = Merton(100.0, 0.2, 1.0, -0.1, 0.1, rate=0.02)
    call = hj.EuropeanCall(100.0, 1.0)
    spots = jnp.array([70.0, 95.0, 100.0, 130.0])
    batch = hj.price(model, call, spot=spots)
    assert batch.shape == (4,)
    for s, v in zip(spots.tolist(), batch.tolist(), strict=True):
        _close(v, merton_price("call", s, 100.0, 1.0, 0.2, 1.0, -0.1, 0.1, 0.02), rtol=1e-12)
    # A book of several instruments prices through the registry's vmap.
    book = hj.Book([call, hj.EuropeanPut(90.0, 0.5)], quantities=[2.0, -1.0])
    _close(hj.price(model, book),
           2 * merton_price("call", 100.0, 100.0, 1.0, 0.2, 1.0, -0.1, 0.1, 0.02)
           - merton_price("put", 100.0, 90.0, 0.5, 0.2, 1.0, -0.1, 0.1, 0.02), rtol=1e-12)
    # At and after maturity: the payoff, with finite derivatives.
    for t in (1.0, 1.5):
        values = hj.price(model, call, spot=spots, t=t)
        np.testing.assert_allclose(np.asarray(values), np.maximum(np.asarray(spots) - 100, 0),
                                   rtol=1e-12, atol=1e-12)  # exp(log S) rounds
        g = hj.greeks(model, call, spot=120.0, t=t)
        assert all(np.isfinite(v) for v in g.as_dict().values())
        _close(g.delta, 1.0, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Greeks: autodiff against finite differences of the reference.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["call", "put"])
@pytest.mark.parametrize("K, T", [(90.0, 0.5), (110.0, 1.5)])
def test_greeks_match_finite_differences_of_reference(x64, kind, K, T):
    S, vol, lam, jm, js, r, q = 100.0, 0.2, 1.5, -0.1, 0.15, 0.03, 0.01
    g = hj.greeks(Merton(S, vol, lam, jm, js, rate=r, div=q), _instrument(kind, K, T))

    def ref(S=S, T=T, vol=vol, r=r):
        return merton_price(kind, S, K, T, vol, lam, jm, js, r, q)

    h = 1e-4
    _close(g.delta, (ref(S=S + h) - ref(S=S - h)) / (2 * h), rtol=1e-7)
    hs = 1e-2
    _close(g.gamma, (ref(S=S + hs) - 2 * ref() + ref(S=S - hs)) / hs**2, rtol=1e-6)
    _close(g.vega, (ref(vol=vol + h) - ref(vol=vol - h)) / (2 * h), rtol=1e-7)
    _close(g.rho, (ref(r=r + h) - ref(r=r - h)) / (2 * h), rtol=1e-7)
    # theta = dV/dt (calendar time), i.e. minus the derivative in the maturity.
    _close(g.theta, -(ref(T=T + h) - ref(T=T - h)) / (2 * h), rtol=1e-7)
    hv = 2e-4
    vanna = (ref(S=S + hv, vol=vol + hv) - ref(S=S + hv, vol=vol - hv)
             - ref(S=S - hv, vol=vol + hv) + ref(S=S - hv, vol=vol - hv)) / (4 * hv * hv)
    _close(g.vanna, vanna, rtol=1e-5, atol=1e-8)
    _close(g.volga, (ref(vol=vol + hv) - 2 * ref() + ref(vol=vol - hv)) / hv**2, rtol=1e-5)


def _call_value(jump_rate, jump_mean, jump_std):
    return hj.price(Merton(100.0, 0.2, jump_rate, jump_mean, jump_std, rate=0.02),
                    hj.EuropeanCall(105.0, 0.75))


# Compiled once for all cases (the parameters are traced arguments).
_jump_gradients = jax.jit(jax.grad(_call_value, argnums=(0, 1, 2)))
_jump_hessian = jax.jit(jax.hessian(_call_value, argnums=(0, 1, 2)))


@pytest.mark.parametrize("lam, js", [(1.5, 0.15), (1.5, 0.0), (0.0, 0.15), (0.0, 0.0)])
def test_jump_parameter_gradients_are_finite_and_right(x64, lam, js):
    """d price / d(jump_rate, jump_mean, jump_std) against finite differences, including the
    edges jump_rate = 0 and jump_std = 0 (one-sided, second-order differences at the edge;
    the price depends on jump_std only through jump_std^2, so its derivative there is 0)."""
    jm = -0.1
    grads = _jump_gradients(lam, jm, js)
    assert np.all(np.isfinite(np.asarray(grads)))
    assert np.all(np.isfinite(np.asarray(_jump_hessian(lam, jm, js))))

    def ref(lam=lam, jm=jm, js=js):
        return merton_price("call", 100.0, 105.0, 0.75, 0.2, lam, jm, js, 0.02)

    h = 1e-5
    if lam > 0:
        d_lam = (ref(lam=lam + h) - ref(lam=lam - h)) / (2 * h)
    else:
        d_lam = (-3 * ref() + 4 * ref(lam=h) - ref(lam=2 * h)) / (2 * h)
    d_jm = (ref(jm=jm + h) - ref(jm=jm - h)) / (2 * h)
    d_js = (ref(js=js + h) - ref(js=js - h)) / (2 * h) if js > 0 else 0.0
    _close(grads[0], d_lam, rtol=1e-7, atol=1e-9)
    _close(grads[1], d_jm, rtol=1e-7, atol=1e-9)
    _close(grads[2], d_js, rtol=1e-7, atol=1e-9)
    if lam == 0:  # no jumps: the jump law has no effect at all
        assert float(grads[1]) == 0.0 and float(grads[2]) == 0.0


def test_float32_prices_and_greeks_are_finite_and_close():
    """The default precision (float32), used inside hedge(): no overflow in the weights."""
    model = Merton(100.0, 0.2, 5.0, -0.3, 0.3)
    call = hj.EuropeanCall(100.0, 2.0)
    assert hj.price(model, call).dtype == jnp.float32
    _close(hj.price(model, call), merton_price("call", 100.0, 100.0, 2.0, 0.2, 5.0, -0.3, 0.3),
           rtol=1e-5)
    assert all(np.isfinite(v) for v in hj.greeks(model, call).as_dict().values())


# ---------------------------------------------------------------------------------------------
# Simulation.
# ---------------------------------------------------------------------------------------------


def _within(estimate, expected, se, n_se=4.0):
    assert abs(float(estimate) - expected) <= n_se * float(se), (
        f"{float(estimate)} vs {expected}: {abs(float(estimate) - expected) / float(se):.2f} SE")


@pytest.mark.parametrize("kind, n_steps", [("call", 1), ("call", 4), ("put", 4)])
def test_monte_carlo_price_matches_series(kind, n_steps):
    """lambda T = 3 over T = 1: several jumps per step and path."""
    S, K, T, vol, lam, jm, js, r, q = 100.0, 100.0, 1.0, 0.15, 3.0, -0.08, 0.12, 0.03, 0.01
    model = Merton(S, vol, lam, jm, js, rate=r, div=q)
    inst = _instrument(kind, K, T)
    value, se = hj.mc_price(model, inst, 2**17, jax.random.key(11), n_steps=n_steps)
    _within(value, merton_price(kind, S, K, T, vol, lam, jm, js, r, q), se)


@pytest.mark.slow  # compile-bound (7-13 s on the 2-core CI machine): the slow tier
def test_monte_carlo_with_variance_reduction_and_pathwise_greeks():
    """Antithetic pairs (u -> 1 - u also for the jump count) with the underlying as control
    variate, and pathwise delta and vega through the jump simulation, against the series
    and its autodiff Greeks (themselves checked against finite differences above)."""
    S, K, T, vol, lam, jm, js = 100.0, 95.0, 0.5, 0.2, 2.0, -0.1, 0.15
    model = Merton(S, vol, lam, jm, js, rate=0.02, div=0.01)
    put = hj.EuropeanPut(K, T)
    value, se = hj.mc_price(model, put, 2**16, jax.random.key(12), n_steps=2,
                            antithetic=True, control_variate="underlying")
    _within(value, merton_price("put", S, K, T, vol, lam, jm, js, 0.02, 0.01), se)
    estimates = hj.mc_greeks(model, put, 2**16, jax.random.key(13), n_steps=2)
    exact = hj.greeks(model, put)
    for name in ("delta", "vega"):
        _within(estimates[name].value, float(getattr(exact, name)), estimates[name].stderr)


def test_discounted_price_is_a_martingale_and_drift_is_the_growth_rate():
    S, T = 100.0, 1.0
    grid = hj.TimeGrid(T, 5)
    n = 2**17
    model = Merton(S, 0.2, 2.0, -0.15, 0.2, rate=0.05, div=0.02)
    terminal = np.asarray(hj.simulate(model, grid, n, jax.random.key(3))[:, -1], np.float64)
    discounted = terminal * math.exp(-(0.05 - 0.02) * T)
    _within(discounted.mean(), S, discounted.std(ddof=1) / math.sqrt(n))
    # Real-world drift: E[S_T] = S_0 e^{drift T}, jumps included.
    real = model.replace(drift=0.12)
    terminal = np.asarray(hj.simulate(real, grid, n, jax.random.key(4))[:, -1], np.float64)
    _within(terminal.mean(), S * math.exp(0.12 * T), terminal.std(ddof=1) / math.sqrt(n))
    assert real.risk_neutral().drift is None


@pytest.mark.parametrize("jump_rate, n_steps", [(6.0, 4), (12.0, 1)])
def test_jump_counts_per_step_are_poisson(x64, jump_rate, n_steps):
    """Counts read off simulated paths: with a negligible diffusion (vol 1e-12) and fixed
    jumps log J = 0.05, each step's log return is its drift plus 0.05 N. Mean and variance of
    N match jump_rate * dt within 4 SE, as does the frequency of every count, and the counts
    of successive steps are uncorrelated."""
    T, size, n = 1.0, 0.05, 2**16
    model = Merton(100.0, 1e-12, jump_rate, size, 0.0)
    grid = hj.TimeGrid(T, n_steps)
    paths = np.asarray(hj.simulate(model, grid, n, jax.random.key(5)), np.float64)
    dt = T / n_steps
    drift = -jump_rate * math.expm1(size) * dt
    counts_real = (np.diff(np.log(paths), axis=1) - drift) / size
    counts = np.rint(counts_real)
    np.testing.assert_allclose(counts_real, counts, atol=1e-6)
    m = jump_rate * dt
    sample = counts.reshape(-1)
    k = sample.size
    _within(sample.mean(), m, math.sqrt(m / k))
    # Var of the sample variance of a Poisson(m) sample: (mu4 - m^2) / k, mu4 = m (1 + 3m).
    _within(sample.var(ddof=1), m, math.sqrt((m + 2 * m * m) / k))
    for j in range(int(m + 6 * math.sqrt(m)) + 1):
        p = math.exp(-m + j * math.log(m) - math.lgamma(j + 1))
        _within(np.mean(sample == j), p, math.sqrt(p * (1 - p) / k))
    if n_steps > 1:
        _within(np.corrcoef(counts[:, 0], counts[:, 1])[0, 1], 0.0, 1 / math.sqrt(n))


@pytest.mark.parametrize("mean", [0.004, 0.3, 1.5, 12.0])
def test_poisson_count_inverts_the_survival_function(x64, mean):
    """N = #{k : u < P(N > k)}, so N >= j exactly when u < P(N >= j): uniforms just below
    and just above each survival probability (computed here with math, down to 1e-250) give
    counts j and j - 1, for j <= 48. "Just" is 1e-9 relative, and at least 2^-53, the
    resolution of float64 uniforms: the window of counts leaves out less than 1e-16 of the
    mass, so the draw is exact to that resolution (not below it)."""
    def pmf(i):
        return math.exp(-mean + i * math.log(mean) - math.lgamma(i + 1))

    # P(N >= j) for j = 1 .. MAX-1, summed over the tail (never 1 - CDF).
    survival = [math.fsum(pmf(i) for i in range(j, j + 500))
                for j in range(1, 49)]
    survival = [p for p in survival if p >= 2.0**-51]
    survival = np.array(survival)
    counts = np.arange(1, survival.size + 1)
    margin = np.maximum(survival * 1e-9, 2.0**-53)
    below = poisson_count(mean, jnp.asarray(survival - margin))
    above = poisson_count(mean, jnp.asarray(np.minimum(survival + margin, 1 - 1e-16)))
    np.testing.assert_array_equal(np.asarray(below), counts)
    np.testing.assert_array_equal(np.asarray(above), counts - 1)


def test_poisson_count_zero_rate_and_no_cap():
    """No jumps at rate 0; a mean of 40 per step is no longer capped at 64 jumps (the former
    MAX_JUMPS_PER_STEP): counts above 64 (probability 2.3e-4) occur, and the mean and
    variance of the counts are those of Poisson(40) within 4 SE."""
    u = jnp.array([1e-7, 0.3, 0.5, 0.9999], jnp.float32)
    assert np.all(np.asarray(poisson_count(0.0, u)) == 0)

    def draw(key):
        draws = Draws(key_words(key), jnp.arange(2**16, dtype=jnp.uint32), 0, jnp.float32)
        return poisson_count(40.0, draws.uniform(1))

    counts = np.asarray(jax.jit(draw)(jax.random.key(9)), np.float64)
    assert counts.max() > 64
    _within(counts.mean(), 40.0, math.sqrt(40.0 / counts.size))
    _within(counts.var(ddof=1), 40.0, math.sqrt((40.0 + 2 * 40.0**2) / counts.size))


def test_one_step_log_return_moments():
    """Mean and variance of a step's log return: (mu - vol^2/2 - lambda kbar) dt + lambda dt
    jump_mean and vol^2 dt + lambda dt (jump_mean^2 + jump_std^2)."""
    vol, lam, jm, js, r, dt = 0.2, 4.0, -0.1, 0.25, 0.03, 0.5
    model = Merton(100.0, vol, lam, jm, js, rate=r)
    x = np.asarray(jnp.log(hj.simulate(model, hj.TimeGrid(dt, 1), 2**17, jax.random.key(8))),
                   np.float64)
    x = x[:, 1] - x[:, 0]
    kbar = math.exp(jm + 0.5 * js * js) - 1
    mean = (r - 0.5 * vol * vol - lam * kbar) * dt + lam * dt * jm
    variance = vol * vol * dt + lam * dt * (jm * jm + js * js)
    n = x.size
    _within(x.mean(), mean, x.std(ddof=1) / math.sqrt(n))
    fourth = np.mean((x - x.mean()) ** 4)
    _within(x.var(ddof=1), variance, math.sqrt((fourth - x.var() ** 2) / n))


# ---------------------------------------------------------------------------------------------
# Hedging in a jump world.
# ---------------------------------------------------------------------------------------------


def _es_numpy(pnl: np.ndarray, alpha: float) -> np.ndarray:
    """Expected shortfall of each row (Acerbi-Tasche: fractional boundary weight)."""
    n = pnl.shape[-1]
    k = (1 - alpha) * n
    whole = int(math.floor(k))
    worst = np.sort(pnl, axis=-1)
    tail = worst[..., :whole].sum(axis=-1) + (k - whole) * worst[..., whole]
    return -tail / k


def _bootstrap_es_se(pnl, alpha, n_boot=200, seed=0) -> float:
    rng = np.random.default_rng(seed)
    resampled = pnl[rng.integers(0, pnl.size, size=(n_boot, pnl.size))]
    return float(np.std(_es_numpy(resampled, alpha), ddof=1))


def test_black_scholes_deltas_in_a_jump_world_fatten_a_short_calls_left_tail():
    """A market maker SHORT one call (quantity -1) delta-hedges with Black-Scholes deltas at
    the jump world's total vol, sigma_total^2 = vol^2 + lambda (jump_mean^2 + jump_std^2).
    A short option is short gamma: the hedge loses about gamma/2 (dS)^2 on every move, which
    the premium pays for when moves are small and frequent but not across a gap. In the
    jump world the worst 1% of outcomes are far worse than in a pure diffusion with the same
    total variance hedged the same way (a long call would see the mirror image: jumps fatten
    its right tail, and its left tail is the bleed of paths without jumps).

    The comparison is measured, not tuned: ES at 99% of each world's P&L with bootstrap
    standard errors, independent keys for the two worlds. Besides, the mean P&L in the jump
    world is the premium received at Black-Scholes minus the Merton value (within 4 SE).
    """
    S, K, T = 100.0, 100.0, 0.25
    vol, lam, jm, js = 0.15, 1.0, -0.1, 0.1
    jump_world = Merton(S, vol, lam, jm, js)
    sigma_total = math.sqrt(vol * vol + lam * (jm * jm + js * js))
    _close(jump_world.total_vol, sigma_total, rtol=1e-6)
    diffusion_world = hj.BlackScholes(S, sigma_total)
    believed = hj.BlackScholes(S, sigma_total)
    short_call = hj.Book([hj.EuropeanCall(K, T)], quantities=[-1.0])
    grid = hj.TimeGrid(T, 63)
    n = 2**14

    def pnl(world, seed):
        result = hj.hedge(world, short_call, hj.DeltaHedge(), None, grid, n,
                          jax.random.key(seed), hedge_model=believed)
        return np.asarray(result.pnl, np.float64), result

    jump_pnl, jump_result = pnl(jump_world, 21)
    diffusion_pnl, _ = pnl(diffusion_world, 22)
    es_jump = float(hj.risk.expected_shortfall(jump_result.pnl, 0.99))
    es_diffusion = float(hj.risk.expected_shortfall(jnp.asarray(diffusion_pnl), 0.99))
    _close(_es_numpy(jump_pnl, 0.99), es_jump, rtol=1e-5)  # the bootstrap's ES is the same
    se_jump = _bootstrap_es_se(jump_pnl, 0.99)
    se_diffusion = _bootstrap_es_se(diffusion_pnl, 0.99)
    z = (es_jump - es_diffusion) / math.hypot(se_jump, se_diffusion)
    print(f"\nES99 short call, BS-delta hedged: jump world {es_jump:.3f} +- {se_jump:.3f}, "
          f"diffusion {es_diffusion:.3f} +- {se_diffusion:.3f}, difference {z:.1f} SE; "
          f"right tail (ES99 of -pnl) jump {float(_es_numpy(-jump_pnl, 0.99)):.3f}, "
          f"diffusion {float(_es_numpy(-diffusion_pnl, 0.99)):.3f}")
    assert z > 5.0

    premium_gap = (bs_price("call", S, K, T, sigma_total)
                   - merton_price("call", S, K, T, vol, lam, jm, js))
    _within(jump_pnl.mean(), premium_gap, jump_pnl.std(ddof=1) / math.sqrt(n))
    _within(diffusion_pnl.mean(), 0.0, diffusion_pnl.std(ddof=1) / math.sqrt(n))


def test_merton_on_merton_hedge_is_unbiased_and_reduces_risk():
    """With the true model as the hedge model (hedge_model omitted), V0 is the Merton price
    and the hedge gains are martingale increments: E[hedge_error] = 0 (within 4 SE). Delta
    hedging cannot remove the jumps, but it still removes most of the variance."""
    model = Merton(100.0, 0.2, 1.0, -0.1, 0.1, rate=0.02, div=0.01)
    call = hj.EuropeanCall(100.0, 0.5)
    result = hj.hedge(model, call, hj.DeltaHedge(), None, hj.TimeGrid(0.5, 21), 2**12,
                      jax.random.key(6))
    _close(result.initial_price,
           merton_price("call", 100.0, 100.0, 0.5, 0.2, 1.0, -0.1, 0.1, 0.02, 0.01), rtol=1e-5)
    error = np.asarray(result.hedge_error, np.float64)
    assert np.all(np.isfinite(error))
    _within(error.mean(), 0.0, error.std(ddof=1) / math.sqrt(error.size))
    assert hj.summary(result)["hedge_effectiveness"] > 0.5


# ---------------------------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------------------------

GOOD = dict(spot=100.0, vol=0.2, jump_rate=1.0, jump_mean=-0.1, jump_std=0.1)


@pytest.mark.parametrize(
    "name, bad",
    [
        ("spot", 0.0), ("spot", -1.0), ("vol", 0.0), ("vol", -0.2), ("vol", math.nan),
        ("jump_rate", -0.5), ("jump_rate", math.inf), ("jump_std", -0.1),
        ("jump_std", math.nan), ("jump_mean", math.nan), ("jump_mean", -math.inf),
        ("rate", math.inf), ("div", math.nan), ("drift", math.inf),
    ],
)
def test_bad_parameters_raise_naming_the_parameter(name, bad):
    with pytest.raises(ValueError, match=rf"{name} must be .*got {name}="):
        Merton(**{**GOOD, name: bad})
    with pytest.raises(ValueError, match=name):
        Merton(**GOOD).replace(**{name: bad})


def test_edge_parameters_are_accepted():
    model = Merton(100.0, 0.2, jump_rate=0.0, jump_mean=0.0, jump_std=0.0)
    assert float(model.mean_relative_jump) == 0.0
    _close(model.total_vol, 0.2, rtol=1e-7)
    assert model.risk_neutral().drift is None
    assert Merton(**GOOD, drift=0.1).mu == pytest.approx(0.1)
