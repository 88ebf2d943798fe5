"""Training quality scorers: metrics, held-out split, labelled-data errors, the LM-ratio scorer, sidecars."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from support.quality_examples import synthetic_examples

from datafactory.filters.quality_train import (
    LabelledDataError,
    load_scorer,
    precision_at_top,
    read_labelled,
    read_sidecar,
    roc_auc,
    split_holdout,
    train_quality_model,
)


def test_roc_auc_counts_ties_half_and_matches_pairwise_definition() -> None:
    scores = np.array([0.9, 0.8, 0.8, 0.3, 0.1, 0.8])
    positive = np.array([True, True, False, False, False, True])
    pairs = [(p > n) + 0.5 * (p == n) for p in scores[positive] for n in scores[~positive]]
    assert roc_auc(scores, positive) == pytest.approx(sum(pairs) / len(pairs))
    assert roc_auc(np.array([1.0, 0.0]), np.array([True, False])) == 1.0
    assert np.isnan(roc_auc(np.array([0.5]), np.array([True])))


def test_precision_at_top_decile() -> None:
    scores = np.arange(20, dtype=float)
    positive = scores >= 19  # only the best document is positive
    assert precision_at_top(scores, positive) == 0.5  # top 2 of 20
    assert precision_at_top(scores, scores >= 18) == 1.0


def test_holdout_split_is_by_content_not_order() -> None:
    examples = synthetic_examples(200)
    train, heldout = split_holdout(examples, 0.2, seed=0)
    assert len(train) + len(heldout) == len(examples) and 0.1 < len(heldout) / len(examples) < 0.3
    again_train, again_heldout = split_holdout(list(reversed(examples)), 0.2, seed=0)
    assert sorted(heldout) == sorted(again_heldout)


def test_read_labelled_names_file_and_line(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl.gz"
    with gzip.open(good, "wt", encoding="utf-8") as out:
        out.write(json.dumps({"text": "a fine article", "label": "hq"}) + "\n\n")
        out.write(json.dumps({"text": "spam spam", "label": "lq"}) + "\n")
    assert list(read_labelled(good)) == [("a fine article", "hq"), ("spam spam", "lq")]
    assert [label for _, label in read_labelled(good, "lq")] == ["lq", "lq"]
    cases = {
        '{"text": "x", "label": "good"}': "label 'good'",
        '{"label": "hq"}': "no string field 'text'",
        "{broken": "malformed JSON",
    }
    for line, message in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps({"text": "ok", "label": "hq"}) + "\n" + line + "\n")
        with pytest.raises(LabelledDataError, match=rf"bad.jsonl:2: .*{message}"):
            list(read_labelled(bad))
    with pytest.raises(LabelledDataError, match="not found"):
        list(read_labelled(tmp_path / "missing.jsonl"))


@pytest.mark.parametrize("kind", ["fasttext", "lm_ratio"])
def test_trained_scorer_ranks_held_out_documents(kind: str, tmp_path: Path) -> None:
    examples = synthetic_examples(150)
    sidecar = train_quality_model(examples, tmp_path / "model", kind, heldout_fraction=0.2)
    assert read_sidecar(tmp_path / "model") == sidecar
    assert sidecar["kind"] == kind and sidecar["heldout"]["n"] + sidecar["train"]["n"] == len(examples)
    assert sidecar["heldout"]["roc_auc"] > 0.95
    scorer = load_scorer(tmp_path / "model")  # kind from the sidecar
    hq, lq = scorer.score(["Researchers published a detailed report on solar energy costs. The authors thanked "
                           "the volunteers who collected the data.",
                           "WIN a FREE iPhone!!! claim your prize now >>> click here cheap pills $$$"])
    assert hq > 0.5 > lq
    assert scorer.score([""]) == [0.0]


def test_lm_ratio_training_is_deterministic(tmp_path: Path) -> None:
    examples = synthetic_examples(60)
    first = train_quality_model(examples, tmp_path / "a" / "lm", "lm_ratio")
    second = train_quality_model(examples, tmp_path / "b" / "lm", "lm_ratio")
    assert first == second
    assert (tmp_path / "a" / "lm").read_bytes() == (tmp_path / "b" / "lm").read_bytes()


def test_load_scorer_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="quality model not found"):
        load_scorer(tmp_path / "nope.bin")
    (tmp_path / "m.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown quality scorer kind 'bert'"):
        load_scorer(tmp_path / "m.bin", "bert")
