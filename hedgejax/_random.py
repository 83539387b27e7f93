"""Counter-based random numbers that fuse into the hedging step.

Every draw is a pure function of (key, path index, step index, stream): Threefry-2x32 with
20 rounds (Salmon et al. 2011, the generator behind `jax.random`'s default), written as
unrolled `jnp` integer operations. JAX lowers its own threefry as a rolled loop that XLA does
not fuse on CPU; this unrolled form fuses with the rest of the step and was ~3x faster (see
PERF-NOTES). Because draws depend on the *global* path index, results are bit-identical
whatever the chunking of paths.

Normals come from the inverse CDF: z = sqrt(2) erfinv(2u - 1) with 2u - 1 built exactly
from 24 random bits (float32) or 52 bits (float64), so no draw is ever infinite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Streams per step: a model may use stream ids 0 .. MAX_STREAMS - 1 at every step.
MAX_STREAMS = 16

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def _rotl(x: jax.Array, r: int) -> jax.Array:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(
    key: tuple[jax.Array, jax.Array], counter: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32-20 of a two-word counter under a two-word key (all uint32).

    Agrees bit for bit with the Random123 known-answer vectors and `jax.random`'s kernel.
    """
    k0, k1 = key
    k2 = k0 ^ k1 ^ np.uint32(_PARITY)
    ks = (k0, k1, k2)
    x0 = counter[0] + k0
    x1 = counter[1] + k1
    for i in range(20):
        x0 = x0 + x1
        x1 = _rotl(x1, _ROTATIONS[(i // 4) % 2][i % 4])
        x1 = x1 ^ x0
        if i % 4 == 3:
            s = i // 4 + 1
            x0 = x0 + ks[s % 3]
            x1 = x1 + ks[(s + 1) % 3] + np.uint32(s)
    return x0, x1


def key_words(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Two uint32 key words derived from a `jax.random` key (typed or raw, any impl)."""
    bits = jax.random.bits(key, (2,), jnp.uint32)
    return bits[0], bits[1]


def _symmetric(w0: jax.Array, w1: jax.Array, dtype) -> jax.Array:
    """Uniform on the open interval (-1, 1), symmetric and exact: (2m + 1 - 2^b) / 2^b for a
    b-bit random integer m (b = 24 in float32, 52 in float64), so it never rounds to +-1."""
    if jnp.dtype(dtype) == jnp.float64:
        hi = (w0 >> np.uint32(6)).astype(jnp.float64)  # 26 bits
        lo = (w1 >> np.uint32(6)).astype(jnp.float64)  # 26 bits
        odd = 2.0 * (hi * 2.0**26 + lo) + (1.0 - 2.0**52)
        return odd * 2.0**-52
    odd = (w0 >> np.uint32(8)).astype(jnp.int32) * 2 + (1 - 2**24)
    return odd.astype(dtype) * np.asarray(2.0**-24, dtype)


def _open_uniform(w0: jax.Array, w1: jax.Array, dtype) -> jax.Array:
    """Uniform on (0, 1) as an odd multiple of 2^-b, (2m + 1) / 2^b for a (b-1)-bit m
    (b = 24 in float32, 53 in float64): exact, so it never rounds to 0 or 1."""
    if jnp.dtype(dtype) == jnp.float64:
        hi = (w0 >> np.uint32(6)).astype(jnp.float64)  # 26 bits
        lo = (w1 >> np.uint32(6)).astype(jnp.float64)  # 26 bits
        return (2.0 * (hi * 2.0**26 + lo) + 1.0) * 2.0**-53
    odd = (w0 >> np.uint32(9)).astype(jnp.int32) * 2 + 1
    return odd.astype(dtype) * np.asarray(2.0**-24, dtype)


class Draws:
    """Random numbers for one step of all paths in a block.

    A model's `step` asks for `draws.normal(stream)` or `draws.uniform(stream)`; distinct
    streams (0 .. MAX_STREAMS-1) at the same step are independent.
    """

    def __init__(self, key: tuple[jax.Array, jax.Array], path_index: jax.Array,
                 step: jax.Array, dtype, antithetic: bool = False):
        self.key = key
        self.path_index = path_index
        self.step = jnp.asarray(step).astype(jnp.uint32)
        self.dtype = dtype
        # Antithetic draws mirror the same counters: z -> -z and u -> 1 - u, exactly.
        self.antithetic = antithetic

    def _words(self, stream: int) -> tuple[jax.Array, jax.Array]:
        if not 0 <= stream < MAX_STREAMS:
            raise ValueError(f"stream must be in [0, {MAX_STREAMS}), got stream={stream}")
        c1 = self.step * np.uint32(MAX_STREAMS) + np.uint32(stream)
        counter1 = jnp.broadcast_to(c1, self.path_index.shape)
        return threefry2x32(self.key, (self.path_index, counter1))

    def uniform(self, stream: int) -> jax.Array:
        """Uniforms in the open interval (0, 1), one per path."""
        u = _open_uniform(*self._words(stream), self.dtype)
        return 1 - u if self.antithetic else u

    def normal(self, stream: int) -> jax.Array:
        """Standard normals, one per path: sqrt(2) erfinv(v) with v uniform on (-1, 1)."""
        v = _symmetric(*self._words(stream), self.dtype)
        z = np.sqrt(2.0).astype(self.dtype) * lax.erf_inv(v)
        return -z if self.antithetic else z
