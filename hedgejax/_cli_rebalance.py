"""`hedgejax rebalance`: the trade a strategy makes now for a live book described in TOML.

    hedgejax rebalance --book book.toml --strategy fitted.eqx --spot 101.3 --position -5400 \
        --time 0.1 [--variance V] [--units U ...] [--state previous.json] [--model m.toml] \
        [--out trade.json] [--json] [--x64]

prints the target position, the trade, its estimated cost and the book's Greeks (a table, or
one JSON object with --json) and writes the same JSON to --out (atomically), with the
strategy's new state: pass that file as --state next time for strategies that remember
(recurrent policies, move-based or lagged execution). `--strategy` is a file written by
`hj.save_strategy` (a band or policy fitted by `hj.fit`), or `delta` for delta hedging
every step.

The book file (example: examples/book.toml), every key optional unless said:

    [model]                     # the hedge model (required); its spot is --spot
    kind = "black-scholes"      # or "heston", "merton"
    vol = 0.2                   # black-scholes, merton: annual vol
    rate = 0.0                  # continuously compounded, per year
    div = 0.0                   # continuous dividend yield, per year
    # heston: v0 (today's variance unless --variance), kappa, theta, xi, rho
    # merton: jump_rate (per year), jump_mean, jump_std (of the log jump)

    [grid]                      # the strategy's grid (default: daily to the last maturity)
    maturity = 0.25             # years from the book's start: the horizon
    steps = 63

    [costs]                     # of share trades (default: none)
    proportional = 0.001        # fraction of the traded value
    fixed = 0.0                 # currency per trade
    spread = 0.0                # half-spread, currency per share

    [[instruments]]             # one table per instrument (at least one)
    kind = "call"               # call, put, digital, barrier, one-touch, lookback, asian,
                                # forward-start, variance-swap
    strike = 100.0              # the constructor's arguments (hj.EuropeanCall, hj.Barrier,
    maturity = 0.25             # ...): years from the book's start; Barrier's kind is
    quantity = -100.0           # barrier_kind; quantity: units held (< 0 short), default 1
    state = { knocked = false } # path-dependent: the path state so far (hedgejax._exotics)

Errors (a missing or unreadable file, bad TOML, an unknown key, a value out of range, a
strategy file that cannot be loaded) print one line `hedgejax: error: ...` and exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tomllib
from typing import Any

_MODELS = {
    "black-scholes": ("vol",),
    "heston": ("v0", "kappa", "theta", "xi", "rho"),
    "merton": ("vol", "jump_rate", "jump_mean", "jump_std"),
}
_MODEL_OPTIONAL = ("rate", "div")
_COSTS = {"proportional": "Proportional", "fixed": "Fixed", "spread": "Spread"}
# kind -> (class, required keys, optional keys with the constructor's argument names)
_INSTRUMENTS = {
    "call": ("EuropeanCall", ("strike", "maturity"), ()),
    "put": ("EuropeanPut", ("strike", "maturity"), ()),
    "digital": ("Digital", ("strike", "maturity"), ("cash", "put")),
    "barrier": ("Barrier", ("strike", "barrier", "maturity"),
                ("barrier_kind", "option", "rebate", "monitoring")),
    "one-touch": ("OneTouch", ("barrier", "maturity"), ("payout", "pay_at")),
    "lookback": ("Lookback", ("maturity",), ("strike", "option", "monitoring")),
    "asian": ("Asian", ("strike", "maturity"), ("option", "average", "fixings")),
    "forward-start": ("ForwardStart", ("start", "maturity"), ("moneyness", "option")),
    "variance-swap": ("VarianceSwap", ("maturity", "strike_vol"), ("notional",)),
}
_TEXT_KEYS = ("barrier_kind", "option", "pay_at", "average")
_INT_KEYS = ("monitoring", "fixings")
_BOOL_KEYS = ("put",)
_FLAGS = {"spot": "--spot", "t": "--time", "position": "--position", "variance": "--variance"}
_BUILTIN = {"delta": "DeltaHedge"}


def register(sub) -> None:
    """Add the `rebalance` subparser to `sub`."""
    from .cli import _number

    p = sub.add_parser("rebalance", help="the trade a strategy makes now for a live book",
                       description="The trade a strategy makes now for the book in --book "
                       "(hj.rebalance): target position, trade, estimated cost, book Greeks.")
    p.add_argument("--book", required=True,
                   help="TOML file: instruments, hedge model, costs, grid (examples/book.toml)")
    p.add_argument("--strategy", required=True,
                   help="strategy file written by hj.save_strategy, or 'delta'")
    p.add_argument("--spot", type=_number, required=True, help="spot price now (currency)")
    p.add_argument("--position", type=_number, required=True,
                   help="shares held now (< 0 short)")
    p.add_argument("--time", type=_number, required=True,
                   help="years since the book's start (maturities count from there)")
    p.add_argument("--variance", type=_number, default=None,
                   help="instantaneous variance now, per year (heston: default its v0)")
    p.add_argument("--units", type=_number, nargs="+", default=None,
                   help="units held of the strategy's listed option(s)")
    p.add_argument("--state", default=None,
                   help="JSON written by a previous rebalance (--out): the strategy's state")
    p.add_argument("--model", default=None,
                   help="TOML file whose [model] table replaces the book's")
    p.add_argument("--out", default=None, help="write the result as JSON to this file")
    p.add_argument("--x64", action="store_true", help="compute in float64 (default float32)")
    p.add_argument("--json", action="store_true", help="print one JSON object, not a table")


def run(args: argparse.Namespace) -> int:
    """Run `hedgejax rebalance`: print the trade, write --out; 2 on bad input."""
    from .cli import _fail, _stdout

    for name in ("spot", "position", "time", "variance"):
        value = getattr(args, name)
        if value is not None and not math.isfinite(value):
            _fail(f"--{name} must be a finite number, got {value.text}")
    if args.spot <= 0:
        _fail(f"--spot must be > 0 (currency), got {args.spot.text}")
    if args.units is not None and not all(math.isfinite(u) for u in args.units):
        _fail("--units must be finite numbers")
    if args.out is not None:
        from ._io import check_output_file

        try:
            check_output_file(args.out, "--out")
        except ValueError as err:
            _fail(f"--out: {err}")
    spec = _read_toml(args.book, "--book")
    model_spec = spec.get("model")
    if args.model is not None:
        override = _read_toml(args.model, "--model")
        unknown = sorted(set(override) - {"model"})
        if unknown or "model" not in override:
            _fail(f"--model {args.model}: must hold one [model] table"
                  + (f" (unknown key '{unknown[0]}')" if unknown else ""))
        model_spec = override["model"]
    previous = _read_state(args.state) if args.state is not None else None

    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import hedgejax as hj

    from ._rebalance import rebalance
    from ._strategy_file import load_strategy

    book, path_state = _book(hj, spec, args.book)
    model, variance = _model(hj, model_spec, args)
    costs = _costs(hj, spec.get("costs"), args.book)
    grid = _grid(hj, spec.get("grid"), args.book)
    if args.strategy in _BUILTIN:
        strategy = getattr(hj, _BUILTIN[args.strategy])()
    else:
        try:
            strategy = load_strategy(args.strategy)
        except ValueError as err:
            _fail(f"--strategy: {_first_line(err)}")
    position: Any = float(args.position)
    if strategy.option is not None:
        if args.units is None:
            _fail(f"--units is needed: the strategy ({type(strategy).__name__}) trades listed "
                  "options; give the units held of each")
        units = [float(u) for u in args.units]
        several = isinstance(strategy.option, (tuple, list))
        count = len(strategy.option) if several else 1
        if len(units) != count:
            _fail(f"--units must give {count} number(s), one per listed option, got "
                  f"{len(units)}")
        position = (position, units if several else units[0])
    elif args.units is not None:
        _fail(f"--units is only for strategies that trade listed options; "
              f"{type(strategy).__name__} trades shares only")
    state = _strategy_state(strategy, position, previous, args.state)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = rebalance(strategy, book, model, float(args.spot), float(args.time),
                               position, state, grid=grid, costs=costs, variance=variance,
                               path_state=path_state)
        except ValueError as err:
            _fail(_flagged(_first_line(err)))
        except RuntimeError as err:
            if type(err).__module__.split(".")[0] not in ("equinox", "jax", "jaxlib"):
                raise
            _fail(_first_line(err))
    notes = {}
    for w in caught:
        text = (str(w.message).splitlines() or [""])[0]
        if text and not issubclass(w.category, DeprecationWarning):
            notes[f"warning {len(notes) + 1}"] = text
    values = _values(result)
    payload = {"command": "rebalance",
               "inputs": {"book": args.book, "strategy": args.strategy,
                          "spot": float(args.spot), "position": float(args.position),
                          "time": float(args.time), "variance": variance,
                          "units": args.units and [float(u) for u in args.units],
                          "x64": bool(args.x64)},
               "results": values,
               "state": None if result.state is None else [
                   _json_array(x) for x in jax.tree.leaves(result.state)]}
    if notes:
        payload["notes"] = notes
    text = json.dumps(payload, allow_nan=False)
    if args.out is not None:
        from ._io import atomic_write_text

        try:
            atomic_write_text(args.out, text + "\n")
        except (OSError, ValueError) as err:
            _fail(f"--out {args.out}: {getattr(err, 'strerror', None) or _first_line(err)}")
    with _stdout():
        if args.json:
            print(text)
        else:
            _show(args, strategy, values, notes)
    return 0


# ---------------------------------------------------------------------------- reading


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__


def _flagged(message: str) -> str:
    """A library message about rebalance's arguments, naming the flags that gave them."""
    for name, flag in _FLAGS.items():
        if message.startswith(f"{name} must"):
            message = flag + message[len(name):]
        message = message.replace(f"got {name}=", f"got {flag} ")
    return message


def _read_toml(path: str, flag: str) -> dict:
    from .cli import _fail
    from .experiments._framework import read_small_text

    if not str(path).strip():
        _fail(f"{flag} needs a TOML file name, got an empty one")
    try:
        text = read_small_text(path, "file")
    except ValueError as err:
        _fail(f"{flag}: {_first_line(err)}")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        _fail(f"{flag} {path} is not valid TOML: {err}")


def _read_state(path: str) -> list:
    from .cli import _fail
    from .experiments._framework import read_small_text

    text = None
    try:
        text = read_small_text(path, "file", limit=64 * 2**20)
        payload = json.loads(text)
    except ValueError as err:
        if text is None:        # not read: the reader's message names the problem
            _fail(f"--state: {_first_line(err)}")
        _fail(f"--state {path} is not a JSON file written by hedgejax rebalance --out "
              f"({_first_line(err)})")
    if not isinstance(payload, dict) or "state" not in payload:
        _fail(f"--state {path}: not a JSON file written by hedgejax rebalance --out (no "
              "'state')")
    state = payload["state"]
    if state is not None and not isinstance(state, list):
        _fail(f"--state {path}: its 'state' must be a list of arrays, got {type(state).__name__}")
    return state


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _check_keys(table: Any, where: str, allowed: tuple[str, ...], required: tuple[str, ...],
                source: str) -> dict:
    from .cli import _fail

    if not isinstance(table, dict):
        _fail(f"--book {source}: '{where}' must be a table, got {table!r}")
    for key in table:
        if key not in allowed:
            _fail(f"--book {source}: unknown key '{_key(where, key)}' (allowed: "
                  f"{', '.join(allowed)})")
    for key in required:
        if key not in table:
            _fail(f"--book {source}: {f'[{where}]' if where else 'the file'} needs the key "
                  f"'{key}'")
    return table


def _number_of(table: dict, key: str, where: str, source: str) -> float:
    from .cli import _fail

    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value):
        _fail(f"--book {source}: '{_key(where, key)}' must be a finite number, got {value!r}")
    return float(value)


def _library(call, where: str, source: str):
    """`call()`, a library ValueError reported as one line naming the table."""
    from .cli import _fail

    try:
        return call()
    except ValueError as err:
        _fail(f"--book {source}: [{where}] {_first_line(err)}")


def _book(hj, spec: dict, source: str):
    """(Book, per-instrument path states or None) from the book file."""
    from .cli import _fail

    _check_keys(spec, "", ("model", "grid", "costs", "instruments"), ("model", "instruments"),
                source)
    entries = spec["instruments"]
    if not isinstance(entries, list) or not entries:
        _fail(f"--book {source}: 'instruments' must be a non-empty array of tables "
              "([[instruments]])")
    instruments, quantities, states = [], [], []
    for i, entry in enumerate(entries):
        where = f"instruments[{i}]"
        if not isinstance(entry, dict) or "kind" not in entry:
            _fail(f"--book {source}: '{where}' needs the key 'kind' (one of "
                  f"{', '.join(_INSTRUMENTS)})")
        kind = entry["kind"]
        if kind not in _INSTRUMENTS:
            _fail(f"--book {source}: '{where}.kind' must be one of {', '.join(_INSTRUMENTS)}, "
                  f"got {kind!r}")
        name, required, optional = _INSTRUMENTS[kind]
        allowed = ("kind", "quantity", "state") + required + optional
        _check_keys(entry, where, allowed, required, source)
        kwargs = {}
        for key in required + optional:
            if key not in entry:
                continue
            value = entry[key]
            if key in _TEXT_KEYS:
                if not isinstance(value, str):
                    _fail(f"--book {source}: '{where}.{key}' must be a string, got {value!r}")
            elif key in _INT_KEYS:
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    _fail(f"--book {source}: '{where}.{key}' must be an integer >= 1, got "
                          f"{value!r}")
            elif key in _BOOL_KEYS:
                if not isinstance(value, bool):
                    _fail(f"--book {source}: '{where}.{key}' must be true or false, got "
                          f"{value!r}")
            else:
                value = _number_of(entry, key, where, source)
            kwargs["kind" if key == "barrier_kind" else key] = value
        instruments.append(_library(lambda n=name, k=kwargs: getattr(hj, n)(**k), where,
                                    source))
        quantities.append(_number_of(entry, "quantity", where, source)
                          if "quantity" in entry else 1.0)
        state = entry.get("state")
        if state is not None:
            if not isinstance(state, dict):
                _fail(f"--book {source}: '{where}.state' must be a table, got {state!r}")
            if not isinstance(instruments[-1], hj.AbstractPathDependent):
                _fail(f"--book {source}: '{where}.state' is only for path-dependent "
                      f"instruments, not {kind}")
        states.append(state)
    book = _library(lambda: hj.Book(instruments, quantities), "instruments", source)
    return book, (states if any(s is not None for s in states) else None)


def _model(hj, table: Any, args):
    """(hedge model, variance or None) from the [model] table and the flags."""
    from .cli import _fail

    source = args.model if args.model is not None else args.book
    if not isinstance(table, dict) or "kind" not in table:
        _fail(f"--book {source}: [model] needs the key 'kind' (one of {', '.join(_MODELS)})")
    kind = table["kind"]
    if kind not in _MODELS:
        _fail(f"--book {source}: 'model.kind' must be one of {', '.join(_MODELS)}, got "
              f"{kind!r}")
    required = _MODELS[kind]
    _check_keys(table, "model", ("kind",) + required + _MODEL_OPTIONAL, required, source)
    values = {k: _number_of(table, k, "model", source) for k in table if k != "kind"}
    spot = float(args.spot)
    if kind == "black-scholes":
        model = _library(lambda: hj.BlackScholes(spot, **values), "model", source)
    elif kind == "merton":
        model = _library(lambda: hj.Merton(spot, **values), "model", source)
    else:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hj.FellerWarning)
            model = _library(lambda: hj.Heston(spot, **values), "model", source)
    variance = None if args.variance is None else float(args.variance)
    if variance is None and kind == "heston":
        variance = values["v0"]
    return model, variance


def _costs(hj, table: Any, source: str):
    if table is None:
        return None
    _check_keys(table, "costs", tuple(_COSTS), (), source)
    terms = [_library(lambda n=name, v=_number_of(table, key, "costs", source):
                      getattr(hj, n)(v), "costs", source)
             for key, name in _COSTS.items() if key in table]
    if not terms:
        return None
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _grid(hj, table: Any, source: str):
    from .cli import _fail

    if table is None:
        return None
    _check_keys(table, "grid", ("maturity", "steps"), ("maturity", "steps"), source)
    steps = table["steps"]
    if isinstance(steps, bool) or not isinstance(steps, int):
        _fail(f"--book {source}: 'grid.steps' must be an integer >= 1, got {steps!r}")
    maturity = _number_of(table, "maturity", "grid", source)
    return _library(lambda: hj.TimeGrid(maturity, steps), "grid", source)


def _strategy_state(strategy, position, previous, path):
    """The strategy's state from --state's leaves, in the structure of its state."""
    import jax
    import numpy as np

    from .cli import _fail

    if previous is None:
        return None
    shares = np.zeros(())
    held = (shares, np.zeros(np.shape(position[1]))) if isinstance(position, tuple) else shares
    initial = strategy.init_state(jax.tree.map(jax.numpy.asarray, held))
    leaves, treedef = jax.tree.flatten(initial)
    if len(previous) != len(leaves):
        _fail(f"--state {path}: holds {len(previous)} arrays, {type(strategy).__name__}'s "
              f"state has {len(leaves)} (a state written for another strategy?)")
    try:
        arrays = [np.asarray(x, dtype=float) for x in previous]
    except (TypeError, ValueError):
        _fail(f"--state {path}: its state must be arrays of numbers")
    arrays = [a.astype(np.asarray(leaf).dtype) for a, leaf in zip(arrays, leaves, strict=True)]
    return jax.tree.unflatten(treedef, arrays)


# ---------------------------------------------------------------------------- output


def _json_array(x) -> Any:
    import numpy as np

    arr = np.asarray(x)
    if arr.dtype == np.bool_:
        return arr.tolist()
    return np.asarray(arr, dtype=float).tolist()


def _values(result) -> dict[str, Any]:
    """The result's numbers (floats, float32 ones in their shortest form)."""
    import numpy as np

    def number(x):
        if x is None:
            return None
        arr = np.asarray(x)
        if arr.ndim:
            return [number(v) for v in arr]
        return float(str(arr)) if arr.dtype == np.float32 else float(arr)

    values = {"target": number(result.target), "trade": number(result.trade),
              "estimated_cost": number(result.cost), "book_delta": number(result.delta),
              "book_gamma": number(result.gamma), "book_vega": number(result.vega),
              "step": result.step,
              "time": number(np.asarray(result.time, np.asarray(result.target).dtype))}
    if result.units is not None:
        values["target_units"] = number(result.units)
        values["trade_units"] = number(result.trade_units)
        values["option_price"] = number(result.option_price)
    return values


_LABELS = {
    "target": "target position (shares)",
    "trade": "trade now (shares, > 0 buy)",
    "estimated_cost": "estimated cost ($)",
    "book_delta": "book delta (shares)",
    "book_gamma": "book gamma (shares per $)",
    "book_vega": "book vega ($ per 1.00 vol)",
    "step": "grid step",
    "time": "time (years since start)",
    "target_units": "target option units",
    "trade_units": "option units to trade",
    "option_price": "option price ($ per unit)",
}


def _show(args, strategy, values: dict[str, Any], notes: dict[str, str]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .experiments._framework import format_value

    rows = []
    for key, value in values.items():
        shown = (", ".join(format_value(v) for v in value) if isinstance(value, list)
                 else format_value(value))
        rows.append((_LABELS.get(key, key), shown))
    title = (f"hedgejax rebalance: {type(strategy).__name__} for {os.path.basename(args.book)}"
             f", S={args.spot.text}, t={args.time.text}, held {args.position.text}")
    console = Console(width=min(Console().width, 80))
    table = Table(title=None)
    table.add_column("quantity", overflow="fold")
    table.add_column("value", justify="right", no_wrap=True)
    for label, value in rows:
        table.add_row(escape(label), value)
    console.print(escape(title))
    console.print(table)
    console.print(escape("positions > 0 long; delta-neutral: target = -book delta"))
    console.print(escape("cost: in $ now, the expected cost for random cost models"))
    if args.out is not None:
        console.print(escape(f"written: {args.out}"))
    for note in notes.values():
        console.print(f"note: {escape(note)}")
