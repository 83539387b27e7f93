"""Experiments dynamic-vs-static, gamma-scalping and jump-risk: each run small, its files
checked, and one scientific property of its result asserted with Monte Carlo error in mind
(never a number copied from an earlier run)."""

from __future__ import annotations

import pytest
from conftest import check_run_folder
from test_experiment_output_b import check_fits

from hedgejax.experiments._framework import ConfigError, run_experiment


def _run(name, tmp_path, overrides):
    """Run `name` small; check its folder; return (results.json payload, table rows)."""
    folder = run_experiment(name, out=tmp_path, overrides=overrides, progress=False,
                            show=False)
    payload = check_run_folder(folder, name)
    check_fits(folder)         # the terminal table at 80 and 120 columns, side by side
    return payload, payload["table"]


def test_dynamic_vs_static(tmp_path):
    payload, table = _run("dynamic-vs-static", tmp_path,
                          {"paths": 4000, "every": [1], "band_delta": 0.0})
    rows = {r["strategy"]: r for r in table}
    assert list(rows) == ["no hedge", "static", "delta daily"]
    # the frictionless std of no hedge and of the static hedge against their closed forms
    for label in ("no hedge", "static"):
        r = rows[label]
        assert abs(r["std_frictionless"] - r["reference_std"]) < 4 * r["std_frictionless_se"]
    # each step up in hedging cuts the risk by a wide margin and costs more
    naked, static, daily = rows["no hedge"], rows["static"], rows["delta daily"]
    assert naked["std_pnl"] > 1.5 * static["std_pnl"] > 3 * daily["std_pnl"]
    assert naked["es_0.99"] > static["es_0.99"] > daily["es_0.99"]
    assert naked["mean_cost"] == 0 < static["mean_cost"] < daily["mean_cost"]
    assert daily["hedge_effectiveness"] > 0.95
    # Derman-Kamal is leading order in 1/N: daily hedging (63 rebalances) within 10%
    assert abs(daily["std_frictionless"] / daily["reference_std"] - 1) < 0.1
    with pytest.raises(ValueError, match="config key 'every'"):
        run_experiment("dynamic-vs-static", out=tmp_path, overrides={"every": [100]},
                       progress=False, show=False)
    with pytest.raises(ConfigError, match="'cost_rate'"):
        run_experiment("dynamic-vs-static", out=tmp_path, overrides={"cost_rate": -0.1},
                       progress=False, show=False)


def test_gamma_scalping(tmp_path):
    payload, table = _run("gamma-scalping", tmp_path,
                          {"paths": 4000, "realised_vols": [0.1, 0.2, 0.3]})
    # drift = rate: the gamma integral is the BS price difference (to float64 rounding)
    assert payload["results"]["theory_vs_bs_difference_max_gap"] < 1e-9
    assert payload["caption"].startswith("Long 1 at-the-money straddle (")   # not "(s)"
    for r in table:
        # the mean P&L of hedging at the implied vol is the theory, within Monte Carlo error
        assert abs(r["mean_pnl"] - r["theory_mean"]) < 4 * r["stderr"]
        if abs(r["spread"]) > 0.05:
            # hedging at the realised vol gives the same mean with a much smaller spread
            assert r["realised_hedge_std"] < 0.75 * r["std_pnl"]
    assert table[0]["mean_pnl"] < 0 < table[-1]["mean_pnl"]
    with pytest.raises(ValueError, match="config key 'position'"):
        run_experiment("gamma-scalping", out=tmp_path, overrides={"position": "put"},
                       progress=False, show=False)


def test_jump_risk(tmp_path):
    from test_experiment_output_b import check_readable

    payload, table = _run("jump-risk", tmp_path, {"paths": 4000})
    check_readable(next(tmp_path.glob("jump-risk-*")))
    rows = {r["strategy"]: r for r in table}
    diffusion, jumps = rows["diffusion, delta hedged"], rows["jumps, delta hedged"]
    tail = rows["jumps, delta hedged + tail puts"]
    # same variance, but the jump world's delta-hedged tail is several times fatter ...
    assert jumps["es_0.99"] > 3 * diffusion["es_0.99"]
    # ... and the long out-of-the-money puts take a large part of it off
    assert tail["es_0.99"] < 0.6 * jumps["es_0.99"]
    assert 0 < tail["worst_loss"] < jumps["worst_loss"]
    # the put spread cannot lose more at a gap than the naked short puts
    assert 0 < tail["gap_loss_typical_jump"] < jumps["gap_loss_typical_jump"]
    # a ratio to its own baseline is left empty, not 1
    assert diffusion["es_vs_diffusion"] is None and jumps["es_vs_diffusion"] > 3
    with pytest.raises(ValueError, match="config key 'tail_strike'"):
        run_experiment("jump-risk", out=tmp_path, overrides={"tail_strike": 95.0},
                       progress=False, show=False)
