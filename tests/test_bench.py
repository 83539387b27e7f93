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
    assert set(work) == {"w1", "w2", "w3", "w4", "models", "exotics", "w5"}

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

    _check_models_report(work["models"])
    exotics = {row["book"]: row for row in work["exotics"]["rows"]}
    assert {"vanilla", "barrier", "asian", "lookback", "mixed"} <= set(exotics)
    assert exotics["vanilla"]["vs_vanilla"] == 1.0
    assert all(r["mpath_steps_per_s"] > 0 and r["pnl_std"] > 0 for r in exotics.values())
    _check_w5_report(work["w5"])


def _check_models_report(report: dict) -> None:
    """bench_models --quick: the Heston surface row and both Merton rows ran, against W1 on
    the same paths, and the Merton surface hedge matches the exact one on the same paths."""
    rows = report["rows"]
    assert not [r for r in rows if r.get("error")]
    ran = {(r["model"], r["pricing"]) for r in rows}
    assert {("heston", "surface"), ("merton", "exact"), ("merton", "surface")} <= ran
    for r in rows:
        assert r["mpath_steps_per_s"] > 0 and r["peak_rss_mib"] > 0 and r["pnl_std"] > 0
        if r["model"] != "bs":
            assert r["vs_bs"] > 0
            assert (r["target_vs_bs"] is not None) == (r["pricing"] == "surface")
    assert {c["model"] for c in report["comparisons"]} == {"merton"}
    for c in report["comparisons"]:
        # common random numbers: the surface's pricing error only, far inside the MC error
        assert abs(c["mean_diff_in_se"]) < 1 and abs(c["std_diff_in_se"]) < 1
        assert c["per_path_rms_diff"] < 0.1 * c["exact_std"]


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


def test_bench_models_bad_flag_is_one_line_status_2():
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "bench_models.py"),
                           "--models", "sabr"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "sabr" in proc.stderr


def test_gpu_check_cpu_smoke_runs_every_section(tmp_path):
    """`gpu_check.py --cpu-smoke`: every section runs on the CPU at tiny sizes; the
    agreement checks compare the CPU with itself (bit for bit), and the report is written."""
    out = tmp_path / "bench-smoke.json"
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "gpu_check.py"),
                           "--cpu-smoke", "--out", str(out)], capture_output=True, text=True,
                          timeout=1200, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    report = json.loads(out.read_text())
    assert out.with_suffix(".md").exists()
    assert report["mode"] == "cpu-smoke" and report["device"]["backend"] == "cpu"
    assert report["device"]["jax"] and report["date"] and report["targets"]
    sections = report["sections"]
    assert list(sections) == ["agree", "w1", "models", "w4", "w2"]
    assert all(sec["status"] == "ok" for sec in sections.values()), {
        name: sec["error"] for name, sec in sections.items()}

    agree = sections["agree"]["rows"]
    assert len(agree) == 8 and all(r["passed"] for r in agree)
    assert all(r["max_abs_diff"] == 0.0 for r in agree)   # the same device twice

    w1 = sections["w1"]["rows"]
    assert {r["variant"] for r in w1} == {"hedge()", "hedge(block_size=n)", "jit(hedge)"}
    for n in {r["n_paths"] for r in w1}:
        same = [r for r in w1 if r["n_paths"] == n]
        assert all(r["gpath_steps_per_s"] > 0 for r in same)
        # block size and jit do not change the paths' results
        assert max(r["pnl_mean"] for r in same) - min(r["pnl_mean"] for r in same) < 1e-9

    models = sections["models"]["rows"]
    assert {(r.get("model"), r.get("pricing")) for r in models} >= {
        ("heston", "exact"), ("heston", "surface"), ("merton", "surface")}
    assert any("mean_diff_in_se" in r for r in models)
    assert {r["world"][:2] for r in sections["w4"]["rows"]} == {"W1", "W4"}
    assert {r["what"] for r in sections["w2"]["rows"]} == {"forward", "gradient", "fit"}


def test_gpu_check_without_a_gpu_exits_2_in_one_line():
    import jax

    if jax.default_backend() != "cpu":
        pytest.skip("a GPU is present: gpu_check.py would run")
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "gpu_check.py")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--cpu-smoke" in proc.stderr


def _check_w5_report(report: dict) -> None:
    """bench_w5 --quick: hedgejax trained, its snapshots were evaluated on the held-out
    paths, and the untrained policy's held-out loss is that of Black-Scholes delta hedging
    computed here directly in NumPy on the same paths (the policy starts as delta hedging)."""
    import numpy as np
    from scipy.stats import norm

    sys.path.insert(0, str(ROOT))
    from experiments import bench_w5 as w5

    row = report["results"]["call"]["hedgejax"]
    assert not row.get("error"), row
    steps = report["steps"]
    assert len(row["step_times_s"]) == steps and row["median_step_s"] > 0
    assert [k for k, _ in row["curve"]] == sorted({0, steps, *range(0, steps + 1,
                                                                    report["eval_every"])})
    assert row["peak_rss_train_mib"] > 0 and row["compile_s"] >= 0

    s, cost = w5.SET_UP, w5.CASES["call"]["cost"]
    spots = w5.heldout_paths(1 << report["log2_eval"], 0 + 12345).astype(np.float64)
    n = s["n_steps"]
    tau = s["maturity"] * (1 - np.arange(n) / n)
    sd = s["sigma"] * np.sqrt(tau)
    d1 = np.log(spots[:, :n] / s["strike"]) / sd + sd / 2
    delta = norm.cdf(d1)                                    # shares held by the short call
    trades = np.diff(delta, axis=1, prepend=0.0)
    pl = (-np.maximum(spots[:, -1] - s["strike"], 0.0)
          + np.sum(delta * np.diff(spots, axis=1), axis=1)
          - cost * np.sum(np.abs(trades) * spots[:, :n], axis=1))
    reference = np.log(np.mean(np.exp(-pl)))
    # float32 paths, Greeks and sums (measured 1e-9 on a loss of ~0.0245)
    assert abs(row["untrained_loss"] - reference) < 1e-6, (row["untrained_loss"], reference)
    assert abs(row["final_loss"] - row["untrained_loss"]) < 0.01   # a few small steps

    fl = report["flops"]
    assert fl["forward_per_row"] == 2 * (4 * 32 + 3 * 32 * 32 + 32)
    assert report["bounds"]["matmul_gflops"] > 0 and report["bounds"]["layer_tanh_gflops"] > 0
    prof = {p["variant"]: p for p in report["profile"]}
    assert prof["step"]["median_s"] > 0
    if "breakdown" in prof["step"]:
        shares = [r["share"] for r in prof["step"]["breakdown"]["rows"]]
        assert abs(sum(shares) - 1) < 1e-9


def test_bench_w5_statistics_against_direct_computation():
    """bench_w5's entropic risk, its paired standard error (delta method) and the held-out
    paths against direct computations: the entropic risk of a normal sample is
    mu_loss + a sigma^2 / 2; the paired SE against the spread of the difference over
    independent replications; the paths' log-returns have the GBM's mean and variance."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from experiments import bench_w5 as w5

    rng = np.random.default_rng(1)
    x = rng.normal(0.01, 0.02, 400_000)
    assert abs(w5.entropic(x, 2.0) - (-0.01 + 2.0 * 0.02**2 / 2)) < 4 * 0.02 / np.sqrt(4e5)

    diffs, ses = [], []
    for _ in range(200):
        z = rng.normal(0.0, 0.02, (2, 2000))
        a, b = z[0], 0.5 * z[0] + z[1]
        diffs.append(w5.entropic(a) - w5.entropic(b))
        ses.append(w5.paired_se(a, b))
    assert abs(np.mean(ses) / np.std(diffs, ddof=1) - 1) < 0.15     # 200 replications

    s = w5.SET_UP
    paths = w5.heldout_paths(1 << 14, 3).astype(np.float64)
    assert paths.shape == (1 << 14, s["n_steps"] + 1) and np.all(paths[:, 0] == 1.0)
    r = np.diff(np.log(paths), axis=1).ravel()
    dt = s["maturity"] / s["n_steps"]
    assert abs(r.mean() + s["sigma"]**2 * dt / 2) < 4 * s["sigma"] * np.sqrt(dt / r.size)
    assert abs(r.var() / (s["sigma"]**2 * dt) - 1) < 4 * np.sqrt(2 / r.size)


def test_bench_w5_bad_flag_is_one_line_status_2():
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "bench_w5.py"),
                           "--cases", "barrier"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "barrier" in proc.stderr
