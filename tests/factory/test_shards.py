"""Shards: a tokenizer round trip through pack + Arrow IPC, readers outside the project, and corruption detection."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import sentencepiece as spm
from typer.testing import CliRunner

from datafactory.app.cli import app
from datafactory.factory.config import TokenizerConfig
from datafactory.factory.shards import (
    read_shard,
    sha256_file,
    shard_schema,
    token_dtype,
    verify_shards,
    write_index,
    write_shard,
)
from datafactory.pipelines.tokenize import pack
from datafactory.pipelines.tokenizer import BOS_ID, EOS_ID, PAD_ID, train_sentencepiece

DOCS = [
    "The committee published its report on regional water supplies in the spring.",
    "研究人员花了两年时间研究区域水资源。",
    "Short one.",
    "A longer document that will certainly be split across several packed rows of the shard, because rows hold "
    "only a few dozen tokens each in this test, and a document does not have to fit in one row.",
]
SEQ_LEN = 16


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    """A one-shard build: a tokenizer trained on the documents, the documents packed, the index written."""
    root = tmp_path_factory.mktemp("shards")
    model = root / "tokenizer.model"
    train_sentencepiece([*DOCS, *(f"{doc} {i}" for doc in DOCS for i in range(50))], model,
                        TokenizerConfig(vocab_size=400))
    processor = spm.SentencePieceProcessor(model_file=str(model))
    ids = [np.asarray(row, np.uint32) for row in processor.encode(DOCS)]
    rows = pack(ids, SEQ_LEN + 1, BOS_ID, EOS_ID, PAD_ID)
    dtype = token_dtype(processor.vocab_size())
    schema = shard_schema(SEQ_LEN, dtype, {"tokenizer_sha256": sha256_file(model), "source": "web", "lang": "en",
                                           "bucket": "high", "dtype": dtype.name})
    rel = "shards/web/en/high/part000-00000.arrow"
    rows = type(rows)(rows.tokens.astype(dtype), rows.doc_starts, rows.valid_len)
    digest = write_shard(root / rel, rows, schema)
    write_index(root, [{"path": rel, "sha256": digest, "rows": len(rows.valid_len), "tokens": int(rows.valid_len.sum()),
                        "documents": len(DOCS), "source": "web", "lang": "en", "bucket": "high", "seq_len": SEQ_LEN,
                        "bytes": (root / rel).stat().st_size}])
    return root


def shard_path(build: Path) -> Path:
    return build / "shards/web/en/high/part000-00000.arrow"


def test_decode_of_packed_rows_gives_the_documents_back(build):
    shard = read_shard(shard_path(build))
    assert shard.tokens.dtype == np.uint16 and shard.tokens.shape[1] == SEQ_LEN + 1
    flat = np.concatenate([shard.tokens[row, : shard.valid_len[row]] for row in range(shard.rows)]).tolist()
    processor = spm.SentencePieceProcessor(model_file=str(build / "tokenizer.model"))
    pieces, current = [], None
    for token in flat:
        if token == BOS_ID:
            current = []
        elif token == EOS_ID:
            pieces.append(processor.decode(current))
            current = None
        else:
            current.append(token)
    assert pieces == DOCS
    # every row's doc_starts point at the BOS tokens inside it (0 is always listed: the row's first token)
    for row in range(shard.rows):
        bos = [int(i) for i in np.flatnonzero(shard.tokens[row, : shard.valid_len[row]] == BOS_ID)]
        assert sorted({0, *bos}) == shard.starts(row)


def test_plain_pyarrow_duckdb_and_hugging_face_read_the_shards(build):
    path = shard_path(build)
    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()  # zero-copy, memory-mapped
    assert table.schema.metadata[b"source"] == b"web" and table.num_rows == read_shard(path).rows
    index = build / "shards" / "index.parquet"
    (rows, tokens), = duckdb.sql(f"SELECT sum(rows), sum(tokens) FROM '{index}' WHERE lang = 'en'").fetchall()
    assert rows == table.num_rows and tokens == sum(table.column("valid_len").to_pylist())
    datasets = pytest.importorskip("datasets")  # in the dev extra, so present in CI
    dataset = datasets.Dataset(table)
    assert dataset.num_rows == table.num_rows and len(dataset[0]["tokens"]) == SEQ_LEN + 1


def test_a_corrupted_shard_is_detected(build, tmp_path):
    import shutil

    copy = tmp_path / "build"
    shutil.copytree(build, copy)
    assert verify_shards(copy) == []
    data = bytearray(shard_path(copy).read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard_path(copy).write_bytes(bytes(data))
    problems = verify_shards(copy)
    assert problems == ["shards/web/en/high/part000-00000.arrow: sha256 differs from the index"]
    result = CliRunner().invoke(app, ["shards", "verify", str(copy)])
    assert result.exit_code == 2 and "sha256 differs" in result.output
    shard_path(copy).unlink()
    assert verify_shards(copy) == ["shards/web/en/high/part000-00000.arrow: missing"]
