"""Shared fixtures. Precision tests request `x64`, which runs them in float64."""

import gc
import os
from pathlib import Path

# pytest-xdist runs one worker per core, so each worker keeps jax's single CPU device (what a
# program gets with HEDGEJAX_CPU_DEVICES=1) instead of hedgejax's one device per core: that
# would put two devices' threads on every core and compile the large runs once per device.
# The default device count is tested in fresh subprocesses without this setting
# (tests/test_devices_default.py); multi-device layouts in subprocesses with XLA_FLAGS.
os.environ.setdefault("HEDGEJAX_CPU_DEVICES", "1")

import jax  # noqa: E402
import pytest

# Compiled programs persist on disk for the session and later runs (.pytest_cache is ignored
# by git): xdist's two workers and successive test modules compile many of the same programs
# (the Heston hedging loops take seconds each), and a program read back from the cache is the
# same executable, so results are unchanged.
jax.config.update("jax_compilation_cache_dir",
                  str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "xla"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module. Every XLA CPU executable holds a
    few memory mappings; a whole-suite run compiles thousands of programs and reached the
    kernel's limit of 65,530 mappings per process (vm.max_map_count), where LLVM's allocator
    fails and XLA segfaults mid-compilation. Clearing per module keeps the count bounded."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture
def x64():
    """Enable float64 for one test, then restore the previous setting."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def check_run_folder(folder, name):
    """An experiment's run folder is complete: results.json parses and names the experiment,
    summary.csv has the table's rows in order, every figure report.md shows exists, the
    report states the question, and findings were written. Returns results.json."""
    import csv
    import json
    import re

    payload = json.loads((folder / "results.json").read_text())
    assert payload["experiment"] == name
    with open(folder / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(payload["table"]) > 0
    assert list(rows[0]) == list(payload["table"][0])
    first = next(iter(payload["table"][0]))      # the label column
    assert [r[first] for r in rows] == [str(r[first]) for r in payload["table"]]
    report = (folder / "report.md").read_text()
    assert payload["question"] in report
    stems = re.findall(r"!\[[^\]]*\]\(([^)]+)\.png\)", report)
    assert stems and sorted(stems) == sorted(p.stem for p in folder.glob("*.png"))
    for stem in stems:
        assert (folder / f"{stem}.png").stat().st_size > 0
    assert payload["findings"]
    return payload


def run_cli(argv, capsys):
    """`hedgejax.cli.main(argv)` as the shell runs it: (exit status, stdout, stderr); a
    refusal's SystemExit becomes its status."""
    from hedgejax import cli

    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err
