"""The experiment framework and the `experiment` / `fit-band` commands: configs checked key by
key, run folders written whole, one-line errors with exit status 2, and the market-maker
experiment against the arithmetic of its own setup."""

from __future__ import annotations

import csv
import json
import math
import os
import stat

import pytest
from conftest import run_cli as _run_cli

from hedgejax.experiments import NAMES, _framework


def test_every_experiment_has_a_module_and_a_default_config():
    for name in NAMES:
        module = _framework.load_module(name)
        assert module.NAME == name
        assert module.QUESTION.strip()
        cfg = _framework.load_config(name, bounds=getattr(module, "BOUNDS", None))
        assert {"seed", "paths"} <= set(cfg)
        for key in getattr(module, "BOUNDS", {}):
            assert key in cfg, f"{name}: BOUNDS names '{key}', which its config lacks"


def test_list(capsys):
    code, out, _ = _run_cli(["experiment", "list"], capsys)
    assert code == 0
    for name in NAMES:
        assert name in out


@pytest.mark.parametrize("toml,message", [
    ("foo = 1\n", "unknown config key 'foo'"),
    ("vol = -0.2\n", "config key 'vol' must be > 0"),
    ("vol = \"high\"\n", "config key 'vol' must be a number"),
    ("days = 2.5\n", "config key 'days' must be an integer"),
    ("bands = []\n", "config key 'bands' must be a non-empty list"),
    ("bands = [100.0, -1.0]\n", "config key 'bands' must be > 0"),
    ("vol = nan\n", "config key 'vol' must be finite"),
    ("vol = \n", "is not valid TOML"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, toml, message):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    code, out, err = _run_cli(["experiment", "market-maker", "--config", str(path),
                               "--out", str(tmp_path / "runs")], capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("argv,message", [
    (["experiment", "no-such"], "unknown experiment 'no-such'"),
    (["experiment", "market-maker", "--paths", "0"], "--paths must be an integer >= 2"),
    (["experiment", "market-maker", "--seed", "-1"], "--seed must be an integer in 0.."),
    (["experiment", "market-maker", "--config", "/no/such.toml"], "cannot read config"),
    (["fit-band", "--lam", "-1"], "--lam must be >= 0"),
    (["fit-band", "--iters", "0"], "--iters must be an integer >= 1"),
    (["fit-band", "--lr", "0"], "--lr must be > 0"),
    (["fit-band", "--eval-paths", "30"], "--eval-paths must be an integer >= 40"),
])
def test_bad_arguments_are_one_line_exit_2(capsys, argv, message):
    code, _, err = _run_cli(argv, capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_market_maker_run_folder(tmp_path, capsys):
    config = tmp_path / "small.toml"
    config.write_text("days = 5\nper_day = 2\nbands = [200.0]\n")
    old_mask = os.umask(0o022)
    try:
        code, out, _ = _run_cli(["experiment", "market-maker", "--config", str(config),
                                 "--paths", "4000", "--seed", "3", "--out", str(tmp_path),
                                 "--no-progress"], capsys)
    finally:
        os.umask(old_mask)
    assert code == 0
    folders = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(folders) == 1 and folders[0].name.startswith("market-maker-")
    folder = folders[0]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp left
    # normal permissions under umask 022 (tempfile alone would leave 0700 / 0600)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    for name in ("results.json", "summary.csv", "report.md", "pnl_hist.png",
                 "sample_path.png"):
        assert (folder / name).stat().st_size > 0
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o644, name
    results = json.loads((folder / "results.json").read_text())
    meta = results["metadata"]
    assert meta["seed"] == 3 and meta["key"] == "jax.random.key(3)"
    assert {"hedgejax", "jax", "numpy"} <= set(meta["versions"])
    assert meta["device"]["backend"] == "cpu"
    assert results["config"]["paths"] == 4000 and results["config"]["days"] == 5
    rows = list(csv.DictReader(open(folder / "summary.csv")))
    assert [r["strategy"] for r in rows] == [r["strategy"] for r in results["table"]]
    assert "A desk is long" in (folder / "report.md").read_text()

    unhedged, delta, band = results["table"]
    commission = results["config"]["commission"]
    # rate 0: the commission bill is exactly $50 per trade
    assert math.isclose(delta["mean_cost"], commission * delta["mean_trades"], rel_tol=1e-5)
    assert delta["mean_trades"] <= results["results"]["rebalances"]
    assert unhedged["mean_cost"] == 0.0 and unhedged["mean_trades"] == 0.0
    # the book is bought at the model price: unhedged mean P&L is 0 within 4 SE
    assert abs(unhedged["mean_pnl"]) < 4 * unhedged["stderr"]
    assert delta["std_pnl"] < 0.2 * unhedged["std_pnl"]
    assert band["mean_cost"] < delta["mean_cost"]
    # on the path where spot rises most, delta rises and the hedge sells
    trades = results["results"]["sample_path_trades"]
    assert trades[-1]["spot"] > trades[0]["spot"]
    assert trades[-1]["call_delta"] > trades[0]["call_delta"]
    assert sum(t["trade"] for t in trades[1:]) < 0


def test_non_finite_results_are_refused():
    with pytest.raises(ValueError, match="non-finite"):
        _framework._check_finite("table", [{"x": float("nan")}])


def test_fit_band_json(capsys):
    code, out, _ = _run_cli(["fit-band", "--maturity", "0.25", "--steps", "10", "--iters", "5",
                             "--paths", "256", "--eval-paths", "2000", "--json"], capsys)
    assert code == 0
    results = json.loads(out)["results"]
    assert results["half_width_shares"] > 0
    assert math.isfinite(results["objective"]) and results["objective_stderr"] > 0
