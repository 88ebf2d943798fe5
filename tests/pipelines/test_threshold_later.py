"""Compute signals once, threshold later: a heuristics threshold change re-runs the cheap decision and what follows,
never the measurement; a measuring setting (how words split) does measure again."""

from __future__ import annotations

import yaml
from support.builds import copy_build, run_all_stages

from datafactory.factory.catalog import query
from datafactory.filters.heuristics import HeuristicFilter


def count_measurements(monkeypatch) -> list[int]:
    """Counts HeuristicFilter.measurement calls (the in-memory runner runs every DoFn in this process)."""
    calls = [0]
    real = HeuristicFilter.measurement

    def counted(self, text, lang):  # noqa: ANN001, ANN202 - same signature as the method it wraps
        calls[0] += 1
        return real(self, text, lang)

    monkeypatch.setattr(HeuristicFilter, "measurement", counted)
    return calls


def with_heuristics(corpus_dir, name: str, heuristics: dict):
    config = yaml.safe_load((corpus_dir / "test.yaml").read_text())
    config["heuristics"] = heuristics
    path = corpus_dir / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_threshold_change_measures_nothing_again(small_corpus, reference_build, tmp_path, monkeypatch):
    out = copy_build(reference_build, tmp_path / "build")
    calls = count_measurements(monkeypatch)
    stricter = with_heuristics(small_corpus, "stricter.yaml", {"min_words": 120})

    results = {result.stage: result for result in run_all_stages(stricter, out)}
    assert calls[0] == 0
    assert results["signals"].skipped and results["langid"].skipped
    assert not results["heuristics"].skipped and not results["tokenize"].skipped  # the decision and what follows
    _, before = query(reference_build, "SELECT count(*) FROM heuristics WHERE reason = 'gopher_min_words'")
    _, after = query(out, "SELECT count(*) FROM heuristics WHERE reason = 'gopher_min_words'")
    assert after[0][0] > before[0][0]


def test_a_measuring_setting_measures_again(small_corpus, reference_build, tmp_path, monkeypatch):
    out = copy_build(reference_build, tmp_path / "build")
    calls = count_measurements(monkeypatch)
    chars = with_heuristics(small_corpus, "chars.yaml", {"word_split": "chars"})

    results = {result.stage: result for result in run_all_stages(chars, out)}
    _, measured = query(out, "SELECT count(*) FROM signals")
    assert not results["signals"].skipped and calls[0] == measured[0][0] > 0
