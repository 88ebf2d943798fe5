"""Quality scorers: k-fold ROC-AUC and precision@top-10% on labelled data, and scoring speed vs bare fastText.

    .venv/bin/python benchmarks/quality_eval.py [--data ../shared/data] [--folds 5]

Quality: `quality_labelled.jsonl` (2,452 documents, hq/lq), split into k folds by a hash of the text; each
scorer is trained on k-1 folds and scores the held-out one; metrics pool the k held-out folds. Scorers: the
fastText classifier, the LM-ratio scorer (two sentencepiece unigram LMs), and their mean. Reported on all
documents and on the DCLM human-annotated subset alone (same-domain web pages: the hard part). Speed: the
quality stage's fastText scorer (`QualityScorer.score`, batches of 256) against bare fastText `predict` on the
same texts flattened to one line, one process, best of 5 rounds in which the two take turns.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import xxhash
from timing import best_interleaved  # benchmarks/ is on sys.path when a benchmark runs as a script

from datafactory.filters.quality_train import fit, load_scorer, precision_at_top, roc_auc
from datafactory.filters.text import single_line

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BATCH = 256


def fold_of(text: str, folds: int) -> int:
    return xxhash.xxh32_intdigest(text.encode()) % folds


def cross_validate(rows: list[dict], folds: int) -> dict[str, np.ndarray]:
    """Held-out scores for every row, per scorer."""
    scores = {"fasttext": np.zeros(len(rows)), "lm_ratio": np.zeros(len(rows))}
    fold = np.array([fold_of(row["text"], folds) for row in rows])
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(folds):
            train = [(row["text"], row["label"]) for row, f in zip(rows, fold, strict=True) if f != k]
            test = np.flatnonzero(fold == k)
            texts = [rows[i]["text"] for i in test]
            for kind in scores:
                model = Path(tmp) / f"{kind}-{k}"
                fit(kind, train, model, seed=0)
                scores[kind][test] = load_scorer(model).score(texts)
            print(f"fold {k + 1}/{folds} done", flush=True)
    scores["mean of both"] = (scores["fasttext"] + scores["lm_ratio"]) / 2
    return scores


def report_quality(rows: list[dict], scores: dict[str, np.ndarray]) -> None:
    positive = np.array([row["label"] == "hq" for row in rows])
    dclm = np.array([row["source"] == "dclm-human-annotation" for row in rows])
    print(f"\n{'scorer':<14}{'AUC all':>9}{'P@10% all':>11}{'AUC DCLM':>10}{'P@10% DCLM':>12}")
    for name, values in scores.items():
        print(f"{name:<14}{roc_auc(values, positive):>9.3f}{precision_at_top(values, positive):>11.3f}"
              f"{roc_auc(values[dclm], positive[dclm]):>10.3f}{precision_at_top(values[dclm], positive[dclm]):>12.3f}")
    print(f"({len(rows)} documents, {positive.mean():.2f} hq; DCLM subset {dclm.sum()} documents, "
          f"{positive[dclm].mean():.2f} hq; chance AUC 0.5, chance P@10% = the hq share)")


def report_speed(rows: list[dict]) -> None:
    texts = [row["text"] for row in rows]
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "ft.bin"
        fit("fasttext", [(row["text"], row["label"]) for row in rows], model_path, seed=0)
        scorer = load_scorer(model_path)
        bare_model = scorer.model

        def bare() -> None:
            for text in texts:
                bare_model.predict(single_line(text), k=-1)

        def stage() -> None:
            for start in range(0, len(texts), BATCH):
                scorer.score(texts[start : start + BATCH])

        timings = best_interleaved({"bare": bare, "stage": stage})
        bare_s, stage_s = timings["bare"], timings["stage"]
    megabytes = sum(len(text.encode()) for text in texts) / 1e6
    print()
    for name, seconds in (("bare fastText predict", bare_s), ("quality stage scorer", stage_s)):
        print(f"{name:<24}{len(texts) / seconds:>9,.0f} docs/s{megabytes / seconds:>7.1f} MB/s")
    print(f"stage overhead over the bare model: {stage_s / bare_s - 1:+.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    with open(args.data / "quality_labelled.jsonl", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    report_quality(rows, cross_validate(rows, args.folds))
    report_speed(rows)


if __name__ == "__main__":
    main()
