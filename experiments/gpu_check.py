"""GPU check: results agree with the CPU, and the benchmark workloads on one GPU, in one run.

Run it on a machine with an NVIDIA GPU (H100/H200; jax 0.11+ with CUDA, `pip install -e
'.[cuda]'`, Python 3.12), from the repository root::

    python experiments/gpu_check.py                   # ~8 minutes at most
    python experiments/gpu_check.py --sections w1     # one section
    python experiments/gpu_check.py --cpu-smoke       # no GPU: tiny sizes on the CPU

Sections, in this order, each in its own process (so each has its own peak device memory and
a hard time box; a section that fails or runs out of time records its error text and the
rows it finished, and the next one runs):

- `agree`: the same small hedges on `jax.devices("cpu")[0]` and on the GPU (W1; W4's Heston
  world with Black-Scholes deltas; Heston/Heston with surfaces; Merton/Merton exact and
  with surfaces): per-path P&L within a float32 tolerance (|a - b| <= 1e-3 + 1e-4 |a|; all
  paths for Black-Scholes, all but 0.1% for the worlds with discrete branches: Heston's QE
  switch and Merton's jump counts may round the other way on a rare path), means within
  1e-4 relative; prices and all Greeks of calls and puts under Black-Scholes, Heston and
  Merton within 1e-4 relative + 2e-5 absolute.
- `w1`: W1 at 2^20, 2^22 and 2^24 paths x 252 steps: the public `hedge()` call (default
  `block_size`), `hedge(block_size=n_paths)` (one block), and `jax.jit` of the call (no
  Python dispatch or host-side checks). Targets: 2^20 x 252 in <= 5 ms; >= 50 G
  path-steps/s at 2^24. At 2^24 the per-path results (0.5 GB) fit an H100/H200; if the
  call fails, it is retried with `chunk_size=2^22`.
- `models`: Heston/Heston, `pricing="exact"` (2^12 x 63) and `"surface"` (the same paths,
  then 2^20 and 2^22 x 252), Merton/Merton with surfaces at 2^20 x 252, each with W1 on
  the same paths (`experiments/bench_models.py`). Targets: Heston >= 1/5 of W1's
  throughput, Merton >= 1/3.
- `w4`: W4 (Heston world, BS deltas) and W1 at 2^20 and 2^22 x 252 (`bench_w4.py`).
- `w2`: W2's forward and gradient at 2^16 and 2^18 paths, and the 300-step fit at 2^14
  paths (`bench_w2.py`).

Timings: median of a few steady-state calls after a first call; compile = first call minus
the median; peak device memory = `memory_stats()["peak_bytes_in_use"]` of the section's
process after the row (a high-water mark: it includes the section's earlier rows). `hedge()`
with `devices=None` uses one device.

Writes `experiments/results/bench-<device>.json` and `.md` (device: the GPU's kind, e.g.
`nvidia-h200`), after every section, with the date, device kind, jax version and the
targets next to the figures; `--cpu-smoke` writes `runs/bench-<device>-smoke.*`. Exit
status 0 when every section ran and every agreement check passed, 1 otherwise (the report is
written either way), 2 without a GPU (and without `--cpu-smoke`) or on a bad flag.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "experiments/gpu_check.py"

# Section order and time boxes (seconds) on a GPU; the whole run is also held to --budget.
SECTIONS = ("agree", "w1", "models", "w4", "w2")
BOXES = {"probe": 60, "agree": 150, "w1": 90, "models": 120, "w4": 60, "w2": 80}
SMOKE_BOX = 600  # per section on a (slow, shared) CPU
TARGETS = {
    "w1_2^20_x_252_max_ms": 5.0,
    "w1_2^24_x_252_min_gpath_steps_per_s": 50.0,
    "heston_surface_min_vs_bs": 1 / 5,
    "merton_surface_min_vs_bs": 1 / 3,
}
PNL_ATOL, PNL_RTOL = 1e-3, 1e-4
MEAN_RTOL = 1e-4
BRANCHY_MISMATCH_FRACTION = 1e-3
GREEK_ATOL, GREEK_RTOL = 2e-5, 1e-4


# --- In the section's process -----------------------------------------------------------------


def _emit(row: dict[str, Any]) -> None:
    print("ROW " + json.dumps(row, default=str), flush=True)


def _device_peak_mib() -> float | None:
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics (the CPU)
        return None
    peak = (stats or {}).get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def _rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn: Callable[[int], Any], repeats: int) -> tuple[Any, dict[str, float]]:
    """First call (key 0), then `repeats` calls with fresh keys; the first call's result."""
    import jax

    t0 = time.perf_counter()
    first_result = jax.block_until_ready(fn(0))
    first = time.perf_counter() - t0
    times = []
    for seed in range(1, repeats + 1):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(seed))
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return first_result, {"median_s": median, "min_s": min(times), "first_call_s": first,
                          "compile_s": max(first - median, 0.0), "repeats": repeats}


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:500]


def _models():
    sys.path.insert(0, str(ROOT))
    from experiments import bench_models

    return bench_models


def section_probe(smoke: bool) -> None:
    import jax
    import jaxlib

    sys.path.insert(0, str(ROOT))
    from experiments.bench import machine_slug

    device = jax.devices()[0]
    try:
        limit = (device.memory_stats() or {}).get("bytes_limit")
    except Exception:  # noqa: BLE001 - backends without memory statistics
        limit = None
    try:
        platform_version = device.client.platform_version
    except Exception:  # noqa: BLE001 - informative only
        platform_version = None
    _emit({"backend": jax.default_backend(), "kind": device.device_kind,
           "count": jax.device_count(), "slug": machine_slug(), "jax": jax.__version__,
           "jaxlib": jaxlib.__version__, "platform_version": platform_version,
           "bytes_limit": limit, "cpus": os.cpu_count(), "python": platform.python_version(),
           "platform": platform.platform()})


def _hedge_cases(smoke: bool):
    """(label, world, hedge model, pricing, n_paths, n_steps, branchy) of the agreement runs."""
    import hedgejax as hj

    bm = _models()
    n, long_steps, steps = (2**8, 16, 8) if smoke else (2**12, 252, 63)
    bs, heston, merton = bm.model("bs"), bm.model("heston"), bm.model("merton")
    return [
        ("W1 bs/bs", bs, None, None, n, long_steps, False),
        ("W4 heston/bs", heston, hj.BlackScholes(100.0, 0.2), None, n, steps, True),
        ("heston/heston surface", heston, None, "surface", n, steps, True),
        ("merton/merton exact", merton, None, "exact", n, steps, True),
        ("merton/merton surface", merton, None, "surface", n, steps, True),
    ]


def _both(cpu, acc) -> list:
    """Where the agreement cases run: the CPU and the accelerator; once when they are the
    same device (a CPU smoke run: the comparison is then of a result with itself)."""
    return [("cpu", cpu)] + ([("acc", acc)] if acc != cpu else [])


def section_agree(smoke: bool) -> None:
    import jax
    import numpy as np

    import hedgejax as hj

    cpu, acc = jax.devices("cpu")[0], jax.devices()[0]
    call = hj.EuropeanCall(100.0, 1.0)
    for label, world, hedger, pricing, n, steps, branchy in _hedge_cases(smoke):
        row: dict[str, Any] = {"check": f"hedge {label}", "n_paths": n, "n_steps": steps,
                               "devices": f"{cpu.platform} vs {acc.platform}"}
        try:
            extra = {} if pricing is None else {"pricing": pricing}
            pnl, placed = {}, {}
            for name, dev in _both(cpu, acc):
                with jax.default_device(dev):
                    res = hj.hedge(world, call, hj.DeltaHedge(), hj.Proportional(0.001),
                                   hj.TimeGrid(1.0, steps), n, jax.random.key(0),
                                   hedge_model=hedger, **extra)
                    placed[name] = sorted(d.platform for d in res.pnl.devices())
                    pnl[name] = np.asarray(res.pnl, dtype=np.float64)
            pnl.setdefault("acc", pnl["cpu"])
            placed.setdefault("acc", placed["cpu"])
            a, b = pnl["cpu"], pnl["acc"]
            diff = np.abs(a - b)
            beyond = int(np.sum(diff > PNL_ATOL + PNL_RTOL * np.abs(a)))
            allowed = int(BRANCHY_MISMATCH_FRACTION * n) if branchy else 0
            mean_rel = abs(a.mean() - b.mean()) / max(abs(a.mean()), 1e-2)
            row.update({
                "ran_on": f"{','.join(placed['cpu'])} vs {','.join(placed['acc'])}",
                "max_abs_diff": float(diff.max()), "paths_beyond_tol": beyond,
                "paths_allowed": allowed, "mean_cpu": float(a.mean()),
                "mean_acc": float(b.mean()), "mean_rel_diff": float(mean_rel),
                "passed": bool(beyond <= allowed and mean_rel <= MEAN_RTOL
                               and placed["cpu"] == ["cpu"]
                               and placed["acc"] == [acc.platform]),
            })
        except Exception as e:  # noqa: BLE001 - recorded, the next case runs
            row.update({"error": _error(e), "passed": False})
        _emit(row)

    bm = _models()
    instruments = [hj.EuropeanCall(k, t) for k in (80.0, 100.0, 120.0) for t in (0.25, 1.0)]
    instruments += [hj.EuropeanPut(100.0, 0.5)]
    for name in ("bs", "heston", "merton"):
        row = {"check": f"prices and greeks {name}", "n_instruments": len(instruments),
               "devices": f"{cpu.platform} vs {acc.platform}"}
        try:
            model = bm.model(name)
            values = {}
            for which, dev in (("cpu", cpu), ("acc", acc)):
                with jax.default_device(dev):
                    out = []
                    for inst in instruments:
                        out.append(float(hj.price(model, inst)))
                        out += list(hj.greeks(model, inst).as_dict().values())
                    values[which] = np.asarray(out)
            values.setdefault("acc", values["cpu"])
            a, b = values["cpu"], values["acc"]
            diff = np.abs(a - b)
            tol = GREEK_ATOL + GREEK_RTOL * np.maximum(np.abs(a), np.abs(b))
            row.update({"max_abs_diff": float(diff.max()),
                        "max_rel_diff": float(np.max(diff / np.maximum(np.abs(a), 1e-12))),
                        "values_beyond_tol": int(np.sum(diff > tol)), "n_values": int(a.size),
                        "passed": bool(np.all(diff <= tol))})
        except Exception as e:  # noqa: BLE001 - recorded, the next model runs
            row.update({"error": _error(e), "passed": False})
        _emit(row)


def section_w1(smoke: bool) -> None:
    import jax
    import numpy as np

    import hedgejax as hj

    steps = 8 if smoke else 252
    sizes = [(2**8, 1), (2**10, 1)] if smoke else [(2**20, 5), (2**22, 3), (2**24, 3)]
    world, call = hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 1.0)
    grid = hj.TimeGrid(1.0, steps)

    def public(n, **kw):
        return lambda seed: hj.hedge(world, call, hj.DeltaHedge(), hj.Proportional(0.001),
                                     grid, n, jax.random.key(seed), **kw)

    for n, repeats in sizes:
        # The model is an argument, not a constant of the jitted function: the same program
        # as the eager call (constants folded at compile time round differently).
        jitted = jax.jit(lambda m, key, n=n: hj.hedge(m, call, hj.DeltaHedge(),
                                                      hj.Proportional(0.001), grid, n, key))
        variants = [("hedge()", public(n)),
                    ("hedge(block_size=n)", public(n, block_size=n)),
                    ("jit(hedge)", lambda seed, f=jitted: f(world, jax.random.key(seed)))]
        if n >= 2**24:
            variants.append(("hedge(chunk_size=2^22) if hedge() failed",
                             public(n, chunk_size=2**22)))
        failed_default = False
        for variant, fn in variants:
            if variant.startswith("hedge(chunk") and not failed_default:
                continue
            row: dict[str, Any] = {"variant": variant, "n_paths": n, "n_steps": steps}
            try:
                res, t = _timed(fn, repeats)
                pnl = np.asarray(res.pnl, dtype=np.float64)
                del res
                row.update(t)
                row.update({
                    "ms": 1e3 * t["median_s"],
                    "gpath_steps_per_s": n * steps / t["median_s"] / 1e9,
                    "peak_device_mib": _device_peak_mib(), "peak_rss_mib": _rss_mib(),
                    "pnl_mean": float(pnl.mean()), "pnl_std": float(pnl.std(ddof=1))})
                if n == 2**20 and steps == 252:
                    row["target"] = f"<= {TARGETS['w1_2^20_x_252_max_ms']:g} ms"
                    row["target_met"] = row["ms"] <= TARGETS["w1_2^20_x_252_max_ms"]
                if n == 2**24 and steps == 252:
                    goal = TARGETS["w1_2^24_x_252_min_gpath_steps_per_s"]
                    row["target"] = f">= {goal:g} G path-steps/s"
                    row["target_met"] = row["gpath_steps_per_s"] >= goal
            except Exception as e:  # noqa: BLE001 - recorded, the next variant runs
                row["error"] = _error(e)
                failed_default |= variant == "hedge()"
            _emit(row)


def section_models(smoke: bool) -> None:
    bm = _models()
    plan = ([("heston", "exact", 8, 8), ("heston", "surface", 8, 8),
             ("merton", "surface", 8, 8)] if smoke else
            [("heston", "exact", 12, 63), ("heston", "surface", 12, 63),
             ("heston", "surface", 20, 252), ("heston", "surface", 22, 252),
             ("merton", "surface", 20, 252)])

    def on_row(row: dict[str, Any]) -> None:
        _emit({**row, "peak_device_mib": _device_peak_mib()})

    bm.run_rows(plan, 1 if smoke else 3, log=lambda s: print(s, file=sys.stderr, flush=True),
                on_row=on_row)


def section_w4(smoke: bool) -> None:
    sys.path.insert(0, str(ROOT))
    from experiments import bench_w4

    sizes, steps, repeats = ([2**10], 16, 1) if smoke else ([2**20, 2**22], 252, 3)
    for n in sizes:
        w1_rate = None
        for name, world in reversed(list(bench_w4.worlds().items())):  # W1 first
            row: dict[str, Any] = {"world": name, "n_paths": n, "n_steps": steps}
            try:
                row.update(bench_w4.measure(name, world, n, steps, repeats))
                row["peak_device_mib"] = _device_peak_mib()
                if name.startswith("W1"):
                    w1_rate = row["mpath_steps_per_s"]
                elif w1_rate:
                    row["vs_w1"] = row["mpath_steps_per_s"] / w1_rate
            except Exception as e:  # noqa: BLE001 - recorded, the next row runs
                row["error"] = _error(e)
            _emit(row)


def section_w2(smoke: bool) -> None:
    sys.path.insert(0, str(ROOT))
    from experiments import bench_w2

    sizes, repeats = ([2**10], 1) if smoke else ([2**16, 2**18], 5)
    for n in sizes:
        forward = None
        for kind in ("forward", "gradient"):
            row: dict[str, Any] = {"what": kind, "n_paths": n, "n_steps": 63}
            try:
                row.update(bench_w2.worker(kind, n, repeats))
                row["peak_device_mib"] = _device_peak_mib()
                if kind == "forward":
                    forward = row["median_s"]
                elif forward:
                    row["gradient_over_forward"] = row["median_s"] / forward
            except Exception as e:  # noqa: BLE001 - recorded, the next row runs
                row["error"] = _error(e)
            _emit(row)
    steps, paths = (10, 256) if smoke else (300, 2**14)
    row = {"what": "fit", "n_paths": paths, "n_steps": 63}
    try:
        row.update(bench_w2.fit_to_convergence(steps, paths))
        row["fit_steps"] = row.pop("steps")
        row["peak_device_mib"] = _device_peak_mib()
    except Exception as e:  # noqa: BLE001 - recorded
        row["error"] = _error(e)
    _emit(row)


WORKERS: dict[str, Callable[[bool], None]] = {
    "probe": section_probe, "agree": section_agree, "w1": section_w1,
    "models": section_models, "w4": section_w4, "w2": section_w2,
}


# --- The parent: sections in child processes, the report -----------------------------------


def _text(x: str | bytes | None) -> str:
    return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")


_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


def run_section(name: str, smoke: bool, timeout: float) -> dict[str, Any]:
    """Run one section in a child process; its rows, status, wall time and error text."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name]
    if smoke:
        cmd.append("--cpu-smoke")
    env = dict(os.environ)
    if smoke:
        env["JAX_PLATFORMS"] = "cpu"
    t0 = time.perf_counter()
    status, error = "ok", None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env=env, check=False)
        stdout, stderr = proc.stdout, proc.stderr
        if proc.returncode != 0:
            tail = [ln.rstrip() for ln in stderr.splitlines() if ln.strip()]
            exc = [ln for ln in tail if _EXC_LINE.match(ln)]
            status = "error"
            error = (exc or tail or [f"exited with status {proc.returncode}"])[-1][:500]
    except subprocess.TimeoutExpired as e:
        stdout, stderr = _text(e.stdout), _text(e.stderr)
        status, error = "timed out", f"stopped after its time box of {timeout:.0f} s"
    rows = []
    for line in stdout.splitlines():
        if line.startswith("ROW "):
            try:
                rows.append(json.loads(line[4:]))
            except json.JSONDecodeError:
                continue
    if status == "ok" and any(r.get("error") for r in rows):
        status = "errors in rows"
    return {"status": status, "error": error, "wall_s": time.perf_counter() - t0,
            "rows": rows, "stderr_tail": stderr.splitlines()[-20:] if status != "ok" else []}


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _fmt(value: Any, spec: str) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        if spec == "yes/no":
            return "yes" if value else "**NO**"
        return "met" if value else "**not met**"
    if isinstance(value, float):
        return spec.format(value) if math.isfinite(value) else "-"
    return str(value)


# (key, header, format) per section's table.
COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "agree": [("check", "check", "{}"), ("n_paths", "paths", "{}"), ("n_steps", "steps", "{}"),
              ("ran_on", "ran on", "{}"), ("max_abs_diff", "max abs diff", "{:.2e}"),
              ("paths_beyond_tol", "paths beyond tol", "{}"),
              ("paths_allowed", "allowed", "{}"), ("mean_rel_diff", "mean rel diff", "{:.1e}"),
              ("max_rel_diff", "max rel diff", "{:.1e}"),
              ("values_beyond_tol", "values beyond tol", "{}"), ("passed", "passed", "yes/no")],
    "w1": [("variant", "call", "{}"), ("n_paths", "paths", "{}"), ("n_steps", "steps", "{}"),
           ("ms", "median ms", "{:.2f}"), ("gpath_steps_per_s", "G path-steps/s", "{:.2f}"),
           ("target", "target", "{}"), ("target_met", "", "{}"),
           ("compile_s", "compile s", "{:.2f}"),
           ("peak_device_mib", "peak device MiB", "{:.0f}"),
           ("pnl_mean", "P&L mean", "{:+.4f}"), ("pnl_std", "P&L std", "{:.4f}")],
    "models": [("model", "world / hedge model", "{}"), ("pricing", "pricing", "{}"),
               ("n_paths", "paths", "{}"), ("n_steps", "steps", "{}"),
               ("mpath_steps_per_s", "M path-steps/s", "{:,.2f}"),
               ("vs_bs", "vs W1", "{:.3f}"), ("target_vs_bs", "target >=", "{:.2f}"),
               ("target_met", "", "{}"), ("compile_s", "compile s", "{:.2f}"),
               ("peak_device_mib", "peak device MiB", "{:.0f}"),
               ("pnl_mean", "P&L mean", "{:+.4f}"), ("pnl_std", "P&L std", "{:.4f}")],
    "models-crn": [("model", "same paths: model", "{}"), ("n_paths", "paths", "{}"),
                   ("n_steps", "steps", "{}"), ("mean_diff_in_se", "mean diff / se", "{:+.3f}"),
                   ("std_diff_in_se", "std diff / se(std)", "{:+.3f}"),
                   ("per_path_rms_diff", "per-path RMS", "{:.2e}"),
                   ("per_path_max_abs_diff", "per-path max", "{:.2e}")],
    "w4": [("world", "world", "{}"), ("n_paths", "paths", "{}"), ("n_steps", "steps", "{}"),
           ("mpath_steps_per_s", "M path-steps/s", "{:.1f}"), ("vs_w1", "vs W1", "{:.2f}"),
           ("compile_s", "compile s", "{:.2f}"),
           ("peak_device_mib", "peak device MiB", "{:.0f}"),
           ("std_hedge_error", "std hedge error", "{:.4f}"), ("es", "ES 99%", "{:.4f}")],
    "w2": [("what", "what", "{}"), ("n_paths", "paths", "{}"),
           ("median_s", "median s", "{:.4f}"),
           ("gradient_over_forward", "gradient / forward", "{:.2f}"),
           ("compile_s", "compile s", "{:.2f}"), ("wall_s_first", "fit s (first)", "{:.2f}"),
           ("wall_s_steady", "fit s (steady)", "{:.2f}"), ("width", "fitted width", "{:.4f}"),
           ("peak_device_mib", "peak device MiB", "{:.0f}")],
}


_LABELS = ("check", "variant", "model", "pricing", "world", "what", "n_paths", "n_steps")
_TEXT = ("check", "variant", "model", "pricing", "world", "what", "ran_on", "target",
         "target_met", "passed")


def _table(columns: list[tuple[str, str, str]], rows: list[dict[str, Any]]) -> list[str]:
    first_figure = next(k for k, _, _ in columns if k not in _LABELS)

    def cell(key: str, spec: str, row: dict[str, Any]) -> str:
        if key == "n_paths" and isinstance(row.get(key), int) and row[key] > 0:
            n = row[key]
            return f"2^{n.bit_length() - 1}" if n & (n - 1) == 0 else str(n)
        if row.get("error") and key not in _LABELS:
            return "ERROR" if key == first_figure else ""
        return _fmt(row.get(key), spec)

    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "|" + "|".join("---" if k in _TEXT else "---:" for k, _, _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(k, s, r) for k, _, s in columns) + " |" for r in rows]
    return lines


def _label(row: dict[str, Any]) -> str:
    return " ".join(str(row[k]) for k in ("check", "variant", "model", "pricing", "world",
                                           "what") if row.get(k))


def markdown(report: dict[str, Any]) -> str:
    d, t = report["device"], report["targets"]
    lines = [
        f"# hedgejax GPU check on {report['machine']}", "",
        f"- date: {report['date']}",
        f"- device: {d.get('kind')} ({d.get('backend')}, {d.get('count')} device(s), "
        f"{d.get('platform_version')}); {d.get('cpus')} CPUs; jax {d.get('jax')}, jaxlib "
        f"{d.get('jaxlib')}, Python {d.get('python')}",
        f"- command: `{report['command']}`; mode: {report['mode']}; wall time "
        f"{report['wall_s']:.0f} s of a {report['budget_s']:.0f} s budget", "",
        f"Targets: W1 2^20 x 252 in <= {t['w1_2^20_x_252_max_ms']:g} ms; >= "
        f"{t['w1_2^24_x_252_min_gpath_steps_per_s']:g} G path-steps/s at 2^24 x 252; "
        f"Heston/Heston with surfaces >= {t['heston_surface_min_vs_bs']:.2f} of W1's "
        f"throughput, Merton/Merton >= {t['merton_surface_min_vs_bs']:.2f}. Compile = first "
        "call minus the median of the timed calls; peak device memory is the section "
        "process's high-water mark after the row (it includes earlier rows).",
    ]
    if report["mode"] != "gpu":
        lines += ["", "**CPU smoke run: tiny sizes on the CPU; the figures are not GPU "
                      "figures and the targets do not apply.**"]
    for name, sec in report["sections"].items():
        lines += ["", f"## {name} ({sec['status']}, {sec['wall_s']:.0f} s)", ""]
        if sec.get("error"):
            lines += [f"Error: `{sec['error']}`", ""]
        rows = sec["rows"]
        if name == "models":
            crn = [r for r in rows if "mean_diff_in_se" in r]
            rows = [r for r in rows if "mean_diff_in_se" not in r]
        if rows and name in COLUMNS:
            lines += _table(COLUMNS[name], rows)
        if name == "models" and crn:
            lines += ["", "Surface against exact on the same paths (same key, paths, steps):",
                      ""] + _table(COLUMNS["models-crn"], crn)
        errors = [r for r in sec["rows"] if r.get("error")]
        if errors:
            lines += ["", "Row errors:", ""]
            lines += [f"- {_label(r)} ({r.get('n_paths')} paths): `{r['error']}`"
                      for r in errors]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from hedgejax._io import atomic_write_text
    from hedgejax.cli import OneLineParser

    parser = OneLineParser(prog="gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="no GPU needed: tiny sizes on the CPU, results in runs/")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated sections among {','.join(SECTIONS)}")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole run (default 480; 3600 with --cpu-smoke)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON output (default experiments/results/bench-<device>.json, "
                             "runs/bench-<device>-smoke.json with --cpu-smoke)")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        warnings.simplefilter("ignore", UserWarning)
        WORKERS[args.worker](args.cpu_smoke)
        return 0
    chosen = [s.strip().lower() for s in args.sections.split(",") if s.strip()]
    if not chosen or any(s not in SECTIONS for s in chosen):
        parser.error(f"--sections must name sections among {','.join(SECTIONS)}, "
                     f"got {args.sections!r}")
    if args.out is not None and args.out.suffix != ".json":
        parser.error(f"--out must end in .json, got {str(args.out)!r}")
    budget = args.budget if args.budget is not None else (3600.0 if args.cpu_smoke else 480.0)
    if not budget > 0:
        parser.error("--budget must be > 0")
    start = time.perf_counter()

    probe = run_section("probe", args.cpu_smoke, SMOKE_BOX if args.cpu_smoke else BOXES["probe"])
    if not probe["rows"]:
        print(f"gpu_check: error: could not start jax: {probe['error']}", file=sys.stderr)
        return 1
    device = probe["rows"][0]
    if device["backend"] != "gpu" and not args.cpu_smoke:
        print(f"gpu_check: error: no GPU (jax {device['jax']} sees backend "
              f"{device['backend']!r}); run on a GPU machine, or pass --cpu-smoke for a tiny "
              "CPU run", file=sys.stderr)
        return 2
    mode = "gpu" if device["backend"] == "gpu" else "cpu-smoke"
    out = args.out or (ROOT / "runs" / f"bench-{device['slug']}-smoke.json" if args.cpu_smoke
                       else ROOT / "experiments" / "results" / f"bench-{device['slug']}.json")
    print(f"gpu_check: {device['kind']} ({device['backend']}), jax {device['jax']}; "
          f"{mode}; budget {budget:.0f} s; writing {out}", flush=True)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "script": SCRIPT, "machine": device["slug"], "mode": mode,
        "command": " ".join(["python", SCRIPT, *(sys.argv[1:] if argv is None else argv)]),
        "device": {k: v for k, v in device.items() if k != "slug"},
        "targets": TARGETS, "budget_s": budget, "wall_s": 0.0,
        "tolerances": {"pnl_atol": PNL_ATOL, "pnl_rtol": PNL_RTOL, "mean_rtol": MEAN_RTOL,
                       "branchy_mismatch_fraction": BRANCHY_MISMATCH_FRACTION,
                       "greek_atol": GREEK_ATOL, "greek_rtol": GREEK_RTOL},
        "sections": {},
    }

    def write() -> None:
        report["wall_s"] = time.perf_counter() - start
        atomic_write_text(out, json.dumps(_finite(report), indent=2, default=str) + "\n")
        atomic_write_text(out.with_suffix(".md"), markdown(report))

    ok = True
    for name in [s for s in SECTIONS if s in chosen]:
        left = budget - (time.perf_counter() - start)
        if left < 15:
            report["sections"][name] = {"status": "skipped", "wall_s": 0.0, "rows": [],
                                        "error": "out of the time budget"}
            ok = False
            print(f"== {name}: skipped (out of the time budget)", flush=True)
            write()
            continue
        box = min(SMOKE_BOX if args.cpu_smoke else BOXES[name], left)
        print(f"== {name} (time box {box:.0f} s)", flush=True)
        sec = run_section(name, args.cpu_smoke, box)
        report["sections"][name] = sec
        failed_checks = [r["check"] for r in sec["rows"] if r.get("passed") is False]
        ok &= sec["status"] == "ok" and not failed_checks
        for r in sec["rows"]:
            print("   " + json.dumps(_finite(_brief(r)), default=str), flush=True)
        print(f"== {name}: {sec['status']} in {sec['wall_s']:.0f} s"
              + (f": {sec['error']}" if sec.get("error") else "")
              + (f"; failed checks: {', '.join(failed_checks)}" if failed_checks else ""),
              flush=True)
        write()
    print(f"wrote {out} and {out.with_suffix('.md')}", flush=True)
    return 0 if ok else 1


_BRIEF_KEYS = ("check", "variant", "world", "what", "model", "pricing", "n_paths", "n_steps",
               "passed", "max_abs_diff", "ms", "gpath_steps_per_s", "mpath_steps_per_s",
               "vs_bs", "vs_w1", "target", "target_met", "compile_s", "median_s",
               "mean_diff_in_se", "std_diff_in_se", "peak_device_mib", "error")


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in _BRIEF_KEYS if k in row}


if __name__ == "__main__":
    sys.exit(main())
