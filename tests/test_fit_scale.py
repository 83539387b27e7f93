"""`fit` at scale: objectives with trained parameters (an OCE-like w), learning rates and
schedules, validation on held-out paths with early stopping, data-parallel gradients over
devices, and the arguments that are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hedgejax as hj
from hedgejax._fit import validation_key

MODEL = hj.BlackScholes(100.0, 0.2)
CALL = hj.EuropeanCall(100.0, 0.25)
GRID = hj.TimeGrid(0.25, 4)
KEY = jax.random.key(11)


class ExpOCE(eqx.Module):
    """The entropic optimised certainty equivalent of the P&L in units of `scale`:
    w + E[exp(-X/scale - w)] - 1, whose minimum over w is the entropic risk log E[exp(-X/scale)]
    (Ben-Tal & Teboulle 2007). `scale` is a Python float: fixed, not trained."""

    w: jax.Array
    scale: float = 10.0

    def __call__(self, result):
        x = result.pnl / self.scale
        return self.w + jnp.mean(jnp.exp(-x - self.w)) - 1.0


def _fit(strategy=None, objective=None, costs=None, **kwargs):
    options = dict(key=KEY, steps=4, n_paths=128, progress=False)
    options.update(kwargs)
    return hj.fit(hj.BandHedge(0.05) if strategy is None else strategy,
                  hj.risk.mean_cost_variance(lam=0.1) if objective is None else objective,
                  MODEL, CALL, hj.Proportional(0.002) if costs is None else costs, GRID,
                  **options)


def _flat(strategy):
    return np.asarray(jax.flatten_util.ravel_pytree(eqx.filter(strategy,
                                                                eqx.is_inexact_array))[0])


def test_the_objective_parameter_is_trained_to_the_grid_search_minimum():
    """BandHedge and the OCE's w trained together on common random numbers: the fitted w is
    the minimiser, found by a grid search over w on the fitted strategy's P&L (the same
    paths), to the grid's spacing; the strategy moved too. Plain sgd does not say its
    rate: NaN is recorded."""
    steps = 40
    # sgd: for w the step 0.5 x (1 - E[exp(-X/scale - w)]) is half a Newton step (the
    # second derivative is about 1), so w converges in these steps; Adam would crawl there
    fitted, history = _fit(objective=ExpOCE(jnp.asarray(0.5)), steps=steps,
                           common_random_numbers=True, optimizer=optax.sgd(0.5))
    w = float(history.objective_fn.w)
    assert history.objective_params.shape == (steps, 1)
    assert history.objective_params[-1, 0] == np.float32(w)
    assert abs(w - 0.5) > 0.3                                         # w moved from 0.5
    assert not np.allclose(history.params[-1], history.params[0])     # and the band did
    assert np.isnan(history.learning_rate).all()

    pnl = np.asarray(hj.hedge(MODEL, CALL, fitted, hj.Proportional(0.002), GRID, 128,
                              KEY).pnl, dtype=float) / 10.0
    grid = np.linspace(-1.0, 1.0, 2001)
    values = grid + np.mean(np.exp(-pnl[None, :] - grid[:, None]), axis=1) - 1.0
    best = grid[np.argmin(values)]
    assert abs(w - best) <= 2 * (grid[1] - grid[0]), (w, best)


@pytest.mark.slow  # compile-bound: the fast tier keeps the cheap checks
def test_learning_rates_are_recorded_and_change_the_fit():
    """A schedule's rate at steps 0, 1, ... is recorded, and it is the rate Adam used: Adam's
    first update is -rate x sign(gradient) per parameter (Kingma & Ba 2015: the
    bias-corrected m / sqrt(v) is g / |g| at the first step, up to eps = 1e-8), so the
    band's raw width moves by schedule(0) = 0.05, not the default 0.01."""
    schedule = optax.linear_schedule(0.05, 0.01, 3)
    _, scheduled = _fit(learning_rate=schedule)
    expected = np.asarray([schedule(i) for i in range(4)], dtype=np.float32)
    np.testing.assert_allclose(scheduled.learning_rate, expected, rtol=1e-6)
    first_move = abs(scheduled.params[0, 0] - _flat(hj.BandHedge(0.05))[0])
    assert first_move == pytest.approx(0.05, rel=1e-4)


START = hj.BandHedge(0.05)


def _held_out(history, costs, objective):
    """The validation objective recomputed: `objective(params)` on 192 paths of
    validation_key(KEY) with `costs`, at a row of flattened strategy parameters."""

    @eqx.filter_jit
    def value(params, objective):
        strategy = eqx.combine(history.unravel(params),
                               eqx.filter(START, eqx.is_inexact_array, inverse=True))
        return objective(hj.hedge(MODEL, CALL, strategy, costs, GRID, 192,
                                  validation_key(KEY)))

    return lambda params, obj=objective: float(value(jnp.asarray(params), obj))


@pytest.mark.slow  # compile-bound: the fast tier keeps the cheap checks
def test_validation_early_stopping_and_restore_best():
    """Gradient ascent (sgd at rate -0.05, through `inject_hyperparams`: the rate recorded)
    makes every validation worse than the one before: validations at steps 0, 2, 4
    (patience 2) and the run stops at step 4; the returned strategy is the initial one (the
    best validation, step 0); each validation value is the objective on `validation_paths`
    held-out paths of `validation_key(key)`, recomputed here; the held-out paths are not the
    training paths."""
    ascent = optax.inject_hyperparams(optax.sgd)(learning_rate=-0.05)
    fitted, history = _fit(strategy=START, optimizer=ascent, steps=9, validate_every=2,
                           validation_paths=192, patience=2)
    assert history.stopped == 4 and history.best_step == 0
    np.testing.assert_array_equal(history.validation_step, [0, 2, 4])
    assert history.objective.shape == (4,) and history.params.shape[0] == 4
    np.testing.assert_array_equal(history.learning_rate, np.full(4, np.float32(-0.05)))
    assert np.all(np.diff(history.validation) > 0)
    np.testing.assert_array_equal(_flat(fitted), _flat(START))

    held_out = _held_out(history, hj.Proportional(0.002), hj.risk.mean_cost_variance(lam=0.1))
    assert history.validation[0] == pytest.approx(held_out(_flat(START)), rel=1e-6)
    assert history.validation[1] == pytest.approx(held_out(history.params[1]), rel=1e-6)
    # step 0's training objective (the same parameters, the training paths) differs
    assert abs(history.objective[0] - history.validation[0]) > 1e-3


@pytest.mark.slow   # a training step with fixed costs, compiled, run three times
def test_validation_with_a_trained_objective_resumes_bit_for_bit(tmp_path):
    """A trained OCE w, fixed costs, validation without patience: all steps run, validations
    at multiples of validate_every only, with the true costs (not the surrogate trained on)
    and the objective's w of that step; restore_best=False returns the last parameters. The
    run checkpointed half way and resumed reaches the uninterrupted run's parameters, w and
    logs bit for bit; a run that does not train the objective refuses the checkpoint."""
    fixed = hj.Fixed(0.01)
    options = dict(strategy=START, objective=ExpOCE(jnp.asarray(0.0)), costs=fixed, steps=5,
                   validate_every=2, validation_paths=192, restore_best=False,
                   learning_rate=optax.cosine_decay_schedule(0.1, 5))
    last, history = _fit(**options)
    assert history.stopped is None and history.objective.shape == (5,)
    np.testing.assert_array_equal(history.validation_step, [0, 2, 4])
    np.testing.assert_array_equal(_flat(last), history.params[-1])
    held_out = _held_out(history, fixed, ExpOCE(jnp.asarray(0.0)))
    assert history.validation[0] == pytest.approx(held_out(_flat(START)), rel=1e-6)
    w = jnp.asarray(history.objective_params[3, 0])
    assert history.validation[2] == pytest.approx(held_out(history.params[3], ExpOCE(w)),
                                                  rel=1e-6)

    path = tmp_path / "joint.npz"
    _fit(**dict(options, steps=3), checkpoint=path)
    resumed, again = _fit(**options, checkpoint=path, resume=True)
    np.testing.assert_array_equal(_flat(resumed), _flat(last))
    assert float(again.objective_fn.w) == float(history.objective_fn.w)
    for field in ("objective", "params", "learning_rate", "objective_params",
                  "validation_step", "validation"):
        np.testing.assert_array_equal(getattr(again, field), getattr(history, field),
                                      err_msg=field)
    assert again.best_step == history.best_step
    with pytest.raises(ValueError, match="written by a different run"):
        _fit(**dict(options, train_objective=False), checkpoint=path, resume=True)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(optimizer=optax.adam(1e-3), learning_rate=1e-3), "optimizer or learning_rate"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(learning_rate="fast"), "learning_rate"),
    (dict(learning_rate=np.ones(2)), "learning_rate"),
    (dict(validate_every=0), "validate_every"),
    (dict(validate_every=50), r"validate_every must be an integer in \[1, steps"),
    (dict(learning_rate=lambda step: -0.05), "finite rate > 0"),
    (dict(learning_rate=lambda step: jnp.nan), "finite rate > 0"),
    (dict(learning_rate=lambda: 0.01), "calling it at step 0 failed"),
    (dict(learning_rate=lambda step: jnp.ones(2)), "scalar rate"),
    (dict(patience=2), "patience"),
    (dict(validation_paths=64), "validation_paths"),
    (dict(validate_every=2, patience=0), "patience"),
    (dict(validate_every=2, validation_paths=0), "validation_paths"),
    (dict(restore_best="yes"), "restore_best"),
    (dict(devices=0), "devices"),
    (dict(devices=10_000), "devices"),
    (dict(train_objective=True), "train_objective"),
    (dict(train_objective="auto"), "train_objective"),
])
def test_bad_arguments_are_refused_by_name(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        _fit(**kwargs)


@pytest.mark.slow   # one more compiled training step
def test_a_fixed_objective_module_is_not_trained():
    """train_objective=False keeps an objective Module's leaves fixed (the parameters are
    the strategy's alone); the default Adam's rate 1e-2 is recorded."""
    objective = ExpOCE(jnp.asarray(0.25))
    _, history = _fit(objective=objective, train_objective=False, steps=2)
    assert history.objective_fn is objective and history.objective_params.shape == (2, 0)
    np.testing.assert_array_equal(history.learning_rate, np.full(2, jnp.asarray(1e-2)))


DEVICES = """
import json, sys
import jax
import equinox as eqx, jax.numpy as jnp, numpy as np
import hedgejax as hj
from hedgejax._fit import _Sharded

assert jax.local_device_count() == 2
model, call = hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.25)
grid, costs, key, n = hj.TimeGrid(0.25, 4), hj.Proportional(0.002), jax.random.key(3), 300
flat = lambda t: np.asarray(jax.flatten_util.ravel_pytree(t)[0], dtype=float).tolist()


class OCE(eqx.Module):
    w: jax.Array
    def __call__(self, r):
        return self.w + jnp.mean(jnp.exp(-r.pnl / 10.0 - self.w)) - 1.0


def entropic(r):
    return hj.risk.entropic(r.pnl, 0.5)


out = {}
for bits in ("32", "64"):
    jax.config.update("jax_enable_x64", bits == "64")
    policy = hj.NeuralHedge(jax.random.key(0), hidden=4, depth=1)
    params, static = eqx.partition(policy, eqx.is_inexact_array)
    # away from the untrained policy's exact zeros: every gradient component non-trivial
    params = jax.tree.map(lambda x: x + 0.05 * jnp.sin(jnp.arange(x.size).reshape(x.shape)),
                          params)

    def one(p):
        return hj.hedge(model, call, eqx.combine(p, static), costs, grid, n, key)

    sharded = _Sharded(model, hj.Book([call]), grid, None, False, 2, static)
    res = out[bits] = {}
    if bits == "32":
        pnl1 = jax.jit(lambda p: one(p).pnl)(params)
        pnl2 = jax.jit(lambda p: sharded.run(p, costs, key, n).pnl)(params)
        res["pnl_equal"] = bool(np.array_equal(pnl1, pnl2))
    v1, g1 = eqx.filter_jit(eqx.filter_value_and_grad(lambda p: entropic(one(p))))(params)
    v2, (g2, _) = jax.jit(lambda p: sharded.value_and_grad(p, None, lambda o: entropic,
                                                            costs, key, n))(params)
    res.update(v=[float(v1), float(v2)], g1=flat(g1), g2=flat(g2))
    if bits == "64":
        for d in (None, 2):
            fitted, h = hj.fit(eqx.combine(params, static), OCE(jnp.asarray(0.0)), model,
                               call, costs, grid, key=key, steps=3, n_paths=n,
                               progress=False, devices=d, learning_rate=0.05)
            res[str(d)] = dict(objective=h.objective.tolist(), params=h.params.tolist(),
                               w=float(h.objective_fn.w),
                               fitted=flat(eqx.filter(fitted, eqx.is_inexact_array)))
print(json.dumps(out))
"""


@pytest.mark.slow   # a subprocess compiling 1- and 2-device runs and training steps
def test_two_devices_give_the_one_device_gradients_and_fit():
    """Paths split over 2 devices (XLA's host-platform device count; n_paths = 300, so the
    second device's slice is padded to 64-path rows and cut): the per-path P&L is the
    one-device run's bit for bit (`hedge` under `jax.jit`, as `fit` runs it); the objective
    and its gradient equal the one-device ones to rounding (the per-device gradients are
    summed in another order): float32 2e-5, float64 1e-10, relative to the largest
    gradient component; in float64 so do three steps of `fit` with a trained OCE w."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run([sys.executable, "-c", DEVICES], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["32"]["pnl_equal"]
    for bits, rtol in (("32", 2e-5), ("64", 1e-10)):
        res = out[bits]
        assert res["v"][1] == pytest.approx(res["v"][0], rel=rtol)
        g1, g2 = np.asarray(res["g1"]), np.asarray(res["g2"])
        assert np.max(np.abs(g1)) > 1e-3
        np.testing.assert_allclose(g2, g1, rtol=0, atol=rtol * np.max(np.abs(g1)))
    one, two = out["64"]["None"], out["64"]["2"]
    for field in ("objective", "w"):
        np.testing.assert_allclose(two[field], one[field], rtol=1e-9, err_msg=field)
    scale = np.max(np.abs(one["fitted"]))
    np.testing.assert_allclose(two["fitted"], one["fitted"], rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(two["params"], one["params"], rtol=0, atol=1e-9 * scale)
