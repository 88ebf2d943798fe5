"""A synthetic build for sandbox tests: real packed shards, an index and a tokenizer record. The target set `val` is
held out whole; of the training sources only `helper` shares its pattern (stride 3), so more helper means lower loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from datafactory.factory.catalog import build_catalog
from datafactory.factory.shards import sha256_file, shard_schema, write_index, write_shard
from support.synthetic import BOS, EOS, PAD, VOCAB, make_rows

SEQ_LEN = 32
ROWS = 64
# source -> (strides of its documents, buckets of its shards); every source has a high shard for the anneal's top pool
SOURCES = {
    "web": ((1, 2), ("high", "mid", "mid")),
    "code": ((5,), ("high", "mid")),
    "helper": ((3,), ("high", "mid")),
    "val": ((3,), ("high", "mid")),
}

POLICY = """
name: synthetic
sandbox:
  targets:
    val: {source: val}
  heldout_fraction: 1.0
  runs: 8
  concentration: 1.0
  proxy_tokens: 10240      # 40 steps of 8 x 32 tokens
  batch_size: 8
  eval_tokens: 4096
  models:
    - {dim: 32, n_layers: 1, n_heads: 2, n_kv_heads: 1}
    - {dim: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2}
  samples: 4000
  top_k: 40
"""


def make_sandbox_build(root: Path, seed: int = 5) -> Path:
    tokenizer = root / "tokenizer" / "tokenizer.model"
    tokenizer.parent.mkdir(parents=True)
    tokenizer.write_bytes(b"synthetic tokenizer for sandbox tests\n")
    tok_sha = sha256_file(tokenizer)
    info = {"path": "tokenizer/tokenizer.model", "sha256": tok_sha, "vocab_size": VOCAB, "bos_id": BOS,
            "eos_id": EOS, "pad_id": PAD}
    (tokenizer.parent / "tokenizer.json").write_text(json.dumps(info), encoding="utf-8")
    rng = np.random.default_rng(seed)
    entries = []
    for source, (strides, buckets) in SOURCES.items():
        for part, bucket in enumerate(buckets):
            block = make_rows(rng, ROWS, SEQ_LEN, strides)
            rel = f"shards/{source}/en/{bucket}/part{part:03d}-00000.arrow"
            schema = shard_schema(SEQ_LEN, np.dtype(np.uint16), {"source": source, "tokenizer_sha256": tok_sha,
                                                                   "bucket": bucket})
            digest = write_shard(root / rel, block, schema)
            entries.append({"path": rel, "sha256": digest, "rows": ROWS, "tokens": int(block.valid_len.sum()),
                            "documents": sum(len(starts) for starts in block.doc_starts), "source": source,
                            "lang": "en", "bucket": bucket, "seq_len": SEQ_LEN,
                            "bytes": (root / rel).stat().st_size})
    write_index(root, entries)
    build_catalog(root)
    return root


def write_policy(path: Path, text: str = POLICY) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
