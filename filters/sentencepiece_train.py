"""Reproducible sentencepiece training, shared by the build's tokenizer and the LM-ratio quality scorer: the same
lines give the same model bytes on every run."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from datafactory.factory.atomic import write_bytes_atomic

# From memory into memory (a file-based run records its temporary input path inside the model, so its sha256 would
# change from run to run), one thread and the input in the order given: together they make training deterministic.
REPRODUCIBLE = {"num_threads": 1, "shuffle_input_sentence": False, "max_sentence_length": 16384, "minloglevel": 2,
                "byte_fallback": True, "hard_vocab_limit": False}


# The trainer runs in a fresh interpreter (as fastText's does, filters.ftmodel): the gigabytes it allocates on a large
# sample go back to the system when it exits, instead of staying in the build's process for every later stage.
_TRAIN_SCRIPT = """
import io, json, sys
import sentencepiece as spm
job = json.loads(sys.argv[1])
with open(job["lines"], encoding="utf-8") as lines:
    sentences = [json.loads(line) for line in lines]
model = io.BytesIO()
spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, **job["settings"])
with open(job["out"], "wb") as out:
    out.write(model.getvalue())
"""


def train_model(lines: list[str], out: Path, **settings: object) -> Path:
    """Train on ``lines`` (one sentence or paragraph each) with sentencepiece ``settings``; write ``out`` atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as work:
        sentences, model = Path(work) / "lines.jsonl", Path(work) / "model"
        with open(sentences, "w", encoding="utf-8") as file:
            file.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        job = {"lines": str(sentences), "out": str(model), "settings": {**REPRODUCIBLE, **settings}}
        done = subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT, json.dumps(job)], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise RuntimeError(f"sentencepiece training failed: {detail[-1] if detail else f'exit {done.returncode}'}")
        return write_bytes_atomic(out, model.read_bytes())
