"""Quality scorers: k-fold ROC-AUC and precision@top-10% on labelled data, and scoring speed vs bare fastText;
with --half, the issue-18 measure: trained on one half, judged on the other half's documents that survive the rules
and dedup, `factory quality train`'s kinds beside a plain fastText and the built-in default model; with --select,
the cross-validation on the training half alone that chose the default kind (blend).

    .venv/bin/python benchmarks/quality_eval.py [--data ../shared/data] [--folds 5] [--half | --select]

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
    width = max(map(len, scores)) + 2
    print(f"\n{'scorer':<{width}}{'AUC all':>9}{'P@10% all':>11}{'AUC DCLM':>10}{'P@10% DCLM':>12}")
    for name, values in scores.items():
        print(f"{name:<{width}}{roc_auc(values, positive):>9.3f}{precision_at_top(values, positive):>11.3f}"
              f"{roc_auc(values[dclm], positive[dclm]):>10.3f}{precision_at_top(values[dclm], positive[dclm]):>12.3f}")
    print(f"({len(rows)} documents, {positive.mean():.2f} hq; DCLM subset {dclm.sum()} documents, "
          f"{positive[dclm].mean():.2f} hq; chance AUC 0.5, chance P@10% = the hq share)")


def survivors(rows: list[dict]) -> list[dict]:
    """The rows a default build would bring to the quality stage: passing the default heuristics in their detected
    language, then neither an exact nor a near duplicate (MinHash LSH at the default threshold) of an earlier row."""
    from datasketch import MinHashLSH

    from datafactory.factory.config import DedupConfig, HeuristicsConfig, LangidConfig
    from datafactory.filters.dedup import MinHasher, exact_key, lsh_params
    from datafactory.filters.heuristics import HeuristicFilter
    from datafactory.filters.langid import LanguageIdentifier

    langs = LanguageIdentifier(LangidConfig()).predict([row["text"] for row in rows])
    rules = HeuristicFilter(HeuristicsConfig())
    kept = [row for row, found in zip(rows, langs, strict=True) if rules.evaluate(row["text"], found.lang).keep]
    config = DedupConfig()
    hasher, (bands, rows_per_band) = MinHasher(config), lsh_params(config)
    index, seen, unique = MinHashLSH(num_perm=config.num_perm, params=(bands, rows_per_band)), set(), []
    for row, signature in zip(kept, hasher.signatures([row["text"] for row in kept]), strict=True):
        key, lean = exact_key(row["text"]), hasher.lean(signature)
        if key in seen or index.query(lean):
            continue
        seen.add(key)
        index.insert(row["id"], lean)
        unique.append(row)
    return unique


def half_split(rows: list[dict]) -> None:
    """Trains a plain fastText (unigrams, 10 epochs, as the issue's baseline) and `factory quality train`'s kinds on
    one half (by a hash of the id); reports ROC-AUC on the other half's survivors, with the built-in default model on
    the same ones."""
    from datafactory.filters.quality import train_classifier
    from datafactory.filters.quality_default import DEFAULT_MODEL
    from datafactory.filters.quality_train import train_quality_model

    train, test = halves(rows)
    test = survivors(test)
    examples = [(row["text"], row["label"]) for row in train]
    texts = [row["text"] for row in test]
    with tempfile.TemporaryDirectory() as tmp:
        plain = train_classifier(examples, Path(tmp) / "plain.bin", word_ngrams=1)
        kinds = {"`factory quality train` (default kind: blend)": "blend", "--kind fasttext": "fasttext",
                 "--kind combiner": "combiner"}
        scores = {"plain fastText (unigrams)": np.array(load_scorer(plain).score(texts))}
        for name, kind in kinds.items():
            train_quality_model(examples, Path(tmp) / f"q.{kind}", kind, heldout_fraction=0.1)
            scores[name] = np.array(load_scorer(Path(tmp) / f"q.{kind}").score(texts))
        scores["built-in default model"] = np.array(load_scorer(DEFAULT_MODEL).score(texts))
    print(f"trained on {len(train)} documents; judged on the {len(test)} of the other half that survive the rules "
          "and dedup")
    report_quality(test, scores)


def halves(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(training half, test half) by a hash of the id."""
    train = [row for row in rows if xxhash.xxh32_intdigest(row["id"].encode()) % 2 == 0]
    return train, [row for row in rows if xxhash.xxh32_intdigest(row["id"].encode()) % 2 == 1]


def select_on_training_half(rows: list[dict], folds: int) -> None:
    """How `factory quality train`'s default was chosen without looking at the test half: k-fold cross-validation on
    the training half alone, the fastText classifier, the built-in default model and their blends side by side."""
    from scipy.stats import rankdata

    from datafactory.filters.quality_blend import blend
    from datafactory.filters.quality_default import DEFAULT_MODEL

    train, _ = halves(rows)
    fold = np.array([xxhash.xxh32_intdigest(row["id"].encode(), seed=7) % folds for row in train])
    own, prior = np.zeros(len(train)), np.array(load_scorer(DEFAULT_MODEL).score([row["text"] for row in train]))
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(folds):
            model = Path(tmp) / f"fasttext-{k}"
            fit("fasttext", [(row["text"], row["label"]) for row, f in zip(train, fold, strict=True) if f != k],
                model, seed=0)
            own[fold == k] = load_scorer(model).score([train[i]["text"] for i in np.flatnonzero(fold == k)])
    scores = {"fastText (--kind fasttext)": own, "built-in default model": prior,
              "blend (mean of logits)": np.array(blend(own, prior)),
              "mean of ranks": (rankdata(own) + rankdata(prior)) / 2, "mean of probabilities": (own + prior) / 2}
    print(f"{folds}-fold cross-validation on the training half, all {len(train)} documents:")
    report_quality(train, scores)
    kept = {row["id"] for row in survivors(train)}
    mask = np.array([row["id"] in kept for row in train])
    print(f"\nthe same scores, on the {mask.sum()} training-half documents that survive the rules and dedup:")
    report_quality([row for row in train if row["id"] in kept], {name: values[mask] for name, values in scores.items()})


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
    parser.add_argument("--half", action="store_true", help="the half-split measure only")
    parser.add_argument("--select", action="store_true", help="cross-validation on the training half only")
    args = parser.parse_args()
    with open(args.data / "quality_labelled.jsonl", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    if args.half:
        half_split(rows)
        return
    if args.select:
        select_on_training_half(rows, args.folds)
        return
    report_quality(rows, cross_validate(rows, args.folds))
    report_speed(rows)


if __name__ == "__main__":
    main()
