"""The dedup stage's repeated-span step on Beam: winnowed fingerprints grouped by key find the documents that share
text; only their candidate regions are hashed window by window and grouped again, which names the copy that stays.

Shuffled: a fingerprint per ~7% of the tokens of every document, then one window per token of the candidate regions
(the repeated text and a margin), then one claim per removed window: no step holds the corpus or its texts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import apache_beam as beam
import pyarrow as pa

from datafactory.factory.config import SubstringsConfig
from datafactory.filters.dedup import survivor_rank
from datafactory.filters.substrings import Span, Winnowing
from datafactory.pipelines.common import iter_kept_batches, part_name, partition_of, write_parquet_atomic

SPAN_SCHEMA = pa.schema([
    pa.field("doc_id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("start", pa.int64()),  # character offsets in the text the dedup stage read (ingest's, unless rewritten)
    pa.field("end", pa.int64()),
    pa.field("tokens", pa.int32()),
    pa.field("bytes", pa.int64()),  # UTF-8 bytes removed
    pa.field("kept_in", pa.string()),  # the document whose copy stays
    pa.field("kept_start", pa.int64()),  # where that copy starts in kept_in's text
    pa.field("sample", pa.string()),  # the span's first 200 characters
])
SAMPLE_CHARS = 200
SPANS_DIR = "_substrings"  # in the dedup stage directory, one file per part; "_": not rows of the stage itself


BUCKETS_PER_PARTITION = 64  # keys are grouped in buckets, a list per bucket and bundle: ~1/64 of a part each


def by_bucket(items: Iterable[tuple], buckets: int) -> Iterable[tuple[int, list[tuple]]]:
    """Items (their first field a hash key) as one list per bucket: Beam moves a list far faster than its items."""
    grouped: dict[int, list[tuple]] = defaultdict(list)
    for item in items:
        grouped[item[0] % buckets].append(item)
    return grouped.items()


def held_twice(lists: Iterable[list[tuple]], doc_field: int) -> Iterable[list[tuple]]:
    """A bucket's items grouped by key: the copies of one fingerprint or window, where two or more documents (the
    item's field ``doc_field``) hold it."""
    by_key: dict[int, list[tuple]] = defaultdict(list)
    for items in lists:
        for item in items:
            by_key[item[0]].append(item)
    return (copies for copies in by_key.values() if len({copy[doc_field] for copy in copies}) > 1)


def fingerprint_buckets(batch: list[dict], winnowing: Winnowing, buckets: int) -> Iterable[tuple[int, list]]:
    """(key, doc_id, position) of every fingerprint of a batch of documents, by bucket."""
    return by_bucket(((key, row["doc_id"], position) for row in batch
                      for key, position in winnowing.fingerprints(row["text"])), buckets)


def shared_positions(element: tuple[int, Iterable[list[tuple]]], total: int) -> Iterable[tuple[int, tuple]]:
    """The positions of the fingerprints two or more documents hold, a list per document partition."""
    by_partition: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for copies in held_twice(element[1], doc_field=1):
        for _, doc_id, position in copies:
            by_partition[partition_of(doc_id, total)].append((doc_id, position))
    for partition, positions in by_partition.items():
        yield partition, ("shared", positions)


class RegionWindows(beam.DoFn):
    """For partition N: every min_tokens window in the candidate regions of its surviving documents (read from the
    upstream part, streamed), as (key, order, doc_id, position, start) by bucket, order being the survivor rule's."""

    def __init__(self, upstream_dir: Path, total: int, winnowing: Winnowing, survivor: str, buckets: int) -> None:
        self.upstream_dir, self.total, self.winnowing, self.survivor = upstream_dir, total, winnowing, survivor
        self.buckets = buckets

    def process(self, element: tuple[int, Iterable[tuple]]) -> Iterable[tuple[int, list]]:
        index, tagged = element
        shared: dict[str, list[int]] = defaultdict(list)
        duplicates: set[str] = set()
        for kind, value in tagged:
            if kind == "shared":
                for doc_id, position in value:
                    shared[doc_id].append(position)
            else:
                duplicates.add(value)
        candidates = set(shared) - duplicates
        if not candidates:
            return
        for batch in iter_kept_batches(self.upstream_dir / part_name("", index, self.total), 256):
            windows = (window for row in batch if row["doc_id"] in candidates
                       for window in self.windows(row, shared[row["doc_id"]]))
            yield from by_bucket(windows, self.buckets)

    def windows(self, row: dict, shared: list[int]) -> Iterable[tuple]:
        order = survivor_rank(row, self.survivor) + row["doc_id"]
        for key, position, start in self.winnowing.region_windows(row["text"], shared):
            yield key, order, row["doc_id"], position, start
def claims(element: tuple[int, Iterable[list[tuple]]], total: int) -> Iterable[tuple[int, tuple]]:
    """A window two or more documents hold stays in the first by survivor order; every other copy is claimed:
    (position, kept_in, kept_start) lists per document partition."""
    by_partition: dict[int, list[tuple]] = defaultdict(list)
    for copies in held_twice(element[1], doc_field=2):
        _, _, kept_in, _, kept_start = min(copies, key=lambda copy: (copy[1], copy[4]))  # first copy of the first doc
        for _, _, doc_id, position, _ in copies:
            if doc_id != kept_in:
                by_partition[partition_of(doc_id, total)].append((doc_id, position, kept_in, kept_start))
    for partition, found in by_partition.items():
        yield partition, ("claims", None, found)


class FindRepeatedSpans(beam.PTransform):
    """(partition, ("claims", None, [(doc_id, position, kept_in, kept_start), ...])) for the windows surviving
    documents give up; ``duplicates`` are (partition, ("duplicate", doc_id)) for the documents the clusters removed."""

    def __init__(self, duplicates: beam.PCollection, upstream_dir: Path, total: int, config: SubstringsConfig,
                 survivor: str) -> None:
        super().__init__()
        self.duplicates, self.upstream_dir, self.total = duplicates, upstream_dir, total
        self.winnowing, self.survivor = Winnowing(config.min_tokens), survivor

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        total = self.total
        buckets = BUCKETS_PER_PARTITION * total
        shared = (batches
                  | "Fingerprints" >> beam.FlatMap(fingerprint_buckets, self.winnowing, buckets)
                  | "GroupFingerprints" >> beam.GroupByKey()
                  | "SharedPositions" >> beam.FlatMap(shared_positions, total))
        windows = RegionWindows(self.upstream_dir, total, self.winnowing, self.survivor, buckets)
        return ((shared, self.duplicates)
                | "CandidatesAndDuplicates" >> beam.Flatten()
                | "GroupCandidates" >> beam.GroupByKey()
                | "RegionWindows" >> beam.ParDo(windows)
                | "GroupWindows" >> beam.GroupByKey()
                | "Claims" >> beam.FlatMap(claims, total))


def span_rows(row: dict, text: str, spans: list[Span]) -> list[dict]:
    return [{"doc_id": row["doc_id"], "source": row.get("source"), "start": span.start, "end": span.end,
             "tokens": span.tokens, "bytes": len(text[span.start : span.end].encode("utf-8", "surrogatepass")),
             "kept_in": span.kept_in, "kept_start": span.kept_start,
             "sample": text[span.start : min(span.end, span.start + SAMPLE_CHARS)]} for span in spans]


def write_spans(path: Path, rows: list[dict]) -> None:
    write_parquet_atomic(pa.Table.from_pylist(rows, schema=SPAN_SCHEMA), path)

