"""A tiny synthetic build for trainer tests: tokenizer bytes, packed shards and stable/anneal manifests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datafactory.factory.manifest import dump_manifest
from datafactory.factory.shards import ShardRows, sha256_file, shard_schema, write_shard

VOCAB, PAD, BOS, EOS = 64, 0, 1, 2
FIRST_WORD = 3  # ids below are special


@dataclass
class Corpus:
    root: Path
    stable: Path
    anneal: Path
    seq_len: int


def make_rows(rng: np.random.Generator, rows: int, seq_len: int, strides: tuple[int, ...]) -> ShardRows:
    """Documents are BOS, then an arithmetic run of word ids (stride per document), then EOS; packed
    greedily, a document that does not fit continues in the next row; the last row is padded."""
    width = seq_len + 1
    stream: list[tuple[int, bool]] = []  # (token, starts a document)
    while len(stream) < rows * width:
        stride, start = int(rng.choice(strides)), int(rng.integers(FIRST_WORD, VOCAB))
        words = [FIRST_WORD + (start - FIRST_WORD + stride * i) % (VOCAB - FIRST_WORD)
                 for i in range(int(rng.integers(4, 20)))]
        stream += [(BOS, True)] + [(word, False) for word in words] + [(EOS, False)]
    tokens = np.full((rows, width), PAD, dtype=np.uint16)
    doc_starts, valid = [], np.full(rows, width, dtype=np.int32)
    for row in range(rows):
        chunk = stream[row * width:(row + 1) * width]
        if row == rows - 1:  # a padded tail, as a packer leaves at the end of a shard
            chunk = chunk[: width - 7]
            valid[row] = len(chunk)
        tokens[row, : len(chunk)] = [token for token, _ in chunk]
        doc_starts.append(sorted({0} | {i for i, (_, first) in enumerate(chunk) if first}))
    return ShardRows(tokens=tokens, doc_starts=doc_starts, valid_len=valid)


def build_corpus(
    root: Path,
    seq_len: int = 32,
    seed: int = 11,
    stable_weights: dict[str, float] | None = None,
    anneal_weights: dict[str, float] | None = None,
    warmup_tokens: int = 256,
    decay_start_tokens: int = 2048,
    decay_tokens: int = 1024,
    decay_shape: str = "linear",
) -> Corpus:
    stable_weights = stable_weights or {"web": 0.7, "code": 0.3}
    anneal_weights = anneal_weights or {"web": 0.4, "hq": 0.6}
    tokenizer = root / "tokenizer" / "tok.model"
    tokenizer.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.write_bytes(b"synthetic tokenizer for trainer tests\n")
    tok_sha = sha256_file(tokenizer)
    layout = {"web": [(40, (1, 2)), (24, (1, 2))], "code": [(32, (5,))], "hq": [(24, (3,))]}
    rng = np.random.default_rng(seed)
    shards = {}
    for name, parts in layout.items():
        shards[name] = []
        for index, (rows, strides) in enumerate(parts):
            block = make_rows(rng, rows, seq_len, strides)
            rel = f"shards/{name}-{index:03d}.arrow"
            schema = shard_schema(seq_len, np.dtype(np.uint16), {"source": name, "tokenizer_sha256": tok_sha})
            digest = write_shard(root / rel, block, schema)
            shards[name].append({"path": rel, "sha256": digest, "rows": rows,
                                 "tokens": int(block.valid_len.sum())})
    schedule = {"total_tokens": decay_start_tokens + decay_tokens, "warmup_tokens": warmup_tokens,
                "decay_start_tokens": decay_start_tokens, "decay_tokens": decay_tokens, "decay_shape": decay_shape}

    def manifest(phase: str, weights: dict[str, float], budget: int) -> dict:
        sources = []
        for name, weight in weights.items():
            available = sum(shard["tokens"] for shard in shards[name])
            planned = int(budget * weight)
            sources.append({"name": name, "weight": weight, "available_tokens": available,
                            "planned_tokens": planned, "epochs": planned / available, "shards": shards[name]})
        return {
            "format_version": 1, "phase": phase, "root": "..", "policy": "test",
            "tokenizer": {"path": "tokenizer/tok.model", "sha256": tok_sha, "vocab_size": VOCAB,
                          "bos_id": BOS, "eos_id": EOS, "pad_id": PAD},
            "seq_len": seq_len, "seed": seed, "token_budget": budget, "lr_schedule": schedule, "sources": sources,
        }

    stable = manifest("stable", stable_weights, decay_start_tokens)
    stable["next_phase"] = "anneal.json"
    anneal = manifest("anneal", anneal_weights, decay_tokens)
    stable_path = dump_manifest(stable, root / "manifests" / "stable.json")
    anneal_path = dump_manifest(anneal, root / "manifests" / "anneal.json")
    return Corpus(root=root, stable=stable_path, anneal=anneal_path, seq_len=seq_len)


def read_metrics(path: Path) -> list[dict]:
    """The lines of a run's metrics.jsonl."""
    return [json.loads(line) for line in path.read_text().splitlines()]
