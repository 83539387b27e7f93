"""Parameter validation shared by every module.

Concrete values are checked eagerly with a `ValueError` that names the parameter, its value
and the allowed range. Values that are only known under a JAX transformation (tracers) are
not checked here: `hedge()` checks its outputs for non-finite values instead.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def float_dtype() -> Any:
    """The default floating dtype: float64 when `jax_enable_x64` is on, else float32."""
    return jnp.result_type(float)


def as_float(x: Any, name: str | None = None, *, scalar: bool = False) -> jax.Array:
    """Converter for differentiable parameters: a JAX array of the default float dtype.

    Raises ValueError, naming the parameter (`name`, else "parameter"), for None, strings,
    booleans, complex or non-numeric values, and, with `scalar=True`, for anything that is
    not a scalar (e.g. `BlackScholes(100., [0.2, 0.3])`; batch a model with `jax.vmap`).
    Tracers are checked by shape only."""
    label = name or "parameter"
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating):
        out = x
    else:
        if x is None or isinstance(x, (str, bytes, bool, np.bool_, complex)):
            raise ValueError(f"{label} must be a real number, got {label}={x!r}")
        try:
            arr = np.asarray(x) if is_concrete(x) else x
        except Exception:  # noqa: BLE001 - ragged lists and other unconvertible objects
            raise ValueError(f"{label} must be a real number, got {label}={x!r}") from None
        kind = getattr(getattr(arr, "dtype", None), "kind", "O")
        if kind not in "fiu":
            raise ValueError(f"{label} must be a real number, got {label}={x!r} "
                             f"(dtype {getattr(arr, 'dtype', type(x).__name__)})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)     # overflow in the cast
            out = jnp.asarray(arr, dtype=float_dtype())
            # on the host: under jit, `out` of a constant can itself be a tracer
            cast = np.asarray(arr, dtype=np.dtype(float_dtype())) if is_concrete(arr) else None
        if cast is not None and np.all(np.isfinite(arr)) and not np.all(np.isfinite(cast)):
            shown = arr.item() if np.ndim(arr) == 0 else np.asarray(arr).tolist()
            raise ValueError(f"{label} must be finite in {np.dtype(float_dtype()).name}, got "
                             f"{label}={shown!r}")
    if scalar and jnp.ndim(out) != 0:
        raise ValueError(f"{label} must be a scalar, got shape {jnp.shape(out)} (to run many "
                         "parameter sets, jax.vmap over the model)")
    return out


def real_scalar(name: str, x: Any) -> float:
    """A concrete real scalar setting (a static field) as a Python float, or ValueError naming
    it (None, strings, booleans, complex, arrays, overflow in the working precision)."""
    return float(np.asarray(as_float(x, name, scalar=True)))


def float_param(name: str, *, scalar: bool = False) -> Callable[[Any], jax.Array]:
    """`as_float` naming the parameter, as an `eqx.field(converter=...)`."""
    return functools.partial(as_float, name=name, scalar=scalar)


def optional_float_param(name: str) -> Callable[[Any], jax.Array | None]:
    """`float_param(name)` that lets None (an unset option) through."""
    def convert(x: Any) -> jax.Array | None:
        return None if x is None else as_float(x, name)
    return convert


def is_concrete(x: Any) -> bool:
    """True when `x` holds a value now (not a tracer inside jit/grad/vmap)."""
    return not isinstance(x, jax.core.Tracer)


def check(name: str, value: Any, ok: Callable[[np.ndarray], Any], allowed: str) -> None:
    """Raise `ValueError` unless `value` is a real number (or array), finite in the working
    precision, and satisfies `ok` (skipped for tracers)."""
    if value is None or not is_concrete(value):
        return
    # as the working precision holds it: a real number (else ValueError naming it), and
    # e.g. 1e300 is inf in float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # overflow in the cast
        as_float(value, name)                               # a real number, by name
        arr = np.asarray(value, dtype=float).astype(np.dtype(float_dtype())).astype(float)
    if not np.all(np.isfinite(arr)) or not np.all(ok(arr)):
        given = np.asarray(value, dtype=float)
        shown = given.item() if given.ndim == 0 else given.tolist()
        where = ""
        if np.all(np.isfinite(given)) and not np.all(np.isfinite(arr)):
            where = f" (not finite in {np.dtype(float_dtype()).name})"
        raise ValueError(f"{name} must be {allowed}, got {name}={shown!r}{where}")


def check_positive(name: str, value: Any) -> None:
    check(name, value, lambda a: a > 0, "finite and > 0")


def check_nonnegative(name: str, value: Any) -> None:
    check(name, value, lambda a: a >= 0, "finite and >= 0")


def check_finite(name: str, value: Any) -> None:
    check(name, value, lambda a: True, "finite")


def check_int(name: str, value: Any, minimum: int) -> int:
    """Return `value` as a Python int, or raise if it is not an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    return int(value)


def check_n_paths(n_paths: Any, model: Any) -> int:
    """`n_paths` as an int in [1, 2^32), and at most what `model` can produce."""
    n_paths = check_int("n_paths", n_paths, 1)
    limit = getattr(model, "max_paths", None)
    if n_paths >= 2**32:
        raise ValueError(f"n_paths must be < 2**32, got n_paths={n_paths}")
    if limit is not None and n_paths > limit:
        raise ValueError(
            f"n_paths must be <= {limit} for {type(model).__name__} (it holds {limit} paths), "
            f"got n_paths={n_paths}")
    return n_paths


def check_grid_fits(model: Any, grid: Any) -> None:
    """Let a data-backed model refuse a grid longer than its data (`model.check_grid`)."""
    check = getattr(model, "check_grid", None)
    if check is not None:
        check(grid)
