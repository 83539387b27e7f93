"""`fit` checkpoints: a checkpoint resumes only the run that wrote it; anything else (another
run, a damaged file, non-finite parameters) is refused with a ValueError naming the file and
the field."""

from __future__ import annotations

import functools
import io
import json
import os
import re
import stat
import zipfile

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hedgejax as hj
from hedgejax import _checkpoint

GRID = hj.TimeGrid(0.25, 8)
KEY = jax.random.key(3)


def _run(path=None, resume=None, *, strategy=None, lam=0.1, model=None, hedge_model=None,
         book=None, costs=None, grid=GRID, n_paths=128, key=KEY, crn=False, steps=2,
         unwind=False, objective=None, **extra):
    return hj.fit(strategy if strategy is not None else hj.BandHedge(0.05),
                  objective if objective is not None else hj.risk.mean_cost_variance(lam=lam),
                  model if model is not None else hj.BlackScholes(100.0, 0.2),
                  book if book is not None else hj.EuropeanCall(100.0, 0.25),
                  costs if costs is not None else hj.Proportional(0.002), grid,
                  key=key, steps=steps, n_paths=n_paths, hedge_model=hedge_model,
                  common_random_numbers=crn, unwind=unwind, progress=False,
                  checkpoint=path, resume=resume, **extra)


@pytest.fixture
def written(tmp_path):
    path = tmp_path / "ck.npz"
    _run(path)
    return path


# Each case changes one thing about the run; the message must name that field.
MISMATCHES = {
    "strategy": dict(strategy=hj.AsymmetricBand(0.05, 0.05)),
    "objective": dict(lam=0.2),
    "model": dict(model=hj.BlackScholes(100.0, 0.25)),
    "hedge_model": dict(hedge_model=hj.BlackScholes(100.0, 0.3)),
    "book": dict(book=hj.EuropeanCall(105.0, 0.25)),
    "costs": dict(costs=hj.Proportional(0.003)),
    "grid": dict(grid=hj.TimeGrid(0.25, 9)),
    "n_paths": dict(n_paths=192),
    "key": dict(key=jax.random.key(4)),
    "common_random_numbers": dict(crn=True),
    "unwind": dict(unwind=True),
    "optimizer": dict(optimizer=optax.sgd(1e-2)),
    "clip_norm": dict(clip_norm=1.0),
}


@pytest.mark.parametrize("field", list(MISMATCHES))
def test_a_checkpoint_of_another_run_is_refused(written, field):
    # clipping also changes the optimiser's state structure, which is compared first
    named = "(optimizer|clip_norm)" if field == "clip_norm" else field
    with pytest.raises(ValueError, match=rf"{re.escape(str(written))}.*its {named} is"):
        _run(resume=written, steps=3, **MISMATCHES[field])


@pytest.mark.slow  # compile-bound (7-13 s on the 2-core CI machine): the slow tier
def test_network_width_is_part_of_the_strategy(tmp_path):
    """A LearnedBand(hidden=4) does not resume from a hidden=8 checkpoint (the issue's case:
    it used to come back with (8, 3) weights)."""
    path = tmp_path / "net.npz"
    _run(path, strategy=hj.LearnedBand(jax.random.key(0), hidden=8), steps=1)
    with pytest.raises(ValueError, match="its strategy is"):
        _run(resume=path, strategy=hj.LearnedBand(jax.random.key(0), hidden=4), steps=2)


def test_the_same_run_resumes_to_more_steps(written):
    fitted, history = _run(resume=written, steps=4)
    assert np.all(np.isfinite(history.objective))
    assert history.objective.shape == (4,)


def _members(path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _rewrite(path, **changes) -> None:
    members = dict(_members(path), **changes)
    with open(path, "wb") as f:
        np.savez(f, **members)


def _bad_files(path):
    """(label, writer) for files that are not readable checkpoints."""
    good = path.read_bytes()
    return {
        "empty": lambda p: p.write_bytes(b""),
        "truncated": lambda p: p.write_bytes(good[: len(good) // 2]),
        "random": lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)),
        "text": lambda p: p.write_text("step,width\n1,0.05\n"),
        "older-format": lambda p: np.savez(p, step=np.asarray(2), leaf_00000=np.zeros(())),
        "meta-not-json": lambda p: _rewrite(p, meta=np.asarray("{not json")),
        "state-garbage": lambda p: _rewrite(p, state=np.zeros(7, np.uint8)),
    }


@pytest.mark.parametrize("label", ["empty", "truncated", "random", "text", "older-format",
                                   "meta-not-json", "state-garbage"])
def test_a_damaged_file_is_refused_with_its_name(written, label):
    _bad_files(written)[label](written)
    with pytest.raises(ValueError, match=re.escape(str(written))):
        _run(resume=written, steps=3)


def test_a_mismatched_parameter_shape_is_refused(written):
    """The record matches but the serialised state holds a different shape: equinox's reader
    refuses it, and the message names the file."""
    params, _ = eqx.partition(hj.BandHedge(0.05), eqx.is_inexact_array)
    params = jax.tree.map(lambda x: np.zeros((3,), np.float32), params)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, (params, optax.adam(1e-2).init(params)))
    _rewrite(written, state=np.frombuffer(buffer.getvalue(), np.uint8))
    with pytest.raises(ValueError, match=rf"{re.escape(str(written))}' is damaged.*shape"):
        _run(resume=written, steps=3)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_parameters_are_refused(tmp_path, written, bad):
    """On load (a checkpoint whose stored width is NaN or inf) and on save."""
    strategy = hj.BandHedge(0.05)
    params, _ = eqx.partition(strategy, eqx.is_inexact_array)
    opt_state = optax.adam(1e-2).init(params)
    broken = jax.tree.map(lambda x: x * bad, params)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, (broken, opt_state))
    _rewrite(written, state=np.frombuffer(buffer.getvalue(), np.uint8))
    with pytest.raises(ValueError, match=rf"{re.escape(str(written))}.*not finite"):
        _run(resume=written, steps=3)
    meta = json.loads(str(_members(written)["meta"]))
    logs = (np.zeros(1), np.zeros(1), np.zeros((1, 1)))
    target = tmp_path / "never.npz"
    with pytest.raises(ValueError, match="not finite"):
        _checkpoint.save(target, meta, 1, broken, opt_state, logs)
    assert not target.exists()


def test_the_record_names_what_the_run_was(written):
    meta = json.loads(str(_members(written)["meta"]))
    assert meta["format"] == _checkpoint.FORMAT and meta["hedgejax"] == hj.__version__
    assert meta["strategy"].startswith("BandHedge") and meta["n_paths"] == 128
    assert "mean_cost_variance" in meta["objective"] and "lam=0.1" in meta["objective"]
    assert meta["key"] == np.asarray(jax.random.key_data(KEY)).ravel().tolist()
    assert zipfile.is_zipfile(written)


def test_another_version_only_warns(written):
    members = _members(written)
    meta = json.loads(str(members["meta"]))
    meta["hedgejax"] = "0.0.1"
    _rewrite(written, meta=np.asarray(json.dumps(meta)))
    with pytest.warns(UserWarning, match="0.0.1"):
        _run(resume=written, steps=3)


class _Scaled(eqx.Module):
    lam: jax.Array

    def __call__(self, result):
        return self.lam * hj.risk.std(result.pnl)


def _entropic(a):
    return lambda r: hj.risk.entropic(r.pnl, a)


# pairs of objectives that differ: the second must not resume from the first's checkpoint
OBJECTIVES = {
    "literal-in-lambda": (lambda r: hj.risk.entropic(r.pnl, 1.0),
                          lambda r: hj.risk.entropic(r.pnl, 5.0)),
    "lambda-bodies": (lambda r: hj.risk.std(r.pnl), lambda r: -jnp.mean(r.pnl)),
    "numpy-closure": (hj.risk.mean_cost_variance(lam=np.float32(0.1)),
                      hj.risk.mean_cost_variance(lam=np.float32(0.2))),
    "jax-closure": (_entropic(jnp.float32(1.0)), _entropic(jnp.float32(5.0))),
    "partial": (functools.partial(hj.risk.mean_cost_variance, lam=1.0),
                functools.partial(hj.risk.mean_cost_variance, lam=5.0)),
    "module": (_Scaled(jnp.asarray(0.1)), _Scaled(jnp.asarray(5.0))),
}


@pytest.mark.parametrize("case", list(OBJECTIVES))
def test_a_different_objective_is_refused(tmp_path, case):
    first, second = OBJECTIVES[case]
    path = tmp_path / "ck.npz"
    _run(path, objective=first, steps=1)
    _run(resume=path, objective=first, steps=2)          # the same objective resumes
    with pytest.raises(ValueError, match="its objective is"):
        _run(resume=path, objective=second, steps=2)


def test_non_finite_optimiser_state_is_refused(written):
    strategy = hj.BandHedge(0.05)
    params, _ = eqx.partition(strategy, eqx.is_inexact_array)
    opt_state = optax.adam(1e-2).init(params)
    broken = jax.tree.map(lambda x: x * np.nan if jnp.issubdtype(x.dtype, jnp.floating)
                          else x, opt_state)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, (params, broken))
    _rewrite(written, state=np.frombuffer(buffer.getvalue(), np.uint8))
    with pytest.raises(ValueError, match=rf"{re.escape(str(written))}.*optimiser state.*finite"):
        _run(resume=written, steps=3)


def test_checkpoints_have_normal_permissions(tmp_path):
    """tempfile makes 0600 files; the checkpoint gets what open() would give (umask)."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "perm.npz"
        _run(path, steps=1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
