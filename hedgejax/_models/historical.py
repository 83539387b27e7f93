"""Worlds made of data: hedging along recorded price series, or along block-bootstrap resamples
of their log-returns, and a strict CSV loader for such series.

The time grid's `dt` is the user's statement of the data's frequency: one grid step is one
step of the data. Daily closes hedged over a year use `TimeGrid(1.0, 252)`; weekly closes over
a quarter use `TimeGrid(13 / 52, 13)`. `dt` matters only for financing (`rate`, `div`) and
for the hedge model's Greeks; it never stretches or interpolates the data.

These worlds have no price and no risk-neutral measure: pass a pricing model as
`hedge(..., hedge_model=BlackScholes(...))`. It prices the book at t0 (V0, at the world's
`spot`) and gives the Greeks that drive the strategy.
"""

from __future__ import annotations

import csv
import datetime
import math
import os
import re
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._grid import TimeGrid
from .._random import Draws
from .._validate import (
    as_float,
    check_finite,
    check_int,
    check_positive,
    float_dtype,
    is_concrete,
)
from .base import AbstractModel, ModelState

_NO_MEASURE = (
    "{name} has no risk-neutral measure: its paths are data (or resampled data), not a "
    "pricing model. Price with a model instead and pass it as "
    "hedge(..., hedge_model=BlackScholes(spot, vol, rate))"
)


def _check_prices(prices: np.ndarray, shown_ndim: int) -> None:
    """Raise `ValueError` naming the first entry of `prices` that is not finite and > 0, or
    that the working precision does not hold with its square (see `load_prices_csv`)."""
    low, high, precision = _price_range()
    bad = ~(np.isfinite(prices) & (prices >= low) & (prices <= high))
    if np.any(bad):
        position = tuple(int(k) for k in np.argwhere(bad)[0])
        where = position[1:] if shown_ndim == 1 else position
        index = ", ".join(str(k) for k in where)
        value = prices[position].item()
        if math.isfinite(value) and value > 0:
            raise ValueError(
                f"prices must lie in [{low:.3g}, {high:.3g}], where {precision} holds a price and "
                f"its square (enable jax_enable_x64 for float64), got prices[{index}]="
                f"{value!r}")
        raise ValueError(f"prices must be finite and > 0 everywhere, got prices[{index}]={value!r}")


def _price_range() -> tuple[float, float, str]:
    """The prices the working precision holds with their squares finite and normal:
    [sqrt(tiny), sqrt(max)] of float32 (unless `jax_enable_x64`), and the dtype's name."""
    info = np.finfo(np.dtype(float_dtype()))
    return float(np.sqrt(info.tiny)), float(np.sqrt(info.max)), info.dtype.name


def _check_real(name: str, values) -> None:
    """An array of real numbers (integers or floats), not strings, booleans or complex."""
    try:
        kind = np.asarray(values).dtype.kind
    except (TypeError, ValueError):
        kind = "O"
    if kind not in "fiu":
        raise ValueError(f"{name} must be an array of real numbers, got {values!r}")


def _as_price_matrix(prices) -> tuple[np.ndarray, int]:
    """`prices` as a float64 (n_series, n_points) array, validated; and the input's ndim."""
    _check_real("prices", prices)
    array = np.asarray(prices, dtype=np.float64)
    if array.ndim not in (1, 2):
        raise ValueError(
            "prices must be 1-D (one series) or 2-D (n_series, n_points), got "
            f"prices.shape={array.shape}")
    ndim = array.ndim
    matrix = array.reshape(1, -1) if ndim == 1 else array
    if matrix.shape[0] < 1 or matrix.shape[1] < 2:
        raise ValueError(
            "prices must hold at least one series of at least 2 points, got "
            f"prices.shape={array.shape}")
    _check_prices(matrix, ndim)
    return matrix, ndim


class HistoricalPaths(AbstractModel):
    """A world that replays recorded price series: path p follows series p, step by step.

    Args:
        prices: shape (n_series, n_points), or 1-D for one series; every entry finite and
            > 0 (currency). Step i of the time grid moves from column i to column i + 1, so a
            grid may have at most n_points - 1 steps (see `check_grid`).
        rate: continuously compounded risk-free rate (per year) that finances the hedge.
        div: continuously compounded dividend yield (per year) earned on shares held. Use 0
            when `prices` is a total-return series (dividends already in the prices).
        spot: the price every path starts from (currency, > 0). Each series is rescaled,
            S_p(t_j) = spot x prices[p, j] / prices[p, 0]: this keeps every series' returns
            and changes its level, so one t0 price V0 (`hedge()` prices the book at
            `model.spot`) applies to all paths. None means the first series' first price.

    The grid's `dt` is the data frequency in years (daily data: `TimeGrid(1.0, 252)` for a
    year of 252 steps). Paths are data, so `hedge()` and `simulate()` accept at most
    `max_paths` = n_series paths, and the key is unused. The state's `aux` holds, per path,
    log(spot) - log(prices[p, 0]), the shift of the log-price series.

    A grid longer than the data is an error: call `check_grid(grid)` eagerly. Inside a
    compiled `step`, columns past the data give NaN spots rather than silently repeating the
    last price, so `hedge()` stops with its non-finite P&L error.

    Example:
        >>> import jax, hedgejax as hj
        >>> model = HistoricalPaths([[100.0, 101.0, 99.0], [50.0, 49.0, 51.0]], rate=0.01)
        >>> grid = hj.TimeGrid(2 / 252, 2)      # daily data, two steps
        >>> model.check_grid(grid)
        >>> hj.simulate(model, grid, 2, jax.random.key(0)).round(2)
        Array([[100., 101.,  99.],
               [100.,  98., 102.]], dtype=float32)
    """

    prices: jax.Array
    rate: jax.Array
    div: jax.Array
    spot: jax.Array
    # No vol parameter: these worlds have no price, so `greeks()` never reads it.
    vega_field: ClassVar[str] = ""

    def __init__(self, prices, rate=0.0, div=0.0, spot=None):
        if is_concrete(prices):
            matrix, _ = _as_price_matrix(prices)
            self.prices = as_float(matrix, "prices")
            first = matrix[0, 0]
        else:  # traced (e.g. `replace` under jit): shapes still known, values not
            self.prices = prices if jnp.ndim(prices) == 2 else jnp.reshape(prices, (1, -1))
            first = self.prices[0, 0]
        self.rate = as_float(rate, "rate", scalar=True)
        self.div = as_float(div, "div", scalar=True)
        self.spot = as_float(first if spot is None else spot, "spot", scalar=True)

    def __check_init__(self):
        check_positive("spot", self.spot)
        check_finite("rate", self.rate)
        check_finite("div", self.div)

    @classmethod
    def from_windows(cls, prices, window: int, stride: int = 1, rate=0.0, div=0.0,
                     spot=None) -> HistoricalPaths:
        """Paths from the windows of one long series: series k is
        prices[k*stride : k*stride + window + 1], i.e. `window` steps each (a backtest of
        the same hedge started on every `stride`-th date).

        Example:
            >>> HistoricalPaths.from_windows([1.0, 2.0, 3.0, 4.0, 5.0], window=2).prices
            Array([[1., 2., 3.],
                   [2., 3., 4.],
                   [3., 4., 5.]], dtype=float32)
        """
        matrix, ndim = _as_price_matrix(prices)
        if ndim != 1:
            raise ValueError(f"prices must be 1-D for from_windows, got shape={matrix.shape}")
        series = matrix[0]
        n_returns = series.size - 1
        window = check_int("window", window, 1)
        stride = check_int("stride", stride, 1)
        if window > n_returns:
            raise ValueError(
                f"window must be <= {n_returns} (the data has {series.size} points), got "
                f"window={window}")
        starts = np.arange(0, n_returns - window + 1, stride)
        windows = np.stack([series[s:s + window + 1] for s in starts])
        return cls(windows, rate=rate, div=div, spot=spot)

    @property
    def n_series(self) -> int:
        return int(self.prices.shape[0])

    @property
    def n_points(self) -> int:
        """Prices per series: a grid may take at most n_points - 1 steps."""
        return int(self.prices.shape[1])

    @property
    def max_paths(self) -> int:
        return self.n_series

    def check_grid(self, grid: TimeGrid) -> None:
        """Raise `ValueError` if `grid` takes more steps than the data holds (n_points - 1).

        Checked eagerly (the compiled `step` cannot raise); `hedge()` and `simulate()` call
        it when the model has it.
        """
        steps = self.n_points - 1
        if grid.n_steps > steps:
            raise ValueError(
                f"the time grid has n_steps={grid.n_steps} but the data holds only {steps} "
                f"steps ({self.n_points} prices per series); use a grid of at most {steps} "
                "steps (one grid step per data step)")

    def _series(self, path_index: jax.Array) -> jax.Array:
        # Paths beyond the data only pad the last block of a run and are discarded.
        return jnp.minimum(path_index, self.n_series - 1).astype(jnp.int32)

    def init(self, path_index: jax.Array) -> ModelState:
        log_first = jnp.log(self.prices[self._series(path_index), 0])
        shift = jnp.log(self.spot).astype(log_first.dtype) - log_first
        return ModelState(log_spot=shift + log_first, aux=shift)

    def step(self, state: ModelState, t: jax.Array, dt: float, draws: Draws) -> ModelState:
        column = draws.step.astype(jnp.int32) + 1
        last = self.n_points - 1
        price = self.prices[self._series(draws.path_index), jnp.minimum(column, last)]
        log_spot = (state.aux + jnp.log(price)).astype(state.log_spot.dtype)
        log_spot = jnp.where(column <= last, log_spot, jnp.nan)
        return ModelState(log_spot=log_spot, variance=state.variance, aux=state.aux)

    def risk_neutral(self) -> AbstractModel:
        """Not defined: raises `ValueError` (data carries no risk-neutral measure)."""
        raise ValueError(_NO_MEASURE.format(name="HistoricalPaths"))


class Bootstrap(AbstractModel):
    """Moving block bootstrap of historical log-returns (Kunsch 1989): unlimited paths that
    reuse the data's returns in contiguous blocks, keeping their short-range dependence
    (volatility clustering within a block).

    Args:
        returns: 1-D log-returns of the data, log(S_{j+1} / S_j), one per data step; finite.
        block: block length in steps, an integer in [1, n_returns].
        spot: price at t=0 (currency, > 0).
        rate: continuously compounded risk-free rate (per year) that finances the hedge.
        div: continuously compounded dividend yield (per year) earned on shares held.
        demean: subtract the sample mean log-return from every return (and add no drift
            back): a driftless resample, E[log S_T / S_0] = 0, so a trend in the data does
            not masquerade as hedging P&L. (The price itself then drifts by about half the
            variance; this is not a risk-neutral measure.)

    Each path, at steps i with i % block == 0, draws a start index uniformly from
    [0, n_returns - block] using `draws.uniform(0)` (kept in the state's `aux`), and moves
    by returns[start + i % block] at step i. The grid's `dt` is the data frequency in years
    (daily returns: `TimeGrid(1.0, 252)` for a year); it only affects financing and the hedge
    model's Greeks, never the returns. Start indices come from float uniforms: with more than
    about 10^6 returns (float32) they are no longer exactly uniform.

    Example:
        >>> import jax, hedgejax as hj
        >>> model = Bootstrap.from_prices([100.0, 101.0, 99.0, 100.5, 102.0], block=2)
        >>> paths = hj.simulate(model, hj.TimeGrid(4 / 252, 4), 3, jax.random.key(0))
        >>> paths.shape
        (3, 5)
    """

    returns: jax.Array
    spot: jax.Array
    rate: jax.Array
    div: jax.Array
    block: int = eqx.field(static=True)
    demean: bool = eqx.field(static=True)
    # No vol parameter: these worlds have no price, so `greeks()` never reads it.
    vega_field: ClassVar[str] = ""

    def __init__(self, returns, block=20, spot=100.0, rate=0.0, div=0.0, demean=False):
        if is_concrete(returns):
            _check_real("returns", returns)
            array = np.asarray(returns, dtype=np.float64)
            if array.ndim != 1 or array.size < 1:
                raise ValueError(
                    f"returns must be a non-empty 1-D array, got returns.shape={array.shape}")
            bad = ~np.isfinite(array)
            if np.any(bad):
                k = int(np.argmax(bad))
                raise ValueError(f"returns must be finite, got returns[{k}]={array[k].item()!r}")
            returns = array
        self.returns = as_float(returns, "returns")
        n_returns = int(self.returns.shape[0])
        self.block = check_int("block", block, 1)
        if self.block > n_returns:
            raise ValueError(
                f"block must be an integer in [1, {n_returns}] (the number of returns), got "
                f"block={block}")
        self.spot = as_float(spot, "spot", scalar=True)
        self.rate = as_float(rate, "rate", scalar=True)
        self.div = as_float(div, "div", scalar=True)
        self.demean = bool(demean)

    def __check_init__(self):
        check_positive("spot", self.spot)
        check_finite("rate", self.rate)
        check_finite("div", self.div)

    @classmethod
    def from_prices(cls, prices, block: int = 20, spot=None, rate=0.0, div=0.0,
                    demean: bool = False) -> Bootstrap:
        """A bootstrap of the log-returns log(prices[j+1] / prices[j]) of one 1-D series
        (finite, > 0). `spot` defaults to the last price (today's level)."""
        matrix, ndim = _as_price_matrix(prices)
        if ndim != 1:
            raise ValueError(
                "prices must be 1-D for Bootstrap.from_prices (returns across the joins of "
                f"several series would be fictitious), got shape={matrix.shape}")
        series = matrix[0]
        returns = np.diff(np.log(series))
        return cls(returns, block=block, spot=series[-1] if spot is None else spot,
                   rate=rate, div=div, demean=demean)

    @property
    def n_returns(self) -> int:
        return int(self.returns.shape[0])

    def _returns(self) -> jax.Array:
        if self.demean:
            return self.returns - jnp.mean(self.returns)
        return self.returns

    def init(self, path_index: jax.Array) -> ModelState:
        log_spot = jnp.broadcast_to(jnp.log(self.spot), path_index.shape)
        # The start index is drawn at step 0 (0 % block == 0); this is a placeholder.
        return ModelState(log_spot=log_spot, aux=jnp.zeros(path_index.shape, jnp.int32))

    def step(self, state: ModelState, t: jax.Array, dt: float, draws: Draws) -> ModelState:
        offset = (draws.step % np.uint32(self.block)).astype(jnp.int32)
        n_starts = self.n_returns - self.block + 1
        u = draws.uniform(0)
        drawn = jnp.clip(jnp.floor(u * n_starts).astype(jnp.int32), 0, n_starts - 1)
        start = jnp.where(offset == 0, drawn, state.aux)
        log_return = self._returns()[start + offset].astype(state.log_spot.dtype)
        return ModelState(log_spot=state.log_spot + log_return, variance=state.variance,
                          aux=start)

    def risk_neutral(self) -> AbstractModel:
        """Not defined: raises `ValueError` (resampled data carries no risk-neutral measure)."""
        raise ValueError(_NO_MEASURE.format(name="Bootstrap"))


# ---------------------------------------------------------------------------------------------
# CSV input.
# ---------------------------------------------------------------------------------------------

# Text from the file shown in an error: at most this many characters of the offending field.
_EXCERPT = 40
# Header names listed in an error about columns (a wide file lists the first ones).
_SHOWN_COLUMNS = 12
# Longest physical line read: a price file's lines are short, and this bounds the memory a
# wrong file (one without line breaks) can take before it is refused.
_MAX_LINE = 1 << 20
# Price columns chosen by name when `price_column` is None, in order of preference (compared
# in lower case, '_' read as ' '): adjusted closes (splits and dividends applied), then closes.
_PRICE_NAMES = ("adj close", "adjusted close", "close")
# Characters that `errors="surrogateescape"` makes of bytes that are not UTF-8.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _excerpt(text: str) -> str:
    """`text` quoted, cut to `_EXCERPT` characters: errors never echo more of a file."""
    if len(text) <= _EXCERPT:
        return repr(text)
    return repr(text[:_EXCERPT]) + f"... ({len(text):,} characters)"


def _column_list(header: list[str]) -> str:
    shown = ", ".join(_excerpt(name) for name in header[:_SHOWN_COLUMNS])
    more = len(header) - _SHOWN_COLUMNS
    return f"[{shown}, ... {more} more]" if more > 0 else f"[{shown}]"


def _find_column(header: list[str], name: str) -> int | None:
    """Index of the column `name`: its exact spelling, else the one column equal to it in
    lower case; None when there is neither."""
    if name in header:
        return header.index(name)
    folded = [k for k, column in enumerate(header) if column.lower() == name.strip().lower()]
    return folded[0] if len(folded) == 1 else None


def _lines(f, fail):
    """The file's physical lines, '#' comment lines blanked (kept, so line numbers hold);
    undecodable bytes and overlong lines refused with their line number."""
    for number, line in enumerate(iter(lambda: f.readline(_MAX_LINE + 1), ""), start=1):
        if len(line) > _MAX_LINE:
            raise fail(number, f"line longer than {_MAX_LINE:,} characters: not a price file")
        bad = _UNDECODABLE.search(line)
        if bad:
            byte = ord(bad.group()) - 0xDC00
            raise fail(number, f"not UTF-8 text: byte 0x{byte:02x} at character "
                       f"{bad.start() + 1} (save the file as UTF-8)")
        yield "\n" if line.lstrip().startswith("#") else line


def _rows(reader, fail):
    """(line number, row) of every row of `reader`, CSV syntax errors naming their line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise fail(max(reader.line_num, 1), f"malformed CSV: {str(err)[:80]}") from None
        yield reader.line_num, row


def _price_at(header: list[str], date_at: int, price_column: str | None, fail) -> int:
    """Index of the price column (see `load_prices_csv`); the header is known to be a CSV
    header holding the date column, so its names may be shown."""
    if price_column is not None:
        price_at = _find_column(header, price_column)
        if price_at is None:
            raise fail(f"missing column {_excerpt(price_column)} (price_column); the header "
                       f"has {_column_list(header)}")
        return price_at
    others = [k for k in range(len(header)) if k != date_at]
    if not others:
        raise fail(f"missing column: no price column besides {_excerpt(header[date_at])}; "
                   f"the header has {_column_list(header)}")
    folded = {" ".join(header[k].lower().replace("_", " ").split()): k for k in reversed(others)}
    for name in _PRICE_NAMES:
        if name in folded:
            return folded[name]
    if len(others) == 1:
        return others[0]
    raise fail(f"{len(others)} columns besides the date and none is named 'Adj Close' or "
               f"'Close': pass price_column= naming the price column; the header has "
               f"{_column_list(header)}")


def load_prices_csv(path: str | os.PathLike, date_column: str = "date",
                    price_column: str | None = None,
                    parse_dates: bool = True) -> tuple[np.ndarray | list[str], np.ndarray]:
    """Read one price series from a CSV file with a header line.

    Args:
        path: the file (str or `pathlib.Path`), UTF-8 (a byte-order mark is allowed).
        date_column: the header name of the date column (its exact spelling, else the one
            column with that name in another case, e.g. "Date").
        price_column: the header name of the price column (matched like `date_column`).
            None chooses by name: "Adj Close", else "Close" (any case, '_' for the space:
            "adj_close", "close"), as in files downloaded from Yahoo Finance; else the only
            column besides the date. A file with several other columns and none of those
            names is refused: pass `price_column`.
        parse_dates: dates must be ISO `YYYY-MM-DD` and distinct; rows are returned sorted by
            date, oldest first, whatever their order in the file (newest-first downloads,
            or mixed: ISO dates are unambiguous), and dates as a `numpy.datetime64[D]`
            array. False keeps the rows in file order (text dates such as 03/01/2021 are
            ambiguous and are not sorted: give them oldest first) and returns the dates as a
            list of the strings in the file, only checked for being non-empty and distinct.

    Returns:
        (dates, prices): prices a float64 array, oldest first, all finite and > 0
        (currency), each within the range that the working precision (float32, or float64
        with `jax_enable_x64`) holds with its square (about 1e-19 to 1.8e19 in float32:
        P&L variances and Gamma terms square prices), and every ratio of consecutive prices
        finite and normal in it (returns that neither overflow nor vanish).

    Lines whose first non-blank character is '#' are comments and, with blank lines, are
    skipped. Every problem raises `ValueError` naming the file, the 1-based line number and
    the reason: empty file, bytes that are not UTF-8, a field too large for the csv module,
    missing column, missing or non-numeric value, non-positive, non-finite or
    unrepresentable price, malformed or duplicate dates (naming both lines). Messages show
    at most 40 characters of the offending field, and list the header's column names only
    when it holds the date column (a file that is not a price CSV is never echoed).

    Example:
        >>> from importlib.resources import as_file, files
        >>> with as_file(files("hedgejax.data") / "sample_prices.csv") as path:
        ...     dates, prices = load_prices_csv(path)
        >>> str(dates[0]), prices.dtype
        ('2021-01-04', dtype('float64'))
    """
    name = os.fspath(path)

    def fail(line: int, reason: str) -> ValueError:
        return ValueError(f"{name}, line {line}: {reason}")

    low, high, precision = _price_range()
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        reader = csv.reader(_lines(f, fail))
        rows = _rows(reader, fail)
        header = header_line = None
        for line, row in rows:
            if any(cell.strip() for cell in row):
                header, header_line = [cell.strip() for cell in row], line
                break
        if header is None:
            raise fail(max(reader.line_num, 1), "empty file: no header line")
        date_at = _find_column(header, date_column)
        if date_at is None:  # maybe not a CSV file at all: show none of its text
            raise fail(header_line, f"missing column {_excerpt(date_column)} (date_column): no "
                       "header field has that name")
        twice = sorted({c for c in header if c and header.count(c) > 1})
        if twice:  # which of two "close" columns is the price? refuse rather than guess
            raise fail(header_line, "duplicate column names in the header: "
                       f"{_column_list(twice)}")
        price_at = _price_at(header, date_at, price_column,
                             lambda reason: fail(header_line, reason))
        date_name, price_name = _excerpt(header[date_at]), _excerpt(header[price_at])

        dates: list = []
        prices: list[float] = []
        lines: list[int] = []
        seen: dict[str, int] = {}
        for line, row in rows:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise fail(line, f"{len(row)} fields where the header has {len(header)}")
            date_text = row[date_at].strip()
            price_text = row[price_at].strip()
            if not date_text:
                raise fail(line, f"missing value in column {date_name}")
            if not price_text:
                raise fail(line, f"missing value in column {price_name}")
            try:
                if "_" in price_text:  # Python accepts 1_100; a CSV number does not
                    raise ValueError
                value = float(price_text)
            except ValueError:
                # the text itself is not shown: the file may not be a price file at all
                raise fail(line, f"non-numeric value ({len(price_text):,} characters) in "
                           f"column {price_name}") from None
            if not math.isfinite(value) or value <= 0:
                raise fail(line, f"price must be finite and > 0, got {_excerpt(price_text)} "
                           f"in column {price_name}")
            if not low <= value <= high:
                raise fail(line, f"price {_excerpt(price_text)} in column {price_name} is "
                           f"outside [{low:.3g}, {high:.3g}], where {precision} holds a price "
                           "and its square (enable jax_enable_x64 for float64)")
            if date_text in seen:
                shown = f"{date_text} " if _iso_date(date_text) is not None else ""
                raise fail(line, f"duplicate date {shown}(first on line {seen[date_text]})")
            seen[date_text] = line
            if parse_dates:
                date = _iso_date(date_text)
                if date is None:
                    raise fail(line, f"date ({len(date_text):,} characters) in column "
                               f"{date_name} is not an ISO date YYYY-MM-DD (pass "
                               "parse_dates=False to keep dates as text)")
                dates.append(date)
            else:
                dates.append(date_text)
            prices.append(value)
            lines.append(line)
        if not prices:
            raise fail(header_line + 1, "no data rows after the header")

    if parse_dates:
        order = np.argsort(np.array(dates, dtype="datetime64[D]"), kind="stable")
    else:
        order = np.arange(len(prices))
    out_prices = np.asarray(prices, dtype=np.float64)[order]
    out_lines = np.asarray(lines)[order]
    with np.errstate(over="ignore", under="ignore"):
        ratios = (out_prices[1:] / out_prices[:-1]).astype(np.dtype(float_dtype()))
    bad = ~(np.isfinite(ratios) & (ratios >= np.finfo(ratios.dtype).tiny))
    if np.any(bad):
        k = int(np.argmax(bad))
        first, second = int(out_lines[k]), int(out_lines[k + 1])
        raise fail(second, f"the ratio of this price to the one before it (line {first}) is "
                   f"{out_prices[k + 1] / out_prices[k]:.3g}, which {precision} cannot hold "
                   "(a return that overflows or vanishes)")
    if parse_dates:
        return np.array(dates, dtype="datetime64[D]")[order], out_prices
    return dates, out_prices


def _iso_date(text: str) -> datetime.date | None:
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        return None
