"""Memory and time of reverse-mode gradients through `hedge()`: today's per-step
`jax.checkpoint` against sqrt(n) segment checkpointing (`hedgejax._scan.checkpointed_scan`).

Workload: W1 (Black-Scholes world, spot 100, vol 0.2, r = q = 0; one long EuropeanCall(100, 1);
Proportional(0.001) costs; TimeGrid(1, 252)), float32, default block size 2^18. Gradients:

- `vol`:  d mean P&L / d vol, DeltaHedge (world and hedge model both move with vol);
- `band`: d mean P&L / d width, BandHedge(0.05) (the band half-width in shares).

Variants of the hedging loop (hedgejax/_hedge.py `_simulate`, patched in the worker process,
whether `_simulate` calls `lax.scan` or `checkpointed_scan`; _hedge.py itself is not edited):

- `step`: the loop before issue 13 part 4: `lax.scan(jax.checkpoint(body), ...)`;
- `nested`: `checkpointed_scan(body, ...)` as measured here: segments of 16 steps (15 full
  segments and a 12-step remainder; the default is now 18 of 14), each under
  `jax.checkpoint`, the step not;
- `nested+step`: the same with the step also under `jax.checkpoint` (two levels);
- `nested@S`, `nested+step@S`: segments of S steps.

Each (workload, variant, n_paths) runs in its own child process, so its peak RSS
(`resource.getrusage(...).ru_maxrss`) is its own. The child compiles the value (mean P&L, a
forward pass) and its gradient with `jax.jit(...).lower(...).compile()`, records XLA's
temporary buffer size for each (`compiled.memory_analysis()`, deterministic), runs each
once, then `--repeats` rounds of (forward, gradient) with fresh keys, interleaved so that the
load of other processes on the shared cores hits both alike; `grad / fwd` is the median of
the per-round ratios. Every child also hashes the per-path P&L of one forward `hedge()` call
(key 0) with its patch in place: the hashes must all equal the unpatched one (forward
results bit-identical), and the gradient values are compared.

`--merton` also measures Merton hedging throughput (Merton(100, 0.15, jump_rate=1,
jump_mean=-0.1, jump_std=0.1), EuropeanCall(100, 1), DeltaHedge, Proportional(0.001), 252
steps) against `block_size`, one child process per (pricing, n_paths): median of
`--repeats // 2` calls after a first call that compiles.

Run from the repository root::

    python experiments/grad_memory.py              # 2^18 paths (a few minutes on 2 cores)
    python experiments/grad_memory.py --big        # and 2^20 (step, nested+step there)
    python experiments/grad_memory.py --big --merton   # the recorded run (~40 min, 2 cores)
    python experiments/grad_memory.py --quick      # smoke test, 2^12 x 20 steps -> runs/

Results: experiments/results/grad_memory.json and .md (or `--out`).
"""

from __future__ import annotations

import hashlib
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "experiments" / "results" / "grad_memory.json"
QUICK_OUT = ROOT / "runs" / "grad_memory_quick.json"
VARIANTS = ("step", "nested", "nested+step")
WORKLOADS = ("vol", "band")
MERTON_BLOCKS = (1024, 2048, 4096, 8192, 16384)


def _patch(variant: str) -> int | None:
    """Set up `hedgejax._hedge` for `variant`; returns the segment length (None: default).

    Works on either form of `_simulate`: the loop as `lax.scan(step, ...)` with
    `step = jax.checkpoint(body) if CHECKPOINT_STEP else body` (before issue 13 part 4), or
    `checkpointed_scan(jax.checkpoint(body), carry0, n)` when CHECKPOINT_STEP (after it)."""
    import functools
    import types

    import jax.numpy as jnp
    from jax import lax

    import hedgejax._hedge as engine
    from hedgejax._scan import checkpointed_scan

    name, _, seg = variant.partition("@")
    segment = int(seg) if seg else None
    if name not in ("forward", "step", "nested", "nested+step"):
        raise ValueError(f"unknown variant {variant!r}")

    def plain(step, carry0, n, **_):  # lax.scan of the (checkpointed) step
        return lax.scan(step, carry0, jnp.arange(n, dtype=jnp.int32))[0]

    def segmented(step, carry0, xs_or_n, **_):
        if name == "nested":  # the step not under jax.checkpoint
            step = step.__wrapped__
        return checkpointed_scan(step, carry0, xs_or_n, segment=segment)

    if hasattr(engine, "checkpointed_scan"):  # after: CHECKPOINT_STEP selects it
        engine.CHECKPOINT_STEP = True
        engine.checkpointed_scan = plain if name in ("forward", "step") else segmented
        return segment
    engine.CHECKPOINT_STEP = name in ("forward", "step", "nested+step")
    if name.startswith("nested"):
        # _simulate's `lax.scan` (only that name) goes to checkpointed_scan; `lax.map` and
        # everything else stay jax's.
        names = {k: getattr(lax, k) for k in dir(lax) if not k.startswith("_")}
        scan = functools.partial(checkpointed_scan, segment=segment)
        engine.lax = types.SimpleNamespace(
            **{**names, "scan": lambda f, init, xs: (scan(f, init, xs), None)})
    return segment


def _value_fn(workload: str, n_paths: int, n_steps: int):
    import hedgejax as hj

    model = hj.BlackScholes(100.0, 0.2)
    call = hj.EuropeanCall(100.0, 1.0)
    grid = hj.TimeGrid(1.0, n_steps)
    costs = hj.Proportional(0.001)
    if workload == "vol":
        def result(p, key):
            return hj.hedge(model.replace(vol=p), call, hj.DeltaHedge(), costs, grid, n_paths,
                            key)
        p0 = 0.2
    elif workload == "band":
        def result(p, key):
            return hj.hedge(model, call, hj.BandHedge(p), costs, grid, n_paths, key)
        p0 = 0.05
    else:
        raise ValueError(f"unknown workload {workload!r}")

    def value(p, key):
        return hj.risk.mean(result(p, key).pnl)

    return result, value, p0


def _temp_mib(compiled) -> float | None:
    try:
        return compiled.memory_analysis().temp_size_in_bytes / 2**20
    except Exception:  # not every backend reports it
        return None


def worker_grad(workload: str, n_paths: int, n_steps: int, variant: str,
                repeats: int) -> dict[str, Any]:
    import jax
    import numpy as np

    segment = _patch(variant)
    result, value, p0 = _value_fn(workload, n_paths, n_steps)
    key = jax.random.key(0)
    out: dict[str, Any] = {"segment": segment}

    t0 = time.perf_counter()
    fwd = jax.jit(value).lower(p0, key).compile()
    out["compile_fwd_s"] = time.perf_counter() - t0
    out["temp_fwd_mib"] = _temp_mib(fwd)
    if variant != "forward":
        t0 = time.perf_counter()
        grad = jax.jit(jax.grad(value)).lower(p0, key).compile()
        out["compile_grad_s"] = time.perf_counter() - t0
        out["temp_grad_mib"] = _temp_mib(grad)
        out["grad"] = float(grad(p0, key))
    jax.block_until_ready(fwd(p0, key))

    fwd_times, grad_times, ratios = [], [], []
    for seed in range(1, repeats + 1):
        k = jax.random.key(seed)
        t0 = time.perf_counter()
        jax.block_until_ready(fwd(p0, k))
        fwd_times.append(time.perf_counter() - t0)
        if variant != "forward":
            t0 = time.perf_counter()
            jax.block_until_ready(grad(p0, k))
            grad_times.append(time.perf_counter() - t0)
            ratios.append(grad_times[-1] / fwd_times[-1])
    out["fwd_s"] = statistics.median(fwd_times)
    if grad_times:
        out["grad_s"] = statistics.median(grad_times)
        out["grad_over_fwd"] = statistics.median(ratios)
    # forward results through hedge() itself (its own compiled program), hashed per path
    pnl = np.asarray(result(p0, key).pnl)
    out["pnl_sha256"] = hashlib.sha256(pnl.tobytes()).hexdigest()[:16]
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def worker_timing(workload: str, n_paths: int, n_steps: int, variants: list[str],
                  repeats: int) -> dict[str, Any]:
    """All variants' gradients compiled in this one process (the patch is read when a
    program is traced, so the trace caches are cleared between them), then timed in rounds
    of (forward, every variant) with a fresh key each round, the variants' order rotating:
    wall-clock and CPU seconds (`time.process_time`, all of the process's threads; less
    sensitive than wall-clock to other processes on shared cores)."""
    import jax

    import hedgejax._hedge as engine

    _, value, p0 = _value_fn(workload, n_paths, n_steps)
    key = jax.random.key(0)
    jax_lax = engine.lax
    original = getattr(engine, "checkpointed_scan", None)
    programs = {}
    for variant in ("forward", *variants):
        engine.lax = jax_lax
        if original is not None:
            engine.checkpointed_scan = original
        _patch(variant)
        jax.clear_caches()
        fn = value if variant == "forward" else jax.grad(value)
        programs[variant] = jax.jit(fn).lower(p0, key).compile()
        jax.block_until_ready(programs[variant](p0, key))
    engine.lax = jax_lax
    if original is not None:
        engine.checkpointed_scan = original
    times: dict[str, list[float]] = {v: [] for v in programs}
    cpu: dict[str, list[float]] = {v: [] for v in programs}
    for seed in range(1, repeats + 1):
        k = jax.random.key(seed)
        shift = seed % len(variants)
        for variant in ("forward", *variants[shift:], *variants[:shift]):
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(programs[variant](p0, k))
            times[variant].append(time.perf_counter() - t0)
            cpu[variant].append(time.process_time() - c0)

    def ratios(seconds):
        return {v: statistics.median(a / b for a, b in zip(seconds[v], seconds["forward"],
                                                           strict=True)) for v in variants}

    return {"temp_mib": {v: _temp_mib(p) for v, p in programs.items()},
            "median_s": {v: statistics.median(t) for v, t in times.items()},
            "grad_over_fwd": ratios(times),
            "median_cpu_s": {v: statistics.median(t) for v, t in cpu.items()},
            "cpu_grad_over_fwd": ratios(cpu)}


def worker_merton(n_paths: int, n_steps: int, blocks: list[int], repeats: int,
                  pricing: str) -> dict[str, Any]:
    import jax

    import hedgejax as hj

    model = hj.Merton(spot=100.0, vol=0.15, jump_rate=1.0, jump_mean=-0.1, jump_std=0.1)
    rows = []
    for b in blocks:
        def run(seed, b=b):
            return jax.block_until_ready(hj.hedge(
                model, hj.EuropeanCall(100.0, 1.0), hj.DeltaHedge(), hj.Proportional(0.001),
                hj.TimeGrid(1.0, n_steps), n_paths=n_paths, key=jax.random.key(seed),
                block_size=b, pricing=pricing).pnl)
        t0 = time.perf_counter()
        run(0)
        first = time.perf_counter() - t0
        times = []
        for seed in range(1, repeats + 1):
            t0 = time.perf_counter()
            run(seed)
            times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        rows.append({"block_size": b, "first_call_s": first, "median_s": median,
                     "mpath_steps_per_s": n_paths * n_steps / median / 1e6})
    return {"n_paths": n_paths, "n_steps": n_steps, "pricing": pricing, "rows": rows}


def _spawn(*args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True,
                          text=True, cwd=ROOT)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit status {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _markdown(report: dict[str, Any]) -> str:
    lines = ["# Gradient memory: per-step checkpoint against sqrt(n) segment checkpointing", "",
             f"- date: {report['date']}", f"- machine: {report['machine']}",
             f"- command: `{report['command']}`",
             f"- local jax devices: {report.get('local_devices', '?')} (hedge(devices=None) may "
             "split the paths over them)", f"- steps: {report['n_steps']}, "
             f"repeats: {report['repeats']} (medians; grad / fwd is the median of per-round "
             "ratios, forward and gradient interleaved in the same process)", "",
             "`temp` is XLA's temporary buffer size of the compiled program "
             "(`memory_analysis()`); peak RSS is the child process's (the JAX runtime alone "
             "is ~300 MiB). `P&L hash` is of the per-path P&L of a forward `hedge()` call "
             "with the variant's loop; `= fwd` means bit-identical to the `lax.scan` loop.", ""]
    rows = [r for r in report["rows"] if r["section"] == "gradients"]
    lines += ["| gradient | paths | variant | peak RSS MiB | temp grad MiB | fwd s | grad s "
              "| grad / fwd | d mean P&L | P&L hash |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    reference = {(r["workload"], r["n_paths"]): r["measure"].get("pnl_sha256")
                 for r in rows if r["variant"] == "forward"}
    for r in rows:
        m = r["measure"]
        head = f"| {r['workload']} | 2^{r['n_paths'].bit_length() - 1} | {r['variant']} "
        if "error" in m:
            lines.append(head + f"| failed: {m['error']} |||||||")
            continue
        same = m["pnl_sha256"] == reference.get((r["workload"], r["n_paths"]))
        lines.append(head + f"| {m['peak_rss_mib']:.0f} | {_fmt(m.get('temp_grad_mib'), '.0f')} "
                     f"| {m['fwd_s']:.3f} | {_fmt(m.get('grad_s'), '.3f')} "
                     f"| {_fmt(m.get('grad_over_fwd'), '.2f')} | {_fmt(m.get('grad'), '.7g')} "
                     f"| {m['pnl_sha256']}{' (= fwd)' if same else ''} |")
    lines.append("")
    timing = [r for r in report["rows"] if r["section"] == "timing"]
    if timing:
        lines += ["## Time, all variants in one process", "",
                  "Every variant's gradient compiled in one process, then timed in rounds of "
                  "(forward, each variant) with fresh keys: median seconds, and in brackets "
                  "the median over rounds of gradient / forward of the same round; wall-clock, "
                  "then CPU time of the process (all threads).", ""]
        for r in timing:
            m = r["measure"]
            lines.append(f"{r['workload']}, 2^{r['n_paths'].bit_length() - 1} paths:")
            lines.append("")
            if "error" in m:
                lines += [f"failed: {m['error']}", ""]
                continue
            variants = list(m["grad_over_fwd"])
            lines += ["| clock | forward s | " + " | ".join(variants) + " |",
                      "|---|---:|" + "---:|" * len(variants)]
            for clock, sec, ratio in (("wall", "median_s", "grad_over_fwd"),
                                      ("CPU", "median_cpu_s", "cpu_grad_over_fwd")):
                cells = [f"{m[sec][v]:.3f} ({m[ratio][v]:.2f}x)" for v in variants]
                lines.append(f"| {clock} | {m[sec]['forward']:.3f} | " + " | ".join(cells)
                             + " |")
            lines.append("")
    for r in report["rows"]:
        if r["section"] != "merton":
            continue
        m = r["measure"]
        lines += [f"## Merton hedging throughput against block_size ({r['n_paths']:,} paths x "
                  f"{r['n_steps']} steps, pricing={r['pricing']!r})", ""]
        if "error" in m:
            lines += [f"failed: {m['error']}", ""]
            continue
        lines += ["| block_size | first call s | median s | M path-steps/s |",
                  "|---:|---:|---:|---:|"]
        for b in m["rows"]:
            lines.append(f"| {b['block_size']:,} | {b['first_call_s']:.2f} | "
                         f"{b['median_s']:.3f} | {b['mpath_steps_per_s']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from hedgejax._report import write_report
    from hedgejax.cli import OneLineParser

    parser = OneLineParser(prog="grad_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also 2^20 paths")
    parser.add_argument("--paths", default=None,
                        help="comma-separated log2 path counts (default 18; 18,20 with --big)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated: step, nested, nested+step, nested@S, ...")
    parser.add_argument("--big-variants", default="step,nested+step",
                        help="the variants at 2^20 paths and more")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--merton", action="store_true",
                        help="also Merton throughput against block_size")
    parser.add_argument("--merton-runs", default="auto:14,auto:18,exact:14",
                        help="PRICING:LOG2_PATHS pairs of the Merton sweep (hedge()'s pricing=; "
                             "block sizes 1,024 .. 16,384 up to the paths, and the paths)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2^12 x 20 steps")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        paths, n_steps, repeats, merton_runs = [2**12], 20, 2, [("auto", 2**10)]
    else:
        logs = args.paths or ("18,20" if args.big else "18")
        paths = [2**int(x) for x in logs.split(",")]
        n_steps, repeats = 252, args.repeats
        merton_runs = [(run.split(":")[0], 2**int(run.split(":")[1]))
                       for run in args.merton_runs.split(",")]
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    rows = []
    for n_paths in paths:
        variants = args.big_variants if n_paths >= 2**20 else args.variants
        for workload in args.workloads.split(","):
            for variant in ("forward", *variants.split(",")):
                m = _spawn("grad", workload, str(n_paths), str(n_steps), variant, str(repeats))
                rows.append({"section": "gradients", "workload": workload, "n_paths": n_paths,
                             "n_steps": n_steps, "variant": variant, "measure": m})
                print(workload, n_paths, variant, m, flush=True)
        for workload in args.workloads.split(","):
            m = _spawn("timing", workload, str(n_paths), str(n_steps), variants,
                       str(repeats))
            rows.append({"section": "timing", "workload": workload, "n_paths": n_paths,
                         "n_steps": n_steps, "measure": m})
            print("timing", workload, n_paths, m, flush=True)
    if args.merton or args.quick:
        for pricing, n_paths in merton_runs:
            blocks = [b for b in MERTON_BLOCKS if b <= n_paths] or [n_paths]
            if n_paths > max(MERTON_BLOCKS):
                blocks += [n_paths]
            m = _spawn("merton", str(n_paths), str(n_steps), ",".join(map(str, blocks)),
                       str(max(1, repeats // 2)), pricing)
            rows.append({"section": "merton", "n_paths": n_paths, "n_steps": n_steps,
                         "pricing": pricing, "measure": m})
            print("merton", pricing, n_paths, m, flush=True)
    import jax

    import hedgejax  # noqa: F401  (its import may set the CPU device count)

    write_report(out, "experiments/grad_memory.py", rows, _markdown, argv,
                 n_steps=n_steps, repeats=repeats, local_devices=jax.local_device_count())
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--worker":
        task, rest = sys.argv[2], sys.argv[3:]
        if task == "timing":
            res = worker_timing(rest[0], int(rest[1]), int(rest[2]), rest[3].split(","),
                                int(rest[4]))
        elif task == "grad":
            res = worker_grad(rest[0], int(rest[1]), int(rest[2]), rest[3], int(rest[4]))
        else:
            res = worker_merton(int(rest[0]), int(rest[1]), [int(b) for b in rest[2].split(",")],
                                int(rest[3]), rest[4])
        print(json.dumps(res))
        sys.exit(0)
    sys.exit(main())
