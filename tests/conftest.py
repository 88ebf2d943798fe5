"""Shared fixtures: the real data in ../shared/data (skip without it, unless CI requires it), and one small demo
build, made once per session, for every test that only reads a build (tests copy it before writing into it)."""

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from support.builds import IN_MEMORY, build_digest, plan_manifests, run_all_stages, write_config

from datafactory.app.demo import write_demo_corpus

# Prefect reads these at import: no telemetry, and no INFO chatter from the temporary server in test output.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DATAFACTORY_PREFECT_SERVER", "ephemeral")  # no background server outlives the suite
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_SERVER_LEVEL", "WARNING")
# The temporary server Prefect starts per test session may take longer than its 20 s default on a loaded machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        if os.environ.get("DATAFACTORY_REQUIRE_SHARED") == "1":
            pytest.fail(f"DATAFACTORY_REQUIRE_SHARED=1 but {SHARED_DATA} does not exist")
        pytest.skip(f"real test data not found at {SHARED_DATA} (set up ../shared/data to run this test)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """300 demo documents (six languages, planted duplicates, spam); every build reads this one copy, so stage
    markers, which hash input paths, can be compared across builds too."""
    corpus_dir = tmp_path_factory.mktemp("corpus") / "input"
    write_demo_corpus(corpus_dir, n_docs=300, seed=3)
    write_config(corpus_dir, "test.yaml", IN_MEMORY)
    return corpus_dir


@pytest.fixture(scope="session")
def reference_build(small_corpus, tmp_path_factory) -> Path:
    """The session's demo build: the build-corpus flow with one in-process Beam worker, then both manifests from a
    fixed policy. Tests only read it (or copy it with support.builds.copy_build before writing into it), and every
    other build of the same corpus must equal it byte for byte."""
    from datafactory.flows.build import build_corpus

    out = tmp_path_factory.mktemp("reference")
    build_corpus(str(small_corpus / "test.yaml"), str(out))
    plan_manifests(out)
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
