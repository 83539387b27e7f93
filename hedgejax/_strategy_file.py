"""Strategy files: `save_strategy` / `load_strategy`, a strategy (built, or fitted by `fit`)
in one file that rebuilds it bit for bit, for `rebalance` and `hedgejax rebalance`.

The file is a NumPy `.npz` archive without pickle, laid out as `fit`'s checkpoints
(`hedgejax._checkpoint`): a JSON record `meta` and the array leaves in `state`, serialised by
equinox (`eqx.tree_serialise_leaves`, whose reader checks every leaf's shape and dtype).
The record says how to rebuild the strategy's skeleton (the pytree `tree_deserialise_leaves`
fills, as equinox's serialisation guide does with a JSON header of hyperparameters, here
derived from the strategy itself):

- `skeleton`: the strategy as a tree: each `eqx.Module` by its class (module and name) and
  every dataclass field, static ones included (a `NeuralHedge`'s features and sizes, a
  `DeltaHedge`'s `every`, an MLP's activation function); array leaves by shape and dtype;
  numbers, strings, None, tuples, lists and dicts as such; functions by module and name;
  `hj.features.Feature`s by their function, width and parameters;
- `structure`, `fingerprint`: the strategy's tree structure and a SHA-256 of its structure
  and leaf values (`_checkpoint.fingerprint`): the rebuilt strategy must match both, so a
  loaded strategy is the saved one bit for bit or an error;
- `format`, `hedgejax` (the version that wrote it), `strategy` (its class name), and the
  caller's `metadata` (a JSON object, e.g. the grid and objective it was fitted on).

A module is rebuilt the way a pytree is unflattened (`object.__new__` and its fields set,
no constructor run), then every parameter check of its `__check_init__` runs again
(`runtime_checked`). Classes are only taken from hedgejax and equinox; functions from
hedgejax, equinox, jax and numpy, or from a module the program has already imported (a
custom feature defined in the user's script: import it before loading). Nothing in a file
is executed.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import io
import json
import math
import os
import sys
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._checkpoint import _structure, fingerprint
from ._io import atomic_write
from ._strategies.base import AbstractStrategy

FORMAT = "hedgejax-strategy/1"
# Packages whose modules a strategy file may name (imported on demand); any other module
# must already be imported by the program.
_TRUSTED = ("hedgejax", "equinox", "jax", "jaxlib", "numpy")
_CLASS_TRUSTED = ("hedgejax", "equinox")
MAX_STRATEGY_BYTES = 2**30


def save_strategy(path: str | os.PathLike, strategy: AbstractStrategy, *,
                  metadata: dict[str, Any] | None = None) -> None:
    """Write `strategy` to `path` (a `.npz` archive, any name, e.g. `fitted.eqx`) atomically.

    Args:
        path: the file to write (replaced if it exists; never half-written).
        strategy: any strategy: `DeltaHedge`, bands, `WhalleyWilmott`, `LearnedBand`,
            `NeuralHedge` (features, recurrent state, listed options), wrappers, ... as
            built or as returned by `hj.fit`.
        metadata: a JSON-serialisable dict stored with it (e.g. {"grid": [0.25, 63]}),
            returned by `load_strategy(..., with_metadata=True)`.

    Raises:
        ValueError: naming what cannot be saved: a strategy that is not an
            `AbstractStrategy`; a non-finite array leaf; a function that cannot be found
            again by its module and name (a lambda, a nested function); an object of a
            type the format does not know; metadata that is not a JSON object; a path that
            is a folder or cannot be written.

    Example:
        >>> import os, tempfile, hedgejax as hj
        >>> path = os.path.join(tempfile.mkdtemp(), "weekly.eqx")
        >>> hj.save_strategy(path, hj.DeltaHedge(every=5), metadata={"grid": [0.25, 63]})
        >>> hj.load_strategy(path, with_metadata=True)
        (DeltaHedge(every=5), {'grid': [0.25, 63]})
    """
    if not isinstance(strategy, AbstractStrategy):
        raise ValueError(f"strategy must be an AbstractStrategy, got {type(strategy).__name__}")
    for i, leaf in enumerate(jax.tree.leaves(strategy)):
        if isinstance(leaf, jax.core.Tracer):
            raise ValueError("strategy must be concrete to be saved (call save_strategy "
                             "outside jax.jit/vmap/grad)")
        if eqx.is_array(leaf) and jnp.issubdtype(leaf.dtype, jnp.inexact) and not bool(
                jnp.all(jnp.isfinite(leaf))):
            raise ValueError(f"strategy leaf {i} is not finite; refusing to save it")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise ValueError(f"metadata must be a dict (a JSON object), got "
                             f"{type(metadata).__name__}")
        try:
            json.dumps(metadata, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"metadata must be JSON-serialisable: {err}") from None
    meta = {
        "format": FORMAT,
        "hedgejax": _version(),
        "strategy": type(strategy).__name__,
        "skeleton": _encode(strategy, "strategy"),
        "structure": _structure(strategy),
        "fingerprint": fingerprint(strategy),
        "metadata": metadata,
    }
    state = io.BytesIO()
    eqx.tree_serialise_leaves(state, strategy)
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.asarray(json.dumps(meta)),
             state=np.frombuffer(state.getvalue(), dtype=np.uint8))
    from ._io import check_output_file

    check_output_file(path, "a strategy file")

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(buffer.getvalue())

    atomic_write(path, write)


def load_strategy(path: str | os.PathLike, *, like: AbstractStrategy | None = None,
                  with_metadata: bool = False) -> Any:
    """The strategy saved by `save_strategy` in `path`, bit for bit.

    Args:
        path: the strategy file.
        like: a strategy of the same structure to load the arrays into, instead of
            rebuilding it from the file's record (for strategies whose functions cannot be
            imported here); its structure must be the saved one.
        with_metadata: also return the metadata saved with it.

    Returns:
        The strategy (a new object equal to the saved one: same class, static
        configuration and array leaves, bit for bit), or (strategy, metadata) with
        `with_metadata`.

    Raises:
        ValueError: naming the file: not a strategy file (missing, unreadable, not an
            archive, truncated, another format); a class or function it names that cannot
            be found (import the module defining a custom feature first, or pass `like`);
            arrays saved in float64 loaded without `jax_enable_x64` (enable it first); a
            strategy whose parameters fail their checks; a rebuilt strategy that differs
            from the saved one (a damaged file, or `like` of another structure).
    """
    name = os.fspath(path)
    meta, state = _read(name)
    try:
        if like is not None:
            if not isinstance(like, AbstractStrategy):
                raise ValueError(f"like must be an AbstractStrategy, got {type(like).__name__}")
            skeleton = like
        else:
            skeleton = _decode(meta["skeleton"], "strategy")
        if _structure(skeleton) != meta["structure"]:
            raise ValueError(f"its strategy's structure {meta['structure']} is not the "
                             f"skeleton's {_structure(skeleton)}")
        _check_precision(skeleton)
        try:
            strategy = eqx.tree_deserialise_leaves(io.BytesIO(state), skeleton)
        except Exception as err:  # noqa: BLE001 - any reader failure: a damaged file
            raise ValueError(f"its arrays cannot be read ({type(err).__name__}: "
                             f"{_first_line(err)})") from None
        from ._validate import runtime_checked

        strategy = runtime_checked(strategy)
        if fingerprint(strategy) != meta["fingerprint"]:
            raise ValueError("the rebuilt strategy differs from the saved one (its "
                             "fingerprint does not match): the file is damaged")
    except ValueError as err:
        raise ValueError(f"strategy file {name!r}: {_first_line(err)}") from None
    if not isinstance(strategy, AbstractStrategy):
        raise ValueError(f"strategy file {name!r} holds a {type(strategy).__name__}, not a "
                         "strategy")
    return (strategy, meta.get("metadata")) if with_metadata else strategy


# ------------------------------------------------------------------------------ reading


def _version() -> str:
    from . import __version__
    return __version__


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__


def _read(name: str) -> tuple[dict, bytes]:
    """(record, serialised leaves) of a strategy file, or ValueError naming it."""
    if not os.path.exists(name):
        raise ValueError(f"strategy file {name!r} does not exist")
    if os.path.isdir(name):
        raise ValueError(f"strategy file {name!r} is a folder, not a file")
    try:
        size = os.path.getsize(name)
        if size > MAX_STRATEGY_BYTES:
            raise ValueError(f"{size:,} bytes, more than a strategy file may have")
        with np.load(name, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            state = data["state"].tobytes()
        if not isinstance(meta, dict):
            raise TypeError("its record is not a JSON object")
    except Exception as err:  # noqa: BLE001 - any reader failure means "not a strategy file"
        detail = ("no 'meta' or 'state' member (a fit checkpoint? save the fitted strategy "
                  "with hj.save_strategy)" if isinstance(err, KeyError)
                  else f"{type(err).__name__}: {_first_line(err)}")
        raise ValueError(f"strategy file {name!r} is not a readable hedgejax strategy file "
                         f"({detail})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"strategy file {name!r} has format {meta.get('format')!r}; this "
                         f"hedgejax reads {FORMAT!r}")
    for key in ("skeleton", "structure", "fingerprint"):
        if key not in meta:
            raise ValueError(f"strategy file {name!r} is damaged: its record has no {key!r}")
    return meta, state


def _check_precision(skeleton: Any) -> None:
    """Refuse float64 arrays when float64 is off (they would be read back as float32)."""
    if jax.config.jax_enable_x64:
        return
    for leaf in jax.tree.leaves(skeleton):
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and np.dtype(dtype) in (np.dtype("float64"),
                                                      np.dtype("complex128")):
            raise ValueError("it was saved in float64; enable float64 first "
                             "(jax.config.update('jax_enable_x64', True)) to load it bit "
                             "for bit")


# ------------------------------------------------------------------------------ the skeleton


def _encode(x: Any, where: str, static: bool = False) -> Any:
    """A JSON description of `x` from which `_decode` rebuilds its skeleton. Arrays are
    described by shape and dtype (their values travel in the serialised leaves), except
    under a static field (a `NeuralHedge`'s listed options), which is not a leaf: there
    they are stored by value."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else {"float": repr(x)}
    if isinstance(x, (jax.Array, np.ndarray, np.generic)):
        dtype = np.dtype(x.dtype) if not jax.dtypes.issubdtype(
            x.dtype, jax.dtypes.prng_key) else None
        if dtype is None:
            raise ValueError(f"{where} is a jax.random key, which a strategy file cannot hold")
        kind = "jax" if isinstance(x, jax.Array) else ("numpy" if isinstance(x, np.ndarray)
                                                       else "scalar")
        if not static:
            return {"array": [list(np.shape(x)), dtype.str, kind]}
        data = base64.b64encode(np.ascontiguousarray(np.asarray(x)).tobytes()).decode()
        return {"value": [list(np.shape(x)), dtype.str, kind, data]}
    if isinstance(x, tuple):
        return {"tuple": [_encode(v, f"{where}[{i}]", static) for i, v in enumerate(x)]}
    if isinstance(x, list):
        return {"list": [_encode(v, f"{where}[{i}]", static) for i, v in enumerate(x)]}
    if isinstance(x, dict):
        if not all(isinstance(k, str) for k in x):
            raise ValueError(f"{where} is a dict with keys that are not strings")
        return {"dict": [[k, _encode(v, f"{where}[{k!r}]", static)] for k, v in x.items()]}
    if isinstance(x, eqx.Module):
        fields = {f.name: _encode(getattr(x, f.name), f"{where}.{f.name}",
                                  static or bool(f.metadata.get("static", False)))
                  for f in dataclasses.fields(x)}
        return {"module": _name_of(type(x), where), "fields": fields}
    from .features import Feature

    if isinstance(x, Feature):
        return {"feature": {"fn": _encode(x.fn, f"{where}.fn", True), "width": x.width,
                            "params": _encode(x.params, f"{where}.params", True),
                            "needs_realised_variance": x.needs_realised_variance}}
    from ._strategies.neural import _Frozen

    if isinstance(x, _Frozen):
        return {"frozen": _encode(x.tree, f"{where}.tree", True)}
    if callable(x):
        return {"function": _name_of(x, where)}
    raise ValueError(f"{where} is a {type(x).__name__}, which a strategy file cannot hold")


def _name_of(obj: Any, where: str) -> str:
    """'module:qualified.name' of a class or function that can be found again by it (a
    module-level lambda, such as equinox's identity activation, by the global naming it)."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if module and qualname and "<" not in qualname:
        try:
            if _resolve(module, qualname, where, importing=False) is obj:
                return f"{module}:{qualname}"
        except ValueError:
            pass
    namespace = vars(sys.modules[module]) if module in sys.modules else {}
    for name, value in namespace.items():
        if value is obj and not name.startswith("__"):
            return f"{module}:{name}"
    raise ValueError(f"{where} ({obj!r}) cannot be saved: it is not found again by its "
                     "module and name (a lambda or nested function: define it at a "
                     "module's top level)")


def _resolve(module: str, qualname: str, where: str, *, importing: bool = True) -> Any:
    """The object `module:qualname`: the module from the trusted packages or already
    imported (never an arbitrary import)."""
    top = module.split(".")[0]
    mod = sys.modules.get(module)
    if mod is None and importing and top in _TRUSTED:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            mod = None
    if mod is None:
        raise ValueError(f"{where} names {module}:{qualname}, but module {module!r} is not "
                         "imported (import the module that defines it first, or pass like=)")
    obj = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"{where} names {module}:{qualname}, which does not exist (a "
                             "different version of its module?)")
    return obj


def _decode(x: Any, where: str) -> Any:
    """The skeleton described by `_encode`'s output `x` (arrays as shape-dtype stand-ins)."""
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if not isinstance(x, dict) or len(x) not in (1, 2):
        raise ValueError(f"{where}: unreadable entry {str(x)[:80]!r}")
    if "float" in x:
        return float(x["float"])
    if "array" in x:
        shape, dtype, kind = x["array"]
        shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        if kind == "numpy":
            return np.zeros(shape, dtype)
        if kind == "scalar":
            return dtype.type(0)
        return jax.ShapeDtypeStruct(shape, dtype)
    if "value" in x:
        shape, dtype, kind, data = x["value"]
        shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        value = np.frombuffer(base64.b64decode(data), dtype).reshape(shape).copy()
        if kind == "numpy":
            return value
        if kind == "scalar":
            return dtype.type(value.item())
        if dtype == np.float64 and not jax.config.jax_enable_x64:
            raise ValueError("it was saved in float64; enable float64 first "
                             "(jax.config.update('jax_enable_x64', True)) to load it bit "
                             "for bit")
        return jnp.asarray(value)
    if "tuple" in x:
        return tuple(_decode(v, f"{where}[{i}]") for i, v in enumerate(x["tuple"]))
    if "list" in x:
        return [_decode(v, f"{where}[{i}]") for i, v in enumerate(x["list"])]
    if "dict" in x:
        return {k: _decode(v, f"{where}[{k!r}]") for k, v in x["dict"]}
    if "module" in x:
        module, _, qualname = x["module"].partition(":")
        if module.split(".")[0] not in _CLASS_TRUSTED:
            raise ValueError(f"{where} names the class {x['module']}, outside hedgejax and "
                             "equinox (pass like=)")
        cls = _resolve(module, qualname, where)
        if not (isinstance(cls, type) and issubclass(cls, eqx.Module)):
            raise ValueError(f"{where} names {x['module']}, which is not an equinox Module")
        names = {f.name for f in dataclasses.fields(cls)}
        fields = x["fields"]
        if set(fields) != names:
            raise ValueError(f"{where}: {x['module']} has the fields {sorted(names)}, the file "
                             f"{sorted(fields)} (a different version of hedgejax?)")
        obj = object.__new__(cls)
        for name, value in fields.items():
            object.__setattr__(obj, name, _decode(value, f"{where}.{name}"))
        return obj
    if "feature" in x:
        from .features import Feature

        spec = x["feature"]
        params = _decode(spec["params"], f"{where}.params")
        return Feature(_decode(spec["fn"], f"{where}.fn"), width=spec["width"],
                       params=params, needs_realised_variance=spec["needs_realised_variance"])
    if "frozen" in x:
        from ._strategies.neural import _Frozen

        return _Frozen(_decode(x["frozen"], f"{where}.tree"), where)
    if "function" in x:
        module, _, qualname = x["function"].partition(":")
        return _resolve(module, qualname, where)
    raise ValueError(f"{where}: unreadable entry {str(x)[:80]!r}")
