"""Learning strategies: `fit` trains a strategy's parameters by gradient descent through the
whole simulated hedge; `evaluate` and `grid_search` measure the true objective on fresh paths.

`fit` differentiates an objective of `hedge()` (e.g. `risk.mean_cost_variance(lam=0.1)`)
with respect to every inexact-array leaf of the strategy (`eqx.is_inexact_array`), keeping
everything else static, and steps an optax optimiser. Each step simulates fresh paths
(key `fold_in(key, step)`), or the same paths every step with `common_random_numbers=True`.
Non-smooth costs (`Fixed`) are replaced by their smooth surrogate (`costs.smoothed(T)`) for
the gradient only: the objective recorded in `history.objective` is always computed with the
true costs on the same paths (`history.surrogate` holds the differentiated one).

Checkpoints are one `.npz` file (no pickle) written atomically every `checkpoint_every`
steps: a record of the run (strategy structure, objective, fingerprints of model, book,
costs and grid, n_paths, key, version), parameters and optimiser state (equinox
serialisation), history and the step. `resume=` continues from one and reaches bit-identical
parameters to an uninterrupted run on the same device; it refuses a checkpoint of another
run, a damaged file or non-finite parameters with a `ValueError` naming the file and the
field (see `hedgejax._checkpoint`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from . import _checkpoint, risk
from ._costs import AbstractCost, NoCost
from ._exotics import on_grid
from ._grid import TimeGrid
from ._hedge import HedgeResult, hedge
from ._instruments import AbstractInstrument, Book, as_book
from ._io import check_output_file
from ._models.base import AbstractModel
from ._repr import module_repr
from ._strategies.bands import inverse_softplus
from ._strategies.base import AbstractStrategy
from ._validate import check_int, check_positive, runtime_checked

Objective = Callable[[HedgeResult], jax.Array]


class History(eqx.Module):
    """What `fit` recorded, one entry per optimisation step.

    Attributes:
        objective: the objective with the true costs on that step's paths.
        surrogate: the objective that was differentiated (equal to `objective` unless
            costs were smoothed).
        params: the trainable parameters after each step, flattened (steps, n_params).
        unravel: rebuilds the trainable part of the strategy from a row of `params`.
    """

    __repr__ = module_repr

    objective: np.ndarray
    surrogate: np.ndarray
    params: np.ndarray
    unravel: Callable = eqx.field(static=True)


def _default_temperature(book: Book) -> float:
    """1% of the book's size in shares: trades much smaller than that are 'almost no trade'."""
    size = sum(float(jnp.sum(jnp.abs(q))) for q in book.quantities)
    return 0.01 * max(size, 1e-12)


def _step_key(key: jax.Array, step: int, common: bool) -> jax.Array:
    return key if common else jax.random.fold_in(key, step)


def fit(
    strategy: AbstractStrategy,
    objective: Objective,
    model: AbstractModel,
    book: Book | AbstractInstrument,
    costs: AbstractCost | None,
    grid: TimeGrid,
    *,
    key: jax.Array,
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 200,
    n_paths: int = 2**13,
    hedge_model: AbstractModel | None = None,
    common_random_numbers: bool = False,
    temperature: float | None = None,
    clip_norm: float | None = None,
    unwind: bool = False,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: str | os.PathLike | bool | None = None,
) -> tuple[AbstractStrategy, History]:
    """Train `strategy` to minimise `objective(hedge(...))`.

    Args:
        strategy: initial strategy; its inexact-array leaves are trained.
        objective: maps a `HedgeResult` to a scalar to minimise, e.g.
            `risk.mean_cost_variance(lam=0.1)` or `lambda r: risk.entropic(r.pnl, 1.0)`.
        model, book, costs, grid, hedge_model, unwind: as in `hedge()`.
        key: a `jax.random` key; step i uses `fold_in(key, i)`.
        optimizer: an optax transformation (default `optax.adam(1e-2)`; schedules welcome).
        steps: optimisation steps in total (including any done before a resume).
        n_paths: paths per step.
        common_random_numbers: use the same paths at every step.
        temperature: for non-smooth costs, the surrogate's temperature in shares (default 1%
            of the book's total quantity).
        clip_norm: clip gradients to this global norm.
        progress: show a rich progress bar with the objective (on stderr).
        checkpoint: file (.npz) to write every `checkpoint_every` steps and at the end.
        resume: a checkpoint file to continue from, or True to continue from `checkpoint`
            if it exists. Only a checkpoint of the same run resumes (same strategy
            structure, objective, model, hedge model, book, costs, grid, n_paths, key,
            common_random_numbers, unwind, temperature); `steps` may differ.

    Raises:
        ValueError: invalid arguments; a non-finite objective; a checkpoint that is not
            readable, belongs to another run, or holds non-finite parameters (the message
            names the file and the field).

    Returns:
        (fitted strategy, `History`).

    Example:
        >>> import jax, hedgejax as hj
        >>> fitted, history = hj.fit(
        ...     hj.BandHedge(0.05), hj.risk.mean_cost_variance(lam=0.1),
        ...     hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.25),
        ...     hj.Proportional(0.002), hj.TimeGrid(0.25, 63), key=jax.random.key(0),
        ...     steps=5, n_paths=512, progress=False)
        >>> history.objective.shape
        (5,)
    """
    book = on_grid(as_book(book), grid)   # e.g. Asian fixings=None, before tracing
    costs = NoCost() if costs is None else costs
    steps = check_int("steps", steps, 1)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
    if not isinstance(strategy, AbstractStrategy):
        raise ValueError(f"strategy must be an AbstractStrategy, got {type(strategy).__name__}")
    if not callable(objective):
        raise ValueError("objective must be a function of a HedgeResult, e.g. "
                         "hj.risk.mean_cost_variance(lam=0.1)")
    if clip_norm is not None:
        check_positive("clip_norm", clip_norm)
    if checkpoint is not None:  # a folder, a device or an unwritable place: before training
        check_output_file(checkpoint, "checkpoint")
    # out-of-range values put in place by eqx.tree_at: refused now, not at the first step
    runtime_checked((strategy, model, hedge_model, book, costs))
    if optimizer is None:
        optimizer = optax.adam(1e-2)
    if clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)

    smooth = costs.is_smooth
    if not smooth:
        temperature = _default_temperature(book) if temperature is None else temperature
        check_positive("temperature", temperature)
    train_costs = costs if smooth else costs.smoothed(temperature)

    params, static = eqx.partition(strategy, eqx.is_inexact_array)
    if not jax.tree.leaves(params):
        raise ValueError(f"strategy has no trainable parameters: {type(strategy).__name__}")
    flat, unravel = ravel_pytree(params)
    opt_state = optimizer.init(params)

    def run(p, c, k):
        return hedge(model, book, eqx.combine(p, static), c, grid, n_paths, k,
                     hedge_model=hedge_model, unwind=unwind)

    @eqx.filter_jit
    def train_step(p, state, k):
        loss, grads = eqx.filter_value_and_grad(lambda q: objective(run(q, train_costs, k)))(p)
        updates, state = optimizer.update(grads, state, p)
        hard = loss if smooth else objective(run(p, costs, k))
        return eqx.apply_updates(p, updates), state, loss, hard

    start = 0
    objective_log = np.full(steps, np.nan)
    surrogate_log = np.full(steps, np.nan)
    param_log = np.full((steps, flat.size), np.nan)
    meta = _checkpoint.record(
        strategy, params, objective, opt_state=opt_state, clip_norm=clip_norm, model=model,
        book=book, costs=costs, grid=grid,
        hedge_model=model if hedge_model is None else hedge_model, n_paths=n_paths, key=key,
        common_random_numbers=common_random_numbers, unwind=unwind,
        temperature=None if smooth else temperature)
    resume_path = _resume_path(resume, checkpoint)
    if resume_path is not None:
        start, params, opt_state, logs = _checkpoint.load(resume_path, meta, params,
                                                          opt_state, steps)
        objective_log, surrogate_log, param_log = logs

    bar = _progress(progress, steps, start)
    try:
        for i in range(start, steps):
            params, opt_state, loss, hard = train_step(
                params, opt_state, _step_key(key, i, common_random_numbers))
            objective_log[i], surrogate_log[i] = float(hard), float(loss)
            if not np.isfinite(objective_log[i]):
                raise ValueError(f"fit: the objective became non-finite at step {i}; lower "
                                 "the learning rate or set clip_norm")
            param_log[i] = np.asarray(ravel_pytree(params)[0])
            if bar is not None:
                bar.update(i + 1, objective_log[i])
            done = i + 1
            if checkpoint is not None and (done % checkpoint_every == 0 or done == steps):
                _checkpoint.save(checkpoint, meta, done, params, opt_state,
                                 (objective_log, surrogate_log, param_log))
    finally:
        if bar is not None:
            bar.close()
    history = History(objective=objective_log, surrogate=surrogate_log, params=param_log,
                      unravel=unravel)
    return eqx.combine(params, static), history


def _resume_path(resume, checkpoint) -> Path | None:
    if resume is None or resume is False:
        return None
    if resume is True:
        if checkpoint is None:
            raise ValueError("resume=True needs checkpoint= (the file to resume from)")
        path = Path(checkpoint)
        return path if path.exists() else None
    path = Path(resume)
    if not path.exists():
        raise ValueError(f"resume must be an existing checkpoint file, got resume={str(path)!r}")
    return path


class _Bar:
    def __init__(self, steps: int, start: int):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        # on stderr: standard output holds the results a caller may redirect
        self.progress = Progress(TextColumn("fit"), BarColumn(), TextColumn("{task.completed}/"
                                 "{task.total}"), TextColumn("objective {task.fields[obj]}"),
                                 TimeRemainingColumn(), console=Console(stderr=True),
                                 transient=True)
        self.task = self.progress.add_task("fit", total=steps, completed=start, obj="-")
        self.progress.start()

    def update(self, done: int, value: float) -> None:
        self.progress.update(self.task, completed=done, obj=f"{value:.6g}")

    def close(self) -> None:
        self.progress.stop()


def _progress(enabled: bool, steps: int, start: int) -> _Bar | None:
    return _Bar(steps, start) if enabled else None


def _batch_stderr(objective: Objective, result: HedgeResult, batches: int) -> jax.Array:
    """Standard error of the objective by batch means: the objective on `batches` disjoint
    batches of paths; SE = std of batch values / sqrt(batches) (scaled to the full sample
    since each batch is `batches` times smaller)."""
    n = result.pnl.shape[0] // batches * batches

    def batch(x):
        return x[:n].reshape(batches, -1) if jnp.ndim(x) else jnp.broadcast_to(x, (batches,))

    values = jax.vmap(objective)(jax.tree.map(batch, result))
    return jnp.std(values, ddof=1) / np.sqrt(batches)


def evaluate(strategy: AbstractStrategy, objective: Objective, model: AbstractModel,
             book: Book | AbstractInstrument, costs: AbstractCost | None, grid: TimeGrid, *,
             n_paths: int, key: jax.Array, hedge_model: AbstractModel | None = None,
             unwind: bool = False, batches: int = 20) -> dict[str, float]:
    """The true objective of `strategy` on fresh paths (use a key `fit` never saw), with a
    batch-means standard error, and the headline statistics of `summary`.

    Returns a dict: "objective", "objective_stderr" plus the keys of `risk.summary`.
    Raises ValueError if n_paths < 2 x batches (batch means need 2 paths each).
    """
    batches = check_int("batches", batches, 2)
    n_paths = check_int("n_paths", n_paths, 1)
    if n_paths < 2 * batches:
        raise ValueError(f"n_paths must be >= 2 x batches = {2 * batches} (the standard error "
                         f"uses {batches} batch means of at least 2 paths each), got "
                         f"n_paths={n_paths}; use more paths or fewer batches")
    result = hedge(model, book, strategy, costs, grid, n_paths, key, hedge_model=hedge_model,
                   unwind=unwind)
    stats = risk.summary(result)
    return {"objective": float(objective(result)),
            "objective_stderr": float(_batch_stderr(objective, result, batches)), **stats}


def _setter(strategy: AbstractStrategy, param: str) -> Callable[[jax.Array], AbstractStrategy]:
    names = {f.name for f in strategy.__dataclass_fields__.values()}
    if param in names:
        return lambda v: eqx.tree_at(lambda s: getattr(s, param), strategy, v)
    if f"raw_{param}" in names:  # a positive parameter stored as softplus(raw_param)
        return lambda v: eqx.tree_at(lambda s: getattr(s, f"raw_{param}"), strategy,
                                     inverse_softplus(v))
    raise ValueError(f"param must name a parameter of {type(strategy).__name__}, got "
                     f"param={param!r}")


def grid_search(strategy: AbstractStrategy, param: str, values: Sequence[float] | jax.Array,
                objective: Objective, model: AbstractModel, book: Book | AbstractInstrument,
                costs: AbstractCost | None, grid: TimeGrid, *, n_paths: int, key: jax.Array,
                hedge_model: AbstractModel | None = None,
                unwind: bool = False) -> dict[str, np.ndarray]:
    """The true objective of `strategy` with `param` set to each of `values`, all on the same
    paths, in one compiled call (vmapped over the values).

    Returns a dict of arrays over the values: "values", "objective", "mean_cost",
    "std_hedge_error", "mean_trades"; and "best" (the value with the lowest objective).

    Example:
        >>> import jax, hedgejax as hj
        >>> out = hj.grid_search(hj.BandHedge(0.1), "width", [0.0, 0.1, 0.2],
        ...                      hj.risk.mean_cost_variance(lam=0.1), hj.BlackScholes(100.0, 0.2),
        ...                      hj.EuropeanCall(100.0, 0.25), hj.Proportional(0.002),
        ...                      hj.TimeGrid(0.25, 63), n_paths=1024, key=jax.random.key(0))
        >>> out["objective"].shape
        (3,)
    """
    make = _setter(strategy, param)
    book = on_grid(as_book(book), grid)   # e.g. Asian fixings=None, before tracing
    values = jnp.asarray(values, dtype=jnp.result_type(float))
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape {values.shape}")

    @eqx.filter_jit
    def all_values(vals):
        def one(v):
            res = hedge(model, book, make(v), costs, grid, n_paths, key,
                        hedge_model=hedge_model, unwind=unwind)
            return (objective(res), jnp.mean(res.cost), risk.std(res.hedge_error),
                    jnp.mean(res.n_trades.astype(res.pnl.dtype)))
        return jax.vmap(one)(vals)

    obj, cost, std, trades = (np.asarray(x) for x in all_values(values))
    return {"values": np.asarray(values), "objective": obj, "mean_cost": cost,
            "std_hedge_error": std, "mean_trades": trades,
            "best": float(np.asarray(values)[int(np.argmin(obj))])}
