"""The quality stage's scoring step: several scorers, each score kept, the weighted mean decides."""

import pytest
from support.quality_examples import synthetic_examples

from datafactory.factory.config import QualityConfig, ScorerSpec
from datafactory.filters.quality_train import train_quality_model
from datafactory.pipelines.quality import ScoreQuality, models_digest


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    root = tmp_path_factory.mktemp("scorers")
    train_quality_model(synthetic_examples(80), root / "ft.bin", "fasttext")
    train_quality_model(synthetic_examples(80), root / "lm.model", "lm_ratio")
    return [ScorerSpec(model=str(root / "ft.bin")), ScorerSpec(model=str(root / "lm.model"), weight=3.0)]


def test_scores_are_kept_per_scorer_and_combined_by_weight(specs):
    config = QualityConfig(scorers=specs, min_score=0.4)
    dofn = ScoreQuality(specs, config)
    dofn.setup()
    rows = [{"text": "Researchers spent two years studying medieval trade routes. The authors thanked the "
                     "volunteers who collected the data."},
            {"text": "best casino bonus 100% free spins !!! register now BUY NOW!!! cheap pills $$$ click here"}]
    good, spam = dofn.annotate(rows)
    for row in (good, spam):
        each = dict(row["quality_scores"])
        assert set(each) == {"ft", "lm"}
        assert row["quality_score"] == pytest.approx((each["ft"] + 3 * each["lm"]) / 4)
    assert good["keep"] and good["reason"] is None
    assert not spam["keep"] and spam["reason"] == "quality_below_min_score"
    assert spam["detail"] == pytest.approx(spam["quality_score"])


def test_models_digest_follows_files_and_weights(specs, tmp_path):
    digest = models_digest(specs)
    assert models_digest(specs) == digest
    assert models_digest([specs[0], specs[1].model_copy(update={"weight": 1.0})]) != digest


def test_a_combiner_shows_its_inputs_beside_its_score():
    """The built-in default model reads the row's stored signals; its inner scores land in quality_scores too."""
    from datafactory.filters.quality_default import DEFAULT_MODEL, DEFAULT_NAME

    spec = ScorerSpec(model=str(DEFAULT_MODEL), name=DEFAULT_NAME, kind="combiner")
    dofn = ScoreQuality([spec], QualityConfig())
    dofn.setup()
    (row,) = dofn.annotate([{"text": "Researchers spent two years studying medieval trade routes.",
                             "signals": [("stop_words", 4.0), ("n_words", 8.0)]}])
    each = dict(row["quality_scores"])
    assert set(each) == {"default", "default.fasttext", "default.lm_ratio"}
    assert row["quality_score"] == pytest.approx(each["default"], rel=1e-6)


def test_a_blend_shows_both_inputs_and_reads_the_stored_signals(tmp_path, monkeypatch):
    """A blend's prior (the built-in combiner) takes the row's stored signals: nothing measures them again."""
    train_quality_model(synthetic_examples(80), tmp_path / "mine.bin", "blend")
    spec = ScorerSpec(model=str(tmp_path / "mine.bin"))
    dofn = ScoreQuality([spec], QualityConfig())
    dofn.setup()
    monkeypatch.setattr("datafactory.filters.quality_combine.measure_signals", lambda texts: pytest.fail("measured"))
    (row,) = dofn.annotate([{"text": "Researchers spent two years studying medieval trade routes.",
                             "signals": [("stop_words", 4.0), ("n_words", 8.0)]}])
    each = dict(row["quality_scores"])
    assert set(each) == {"mine", "mine.fasttext", "mine.default"}
    assert min(each["mine.fasttext"], each["mine.default"]) <= each["mine"] <= max(each["mine.fasttext"],
                                                                                   each["mine.default"])


def test_models_digest_follows_a_combiners_inner_models(tmp_path):
    from datafactory.filters.quality_combine import inner_model_paths

    model = tmp_path / "q.combiner"
    model.write_text("{}")
    for path in inner_model_paths(model):
        path.write_bytes(b"inner")
    spec = ScorerSpec(model=str(model), kind="combiner")
    before = models_digest([spec])
    inner_model_paths(model)[1].write_bytes(b"retrained")
    assert models_digest([spec]) != before


def test_a_combiner_on_differently_measured_signals_is_warned_about(monkeypatch):
    from datafactory.factory.config import BuildConfig
    from datafactory.filters.quality_default import DEFAULT_MODEL
    from datafactory.pipelines import quality

    warnings = []  # captured at the logger: other tests may reconfigure logging's propagation
    monkeypatch.setattr(quality.log, "warning", lambda message, *args: warnings.append(message % args))
    spec = ScorerSpec(model=str(DEFAULT_MODEL), kind="combiner")
    default = BuildConfig(inputs=[{"path": "x.jsonl", "source": "web"}])
    quality.warn_if_signals_differ(default, [spec])
    assert not warnings
    quality.warn_if_signals_differ(default.model_copy(update={"heuristics": default.heuristics.model_copy(
        update={"rule_sets": ["c4"]})}), [spec])
    assert "non-default heuristics settings" in warnings[0]
