"""The demo end to end through the build-corpus flow: ledger conservation, dedup, shards, manifests, training."""

import json
from pathlib import Path

import duckdb
import pytest
from support.builds import POLICIES, copy_build

from datafactory.factory.catalog import query
from datafactory.factory.manifest import check_manifest_files, load_manifest
from datafactory.factory.shards import read_index, read_shard, verify_shards


@pytest.fixture(scope="module")
def demo_build(reference_build) -> Path:
    """The session's build of the small demo corpus (tests/conftest.py), made by the build-corpus flow."""
    return reference_build


def ground_truth(corpus: Path) -> list[dict]:
    lines = (corpus / "ground_truth.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_every_input_document_has_exactly_one_terminal_ledger_row(demo_build, small_corpus):
    truth = ground_truth(small_corpus)
    (total, distinct), = query(demo_build, "SELECT count(*), count(DISTINCT doc_id) FROM ledger")[1]
    assert total == distinct == len(truth)
    statuses = dict(query(demo_build, "SELECT status, count(*) FROM ledger GROUP BY ALL")[1])
    assert set(statuses) <= {"kept", "dropped", "duplicate", "invalid"}
    assert sum(statuses.values()) == len(truth)
    assert statuses["kept"] > len(truth) * 0.3


def test_planted_exact_duplicates_are_removed(demo_build, small_corpus):
    status = {row[0]: row[1:] for row in query(demo_build, "SELECT doc_id, status, duplicate_of FROM ledger")[1]}
    groups: dict[str, set[str]] = {}
    for doc in ground_truth(small_corpus):
        if doc["kind"] == "exact_duplicate":
            groups.setdefault(doc["duplicate_of"], {doc["duplicate_of"]}).add(doc["id"])
    assert groups
    for members in groups.values():
        kept = [doc_id for doc_id in members if status[doc_id][0] == "kept"]
        assert len(kept) <= 1, members
        for doc_id in members:
            if status[doc_id][0] == "duplicate":
                assert status[doc_id][1] is not None


def test_spam_and_boilerplate_are_removed_or_bucketed_low(demo_build, small_corpus):
    status = dict(query(demo_build, "SELECT doc_id, status FROM ledger")[1])
    bucket = dict(query(demo_build, "SELECT doc_id, bucket FROM tokenize")[1])
    junk = [doc["id"] for doc in ground_truth(small_corpus) if doc["kind"] in {"spam", "boilerplate", "short"}]
    handled = sum(status[doc_id] != "kept" or bucket[doc_id] == "low" for doc_id in junk)
    assert handled / len(junk) > 0.9
    assert not any(bucket.get(doc_id) == "high" for doc_id in junk)


def test_shards_are_plain_arrow_and_match_the_index(demo_build):
    assert verify_shards(demo_build) == []
    entries = read_index(demo_build)
    assert entries and sum(entry["tokens"] for entry in entries) > 0
    import pyarrow as pa

    first = demo_build / entries[0]["path"]
    table = pa.ipc.open_file(pa.memory_map(str(first))).read_all()
    assert table.num_rows == entries[0]["rows"]
    shard = read_shard(first)
    assert shard.tokens.shape[1] == 65 and shard.metadata["tokenizer_sha256"]
    assert all(shard.starts(row)[0] == 0 for row in range(shard.rows))


def test_catalog_has_a_view_per_stage(demo_build):
    with duckdb.connect(str(demo_build / "catalog.duckdb"), read_only=True) as con:
        views = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert {"ledger", "shards", "langid", "heuristics", "dedup", "quality", "tokenize"} <= views
    langs = dict(query(demo_build, "SELECT lang, count(*) FROM langid GROUP BY ALL")[1])
    assert len(langs) >= 6


def test_rerun_skips_every_finished_stage(demo_build, small_corpus):
    from datafactory.flows.build import build_corpus

    results = build_corpus(str(small_corpus / "test.yaml"), str(demo_build))
    assert all(result.skipped for result in results)


@pytest.mark.parametrize("policy", ["default.yaml", "unimax.yaml"])
def test_demo_anneal_recipe_has_higher_mean_quality_than_stable(demo_build, policy, tmp_path):
    from datafactory.mixtures.check import check_manifest
    from datafactory.mixtures.planner import mean_quality, plan, read_plan
    from datafactory.mixtures.policy import load_policy

    build = copy_build(demo_build, tmp_path / "build")
    written = plan(build, load_policy(POLICIES / policy))
    assert check_manifest(written["stable"]) == [] and check_manifest(written["anneal"]) == []
    rows = read_plan(build)
    stable = mean_quality([row for row in rows if row["phase"] == "stable"])
    anneal = mean_quality([row for row in rows if row["phase"] == "anneal"])
    assert stable is not None and anneal > stable


def test_plan_and_train_from_the_build(demo_build, tmp_path):
    from datafactory.mixtures.planner import Policy, plan
    from datafactory.trainer.train import train

    build = copy_build(demo_build, tmp_path / "build")
    written = plan(build, Policy(total_tokens=30 * 4 * 64, anneal_fraction=0.2, warmup_fraction=0.05))
    for phase in ("stable", "anneal"):
        manifest, root = load_manifest(written[phase])
        assert manifest["phase"] == phase and check_manifest_files(manifest, root) == []
    anneal, _ = load_manifest(written["anneal"])
    assert all(source["name"].split(":")[1] in {"high", "mid"} for source in anneal["sources"])
    result = train(written["stable"], model="test", out_dir=build / "runs" / "t", batch_size=4, compile=False)
    assert result.last_loss < result.first_loss


def test_worker_logs_go_to_the_build_directory(demo_build):
    from datafactory.pipelines.registry import stage_names

    assert {path.stem for path in (demo_build / "logs").glob("*.log")} == set(stage_names())
