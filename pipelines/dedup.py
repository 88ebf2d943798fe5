"""Dedup stage: exact + MinHash LSH duplicates joined into clusters (one survivor each), then repeated lines removed.

Grouping is Beam GroupByKeys only; clusters come from large-star / small-star rounds (Kiveris et al. 2014).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable

import apache_beam as beam
import duckdb
import numpy as np
import pyarrow as pa

from datafactory.factory.config import DedupConfig, ParagraphDedupConfig
from datafactory.factory.records import DROPPED, DUPLICATE
from datafactory.filters.dedup import (
    SCHEME,
    MinHasher,
    band_keys,
    exact_key,
    jaccard,
    lsh_params,
    strip_repeated_units,
    unit_keys,
)
from datafactory.pipelines.common import (
    StagePaths,
    StageResult,
    StageRun,
    added_names,
    decision_counts,
    fill_empty_partitions,
    iter_kept_batches,
    only,
    output_schema,
    part_name,
    partition_of,
    read_kept_batches,
    run_beam,
    run_stage,
    write_part,
)
from datafactory.pipelines.components import (
    ROUNDS_PER_PIPELINE,
    Edge,
    StarRounds,
    WriteEdges,
    count_edges,
    read_edges,
    star,
    violations,
)

FIELDS = [
    pa.field("minhash_cluster", pa.string()),  # the cluster's survivor; null for documents without duplicates
    pa.field("cluster_size", pa.int32()),
    pa.field("duplicate_of", pa.string()),
    pa.field("units_removed", pa.int32()),  # repeated lines/paragraphs taken out of the text
]
ADDS = added_names(FIELDS)
# A node is "<rank><doc_id><exact key>": string order is survivor order, so a cluster's smallest node survives.
KEY_WIDTH = 32
NO_EXACT = "-" * KEY_WIDTH
RANK_WIDTH = {"longest": 12, "earliest_date": 10, "oldest_id": 0}
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def rank(row: dict, survivor: str) -> str:
    """Fixed-width prefix that sorts the preferred survivor first: longest text, earliest date, or nothing (id)."""
    if survivor == "longest":
        return f"{10**12 - 1 - len(row['text']):012d}"
    if survivor == "earliest_date":
        date = (row.get("date") or "")[:10]
        return date if _ISO_DATE.fullmatch(date) else "9999-99-99"
    return ""


def make_node(row: dict, config: DedupConfig) -> str:
    exact = exact_key(row["text"], config.normalization) if config.exact else NO_EXACT
    return rank(row, config.survivor) + row["doc_id"] + exact


def node_doc_id(node: str, survivor: str) -> str:
    return node[RANK_WIDTH[survivor] : -KEY_WIDTH]


class DedupKeys(beam.DoFn):
    """Node, LSH band keys and (when verifying) signature of a batch of documents; signatures are batch-computed."""

    def __init__(self, config: DedupConfig) -> None:
        self.config = config

    def setup(self) -> None:
        self.hasher = MinHasher(self.config) if self.config.minhash else None
        self.bands, self.rows = lsh_params(self.config)

    def process(self, batch: list[dict]) -> Iterable[dict]:
        signatures = self.hasher.signatures([row["text"] for row in batch]) if self.hasher else [None] * len(batch)
        for row, signature in zip(batch, signatures, strict=True):
            yield {
                "node": make_node(row, self.config),
                "bands": [] if signature is None else band_keys(signature, self.bands, self.rows),
                "signature": signature.tobytes() if self.config.verify and signature is not None else None,
            }


SURVIVOR, EDGE = "survivor", "edge"


def exact_groups(element: tuple[str, Iterable[dict]]) -> Iterable[tuple[str, dict | Edge]]:
    """Each exact-key group's smallest node goes on to MinHash (SURVIVOR, key); the others get an edge to it
    (EDGE, edge), split by `only` (not tagged outputs: see datafactory.pipelines.common.only)."""
    _, keys = element
    anchor = min(key["node"] for key in keys)
    for key in keys:
        if key["node"] == anchor:
            yield SURVIVOR, key
        else:
            yield EDGE, (key["node"], anchor)


def bucket_edges(element: tuple[str, Iterable[str]]) -> Iterable[Edge]:
    """A star over each LSH bucket, centred on its smallest node."""
    return star(element[1])[1]


def with_child_signature(element: tuple[str, dict]) -> Iterable[tuple[str, tuple[str, bytes]]]:
    child, grouped = element
    for signature in grouped["signature"]:
        for parent in grouped["parent"]:
            yield parent, (child, signature)


def verified_edges(element: tuple[str, dict], threshold: float) -> Iterable[Edge]:
    """Candidate pairs whose estimated Jaccard (share of equal signature values) reaches the threshold."""
    parent, grouped = element
    for signature in grouped["signature"]:
        anchor = np.frombuffer(signature, dtype=np.uint32)
        for child, other in grouped["child"]:
            if jaccard(anchor, np.frombuffer(other, dtype=np.uint32)) >= threshold:
                yield child, parent


class Verify(beam.PTransform):
    """Joins both signatures onto each candidate edge (two shuffles keyed by node) and keeps the similar pairs."""

    def __init__(self, signatures: beam.PCollection, threshold: float) -> None:
        super().__init__()
        self.signatures, self.threshold = signatures, threshold

    def expand(self, candidates: beam.PCollection) -> beam.PCollection:
        children = (
            {"parent": candidates, "signature": self.signatures}
            | "JoinChild" >> beam.CoGroupByKey()
            | "ChildSignature" >> beam.FlatMap(with_child_signature)
        )
        return (
            {"child": children, "signature": self.signatures}
            | "JoinParent" >> beam.CoGroupByKey()
            | "Similar" >> beam.FlatMap(verified_edges, self.threshold)
        )


# --------------------------------------------------------------------------- pipelines


def graph_edges(batches: beam.PCollection, config: DedupConfig) -> beam.PCollection:
    """Candidate edges: exact-key groups, then LSH buckets of the exact survivors (verified when configured)."""
    keys = batches | "Keys" >> beam.ParDo(DedupKeys(config))
    edge_sets = []
    if config.exact:
        exact = (
            keys
            | "ByExact" >> beam.Map(lambda key: (key["node"][-KEY_WIDTH:], key))
            | "GroupExact" >> beam.GroupByKey()
            | "ExactGroups" >> beam.FlatMap(exact_groups)
        )
        keys = exact | "ExactSurvivors" >> beam.FlatMap(only(SURVIVOR))
        edge_sets.append(exact | "ExactEdges" >> beam.FlatMap(only(EDGE)))
    if config.minhash:
        near = (
            keys
            | "BandKeys" >> beam.FlatMap(lambda key: [(band, key["node"]) for band in key["bands"]])
            | "GroupBands" >> beam.GroupByKey()
            | "BucketEdges" >> beam.FlatMap(bucket_edges)
            | "DistinctCandidates" >> beam.Distinct()
        )
        if config.verify:
            signatures = keys | "Signatures" >> beam.Map(lambda key: (key["node"], key["signature"]))
            near = near | "Verify" >> Verify(signatures, config.verify_threshold)
        edge_sets.append(near)
    if not edge_sets:
        return batches.pipeline | "NoEdges" >> beam.Create([])
    return tuple(edge_sets) | "AllEdges" >> beam.Flatten() | "DistinctEdges" >> beam.Distinct()


def cluster_info(element: tuple[str, Iterable[str]], survivor: str) -> Iterable[tuple[str, dict]]:
    """The survivor (the star's centre) and its duplicates, each with the cluster id and size."""
    centre, children = element
    size = 1 + sum(1 for _ in children)
    kept = node_doc_id(centre, survivor)
    info = {"minhash_cluster": kept, "cluster_size": size}
    yield kept, info | {"duplicate_of": None, "reason": None}
    for child in children:
        exact = child[-KEY_WIDTH:] == centre[-KEY_WIDTH:] != NO_EXACT
        yield node_doc_id(child, survivor), info | {
            "duplicate_of": kept, "reason": "exact_duplicate" if exact else "near_duplicate"
        }


def survivor_units(element: tuple[str, dict]) -> Iterable[tuple[int, str]]:
    doc_id, grouped = element
    if not any(info["duplicate_of"] for info in grouped["info"]):
        for keys in grouped["units"]:
            for key in keys:
                yield key, doc_id


def frequent_units(element: tuple[int, Iterable[str]], min_documents: int) -> Iterable[tuple[str, int]]:
    """(doc_id, unit key) for every document holding a unit that recurs in at least min_documents survivors."""
    key, doc_ids = element
    if sum(1 for _ in doc_ids) >= min_documents:
        for doc_id in doc_ids:
            yield doc_id, key


NO_CLUSTER = {"minhash_cluster": None, "cluster_size": 1, "duplicate_of": None}


def decide(row: dict, info: dict, removed: set[int], paragraphs: ParagraphDedupConfig) -> dict:
    """One document's cluster decision; a survivor loses its units that recur across survivors."""
    row.update(info, units_removed=0, keep=info["duplicate_of"] is None, detail=None)
    if removed and row["keep"]:
        row["text"], row["units_removed"], short = strip_repeated_units(row["text"], removed, paragraphs)
        if short is not None:
            row.update(keep=False, status=DROPPED, reason=f"short_after_{paragraphs.unit}_dedup", detail=short)
    return row


class ApplyToPart(beam.DoFn):
    """Writes part N of the stage from part N upstream (streamed) and the decisions about its documents: the
    decisions travel through the shuffle (ids and unit hashes, for documents in a cluster or with repeated units),
    the documents never do."""

    def __init__(self, paths: StagePaths, previous: StagePaths, schema: pa.Schema, total: int,
                 paragraphs: ParagraphDedupConfig) -> None:
        self.paths, self.previous, self.schema, self.total = paths, previous, schema, total
        self.paragraphs = paragraphs

    def process(self, element: tuple[int, Iterable[tuple]]) -> Iterable[int]:
        index, decisions = element
        info: dict[str, dict] = {}
        strip: dict[str, set[int]] = {}
        for kind, doc_id, value in decisions:
            if kind == "info":
                info[doc_id] = value
            elif kind == "strip":
                strip.setdefault(doc_id, set()).add(value)
        name = part_name("", index, self.total)
        batches = ([decide(row, info.get(row["doc_id"], NO_CLUSTER), strip.get(row["doc_id"], set()),
                           self.paragraphs) for row in rows]
                   for rows in iter_kept_batches(self.previous.stage_dir / name, 1024))
        write_part(self.paths, name, self.schema, DUPLICATE, batches)
        yield index


def unit_pairs(batch: list[dict], paragraphs: ParagraphDedupConfig) -> list[tuple[str, list[int]]]:
    return [(row["doc_id"], unit_keys(row["text"], paragraphs.unit, paragraphs.min_chars)) for row in batch]


class ApplyDecisions(beam.PTransform):
    """Cluster decisions (and, with paragraph dedup, repeated units) grouped by partition, then each partition's
    part written by ApplyToPart; every partition gets an element, so every part is written."""

    def __init__(self, batches: beam.PCollection, config: DedupConfig, writer: ApplyToPart) -> None:
        super().__init__()
        self.batches, self.config, self.writer = batches, config, writer

    def expand(self, labels: beam.PCollection) -> beam.PCollection:
        config, total = self.config, self.writer.total
        info = (
            labels
            | "ByCentre" >> beam.Map(lambda edge: (edge[1], edge[0]))
            | "Clusters" >> beam.GroupByKey()
            | "ClusterInfo" >> beam.FlatMap(cluster_info, config.survivor)
        )
        def by_partition(kind: str):
            return lambda doc_id, value: (partition_of(doc_id, total), (kind, doc_id, value))

        tagged = [info | "InfoByPartition" >> beam.MapTuple(by_partition("info")),
                  labels.pipeline | "EveryPartition" >> beam.Create([(index, ("partition", None, None))
                                                                      for index in range(total)])]
        paragraphs = config.paragraphs
        if paragraphs.enabled:
            units = self.batches | "UnitKeys" >> beam.FlatMap(unit_pairs, paragraphs)
            tagged.append(
                {"units": units, "info": info}
                | "JoinUnits" >> beam.CoGroupByKey()
                | "SurvivorUnits" >> beam.FlatMap(survivor_units)
                | "GroupUnits" >> beam.GroupByKey()
                | "FrequentUnits" >> beam.FlatMap(frequent_units, paragraphs.min_documents)
                | "StripByPartition" >> beam.MapTuple(by_partition("strip"))
            )
        return (
            tuple(tagged)
            | "AllDecisions" >> beam.Flatten()
            | "GroupPartition" >> beam.GroupByKey()
            | "WriteParts" >> beam.ParDo(self.writer)
        )


def dedup_counts(paths: StagePaths, config: DedupConfig, rounds: int, edges: int) -> dict:
    """Decision counts plus what the marker must record: LSH parameters, component rounds, lines removed."""
    bands, rows = lsh_params(config)
    files = [str(path) for path in paths.parts()]
    ((units,),) = duckdb.sql(
        "SELECT coalesce(sum(units_removed), 0) FROM read_parquet($files)", params={"files": files}
    ).fetchall()
    return decision_counts(paths) | {
        "minhash": {
            "scheme": SCHEME, "num_perm": config.num_perm, "bands": bands, "rows": rows, "threshold": config.threshold,
            "verify_threshold": config.verify_threshold if config.verify else None, "ngram": config.ngram,
            "cjk_ngram": config.cjk_ngram,
        },
        "components": {"edges": edges, "rounds": rounds},
        "units_removed": int(units),
    }


def run(job: StageRun) -> StageResult:
    config, paths, previous = job.config, job.paths, job.previous
    schema = output_schema(previous, FIELDS, writes_text=config.dedup.paragraphs.enabled)
    dedup, total = config.dedup, len(previous.parts())  # documents stay in the partitions ingest gave them
    work = paths.stage_dir / "_work"

    def write_stage(batches: beam.PCollection, labels: beam.PCollection) -> None:
        writer = ApplyToPart(paths, previous, schema, total, dedup.paragraphs)
        labels | "Apply" >> ApplyDecisions(batches, dedup, writer)

    def first(pipeline: beam.Pipeline) -> None:
        """Graph, rounds and the stage output at once: right whenever the rounds left only stars (the usual case)."""
        batches = read_kept_batches(pipeline, previous, 256, config.runner)  # MinHash runs per batch
        labels = graph_edges(batches, dedup) | "Rounds" >> StarRounds(ROUNDS_PER_PIPELINE)
        labels | "Save" >> WriteEdges(work / "edges-0", total)
        write_stage(batches, labels)

    def more(step: int):
        def build(pipeline: beam.Pipeline) -> None:
            edges = read_edges(pipeline, work / f"edges-{step}", "Read") | "Rounds" >> StarRounds(ROUNDS_PER_PIPELINE)
            edges | "Save" >> WriteEdges(work / f"edges-{step + 1}", total)

        return build

    def rewrite(step: int):
        def build(pipeline: beam.Pipeline) -> None:
            labels = read_edges(pipeline, work / f"edges-{step}", "Labels")
            write_stage(read_kept_batches(pipeline, previous, 256, config.runner), labels)

        return build

    def body() -> dict:
        run_beam(config, first)
        step = 0
        while violations(work / f"edges-{step}"):
            if (step + 2) * ROUNDS_PER_PIPELINE > dedup.max_rounds:
                raise RuntimeError(f"dedup: clusters are not stars after {dedup.max_rounds} rounds (dedup.max_rounds)")
            run_beam(config, more(step))
            step += 1
        if step:
            run_beam(config, rewrite(step))  # same partitions, same file names: replaces the first pipeline's output
        fill_empty_partitions(paths, schema, total)
        counts = dedup_counts(paths, dedup, (step + 1) * ROUNDS_PER_PIPELINE, count_edges(work / f"edges-{step}"))
        shutil.rmtree(work)
        return counts

    return run_stage(job, body)
