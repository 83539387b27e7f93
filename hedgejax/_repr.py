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

import dataclasses
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
        if _has_public(module):
            shown = _public_view(module)
    except Exception:  # noqa: BLE001 - a repr must not fail: fall back to equinox's
        return eqx.tree_pformat(module)
    return eqx.tree_pformat(shown)


def _has_public(tree: Any) -> bool:
    """Whether a module in `tree` stores a field a person would not recognise
    (`_repr_public`, e.g. BandHedge's softplus-stored width)."""
    modules = jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, eqx.Module))
    return any(isinstance(m, eqx.Module) and (getattr(type(m), "_repr_public", None) or any(
        _has_public(getattr(m, f.name, None)) for f in dataclasses.fields(m)))
        for m in modules)


def _public_view(x: Any) -> Any:
    """`x` with concrete one-element arrays shown as values (`_shown`) and, in every module
    with `_repr_public = {raw field: (argument name, property)}`, the stored field replaced
    by the value a person passed: `BandHedge(width=0.05)`, not `raw_width=-2.97`."""
    if isinstance(x, eqx.Module):
        public = getattr(type(x), "_repr_public", None) or {}
        names, values = [], []
        for field in dataclasses.fields(x):
            if field.name in public:
                name, prop = public[field.name]
                names.append(name)
                values.append(_shown(getattr(x, prop)))
            else:
                names.append(field.name)
                values.append(_public_view(getattr(x, field.name, None)))
        return dataclasses.make_dataclass(type(x).__name__, names)(*values)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(_public_view(v) for v in x))
    if isinstance(x, (list, tuple)):
        return type(x)(_public_view(v) for v in x)
    if isinstance(x, dict):
        return {k: _public_view(v) for k, v in x.items()}
    return _shown(x)
