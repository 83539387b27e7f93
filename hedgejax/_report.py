"""Run metadata and result files shared by benchmarks and experiments."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._io import atomic_write_text


def machine_summary() -> str:
    """One line: OS, processor, CPU count, jax version and backend."""
    import jax

    return (f"{platform.platform()}, {platform.processor() or 'cpu'}, {os.cpu_count()} CPUs; "
            f"jax {jax.__version__} ({jax.default_backend()})")


def write_report(out: str | os.PathLike, script: str, rows: list[dict[str, Any]],
                 markdown: Callable[[dict[str, Any]], str],
                 argv: Sequence[str] | None = None, **extra: Any) -> dict[str, Any]:
    """Write `out` (JSON) and `out` with suffix .md (from `markdown(report)`) atomically.

    The report records the date (UTC), the machine and the command line that produced it.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_summary(),
        "command": " ".join(["python", script, *args]),
        **extra,
        "rows": rows,
    }
    out = os.fspath(out)
    atomic_write_text(out, json.dumps(report, indent=2, default=str) + "\n")
    atomic_write_text(os.path.splitext(out)[0] + ".md", markdown(report))
    print(f"wrote {out}", file=sys.stderr)
    return report


def log2_list(text: str) -> list[int]:
    """argparse type: comma-separated log2 path counts, each in 1..30 ("16,18" -> [16, 18])."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not values or any(not 1 <= v <= 30 for v in values):
        raise argparse.ArgumentTypeError(f"log2 path counts must be in 1..30, got {text!r}")
    return values
