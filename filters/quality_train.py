"""Training quality scorers from labelled documents, with held-out metrics written beside the model.

Every trained model gets a sidecar `MODEL.json`: its kind, the sha256 of the training data, the settings, and
ROC-AUC and precision at the top decile on a held-out split the model never saw. The quality stage reads the
sidecar to know how to load a model; a model without one (e.g. DCLM's released classifier) is fastText.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import xxhash
import zstandard

from datafactory.factory.atomic import write_text_atomic
from datafactory.factory.errors import UserError
from datafactory.filters.lm_quality import REFERENCE_SUFFIX, Calibration, LMRatioScorer, train_lm_ratio
from datafactory.filters.quality import HQ, LQ, QualityScorer, Scorer, train_classifier
from datafactory.filters.quality_blend import BlendedScorer
from datafactory.filters.quality_combine import CombinedScorer, fit_combiner, inner_model_paths

KINDS: tuple[str, ...] = ("blend", "fasttext", "lm_ratio", "combiner")
SIDECAR_SUFFIX = ".json"


class LabelledDataError(UserError, ValueError):
    """A labelled-data file that cannot be used, with the file and line at fault."""


def open_bytes(path: Path) -> io.BufferedIOBase:
    """A file's bytes, decompressed when it ends in .gz or .zst."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix in (".zst", ".zstd"):
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(path.open("rb")))
    return path.open("rb")


def open_text(path: Path) -> io.TextIOBase:
    return io.TextIOWrapper(open_bytes(path), encoding="utf-8")


def read_labelled(path: str | Path, label: str | None = None, text_field: str = "text") -> Iterator[tuple[str, str]]:
    """(text, label) from JSONL: each record's `label` ("hq"/"lq"), or `label` for every record when given."""
    path = Path(path)
    if not path.is_file():
        raise LabelledDataError(f"labelled data not found: {path}")
    with open_text(path) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise LabelledDataError(f"{where}: malformed JSON ({err.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                raise LabelledDataError(f"{where}: no string field {text_field!r}")
            value = label or record.get("label")
            if value not in (HQ, LQ):
                raise LabelledDataError(f"{where}: label {value!r} is not {HQ!r} or {LQ!r}")
            yield record[text_field], value


def data_digest(examples: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for text, label in examples:
        digest.update(f"{label}\x00{text}\x00".encode())
    return digest.hexdigest()


def split_holdout(
    examples: list[tuple[str, str]], fraction: float, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, heldout) by a hash of each text, so the split does not depend on input order."""
    cut = int(fraction * 2**32)
    train, heldout = [], []
    for example in examples:
        side = heldout if xxhash.xxh32_intdigest(example[0].encode(), seed=seed) < cut else train
        side.append(example)
    return train, heldout


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half); NaN for one class."""
    if positive.all() or not positive.any():
        return float("nan")
    from sklearn.metrics import roc_auc_score  # here, not at the top: importing sklearn costs every build ~1 s

    return float(roc_auc_score(positive, scores))


def precision_at_top(scores: np.ndarray, positive: np.ndarray, fraction: float = 0.1) -> float:
    """Share of positives among the top `fraction` of documents by score."""
    if len(scores) == 0:
        return float("nan")
    top = max(1, math.ceil(fraction * len(scores)))
    return float(positive[np.argsort(-scores, kind="stable")[:top]].mean())


def evaluate(scorer: Scorer, examples: list[tuple[str, str]]) -> dict[str, float]:
    scores = np.asarray(scorer.score([text for text, _ in examples]), dtype=np.float64)
    positive = np.array([label == HQ for _, label in examples])
    return {"roc_auc": roc_auc(scores, positive), "precision_at_top_decile": precision_at_top(scores, positive),
            "n": len(examples), "hq_share": float(positive.mean()) if len(examples) else float("nan")}


def companion_paths(model_path: str | Path) -> list[Path]:
    """The files a model of any kind may need beside it: its sidecar, the LM ratio's second LM, a combiner's inner
    models and theirs; for a blend, the built-in default model and its files."""
    own = [sidecar_path(model_path), Path(f"{model_path}{REFERENCE_SUFFIX}")]
    inner = [(path, sidecar_path(path), Path(f"{path}{REFERENCE_SUFFIX}")) for path in inner_model_paths(model_path)]
    own += [path for paths in inner for path in paths]
    if read_sidecar(model_path).get("kind") == "blend":
        own += [default_model(), *companion_paths(default_model())]
    return own


def default_model() -> Path:
    """The built-in default model (quality_default, which imports this module, says how it is trained)."""
    from datafactory.filters.quality_default import DEFAULT_MODEL

    return DEFAULT_MODEL


def model_digest(model_path: str | Path) -> str:
    """sha256 over a model file and every companion file it has."""
    digest = hashlib.sha256()
    for path in (Path(model_path), *companion_paths(model_path)):
        if path.is_file():
            digest.update(f"{path.name}\x00".encode() + path.read_bytes())
    return digest.hexdigest()


def missing_inner_model(model_path: str | Path, kind: str | None) -> Path | None:
    """The first inner model a combiner lacks beside it, if any (None for every other kind)."""
    if Path(model_path).is_file() and scorer_kind(model_path, kind) == "combiner":
        return next((path for path in inner_model_paths(model_path) if not path.is_file()), None)
    return None


def stale_blend(model_path: str | Path, kind: str | None) -> bool:
    """A blend trained beside another built-in default model than this version's (False for every other kind)."""
    return (Path(model_path).is_file() and scorer_kind(model_path, kind) == "blend"
            and read_sidecar(model_path).get("prior_sha256") != model_digest(default_model()))


def scorer_kind(model_path: str | Path, kind: str | None = None) -> str:
    """`kind` when given, else the one the model's sidecar names, else fastText (e.g. DCLM's released classifier)."""
    return kind or read_sidecar(model_path).get("kind", "fasttext")


def sidecar_path(model_path: str | Path) -> Path:
    return Path(f"{model_path}{SIDECAR_SUFFIX}")


def read_sidecar(model_path: str | Path) -> dict:
    path = sidecar_path(model_path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"kind": "fasttext"}


def load_scorer(model_path: str | Path, kind: str | None = None) -> Scorer:
    """The scorer for a model file; its kind from `kind`, else the sidecar, else fastText."""
    if not Path(model_path).is_file():
        raise FileNotFoundError(f"quality model not found: {model_path}")
    kind = scorer_kind(model_path, kind)
    if kind == "fasttext":
        return QualityScorer(model_path)
    if kind == "lm_ratio":
        sidecar = read_sidecar(model_path)
        if "calibration" not in sidecar:
            raise ValueError(f"{sidecar_path(model_path)} lacks the LM-ratio calibration; retrain the model")
        return LMRatioScorer(model_path, Calibration(**sidecar["calibration"]))
    if kind == "combiner":
        return CombinedScorer(model_path, load_scorer)
    if kind == "blend":
        if stale_blend(model_path, kind):
            raise ValueError(f"{model_path} was blended with another built-in default model than this version's; "
                             "retrain it with `factory quality train`")
        return BlendedScorer(QualityScorer(model_path), load_scorer(default_model()))
    raise ValueError(f"unknown quality scorer kind {kind!r} for {model_path} (expected one of {KINDS})")


COMPACT_FASTTEXT = {"dim": 16, "min_count": 3, "bucket": 20_000}  # ~5 MB instead of ~85 MB on 5,000 web pages


def fit(kind: str, examples: list[tuple[str, str]], out: Path, seed: int, compact: bool = False) -> dict:
    """Train one model of `kind` at `out` and write the sidecar that loading it needs; returns that sidecar.
    `compact` trades a little of a fastText classifier's reach for a model small enough to ship."""
    if kind in ("fasttext", "blend"):  # a blend is a fastText classifier scored beside the built-in default model
        train_classifier(examples, out, seed=seed, **(COMPACT_FASTTEXT if compact else {}))
        sidecar = {"kind": kind} | ({"prior_sha256": model_digest(default_model())} if kind == "blend" else {})
    elif kind == "lm_ratio":
        sidecar = {"kind": kind, "calibration": asdict(train_lm_ratio(examples, out))}
    elif kind == "combiner":
        sidecar = fit_combiner(examples, out, seed, fit, load_scorer, compact)
    else:
        raise ValueError(f"unknown quality scorer kind {kind!r} (expected one of {KINDS})")
    write_sidecar(out, sidecar)
    return sidecar


def train_quality_model(
    examples: list[tuple[str, str]], out_path: str | Path, kind: str = "fasttext", *,
    heldout_fraction: float = 0.1, seed: int = 0,
) -> dict:
    """Train on all but a held-out slice, measure on that slice, write model + sidecar; returns the sidecar."""
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    out = Path(out_path)
    train, heldout = split_holdout(examples, heldout_fraction, seed)
    sidecar = {
        **fit(kind, train, out, seed),
        "data_sha256": data_digest(examples),
        "settings": {"heldout_fraction": heldout_fraction, "seed": seed},
        "train": {"n": len(train), "hq": sum(label == HQ for _, label in train)},
        "heldout": evaluate(load_scorer(out), heldout),
    }
    write_sidecar(out, sidecar)
    return sidecar


def write_sidecar(model_path: Path, sidecar: dict) -> None:
    write_text_atomic(sidecar_path(model_path), json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
