"""Where W1's time and memory go: a profile of the step, compile time against the number of
steps, and the memory of gradients through `hedge()` with and without `jax.checkpoint`.

Each measurement runs in its own process (peak RSS per measurement). Results:
experiments/results/perf_w1.json and .md; experiments/results/PERF.md discusses them.

Run: `python experiments/perf_w1.py` (a few minutes), `--quick` for a smoke test.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# Step variants: each adds one piece to the previous, so differences attribute the time.
VARIANTS = {
    "world only (draw + GBM step), no hedge, no cost": ("none", 0.0),
    "+ autodiff delta every step": ("delta", 0.0),
    "+ proportional cost (full W1)": ("delta", 0.001),
}


def worker(task: str, n_paths: int, n_steps: int, extra: str) -> dict[str, Any]:
    import equinox as eqx
    import jax

    import hedgejax as hj
    import hedgejax._hedge as engine

    model = hj.BlackScholes(100.0, 0.2)
    call = hj.EuropeanCall(100.0, 1.0)
    grid = hj.TimeGrid(1.0, n_steps)

    if task == "variant":
        strategy_name, rate = VARIANTS[extra]
        strategy = hj.NoHedge() if strategy_name == "none" else hj.DeltaHedge()
        costs = hj.Proportional(rate) if rate else None

        def fn(key):
            return hj.hedge(model, call, strategy, costs, grid, n_paths, key).pnl
    elif task == "compile":
        def fn(key):
            return hj.hedge(model, call, hj.DeltaHedge(), hj.Proportional(0.001), grid,
                            n_paths, key).pnl
        t0 = time.perf_counter()
        jax.jit(fn).lower(jax.random.key(0)).compile()
        return {"compile_s": time.perf_counter() - t0}
    else:  # gradients w.r.t. vol: "reverse", "reverse-no-checkpoint", "forward-mode", "value"
        engine.CHECKPOINT_STEP = extra != "reverse-no-checkpoint"

        def mean_pnl(vol, key):
            res = hj.hedge(model.replace(vol=vol), call, hj.DeltaHedge(),
                           hj.Proportional(0.001), grid, n_paths, key)
            return hj.risk.mean(res.pnl)

        if extra == "value":
            def fn(key):
                return mean_pnl(0.2, key)
        elif extra == "forward-mode":
            def fn(key):
                return jax.jvp(lambda v: mean_pnl(v, key), (0.2,), (1.0,))
        else:
            def fn(key):
                return jax.grad(mean_pnl)(0.2, key)
    run = eqx.filter_jit(fn)
    jax.block_until_ready(run(jax.random.key(0)))
    times = []
    for seed in range(1, 4):
        t0 = time.perf_counter()
        jax.block_until_ready(run(jax.random.key(seed)))
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"median_s": median, "mpath_steps_per_s": n_paths * n_steps / median / 1e6,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _spawn(task: str, n_paths: int, n_steps: int, extra: str = "") -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--worker", task, str(n_paths),
                           str(n_steps), extra], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _markdown(report: dict[str, Any]) -> str:
    lines = ["# W1 performance profile", "", f"- date: {report['date']}",
             f"- machine: {report['machine']}", f"- command: `{report['command']}`", ""]
    for section in ("profile", "compile", "gradients"):
        rows = [r for r in report["rows"] if r["section"] == section]
        lines += [f"## {section}", "", "| what | paths | steps | result |", "|---|---:|---:|---|"]
        for r in rows:
            m = r["measure"]
            if "error" in m:
                text = f"failed: {m['error']}"
            elif "compile_s" in m:
                text = f"compile {m['compile_s']:.2f} s"
            else:
                text = (f"{m['median_s']:.3f} s, {m['mpath_steps_per_s']:.0f} M path-steps/s, "
                        f"peak RSS {m['peak_rss_mib']:.0f} MiB")
            lines.append(f"| {r['what']} | 2^{r['n_paths'].bit_length() - 1} | {r['n_steps']} "
                         f"| {text} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from hedgejax._report import write_report
    from hedgejax.cli import OneLineParser

    parser = OneLineParser(prog="perf_w1", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    big, steps = (2**10, 20) if args.quick else (2**20, 252)
    out = args.out or (ROOT / ("runs" if args.quick else "experiments/results") /
                       "perf_w1.json")
    rows = []

    def add(section, what, n_paths, n_steps, measure):
        rows.append({"section": section, "what": what, "n_paths": n_paths, "n_steps": n_steps,
                     "measure": measure})
        print(section, what, n_paths, n_steps, measure, flush=True)

    for what in VARIANTS:
        add("profile", what, big, steps, _spawn("variant", big, steps, what))
    for n_steps in ((20, 40) if args.quick else (63, 252, 1008)):
        add("compile", "W1 hedge, ahead-of-time compile", 2**16, n_steps,
            _spawn("compile", 2**16, n_steps))
    for what in ("value", "forward-mode", "reverse", "reverse-no-checkpoint"):
        add("gradients", f"d mean P&L / d vol: {what}", big, steps,
            _spawn("gradient", big, steps, what))
    write_report(out, "experiments/perf_w1.py", rows, _markdown, argv)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "--worker":
        extra = sys.argv[5] if len(sys.argv) > 5 else ""
        print(json.dumps(worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), extra)))
        sys.exit(0)
    sys.exit(main())
