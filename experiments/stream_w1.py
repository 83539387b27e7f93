"""W1 at scale: 10^8 paths x 252 steps streamed through `stream_summary` on one machine.

Runs workload W1 (long ATM call, T=1, daily delta hedge, 10 bp costs, float32) on
`--paths` paths (default 10^8) in chunks of `--chunk` paths with a progress bar, keeping
only running statistics and the exact worst 1% of P&L, then records wall time, throughput,
peak RSS and the summary. Results: experiments/results/stream_w1.json and .md.

Run: `python experiments/stream_w1.py` (about two minutes on the 2-core CPU), or
`--paths 1000000` for a short run.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import jax

import hedgejax as hj
from hedgejax._report import write_report
from hedgejax.cli import OneLineParser

ROOT = Path(__file__).resolve().parents[1]


def _markdown(report: dict[str, Any]) -> str:
    r = report["rows"][0]
    s = r["summary"]
    return "\n".join([
        "# W1 streamed at scale", "",
        f"- date: {report['date']}", f"- machine: {report['machine']}",
        f"- command: `{report['command']}`", "",
        f"{r['n_paths']:,} paths x {r['n_steps']} steps in chunks of {r['chunk']:,}: "
        f"**{r['wall_s']:.0f} s** ({r['mpath_steps_per_s']:.0f} M path-steps/s), "
        f"**peak RSS {r['peak_rss_mib']:.0f} MiB**.", "",
        "| mean P&L | std error | std | VaR 99% | ES 99% | mean cost | mean trades |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {s['mean']:.5f} | {s['stderr']:.2e} | {s['std']:.5f} | {s['var']:.5f} | "
        f"{s['es']:.5f} | {s['mean_cost']:.5f} | {s['mean_trades']:.2f} |", "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="stream_w1", description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=10**8)
    parser.add_argument("--chunk", type=int, default=2**20)
    parser.add_argument("--out", type=Path, default=ROOT / "experiments/results/stream_w1.json")
    args = parser.parse_args(argv)
    if args.paths < 1 or args.chunk < 1:
        parser.error("--paths and --chunk must be >= 1")
    grid = hj.TimeGrid(1.0, 252)
    t0 = time.perf_counter()
    summary = hj.stream_summary(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 1.0),
                                hj.DeltaHedge(), hj.Proportional(0.001), grid, args.paths,
                                jax.random.key(0), chunk_size=args.chunk, progress=True)
    wall = time.perf_counter() - t0
    row = {"n_paths": args.paths, "n_steps": 252, "chunk": args.chunk, "wall_s": wall,
           "mpath_steps_per_s": args.paths * 252 / wall / 1e6,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "summary": summary}
    print(f"{args.paths:,} paths: {wall:.1f} s, peak RSS {row['peak_rss_mib']:.0f} MiB, "
          f"mean {summary['mean']:.5f} std {summary['std']:.5f} ES {summary['es']:.5f}")
    write_report(args.out, "experiments/stream_w1.py", [row], _markdown, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
