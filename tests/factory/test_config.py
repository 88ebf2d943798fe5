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


def test_a_preset_lies_under_the_configs_own_keys(tmp_path) -> None:
    from datafactory.factory.config import load_config

    config_file = tmp_path / "web.yaml"
    config_file.write_text("inputs: [{path: x.jsonl, source: web}]\npreset: web\nsubstrings: {min_tokens: 80}\n"
                           "dedup: {threshold: 0.8}\n", encoding="utf-8")
    config = load_config(config_file)
    assert (config.substrings.enabled, config.substrings.min_tokens) == (True, 80)
    assert (config.dedup.paragraphs.enabled, config.dedup.threshold) == (True, 0.8)


def test_an_unknown_preset_names_the_known_ones(tmp_path) -> None:
    from datafactory.factory.config import ConfigError, load_config

    config_file = tmp_path / "web.yaml"
    config_file.write_text("inputs: [{path: x.jsonl, source: web}]\npreset: crawl\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"web\.yaml:\n  preset: no preset 'crawl'; the presets are web"):
        load_config(config_file)
