"""Fixtures for the filters tests; ``shared_data`` (the real data folder) comes from tests/conftest.py."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from datafactory.factory.config import LangidConfig
from datafactory.filters.langid import LanguageIdentifier


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="session")
def langid_eval(shared_data: Path) -> list[dict]:
    """Gold-labelled sentences in 34 languages (UD treebanks)."""
    return read_jsonl(shared_data / "langid_eval.jsonl")


@pytest.fixture(scope="session")
def quality_labelled(shared_data: Path) -> list[dict]:
    """Documents labelled hq / lq."""
    return read_jsonl(shared_data / "quality_labelled.jsonl")


@pytest.fixture(scope="session")
def web_sample(shared_data: Path) -> list[dict]:
    """Dirty web-like documents (5,178; zh, en, de dominate)."""
    return read_jsonl(shared_data / "web_sample.jsonl.gz")


@pytest.fixture(scope="session")
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier(LangidConfig())
