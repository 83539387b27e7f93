"""The cost/risk frontier: optimal no-trade bands against calendar rebalancing.

For each risk weight lam, a constant band is fitted to minimise E[cost] + lam Var[hedge
error]; the fitted bands and delta hedging every k steps are then evaluated on the same
fresh paths, giving points (E[cost], std of hedge error). Band fits for all lams run as one
vmapped, compiled optimisation (each step's paths shared by every lam); calendar rules for
all k are one vmapped evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import risk
from ._costs import AbstractCost, NoCost
from ._exotics import on_grid
from ._fit import _default_temperature
from ._grid import TimeGrid
from ._hedge import hedge
from ._instruments import AbstractInstrument, Book, as_book
from ._models.base import AbstractModel
from ._strategies.bands import BandHedge
from ._strategies.base import AbstractStrategy, Observation
from ._validate import check, check_int


class _Calendar(AbstractStrategy):
    """Delta hedging every `every` steps with `every` an array, so rules can be vmapped."""

    every: jax.Array

    def __call__(self, obs: Observation, position: jax.Array) -> jax.Array:
        return jnp.where(obs.step % self.every == 0, -obs.delta, position)


def frontier(
    lams: Sequence[float],
    model: AbstractModel,
    book: Book | AbstractInstrument,
    costs: AbstractCost | None,
    grid: TimeGrid,
    *,
    key: jax.Array,
    every: Sequence[int] = tuple(range(1, 21)),
    init_width: float = 0.05,
    steps: int = 300,
    n_paths: int = 2**13,
    eval_paths: int = 2**16,
    optimizer: optax.GradientTransformation | None = None,
    hedge_model: AbstractModel | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Fitted bands for each lam and calendar rebalancing every k steps, on common paths.

    Args:
        lams: risk weights (per unit of currency), > 0.
        model, book, costs, grid, hedge_model: as in `hedge()`.
        key: training uses `fold_in(key, step)`; evaluation uses `fold_in(key, 2**32 - 1)`,
            paths the optimiser never saw.
        every: calendar rebalancing intervals in steps.
        init_width: starting band half-width in shares.
        steps, n_paths, optimizer: the band fits (default adam with a cosine-decaying
            learning rate from 1e-2).
        eval_paths: paths for the evaluation of every rule.

    Returns:
        {"bands": {"lam", "width", "mean_cost", "std_hedge_error", "objective"},
         "calendar": {"every", "mean_cost", "std_hedge_error"}}, arrays over the rules.
    """
    book = on_grid(as_book(book), grid)   # e.g. Asian fixings=None, before tracing
    costs = NoCost() if costs is None else costs
    lams = np.asarray(lams, dtype=float)
    check("lams", lams, lambda a: a > 0, "finite and > 0")
    if lams.ndim != 1 or lams.size == 0:
        raise ValueError(f"lams must be a non-empty list, got shape {lams.shape}")
    every = [check_int("every", k, 1) for k in every]
    steps = check_int("steps", steps, 1)
    if optimizer is None:
        optimizer = optax.adam(optax.cosine_decay_schedule(1e-2, steps))
    train_costs = costs if costs.is_smooth else costs.smoothed(_default_temperature(book))
    lam_array = jnp.asarray(lams, dtype=jnp.result_type(float))

    template = BandHedge(init_width)
    params, static = eqx.partition(template, eqx.is_inexact_array)
    batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (lams.size, *x.shape)), params)
    opt_state = jax.vmap(optimizer.init)(batched)

    def run(p, c, k, n):
        return hedge(model, book, eqx.combine(p, static), c, grid, n, k,
                     hedge_model=hedge_model)

    @eqx.filter_jit
    def train_step(p, state, k):
        def one(pi, si, lam):
            loss, g = eqx.filter_value_and_grad(
                lambda q: risk.mean_cost_variance(run(q, train_costs, k, n_paths), lam))(pi)
            updates, si = optimizer.update(g, si, pi)
            return eqx.apply_updates(pi, updates), si
        return jax.vmap(one)(p, state, lam_array)

    for i in range(steps):
        batched, opt_state = train_step(batched, opt_state, jax.random.fold_in(key, i))

    eval_key = jax.random.fold_in(key, 2**32 - 1)

    @eqx.filter_jit
    def evaluate_bands(p):
        def one(pi, lam):
            res = run(pi, costs, eval_key, eval_paths)
            return (jnp.mean(res.cost), risk.std(res.hedge_error),
                    risk.mean_cost_variance(res, lam))
        return jax.vmap(one)(p, lam_array)

    @eqx.filter_jit
    def evaluate_calendar(ks):
        def one(k):
            res = hedge(model, book, _Calendar(k), costs, grid, eval_paths, eval_key,
                        hedge_model=hedge_model)
            return jnp.mean(res.cost), risk.std(res.hedge_error)
        return jax.vmap(one)(ks)

    band_cost, band_std, band_obj = (np.asarray(x) for x in evaluate_bands(batched))
    cal_cost, cal_std = (np.asarray(x) for x in evaluate_calendar(jnp.asarray(every)))
    widths = np.asarray(jax.nn.softplus(batched.raw_width))
    return {
        "bands": {"lam": lams, "width": widths, "mean_cost": band_cost,
                  "std_hedge_error": band_std, "objective": band_obj},
        "calendar": {"every": np.asarray(every), "mean_cost": cal_cost,
                     "std_hedge_error": cal_std},
    }


def band_dominates(result: dict[str, dict[str, np.ndarray]]) -> np.ndarray:
    """For each calendar rule whose cost lies inside the bands' cost range, whether the band
    frontier (interpolated linearly in cost) has a smaller hedge-error std at that cost."""
    bands, cal = result["bands"], result["calendar"]
    order = np.argsort(bands["mean_cost"])
    cost, std = bands["mean_cost"][order], bands["std_hedge_error"][order]
    inside = (cal["mean_cost"] >= cost[0]) & (cal["mean_cost"] <= cost[-1])
    band_std = np.interp(cal["mean_cost"][inside], cost, std)
    return band_std < cal["std_hedge_error"][inside]
