"""What every experiment shares: its TOML config, its run folder, its outputs and its table.

An experiment is a module with
    NAME = "market-maker"                 # the command-line name
    QUESTION = "What does ...?"           # one line: the question it answers
    BOUNDS = {"vol": Positive(), ...}     # allowed values of config keys (optional)
    def run(cfg: dict, ctx: Context) -> Outcome: ...
and a default config `configs/NAME.toml` beside this file (every key it reads, with its default;
`seed` and `paths` always among them). `run_experiment` merges a user's TOML over the
defaults (an unknown key, a value of the wrong type or out of its bounds is a `ConfigError`
naming the key), runs the experiment, and writes into `runs/NAME-<timestamp>/`:

    results.json   config, the key (seed), versions, device, timing, the table, all results
    summary.csv    the main table
    *.png          the figures
    report.md      the question, the table, what was measured, the figures, the command

The folder is assembled under a temporary name and renamed into place, so it appears whole
or not at all; every file in it is written atomically too.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import importlib
import io
import json
import math
import os
import platform
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A bad experiment configuration (the message names the key)."""


# ---------------------------------------------------------------------------------------
# Bounds of config values
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed numeric values: lo < x (or lo <= x when lo_closed), x < hi (hi_closed: <=)."""

    lo: float | None = None
    hi: float | None = None
    lo_closed: bool = True
    hi_closed: bool = True

    def check(self, key: str, value: float) -> None:
        bad = ((self.lo is not None and (value < self.lo or (value == self.lo
                                                              and not self.lo_closed)))
               or (self.hi is not None and (value > self.hi or (value == self.hi
                                                                 and not self.hi_closed))))
        if bad:
            raise ConfigError(f"config key '{key}' must be {self.describe()}, got {value!r}")

    def describe(self) -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{'>=' if self.lo_closed else '>'} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"{'<=' if self.hi_closed else '<'} {self.hi:g}")
        return " and ".join(parts) or "finite"


def Positive() -> Range:  # noqa: N802 - reads like a type in BOUNDS tables
    return Range(lo=0.0, lo_closed=False)


def NonNegative() -> Range:  # noqa: N802
    return Range(lo=0.0)


def AtLeast(lo: float) -> Range:  # noqa: N802
    return Range(lo=lo)


def Between(lo: float, hi: float, closed: bool = False) -> Range:  # noqa: N802
    return Range(lo=lo, hi=hi, lo_closed=closed, hi_closed=closed)


COMMON_BOUNDS = {"seed": Range(lo=0, hi=2**32 - 1), "paths": AtLeast(1)}


# ---------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------


def default_config(name: str) -> dict[str, Any]:
    path = CONFIG_DIR / f"{name}.toml"
    with open(path, "rb") as f:
        return tomllib.load(f)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list"}.get(type(value), type(value).__name__)


def _coerce(key: str, default: Any, value: Any) -> Any:
    """`value` converted to the type of `default`, or a ConfigError naming `key`."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be a boolean, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"config key '{key}' must be finite, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list) or not value:
            raise ConfigError(f"config key '{key}' must be a non-empty list, got {value!r}")
        if default:
            return [_coerce(f"{key}[{i}]", default[0], v) for i, v in enumerate(value)]
        return value
    raise ConfigError(f"config key '{key}' has an unsupported type")  # pragma: no cover


def load_config(name: str, path: str | os.PathLike | None = None,
                overrides: dict[str, Any] | None = None,
                bounds: dict[str, Range] | None = None) -> dict[str, Any]:
    """The defaults of experiment `name`, then the keys of the TOML file `path`, then
    `overrides`; every value type-checked against its default and checked against `bounds`."""
    cfg = default_config(name)
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        try:
            with open(path, "rb") as f:
                layers.append((os.fspath(path), tomllib.load(f)))
        except OSError as err:
            raise ConfigError(f"cannot read config {os.fspath(path)}: "
                              f"{err.strerror or err}") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config {os.fspath(path)} is not valid TOML: {err}") from None
    if overrides:
        layers.append(("overrides", overrides))
    for source, layer in layers:
        for key, value in layer.items():
            if key not in cfg:
                raise ConfigError(f"unknown config key '{key}' in {source} for experiment "
                                  f"{name} (allowed: {', '.join(sorted(cfg))})")
            cfg[key] = _coerce(key, cfg[key], value)
    all_bounds = {**COMMON_BOUNDS, **(bounds or {})}
    for key, value in cfg.items():
        rule = all_bounds.get(key)
        if rule is None:
            continue
        for v in value if isinstance(value, list) else [value]:
            rule.check(key, v)
    return cfg


# ---------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """What an experiment returns.

    Attributes:
        table: the main table, one dict per row (same keys in every row): printed, written
            to summary.csv and put in report.md.
        findings: short sentences stating what was measured (report.md's bullet list);
            numbers in them come from this run.
        results: anything else worth keeping (JSON-serialisable): curves, per-strategy
            statistics, reference values.
        figures: file stem -> matplotlib Figure, written as STEM.png.
        title: the table's title (defaults to the question).
        display: the columns printed on the terminal (default: all; the files keep all).
        caption: one or two sentences under the table: what is held (the book, its size),
            the currency unit and the sign convention (e.g. "P&L > 0 is a gain; VaR and ES
            are positive losses at 99%").
        headers: table key -> the header a person reads, with its unit ("P&L std ($)").
            Keys not given fall back to `_common.STATS_HEADERS`, then to the key itself.
            summary.csv and results.json keep the keys.
    """

    table: list[dict[str, Any]]
    findings: list[str] = dataclasses.field(default_factory=list)
    results: dict[str, Any] = dataclasses.field(default_factory=dict)
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    title: str | None = None
    display: list[str] | None = None
    caption: str = ""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Context:
    """What an experiment gets besides its config: its name, a key and a progress bar."""

    name: str
    seed: int
    progress: bool = True

    @property
    def key(self):
        import jax

        return jax.random.key(self.seed)

    def track(self, items: Iterable[Any], description: str,
              total: int | None = None) -> Iterator[Any]:
        """Iterate over `items` with a progress bar (when enabled and on a terminal)."""
        if not self.progress:
            yield from items
            return
        from rich.progress import track

        yield from track(items, description=description, total=total, transient=True)


def module_name(name: str) -> str:
    return "hedgejax.experiments." + name.replace("-", "_")


def load_module(name: str):
    from . import NAMES

    if name not in NAMES:
        raise ConfigError(f"unknown experiment '{name}' (choose from: {', '.join(NAMES)})")
    return importlib.import_module(module_name(name))


def _versions() -> dict[str, str]:
    import equinox
    import jax
    import jaxlib
    import numpy
    import optax

    import hedgejax

    return {"hedgejax": hedgejax.__version__, "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "numpy": numpy.__version__,
            "equinox": equinox.__version__, "optax": optax.__version__,
            "python": platform.python_version()}


def _device() -> dict[str, Any]:
    import jax

    devices = jax.devices()
    return {"backend": jax.default_backend(), "kind": devices[0].device_kind,
            "count": len(devices), "machine": f"{platform.platform()}, "
            f"{platform.processor() or 'cpu'}, {os.cpu_count()} CPUs"}


def _check_finite(where: str, value: Any) -> None:
    """NaN or inf anywhere in the results is an error, never a silent entry."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"experiment produced a non-finite value in {where}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(f"{where}.{k}", v)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(f"{where}[{i}]", v)


def _plain(value: Any) -> Any:
    """numpy/jax scalars and arrays as Python floats, ints and lists (for JSON and CSV)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _plain(value.tolist())
    return value


def _csv(table: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if table:
        writer = csv.DictWriter(buf, fieldnames=list(table[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    return buf.getvalue()


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def _markdown_table(table: list[dict[str, Any]]) -> str:
    if not table:
        return "(no rows)\n"
    cols = list(table[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in cols) + " |" for row in table]
    return "\n".join(lines) + "\n"


def _report(module, cfg, meta, outcome: Outcome, figures: Sequence[str]) -> str:
    lines = [f"# {module.NAME}", "", f"**Question.** {module.QUESTION}", "",
             f"Command: `{meta['command']}`  ", f"Run {meta['date']} on "
             f"{meta['device']['kind']} ({meta['device']['backend']}), "
             f"{meta['elapsed_s']:.1f} s; key `jax.random.key({meta['seed']})`; "
             f"hedgejax {meta['versions']['hedgejax']}, jax {meta['versions']['jax']}.", "",
             f"## {outcome.title or 'Results'}", "", _markdown_table(outcome.table)]
    if outcome.findings:
        lines += ["## What was measured", ""] + [f"- {f}" for f in outcome.findings] + [""]
    if figures:
        lines += ["## Figures", ""] + [f"![{stem}]({stem}.png)" for stem in figures] + [""]
    lines += ["## Config", "", "```toml"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in cfg.items()] + ["```", ""]
    return "\n".join(lines)


def _print_table(title: str, table: list[dict[str, Any]], folder: Path,
                 display: list[str] | None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    cols = display or (list(table[0]) if table else [])
    t = Table(title=escape(title))
    for col in cols:
        t.add_column(escape(col),
                     justify="left" if isinstance(table[0][col], str) else "right")
    for row in table:
        t.add_row(*(escape(_fmt(row[c])) for c in cols))
    console = Console(width=max(100, Console().width))
    console.print(t)
    console.print(f"wrote {folder}")


def _command(name: str, config: str | os.PathLike | None, paths: int | None,
             seed: int | None) -> str:
    parts = ["hedgejax", "experiment", name]
    if config is not None:
        parts += ["--config", os.fspath(config)]
    if paths is not None:
        parts += ["--paths", str(paths)]
    if seed is not None:
        parts += ["--seed", str(seed)]
    return " ".join(parts)


def run_experiment(name: str, *, config: str | os.PathLike | None = None,
                   paths: int | None = None, seed: int | None = None,
                   out: str | os.PathLike = "runs", overrides: dict[str, Any] | None = None,
                   progress: bool = True, show: bool = True) -> Path:
    """Run experiment `name` and write its run folder under `out`; returns the folder."""
    module = load_module(name)
    extra = dict(overrides or {})
    if paths is not None:
        extra["paths"] = paths
    if seed is not None:
        extra["seed"] = seed
    cfg = load_config(name, config, extra, getattr(module, "BOUNDS", None))

    import matplotlib

    matplotlib.use("Agg")
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    outcome = module.run(dict(cfg), Context(name=name, seed=cfg["seed"], progress=progress))
    elapsed = time.perf_counter() - t0
    table = _plain(outcome.table)
    results = _plain(outcome.results)
    _check_finite("table", table)
    _check_finite("results", results)
    meta = {"date": started.isoformat(timespec="seconds"), "elapsed_s": round(elapsed, 3),
            "seed": cfg["seed"], "key": f"jax.random.key({cfg['seed']})",
            "command": _command(name, config, paths, seed), "argv": sys.argv,
            "versions": _versions(), "device": _device()}
    payload = {"experiment": name, "question": module.QUESTION, "config": cfg,
               "metadata": meta, "table": table, "findings": outcome.findings,
               "results": results}

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    final = out / f"{name}-{stamp}"
    n = 1
    while final.exists():
        final = out / f"{name}-{stamp}-{n}"
        n += 1
    from hedgejax._io import atomic_write, atomic_write_text, normal_mode

    tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".{name}-", suffix=".tmp"))
    normal_mode(tmp, directory=True)
    try:

        atomic_write_text(tmp / "results.json",
                          json.dumps(payload, indent=2, allow_nan=False) + "\n")
        atomic_write_text(tmp / "summary.csv", _csv(table))
        import matplotlib.pyplot as plt

        for stem, fig in outcome.figures.items():
            atomic_write(tmp / f"{stem}.png",
                         lambda p, fig=fig: fig.savefig(p, format="png", dpi=110))
            plt.close(fig)
        atomic_write_text(tmp / "report.md",
                          _report(module, cfg, meta, outcome, list(outcome.figures)))
        os.rename(tmp, final)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if show:
        _print_table(outcome.title or module.QUESTION, table, final, outcome.display)
    return final
