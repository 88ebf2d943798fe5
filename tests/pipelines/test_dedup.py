"""Dedup stage on the demo corpus: planted duplicates found, survivors deterministic, ledger kept, lines removed."""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
import zstandard
from support.builds import run_dedup, write_stage_output

from datafactory.app.demo import read_ground_truth, write_demo_corpus
from datafactory.factory.catalog import build_catalog, query
from datafactory.factory.config import DedupConfig
from datafactory.factory.markers import read_marker
from datafactory.filters.dedup import exact_key, lsh_params
from datafactory.pipelines import dedup

UPSTREAM = "heuristics"


def demo_records(root: Path) -> list[dict]:
    """The demo inputs as upstream rows (every document kept), read without running the earlier stages."""
    records = []
    for path in sorted((root / "data").glob("web-*.jsonl.gz")):
        records += [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    news = zstandard.ZstdDecompressor().decompressobj().decompress((root / "data" / "news.jsonl.zst").read_bytes())
    records += [json.loads(line) for line in news.splitlines()]
    forum = pq.read_table(root / "data" / "zh_forum.parquet").to_pylist()
    records += [{**row, "text": row.pop("content")} for row in forum]
    return [
        {"doc_id": r["id"], "source": "demo", "input_file": "demo", "location": str(i), "url": r["url"],
         "date": r["date"], "meta": "{}", "text": r["text"], "keep": True, "reason": None, "detail": None}
        for i, r in enumerate(records)
    ]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("demo")
    corpus = write_demo_corpus(root / "input", n_docs=600, seed=3)
    write_stage_output(UPSTREAM, root / "upstream", demo_records(corpus.root))
    return root / "upstream", read_ground_truth(corpus.ground_truth)


def fresh_build(demo: tuple[Path, list[dict]], tmp_path: Path, name: str = "build") -> Path:
    build = tmp_path / name
    shutil.copytree(demo[0], build)
    return build


@pytest.fixture(scope="module")
def demo_result(demo, tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    build = fresh_build(demo, tmp_path_factory.mktemp("result"))
    return build, run_dedup(build, paragraphs={"enabled": True, "min_documents": 5})


def upstream_texts(demo: tuple[Path, list[dict]]) -> dict[str, str]:
    rows = pq.read_table(demo[0] / "stages" / UPSTREAM).to_pylist()
    return {row["doc_id"]: row["text"] for row in rows}


def clusters_of(rows: dict[str, dict]) -> dict[str, list[dict]]:
    clusters: dict[str, list[dict]] = {}
    for row in rows.values():
        if row["minhash_cluster"]:
            clusters.setdefault(row["minhash_cluster"], []).append(row)
    return clusters


def test_planted_duplicates_share_a_cluster_with_their_original(demo, demo_result):
    _, truth = demo
    _, rows = demo_result
    planted = [doc for doc in truth if doc["kind"] in ("exact_duplicate", "near_duplicate")]
    assert len(planted) > 50
    for doc in planted:
        copy, original = rows[doc["id"]], rows[doc["duplicate_of"]]
        assert copy["minhash_cluster"] is not None and copy["minhash_cluster"] == original["minhash_cluster"], doc


def test_one_survivor_per_cluster_the_longest(demo, demo_result):
    _, rows = demo_result
    texts = upstream_texts(demo)
    clusters = clusters_of(rows)
    assert len(clusters) > 40
    for survivor_id, members in clusters.items():
        survivor = rows[survivor_id]
        assert survivor["duplicate_of"] is None and survivor["cluster_size"] == len(members) >= 2
        assert all(len(texts[survivor_id]) >= len(texts[member["doc_id"]]) for member in members)
        for member in members:
            if member["doc_id"] != survivor_id:
                assert member["duplicate_of"] == survivor_id and not member["keep"]
                same = exact_key(texts[member["doc_id"]]) == exact_key(texts[survivor_id])
                assert member["reason"] == ("exact_duplicate" if same else "near_duplicate")


def test_ledger_has_one_terminal_row_per_removed_document(demo, demo_result):
    build, rows = demo_result
    assert sorted(rows) == sorted(doc["id"] for doc in demo[1])  # one stage row per upstream document
    ledger = pq.read_table(build / "ledger").to_pylist()
    assert sorted(row["doc_id"] for row in ledger) == sorted(doc_id for doc_id, row in rows.items() if not row["keep"])
    allowed = {("duplicate", "exact_duplicate"), ("duplicate", "near_duplicate"), ("dropped", "short_after_line_dedup")}
    assert {(row["status"], row["reason"]) for row in ledger} <= allowed
    for row in ledger:
        if row["status"] == "duplicate":
            assert rows[row["duplicate_of"]]["duplicate_of"] is None


def test_marker_records_lsh_parameters_and_rounds(demo_result):
    build, _ = demo_result
    counts = read_marker(build / "stages" / "dedup")["counts"]
    minhash = counts["minhash"]
    assert (minhash["bands"], minhash["rows"], minhash["num_perm"]) == (*lsh_params(DedupConfig()), 128)
    assert counts["components"]["rounds"] >= 2 and counts["components"]["edges"] > 0
    assert counts["documents"] == counts["kept"] + sum(counts["dropped"].values())
    assert counts["units_removed"] > 0


def test_repeated_lines_are_removed_from_survivors(demo, demo_result):
    _, rows = demo_result
    kinds = {doc["id"]: doc["kind"] for doc in demo[1]}
    texts = upstream_texts(demo)
    stripped = [row for row in rows.values() if row["units_removed"]]
    assert {kinds[row["doc_id"]] for row in stripped} >= {"clean_with_boilerplate", "boilerplate"}
    for row in stripped:
        assert len(row["text"]) < len(texts[row["doc_id"]]) and row["duplicate_of"] is None
    short = [row for row in rows.values() if row["reason"] == "short_after_line_dedup"]
    assert short and all(row["detail"] < 50 and not row["keep"] for row in short)


def test_survivors_same_across_runs_and_worker_counts(demo, demo_result, tmp_path):
    _, first = demo_result
    again = run_dedup(fresh_build(demo, tmp_path), workers=2, paragraphs={"enabled": True, "min_documents": 5})
    assert again == first


def test_key_range_passes_find_the_same_clusters(demo, demo_result, tmp_path):
    """A shuffle budget below the demo's keys splits them into key-range passes, one pipeline each: same output."""
    _, first = demo_result
    build = fresh_build(demo, tmp_path)
    again = run_dedup(build, shuffle_budget_mb=1, paragraphs={"enabled": True, "min_documents": 5})
    assert read_marker(build / "stages" / "dedup")["counts"]["key_passes"] > 1
    assert again == first


def test_key_ranges_split_the_keys_without_overlap():
    keys = [exact_key("word " * i) for i in range(1, 200)]
    keys += [f"{band}:{exact_key('w ' * band)[:16]}" for band in range(20)]
    owners = [[index for index in range(3) if dedup.in_pass(key, index, 3)] for key in keys]
    assert all(len(found) == 1 for found in owners)
    assert {found[0] for found in owners} == {0, 1, 2}


def test_every_key_range_spreads_over_all_shards():
    """Keys travel to the grouping in shards; a key range (in_pass) must not leave shards empty."""
    keys = [exact_key("word " * i) for i in range(1, 400)]
    for index in range(2):
        assert {dedup.shard_of(key) for key in keys if dedup.in_pass(key, index, 2)} == set(range(dedup.KEY_SHARDS))


def test_earliest_date_survives_with_exact_dedup_alone(demo, tmp_path):
    settings = {"survivor": "earliest_date", "minhash": False, "paragraphs": {"enabled": False}}
    rows = run_dedup(fresh_build(demo, tmp_path), **settings)
    clusters = clusters_of(rows)
    assert clusters and not any(row["units_removed"] for row in rows.values())
    for survivor_id, members in clusters.items():
        assert all(rows[survivor_id]["date"] <= member["date"] for member in members)
        assert all(member["reason"] == "exact_duplicate" for member in members if member["doc_id"] != survivor_id)


def random_word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6))  # no digits: exact keys ignore them


def distinct_rows(count: int = 40) -> list[dict]:
    rng = random.Random(5)
    return [
        {"doc_id": f"doc-{i:03d}", "source": "t", "input_file": "t", "location": str(i), "url": None, "date": None,
         "meta": "{}", "text": " ".join(random_word(rng) for _ in range(80)), "keep": True, "reason": None,
         "detail": None}
        for i in range(count)
    ]


def test_deep_clusters_take_more_pipelines(tmp_path, monkeypatch):
    """A path through every document (ids shuffled along it) needs several rounds, so several pipelines."""
    rows = distinct_rows()
    write_stage_output(UPSTREAM, tmp_path, rows)
    config = DedupConfig(survivor="oldest_id", paragraphs={"enabled": False})
    nodes = [dedup.make_node(row, config) for row in rows]
    random.Random(1).shuffle(nodes)
    path = [(max(a, b), min(a, b)) for a, b in zip(nodes, nodes[1:], strict=False)]
    monkeypatch.setattr(dedup, "graph_edges", lambda keys, *_: keys.pipeline | beam.Create(path))
    monkeypatch.setattr(dedup, "ROUNDS_PER_PIPELINE", 1)
    result = run_dedup(tmp_path, **config.model_dump(include={"survivor", "paragraphs"}))
    assert {row["minhash_cluster"] for row in result.values()} == {"doc-000"}
    assert [doc_id for doc_id, row in result.items() if row["keep"]] == ["doc-000"]
    assert read_marker(tmp_path / "stages" / "dedup")["counts"]["components"]["rounds"] > 2


def test_catalog_has_a_cluster_size_histogram(demo_result):
    build, rows = demo_result
    build_catalog(build)
    _, histogram = query(build, "SELECT cluster_size, clusters, documents FROM dedup_clusters")
    assert sum(documents for _, _, documents in histogram) == len(rows)
    sizes = {size: clusters for size, clusters, _ in histogram}
    assert sum(clusters for size, clusters in sizes.items() if size > 1) == len(clusters_of(rows))


@pytest.mark.parametrize(
    "settings, removed",
    [
        ({"exact": False, "minhash": False}, []),
        ({"verify": False}, [("doc-000", "exact_duplicate", "copy-0"), ("doc-001", "near_duplicate", "copy-1")]),
        ({"exact": False}, [("doc-000", "near_duplicate", "copy-0"), ("doc-001", "near_duplicate", "copy-1")]),
    ],
)
def test_switches(tmp_path, settings, removed):
    rows = distinct_rows(30)
    rows += [dict(rows[0], doc_id="copy-0"), dict(rows[1], doc_id="copy-1", text=rows[1]["text"] + " more words")]
    write_stage_output(UPSTREAM, tmp_path, rows)
    result = run_dedup(tmp_path, **settings)
    assert sorted((k, v["reason"], v["duplicate_of"]) for k, v in result.items() if not v["keep"]) == removed
