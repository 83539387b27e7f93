"""Deep hedging against the Black-Scholes hedge it starts from: a policy fitted on a
lookback under costs must beat delta hedging with the closed-form lookback delta on paths
the fit never saw (entropic risk, paired batch-means standard error)."""

import jax
import numpy as np
import pytest
from scipy.special import logsumexp

import hedgejax as hj
from hedgejax import features as F

pytestmark = pytest.mark.slow   # a fit of a few hundred steps compiles and runs ~30 s


def entropic(pnl, a):
    return (logsumexp(-a * pnl) - np.log(pnl.size)) / a


def test_fitted_policy_beats_lookback_delta_hedging_under_costs():
    model = hj.BlackScholes(100.0, 0.2)
    grid = hj.TimeGrid(20 / 250, 20)
    book = hj.Book([hj.Lookback(20 / 250)], quantities=[-1.0])    # short floating-strike call
    costs = hj.Proportional(5e-3)
    a = 1.0
    policy = hj.NeuralHedge(jax.random.key(0), hidden=16, depth=2,
                            features=(F.log_moneyness(100.0), F.time_to_maturity,
                                      F.position(), F.delta(), F.running_min()))
    fitted, _ = hj.fit(policy, lambda r: hj.risk.entropic(r.pnl, a), model, book, costs, grid,
                       key=jax.random.key(1), steps=150, n_paths=2**11,
                       learning_rate=3e-3, progress=False)
    key = jax.random.key(99)                     # held out: fit folds key 1 only
    learned = np.asarray(hj.hedge(model, book, fitted, costs, grid, 2**15, key).pnl, float)
    delta = np.asarray(hj.hedge(model, book, hj.DeltaHedge(), costs, grid, 2**15, key).pnl,
                       float)
    batches = 32
    diffs = np.array([entropic(x, a) - entropic(y, a) for x, y in
                      zip(learned.reshape(batches, -1), delta.reshape(batches, -1),
                          strict=True)])
    difference = entropic(learned, a) - entropic(delta, a)
    stderr = diffs.std(ddof=1) / np.sqrt(batches)
    assert difference < -4 * stderr, (difference, stderr)
