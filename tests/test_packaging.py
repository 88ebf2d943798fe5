"""The wheel installs one import name, `datafactory`, with every layer and its package data, and works with no
source checkout on the path (the editable install cannot hide a missing package or data file)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("factory", "filters", "pipelines", "mixtures", "trainer", "flows", "app")
CHECK = """
import importlib, pathlib, pkgutil, sys
import datafactory
root = pathlib.Path(sys.argv[1])
names = [m.name for m in pkgutil.walk_packages(datafactory.__path__, "datafactory.")]
for name in names:
    module = importlib.import_module(name)
    assert root in pathlib.Path(module.__file__).parents, (name, module.__file__)
from datafactory.factory.manifest import manifest_schema
from datafactory.filters.quality_train import load_scorer
from datafactory.filters.quality_default import DEFAULT_MODEL
from datafactory.app.demo import base_documents
from datafactory.mixtures.policy import load_policy
from datafactory.factory.config import preset_names
assert manifest_schema()["title"] and base_documents()["zh"] and "web" in preset_names()
assert root in DEFAULT_MODEL.parents and 0 <= load_scorer(DEFAULT_MODEL).score(["A sentence."])[0] <= 1
print(len(names))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the sources, so setuptools' build/ folder never lands in the checkout."""
    source, out = tmp_path_factory.mktemp("source") / "repo", tmp_path_factory.mktemp("dist")
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "demo-build", "*.egg-info", "tests", "benchmarks", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(source)], check=True, cwd=out)
    (path,) = out.glob("datafactory_corpus-*.whl")
    return path


def test_the_wheel_holds_one_top_level_name(wheel):
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"datafactory"}
    assert {f"datafactory/{layer}/__init__.py" for layer in LAYERS} <= set(zipfile.ZipFile(wheel).namelist())


@pytest.mark.slow
def test_every_module_imports_from_the_installed_wheel(wheel, tmp_path):
    """A scratch venv sees the project's dependencies through a .pth line (not the editable finder, whose own
    .pth files are not processed there), plus the wheel: every module must come from the wheel."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(wheel)], check=True)
    result = subprocess.run([str(python), "-c", CHECK, str(site / "datafactory")], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) > 60
