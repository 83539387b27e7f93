"""What an experiment shows a person: terminal tables that fit the terminal and never cut a
number, numbers with thousands separators at 4 significant digits, human headers and a
caption, results.json without float32 noise, figures whose labels are not clipped, run
folders under the umask, and temporary folders of killed runs cleaned up."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
from rich.console import Console

from hedgejax.experiments import NAMES, _framework
from hedgejax.experiments._common import figure, finish_figure, histograms
from hedgejax.experiments._framework import (
    clean_stale_temporaries,
    format_full,
    format_value,
    print_list_table,
    print_table,
    run_experiment,
)

# a table with the magnitudes that broke the old layout: 35,199 beside 1,393, small means,
# None where a column does not apply, long labels and long human headers
TABLE = [
    {"strategy": "unhedged", "mean_pnl": -12.3456, "std_pnl": 35199.2971, "es_0.99": 81234.5,
     "mean_cost": 0.0, "mean_trades": 0.0, "commission_saved": None, "std_increase": None},
    {"strategy": "delta x2/day", "mean_pnl": -0.0731234, "std_pnl": 1393.4, "es_0.99": 3512.2,
     "mean_cost": 1999.997, "mean_trades": 39.99, "commission_saved": 0.0,
     "std_increase": 0.0},
    {"strategy": "band +/-1000 sh", "mean_pnl": -0.000012345, "std_pnl": 1593.4,
     "es_0.99": 4512.2, "mean_cost": 299.997, "mean_trades": 5.99,
     "commission_saved": 1700.0, "std_increase": 200.123},
]
HEADERS = {"commission_saved": "commission saved vs delta ($)",
           "std_increase": "P&L std added vs delta ($)", "mean_trades": "trades per path"}


def _render(width, fn, *args, **kwargs) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    fn(*args, console=console, **kwargs)
    return console.export_text()


def _tokens(text: str) -> Counter:
    return Counter(text.replace("│", " ").replace("┃", " ").split())


def _assert_fits_and_whole(text: str, width: int, table, cols) -> None:
    # the run folder's path ("wrote PATH") is printed whole, to be copied: not checked
    lines = [line for line in text.splitlines() if not line.startswith("wrote ")]
    assert max(len(line.rstrip()) for line in lines) <= width
    assert "…" not in text
    tokens = _tokens(text)
    need = Counter(format_value(row[c]) for row in table for c in cols
                   if not isinstance(row[c], str))
    missing = {cell: n for cell, n in need.items() if tokens[cell] < n}
    assert not missing, f"numbers cut or wrapped at width {width}: {missing}"


@pytest.mark.parametrize("value,text", [
    (35199.2971, "35,199"), (1393.4, "1,393"), (-0.0731234, "-0.07312"), (999.97, "1,000"),
    (12.3456, "12.35"), (0.5, "0.5000"), (1.5e-6, "1.500e-06"), (2.5e16, "2.500e+16"),
    (0.0, "0"), (-0.0, "0"), (-1e-12 + 1e-12, "0"), (1234567.8, "1,234,568"),
    (3, "3"), (40000, "40,000"), (None, "—"), ("band", "band"), (True, "yes"),
])
def test_format_value(value, text):
    assert format_value(value) == text


def test_format_value_never_scientific_for_ordinary_magnitudes():
    for x in np.geomspace(1e-4, 1e14, 60):
        for v in (x, -x):
            assert "e" not in format_value(float(v)), v
            # 4 significant digits at least: the printed number is within 0.05% of v
            assert abs(float(format_value(float(v)).replace(",", "")) - v) <= 5e-4 * abs(v)


def test_format_full_keeps_every_digit():
    assert format_full(1284.691810546875) == "1,284.691810546875"
    assert format_full(-35199.3) == "-35,199.3"
    assert format_full(2000.0) == "2,000"
    assert float(format_full(0.1234567891).replace(",", "")) == 0.1234567891
    assert format_full(None) == "—"


@pytest.mark.parametrize("width", [40, 80, 120])
def test_table_fits_the_terminal_and_never_cuts_a_number(width):
    text = _render(width, print_table, "hedged vs unhedged", TABLE, headers=HEADERS,
                   caption="Long 10,000 calls; money in $; P&L > 0 is a gain; VaR and ES "
                           "are positive losses.")
    _assert_fits_and_whole(text, width, TABLE, list(TABLE[0]))
    assert "—" in text                      # no value, not 0
    for word in ("commission", "saved", "P&L", "std", "added", "VaR", "positive"):
        assert word in text
    assert "commission_saved" not in text and "es_0.99" not in text   # human headers
    vertical = "strategy: unhedged" in text
    assert vertical == (width < 80)         # side by side at 80 columns, blocks at 40


def test_list_table_fits_80_columns():
    text = _render(80, print_list_table)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    tokens = _tokens(text)
    for name in NAMES:
        assert tokens[name] == 1


def test_results_json_has_no_float32_noise(x64):
    # float32 mode: every float keeps only the digits of its nearest float32
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", False)
    plain = _framework._plain({"spot": 100.00000762939453, "cost": 1999.9970703125,
                               "arr": jnp.asarray([0.1, 2.2], dtype=jnp.float32),
                               "np": np.float32(0.3), "f64": 0.1, "n": np.int32(7),
                               "diff": 2000.0 - 1115.641})
    assert json.dumps(plain) == ('{"spot": 100.00001, "cost": 1999.9971, "arr": [0.1, 2.2], '
                                 '"np": 0.3, "f64": 0.1, "n": 7, "diff": 884.359}')
    # float64 mode: Python floats unchanged, float32 arrays still their own digits
    jax.config.update("jax_enable_x64", True)
    plain = _framework._plain({"spot": 100.00000762939453, "a": np.float32([0.1])})
    assert plain == {"spot": 100.00000762939453, "a": [0.1]}


def test_tick_labels_have_separators_and_are_not_clipped():
    fig, ax = figure(ncols=2)
    rng = np.random.default_rng(0)
    histograms(ax[0, 0], {"unhedged": rng.normal(30000, 40000, 2000),
                          "hedged": rng.normal(0, 1500, 2000)})
    ax[0, 1].plot([0.0, 0.25, 0.5], [0.001, 0.002, 0.0015])
    finish_figure(fig)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax[0, 0].get_xticklabels() if t.get_text()]
    big = [t for t in labels if len(t.replace("\N{MINUS SIGN}", "").replace(",", "")) > 4]
    assert big and all("," in t for t in big), labels
    assert ax[0, 0].get_ylabel() == "density (1/$)"
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    for a in fig.get_axes():
        (x0, x1), (y0, y1) = sorted(a.get_xlim()), sorted(a.get_ylim())
        xticks = [t for t in a.get_xticklabels()
                  if t.get_text() and x0 <= t.get_position()[0] <= x1]
        yticks = [t for t in a.get_yticklabels()
                  if t.get_text() and y0 <= t.get_position()[1] <= y1]
        texts = [t for t in (a.xaxis.label, a.yaxis.label, a.title) if t.get_text()]
        for t in texts + xticks + yticks:       # nothing clipped at the figure's edge
            ext = t.get_window_extent(renderer)
            assert ext.x0 >= box.x0 - 1 and ext.x1 <= box.x1 + 1, t.get_text()
            assert ext.y0 >= box.y0 - 1 and ext.y1 <= box.y1 + 1, t.get_text()
        # tick labels do not run together ("100000125000150000")
        exts = sorted((t.get_window_extent(renderer) for t in xticks), key=lambda e: e.x0)
        for left, right in zip(exts, exts[1:], strict=False):
            assert left.x1 < right.x0 or left.y1 < right.y0 or right.y1 < left.y0
    import matplotlib.pyplot as plt

    plt.close(fig)


def _make_temporary(out, name, age_s):
    folder = out / f".{name}-abcd1234.tmp"
    folder.mkdir()
    (folder / "results.json").write_text("{")
    past = time.time() - age_s
    os.utime(folder, (past, past))
    return folder


def test_stale_temporaries_are_cleaned_and_live_ones_kept(tmp_path):
    stale = _make_temporary(tmp_path, "market-maker", 7200)
    fresh = tmp_path / ".gamma-scalping-fresh000.tmp"
    fresh.mkdir()
    other = tmp_path / ".not-an-experiment-x.tmp"
    other.mkdir()
    os.utime(other, (time.time() - 7200,) * 2)
    a_file = tmp_path / ".market-maker-file.tmp"
    a_file.write_text("")
    os.utime(a_file, (time.time() - 7200,) * 2)
    # a live run's folder, old but locked by a process that is still running
    live = tmp_path / ".vega-hedging-live0000.tmp"
    live.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
         "os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); "
         "time.sleep(60)", str(live)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        os.utime(live, (time.time() - 7200,) * 2)
        removed = clean_stale_temporaries(tmp_path)
        assert removed == [stale] and not stale.exists()
        assert fresh.exists() and other.exists() and a_file.exists() and live.exists()
        # SIGKILL: the kernel drops the lock, and the next run removes the folder
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        assert clean_stale_temporaries(tmp_path) == [live] and not live.exists()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
    # younger than the run start but not yet a minute old: kept (a run may be creating it)
    young = _make_temporary(tmp_path, "market-maker", 10)
    assert clean_stale_temporaries(tmp_path) == [] and young.exists()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_market_maker_output(tmp_path, capsys, monkeypatch, umask):
    stale = _make_temporary(tmp_path, "market-maker", 7200)
    monkeypatch.setenv("COLUMNS", "80")
    old_mask = os.umask(umask)
    try:
        folder = run_experiment("market-maker", out=tmp_path, progress=False,
                                overrides={"paths": 300, "days": 2, "per_day": 1,
                                           "bands": [200.0, 1000.0]})
    finally:
        os.umask(old_mask)
    assert not stale.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # run folder and files under the umask (not tempfile's drwx------ / -rw-------)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    for f in folder.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f.name
    if umask != 0o022:
        return
    out = capsys.readouterr().out
    payload = json.loads((folder / "results.json").read_text())
    table = payload["table"]
    display = ["strategy", "mean_pnl", "std_pnl", "es_0.99", "mean_cost", "mean_trades",
               "commission_saved", "std_increase"]
    _assert_fits_and_whole(out, 80, table, display)
    assert "10,000 calls" in out and "positive losses" in out     # the caption
    assert "—" in out
    wide = _render(120, print_table, "t", table, display=display)
    _assert_fits_and_whole(wide, 120, table, display)
    # the unhedged row has no commission to save: null, not 0
    assert table[0]["commission_saved"] is None and table[0]["std_increase"] is None
    assert table[1]["commission_saved"] == 0.0
    # results.json: no float32 noise (a float that is a float32 has the float32 digits)

    def floats(x):
        if isinstance(x, dict):
            for v in x.values():
                yield from floats(v)
        elif isinstance(x, list):
            for v in x:
                yield from floats(v)
        elif isinstance(x, float):
            yield x
    noisy = [x for x in floats(payload) if float(np.float32(x)) == x
             and repr(x) != str(np.float32(x))]
    assert not noisy, noisy[:5]
    spot = payload["results"]["sample_path_trades"][0]["spot"]    # a float32 simulated
    assert abs(spot - 100.0) < 1e-3 and len(repr(spot)) <= len("100.00001")
    # summary.csv keeps the keys; report.md has human headers and the caption under the title
    with open(folder / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(table[0]) and rows[0]["commission_saved"] == ""
    report = (folder / "report.md").read_text()
    title = report.index("## hedged vs unhedged")
    caption = report.index("Long 10,000 calls")
    header = report.index("| strategy | mean P&L ($) |")
    assert title < caption < header
    assert "es_0.99" not in report.split("## What was measured")[0]
    assert {p.name for p in folder.glob("*.png")} == {"pnl_hist.png", "sample_path.png",
                                                      "bands.png"}


# ---------------------------------------------------------------------------------------
# Config files, path counts, progress, wrapping, plots (review of "a user's first hour")
# ---------------------------------------------------------------------------------------


def _config_error(path, message):
    with pytest.raises(_framework.ConfigError, match=message) as err:
        _framework.load_config("market-maker", path)
    assert str(path) in str(err.value)


def test_config_must_be_a_small_regular_utf8_file(tmp_path):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)                 # opening it would block forever: refused before opening
    _config_error(fifo, "not a regular file")
    _config_error("/dev/zero", "not a regular file")        # would read without end
    _config_error(tmp_path, "is a folder")
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate(_framework.MAX_CONFIG_BYTES + 1)          # sparse: nothing written
    _config_error(big, "more than the 1,048,576")
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"paths = 100\n# caf\xe9\n")
    _config_error(latin, r"line 2: not UTF-8 text \(byte 0xe9\)")


def test_paths_bounds_name_the_key(monkeypatch, tmp_path):
    with pytest.raises(_framework.ConfigError,
                       match=r"config key 'paths' \(--paths\) must be >= 2 "):
        _framework.load_config("market-maker", overrides={"paths": 1})
    small = tmp_path / "small.toml"
    small.write_text("paths = 1\n")
    with pytest.raises(_framework.ConfigError, match=r"config key 'paths' must be >= 2 "):
        _framework.load_config("market-maker", path=small)
    with pytest.raises(_framework.ConfigError, match=r"must be >= 2 and <= 4,294,967,295, "
                                                     r"got 99999999999999"):
        _framework.load_config("market-maker", overrides={"paths": 99999999999999})
    # more paths than memory holds: refused before anything runs, naming key and flag
    monkeypatch.setattr("hedgejax._validate.memory_limit", lambda: 2**30)
    with pytest.raises(_framework.ConfigError,
                       match=r"^config key 'paths' \(--paths\) = 33,554,432 .* needs about "
                             r"1\.\d GiB.*lower paths"):
        run_experiment("market-maker", paths=2**25, out=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()


def test_every_experiment_allows_the_paths_it_can_run():
    """The lower bound of 'paths' is each experiment's real minimum: 2 for a P&L sample's
    statistics, more where an experiment says so (band-learning's batches)."""
    for name in NAMES:
        module = _framework.load_module(name)
        rule = {**_framework.COMMON_BOUNDS, **getattr(module, "BOUNDS", {})}["paths"]
        assert rule.lo >= 2, name


def test_progress_goes_to_stderr_only_on_a_terminal(capsys):
    ctx = _framework.Context(name="market-maker", seed=0, progress=True)
    assert list(ctx.track(range(3), "working")) == [0, 1, 2]
    out, err = capsys.readouterr()
    assert out == "" and err == ""          # stderr is not a terminal here: no bar at all


@pytest.mark.parametrize("text,width,lines", [
    ("99% ES ($ loss)", 8, ["99% ES", "($ loss)"]),
    ("mean cost to insure ($ at t0)", 9, ["mean cost", "to insure", "($ at t0)"]),
    ("width 0.0275", 6, ["width 0.0275"]),
    ("scale 0.938, gamma 2", 12, ["scale 0.938,", "gamma 2"]),
    ("hedge effectiveness (1 - Var / Var unhedged)", 14,
     ["hedge", "effectiveness", "(1 - Var / Var", "unhedged)"]),
])
def test_wrap_keeps_units_and_numbers_with_their_words(text, width, lines):
    assert _framework._wrap(text, width) == lines


def test_narrow_header_breaks_before_the_unit_not_inside_it():
    table = [{"strategy": "delta", "es_0.99": 4757.0, "mean_cost": 2000.0}]
    text = _render(30, print_table, "t", table,
                   headers={"mean_cost": "mean cost to insure ($ at t0)"})
    assert "($ loss)" in text and "($ at t0)" in text


def test_histogram_note_is_under_the_axis_not_on_the_bars():
    fig, ax = figure()
    histograms(ax[0, 0], {"a": np.random.default_rng(0).normal(size=500)})
    assert not ax[0, 0].texts
    assert ax[0, 0].get_xlabel() == ("P&L at T ($)\n(0.2-99.8 percentile range shown; tails "
                                     "not drawn)")
    assert ax[0, 0].get_ylabel() == "density (1/$)"


def test_log_axes_are_labelled_over_their_whole_range():
    from hedgejax.experiments._common import log_ticks

    fig, ax = figure()
    a = ax[0, 0]
    a.plot([0.42, 2.3], [0.11, 0.6])
    a.set_xscale("log")
    a.set_yscale("log")
    log_ticks(a.xaxis)
    log_ticks(a.yaxis)
    finish_figure(fig)
    fig.canvas.draw()
    for axis, lo, hi in ((a.xaxis, 0.42, 2.3), (a.yaxis, 0.11, 0.6)):
        ticks = [t for t in axis.get_majorticklabels() if t.get_text()]
        values = [t.get_position()[axis is a.yaxis] for t in ticks]
        inside = [v for v in values if lo * 0.9 <= v <= hi * 1.1]
        assert len(inside) >= 4, values
        # a labelled tick near each end of the data: no unlabelled stretch at either end
        assert min(inside) <= lo * 1.5 and max(inside) >= hi / 1.5, values
    xlabels = [t.get_text() for t in a.xaxis.get_majorticklabels() if t.get_text()]
    assert "2" in xlabels


def test_plural_and_cost_phrase():
    from hedgejax.experiments._common import cost_phrase, plural

    assert plural(1, "call") == "1 call" and plural(1.0, "year") == "1 year"
    assert plural(10000, "call") == "10,000 calls" and plural(0.25, "year") == "0.25 years"
    assert cost_phrase(0.0) == "with no costs"
    assert cost_phrase(0.001) == "paying 0.10% of the traded value"


def test_prices_csv_must_be_a_regular_file(tmp_path):
    from hedgejax.experiments import historical

    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    cfg = _framework.load_config("historical", overrides={"prices_csv": str(fifo)})
    with pytest.raises(_framework.ConfigError,
                       match=r"^config key 'prices_csv': .*fifo.csv is not a regular file"):
        historical._load(cfg)


def test_library_errors_name_the_config_keys_changed_and_warnings_become_notes(capsys):
    """An experiment computes library arguments from config keys; when the library refuses
    one (by its own name, e.g. n_steps), the error names the keys the user changed."""
    import types
    import warnings

    def failing(cfg, ctx):
        raise ValueError("n_steps must be an integer in [1, 1,000,000], got n_steps=2e10\nmore")

    def warning(cfg, ctx):
        warnings.warn("a maturity is moved onto the grid\nsecond line", UserWarning,
                      stacklevel=1)
        warnings.warn("a maturity is moved onto the grid\nsecond line", UserWarning,
                      stacklevel=1)
        return _framework.Outcome(table=[{"a": 1.0}])

    cfg = _framework.load_config("market-maker", overrides={"per_day": 10**9})
    module = types.SimpleNamespace(run=failing)
    with pytest.raises(_framework.ConfigError) as err:
        _framework._run_module(module, "market-maker", cfg, progress=False, show=True)
    assert str(err.value) == ("experiment market-maker failed: n_steps must be an integer in "
                              "[1, 1,000,000], got n_steps=2e10 (config keys changed from the "
                              "defaults: per_day = 1000000000)")
    module = types.SimpleNamespace(run=warning)
    _framework._run_module(module, "market-maker", _framework.load_config("market-maker"),
                           progress=False, show=True)
    assert capsys.readouterr().err == "note: a maturity is moved onto the grid\n"


def test_an_empty_config_name_is_refused_by_name():
    with pytest.raises(_framework.ConfigError, match=r"config file name is empty"):
        _framework.load_config("market-maker", path="")
