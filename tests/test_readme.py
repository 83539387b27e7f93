"""The README's Python example runs as written (with fewer paths, to keep CI fast)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    """The README's python examples, but the multi-host launch script (it needs several
    processes: tests/test_scale.py runs that case)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return [b for b in blocks if not b.startswith("# run.py")]


def test_readme_first_example_runs():
    blocks = _python_blocks()
    assert blocks, "README has no python example"
    code = blocks[0].replace("2**18", "2**12")
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    grad = namespace["jax"].grad(namespace["pnl_std"])(0.2)
    assert bool(namespace["jax"].numpy.isfinite(grad))


@pytest.mark.slow  # the learning and Heston examples compile for a minute or two
def test_readme_other_examples_run():
    spaces = []
    for code in _python_blocks()[1:]:
        namespace: dict = {}
        exec(compile(code, str(README), "exec"), namespace)
        spaces.append(namespace)
    hj = spaces[0]["hj"]
    # The gap-risk example's short call has a heavy left tail.
    jumps = next(ns["jumps"] for ns in spaces if "jumps" in ns)
    assert float(hj.risk.expected_shortfall(jumps.pnl, 0.99)) > 3.0
    # The learning example finds a band near the grid's best and a dominant frontier.
    learned = next(ns for ns in spaces if "band" in ns)
    assert 0.07 < float(learned["band"].width) < 0.13
    assert hj.band_dominates(learned["points"]).all()


def test_readme_first_lines_are_the_two_commands():
    lines = README.read_text().splitlines()
    fence = lines.index("```bash")
    commands = lines[fence + 1:fence + 3]
    assert "hedgejax experiment" in commands[0] and "pip install" in commands[0]
    assert "pytest" in commands[1] and "pip install" in commands[1]
