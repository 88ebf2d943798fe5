"""Reproducible sentencepiece training, shared by the build's tokenizer and the LM-ratio quality scorer: the same
lines give the same model bytes on every run."""

from __future__ import annotations

import io
from pathlib import Path

import sentencepiece as spm

from datafactory.factory.atomic import write_bytes_atomic

# From memory into memory (a file-based run records its temporary input path inside the model, so its sha256 would
# change from run to run), one thread and the input in the order given: together they make training deterministic.
REPRODUCIBLE = {"num_threads": 1, "shuffle_input_sentence": False, "max_sentence_length": 16384, "minloglevel": 2,
                "byte_fallback": True, "hard_vocab_limit": False}


def train_model(lines: list[str], out: Path, **settings: object) -> Path:
    """Train on ``lines`` (one sentence or paragraph each) with sentencepiece ``settings``; write ``out`` atomically."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, **REPRODUCIBLE, **settings)
    return write_bytes_atomic(out, model.getvalue())
