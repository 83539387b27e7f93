"""Counter-based random numbers that fuse into the hedging step.

Every draw is a pure function of (key, path index, step index, stream), computed by a
counter-based generator (Salmon, Moraes, Dror and Shaw 2011, "Parallel random numbers: as easy
as 1, 2, 3", SC'11): a keyed bijection of a counter built from the *global* path index and the
step, written as unrolled `jnp` integer operations. JAX lowers its own threefry as a rolled
loop that XLA does not fuse on CPU; the unrolled form fuses with the rest of the step and was
~3x faster (see PERF-NOTES). Because draws depend on the global path index only, results are
bit-identical whatever the chunking of paths or the number of devices.

Generators, chosen by name (`GENERATORS`; `Draws(..., generator=name)`, or the module-level
`DEFAULT_GENERATOR` when none is given):

- ``"threefry"`` (the default): Threefry-2x32 with 20 rounds, the generator behind
  `jax.random`'s default; one call per (path, step, stream).
- ``"threefry13"``: the same with 13 rounds, the fewest for which Salmon et al. (2011)
  report Threefry-2x32 "Crush-resistant" (passing TestU01's SmallCrush, Crush and BigCrush
  for many keys and counter patterns); their default of 20 keeps a safety margin.
- ``"philox"``: Philox-4x32-10 (Salmon et al. 2011), whose rounds are two 32x32 -> 64-bit
  multiplications; one call gives four words, so streams 2j and 2j + 1 share one call.
- ``"<name>+boxmuller"``: the same hash, normals by Box-Muller (below).

Normals come by default from the inverse CDF: z = sqrt(2) erfinv(2u - 1), with 2u - 1 built
exactly from 24 random bits (float32) or 52 bits (float64), so no draw is ever infinite;
XLA's `erf_inv` follows Giles (2010), "Approximating the erfinv function", GPU Computing
Gems Jade Edition. The ``+boxmuller`` generators instead use the transform of Box and
Muller (1958), "A note on the generation of random normal deviates", Ann. Math. Statist.
29:610: r = sqrt(-2 log u1), z = r cos(2 pi u2) for stream 2j and r sin(2 pi u2) for 2j + 1,
from words of their own (a separate key or counter), so a stream's normals are independent of
every other stream's uniforms.

Uniforms (0, 1) are odd multiples of 2^-24 (float32) or 2^-53 (float64): never 0 or 1.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Streams per step: a model may use stream ids 0 .. MAX_STREAMS - 1 at every step.
MAX_STREAMS = 16

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA

# Philox-4x32 multipliers and Weyl key increments (Salmon et al. 2011, Random123).
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)

# XOR-ed into the first key word for the Box-Muller words of the Threefry generators, so
# they come from a different keyed function than the streams' own words ("BoxM" in ASCII).
_BOXMULLER_TWEAK = 0x426F784D

# `jax.enable_x64`, used as a context manager (see `_mulhilo`); None where jax lacks it.
_ENABLE_X64 = getattr(jax, "enable_x64", None)


def _rotl(x: jax.Array, r: int) -> jax.Array:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(
    key: tuple[jax.Array, jax.Array], counter: tuple[jax.Array, jax.Array], rounds: int = 20
) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32-`rounds` of a two-word counter under a two-word key (all uint32).

    Salmon et al. (2011); a key injection follows every fourth round. With 20 rounds it agrees
    bit for bit with the Random123 known-answer vectors and `jax.random`'s kernel; with 13,
    with Random123's `threefry2x32 13` vectors.
    """
    k0, k1 = key
    k2 = k0 ^ k1 ^ np.uint32(_PARITY)
    ks = (k0, k1, k2)
    x0 = counter[0] + k0
    x1 = counter[1] + k1
    for i in range(rounds):
        x0 = x0 + x1
        x1 = _rotl(x1, _ROTATIONS[(i // 4) % 2][i % 4])
        x1 = x1 ^ x0
        if i % 4 == 3:
            s = i // 4 + 1
            x0 = x0 + ks[s % 3]
            x1 = x1 + ks[(s + 1) % 3] + np.uint32(s)
    return x0, x1


def _mulhilo16(a: jax.Array, m: int) -> tuple[jax.Array, jax.Array]:
    """(high, low) 32-bit words of the 64-bit product a * m, from 16-bit halves in uint32
    arithmetic only (four partial products that cannot overflow)."""
    m_lo, m_hi = np.uint32(m & 0xFFFF), np.uint32(m >> 16)
    a_lo, a_hi = a & np.uint32(0xFFFF), a >> np.uint32(16)
    lo_lo = a_lo * m_lo
    mid = a_hi * m_lo + (lo_lo >> np.uint32(16))
    mid2 = a_lo * m_hi + (mid & np.uint32(0xFFFF))
    hi = a_hi * m_hi + (mid >> np.uint32(16)) + (mid2 >> np.uint32(16))
    return hi, a * np.uint32(m)


def _mulhilo(a: jax.Array, m: int) -> tuple[jax.Array, jax.Array]:
    """(high, low) 32-bit words of the 64-bit product a * m (a uint32, m a constant).

    One uint64 multiplication of zero-extended words. uint64 exists only with x64 enabled, so
    it is traced under `jax.enable_x64` even in float32 mode (the results are uint32 again).
    Falls back to `_mulhilo16`, which gives the same bits (about 4x slower on CPU), where that
    context manager is missing.
    """
    if _ENABLE_X64 is None:
        return _mulhilo16(a, m)
    with _ENABLE_X64(True):
        p = lax.convert_element_type(a, jnp.uint64) * np.uint64(m)
        hi = lax.convert_element_type(p >> np.uint64(32), jnp.uint32)
        lo = lax.convert_element_type(p, jnp.uint32)
    return hi, lo


def philox4x32(
    key: tuple[jax.Array, jax.Array],
    counter: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
    rounds: int = 10,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Philox-4x32-`rounds` of a four-word counter under a two-word key (all uint32).

    Salmon et al. (2011): each round multiplies words 0 and 2 by constants and mixes the high
    halves with words 1 and 3 and the key, which is bumped by Weyl constants between rounds.
    Agrees bit for bit with Random123's `philox4x32 10` known-answer vectors.
    """
    k0, k1 = key
    x0, x1, x2, x3 = counter
    for r in range(rounds):
        if r:
            k0 = k0 + np.uint32(_PHILOX_W[0])
            k1 = k1 + np.uint32(_PHILOX_W[1])
        hi0, lo0 = _mulhilo(x0, _PHILOX_M[0])
        hi1, lo1 = _mulhilo(x2, _PHILOX_M[1])
        x0, x1, x2, x3 = hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0
    return x0, x1, x2, x3


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


class _Generator(NamedTuple):
    """A registered generator: its counter hash ("threefry" or "philox"), the hash's rounds,
    and whether normals come from Box-Muller (else from the inverse CDF)."""

    hash: str
    rounds: int
    boxmuller: bool


_REGISTRY: dict[str, _Generator] = {
    "threefry": _Generator("threefry", 20, False),
    "threefry13": _Generator("threefry", 13, False),
    "philox": _Generator("philox", 10, False),
    "threefry+boxmuller": _Generator("threefry", 20, True),
    "threefry13+boxmuller": _Generator("threefry", 13, True),
    "philox+boxmuller": _Generator("philox", 10, True),
}

# The names `Draws(..., generator=...)` accepts.
GENERATORS: tuple[str, ...] = tuple(_REGISTRY)

# The generator `Draws` uses when given none. Read when a `Draws` is made (that is, while a
# simulation is traced), so changing it affects programs traced afterwards only.
DEFAULT_GENERATOR = "threefry"


class Draws:
    """Random numbers for one step of all paths in a block.

    A model's `step` asks for `draws.normal(stream)` or `draws.uniform(stream)`; distinct
    streams (0 .. MAX_STREAMS-1) at the same step are independent. `generator` names one of
    `GENERATORS` (None: `DEFAULT_GENERATOR`). How each generator builds its counters:

    - Threefry-2x32 (``"threefry"``, ``"threefry13"``): counter (path index,
      step * MAX_STREAMS + stream), one call per stream.
    - Philox-4x32-10 (``"philox"``): counter (path index, step, stream // 2, 0); stream 2j
      takes words 0 and 1 of the call and stream 2j + 1 words 2 and 3, so the two streams of
      a pair share one call (cached on this object).
    - ``+boxmuller``: uniforms as above; the normals of streams 2j and 2j + 1 are the pair
      r cos(theta), r sin(theta) of Box and Muller (1958), from words of their own: Threefry
      under the key with `_BOXMULLER_TWEAK` XOR-ed into its first word (calls at the counters
      of streams 2j, and 2j + 1 in float64), Philox at counter (path index, step, j, 1).
    """

    def __init__(self, key: tuple[jax.Array, jax.Array], path_index: jax.Array,
                 step: jax.Array, dtype, antithetic: bool = False,
                 generator: str | None = None):
        self.key = key
        self.path_index = path_index
        self.step = jnp.asarray(step).astype(jnp.uint32)
        self.dtype = dtype
        # Antithetic draws mirror the same counters: z -> -z and u -> 1 - u, exactly.
        self.antithetic = antithetic
        self.generator = DEFAULT_GENERATOR if generator is None else generator
        if self.generator not in _REGISTRY:
            raise ValueError(f"generator must be one of {GENERATORS}, "
                             f"got generator={self.generator!r}")
        self._gen = _REGISTRY[self.generator]
        self._cache: dict[tuple, tuple[jax.Array, ...]] = {}

    @staticmethod
    def _check(stream: int) -> None:
        if not 0 <= stream < MAX_STREAMS:
            raise ValueError(f"stream must be in [0, {MAX_STREAMS}), got stream={stream}")

    def _threefry(self, slot: int, tweak: int = 0) -> tuple[jax.Array, jax.Array]:
        c1 = self.step * np.uint32(MAX_STREAMS) + np.uint32(slot)
        counter1 = jnp.broadcast_to(c1, self.path_index.shape)
        key = self.key if not tweak else (self.key[0] ^ np.uint32(tweak), self.key[1])
        if self._gen.rounds == 20:  # the two-argument call of old (tests patch the function)
            return threefry2x32(key, (self.path_index, counter1))
        return threefry2x32(key, (self.path_index, counter1), self._gen.rounds)

    def _philox(self, pair: int, domain: int) -> tuple[jax.Array, ...]:
        if (pair, domain) not in self._cache:
            words = philox4x32(self.key, (self.path_index, self.step, np.uint32(pair),
                                          np.uint32(domain)), self._gen.rounds)
            self._cache[pair, domain] = tuple(
                jnp.broadcast_to(w, self.path_index.shape) for w in words)
        return self._cache[pair, domain]

    def _words(self, stream: int) -> tuple[jax.Array, jax.Array]:
        self._check(stream)
        if self._gen.hash == "threefry":
            return self._threefry(stream)
        words = self._philox(stream // 2, 0)
        return (words[0], words[1]) if stream % 2 == 0 else (words[2], words[3])

    def _polar(self, pair: int) -> tuple[jax.Array, jax.Array]:
        """Radius and angle of the Box-Muller pair of streams 2 * pair and 2 * pair + 1."""
        if ("polar", pair) not in self._cache:
            if self._gen.hash == "philox":
                w = self._philox(pair, 1)
                a, b = (w[0], w[1]), (w[2], w[3])
            elif jnp.dtype(self.dtype) == jnp.float64:  # 52 bits for each uniform
                a = self._threefry(2 * pair, _BOXMULLER_TWEAK)
                b = self._threefry(2 * pair + 1, _BOXMULLER_TWEAK)
            else:  # 24 bits for each uniform: one call
                w0, w1 = self._threefry(2 * pair, _BOXMULLER_TWEAK)
                a, b = (w0, w0), (w1, w1)
            u1 = _open_uniform(*a, self.dtype)
            u2 = _open_uniform(*b, self.dtype)
            radius = jnp.sqrt(np.asarray(-2.0, self.dtype) * jnp.log(u1))
            angle = np.asarray(2.0 * np.pi, self.dtype) * u2
            self._cache["polar", pair] = (radius, angle)
        return self._cache["polar", pair]

    def uniform(self, stream: int) -> jax.Array:
        """Uniforms in the open interval (0, 1), one per path."""
        u = _open_uniform(*self._words(stream), self.dtype)
        return 1 - u if self.antithetic else u

    def normal(self, stream: int) -> jax.Array:
        """Standard normals, one per path: sqrt(2) erfinv(v) with v uniform on (-1, 1), or
        Box-Muller for the ``+boxmuller`` generators."""
        if self._gen.boxmuller:
            self._check(stream)
            radius, angle = self._polar(stream // 2)
            z = radius * (jnp.cos(angle) if stream % 2 == 0 else jnp.sin(angle))
        else:
            v = _symmetric(*self._words(stream), self.dtype)
            z = np.sqrt(2.0).astype(self.dtype) * lax.erf_inv(v)
        return -z if self.antithetic else z
