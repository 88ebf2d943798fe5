"""DCLM-style fastText quality classifier: train on hq/lq examples, score P(hq), bucket by score cuts.

Text is shown to fastText lowercased, NFKC-normalised, on one line, with CJK characters as separate tokens.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, Protocol

from datafactory.factory.atomic import atomic_path
from datafactory.filters.ftmodel import load_fasttext_model, train_supervised_file
from datafactory.filters.text import NO_SPACE_CLASS

HQ, LQ = "hq", "lq"
LABEL_PREFIX = "__label__"
MAX_CHARS = 5_000
Bucket = Literal["low", "mid", "high"]


# Scripts written without spaces, and CJK punctuation (U+3000-303F, U+FF61-FF65): each character becomes a fastText
# token of its own, so 。and 、 separate tokens as spaces do elsewhere.
_NO_SPACE_RUN = re.compile(f"[{NO_SPACE_CLASS}\u3000-\u303f\uff61-\uff65]+")


def _spaced_out(run: re.Match) -> str:
    return f" {' '.join(run.group())} "


def prepare_text(text: str, max_chars: int = MAX_CHARS) -> str:
    """First ``max_chars`` characters, lowercased, NFKC, on one line; CJK/Thai characters one token each.

    Whitespace is left as fastText reads it: any run of spaces, tabs or carriage returns separates two tokens,
    so only newlines (fastText's end of example) become spaces; collapsing the runs too would double the cost
    of preparing English text. CJK is spaced out a run at a time, not a character at a time.
    """
    head = text[:max_chars].lower()
    if not head.isascii():
        if not unicodedata.is_normalized("NFKC", head):  # the check is ~10x cheaper than normalising
            head = unicodedata.normalize("NFKC", head)
        head = _NO_SPACE_RUN.sub(_spaced_out, head)  # a prefilter scan (max, search) costs as much as this
    return head.replace("\n", " ").strip()


def _label(label: str) -> str:
    name = label.removeprefix(LABEL_PREFIX)
    if not name or any(ch.isspace() for ch in name):
        raise ValueError(f"invalid quality label {label!r}: expected e.g. 'hq' or 'lq'")
    return name


def write_training_file(examples: Iterable[tuple[str, str]], path: Path) -> set[str]:
    """fastText training lines "__label__<label> <prepared text>"; returns the labels seen."""
    labels: set[str] = set()
    with path.open("w", encoding="utf-8") as out:
        for text, label in examples:
            name = _label(label)
            prepared = prepare_text(text)
            if prepared:
                out.write(f"{LABEL_PREFIX}{name} {prepared}\n")
                labels.add(name)
    return labels


def train_classifier(
    examples: Iterable[tuple[str, str]],
    out_path: str | Path,
    *,
    epoch: int = 10,
    lr: float = 0.5,
    word_ngrams: int = 2,
    dim: int = 64,
    seed: int = 0,
    thread: int = 1,
    bucket: int = 50_000,
    min_count: int = 1,
) -> Path:
    """Train on (text, "hq"|"lq") pairs; save atomically at ``out_path``. thread=1 makes it deterministic."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, train_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".train.txt")
    os.close(fd)
    try:
        labels = write_training_file(examples, Path(train_name))
        if HQ not in labels:
            raise ValueError(f"no non-empty '{HQ}' example to train on (labels seen: {sorted(labels)})")
        params = {
            "epoch": epoch,
            "lr": lr,
            "wordNgrams": word_ngrams,
            "dim": dim,
            "seed": seed,
            "thread": thread,
            "bucket": bucket if word_ngrams > 1 else 0,
            "minCount": min_count,
            "loss": "softmax",
        }
        with atomic_path(out) as tmp_model:
            train_supervised_file(train_name, tmp_model, params)
    finally:
        Path(train_name).unlink(missing_ok=True)
    return out


class Scorer(Protocol):
    """What every quality scorer kind offers: P(hq) per text, in [0, 1]."""

    def score(self, texts: list[str]) -> list[float]: ...


class QualityScorer:
    """P(hq) for batches of texts; the model loads on first use, so instances pickle cheaply."""

    def __init__(self, model_path: str | Path) -> None:
        self.model_path = str(model_path)
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            model = load_fasttext_model(self.model_path)
            if f"{LABEL_PREFIX}{HQ}" not in model.get_labels():
                raise ValueError(f"quality model {self.model_path} has no '{HQ}' label: {model.get_labels()}")
            self._model = model
        return self._model

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}

    def score(self, texts: list[str]) -> list[float]:
        """Probability of "hq" per text, in [0, 1]; empty texts score 0."""
        prepared = [prepare_text(text) for text in texts]
        todo = [i for i, line in enumerate(prepared) if line]
        scores = [0.0] * len(texts)
        if not todo:
            return scores
        labels, probs = self.model.predict([prepared[i] for i in todo], k=-1)
        hq = f"{LABEL_PREFIX}{HQ}"
        for i, doc_labels, doc_probs in zip(todo, labels, probs, strict=True):
            by_label = dict(zip(doc_labels, (float(p) for p in doc_probs), strict=True))
            scores[i] = min(max(by_label.get(hq, 0.0), 0.0), 1.0)
        return scores


def bucket_for(score: float, low_cut: float, high_cut: float) -> Bucket:
    """ "high" when score >= high_cut, "low" when score < low_cut, else "mid"."""
    if low_cut > high_cut:
        raise ValueError(f"low_cut {low_cut} is above high_cut {high_cut}")
    if score >= high_cut:
        return "high"
    if score < low_cut:
        return "low"
    return "mid"
