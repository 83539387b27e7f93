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
    (["hedge", "--drift", "1e6", "--paths", "512", "--steps", "8"], ["--drift 1e+06"]),
    # seeds beyond jax.random.key's range, in every command that takes one
    (["hedge", "--seed", "18446744073709551616"], ["--seed", "0..4294967295"]),
    (["fit-band", "--seed", "18446744073709551616"], ["--seed", "0..4294967295"]),
    (["experiment", "market-maker", "--seed", "18446744073709551616"], ["--seed"]),
    # memory estimated and refused before allocating
    (["hedge", "--paths", "2147483648", "--steps", "2"], ["--paths 2,147,483,648", "GiB"]),
    # float32 range; a library message by the flag that set the value
    (["price", "--spot", "1e39"], ["--spot 1e+39", "float32"]),
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
    real = os.statvfs(tmp_path)

    class Full:
        f_bavail, f_frsize = 3, real.f_frsize
    monkeypatch.setattr(os, "statvfs", lambda path: Full)
    with pytest.raises(ValueError, match="is full"):
        _io.check_output_file(tmp_path / "pnl.png")
    with pytest.raises(ValueError, match="is full"):
        _io.check_output_dir(tmp_path / "runs")


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
     ["--out", "No space left on device", "results.json"]),
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
