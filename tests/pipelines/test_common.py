"""Shared pipeline helpers: the k-way merge of sorted runs stays one ordered stream however many runs there are."""

from __future__ import annotations

import random

import pyarrow as pa

from datafactory.pipelines import common
from datafactory.pipelines.common import merge_runs, write_run

SCHEMA = pa.schema([("key", pa.int64()), ("text", pa.string())])


def test_many_runs_merge_in_levels_into_one_ordered_stream(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "MERGE_FAN_IN", 3)
    monkeypatch.setattr(common, "RUN_ROWS", 4)
    rng = random.Random(0)
    rows = [{"key": rng.randrange(1000), "text": f"row {i}"} for i in range(200)]
    runs = [write_run(rows[start:start + 20], lambda row: row["key"], SCHEMA, tmp_path / f"run-{start:03d}.arrow")
            for start in range(0, len(rows), 20)]  # 10 runs: two levels of merging at a fan-in of 3
    merged = list(merge_runs(runs, lambda row: row["key"], ["key"]))
    assert [row["key"] for row in merged] == sorted(row["key"] for row in rows)
    assert sorted(row["text"] for row in merged) == sorted(row["text"] for row in rows)
    assert len(list(tmp_path.glob("*.merged-1-*.arrow"))) == 2  # 10 -> 4 -> 2 -> the final merge


def test_kept_text_sizes_the_text_column_behind_nested_columns(tmp_path):
    """The text a finished stage kept, from Parquet metadata: the text column is found by its leaf path (a map column
    before it is two leaves), and scaled by the share the marker says was kept."""
    import pyarrow.parquet as pq

    from datafactory.factory.markers import write_marker

    stage_dir = tmp_path / "stages" / "dedup"
    stage_dir.mkdir(parents=True)
    texts = [f"document {number} " * (number + 1) for number in range(40)]
    table = pa.table({
        "doc_id": [str(number) for number in range(40)],
        "signals": pa.array([[("a", 1.0), ("b", 2.0)]] * 40, pa.map_(pa.string(), pa.float64())),
        "text": texts,
        "keep": [number % 4 == 0 for number in range(40)],
    })
    part = stage_dir / "part-00000-of-00001.parquet"
    pq.write_table(table, part, compression="zstd", use_dictionary=False)
    write_marker(tmp_path, stage_dir, "dedup", "test", "test", {"documents": 40, "kept": 10}, [part])
    kept = common.kept_text(common.StagePaths(tmp_path, "dedup"))
    total = sum(len(text.encode()) for text in texts)
    assert (kept.kept, kept.holder_rows) == (10, 40)
    assert total <= kept.holder_text_bytes <= total + 8 * 40
    assert kept.text_bytes == kept.holder_text_bytes * 10 // 40
