"""Benchmark of workload W1: hedgejax against a hand-written NumPy baseline, in one run.

Workload W1 (docs/architecture.md, "Benchmark workloads"): the user holds one long European
call (S0 = K = 100, T = 1, vol = 0.2, r = q = 0) on Black-Scholes GBM paths, delta-hedged at
every one of 252 steps (``DeltaHedge(every=1)``) with proportional costs of 10 bp one-way
(``Proportional(0.001)``), for 2^16, 2^18 and 2^20 paths. hedgejax runs in float32 (its
default); the baseline is ``experiments/baselines/numpy_w1.py`` in float64 (and float32 for
reference).

Each (implementation, n_paths) measurement runs in its own child process, so the reported
peak RSS belongs to that implementation alone. hedgejax: the first call (trace + compile +
run) is timed, then ``--repeats`` further calls with fresh keys; the median of those is the
steady-state time and ``compile s`` is first call minus median (``compile_aot_s`` in the JSON
is an ahead-of-time ``jit(...).lower().compile()`` of the same call, when that works). NumPy:
median of ``--repeats`` runs. Throughput is ``n_paths * n_steps / median``; ``x np64`` is the
speed-up over numpy-f64 at the same n_paths. P&L mean and standard deviation are shown for
every implementation so a reader can check they agree within Monte Carlo error (``z np64`` is
the difference of means to numpy-f64 in standard errors; the random streams differ).

Run from the repository root::

    python experiments/bench_w1.py                 # 2^16, 2^18, 2^20 -> experiments/results/
    python experiments/bench_w1.py --f64           # also hedgejax with jax_enable_x64
    python experiments/bench_w1.py --quick         # smoke test at 2^12 -> runs/bench_w1_quick.*
    python experiments/bench_w1.py --impls numpy-f64,numpy-f32 --paths 12,14

Results: ``experiments/results/bench_w1.json`` and ``.md`` (written atomically), or ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hedgejax._io import atomic_write_text
from hedgejax._report import log2_list
from hedgejax.cli import OneLineParser

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "experiments" / "results" / "bench_w1.json"
QUICK_OUT = REPO_ROOT / "runs" / "bench_w1_quick.json"

# hedgejax-f32-dev: the same call with `devices=` every local device; on a CPU the worker
# splits the cores into one host device each (XLA_FLAGS), which beats XLA's own threading.
IMPLS = ("hedgejax-f32", "hedgejax-f32-dev", "hedgejax-f64", "numpy-f64", "numpy-f32",
         "pfhedge-f32")
DEFAULT_IMPLS = ("hedgejax-f32", "hedgejax-f32-dev", "numpy-f64", "numpy-f32", "pfhedge-f32")


def _available(impl: str) -> bool:
    """pfhedge is an optional baseline (the `bench` extra): skipped when not installed."""
    if not impl.startswith("pfhedge"):
        return True
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "pfhedge", "tqdm"))
REFERENCE = "numpy-f64"

WORKLOAD: dict[str, Any] = {
    "name": "W1",
    "description": "long 1 European call, delta hedge every step, proportional costs",
    "model": {"kind": "BlackScholes", "spot": 100.0, "vol": 0.2, "rate": 0.0, "div": 0.0},
    "claim": {"kind": "EuropeanCall", "strike": 100.0, "maturity": 1.0, "position": "long 1"},
    "strategy": {"kind": "DeltaHedge", "every": 1},
    "costs": {"kind": "Proportional", "rate": 0.001},
    "n_steps": 252,
    "dtype": {"hedgejax": "float32 (float64 with --f64)", "numpy baseline": "float64, float32"},
}


# --- CLI ---------------------------------------------------------------------------------------


def _impl_list(text: str) -> list[str]:
    vals = [p.strip() for p in text.split(",") if p.strip()]
    bad = [v for v in vals if v not in IMPLS]
    if not vals or bad:
        raise argparse.ArgumentTypeError(
            f"unknown implementation(s) {bad or text!r}; choose from {','.join(IMPLS)}"
        )
    return list(dict.fromkeys(vals))


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def build_parser() -> OneLineParser:
    p = OneLineParser(
        prog="bench_w1.py",
        description="Benchmark workload W1: hedgejax vs a hand-written NumPy baseline.",
    )
    p.add_argument(
        "--paths",
        type=log2_list,
        default=None,
        metavar="L2,L2,...",
        help="log2 of the path counts (default 16,18,20; 12 with --quick)",
    )
    p.add_argument(
        "--repeats",
        type=_positive_int,
        default=None,
        metavar="N",
        help="timed repetitions (default: hedgejax 3 after the first call; "
        "numpy 3, or 1 at >= 2^20 paths; 1 with --quick)",
    )
    p.add_argument("--steps", type=_positive_int, default=252, help="time steps (default 252)")
    p.add_argument(
        "--impls",
        type=_impl_list,
        default=None,
        metavar="A,B,...",
        help=f"implementations, from {','.join(IMPLS)} (default {','.join(DEFAULT_IMPLS)})",
    )
    p.add_argument("--f64", action="store_true", help="also run hedgejax-f64 (jax_enable_x64)")
    p.add_argument(
        "--quick", action="store_true", help="smoke test: paths 12, repeats 1, output under runs/"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="PATH",
        help="JSON output (the .md goes next to it); default "
        "experiments/results/bench_w1.json, runs/bench_w1_quick.json with --quick",
    )
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=3600.0,
        metavar="S",
        help="per-measurement timeout in seconds (default 3600)",
    )
    p.add_argument("--worker", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS)
    return p


# --- Workers (run in a child process, print one JSON line) --------------------------------------


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def _stats(res: dict[str, Any]) -> dict[str, float]:
    import numpy as np

    pnl = np.asarray(res["pnl"], dtype=np.float64)
    he = np.asarray(res["hedge_error"], dtype=np.float64)
    n = pnl.shape[0]
    pnl_std = float(pnl.std(ddof=1)) if n > 1 else float("nan")
    return {
        "pnl_mean": float(pnl.mean()),
        "pnl_std": pnl_std,
        "pnl_se": pnl_std / math.sqrt(n),
        "hedge_error_mean": float(he.mean()),
        "hedge_error_std": float(he.std(ddof=1)) if n > 1 else float("nan"),
        "cost_mean": float(np.asarray(res["cost"], dtype=np.float64).mean()),
        "n_trades_mean": float(np.asarray(res["n_trades"], dtype=np.float64).mean()),
    }


def _default_repeats(impl: str, n: int) -> int:
    if (impl.startswith("numpy") or impl.startswith("pfhedge")) and n >= 1 << 20:
        return 1
    return 3


def _worker_numpy(impl: str, n: int, steps: int, repeats: int, seed: int) -> dict[str, Any]:
    import numpy as np

    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from experiments.baselines.numpy_w1 import NORM_CDF_IMPL, run_w1_numpy

    w, m = WORKLOAD, WORKLOAD["model"]
    dtype = np.float64 if impl == "numpy-f64" else np.float32

    def call(s: int) -> dict[str, Any]:
        return run_w1_numpy(
            n,
            steps,
            spot=m["spot"],
            strike=w["claim"]["strike"],
            maturity=w["claim"]["maturity"],
            vol=m["vol"],
            rate=m["rate"],
            div=m["div"],
            cost_rate=w["costs"]["rate"],
            dtype=dtype,
            seed=s,
        )

    times: list[float] = []
    first: dict[str, Any] | None = None
    for r in range(repeats):
        t0 = time.perf_counter()
        res = call(seed + r)
        times.append(time.perf_counter() - t0)
        if first is None:
            first = res
    assert first is not None
    peak = _peak_rss_mib()
    return {
        "times_s": times,
        "first_call_s": times[0],
        "compile_s": None,
        "compile_aot_s": None,
        "peak_rss_mib": peak,
        "result_dtype": str(first["pnl"].dtype),
        "norm_cdf": NORM_CDF_IMPL,
        **_stats(first),
    }


def _worker_hedgejax(impl: str, n: int, steps: int, repeats: int, seed: int) -> dict[str, Any]:
    import jax

    if impl == "hedgejax-f64":
        jax.config.update("jax_enable_x64", True)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import hedgejax as hj

    w, m = WORKLOAD, WORKLOAD["model"]
    model = hj.BlackScholes(spot=m["spot"], vol=m["vol"], rate=m["rate"], div=m["div"])
    claim = hj.EuropeanCall(strike=w["claim"]["strike"], maturity=w["claim"]["maturity"])
    grid = hj.TimeGrid(maturity=w["claim"]["maturity"], n_steps=steps)
    strategy = hj.DeltaHedge(every=w["strategy"]["every"])
    costs = hj.Proportional(w["costs"]["rate"])

    devices = jax.local_device_count() if impl.endswith("-dev") else None

    def hedge(key: Any) -> Any:
        return hj.hedge(model, claim, strategy, costs, grid, n_paths=n, key=key,
                        devices=devices)

    def call(s: int) -> Any:
        return jax.block_until_ready(hedge(jax.random.key(s)))

    t0 = time.perf_counter()
    res = call(seed)
    first_s = time.perf_counter() - t0
    times: list[float] = []
    for r in range(repeats):
        t0 = time.perf_counter()
        call(seed + 1 + r)
        times.append(time.perf_counter() - t0)
    peak = _peak_rss_mib()  # before the AOT compile below, which is extra work
    stats = _stats({k: getattr(res, k) for k in ("pnl", "hedge_error", "cost", "n_trades")})
    result_dtype = str(res.pnl.dtype)
    del res

    compile_aot: float | None
    try:
        lowered = jax.jit(hedge).lower(jax.random.key(seed))
        t0 = time.perf_counter()
        lowered.compile()
        compile_aot = time.perf_counter() - t0
    except Exception:  # noqa: BLE001 - optional measurement; the public call is what counts
        compile_aot = None

    return {
        "times_s": times,
        "first_call_s": first_s,
        "compile_s": max(first_s - statistics.median(times), 0.0),
        "compile_aot_s": compile_aot,
        "peak_rss_mib": peak,
        "result_dtype": result_dtype,
        "jax_backend": jax.default_backend(),
        **stats,
    }


def _worker_pfhedge(impl: str, n: int, steps: int, repeats: int, seed: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from experiments.baselines.pfhedge_w1 import run_w1_pfhedge

    w, m = WORKLOAD, WORKLOAD["model"]
    times: list[float] = []
    first: dict[str, Any] | None = None
    for r in range(repeats):
        t0 = time.perf_counter()
        res = run_w1_pfhedge(n, steps, spot=m["spot"], strike=w["claim"]["strike"],
                             maturity=w["claim"]["maturity"], vol=m["vol"],
                             cost_rate=w["costs"]["rate"], seed=seed + r)
        times.append(time.perf_counter() - t0)
        first = first or res
    assert first is not None
    return {"times_s": times, "first_call_s": times[0], "compile_s": None,
            "compile_aot_s": None, "peak_rss_mib": _peak_rss_mib(),
            "result_dtype": "float32", **_stats(first)}


def run_worker(impl: str, n: int, steps: int, repeats: int, seed: int) -> int:
    worker: Callable[[str, int, int, int, int], dict[str, Any]]
    worker = (_worker_numpy if impl.startswith("numpy") else
              _worker_pfhedge if impl.startswith("pfhedge") else _worker_hedgejax)
    out = worker(impl, n, steps, repeats, seed)
    print(json.dumps(out), flush=True)
    return 0


# --- Parent: orchestration, reporting -------------------------------------------------------


_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


def _measure(
    impl: str, n: int, steps: int, repeats: int, seed: int, timeout: float
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        impl,
        str(n),
        "--steps",
        str(steps),
        "--repeats",
        str(repeats),
        "--seed",
        str(seed),
    ]
    row: dict[str, Any] = {
        "impl": impl,
        "n_paths": n,
        "log2_paths": int(math.log2(n)),
        "n_steps": steps,
        "repeats": repeats,
    }
    try:
        env = dict(os.environ)
        if impl.endswith("-dev"):
            flag = f"--xla_force_host_platform_device_count={os.cpu_count()}"
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, check=False,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {**row, "error": f"timed out after {timeout:g} s"}
    data: dict[str, Any] | None = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    if proc.returncode != 0 or data is None:
        tail = [ln.rstrip() for ln in proc.stderr.splitlines() if ln.strip()]
        # The exception line ("FooError: ...") is more useful than a trailing hint.
        exc = [ln for ln in tail if _EXC_LINE.match(ln)]
        msg = (exc or tail or [f"worker exited with status {proc.returncode}"])[-1]
        return {**row, "error": msg[:500], "stderr_tail": tail[-40:]}
    median = statistics.median(data["times_s"])
    return {
        **row,
        **data,
        "median_s": median,
        "mpath_steps_per_s": n * steps / median / 1e6,
        "error": None,
    }


def _add_comparisons(rows: list[dict[str, Any]]) -> None:
    refs = {r["n_paths"]: r for r in rows if r["impl"] == REFERENCE and not r.get("error")}
    for r in rows:
        ref = refs.get(r["n_paths"])
        if r.get("error") or ref is None:
            r["speedup_vs_numpy_f64"] = None
            r["pnl_z_vs_numpy_f64"] = None
            continue
        r["speedup_vs_numpy_f64"] = ref["median_s"] / r["median_s"]
        se = math.hypot(r["pnl_se"], ref["pnl_se"])
        r["pnl_z_vs_numpy_f64"] = (
            None if r is ref or not se > 0 else (r["pnl_mean"] - ref["pnl_mean"]) / se
        )


def _machine_info() -> dict[str, Any]:
    import numpy as np

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "cpu_model": None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:
        info["scipy"] = None
    try:
        import jax

        info["jax"] = jax.__version__
        info["jax_backend"] = jax.default_backend()
        info["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        info["jax"] = f"unavailable: {type(e).__name__}: {e}"
    try:
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        import hedgejax

        info["hedgejax"] = getattr(hedgejax, "__version__", "unknown")
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        info["hedgejax"] = f"unavailable: {type(e).__name__}: {e}"
    env_keys = ("JAX_PLATFORMS", "XLA_FLAGS", "OMP_NUM_THREADS", "JAX_ENABLE_X64")
    info["env"] = {k: os.environ[k] for k in env_keys if k in os.environ}
    return info


COLUMNS: tuple[tuple[str, str], ...] = (
    ("impl", "impl"),
    ("n_paths", "n_paths"),
    ("median_s", "median s"),
    ("mpath_steps_per_s", "M path-steps/s"),
    ("speedup_vs_numpy_f64", "x np64"),
    ("compile_s", "compile s"),
    ("peak_rss_mib", "peak RSS MiB"),
    ("pnl_mean", "P&L mean"),
    ("pnl_std", "P&L std"),
    ("pnl_z_vs_numpy_f64", "z np64"),
)


def _fmt(key: str, row: dict[str, Any]) -> str:
    v = row.get(key)
    if key == "impl":
        return str(v)
    if key == "n_paths":
        return f"2^{row['log2_paths']}"
    if row.get("error"):
        return "ERROR" if key == "median_s" else ""
    if v is None:
        return "-"
    formats = {
        "median_s": "{:.3f}",
        "mpath_steps_per_s": "{:.1f}",
        "speedup_vs_numpy_f64": "{:.1f}x",
        "compile_s": "{:.2f}",
        "peak_rss_mib": "{:.0f}",
        "pnl_mean": "{:+.4f}",
        "pnl_std": "{:.4f}",
        "pnl_z_vs_numpy_f64": "{:+.1f}",
    }
    return formats[key].format(v)


def _print_table(rows: list[dict[str, Any]]) -> None:
    headers = [h for _, h in COLUMNS]
    cells = [[_fmt(k, r) for k, _ in COLUMNS] for r in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
        print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
        for c in cells:
            print("  ".join(x.rjust(w) for x, w in zip(c, widths, strict=True)))
    else:
        table = Table(title="W1: long call, delta hedge every step, 10 bp costs")
        for h in headers:
            table.add_column(h, justify="left" if h == "impl" else "right")
        for c in cells:
            table.add_row(*c)
        console = Console()
        if not console.is_terminal:  # piped or logged: do not squeeze to 80 columns
            console = Console(width=160)
        console.print(table)
    for r in rows:
        if r.get("error"):
            print(f"error: {r['impl']} 2^{r['log2_paths']}: {r['error']}", file=sys.stderr)


def _markdown(report: dict[str, Any]) -> str:
    m, w = report["machine"], report["workload"]
    lines = [
        "# Benchmark W1",
        "",
        (
            f"{w['description']}: S0=K={w['model']['spot']:g}, T={w['claim']['maturity']:g}, "
            f"vol={w['model']['vol']:g}, r={w['model']['rate']:g}, {w['n_steps']} steps, "
            f"DeltaHedge(every={w['strategy']['every']}), Proportional({w['costs']['rate']:g})."
        ),
        "",
        f"- date: {report['date']}",
        (
            f"- machine: {m['platform']}, {m.get('cpu_model') or m['processor']}, "
            f"{m['cpu_count']} CPUs; jax {m.get('jax')} ({m.get('jax_backend', '?')}: "
            f"{', '.join(m.get('jax_devices', []))}); numpy {m['numpy']}"
        ),
        f"- command: `{report['command']}`",
        "",
        (
            "`x np64` = speed-up over numpy-f64 at the same n_paths; `compile s` = first call "
            "minus median steady-state call; `z np64` = (P&L mean - numpy-f64 P&L mean) in "
            "standard errors (independent random streams)."
        ),
        "",
        "| " + " | ".join(h for _, h in COLUMNS) + " |",
        "|" + "|".join("---" if k == "impl" else "---:" for k, _ in COLUMNS) + "|",
    ]
    for r in report["rows"]:
        lines.append("| " + " | ".join(_fmt(k, r) for k, _ in COLUMNS) + " |")
    errors = [r for r in report["rows"] if r.get("error")]
    if errors:
        lines += ["", "Errors:", ""]
        lines += [f"- {r['impl']} 2^{r['log2_paths']}: {r['error']}" for r in errors]
    return "\n".join(lines) + "\n"


def _finite(obj: Any) -> Any:
    """Replace non-finite floats by None so the JSON is strict."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    if args.worker is not None:
        impl, n_text = args.worker
        if impl not in IMPLS:
            parser.error(f"unknown implementation {impl!r}")
        try:
            n = int(n_text)
        except ValueError:
            parser.error(f"bad path count {n_text!r}")
        repeats = args.repeats or _default_repeats(impl, n)
        return run_worker(impl, n, args.steps, repeats, args.seed)

    log2s = args.paths or ([12] if args.quick else [16, 18, 20])
    impls = list(args.impls or DEFAULT_IMPLS)
    if args.f64 and "hedgejax-f64" not in impls:
        impls.insert(
            impls.index("hedgejax-f32") + 1 if "hedgejax-f32" in impls else 0, "hedgejax-f64"
        )
    out: Path = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    if out.suffix != ".json":
        parser.error(f"--out must end in .json, got {str(out)!r}")
    for impl in [i for i in impls if not _available(i)]:
        print(f"skipping {impl}: not installed (pip install torch --index-url "
              "https://download.pytorch.org/whl/cpu, then pip install -e '.[bench]')",
              file=sys.stderr)
        impls.remove(impl)
    # The reference first, so ratios can be shown as soon as possible.
    impls.sort(key=lambda i: i != REFERENCE)

    rows: list[dict[str, Any]] = []
    for l2 in log2s:
        n = 1 << l2
        for impl in impls:
            repeats = args.repeats or (1 if args.quick else _default_repeats(impl, n))
            print(
                f"running {impl} at 2^{l2} paths x {args.steps} steps ({repeats} repeat(s))...",
                file=sys.stderr,
                flush=True,
            )
            row = _measure(impl, n, args.steps, repeats, args.seed, args.timeout)
            if row.get("error"):
                print(f"  failed: {row['error']}", file=sys.stderr, flush=True)
            else:
                print(
                    f"  median {row['median_s']:.3f} s, "
                    f"{row['mpath_steps_per_s']:.1f} M path-steps/s",
                    file=sys.stderr,
                    flush=True,
                )
            rows.append(row)
    _add_comparisons(rows)
    order = {impl: k for k, impl in enumerate(sorted(impls, key=IMPLS.index))}
    rows.sort(key=lambda r: (r["n_paths"], order[r["impl"]]))

    workload = {**WORKLOAD, "n_steps": args.steps, "n_paths": [1 << l2 for l2 in log2s]}
    report = {
        "benchmark": "bench_w1",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "experiments/bench_w1.py", *(argv or sys.argv[1:])]),
        "machine": _machine_info(),
        "workload": workload,
        "columns": {
            "median_s": "median wall time of the timed calls (steady state for hedgejax)",
            "mpath_steps_per_s": "n_paths * n_steps / median_s / 1e6",
            "speedup_vs_numpy_f64": "numpy-f64 median_s / this median_s, same n_paths",
            "compile_s": "first call wall time minus median_s (hedgejax only)",
            "compile_aot_s": "jax.jit(hedge).lower(key).compile() wall time, if it works",
            "peak_rss_mib": "ru_maxrss of the worker process after the timed calls",
            "pnl_z_vs_numpy_f64": "(pnl_mean - ref pnl_mean) / hypot(pnl_se, ref pnl_se)",
        },
        "rows": rows,
    }
    _print_table(rows)
    text = json.dumps(_finite(report), indent=2, allow_nan=False, default=str) + "\n"
    atomic_write_text(out, text)
    atomic_write_text(out.with_suffix(".md"), _markdown(report))
    print(f"wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
