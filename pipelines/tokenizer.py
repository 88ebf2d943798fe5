"""Tokenizer step: trains a sentencepiece model on a deterministic sample of kept text (or adopts a given one).

Bound: the sample (config `tokenize.tokenizer.sample_chars`) is gathered in the driver process.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sentencepiece as spm
import xxhash

from factory.config import BuildConfig, TokenizerConfig
from factory.shards import sha256_file
from pipelines.common import StagePaths, StageResult, run_stage

STAGE = "tokenizer"
MODEL_NAME = "tokenizer.model"
INFO_NAME = "tokenizer.json"
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3


@dataclass(frozen=True)
class TokenizerInfo:
    path: str  # relative to the build dir
    sha256: str
    vocab_size: int
    bos_id: int
    eos_id: int
    pad_id: int


def tokenizer_dir(build_dir: Path) -> Path:
    return build_dir / "tokenizer"


def load_info(build_dir: Path) -> TokenizerInfo:
    return TokenizerInfo(**json.loads((tokenizer_dir(build_dir) / INFO_NAME).read_text(encoding="utf-8")))


def sample_ids(files: list[Path], budget_chars: int, seed: int) -> set[str]:
    """Ids of a hash-ordered sample of kept documents, reading only ids and lengths."""
    candidates = []
    for path in files:
        table = pq.read_table(path, columns=["doc_id", "text", "keep"]).filter(pc.field("keep"))
        lengths = pc.utf8_length(table["text"]).to_pylist()
        for doc_id, length in zip(table["doc_id"].to_pylist(), lengths, strict=True):
            candidates.append((xxhash.xxh64_intdigest(f"{seed}:{doc_id}".encode()), doc_id, length))
    chosen, used = set(), 0
    for _, doc_id, length in sorted(candidates):
        if used >= budget_chars:
            break
        chosen.add(doc_id)
        used += length
    return chosen


def sample_lines(files: list[Path], chosen: set[str]) -> list[str]:
    """One paragraph per line, documents in id order, so training input is the same on every run."""
    paragraphs = []
    for path in files:
        table = pq.read_table(path, columns=["doc_id", "text"])
        mask = pc.is_in(table["doc_id"], value_set=pa.array(sorted(chosen), type=pa.string()))
        for _, text in sorted(zip(*table.filter(mask).to_pydict().values(), strict=True)):
            paragraphs += [line.strip() for line in text.split("\n") if line.strip()]
    return paragraphs


def train_sentencepiece(lines: list[str], out: Path, config: TokenizerConfig) -> None:
    """Trained from memory into memory: a file-based run records its temporary input path inside the model,
    which would change the model's sha256 (and so every shard's metadata) from build to build."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=config.vocab_size,
        model_type=config.model_type,
        character_coverage=config.character_coverage,
        byte_fallback=True,
        split_digits=True,
        unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID,
        hard_vocab_limit=False,
        num_threads=1,  # one thread keeps the trained model byte-identical across runs
        shuffle_input_sentence=False,
        max_sentence_length=16384,
        minloglevel=2,
    )
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(model.getvalue())
    os.replace(tmp, out)


def describe(build_dir: Path) -> TokenizerInfo:
    model = tokenizer_dir(build_dir) / MODEL_NAME
    processor = spm.SentencePieceProcessor(model_file=str(model))
    info = TokenizerInfo(
        path=str(model.relative_to(build_dir)), sha256=sha256_file(model), vocab_size=processor.vocab_size(),
        bos_id=processor.bos_id(), eos_id=processor.eos_id(), pad_id=processor.pad_id(),
    )
    target = tokenizer_dir(build_dir) / INFO_NAME
    target.write_text(json.dumps(info.__dict__, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return info


def run(config: BuildConfig, build_dir: Path) -> StageResult:
    paths, upstream = StagePaths(build_dir, STAGE), StagePaths(build_dir, "quality")
    settings = config.tokenize.tokenizer
    out_dir = tokenizer_dir(build_dir)

    def body() -> dict:
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        if settings.model:
            shutil.copyfile(settings.model, out_dir / MODEL_NAME)
            counts = {"trained": False}
        else:
            files = upstream.parts()
            chosen = sample_ids(files, settings.sample_chars, config.seed)
            lines = sample_lines(files, chosen)
            train_sentencepiece(lines, out_dir / MODEL_NAME, settings)
            counts = {"trained": True, "sample_documents": len(chosen), "sample_lines": len(lines)}
        return counts | {"vocab_size": describe(build_dir).vocab_size}

    return run_stage(config, paths, upstream, None, body, lambda: sorted(out_dir.glob("tokenizer.*")))
