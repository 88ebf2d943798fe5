"""A hand-made build for planner tests: shard files, index, tokenizer and quality/tokenize stage files, no pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from datafactory.factory.catalog import build_catalog
from datafactory.factory.shards import sha256_file, write_index

SEQ_LEN = 16

# (source, lang, bucket, tokens, quality_score of its documents)
SHARDS = [
    ("web", "en", "high", 1_000, 0.9),
    ("web", "en", "mid", 4_000, 0.5),
    ("web", "en", "low", 5_000, 0.1),
    ("web", "sw", "high", 100, 0.8),
    ("web", "sw", "mid", 300, 0.5),
    ("news", "en", "high", 600, 0.95),
    ("news", "en", "mid", 1_400, 0.6),
    ("sft", "en", "low", 200, 0.2),
]


def make_build(root: Path, shards: list[tuple] = SHARDS) -> Path:
    """Write a build directory with one shard file per row of `shards` and a fresh catalog."""
    tokenizer = root / "tokenizer" / "tokenizer.model"
    tokenizer.parent.mkdir(parents=True)
    tokenizer.write_bytes(b"hand-made tokenizer\n")
    info = {"path": "tokenizer/tokenizer.model", "sha256": sha256_file(tokenizer), "vocab_size": 100,
            "bos_id": 1, "eos_id": 2, "pad_id": 3, "bytes_per_token": {"en": 4.0}}
    (tokenizer.parent / "tokenizer.json").write_text(json.dumps(info), encoding="utf-8")
    entries, quality, tokenize = [], [], []
    for source, lang, bucket, tokens, score in shards:
        rel = f"shards/{source}/{lang}/{bucket}/part000-00000.arrow"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(f"{rel} {tokens}\n".encode())  # the planner reads the index, not the rows
        rows = -(-tokens // SEQ_LEN)
        entries.append({"path": rel, "sha256": sha256_file(root / rel), "rows": rows, "tokens": tokens,
                        "documents": 2, "source": source, "lang": lang, "bucket": bucket, "seq_len": SEQ_LEN,
                        "bytes": tokens})
        for half in range(2):  # two documents per shard, same score: the shard's mean is known
            doc_id = f"{rel}#{half}"
            quality.append({"doc_id": doc_id, "text": "", "lang": lang, "quality_score": score, "bucket": bucket})
            tokenize.append({"doc_id": doc_id, "shard": rel, "n_tokens": tokens // 2, "keep": True})
    write_index(root, entries)
    for stage, rows in (("quality", quality), ("tokenize", tokenize)):
        (root / "stages" / stage).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), root / "stages" / stage / "part-00000.parquet")
    build_catalog(root)
    return root
