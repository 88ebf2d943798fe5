"""The same Beam pipelines on Beam's DaskRunner, against a dask.distributed scheduler and two worker processes on
127.0.0.1, give the bytes the in-process runner gives, every stage included."""

from __future__ import annotations

import json

import pytest
import yaml

from datafactory.factory.config import load_config

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


@pytest.fixture(scope="module")
def scheduler() -> str:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None)
    try:
        workers = cluster.scheduler_info["workers"]
        assert len(workers) == 2 and all(address.startswith("tcp://127.0.0.1:") for address in workers)
        yield cluster.scheduler_address
    finally:
        cluster.close()


def dask_config(small_corpus, scheduler: str):
    config = yaml.safe_load((small_corpus / "test.yaml").read_text())
    # One dask partition per element of each Create (the input files): without it every stage reads in one task.
    config["runner"] = {"runner": DASK_RUNNER, "options": {"dask_client_address": scheduler, "dask_partition_size": 1}}
    path = small_corpus / "dask.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(path)


def test_build_on_dask_gives_the_in_process_bytes(small_corpus, scheduler, reference_build, digest, plan_build,
                                                  tmp_path):
    from datafactory.pipelines.registry import STAGES

    on_dask = dask_config(small_corpus, scheduler)
    out = tmp_path / "build"
    for stage in STAGES:
        stage.execute(on_dask, out)
    dropped = json.loads((out / "stages" / "dedup" / "_SUCCESS.json").read_text())["counts"]["dropped"]
    assert dropped.get("exact_duplicate") and dropped.get("near_duplicate")  # the planted duplicates, found on Dask
    plan_build(out)
    assert digest(out) == digest(reference_build)


def test_substring_dedup_on_dask_finds_the_in_process_spans(scheduler, tmp_path):
    """The repeated-span step's three shuffles (fingerprints, windows, claims) on the DaskRunner."""
    import pyarrow.parquet as pq
    from support.builds import run_dedup, write_stage_output
    from support.planted_spans import planted_rows

    from datafactory.factory.config import parse_config
    from datafactory.pipelines.registry import run_stage_named

    rows, _ = planted_rows()
    for name in ("local", "dask"):
        write_stage_output("heuristics", tmp_path / name, rows)
    local = run_dedup(tmp_path / "local", substrings={"enabled": True})
    runner = {"runner": DASK_RUNNER, "options": {"dask_client_address": scheduler, "dask_partition_size": 1},
              "direct_running_mode": "in_memory"}  # settled: the rows are written here, not read from inputs
    run_stage_named("dedup", parse_config({"inputs": [{"path": "unused", "source": "demo"}], "runner": runner,
                                           "substrings": {"enabled": True}}), tmp_path / "dask")
    on_dask = {row["doc_id"]: row for row in pq.read_table(tmp_path / "dask" / "stages" / "dedup").to_pylist()}
    assert on_dask == local

    def spans(name: str) -> list[dict]:
        table = pq.read_table(tmp_path / name / "stages" / "dedup" / "_substrings").to_pylist()
        return sorted(table, key=lambda span: (span["doc_id"], span["start"]))

    assert spans("dask") == spans("local") and len(spans("local")) > 10
