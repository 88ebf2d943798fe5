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
    runs = [write_run(rows[start:start + 20], lambda row: row["key"], SCHEMA, tmp_path / f"run-{start:03d}.parquet")
            for start in range(0, len(rows), 20)]  # 10 runs: two levels of merging at a fan-in of 3
    merged = list(merge_runs(runs, lambda row: row["key"]))
    assert [row["key"] for row in merged] == sorted(row["key"] for row in rows)
    assert sorted(row["text"] for row in merged) == sorted(row["text"] for row in rows)
    assert len(list(tmp_path.glob("*.merged-1-*.parquet"))) == 2  # 10 -> 4 -> 2 -> the final merge
