"""The layer contracts in pyproject.toml (checked by `lint-imports` in `make test`) pass on the tree, and fail
once one upward import is planted in a copy of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = tuple(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """lint-imports over the `datafactory` package found under ``tree`` (ahead of the editable install)."""
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
               "--config", str(REPO / "pyproject.toml")]
    env = os.environ | {"PYTHONPATH": str(tree)}
    return subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)


def copy_tree(root: Path) -> Path:
    for layer in LAYERS:
        shutil.copytree(REPO / layer, root / "datafactory" / layer, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    tree = copy_tree(tmp_path)
    clean = lint_imports(tree)
    assert clean.returncode == 0, clean.stdout[-2000:]
    with open(tree / "datafactory" / "factory" / "records.py", "a", encoding="utf-8") as module:
        module.write("\nfrom datafactory.app import report  # noqa: E402 - planted by the test\n")
    planted = lint_imports(tree)
    assert planted.returncode != 0
    assert "datafactory.factory is not allowed to import datafactory.app" in planted.stdout
    assert "datafactory.factory.records -> datafactory.app.report" in planted.stdout
