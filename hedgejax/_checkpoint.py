"""Checkpoints of `fit`: what the run was, and its state, in one `.npz` file (no pickle).

A checkpoint holds
- `meta`: a JSON record of the run: format, hedgejax version, the strategy's structure
  (type, tree structure with its static fields, trainable leaf shapes and dtypes), the
  objective (name, code digest and the numbers it closes over), the optimiser's state
  structure (adam, sgd, a clipped chain; not its learning rate, which optax keeps in a
  closure) and clip_norm, a SHA-256 fingerprint of each of model, hedge model, book, costs
  and grid (type, tree structure and every leaf's value), `n_paths`, the key's data,
  `common_random_numbers`, `unwind`, the surrogate temperature, and the fields `fit` adds
  (the learning rate given, whether the objective is trained, the validation settings;
  None when unused, so a checkpoint written before they existed still matches);
- `state`: the trainable parameters and the optimiser state, serialised by equinox
  (`eqx.tree_serialise_leaves`), whose reader checks every leaf's shape and dtype;
- `step` and the history logs (`objective`, `surrogate`, `params`), and `fit`'s further
  named arrays (`x_<name>`: per-step learning rate and objective parameters, validation
  steps and values, the best validated parameters, the step of an early stop).

`load` refuses, with a `ValueError` naming the file and the field, a checkpoint written by a
different run (any record field differs), one whose parameters or optimiser state are not
finite, and a file that is not a readable checkpoint (empty, truncated, random bytes, an
older format). A different hedgejax version only warns: the record says what the run was,
and the versions' arithmetic may differ in the last bits.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import warnings
from typing import Any

import equinox as eqx
import jax
import numpy as np

from ._io import atomic_write

FORMAT = 2


def _version() -> str:
    from . import __version__
    return __version__


def _structure(tree: Any) -> str:
    """A pytree's structure as text, without memory addresses (static callables print as
    `<function f at 0x...>`, which differs from process to process)."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", str(jax.tree.structure(tree)))


def _key_data(key: Any) -> np.ndarray:
    if jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key)


def fingerprint(tree: Any) -> str:
    """SHA-256 (hex, 16 characters) of a pytree's type, structure and leaf values."""
    digest = hashlib.sha256()
    digest.update(type(tree).__name__.encode())
    digest.update(_structure(tree).encode())
    for leaf in jax.tree.leaves(tree):
        if callable(leaf) and not isinstance(leaf, (np.ndarray, jax.Array)):
            # a function leaf (an MLP's activation): its name, not its memory address,
            # which differs from process to process
            name = getattr(leaf, "__qualname__", None) or type(leaf).__qualname__
            module = getattr(leaf, "__module__", None) or type(leaf).__module__
            digest.update(f"callable {module}.{name}".encode())
            continue
        arr = _key_data(leaf)
        digest.update(f"{arr.dtype}{arr.shape}".encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()[:16]


def _value(x: Any) -> str | None:
    """A closed-over or bound value as text, when it is a number, string or small array."""
    if isinstance(x, (bool, int, float, str)):
        return repr(x)
    if isinstance(x, (np.ndarray, np.generic, jax.Array)) and np.size(x) <= 16:
        try:
            return repr(np.asarray(x).tolist())
        except Exception:  # noqa: BLE001 - a tracer: no value to record
            return None
    return None


def _code(code: Any) -> str:
    """Digest of what a function's code refers to and its constants (nested functions
    included): stable across Python versions, unlike the bytecode, and different for
    `lambda r: risk.std(r.pnl)` and `lambda r: -jnp.mean(r.pnl)` or for other literals."""
    parts = []

    def walk(c):
        parts.append(repr(c.co_names))
        for const in c.co_consts:
            if hasattr(const, "co_names"):
                walk(const)
            else:
                parts.append(repr(const))
    walk(code)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]


def describe_objective(objective: Any) -> str:
    """A name for an objective that changes when the objective does: an equinox Module's type
    and a fingerprint of its fields; a `functools.partial`'s function with its arguments;
    a function's qualified name, a digest of its code and the numbers it closes over (so
    `risk.mean_cost_variance(lam=0.1)` and `(lam=0.2)`, or two lambdas, differ)."""
    if isinstance(objective, eqx.Module):
        return f"{type(objective).__qualname__}[{fingerprint(objective)}]"
    if isinstance(objective, functools.partial):
        bound = [_value(a) or type(a).__name__ for a in objective.args]
        bound += [f"{k}={_value(v) or type(v).__name__}" for k, v in objective.keywords.items()]
        return f"partial({describe_objective(objective.func)}, {', '.join(bound)})"
    name = getattr(objective, "__qualname__", type(objective).__qualname__)
    module = getattr(objective, "__module__", "") or ""
    code = getattr(objective, "__code__", None)
    if code is None:
        return f"{module}.{name}"
    bound = []
    for var, cell in zip(code.co_freevars, getattr(objective, "__closure__", None) or (),
                         strict=False):
        try:
            text = _value(cell.cell_contents)
        except ValueError:          # an empty cell
            continue
        if text is not None:
            bound.append(f"{var}={text}")
    defaults = getattr(objective, "__defaults__", None) or ()
    bound += [f"default={_value(d)}" for d in defaults if _value(d) is not None]
    return f"{module}.{name}[{_code(code)}]" + (f"({', '.join(bound)})" if bound else "")


def record(strategy, params, objective, *, opt_state, clip_norm, model, hedge_model, book,
           costs, grid, n_paths, key, common_random_numbers, unwind,
           temperature, **extra) -> dict[str, Any]:
    """The JSON record of a `fit` run (see the module docstring); `extra`: further
    JSON-serialisable fields (None when unused)."""
    return {
        "format": FORMAT,
        "hedgejax": _version(),
        "strategy": f"{type(strategy).__name__} {_structure(strategy)}",
        "parameters": [[list(np.shape(x)), str(np.asarray(x).dtype)]
                       for x in jax.tree.leaves(params)],
        "objective": describe_objective(objective),
        # the optimiser's state structure tells adam from sgd or a clipped chain; its
        # learning rate lives in a closure optax does not expose, so it is not recorded
        "optimizer": _structure(opt_state) + str(
            [list(np.shape(x)) for x in jax.tree.leaves(opt_state)]),
        "clip_norm": None if clip_norm is None else float(clip_norm),
        "model": fingerprint(model),
        "hedge_model": fingerprint(hedge_model),
        "book": fingerprint(book),
        "costs": fingerprint(costs),
        "grid": fingerprint(grid),
        "n_paths": int(n_paths),
        "key": _key_data(key).ravel().tolist(),
        "common_random_numbers": bool(common_random_numbers),
        "unwind": bool(unwind),
        "temperature": None if temperature is None else float(temperature),
        **extra,
    }


def _check_finite(path, params, opt_state) -> None:
    for what, tree in (("trainable parameter", params), ("optimiser state", opt_state)):
        for i, leaf in enumerate(jax.tree.leaves(tree)):
            arr = np.asarray(leaf)
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise ValueError(f"checkpoint {str(path)!r}: {what} leaf {i} is not finite; "
                                 "refusing it")


def save(path, meta: dict[str, Any], step: int, params, opt_state, logs,
         extras: dict[str, np.ndarray] | None = None) -> None:
    """Write a checkpoint atomically; `extras`: further named arrays (stored as
    `x_<name>`). Raises ValueError (naming the file) if a trainable parameter or the
    optimiser state is not finite."""
    _check_finite(path, params, opt_state)
    state = io.BytesIO()
    eqx.tree_serialise_leaves(state, (params, opt_state))
    objective_log, surrogate_log, param_log = logs
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.asarray(json.dumps(meta)), step=np.asarray(step),
             state=np.frombuffer(state.getvalue(), dtype=np.uint8),
             objective=objective_log, surrogate=surrogate_log, params=param_log,
             **{f"x_{name}": np.asarray(value) for name, value in (extras or {}).items()})

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(buffer.getvalue())

    atomic_write(path, write)


def _read(path: str | os.PathLike) -> dict[str, Any]:
    """Every member of the checkpoint, or ValueError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            members = {name: data[name] for name in data.files}
        members["meta"] = json.loads(str(members["meta"]))
        if not isinstance(members["meta"], dict):
            raise TypeError("meta is not a JSON object")
        return members
    except Exception as error:  # noqa: BLE001 - any reader failure means "not a checkpoint"
        detail = "no 'meta' record (an older format?)" if isinstance(error, KeyError) else (
            f"{type(error).__name__}: {error}")
        raise ValueError(f"checkpoint {str(path)!r} is not a readable hedgejax checkpoint "
                         f"({detail})") from None


def load(path, meta: dict[str, Any], params, opt_state, steps: int):
    """(step, params, opt_state, logs, extras) from checkpoint `path`, after checking that
    it was written by the run described by `meta` (see the module docstring for what is
    refused); `extras`: the named arrays `save` was given (as stored, not cut to `steps`)."""
    members = _read(path)
    saved = members["meta"]
    if saved.get("format") != FORMAT:
        raise ValueError(f"checkpoint {str(path)!r} has format {saved.get('format')!r}; this "
                         f"hedgejax reads format {FORMAT}")
    for field, now in meta.items():
        if field == "hedgejax":
            continue
        if saved.get(field) != now:
            raise ValueError(
                f"checkpoint {str(path)!r} was written by a different run: its {field} is "
                f"{saved.get(field)!r}, this run's is {now!r}")
    if saved.get("hedgejax") != meta["hedgejax"]:
        warnings.warn(f"checkpoint {str(path)!r} was written by hedgejax "
                      f"{saved.get('hedgejax')}, this is {meta['hedgejax']}", stacklevel=3)
    try:
        state = members["state"].tobytes()
        params, opt_state = eqx.tree_deserialise_leaves(io.BytesIO(state), (params, opt_state))
        start = int(members["step"])
        logs = [np.full(steps, np.nan), np.full(steps, np.nan),
                np.full((steps, members["params"].shape[1]), np.nan)]
        for log, name in zip(logs, ("objective", "surrogate", "params"), strict=True):
            saved_log = members[name][:min(start, steps)]
            log[:len(saved_log)] = saved_log
    except Exception as error:  # noqa: BLE001
        raise ValueError(f"checkpoint {str(path)!r} is damaged: {type(error).__name__}: "
                         f"{error}") from None
    _check_finite(path, params, opt_state)
    if not 0 <= start <= steps:
        raise ValueError(f"checkpoint {str(path)!r} is at step {start}, outside 0..steps={steps}")
    extras = {name[2:]: value for name, value in members.items() if name.startswith("x_")}
    return start, params, opt_state, tuple(logs), extras
