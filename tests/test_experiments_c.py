"""Experiments vega-hedging, model-risk, portfolio-insurance and historical, each run small:
the run folder is whole, and one scientific property of the result holds with Monte Carlo
error in mind (orderings by wide margins with fixed seeds, or theory within 4 standard
errors)."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from conftest import check_run_folder
from test_experiment_output_b import check_fits

from hedgejax.experiments._framework import run_experiment


@pytest.mark.slow  # compiles Heston/neural hedges for a minute: the slow tier
def test_vega_hedging_listed_option_removes_variance_risk(tmp_path):
    folder = run_experiment("vega-hedging", out=tmp_path, progress=False, show=False,
                            overrides={"paths": 400, "steps": 6,
                                       "option_hedges": ["delta-vega"]})
    payload = check_run_folder(folder, "vega-hedging")
    check_fits(folder)
    rows = {r["strategy"]: r for r in payload["table"]}
    assert list(rows) == ["unhedged", "delta", "delta-vega"]
    # grammar: "Long 1 call", and no "0.00%" for shares that trade free
    assert payload["caption"].startswith("Long 1 call (") and "0.00%" not in payload["caption"]
    # Shares cannot hedge the variance; the listed option can: about half the residual std
    # at any step count (0.5-0.55 over seeds), asserted with a wide margin.
    assert rows["delta-vega"]["std_frictionless"] < 0.8 * rows["delta"]["std_frictionless"]
    assert rows["delta"]["std_pnl"] < 0.6 * rows["unhedged"]["std_pnl"]
    # the listed option's spread is paid: after-cost mean below the frictionless one
    assert rows["delta-vega"]["mean_cost"] > 0
    t0 = payload["results"]["t0_greeks"]
    assert t0["delta_vega_units"] < 0 < t0["book_vega_dv"]


@pytest.mark.slow  # compiles Heston/neural hedges for a minute: the slow tier
def test_model_risk_mean_pnl_is_the_price_difference(tmp_path):
    from test_experiment_output_b import check_readable

    folder = run_experiment("model-risk", out=tmp_path, progress=False, show=False,
                            overrides={"paths": 2000, "steps": 21,
                                       "hedge_vols": [0.15, 0.25], "heston_steps": 4})
    payload = check_run_folder(folder, "model-risk")
    check_readable(folder)
    bs = [r for r in payload["table"] if r["world"].startswith("BS")]
    assert [r["hedge_vol"] for r in bs] == [0.15, 0.25]
    for row in bs:
        # E[P&L] = e^{rT} (V(true vol) - V(hedge vol)) exactly, discrete hedging or not
        assert abs(row["mean_pnl"] - row["theory_mean"]) < 4 * row["stderr"] + 1e-4
        # the gamma P&L on the same paths tracks the P&L path by path
        assert row["gamma_pnl_rms_gap"] < 0.5 * row["std_pnl"]
    low, high = bs
    assert low["mean_pnl"] > 0.5 > -0.5 > high["mean_pnl"]
    assert len(payload["table"]) == 5


@pytest.mark.slow  # compile-bound (7-13 s on the 2-core CI machine): the slow tier
def test_portfolio_insurance_costs_and_gap_risk(tmp_path):
    from test_experiment_output_b import check_readable

    folder = run_experiment("portfolio-insurance", out=tmp_path, progress=False, show=False,
                            overrides={"paths": 4000, "days": 63, "crash_day": 30,
                                       "jump_rate": 1.0, "rebalance_every": [1, 5]})
    payload = check_run_folder(folder, "portfolio-insurance")
    check_readable(folder)
    rows = {(r["world"], r["rebalance"]): r for r in payload["table"]}
    assert len(rows) == 6
    d, j, c = (rows[(w, "daily")] for w in ("diffusion", "jumps", "crash"))
    for row in (d, j):
        # before trading costs the replication costs the world's fair put value on average
        before = row["mean_cost_to_insure"] - row["trading_cost"]
        assert abs(before - row["fair_put_value"]) < 4 * row["stderr_cost"] + 1e-3
    # jumps leave the floor missed by >1% far more often than the diffusion does
    assert j["p_below_by_1pct_before_costs"] > d["p_below_by_1pct_before_costs"] + 0.02
    # the crash costs about the put's convexity over the crash day
    expected = c["predicted_gap_error"] + d["mean_replication_error"]
    assert c["predicted_gap_error"] < -0.5
    assert abs(c["mean_replication_error"] - expected) < 0.25 * abs(expected)


@pytest.mark.slow  # compile-bound (7-13 s on the 2-core CI machine): the slow tier
def test_historical_hedges_along_a_csv(tmp_path):
    from test_experiment_output_b import check_readable

    import hedgejax as hj

    dates, prices = hj.data.sample_prices(with_dates=True)
    path = tmp_path / "prices.csv"
    with open(path, "w", newline="") as f:
        f.write("# a slice of the synthetic sample\n")
        writer = csv.writer(f)
        writer.writerow(["date", "open", "close"])
        for d, p in list(zip(dates, prices, strict=True))[:300]:
            writer.writerow([str(d), "1.0", f"{p:.4f}"])
    window, stride = 21, 5
    folder = run_experiment("historical", out=tmp_path / "runs", progress=False, show=False,
                            overrides={"paths": 500, "prices_csv": str(path),
                                       "price_column": "close", "window": window,
                                       "stride": stride})
    payload = check_run_folder(folder, "historical")
    check_readable(folder)
    windows = [r for r in payload["table"] if r["world"] == "windows"]
    assert {r["paths"] for r in windows} == {(299 - window) // stride + 1}
    # long gamma: the hedged call earns in windows whose realised vol beats the hedge vol
    # and pays theta in the others (here about +3.4 against -1.0)
    results = payload["results"]
    pnl = np.asarray(results["window_daily_pnl"])
    above = np.asarray(results["window_realised_vol"]) > results["hedge_vol"]
    assert 0 < above.sum() < above.size
    assert pnl[above].mean() > pnl[~above].mean() + 1.0
    # in the model world the hedger believes in, hedging daily removes most of the risk
    ref = {r["strategy"]: r for r in payload["table"] if r["world"] == "BS reference"}
    assert ref["delta 1d"]["std_pnl"] < 0.3 * ref["no hedge"]["std_pnl"]
    # the hedge vol is the data's annualised daily log-return std
    expected = np.std(np.diff(np.log(prices[:300])), ddof=1) * np.sqrt(252)
    assert payload["results"]["hedge_vol"] == pytest.approx(expected, rel=1e-4)
    # the user's file is named where the data is shown, and not called synthetic
    assert results["source"] == "prices.csv" and not results["synthetic_data"]
    assert "prices.csv" in (folder / "report.md").read_text()
    # windows sharing returns: their HAC standard error exceeds the i.i.d. one
    daily = next(r for r in windows if r["strategy"] == "delta 1d")
    assert daily["stderr"] > 1.3 * results["iid_stderr_windows"]["delta 1d"]


@pytest.mark.parametrize("name,overrides,message", [
    ("vega-hedging", {"listed_maturity": 0.1}, "config key 'listed_maturity'"),
    ("vega-hedging", {"option_hedges": ["delta-theta"]}, "config key 'option_hedges'"),
    ("portfolio-insurance", {"jump_rate": 10.0}, "config key 'jump_rate'"),
    ("portfolio-insurance", {"crash_day": 300}, "config key 'crash_day'"),
    ("historical", {"window": 5000}, "config key 'window'"),
    ("historical", {"prices_csv": "/no/such/prices.csv"}, "config key 'prices_csv'"),
    ("model-risk", {"hedge_vols": [0.2, -0.1]}, "config key 'hedge_vols' must be > 0"),
])
def test_bad_config_names_the_key(tmp_path, name, overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        run_experiment(name, out=tmp_path, progress=False, show=False, overrides=overrides)
    assert not any(tmp_path.iterdir())
