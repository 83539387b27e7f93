"""Which counter-based generator should draw hedgejax's random numbers (issue 13, part 3)?

Measures every generator of `hedgejax._random.GENERATORS` in one process:

- W1 through `hj.hedge` (Black-Scholes delta hedge of an at-the-money call, proportional
  cost 0.001, 252 steps, float32), with the generator chosen by setting
  `hedgejax._random.DEFAULT_GENERATOR` before each trace (`jax.clear_caches()` between them,
  so `hedge`'s own jit cache cannot hand back another generator's program);
- "draws only": a `lax.scan` over 252 steps that only draws and sums a normal per path, the
  generator's own cost;
- "hash only": the same scan XOR-ing the first word of stream 0, without the normal (once per
  hash: the +boxmuller generators share their hash with the generator they extend);
- quick statistics of 2^20 normals (moments as z-scores, Kolmogorov-Smirnov p-value,
  correlation of consecutive steps), a smoke check beside tests/test_random_generators.py.

Timings: each program is compiled once (compile time = lower + compile), called once to warm
up, then the generators are timed round-robin, `--repeats` rounds, so a change of load on the
machine hits all of them alike. Reported: the median time, M path-steps/s, the median over
rounds of the ratio to threefry's time *in the same round* (the robust figure on a shared,
noisy machine), and the ratio of the fastest calls (the least disturbed by other load).

Sources: Salmon, Moraes, Dror and Shaw (2011), "Parallel random numbers: as easy as 1, 2, 3"
(Threefry, Philox); Box and Muller (1958); Giles (2010) for XLA's erfinv.

Run: `python experiments/rng_study.py` (about 80 s of CPU; 2-3 minutes on the shared 2-core
VM), `--quick` for a smoke test. Results: experiments/results/rng_study.json and .md.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ("W1 hedge", "draws only", "hash only")


def _programs(generator: str, n_paths: int, n_steps: int):
    """Compiled W1 and draws-only programs for `generator`, and their compile times."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    import hedgejax as hj
    from hedgejax import _random

    _random.DEFAULT_GENERATOR = generator
    jax.clear_caches()
    grid = hj.TimeGrid(1.0, n_steps)

    def w1(key):
        return hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 1.0),
                        hj.DeltaHedge(), hj.Proportional(0.001), grid, n_paths, key).pnl

    def draws_only(key):
        words = _random.key_words(key)
        path_index = jnp.arange(n_paths, dtype=jnp.uint32)

        def body(acc, i):
            return acc + _random.Draws(words, path_index, i, jnp.float32).normal(0), None

        acc, _ = lax.scan(body, jnp.zeros(n_paths, jnp.float32),
                          jnp.arange(n_steps, dtype=jnp.int32))
        return acc

    def hash_only(key):
        words = _random.key_words(key)
        path_index = jnp.arange(n_paths, dtype=jnp.uint32)

        def body(acc, i):
            return acc ^ _random.Draws(words, path_index, i, jnp.float32)._words(0)[0], None

        acc, _ = lax.scan(body, jnp.zeros(n_paths, jnp.uint32),
                          jnp.arange(n_steps, dtype=jnp.int32))
        return acc

    out = {}
    kernels = [("W1 hedge", w1), ("draws only", draws_only)]
    if "+" not in generator:
        kernels.append(("hash only", hash_only))
    for name, fn in kernels:
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(jax.random.key(0)).compile()
        out[name] = (compiled, time.perf_counter() - t0)
    _random.DEFAULT_GENERATOR = "threefry"
    return out


def _statistics(generator: str, n: int) -> dict[str, float]:
    """Moments (as z-scores under N(0, 1)), KS p-value and lag-1 step correlation."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from scipy import stats

    from hedgejax import _random

    words = _random.key_words(jax.random.key(2026))
    path_index = jnp.arange(n, dtype=jnp.uint32)
    draw = jax.jit(lambda step: _random.Draws(words, path_index, step, jnp.float32,
                                              generator=generator).normal(0))
    z = np.asarray(draw(0), np.float64)
    z_next = np.asarray(draw(1), np.float64)
    return {
        "mean_z": float(z.mean() / np.sqrt(1 / n)),
        "variance_z": float((z.var() - 1) / np.sqrt(2 / n)),
        "skew_z": float(stats.skew(z) / np.sqrt(6 / n)),
        "excess_kurtosis_z": float(stats.kurtosis(z) / np.sqrt(24 / n)),
        "ks_p": float(stats.kstest(z, "norm").pvalue),
        "lag1_step_corr_z": float(np.corrcoef(z, z_next)[0, 1] * np.sqrt(n)),
    }


def _markdown(report: dict[str, Any]) -> str:
    n_paths, n_steps = report["n_paths"], report["n_steps"]
    lines = ["# Random-number generators: speed and statistics (issue 13, part 3)", "",
             f"- date: {report['date']}", f"- machine: {report['machine']}",
             f"- command: `{report['command']}`",
             f"- load average (1 min) before / after: {report['load_before']:.2f} / "
             f"{report['load_after']:.2f} on {os.cpu_count()} CPUs",
             f"- {n_paths} paths x {n_steps} steps, float32; {report['repeats']} round-robin "
             "rounds after one warm-up call each; ratio = threefry's time / this generator's "
             "time in the same round (median over rounds; > 1 is faster than threefry); "
             "'ratio of fastest calls' = threefry's fastest call / this generator's fastest "
             "call", ""]
    for what in KERNELS:
        lines += [f"## {what}", "",
                  "| generator | median time | M path-steps/s | ratio vs threefry-20 | "
                  "ratio of fastest calls | compile |", "|---|---:|---:|---:|---:|---:|"]
        for r in report["rows"]:
            if what not in r:
                continue
            m = r[what]
            lines.append(f"| {r['generator']} | {m['median_s']:.3f} s | "
                         f"{m['mpath_steps_per_s']:.1f} | **{m['ratio_vs_threefry']:.2f}** | "
                         f"{m['min_ratio_vs_threefry']:.2f} | {m['compile_s']:.2f} s |")
        lines.append("")
    log2_n = report["stat_n"].bit_length() - 1
    lines += [f"## Statistics of 2^{log2_n} float32 normals (step 0, stream 0; z-scores)", "",
              "| generator | mean | variance | skew | excess kurtosis | KS p | lag-1 step corr |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        s = r["statistics"]
        lines.append(f"| {r['generator']} | {s['mean_z']:+.2f} | {s['variance_z']:+.2f} | "
                     f"{s['skew_z']:+.2f} | {s['excess_kurtosis_z']:+.2f} | {s['ks_p']:.3f} | "
                     f"{s['lag1_step_corr_z']:+.2f} |")
    lines += ["", "z-scores are (statistic - expected) / its standard error under N(0, 1); "
              "tests/test_random_generators.py holds every generator within 4.5.", ""]
    best = max(report["rows"], key=lambda r: r["W1 hedge"]["ratio_vs_threefry"])
    lines += ["## Summary", "",
              f"Fastest in W1: **{best['generator']}**, "
              f"{best['W1 hedge']['ratio_vs_threefry']:.2f}x threefry-20 (median paired ratio; "
              f"{best['W1 hedge']['min_ratio_vs_threefry']:.2f}x by fastest calls), "
              f"{best['draws only']['ratio_vs_threefry']:.2f}x on the draws alone.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import jax

    from hedgejax import _random
    from hedgejax._report import write_report
    from hedgejax.cli import OneLineParser

    parser = OneLineParser(prog="rng_study", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test (seconds)")
    parser.add_argument("--paths", type=int, default=18, help="log2 of the path count")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    n_paths, n_steps = (2**10, 20) if args.quick else (2**args.paths, 252)
    repeats = 2 if args.quick else args.repeats
    stat_n = 2**12 if args.quick else 2**20
    out = args.out or (ROOT / ("runs" if args.quick else "experiments/results") /
                       "rng_study.json")
    load_before = os.getloadavg()[0]

    programs = {}
    for g in _random.GENERATORS:
        programs[g] = _programs(g, n_paths, n_steps)
        print(g, {k: f"compile {v[1]:.2f} s" for k, v in programs[g].items()}, flush=True)

    times: dict[tuple[str, str], list[float]] = {}
    for what in KERNELS:
        gens = [g for g in _random.GENERATORS if what in programs[g]]
        for g in gens:  # warm-up
            jax.block_until_ready(programs[g][what][0](jax.random.key(0)))
        for seed in range(1, repeats + 1):
            for g in gens:
                t0 = time.perf_counter()
                jax.block_until_ready(programs[g][what][0](jax.random.key(seed)))
                times.setdefault((g, what), []).append(time.perf_counter() - t0)
    load_after = os.getloadavg()[0]

    rows = []
    for g in _random.GENERATORS:
        row: dict[str, Any] = {"generator": g}
        for what in KERNELS:
            if what not in programs[g]:
                continue
            ts, base = times[g, what], times["threefry", what]
            median = statistics.median(ts)
            row[what] = {
                "times_s": ts, "median_s": median, "compile_s": programs[g][what][1],
                "mpath_steps_per_s": n_paths * n_steps / median / 1e6,
                "ratio_vs_threefry": statistics.median(
                    b / t for b, t in zip(base, ts, strict=True)),
                "min_ratio_vs_threefry": min(base) / min(ts),
            }
        row["statistics"] = _statistics(g, stat_n)
        rows.append(row)
        print(g, {w: f"{row[w]['mpath_steps_per_s']:.1f} M/s, x{row[w]['ratio_vs_threefry']:.2f}"
                  for w in KERNELS if w in row}, flush=True)
    write_report(out, "experiments/rng_study.py", rows, _markdown, argv, n_paths=n_paths,
                 n_steps=n_steps, repeats=repeats, stat_n=stat_n, load_before=load_before,
                 load_after=load_after)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
