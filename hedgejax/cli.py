"""The `hedgejax` command line: price, greeks, hedge, fit-band, experiment and bench.

Every command prints a table (rich) or, with --json, one JSON object. Bad input prints one
line `hedgejax: error: ...` and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any, NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line `PROG: error: ...` and exit status 2."""

    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        first = message.splitlines()[0] if message else "invalid arguments"
        print(f"{self.prog.split()[0]}: error: {first}", file=sys.stderr)
        sys.exit(2)


def _fail(message: str) -> NoReturn:
    OneLineParser(prog="hedgejax").error(message)


def _market_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("market (Black-Scholes)")
    g.add_argument("--spot", type=float, default=100.0, help="spot price (default 100)")
    g.add_argument("--vol", type=float, default=0.2, help="annual volatility (default 0.2)")
    g.add_argument("--rate", type=float, default=0.0, help="continuous risk-free rate")
    g.add_argument("--div", type=float, default=0.0, help="continuous dividend yield")
    o = p.add_argument_group("option")
    o.add_argument("--option", choices=["call", "put", "digital"], default="call")
    o.add_argument("--strike", type=float, default=100.0)
    o.add_argument("--maturity", type=float, default=1.0, help="years (default 1)")
    o.add_argument("--quantity", type=float, default=1.0, help="units held (< 0 short)")
    p.add_argument("--x64", action="store_true", help="compute in float64")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="hedgejax", description="Monte Carlo hedging engine in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p = sub.add_parser("price", help="Black-Scholes price of an option")
    _market_args(p)
    p = sub.add_parser("greeks", help="autodiff Greeks of an option")
    _market_args(p)

    p = sub.add_parser("bench", help="run the benchmark suite (experiments/bench.py)")
    p.add_argument("--quick", action="store_true", help="small sizes, results in runs/")
    p.add_argument("--only", default=None, help="workloads, e.g. w1,w3 (default all)")

    p = sub.add_parser("experiment", help="run an experiment (`hedgejax experiment list`)")
    p.add_argument("name", help="experiment name, or 'list' to list them")
    p.add_argument("--config", metavar="FILE.toml", default=None,
                   help="TOML file overriding the experiment's defaults "
                        "(hedgejax experiment NAME --show-config)")
    p.add_argument("--paths", type=int, default=None, help="Monte Carlo paths (override)")
    p.add_argument("--seed", type=int, default=None, help="random seed (override)")
    p.add_argument("--out", metavar="DIR", default="runs",
                   help="parent folder of the run folder NAME-<timestamp> (default runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("fit-band", help="learn a no-trade band with optax (mean-variance)")
    _market_args(p)
    p.add_argument("--steps", type=int, default=63, help="rebalancing grid steps (63)")
    p.add_argument("--horizon", type=float, default=None,
                   help="years hedged (default: the option's maturity)")
    p.add_argument("--band", choices=["constant", "ww", "learned"], default="constant",
                   help="constant width, Whalley-Wilmott (scale learned), or a learned MLP")
    p.add_argument("--cost", type=float, default=0.002, help="proportional cost rate (0.002)")
    p.add_argument("--lam", type=float, default=1.0,
                   help="risk aversion: minimise E[cost] + lam Var[hedge error] (1.0)")
    p.add_argument("--iters", type=int, default=200, help="optimisation steps (200)")
    p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (0.05)")
    p.add_argument("--paths", type=int, default=8192, help="paths per optimisation step")
    p.add_argument("--eval-paths", type=int, default=100_000, help="paths to evaluate")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("hedge", help="simulate hedging an option and summarise the P&L")
    _market_args(p)
    p.add_argument("--drift", type=float, default=None,
                   help="real-world drift of the world (default: risk-neutral rate - div)")
    p.add_argument("--hedge-vol", type=float, default=None,
                   help="volatility the hedger believes (default: the world's --vol)")
    p.add_argument("--steps", type=int, default=252, help="rebalancing grid steps (252)")
    p.add_argument("--strategy", choices=["none", "static", "delta", "band", "ww"],
                   default="delta")
    p.add_argument("--every", type=int, default=1, help="delta: rebalance every k steps")
    p.add_argument("--width", type=float, default=0.05, help="band: half-width in shares")
    p.add_argument("--risk-aversion", type=float, default=1.0, help="ww: risk aversion")
    p.add_argument("--cost", type=float, default=0.0, help="proportional cost rate")
    p.add_argument("--fixed", type=float, default=0.0, help="fixed fee per trade")
    p.add_argument("--spread", type=float, default=0.0, help="half spread per share")
    p.add_argument("--unwind", action="store_true", help="sell the hedge at T, paying costs")
    p.add_argument("--paths", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, default=0.99, help="VaR/ES confidence (0.99)")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="write a histogram of hedged vs unhedged P&L")
    return parser


def _instrument(hj, args):
    kinds = {"call": hj.EuropeanCall, "put": hj.EuropeanPut, "digital": hj.Digital}
    return kinds[args.option](args.strike, args.maturity)


def _price(hj, args) -> dict[str, Any]:
    model = hj.BlackScholes(args.spot, args.vol, args.rate, args.div)
    inst = _instrument(hj, args)
    return {"price": args.quantity * float(hj.price(model, inst))}


def _greeks(hj, args) -> dict[str, Any]:
    model = hj.BlackScholes(args.spot, args.vol, args.rate, args.div)
    g = hj.greeks(model, _instrument(hj, args)).as_dict()
    return {k: args.quantity * v for k, v in g.items()}


def _strategy(hj, args):
    return {
        "none": lambda: hj.NoHedge(),
        "static": lambda: hj.StaticHedge(),
        "delta": lambda: hj.DeltaHedge(every=args.every),
        "band": lambda: hj.BandHedge(args.width),
        "ww": lambda: hj.WhalleyWilmott(args.risk_aversion),
    }[args.strategy]()


def _hedge(hj, args) -> dict[str, Any]:
    import jax

    world = hj.BlackScholes(args.spot, args.vol, args.rate, args.div, drift=args.drift)
    hedger = None
    if args.hedge_vol is not None:
        hedger = hj.BlackScholes(args.spot, args.hedge_vol, args.rate, args.div)
    costs = hj.Proportional(args.cost) + hj.Fixed(args.fixed) + hj.Spread(args.spread)
    book = hj.Book([_instrument(hj, args)], quantities=[args.quantity])
    grid = hj.TimeGrid(args.maturity, args.steps)
    result = hj.hedge(world, book, _strategy(hj, args), costs, grid, n_paths=args.paths,
                      key=jax.random.key(args.seed), hedge_model=hedger, unwind=args.unwind)
    stats = hj.summary(result, alpha=args.alpha)
    if args.plot:
        from ._plots import pnl_histogram
        pnl_histogram(result, args.plot, title=f"{args.strategy} hedge of {args.option}")
    return stats


def _fit_band(hj, args) -> dict[str, Any]:
    import jax
    import optax

    model = hj.BlackScholes(args.spot, args.vol, args.rate, args.div)
    book = hj.Book([_instrument(hj, args)], quantities=[args.quantity])
    grid = hj.TimeGrid(args.maturity if args.horizon is None else args.horizon, args.steps)
    costs = hj.Proportional(args.cost)
    objective = hj.risk.mean_cost_variance(lam=args.lam)
    size = abs(args.quantity)
    # Whalley-Wilmott's exponential-utility risk aversion for a mean-variance objective:
    # E - (gamma / 2) Var  <->  lam = gamma / 2.
    initial = {"constant": lambda: hj.BandHedge(0.05 * size),
               "ww": lambda: hj.WhalleyWilmott(2.0 * args.lam),
               "learned": lambda: hj.LearnedBand(
                   jax.random.key(args.seed + 1), reference=args.strike,
                   init_width=0.05 * size, init_ww=(2.0 * args.lam) ** (-1 / 3),
                   book_scale=size)}
    key = jax.random.key(args.seed)
    fitted, history = hj.fit(initial[args.band](), objective, model, book, costs, grid,
                             key=key, optimizer=optax.adam(args.lr), steps=args.iters,
                             n_paths=args.paths, progress=not args.json)
    eval_key = jax.random.fold_in(key, 2**31 - 1)  # paths the fit never saw
    fitted_stats = hj.evaluate(fitted, objective, model, book, costs, grid,
                               n_paths=args.eval_paths, key=eval_key)
    delta_stats = hj.evaluate(hj.DeltaHedge(), objective, model, book, costs, grid,
                              n_paths=args.eval_paths, key=eval_key)
    out: dict[str, Any] = {}
    if args.band == "constant":
        out["half_width_shares"] = float(fitted.width)
    elif args.band == "ww":
        out["ww_scale"] = float(fitted.scale)
    out.update({
        "objective": fitted_stats["objective"],
        "objective_stderr": fitted_stats["objective_stderr"],
        "mean_cost": fitted_stats["mean_cost"],
        "std_hedge_error": fitted_stats["std_hedge_error"],
        "mean_trades": fitted_stats["mean_trades"],
        "delta_hedge_objective": delta_stats["objective"],
        "delta_hedge_objective_stderr": delta_stats["objective_stderr"],
        "first_objective": float(history.objective[0]),
        "last_objective": float(history.objective[-1]),
    })
    return out


_LABELS = {
    "n_paths": "paths",
    "initial_price": "book price V0",
    "mean": "mean P&L",
    "stderr": "std error of mean",
    "std": "std P&L",
    "var": "VaR (loss)",
    "es": "expected shortfall (loss)",
    "mean_hedge_error": "mean hedge error (before costs)",
    "std_hedge_error": "std hedge error",
    "mean_cost": "mean cost",
    "mean_trades": "mean trades per path",
    "unhedged_std": "std P&L unhedged",
    "hedge_effectiveness": "hedge effectiveness",
    "vega": "vega (per 1.00 vol)",
    "rho": "rho (per 1.00 rate)",
    "theta": "theta (per year)",
    "half_width_shares": "fitted half-width (shares)",
    "ww_scale": "fitted Whalley-Wilmott scale",
    "objective": "E(cost) + lam Var(hedge error), fresh paths",
    "objective_stderr": "std error of the objective",
    "delta_hedge_objective": "same objective, delta hedging every step",
    "delta_hedge_objective_stderr": "std error of delta hedging's",
    "first_objective": "training objective, first step",
    "last_objective": "training objective, last step",
}


def _title(args) -> str:
    what = f"{args.quantity:g} x {args.option} K={args.strike:g} T={args.maturity:g}y"
    if args.command == "fit-band":
        return (f"hedgejax fit-band: {args.band} band for {what}, cost {args.cost:g}, "
                f"lam {args.lam:g}, {args.steps} steps")
    if args.command != "hedge":
        return f"hedgejax {args.command}: {what}, S={args.spot:g} vol={args.vol:g}"
    return (f"hedgejax hedge: {args.strategy} hedge of {what}, {args.paths:,} paths x "
            f"{args.steps} steps, P&L in time-T money, VaR/ES at {args.alpha:g}")


def _show(title: str, values: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for k, v in values.items():
        table.add_row(_LABELS.get(k, k), f"{v:,.6g}" if isinstance(v, float) else str(v))
    Console().print(table)


def _bench(args) -> int:
    """Run experiments/bench.py from a source checkout (the benchmarks are not installed)."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "experiments" / "bench.py"
    if not script.exists():
        _fail("the benchmarks live in a source checkout: experiments/bench.py not found")
    cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
    if args.only:
        cmd += ["--only", args.only]
    return subprocess.run(cmd).returncode


def _experiments_module():
    """The experiments installed with the package (hedgejax/experiments/)."""
    from . import experiments
    from .experiments import _framework

    return experiments, _framework


def _experiment(args) -> int:
    experiments, framework = _experiments_module()
    if args.name == "list":
        from rich.console import Console
        from rich.table import Table

        table = Table(title="hedgejax experiments (hedgejax experiment NAME)")
        table.add_column("name")
        table.add_column("question")
        for name in experiments.NAMES:
            table.add_row(name, framework.load_module(name).QUESTION)
        Console(width=max(120, Console().width)).print(table)
        return 0
    for name in ("paths", "seed"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "paths" else 0):
            _fail(f"--{name} must be an integer >= {1 if name == 'paths' else 0}, got {value}")
    try:
        framework.run_experiment(args.name, config=args.config, paths=args.paths,
                                 seed=args.seed, out=args.out, progress=not args.no_progress)
    except ValueError as err:  # ConfigError included
        _fail(str(err).splitlines()[0])
    except OSError as err:
        _fail(f"cannot write the run folder under {args.out}: {err.strerror or err}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        return _bench(args)
    if args.command == "experiment":
        return _experiment(args)
    for name in ("paths", "steps", "every", "iters", "eval_paths"):
        if hasattr(args, name) and getattr(args, name) < 1:
            _fail(f"--{name.replace('_', '-')} must be an integer >= 1, got "
                  f"{getattr(args, name)}")
    if getattr(args, "eval_paths", 40) < 40:
        _fail(f"--eval-paths must be an integer >= 40 (the standard error uses 20 batch "
              f"means of at least 2 paths), got {args.eval_paths}")
    for name in ("spot", "vol", "rate", "div", "strike", "maturity", "quantity", "cost",
                 "fixed", "spread", "width", "lam", "lr", "horizon"):
        if getattr(args, name, None) is not None and not math.isfinite(getattr(args, name)):
            _fail(f"--{name.replace('_', '-')} must be finite, got {getattr(args, name)}")
    for name in ("cost", "fixed", "spread", "width", "lam"):
        if hasattr(args, name) and getattr(args, name) < 0:
            _fail(f"--{name} must be >= 0, got {getattr(args, name)}")
    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import hedgejax as hj

    if args.command == "fit-band":
        for name in ("lr", "horizon"):
            value = getattr(args, name)
            if value is not None and value <= 0:
                _fail(f"--{name} must be > 0, got {value}")
    run = {"price": _price, "greeks": _greeks, "hedge": _hedge,
           "fit-band": _fit_band}[args.command]
    try:
        values = run(hj, args)
    except ValueError as err:
        _fail(str(err).splitlines()[0])
    if args.json:
        print(json.dumps({"command": args.command, "inputs": vars(args), "results": values}))
    else:
        _show(_title(args), values)
    return 0


if __name__ == "__main__":
    sys.exit(main())
