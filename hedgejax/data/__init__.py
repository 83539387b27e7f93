"""Sample data shipped with hedgejax.

`sample_prices.csv` is SYNTHETIC: it is not market data. It holds 757 daily closes (756
daily steps: three trading years of 252 days, dated on consecutive weekdays from 2021-01-04
to 2023-11-28 with no holiday calendar) of a geometric Brownian motion made once by
`generate_sample_prices()` with the fixed seed `SAMPLE_SEED`:

- S0 = 100, drift 0.07 per year, volatility 0.18 per year, steps of dt = 1/252 year;
- a crash of -15% at the close of step 180, followed by 40 days at volatility 0.40
  (volatility clustering, which a block bootstrap keeps and an i.i.d. resample loses);
- a jump of +9% at the close of step 500.

Normals come from Box-Muller on `numpy.random.PCG64` uniforms, so the file can be remade
exactly: `write_sample_prices("hedgejax/data/sample_prices.csv")` (prices rounded to 4
decimals, the same file byte for byte).

Example:
    >>> prices = sample_prices()
    >>> prices.shape, bool(prices[0] == 100.0)
    ((757,), True)
"""

from __future__ import annotations

import csv
import os
from importlib.resources import as_file, files

import numpy as np

from .._io import atomic_write
from .._models.historical import load_prices_csv

SAMPLE_SEED = 20240601
SAMPLE_FILE = "sample_prices.csv"

_N_STEPS = 3 * 252
_FIRST_DATE = "2021-01-04"


def sample_prices(with_dates: bool = False):
    """The shipped synthetic daily closes (see the module docstring) as a float64 array of
    shape (757,); with `with_dates=True`, the pair (dates as `datetime64[D]`, prices)."""
    with as_file(files(__name__) / SAMPLE_FILE) as path:
        dates, prices = load_prices_csv(path, date_column="date", price_column="close")
    return (dates, prices) if with_dates else prices


def generate_sample_prices(seed: int = SAMPLE_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic series of the module docstring, unrounded: (dates, prices)."""
    dt = 1.0 / 252.0
    uniforms = np.random.Generator(np.random.PCG64(seed)).random((2, _N_STEPS))
    # Box-Muller on uniforms (1 - u avoids log 0): independent of numpy's normal sampler.
    normals = np.sqrt(-2.0 * np.log1p(-uniforms[0])) * np.cos(2.0 * np.pi * uniforms[1])
    vol = np.full(_N_STEPS, 0.18)
    vol[181:221] = 0.40
    log_returns = (0.07 - 0.5 * vol**2) * dt + vol * np.sqrt(dt) * normals
    log_returns[180] += np.log(1.0 - 0.15)
    log_returns[500] += np.log(1.0 + 0.09)
    prices = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(log_returns)]))
    dates = np.busday_offset(_FIRST_DATE, np.arange(_N_STEPS + 1), roll="forward")
    return dates, prices


def write_sample_prices(path: str | os.PathLike, seed: int = SAMPLE_SEED) -> None:
    """Write the synthetic series as the shipped CSV: comment lines, then `date,close`."""
    dates, prices = generate_sample_prices(seed)

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            f.write("# SYNTHETIC DATA - not market prices. Daily closes of a geometric Brownian\n"
                    "# motion (S0=100, drift 0.07, vol 0.18; -15% crash at step 180 then 40 days\n"
                    "# at vol 0.40; +9% jump at step 500), made by\n"
                    f"# hedgejax.data.write_sample_prices(path, seed={seed}).\n")
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["date", "close"])
            for date, price in zip(dates, prices, strict=True):
                writer.writerow([str(date), f"{price:.4f}"])

    atomic_write(path, write)
