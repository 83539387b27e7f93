"""Learning bands with `fit`: gradients, optimality against grid search, theory, resume."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hedgejax as hj

SPOT, VOL = 100.0, 0.2
GRID = hj.TimeGrid(0.25, 63)
LAM = 0.1


def _world():
    return hj.BlackScholes(SPOT, VOL), hj.EuropeanCall(100.0, 0.25)


def _objective_of(strategy, costs, key, n_paths=2**12, lam=LAM):
    model, call = _world()
    res = hj.hedge(model, call, strategy, costs, GRID, n_paths, key)
    return hj.risk.mean_cost_variance(res, lam)


@pytest.mark.parametrize("make, field", [(lambda: hj.BandHedge(0.08), "raw_width"),
                                         (lambda: hj.WhalleyWilmott(0.5, 1.3), "raw_scale")])
def test_objective_gradient_matches_central_differences(x64, make, field):
    """d objective / d band parameter on common random numbers (float64). Each path's P&L is
    only piecewise smooth in the band (trades switch on and off at kinks), so a central
    difference of step h averages over kinks: we allow 1% relative."""
    strategy = make()
    costs = hj.Proportional(0.002)
    key = jax.random.key(3)
    grad = eqx.filter_grad(lambda s: _objective_of(s, costs, key))(strategy)
    analytic = float(getattr(grad, field))
    h = 1e-4
    up = eqx.tree_at(lambda s: getattr(s, field), strategy, getattr(strategy, field) + h)
    down = eqx.tree_at(lambda s: getattr(s, field), strategy, getattr(strategy, field) - h)
    fd = (float(_objective_of(up, costs, key)) - float(_objective_of(down, costs, key))) / (2 * h)
    assert analytic == pytest.approx(fd, rel=1e-2)


def _cosine_fit(strategy, costs, steps, n_paths, key, lam=LAM, **kwargs):
    model, call = _world()
    return hj.fit(strategy, hj.risk.mean_cost_variance(lam=lam), model, call, costs, GRID,
                  key=key, steps=steps, n_paths=n_paths, progress=False,
                  optimizer=optax.adam(optax.cosine_decay_schedule(1e-2, steps)), **kwargs)


def _grid(costs, values, lam=LAM):
    model, call = _world()
    return hj.grid_search(hj.BandHedge(0.1), "width", values,
                          hj.risk.mean_cost_variance(lam=lam), model, call, costs, GRID,
                          n_paths=2**16, key=jax.random.key(7))


@pytest.mark.slow  # half a minute of compiling and training: the slow tier
def test_standard_case_fit_matches_a_fine_grid_search():
    """ATM call, T=0.25, 63 steps, vol 0.2, proportional cost 0.002, lam 0.1: the fitted width
    is within 5% of the fine grid's argmin and its true objective on fresh paths (the grid's,
    which the optimiser never saw) within 1% of the grid's best."""
    costs = hj.Proportional(0.002)
    grid = _grid(costs, np.linspace(0.05, 0.15, 41))
    fitted, history = _cosine_fit(hj.BandHedge(0.05), costs, 300, 2**14, jax.random.key(0))
    assert abs(float(fitted.width) / grid["best"] - 1) < 0.05
    model, call = _world()
    stats = hj.evaluate(fitted, hj.risk.mean_cost_variance(lam=LAM), model, call, costs, GRID,
                        n_paths=2**16, key=jax.random.key(7))
    assert stats["objective"] <= 1.01 * grid["objective"].min()
    assert history.objective.shape == (300,) and np.all(np.isfinite(history.objective))
    # The objective fell from the start (width 0.05) to the end.
    assert history.objective[-20:].mean() < history.objective[:5].mean()


@pytest.mark.slow  # ~18 s: four fits
def test_fitted_width_grows_with_cost_and_shrinks_with_lam():
    """Whalley-Wilmott: the optimal half-width scales like (cost / risk aversion)^(1/3)."""
    def width(rate, lam):
        fitted, _ = _cosine_fit(hj.BandHedge(0.05), hj.Proportional(rate), 200, 2**12,
                                jax.random.key(1), lam=lam)
        return float(fitted.width)

    assert width(0.004, LAM) > 1.2 * width(0.001, LAM)
    assert width(0.002, 0.3) < 0.8 * width(0.002, 0.03)


@pytest.mark.slow  # half a minute of compiling and training: the slow tier
def test_fixed_cost_fit_uses_a_surrogate_and_matches_grid_search():
    costs = hj.Fixed(0.01)
    grid = _grid(costs, np.linspace(0.0, 0.3, 61))
    fitted, history = _cosine_fit(hj.BandHedge(0.05), costs, 300, 2**13, jax.random.key(0))
    model, call = _world()
    stats = hj.evaluate(fitted, hj.risk.mean_cost_variance(lam=LAM), model, call, costs, GRID,
                        n_paths=2**16, key=jax.random.key(7))
    assert stats["objective"] <= 1.02 * grid["objective"].min()
    # The recorded objective is the true one, not the surrogate that was differentiated.
    assert not np.allclose(history.objective, history.surrogate)


@pytest.mark.slow  # compile-bound (7-13 s on the 2-core CI machine): the slow tier
def test_resume_reaches_the_same_parameters_bit_for_bit(tmp_path):
    ck = tmp_path / "fit.npz"
    costs = hj.Proportional(0.002) + hj.Fixed(0.005)
    kwargs = dict(n_paths=512, key=jax.random.key(4), steps=20)
    model, call = _world()
    objective = hj.risk.mean_cost_variance(lam=LAM)
    straight, h_straight = hj.fit(hj.BandHedge(0.05), objective, model, call, costs, GRID,
                                  progress=False, **kwargs)
    # Interrupted after 10 steps (a run told to stop there), then resumed to 20.
    kwargs_10 = dict(kwargs, steps=10)
    hj.fit(hj.BandHedge(0.05), objective, model, call, costs, GRID, progress=False,
           checkpoint=ck, checkpoint_every=5, **kwargs_10)
    resumed, h_resumed = hj.fit(hj.BandHedge(0.05), objective, model, call, costs, GRID,
                                progress=False, resume=ck, **kwargs)
    assert np.asarray(resumed.raw_width) == np.asarray(straight.raw_width)
    np.testing.assert_array_equal(h_resumed.objective, h_straight.objective)
    np.testing.assert_array_equal(h_resumed.params, h_straight.params)
    assert not list(tmp_path.glob("*.tmp"))


def test_common_random_numbers_and_progress_bar_and_history():
    model, call = _world()
    fitted, history = hj.fit(hj.WhalleyWilmott(1.0), hj.risk.mean_cost_variance(lam=LAM),
                             model, call, hj.Proportional(0.002), GRID, key=jax.random.key(2),
                             steps=5, n_paths=256, common_random_numbers=True, progress=True,
                             clip_norm=1.0)
    assert history.params.shape == (5, 2)  # risk_aversion and raw_scale
    rebuilt = history.unravel(jnp.asarray(history.params[-1]))
    assert float(rebuilt.raw_scale) == pytest.approx(float(fitted.raw_scale))
    assert float(fitted.scale) > 0


def test_grid_search_equals_separate_evaluations(x64):
    model, call = _world()
    costs = hj.Proportional(0.002)
    objective = hj.risk.mean_cost_variance(lam=LAM)
    values = [0.0, 0.05, 0.2]
    out = hj.grid_search(hj.BandHedge(0.1), "width", values, objective, model, call, costs,
                         GRID, n_paths=1024, key=jax.random.key(9))
    for v, obj in zip(values, out["objective"], strict=True):
        single = hj.evaluate(hj.BandHedge(v), objective, model, call, costs, GRID,
                             n_paths=1024, key=jax.random.key(9))
        assert obj == pytest.approx(single["objective"], rel=1e-10)
    assert out["best"] in values


def test_evaluate_stderr_is_the_scale_of_key_to_key_noise():
    model, call = _world()
    costs = hj.Proportional(0.002)
    objective = hj.risk.mean_cost_variance(lam=LAM)
    runs = [hj.evaluate(hj.BandHedge(0.1), objective, model, call, costs, GRID, n_paths=4096,
                        key=jax.random.key(k)) for k in range(12)]
    spread = np.std([r["objective"] for r in runs], ddof=1)
    stderr = np.mean([r["objective_stderr"] for r in runs])
    assert 0.5 < stderr / spread < 2.0


def test_mean_cost_variance_is_also_an_objective_factory():
    model, call = _world()
    res = hj.hedge(model, call, hj.BandHedge(0.1), hj.Proportional(0.002), GRID, 256,
                   jax.random.key(0))
    direct = hj.risk.mean_cost_variance(res, 0.3)
    assert float(hj.risk.mean_cost_variance(lam=0.3)(res)) == float(direct)
    assert float(hj.risk.mean_cost_variance(0.3)(res)) == float(direct)
    expected = np.mean(np.asarray(res.cost)) + 0.3 * np.var(np.asarray(res.hedge_error), ddof=1)
    assert float(direct) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kwargs, needle", [({"steps": 0}, "steps"),
                                            ({"resume": "/nonexistent/ck.npz"}, "resume"),
                                            ({"temperature": -1.0}, "temperature"),
                                            ({"clip_norm": 0.0}, "clip_norm")])
def test_fit_rejects_bad_arguments(kwargs, needle):
    model, call = _world()
    with pytest.raises(ValueError, match=needle):
        hj.fit(hj.BandHedge(0.1), hj.risk.mean_cost_variance(lam=LAM), model, call,
               hj.Fixed(0.01), GRID, key=jax.random.key(0), n_paths=64, progress=False,
               **kwargs)


def test_fit_needs_trainable_parameters_and_an_objective():
    model, call = _world()
    with pytest.raises(ValueError, match="trainable"):
        hj.fit(hj.NoHedge(), hj.risk.mean_cost_variance(lam=LAM), model, call, None, GRID,
               key=jax.random.key(0), steps=1, n_paths=64, progress=False)
    with pytest.raises(ValueError, match="objective"):
        hj.fit(hj.BandHedge(0.1), 0.5, model, call, None, GRID, key=jax.random.key(0),
               steps=1, n_paths=64, progress=False)
