"""Sums whose rounding does not depend on the batch shape.

XLA compiles a reduction (`jnp.sum`) differently for different shapes of the other axes:
how it vectorises, tiles and splits the work changes the order of the additions, and so the
last bits of the result. A per-path sum over quadrature nodes, Poisson terms or a book's
instruments then differs between a run of 1,000 paths and the same paths in chunks of 64,
which breaks hedgejax's promise of bit-identical results whatever the layout.
`ordered_sum` adds in one fixed order using only elementwise additions, which round the
same way whatever the shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ordered_sum(x: jax.Array, axis: int = -1) -> jax.Array:
    """Sum of `x` over `axis` by pairwise halving: the axis is zero-padded to a power of two
    and its halves added elementwise until one entry is left (log2 n elementwise passes).
    The same numbers in, the same bits out, whatever the other axes' sizes. Pairwise
    summation also bounds the rounding error by O(log n) ulps (Higham, Accuracy and
    Stability of Numerical Algorithms, 2nd ed., section 4.2)."""
    x = jnp.moveaxis(jnp.asarray(x), axis, -1)
    n = x.shape[-1]
    if n == 0:
        return jnp.zeros(x.shape[:-1], x.dtype)
    size = 1 << (n - 1).bit_length()
    if size != n:
        x = jnp.concatenate([x, jnp.zeros((*x.shape[:-1], size - n), x.dtype)], axis=-1)
    while x.shape[-1] > 1:
        half = x.shape[-1] // 2
        x = x[..., :half] + x[..., half:]
    return x[..., 0]
