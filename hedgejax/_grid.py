"""The uniform time grid a hedge is simulated on."""

from __future__ import annotations

import math

import equinox as eqx
import numpy as np

from ._validate import as_float, check_int

# Most steps a grid may have: a year of one-minute steps is about 100,000.
MAX_STEPS = 1_000_000


class TimeGrid(eqx.Module):
    """A uniform grid of `n_steps` steps from t=0 to t=`maturity` (years).

    Both fields are static configuration: changing them recompiles `hedge()`.

    Example:
        >>> grid = TimeGrid(maturity=1.0, n_steps=252)   # daily steps over a year
        >>> round(grid.dt * 252, 12)
        1.0
    """

    maturity: float = eqx.field(static=True)
    n_steps: int = eqx.field(static=True)

    def __init__(self, maturity: float, n_steps: int):
        as_float(maturity, "maturity", scalar=True)  # a real number, finite in the precision
        maturity = float(maturity)                   # kept in float64: dt = maturity / n
        if not math.isfinite(maturity) or maturity <= 0:
            raise ValueError(f"maturity must be finite and > 0 (years), got maturity={maturity!r}")
        self.maturity = maturity
        self.n_steps = check_int("n_steps", n_steps, 1)
        if self.n_steps > MAX_STEPS:
            raise ValueError(f"n_steps must be an integer in [1, {MAX_STEPS:,}] (every step is "
                             f"one step of the compiled scan), got n_steps={self.n_steps:,}")

    @property
    def dt(self) -> float:
        """Step length in years."""
        return self.maturity / self.n_steps

    @property
    def times(self) -> np.ndarray:
        """The `n_steps + 1` grid times t_0=0, ..., t_N=maturity, in years."""
        return np.linspace(0.0, self.maturity, self.n_steps + 1)
