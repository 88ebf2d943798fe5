"""Many signals, one score: a logistic regression over a document's heuristic signals, a fastText classifier's score
and an LM-ratio score, trained on labelled documents (as RedPajama-V2's signals and Nemotron-CC's ensembles are used).

A combiner is MODEL (the fitted combination, JSON), its sidecar MODEL.json, and one inner model per scorer kind
beside it (MODEL.fasttext, MODEL.lm_ratio, each with its own companions). The inner scores enter the regression
out of fold (5-fold cross-fitting), so the combination learns how far to trust them on documents they never saw.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import xxhash
from scipy.special import expit

from datafactory.factory.atomic import write_text_atomic
from datafactory.factory.config import HeuristicsConfig, LangidConfig
from datafactory.filters.heuristics import HeuristicFilter
from datafactory.filters.langid import LanguageIdentifier
from datafactory.filters.quality import HQ, Scorer

INNER_KINDS = ("fasttext", "lm_ratio")  # each inner score is a feature named after its kind
FOLDS = 5
REGULARISATION = 3.0  # scikit-learn's C (inverse L2 strength) on standardised features; chosen on held-out web pages

FitInner = Callable[..., dict]  # quality_train.fit
LoadInner = Callable[[str | Path, str], Scorer]  # quality_train.load_scorer


@dataclass(frozen=True)
class Combination:
    """sigmoid(intercept + sum(coef * (squash(x) - mean) / scale)); a feature a document lacks contributes 0."""

    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float

    def scores(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        standard = (feature_matrix(rows, self.features) - np.array(self.mean)) / np.array(self.scale)
        return expit(np.nan_to_num(standard, nan=0.0) @ np.array(self.coef) + self.intercept)


def feature_matrix(rows: Sequence[Mapping[str, float]], features: list[str]) -> np.ndarray:
    """rows x features, each value squashed: sign(x) * log1p(|x|), so counts and ratios share a scale and a
    100,000-word page does not dominate the fit. A feature a row lacks, or an infinite one, is NaN."""
    matrix = np.array([[row.get(name, np.nan) for name in features] for row in rows], dtype=np.float64)
    matrix = matrix.reshape(len(rows), len(features))
    matrix[~np.isfinite(matrix)] = np.nan
    return np.sign(matrix) * np.log1p(np.abs(matrix))


def inner_model_paths(model_path: str | Path) -> list[Path]:
    return [Path(f"{model_path}.{kind}") for kind in INNER_KINDS]


@lru_cache(maxsize=1)
def _default_measurers() -> tuple[LanguageIdentifier, HeuristicFilter]:
    return LanguageIdentifier(LangidConfig()), HeuristicFilter(HeuristicsConfig())


def measure_signals(texts: Sequence[str]) -> list[dict[str, float]]:
    """Each text's heuristic signals under the default rule sets, in the language fastText gives it: what the
    signals stage stores for a document of a default build."""
    identifier, rules = _default_measurers()
    langs = identifier.predict(list(texts))
    return [dict(rules.measurement(text, found.lang).signals) for text, found in zip(texts, langs, strict=True)]


def _out_of_fold_scores(examples: list[tuple[str, str]], kind: str, seed: int, work: Path, fit: FitInner,
                        load: LoadInner, compact: bool) -> np.ndarray:
    folds = np.array([xxhash.xxh32_intdigest(text.encode(), seed=seed) % FOLDS for text, _ in examples])
    scores = np.full(len(examples), np.nan)  # a fold left untrained: its documents get the feature's mean
    for fold in range(FOLDS):
        held = np.flatnonzero(folds == fold)
        train = [example for example, f in zip(examples, folds, strict=True) if f != fold]
        if len(held) == 0 or len({label for _, label in train}) < 2:
            continue
        model = work / f"{kind}-{fold}"
        fit(kind, train, model, seed, compact=compact)
        scores[held] = load(model, kind).score([examples[i][0] for i in held])
    return scores


def fit_combiner(examples: list[tuple[str, str]], out: Path, seed: int, fit: FitInner, load: LoadInner,
                 compact: bool = False) -> dict:
    """Train the inner models and the combination at `out`; returns the sidecar facts (kind, feature weights).
    `compact` inner models are small enough to ship with the package (the default model's)."""
    from sklearn.linear_model import LogisticRegression  # only training needs sklearn (~1 s to import): scoring
    from sklearn.preprocessing import StandardScaler  # is numpy, so a build never loads it

    texts = [text for text, _ in examples]
    labels = np.array([label == HQ for _, label in examples])
    if labels.all() or not labels.any():
        raise ValueError("a combiner needs both hq and lq examples")
    rows = measure_signals(texts)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        for kind in INNER_KINDS:
            scores = _out_of_fold_scores(examples, kind, seed, Path(work), fit, load, compact)
            for row, score in zip(rows, scores, strict=True):
                row[kind] = float(score)
    features = sorted({name for row in rows for name in row})
    matrix = feature_matrix(rows, features)
    mean = np.nanmean(matrix, axis=0)
    matrix = np.where(np.isnan(matrix), mean, matrix)
    scale = StandardScaler().fit(matrix).scale_
    scale = np.where(scale > 0, scale, 1.0)
    regression = LogisticRegression(C=REGULARISATION, max_iter=5000, random_state=seed)
    regression.fit((matrix - mean) / scale, labels)
    combination = Combination(features, mean.tolist(), scale.tolist(), regression.coef_[0].tolist(),
                              float(regression.intercept_[0]))
    for kind, path in zip(INNER_KINDS, inner_model_paths(out), strict=True):
        fit(kind, examples, path, seed, compact=compact)
    write_text_atomic(out, json.dumps(asdict(combination), indent=1) + "\n")
    weights = dict(zip(features, (round(value, 4) for value in combination.coef), strict=True))
    return {"kind": "combiner", "weights": weights}


class CombinedScorer:
    """P(hq) from stored signals (the signals stage's) and the inner models' scores; `score` measures the signals
    itself, for labelled data outside a build."""

    def __init__(self, model_path: str | Path, load: LoadInner) -> None:
        self.combination = Combination(**json.loads(Path(model_path).read_text(encoding="utf-8")))
        paths = inner_model_paths(model_path)
        self.inner = {kind: load(path, kind) for kind, path in zip(INNER_KINDS, paths, strict=True)}

    def score(self, texts: list[str]) -> list[float]:
        return self.score_with_signals(texts, measure_signals(texts))[0]

    def score_with_signals(self, texts: list[str], signals: Sequence[Mapping[str, float] | Sequence[tuple[str, float]]]
                           ) -> tuple[list[float], dict[str, list[float]]]:
        """The combined scores, and each inner model's scores by kind; each text's signals as a mapping or as the
        (name, value) pairs a stored `signals` column reads back as."""
        inner = {kind: scorer.score(texts) for kind, scorer in self.inner.items()}
        rows = [dict(row) for row in signals]
        for kind, values in inner.items():
            for row, value in zip(rows, values, strict=True):
                row[kind] = value
        return self.combination.scores(rows).tolist(), inner
