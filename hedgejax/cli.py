"""The `hedgejax` command line: price, greeks, hedge, fit-band, experiment and bench.

Every command prints a table (rich) or, with --json, one strict JSON object (a value that is
not finite is null, and "notes" says why). Bad input prints one line `hedgejax: error: ...`
naming the flag or config key, and exits with status 2. What can be checked in advance is
checked before anything is computed, and before jax is imported: the flags (numbers in the
range of float32, or float64 with --x64; seeds; counts), the simulated prices' range, the
output paths; then the memory a run needs. Library errors are reported by the flags that
supplied the values.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import json
import math
import os
import re
import struct
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__

SEED_MAX = 2**32 - 1        # jax.random.key(seed) in 32-bit mode: larger seeds repeat others
PATHS_MAX = 2**32 - 1       # paths are numbered by a uint32
STEPS_MAX = 1_000_000       # TimeGrid's limit: every step is one step of the compiled scan
ITERS_MAX = 1_000_000       # optimisation steps of fit-band (its history holds one per step)
_FLOAT_MAX = {False: 3.4028234663852886e38, True: 1.7976931348623157e308}
_FLOAT_TINY = {False: 1.1754943508222875e-38, True: 2.2250738585072014e-308}
_SIGMAS = 8.0               # how far a simulated log-price may stray, in standard deviations
_PROGRESS_MIN_WORK = 5_000_000      # paths x steps of a hedge that takes seconds on a CPU
_PROGRESS_CHUNKS = 20
_LANES = 64                 # hedge() lays paths out in rows of 64
_MAX_MESSAGE = 500          # characters of a library message shown on the error line

# Anything that starts like a negative number (-1e-3, -.5, -inf, and -1_000, which the
# number's type then refuses by name) is a value, not a flag: argparse alone only recognises
# -1 and -.5, and says "expected one argument" for `--rate -1e-3`.
_NEGATIVE_NUMBER = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE | re.ASCII)
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^[-+]?(inf|infinity|nan)$",
                         re.IGNORECASE | re.ASCII)   # ASCII: no other scripts' digits
_INT_TEXT = re.compile(r"^[-+]?\d+$", re.ASCII)


class Typed(float):
    """A number flag's value that remembers the text typed, to echo it as typed (`1e-400`,
    not the 0.0 it parses to; `-0.1`, not its float32 value)."""

    text: str

    def __new__(cls, value: float, text: str) -> Typed:
        number = super().__new__(cls, value)
        number.text = text
        return number


def _number(text: str) -> Typed:
    """A float flag's type: decimal or scientific notation, inf or nan; no underscores (a
    Python-only syntax)."""
    word = text.strip()
    if not _FLOAT_TEXT.match(word):
        hint = "; no underscores" if "_" in word else ""
        raise argparse.ArgumentTypeError(f"invalid number {text!r} (write e.g. 1000, -0.5 or "
                                         f"1e-3{hint})")
    return Typed(float(word), word)


def _integer(text: str) -> int:
    """An integer flag's type: decimal digits only (no underscores, no 1e6)."""
    word = text.strip()
    if not _INT_TEXT.match(word):
        hint = "; no underscores" if "_" in word else ""
        raise argparse.ArgumentTypeError(f"invalid integer {text!r} (write e.g. 1000{hint})")
    return int(word)


def _text(value: Any) -> str:
    """A flag's value as typed (a default: in short form)."""
    if isinstance(value, Typed):
        return value.text
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# What the command line's messages need to know of the run: the flags' text as typed, and
# whether --x64 was given (a message advising it then drops the advice).
_CONTEXT: dict[str, Any] = {"typed": {}, "x64": False}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """'(default: X)' after every flag's help, but switches' and unset options' (whose help
    says what unset means)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line `PROG: error: ...` and exit status 2, that
    shows every flag's default and reads negative numbers in any notation as values."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        first = message.splitlines()[0] if message else "invalid arguments"
        if len(first) > _MAX_MESSAGE:
            first = first[:_MAX_MESSAGE] + " ..."
        print(f"{self.prog.split()[0]}: error: {first}", file=sys.stderr)
        sys.exit(2)


def _fail(message: str) -> NoReturn:
    OneLineParser(prog="hedgejax").error(message)


_KINDS = {
    "call": lambda hj, a: hj.EuropeanCall(a.strike, a.maturity),
    "put": lambda hj, a: hj.EuropeanPut(a.strike, a.maturity),
    "digital": lambda hj, a: hj.Digital(a.strike, a.maturity),
    "barrier": lambda hj, a: hj.Barrier(a.strike, a.barrier, a.maturity, kind=a.kind,
                                        option=a.type, rebate=a.rebate,
                                        monitoring=a.monitoring),
    "one-touch": lambda hj, a: hj.OneTouch(a.barrier, a.maturity, payout=a.payout,
                                           pay_at=a.pay_at),
    "lookback": lambda hj, a: hj.Lookback(a.maturity, None if a.floating else a.strike,
                                          option=a.type, monitoring=a.monitoring),
    "asian": lambda hj, a: hj.Asian(a.strike, a.maturity, option=a.type, average=a.average,
                                    fixings=a.fixings),
    "forward-start": lambda hj, a: hj.ForwardStart(a.start, a.maturity,
                                                   moneyness=a.moneyness, option=a.type),
    "variance-swap": lambda hj, a: hj.VarianceSwap(a.maturity, a.strike_vol,
                                                   notional=a.notional),
}


def _market_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("market (Black-Scholes)")
    g.add_argument("--spot", type=_number, default=100.0, help="spot price (currency)")
    g.add_argument("--vol", type=_number, default=0.2, help="annual volatility")
    g.add_argument("--rate", type=_number, default=0.0,
                   help="continuous risk-free rate per year (negative allowed)")
    g.add_argument("--div", type=_number, default=0.0, help="continuous dividend yield per year")
    o = p.add_argument_group("option")
    o.add_argument("--option", choices=list(_KINDS), default="call",
                   help="European call, put, cash-or-nothing digital call, or a "
                   "path-dependent instrument (its flags below)")
    o.add_argument("--strike", type=_number, default=100.0, help="strike (currency)")
    o.add_argument("--maturity", type=_number, default=1.0, help="years to expiry")
    o.add_argument("--quantity", type=_number, default=1.0, help="units held (< 0 short)")
    x = p.add_argument_group("path-dependent instruments (see hedgejax._exotics)")
    x.add_argument("--type", choices=["call", "put"], default="call",
                   help="call or put payoff of a barrier, lookback, Asian or forward start")
    x.add_argument("--barrier", type=_number, default=90.0,
                   help="barrier or touch level (currency)")
    x.add_argument("--kind", choices=["down-and-out", "down-and-in", "up-and-out",
                                      "up-and-in"], default="down-and-out", help="barrier kind")
    x.add_argument("--rebate", type=_number, default=0.0,
                   help="barrier rebate paid at expiry (currency)")
    x.add_argument("--monitoring", type=_integer, default=None,
                   help="discrete monitoring dates of a barrier or lookback (default: "
                   "continuous)")
    x.add_argument("--average", choices=["arithmetic", "geometric"], default="arithmetic",
                   help="Asian average")
    x.add_argument("--fixings", type=_integer, default=None,
                   help="Asian fixings, equally spaced to maturity (default: a continuous "
                   "average for price/greeks, one per step for hedge)")
    x.add_argument("--floating", action="store_true",
                   help="floating-strike lookback (ignores --strike)")
    x.add_argument("--start", type=_number, default=0.25,
                   help="forward start: strike-fixing time (years)")
    x.add_argument("--moneyness", type=_number, default=1.0,
                   help="forward start: strike / spot at --start")
    x.add_argument("--payout", type=_number, default=1.0, help="one-touch payout (currency)")
    x.add_argument("--pay-at", choices=["hit", "expiry"], default="hit",
                   help="one-touch: pay when touched or at expiry")
    x.add_argument("--strike-vol", type=_number, default=0.2,
                   help="variance swap: strike as an annual vol")
    x.add_argument("--notional", type=_number, default=1.0,
                   help="variance swap: currency per unit of annual variance")
    p.add_argument("--x64", action="store_true", help="compute in float64 (default float32)")
    p.add_argument("--json", action="store_true", help="print one JSON object, not a table")


def _seed_arg(p: argparse.ArgumentParser, default: int | None) -> None:
    p.add_argument("--seed", type=_integer, default=default,
                   help=f"random seed, 0..{SEED_MAX}" + ("" if default is not None else
                                                         " (default: the config's)"))


# Commands that live in their own modules (desk analytics): each has `register(sub)`, which
# adds its subparser (named as the key), and `run(args) -> int`, which runs it: prints its
# result, writes its files, and refuses bad input with `_fail` (one line, exit 2).
_EXTENSION_MODULES = {
    "implied-vol": "hedgejax._cli_implied",
    "calibrate": "hedgejax._cli_calibrate",
    "rebalance": "hedgejax._cli_rebalance",
}


def _extensions() -> list:
    import importlib

    return [importlib.import_module(name) for name in _EXTENSION_MODULES.values()]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="hedgejax", description="Monte Carlo hedging engine in JAX.")
    parser.add_argument("--version", action="version", version=f"hedgejax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser,
                                metavar="COMMAND")

    p = sub.add_parser("price", help="Black-Scholes price of an option")
    _market_args(p)
    for module in _extensions():
        module.register(sub)
    p = sub.add_parser("greeks", help="autodiff Greeks of an option")
    _market_args(p)

    p = sub.add_parser("bench", help="run the benchmark suite (experiments/bench.py of a "
                                     "source checkout)")
    p.add_argument("--quick", action="store_true", help="small sizes, results in runs/")
    p.add_argument("--only", default=None, help="workloads, e.g. w1,w3 (default: all)")

    p = sub.add_parser("experiment", help="run an experiment (`hedgejax experiment list`)")
    p.add_argument("name", help="experiment name, or 'list' to list them")
    p.add_argument("--config", metavar="FILE.toml", default=None,
                   help="TOML file overriding the experiment's defaults "
                        "(hedgejax experiment NAME --show-config)")
    p.add_argument("--show-config", action="store_true",
                   help="print the experiment's default config (TOML) and exit")
    p.add_argument("--paths", type=_integer, default=None,
                   help="Monte Carlo paths (default: the config's)")
    _seed_arg(p, None)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="parent folder of the run folder NAME-<timestamp> (default: runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("fit-band", help="learn a no-trade band with optax (mean-variance)")
    _market_args(p)
    p.add_argument("--steps", type=_integer, default=63, help="rebalancing grid steps")
    p.add_argument("--horizon", type=_number, default=None,
                   help="years hedged (default: the option's maturity)")
    p.add_argument("--band", choices=["constant", "ww", "learned"], default="constant",
                   help="constant width, Whalley-Wilmott (scale learned), or a learned MLP")
    p.add_argument("--cost", type=_number, default=0.002, help="proportional cost rate")
    p.add_argument("--lam", type=_number, default=1.0,
                   help="risk aversion: minimise E[cost] + lam Var[hedge error]")
    p.add_argument("--iters", type=_integer, default=200, help="optimisation steps")
    p.add_argument("--lr", type=_number, default=0.05, help="Adam learning rate")
    p.add_argument("--paths", type=_integer, default=8192, help="paths per optimisation step")
    p.add_argument("--eval-paths", type=_integer, default=100_000,
                   help="fresh paths to evaluate the fitted band and delta hedging")
    _seed_arg(p, 0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("hedge", help="simulate hedging an option and summarise the P&L")
    _market_args(p)
    p.add_argument("--drift", type=_number, default=None,
                   help="real-world drift of the world (default: risk-neutral, rate - div)")
    p.add_argument("--hedge-vol", type=_number, default=None,
                   help="volatility the hedger believes (default: the world's --vol)")
    p.add_argument("--steps", type=_integer, default=252, help="rebalancing grid steps")
    p.add_argument("--strategy", choices=["none", "static", "delta", "band", "ww"],
                   default="delta", help="no hedge, static, delta, fixed band, "
                                         "Whalley-Wilmott band")
    p.add_argument("--every", type=_integer, default=1, help="delta: rebalance every k steps")
    p.add_argument("--width", type=_number, default=0.05, help="band: half-width in shares")
    p.add_argument("--risk-aversion", type=_number, default=1.0, help="ww: risk aversion")
    p.add_argument("--cost", type=_number, default=0.0, help="proportional cost rate")
    p.add_argument("--fixed", type=_number, default=0.0, help="fixed fee per trade (currency)")
    p.add_argument("--spread", type=_number, default=0.0, help="half spread per share")
    p.add_argument("--unwind", action="store_true", help="sell the hedge at T, paying costs")
    p.add_argument("--paths", type=_integer, default=100_000, help="Monte Carlo paths (>= 2)")
    _seed_arg(p, 0)
    p.add_argument("--alpha", type=_number, default=0.99, help="VaR/ES confidence, in (0, 1)")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="write a histogram of hedged vs unhedged P&L")
    p.add_argument("--explain", action="store_true",
                   help="also explain the P&L: mean and std of its delta, gamma, theta, "
                        "carry, cost and residual terms (hj.hedge(..., attribution=True))")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (shown on a terminal for runs of seconds)")
    return parser


# ---------------------------------------------------------------------------------------
# Checks before jax is imported
# ---------------------------------------------------------------------------------------

_INT_FLAGS = {"paths": 1, "steps": 1, "every": 1, "iters": 1, "eval_paths": 40}
_INT_MAX = {"paths": (PATHS_MAX, " (paths are numbered by a 32-bit integer)"),
            "eval_paths": (PATHS_MAX, " (paths are numbered by a 32-bit integer)"),
            "steps": (STEPS_MAX, " (every step is one step of the compiled scan)"),
            "iters": (ITERS_MAX, "")}
_FLOAT_FLAGS = ("spot", "vol", "rate", "div", "strike", "maturity", "quantity", "cost",
                "fixed", "spread", "width", "risk_aversion", "lam", "lr", "horizon", "drift",
                "hedge_vol", "alpha")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _float32(value: float) -> float:
    """`value` rounded to float32 (a finite value within float32's range)."""
    return struct.unpack("f", struct.pack("f", value))[0]


def _underflows(value: float) -> bool:
    """True when `value` parsed to 0 from a text that is not zero (1e-400)."""
    if value != 0 or not isinstance(value, Typed):
        return False
    mantissa = re.split(r"[eE]", value.text)[0]
    return any(c in "123456789" for c in mantissa)


def _check_ints(args: argparse.Namespace) -> None:
    for name, low in _INT_FLAGS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name == "paths" and args.command in ("hedge", "experiment"):
            low = 2     # the P&L's standard deviation needs two paths
        if value < low:
            why = {"eval_paths": " (the standard error uses 20 batch means of at least 2 "
                                 "paths)",
                   "paths": " (a standard deviation needs two paths)" if low == 2 else ""}
            _fail(f"{_flag(name)} must be an integer >= {low}{why.get(name, '')}, got {value}")
        high, why = _INT_MAX.get(name, (None, ""))
        if name == "every":
            high, why = args.steps, f" (the --steps, {args.steps:,}; a larger one never " \
                                    "rebalances: use --strategy static)"
        if high is not None and value > high:
            _fail(f"{_flag(name)} must be <= {high:,}{why}, got {value:,}")
    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed <= SEED_MAX:
        _fail(f"--seed must be an integer in 0..{SEED_MAX} (jax.random.key's range in 32-bit "
              f"mode), got {seed}")


def _check_args(args: argparse.Namespace) -> None:
    """Refuse, naming the flag, every value that can be judged without computing."""
    _check_ints(args)
    x64 = getattr(args, "x64", False)
    dtype = "float64" if x64 else "float32"
    for name in _FLOAT_FLAGS:
        value = getattr(args, name, None)
        if value is None:
            continue
        typed = _text(value)
        if not math.isfinite(value):
            _fail(f"{_flag(name)} must be finite, got {typed}")
        if abs(value) > _FLOAT_MAX[x64]:
            _fail(f"{_flag(name)} {typed} overflows {dtype} (largest {_FLOAT_MAX[x64]:.3g})"
                  + ("" if x64 else "; use a smaller value or --x64"))
        if 0 < abs(value) < _FLOAT_TINY[x64] or _underflows(value):
            _fail(f"{_flag(name)} {typed} is below {dtype}'s smallest normal number "
                  f"({_FLOAT_TINY[x64]:.3g})" + ("" if x64 else "; use 0, a larger value or "
                                                 "--x64"))
    for name in ("cost", "fixed", "spread", "width", "lam"):
        if getattr(args, name, 0) < 0:
            _fail(f"--{name} must be >= 0, got {_text(getattr(args, name))}")
    for name in ("lr", "horizon"):
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            _fail(f"--{name} must be > 0, got {_text(value)}")
    alpha = getattr(args, "alpha", None)
    if alpha is not None:
        if not 0 < alpha < 1:
            _fail(f"--alpha must be in (0, 1), got {_text(alpha)}")
        if not x64 and not 0 < _float32(alpha) < 1:
            _fail(f"--alpha {_text(alpha)} rounds to {_float32(alpha):g} in float32; use a "
                  "value in (0, 1) at least 1e-7 from either end, or add --x64")
    if args.command == "fit-band" and args.quantity == 0:
        _fail("--quantity must not be 0 for fit-band: there is no option position to hedge "
              "(the band's width is learned in shares of the book)")
    if args.command in ("hedge", "fit-band"):
        _check_price_range(args)
        _check_costs(args)


def _check_costs(args: argparse.Namespace) -> None:
    """Refuse a cost flag whose costs over a path can overflow the working precision: a path
    trades at most --steps + 2 times (the start, every step, the unwind), each trade of up
    to |--quantity| shares (and more, for a delta's swings: a margin of 1e3), at prices
    around --spot. The P&L's variance squares them, so the bound is sqrt(largest)."""
    limit = math.sqrt(_FLOAT_MAX[args.x64]) / 1e3
    trades = args.steps + 2
    shares = max(abs(args.quantity), 1.0)
    per_unit = {"fixed": (trades, "--steps + 2 trades"),
                "spread": (trades * shares, "--steps + 2 trades of |--quantity| shares"),
                "cost": (trades * shares * max(args.spot, 1.0),
                         "--steps + 2 trades of |--quantity| shares at --spot")}
    for name, (factor, what) in per_unit.items():
        value = getattr(args, name, 0.0)
        if value * factor > limit:
            dtype = "float64" if args.x64 else "float32"
            _fail(f"--{name} {_text(value)} is too large for {dtype}: a path's costs (up to "
                  f"{what}, {value * factor:.3g}) leave the range where its P&L and their "
                  f"variance are finite; lower --{name}" + ("" if args.x64 else " or add --x64"))


def _check_price_range(args: argparse.Namespace) -> None:
    """Refuse a world whose simulated prices can leave the working precision (overflow to
    inf, or underflow to 0, whose log is -inf: either makes the P&L NaN) before simulating:
    spot * exp(+-((|drift| + vol^2) T + 8 vol sqrt(T))) must lie within float32's range
    (float64's with --x64). The flag named is the one to blame: the horizon when the world
    fits over one year, else the largest term."""
    horizon = max(args.maturity, getattr(args, "horizon", None) or 0.0)
    if args.spot <= 0 or args.vol < 0 or horizon <= 0:
        return      # out of the model's domain: the library names the flag
    drift = args.drift if getattr(args, "drift", None) is not None else args.rate - args.div
    drift_flag = ("--drift" if getattr(args, "drift", None) is not None
                  else "the drift --rate - --div")
    log_min, log_max = math.log(_FLOAT_TINY[args.x64]), math.log(_FLOAT_MAX[args.x64])
    log_spot = math.log(args.spot)

    def shifts(t: float) -> dict[str, float]:
        return {"--vol": args.vol**2 * t + _SIGMAS * args.vol * math.sqrt(t),
                drift_flag: abs(drift) * t}

    def fits(t: float) -> bool:
        spread = sum(shifts(t).values())
        return log_min <= log_spot - spread and log_spot + spread <= log_max

    if fits(horizon):
        return
    shift = shifts(horizon)
    low, high = log_spot - sum(shift.values()), log_spot + sum(shift.values())
    horizon_flag = ("--horizon" if getattr(args, "horizon", None) is not None
                    and args.horizon >= args.maturity else "--maturity")
    value_of = {"--vol": _text(args.vol), drift_flag: f"{drift:g}", "--spot": _text(args.spot),
                horizon_flag: _text(args.horizon if horizon_flag == "--horizon"
                                    else args.maturity)}
    if horizon > 1 and fits(1.0):
        culprit = horizon_flag
    else:
        shift["--spot"] = abs(log_spot)
        culprit = max(shift, key=shift.__getitem__)
    if drift_flag == "--drift":
        value_of["--drift"] = _text(args.drift)
    size = "too small" if culprit == "--spot" and log_spot < 0 else "too large"
    dtype = "float64" if args.x64 else "float32"
    _fail(f"{culprit} {value_of[culprit]} is {size} for {dtype}: with --spot "
          f"{_text(args.spot)}, --vol {_text(args.vol)}, drift {value_of[drift_flag]} and T = "
          f"{_text(args.horizon if horizon_flag == '--horizon' else args.maturity)} years, "
          f"simulated prices spot*exp(+-((|drift| + vol^2) T + {_SIGMAS:g} vol sqrt(T))) span "
          f"e^{low:.0f}..e^{high:.0f}, beyond {dtype}'s e^{log_min:.0f}..e^{log_max:.0f}; "
          "lower it" + ("" if args.x64 else " or add --x64"))


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse an output path that cannot be written, before computing what goes in it."""
    from ._io import RUN_FOLDER_BYTES, check_output_dir, check_output_file

    try:
        if getattr(args, "plot", None) is not None:
            from ._plots import plot_format

            check_output_file(args.plot, "a plot path")
            plot_format(args.plot)
        if args.command == "experiment":
            check_output_dir(args.out, RUN_FOLDER_BYTES)
    except ValueError as err:
        _fail(f"{'--plot' if args.command == 'hedge' else '--out'}: {err}")


def _check_memory(args: argparse.Namespace) -> None:
    """Refuse a run whose per-path results (7 numbers a path, twice over while they are
    assembled, as `hedge()` estimates) cannot fit in the device's memory."""
    from ._validate import check_memory

    itemsize = 8 if args.x64 else 4
    for name in ("paths", "eval_paths"):
        n = getattr(args, name, None)
        if n is None:
            continue
        try:
            check_memory(2 * 7 * itemsize * -(-n // _LANES) * _LANES,
                         f"{_flag(name)} {n:,} (the per-path results)",
                         f"lower {_flag(name)}")
        except ValueError as err:
            _fail(str(err))


# ---------------------------------------------------------------------------------------
# Library errors, by the flags that supplied the values
# ---------------------------------------------------------------------------------------

_WORLD = {"spot": "--spot", "vol": "--vol", "rate": "--rate", "div": "--div",
          "drift": "--drift"}
_HEDGER = {"spot": "--spot", "vol": "--hedge-vol", "rate": "--rate", "div": "--div"}
_OPTION = {"strike": "--strike", "maturity": "--maturity", "quantities": "--quantity",
           "quantity": "--quantity", "n_steps": "--steps"}
_OPTION.update({name: "--" + name.replace("_", "-") for name in (
    "barrier", "kind", "rebate", "monitoring", "average", "fixings", "start", "moneyness",
    "payout", "pay_at", "strike_vol", "notional")})
_COSTS = {"rate": "--cost", "per_trade": "--fixed", "half_spread": "--spread"}
_STRATEGY = {"every": "--every", "width": "--width", "risk_aversion": "--risk-aversion"}
_RUN = {"n_paths": "--paths", "alpha": "--alpha"}


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__


def _rename(message: str, names: dict[str, str]) -> str:
    """`message` with each parameter name (bare, or as `Class.name`) replaced by its flag."""
    pattern = re.compile(r"(?<![\w.-])(?:[A-Z]\w*\.)?(" + "|".join(map(re.escape, names))
                         + r")(?![\w-])")
    message = pattern.sub(lambda m: names[m.group(1)], message)
    message = message.replace("enable jax_enable_x64", "add --x64")
    # `--vol=-0.10000000149011612` (the float32 value the library saw): the text typed
    typed = _CONTEXT["typed"]
    message = re.sub(r"(--[\w-]+)=(-?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|-?inf|nan)",
                     lambda m: f"{m.group(1)}={typed[m.group(1)]}" if m.group(1) in typed
                     else m.group(0), message, flags=re.IGNORECASE)
    if _CONTEXT["x64"]:     # advice to add --x64 when it is already there
        message = re.sub(r"add --x64 or |,? or add --x64|;? add --x64(?=$|[;.])", "",
                         message)
    return message


def _is_jax_runtime_error(err: BaseException) -> bool:
    return type(err).__module__.split(".")[0] in ("equinox", "jax", "jaxlib")


@contextlib.contextmanager
def _flags_for(names: dict[str, str], non_finite: str = "") -> Iterator[None]:
    """Report a library `ValueError` raised inside as one line, naming flags instead of the
    library's parameter names (`names`); a non-finite result gets `non_finite` appended."""
    try:
        yield
    except ValueError as err:
        from ._validate import NonFiniteError

        extra = f"; {non_finite}" if non_finite and isinstance(err, NonFiniteError) else ""
        _fail(_rename(_first_line(err), names) + extra)
    except RuntimeError as err:
        if not _is_jax_runtime_error(err):
            raise
        _fail(_rename(_first_line(err), names) + (f"; {non_finite}" if non_finite else ""))


def _scale_hint(args: argparse.Namespace) -> str:
    drift = "" if getattr(args, "drift", None) is None else f" --drift {_text(args.drift)},"
    return (f"the paths' scale comes from --spot {_text(args.spot)}, --vol {_text(args.vol)},"
            f"{drift} --maturity {_text(args.maturity)} and --quantity {_text(args.quantity)}; "
            "lower them" + ("" if args.x64 else " or add --x64"))


# ---------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------


def _instrument(hj, args):
    with _flags_for(_OPTION):
        return _KINDS[args.option](hj, args)


def _world(hj, args):
    with _flags_for(_WORLD):
        return hj.BlackScholes(args.spot, args.vol, args.rate, args.div,
                               drift=getattr(args, "drift", None))


def _price(hj, args) -> dict[str, Any]:
    model, inst = _world(hj, args), _instrument(hj, args)
    with _flags_for({**_WORLD, **_OPTION}):
        return {"price": args.quantity * float(hj.price(model, inst))}


def _greeks(hj, args) -> dict[str, Any]:
    model, inst = _world(hj, args), _instrument(hj, args)
    with _flags_for({**_WORLD, **_OPTION}):
        g = hj.greeks(model, inst).as_dict()
    return {k: args.quantity * v for k, v in g.items()}


def _strategy(hj, args):
    with _flags_for(_STRATEGY):
        return {
            "none": lambda: hj.NoHedge(),
            "static": lambda: hj.StaticHedge(),
            "delta": lambda: hj.DeltaHedge(every=args.every),
            "band": lambda: hj.BandHedge(args.width),
            "ww": lambda: hj.WhalleyWilmott(args.risk_aversion),
        }[args.strategy]()


def _progress_wanted(args) -> bool:
    return not args.json and not args.no_progress and sys.stderr.isatty()


def _simulate(hj, model, book, strategy, costs, grid, args, hedge_model, progress: bool):
    """`hj.hedge(...)`; with `progress`, a run of many path-steps goes chunk by chunk
    (`hj.iter_hedge_chunks`, bit-identical) under a progress bar on stderr."""
    import jax
    import jax.numpy as jnp

    key = jax.random.key(args.seed)
    options = {"hedge_model": hedge_model, "unwind": args.unwind,
               "attribution": args.explain}
    if not progress or args.paths * args.steps < _PROGRESS_MIN_WORK:
        return hj.hedge(model, book, strategy, costs, grid, n_paths=args.paths, key=key,
                        **options)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    chunk = -(-args.paths // (_PROGRESS_CHUNKS * _LANES)) * _LANES
    parts = []
    columns = (TextColumn("hedge"), BarColumn(), MofNCompleteColumn(), TextColumn("paths"),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("hedge", total=args.paths)
        for part in hj.iter_hedge_chunks(model, book, strategy, costs, grid, args.paths, key,
                                         chunk_size=chunk, **options):
            parts.append(jax.block_until_ready(part))
            bar.advance(task, int(part.pnl.shape[0]))
    return jax.tree.map(lambda *xs: jnp.concatenate(xs) if jnp.ndim(xs[0]) else xs[0],
                        *parts)


def _summary(hj, result, alpha: float) -> tuple[dict[str, Any], dict[str, str]]:
    """`hj.summary`, with its warnings (an undefined statistic) as notes keyed by the
    statistic they concern."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _flags_for(_RUN):
            stats = hj.summary(result, alpha=alpha)
    notes = {}
    for w in caught:
        text = str(w.message)
        name = text.split()[0] if text.split() else ""
        notes[name if name in stats else f"warning {len(notes) + 1}"] = text
    return stats, notes


def _hedge(hj, args) -> tuple[dict[str, Any], dict[str, str]]:
    world = _world(hj, args)
    hedger = None
    if args.hedge_vol is not None:
        with _flags_for(_HEDGER):
            hedger = hj.BlackScholes(args.spot, args.hedge_vol, args.rate, args.div)
    with _flags_for(_COSTS):
        costs = hj.Proportional(args.cost) + hj.Fixed(args.fixed) + hj.Spread(args.spread)
    inst = _instrument(hj, args)
    with _flags_for(_OPTION):
        book = hj.Book([inst], quantities=[args.quantity])
        grid = hj.TimeGrid(args.maturity, args.steps)
    strategy = _strategy(hj, args)
    names = {**_WORLD, **_OPTION, **_COSTS, **_STRATEGY, **_RUN}
    if args.hedge_vol is not None:
        names["hedge_model"] = "--hedge-vol"
    with _flags_for(names, non_finite=_scale_hint(args)):
        result = _simulate(hj, world, book, strategy, costs, grid, args, hedger,
                           _progress_wanted(args))
    stats, notes = _summary(hj, result, args.alpha)
    if args.explain:    # the terms that are not 0 on every path
        for row in hj.explain_summary(result.attribution, result.pnl)[:-1]:
            if not row["zero"]:
                stats[f"explain_{row['term']}_mean"] = row["mean"]
                stats[f"explain_{row['term']}_std"] = row["std"]
    if args.plot:
        from ._plots import pnl_histogram

        try:
            pnl_histogram(result, args.plot, title=f"{args.strategy} hedge of {_book(args)}: "
                                                   f"{args.paths:,} paths x {args.steps:,} steps")
        except (OSError, ValueError) as err:
            _fail(f"--plot: {_os_message(err, Path(args.plot).parent)}")
    return stats, notes


def _fit_band(hj, args) -> dict[str, Any]:
    import jax
    import optax

    model, inst = _world(hj, args), _instrument(hj, args)
    with _flags_for({**_OPTION, "maturity": "--horizon" if args.horizon else "--maturity"}):
        book = hj.Book([inst], quantities=[args.quantity])
        grid = hj.TimeGrid(args.maturity if args.horizon is None else args.horizon,
                           args.steps)
    with _flags_for({"rate": "--cost"}):
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
    names = {**_WORLD, **_OPTION, "n_paths": "--paths", "steps": "--iters", "lam": "--lam"}
    with _flags_for(names, non_finite=_scale_hint(args)):
        fitted, history = hj.fit(initial[args.band](), objective, model, book, costs, grid,
                                 key=key, optimizer=optax.adam(args.lr), steps=args.iters,
                                 n_paths=args.paths,
                                 progress=_progress_wanted(args))
    eval_key = jax.random.fold_in(key, 2**31 - 1)  # paths the fit never saw
    with _flags_for({**names, "n_paths": "--eval-paths"}, non_finite=_scale_hint(args)):
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
    "price": "value ($)",
    "delta": "delta (shares)",
    "gamma": "gamma (shares per $1 of spot)",
    "vega": "vega ($ per 1.00 vol)",
    "theta": "theta ($ per year)",
    "rho": "rho ($ per 1.00 rate)",
    "vanna": "vanna (shares per 1.00 vol)",
    "volga": "volga ($ per 1.00 vol, squared)",
    "n_paths": "paths",
    "initial_price": "book value V0 ($)",
    "mean": "mean P&L ($)",
    "stderr": "std error of mean P&L ($)",
    "std": "std P&L ($)",
    "var": "VaR at {alpha} (loss, $)",
    "es": "expected shortfall at {alpha} (loss, $)",
    "mean_hedge_error": "mean hedge error before costs ($)",
    "std_hedge_error": "std hedge error ($)",
    "mean_cost": "mean cost ($)",
    "mean_trades": "mean trades per path",
    "unhedged_std": "std P&L unhedged ($)",
    "hedge_effectiveness": "hedge effectiveness (1 - var ratio)",
    "half_width_shares": "fitted half-width (shares)",
    "ww_scale": "fitted Whalley-Wilmott scale",
    "objective": "objective on fresh paths ($)",
    "objective_stderr": "std error of the objective ($)",
    "delta_hedge_objective": "objective, delta hedging every step ($)",
    "delta_hedge_objective_stderr": "std error of delta hedging's objective ($)",
    "first_objective": "training objective, first step ($)",
    "last_objective": "training objective, last step ($)",
}


def _book(args) -> str:
    return (f"{_text(args.quantity)} {args.option} K={_text(args.strike)}, "
            f"T={_text(args.maturity)}y")


def _title(args) -> str:
    """The table's title: the command and its inputs, as typed."""
    market = f"S={_text(args.spot)}, vol={_text(args.vol)}"
    if args.command == "fit-band":
        return (f"hedgejax fit-band: {args.band} band for {_book(args)}, {market}, cost "
                f"{_text(args.cost)}, lam {_text(args.lam)}, {args.steps:,} steps")
    if args.command != "hedge":
        return f"hedgejax {args.command}: {_book(args)}, {market}"
    return (f"hedgejax hedge: {args.strategy} hedge of {_book(args)}, {market}: "
            f"{args.paths:,} paths x {args.steps:,} steps, seed {args.seed}")


def _caption(args) -> str:
    """What the table's numbers are: units, what is held, the sign convention."""
    book = f"the book {_text(args.quantity)} x {args.option} (< 0 short)"
    rate = f"rate {_text(args.rate)}, dividend {_text(args.div)}"
    if args.command == "price":
        return f"Black-Scholes value of {book}; {rate}; $ is the currency of --spot"
    if args.command == "greeks":
        return (f"sensitivities of the value of {book} to each input, the others held fixed "
                f"({rate}); > 0: the value rises with the input")
    if args.command == "hedge":
        return (f"P&L at T of {book} and its hedge, in $ (time-T money): P&L > 0 is a gain; "
                f"VaR and ES are losses at confidence {_text(args.alpha)}, > 0 a loss; {rate}; "
                f"costs: --cost {_text(args.cost)}, --fixed {_text(args.fixed)}, --spread "
                f"{_text(args.spread)}")
    return (f"objective E(cost) + lam Var(hedge error) per path, in $ (lam in 1/$), lower is "
            f"better; "
            f"on {args.eval_paths:,} fresh paths; {rate}; {args.iters:,} steps of Adam")


def _rows(args, values: dict[str, Any]) -> list[tuple[str, str]]:
    from .experiments._framework import format_value

    alpha = _text(getattr(args, "alpha", ""))
    return [(_LABELS.get(k, _explain_label(k)).format(alpha=alpha), format_value(v))
            for k, v in values.items()]


def _explain_label(key: str) -> str:
    """'explain_gamma_mean' -> 'P&L explain: gamma, mean ($)'; other keys unchanged."""
    if not key.startswith("explain_"):
        return key
    term, stat = key[len("explain_"):].rsplit("_", 1)
    return f"P&L explain: {term}, {stat} ($)"


def _show(args, values: dict[str, Any], notes: dict[str, str]) -> None:
    """The results as a table (statistic, value) at the terminal's width; on a terminal too
    narrow for it, `label: value` lines (a number is never cut)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    rows = _rows(args, values)
    console = Console()
    needed = max(len(label) for label, _ in rows) + max(len(v) for _, v in rows) + 7
    if console.width < needed:
        print(_title(args))
        for label, value in rows:
            print(f"{label}: {value}")
        print(_caption(args))
        for note in notes.values():
            print(f"note: {note}")
        return
    table = Table()
    table.add_column("statistic", overflow="fold")
    table.add_column("value", justify="right", no_wrap=True, min_width=max(
        len(v) for _, v in rows))
    for label, value in rows:
        table.add_row(escape(label), value)
    console.print(escape(_title(args)))
    console.print(table)
    console.print(escape(_caption(args)))
    for note in notes.values():
        console.print(f"note: {escape(note)}")


def _json_number(value: Any, x64: bool) -> Any:
    """A float as JSON writes it: the shortest repr of its float32 value in float32 mode
    (7.965567, not 7.965567111968994), 0.0 for -0.0."""
    if not isinstance(value, float) or isinstance(value, bool) or not math.isfinite(value):
        return value
    if value == 0:
        return 0.0
    if not x64 and abs(value) <= _FLOAT_MAX[False]:
        import numpy as np

        value = float(str(np.float32(value)))
    return float(value)


def _strict_json(values: dict[str, Any], notes: dict[str, str],
                 x64: bool = True) -> dict[str, Any]:
    """`values` with every non-finite float as None, and a note saying why; floats in the
    working precision's shortest form."""
    clean = {}
    for k, v in values.items():
        if isinstance(v, float) and not math.isfinite(v):
            notes.setdefault(k, f"{k} is {v} (not a finite number)")
            v = None
        clean[k] = _json_number(v, x64)
    return clean


def _os_message(err: BaseException, folder: str | os.PathLike | None = None) -> str:
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        where = folder if folder is not None else Path(err.filename or ".").parent
        return f"no space left on the device holding {os.fspath(where) or '.'}"
    if isinstance(err, OSError) and err.filename is not None:
        return f"cannot write {err.filename}: {err.strerror or err}"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return _first_line(err)


def _bench_script() -> Path:
    return Path(__file__).resolve().parents[1] / "experiments" / "bench.py"


def _bench(args) -> int:
    """Run experiments/bench.py from a source checkout (the benchmarks are not installed)."""
    import subprocess

    script = _bench_script()
    if not script.is_file():
        _fail("hedgejax bench needs a source checkout (a clone of the hedgejax repository): "
              f"it runs experiments/bench.py, which this installation "
              f"({Path(__file__).resolve().parent}) does not have")
    cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
    if args.only:
        cmd += ["--only", args.only]
    return subprocess.run(cmd).returncode


def _experiments_module():
    """The experiments installed with the package (hedgejax/experiments/)."""
    from . import experiments
    from .experiments import _framework

    return experiments, _framework


def _default_toml(name: str) -> str:
    from importlib.resources import files

    return (files("hedgejax.experiments") / "configs" / f"{name}.toml").read_text("utf-8")


def _list_experiments(experiments, framework) -> None:
    listing = getattr(framework, "print_list_table", None)
    if listing is not None:
        listing()
        return
    from rich.console import Console
    from rich.table import Column, Table

    table = Table(Column("name", no_wrap=True), Column("question", overflow="fold"),
                  title="hedgejax experiments (hedgejax experiment NAME)")
    for name in experiments.NAMES:
        table.add_row(name, framework.load_module(name).QUESTION)
    Console().print(table)   # the terminal's width: the question column wraps


def _refuse_unused(args, when: str) -> None:
    """Refuse experiment flags that do nothing `when` (with list, with --show-config)."""
    for name, given in (("config", args.config is not None), ("paths", args.paths is not None),
                        ("seed", args.seed is not None), ("out", args.out is not None),
                        ("no_progress", args.no_progress)):
        if given:
            _fail(f"{_flag(name)} has no effect with {when}")


@contextlib.contextmanager
def _stdout() -> Iterator[None]:
    """Write to standard output: a failed write (a full disk, a closed terminal) is one line
    `hedgejax: error: ...`; a closed pipe (`| head`) goes up to main, which exits quietly."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as err:
        _silence_stdout()
        _fail(f"cannot write to standard output: {err.strerror or _first_line(err)}")


def _silence_stdout() -> None:
    """Point standard output at the null device, so that the flush at exit of what could not
    be written fails no second time."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass


def _experiment(args) -> int:
    experiments, framework = _experiments_module()
    if args.name == "list":
        if args.show_config:
            _fail("--show-config needs an experiment name, not 'list'")
        _refuse_unused(args, "list")
        with _stdout():
            _list_experiments(experiments, framework)
        return 0
    if args.name not in experiments.NAMES:
        _fail(f"unknown experiment '{args.name}' (choose from: {', '.join(experiments.NAMES)})")
    if args.show_config:
        _refuse_unused(args, "--show-config")
        with _stdout():
            sys.stdout.write(_default_toml(args.name))
        return 0
    if args.out is None:
        args.out = "runs"
    if not args.out.strip():
        _fail("--out must name a folder, got an empty name")
    _check_outputs(args)
    from ._io import missing_folders, remove_empty

    created = missing_folders(Path(args.out))
    ok = False
    try:
        framework.run_experiment(args.name, config=args.config, paths=args.paths,
                                 seed=args.seed, out=args.out, progress=not args.no_progress)
        ok = True
    except ValueError as err:  # ConfigError and UnicodeDecodeError included
        _fail(_first_line(err))
    except csv.Error as err:
        key = "config key 'prices_csv': " if args.name == "historical" else ""
        _fail(f"{key}cannot parse the CSV file: {_first_line(err)}")
    except OSError as err:
        _fail(f"--out {args.out}: {_os_message(err, args.out)}")
    except RuntimeError as err:
        if not _is_jax_runtime_error(err):
            raise
        _fail(_first_line(err))
    finally:
        if not ok:
            remove_empty(created)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on `argv` (default: sys.argv[1:]); returns the exit status.
    Bare `hedgejax` prints the help (its commands) and returns 0. Ctrl-C prints
    `hedgejax: interrupted` and returns 130 (128 + SIGINT, the shell's convention); a closed
    pipe on standard output (`hedgejax experiment list | head -1`) returns 1 quietly, as
    Python's documentation advises and rich's tables do."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("hedgejax: interrupted", file=sys.stderr)
        if argv is None:
            # the command line itself: leave at once, without the interpreter's shutdown,
            # during which a computation still running in XLA's threads can crash
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 1


def _main(argv: Sequence[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv:
        with _stdout():
            parser.print_help()
        return 0
    with _stdout():     # --help and --version print
        args = parser.parse_args(argv)
    _CONTEXT["typed"] = {_flag(k): v.text for k, v in vars(args).items()
                         if isinstance(v, Typed)}
    _CONTEXT["x64"] = bool(getattr(args, "x64", False))
    if args.command == "bench":
        return _bench(args)
    if args.command in _EXTENSION_MODULES:
        import importlib

        return importlib.import_module(_EXTENSION_MODULES[args.command]).run(args)
    _check_args(args)
    if args.command == "experiment":
        return _experiment(args)
    _check_outputs(args)
    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import hedgejax as hj

    if args.command in ("hedge", "fit-band"):
        _check_memory(args)
    notes: dict[str, str] = {}
    # the library's warnings (a horizon moved onto the grid, ...) become one-line notes
    # after the table or in the JSON, not Python's file-and-source-line format
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.command == "hedge":
            values, notes = _hedge(hj, args)
        else:
            values = {"price": _price, "greeks": _greeks, "fit-band": _fit_band}[
                args.command](hj, args)
    for w in caught:
        text = (str(w.message).splitlines() or [""])[0]
        if text and not issubclass(w.category, DeprecationWarning) \
                and text not in notes.values():
            notes[f"warning {len(notes) + 1}"] = text
    with _stdout():
        if args.json:
            values = _strict_json(values, notes, args.x64)
            notes = {k: v.replace("(reported as NaN)", "(null here)") for k, v in notes.items()}
            inputs = {k: _json_number(float(v), True) if isinstance(v, float) else v
                      for k, v in vars(args).items() if k != "command"}
            payload = {"command": args.command, "inputs": inputs, "results": values}
            if notes:
                payload["notes"] = notes
            print(json.dumps(payload, allow_nan=False))
        else:
            _show(args, values, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
