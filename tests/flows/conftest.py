"""One small demo corpus and its reference build (stages run in-process, no Prefect), shared by the fault,
determinism and distributed-runner tests, plus the digest they compare builds by."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from factory.catalog import build_catalog
from factory.config import load_config
from factory.demo import write_demo_corpus

TINY_TOKENIZE = {"seq_len": 64, "rows_per_shard": 64, "tokenizer": {"vocab_size": 4000}}
# What a build must reproduce byte for byte; the catalog (absolute paths), logs and lock are not build outputs.
COMPARED = ("stages", "ledger", "models", "tokenizer", "shards", "manifests")


def run_all_stages(config_path: Path, out: Path) -> list:
    """Every stage of flows.build.STAGES in order, then the catalog and both manifests: a build without Prefect."""
    from flows.build import STAGES

    config = load_config(config_path)
    results = [runner(config, out) for _, runner in STAGES]
    plan_manifests(out)
    return results


def plan_manifests(out: Path) -> None:
    """The catalog, then stable.json and anneal.json from a fixed policy."""
    from mixtures.planner import Policy, plan

    build_catalog(out)
    plan(out, Policy(total_tokens=30 * 4 * 64, anneal_fraction=0.2, warmup_fraction=0.05))


def build_digest(out: Path) -> dict[str, str]:
    """sha256 of every output file of a build, by path relative to it."""
    files = sorted(path for top in COMPARED for path in (out / top).rglob("*") if path.is_file())
    return {str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


def write_config(corpus_dir: Path, name: str, runner: dict) -> Path:
    config = yaml.safe_load((corpus_dir / "demo.yaml").read_text())
    config |= {"runner": runner, "tokenize": TINY_TOKENIZE}
    path = corpus_dir / name
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """300 demo documents (six languages, planted duplicates, spam); every build reads this one copy, so stage
    markers, which hash input paths, can be compared across builds too."""
    corpus_dir = tmp_path_factory.mktemp("corpus") / "input"
    write_demo_corpus(corpus_dir, n_docs=300, seed=3)
    write_config(corpus_dir, "test.yaml", {"direct_running_mode": "in_memory"})
    return corpus_dir


@pytest.fixture(scope="session")
def reference_build(small_corpus, tmp_path_factory) -> Path:
    """An uninterrupted build with one in-process Beam worker: what every other build must equal."""
    out = tmp_path_factory.mktemp("reference")
    run_all_stages(small_corpus / "test.yaml", out)
    return out


@pytest.fixture(scope="session")
def digest() -> Callable[[Path], dict[str, str]]:
    return build_digest


@pytest.fixture(scope="session")
def plan_build() -> Callable[[Path], None]:
    return plan_manifests


@pytest.fixture(scope="session")
def build_with() -> Callable[[Path, str, dict, Path], Path]:
    """build_with(corpus_dir, config_name, runner_options, out): a full build under other runner options."""

    def build(corpus_dir: Path, name: str, runner: dict, out: Path) -> Path:
        run_all_stages(write_config(corpus_dir, name, runner), out)
        return out

    return build
