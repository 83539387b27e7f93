"""The counter-based generators of `hedgejax._random` (issue 13, part 3).

Every generator of `GENERATORS`: known-answer vectors of its hash (Random123's
tests/kat_vectors; Salmon et al. 2011), normals with the moments, distribution and
independence of N(0, 1) (moments and correlations within 4.5 standard errors, a
Kolmogorov-Smirnov test and a chi-square test of pairs at fixed seeds), uniforms strictly
inside (0, 1), and draws of a path that do not depend on the other paths drawn with it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import hedgejax as hj
from hedgejax import _random
from hedgejax._random import GENERATORS, Draws, key_words, philox4x32, threefry2x32

N = 2**16          # paths per sample: standard errors are 1/256 of a standard deviation
STREAMS = (0, 1, 2, 15)
STEPS = (0, 1)
LIMIT = 4.5        # standard errors


def _u32(text):
    return tuple(jnp.asarray(np.uint32(int(word, 16))) for word in text.split())


# Random123 tests/kat_vectors: counter words, key words, expected output words.
THREEFRY_KAT = {
    20: [("00000000 00000000", "00000000 00000000", "6b200159 99ba4efe"),
         ("ffffffff ffffffff", "ffffffff ffffffff", "1cb996fc bb002be7"),
         ("243f6a88 85a308d3", "13198a2e 03707344", "c4923a9c 483df7a0")],
    13: [("00000000 00000000", "00000000 00000000", "9d1c5ec6 8bd50731"),
         ("ffffffff ffffffff", "ffffffff ffffffff", "fd36d048 2d17272c"),
         ("243f6a88 85a308d3", "13198a2e 03707344", "ba3e4725 f27d669e")],
}
PHILOX_KAT = [
    ("00000000 00000000 00000000 00000000", "00000000 00000000",
     "6627e8d5 e169c58d bc57ac4c 9b00dbd8"),
    ("ffffffff ffffffff ffffffff ffffffff", "ffffffff ffffffff",
     "408f276d 41c83b0e a20bc7c6 6d5451fd"),
    ("243f6a88 85a308d3 13198a2e 03707344", "a4093822 299f31d0",
     "d16cfe09 94fdcceb 5001e420 24126ea1"),
]


@pytest.mark.parametrize("rounds", sorted(THREEFRY_KAT))
def test_threefry_known_answers(rounds):
    for counter, key, expected in THREEFRY_KAT[rounds]:
        out = threefry2x32(_u32(key), _u32(counter), rounds)
        assert [int(w) for w in out] == [int(w) for w in _u32(expected)]


def test_philox_known_answers():
    for counter, key, expected in PHILOX_KAT:
        out = philox4x32(_u32(key), _u32(counter))
        assert [int(w) for w in out] == [int(w) for w in _u32(expected)]


def test_philox_multiplication_routes_agree():
    """The uint64 product (under `jax.enable_x64`) and the 16-bit fallback give the same bits,
    including the extreme words."""
    a = np.random.default_rng(0).integers(0, 2**32, 4096, dtype=np.uint64).astype(np.uint32)
    a = jnp.asarray(np.concatenate([a, np.array([0, 1, 2**32 - 1], np.uint32)]))
    for m in _random._PHILOX_M:
        hi, lo = jax.jit(lambda x, m=m: _random._mulhilo(x, m))(a)
        hi16, lo16 = jax.jit(lambda x, m=m: _random._mulhilo16(x, m))(a)
        product = np.asarray(a).astype(object) * m
        assert np.array_equal(np.asarray(hi), np.asarray(hi16))
        assert np.array_equal(np.asarray(lo), np.asarray(lo16))
        assert [int(h) for h in np.asarray(hi)] == [int(p >> 32) for p in product]


def test_default_generator_is_threefry_20_unchanged():
    """Without `generator`, draws are the Threefry-2x32-20 words of counter
    (path, step * MAX_STREAMS + stream) under the key, mapped as before."""
    words = key_words(jax.random.key(7))
    path_index = jnp.arange(1024, dtype=jnp.uint32)
    assert _random.DEFAULT_GENERATOR == "threefry" and GENERATORS[0] == "threefry"
    assert Draws(words, path_index, 3, jnp.float32).generator == "threefry"

    @jax.jit
    def draw(path_index):
        default = Draws(words, path_index, 3, jnp.float32)
        named = Draws(words, path_index, 3, jnp.float32, generator="threefry")
        w0, _ = threefry2x32(words, (path_index, jnp.full(1024, 3 * 16 + 5, jnp.uint32)))
        return default.uniform(5), w0, default.normal(0), named.normal(0)

    u, w0, z_default, z_named = (np.asarray(x) for x in draw(path_index))
    expected = ((w0 >> 9).astype(np.float64) * 2 + 1) * 2.0**-24
    assert np.array_equal(u, expected.astype(np.float32))
    assert np.array_equal(z_default, z_named)


def test_default_generator_switch_and_unknown_name(monkeypatch):
    words = key_words(jax.random.key(7))
    path_index = jnp.arange(256, dtype=jnp.uint32)
    monkeypatch.setattr(_random, "DEFAULT_GENERATOR", "philox")
    draws = Draws(words, path_index, 0, jnp.float32)
    assert draws.generator == "philox" and draws._gen.hash == "philox"
    with pytest.raises(ValueError, match="generator must be one of"):
        Draws(words, path_index, 0, jnp.float32, generator="mersenne")


@pytest.mark.parametrize("generator", GENERATORS)
def test_stream_range_checked(generator):
    draws = Draws(key_words(jax.random.key(0)), jnp.arange(8, dtype=jnp.uint32), 0,
                  jnp.float32, generator=generator)
    for bad in (-1, _random.MAX_STREAMS):
        with pytest.raises(ValueError, match="stream must be in"):
            draws.normal(bad)
        with pytest.raises(ValueError, match="stream must be in"):
            draws.uniform(bad)


def _sample(generator, dtype, key=2026, streams=STREAMS):
    """Normals and uniforms of N paths, steps STEPS, `streams`, in one jitted call: arrays of
    shape (len(STEPS), len(streams), N)."""
    words = key_words(jax.random.key(key))

    @jax.jit
    def draw(path_index):
        normals, uniforms = [], []
        for step in STEPS:
            draws = Draws(words, path_index, step, dtype, generator=generator)
            normals.append(jnp.stack([draws.normal(s) for s in streams]))
            uniforms.append(jnp.stack([draws.uniform(s) for s in streams]))
        return jnp.stack(normals), jnp.stack(uniforms)

    z, u = draw(jnp.arange(N, dtype=jnp.uint32))
    return np.asarray(z, np.float64), np.asarray(u, np.float64)


@pytest.fixture(scope="module", params=GENERATORS)
def sample32(request):
    return request.param, _sample(request.param, jnp.float32)


def _check_normal(z, what):
    n = z.size
    scores = {"mean": z.mean() * np.sqrt(n), "variance": (z.var() - 1) / np.sqrt(2 / n),
              "skew": stats.skew(z) / np.sqrt(6 / n),
              "excess kurtosis": stats.kurtosis(z) / np.sqrt(24 / n)}
    for name, score in scores.items():
        assert abs(score) < LIMIT, f"{what}: {name} is {score:.2f} standard errors off"
    assert stats.kstest(z, "norm").pvalue > 1e-4, what


def _check_uncorrelated(x, y, what):
    score = np.corrcoef(x, y)[0, 1] * np.sqrt(x.size)
    assert abs(score) < LIMIT, f"{what}: correlation is {score:.2f} standard errors off"


def _check_pairs(u, v, what, bins=16):
    """Chi-square test that (u, v) are uniform on the unit square: independence beyond
    correlation (a 16 x 16 grid, about 256 pairs per cell)."""
    counts, _, _ = np.histogram2d(u, v, bins=bins, range=[[0, 1], [0, 1]])
    assert stats.chisquare(counts.ravel()).pvalue > 1e-4, what


def test_normals_are_standard(sample32):
    generator, (z, _) = sample32
    for i, step in enumerate(STEPS):
        for j, stream in enumerate(STREAMS):
            _check_normal(z[i, j], f"{generator} step {step} stream {stream}")


def test_uniforms_are_uniform_in_open_interval(sample32):
    generator, (_, u) = sample32
    assert 0 < u.min() and u.max() < 1
    for i in range(len(STEPS)):
        for j in range(len(STREAMS)):
            assert stats.kstest(u[i, j], "uniform").pvalue > 1e-4, (generator, i, j)
            mean = (u[i, j].mean() - 0.5) / np.sqrt(1 / 12 / N)
            assert abs(mean) < LIMIT, (generator, i, j)


def test_no_correlation_across_steps_paths_and_streams(sample32):
    generator, (z, u) = sample32
    for j, stream in enumerate(STREAMS):
        _check_uncorrelated(z[0, j], z[1, j], f"{generator} consecutive steps, {stream}")
        _check_uncorrelated(u[0, j], u[1, j], f"{generator} uniform steps, {stream}")
        for i in range(len(STEPS)):
            _check_uncorrelated(z[i, j, :-1], z[i, j, 1:], f"{generator} adjacent paths")
            _check_uncorrelated(z[i, j, :-1] ** 2, z[i, j, 1:] ** 2,
                                f"{generator} adjacent paths, squares")
    for a in range(len(STREAMS)):
        for b in range(a + 1, len(STREAMS)):
            what = f"{generator} streams {STREAMS[a]} and {STREAMS[b]}"
            _check_uncorrelated(z[0, a], z[0, b], what)
            _check_uncorrelated(z[0, a] ** 2, z[0, b] ** 2, what + " (squares)")
            _check_uncorrelated(u[0, a], u[0, b], what + " (uniforms)")
            # a normal and another stream's uniform (Heston draws normal(0) and uniform(1))
            _check_uncorrelated(z[0, a], u[0, b], what + " (normal, uniform)")
            _check_uncorrelated(z[0, a] ** 2, u[0, b], what + " (normal squared, uniform)")


def test_pairs_are_independent(sample32):
    """Streams that share a hash call (Philox), a Box-Muller pair, a normal and the next
    stream's uniform, consecutive steps and adjacent paths: uniform on the unit square."""
    generator, (z, u) = sample32
    phi = stats.norm.cdf
    _check_pairs(u[0, 0], u[0, 1], f"{generator} uniforms of streams 0 and 1")
    _check_pairs(phi(z[0, 0]), phi(z[0, 1]), f"{generator} normals of streams 0 and 1")
    _check_pairs(phi(z[0, 0]), u[0, 1], f"{generator} normal 0, uniform 1")
    _check_pairs(phi(z[0, 1]), u[0, 0], f"{generator} normal 1, uniform 0")
    _check_pairs(phi(z[0, 0]), phi(z[1, 0]), f"{generator} consecutive steps")
    _check_pairs(phi(z[0, 0, ::2]), phi(z[0, 0, 1::2]), f"{generator} adjacent paths")


def test_antithetic_mirrors(sample32):
    generator, _ = sample32
    words = key_words(jax.random.key(3))

    @jax.jit
    def draw(path_index):
        plain = Draws(words, path_index, 4, jnp.float32, generator=generator)
        mirror = Draws(words, path_index, 4, jnp.float32, True, generator=generator)
        return [(mirror.normal(s), -plain.normal(s), mirror.uniform(s), 1 - plain.uniform(s))
                for s in (0, 1)]

    for values in draw(jnp.arange(512, dtype=jnp.uint32)):
        assert np.array_equal(values[0], values[1]) and np.array_equal(values[2], values[3])


@pytest.mark.parametrize("generator", GENERATORS)
def test_float64_normals_and_uniforms(x64, generator):
    z, u = _sample(generator, jnp.float64, key=11, streams=(0, 1))
    assert 0 < u.min() and u.max() < 1
    for j in range(2):
        _check_normal(z[0, j], f"{generator} float64 stream {j}")
    _check_uncorrelated(z[0, 0], z[1, 0], f"{generator} float64 consecutive steps")
    _check_uncorrelated(z[0, 0], u[0, 1], f"{generator} float64 normal 0, uniform 1")
    # float64 uniforms carry more than float32's 24 bits
    assert np.any(u[0, 0] * 2**24 != np.round(u[0, 0] * 2**24))


@pytest.mark.parametrize("generator", GENERATORS)
def test_extreme_words_stay_finite_and_open(generator):
    """All-zero and all-one words give uniforms strictly inside (0, 1) and finite normals."""
    for dtype in (jnp.float32,):
        for word in (0, 2**32 - 1):
            w = jnp.full(4, np.uint32(word))
            u = np.asarray(_random._open_uniform(w, w, dtype))
            v = np.asarray(_random._symmetric(w, w, dtype))
            assert np.all((0 < u) & (u < 1)) and np.all((-1 < v) & (v < 1))
            assert np.all(np.isfinite(np.asarray(jax.lax.erf_inv(jnp.asarray(v)))))
            assert np.all(np.isfinite(np.sqrt(-2 * np.log(u))))


@pytest.mark.parametrize("generator", GENERATORS)
def test_path_draws_do_not_depend_on_the_batch(generator):
    """A path's draws are bit-identical whether drawn among 64 paths or 4096 (a 64 x 64
    block, as `hedge` lays paths out), in any order, under jit."""
    words = key_words(jax.random.key(5))

    @jax.jit
    def draw(path_index):
        draws = Draws(words, path_index, 9, jnp.float32, generator=generator)
        return jnp.stack([draws.normal(0), draws.normal(1), draws.uniform(1)])

    big = np.asarray(draw(jnp.arange(4096, dtype=jnp.uint32).reshape(64, 64))).reshape(3, -1)
    for index in (np.arange(1000, 1064), np.arange(4096)[::-1].reshape(64, 64)):
        small = np.asarray(draw(jnp.asarray(index, jnp.uint32)))
        assert np.array_equal(small.reshape(3, -1), big[:, index.ravel()]), index.shape


def test_simulation_with_another_default_generator(monkeypatch):
    """Simulations draw through `Draws`, so `DEFAULT_GENERATOR` reaches them once JAX's trace
    caches are cleared (the lead will expose a public option); paths change, the
    distribution does not."""
    def spots():
        paths = hj.simulate(hj.BlackScholes(100.0, 0.2), hj.TimeGrid(1.0, 4), 4096,
                            jax.random.key(0))
        return np.asarray(paths[:, -1], np.float64)

    base = spots()
    monkeypatch.setattr(_random, "DEFAULT_GENERATOR", "philox")
    jax.clear_caches()
    other = spots()
    jax.clear_caches()
    assert np.all(np.isfinite(other)) and not np.array_equal(base, other)
    for s_T in (base, other):   # E[S_T] = 100 without rates: within 4.5 standard errors
        assert abs(s_T.mean() - 100.0) < LIMIT * s_T.std() / np.sqrt(s_T.size)
