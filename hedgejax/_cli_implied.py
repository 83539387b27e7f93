"""`hedgejax implied-vol`: the Black-Scholes implied volatility of one European option price
(registered by hedgejax.cli; the computation is `hedgejax.implied_vol`).

    hedgejax implied-vol --price 10.45 --strike 100 --maturity 1 --spot 100 --rate 0.05

prints the implied vol and the vega at that vol in a small table, or with --json one JSON
object {"command", "inputs", "results": {"implied_vol", "vega", "vega_per_point"}}. Bad input
(a flag out of range, a price outside the no-arbitrage bounds) prints one line
`hedgejax: error: ...` and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from .cli import _FLOAT_MAX, _fail, _first_line, _json_number, _number, _stdout, _text


def register(sub) -> None:
    """Add the `implied-vol` subparser to `sub`."""
    p = sub.add_parser("implied-vol", help="Black-Scholes implied volatility of a European "
                                           "option price")
    p.add_argument("--price", type=_number, required=True,
                   help="option price (currency, per unit)")
    p.add_argument("--strike", type=_number, default=100.0, help="strike (currency)")
    p.add_argument("--maturity", type=_number, default=1.0,
                   help="maturity (years from 0)")
    p.add_argument("--spot", type=_number, default=100.0, help="spot price (currency)")
    p.add_argument("--rate", type=_number, default=0.0,
                   help="continuous risk-free rate per year (negative allowed)")
    p.add_argument("--div", type=_number, default=0.0, help="continuous dividend yield per year")
    p.add_argument("--time", type=_number, default=0.0,
                   help="valuation time (years from 0): maturity - time years remain")
    p.add_argument("--put", action="store_true", help="the price is a put's (default: a call)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--x64", action="store_true", help="compute in float64 (default float32)")


def _check(args: argparse.Namespace) -> None:
    """Refuse, naming the flag, what can be judged before jax is imported."""
    dtype = "float64" if args.x64 else "float32"
    for name in ("price", "strike", "maturity", "spot", "rate", "div", "time"):
        value = getattr(args, name)
        if not math.isfinite(value):
            _fail(f"--{name} must be finite, got {_text(value)}")
        if abs(value) > _FLOAT_MAX[args.x64]:
            _fail(f"--{name} {_text(value)} overflows {dtype} (largest "
                  f"{_FLOAT_MAX[args.x64]:.3g})" + ("" if args.x64 else "; add --x64"))
    for name in ("strike", "maturity", "spot"):
        if getattr(args, name) <= 0:
            _fail(f"--{name} must be > 0, got {_text(getattr(args, name))}")
    if args.maturity - args.time <= 0:
        _fail(f"--maturity must be after --time (maturity - time years remain), got "
              f"--maturity {_text(args.maturity)} and --time {_text(args.time)}")


def _compute(args: argparse.Namespace) -> dict[str, float]:
    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import hedgejax as hj
    from hedgejax._implied import black_scholes_vega, implied_vol

    kind = hj.EuropeanPut if args.put else hj.EuropeanCall
    try:
        option = kind(args.strike, args.maturity)
        vol = float(implied_vol(args.price, option, args.spot, rate=args.rate, div=args.div,
                                t=args.time))
        vega = float(black_scholes_vega(vol, args.spot, args.strike, args.maturity - args.time,
                                        args.rate, args.div))
    except ValueError as err:
        message = _first_line(err)
        if message.startswith("price = "):     # "price = 120 is above ..." names the flag
            message = "--price " + message[len("price = "):]
        _fail(message)
    return {"implied_vol": vol, "vega": vega, "vega_per_point": vega / 100.0}


def _table(args: argparse.Namespace, values: dict[str, float]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    kind = "put" if args.put else "call"
    title = (f"implied vol of a European {kind}: price {_text(args.price)}, strike "
             f"{_text(args.strike)}, expiry in {args.maturity - args.time:g} years")
    table = Table()
    table.add_column("statistic")
    table.add_column("value", justify="right", no_wrap=True)
    table.add_row("implied vol (annual)",
                  f"{values['implied_vol']:,.6f} ({100 * values['implied_vol']:,.4f}%)")
    table.add_row("vega (per 1.00 of vol)", f"{values['vega']:,.6g}")
    table.add_row("vega (per vol point, 0.01)", f"{values['vega_per_point']:,.6g}")
    console = Console(width=80)
    console.print(escape(title))
    console.print(table)
    print(f"spot {_text(args.spot)}, rate {_text(args.rate)}, div {_text(args.div)} "
          f"(continuous); {'float64' if args.x64 else 'float32'}")


def run(args: argparse.Namespace) -> int:
    """Compute and print; returns the exit status (0)."""
    _check(args)
    values = _compute(args)
    with _stdout():
        if args.json:
            inputs = {k: _json_number(float(v), True) if isinstance(v, float) else v
                      for k, v in vars(args).items() if k != "command"}
            results = {k: _json_number(v, args.x64) for k, v in values.items()}
            print(json.dumps({"command": "implied-vol", "inputs": inputs, "results": results},
                             allow_nan=False))
        else:
            _table(args, values)
        sys.stdout.flush()
    return 0
