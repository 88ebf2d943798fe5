"""The DCLM recipe inside a build: `quality.reference.sources` trains the build's own classifier (those sources'
documents against a seeded sample of the rest), records it like `factory quality train`, and scores with it."""

import json

import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score
from support.builds import IN_MEMORY, copy_build, write_config

from datafactory.factory.config import ConfigError, load_config, parse_config
from datafactory.filters.quality_train import sidecar_path
from datafactory.pipelines.quality import reference_model_path
from datafactory.pipelines.registry import run_stage_named

REFERENCE = {"sources": ["news"], "negatives_per_positive": 1.0, "heldout_fraction": 0.2}


def test_a_build_trains_and_scores_with_its_reference_classifier(small_corpus, reference_build, tmp_path):
    out = copy_build(reference_build, tmp_path / "build")
    config = load_config(write_config(small_corpus, "reference.yaml", IN_MEMORY, quality={"reference": REFERENCE}))
    result = run_stage_named("quality", config, out)

    assert not result.skipped and result.counts["scored_by"] == ["reference"]
    trained = result.counts["reference"]
    assert trained["positives"] > 20 and trained["negatives"] > 20
    assert 0.5 < trained["heldout"]["roc_auc"] <= 1.0
    model = reference_model_path(out)
    sidecar = json.loads(sidecar_path(model).read_text())
    assert model.is_file() and sidecar["kind"] == "fasttext" and sidecar["heldout"] == trained["heldout"]

    columns = ["source", "quality_score", "quality_scores"]
    rows = [row for part in sorted((out / "stages" / "quality").glob("part-*.parquet"))
            for row in pq.read_table(part, columns=columns).to_pylist()]
    assert all(dict(row["quality_scores"]).keys() == {"reference"} for row in rows)
    # it learned what the named source looks like from ~40 of its documents: they rank above the others (chance: 0.5)
    assert roc_auc_score([row["source"] == "news" for row in rows], [row["quality_score"] for row in rows]) > 0.65

    again = run_stage_named("quality", config, out)
    assert again.skipped  # same upstream, same settings: nothing to retrain


def test_reference_sources_must_be_input_sources() -> None:
    with pytest.raises(ConfigError, match=r"quality.reference.sources names \['wiki'\]"):
        parse_config({"inputs": [{"path": "docs.jsonl", "source": "web"}],
                      "quality": {"reference": {"sources": ["wiki"]}}})
