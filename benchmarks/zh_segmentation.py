"""Chinese word splitting for the heuristic rules: jieba (the reference) vs ours (rjieba + jieba's split of non-Han
runs), and the heuristics measured with each, on the Chinese documents of `web_sample.jsonl.gz`, one core.

    .venv/bin/python benchmarks/zh_segmentation.py [--data ../shared/data]

Prints MB/s of word splitting alone and of measuring every heuristic rule (the `signals` stage's kernel), the ratio
ours / jieba, how many documents get jieba's exact tokens, and how many keep/drop verdicts (and drop reasons) agree.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import warnings
from pathlib import Path

from timing import best_interleaved, pin_to_one_core

from datafactory.factory.config import HeuristicsConfig
from datafactory.filters import segment
from datafactory.filters.heuristics import HeuristicFilter

ROOT = Path(__file__).resolve().parents[1]


def jieba_tokens():
    with warnings.catch_warnings():  # jieba 0.42's sources hold invalid escapes that warn when compiled
        warnings.simplefilter("ignore", DeprecationWarning)
        import jieba
    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return lambda text: [token for token in (raw.strip() for raw in jieba.cut(text)) if token]


def verdicts(texts: list[str]) -> list[tuple[bool, str | None]]:
    rules = HeuristicFilter(HeuristicsConfig())
    return [(v.keep, v.reason) for v in (rules.evaluate(text, "zh") for text in texts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    print(pin_to_one_core())
    with gzip.open(args.data / "web_sample.jsonl.gz", "rt", encoding="utf-8") as lines:
        texts = [record["text"] for record in map(json.loads, lines) if record.get("lang") == "zh"]
    megabytes = sum(len(text.encode()) for text in texts) / 1e6
    ours, reference = segment._jieba_tokens, jieba_tokens()

    def with_splitter(splitter, work):
        def run():
            segment._jieba_tokens = splitter
            segment.clear_caches()
            try:
                return work()
            finally:
                segment._jieba_tokens = ours
        return run

    split = best_interleaved({
        "jieba": with_splitter(reference, lambda: [reference(text) for text in texts]),
        "ours": lambda: [ours(text) for text in texts],
    }, rounds=3)
    measure = best_interleaved({
        "jieba": with_splitter(reference, lambda: verdicts(texts)),
        "ours": with_splitter(ours, lambda: verdicts(texts)),
    }, rounds=3)
    same = sum(ours(text) == reference(text) for text in texts)
    theirs, mine = with_splitter(reference, lambda: verdicts(texts))(), verdicts(texts)
    print(f"{len(texts):,} Chinese documents, {megabytes:.2f} MB")
    for name, seconds in (("word splitting", split), ("all heuristic rules", measure)):
        rates = {side: megabytes / seconds[side] for side in seconds}
        print(f"{name:<20} jieba {rates['jieba']:6.2f} MB/s   ours {rates['ours']:6.2f} MB/s"
              f"   ours/jieba {rates['ours'] / rates['jieba']:.1f}x")
    print(f"documents with jieba's exact tokens: {same:,} / {len(texts):,}")
    equal = sum(a == b for a, b in zip(theirs, mine, strict=True))
    print(f"verdicts equal (keep and reason): {equal:,} / {len(texts):,}")


if __name__ == "__main__":
    main()
