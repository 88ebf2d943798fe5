"""The text is written once: ingest stores it, later stages store what they add and name where the text is; a stage
that rewrites the text (heuristics with c4_remove_lines), or reads a small share of the documents whose text its
source holds, stores it again and becomes the source after it."""

from __future__ import annotations

import pyarrow.parquet as pq
import yaml
from support.builds import IN_MEMORY, copy_build, run_all_stages, write_config

from datafactory.factory.config import load_config
from datafactory.factory.markers import read_marker
from datafactory.pipelines.common import COMPACT_BELOW, kept_rows, text_source
from datafactory.pipelines.registry import run_stage_named
from datafactory.pipelines.registry import stage as registry_stage


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


def test_a_stage_reading_a_small_share_of_its_source_stores_their_text(small_corpus, reference_build, tmp_path):
    """Language ID keeps German only. Heuristics, the last stage of language ID's pass (run here after ingest), keeps
    a small share of ingest's documents and stores their text (the dropped ones' is null), so the stages after the
    pass read a fraction of the corpus, not every document's text again; language ID and signals store none."""
    out = copy_build(reference_build, tmp_path / "build")
    config = load_config(write_config(small_corpus, "german.yaml", IN_MEMORY, langid={"allow": ["de"]}))
    for name in ("langid", "signals", "heuristics", "dedup", "decontaminate", "quality"):
        run_stage_named(name, config, out)
    kept = {name: read_marker(out / "stages" / name)["counts"]["kept"] for name in ("ingest", "heuristics")}
    assert 0 < kept["heuristics"] < COMPACT_BELOW * kept["ingest"]
    for name in ("langid", "signals"):
        assert text_source(part(out, name)) == "ingest", name
    stored = pq.read_table(part(out, "heuristics"), columns=["keep", "text"]).to_pylist()
    assert any(not row["keep"] for row in stored)
    assert all((row["text"] is not None) == row["keep"] for row in stored)
    assert text_source(part(out, "dedup")) == text_source(part(out, "quality")) == "heuristics"
    assert_texts_are_ingests(out, "quality")


def test_a_stage_running_alone_on_a_small_share_stores_their_text(small_corpus, reference_build, tmp_path):
    """Resumed after language ID (German only) finished, signals heads a pass (with heuristics): it reads a small
    share of the documents whose text ingest holds, so it stores theirs, and the stages after it read them there."""
    out = copy_build(reference_build, tmp_path / "build")
    config = load_config(write_config(small_corpus, "german.yaml", IN_MEMORY, langid={"allow": ["de"]}))
    run_stage_named("langid", config, out)
    (out / "stages" / "signals" / "_SUCCESS.json").unlink()
    rerun = run_stage_named("signals", config, out)  # heuristics runs in its pass
    assert not rerun.skipped and [fused.stage for fused in rerun.fused] == ["heuristics"]
    assert "text" not in pq.read_schema(part(out, "langid")).names
    assert "text" in pq.read_schema(part(out, "signals")).names
    assert text_source(part(out, "heuristics")) == "signals"
    assert_texts_are_ingests(out, "heuristics")


def assert_texts_are_ingests(out, stage):
    ingest = {row["doc_id"]: row["text"] for row in kept_rows(str(part(out, "ingest"))).to_pylist()}
    kept = kept_rows(str(part(out, stage))).to_pylist()
    assert kept and all(row["text"] == ingest[row["doc_id"]] for row in kept)


def test_the_thresholds_are_applied_without_reading_the_text(small_corpus, reference_build, tmp_path, monkeypatch):
    """heuristics judges the stored signals: a rerun reads no text (and is a light stage: in process under "auto")."""
    out = copy_build(reference_build, tmp_path / "build")
    (out / "stages" / "heuristics" / "_SUCCESS.json").unlink()

    def no_text(*args, **kwargs):
        raise AssertionError("heuristics read the text")

    monkeypatch.setattr("datafactory.pipelines.common.TextCursor", no_text)
    config = load_config(small_corpus / "test.yaml")
    assert registry_stage("heuristics").text_bytes(config, out) == 0
    run_stage_named("heuristics", config, out)
    for built in sorted((reference_build / "stages" / "heuristics").glob("part-*.parquet")):
        assert (out / "stages" / "heuristics" / built.name).read_bytes() == built.read_bytes()
