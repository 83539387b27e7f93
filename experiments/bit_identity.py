"""Bit-identity matrix: the same key gives the same per-path results, bit for bit, whatever
the layout of the run.

Matrix: models {Black-Scholes, Heston, Merton, bootstrap of the embedded prices} x books
{one call; a call and a put expiring mid-grid} x strategies {delta hedge with proportional
costs; Whalley-Wilmott with proportional costs and random slippage; a 1-step execution lag
under a trade limit; a learned band (MLP); a neural hedge (MLP)} x layouts {one call;
chunk_size 64 and 300; block_size 128; devices 2, 3 and 4; devices 2 with chunk_size 3001;
devices 4 with chunk_size 300}, on 2 CPUs; and, pinned to 1 CPU (`taskset -c 0`), every
layout of the combinations in `PINNED` (Black-Scholes books with Whalley-Wilmott and random
slippage, Heston with delta and with Whalley-Wilmott).

Every run hedges 1,000 paths over 12 steps of a year (the mixed book's put expires at step
6) and compares all per-path fields of `HedgeResult` (P&L, hedge error, cost, trade count,
unhedged P&L, final position, terminal spot) with the single-call run on 2 CPUs. The
4 host devices are made with `XLA_FLAGS=--xla_force_host_platform_device_count=4`.

Run: `python -m experiments.bit_identity` (results in experiments/results/bit_identity.json
and .md, about 40 minutes on 2 CPUs); `--quick` for Black-Scholes and Heston with two
strategies (results under runs/). The test suite runs a slice of the same matrix
(tests/test_bit_identity.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
N_PATHS = 1000
FIELDS = ("pnl", "hedge_error", "cost", "n_trades", "unhedged_pnl", "final_position",
          "terminal_spot")
LAYOUTS: dict[str, dict[str, int]] = {
    "one call": {},
    "chunk 64": {"chunk_size": 64},
    "chunk 300": {"chunk_size": 300},
    "block 128": {"block_size": 128},
    "2 devices": {"devices": 2},
    "3 devices": {"devices": 3},
    "4 devices": {"devices": 4},
    "2 dev, chunk 3001": {"devices": 2, "chunk_size": 3001},
    "4 dev, chunk 300": {"devices": 4, "chunk_size": 300},
}
MODELS = ("black-scholes", "heston", "merton", "bootstrap")
BOOKS = ("call", "mixed")
STRATEGIES = ("delta", "ww-slippage", "lag-limits", "learned-band", "neural")
QUICK = {"models": ("black-scholes", "heston"), "strategies": ("delta", "ww-slippage")}
# also run pinned to one CPU: the case (a book, Whalley-Wilmott, random slippage)
# and Heston's
PINNED = [("black-scholes", "call", "ww-slippage"), ("black-scholes", "mixed", "ww-slippage"),
          ("heston", "call", "delta"), ("heston", "mixed", "ww-slippage")]


def model(name: str):
    import hedgejax as hj

    if name == "black-scholes":
        return hj.BlackScholes(100.0, 0.2, 0.01)
    if name == "heston":
        return hj.Heston(100.0, 0.04, 1.5, 0.04, 0.3, -0.7, rate=0.01)
    if name == "merton":
        return hj.Merton(100.0, 0.2, 1.0, -0.1, 0.15, rate=0.01)
    if name == "bootstrap":
        from hedgejax.data import sample_prices

        return hj.Bootstrap.from_prices(sample_prices(), block=20)
    raise ValueError(f"unknown model {name!r}")


def book(name: str):
    import hedgejax as hj

    if name == "call":
        return hj.Book([hj.EuropeanCall(100.0, 1.0)])
    if name == "mixed":
        return hj.Book([hj.EuropeanCall(100.0, 1.0), hj.EuropeanPut(90.0, 0.5)], [1.0, -2.0])
    raise ValueError(f"unknown book {name!r}")


def strategy(name: str):
    """(strategy, costs)."""
    import jax

    import hedgejax as hj

    proportional = hj.Proportional(1e-3)
    if name == "delta":
        return hj.DeltaHedge(), proportional
    if name == "ww-slippage":
        return hj.WhalleyWilmott(1.0), proportional + hj.RandomSlippage(1e-3, 0.5)
    if name == "lag-limits":
        return hj.Limits(hj.ExecutionLag(hj.DeltaHedge(), 1), max_trade=0.3), proportional
    if name == "learned-band":
        return hj.LearnedBand(jax.random.key(1), hidden=8), proportional
    if name == "neural":
        return hj.NeuralHedge(jax.random.key(2), hidden=8), proportional
    raise ValueError(f"unknown strategy {name!r}")


def digests(model_name: str, book_name: str, strategy_name: str,
            layouts: dict[str, dict[str, int]]) -> dict[str, Any]:
    """For each layout: a SHA-256 of every per-path field, and the number of P&Ls that
    differ from the first layout's."""
    import jax
    import numpy as np

    import hedgejax as hj
    from hedgejax._pricing.registry import has_pricer

    world = model(model_name)
    strat, costs = strategy(strategy_name)
    hedger = None if has_pricer(world, hj.EuropeanCall(100.0, 1.0)) else \
        hj.BlackScholes(100.0, 0.2, 0.01)
    out: dict[str, Any] = {}
    first = None
    for name, kwargs in layouts.items():
        if kwargs.get("devices", 1) > jax.local_device_count():
            continue
        res = hj.hedge(world, book(book_name), strat, costs, hj.TimeGrid(1.0, 12), N_PATHS,
                       jax.random.key(7), hedge_model=hedger, **kwargs)
        fields = [np.asarray(getattr(res, f)) for f in FIELDS]
        digest = hashlib.sha256(b"".join(f.tobytes() for f in fields)).hexdigest()[:16]
        first = fields if first is None else first
        out[name] = {"digest": digest,
                     "pnl_differ": int(np.sum(fields[0] != first[0])),
                     "finite": bool(all(np.all(np.isfinite(f)) for f in fields))}
    return out


def _worker(spec: str) -> None:
    """Subprocess entry: run the combos of `spec` (JSON) and print one JSON line."""
    import gc

    import jax

    job = json.loads(spec)
    layouts = {k: LAYOUTS[k] for k in job["layouts"]}
    result = {}
    for combo in job["combos"]:
        t0 = time.perf_counter()
        result["/".join(combo)] = runs = digests(*combo, layouts)
        differ = {k: v["pnl_differ"] for k, v in runs.items() if v["pnl_differ"]}
        print(f"{'/'.join(combo)}: {time.perf_counter() - t0:.0f} s, P&Ls differ: {differ}",
              file=sys.stderr, flush=True)
        # every layout compiles anew: free the executables (XLA maps memory per program)
        jax.clear_caches()
        gc.collect()
    print(json.dumps(result))


def run_matrix(combos: list[tuple[str, str, str]], layouts: list[str], *,
               pin_one_cpu: bool = False, timeout: float = 3600,
               verbose: bool = False) -> dict[str, Any]:
    """Run `combos` x `layouts` in a fresh process with 4 host devices (optionally pinned to
    one CPU with `taskset -c 0`); returns {combo: {layout: {digest, pnl_differ, finite}}}."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    code = ("import sys; from experiments.bit_identity import _worker; "
            "_worker(sys.argv[1])")
    cmd = [sys.executable, "-c", code, json.dumps({"combos": combos, "layouts": layouts})]
    if pin_one_cpu:
        if shutil.which("taskset") is None:
            raise RuntimeError("taskset is needed to pin the run to one CPU")
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if verbose else
                          subprocess.PIPE, text=True, env=env, timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"bit-identity worker failed:\n{(proc.stderr or '')[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(two_cpus: dict[str, Any], one_cpu: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per combo: for each layout (and the 1-CPU runs) whether every field matches
    the single call on 2 CPUs bit for bit."""
    rows = []
    for combo, runs in two_cpus.items():
        reference = runs["one call"]["digest"]
        row: dict[str, Any] = {"combo": combo, "finite": all(r["finite"] for r in runs.values())}
        for layout, r in runs.items():
            row[layout] = {"same": r["digest"] == reference, "pnl_differ": r["pnl_differ"]}
        if one_cpu is not None and combo in one_cpu:
            same = all(r["digest"] == reference for r in one_cpu[combo].values())
            row["1 CPU"] = {"same": same, "pnl_differ": None}
        elif one_cpu is not None:
            row["1 CPU"] = None
        rows.append(row)
    return rows


def _markdown(report: dict[str, Any]) -> str:
    rows = report["rows"]
    columns = [k for k in rows[0] if k not in ("combo", "finite")]
    same = sum(r[c]["same"] for r in rows for c in columns if r.get(c))
    total = sum(1 for r in rows for c in columns if r.get(c))
    lines = [
        "# Bit-identity matrix", "",
        f"{report['date']} · {report['machine']}", "",
        f"Command: `{report['command']}` ({report['run_seconds']:,.0f} s)", "",
        f"**{same:,} of {total:,} runs bit-identical** to the single call on 2 CPUs "
        f"({N_PATHS:,} paths x 12 steps; all seven per-path fields compared). A cell gives "
        "`=` for bit-identical, else the number of P&Ls that differ (`x`: another field "
        "differs). The `1 CPU` column repeats every layout pinned to one CPU (`taskset -c "
        "0`) and compares it with the single call on 2 CPUs; it is run for four of the "
        "combinations (`PINNED` in the script).", "",
        "| model / book / strategy | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for r in rows:
        cells = ["" if not r.get(c) else "=" if r[c]["same"] else
                 (str(r[c]["pnl_differ"]) if r[c]["pnl_differ"] else "x") for c in columns]
        lines.append(f"| {r['combo']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from hedgejax._report import write_report
    from hedgejax.cli import OneLineParser

    parser = OneLineParser(prog="bit_identity", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="Black-Scholes and Heston, two strategies (results in runs/)")
    parser.add_argument("--no-pin", action="store_true",
                        help="skip the runs pinned to one CPU")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    models = QUICK["models"] if args.quick else MODELS
    strategies = QUICK["strategies"] if args.quick else STRATEGIES
    combos = [(m, b, s) for m in models for b in BOOKS for s in strategies]
    out = args.out or (ROOT / ("runs" if args.quick else "experiments/results")
                       / "bit_identity.json")
    t0 = time.perf_counter()
    two = run_matrix(combos, list(LAYOUTS), verbose=True)
    pinned = [c for c in combos if c in PINNED]
    one = None if args.no_pin else run_matrix(pinned, list(LAYOUTS), pin_one_cpu=True,
                                              verbose=True)
    rows = compare(two, one)
    write_report(out, "experiments/bit_identity.py", rows, _markdown, argv,
                 run_seconds=time.perf_counter() - t0, n_paths=N_PATHS)
    bad = [r["combo"] for r in rows
           if not r["finite"] or not all(r[c]["same"] for c in r
                                         if c not in ("combo", "finite") and r[c])]
    print(f"{len(rows) - len(bad)} of {len(rows)} combinations bit-identical in every "
          f"layout" + (f"; differ: {', '.join(bad)}" if bad else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
