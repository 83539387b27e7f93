"""What `pip install` ships, and what the project declares: cheap checks of pyproject.toml
against the source tree (the wheel itself is built and run by .ci/run).

What is asserted: every experiment's default config is found through `importlib.resources`
(as an installed package finds it) and parses, and every experiment module imports and
has the attributes the framework reads; every data file of the package is matched by a
`package-data` pattern and every Python folder is a package (so setuptools ships it);
every third-party import of the project is a declared dependency and every declared
dependency is used; the README's test command is the one CI runs.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import re
import sys
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from hedgejax.experiments import NAMES
from hedgejax.experiments._framework import module_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE = ROOT / "hedgejax"

# Import names that differ from their distribution's name.
DISTRIBUTION_OF_IMPORT = {"QuantLib": "quantlib", "absl": "absl-py"}
# Declared for what they do rather than for an import: a pytest plugin, the linter, and what
# pfhedge imports without declaring it (experiments/bench_w1.py checks it is installed).
TOOLS = {"pytest-xdist", "ruff", "tqdm"}
# The project's own top-level modules (tests import their helpers and each other by name).
LOCAL = ({"hedgejax", "experiments", "tests"} | set(PYPROJECT["tool"]["setuptools"]["py-modules"])
         | {p.stem for p in (ROOT / "tests").glob("*.py")})


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalise(re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0))


def _package_files() -> list[Path]:
    return [p for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]


# ---------------------------------------------------------------- experiments as package data

@pytest.mark.parametrize("name", NAMES)
def test_every_experiment_config_is_a_package_resource(name):
    config = resources.files("hedgejax.experiments").joinpath("configs", f"{name}.toml")
    assert config.is_file(), f"no default config for {name}"
    defaults = tomllib.loads(config.read_text())
    assert {"seed", "paths"} <= defaults.keys()


@pytest.mark.parametrize("name", NAMES)
def test_every_experiment_module_imports(name):
    module = importlib.import_module(module_name(name))
    assert module.NAME == name
    assert isinstance(module.QUESTION, str) and module.QUESTION
    assert callable(module.run)


def test_configs_and_experiments_match_one_to_one():
    configs = resources.files("hedgejax.experiments").joinpath("configs")
    names = sorted(p.name.removesuffix(".toml") for p in configs.iterdir()
                   if p.name.endswith(".toml"))
    assert names == sorted(NAMES)


def test_shipped_data_is_a_package_resource():
    data = resources.files("hedgejax.data")
    assert any(p.name.endswith(".csv") for p in data.iterdir())


# ---------------------------------------------------------------- what setuptools ships

def test_every_data_file_of_the_package_is_declared():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["hedgejax"]
    undeclared = [str(p.relative_to(ROOT)) for p in _package_files()
                  if p.suffix != ".py"
                  and not any(fnmatch.fnmatch(p.relative_to(PACKAGE).as_posix(), pattern)
                              for pattern in patterns)]
    assert not undeclared, f"not in [tool.setuptools.package-data]: {undeclared}"


def test_every_python_folder_of_the_package_is_a_package():
    # setuptools' find only ships folders with an __init__.py
    folders = {p.parent for p in _package_files() if p.suffix == ".py"}
    assert not [str(f) for f in folders if not (f / "__init__.py").is_file()]
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert any(fnmatch.fnmatch("hedgejax.experiments", pattern) for pattern in include)


# ---------------------------------------------------------------- declared dependencies

def _third_party_imports() -> dict[str, set[str]]:
    """Top-level names imported by the project's Python files -> the files importing them."""
    found: dict[str, set[str]] = {}
    for folder in ("hedgejax", "tests", "experiments"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in LOCAL:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _declared() -> dict[str, set[str]]:
    """Distribution name -> the extras declaring it ("" for the core dependencies)."""
    project = PYPROJECT["project"]
    declared: dict[str, set[str]] = {}
    for requirement in project["dependencies"]:
        declared.setdefault(_requirement_name(requirement), set()).add("")
    for extra, requirements in project["optional-dependencies"].items():
        for requirement in requirements:
            declared.setdefault(_requirement_name(requirement), set()).add(extra)
    return declared


def test_every_import_is_declared():
    declared = _declared()
    undeclared = {name: sorted(files) for name, files in _third_party_imports().items()
                  if _normalise(DISTRIBUTION_OF_IMPORT.get(name, name)) not in declared}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_library_imports_only_core_dependencies():
    declared = _declared()
    library = {name for name, files in _third_party_imports().items()
               if any(f.startswith("hedgejax") for f in files)}
    optional = [name for name in library
                if "" not in declared.get(_normalise(DISTRIBUTION_OF_IMPORT.get(name, name)),
                                          {""})]
    assert not optional, f"the installed package imports optional dependencies: {optional}"


def test_every_declared_dependency_is_used():
    imported = {_normalise(DISTRIBUTION_OF_IMPORT.get(name, name))
                for name in _third_party_imports()}
    # jax[cuda12] is jax; the cuda extra only selects its GPU build
    unused = [name for name in _declared() if name not in imported | TOOLS]
    assert not unused, f"declared in pyproject.toml but never imported: {unused}"


# ---------------------------------------------------------------- the README's commands

def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = re.search(r'^TEST_COMMAND="(.*)"$', ci, re.M).group(1)
    lines = (ROOT / "README.md").read_text().splitlines()
    fence = lines.index("```bash")
    main_line, test_line = lines[fence + 1:fence + 3]
    venv_step = "python3 -m venv .venv && . .venv/bin/activate && "
    assert test_line == venv_step + test_command
    assert main_line.startswith(venv_step) and main_line.endswith(
        "hedgejax experiment market-maker")
    assert "-n 2" in test_command and "[test]" in test_command
