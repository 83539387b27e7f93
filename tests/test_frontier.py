"""The cost/risk frontier: fitted bands dominate calendar rebalancing."""

import jax
import numpy as np
import pytest

import hedgejax as hj


@pytest.mark.slow  # compile-bound (7-13 s on the 2-core CI machine): the slow tier
def test_bands_dominate_calendar_rebalancing():
    model, call = hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.25)
    grid = hj.TimeGrid(0.25, 63)
    out = hj.frontier([0.03, 0.1, 0.3, 1.0, 3.0], model, call, hj.Proportional(0.002), grid,
                      key=jax.random.key(0), every=[1, 2, 4, 8, 16], steps=150,
                      n_paths=2**12, eval_paths=2**14)
    bands, calendar = out["bands"], out["calendar"]
    # More weight on risk buys a narrower band: more cost, less hedge error.
    assert np.all(np.diff(bands["width"]) < 0)
    assert np.all(np.diff(bands["std_hedge_error"]) < 0)
    assert np.all(np.diff(bands["mean_cost"]) > 0)
    # Calendar rebalancing: rarer trading costs less and leaves more risk.
    assert np.all(np.diff(calendar["mean_cost"]) < 0)
    assert np.all(np.diff(calendar["std_hedge_error"]) > 0)
    dominated = hj.band_dominates(out)
    assert dominated.size >= 2 and dominated.all()


def test_frontier_rejects_bad_lams():
    model, call = hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.25)
    with pytest.raises(ValueError, match="lams"):
        hj.frontier([0.1, -1.0], model, call, None, hj.TimeGrid(0.25, 10),
                    key=jax.random.key(0))
