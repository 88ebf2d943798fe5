"""A document keeps its partition and its place from ingest on: ingest's sorted runs merge into the same parts
whatever their size, and later stages find every document's text in the part of the same name."""

import json
from pathlib import Path

import pyarrow.parquet as pq

from datafactory.factory.config import parse_config
from datafactory.pipelines import ingest
from datafactory.pipelines.common import iter_kept_batches, partition_of
from datafactory.pipelines.registry import run_stage_named


def write_inputs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("a", "b", "c"):
        with open(folder / f"{name}.jsonl", "w") as out:
            for number in range(200):
                record = {"id": f"doc-{number % 150}", "text": f"{name} {number} " + "words in a line " * 20}
                out.write(json.dumps(record) + "\n")


def build(folder: Path, out: Path, stages: tuple[str, ...]) -> None:
    config = parse_config({"inputs": [{"path": "*.jsonl", "source": "web"}],
                           "runner": {"direct_running_mode": "in_memory"}, "langid": {"min_score": 0.0}},
                          base_dir=str(folder))
    for name in stages:
        run_stage_named(name, config, out)


def part_bytes(out: Path, stage: str) -> list[bytes]:
    return [part.read_bytes() for part in sorted((out / "stages" / stage).glob("part-*.parquet"))]


def test_small_spill_runs_merge_into_the_same_parts(tmp_path, monkeypatch):
    write_inputs(tmp_path / "in")
    build(tmp_path / "in", tmp_path / "whole", ("ingest",))
    monkeypatch.setattr(ingest, "SPILL_TEXT_BYTES", 2_000)  # dozens of runs per file and partition
    build(tmp_path / "in", tmp_path / "spilled", ("ingest",))
    assert part_bytes(tmp_path / "whole", "ingest") == part_bytes(tmp_path / "spilled", "ingest")
    assert not (tmp_path / "spilled" / "stages" / "ingest" / "_runs").exists()


def test_renamed_repeated_ids_keep_their_partition_and_text(tmp_path):
    write_inputs(tmp_path / "in")
    out = tmp_path / "build"
    build(tmp_path / "in", out, ("ingest", "langid"))
    ingested = {row["doc_id"]: row["text"] for row in pq.read_table(out / "stages" / "ingest").to_pylist()}
    assert len(ingested) == 600 and sum("~" in doc_id for doc_id in ingested) == 450
    parts = sorted((out / "stages" / "langid").glob("part-*.parquet"))
    seen = 0
    for index, part in enumerate(parts):
        for batch in iter_kept_batches(part, 64):
            for row in batch:
                assert partition_of(row["doc_id"], len(parts)) == index
                assert row["text"] == ingested[row["doc_id"]]
                seen += 1
    assert seen == 600
