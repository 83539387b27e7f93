"""The W1 benchmark runs end to end (speed is the benchmark's business, not the tests')."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

# minutes of compiling and subprocesses: the slow tier (`pytest -m slow`, run by CI)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _run_quick(script: str, out: Path, *extra: str) -> dict:
    """Run experiments/<script> --quick writing to `out`; return its JSON report."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), "--quick", *extra,
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_bench_suite_quick_gathers_every_workload(tmp_path):
    """`bench.py --quick` (what `hedgejax bench --quick` runs) writes one report per workload
    and gathers them in bench-<machine>-quick.json; each workload's numbers are sane."""
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "bench.py"), "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    combined = [p for p in tmp_path.glob("bench-*-quick.json")]
    assert len(combined) == 1 and combined[0].with_suffix(".md").exists()
    report = json.loads(combined[0].read_text())
    assert report["machine"].startswith("cpu-") and report["device"]["backend"] == "cpu"
    work = report["workloads"]
    assert set(work) == {"w1", "w2", "w3", "w4"}

    rows = {row["impl"]: row for row in work["w1"]["rows"]}
    assert {"hedgejax-f32", "numpy-f64"} <= set(rows)
    for row in rows.values():
        assert row["mpath_steps_per_s"] > 0 and row["peak_rss_mib"] > 0
    # Same workload: P&L means agree within Monte Carlo error (independent streams).
    a, b = rows["hedgejax-f32"], rows["numpy-f64"]
    se = (a["pnl_std"] ** 2 / a["n_paths"] + b["pnl_std"] ** 2 / b["n_paths"]) ** 0.5
    assert abs(a["pnl_mean"] - b["pnl_mean"]) < 5 * se

    w2 = work["w2"]
    assert w2["rows"][0]["gradient_s"] > 0 and w2["rows"][0]["forward_s"] > 0
    assert w2["fit"]["width"] > 0

    for row in work["w3"]["rows"]:
        # Autodiff and central differences compute the same Greeks (FD truncation only).
        assert max(row["max_rel_diff_vs_bump"].values()) < 1e-4
        assert row["autodiff_per_instrument_s"] > 0 and row["bump_s"] > 0

    worlds = {row["world"][:2]: row for row in work["w4"]["rows"]}
    assert set(worlds) == {"W4", "W1"}
    # Black-Scholes deltas hedge a Heston world worse than the Black-Scholes world.
    assert worlds["W4"]["std_hedge_error"] > worlds["W1"]["std_hedge_error"]


def test_bench_w1_bad_flag_is_one_line_status_2():
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "bench_w1.py"),
                           "--paths", "nope"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0


def test_perf_w1_quick_runs(tmp_path):
    out = tmp_path / "perf.json"
    rows = _run_quick("perf_w1.py", out)["rows"]
    assert {row["section"] for row in rows} == {"profile", "compile", "gradients"}
    assert all("error" not in row["measure"] for row in rows)


def test_bench_suite_rejects_unknown_workloads():
    proc = subprocess.run([sys.executable, "-m", "hedgejax.cli", "bench", "--only", "w9"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "w9" in proc.stderr
