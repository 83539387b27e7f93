"""The exotic-hedging experiment, run small: its run folder, and properties of its results that
hold by a wide margin of Monte Carlo error (never numbers copied from an earlier run)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_run_folder
from test_experiment_output_b import check_readable

import hedgejax as hj
from hedgejax.experiments._framework import run_experiment
from hedgejax.experiments.exotic_hedging import rebalance_class

NAME = "exotic-hedging"
EXACT = ("down-and-out", "up-and-out", "vanilla call")   # hedge model = world, exact prices


def _run(tmp_path, **overrides):
    folder = run_experiment(NAME, out=tmp_path, overrides=overrides, progress=False,
                            show=False)
    payload = check_run_folder(folder, NAME)
    check_readable(folder)    # human headers with units, a caption; fits 80 and 120 columns
    rows = {(r["book"], r["strategy"]): r for r in payload["table"]}
    return folder, payload, rows


def _frictionless_means_are_zero(rows):
    """Barrier and vanilla rows: V0 is the exact price under the world's own model and the
    drift is risk-neutral, so every hedge's P&L before costs has mean 0."""
    checked = 0
    for (book, strategy), r in rows.items():
        if book in EXACT and strategy != "unhedged":
            assert abs(r["z_frictionless_vs_0"]) < 4, (book, strategy, r)
            checked += 1
    return checked


@pytest.mark.slow  # seconds of compiling: the slow tier keeps the fast one under 12 min
def test_exotic_hedging_small(tmp_path):
    folder, payload, rows = _run(tmp_path, paths=3000, neural=False)
    assert {p.stem for p in folder.glob("*.png")} == {
        "barrier_pnl", "barrier_greeks", "knockout_path", "asian_delta", "variance_swap"}
    assert _frictionless_means_are_zero(rows) == 11
    assert not any(s.startswith("neural") for _, s in rows)
    n_steps = payload["results"]["trading_days"]
    assert n_steps == 63

    # rebalancing every N days trades at most ceil(63 / N) times a path, and the vanilla's
    # delta moves at nearly every rebalance (in float32 it can sit at exactly 0 or 1 near
    # expiry, which is no trade)
    for days in (21, 5, 1):
        label = "delta daily" if days == 1 else f"delta every {days}d"
        most = math.ceil(n_steps / days)
        trades = rows["vanilla call", label]["mean_trades"]
        assert 0.97 * most <= trades <= most, (label, trades)
        for book in EXACT:
            assert rows[book, label]["mean_trades"] <= most

    # hedging more often cuts the hedge error of every book, and costs more
    for book in EXACT:
        r21, r5, r1 = (rows[book, s] for s in ("delta every 21d", "delta every 5d",
                                              "delta daily"))
        assert r21["std_frictionless"] > r5["std_frictionless"] > r1["std_frictionless"]
        assert r21["mean_cost"] < r5["mean_cost"] < r1["mean_cost"]
    # ... but for the up-and-out call (20 in the money at its barrier) far less than for the
    # vanilla (1 / sqrt(rebalances): sqrt(21) = 4.6); here about 2.4 against 4.2
    def gain(book):
        return (rows[book, "delta every 21d"]["std_frictionless"]
                / rows[book, "delta daily"]["std_frictionless"])
    assert gain("up-and-out") < 0.75 * gain("vanilla call")
    assert rows["up-and-out", "delta daily"]["std_frictionless"] > 2 * rows[
        "vanilla call", "delta daily"]["std_frictionless"]

    # the no-trade band trades less and pays less than delta daily; unhedged is far worse
    for book in ("down-and-out", "up-and-out"):
        band, daily = rows[book, "band +/-0.05 daily"], rows[book, "delta daily"]
        assert band["mean_cost"] < 0.8 * daily["mean_cost"]
        assert band["mean_trades"] < daily["mean_trades"]
        assert rows[book, "unhedged"]["std_pnl"] > 2 * daily["std_pnl"]

    # the Asian's delta dies as fixings accrue (mean |delta| over paths, by day)
    by_day = payload["results"]["asian_mean_abs_delta"]
    values = [by_day[d] for d in sorted(by_day, key=int)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] < 0.1 * values[0]
    vanilla = payload["results"]["vanilla_mean_abs_delta"]
    assert vanilla[max(vanilla, key=int)] > 5 * values[-1]
    asian = rows["Asian call", "delta daily"]
    assert asian["std_pnl"] < 0.2 * rows["Asian call", "unhedged"]["std_pnl"]

    # variance swap, Heston world: delta 0, so delta hedging never trades and leaves all
    # the risk; the strip with its delta hedge removes most of it
    swap = rows["variance swap", "delta daily"]
    strip = rows["var swap+strip", "delta daily"]
    static = rows["var swap+strip", "static strip only"]
    assert swap["mean_trades"] == 0 and swap["mean_cost"] == 0
    assert strip["std_pnl"] < 0.5 * swap["std_pnl"]
    assert strip["std_frictionless"] < 0.1 * swap["std_frictionless"]
    assert static["std_pnl"] > swap["std_pnl"]        # the 1/S leg is needed
    vs = payload["results"]["varswap"]
    assert vs["fair_variance"] == pytest.approx(0.04, rel=1e-5)   # v0 = theta
    # the discrete strip costs about the fair variance (per unit of notional)
    assert abs(vs["strip_value_bs_per_unit_notional"] / vs["fair_variance"] - 1) < 0.05

    # a path knocks the down-and-out call out (thousands of paths, barrier 10% away)
    assert payload["results"]["knockout_path"]["knockout_day"] > 0
    # findings are computed from the run: the numbers of the table appear in them
    text = " ".join(payload["findings"])
    assert f"{swap['std_pnl']:,.2f}" in text


def test_config_errors_name_the_key(tmp_path):
    for overrides, key in (({"down_barrier": 100.0}, "down_barrier"),
                           ({"up_barrier": 95.0}, "up_barrier"),
                           ({"asian_fixings": 10}, "asian_fixings"),
                           ({"rebalance_days": [100]}, "rebalance_days"),
                           ({"strip_low": 101.0}, "strip_low"),
                           ({"strip_spacing": 0.1}, "strip_spacing")):
        with pytest.raises(ValueError, match=f"config key '{key}'"):
            run_experiment(NAME, out=tmp_path, overrides={"paths": 200, **overrides},
                           progress=False, show=False)
    assert not list(tmp_path.glob("exotic-hedging-*"))


def test_rebalance_decides_as_delta_hedge_every_n_band_and_policy():
    """`Rebalance` is DeltaHedge(every=N), BandHedge(w) or the policy, one type for all."""
    rebalance = rebalance_class()
    model = hj.BlackScholes(100.0, 0.2)
    book = hj.Book([hj.EuropeanCall(100.0, 0.1)], quantities=[-1.0])
    grid, costs, key = hj.TimeGrid(0.1, 10), hj.Proportional(0.001), jax.random.key(3)
    # a policy that is not delta hedging: its output layer's bias moved off zero
    policy = eqx.tree_at(lambda p: p.mlp.layers[-1].bias,
                         hj.NeuralHedge(jax.random.key(1), hidden=4, depth=1),
                         jnp.array([0.1]))

    def run(strategy):
        return hj.hedge(model, book, strategy, costs, grid, 256, key)

    pairs = [(rebalance(hj.BandHedge(0.0), policy, 3), hj.DeltaHedge(every=3)),
             (rebalance(hj.BandHedge(0.02), policy, 1), hj.BandHedge(0.02)),
             (rebalance(hj.BandHedge(0.0), policy, 1, True), policy)]
    for mine, theirs in pairs:
        a, b = run(mine), run(theirs)
        np.testing.assert_array_equal(np.asarray(a.n_trades), np.asarray(b.n_trades))
        np.testing.assert_allclose(np.asarray(a.pnl), np.asarray(b.pnl), rtol=0, atol=1e-5)


@pytest.mark.slow  # two neural fits: about a minute of compiling
def test_exotic_hedging_with_neural_policies(tmp_path):
    _, payload, rows = _run(tmp_path, paths=2000, fit_steps=5, fit_paths=256,
                            rebalance_days=[5, 1])
    assert _frictionless_means_are_zero(rows) == 10
    for book in ("down-and-out", "up-and-out"):
        nn, daily = rows[book, "neural (fitted)"], rows[book, "delta daily"]
        # a few adam steps from delta hedging: close to it, and trading at every step
        assert abs(nn["std_frictionless"] / daily["std_frictionless"] - 1) < 0.25
        assert nn["mean_trades"] > 0.9 * payload["results"]["trading_days"]
        assert len(payload["results"]["training"][f"{book} call"]["objective"]) == 5
