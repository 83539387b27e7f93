"""`hedgejax calibrate`: fit Black-Scholes, Heston or Merton to option quotes read from a CSV
file (registered by hedgejax.cli; the computation is `hedgejax.calibrate`).

    hedgejax calibrate --quotes quotes.csv --model heston --spot 4468.17 --x64 --out fit.json

The CSV has a header row and the columns `strike`, `maturity` (years), `kind` (call/put;
optional for implied-vol quotes), then `price` or `iv` (exactly one), and optional `weight`,
`rate` and `div` (per-quote continuously compounded zero rate and dividend yield to the
expiry; default --rate and --div); lines starting with # are comments. It prints the fitted
parameters with their standard errors and the RMSE in vol points (a table of 80 columns), or
with --json one JSON object {"command", "inputs", "results", "notes"?}; --out writes the same
JSON to a file (atomically). Bad input (a flag, a CSV row or column, quotes that admit
arbitrage) prints one line `hedgejax: error: ...` and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

from .cli import _FLOAT_MAX, _fail, _first_line, _integer, _json_number, _number, _stdout, _text

# Starting values when --start does not give them (a typical equity surface).
_STARTS = {
    "black-scholes": {"vol": 0.2},
    "heston": {"v0": 0.04, "kappa": 1.5, "theta": 0.04, "xi": 0.5, "rho": -0.5},
    "merton": {"vol": 0.2, "jump_rate": 1.0, "jump_mean": -0.1, "jump_std": 0.1},
}
_CLASSES = {"black-scholes": "BlackScholes", "heston": "Heston", "merton": "Merton"}


def register(sub) -> None:
    """Add the `calibrate` subparser to `sub`."""
    p = sub.add_parser("calibrate", help="fit Black-Scholes, Heston or Merton to option "
                                         "quotes (CSV)")
    p.add_argument("--quotes", metavar="FILE.csv", required=True,
                   help="quotes: columns strike, maturity, kind, price or iv, and optional "
                        "weight, rate, div")
    p.add_argument("--model", choices=sorted(_STARTS), default="heston",
                   help="the model to fit")
    p.add_argument("--spot", type=_number, required=True, help="spot price (currency)")
    p.add_argument("--rate", type=_number, default=0.0,
                   help="continuous risk-free rate per year (a CSV 'rate' column overrides)")
    p.add_argument("--div", type=_number, default=0.0,
                   help="continuous dividend yield per year (a CSV 'div' column overrides)")
    p.add_argument("--start", metavar="NAME=VALUE", action="append", default=None,
                   help="starting value of a parameter, repeatable (default: heston "
                        "v0=0.04 kappa=1.5 theta=0.04 xi=0.5 rho=-0.5; merton vol=0.2 "
                        "jump_rate=1 jump_mean=-0.1 jump_std=0.1; black-scholes vol=0.2)")
    p.add_argument("--fix", metavar="NAME", action="append", default=None,
                   help="hold a parameter at its starting value, repeatable")
    p.add_argument("--objective", choices=["vol", "vega", "price"], default="vol",
                   help="residuals: implied vols, vega-scaled prices, or prices")
    p.add_argument("--max-steps", type=_integer, default=256,
                   help="most Levenberg-Marquardt steps")
    p.add_argument("--arbitrage-tol", type=_number, default=1e-9,
                   help="tolerance of the no-arbitrage checks, on prices over the "
                        "discounted forward")
    p.add_argument("--no-arbitrage-check", action="store_true",
                   help="fit quotes that admit static arbitrage (e.g. noisy market data)")
    p.add_argument("--out", metavar="FILE.json", default=None,
                   help="also write the JSON result to this file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--x64", action="store_true",
                   help="compute in float64 (default float32; advised for Heston)")


def _check(args: argparse.Namespace) -> dict[str, float]:
    """Refuse, naming the flag, what can be judged before jax is imported; returns the
    starting parameters."""
    dtype = "float64" if args.x64 else "float32"
    for name in ("spot", "rate", "div", "arbitrage_tol"):
        value = getattr(args, name)
        flag = "--" + name.replace("_", "-")
        if not math.isfinite(value):
            _fail(f"{flag} must be finite, got {_text(value)}")
        if abs(value) > _FLOAT_MAX[args.x64]:
            _fail(f"{flag} {_text(value)} overflows {dtype}" + ("" if args.x64
                                                                else "; add --x64"))
    if args.spot <= 0:
        _fail(f"--spot must be > 0, got {_text(args.spot)}")
    if args.arbitrage_tol < 0:
        _fail(f"--arbitrage-tol must be >= 0, got {_text(args.arbitrage_tol)}")
    if args.max_steps < 1:
        _fail(f"--max-steps must be >= 1, got {args.max_steps}")
    start = dict(_STARTS[args.model])
    args.start, args.fix = args.start or [], args.fix or []
    for item in args.start:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in start:
            _fail(f"--start takes NAME=VALUE with NAME one of {', '.join(start)} for "
                  f"--model {args.model}, got {item!r}")
        try:
            value = float(_number(text))
        except argparse.ArgumentTypeError as err:
            _fail(f"--start {name}: {err}")
        if not math.isfinite(value):
            _fail(f"--start {name} must be finite, got {text.strip()!r}")
        start[name] = value
    for name in args.fix:
        if name not in start:
            _fail(f"--fix takes one of {', '.join(start)} for --model {args.model}, "
                  f"got {name!r}")
    if args.out is not None:
        from ._io import check_output_file

        try:
            check_output_file(args.out, "--out")
        except ValueError as err:
            _fail(f"--out: {err}")
    return start


def _fit(args: argparse.Namespace, start: dict[str, float]):
    import hedgejax as hj
    from hedgejax._calibrate import Quotes, calibrate

    try:
        quotes = Quotes.from_csv(args.quotes)
    except ValueError as err:
        _fail(f"--quotes {_first_line(err)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # e.g. Feller at the start: only the fit's
            model = getattr(hj, _CLASSES[args.model])(
                spot=float(args.spot), rate=float(args.rate), div=float(args.div), **start)
    except ValueError as err:
        _fail(f"--start: {_first_line(err)}")
    try:
        return calibrate(model, quotes, fix=tuple(args.fix), objective=args.objective,
                         max_steps=args.max_steps, check_arbitrage=not args.no_arbitrage_check,
                         arbitrage_tol=float(args.arbitrage_tol))
    except ValueError as err:
        message = _first_line(err).replace("check_arbitrage=False", "--no-arbitrage-check")
        message = message.replace("arbitrage_tol=", "--arbitrage-tol ")
        message = message.replace("bounds=", "--start values")
        _fail(f"--quotes {args.quotes}: {message}" if "quote" in message else message)


def _table(args: argparse.Namespace, fit, notes: list[str]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    errors = dict(zip(fit.names, [] if fit.standard_errors is None
                      else [float(s) for s in fit.standard_errors], strict=False))
    table = Table()
    table.add_column("parameter")
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("std error", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    from hedgejax._calibrate import PARAMETERS

    for name in PARAMETERS[type(fit.model)]:
        fitted = name in fit.names
        se = errors.get(name)
        table.add_row(name, f"{float(getattr(fit.model, name)):,.6g}",
                      "" if se is None else f"{se:,.3g}", "fitted" if fitted else "fixed")
    worst = int(abs(fit.residuals).argmax())
    quotes = fit.quotes
    console = Console(width=80)
    console.print(escape(f"{type(fit.model).__name__} fitted to {quotes.n:,} quotes of "
                         f"{Path(args.quotes).name}"))
    console.print(table)
    print(f"RMSE {100 * float(fit.rmse):,.4f} vol points (model - quote implied vol)")
    print(f"largest residual {100 * float(fit.residuals[worst]):+,.4f} vol points, at strike "
          f"{float(quotes.strike[worst]):,.6g} and maturity {float(quotes.maturity[worst]):.4g}")
    state = "converged" if fit.converged else "NOT converged"
    print(f"{fit.steps} Levenberg-Marquardt steps, {state}; spot {_text(args.spot)}, "
          f"objective {args.objective}, {'float64' if args.x64 else 'float32'}")
    for note in notes:
        print(f"note: {note}")


def run(args: argparse.Namespace) -> int:
    """Fit, print, write --out; returns the exit status (0)."""
    start = _check(args)
    import jax

    previous = jax.config.jax_enable_x64
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = _fit(args, start)
        notes = []
        for w in caught:
            text = (str(w.message).splitlines() or [""])[0]
            if text and not issubclass(w.category, DeprecationWarning) and text not in notes:
                notes.append(text)
        results = _results(fit, args.x64)
        inputs = {k: _json_number(float(v), True) if isinstance(v, float) else v
                  for k, v in vars(args).items() if k != "command"}
        payload = {"command": "calibrate", "inputs": inputs, "results": results}
        if notes:
            payload["notes"] = {f"warning {k + 1}": n for k, n in enumerate(notes)}
        text = json.dumps(payload, allow_nan=False)
        if args.out is not None:
            from ._io import atomic_write_text

            try:
                atomic_write_text(args.out, text + "\n")
            except OSError as err:
                _fail(f"--out {args.out}: {err.strerror or _first_line(err)}")
        with _stdout():
            if args.json:
                print(text)
            else:
                _table(args, fit, notes)
                if args.out is not None:
                    print(f"wrote {args.out}")
            sys.stdout.flush()
    finally:
        jax.config.update("jax_enable_x64", previous)
    return 0


def _results(fit, x64: bool) -> dict:
    """`fit.as_dict()` with floats in the working precision's shortest form and non-finite
    standard errors (unidentified parameters) as null."""
    def clean(value):
        if isinstance(value, float):
            return _json_number(value, x64) if math.isfinite(value) else None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean(fit.as_dict())
