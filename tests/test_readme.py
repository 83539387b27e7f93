"""The README's Python example runs as written (with fewer paths, to keep CI fast)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python example"
    code = blocks[0].replace("2**18", "2**12")
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    grad = namespace["jax"].grad(namespace["pnl_std"])(0.2)
    assert bool(namespace["jax"].numpy.isfinite(grad))


def test_readme_first_lines_are_the_two_commands():
    lines = README.read_text().splitlines()
    fence = lines.index("```bash")
    commands = lines[fence + 1:fence + 3]
    assert "hedgejax hedge" in commands[0] and "pip install" in commands[0]
    assert "pytest" in commands[1] and "pip install" in commands[1]
