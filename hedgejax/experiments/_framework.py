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

    results.json   config, the key (seed), versions, device, timing, the table (with its
                   title, caption, headers and terminal columns), all results
    summary.csv    the main table
    *.png          the figures
    report.md      the question, the table, what was measured, the figures, the command

The folder is assembled under a temporary name (`.NAME-XXXXXXXX.tmp`, locked while it is
written) and renamed into place, so it appears whole or not at all; every file in it is
written atomically too, and folders and files get the permissions of the umask. A run killed
while writing leaves its temporary folder behind; the next run into the same folder removes
it (`clean_stale_temporaries`: unlocked, and older than both that run's start and a minute).

The terminal table fits the terminal's real width (`print_table`: headers and labels wrap
between words, before a short "($ loss)" unit and never inside it, a number stays with its
name, numbers never wrap; too narrow, one block per row, the last resort). An experiment
lists in `Outcome.display` the essential columns, so that its table sits side by side at 80
columns (the files keep all). Numbers have 4 significant digits and thousands separators
there, and every digit results.json keeps in report.md (`format_full`). Progress bars go to
stderr, and only when it is a terminal: stdout carries the table and nothing else.
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
import stat
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
        def num(x: float) -> str:
            return f"{int(x):,}" if float(x).is_integer() and abs(x) >= 1e4 else f"{x:g}"

        parts = []
        if self.lo is not None:
            parts.append(f"{'>=' if self.lo_closed else '>'} {num(self.lo)}")
        if self.hi is not None:
            parts.append(f"{'<=' if self.hi_closed else '<'} {num(self.hi)}")
        return " and ".join(parts) or "finite"


def Positive() -> Range:  # noqa: N802 - reads like a type in BOUNDS tables
    return Range(lo=0.0, lo_closed=False)


def NonNegative() -> Range:  # noqa: N802
    return Range(lo=0.0)


def AtLeast(lo: float) -> Range:  # noqa: N802
    return Range(lo=lo)


def Between(lo: float, hi: float, closed: bool = False) -> Range:  # noqa: N802
    return Range(lo=lo, hi=hi, lo_closed=closed, hi_closed=closed)


# paths: a P&L sample needs 2 outcomes for its statistics (risk.summary); below 2**32 path
# indices (the random streams). An experiment raises the lower bound in its BOUNDS.
COMMON_BOUNDS = {"seed": Range(lo=0, hi=2**32 - 1), "paths": Range(lo=2, hi=2**32 - 1)}


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


MAX_CONFIG_BYTES = 2**20     # a config is a few hundred bytes; refuse anything over 1 MiB


def check_regular_file(path: str | os.PathLike, what: str) -> os.stat_result:
    """The `os.stat` of `path`, or a ConfigError naming `what` and the file when it is
    missing, unreadable or not a regular file (a FIFO would block the read forever, a
    device such as /dev/zero never ends)."""
    try:
        info = os.stat(path)
    except OSError as err:
        raise ConfigError(f"cannot read {what} {os.fspath(path)}: "
                          f"{err.strerror or err}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{what} {os.fspath(path)} is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} {os.fspath(path)} is not a regular file (a pipe, socket "
                          f"or device); give the path of a file")
    return info


def read_small_text(path: str | os.PathLike, what: str,
                    limit: int = MAX_CONFIG_BYTES) -> str:
    """The UTF-8 text of the regular file `path` of at most `limit` bytes, or a
    ConfigError naming `what`, the file and, for bad UTF-8, the line."""
    info = check_regular_file(path, what)
    if info.st_size > limit:
        raise ConfigError(f"{what} {os.fspath(path)} is {info.st_size:,} bytes, more than "
                          f"the {limit:,} a {what} may have")
    try:
        # O_NONBLOCK: should the path have become a FIFO since the check, open never blocks
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(f"{what} {os.fspath(path)} is not a regular file")
            data = f.read(limit + 1)
    except OSError as err:
        raise ConfigError(f"cannot read {what} {os.fspath(path)}: "
                          f"{err.strerror or err}") from None
    if len(data) > limit:
        raise ConfigError(f"{what} {os.fspath(path)} is more than {limit:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigError(f"{what} {os.fspath(path)}, line {line}: not UTF-8 text (byte "
                          f"0x{data[err.start]:02x}); save the file as UTF-8") from None


def check_paths_fit_memory(n_paths: int) -> None:
    """A ConfigError naming the key 'paths' (--paths) when the per-path results of one hedge
    of `n_paths` paths cannot fit in the device's memory (the estimate `hedge()` makes: 7
    numbers a path, twice over while chunks are joined), before anything is computed."""
    import jax.numpy as jnp

    from hedgejax._validate import check_memory, float_dtype

    itemsize = jnp.dtype(float_dtype()).itemsize
    try:
        check_memory(2 * 7 * itemsize * -(-n_paths // 64) * 64,
                     f"config key 'paths' (--paths) = {n_paths:,} (the per-path results)",
                     "lower paths")
    except ValueError as err:
        raise ConfigError(str(err)) from None


def load_config(name: str, path: str | os.PathLike | None = None,
                overrides: dict[str, Any] | None = None,
                bounds: dict[str, Range] | None = None) -> dict[str, Any]:
    """The defaults of experiment `name`, then the keys of the TOML file `path`, then
    `overrides`; every value type-checked against its default and checked against `bounds`."""
    cfg = default_config(name)
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None and not os.fspath(path).strip():
        raise ConfigError("config file name is empty (--config needs a TOML file)")
    if path is not None:
        text = read_small_text(path, "config")
        try:
            layers.append((os.fspath(path), tomllib.loads(text)))
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
            try:
                rule.check(key, v)
            except ConfigError as err:
                if key in (overrides or {}) and key in ("paths", "seed"):
                    # given on the command line: name the flag too
                    raise ConfigError(str(err).replace(f"config key '{key}'",
                                                       f"config key '{key}' (--{key})", 1)
                                      ) from None
                raise
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
        """Iterate over `items` with a progress bar on stderr, only when enabled and stderr
        is a terminal (nothing is written to stdout: the table is the only output there)."""
        if not (self.progress and sys.stderr.isatty()):
            yield from items
            return
        from rich.console import Console
        from rich.progress import track

        yield from track(items, description=description, total=total, transient=True,
                         console=Console(stderr=True))


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


def _float32_mode() -> bool:
    import jax

    return not jax.config.jax_enable_x64


def _short(x: float, float32: bool) -> float:
    """`x` written with the fewest digits that read back as the same value in the working
    precision. In float32 mode every number an experiment reports comes from float32
    arithmetic (a float64 difference of two float32 results included), so a float is
    written as the shortest repr of its nearest float32: 100.00000762939453 -> 100.00001,
    884.3589999999999 -> 884.359, 0.1 -> 0.1. Under jax_enable_x64, unchanged."""
    import numpy as np

    if float32 and math.isfinite(x) and abs(x) <= float(np.finfo(np.float32).max):
        return float(str(np.float32(x)))
    return x


def _plain(value: Any, float32: bool | None = None) -> Any:
    """numpy/jax scalars and arrays as Python floats, ints and lists (for JSON and CSV),
    floats shortened to the digits the working precision holds (`_short`; numpy/jax float32
    values always, Python floats when jax_enable_x64 is off)."""
    import numpy as np

    if float32 is None:
        float32 = _float32_mode()
    if isinstance(value, dict):
        return {str(k): _plain(v, float32) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, float32) for v in value]
    if isinstance(value, float):
        return _short(value, float32)
    if hasattr(value, "dtype") and hasattr(value, "tolist") and not isinstance(value,
                                                                             (str, bytes)):
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and arr.dtype.itemsize < 8:
            # float32 (or narrower) values: their own shortest repr, whatever the mode
            short = np.array([float(str(x)) for x in arr.ravel()], dtype=np.float64)
            return _plain(short.reshape(arr.shape).tolist(), False)
        return _plain(arr.tolist(), float32)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _plain(value.tolist(), float32)
    return value


def _csv(table: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if table:
        writer = csv.DictWriter(buf, fieldnames=list(table[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------
# Numbers and headers as a person reads them
# ---------------------------------------------------------------------------------------

SIGNIFICANT = 4     # significant digits of a float in a printed table
NO_VALUE = "—"      # a cell with no value (None): "does not apply", never 0


def format_value(value: Any, none: str = NO_VALUE) -> str:
    """A table cell for the terminal: floats to 4 significant digits with thousands
    separators (never fewer digits than the integer part has: 35,199 not 3.52e+04 or 35,200),
    scientific notation only below 1e-4 or from 1e15 on; integers in full with separators;
    None as `none`."""
    if value is None:
        return none
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        if abs(value) < 1e-4 or abs(value) >= 1e15:
            return f"{value:.{SIGNIFICANT - 1}e}"
        rounded = float(f"{value:.{SIGNIFICANT}g}")       # 999.97 -> 1000: one digit more
        decimals = max(0, SIGNIFICANT - 1 - math.floor(math.log10(abs(rounded))))
        text = f"{value:,.{decimals}f}"
        return text.lstrip("-") if float(text.replace(",", "")) == 0 else text
    return str(value)


def format_full(value: Any, none: str = NO_VALUE) -> str:
    """A table cell for report.md: every digit results.json keeps (the shortest repr in the
    working precision), with thousands separators in the integer part."""
    if isinstance(value, float) and math.isfinite(value) and "e" not in repr(value):
        whole, _, frac = repr(value).partition(".")
        sign = "-" if whole.startswith("-") else ""
        whole = f"{int(whole.lstrip('-')):,}"
        return f"{sign}{whole}.{frac}" if frac and frac != "0" else f"{sign}{whole}"
    return format_value(value, none)


def column_headers(keys: Iterable[str], headers: dict[str, str] | None = None) -> list[str]:
    """The header a person reads for each table key: `headers` (the experiment's), then
    `_common.STATS_HEADERS`, then the key itself."""
    from ._common import STATS_HEADERS

    headers = headers or {}
    return [headers.get(k) or STATS_HEADERS.get(k) or k for k in keys]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_table(table: list[dict[str, Any]], headers: dict[str, str] | None = None) -> str:
    if not table:
        return "(no rows)\n"
    cols = list(table[0])
    human = column_headers(cols, headers)
    align = ["---" if isinstance(table[0][c], str) else "---:" for c in cols]
    lines = ["| " + " | ".join(_md_cell(h) for h in human) + " |",
             "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_md_cell(format_full(row[c])) for c in cols) + " |"
              for row in table]
    return "\n".join(lines) + "\n"


def _report(module, cfg, meta, outcome: Outcome, figures: Sequence[str],
            table: list[dict[str, Any]] | None = None) -> str:
    lines = [f"# {module.NAME}", "", f"**Question.** {module.QUESTION}", "",
             f"Command: `{meta['command']}`  ", f"Run {meta['date']} on "
             f"{meta['device']['kind']} ({meta['device']['backend']}), "
             f"{meta['elapsed_s']:.1f} s; key `jax.random.key({meta['seed']})`; "
             f"hedgejax {meta['versions']['hedgejax']}, jax {meta['versions']['jax']}.", "",
             f"## {outcome.title or 'Results'}", ""]
    if outcome.caption:
        lines += [outcome.caption, ""]
    lines += [_markdown_table(outcome.table if table is None else table, outcome.headers)]
    if outcome.findings:
        lines += ["## What was measured", ""] + [f"- {f}" for f in outcome.findings] + [""]
    if figures:
        lines += ["## Figures", ""] + [f"![{stem}]({stem}.png)" for stem in figures] + [""]
    lines += ["## Config", "", "```toml"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in cfg.items()] + ["```", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The terminal table: fits the terminal, never cuts a number
# ---------------------------------------------------------------------------------------

_GAP = 2    # columns between two table columns (box.SIMPLE_HEAVY, no edges, collapsed padding)


UNIT_MAX = 10   # a parenthesised group this short ("($ loss)", "($ at t0)") never breaks


def _words(text: str) -> list[str]:
    """The pieces `text` wraps between: its words, except that a short parenthesised group
    ("($ loss)", at most UNIT_MAX characters) is one piece, so a line breaks before its "("
    and never inside it, and a number stays with the word before it ("width 0.0275")."""
    from rich.cells import cell_len

    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i].startswith("(") and ")" not in words[i]:
            end = next((k for k in range(i + 1, len(words)) if ")" in words[k]), None)
            if end is not None and cell_len(" ".join(words[i:end + 1])) <= UNIT_MAX:
                out.append(" ".join(words[i:end + 1]))
                i = end + 1
                continue
        if out and words[i][:1].isdigit() and out[-1][-1:].isalnum():
            out[-1] += " " + words[i]    # "width 0.0275", "gamma 2": a number keeps its name
        else:
            out.append(words[i])
        i += 1
    return out or [""]


def _wrap(text: str, width: int) -> list[str]:
    """`text` wrapped between the pieces of `_words` into lines of at most `width` cells (a
    piece longer than `width` gets a line of its own)."""
    from rich.cells import cell_len

    lines: list[str] = []
    for word in _words(text):
        if lines and cell_len(lines[-1]) + 1 + cell_len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def _lines(text: str, width: int) -> int:
    """How many lines `text` takes wrapped at `width` (`_wrap`)."""
    return len(_wrap(text, width))


def _column_widths(headers: list[str], cells: list[list[str]], numeric: list[bool],
                   width: int) -> list[int] | None:
    """Column widths that fit `width`: numbers never wrap (a numeric column is as wide as its
    widest cell), headers and labels wrap between words (a column is at least as wide as its
    longest word). Of the layouts that fit, the one with the fewest lines (header lines plus
    row lines), then the narrowest. None when even the narrowest layout does not fit."""
    from rich.cells import cell_len

    room = width - _GAP * (len(headers) - 1)
    lo, hi = [], []
    for j, head in enumerate(headers):
        col = [row[j] for row in cells]
        fixed = max((cell_len(c) for c in col), default=0) if numeric[j] else 0
        wrapped = [head] + ([] if numeric[j] else col)
        lo.append(max([fixed, 1] + [cell_len(w) for t in wrapped for w in _words(t)]))
        hi.append(max([lo[-1]] + [cell_len(t) for t in wrapped]))
    if sum(lo) > room:
        return None
    best: tuple[int, int, list[int]] | None = None
    max_head = max(_lines(h, w) for h, w in zip(headers, lo, strict=True))
    max_cell = max([1] + [_lines(row[j], lo[j]) for row in cells for j in range(len(headers))
                          if not numeric[j]])
    for head_lines in range(1, max_head + 1):
        for cell_lines in range(1, max_cell + 1):
            widths = []
            for j, head in enumerate(headers):
                w = lo[j]
                while w < hi[j] and (_lines(head, w) > head_lines or (
                        not numeric[j] and any(_lines(row[j], w) > cell_lines
                                               for row in cells))):
                    w += 1
                widths.append(w)
            if sum(widths) > room:
                continue
            height = (max(_lines(h, w) for h, w in zip(headers, widths, strict=True))
                      + sum(max([1] + [_lines(row[j], widths[j]) for j in range(len(row))
                                       if not numeric[j]]) for row in cells))
            if best is None or (height, sum(widths)) < best[:2]:
                best = (height, sum(widths), widths)
    return best[2] if best else lo


def _console(console=None):
    from rich.console import Console

    return console if console is not None else Console()


def _none_mark(console) -> str:
    return NO_VALUE if (console.encoding or "").lower().startswith("utf") else "-"


def print_table(title: str, table: list[dict[str, Any]], *, headers: dict[str, str] | None = None,
                caption: str = "", display: list[str] | None = None, console=None) -> None:
    """Print `table` to the terminal at its real width: human headers (wrapped between words
    when narrow), numbers in full at 4 significant digits, the caption underneath. When the
    columns cannot fit side by side, one block per row ("header  value") instead."""
    from rich import box
    from rich.table import Column, Table
    from rich.text import Text

    console = _console(console)
    cols = display or (list(table[0]) if table else [])
    human = column_headers(cols, headers)
    none = _none_mark(console)
    cells = [[format_value(row[c], none) for c in cols] for row in table]
    numeric = [any(isinstance(row[c], (int, float)) and not isinstance(row[c], bool)
                   for row in table) for c in cols]
    console.print(Text(title, style="bold"))
    widths = _column_widths(human, cells, numeric, console.width) if cols else []
    if widths is not None:
        # fixed widths, each at least its widest number: a number is never wrapped or cut
        # headers and labels wrapped here (`_wrap`: never inside a short "(...)" unit)
        t = Table(*(Column(Text("\n".join(_wrap(h, w))), width=w,
                           justify="right" if num else "left", overflow="fold")
                    for h, w, num in zip(human, widths, numeric, strict=True)),
                  box=box.SIMPLE_HEAVY, show_edge=False, pad_edge=False, padding=(0, 1),
                  collapse_padding=True)
        for row in cells:
            t.add_row(*(Text(c if num else "\n".join(_wrap(c, w)))
                        for c, w, num in zip(row, widths, numeric, strict=True)))
        console.print(t)
    else:
        # one block per row: the row's label (first column), then "header  value" lines
        from rich.padding import Padding

        grid = Table.grid(Column(overflow="fold"), Column(justify="right", no_wrap=True),
                          padding=(0, 0, 0, 2))
        for i, row in enumerate(cells):
            if i:
                grid.add_row("", "")
            grid.add_row(Text(f"{human[0]}: {row[0]}", style="bold"), "")
            for h, c in zip(human[1:], row[1:], strict=True):
                grid.add_row(Padding(Text(h), (0, 0, 0, 2)), Text(c))
        console.print(grid)
    if caption:
        console.print(Text(caption, style="dim"))


def print_list_table(console=None) -> None:
    """`hedgejax experiment list`: every experiment's name and question, at the terminal's
    real width (the question wraps; the name never does)."""
    from rich import box
    from rich.table import Column, Table
    from rich.text import Text

    from . import NAMES

    console = _console(console)
    name_width = max(len(n) for n in NAMES)
    t = Table(Column("name", no_wrap=True, min_width=name_width),
              Column("question", overflow="fold"), box=box.SIMPLE_HEAVY, show_edge=False,
              pad_edge=False, padding=(0, 1))
    for name in NAMES:
        t.add_row(Text(name, style="bold"), Text(load_module(name).QUESTION))
    console.print(Text("hedgejax experiments (run one: hedgejax experiment NAME)",
                       style="bold"))
    console.print(t)


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


# ---------------------------------------------------------------------------------------
# Temporary run folders left by a killed run
# ---------------------------------------------------------------------------------------

STALE_MIN_AGE_S = 60.0   # a temporary folder younger than this is never touched


def _lock_folder(folder: Path) -> int | None:
    """Hold an exclusive lock on `folder` while the run writes into it (released by the
    kernel when the process ends, SIGKILL included); the descriptor, or None where locks are
    not available."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _in_use(folder: Path) -> bool:
    """Whether a live run holds `folder`'s lock (True too when that cannot be told)."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)    # closing releases the probe's lock
    return False


def clean_stale_temporaries(out: str | os.PathLike, before: float | None = None) -> list[Path]:
    """Remove the temporary run folders (`.NAME-*.tmp`, NAME an experiment) that a run killed
    while writing (SIGKILL, power loss) left in `out`. A folder is stale when all of these
    hold: it is a real folder (not a link); it was last modified before `before` (the run
    start; default now) and at least STALE_MIN_AGE_S seconds ago; and no process holds its
    lock (a run locks its folder from creation until the rename, and the kernel drops the
    lock when that process dies). Where file locks are unavailable nothing is removed.
    Returns the folders removed."""
    import shutil

    from . import NAMES

    out = Path(out)
    now = time.time()
    before = now if before is None else before
    removed = []
    try:
        entries = list(out.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.endswith(".tmp")
                and any(entry.name.startswith(f".{n}-") for n in NAMES)):
            continue
        try:
            info = entry.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode):
            continue
        if info.st_mtime >= before or info.st_mtime > now - STALE_MIN_AGE_S:
            continue
        if _in_use(entry):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append(entry)
    return removed


def _changed_keys(name: str, cfg: dict[str, Any]) -> str:
    """The config keys whose values differ from the experiment's defaults, as `key = value`
    (what a user changed, so what most likely made a run fail)."""
    defaults = default_config(name)
    changed = [f"{k} = {v!r}" for k, v in cfg.items()
               if k not in ("seed", "paths") and defaults.get(k) != v]
    if not changed:
        return "the config is the default one"
    more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
    return "config keys changed from the defaults: " + ", ".join(changed[:6]) + more


def _run_module(module, name: str, cfg: dict[str, Any], progress: bool, show: bool) -> Outcome:
    """`module.run`, with the library's errors and warnings said in a user's terms.

    The library names its own parameters (`n_steps`, `maturity`, the hedge's gains); an
    experiment computes them from config keys. A `ValueError` or arithmetic error from the
    run is raised again as a `ConfigError` with the keys the user changed from the defaults
    (the likely cause), on one line. Warnings are held during the run and, if it succeeds,
    shown once each as `note: ...` lines on stderr (when `show`) instead of Python's
    file-and-source-line format.
    """
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcome = module.run(dict(cfg), Context(name=name, seed=cfg["seed"],
                                                    progress=progress))
        except ConfigError:
            raise
        except (ValueError, ArithmeticError) as err:
            first = (str(err).splitlines() or [type(err).__name__])[0]
            raise ConfigError(f"experiment {name} failed: {first} ({_changed_keys(name, cfg)})"
                              ) from None
    notes = list(dict.fromkeys(str(w.message).splitlines()[0] for w in caught
                               if not issubclass(w.category, DeprecationWarning)))
    for note in notes:
        if show:
            print(f"note: {note}", file=sys.stderr)
    return outcome


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
    check_paths_fit_memory(cfg["paths"])

    import matplotlib

    matplotlib.use("Agg")
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    outcome = _run_module(module, name, cfg, progress, show)
    elapsed = time.perf_counter() - t0
    table = _plain(outcome.table)
    results = _plain(outcome.results)
    _check_finite("table", table)
    _check_finite("results", results)
    meta = {"date": started.isoformat(timespec="seconds"), "elapsed_s": round(elapsed, 3),
            "seed": cfg["seed"], "key": f"jax.random.key({cfg['seed']})",
            "command": _command(name, config, paths, seed), "argv": sys.argv,
            "versions": _versions(), "device": _device()}
    cols = list(table[0]) if table else []
    payload = {"experiment": name, "question": module.QUESTION, "config": cfg,
               "metadata": meta, "table": table, "findings": outcome.findings,
               "results": results,
               # how the table reads: its title, caption, human headers, terminal columns
               "title": outcome.title or module.QUESTION, "caption": outcome.caption,
               "headers": dict(zip(cols, column_headers(cols, outcome.headers), strict=True)),
               "display": outcome.display or cols}

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    final = out / f"{name}-{stamp}"
    n = 1
    while final.exists():
        final = out / f"{name}-{stamp}-{n}"
        n += 1
    from hedgejax._io import atomic_write, atomic_write_text, normal_mode

    clean_stale_temporaries(out, before=started.timestamp())
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".{name}-", suffix=".tmp"))
    lock = _lock_folder(tmp)
    normal_mode(tmp, directory=True)
    try:
        atomic_write_text(tmp / "results.json",
                          json.dumps(payload, indent=2, allow_nan=False) + "\n")
        atomic_write_text(tmp / "summary.csv", _csv(table))
        import matplotlib.pyplot as plt

        from ._common import finish_figure

        for stem, fig in outcome.figures.items():
            finish_figure(fig)
            atomic_write(tmp / f"{stem}.png",
                         lambda p, fig=fig: fig.savefig(p, format="png", dpi=110))
            plt.close(fig)
        atomic_write_text(tmp / "report.md",
                          _report(module, cfg, meta, outcome, list(outcome.figures), table))
        os.rename(tmp, final)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            os.close(lock)
    if show:
        console = _console()
        print_table(outcome.title or module.QUESTION, table, headers=outcome.headers,
                    caption=outcome.caption, display=outcome.display, console=console)
        console.print(f"wrote {final}", soft_wrap=True)
    return final
