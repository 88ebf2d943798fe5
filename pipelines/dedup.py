"""Dedup stage: exact + MinHash LSH duplicates joined into clusters (one survivor each), then repeated lines removed.

Grouping is Beam GroupByKeys only; clusters come from large-star / small-star rounds (Kiveris et al. 2014). Past
`dedup.shuffle_budget_mb` of keys, the exact and band keys are grouped in key-range passes, one pipeline each.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import apache_beam as beam
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datafactory.factory.atomic import atomic_path
from datafactory.factory.config import DedupConfig, ParagraphDedupConfig, SubstringsConfig
from datafactory.factory.records import DROPPED, DUPLICATE
from datafactory.filters.dedup import (
    RANK_WIDTH,
    SCHEME,
    MinHasher,
    band_keys,
    exact_key,
    jaccard,
    lsh_params,
    strip_repeated_units,
    survivor_rank,
    unit_keys,
)
from datafactory.filters.substrings import Claim, remove_claimed
from datafactory.pipelines.common import (
    StagePaths,
    StageResult,
    StageRun,
    added_names,
    decision_counts,
    each_part,
    fill_empty_partitions,
    iter_kept_batches,
    output_schema,
    parquet_row_groups,
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
from datafactory.pipelines.substrings import SPANS_DIR, FindRepeatedSpans, span_rows, write_spans

FIELDS = [
    pa.field("minhash_cluster", pa.string()),  # the cluster's survivor; null for documents without duplicates
    pa.field("cluster_size", pa.int32()),
    pa.field("duplicate_of", pa.string()),
    pa.field("units_removed", pa.int32()),  # repeated lines/paragraphs taken out of the text
    pa.field("substrings_removed", pa.int32()),  # repeated spans taken out of the text (the `substrings` view)
    pa.field("substring_chars_removed", pa.int32()),
]
ADDS = added_names(FIELDS)
# A node is "<rank><doc_id><exact key>": string order is survivor order, so a cluster's smallest node survives.
KEY_WIDTH = 32
NO_EXACT = "-" * KEY_WIDTH


def make_node(row: dict, config: DedupConfig) -> str:
    exact = exact_key(row["text"], config.normalization) if config.exact else NO_EXACT
    return survivor_rank(row, config.survivor) + row["doc_id"] + exact


def node_doc_id(node: str, survivor: str) -> str:
    return node[RANK_WIDTH[survivor] : -KEY_WIDTH]


KEY_BYTES = 200  # what the in-process runner holds per shuffled key: key, node, ordinal and its own bookkeeping


def key_passes(upstream: StagePaths, config: DedupConfig) -> int:
    """Key-range passes that keep each pass's band and exact keys within `shuffle_budget_mb` (the in-process runner
    holds a whole shuffle in memory); counted from the upstream rows, dropped ones included: an upper bound."""
    documents = sum(pq.read_metadata(part).num_rows for part in upstream.parts())
    bands, _ = lsh_params(config)
    keys_per_document = (bands if config.minhash else 0) + int(config.exact)
    return max(1, math.ceil(documents * keys_per_document * KEY_BYTES / (config.shuffle_budget_mb * 2**20)))


def in_pass(key: str, index: int, passes: int) -> bool:
    """Keys (hex digests at their end) are split into `passes` ranges by their last 32 bits."""
    return passes == 1 or int(key[-8:], 16) % passes == index


# A part's keys travel to the grouping as one list per shard, not one element per key: most LSH buckets hold a single
# document, and a Beam element per band key was most of the stage's time. Shards come from other bits than in_pass's,
# so every pass spreads its keys over all of them.
KEY_SHARDS = 16


def shard_of(key: str) -> int:
    return int(key[-16:-8], 16) % KEY_SHARDS


class SignatureStore:
    """MinHash signatures written by KeysOfPart, one raw uint32 file per upstream part (a row per document, appended
    a batch at a time), read back memory-mapped by ordinal (part << 32 | row): verification looks them up instead of
    shuffling them."""

    def __init__(self, directory: Path, num_perm: int) -> None:
        self.directory, self.num_perm = directory, num_perm
        self.parts: dict[int, np.ndarray] = {}

    @staticmethod
    def ordinal(part: int, row: int) -> int:
        return part << 32 | row

    def path(self, part: int) -> Path:
        return self.directory / f"{part}.u32"

    def __getitem__(self, ordinal: int) -> np.ndarray:
        part = ordinal >> 32
        if part not in self.parts:
            self.parts[part] = np.memmap(self.path(part), dtype=np.uint32, mode="r").reshape(-1, self.num_perm)
        return self.parts[part][ordinal & 0xFFFFFFFF]


KEYS_SCHEMA = pa.schema([("node", pa.string()), ("ordinal", pa.int64()), ("bands", pa.list_(pa.string()))])


class KeysOfPart(beam.DoFn):
    """One upstream part's documents as dedup keys (node, ordinal, LSH band keys), a list per batch, their signatures
    saved for verification; `spill` writes the keys to Parquet for the key-range passes instead of emitting them
    (a row group per batch). Either way a worker holds one batch, not the part."""

    def __init__(self, config: DedupConfig, parts: list[str], work: Path, spill: bool) -> None:
        self.config, self.parts, self.work, self.spill = config, parts, work, spill

    def setup(self) -> None:
        self.hasher = MinHasher(self.config) if self.config.minhash else None
        self.bands, self.rows = lsh_params(self.config)

    def process(self, path: str) -> Iterable[list[dict]]:
        part = self.parts.index(path)
        verify = self.config.minhash and self.config.verify
        store = SignatureStore(self.work / "signatures", self.config.num_perm)
        with contextlib.ExitStack() as files:
            signatures = files.enter_context(self.atomic_file(store.path(part))) if verify else None
            keys_file = self.work / "keys" / f"{part}.parquet"
            writer = files.enter_context(self.keys_writer(keys_file)) if self.spill else None
            row = 0
            for batch, batch_signatures in self.signed_batches(Path(path)):
                keys = []
                for offset, document in enumerate(batch):
                    bands = [] if batch_signatures is None else band_keys(batch_signatures[offset], self.bands,
                                                                          self.rows)
                    keys.append({"node": make_node(document, self.config),
                                 "ordinal": SignatureStore.ordinal(part, row + offset), "bands": bands})
                row += len(batch)
                if signatures is not None:
                    signatures.write(np.ascontiguousarray(batch_signatures, dtype=np.uint32).tobytes())
                if writer is None:
                    yield keys
                else:
                    writer.write_table(pa.Table.from_pylist(keys, schema=KEYS_SCHEMA))

    def signed_batches(self, part: Path) -> Iterator[tuple[list[dict], np.ndarray | None]]:
        for batch in iter_kept_batches(part, 256):  # MinHash runs a batch at a time
            yield batch, self.hasher.signatures([row["text"] for row in batch]) if self.hasher else None

    @staticmethod
    @contextlib.contextmanager
    def atomic_file(path: Path) -> Iterator[BinaryIO]:
        with atomic_path(path) as tmp, open(tmp, "wb") as out:
            yield out

    @staticmethod
    @contextlib.contextmanager
    def keys_writer(path: Path) -> Iterator[pq.ParquetWriter]:
        with atomic_path(path) as tmp, pq.ParquetWriter(tmp, KEYS_SCHEMA, compression="zstd") as writer:
            yield writer


def read_keys(pipeline: beam.Pipeline, directory: Path) -> beam.PCollection:
    files = [str(path) for path in sorted(directory.glob("*.parquet"))]
    return pipeline | "KeyFiles" >> beam.Create(files) | "ReadKeys" >> beam.FlatMap(parquet_row_groups)


Keyed = tuple[str, str, int]  # (exact or band key, node, ordinal)


def sharded_keys(batch: list[dict], index: int, passes: int) -> Iterable[tuple[tuple[str, int], list[Keyed]]]:
    """A batch of documents' exact and band keys of key range ``index``, as one list per (kind, shard)."""
    shards: dict[tuple[str, int], list[Keyed]] = {}
    for key in batch:
        node, ordinal = key["node"], key["ordinal"]
        exact = node[-KEY_WIDTH:]
        if exact != NO_EXACT and in_pass(exact, index, passes):
            shards.setdefault(("exact", shard_of(exact)), []).append((exact, node, ordinal))
        for band in key["bands"]:
            if in_pass(band, index, passes):
                shards.setdefault(("band", shard_of(band)), []).append((band, node, ordinal))
    return shards.items()


class ShardEdges(beam.DoFn):
    """The edges of one shard of keys: a star over each exact-key group and over each LSH bucket, centred on its
    smallest node; in a bucket, with verification, only the members whose estimated Jaccard with the centre (share
    of equal signature values) reaches the threshold."""

    def __init__(self, signatures: Path | None, threshold: float, num_perm: int) -> None:
        self.signatures, self.threshold, self.num_perm = signatures, threshold, num_perm

    def setup(self) -> None:
        self.store = SignatureStore(self.signatures, self.num_perm) if self.signatures else None

    def process(self, element: tuple[tuple[str, int], Iterable[list[Keyed]]]) -> Iterable[Edge]:
        (kind, _), lists = element
        groups: dict[str, list[tuple[str, int]]] = {}
        for keyed in lists:
            for key, node, ordinal in keyed:
                groups.setdefault(key, []).append((node, ordinal))
        for members in groups.values():
            if len(members) > 1:
                yield from (star(node for node, _ in members)[1] if kind == "exact" else self.bucket_edges(members))

    def bucket_edges(self, members: list[tuple[str, int]]) -> Iterable[Edge]:
        centre, centre_ordinal = min(members)
        anchor = self.store[centre_ordinal] if self.store else None
        for node, ordinal in members:
            if node != centre and (anchor is None or jaccard(anchor, self.store[ordinal]) >= self.threshold):
                yield node, centre


# --------------------------------------------------------------------------- pipelines


def graph_edges(keys: beam.PCollection, config: DedupConfig, work: Path, index: int = 0, passes: int = 1
                ) -> beam.PCollection:
    """Duplicate edges among the keys of one key range (``keys``: lists of a batch's keys): exact-key groups and
    (verified) LSH buckets."""
    if not (config.exact or config.minhash):
        return keys.pipeline | "NoEdges" >> beam.Create([])
    signatures = work / "signatures" if config.minhash and config.verify else None
    return (
        keys
        | "ShardKeys" >> beam.FlatMap(sharded_keys, index, passes)
        | "GroupShards" >> beam.GroupByKey()
        | "ShardEdges" >> beam.ParDo(ShardEdges(signatures, config.verify_threshold, config.num_perm))
        | "DistinctEdges" >> beam.Distinct()
    )


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


def decide(row: dict, info: dict, removed: set[int], claims: list[Claim], settings: TextDedup) -> list[dict]:
    """One document's cluster decision; a survivor loses the spans other survivors hold first (offsets in the text
    read), then its units that recur across survivors. Returns the spans removed, as rows of the span table."""
    row.update(info, units_removed=0, substrings_removed=0, substring_chars_removed=0,
               keep=info["duplicate_of"] is None, detail=None)
    spans: list[dict] = []
    if claims and row["keep"]:
        substrings = settings.substrings
        removal = remove_claimed(row["text"], claims, substrings.min_tokens, substrings.merge_gap_tokens)
        spans = span_rows(row, row["text"], removal.spans)
        row.update(text=removal.text, substrings_removed=len(spans),
                   substring_chars_removed=sum(span["end"] - span["start"] for span in spans))
        if removal.tokens_left < substrings.min_tokens_left:
            row.update(keep=False, status=DROPPED, reason="short_after_substring_dedup", detail=removal.tokens_left)
    paragraphs = settings.paragraphs
    if removed and row["keep"]:
        row["text"], row["units_removed"], short = strip_repeated_units(row["text"], removed, paragraphs)
        if short is not None:
            row.update(keep=False, status=DROPPED, reason=f"short_after_{paragraphs.unit}_dedup", detail=short)
    return spans


@dataclass(frozen=True)
class TextDedup:
    """The dedup stage's text-rewriting steps, both off by default."""

    paragraphs: ParagraphDedupConfig
    substrings: SubstringsConfig

    @property
    def rewrites(self) -> bool:
        return self.paragraphs.enabled or self.substrings.enabled


class ApplyToPart(beam.DoFn):
    """Writes part N of the stage from part N upstream (streamed) and the decisions about its documents: the
    decisions travel through the shuffle (ids and unit hashes, for documents in a cluster or with repeated units),
    the documents never do."""

    def __init__(self, paths: StagePaths, previous: StagePaths, schema: pa.Schema, total: int,
                 settings: TextDedup) -> None:
        self.paths, self.previous, self.schema, self.total = paths, previous, schema, total
        self.settings = settings

    def process(self, element: tuple[int, Iterable[tuple]]) -> Iterable[int]:
        index, decisions = element
        info: dict[str, dict] = {}
        strip: dict[str, set[int]] = {}
        claims: dict[str, list[Claim]] = {}
        for kind, doc_id, value in decisions:
            if kind == "info":
                info[doc_id] = value
            elif kind == "strip":
                strip.setdefault(doc_id, set()).add(value)
            elif kind == "claims":
                for claimant, position, kept_in, kept_start in value:
                    claims.setdefault(claimant, []).append(Claim(position, kept_in, kept_start))
        name = part_name("", index, self.total)
        spans: list[dict] = []

        def decided(rows: list[dict]) -> list[dict]:
            for row in rows:
                doc_id = row["doc_id"]
                spans.extend(decide(row, info.get(doc_id, NO_CLUSTER), strip.get(doc_id, set()),
                                    claims.get(doc_id, []), self.settings))
            return rows

        stores_text = "text" in self.schema.names  # decide() reads the text only to rewrite it, which stores it
        batches = (decided(rows) for rows in iter_kept_batches(self.previous.stage_dir / name, 1024, stores_text))
        write_part(self.paths, name, self.schema, DUPLICATE, batches)
        if self.settings.substrings.enabled:
            write_spans(self.paths.stage_dir / SPANS_DIR / name, spans)
        yield index


def unit_pairs(batch: list[dict], paragraphs: ParagraphDedupConfig) -> list[tuple[str, list[int]]]:
    return [(row["doc_id"], unit_keys(row["text"], paragraphs.unit, paragraphs.min_chars)) for row in batch]


class ApplyDecisions(beam.PTransform):
    """Cluster decisions (and, with paragraph dedup, repeated units) grouped by partition, then each partition's
    part written by ApplyToPart; every partition gets an element, so every part is written."""

    def __init__(self, batches: beam.PCollection | None, config: DedupConfig, writer: ApplyToPart) -> None:
        super().__init__()  # batches: the upstream documents, read only for paragraph or substring dedup
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
        if self.writer.settings.substrings.enabled:
            duplicates = (info | "Duplicates" >> beam.Filter(lambda pair: pair[1]["duplicate_of"] is not None)
                          | "DuplicatesByPartition" >> beam.MapTuple(
                              lambda doc_id, _: (partition_of(doc_id, total), ("duplicate", doc_id))))
            tagged.append(self.batches | "RepeatedSpans" >> FindRepeatedSpans(
                duplicates, self.writer.previous.stage_dir, total, self.writer.settings.substrings, config.survivor))
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


def span_files(paths: StagePaths) -> list[Path]:
    return sorted((paths.stage_dir / SPANS_DIR).glob("part-*.parquet"))


def dedup_counts(paths: StagePaths, config: DedupConfig, rounds: int, edges: int) -> dict:
    """Decision counts plus what the marker must record: LSH parameters, component rounds, lines and spans
    removed."""
    bands, rows = lsh_params(config)
    files = [str(path) for path in paths.parts()]
    ((units,),) = duckdb.sql(
        "SELECT coalesce(sum(units_removed), 0) FROM read_parquet($files)", params={"files": files}
    ).fetchall()
    substrings = {}
    if spans := [str(path) for path in span_files(paths)]:
        ((count, documents, removed),) = duckdb.sql(
            "SELECT count(*), count(DISTINCT doc_id), coalesce(sum(bytes), 0) FROM read_parquet($files)",
            params={"files": spans}).fetchall()
        substrings = {"substrings": {"spans": count, "documents": documents, "bytes_removed": int(removed)}}
    return decision_counts(paths) | substrings | {
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
    text_dedup = TextDedup(config.dedup.paragraphs, config.substrings)
    schema = output_schema(previous, FIELDS, writes_text=text_dedup.rewrites)
    dedup, total = config.dedup, len(previous.parts())  # documents stay in the partitions ingest gave them
    work = paths.stage_dir / "_work"
    parts = [str(path) for path in previous.parts()]
    passes = key_passes(previous, dedup)
    # the key-range passes group keys and read no text; so does the first pipeline after them (it reads the keys'
    # edges), unless its parts store the text
    grouping = config.model_copy(update={"runner": config.runner.for_text_free_pipeline()})
    first_config = grouping if passes > 1 and "text" not in schema.names else config

    def keys_of_parts(pipeline: beam.Pipeline, spill: bool) -> beam.PCollection:
        keys = KeysOfPart(dedup, parts, work, spill)
        return each_part(pipeline, previous, config.runner) | "Keys" >> beam.ParDo(keys)

    def write_stage(pipeline: beam.Pipeline, labels: beam.PCollection) -> None:
        writer = ApplyToPart(paths, previous, schema, total, text_dedup)
        batches = read_kept_batches(pipeline, previous, 256, config.runner) if text_dedup.rewrites else None
        labels | "Apply" >> ApplyDecisions(batches, dedup, writer)

    def key_range(index: int):
        def build(pipeline: beam.Pipeline) -> None:
            edges = graph_edges(read_keys(pipeline, work / "keys"), dedup, work, index, passes)
            edges | "Save" >> WriteEdges(work / f"pass-{index}", total, check_stars=False)

        return build

    def first(pipeline: beam.Pipeline) -> None:
        """Graph (or the key-range passes' edges), rounds and the stage output at once: right whenever the rounds
        left only stars (the usual case)."""
        if passes == 1:
            edges = graph_edges(keys_of_parts(pipeline, spill=False), dedup, work)
        else:
            ranges = [work / f"pass-{index}" for index in range(passes)]
            edges = read_edges(pipeline, ranges, "Ranges") | "DistinctRanges" >> beam.Distinct()
        labels = edges | "Rounds" >> StarRounds(ROUNDS_PER_PIPELINE)
        labels | "Save" >> WriteEdges(work / "edges-0", total)
        write_stage(pipeline, labels)

    def more(step: int):
        def build(pipeline: beam.Pipeline) -> None:
            edges = read_edges(pipeline, [work / f"edges-{step}"], "Read") | "Rounds" >> StarRounds(ROUNDS_PER_PIPELINE)
            edges | "Save" >> WriteEdges(work / f"edges-{step + 1}", total)

        return build

    def rewrite(step: int):
        def build(pipeline: beam.Pipeline) -> None:
            write_stage(pipeline, read_edges(pipeline, [work / f"edges-{step}"], "Labels"))

        return build

    def body() -> dict:
        if passes > 1:
            run_beam(config, lambda pipeline: keys_of_parts(pipeline, spill=True))
            for index in range(passes):
                run_beam(grouping, key_range(index))
        run_beam(first_config, first)
        step = 0
        while violations(work / f"edges-{step}"):
            if (step + 2) * ROUNDS_PER_PIPELINE > dedup.max_rounds:
                raise RuntimeError(f"dedup: clusters are not stars after {dedup.max_rounds} rounds (dedup.max_rounds)")
            run_beam(grouping, more(step))
            step += 1
        if step:
            run_beam(first_config, rewrite(step))  # same partitions, same file names: replaces the first's output
        fill_empty_partitions(paths, schema, total)
        counts = dedup_counts(paths, dedup, (step + 1) * ROUNDS_PER_PIPELINE, count_edges(work / f"edges-{step}"))
        shutil.rmtree(work)
        return counts | {"key_passes": passes}

    return run_stage(job, body, lambda: span_files(paths))
