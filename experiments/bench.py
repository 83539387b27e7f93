"""The benchmark suite: workloads W1-W4 of DESIGN, each with its baselines in the same run.

- W1 `bench_w1.py`: delta hedge of a call, hedgejax against NumPy (float64, float32) and
  pfhedge when installed; path-steps/s, ratios, compile time, peak memory.
- W2 `bench_w2.py`: fitting a band; gradient cost against a forward pass; fit wall time.
- W3 `bench_w3.py`: Greeks of a 1,000-option book, autodiff against bump-and-revalue.
- W4 `bench_w4.py`: a Heston world hedged with Black-Scholes deltas, against W1.

Each writes its JSON and markdown under experiments/results/ (`--quick`: small sizes,
written under runs/, for a smoke test in CI). Run `python experiments/bench.py` or
`hedgejax bench`; `--only w1,w3` picks workloads.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"w1": "bench_w1.py", "w2": "bench_w2.py", "w3": "bench_w3.py", "w4": "bench_w4.py"}


def main(argv: list[str] | None = None) -> int:
    from hedgejax.cli import OneLineParser

    parser = OneLineParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, results in runs/")
    parser.add_argument("--only", default=",".join(SCRIPTS),
                        help="comma-separated workloads (default w1,w2,w3,w4)")
    args = parser.parse_args(argv)
    chosen = [w.strip().lower() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in chosen if w not in SCRIPTS]
    if unknown or not chosen:
        parser.error(f"--only must name workloads among {','.join(SCRIPTS)}, got {args.only!r}")
    failed = []
    for name in chosen:
        cmd = [sys.executable, str(ROOT / "experiments" / SCRIPTS[name])]
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
