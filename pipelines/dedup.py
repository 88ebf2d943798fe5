"""Dedup stage: exact (normalised-text hash) then MinHash LSH clusters; one survivor per cluster.

Bound: connected components are computed by one union-find combiner, which holds every candidate edge
between exact-survivors in memory (~100 bytes per edge); documents themselves are joined by key, not held.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

from factory.config import BuildConfig, DedupConfig
from factory.records import DUPLICATE, stage_schema
from filters.dedup import MinHasher, band_keys, exact_key, lsh_params
from pipelines.common import (
    StagePaths,
    StageResult,
    WriteStage,
    decision_counts,
    fill_empty_partitions,
    read_kept,
    run_beam,
    run_stage,
)

STAGE = "dedup"
FIELDS = [
    pa.field("exact_key", pa.string()),
    pa.field("minhash_cluster", pa.string()),
    pa.field("cluster_size", pa.int32()),
    pa.field("duplicate_of", pa.string()),
]
Member = tuple[str, int]  # (doc_id, text length)


def survivor_order(config: DedupConfig):
    """Sort key whose first member is the survivor: longest text (ties: smallest id) or smallest id."""
    if config.survivor == "longest":
        return lambda member: (-member[1], member[0])
    return lambda member: member[0]


class DedupKeys(beam.DoFn):
    """Exact key and LSH band keys for a batch of documents (MinHash signatures computed on the batch)."""

    def __init__(self, config: DedupConfig) -> None:
        self.config = config
        self.hasher: MinHasher | None = None

    def setup(self) -> None:
        self.hasher = MinHasher(self.config)
        self.bands, self.rows = lsh_params(self.config)

    def process(self, batch: list[dict]) -> Iterable[dict]:
        texts = [row["text"] for row in batch]
        signatures = self.hasher.signatures(texts) if self.config.minhash else [None] * len(batch)
        for row, signature in zip(batch, signatures, strict=True):
            bands = [] if signature is None else band_keys(signature, self.bands, self.rows)
            exact = exact_key(row["text"]) if self.config.exact else row["doc_id"]
            yield {"doc_id": row["doc_id"], "length": len(row["text"]), "exact": exact, "bands": bands}


def split_exact_group(element: tuple[str, Iterable[dict]], config: DedupConfig) -> Iterable:
    """The survivor goes on to MinHash; every other member is an exact duplicate of it."""
    _, keys = element
    members = sorted(keys, key=lambda key: survivor_order(config)((key["doc_id"], key["length"])))
    survivor = members[0]
    yield survivor
    if len(members) > 1:
        size = len(members)
        info = {"minhash_cluster": survivor["doc_id"], "cluster_size": size, "duplicate_of": None}
        yield beam.pvalue.TaggedOutput("info", (survivor["doc_id"], info))
    for member in members[1:]:
        info = {
            "minhash_cluster": survivor["doc_id"], "cluster_size": len(members),
            "duplicate_of": survivor["doc_id"], "reason": "exact_duplicate",
        }
        yield beam.pvalue.TaggedOutput("info", (member["doc_id"], info))


def bucket_edges(element: tuple[str, Iterable[Member]]) -> Iterable[tuple[Member, Member]]:
    """A star over each LSH bucket: enough edges to connect its members, not all pairs."""
    _, members = element
    ordered = sorted(set(members))
    for other in ordered[1:]:
        yield ordered[0], other


class ConnectedComponents(beam.CombineFn):
    """Union-find over candidate edges; emits each component with more than one member."""

    def create_accumulator(self) -> tuple[dict[str, str], dict[str, int]]:
        return {}, {}

    @staticmethod
    def _find(parent: dict[str, str], node: str) -> str:
        root = node
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[node] != root:
            parent[node], node = root, parent[node]
        return root

    def _union(self, acc, a: Member, b: Member):
        parent, lengths = acc
        lengths[a[0]], lengths[b[0]] = a[1], b[1]
        root_a, root_b = self._find(parent, a[0]), self._find(parent, b[0])
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
        return acc

    def add_input(self, acc, edge: tuple[Member, Member]):
        return self._union(acc, *edge)

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for parent, lengths in accumulators:
            for node in list(parent):
                root = self._find(parent, node)
                self._union(merged, (node, lengths[node]), (root, lengths[root]))
        return merged

    def extract_output(self, acc) -> list[list[Member]]:
        parent, lengths = acc
        components: dict[str, list[Member]] = {}
        for node in parent:
            components.setdefault(self._find(parent, node), []).append((node, lengths[node]))
        return [sorted(members) for members in components.values() if len(members) > 1]


def near_duplicate_info(component: list[Member], config: DedupConfig) -> Iterable[tuple[str, dict]]:
    members = sorted(component, key=survivor_order(config))
    survivor = members[0][0]
    for doc_id, _ in members:
        info = {"minhash_cluster": survivor, "cluster_size": len(members), "duplicate_of": None}
        if doc_id != survivor:
            info |= {"duplicate_of": survivor, "reason": "near_duplicate"}
        yield doc_id, info


def merge_info(infos: Iterable[dict]) -> dict:
    """A document can be an exact-group survivor and a MinHash member; the MinHash cluster wins."""
    merged: dict = {}
    for info in sorted(infos, key=lambda info: info["cluster_size"]):
        if info.get("duplicate_of") or not merged.get("duplicate_of"):
            merged |= info
    return merged


def apply_info(element: tuple[str, dict]) -> Iterable[dict]:
    _, grouped = element
    info = merge_info(grouped["info"])
    for row in grouped["doc"]:
        duplicate_of = info.get("duplicate_of")
        row.update(
            minhash_cluster=info.get("minhash_cluster"),
            cluster_size=info.get("cluster_size", 1),
            duplicate_of=duplicate_of,
            keep=duplicate_of is None,
            reason=info.get("reason") if duplicate_of else None,
        )
        yield row


def run(config: BuildConfig, build_dir: Path) -> StageResult:
    paths, previous = StagePaths(build_dir, STAGE), StagePaths(build_dir, "heuristics")
    schema = stage_schema(pq.read_schema(previous.parts()[0]), FIELDS)
    dedup, total = config.dedup, config.num_partitions

    def build(pipeline: beam.Pipeline) -> None:
        docs = read_kept(pipeline, previous)
        keys = (
            docs
            | "Batch" >> beam.BatchElements(min_batch_size=256, max_batch_size=256)
            | "Keys" >> beam.ParDo(DedupKeys(dedup))
        )
        exact = (
            keys
            | "ByExactKey" >> beam.Map(lambda key: (key["exact"], key))
            | "GroupExact" >> beam.GroupByKey()
            | "SplitExact" >> beam.FlatMap(split_exact_group, dedup).with_outputs("info", main="survivors")
        )
        near = (
            exact.survivors
            | "BandKeys" >> beam.FlatMap(lambda key: [(b, (key["doc_id"], key["length"])) for b in key["bands"]])
            | "GroupBands" >> beam.GroupByKey()
            | "Edges" >> beam.FlatMap(bucket_edges)
            | "Components" >> beam.CombineGlobally(ConnectedComponents())
            | "EachComponent" >> beam.FlatMap(lambda components: components)
            | "NearInfo" >> beam.FlatMap(near_duplicate_info, dedup)
        )
        info = (exact.info, near) | "AllInfo" >> beam.Flatten()
        (
            {"doc": docs | "ById" >> beam.Map(lambda row: (row["doc_id"], row)), "info": info}
            | "Join" >> beam.CoGroupByKey()
            | "Apply" >> beam.FlatMap(apply_info)
            | "Write" >> WriteStage(paths, schema, total, DUPLICATE)
        )

    def body() -> dict:
        run_beam(config, build)
        fill_empty_partitions(paths, schema, total)
        return decision_counts(paths)

    return run_stage(config, paths, previous, None, body)
