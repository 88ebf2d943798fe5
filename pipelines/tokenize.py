"""Tokenize stage: sentencepiece in batches, then pack each source x language x bucket stream into Arrow shards.

Each upstream part is encoded into sorted runs per stream (spilled every 64 MiB of token ids); each stream is packed
from a k-way merge of its runs, a shard at a time: no worker holds more than a shard and a batch per run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from itertools import chain
from operator import itemgetter
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
    RUN_SUFFIX,
    StageResult,
    StageRun,
    WriteStage,
    added_names,
    collect,
    decision_counts,
    each_part,
    fill_empty_partitions,
    iter_kept_batches,
    merge_runs,
    only,
    partition_of,
    run_beam,
    run_stage,
    write_run,
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
        ("first_row", pa.int32()),  # the shard row holding the document's first token (its bos)
        ("offset", pa.int32()),  # that token's position in the row: (shard, row, position) -> doc_id, no re-tokenizing
        ("keep", pa.bool_()),
        ("reason", pa.string()),
    ]
)
ADDS = added_names(SCHEMA)
StreamKey = tuple[str, str, str, int]  # source, language, bucket, partition


SPILL_TOKEN_BYTES = 64 << 20  # token ids an encoder holds before writing them out as sorted runs, one per stream
RUN_SCHEMA = pa.schema([("doc_id", pa.string()), ("input_file", pa.string()), ("location", pa.string()),
                        ("lang", pa.string()), ("ids", pa.binary())])


def shuffled_order(seed: int):
    """Sort key of a seeded shuffle: a hash of (seed, doc_id), so the order depends on neither input order nor
    worker count; doc_id breaks the (unlikely) ties."""
    return lambda doc: (xxhash.xxh64_intdigest(doc["doc_id"].encode(), seed=seed), doc["doc_id"])


def stream_order(config: BuildConfig):
    """The order documents are packed in within a stream: by id, or shuffled by seed with `tokenize.shuffle`."""
    return shuffled_order(config.seed) if config.tokenize.shuffle else itemgetter("doc_id")


class EncodePart(beam.DoFn):
    """Encodes one upstream part, a batch per sentencepiece call, into sorted runs per shard stream; emits
    (stream, run path). Ids are stored as raw bytes in the shard's token dtype (uint16 when the vocabulary fits).

    sentencepiece runs on one thread: Beam's workers are the parallelism, one core each."""

    def __init__(self, model_path: str, config: BuildConfig, spill_dir: Path) -> None:
        self.model_path, self.config, self.spill_dir = model_path, config, spill_dir

    def setup(self) -> None:
        self.processor = spm.SentencePieceProcessor(model_file=self.model_path)
        self.dtype = token_dtype(self.processor.vocab_size())
        self.order = stream_order(self.config)

    def process(self, upstream_part: str) -> Iterable[tuple[StreamKey, str]]:
        partitions = self.config.tokenize.partitions_per_stream
        held: dict[StreamKey, list[dict]] = {}
        held_bytes, run = 0, 0
        for batch in iter_kept_batches(Path(upstream_part), 256):
            encoded = self.processor.encode([row["text"] for row in batch], return_type="numpy", num_threads=1)
            for row, ids in zip(batch, encoded, strict=True):
                key = (row["source"], base_language(row["lang"]), row["bucket"],
                       partition_of(row["doc_id"], partitions))
                data = ids.astype(self.dtype).tobytes()
                held.setdefault(key, []).append({"doc_id": row["doc_id"], "input_file": row["input_file"],
                                                 "location": row["location"], "lang": row["lang"], "ids": data})
                held_bytes += len(data)
            if held_bytes >= SPILL_TOKEN_BYTES:
                yield from self.spill(held, Path(upstream_part).stem, run)
                held, held_bytes, run = {}, 0, run + 1
        yield from self.spill(held, Path(upstream_part).stem, run)

    def spill(self, held: dict[StreamKey, list[dict]], part: str, run: int) -> Iterable[tuple[StreamKey, str]]:
        for key, docs in sorted(held.items()):
            path = self.spill_dir / f"{xxhash.xxh64_hexdigest(repr(key).encode())}-{part}-{run:05d}{RUN_SUFFIX}"
            yield key, write_run(docs, self.order, RUN_SCHEMA, path)


def rows_of(flat: np.ndarray, starts: list[int], width: int, pad: int) -> ShardRows:
    """Cut a run of tokens into rows of ``width`` (the last padded); each row's document starts, 0 always among them."""
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


def pack(documents: list[np.ndarray], width: int, bos: int, eos: int, pad: int) -> ShardRows:
    """Concatenate [bos] doc [eos] for every document and cut into rows; the last row is padded."""
    pieces, starts, offset = [], [], 0
    for ids in documents:
        starts.append(offset)
        pieces += [np.array([bos], np.uint32), ids, np.array([eos], np.uint32)]
        offset += len(ids) + 2
    flat = np.concatenate(pieces) if pieces else np.empty(0, np.uint32)
    return rows_of(flat, starts, width, pad)


class Packer:
    """Packs a stream's documents, arriving in order, into blocks of ``rows`` rows: cut where packing the whole stream
    at once (``pack``) would cut them, holding at most one block and one document. A document belongs to the block
    its first token is in."""

    def __init__(self, width: int, rows: int, bos: int, eos: int, pad: int) -> None:
        self.width, self.block, self.bos, self.eos, self.pad = width, rows * width, bos, eos, pad
        self.pieces: list[np.ndarray] = []
        self.members: list[tuple[dict, int, int]] = []  # (document, its token count, its start in the buffer)
        self.held = 0

    def add(self, doc: dict, ids: np.ndarray) -> Iterable[tuple[ShardRows, list[tuple[dict, int, int]]]]:
        self.members.append((doc, len(ids), self.held))
        self.pieces += [np.array([self.bos], np.uint32), ids.astype(np.uint32), np.array([self.eos], np.uint32)]
        self.held += len(ids) + 2
        while self.held >= self.block:
            yield self.cut(self.block)

    def finish(self) -> Iterable[tuple[ShardRows, list[tuple[dict, int, int]]]]:
        if self.held:
            yield self.cut(self.held)

    def cut(self, size: int) -> tuple[ShardRows, list[tuple[dict, int, int]]]:
        """The first `size` tokens as rows, with their documents: (document, token count, start in the block)."""
        flat = np.concatenate(self.pieces)
        inside = [member for member in self.members if member[2] < size]
        rows = rows_of(flat[:size], [start for _, _, start in inside], self.width, self.pad)
        rest = flat[size:]
        self.pieces = [rest] if len(rest) else []
        self.members = [(doc, count, start - size) for doc, count, start in self.members[len(inside):]]
        self.held = len(rest)
        return rows, inside


INDEX, DOCS = "index", "docs"


class PackStream(beam.DoFn):
    """Packs one stream from its sorted runs (k-way merged, in stream order) into shards of `rows_per_shard` rows;
    emits (INDEX, shard entry) and (DOCS, document row) pairs, split by `only`."""

    def __init__(self, build_dir: Path, config: BuildConfig, tokenizer: TokenizerInfo) -> None:
        self.build_dir, self.config, self.tokenize, self.tokenizer = build_dir, config, config.tokenize, tokenizer

    def process(self, element: tuple[StreamKey, Iterable[str]]) -> Iterable:
        (source, lang, bucket, part), runs = element
        dtype = token_dtype(self.tokenizer.vocab_size)
        metadata = {"tokenizer_sha256": self.tokenizer.sha256, "source": source, "lang": lang,
                    "bucket": bucket, "dtype": dtype.name}
        schema = shard_schema(self.tokenize.seq_len, dtype, metadata)
        packer = Packer(self.tokenize.seq_len + 1, self.tokenize.rows_per_shard, self.tokenizer.bos_id,
                        self.tokenizer.eos_id, self.tokenizer.pad_id)
        docs = merge_runs(runs, stream_order(self.config), ["doc_id"])
        blocks = (block for doc in docs for block in packer.add(doc, np.frombuffer(doc["ids"], dtype=dtype)))
        for shard_no, (rows, members) in enumerate(chain(blocks, packer.finish())):
            block = ShardRows(rows.tokens.astype(dtype), rows.doc_starts, rows.valid_len)
            rel = f"shards/{source}/{lang}/{bucket}/part{part:03d}-{shard_no:05d}.arrow"
            digest = write_shard(self.build_dir / rel, block, schema)
            yield INDEX, {"path": rel, "sha256": digest, "rows": len(block.valid_len),
                          "tokens": int(block.valid_len.sum()), "documents": len(members), "source": source,
                          "lang": lang, "bucket": bucket, "seq_len": self.tokenize.seq_len,
                          "bytes": (self.build_dir / rel).stat().st_size}
            for doc, n_ids, start in members:
                first_row, offset = divmod(start, packer.width)
                yield DOCS, {
                    "doc_id": doc["doc_id"], "source": source, "input_file": doc["input_file"],
                    "location": doc["location"], "lang": doc["lang"], "bucket": bucket,
                    "n_tokens": n_ids + 2, "shard": rel, "first_row": first_row, "offset": offset,
                    "keep": True, "reason": None,
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

    spill_dir = paths.stage_dir / "_runs"

    def build(pipeline: beam.Pipeline) -> None:
        tokenizer = load_info(build_dir)
        packed = (
            each_part(pipeline, previous, config.runner)
            | "Encode" >> beam.ParDo(EncodePart(str(build_dir / tokenizer.path), config, spill_dir))
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
        shutil.rmtree(spill_dir, ignore_errors=True)
        if not (shards_dir / INDEX_NAME).exists():  # no document to pack
            write_index(build_dir, [])
        fill_empty_partitions(paths, SCHEMA, config.num_partitions)
        return decision_counts(paths)

    return run_stage(job, body,
                     lambda: sorted(p for p in shards_dir.rglob("*") if p.is_file()))
