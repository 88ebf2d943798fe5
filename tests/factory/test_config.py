"""Build config validation that spans several keys."""

import pytest
from pydantic import ValidationError

from datafactory.factory.config import QualityConfig


def test_every_quality_score_keeps_its_own_name() -> None:
    assert QualityConfig(scorers=[{"model": "a/q.bin"}, {"model": "b/q.bin", "name": "other"}])
    with pytest.raises(ValidationError, match="scorer names must be unique"):
        QualityConfig(scorers=[{"model": "a/q.bin"}, {"model": "b/q.bin"}])
    with pytest.raises(ValidationError, match="scorer names must be unique"):  # the build's own is `reference`
        QualityConfig(model="models/reference.bin", reference={"sources": ["wiki"]})
