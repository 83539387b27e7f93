"""Statistics of hedges too large to keep per path: stream chunks, merge exactly.

`stream_summary` runs `hedge()` chunk by chunk (the same paths as one big run: draws depend
on global path indices) and keeps, in float64 on the host:

- count, mean and sum of squared deviations of each quantity, merged chunk by chunk with
  Chan et al.'s parallel update (exact up to float64 rounding, whatever the chunking);
- the worst ceil((1 - alpha) n) + 2 P&Ls seen so far, so VaR (linear interpolation between
  order statistics, as `risk.var`) and expected shortfall (Acerbi-Tasche weights, as
  `risk.expected_shortfall`) are exact, not sketched.

Memory: one chunk of per-path results plus the kept tail, (1 - alpha) n values (8 MB for
10^8 paths at alpha = 0.99), independent of the number of paths otherwise.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from ._costs import AbstractCost
from ._grid import TimeGrid
from ._hedge import iter_hedge_chunks
from ._instruments import AbstractInstrument, Book
from ._models.base import AbstractModel
from ._strategies.base import AbstractStrategy
from ._validate import check, check_int, check_n_paths, undefined_effectiveness


class _Moments:
    """Running count, mean and sum of squared deviations (Chan, Golub & LeVeque 1979)."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        n_b = x.size
        if n_b == 0:
            return
        mean_b = float(x.mean())
        m2_b = float(((x - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n

    @property
    def variance(self) -> float:
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0


def _tail_var_es(worst: np.ndarray, n: int, alpha: float) -> tuple[float, float]:
    """VaR and ES at `alpha` from the smallest values of a sample of size n (sorted)."""
    position = (n - 1) * (1.0 - alpha)  # numpy's linear quantile position
    lo = math.floor(position)
    frac = position - lo
    quantile = worst[lo] + frac * (worst[lo + 1] - worst[lo]) if lo + 1 < n else worst[lo]
    k = (1.0 - alpha) * n
    whole = math.floor(k)
    if k < 1.0:
        es = -worst[0]
    else:
        tail = worst[:whole].sum() + ((k - whole) * worst[whole] if whole < worst.size else 0.0)
        es = -tail / k
    return float(-quantile), float(es)


def stream_summary(model: AbstractModel, book: Book | AbstractInstrument,
                   strategy: AbstractStrategy, costs: AbstractCost | None, grid: TimeGrid,
                   n_paths: int, key: jax.Array, *, chunk_size: int = 2**20,
                   alpha: float = 0.99, hedge_model: AbstractModel | None = None,
                   unwind: bool = False, progress: bool = False,
                   block_size: int | None = None, pricing: str = "auto") -> dict[str, Any]:
    """The statistics of `risk.summary` for a hedge of `n_paths` paths, computed chunk by
    chunk without keeping per-path results (module docstring). Same keys as `summary`, from
    the same paths as `hedge(..., n_paths, key)`; `pricing` as in `hedge()`.

    Example:
        >>> import jax, hedgejax as hj
        >>> stats = hj.stream_summary(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 1.0),
        ...                           hj.DeltaHedge(), hj.Proportional(0.001),
        ...                           hj.TimeGrid(1.0, 52), 10_000, jax.random.key(0),
        ...                           chunk_size=4096)
        >>> stats["n_paths"]
        10000
    """
    n_paths = check_n_paths(n_paths, model)
    if n_paths < 2:
        raise ValueError(f"n_paths must be >= 2 (as for summary: a standard deviation needs "
                         f"two paths), got n_paths={n_paths}")
    chunk_size = check_int("chunk_size", chunk_size, 1)
    check("alpha", alpha, lambda a: (a > 0) & (a < 1), "in (0, 1)")
    keep = min(n_paths, math.ceil((1.0 - alpha) * n_paths) + 2)
    moments = {name: _Moments() for name in ("pnl", "hedge_error", "cost", "n_trades",
                                              "unhedged_pnl")}
    worst = np.empty(0)
    initial_price = math.nan
    chunks = iter_hedge_chunks(model, book, strategy, costs, grid, n_paths, key,
                               chunk_size=chunk_size, hedge_model=hedge_model, unwind=unwind,
                               progress=progress, pricing=pricing,
                               **({} if block_size is None
                                                     else {"block_size": block_size}))
    for res in chunks:
        initial_price = float(res.initial_price)
        for name, acc in moments.items():
            acc.update(np.asarray(getattr(res, name)))
        pnl = np.asarray(res.pnl, dtype=np.float64)
        worst = np.concatenate([worst, np.partition(pnl, min(keep, pnl.size) - 1)[:keep]])
        worst = np.partition(worst, min(keep, worst.size) - 1)[:keep]
    worst = np.sort(worst)
    var, es = _tail_var_es(worst, n_paths, alpha)
    pnl, unhedged = moments["pnl"], moments["unhedged_pnl"]
    effectiveness = (1.0 - pnl.variance / unhedged.variance if unhedged.variance > 0
                     else undefined_effectiveness())
    return {
        "n_paths": n_paths, "initial_price": initial_price, "mean": pnl.mean,
        "stderr": math.sqrt(pnl.variance / n_paths), "std": math.sqrt(pnl.variance),
        "var": var, "es": es, "mean_hedge_error": moments["hedge_error"].mean,
        "std_hedge_error": math.sqrt(moments["hedge_error"].variance),
        "mean_cost": moments["cost"].mean, "mean_trades": moments["n_trades"].mean,
        "unhedged_std": math.sqrt(unhedged.variance), "hedge_effectiveness": effectiveness,
    }
