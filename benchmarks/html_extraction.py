"""HTML main-content extraction: resiliparse, trafilatura and our cascade (filters/html.py) on the 181 pages of
shared/data/html_extraction, in one process on one core: token precision / recall / F1 and pages per second.

    .venv/bin/python benchmarks/html_extraction.py                    # all extractors, best of 2 timed runs
    .venv/bin/python benchmarks/html_extraction.py --repeat 3 --data ../shared/data/html_extraction

Scoring: each page's output and its human `articleBody` are split on whitespace (str.split(), case kept,
punctuation attached) into bags of words with multiset counts; precision = |out ∩ truth| / |out|,
recall = |out ∩ truth| / |truth| (∩ = min of the counts), F1 their harmonic mean, each averaged over pages.
F1 is also shown on two fixed halves: "tune" (ids starting 0-7), on which filters/html.py's options,
selectors and thresholds were chosen, and "held-out" (ids 8-f), which was not used to choose them.

Every extractor gets the page as gzip-decompressed bytes, so decoding is part of its cost. Speed is pages per
CPU-second of this process (time.process_time), pinned to one core; runs are interleaved and the fastest of
--repeat kept, so a busy machine slows all extractors alike. The ratio column is speed and F1 over trafilatura's.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import trafilatura
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding
from timing import pin_to_one_core  # benchmarks/ is on sys.path when a benchmark runs as a script

from datafactory.filters.html import extract_html

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "html_extraction"


def load(data: Path) -> list[tuple[str, bytes, str]]:
    """(id, page bytes, articleBody) for every page of the benchmark."""
    pages = []
    with open(data / "ground_truth.jsonl", encoding="utf-8") as lines:
        for line in lines:
            truth = json.loads(line)
            html = gzip.decompress((data / "pages" / f"{truth['id']}.html.gz").read_bytes())
            pages.append((truth["id"], html, truth["articleBody"]))
    return pages


def token_prf(output: str, truth: str) -> tuple[float, float, float]:
    out, gold = Counter(output.split()), Counter(truth.split())
    overlap = sum((out & gold).values())
    precision = overlap / sum(out.values()) if out else 0.0
    recall = overlap / sum(gold.values()) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def resiliparse_baseline(html: bytes) -> str:
    return extract_plain_text(bytes_to_str(html, detect_encoding(html)), main_content=True)


def trafilatura_baseline(html: bytes) -> str:
    return trafilatura.extract(html) or ""


def ours(mode: str, stats: Counter | None = None) -> Callable[[bytes], str]:
    def extract(html: bytes) -> str:
        result = extract_html(html, mode)
        if stats is not None:
            stats[(result.unsure, result.extractor)] += 1
        return result.text

    return extract


def timed(extract: Callable[[bytes], str], pages: list[tuple[str, bytes, str]]) -> tuple[list[str], float]:
    start = time.process_time()
    outputs = [extract(html) for _, html, _ in pages]
    return outputs, time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per extractor; the fastest is kept")
    args = parser.parse_args()
    pages = load(args.data)
    pinned = pin_to_one_core()
    cascade_stats: Counter = Counter()
    extractors = {
        "resiliparse (main_content=True)": resiliparse_baseline,
        "trafilatura 2.3 (defaults)": trafilatura_baseline,
        "ours: resiliparse mode": ours("resiliparse"),
        "ours: trafilatura mode": ours("trafilatura"),
        "ours: cascade (default)": ours("cascade", cascade_stats),
    }
    for extract in extractors.values():  # warm-up: imports, lazy tables, parser caches
        extract(pages[0][1])
    cascade_stats.clear()
    best: dict[str, float] = {}
    outputs: dict[str, list[str]] = {}
    for run in range(args.repeat):
        for name, extract in extractors.items():
            outputs[name], seconds = timed(extract, pages)
            best[name] = min(best.get(name, seconds), seconds)
        if run == 0:
            routed = dict(cascade_stats)

    tune = [i for i, (page_id, _, _) in enumerate(pages) if page_id[0] in "01234567"]
    held = [i for i in range(len(pages)) if i not in set(tune)]
    print(f"{len(pages)} pages ({len(tune)} tune / {len(held)} held-out), one process, {pinned}, "
          f"best of {args.repeat} timed runs")
    header = f"{'extractor':34s} {'P':>6s} {'R':>6s} {'F1':>6s} {'F1 tune':>8s} {'F1 held':>8s} {'pages/s':>8s}"
    print(header + f" {'speed/traf':>10s} {'F1/traf':>8s}")
    reference = "trafilatura 2.3 (defaults)"
    rows = {}
    for name in extractors:
        scores = [token_prf(out, truth) for out, (_, _, truth) in zip(outputs[name], pages, strict=True)]
        mean = [sum(s[k] for s in scores) / len(scores) for k in range(3)]
        f1_tune = sum(scores[i][2] for i in tune) / len(tune)
        f1_held = sum(scores[i][2] for i in held) / len(held)
        rows[name] = (mean, f1_tune, f1_held, len(pages) / best[name])
    for name, (mean, f1_tune, f1_held, speed) in rows.items():
        speed_ratio = speed / rows[reference][3]
        f1_ratio = mean[2] / rows[reference][0][2]
        print(f"{name:34s} {mean[0]:6.3f} {mean[1]:6.3f} {mean[2]:6.3f} {f1_tune:8.3f} {f1_held:8.3f} "
              f"{speed:8.1f} {speed_ratio:9.2f}x {f1_ratio:8.3f}")
    unsure = {key: n for key, n in routed.items() if key[0] is not None}
    consulted = sum(unsure.values())
    replaced = sum(n for (_, extractor), n in unsure.items() if extractor == "trafilatura")
    reasons = Counter()
    for (reason, _), n in unsure.items():
        reasons[reason] += n
    print(f"cascade: trafilatura consulted on {consulted}/{len(pages)} pages ({consulted / len(pages):.1%}; "
          f"{', '.join(f'{r} {n}' for r, n in sorted(reasons.items())) or 'none'}), "
          f"its text kept on {replaced}")


if __name__ == "__main__":
    main()
