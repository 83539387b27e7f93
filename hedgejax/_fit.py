"""Learning strategies: `fit` trains a strategy's parameters by gradient descent through the
whole simulated hedge; `evaluate` and `grid_search` measure the true objective on fresh paths.

`fit` differentiates an objective of `hedge()` (e.g. `risk.mean_cost_variance(lam=0.1)`)
with respect to every inexact-array leaf of the strategy (`eqx.is_inexact_array`), keeping
everything else static, and steps an optax optimiser. Each step simulates fresh paths
(key `fold_in(key, step)`), or the same paths every step with `common_random_numbers=True`.
Non-smooth costs (`Fixed`) are replaced by their smooth surrogate (`costs.smoothed(T)`) for
the gradient only: the objective recorded in `history.objective` is always computed with the
true costs on the same paths (`history.surrogate` holds the differentiated one).

Training at scale:

- An objective that is an equinox Module with inexact-array leaves (the optimised certainty
  equivalent's w, `risk.oce(utility)`) is trained jointly with the strategy: one optimiser
  steps the pair (strategy parameters, objective parameters), as Buehler et al. (2019,
  "Deep hedging", Quantitative Finance 19(8), section 3.2) minimise over (policy, w)
  together. The fitted objective is `history.objective_fn`.
- `learning_rate=` (a number or an optax schedule step -> rate) for the default Adam,
  through `optax.inject_hyperparams`, which keeps the rate in the optimiser state: the rate
  of every step is recorded (`history.learning_rate`).
- Validation on held-out paths every `validate_every` steps, with early stopping
  (`patience`) and the best validated parameters returned (`restore_best`), as in
  Prechelt (1998, "Early stopping - but when?", Neural Networks: Tricks of the Trade).
- Data-parallel gradients (`devices=d`): each step's paths are split over d local devices
  in contiguous slices of the global path index, each device running the same
  single-device program as `hedge()`; the per-path results are all-gathered, so the
  objective (entropic risk, expected shortfall: not a mean over paths) is computed on all
  paths exactly as on one device, and each device back-propagates the objective's
  gradient with respect to its own paths, the parameter gradients being summed across
  devices (`jax.shard_map` over a 1-D mesh). Same paths and per-path P&L bit for bit as one
  device; gradients and fitted parameters equal to rounding (summation order).

Checkpoints are one `.npz` file (no pickle) written atomically every `checkpoint_every`
steps: a record of the run (strategy structure, objective, fingerprints of model, book,
costs and grid, n_paths, key, the learning rate and the validation settings, version),
parameters and optimiser state (equinox serialisation), history (validation and best
parameters included) and the step. `resume=` continues from one and reaches bit-identical
parameters to an uninterrupted run on the same device layout; it refuses a checkpoint of
another run, a damaged file or non-finite parameters with a `ValueError` naming the file
and the field (see `hedgejax._checkpoint`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from . import _checkpoint, risk
from ._costs import AbstractCost, NoCost
from ._exotics import on_grid
from ._grid import TimeGrid
from ._hedge import _LANES, DEFAULT_BLOCK_SIZE, HedgeResult, _prepare, _round_up, _run, hedge
from ._instruments import AbstractInstrument, Book, as_book
from ._io import check_output_file
from ._models.base import AbstractModel
from ._repr import module_repr
from ._strategies.bands import inverse_softplus
from ._strategies.base import AbstractStrategy
from ._validate import check_int, check_positive, runtime_checked

Objective = Callable[[HedgeResult], jax.Array]


class History(eqx.Module):
    """What `fit` recorded, one entry per optimisation step done (fewer than `steps` when
    early stopping ended the run).

    Attributes:
        objective: the objective with the true costs on that step's paths.
        surrogate: the objective that was differentiated (equal to `objective` unless
            costs were smoothed).
        params: the strategy's trainable parameters after each step, flattened
            (steps, n_params).
        unravel: rebuilds the trainable part of the strategy from a row of `params`.
        learning_rate: the rate each step used (steps,): the default Adam's 1e-2, the
            `learning_rate=` given or its schedule's value, or the rate an optimiser built
            with `optax.inject_hyperparams` holds; NaN where the optimiser does not say.
        objective_fn: the objective after training: the given one, with its trained
            parameters in place when it has any (e.g. `risk.oce`'s w).
        objective_params: the objective's trainable parameters after each step, flattened
            (steps, k); k = 0 when the objective has none.
        validation_step: the steps (optimisation steps done: 0 = before training) at which
            the validation objective was measured.
        validation: the validation objective at those steps (true costs, held-out paths).
        best_step: the validation step with the lowest validation objective (the first of
            equals); None without validation.
        stopped: the step at which early stopping ended the run; None if it ran all steps.
    """

    __repr__ = module_repr

    objective: np.ndarray
    surrogate: np.ndarray
    params: np.ndarray
    unravel: Callable = eqx.field(static=True)
    learning_rate: np.ndarray | None = None
    objective_fn: Any = None
    objective_params: np.ndarray | None = None
    validation_step: np.ndarray | None = None
    validation: np.ndarray | None = None
    best_step: int | None = None
    stopped: int | None = None


def _default_temperature(book: Book) -> float:
    """1% of the book's size in shares: trades much smaller than that are 'almost no trade'."""
    size = sum(float(jnp.sum(jnp.abs(q))) for q in book.quantities)
    return 0.01 * max(size, 1e-12)


def _step_key(key: jax.Array, step: int, common: bool) -> jax.Array:
    return key if common else jax.random.fold_in(key, step)


def validation_key(key: jax.Array) -> jax.Array:
    """The key of `fit`'s validation paths: `fold_in(fold_in(key, 2**32 - 1), 0)`, a key of
    a key no training step uses (step i draws with `fold_in(key, i)`, i < steps, or with
    `key` itself under `common_random_numbers`)."""
    return jax.random.fold_in(jax.random.fold_in(key, 2**32 - 1), 0)


def _learning_rate(state: Any) -> jax.Array | None:
    """The learning rate an `optax.inject_hyperparams` optimiser holds in its state (the
    rate of the update that produced the state), or None."""
    found = []

    def visit(node):
        hyper = getattr(node, "hyperparams", None)
        if isinstance(hyper, dict) and "learning_rate" in hyper:
            found.append(hyper["learning_rate"])
            return True
        return False

    jax.tree.leaves(state, is_leaf=visit)
    return found[0] if found else None


def _check_learning_rate(learning_rate: Any, optimizer: Any) -> None:
    if learning_rate is None:
        return
    if optimizer is not None:
        raise ValueError("give optimizer or learning_rate, not both (learning_rate sets the "
                         "default Adam's rate; put a schedule inside your own optimizer)")
    if callable(learning_rate):
        _check_schedule(learning_rate)
        return
    if isinstance(learning_rate, bool) or not isinstance(
            learning_rate, (int, float, np.integer, np.floating, np.ndarray, jax.Array)):
        raise ValueError(f"learning_rate must be a number > 0 or an optax schedule (step -> "
                         f"rate), got learning_rate={learning_rate!r}")
    if np.ndim(learning_rate) != 0:
        raise ValueError(f"learning_rate must be a scalar, got shape {np.shape(learning_rate)}")
    check_positive("learning_rate", learning_rate)


def _check_schedule(schedule: Callable) -> None:
    """An optax schedule (step -> rate): its rate at step 0 must be a finite scalar > 0
    (checked eagerly; a schedule that turns negative later is the caller's design)."""
    try:
        first = schedule(jnp.asarray(0, jnp.int32))
    except Exception as error:      # noqa: BLE001 - any failure is a bad schedule
        raise ValueError(f"learning_rate must be a number > 0 or an optax schedule (step -> "
                         f"rate); calling it at step 0 failed: {type(error).__name__}: "
                         f"{error}") from None
    if np.ndim(first) != 0:
        raise ValueError(f"learning_rate's schedule must return a scalar rate, got shape "
                         f"{np.shape(first)} at step 0")
    value = float(first)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"learning_rate's schedule must give a finite rate > 0, got "
                         f"{value!r} at step 0")


def _describe_rate(learning_rate: Any) -> Any:
    if learning_rate is None:
        return None
    if callable(learning_rate):
        return _checkpoint.describe_objective(learning_rate)
    return float(learning_rate)


class _Sharded:
    """`hedge()` of the training set-up with the paths split over `n_devices` local devices
    (module docstring): each device runs `_run` of one contiguous slice of `per` paths
    (a multiple of 64) of the global path index, the same program as `hedge(devices=...)`
    runs per device; the slices are all-gathered in path order and cut to `n_paths`."""

    def __init__(self, model, book, grid, hedge_model, unwind, n_devices, static):
        self.model, self.book, self.grid = model, book, grid
        self.hedge_model, self.unwind, self.static = hedge_model, unwind, static
        self.n_devices = n_devices
        self.mesh = Mesh(np.asarray(jax.local_devices()[:n_devices]), ("paths",))
        self.replicated = NamedSharding(self.mesh, P())

    def _local(self, params, costs, key, n_paths):
        """This device's slice of the run (inside shard_map)."""
        strategy = eqx.combine(params, self.static)
        prep, _ = _prepare(self.model, self.book, strategy, costs, self.grid, n_paths, key,
                           self.hedge_model, self.unwind, DEFAULT_BLOCK_SIZE, 1)
        # as hedge()'s dispatch does: the program does not key on the whole run's count
        prep = dataclasses.replace(prep, n_paths=0)
        per = self._per(n_paths)
        offset = lax.axis_index("paths").astype(jnp.uint32) * jnp.uint32(per)
        return _run(prep, per, offset, True)

    def _per(self, n_paths: int) -> int:
        return _round_up(-(-n_paths // self.n_devices), _LANES)

    @staticmethod
    def _gather(tree, n_paths):
        def gather(x):
            if jnp.ndim(x) == 0:        # V0: the same on every device
                return x
            return lax.all_gather(x, "paths", axis=0, tiled=True)[:n_paths]
        return jax.tree.map(gather, tree)

    def run(self, params, costs, key, n_paths) -> HedgeResult:
        """The whole run's `HedgeResult`, replicated on every device."""
        def body(p, k):
            return self._gather(self._local(p, costs, k, n_paths), n_paths)
        return jax.shard_map(body, mesh=self.mesh, in_specs=(P(), P()), out_specs=P(),
                             check_vma=False)(params, key)

    def value_and_grad(self, params, objective_params, objective_of, costs, key, n_paths):
        """(objective, (strategy gradient, objective gradient)): each device back-propagates
        the objective's gradient with respect to its own paths' results (the cotangent of
        V0, shared by all paths, on device 0 only), and the strategy gradients are summed
        over the devices."""
        per = self._per(n_paths)
        total = per * self.n_devices

        def body(p, o, k):
            def forward(q):
                return eqx.partition(self._local(q, costs, k, n_paths), eqx.is_inexact_array)

            local, pullback, other = jax.vjp(forward, p, has_aux=True)
            full, full_other = self._gather(local, n_paths), self._gather(other, n_paths)

            def loss(d, obj_params):
                return objective_of(obj_params)(eqx.combine(d, full_other))

            value, (g_full, g_obj) = jax.value_and_grad(loss, argnums=(0, 1))(full, o)
            index = lax.axis_index("paths")

            def mine(g):
                if jnp.ndim(g) == 0:
                    return jnp.where(index == 0, g, jnp.zeros_like(g))
                g = jnp.pad(g, [(0, total - n_paths)] + [(0, 0)] * (g.ndim - 1))
                return lax.dynamic_slice_in_dim(g, index * per, per)

            (g_params,) = pullback(jax.tree.map(mine, g_full))
            return value, (lax.psum(g_params, "paths"), g_obj)

        return jax.shard_map(body, mesh=self.mesh, in_specs=(P(), P(), P()),
                             out_specs=(P(), (P(), P())),
                             check_vma=False)(params, objective_params, key)


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
    learning_rate: float | Callable[[jax.Array], jax.Array] | None = None,
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
    train_objective: bool | None = None,
    validate_every: int | None = None,
    validation_paths: int | None = None,
    patience: int | None = None,
    restore_best: bool = True,
    devices: int | None = None,
) -> tuple[AbstractStrategy, History]:
    """Train `strategy` to minimise `objective(hedge(...))`.

    Args:
        strategy: initial strategy; its inexact-array leaves are trained.
        objective: maps a `HedgeResult` to a scalar to minimise, e.g.
            `risk.mean_cost_variance(lam=0.1)` or `lambda r: risk.entropic(r.pnl, 1.0)`.
            An equinox Module objective with inexact-array leaves (e.g. `risk.oce`'s w) has
            them trained jointly with the strategy (see `train_objective`); keep a Module's
            fixed settings (a risk aversion) as Python floats or static fields.
        model, book, costs, grid, hedge_model, unwind: as in `hedge()`.
        key: a `jax.random` key; step i uses `fold_in(key, i)`.
        optimizer: an optax transformation (default `optax.adam(1e-2)`; schedules welcome).
        learning_rate: the default Adam's learning rate, a number > 0 or an optax schedule
            (a function of the step count 0, 1, ... returning the rate, e.g.
            `optax.cosine_decay_schedule(1e-2, steps)`); built with
            `optax.inject_hyperparams(optax.adam)`, so each step's rate is recorded in
            `history.learning_rate`. Not together with `optimizer`.
        steps: optimisation steps in total (including any done before a resume).
        n_paths: paths per step.
        common_random_numbers: use the same paths at every step.
        temperature: for non-smooth costs, the surrogate's temperature in shares (default 1%
            of the book's total quantity).
        clip_norm: clip gradients to this global norm (over strategy and objective
            parameters together).
        progress: show a rich progress bar with the objective (on stderr).
        checkpoint: file (.npz) to write every `checkpoint_every` steps, at an early stop
            and at the end.
        resume: a checkpoint file to continue from, or True to continue from `checkpoint`
            if it exists. Only a checkpoint of the same run resumes (same strategy
            structure, objective, model, hedge model, book, costs, grid, n_paths, key,
            common_random_numbers, unwind, temperature, learning rate, whether the
            objective is trained, validation settings); `steps` may differ. A run that
            stopped early stays stopped.
        train_objective: train the objective's inexact-array leaves with the strategy.
            None (default): when the objective is an equinox Module that has some; True:
            require it (ValueError if there are none); False: keep them fixed.
        validate_every: measure the objective with the true costs on `validation_paths`
            held-out paths before training (step 0) and after every `validate_every` steps
            (steps that are multiples of it). The held-out paths come from
            `validation_key(key)`, which no training step uses, and are the same at every
            validation. None (default): no validation.
        validation_paths: held-out paths per validation (default `n_paths`).
        patience: stop when this many validations in a row did not lower the best
            validation objective (None: never stop early). Needs `validate_every`.
        restore_best: with validation, return the parameters (strategy and objective) of
            the validation with the lowest objective instead of the last ones (the last
            steps after the last validation are then not returned).
        devices: split each step's paths over this many local devices (data parallel
            gradients, module docstring; at most `jax.local_device_count()`, one process).
            None or 1: one device, as `hedge()` under `jax.jit`. Each device simulates
            ceil(n_paths / devices) rounded up to a multiple of 64 paths, so choose
            `n_paths` a multiple of 64 x devices to waste none.

    Raises:
        ValueError: invalid arguments (naming them); a non-finite objective or validation
            objective; a checkpoint that is not readable, belongs to another run, or holds
            non-finite parameters (the message names the file and the field).

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
    _check_learning_rate(learning_rate, optimizer)
    validating = _check_validation(validate_every, validation_paths, patience, restore_best)
    if validating:
        validate_every = check_int("validate_every", validate_every, 1)
        if validate_every > steps:
            raise ValueError(f"validate_every must be an integer in [1, steps={steps}] (a "
                             f"validation after training), got validate_every={validate_every}")
        validation_paths = n_paths if validation_paths is None else validation_paths
    n_devices = _check_devices(devices)
    if train_objective not in (None, True, False):
        raise ValueError(f"train_objective must be None, True or False, got "
                         f"train_objective={train_objective!r}")
    if checkpoint is not None:  # a folder, a device or an unwritable place: before training
        check_output_file(checkpoint, "checkpoint")
    # out-of-range values put in place by eqx.tree_at: refused now, not at the first step
    runtime_checked((strategy, model, hedge_model, book, costs))
    known_rate = None
    if optimizer is None:
        if learning_rate is None:
            optimizer, known_rate = optax.adam(1e-2), 1e-2
        else:
            optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
    if clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)

    smooth = costs.is_smooth
    if not smooth:
        temperature = _default_temperature(book) if temperature is None else temperature
        check_positive("temperature", temperature)
    train_costs = costs if smooth else costs.smoothed(temperature)

    strategy_params, static = eqx.partition(strategy, eqx.is_inexact_array)
    objective_params, objective_static = None, None
    if isinstance(objective, eqx.Module) and train_objective is not False:
        objective_params, objective_static = eqx.partition(objective, eqx.is_inexact_array)
        if not jax.tree.leaves(objective_params):
            objective_params = None
    joint = objective_params is not None
    if train_objective and not joint:
        raise ValueError("train_objective=True needs an equinox Module objective with "
                         f"inexact-array leaves, got {type(objective).__name__}")
    if not jax.tree.leaves(strategy_params) and not joint:
        raise ValueError(f"strategy has no trainable parameters: {type(strategy).__name__}")
    # Without a trained objective the parameters are the strategy's alone, as they always
    # were (same optimiser state, same checkpoints).
    params = (strategy_params, objective_params) if joint else strategy_params
    flat, unravel = ravel_pytree(strategy_params)
    objective_flat = ravel_pytree(objective_params)[0] if joint else np.zeros(0)

    def objective_of(obj_params):
        return eqx.combine(obj_params, objective_static) if joint else objective

    def split(p):
        return (p[0], p[1]) if joint else (p, None)

    sharded = None
    if n_devices > 1:
        sharded = _Sharded(model, book, grid, hedge_model, unwind, n_devices, static)

    def run(sp, c, k, n):
        if sharded is not None:
            return sharded.run(sp, c, k, n)
        return hedge(model, book, eqx.combine(sp, static), c, grid, n, k,
                     hedge_model=hedge_model, unwind=unwind)

    def value_and_grad(p, k):
        sp, op = split(p)
        if sharded is not None:
            loss, (g_sp, g_op) = sharded.value_and_grad(sp, op, objective_of, train_costs, k,
                                                        n_paths)
            return loss, ((g_sp, g_op) if joint else g_sp)
        return eqx.filter_value_and_grad(
            lambda q: objective_of(split(q)[1])(run(split(q)[0], train_costs, k, n_paths)))(p)

    def record_rate(state):
        rate = _learning_rate(state)
        return jnp.asarray(jnp.nan if known_rate is None else known_rate) if rate is None \
            else rate

    # The step's key is derived inside the compiled step (an eager fold_in costs a dispatch,
    # ~2 ms, per step); the same key bit for bit.
    @eqx.filter_jit
    def train_step(p, state, key, step):
        k = _step_key(key, step, common_random_numbers)
        loss, grads = value_and_grad(p, k)
        updates, state = optimizer.update(grads, state, p)
        if smooth:
            hard = loss
        else:
            sp, op = split(p)
            hard = objective_of(op)(run(sp, costs, k, n_paths))
        p = eqx.apply_updates(p, updates)
        sp, op = split(p)
        flats = (ravel_pytree(sp)[0], ravel_pytree(op)[0] if joint else None)
        return p, state, hard, loss, record_rate(state), flats

    if validating:
        held_out = validation_key(key)

        @eqx.filter_jit
        def validate(p):
            sp, op = split(p)
            return objective_of(op)(run(sp, costs, held_out, validation_paths))

    opt_state = optimizer.init(params)
    if sharded is not None:     # replicated over the mesh, where the step's outputs live
        params, opt_state = jax.device_put((params, opt_state), sharded.replicated)

    start = 0
    objective_log = np.full(steps, np.nan)
    surrogate_log = np.full(steps, np.nan)
    param_log = np.full((steps, flat.size), np.nan)
    rate_log = np.full(steps, np.nan)
    objective_param_log = np.full((steps, objective_flat.size), np.nan)
    val = _Validation()
    meta = _checkpoint.record(
        strategy, params, objective, opt_state=opt_state, clip_norm=clip_norm, model=model,
        book=book, costs=costs, grid=grid,
        hedge_model=model if hedge_model is None else hedge_model, n_paths=n_paths, key=key,
        common_random_numbers=common_random_numbers, unwind=unwind,
        temperature=None if smooth else temperature,
        # new fields are None when unused, so checkpoints written before them still resume
        learning_rate=_describe_rate(learning_rate),
        train_objective=True if joint else None,
        # restore_best only chooses what is returned: a resume may change it
        validation=[validate_every, validation_paths, patience] if validating else None)
    resume_path = _resume_path(resume, checkpoint)
    if resume_path is not None:
        start, params, opt_state, logs, extras = _checkpoint.load(
            resume_path, meta, params, opt_state, steps)
        objective_log, surrogate_log, param_log = logs
        rate_log = _per_step(extras, "learning_rate", rate_log, start)
        if known_rate is not None:      # a checkpoint written before rates were logged
            rate_log[:start] = np.where(np.isnan(rate_log[:start]),
                                        np.asarray(jnp.asarray(known_rate)), rate_log[:start])
        objective_param_log = _per_step(extras, "objective_params", objective_param_log, start)
        if validating:
            val = _Validation.restore(extras, params, resume_path)
        if sharded is not None:
            params, opt_state = jax.device_put((params, opt_state), sharded.replicated)

    def save(done):
        extras = {"learning_rate": rate_log, "objective_params": objective_param_log}
        if validating:
            extras.update(val.extras())
        _checkpoint.save(checkpoint, meta, done, params, opt_state,
                         (objective_log, surrogate_log, param_log), extras=extras)

    def check_validation(done):
        value = float(validate(params))
        if not np.isfinite(value):
            raise ValueError(f"fit: the validation objective became non-finite at step {done}")
        val.add(done, value, params, patience)

    if validating and start == 0 and not val.steps:
        check_validation(0)
    end = val.stopped if val.stopped is not None else steps
    bar = _progress(progress, steps, start) if val.stopped is None else None
    try:
        for i in range(start, end):
            params, opt_state, *logged = train_step(params, opt_state, key,
                                                    np.asarray(i, np.uint32))
            # one transfer to the host for everything the step logs
            hard, loss, rate, (row, objective_row) = jax.device_get(logged)
            objective_log[i], surrogate_log[i] = hard, loss
            if not np.isfinite(objective_log[i]):
                raise ValueError(f"fit: the objective became non-finite at step {i}; lower "
                                 "the learning rate or set clip_norm")
            param_log[i] = row
            rate_log[i] = rate
            if joint:
                objective_param_log[i] = objective_row
            if bar is not None:
                bar.update(i + 1, objective_log[i])
            done = i + 1
            if validating and done % validate_every == 0:
                check_validation(done)
            if checkpoint is not None and (done % checkpoint_every == 0 or done == steps
                                           or val.stopped is not None):
                save(done)
            if val.stopped is not None:
                end = done
                break
    finally:
        if bar is not None:
            bar.close()
    if validating and restore_best:
        params = val.best_params
    strategy_params, objective_params = split(params)
    history = History(
        objective=objective_log[:end], surrogate=surrogate_log[:end], params=param_log[:end],
        unravel=unravel, learning_rate=rate_log[:end],
        objective_fn=objective_of(objective_params),
        objective_params=objective_param_log[:end],
        validation_step=np.asarray(val.steps, dtype=np.int64) if validating else None,
        validation=np.asarray(val.values, dtype=float) if validating else None,
        best_step=val.best_step if validating else None, stopped=val.stopped)
    return eqx.combine(strategy_params, static), history


def _check_validation(validate_every, validation_paths, patience, restore_best) -> bool:
    """True when validating; ValueError naming an argument that is invalid or needs
    validate_every."""
    if not isinstance(restore_best, (bool, np.bool_)):
        raise ValueError(f"restore_best must be True or False, got restore_best={restore_best!r}")
    if validate_every is None:
        for name, value in (("validation_paths", validation_paths), ("patience", patience)):
            if value is not None:
                raise ValueError(f"{name} needs validate_every= (validation every n steps), "
                                 f"got {name}={value!r} and validate_every=None")
        return False
    check_int("validate_every", validate_every, 1)
    if validation_paths is not None:
        check_int("validation_paths", validation_paths, 1)
    if patience is not None:
        check_int("patience", patience, 1)
    return True


def _check_devices(devices) -> int:
    if devices is None:
        return 1
    n = check_int("devices", devices, 1)
    if n > jax.local_device_count():
        raise ValueError(f"devices must be <= {jax.local_device_count()} (the local devices), "
                         f"got devices={n}")
    if n > 1 and jax.process_count() > 1:
        raise ValueError(f"devices={n} splits paths over one process's devices; this is a "
                         f"multi-process run ({jax.process_count()} processes)")
    return n


def _per_step(extras: dict, name: str, log: np.ndarray, start: int) -> np.ndarray:
    """A per-step log from a checkpoint's extras, in a log of this run's length (absent in
    checkpoints written before it: NaN)."""
    saved = extras.get(name)
    if saved is not None and saved.shape[1:] == log.shape[1:]:
        kept = saved[:min(start, log.shape[0])]
        log[:len(kept)] = kept
    return log


class _Validation:
    """The validations of a run: steps, values, the best parameters, the early stop."""

    def __init__(self):
        self.steps: list[int] = []
        self.values: list[float] = []
        self.best_params = None
        self.best_step: int | None = None
        self.stopped: int | None = None

    def add(self, step: int, value: float, params, patience: int | None) -> None:
        self.steps.append(step)
        self.values.append(value)
        if self.best_step is None or value < min(self.values[:-1]):
            self.best_step, self.best_params = step, params
        since = len(self.steps) - 1 - self.steps.index(self.best_step)
        if patience is not None and since >= patience:
            self.stopped = step

    def extras(self) -> dict[str, np.ndarray]:
        return {"validation_step": np.asarray(self.steps, dtype=np.int64),
                "validation": np.asarray(self.values, dtype=float),
                "best_params": np.asarray(ravel_pytree(self.best_params)[0]),
                "stopped": np.asarray(-1 if self.stopped is None else self.stopped)}

    @classmethod
    def restore(cls, extras: dict, like, path) -> _Validation:
        val = cls()
        try:
            val.steps = [int(s) for s in extras["validation_step"]]
            val.values = [float(v) for v in extras["validation"]]
            stopped = int(extras["stopped"])
            flat = np.asarray(extras["best_params"])
            like_flat, unravel = ravel_pytree(like)
            if flat.shape != like_flat.shape or not val.steps:
                raise ValueError(f"best_params has shape {flat.shape}, expected "
                                 f"{like_flat.shape}")
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"checkpoint {str(path)!r} is damaged: its validation record "
                             f"({type(error).__name__}: {error})") from None
        if not np.all(np.isfinite(flat)):
            raise ValueError(f"checkpoint {str(path)!r}: its best_params are not finite; "
                             "refusing it")
        val.best_params = unravel(jnp.asarray(flat, dtype=like_flat.dtype))
        val.best_step = val.steps[int(np.argmin(val.values))]
        val.stopped = None if stopped < 0 else stopped
        return val


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
