"""Check that a built wheel carries every file of the source package.

Usage: python .ci/check_wheel.py DIST/hedgejax-*.whl SOURCE_ROOT

Every file under SOURCE_ROOT/hedgejax (Python modules, the experiments' default configs, the
shipped data) must be in the wheel; a file the source has and the wheel lacks means package
data is not declared in pyproject.toml, and the installed package would fail where a source
checkout works. Exits 1 naming the missing files.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

SKIPPED_PARTS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def source_files(root: Path) -> set[str]:
    """Paths (relative to `root`, '/'-separated) of the package's files in the source."""
    package = root / "hedgejax"
    return {
        path.relative_to(root).as_posix()
        for path in package.rglob("*")
        if path.is_file()
        and not SKIPPED_PARTS.intersection(path.parts)
        and path.suffix not in SKIPPED_SUFFIXES
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    wheel, root = Path(argv[0]), Path(argv[1])
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    expected = source_files(root)
    required = {"hedgejax/experiments/configs/market-maker.toml",
                "hedgejax/experiments/market_maker.py", "hedgejax/data/sample_prices.csv"}
    missing = sorted((expected | required) - in_wheel)
    if missing:
        print(f"{wheel.name} lacks {len(missing)} file(s) of the source package:",
              file=sys.stderr)
        for name in missing:
            print(f"  {name}", file=sys.stderr)
        return 1
    configs = sum(n.startswith("hedgejax/experiments/configs/") for n in in_wheel)
    data = sum(n.startswith("hedgejax/data/") and n.endswith(".csv") for n in in_wheel)
    print(f"{wheel.name}: all {len(expected)} package files present "
          f"({configs} experiment configs, {data} data files)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
