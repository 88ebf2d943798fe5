"""Compute signals once, threshold later: a heuristics threshold change re-runs the cheap decision and what follows,
never the measurement; a measuring setting (how words split) does measure again."""

from __future__ import annotations

import pytest
import yaml
from support.builds import copy_build, run_all_stages

from datafactory.factory.catalog import query
from datafactory.filters.heuristics import HeuristicFilter


@pytest.fixture(scope="module")
def web_sample_texts(shared_data) -> dict[str, list[str]]:
    """Real documents by language (those with heuristics settings of their own, and English)."""
    import gzip
    import json

    by_lang: dict[str, list[str]] = {}
    with gzip.open(shared_data / "web_sample.jsonl.gz", "rt", encoding="utf-8") as lines:
        for record in map(json.loads, lines):
            if record.get("lang") in {"en", "zh", "ja", "de", "fr", "es", "ru"}:
                by_lang.setdefault(record["lang"], []).append(record["text"])
    return by_lang


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


THRESHOLDS = [{"min_words": 80}, {"max_words": 50_000}, {"disable": ["gopher_min_words"]},
              {"languages": {"zh": {"min_words": 30}}}, {"languages": {"de": {"max_top_2gram_frac": 0.3}}}]
MEASURING = [{"c4_remove_lines": True}, {"word_split": "chars"}, {"rule_sets": ["c4"]},
             {"languages": {"zh": {"word_split": "chars"}}}, {"languages": {"sv": {"min_words": 30}}},
             {"c4_min_words_per_line": 4}, {"short_line_length": 20}, {"stop_words": ["the"]}]


def stage_hashes(heuristics: dict) -> tuple[str, str]:
    from datafactory.factory.config import parse_config
    from datafactory.pipelines.registry import stage

    config = parse_config({"inputs": [{"path": "x.jsonl", "source": "web"}], "heuristics": heuristics})
    return stage("signals").config_hash(config), stage("heuristics").config_hash(config)


@pytest.mark.parametrize("change", THRESHOLDS, ids=str)
def test_a_threshold_is_hashed_by_the_decision_only(change):
    (signals, decision), (base_signals, base_decision) = stage_hashes(change), stage_hashes({})
    assert signals == base_signals and decision != base_decision


@pytest.mark.parametrize("change", MEASURING, ids=str)
def test_a_measuring_setting_is_hashed_by_the_measurement(change):
    # A new `languages` entry measures again too: it decides which entry (word splitting) judges a document.
    assert stage_hashes(change)[0] != stage_hashes({})[0]


def test_measuring_reads_only_the_measuring_fields(web_sample_texts, monkeypatch):
    """Every HeuristicRules field read while measuring documents of every configured language is a measuring field:
    a threshold read there would be missing from the signals stage's hash."""
    from datafactory.factory.config import MEASURING_FIELDS, HeuristicRules, HeuristicsConfig

    read: set[str] = set()
    real = HeuristicRules.__getattribute__

    def recording(self, name):  # noqa: ANN001, ANN202 - same signature as object.__getattribute__
        if name in HeuristicRules.model_fields:
            read.add(name)
        return real(self, name)

    config = HeuristicsConfig()
    rules = HeuristicFilter(config)
    samples = {lang: texts[:20] for lang, texts in web_sample_texts.items()}
    for key in [None, *config.languages, *samples]:  # which rules apply (`disable`) is the decision's, cached here
        rules.settings(key)
    monkeypatch.setattr(HeuristicRules, "__getattribute__", recording)
    for lang, texts in samples.items():
        for text in texts:
            rules.measurement(text, lang)
    assert read and read <= MEASURING_FIELDS, sorted(read - MEASURING_FIELDS)


def test_a_change_that_writes_the_same_bytes_stops_there(small_corpus, reference_build, tmp_path):
    """Downstream stages key on what upstream wrote, not on its settings: a threshold no document is near re-runs
    the decision, which writes the same parts, and nothing after it."""
    out = copy_build(reference_build, tmp_path / "build")
    looser = with_heuristics(small_corpus, "looser.yaml", {"max_words": 100_001})
    results = {result.stage: result for result in run_all_stages(looser, out)}
    assert not results["heuristics"].skipped
    assert all(results[name].skipped for name in ("dedup", "decontaminate", "quality", "tokenizer", "tokenize"))
