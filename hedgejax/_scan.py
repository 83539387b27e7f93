"""`checkpointed_scan`: a `lax.scan` whose reverse-mode gradient stores O(sqrt(n)) carries.

Reverse mode through `lax.scan(body, carry0, xs)` keeps, for every one of the n steps, the
residuals of `body` (or, with `jax.checkpoint(body)`, at least the carry that enters it):
memory O(n x carry). Splitting the steps into segments of s steps, running an outer scan
over the segments whose body (an inner scan over the s steps of one segment) is under
`jax.checkpoint`, stores only the carry entering each segment, n / s of them; the backward
pass then recomputes one segment at a time from its stored carry and keeps that segment's
s steps of residuals while it is being differentiated. Memory is O(n / s x carry + s x
residuals), smallest at s ~ sqrt(n), for one more forward pass of the primal in all (each
step is recomputed once more than without the segments). When `body` is itself under
`jax.checkpoint`, a segment being differentiated keeps only its s carries (two levels, the
step recomputed twice); in `hedge()` that is also the faster choice, because the step's own
residuals (its autodiff Greeks) are large (experiments/results/grad_memory.md).
This is the two-level case of binomial checkpointing:

- A. Griewank and A. Walther, "Algorithm 799: Revolve: an implementation of checkpointing
  for the reverse or adjoint mode of computational differentiation", ACM Transactions on
  Mathematical Software 26(1), 19-45, 2000.
- T. Chen, B. Xu, C. Zhang and C. Guestrin, "Training deep nets with sublinear memory
  cost", arXiv:1604.06174, 2016 (sqrt(n) segments for an n-layer network).

When n is not a multiple of s, the last n mod s steps run as a separate remainder scan,
checkpointed the same way (no masking: a masked step would compute more than the body).
The forward pass evaluates exactly the same body on the same carries in the same order as
`lax.scan`, so the final carry is bit-identical to `lax.scan`'s (tests/test_scan_checkpoint.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def default_segment(n: int) -> int:
    """The segment length used when none is given: the divisor of n nearest sqrt(n) when
    one lies within a factor 2 of it, else ceil(sqrt(n)) (at least 1). A divisor leaves no
    remainder scan, so the step is traced and compiled once instead of twice (for 252 daily
    steps: 18 segments of 14 rather than 15 of 16 plus a 12-step remainder)."""
    if n <= 1:
        return 1
    root = math.sqrt(n)
    divisors = [d for d in range(1, n + 1) if n % d == 0 and root / 2 <= d <= 2 * root]
    if divisors:
        return min(divisors, key=lambda d: (abs(math.log(d / root)), d))
    return math.isqrt(n - 1) + 1


def _length(xs: Any) -> int:
    leaves = jax.tree.leaves(xs)
    if not leaves:
        raise ValueError("xs_or_n must be an int or a pytree of arrays with a leading axis")
    lengths = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if None in lengths or len(lengths) != 1:
        raise ValueError("every array of xs must have the same leading axis length, got "
                         f"shapes {[np.shape(x) for x in leaves]}")
    return lengths.pop()


def checkpointed_scan(body: Callable[[Any, Any], tuple[Any, None]], carry0: Any,
                      xs_or_n: int | Any, *, segment: int | None = None) -> Any:
    """The final carry of `lax.scan(body, carry0, xs)`, with sqrt(n) checkpointing.

    Args:
        body: `body(carry, x) -> (carry, None)`, as for `lax.scan` (per-step outputs are not
            supported: storing them would defeat the purpose). With an int `xs_or_n`, x is
            the step index i, an int32 scalar 0 .. n - 1.
        carry0: the initial carry (a pytree of arrays).
        xs_or_n: the number of steps n (a Python int; the steps get i = 0 .. n - 1 as int32),
            or a pytree of arrays whose leading axis is scanned over, as `lax.scan`'s xs.
        segment: steps per checkpointed segment (>= 1); default `default_segment(n)`
            (about sqrt(n), a divisor of n where one is near). Under
            reverse mode the carry entering each segment is stored (about n / segment of
            them) and one segment's worth of `body` residuals is live at a time. `body`
            itself may also be wrapped in `jax.checkpoint` (then a segment keeps only its
            carries, at the price of one more recomputation of each step).

    Returns:
        The carry after the n steps: bit-identical to `lax.scan(body, carry0, xs)[0]`
        (the same body on the same carries in the same order). `jax.jit`, `jax.vmap`,
        `jax.grad` and `jax.jvp` pass through; n and `segment` are static.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> body = lambda c, i: (jnp.sin(c) + 0.01 * i, None)
        >>> a = checkpointed_scan(body, jnp.ones(3), 252)
        >>> b = jax.lax.scan(body, jnp.ones(3), jnp.arange(252, dtype=jnp.int32))[0]
        >>> bool((a == b).all())
        True
    """
    if isinstance(xs_or_n, (int, np.integer)) and not isinstance(xs_or_n, bool):
        n = int(xs_or_n)
        if n < 0:
            raise ValueError(f"the number of steps must be >= 0, got {n}")
        xs = jnp.arange(n, dtype=jnp.int32)
    else:
        xs = xs_or_n
        n = _length(xs)
    if segment is None:
        segment = default_segment(n)
    if isinstance(segment, bool) or not isinstance(segment, (int, np.integer)) or segment < 1:
        raise ValueError(f"segment must be an int >= 1, got {segment!r}")
    segment = min(int(segment), max(n, 1))
    if n == 0:
        return carry0
    n_full, rest = divmod(n, segment)

    def run(carry, xs_segment):
        carry, _ = lax.scan(body, carry, xs_segment)
        return carry

    carry = carry0
    if n_full:
        # Inside the outer scan the loop already keeps the recomputation from being merged
        # with the forward pass, so common-subexpression elimination need not be prevented
        # (jax.checkpoint's documentation recommends prevent_cse=False there).
        segment_fn = jax.checkpoint(run, prevent_cse=False)
        head = jax.tree.map(
            lambda x: x[:n_full * segment].reshape(n_full, segment, *x.shape[1:]), xs)
        carry, _ = lax.scan(lambda c, x: (segment_fn(c, x), None), carry, head)
    if rest:
        tail = jax.tree.map(lambda x: x[n_full * segment:], xs)
        carry = jax.checkpoint(run)(carry, tail)
    return carry
