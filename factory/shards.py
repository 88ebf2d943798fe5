"""Packed token shard format (Arrow IPC file) and the Parquet shard index that lists every shard."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datafactory.factory.atomic import atomic_path

FORMAT_VERSION = "1"
INDEX_NAME = "index.parquet"

INDEX_SCHEMA = pa.schema(
    [
        ("path", pa.string()),  # relative to the build directory
        ("sha256", pa.string()),
        ("rows", pa.int64()),
        ("tokens", pa.int64()),  # non-padding tokens
        ("documents", pa.int64()),
        ("source", pa.string()),
        ("lang", pa.string()),
        ("bucket", pa.string()),
        ("seq_len", pa.int32()),
        ("bytes", pa.int64()),
    ]
)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def shard_schema(seq_len: int, dtype: np.dtype, metadata: dict[str, str]) -> pa.Schema:
    """One row = one training sequence of seq_len + 1 ids plus where documents start inside it."""
    return pa.schema(
        [
            ("tokens", pa.list_(pa.from_numpy_dtype(dtype), seq_len + 1)),
            ("doc_starts", pa.list_(pa.int32())),
            ("valid_len", pa.int32()),
        ],
        metadata={"datafactory_format": FORMAT_VERSION, "seq_len": str(seq_len), **metadata},
    )


@dataclass(frozen=True)
class ShardRows:
    """A block of packed rows: tokens is (rows, seq_len + 1); doc_starts[i] are offsets inside row i."""

    tokens: np.ndarray
    doc_starts: list[list[int]]
    valid_len: np.ndarray

    def to_table(self, schema: pa.Schema) -> pa.Table:
        width = self.tokens.shape[1]
        flat = pa.array(self.tokens.reshape(-1), type=schema.field("tokens").type.value_type)
        tokens = pa.FixedSizeListArray.from_arrays(flat, width)
        starts = pa.array(self.doc_starts, type=pa.list_(pa.int32()))
        valid = pa.array(self.valid_len, type=pa.int32())
        return pa.Table.from_arrays([tokens, starts, valid], schema=schema)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_shard(path: str | Path, rows: ShardRows, schema: pa.Schema) -> str:
    """Write atomically (temp name, then rename) and return the file's sha256."""
    path = Path(path)
    with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(rows.to_table(schema), max_chunksize=1024)
    return sha256_file(path)


@dataclass(frozen=True)
class Shard:
    """A memory-mapped shard: tokens as a (rows, seq_len + 1) numpy view without copying."""

    tokens: np.ndarray
    doc_starts: pa.ListArray
    valid_len: np.ndarray
    metadata: dict[str, str]

    @property
    def rows(self) -> int:
        return self.tokens.shape[0]

    def starts(self, row: int) -> list[int]:
        return self.doc_starts[row].as_py()


def read_shard(path: str | Path) -> Shard:
    reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
    table = reader.read_all().combine_chunks()
    metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    column = table.column("tokens").chunk(0) if table.num_rows else None
    width = int(metadata["seq_len"]) + 1
    if column is None:
        dtype = table.schema.field("tokens").type.value_type.to_pandas_dtype()
        tokens = np.empty((0, width), dtype=dtype)
    else:
        tokens = column.values.to_numpy(zero_copy_only=True).reshape(-1, width)
    starts = table.column("doc_starts").combine_chunks()
    valid = table.column("valid_len").to_numpy()
    return Shard(tokens=tokens, doc_starts=starts, valid_len=valid, metadata=metadata)


def write_index(build_dir: str | Path, entries: list[dict]) -> Path:
    path = Path(build_dir) / "shards" / INDEX_NAME
    ordered = sorted(entries, key=lambda entry: entry["path"])
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(ordered, schema=INDEX_SCHEMA), tmp)
    return path


def read_index(build_dir: str | Path) -> list[dict]:
    return pq.read_table(Path(build_dir) / "shards" / INDEX_NAME).to_pylist()


def verify_shards(build_dir: str | Path) -> list[str]:
    """Check every indexed shard's sha256 and row count; returns the problems found (empty if none)."""
    problems = []
    for entry in read_index(build_dir):
        path = Path(build_dir) / entry["path"]
        if not path.exists():
            problems.append(f"{entry['path']}: missing")
            continue
        if sha256_file(path) != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 differs from the index")
            continue
        if (rows := read_shard(path).rows) != entry["rows"]:
            problems.append(f"{entry['path']}: {rows} rows, index says {entry['rows']}")
    return problems
