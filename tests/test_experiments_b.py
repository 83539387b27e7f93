"""The frequency-vs-cost and band-learning experiments, run small: their run folders, and one
property each that holds by a wide margin of Monte Carlo error."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import check_run_folder
from test_experiment_output_b import check_fits

from hedgejax.experiments._framework import run_experiment


@pytest.mark.slow  # half a minute of compiling and training: the slow tier
def test_frequency_vs_cost_small(tmp_path):
    folder = run_experiment(
        "frequency-vs-cost", out=tmp_path, progress=False, show=False,
        overrides={"paths": 2048, "steps": 21, "every": [1, 2, 4, 8],
                   "thresholds": [0.01, 0.03], "widths": [0.02, 0.05, 0.1, 0.2],
                   "risk_aversions": [1.0, 10.0], "lams": [1.0], "fit_steps": 20,
                   "fit_paths": 512})
    payload = check_run_folder(folder, "frequency-vs-cost")
    check_fits(folder)
    assert (folder / "frontier.png").exists()
    table = payload["table"]
    assert {r["family"] for r in table} == {"calendar", "move-based", "fixed band",
                                            "Whalley-Wilmott", "learned band"}
    cal = [r for r in table if r["family"] == "calendar"]
    assert [r["parameter"] for r in cal] == [1.0, 2.0, 4.0, 8.0]
    cost = np.array([r["mean_cost"] for r in cal])
    std = np.array([r["std_hedge_error"] for r in cal])
    se = np.array([r["cost_se"] for r in cal])
    # rebalancing less often: cheaper by many standard errors, and riskier (halving the
    # rebalances raises the std by about sqrt(2), far beyond its Monte Carlo error)
    assert np.all(np.diff(cost) < -4 * se[1:])
    assert np.all(std[1:] > 1.2 * std[:-1])
    # trades: one per rebalance (ceil(21 / k)), less the rare zero trades
    trades = np.array([r["mean_trades"] for r in cal])
    assert np.all(trades <= np.ceil(21 / np.array([1, 2, 4, 8])) + 1e-9)
    # a fixed band is cheaper than calendar hedging at the same risk, by a wide margin
    savings = payload["results"]["savings_vs_calendar_at_equal_std"]["fixed band"]
    assert savings and min(savings) > 0.1


def test_frequency_vs_cost_rejects_every_beyond_steps(tmp_path):
    with pytest.raises(ValueError, match="config key 'every'"):
        run_experiment("frequency-vs-cost", out=tmp_path, progress=False, show=False,
                       overrides={"steps": 5, "every": [1, 10]})


@pytest.mark.slow  # compile-bound (7-13 s on the 2-core CI machine): the slow tier
def test_band_learning_small(tmp_path):
    from test_experiment_output_b import check_readable

    folder = run_experiment(
        "band-learning", out=tmp_path, progress=False, show=False,
        overrides={"bands": ["constant"], "paths": 4096, "steps": 21, "fit_steps": 40,
                   "fit_paths": 512, "grid_widths": [0.0, 0.005, 0.01, 0.02, 0.03, 0.05,
                                                     0.08]})
    payload = check_run_folder(folder, "band-learning")
    check_readable(folder)
    assert (folder / "training.png").exists() and (folder / "grid_search.png").exists()
    rows = {r["band"]: r for r in payload["table"]}
    fit, best = rows["constant, fitted"], rows["constant, grid best"]
    # the grid best against itself: no gap to report
    assert best["gap_to_grid_best"] is None and best["gap_in_se"] is None
    grid = payload["results"]["grid_search"]["constant"]
    assert best["objective"] == pytest.approx(min(grid["objective"]), rel=1e-4)
    # the fitted band is as good as the grid minimum, within 3 standard errors
    assert fit["objective"] - best["objective"] < 3 * fit["objective_se"]
    assert len(payload["results"]["training"]["constant"]["objective"]) == 40
    # the title's path count has separators; widths in the header, not " sh" in each cell
    assert "on 4,096 fresh paths" in payload["title"]
    assert best["grid_best"].startswith("width ") and "sh" not in best["parameters"]


def test_band_learning_rejects_unknown_band_type(tmp_path):
    with pytest.raises(ValueError, match="config key 'bands'"):
        run_experiment("band-learning", out=tmp_path, progress=False, show=False,
                       overrides={"bands": ["constant", "neural"]})
