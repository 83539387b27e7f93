"""The command line fails in one line: each bad input, run as a real process, exits with status
2 and prints exactly one line on stderr, naming the flag or key, with no traceback, before
computing anything it can check in advance. Output is strict JSON, files are only ever
written over regular files, with the umask's permissions."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

import hedgejax
from hedgejax import _checkpoint, _io, cli
from hedgejax.experiments import NAMES, _framework

ROOT = Path(__file__).resolve().parents[1]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
# The subprocesses share the suite's on-disk compilation cache (conftest.py).
ENV = {**os.environ, "JAX_PLATFORMS": "cpu",
       "JAX_COMPILATION_CACHE_DIR": str(ROOT / ".pytest_cache" / "xla"),
       "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5"}
TINY = ["--paths", "64", "--steps", "2"]


def run(*argv: str, cwd: Path | None = None, env: dict | None = None,
        **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hedgejax.cli", *argv], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env or ENV, **kwargs)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and proc.stderr.endswith("\n"), proc.stderr
    assert lines[0].startswith("hedgejax: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as every JSON reader but Python's does."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------------------------------
# Inputs refused before anything is computed
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, needles", [
    # paths that would overflow (or underflow) float32: named, before simulating
    (["hedge", "--vol", "20", "--paths", "512", "--steps", "8"], ["--vol 20", "--x64"]),
    (["hedge", "--drift", "200", "--paths", "512", "--steps", "8"], ["--drift 200"]),
    (["hedge", "--drift", "1e6", "--paths", "512", "--steps", "8"],
     ["--drift 1e6", "drift 1e6 and"]),
    # seeds beyond jax.random.key's range, in every command that takes one
    (["hedge", "--seed", "18446744073709551616"], ["--seed", "0..4294967295"]),
    (["fit-band", "--seed", "18446744073709551616"], ["--seed", "0..4294967295"]),
    (["experiment", "market-maker", "--seed", "18446744073709551616"], ["--seed"]),
    # memory estimated and refused before allocating
    (["hedge", "--paths", "2147483648", "--steps", "2"], ["--paths 2,147,483,648", "GiB"]),
    # float32 range; a library message by the flag that set the value
    (["price", "--spot", "1e39"], ["--spot 1e39", "float32"]),
    (["hedge", "--hedge-vol", "0", *TINY], ["--hedge-vol must be"]),
    (["hedge", "--paths", "1", "--steps", "5", "--json"], ["--paths must be an integer >= 2"]),
    (["greeks", "--vol", "1e-30", "--json"], ["--vol"]),
    (["price", "--rate", "-inf"], ["--rate must be finite"]),
])
def test_bad_value_is_one_line_naming_the_flag(argv, needles):
    line = assert_one_line_error(run(*argv), *needles)
    assert "vol=" not in line.replace("--hedge-vol=", "")     # flags, not parameter names


def test_negative_numbers_are_values_in_any_notation():
    proc = run("price", "--rate", "-1e-3", "--div", "-.5E-2", "--json")
    assert proc.returncode == 0, proc.stderr
    inputs = strict_json(proc.stdout)["inputs"]
    assert inputs["rate"] == -1e-3 and inputs["div"] == -0.005
    parser = cli.build_parser()
    for token, value in (("-1e-3", -1e-3), ("-2", -2.0), ("-.5", -0.5), ("-3.E+2", -300.0)):
        assert parser.parse_args(["hedge", "--drift", token]).drift == value
    assert math.isinf(parser.parse_args(["price", "--rate", "-inf"]).rate)


# ---------------------------------------------------------------------------------------
# Output paths: checked first, only regular files replaced
# ---------------------------------------------------------------------------------------


def _read_only_folder(tmp_path: Path) -> Path:
    if IS_ROOT:     # root writes through permissions: use a folder the kernel refuses
        if not os.path.isdir("/sys"):
            pytest.skip("running as root without /sys: no unwritable folder to test")
        return Path("/sys")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def _special_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    else:  # a character device like /dev/null (1, 3), made where replacing it is harmless
        if not IS_ROOT:
            pytest.skip("making a device node needs root")
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


@pytest.mark.parametrize("case", ["folder", "trailing-slash", "read-only", "parent-is-file",
                                  "fifo", "device"])
def test_plot_path_is_refused_before_computing(tmp_path, case):
    if case == "folder":
        plot = str(tmp_path)
    elif case == "trailing-slash":
        plot = str(tmp_path / "pnl") + "/"
    elif case == "read-only":
        plot = str(_read_only_folder(tmp_path) / "pnl.png")
    elif case == "parent-is-file":
        (tmp_path / "file").write_text("")
        plot = str(tmp_path / "file" / "pnl.png")
    else:
        plot = str(_special_file(tmp_path, case))
    before = sorted(os.listdir(tmp_path))
    proc = run("hedge", *TINY, "--plot", plot)
    assert_one_line_error(proc, "--plot")
    assert proc.stdout == ""                         # nothing computed, nothing printed
    assert sorted(os.listdir(tmp_path)) == before    # nothing written, nothing replaced
    if case in ("fifo", "device"):
        mode = os.stat(plot).st_mode
        assert stat.S_ISFIFO(mode) if case == "fifo" else stat.S_ISCHR(mode)


def test_full_folder_is_refused(tmp_path, monkeypatch):
    class Full:
        f_bavail, f_frsize = 3, 4096
    monkeypatch.setattr(os, "statvfs", lambda path: Full)
    with pytest.raises(ValueError, match="no space left on the device holding"):
        _io.check_output_file(tmp_path / "pnl.png")
    with pytest.raises(ValueError, match="no space left on the device holding"):
        _io.check_output_dir(tmp_path / "runs")

    class Small:    # 400 KB free: room for a plot
        f_bavail, f_frsize = 100, 4000
    monkeypatch.setattr(os, "statvfs", lambda path: Small)
    _io.check_output_file(tmp_path / "pnl.png")
    _io.check_output_dir(tmp_path / "runs")
    # but not for an experiment's run folder (0.2-0.5 MB): refused before it runs
    with pytest.raises(ValueError, match="400,000 bytes free, 1,048,576 needed"):
        _io.check_output_dir(tmp_path / "runs", _io.RUN_FOLDER_BYTES)

    class Enough:
        f_bavail, f_frsize = 1000, 4096
    monkeypatch.setattr(os, "statvfs", lambda path: Enough)
    _io.check_output_dir(tmp_path / "runs", _io.RUN_FOLDER_BYTES)


@pytest.mark.parametrize("case", ["file", "read-only"])
def test_experiment_out_is_checked_before_running(tmp_path, case):
    if case == "file":
        out = tmp_path / "file"
        out.write_text("")
        needle = "is not a folder"
    else:
        out = _read_only_folder(tmp_path) / "runs"
        needle = "cannot write in"
    started = time.perf_counter()
    proc = run("experiment", "market-maker", "--out", str(out), "--no-progress")
    assert_one_line_error(proc, "--out", needle)
    assert proc.stdout == ""
    assert time.perf_counter() - started < 60    # the experiment itself takes longer


def test_atomic_write_never_replaces_a_device(tmp_path, monkeypatch):
    """/dev/null itself, with the rename and the temporary file disabled first, so a broken
    check fails the test instead of replacing /dev/null."""
    def forbidden(*args, **kwargs):
        raise AssertionError("atomic_write went past its check")
    monkeypatch.setattr(_io.os, "replace", forbidden)
    monkeypatch.setattr(_io.tempfile, "mkstemp", forbidden)
    with pytest.raises(ValueError, match="/dev/null is a character device"):
        _io.refuse_non_regular("/dev/null")
    with pytest.raises(ValueError, match="/dev/null is a character device"):
        _io.atomic_write("/dev/null", forbidden)
    with pytest.raises(ValueError, match="/dev/null is a character device"):
        _save_checkpoint("/dev/null")
    with pytest.raises(ValueError, match="is a folder"):
        _io.atomic_write(tmp_path, forbidden)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def _save_checkpoint(path) -> None:
    params = {"width": np.ones(2, np.float32)}
    logs = (np.zeros(1), np.zeros(1), np.zeros((1, 2)))
    _checkpoint.save(path, {"format": _checkpoint.FORMAT}, 1, params, (), logs)


@pytest.mark.parametrize("umask, file_mode, dir_mode",
                         [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_files_respect_the_umask(tmp_path, umask, file_mode, dir_mode):
    plot = tmp_path / "plots" / "pnl.png"
    proc = run("hedge", *TINY, "--plot", str(plot), "--json", umask=umask)
    assert proc.returncode == 0, proc.stderr
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert stat.S_IMODE(plot.stat().st_mode) == file_mode
    assert stat.S_IMODE(plot.parent.stat().st_mode) == dir_mode
    old = os.umask(umask)
    try:
        _save_checkpoint(tmp_path / "fit" / "ckpt.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "fit" / "ckpt.npz").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "fit").stat().st_mode) == dir_mode
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]   # no temp left


# ---------------------------------------------------------------------------------------
# Strict JSON
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, undefined", [
    (["hedge", "--spot", "1e30", *TINY], None),
    (["hedge", "--quantity", "0", *TINY], "hedge_effectiveness"),
])
def test_json_is_strict(argv, undefined):
    proc = run(*argv, "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""                         # warnings become notes
    payload = strict_json(proc.stdout)
    if undefined is None:
        assert "notes" not in payload
        assert all(v is not None for v in payload["results"].values())
    else:
        assert payload["results"][undefined] is None
        assert "undefined" in payload["notes"][undefined]


def test_non_finite_values_become_null_with_a_note():
    notes: dict[str, str] = {}
    clean = cli._strict_json({"a": 1.0, "b": float("nan"), "c": float("-inf"), "n": 3}, notes)
    assert clean == {"a": 1.0, "b": None, "c": None, "n": 3}
    assert set(notes) == {"b", "c"}
    json.dumps(clean, allow_nan=False)


# ---------------------------------------------------------------------------------------
# historical: the CSV reader's failures are one line
# ---------------------------------------------------------------------------------------


def _series(tmp_path: Path, name: str, price: str) -> Path:
    rows = [f"2021-01-{day:02d},{100 + day}" for day in range(1, 29)]
    rows[5] = f"2021-01-06,{price}"
    path = tmp_path / f"{name}.csv"
    path.write_text("date,price\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("case", ["huge-field", "not-utf8", "1e300", "1e-320", "1e-30"])
def test_historical_csv_failures_are_one_line(tmp_path, case):
    if case == "huge-field":
        csv_path = tmp_path / "huge.csv"
        csv_path.write_text("date,price\n2021-01-04," + "1" * 200_000 + "\n2021-01-05,100\n")
    elif case == "not-utf8":
        csv_path = tmp_path / "latin1.csv"
        csv_path.write_bytes("date,price\n2021-01-04,100\n# caf\xe9\n".encode("latin-1"))
    else:
        csv_path = _series(tmp_path, case, case)
    config = tmp_path / "config.toml"
    config.write_text(f'prices_csv = "{csv_path}"\nwindow = 5\npaths = 64\n')
    proc = run("experiment", "historical", "--config", str(config),
               "--out", str(tmp_path / "runs"), "--no-progress")
    assert_one_line_error(proc, "config key 'prices_csv'")
    assert not list((tmp_path / "runs").glob("historical-*"))


@pytest.mark.parametrize("error, needles", [
    (csv.Error("field larger than field limit (131072)"),
     ["config key 'prices_csv'", "field limit"]),
    (OSError(28, "No space left on device", "runs/x/results.json"),
     ["--out", "no space left on the device holding"]),
    (UnicodeDecodeError("utf-8", b"\xe9", 0, 1, "invalid continuation byte"), ["utf-8"]),
])
def test_experiment_errors_become_one_line(tmp_path, monkeypatch, capsys, error, needles):
    """What a run can still raise after the checks (a reader's csv.Error, a disk filling up
    while the run folder is written): one line, status 2."""
    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(_framework, "run_experiment", fail)
    with pytest.raises(SystemExit) as exc:
        cli.main(["experiment", "historical", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(needle in err for needle in needles), err
    assert "[Errno" not in err


def test_failed_experiment_leaves_no_empty_out_folder(tmp_path, monkeypatch, capsys):
    out = tmp_path / "new" / "runs"

    def fill_up(*args, out, **kwargs):
        Path(out).mkdir(parents=True)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(_framework, "run_experiment", fill_up)
    with pytest.raises(SystemExit) as exc:
        cli.main(["experiment", "market-maker", "--out", str(out)])
    assert exc.value.code == 2
    assert capsys.readouterr().err == (f"hedgejax: error: --out {out}: no space left on the "
                                       f"device holding {out}\n")
    assert os.listdir(tmp_path) == []       # the folders it created, removed again


# ---------------------------------------------------------------------------------------
# Usability: help, version, defaults, progress, bench, --show-config, list
# ---------------------------------------------------------------------------------------


def test_bare_command_prints_the_commands_and_exits_0():
    proc = run()
    assert proc.returncode == 0 and proc.stderr == ""
    for command in ("price", "greeks", "hedge", "fit-band", "experiment", "bench"):
        assert command in proc.stdout
    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == \
        f"hedgejax {hedgejax.__version__}"


def _subparsers(parser):
    import argparse

    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_flag_has_help_and_shows_its_default():
    for name, sub in _subparsers(cli.build_parser()).items():
        text = sub.format_help()
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
            shown = action.default is not None and not isinstance(action.default, bool)
            if action.option_strings and shown and action.default != "==SUPPRESS==":
                assert f"(default: {action.default})" in " ".join(text.split()), \
                    f"{name} {action.option_strings[0]}"


def test_progress_only_on_a_terminal_and_without_json(monkeypatch):
    args = cli.build_parser().parse_args(["hedge"])
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert cli._progress_wanted(args)
    for flag in ("json", "no_progress"):
        assert not cli._progress_wanted(cli.build_parser().parse_args(
            ["hedge", "--" + flag.replace("_", "-")]))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not cli._progress_wanted(args)


def test_progress_runs_in_chunks_with_identical_results(monkeypatch):
    import jax

    import hedgejax as hj

    args = cli.build_parser().parse_args(["hedge", "--paths", "300", "--steps", "4",
                                          "--cost", "0.001"])
    world = hj.BlackScholes(100.0, 0.2)
    parts = (world, hj.Book([hj.EuropeanCall(100.0, 1.0)]), hj.DeltaHedge(),
             hj.Proportional(0.001), hj.TimeGrid(1.0, 4))
    monkeypatch.setattr(cli, "_PROGRESS_MIN_WORK", 0)
    monkeypatch.setattr(cli, "_PROGRESS_CHUNKS", 3)
    calls = []
    real = hj.iter_hedge_chunks

    def spy(*a, **k):
        calls.append(k["chunk_size"])
        return real(*a, **k)
    monkeypatch.setattr(hj, "iter_hedge_chunks", spy)
    chunked = cli._simulate(hj, *parts, args, None, progress=True)
    whole = cli._simulate(hj, *parts, args, None, progress=False)
    assert calls == [128]                                   # 3 chunks of 2 x 64 paths
    for a, b in zip(jax.tree.leaves(chunked), jax.tree.leaves(whole), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bench_needs_a_source_checkout(tmp_path):
    """An installed copy of the package (no experiments/bench.py beside it)."""
    shutil.copytree(ROOT / "hedgejax", tmp_path / "hedgejax",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**ENV, "PYTHONPATH": str(tmp_path)}
    proc = run("bench", "--quick", cwd=tmp_path, env=env)
    assert_one_line_error(proc, "source checkout", "clone")


def test_show_config_prints_the_default_toml():
    proc = run("experiment", "historical", "--show-config")
    assert proc.returncode == 0, proc.stderr
    assert "prices_csv" in proc.stdout and proc.stdout.lstrip().startswith("#")
    for name in NAMES:
        assert tomllib.loads(cli._default_toml(name)) == _framework.default_config(name)
    assert_one_line_error(run("experiment", "list", "--show-config"), "--show-config")


def test_experiment_list_fits_80_columns():
    proc = run("experiment", "list", env={**ENV, "COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in NAMES:
        assert any(line.lstrip().startswith(name) for line in lines), name


@pytest.mark.parametrize("target", ["/dev/null", "FOLDER"])
def test_fit_refuses_a_checkpoint_path_before_training(tmp_path, monkeypatch, target):
    """fit(checkpoint=NODE or a folder) is refused at entry, before a single step runs."""
    import hedgejax as hj
    from hedgejax import _fit

    def no_training(*args, **kwargs):
        raise AssertionError("fit started training before checking the checkpoint path")

    monkeypatch.setattr(_fit, "hedge", no_training)
    path = tmp_path if target == "FOLDER" else target
    with pytest.raises(ValueError, match="checkpoint must name a file|character device"):
        hj.fit(hj.BandHedge(0.05), hj.risk.mean_cost_variance(1.0), hj.BlackScholes(100.0, 0.2),
               hj.EuropeanCall(100.0, 1.0), hj.Proportional(0.001), hj.TimeGrid(1.0, 4),
               key=0, steps=2, n_paths=16, checkpoint=path)


# ---------------------------------------------------------------------------------------
# Review findings: bounds, culprits, typed echoes, output streams, tables, files
# ---------------------------------------------------------------------------------------


def refused(capsys, argv, *needles: str) -> str:
    """cli.main(argv) in-process: status 2, one line naming `needles`, nothing on stdout."""
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == "", err
    assert err.count("\n") == 1 and err.startswith("hedgejax: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


HEDGE = ["hedge", "--paths", "64", "--steps", "4"]


@pytest.mark.parametrize("argv, needles", [
    # integer flags bounded before jax sees them
    ([*HEDGE, "--every", "3000000000"], ["--every must be <= 4", "3,000,000,000"]),
    ([*HEDGE, "--every", "99999999999"], ["--every"]),
    (["hedge", "--steps", "2000000"], ["--steps must be <= 1,000,000"]),
    (["fit-band", "--iters", "3000000000"], ["--iters must be <= 1,000,000"]),
    (["fit-band", "--eval-paths", "99999999999"], ["--eval-paths must be <= 4,294,967,295"]),
    # the culprit named
    ([*HEDGE, "--maturity", "1e6"], ["--maturity 1e6 is too large"]),
    ([*HEDGE, "--fixed", "1e38"], ["--fixed 1e38 is too large"]),
    ([*HEDGE, "--spread", "3e38"], ["--spread 3e38 is too large"]),
    (["fit-band", "--band", "learned", "--quantity", "0"], ["--quantity must not be 0"]),
    ([*HEDGE, "--alpha", "0.999999999"], ["--alpha 0.999999999 rounds to 1 in float32"]),
    # echoed as typed
    ([*HEDGE, "--spot", "1e-400"], ["--spot 1e-400 is below float32's smallest"]),
    # underscores refused by name, with or without a sign
    (["price", "--rate", "-1_000"], ["argument --rate: invalid number '-1_000'"]),
    (["price", "--rate", "1_000"], ["argument --rate: invalid number '1_000'"]),
    (["hedge", "--paths", "1_000"], ["argument --paths: invalid integer '1_000'"]),
    # flags that would do nothing
    (["experiment", "list", "--paths", "5"], ["--paths has no effect with list"]),
    (["experiment", "market-maker", "--show-config", "--out", "afile"],
     ["--out has no effect with --show-config"]),
    (["experiment", "market-maker", "--out", ""], ["--out must name a folder"]),
])
def test_refused_before_computing(capsys, argv, needles):
    refused(capsys, argv, *needles)


def test_library_messages_echo_the_flag_as_typed(capsys):
    err = refused(capsys, [*HEDGE, "--hedge-vol", "-0.1"], "--hedge-vol")
    assert "-0.1" in err and "0.10000000149" not in err


def test_x64_advice_dropped_under_x64(capsys, x64):
    err = refused(capsys, ["greeks", "--x64", "--vol", "1e-300"], "--vol")
    assert "--x64" not in err


def test_large_every_is_no_traceback_as_a_process():
    assert_one_line_error(run(*HEDGE, "--every", "3000000000"), "--every")


@pytest.mark.parametrize("argv", [["greeks", "--json"],
                                  ["experiment", "market-maker", "--show-config"]])
def test_full_stdout_is_one_line(argv):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "hedgejax.cli", *argv], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=300, env=ENV)
    assert_one_line_error(proc, "cannot write to standard output", "No space left")


class _Closed:
    def __init__(self, error):
        self.error = error

    def write(self, text):
        raise self.error

    def flush(self):
        raise self.error


def test_broken_pipe_exits_quietly_and_ctrl_c_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", _Closed(BrokenPipeError(32, "Broken pipe")))
    assert cli.main(["experiment", "market-maker", "--show-config"]) == 1
    monkeypatch.undo()
    assert capsys.readouterr().err == ""

    def interrupt(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "_check_args", interrupt)
    assert cli.main(["price"]) == 130
    assert capsys.readouterr().err == "hedgejax: interrupted\n"


def test_tables_have_units_typed_inputs_and_formatted_numbers(capsys):
    assert cli.main(["hedge", "--paths", "1000", "--steps", "4", "--strike", "1234567e-4",
                     "--no-progress"]) == 0
    out = capsys.readouterr().out
    words = " ".join(out.split())
    assert "K=1234567e-4" in words and "1,000 paths x 4 steps" in words
    assert "statistic" in out and "quantity" not in out
    assert "mean P&L ($)" in out and "VaR at 0.99 (loss, $)" in out
    assert "P&L > 0 is a gain" in words
    assert any(line.startswith("│ paths ") and "1,000 │" in line for line in out.splitlines())
    assert "e+" not in out and "e-0" not in out
    assert cli.main(["greeks"]) == 0
    out = capsys.readouterr().out
    assert "vega ($ per 1.00 vol)" in out and "39.70" in out


def test_narrow_terminal_gets_label_value_lines(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "30")
    assert cli.main(["greeks", "--quantity", "1000"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "delta (shares): 539.8" in lines and "vega ($ per 1.00 vol): 39,695" in lines


def test_json_floats_are_float32_shortest(capsys):
    assert cli.main(["hedge", "--paths", "64", "--steps", "4", "--json"]) == 0
    results = strict_json(capsys.readouterr().out)["results"]
    for key, value in results.items():
        if isinstance(value, float):
            assert repr(value) == str(np.float32(value)), key
    clean = cli._strict_json({"z": -0.0}, {}, x64=False)
    assert math.copysign(1, clean["z"]) == 1


def test_plot_format_follows_the_suffix(tmp_path, capsys, monkeypatch):
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    pdf = tmp_path / "out.PDF"
    assert cli.main([*HEDGE, "--plot", str(pdf), "--json"]) == 0
    assert pdf.read_bytes()[:5] == b"%PDF-"
    ax = figures[0].axes[1]
    assert ax.get_ylabel() and all(t == int(t) for t in ax.get_yticks())
    assert "64 paths x 4 steps" in figures[0].get_suptitle()
    capsys.readouterr()
    refused(capsys, [*HEDGE, "--plot", str(tmp_path / "x.xyz")], "--plot", ".xyz")
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "missing.png")
    refused(capsys, [*HEDGE, "--plot", str(dangling)], "--plot", "symbolic link")
    assert dangling.is_symlink()


def test_atomic_write_writes_through_a_link_to_a_file(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    _io.atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"


_KILLED_WRITER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("_io", sys.argv[1])
io_ = importlib.util.module_from_spec(spec); spec.loader.exec_module(io_)
def write(tmp):
    open(tmp, "w").write("half")
    print("writing", flush=True)
    time.sleep(600)
io_.atomic_write(sys.argv[2], write)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="flock and SIGKILL: POSIX")
def test_stale_temporaries_of_killed_writers_are_removed(tmp_path):
    import fcntl
    import signal

    target = tmp_path / "p.png"
    child = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, _io.__file__, str(target)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "writing\n"
        (held,) = tmp_path.glob(".p.png.*.tmp")
        old = time.time() - 2 * _io.STALE_SECONDS
        os.utime(held, (old, old))
        _io.atomic_write_text(target, "1")       # the living writer's file is locked: kept
        assert held.exists()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    # a fresh one and one in use (locked here) are kept; a stale, unlocked one goes
    fresh = tmp_path / ".p.png.fresh.tmp"
    fresh.write_text("")
    busy = tmp_path / ".p.png.busy.tmp"
    busy.write_text("")
    os.utime(busy, (old, old))
    with open(busy) as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        _io.atomic_write_text(target, "2")
    assert not held.exists() and fresh.exists() and busy.exists()
    assert target.read_text() == "2"


@pytest.mark.slow  # compile-bound (7-13 s on the 2-core CI machine): the slow tier
def test_fit_progress_goes_to_stderr(capsys, monkeypatch):
    from hedgejax import _fit

    bar = _fit._Bar(3, 0)
    bar.close()
    assert bar.progress.console.stderr
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert cli.main(["fit-band", "--iters", "2", "--paths", "64", "--eval-paths", "64",
                     "--steps", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("hedgejax fit-band: constant band")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX signals")
def test_ctrl_c_during_a_run_is_one_line_and_status_130():
    """A real SIGINT while XLA computes: one line, status 130 (128 + SIGINT), no traceback,
    no crash in the interpreter's shutdown."""
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "hedgejax.cli", "hedge", "--paths",
                             "20000000", "--steps", "252", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(5)       # past the imports, into the simulation
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert (proc.returncode, err, out) == (130, "hedgejax: interrupted\n", "")


def test_ctrl_c_while_jax_loads_prints_one_line(monkeypatch, capsys):
    """The console script's entry point runs before `import hedgejax` (which loads jax): a
    KeyboardInterrupt during that import is one line and status 130, not a traceback."""
    import types

    import hedgejax_entry

    class Loading(types.ModuleType):
        def __getattr__(self, name):
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "hedgejax.cli", Loading("hedgejax.cli"))
    assert hedgejax_entry.main() == 130
    assert capsys.readouterr().err == "hedgejax: interrupted\n"


@pytest.mark.parametrize("as_json", [False, True])
def test_library_warnings_are_notes_not_python_warnings(monkeypatch, capsys, as_json):
    """A library warning during a command (fit-band's horizon moved onto the grid) is one
    note line after the table, or an entry of "notes" in the JSON; never Python's
    file-and-source-line format, and said once."""
    import warnings

    def fit_band(hj, args):
        for _ in range(3):
            warnings.warn("a maturity inside the hedging horizon is not on the time grid; it "
                          "is moved\nsecond line", UserWarning, stacklevel=1)
        return {"objective": 1.5}

    monkeypatch.setattr(cli, "_fit_band", fit_band)
    assert cli.main(["fit-band", "--no-progress"] + (["--json"] if as_json else [])) == 0
    out, err = capsys.readouterr()
    if as_json:
        payload = json.loads(out)
        assert list(payload["notes"].values()) == [
            "a maturity inside the hedging horizon is not on the time grid; it is moved"]
        assert "command" not in payload["inputs"]
    else:
        assert out.count("note: a maturity inside the hedging horizon") == 1
        assert "objective on fresh paths ($)" in out
    assert "UserWarning" not in out + err and ".py:" not in out + err


@pytest.mark.parametrize("argv", [["price", "--spot", "\u0661\u0660\u0660"],
                                  ["hedge", "--paths", "\u0661\u0660\u0660"]])
def test_numbers_are_ascii_digits(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{argv[1]}: invalid" in err
