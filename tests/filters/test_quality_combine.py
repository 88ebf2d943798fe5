"""The combiner: heuristic signals and inner scorers in one logistic regression, and the built-in default model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.quality_examples import SPAM, synthetic_examples

from datafactory.filters.quality_combine import INNER_KINDS, Combination, CombinedScorer, inner_model_paths
from datafactory.filters.quality_default import DEFAULT_MODEL, MODEL_DIR
from datafactory.filters.quality_train import companion_paths, load_scorer, read_sidecar, train_quality_model

GOOD = ("Researchers spent two years studying medieval trade routes. The findings were discussed at a public "
        "meeting in the spring. The authors thanked the volunteers who collected the data.")


def test_combination_standardises_squashes_and_ignores_missing_features() -> None:
    combination = Combination(features=["a", "b"], mean=[0.0, 0.0], scale=[1.0, 1.0], coef=[2.0, -1.0], intercept=0.5)
    with_both, without_b = combination.scores([{"a": np.e - 1, "b": 0.0}, {"a": np.e - 1}])
    assert with_both == pytest.approx(1 / (1 + np.exp(-2.5)))  # log1p(e - 1) = 1
    assert without_b == pytest.approx(with_both)  # a missing feature sits at its training mean: no contribution


@pytest.fixture(scope="module")
def combiner(tmp_path_factory):
    out = tmp_path_factory.mktemp("combiner") / "not-yet" / "q.combiner"  # its folder is made, as a build's models/
    sidecar = train_quality_model(synthetic_examples(60), out, "combiner")
    return out, sidecar


def test_trained_combiner_weighs_signals_and_inner_scores(combiner) -> None:
    out, sidecar = combiner
    assert sidecar["kind"] == "combiner" and read_sidecar(out)["kind"] == "combiner"
    assert set(INNER_KINDS) <= set(sidecar["weights"]) and "stop_words" in sidecar["weights"]
    assert all(path.is_file() for path in inner_model_paths(out))
    assert set(inner_model_paths(out)) <= set(companion_paths(out))
    good, spam = load_scorer(out).score([GOOD, SPAM[0]])
    assert good > 0.5 > spam
    assert load_scorer(out).score([]) == []


def test_infinite_or_missing_signals_score_like_unknown_ones() -> None:
    combination = Combination(features=["a", "b"], mean=[0.0, 0.0], scale=[1.0, 1.0], coef=[2.0, -2.0], intercept=0.0)
    assert combination.scores([{"a": float("inf"), "b": float("-inf")}, {}]).tolist() == [0.5, 0.5]


def test_stored_signals_are_what_the_combiner_reads(combiner) -> None:
    scorer = load_scorer(combiner[0])
    assert isinstance(scorer, CombinedScorer)
    measured, inner = scorer.score_with_signals([GOOD], [{"stop_words": 12.0, "n_words": 40.0}])
    starved, _ = scorer.score_with_signals([GOOD], [{"stop_words": 0.0, "n_words": 1.0}])
    assert set(inner) == set(INNER_KINDS) and measured[0] != starved[0]


def test_default_model_ships_with_its_card() -> None:
    card = (MODEL_DIR / "MODEL_CARD.md").read_text(encoding="utf-8")
    sidecar = json.loads((MODEL_DIR / f"{DEFAULT_MODEL.name}.json").read_text(encoding="utf-8"))
    assert sidecar["kind"] == "combiner" and sidecar["heldout_survivors"]["roc_auc"] > 0.79
    assert "dclm-human-annotation" not in card.split("## Training data")[1].split("Left out")[0]
    assert all(path.is_file() for path in inner_model_paths(DEFAULT_MODEL))
