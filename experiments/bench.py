"""The benchmark suite: workloads W1-W5 (docs/architecture.md), each with its baselines in the
same run.

- W1 `bench_w1.py`: delta hedge of a call, hedgejax against NumPy (float64, float32) and
  pfhedge when installed; path-steps/s, ratios, compile time, peak memory.
- W2 `bench_w2.py`: fitting a band; gradient cost against a forward pass; fit wall time.
- W3 `bench_w3.py`: Greeks of a 1,000-option book, autodiff against bump-and-revalue.
- W4 `bench_w4.py`: a Heston world hedged with Black-Scholes deltas, against W1.
- models `bench_models.py`: Heston and Merton worlds hedged with their own model's deltas,
  `pricing="exact"` against `pricing="surface"` (on the same paths), against W1.
- exotics `bench_exotics.py`: W1 with path-dependent books (barrier, Asian, lookback, a mixed
  book) against the vanilla book in the same run.
- W5 `bench_w5.py`: deep-hedging training (pfhedge's flagship set-up), hedgejax against
  pfhedge when installed: time per optimisation step, time to reach pfhedge's final held-out
  loss, final losses, peak memory, flops against this CPU's matmul bound, and a profile.

Each writes its JSON and markdown under experiments/results/ (`--quick`: small sizes,
written under runs/, for a smoke test in CI), and the suite gathers them into one file per
machine, `bench-<machine>.json` and `.md` (machine: `cpu-<N>core`, or the accelerator's
kind, e.g. `nvidia-h100-80gb-hbm3`), with the date, versions and device. Run
`python experiments/bench.py` or `hedgejax bench`; `--only w1,w3` picks workloads.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"w1": "bench_w1.py", "w2": "bench_w2.py", "w3": "bench_w3.py", "w4": "bench_w4.py",
           "models": "bench_models.py", "exotics": "bench_exotics.py", "w5": "bench_w5.py"}


def machine_slug() -> str:
    """A file-name-safe name of this machine's compute: cpu-<N>core or the device kind."""
    import jax

    if jax.default_backend() == "cpu":
        return f"cpu-{os.cpu_count()}core"
    kind = jax.devices()[0].device_kind.lower()
    return re.sub(r"[^a-z0-9]+", "-", kind).strip("-") or jax.default_backend()


def gather(reports: dict[str, Path], out: Path) -> dict:
    """Write the workloads' reports into one JSON (and markdown) file for this machine."""
    import jax

    from hedgejax._io import atomic_write_text

    combined = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_slug(),
        "device": {"backend": jax.default_backend(), "kind": jax.devices()[0].device_kind,
                   "count": jax.device_count(), "cpus": os.cpu_count(),
                   "platform": platform.platform()},
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
        "workloads": {name: json.loads(path.read_text()) for name, path in reports.items()},
    }
    atomic_write_text(out, json.dumps(combined, indent=2) + "\n")
    md = [f"# hedgejax benchmarks on {combined['machine']}", "",
          f"{combined['date']}; {combined['device']['kind']} ({combined['device']['backend']}),"
          f" {combined['device']['cpus']} CPUs; jax {jax.__version__}.", ""]
    for name, path in reports.items():
        table = path.with_suffix(".md")
        md += [f"## {name.upper()}", "", table.read_text() if table.exists() else "", ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(md))
    print(f"wrote {out}", flush=True)
    return combined


def main(argv: list[str] | None = None) -> int:
    from hedgejax.cli import OneLineParser

    parser = OneLineParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, results in runs/")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the reports (default experiments/results, or runs/ "
                             "with --quick)")
    parser.add_argument("--only", default=",".join(SCRIPTS),
                        help=f"comma-separated workloads (default {','.join(SCRIPTS)})")
    args = parser.parse_args(argv)
    chosen = [w.strip().lower() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in chosen if w not in SCRIPTS]
    if unknown or not chosen:
        parser.error(f"--only must name workloads among {','.join(SCRIPTS)}, got {args.only!r}")
    failed = []
    folder = args.out or ROOT / ("runs" if args.quick else "experiments/results")
    folder.mkdir(parents=True, exist_ok=True)
    reports = {}
    for name in chosen:
        reports[name] = folder / f"bench_{name}{'_quick' if args.quick else ''}.json"
        cmd = [sys.executable, str(ROOT / "experiments" / SCRIPTS[name]), "--out",
               str(reports[name])]
        if args.quick:
            cmd.append("--quick")
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            failed.append(name)
        print(f"== {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    if failed:
        print(f"bench: error: failed workloads: {','.join(failed)}", file=sys.stderr)
        return 1
    suffix = "-quick" if args.quick else ""
    gather(reports, folder / f"bench-{machine_slug()}{suffix}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
