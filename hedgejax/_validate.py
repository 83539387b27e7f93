"""Parameter validation shared by every module.

Concrete values are checked eagerly with a `ValueError` that names the parameter, its value
and the allowed range. Values that are only known under a JAX transformation (tracers: under
`jax.jit`, `jax.vmap`, `jax.grad`) cannot be checked when a module is built; the public
computations (`price`, `greeks`, `simulate`, `mc_price`, `mc_greeks`, `hedge`, `fit`, and
what is built on them) pass their modules through `runtime_checked`, which re-runs every
`__check_init__`: concrete values (including ones put in place by `eqx.tree_at`, which
skips the constructor) raise `ValueError` at once, traced ones get an `eqx.error_if` with
the same message, raised when the computation runs.
"""

from __future__ import annotations

import dataclasses
import decimal
import fractions
import functools
import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

# While `runtime_checked` re-runs the checks: where `check` records the traced values it
# meets, as (name, allowed, value, ok).
_TRACED_CHECKS: list | None = None
# The class whose `__check_init__` is running there, to name e.g. "Proportional.rate".
_OWNER = ""


class NonFiniteError(ValueError):
    """A result that would be NaN or infinite (undefined, or overflowing the working
    precision) is refused with this error instead of being returned; the message names the
    quantity and where it came from. A `ValueError`, so `except ValueError` catches it."""


class UndefinedStatisticWarning(RuntimeWarning):
    """A statistic is undefined for these outcomes and is reported as NaN (e.g. hedge
    effectiveness when the unhedged P&L does not vary)."""


def undefined_effectiveness() -> float:
    """NaN for hedge effectiveness, announced with an `UndefinedStatisticWarning`."""
    warnings.warn(UndefinedStatisticWarning(
        "hedge_effectiveness is undefined (reported as NaN): the unhedged P&L does not vary "
        "across paths (e.g. a worthless or zero-quantity book), so 1 - Var(pnl) / "
        "Var(unhedged) has a zero denominator"), stacklevel=3)
    return float("nan")


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
        # e.g. float16 in, the working precision out (differentiable, tracers included)
        out = x if x.dtype == float_dtype() else x.astype(float_dtype())
    else:
        if isinstance(x, (fractions.Fraction, decimal.Decimal)):
            x = float(x)        # exact real numbers that NumPy would keep as objects
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
                         "parameter sets, jax.vmap over the object's constructor)")
    return out


def real_scalar(name: str, x: Any) -> float:
    """A concrete real scalar setting (a static field) as a Python float, or ValueError naming
    it (None, strings, booleans, complex, arrays, overflow in the working precision, and
    traced values: a static setting shapes the compiled program, so it cannot be traced)."""
    if not is_concrete(x):
        raise ValueError(f"{name} is a static setting and must be a concrete number, got a "
                         "traced value (set it outside jax.jit/vmap/grad)")
    as_float(x, name, scalar=True)      # the checks (its array may be a tracer under jit)
    return float(np.asarray(float(x) if isinstance(x, (fractions.Fraction, decimal.Decimal))
                            else x, dtype=np.dtype(float_dtype())))


def float_param(name: str, *, scalar: bool = False) -> Callable[[Any], jax.Array]:
    """`as_float` naming the parameter, as an `eqx.field(converter=...)`."""
    return functools.partial(as_float, name=name, scalar=scalar)


def optional_float_param(name: str, *, scalar: bool = False
                         ) -> Callable[[Any], jax.Array | None]:
    """`float_param(name)` that lets None (an unset option) through."""
    def convert(x: Any) -> jax.Array | None:
        return None if x is None else as_float(x, name, scalar=scalar)
    return convert


def is_concrete(x: Any) -> bool:
    """True when `x` holds a value now (not a tracer inside jit/grad/vmap)."""
    return not isinstance(x, jax.core.Tracer)


def check(name: str, value: Any, ok: Callable[[np.ndarray], Any], allowed: str) -> None:
    """Raise `ValueError` unless `value` is a real number (or array), finite in the working
    precision, and satisfies `ok`. Tracers are skipped, except inside `runtime_checked`,
    which turns them into run-time checks (`ok` must then also work on `jax.Array`s)."""
    if value is None:
        return
    if not is_concrete(value):
        if _TRACED_CHECKS is not None:
            _TRACED_CHECKS.append((f"{_OWNER}.{name}" if _OWNER else name, allowed, value, ok))
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


def checked(name: str, value: Any, ok: Callable[[Any], Any], allowed: str,
            owner: str = "") -> Any:
    """`value`, checked as `check` does when concrete; when traced, with an `eqx.error_if`
    raising "<owner>.<name> must be <allowed>" when the computation runs (use the returned
    value)."""
    if value is None or is_concrete(value):
        check(name, value, ok, allowed)
        return value
    bad = jnp.any(~(jnp.isfinite(value) & ok(value)))
    label = f"{owner}.{name}" if owner else name
    return eqx.error_if(value, bad, f"{label} must be {allowed} (a traced value, checked at "
                                    "run time)")


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


def memory_limit() -> int:
    """Bytes the default device can hold: its allocator's limit on an accelerator, the
    machine's physical memory on a CPU."""
    import os

    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory statistics
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**63 - 1


def check_memory(n_bytes: float, what: str, hint: str) -> None:
    """Raise ValueError, with the estimate, when `what` needs more than the device holds
    (`memory_limit()`), instead of letting the run exhaust memory or hang."""
    limit = memory_limit()
    if n_bytes > limit:
        raise ValueError(f"{what} needs about {n_bytes / 2**30:,.1f} GiB, more than the "
                         f"{limit / 2**30:,.1f} GiB this device holds; {hint}")


def check_grid_fits(model: Any, grid: Any) -> None:
    """Let a data-backed model refuse a grid longer than its data (`model.check_grid`)."""
    check = getattr(model, "check_grid", None)
    if check is not None:
        check(grid)


def _modules(tree: Any):
    """Every `eqx.Module` in `tree`, nested ones included (fields, lists, tuples, dicts)."""
    if isinstance(tree, eqx.Module):
        yield tree
        for field in dataclasses.fields(tree):
            yield from _modules(getattr(tree, field.name, None))
    elif isinstance(tree, (list, tuple)):
        for x in tree:
            yield from _modules(x)
    elif isinstance(tree, dict):
        for x in tree.values():
            yield from _modules(x)


def runtime_checked(tree: Any) -> Any:
    """`tree` (any pytree of models, instruments, books, strategies, costs) with every
    parameter check of its modules' `__check_init__` applied again, now.

    Concrete values are checked at once (`ValueError` naming the parameter, as at
    construction: this catches values put in place by `eqx.tree_at`, which skips the
    constructor). Traced values (under `jax.jit`, `jax.vmap`, `jax.grad`) get one
    `eqx.error_if` on the checked leaves: when the computation runs with a value out of
    range, it raises `EquinoxRuntimeError` (a `RuntimeError`; under a bare `jax.jit` JAX
    raises a `JaxRuntimeError` on the program's first call and a `ValueError` on later
    calls, both with the message in their text) saying
    "<Class>.<name> must be <allowed range>", e.g. "Proportional.rate must be finite and
    >= 0". Use the returned tree: a check whose result is not
    used is dropped by JAX.
    """
    global _TRACED_CHECKS, _OWNER
    found: list = []
    outer = _TRACED_CHECKS, _OWNER
    _TRACED_CHECKS = found
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")        # e.g. the Feller warning, given once
            for module in _modules(tree):
                _OWNER = type(module).__name__
                for cls in type(module).__mro__:
                    check_init = cls.__dict__.get("__check_init__")
                    if check_init is not None:
                        check_init(module)
    finally:
        _TRACED_CHECKS, _OWNER = outer
    if not found:
        return tree
    bad = jnp.stack([jnp.any(~(jnp.isfinite(value) & ok(value)))
                     for _, _, value, ok in found])
    messages = tuple(f"{name} must be {allowed} (a traced value, checked at run time)"
                     for name, allowed, _, _ in found)
    checked = {id(value) for _, _, value, _ in found}
    leaves = [x for x in jax.tree.leaves(tree) if not is_concrete(x)]
    if not any(id(x) in checked for x in leaves):
        checked = {id(x) for x in leaves if jnp.issubdtype(x.dtype, jnp.inexact)}

    def attach(x):
        if id(x) not in checked:
            return x
        return eqx.branched_error_if(x, jnp.any(bad), jnp.argmax(bad), messages)

    return jax.tree.map(attach, tree)
