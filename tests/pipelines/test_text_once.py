"""The text is written once: ingest stores it, later stages store what they add and name where the text is; a stage
that rewrites the text (heuristics with c4_remove_lines) stores it again and becomes the source after it."""

from __future__ import annotations

import pyarrow.parquet as pq
import yaml
from support.builds import copy_build, run_all_stages

from datafactory.pipelines.common import kept_rows, text_source


def part(build, stage):
    return sorted((build / "stages" / stage).glob("part-*.parquet"))[0]


def test_only_ingest_stores_the_text(reference_build):
    assert "text" in pq.read_schema(part(reference_build, "ingest")).names
    for stage in ("langid", "signals", "heuristics", "dedup", "decontaminate", "quality"):
        assert "text" not in pq.read_schema(part(reference_build, stage)).names, stage
        assert text_source(part(reference_build, stage)) == "ingest"
    rows = kept_rows(str(part(reference_build, "quality")))
    assert rows.num_rows and all(text for text in rows["text"].to_pylist())  # readers join it back by doc_id


def test_a_stage_that_rewrites_the_text_becomes_its_source(small_corpus, reference_build, tmp_path):
    out = copy_build(reference_build, tmp_path / "build")
    config = yaml.safe_load((small_corpus / "test.yaml").read_text()) | {"heuristics": {"c4_remove_lines": True}}
    path = small_corpus / "c4_lines.yaml"
    path.write_text(yaml.safe_dump(config))
    run_all_stages(path, out)
    assert "text" in pq.read_schema(part(out, "heuristics")).names
    assert text_source(part(out, "dedup")) == text_source(part(out, "quality")) == "heuristics"
    ingest = {row["doc_id"]: row["text"] for row in kept_rows(str(part(out, "ingest"))).to_pylist()}
    cleaned = {row["doc_id"]: row["text"] for row in kept_rows(str(part(out, "quality"))).to_pylist()}
    assert any(cleaned[doc_id] != ingest[doc_id] for doc_id in cleaned)  # C4's cleaned text reached quality
