"""The P&L explain's reports (explain_summary, explain_table, plot_explain) and the pnl-explain
experiment: statistics against NumPy's on the same arrays, the table's width, the figure's
labels and waterfall, a small run of the experiment with its law (the gamma-theta mismatch
against the closed-form expectation, in standard errors)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import check_run_folder
from test_experiment_output_b import check_readable

from hedgejax._attribution import TERMS, Attribution
from hedgejax._explain import explain_summary, explain_table, plot_explain


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """pnl-explain in the experiments' list (a no-op once hedgejax/experiments lists it)."""
    import hedgejax.experiments as experiments

    if "pnl-explain" not in experiments.NAMES:
        monkeypatch.setattr(experiments, "NAMES", (*experiments.NAMES, "pnl-explain"))


def _fake(n: int = 2000, seed: int = 0, scale: float = 1.0) -> tuple[Attribution, np.ndarray]:
    """An attribution with a few live terms (the others 0), and its P&L."""
    rng = np.random.default_rng(seed)
    values = {t: np.zeros(n) for t in TERMS}
    values["gamma"] = scale * 500.0 * rng.chisquare(1, n)
    values["theta"] = scale * (-500.0 + rng.normal(0.0, 20.0, n))
    values["commission"] = scale * -50.0 * rng.integers(15, 21, n)
    values["residual"] = scale * rng.normal(0.0, 30.0, n)
    pnl = sum(values.values())
    return Attribution(**values), pnl


def test_summary_total_row_is_the_pnl_and_shares_sum_to_one():
    attribution, pnl = _fake()
    rows = explain_summary(attribution, pnl)
    assert [r["term"] for r in rows] == [*TERMS, "pnl"]
    total = rows[-1]
    assert total["mean"] == pytest.approx(np.mean(pnl), rel=1e-12)
    assert total["std"] == pytest.approx(np.std(pnl, ddof=1), rel=1e-12)
    assert total["stderr"] == pytest.approx(np.std(pnl, ddof=1) / np.sqrt(pnl.size), rel=1e-12)
    assert total["p05"] == pytest.approx(np.percentile(pnl, 5), rel=1e-12)
    assert total["p95"] == pytest.approx(np.percentile(pnl, 95), rel=1e-12)
    assert total["var_share"] == 1.0
    by = {r["term"]: r for r in rows}
    # the covariance allocation: np.cov of each term with the P&L over Var(P&L)
    for term in ("gamma", "theta", "commission", "residual"):
        ref = np.cov(getattr(attribution, term), pnl)[0, 1] / np.var(pnl, ddof=1)
        assert by[term]["var_share"] == pytest.approx(ref, rel=1e-9)
        assert not by[term]["zero"]
    assert sum(r["var_share"] for r in rows[:-1]) == pytest.approx(1.0, abs=1e-12)
    assert sum(r["mean"] for r in rows[:-1]) == pytest.approx(total["mean"], rel=1e-12)
    assert by["vega"]["zero"] and by["vega"]["std"] == 0.0
    # without pnl: the terms' sum
    assert explain_summary(attribution)[-1]["mean"] == pytest.approx(total["mean"], rel=1e-12)


def test_summary_refuses_what_it_cannot_summarise():
    attribution, pnl = _fake(n=10)
    with pytest.raises(ValueError, match="pnl is not the sum of the attribution's terms"):
        explain_summary(attribution, pnl + 1.0)
    with pytest.raises(ValueError, match=r"pnl must have shape \(n_paths,\)"):
        explain_summary(attribution, pnl[:5])
    bad = Attribution(**{t: np.where(np.arange(10) == 3, np.inf, 0.0) if t == "theta"
                         else np.zeros(10) for t in TERMS})
    with pytest.raises(ValueError, match="attribution.theta is not finite on path 3"):
        explain_summary(bad)
    one = Attribution(**{t: np.zeros(1) for t in TERMS})
    with pytest.raises(ValueError, match="at least 2 paths"):
        explain_summary(one)
    with pytest.raises(ValueError, match="attribution must be an Attribution"):
        explain_summary(pnl)


def test_explain_from_a_real_hedge_run():
    """hedge(..., attribution=True): the summary's total row is HedgeResult.pnl's statistics
    and the term means add up to the mean P&L."""
    import jax

    import hedgejax as hj

    res = hj.hedge(hj.BlackScholes(100.0, 0.25), hj.EuropeanCall(100.0, 0.25),
                   hj.DeltaHedge(), hj.Proportional(1e-3), hj.TimeGrid(0.1, 10), 500,
                   jax.random.key(1), hedge_model=hj.BlackScholes(100.0, 0.2),
                   attribution=True)
    pnl = np.asarray(res.pnl, dtype=float)
    rows = explain_summary(res.attribution, res.pnl)
    assert rows[-1]["mean"] == pytest.approx(pnl.mean(), rel=1e-12)
    assert rows[-1]["std"] == pytest.approx(pnl.std(ddof=1), rel=1e-12)
    scale = np.abs(pnl).mean()
    assert abs(sum(r["mean"] for r in rows[:-1]) - pnl.mean()) < 1e-4 * scale
    by = {r["term"]: r for r in rows}
    assert by["commission"]["mean"] < 0 and not by["gamma"]["zero"]
    assert by["vega"]["zero"]          # Black-Scholes hedge model: no vol state to move


@pytest.mark.parametrize("scale", [1.0, 1e7])
def test_table_fits_80_columns_and_names_what_it_leaves_out(scale):
    attribution, pnl = _fake(scale=scale)
    text = explain_table(attribution, pnl)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    assert "$ at T" in lines[0] and "gain" in lines[0]
    for term in ("gamma", "theta", "commission", "residual", "P&L (total)"):
        assert any(line.startswith(term) for line in lines), term
    assert not any(line.startswith("vega") for line in lines)
    note = " ".join(lines[-3:])
    for term in ("vega", "vanna", "volga", "carry", "dividends", "spread", "impact"):
        assert term in note
    if scale > 1:
        assert "," in next(line for line in lines if line.startswith("gamma"))
    full = explain_table(attribution, pnl, show_zero=True)
    assert all(any(line.startswith(t) for line in full.splitlines()) for t in TERMS)
    narrow = explain_table(attribution, pnl, width=60)
    assert max(len(line) for line in narrow.splitlines()) <= 60
    assert "95th pct" not in narrow.splitlines()[1]
    with pytest.raises(ValueError, match="width must be an integer >= 60"):
        explain_table(attribution, pnl, width=40)


def test_plot_has_labelled_axes_and_a_waterfall_ending_at_the_pnl():
    attribution, pnl = _fake(n=501)
    fig = plot_explain(attribution, pnl=pnl, title="fake", unit="$")
    stats, waterfall = fig.get_axes()
    for ax in (stats, waterfall):
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert "$ at T" in stats.get_xlabel() and "$ at T" in waterfall.get_ylabel()
    assert "vega" in stats.get_xlabel()                 # the terms left out are named
    median = int(np.argsort(pnl)[250])                  # 501 paths: the middle one
    assert f"path {median:,}" in waterfall.get_title()
    bars = waterfall.patches
    shown = ["gamma", "theta", "commission", "residual"]
    assert len(bars) == len(shown) + 1
    # each term's bar starts where the previous one ended; the last bar is the P&L
    running = 0.0
    for bar, term in zip(bars[:-1], shown, strict=True):
        value = getattr(attribution, term)[median]
        assert bar.get_y() == pytest.approx(running, abs=1e-9)
        assert bar.get_height() == pytest.approx(value, rel=1e-12)
        running += value
    assert bars[-1].get_y() == 0.0 and bars[-1].get_height() == pytest.approx(pnl[median])
    assert running == pytest.approx(pnl[median], rel=1e-9)
    fig.savefig(io.BytesIO(), format="png")
    chosen = plot_explain(attribution, 7, pnl=pnl)
    assert "path 7 " in chosen.get_axes()[1].get_title()
    with pytest.raises(ValueError, match=r"path must be a path index in \[0, 500\]"):
        plot_explain(attribution, 501)


def test_pnl_explain_experiment_small(tmp_path):
    from hedgejax.experiments._framework import ConfigError, run_experiment

    folder = run_experiment("pnl-explain", out=tmp_path, overrides={"paths": 4000},
                            progress=False, show=False)
    payload = check_run_folder(folder, "pnl-explain")
    check_readable(folder)            # captions, units, 80 and 120 columns side by side
    table = {r["term"]: r for r in payload["table"]}
    implied = payload["config"]["vol"]
    # the explain adds up: the term means are the P&L's
    terms = [r for r in payload["table"] if r["term"] in TERMS]
    assert sum(r["mean"] for r in terms) == pytest.approx(table["P&L"]["mean"], rel=1e-4)
    assert table["commission"]["mean"] < 0
    worlds = payload["results"]["worlds"]
    assert [w["realised_vol"] for w in worlds] == [implied, 0.15, 0.25]
    for w in worlds:
        # gamma + theta against its closed-form expectation, within Monte Carlo error
        assert abs(w["gamma_theta_mean"] - w["gamma_theta_theory"]) < 4 * w["gamma_theta_stderr"]
        spread = w["realised_vol"] ** 2 - implied ** 2
        if spread:
            # the gamma-theta mismatch has the sign of realised^2 - implied^2, many SEs away
            assert np.sign(w["gamma_theta_mean"]) == np.sign(spread)
            assert abs(w["gamma_theta_mean"]) > 10 * w["gamma_theta_stderr"]
    # at the right vol gamma and theta cancel on average, to a small part of either
    assert abs(table["gamma + theta"]["mean"]) < 0.02 * table["gamma"]["mean"]
    assert implied < payload["results"]["break_even_vol"] < 0.25
    with pytest.raises(ConfigError, match="config key 'days'"):
        run_experiment("pnl-explain", out=tmp_path, overrides={"days": 100},
                       progress=False, show=False)


@pytest.mark.slow
def test_pnl_explain_default_run_is_under_a_minute(tmp_path):
    import time

    from hedgejax.experiments._framework import run_experiment

    start = time.perf_counter()
    folder = run_experiment("pnl-explain", out=tmp_path, progress=False, show=False)
    assert time.perf_counter() - start < 60
    payload = check_run_folder(folder, "pnl-explain")
    for w in payload["results"]["worlds"]:
        assert abs(w["z_gamma_theta"]) < 4
