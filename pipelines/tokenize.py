"""Tokenize stage: sentencepiece in batches, then pack each source x language x bucket stream into Arrow shards.

Bound: one stream partition (`tokenize.partitions_per_stream` splits a stream) is packed in one worker's memory.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import sentencepiece as spm
import xxhash

from datafactory.factory.config import BuildConfig
from datafactory.factory.records import KEPT
from datafactory.factory.shards import INDEX_NAME, ShardRows, shard_schema, token_dtype, write_index, write_shard
from datafactory.pipelines.common import (
    StageResult,
    StageRun,
    WriteStage,
    added_names,
    collect,
    decision_counts,
    fill_empty_partitions,
    only,
    partition_of,
    read_kept_batches,
    run_beam,
    run_stage,
)
from datafactory.pipelines.quality import base_language
from datafactory.pipelines.tokenizer import TokenizerInfo, load_info

SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("input_file", pa.string()),
        ("location", pa.string()),
        ("lang", pa.string()),
        ("bucket", pa.string()),
        ("n_tokens", pa.int64()),
        ("shard", pa.string()),
        ("keep", pa.bool_()),
        ("reason", pa.string()),
    ]
)
ADDS = added_names(SCHEMA)
StreamKey = tuple[str, str, str, int]  # source, language, bucket, partition


class Encode(beam.DoFn):
    """Encodes a batch of documents with one sentencepiece call and keys each by its shard stream.

    sentencepiece returns numpy buffers (no Python int per token) on one thread: Beam's workers are the
    parallelism, one core each. Ids travel as raw bytes in the shard's token dtype (uint16 when the vocabulary
    fits): Beam's coder passes bytes through as they are but pickles numpy arrays."""

    def __init__(self, model_path: str, partitions: int) -> None:
        self.model_path, self.partitions = model_path, partitions

    def setup(self) -> None:
        self.processor = spm.SentencePieceProcessor(model_file=self.model_path)
        self.dtype = token_dtype(self.processor.vocab_size())

    def process(self, batch: list[dict]) -> Iterable[tuple[StreamKey, dict]]:
        encoded = self.processor.encode([row["text"] for row in batch], return_type="numpy", num_threads=1)
        for row, ids in zip(batch, encoded, strict=True):
            key = (row["source"], base_language(row["lang"]), row["bucket"],
                   partition_of(row["doc_id"], self.partitions))
            yield key, {
                "doc_id": row["doc_id"], "input_file": row["input_file"], "location": row["location"],
                "lang": row["lang"], "ids": ids.astype(self.dtype).tobytes(),
            }


def pack(documents: list[np.ndarray], width: int, bos: int, eos: int, pad: int) -> ShardRows:
    """Concatenate [bos] doc [eos] for every document and cut into rows; the last row is padded."""
    pieces, starts, offset = [], [], 0
    for ids in documents:
        starts.append(offset)
        pieces += [np.array([bos], np.uint32), ids, np.array([eos], np.uint32)]
        offset += len(ids) + 2
    flat = np.concatenate(pieces) if pieces else np.empty(0, np.uint32)
    n_rows = -(-len(flat) // width)
    tokens = np.full(n_rows * width, pad, dtype=np.uint32)
    tokens[: len(flat)] = flat
    starts_arr = np.asarray(starts, dtype=np.int64)
    doc_starts = []
    for row in range(n_rows):
        inside = starts_arr[(starts_arr >= row * width) & (starts_arr < (row + 1) * width)] - row * width
        doc_starts.append(sorted({0, *inside.tolist()}))
    valid = np.minimum(width, len(flat) - np.arange(n_rows) * width).astype(np.int32)
    return ShardRows(tokens=tokens.reshape(n_rows, width), doc_starts=doc_starts, valid_len=valid)


INDEX, DOCS = "index", "docs"


def shuffled_order(seed: int):
    """Sort key of a seeded shuffle: a hash of (seed, doc_id), so the order depends on neither input order nor
    worker count; doc_id breaks the (unlikely) ties."""
    return lambda doc: (xxhash.xxh64_intdigest(doc["doc_id"].encode(), seed=seed), doc["doc_id"])


class PackStream(beam.DoFn):
    """Packs one stream (documents in id order, or shuffled by seed with `tokenize.shuffle`) into shards of
    `rows_per_shard` rows; emits (INDEX, shard entry) and (DOCS, document row) pairs, split by `only`."""

    def __init__(self, build_dir: Path, config: BuildConfig, tokenizer: TokenizerInfo) -> None:
        self.build_dir, self.tokenize, self.tokenizer = build_dir, config.tokenize, tokenizer
        self.seed = config.seed

    def process(self, element: tuple[StreamKey, Iterable[dict]]) -> Iterable:
        (source, lang, bucket, part), docs = element
        order = shuffled_order(self.seed) if self.tokenize.shuffle else (lambda doc: doc["doc_id"])
        docs = sorted(docs, key=order)
        dtype = token_dtype(self.tokenizer.vocab_size)
        ids = [np.frombuffer(doc["ids"], dtype=dtype) for doc in docs]
        width = self.tokenize.seq_len + 1
        rows = pack(ids, width, self.tokenizer.bos_id, self.tokenizer.eos_id,
                    self.tokenizer.pad_id)
        doc_rows = np.cumsum([0] + [len(doc_ids) + 2 for doc_ids in ids])[:-1] // width
        metadata = {"tokenizer_sha256": self.tokenizer.sha256, "source": source, "lang": lang,
                    "bucket": bucket, "dtype": dtype.name}
        schema = shard_schema(self.tokenize.seq_len, dtype, metadata)
        per_shard = self.tokenize.rows_per_shard
        for shard_no, first in enumerate(range(0, len(rows.valid_len), per_shard)):
            last = min(first + per_shard, len(rows.valid_len))
            block = ShardRows(rows.tokens[first:last].astype(dtype), rows.doc_starts[first:last],
                              rows.valid_len[first:last])
            rel = f"shards/{source}/{lang}/{bucket}/part{part:03d}-{shard_no:05d}.arrow"
            digest = write_shard(self.build_dir / rel, block, schema)
            members = [(doc, len(doc_ids)) for doc, doc_ids, row in zip(docs, ids, doc_rows, strict=True)
                       if first <= row < last]
            yield INDEX, {"path": rel, "sha256": digest, "rows": last - first, "tokens": int(block.valid_len.sum()),
                          "documents": len(members), "source": source, "lang": lang, "bucket": bucket,
                          "seq_len": self.tokenize.seq_len, "bytes": (self.build_dir / rel).stat().st_size}
            for doc, n_ids in members:
                yield DOCS, {
                    "doc_id": doc["doc_id"], "source": source, "input_file": doc["input_file"],
                    "location": doc["location"], "lang": doc["lang"], "bucket": bucket,
                    "n_tokens": n_ids + 2, "shard": rel, "keep": True, "reason": None,
                }


class WriteIndex(beam.DoFn):
    def __init__(self, build_dir: Path) -> None:
        self.build_dir = build_dir

    def process(self, entries: list[dict]) -> Iterable[None]:
        write_index(self.build_dir, entries)
        return []


def run(job: StageRun) -> StageResult:
    config, build_dir, paths, previous = job.config, job.build_dir, job.paths, job.previous
    shards_dir = build_dir / "shards"

    def build(pipeline: beam.Pipeline) -> None:
        tokenizer = load_info(build_dir)
        packed = (
            read_kept_batches(pipeline, previous, 256, config.runner)
            | "Encode" >> beam.ParDo(Encode(str(build_dir / tokenizer.path), config.tokenize.partitions_per_stream))
            | "GroupStream" >> beam.GroupByKey()
            | "Pack" >> beam.ParDo(PackStream(build_dir, config, tokenizer))
        )
        entries = packed | "IndexEntries" >> beam.FlatMap(only(INDEX))
        docs = packed | "DocRows" >> beam.FlatMap(only(DOCS))
        _ = entries | "AllEntries" >> collect() | "WriteIndex" >> beam.ParDo(WriteIndex(build_dir))
        _ = docs | "Write" >> WriteStage(paths, SCHEMA, config.num_partitions, KEPT)

    def body() -> dict:
        if shards_dir.exists():
            shutil.rmtree(shards_dir)
        run_beam(config, build)
        if not (shards_dir / INDEX_NAME).exists():  # no document to pack
            write_index(build_dir, [])
        fill_empty_partitions(paths, SCHEMA, config.num_partitions)
        return decision_counts(paths)

    return run_stage(job, body,
                     lambda: sorted(p for p in shards_dir.rglob("*") if p.is_file()))
