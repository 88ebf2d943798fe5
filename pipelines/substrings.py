"""The dedup stage's repeated-span step on Beam: winnowed fingerprints grouped by key find the documents that share
text; only their candidate regions are hashed window by window and grouped again, which names the copy that stays.

Shuffled: a fingerprint per ~7% of the tokens of every document, then one window per token of the candidate regions
(the repeated text and a margin), then one claim per removed window: no step holds the corpus or its texts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import apache_beam as beam
import pyarrow as pa

from datafactory.factory.config import SubstringsConfig
from datafactory.filters.dedup import survivor_rank
from datafactory.filters.substrings import Claim, Span, Winnowing
from datafactory.pipelines.common import iter_kept_batches, part_name, partition_of, write_parquet_atomic

SPAN_FIELDS = [
    pa.field("doc_id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("start", pa.int64()),  # character offsets in the text the dedup stage read (ingest's, unless rewritten)
    pa.field("end", pa.int64()),
    pa.field("tokens", pa.int32()),
    pa.field("bytes", pa.int64()),  # UTF-8 bytes removed
    pa.field("kept_in", pa.string()),  # the document whose copy stays
    pa.field("kept_start", pa.int64()),  # where that copy starts in kept_in's text
    pa.field("sample", pa.string()),  # the span's first 200 characters
]
SPAN_SCHEMA = pa.schema(SPAN_FIELDS)
SAMPLE_CHARS = 200
SPANS_DIR = "_substrings"  # in the dedup stage directory, one file per part; "_": not rows of the stage itself


def fingerprint_pairs(batch: list[dict], winnowing: Winnowing) -> Iterable[tuple[int, tuple[str, int]]]:
    for row in batch:
        for key, position in winnowing.fingerprints(row["text"]):
            yield key, (row["doc_id"], position)


def shared_positions(element: tuple[int, Iterable[tuple[str, int]]], total: int
                     ) -> Iterable[tuple[int, tuple[str, str, int]]]:
    """Each occurrence of a fingerprint two or more documents hold, sent to its document's partition."""
    _, occurrences = element
    occurrences = list(occurrences)
    if len({doc_id for doc_id, _ in occurrences}) > 1:
        for doc_id, position in occurrences:
            yield partition_of(doc_id, total), ("shared", doc_id, position)


class RegionWindows(beam.DoFn):
    """For partition N: every min_tokens window in the candidate regions of its surviving documents (read from the
    upstream part, streamed), keyed by the window's hash with the document's survivor order."""

    def __init__(self, upstream_dir: Path, total: int, winnowing: Winnowing, survivor: str) -> None:
        self.upstream_dir, self.total, self.winnowing, self.survivor = upstream_dir, total, winnowing, survivor

    def process(self, element: tuple[int, Iterable[tuple]]) -> Iterable[tuple[int, tuple]]:
        index, tagged = element
        shared: dict[str, list[int]] = {}
        duplicates: set[str] = set()
        for kind, doc_id, value in tagged:
            if kind == "shared":
                shared.setdefault(doc_id, []).append(value)
            else:
                duplicates.add(doc_id)
        candidates = set(shared) - duplicates
        if not candidates:
            return
        for batch in iter_kept_batches(self.upstream_dir / part_name("", index, self.total), 256):
            for row in batch:
                if row["doc_id"] in candidates:
                    order = survivor_rank(row, self.survivor) + row["doc_id"]
                    for key, position, start in self.winnowing.region_windows(row["text"], shared[row["doc_id"]]):
                        yield key, (order, row["doc_id"], position, start)


def claims(element: tuple[int, Iterable[tuple]], total: int) -> Iterable[tuple[int, tuple[str, str, Claim]]]:
    """A window in two or more documents stays in the first by survivor order; every other copy is claimed."""
    _, copies = element
    copies = list(copies)
    owner = min(copies)
    _, kept_in, _, kept_start = owner
    for _, doc_id, position, _ in copies:
        if doc_id != kept_in:
            yield partition_of(doc_id, total), ("claim", doc_id, Claim(position, kept_in, kept_start))


class FindRepeatedSpans(beam.PTransform):
    """(partition, ("claim", doc_id, Claim)) for every window a surviving document must give up; ``duplicates`` are
    (partition, ("duplicate", doc_id, None)) for the documents the clusters removed."""

    def __init__(self, duplicates: beam.PCollection, upstream_dir: Path, total: int, config: SubstringsConfig,
                 survivor: str) -> None:
        super().__init__()
        self.duplicates, self.upstream_dir, self.total = duplicates, upstream_dir, total
        self.winnowing, self.survivor = Winnowing(config.min_tokens), survivor

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        total = self.total
        shared = (batches
                  | "Fingerprints" >> beam.FlatMap(fingerprint_pairs, self.winnowing)
                  | "GroupFingerprints" >> beam.GroupByKey()
                  | "SharedPositions" >> beam.FlatMap(shared_positions, total))
        return ((shared, self.duplicates)
                | "CandidatesAndDuplicates" >> beam.Flatten()
                | "GroupCandidates" >> beam.GroupByKey()
                | "RegionWindows" >> beam.ParDo(RegionWindows(self.upstream_dir, total, self.winnowing,
                                                              self.survivor))
                | "GroupWindows" >> beam.GroupByKey()
                | "Claims" >> beam.FlatMap(claims, total))


def span_rows(row: dict, text: str, spans: list[Span]) -> list[dict]:
    return [{"doc_id": row["doc_id"], "source": row.get("source"), "start": span.start, "end": span.end,
             "tokens": span.tokens, "bytes": len(text[span.start : span.end].encode("utf-8", "surrogatepass")),
             "kept_in": span.kept_in, "kept_start": span.kept_start,
             "sample": text[span.start : min(span.end, span.start + SAMPLE_CHARS)]} for span in spans]


def write_spans(path: Path, rows: list[dict]) -> None:
    write_parquet_atomic(pa.Table.from_pylist(rows, schema=SPAN_SCHEMA), path)

