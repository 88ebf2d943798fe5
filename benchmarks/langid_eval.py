"""Language ID: accuracy and macro-F1 per language on gold sentences, and the stage's speed vs bare fastText.

    .venv/bin/python benchmarks/langid_eval.py [--data ../shared/data] [--model PATH]

Quality: `langid_eval.jsonl` (34 languages, UD treebank test sentences); a prediction counts as correct when
its base language equals the gold one ("zh-Hant" is "zh"; lid.176's "no" is the gold "nb"); for the Chinese
rows the script (Hans/Hant) we report is scored too. Speed: `web_sample.jsonl.gz` (5,178 web documents), one
process, one core: bare fastText `predict` on each whole document flattened to one line (the peer figure in
PEERS.md), against our `LanguageIdentifier.predict` in batches of 256 (bounded sample of each document, lingua's
second opinion where fastText is weak, Cantonese and CJK script refinement), and the share of documents lingua
was asked about.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import Counter
from pathlib import Path

from timing import best_of  # benchmarks/ is on sys.path when a benchmark runs as a script

from datafactory.factory.config import LangidConfig
from datafactory.filters.ftmodel import load_fasttext_model
from datafactory.filters.langid import LanguageIdentifier, base_lang
from datafactory.filters.text import single_line

BATCH = 256
# lid.176 labels Norwegian with the macrolanguage code "no"; the gold set uses Bokmål's "nb". Same language.
LABEL_ALIASES = {"no": "nb"}
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def per_language_scores(gold: list[str], predicted: list[str]) -> dict[str, tuple[float, float, float, int]]:
    """Precision, recall, F1 and support for every gold language."""
    true_pos = Counter(g for g, p in zip(gold, predicted, strict=True) if g == p)
    predicted_count, gold_count = Counter(predicted), Counter(gold)
    scores = {}
    for lang in sorted(gold_count):
        precision = true_pos[lang] / predicted_count[lang] if predicted_count[lang] else 0.0
        recall = true_pos[lang] / gold_count[lang]
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[lang] = (precision, recall, f1, gold_count[lang])
    return scores


def evaluate_quality(identifier: LanguageIdentifier, rows: list[dict]) -> None:
    results = []
    for start in range(0, len(rows), BATCH):
        results += identifier.predict([row["text"] for row in rows[start : start + BATCH]])
    gold = [row["lang"] for row in rows]
    predicted = [LABEL_ALIASES.get(lang, lang) for lang in (base_lang(result.lang) for result in results)]
    scores = per_language_scores(gold, predicted)
    print(f"{'lang':<6}{'precision':>10}{'recall':>8}{'F1':>7}{'n':>6}")
    for lang, (precision, recall, f1, support) in scores.items():
        print(f"{lang:<6}{precision:>10.3f}{recall:>8.3f}{f1:>7.3f}{support:>6}")
    accuracy = sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)
    macro_f1 = sum(score[2] for score in scores.values()) / len(scores)
    print(f"accuracy {accuracy:.4f}  macro-F1 {macro_f1:.4f}  ({len(gold)} sentences, {len(scores)} languages)")
    chinese = [(row, result) for row, result in zip(rows, results, strict=True) if row["lang"] == "zh"]
    scripted = [(row, result) for row, result in chinese if result.lang in ("zh-Hans", "zh-Hant")]
    right = sum(result.lang == f"zh-{row['script']}" for row, result in scripted)
    print(f"Chinese script: {len(scripted)}/{len(chinese)} zh sentences given a script, {right} of them right "
          f"({right / max(len(scripted), 1):.3f})")


def evaluate_speed(identifier: LanguageIdentifier, docs: list[str]) -> None:
    model = identifier.model
    megabytes = sum(len(doc.encode("utf-8")) for doc in docs) / 1e6

    def bare() -> None:
        for doc in docs:
            model.predict(single_line(doc), k=1)

    def ours() -> None:
        for start in range(0, len(docs), BATCH):
            identifier.predict(docs[start : start + BATCH])

    asked = identifier.second_opinion.asked if identifier.second_opinion else 0
    ours()
    asked = (identifier.second_opinion.asked if identifier.second_opinion else 0) - asked
    print(f"second opinion (lingua) asked on {asked:,} of {len(docs):,} web documents ({asked / len(docs):.1%})")
    bare_s, ours_s = best_of(bare), best_of(ours)
    for name, seconds in (("bare fastText, whole documents", bare_s), ("datafactory langid", ours_s)):
        print(f"{name:<32}{len(docs) / seconds:>10,.0f} docs/s{megabytes / seconds:>8.1f} MB/s")
    print(f"ratio ours / bare: {bare_s / ours_s:.2f}x docs/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default=None, help="fastText LID model (default: bundled lid.176.ftz)")
    args = parser.parse_args()
    identifier = LanguageIdentifier(LangidConfig(model=args.model))
    load_fasttext_model(identifier.model_path)  # fail early on a bad path
    print(f"model: {identifier.model_path}")
    evaluate_quality(identifier, read_jsonl(args.data / "langid_eval.jsonl"))
    docs = [row["text"] for row in read_jsonl(args.data / "web_sample.jsonl.gz")]
    evaluate_speed(identifier, docs)


if __name__ == "__main__":
    main()
