"""Decontamination: recall and false positives on a planted set, ours beside lm-eval's Janitor (GPT-3's 13-gram
rule) and a datatrove-style 12-gram any-hit rule, in one run; the matching speed per core with a large index.

    .venv-bench/bin/uv pip install --python .venv-bench/bin/python --no-deps lm-eval==0.4.13   (once; Janitor is stdlib)
    .venv/bin/python benchmarks/decontamination.py [--data ../shared/data] [--items 100000]
        [--peer-python .venv-bench/bin/python] [--write-items FILE: only write the items, for scale.py --eval-set]

Eval items: questions cut from the Wikipedia pages of `quality_labelled.jsonl` (English, and Chinese from CMRC 2018's
zhwiki contexts): 20-45 words, or 30-70 characters, with the 1-5 words (2-8 characters) after them as the answer;
`--items` of them (half per language) make the index. Documents: English and Chinese pages of `web_sample.jsonl.gz`
(another source: what overlaps there by nature counts against every system). For 500 items per language, each in its
own host page: the item verbatim; noisy (case, punctuation and whitespace changed); a contiguous 70% fragment of the
question; and a control page holding three 6-word (9-character) fragments of items, apart. Every page as it is is a
clean document. A system is right on a planted page when it flags it, on a control or clean page when it does not.
Ours: the decontaminate stage's matcher with its defaults; datatrove-style: the same matcher configured as datatrove's
rule (12-grams of each field, characters for CJK, any hit); Janitor: lm-eval's code in the peer venv (this file, run
with --janitor), an item's question and answer registered together, any 13-gram hit flags a page.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import subprocess
import tempfile
import time
from pathlib import Path

from timing import pin_to_one_core  # benchmarks/ is on sys.path when a benchmark runs as a script

from datafactory.filters.text import is_cjk

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PLANTED_PER_LANG = 500
KINDS = ("verbatim", "noisy", "fragment", "control", "clean")
ZH_PUNCTUATION = {"，": ",", "。": ".", "、": ",", "：": ":", "；": ";", "（": "(", "）": ")", "“": '"', "”": '"'}


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def cut_items(data: Path, count: int, rng: random.Random) -> list[dict]:
    """`count` items, half per language, from windows spread evenly over the Wikipedia pages."""
    rows = read_jsonl(data / "quality_labelled.jsonl")
    pages = {"en": [row["text"].split() for row in rows if row["source"] == "wikipedia-en-llamafactory"],
             "zh": [list(row["text"]) for row in rows if row["source"] == "cmrc2018-zhwiki"]}
    items = []
    for lang, units in pages.items():
        low, high, answer_low, answer_high = (20, 45, 1, 5) if lang == "en" else (30, 70, 2, 8)
        join = " ".join if lang == "en" else "".join
        room = sum(max(0, len(unit) - high - answer_high) for unit in units)
        stride = max(1, room // count)  # twice the windows needed: some are skipped, the rest sampled
        for page, unit in enumerate(units):
            for start in range(0, len(unit) - high - answer_high, stride):
                size, answer = rng.randint(low, high), rng.randint(answer_low, answer_high)
                question = join(unit[start:start + size]).strip()
                if lang == "zh" and sum(map(is_cjk, question)) < 0.8 * len("".join(question.split())):
                    continue  # Chinese benchmarks ask in Chinese: no runs of Latin text from the article
                items.append({"id": f"{lang}-{page}-{start}", "lang": lang, "question": question,
                              "answer": join(unit[start + size:start + size + answer]).strip()})
    rng.shuffle(items)
    by_lang = {lang: [item for item in items if item["lang"] == lang][: count // 2] for lang in pages}
    return by_lang["en"] + by_lang["zh"]


def noisy(text: str, lang: str, rng: random.Random) -> str:
    """Case, punctuation and whitespace changed (Chinese: half-width punctuation, spaces between characters)."""
    if lang == "zh":  # half-width punctuation, spaces between some characters
        return "".join(ZH_PUNCTUATION.get(char, char) + (" " if is_cjk(char) and rng.random() < 0.15 else "")
                       for char in text)
    words = [rng.choice((str.upper, str.lower, str.title, str))(word) for word in text.split()]
    gaps = [rng.choice((" ", "  ", "\n", ", ", " - ")) for _ in words]
    return "".join(word.strip(".,;:") + gap for word, gap in zip(words, gaps, strict=True)).strip()


def fragment(text: str, lang: str, rng: random.Random) -> str:
    unit = text.split() if lang == "en" else list(text)
    size = round(len(unit) * 0.7)
    start = rng.randint(0, len(unit) - size)
    return (" " if lang == "en" else "").join(unit[start:start + size])


def shared_phrases(items: list[dict], lang: str, rng: random.Random) -> list[str]:
    """Three 6-word (9-character) pieces of three items: what a page may share with a benchmark by chance."""
    pieces = []
    for item in rng.sample(items, 3):
        unit = item["question"].split() if lang == "en" else list(item["question"])
        size = 6 if lang == "en" else 9
        start = rng.randint(0, len(unit) - size)
        pieces.append((" " if lang == "en" else "").join(unit[start:start + size]))
    return pieces


def plant(host: str, insert: str, rng: random.Random) -> str:
    at = rng.randint(0, len(host))
    return host[:at] + "\n" + insert + "\n" + host[at:]


def planted_documents(data: Path, items: list[dict], rng: random.Random) -> list[dict]:
    pages = [row for row in read_jsonl(data / "web_sample.jsonl.gz") if row["lang"] in ("en", "zh")]
    documents = [{"kind": "clean", "lang": row["lang"], "item": None, "text": row["text"]} for row in pages]
    for lang in ("en", "zh"):
        hosts = [row["text"] for row in pages if row["lang"] == lang]
        pool = [item for item in items if item["lang"] == lang]
        for item in pool[:PLANTED_PER_LANG]:
            whole = item["question"] + (" " if lang == "en" else "") + item["answer"]
            inserts = {"verbatim": whole, "noisy": noisy(whole, lang, rng),
                       "fragment": fragment(item["question"], lang, rng)}
            for kind, insert in inserts.items():
                documents.append({"kind": kind, "lang": lang, "item": item["id"],
                                  "text": plant(rng.choice(hosts), insert, rng)})
            control = rng.choice(hosts)
            for piece in shared_phrases(pool, lang, rng):
                control = plant(control, piece, rng)
            documents.append({"kind": "control", "lang": lang, "item": None, "text": control})
    return documents


# --------------------------------------------------------------------------- the systems


def ours(items: list[dict], documents: list[dict], **settings) -> tuple[list[bool], dict]:
    from datafactory.factory.config import DecontaminateConfig
    from datafactory.filters.decontam import ContaminationIndex, Decontaminator
    from datafactory.filters.eval_sets import EvalItem

    config = DecontaminateConfig(**settings)
    start = time.perf_counter()
    index = ContaminationIndex.build([EvalItem("bench", item["id"], (item["question"], item["answer"]))
                                      for item in items], config)
    built = time.perf_counter() - start
    matcher = Decontaminator(index, config)
    texts = [document["text"] for document in documents]
    start = time.perf_counter()
    flags = [finding.contaminated for batch in range(0, len(texts), 256)
             for finding in matcher.findings(texts[batch:batch + 256])]
    return flags, {"seconds": time.perf_counter() - start, "index_seconds": built, "index_bytes": index.nbytes,
                   "entries": len(index.hashes)}


def janitor(peer_python: str, items: list[dict], documents: list[dict]) -> tuple[list[bool], dict]:
    with tempfile.TemporaryDirectory() as work:
        for name, rows in (("items", items), ("documents", documents)):
            with open(Path(work) / f"{name}.jsonl", "w", encoding="utf-8") as out:
                out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        subprocess.run([peer_python, __file__, "--janitor", work], check=True)
        result = json.loads((Path(work) / "janitor.json").read_text())
    return result["flags"], {"seconds": result["seconds"]}


def janitor_main(work: Path) -> None:
    """In the peer venv: lm-eval's Janitor (its pure-Python path; the C++ helper is not on PyPI)."""
    from lm_eval.decontamination.janitor import Janitor, word_ngrams_indices

    pin_to_one_core()
    dirt = Janitor()
    for item in read_jsonl(work / "items.jsonl"):
        dirt.register_contaminant_python(item["question"] + " " + item["answer"])
    texts = [row["text"] for row in read_jsonl(work / "documents.jsonl")]
    start = time.perf_counter()
    flags = [any(dirt.normalize_string(ngram) in dirt.dirt_ngrams for ngram, _ in word_ngrams_indices(text, 13))
             for text in texts]
    seconds = time.perf_counter() - start
    (work / "janitor.json").write_text(json.dumps({"flags": flags, "seconds": seconds}))


# --------------------------------------------------------------------------- report


def report(documents: list[dict], results: dict[str, tuple[list[bool], dict]], megabytes: float) -> None:
    print(f"\n{'system':<22}" + "".join(f"{kind + ' ' + lang:>14}" for kind in KINDS for lang in ("en", "zh"))
          + f"{'MB/s':>8}")
    for name, (flags, facts) in results.items():
        cells = []
        for kind in KINDS:
            for lang in ("en", "zh"):
                chosen = [flag for flag, doc in zip(flags, documents, strict=True)
                          if doc["kind"] == kind and doc["lang"] == lang]
                share = sum(chosen) / max(len(chosen), 1)
                cells.append(f"{share:>14.4f}")
        print(f"{name:<22}" + "".join(cells) + f"{megabytes / facts['seconds']:>8.1f}")
    counts = {(kind, lang): sum(doc["kind"] == kind and doc["lang"] == lang for doc in documents)
              for kind in KINDS for lang in ("en", "zh")}
    print("share flagged (recall on planted kinds, false-positive rate on control and clean); documents per cell: "
          + ", ".join(f"{kind} {lang} {count}" for (kind, lang), count in counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--items", type=int, default=100_000, help="eval items in the index (half per language)")
    parser.add_argument("--peer-python", default=".venv-bench/bin/python", help="python with lm-eval installed")
    parser.add_argument("--write-items", type=Path, help="only write the eval items as JSONL here (for scale.py)")
    parser.add_argument("--janitor", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.janitor:
        janitor_main(args.janitor)
        return
    rng = random.Random(0)
    items = cut_items(args.data, args.items, rng)
    if args.write_items:
        args.write_items.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items),
                                    encoding="utf-8")
        return
    documents = planted_documents(args.data, items, rng)
    megabytes = sum(len(doc["text"].encode()) for doc in documents) / 1e6
    print(f"{len(items):,} items; {len(documents):,} documents, {megabytes:.1f} MB; core: {pin_to_one_core()}")
    results = {"ours (defaults)": ours(items, documents),
               "datatrove-style 12-gram": ours(items, documents, ngram=12, min_words=12, cjk_ngram=20,
                                                cjk_min_chars=20, min_overlap=0.0),
               "lm-eval Janitor 13-gram": janitor(args.peer_python, items, documents)}
    report(documents, results, megabytes)
    facts = results["ours (defaults)"][1]
    print(f"\nours: index of {len(items):,} items built in {facts['index_seconds']:.1f} s: {facts['entries']:,} "
          f"entries, {facts['index_bytes'] / 2**20:.1f} MiB ({facts['index_bytes'] / len(items):.0f} bytes per item); "
          f"matching {megabytes / facts['seconds']:.1f} MB/s on one core "
          f"(Janitor {megabytes / results['lm-eval Janitor 13-gram'][1]['seconds']:.1f} MB/s)")


if __name__ == "__main__":
    main()
