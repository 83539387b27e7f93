"""Plots for the command line and experiments (matplotlib, written atomically)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._io import atomic_write


def pnl_histogram(result: Any, path: str | os.PathLike, title: str = "") -> None:
    """Histogram of hedged P&L against the unhedged P&L on the same paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hedged = np.asarray(result.pnl)
    unhedged = np.asarray(result.unhedged_pnl)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].hist(unhedged, bins=100, color="tab:gray")
    axes[0].set_title("unhedged P&L")
    axes[1].hist(hedged, bins=100, color="tab:blue")
    axes[1].set_title("hedged P&L (after costs)")
    for ax in axes:
        ax.set_xlabel("P&L at T (currency)")
    axes[0].set_ylabel("paths")
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
