"""A blend: a fastText classifier of the user's labels scored beside the built-in default model, logits averaged."""

import json

import pytest
from support.quality_examples import synthetic_examples

from datafactory.filters.quality_blend import CLIP, BlendedScorer, blend
from datafactory.filters.quality_train import (
    companion_paths,
    default_model,
    load_scorer,
    sidecar_path,
    train_quality_model,
)


def test_blend_averages_logits_and_clips_saturated_scores():
    assert blend([0.5, 0.9, 0.2], [0.5, 0.1, 0.2]) == pytest.approx([0.5, 0.5, 0.2])
    assert blend([0.8], [0.6])[0] == pytest.approx(blend([0.6], [0.8])[0])
    assert blend([1.0], [0.0]) == pytest.approx([0.5])  # certainty is clipped to 1 - CLIP: finite, and it cancels
    assert blend([1.0], [CLIP]) == pytest.approx([0.5])
    low, high = blend([1.0, 1.0], [0.01, 0.3])
    assert 0.5 < low < high < 1 - CLIP


def test_a_trained_blend_loads_with_the_default_model_it_was_trained_beside(tmp_path):
    model = tmp_path / "mine.bin"
    sidecar = train_quality_model(synthetic_examples(80), model, "blend")
    assert sidecar["kind"] == "blend" and sidecar["heldout"]["roc_auc"] > 0.9
    scorer = load_scorer(model)
    assert isinstance(scorer, BlendedScorer)
    good, spam = scorer.score(["Researchers spent two years studying medieval trade routes. The authors thanked "
                               "the volunteers who collected the data.",
                               "best casino bonus 100% free spins !!! register now BUY NOW!!! cheap pills $$$"])
    assert good > spam
    assert default_model() in companion_paths(model)  # a new default model reruns the quality stage


def test_a_blend_from_another_default_model_asks_for_retraining(tmp_path):
    model = tmp_path / "mine.bin"
    train_quality_model(synthetic_examples(80), model, "blend")
    sidecar = json.loads(sidecar_path(model).read_text())
    sidecar_path(model).write_text(json.dumps(sidecar | {"prior_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="retrain it with `factory quality train`"):
        load_scorer(model)


def test_a_build_naming_a_stale_blend_fails_before_it_starts(tmp_path):
    from datafactory.factory.config import BuildConfig, ConfigError
    from datafactory.pipelines.registry import preflight

    model = tmp_path / "mine.bin"
    train_quality_model(synthetic_examples(80), model, "blend")
    (tmp_path / "in.jsonl").write_text('{"text": "a"}\n')
    config = BuildConfig.model_validate({"inputs": [{"path": str(tmp_path / "in.jsonl"), "source": "web"}],
                                         "quality": {"scorers": [{"model": str(model)}]}})
    preflight(config)
    sidecar = json.loads(sidecar_path(model).read_text())
    sidecar_path(model).write_text(json.dumps(sidecar | {"prior_sha256": "0" * 64}))
    with pytest.raises(ConfigError, match=r"quality.scorers \(mine\): the blend .* retrain it"):
        preflight(config)
