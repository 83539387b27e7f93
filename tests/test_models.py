"""Random numbers, path simulation and Monte Carlo prices against independent references:
Random123 known-answer vectors, JAX's own threefry kernel, distribution statistics written
here (Kolmogorov-Smirnov, moments, correlations) and closed-form prices."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

import hedgejax as hj
import hedgejax._random as hr
from hedgejax._random import Draws, key_words, threefry2x32

U32 = np.uint32


# ---------------------------------------------------------------------------------------------
# Statistics helpers (independent of hedgejax).
# ---------------------------------------------------------------------------------------------

_erfc = np.frompyfunc(math.erfc, 1, 1)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.asarray(_erfc(-np.asarray(x, np.float64) / math.sqrt(2.0)), np.float64)


def ks_statistic(sample: np.ndarray, cdf) -> float:
    """Two-sided Kolmogorov-Smirnov statistic D_n = sup |F_n - F|."""
    x = np.sort(np.asarray(sample, dtype=np.float64))
    n = x.size
    f = cdf(x)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - f), np.max(f - (i - 1) / n)))


def ks_critical(n: int, level: float = 1e-3) -> float:
    """Asymptotic critical value of D_n at significance `level`: sqrt(-ln(level/2)/2)/sqrt(n)."""
    return math.sqrt(-0.5 * math.log(level / 2.0)) / math.sqrt(n)


def corr(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, np.float64), np.asarray(b, np.float64))[0, 1])


def _draws(n, key=7, step=0, dtype=jnp.float32, offset=0):
    path_index = jnp.arange(offset, offset + n, dtype=jnp.uint32)
    return Draws(key_words(jax.random.key(key)), path_index, step, dtype)


# ---------------------------------------------------------------------------------------------
# Threefry-2x32-20.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, counter, expected",
    [
        ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
        ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
        ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
    ],
)
def test_threefry_random123_known_answers(key, counter, expected):
    out = threefry2x32((jnp.asarray(key[0], jnp.uint32), jnp.asarray(key[1], jnp.uint32)),
                       (jnp.asarray(counter[0], jnp.uint32), jnp.asarray(counter[1], jnp.uint32)))
    assert (int(out[0]), int(out[1])) == expected


def test_threefry_matches_jax_kernel_on_random_inputs():
    rng = np.random.default_rng(1)
    for _ in range(4):
        k0, k1 = (U32(v) for v in rng.integers(0, 2**32, 2, dtype=np.uint64))
        c0 = rng.integers(0, 2**32, 1000, dtype=np.uint64).astype(U32)
        c1 = rng.integers(0, 2**32, 1000, dtype=np.uint64).astype(U32)
        x0, x1 = threefry2x32((jnp.asarray(k0), jnp.asarray(k1)),
                              (jnp.asarray(c0), jnp.asarray(c1)))
        # jax's kernel hashes the pairs (count[i], count[n + i]) and returns them the same way.
        ref = np.asarray(threefry_2x32((jnp.asarray(k0), jnp.asarray(k1)),
                                       jnp.asarray(np.concatenate([c0, c1]))))
        np.testing.assert_array_equal(np.asarray(x0), ref[:1000])
        np.testing.assert_array_equal(np.asarray(x1), ref[1000:])


def test_threefry_works_under_jit():
    f = jax.jit(lambda k, c: threefry2x32(k, c))
    out = f((jnp.uint32(0), jnp.uint32(0)), (jnp.uint32(0), jnp.uint32(0)))
    assert (int(out[0]), int(out[1])) == (0x6B200159, 0x99BA4EFE)


# ---------------------------------------------------------------------------------------------
# Draws.
# ---------------------------------------------------------------------------------------------

N_DRAWS = 2**16


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normals_pass_ks_and_moments(x64, dtype):
    jax.config.update("jax_enable_x64", dtype == "float64")
    z = np.asarray(_draws(N_DRAWS, dtype=jnp.dtype(dtype)).normal(0), dtype=np.float64)
    assert z.dtype == np.float64 and z.shape == (N_DRAWS,)
    assert ks_statistic(z, normal_cdf) < ks_critical(N_DRAWS)
    n = z.size
    assert abs(z.mean()) < 4.0 / math.sqrt(n)
    assert abs(z.var(ddof=1) - 1.0) < 4.0 * math.sqrt(2.0 / n)
    # Tails: excess kurtosis 0 within 4 SE (SE ~ sqrt(24/n)).
    kurt = np.mean((z - z.mean()) ** 4) / np.var(z) ** 2
    assert abs(kurt - 3.0) < 4.0 * math.sqrt(24.0 / n)
    # Tail frequency P(|Z| > 2.5) = 2 N(-2.5), a binomial proportion.
    p = 2.0 * float(normal_cdf(-2.5))
    assert abs(np.mean(np.abs(z) > 2.5) - p) < 4.0 * math.sqrt(p * (1 - p) / n)


def test_draws_have_requested_dtype(x64):
    assert _draws(8, dtype=jnp.float64).normal(0).dtype == jnp.float64
    assert _draws(8, dtype=jnp.float64).uniform(0).dtype == jnp.float64
    assert _draws(8, dtype=jnp.float32).normal(0).dtype == jnp.float32


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniforms_pass_ks_and_lie_strictly_inside_unit_interval(x64, dtype):
    jax.config.update("jax_enable_x64", dtype == "float64")
    u = np.asarray(_draws(N_DRAWS, key=11, dtype=jnp.dtype(dtype)).uniform(3), np.float64)
    assert np.all(u > 0.0) and np.all(u < 1.0)
    assert ks_statistic(u, lambda x: x) < ks_critical(N_DRAWS)
    assert abs(u.mean() - 0.5) < 4.0 * math.sqrt(1.0 / 12.0 / u.size)


def test_float32_normals_have_no_infinities_at_2_pow_20():
    d = _draws(2**20, key=2024)
    for stream in (0, 1):
        z = np.asarray(d.normal(stream))
        assert np.all(np.isfinite(z))
        assert np.max(np.abs(z)) < 7.0
        u = np.asarray(d.uniform(stream))
        assert np.all((u > 0.0) & (u < 1.0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("word", [0x00000000, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF])
def test_extreme_random_words_give_open_interval_uniforms_and_finite_normals(
        x64, monkeypatch, dtype, word):
    """Whatever 64 random bits come out of the generator (here forced to the extremes), the
    uniform lies strictly in (0, 1) and the normal is finite."""
    jax.config.update("jax_enable_x64", dtype == "float64")

    def fixed_words(key, counter):
        shape = jnp.shape(counter[0])
        return (jnp.full(shape, word, jnp.uint32), jnp.full(shape, word, jnp.uint32))

    monkeypatch.setattr(hr, "threefry2x32", fixed_words)
    d = _draws(4, dtype=jnp.dtype(dtype))
    u = np.asarray(d.uniform(0), np.float64)
    z = np.asarray(d.normal(0), np.float64)
    assert np.all(u > 0.0) and np.all(u < 1.0), u
    assert np.all(np.isfinite(z)), z
    if word == 0xFFFFFFFF:
        assert np.all(z > 5.0)
    if word == 0:
        assert np.all(z < -5.0)


def test_float32_uniform_of_the_largest_24_bit_draw_is_below_one():
    """A real (not patched) draw whose top 24 bits are all ones: path index 3154904 under key
    words (0, 0), step 0, stream 0 (found by searching JAX's own threefry; checked below). The
    uniform must still be < 1, as documented ("open interval (0, 1)")."""
    path = 3154904
    word = int(threefry_2x32((jnp.uint32(0), jnp.uint32(0)),
                             jnp.asarray([path, 0], jnp.uint32))[0])
    assert word >> 8 == 0xFFFFFF
    d = Draws((jnp.uint32(0), jnp.uint32(0)), jnp.asarray([path], jnp.uint32), 0, jnp.float32)
    u = float(d.uniform(0)[0])
    assert 0.0 < u < 1.0, u
    assert math.isfinite(float(d.normal(0)[0]))


def test_streams_steps_and_paths_are_uncorrelated():
    n = N_DRAWS
    bound = 4.0 / math.sqrt(n)
    d0 = _draws(n, step=0)
    d1 = _draws(n, step=1)
    z00, z01, z10 = d0.normal(0), d0.normal(1), d1.normal(0)
    assert abs(corr(z00, z01)) < bound  # streams at one step
    assert abs(corr(z00, z10)) < bound  # steps
    assert abs(corr(z00[:-1], z00[1:])) < bound  # neighbouring paths
    assert abs(corr(z00, _draws(n, key=8).normal(0))) < bound  # keys
    assert abs(corr(d0.uniform(0), d0.uniform(5))) < bound
    # Draws are different numbers, not just uncorrelated ones.
    assert not np.array_equal(np.asarray(z00), np.asarray(z01))
    # Squares too (catches dependence that is invisible to linear correlation).
    assert abs(corr(np.asarray(z00) ** 2, np.asarray(z10) ** 2)) < bound


def test_draws_depend_on_global_path_index_only():
    full = np.asarray(_draws(1000).normal(2))
    part = np.asarray(_draws(300, offset=500).normal(2))
    np.testing.assert_array_equal(part, full[500:800])


def test_stream_out_of_range_is_rejected():
    d = _draws(4)
    with pytest.raises(ValueError, match="stream"):
        d.normal(hr.MAX_STREAMS)
    with pytest.raises(ValueError, match="stream"):
        d.uniform(-1)


# ---------------------------------------------------------------------------------------------
# Geometric Brownian motion.
# ---------------------------------------------------------------------------------------------


def _check_gbm(model, mu, n_paths=20_000, n_steps=50, maturity=1.0, seed=0):
    grid = hj.TimeGrid(maturity, n_steps)
    paths = np.asarray(hj.simulate(model, grid, n_paths, jax.random.key(seed)), np.float64)
    assert paths.shape == (n_paths, n_steps + 1)
    np.testing.assert_allclose(paths[:, 0], float(model.spot), rtol=1e-6)
    vol, dt = float(model.vol), maturity / n_steps

    logret = np.diff(np.log(paths), axis=1)
    n = logret.size
    mean_exact, var_exact = (mu - 0.5 * vol**2) * dt, vol**2 * dt
    assert abs(logret.mean() - mean_exact) < 4.0 * math.sqrt(var_exact / n)
    assert abs(logret.var(ddof=1) - var_exact) < 4.0 * var_exact * math.sqrt(2.0 / (n - 1))
    # Each step separately: the same law at the first and the last step.
    for j in (0, n_steps - 1):
        col = logret[:, j]
        assert abs(col.mean() - mean_exact) < 4.0 * math.sqrt(var_exact / n_paths)
    # Increments are independent across steps.
    assert abs(corr(logret[:, :-1].ravel(), logret[:, 1:].ravel())) < 4.0 / math.sqrt(n)
    # Terminal mean E[S_T] = S0 e^{mu T} and law of log S_T.
    s_t = paths[:, -1]
    assert abs(s_t.mean() - float(model.spot) * math.exp(mu * maturity)) < 4.0 * (
        s_t.std(ddof=1) / math.sqrt(n_paths))
    log_t = np.log(s_t / float(model.spot))
    sd_t = vol * math.sqrt(maturity)
    standardized = (log_t - (mu - 0.5 * vol**2) * maturity) / sd_t
    assert ks_statistic(standardized, normal_cdf) < ks_critical(n_paths)


def test_gbm_risk_neutral_moments():
    model = hj.BlackScholes(100.0, 0.3, rate=0.05, div=0.02)
    _check_gbm(model, mu=0.05 - 0.02)


def test_gbm_real_world_drift_moments():
    # A high vol and a long horizon make the Ito term -vol^2/2 large against the SE.
    model = hj.BlackScholes(100.0, 0.6, rate=0.01, drift=0.15)
    _check_gbm(model, mu=0.15, maturity=2.0, seed=1)


def test_gbm_float64_moments(x64):
    model = hj.BlackScholes(50.0, 0.4, rate=0.02, div=0.0, drift=-0.1)
    _check_gbm(model, mu=-0.1, n_paths=5000, n_steps=20, maturity=2.0, seed=5)


def test_risk_neutral_drops_drift():
    model = hj.BlackScholes(100.0, 0.25, rate=0.04, div=0.01, drift=0.3)
    rn = model.risk_neutral()
    assert rn.drift is None
    assert float(rn.mu) == pytest.approx(0.03, abs=1e-7)
    for name in ("spot", "vol", "rate", "div"):
        assert float(getattr(rn, name)) == float(getattr(model, name))


def test_same_key_same_paths_and_different_key_different_paths():
    model = hj.BlackScholes(100.0, 0.2, rate=0.01)
    grid = hj.TimeGrid(0.5, 10)
    a = np.asarray(hj.simulate(model, grid, 500, jax.random.key(42)))
    b = np.asarray(hj.simulate(model, grid, 500, jax.random.key(42)))
    c = np.asarray(hj.simulate(model, grid, 500, jax.random.key(43)))
    np.testing.assert_array_equal(a, b)
    assert np.all(a[:, 1:] != c[:, 1:])  # every simulated point differs
    # Paths are a function of the global path index: a shorter run is a prefix.
    short = np.asarray(hj.simulate(model, grid, 120, jax.random.key(42)))
    np.testing.assert_array_equal(short, a[:120])


# ---------------------------------------------------------------------------------------------
# Monte Carlo prices.
# ---------------------------------------------------------------------------------------------


def _N(x):
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def closed_form(kind, S, K, T, vol, r, q, cash=1.0):
    sd = vol * math.sqrt(T)
    d1 = (math.log(S / K) + (r - q) * T) / sd + 0.5 * sd
    d2 = d1 - sd
    if kind == "call":
        return S * math.exp(-q * T) * _N(d1) - K * math.exp(-r * T) * _N(d2)
    if kind == "put":
        return K * math.exp(-r * T) * _N(-d2) - S * math.exp(-q * T) * _N(-d1)
    if kind == "digital":
        return cash * math.exp(-r * T) * _N(d2)
    raise ValueError(kind)


S0, VOL, R, Q = 100.0, 0.25, 0.04, 0.01


@pytest.mark.parametrize(
    "kind, make",
    [
        ("call", lambda: hj.EuropeanCall(105.0, 1.0)),
        ("put", lambda: hj.EuropeanPut(95.0, 1.0)),
        ("digital", lambda: hj.Digital(110.0, 1.0, cash=1.0)),
    ],
)
@pytest.mark.parametrize("drift", [None, 0.25])
def test_mc_price_matches_closed_form(kind, make, drift):
    model = hj.BlackScholes(S0, VOL, rate=R, div=Q, drift=drift)
    inst = make()
    mc, se = hj.mc_price(model, inst, 100_000, jax.random.key(3))
    exact = closed_form(kind, S0, float(inst.strike), 1.0, VOL, R, Q)
    assert float(se) > 0.0
    assert abs(float(mc) - exact) < 4.0 * float(se), (float(mc), exact, float(se))


def test_mc_digital_stderr_is_binomial():
    """For a digital the discounted payoff is e^{-rT} x Bernoulli(p), p = N(d2): the reported
    standard error should be e^{-rT} sqrt(p(1-p)/n) (to sampling accuracy of a std, ~1%)."""
    n = 100_000
    inst = hj.Digital(100.0, 0.5)
    model = hj.BlackScholes(S0, VOL, rate=R, div=Q)
    _, se = hj.mc_price(model, inst, n, jax.random.key(9))
    p = closed_form("digital", S0, 100.0, 0.5, VOL, R, Q) * math.exp(R * 0.5)
    expected = math.exp(-R * 0.5) * math.sqrt(p * (1 - p) / n)
    assert float(se) == pytest.approx(expected, rel=0.02)


def test_mc_price_with_several_steps_is_still_exact(x64):
    model = hj.BlackScholes(S0, VOL, rate=R, div=Q)
    inst = hj.EuropeanCall(100.0, 2.0)
    mc, se = hj.mc_price(model, inst, 20_000, jax.random.key(4), n_steps=8)
    assert mc.dtype == jnp.float64
    assert abs(float(mc) - closed_form("call", S0, 100.0, 2.0, VOL, R, Q)) < 4.0 * float(se)


def test_mc_price_detects_a_drift_error():
    """Sanity check that the tolerance is tight enough: pricing under the real-world drift
    would be rejected by the same 4 SE test."""
    model = hj.BlackScholes(S0, VOL, rate=R, div=Q, drift=0.25)
    spots = np.asarray(hj.simulate(model, hj.TimeGrid(1.0, 1), 100_000, jax.random.key(3)))
    discounted = math.exp(-R) * np.maximum(spots[:, -1] - 105.0, 0.0)
    se = discounted.std(ddof=1) / math.sqrt(discounted.size)
    assert abs(discounted.mean() - closed_form("call", S0, 105.0, 1.0, VOL, R, Q)) > 4.0 * se
