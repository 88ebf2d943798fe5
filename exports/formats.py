"""One writer per target stack, each taking a source's documents (token arrays, `[bos] ids [eos]`) and writing them
in that stack's own format: Megatron's indexed dataset (.bin/.idx), MosaicML streaming's MDS, litdata's chunks (by
litdata's own writer), and Parquet that Hugging Face `datasets` loads. Each returns the files it wrote, relative to the
export directory."""

from __future__ import annotations

import importlib
import json
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datafactory.factory.atomic import atomic_path
from datafactory.factory.errors import UserError

MEGATRON_HEADER = b"MMIDIDX\x00\x00"  # Megatron's memory-mapped indexed dataset, index version 1
MEGATRON_DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}  # its DType enum's codes
HF_ROWS_PER_FILE = 100_000
CHUNK_BYTES = 64 << 20  # MDS shard / litdata chunk size


class MissingLibrary(UserError, RuntimeError):
    """The target's own library, needed to write its format, is not installed."""


def require(module: str, extra: str = "export") -> object:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingLibrary(f"this export format is written by `{module.split('.')[0]}`, which is not installed: "
                             f"pip install 'datafactory-corpus[{extra}]'") from None


def megatron_dtype(dtype: np.dtype) -> np.dtype:
    """uint16 where the ids fit, else int32 (Megatron has no uint32; ids stay below 2^31)."""
    return np.dtype(np.uint16) if dtype == np.uint16 else np.dtype(np.int32)


def write_megatron(documents: Iterable[np.ndarray], out: Path, name: str, dtype: np.dtype) -> list[str]:
    """`name.bin` (the tokens, document after document) and `name.idx` (header, version, dtype code, sequence and
    document counts, then every sequence's length, its byte offset, and the document index 0..n): one sequence per
    document, as Megatron's preprocess_data writes them."""
    dtype = megatron_dtype(dtype)
    lengths: list[int] = []
    with atomic_path(out / f"{name}.bin") as tmp, open(tmp, "wb") as data:
        for document in documents:
            data.write(document.astype(dtype, copy=False).tobytes())
            lengths.append(len(document))
    sizes = np.asarray(lengths, dtype=np.int32)
    pointers = np.concatenate([[0], np.cumsum(sizes.astype(np.int64) * dtype.itemsize)[:-1]]).astype(np.int64) \
        if len(sizes) else np.empty(0, np.int64)
    document_index = np.arange(len(sizes) + 1, dtype=np.int64)
    with atomic_path(out / f"{name}.idx") as tmp, open(tmp, "wb") as index:
        index.write(MEGATRON_HEADER + struct.pack("<Q", 1) + struct.pack("<B", MEGATRON_DTYPE_CODES[dtype]))
        index.write(struct.pack("<Q", len(sizes)) + struct.pack("<Q", len(document_index)))
        index.write(sizes.tobytes() + pointers.tobytes() + document_index.tobytes())
    return [f"{name}.bin", f"{name}.idx"]


MDS_SHAPE_UINT32 = 2  # shape stored as uint32 (the encoding's code 2)


def _mds_sample(document: np.ndarray) -> bytes:
    """One sample of a single `tokens` column, encoding `ndarray:<dtype>` (static dtype, dynamic shape): the column's
    size (uint32, as every variable-size column has), then ndim << 2 | shape dtype, the shape, and the values."""
    body = bytes([(1 << 2) | MDS_SHAPE_UINT32]) + np.array([len(document)], np.uint32).tobytes() + document.tobytes()
    return np.array([len(body)], np.uint32).tobytes() + body


def _mds_shard(samples: list[bytes], config: bytes) -> bytes:
    """[sample count: uint32] [sample offsets from the file start: uint32 x (count + 1)] [config JSON] [samples]."""
    start = 4 + 4 * (len(samples) + 1) + len(config)
    offsets = start + np.concatenate([[0], np.cumsum([len(sample) for sample in samples])])
    return np.uint32(len(samples)).tobytes() + offsets.astype(np.uint32).tobytes() + config + b"".join(samples)


def write_mds(documents: Iterable[np.ndarray], out: Path, name: str, dtype: np.dtype) -> list[str]:
    """`name/index.json` + `name/shard.NNNNN.mds`: MosaicML streaming's MDS format (version 2, uncompressed), one
    sample per document with column `tokens`. Written to the published format here: the last mosaicml-streaming
    release needs transformers < 5 and so huggingface-hub < 1, which cannot share an environment with datasets 5."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    config = {"column_encodings": [f"ndarray:{dtype.name}"], "column_names": ["tokens"], "column_sizes": [None],
              "compression": None, "format": "mds", "hashes": [], "size_limit": CHUNK_BYTES, "version": 2}
    config_bytes = json.dumps(config, sort_keys=True).encode()
    shards: list[dict] = []
    samples: list[bytes] = []

    def flush() -> None:
        basename = f"shard.{len(shards):05d}.mds"
        data = _mds_shard(samples, config_bytes)
        with atomic_path(folder / basename) as tmp:
            tmp.write_bytes(data)
        shards.append(config | {"raw_data": {"basename": basename, "bytes": len(data), "hashes": {}},
                                "samples": len(samples), "zip_data": None})
        samples.clear()

    held = 0
    for document in documents:
        sample = _mds_sample(document.astype(dtype, copy=False))
        if samples and held + len(sample) > CHUNK_BYTES:
            flush()
            held = 0
        samples.append(sample)
        held += len(sample)
    if samples:
        flush()
    with atomic_path(folder / "index.json") as tmp:
        tmp.write_text(json.dumps({"shards": shards, "version": 2}, sort_keys=True), encoding="utf-8")
    return [f"{name}/index.json", *(f"{name}/{shard['raw_data']['basename']}" for shard in shards)]


def write_litdata(documents: Iterable[np.ndarray], out: Path, name: str, dtype: np.dtype) -> list[str]:
    """`name/` of litdata chunks for its TokensLoader: the documents' ids back to back (as litdata's own
    `optimize(..., item_loader=TokensLoader())` lays them), read in blocks of any length."""
    torch = require("torch", extra="train")
    writer_module = require("litdata.streaming.writer")
    loaders = require("litdata.streaming.item_loader")
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    torch_dtype = {np.dtype(np.uint16): torch.uint16, np.dtype(np.uint32): torch.uint32}[dtype]
    writer = writer_module.BinaryWriter(str(folder), chunk_bytes=CHUNK_BYTES, item_loader=loaders.TokensLoader())
    for i, document in enumerate(documents):
        writer.add_item(i, torch.from_numpy(document.astype(dtype, copy=False)).to(torch_dtype))
    writer.done()
    writer.merge()
    return sorted(str(path.relative_to(out)) for path in folder.iterdir())


def write_hf(documents: Iterable[np.ndarray], out: Path, name: str, dtype: np.dtype) -> list[str]:
    """`name/data-NNNNN.parquet`: one row per document, `input_ids` (list of the ids) and `source`."""
    schema = pa.schema([("input_ids", pa.list_(pa.from_numpy_dtype(dtype))), ("source", pa.string())])
    written, batch = [], []

    def flush() -> None:
        relative = f"{name}/data-{len(written):05d}.parquet"
        table = pa.table({"input_ids": pa.array([d.astype(dtype, copy=False) for d in batch], type=schema[0].type),
                          "source": pa.array([name] * len(batch), pa.string())}, schema=schema)
        with atomic_path(out / relative) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        written.append(relative)
        batch.clear()

    for document in documents:
        batch.append(document)
        if len(batch) == HF_ROWS_PER_FILE:
            flush()
    if batch or not written:
        flush()
    return written


WRITERS = {"megatron": write_megatron, "mds": write_mds, "litdata": write_litdata, "hf": write_hf}
