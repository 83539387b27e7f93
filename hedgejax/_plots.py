"""Plots for the command line and experiments (matplotlib, written atomically)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write

# The formats matplotlib's Agg backend writes without anything else installed, by suffix.
FORMATS = {"png": "png", "pdf": "pdf", "svg": "svg", "svgz": "svgz", "eps": "eps", "ps": "ps",
           "jpg": "jpg", "jpeg": "jpeg", "tif": "tif", "tiff": "tiff", "webp": "webp"}


def plot_format(path: str | os.PathLike) -> str:
    """The image format `path`'s suffix names (case-insensitive); ValueError, naming the
    path and the formats, when there is none or matplotlib cannot write it."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        what = f"suffix .{suffix}" if suffix else "no suffix"
        raise ValueError(f"{os.fspath(path)} has {what}; name one of the formats "
                         f"{', '.join('.' + s for s in FORMATS)}")
    return FORMATS[suffix]


def _tick(x: float, _pos: Any = None) -> str:
    """A tick label with thousands separators, never in scientific notation."""
    if abs(x - round(x)) <= 1e-9 * max(1.0, abs(x)):
        return f"{x:,.0f}".replace("-0", "0") if round(x) == 0 else f"{x:,.0f}"
    return f"{x:,.6f}".rstrip("0")


def pnl_histogram(result: Any, path: str | os.PathLike, title: str = "") -> None:
    """Histograms of the unhedged and the hedged P&L on the same paths, side by side, in the
    format `path`'s suffix names (png, pdf, svg, ...)."""
    fmt = plot_format(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    hedged = np.asarray(result.pnl)
    unhedged = np.asarray(result.unhedged_pnl)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    for ax, pnl, color, name in ((axes[0], unhedged, "tab:gray", "unhedged P&L"),
                                 (axes[1], hedged, "tab:blue", "hedged P&L (after costs)")):
        finite = pnl[np.isfinite(pnl)]
        ax.hist(finite, bins=min(100, max(10, finite.size // 10)), color=color)
        ax.set_title(name)
        ax.set_xlabel("P&L at T ($; > 0 is a gain)")
        ax.set_ylabel("number of paths")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(FuncFormatter(_tick))
        ax.xaxis.set_major_formatter(FuncFormatter(_tick))
    fig.suptitle(title)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=100))
    plt.close(fig)
