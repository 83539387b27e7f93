"""Parameter validation shared by every module.

Concrete values are checked eagerly with a `ValueError` that names the parameter, its value
and the allowed range. Values that are only known under a JAX transformation (tracers) are
not checked here: `hedge()` checks its outputs for non-finite values instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def float_dtype() -> Any:
    """The default floating dtype: float64 when `jax_enable_x64` is on, else float32."""
    return jnp.result_type(float)


def as_float(x: Any) -> jax.Array:
    """Converter for differentiable parameters: a JAX array of the default float dtype."""
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating):
        return x
    return jnp.asarray(x, dtype=float_dtype())


def is_concrete(x: Any) -> bool:
    """True when `x` holds a value now (not a tracer inside jit/grad/vmap)."""
    return not isinstance(x, jax.core.Tracer)


def check(name: str, value: Any, ok: Callable[[np.ndarray], Any], allowed: str) -> None:
    """Raise `ValueError` unless `value` is finite and satisfies `ok` (skipped for tracers)."""
    if value is None or not is_concrete(value):
        return
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)) or not np.all(ok(arr)):
        shown = arr.item() if arr.ndim == 0 else arr.tolist()
        raise ValueError(f"{name} must be {allowed}, got {name}={shown!r}")


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
