"""`checkpointed_scan` (hedgejax/_scan.py): the same final carry as `lax.scan`, bit for bit,
the same gradients, under jit and vmap, and a gradient that stores O(sqrt(n)) carries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import hedgejax as hj
import hedgejax._hedge as engine
from hedgejax._scan import checkpointed_scan, default_segment


def make_body(theta):
    """A nonlinear step of a two-array carry that uses the int32 step index."""
    def body(carry, i):
        x, y = carry
        t = i.astype(x.dtype) * 0.01
        x2 = jnp.exp(theta * jnp.sin(x) - 0.05 * y) * x + t
        y2 = 0.5 * jnp.log1p(x2 * x2) + jnp.tanh(y) * theta
        return (x2, y2), None
    return body


def carry0(dtype=jnp.float32, size=256):
    return (jnp.linspace(0.1, 1.0, size, dtype=dtype), jnp.linspace(-1.0, 1.0, size, dtype=dtype))


def plain(body, c, n):
    return lax.scan(body, c, jnp.arange(n, dtype=jnp.int32))[0]


def loss(scan):
    def f(c, theta):
        x, y = scan(make_body(theta), c)
        return jnp.sum(x * x) + jnp.sum(jnp.sin(y))
    return f


def assert_same_bits(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert u.dtype == v.dtype and u.shape == v.shape
        np.testing.assert_array_equal(np.atleast_1d(u).view(np.uint8),
                                  np.atleast_1d(v).view(np.uint8))


@pytest.mark.parametrize("n", [1, 2, 7, 63, 252])
def test_forward_bit_identical_to_lax_scan(n):
    body = make_body(jnp.float32(0.1))
    ref = jax.jit(lambda c: plain(body, c, n))(carry0())
    for segment in (None, 1, 3, n + 5):
        got = jax.jit(lambda c, s=segment: checkpointed_scan(body, c, n, segment=s))(carry0())
        assert_same_bits(got, ref)


@pytest.mark.parametrize("n, segment", [(7, None), (252, None), (252, 5)])
def test_gradients_match_lax_scan(n, segment):
    c, theta = carry0(), jnp.float32(0.1)
    ref = jax.jit(jax.grad(loss(lambda b, c: plain(b, c, n)), argnums=(0, 1)))(c, theta)
    got = jax.jit(jax.grad(loss(lambda b, c: checkpointed_scan(b, c, n, segment=segment)),
                           argnums=(0, 1)))(c, theta)
    # the parameter's cotangent is summed over segments, then over them: float32 rounding
    for u, v in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(u, v, rtol=2e-5, atol=1e-6)


def test_gradients_match_lax_scan_float64(x64):
    """In float64 the summation-order difference is at the 1e-13 level. Two levels: segments
    and a checkpointed step, as in hedge()."""
    c, theta = carry0(jnp.float64), jnp.float64(0.1)

    def scan(b, c):
        return checkpointed_scan(jax.checkpoint(b), c, 20, segment=6)

    ref = jax.jit(jax.grad(loss(lambda b, c: plain(b, c, 20)), argnums=(0, 1)))(c, theta)
    got = jax.jit(jax.grad(loss(scan), argnums=(0, 1)))(c, theta)
    for u, v in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)


def test_vmap_and_xs_pytree():
    thetas = jnp.array([0.05, 0.1, 0.2], jnp.float32)

    def run(scan):
        return jax.jit(jax.vmap(lambda th: scan(make_body(th), carry0(size=64))))(thetas)

    assert_same_bits(run(lambda b, c: checkpointed_scan(b, c, 40, segment=6)),
                     run(lambda b, c: plain(b, c, 40)))
    # xs as a pytree of arrays with a leading axis, as lax.scan's xs
    xs = {"i": jnp.arange(40, dtype=jnp.int32), "w": jnp.linspace(0, 1, 40 * 3).reshape(40, 3)}

    def body(c, x):
        return c * jnp.cos(x["w"].sum()) + x["i"], None

    assert_same_bits(checkpointed_scan(body, jnp.ones(5), xs, segment=7),
                     lax.scan(body, jnp.ones(5), xs)[0])
    # forward mode passes through (jax.checkpoint is transparent to jvp)
    tangents = jax.jvp(lambda c: checkpointed_scan(make_body(0.1), c, 7, segment=3),
                       (carry0(size=64),), (carry0(size=64),))
    ref = jax.jvp(lambda c: plain(make_body(0.1), c, 7), (carry0(size=64),), (carry0(size=64),))
    for u, v in zip(jax.tree.leaves(tangents), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6)
    grad = jax.grad(lambda w: checkpointed_scan(body, jnp.ones(5) * w, xs).sum())(2.0)
    np.testing.assert_allclose(grad, jax.grad(lambda w: lax.scan(body, jnp.ones(5) * w,
                                                                  xs)[0].sum())(2.0), rtol=1e-6)


def test_edge_cases():
    body = make_body(jnp.float32(0.1))
    c = carry0()
    assert_same_bits(checkpointed_scan(body, c, 0), c)
    assert [default_segment(n) for n in (0, 1, 2, 4, 5, 16, 17, 252)] == [1, 1, 2, 2, 3, 4, 5, 14]
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="segment"):
            checkpointed_scan(body, c, 10, segment=bad)
    with pytest.raises(ValueError, match="steps"):
        checkpointed_scan(body, c, -1)


def test_gradient_memory_is_sublinear():
    """XLA's temporary buffers of the gradient: per-step checkpointing stores every step's
    carry (256 x 2 x 64 KiB); segments of 16 steps store 16 carries and one segment's
    residuals (16 steps' worth: the carries alone when the step is checkpointed too)."""
    size, n = 2**14, 256
    c = (jnp.ones(size, jnp.float32), jnp.zeros(size, jnp.float32))

    def temp(scan):
        f = jax.jit(jax.grad(lambda c: loss(scan)(c, jnp.float32(0.1))))
        analysis = f.lower(c).compile().memory_analysis()
        if analysis is None:
            pytest.skip("no memory analysis on this backend")
        return analysis.temp_size_in_bytes

    per_step = temp(lambda b, c: plain(jax.checkpoint(b), c, n))
    nested = temp(lambda b, c: checkpointed_scan(b, c, n))
    two_level = temp(lambda b, c: checkpointed_scan(jax.checkpoint(b), c, n))
    assert per_step > n * 2 * size * 4 * 0.9
    assert nested < per_step / 3
    assert two_level < per_step / 6


def test_hedge_loop_bit_identical(monkeypatch):
    """`hedge()`'s loop run through checkpointed_scan gives the same per-path results bit for
    bit. Whichever of lax.scan and checkpointed_scan `_simulate` calls now is patched to the
    other (odd sizes, and the caches cleared, keep another program from being reused)."""
    def run():
        return hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 1.0),
                        hj.BandHedge(0.05), hj.Proportional(0.001), hj.TimeGrid(1.0, 37), 320,
                        jax.random.key(3))

    def plain_scan(body, c, xs_or_n, **_):
        if isinstance(xs_or_n, int):
            xs_or_n = jnp.arange(xs_or_n, dtype=jnp.int32)
        return lax.scan(body, c, xs_or_n)[0]

    class CheckpointedLax:
        def __getattr__(self, name):
            return getattr(lax, name)

        @staticmethod
        def scan(body, c, xs):
            return checkpointed_scan(body, c, xs), None

    first = run()
    if hasattr(engine, "checkpointed_scan"):  # _simulate calls it: compare with lax.scan
        monkeypatch.setattr(engine, "checkpointed_scan", plain_scan)
    else:  # _simulate calls lax.scan: compare with checkpointed_scan
        monkeypatch.setattr(engine, "lax", CheckpointedLax())
    jax.clear_caches()
    second = run()
    monkeypatch.undo()
    jax.clear_caches()
    assert_same_bits(first, second)
