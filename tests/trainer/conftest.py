"""Fixtures for trainer tests: a tiny synthetic build in tmp_path."""

from pathlib import Path

import pytest
from support.synthetic import Corpus, build_corpus


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    return build_corpus(tmp_path / "build")
