"""Readable reprs for hedgejax modules: concrete scalars print their values.

equinox's default `Module.__repr__` abbreviates every array to its dtype and shape, so a
gradient (`jax.grad(lambda m: hj.price(m, call))(model)`) or a Monte Carlo estimate prints
as `Heston(spot=f32[], ...)` or `MCGreek(value=f32[], stderr=f32[])`: the numbers the user
asked for are hidden. `module_repr` keeps equinox's printer (`eqx.tree_pformat`: layout,
nesting, static fields, short arrays) and only swaps each concrete array leaf of one element
for its value, written as NumPy writes it (the shortest text that reads back to the same
value in its dtype). Larger arrays keep the short form (`f32[1000]`) and traced values
(under `jit`, `vmap`, `grad`) keep equinox's form, so printing never reads a tracer.

Example:
    >>> import jax, hedgejax as hj
    >>> hj.MCGreek(value=jax.numpy.float32(0.5), stderr=jax.numpy.zeros(3))
    MCGreek(value=0.5, stderr=f32[3])
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


class _Shown:
    """A leaf stand-in whose repr is the leaf's value (the pretty-printer uses `repr`)."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _shown(leaf: Any) -> Any:
    """`leaf`'s value for a concrete real or boolean array of one element, else `leaf`."""
    if isinstance(leaf, jax.core.Tracer) or not isinstance(leaf, (jax.Array, np.ndarray,
                                                                  np.generic)):
        return leaf
    real = jnp.issubdtype(leaf.dtype, jnp.floating) or jnp.issubdtype(leaf.dtype, jnp.integer)
    if leaf.size != 1 or not (real or jnp.issubdtype(leaf.dtype, jnp.bool_)):  # keys, complex
        return leaf
    value = np.asarray(leaf)
    return _Shown(str(value[()] if value.ndim == 0 else value))


def module_repr(module: Any) -> str:
    """`eqx.tree_pformat(module)` with concrete one-element arrays shown as their values.

    Used as `__repr__` by hedgejax's modules (models, instruments, books, strategies,
    costs, Monte Carlo estimates)."""
    try:
        shown = jax.tree.map(_shown, module)
    except Exception:  # noqa: BLE001 - a repr must not fail: fall back to equinox's
        return eqx.tree_pformat(module)
    return eqx.tree_pformat(shown)
