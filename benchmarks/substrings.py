"""Exact-substring dedup: planted spans found, and the web sample's repeated spans against a whole-corpus suffix array.

    .venv/bin/python benchmarks/substrings.py [--data ../shared/data] [--min-tokens 50] [--hosts 1500]

1. Planted: `--hosts` pages of `web_sample.jsonl.gz` (200+ tokens) receive spans cut from other pages (lengths
   50-400 tokens, 2-5 copies each) and spans just under the threshold (49 and 30 tokens); the dedup stage runs with
   `substrings` on. Scored on the surviving pages (tests/support/planted_spans.py): span recall, characters removed
   from under-threshold spans and from first copies, and removed characters whose text the document named as keeping
   it does not hold.
2. Web sample: the dedup stage on every page, with `substrings` off and on (one process each, in-process runner, one
   core: the difference is the step's time and memory), then a suffix array (pydivsufsort) over the surviving pages'
   UTF-8 bytes: repeats between two pages found from adjacent suffixes (Lee et al. 2022's method), trimmed to whole
   tokens, kept when min_tokens or longer. Reported: the share of the suffix array's repeated characters our step
   marks (removed copies and the kept ones), ours outside it, time and peak RSS of each, and both per input byte.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the planted set and its scoring are the test's

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from support.builds import run_dedup, write_stage_output  # noqa: E402
from support.planted_spans import mark_first, plant_spans, score  # noqa: E402

from datafactory.filters.substrings import Hashed  # noqa: E402

PLANTED_LENGTHS = [50] * 20 + [64] * 20 + [100] * 20 + [200] * 10 + [400] * 5
SHORT_LENGTHS = [49] * 20 + [30] * 10


def web_rows(data: Path) -> list[dict]:
    rows = []
    with gzip.open(data / "web_sample.jsonl.gz", "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            record = json.loads(line)
            rows.append({"doc_id": record["id"], "source": record["source"], "input_file": "web_sample",
                         "location": str(number), "url": record.get("url"), "date": None, "meta": "{}",
                         "text": record["text"], "keep": True, "reason": None, "detail": None})
    return rows


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def stage_child(build: Path, min_tokens: int, enabled: bool) -> None:
    """Child process: the dedup stage on build's upstream; its time and this process's peak RSS."""
    start = time.perf_counter()
    run_dedup(build, substrings={"enabled": enabled, "min_tokens": min_tokens})
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_mib": peak_rss_mib()}))


def survivors(build: Path) -> dict[str, str]:
    """doc_id -> the text the dedup stage read, for the documents its clusters kept."""
    kept = {row["doc_id"] for row in pq.read_table(build / "stages" / "dedup", columns=["doc_id", "duplicate_of"])
            .to_pylist() if row["duplicate_of"] is None}
    upstream = pq.read_table(build / "stages" / "heuristics", columns=["doc_id", "text"]).to_pylist()
    return {row["doc_id"]: row["text"] for row in upstream if row["doc_id"] in kept}


def char_byte_offsets(text: str) -> np.ndarray:
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    widths = 1 + (points >= 0x80) + (points >= 0x800) + (points >= 0x10000)
    return np.concatenate(([0], np.cumsum(widths)))


def suffix_array_child(build: Path, min_tokens: int, out: Path) -> None:
    """Child process: repeated character ranges per surviving document from a suffix array over all of them."""
    from pydivsufsort import divsufsort, kasai

    texts = survivors(build)
    ids = sorted(texts)
    start = time.perf_counter()
    encoded = [texts[doc_id].encode("utf-8", "surrogatepass").replace(b"\0", b" ") for doc_id in ids]
    corpus = np.frombuffer(bytearray(b"\0".join(encoded) + b"\0"), dtype=np.uint8)  # divsufsort wants it writable
    starts = np.concatenate(([0], np.cumsum([len(blob) + 1 for blob in encoded])))
    suffixes = divsufsort(corpus)
    common = kasai(corpus, suffixes)
    separators = np.flatnonzero(corpus == 0)
    left, right = suffixes[:-1].astype(np.int64), suffixes[1:].astype(np.int64)
    room = np.minimum(separators[np.searchsorted(separators, left)] - left,
                      separators[np.searchsorted(separators, right)] - right)
    length = np.minimum(common[:-1].astype(np.int64), room)
    doc_left, doc_right = np.searchsorted(starts, left, "right") - 1, np.searchsorted(starts, right, "right") - 1
    pairs = (length >= min_tokens) & (doc_left != doc_right)  # a min_tokens-token span is at least that many bytes
    token_starts, token_ends = corpus_tokens(texts, ids, starts)
    marks = np.zeros(len(corpus) + 1, dtype=np.int32)
    for begin in (left[pairs], right[pairs]):
        # the match trimmed to the whole tokens inside it; kept when those are min_tokens or more
        first = np.searchsorted(token_starts, begin)
        last = np.searchsorted(token_ends, begin + length[pairs], "right") - 1
        whole = (last - first + 1 >= min_tokens) & (first < len(token_starts))
        np.add.at(marks, token_starts[first[whole]], 1)
        np.add.at(marks, token_ends[last[whole]], -1)
    covered = np.cumsum(marks)[:-1] > 0
    seconds = time.perf_counter() - start
    ranges = {}
    for index, doc_id in enumerate(ids):
        text = texts[doc_id]
        in_bytes = covered[starts[index] : starts[index] + len(encoded[index])]
        chars = in_bytes[char_byte_offsets(text)[:-1]]
        if chars.any():
            ranges[doc_id] = token_runs(text, chars, min_tokens)
    out.write_text(json.dumps(ranges))
    print(json.dumps({"seconds": seconds, "peak_mib": peak_rss_mib(), "bytes": int(len(corpus))}))


def corpus_tokens(texts: dict[str, str], ids: list[str], starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every token's byte range in the concatenated corpus, in order (our token definition)."""
    all_starts, all_ends = [], []
    for index, doc_id in enumerate(ids):
        hashed, offsets = Hashed.of(texts[doc_id]), char_byte_offsets(texts[doc_id])
        all_starts.append(starts[index] + offsets[hashed.starts])
        all_ends.append(starts[index] + offsets[hashed.ends])
    return np.concatenate(all_starts), np.concatenate(all_ends)


def token_runs(text: str, chars: np.ndarray, min_tokens: int) -> list[tuple[int, int]]:
    """Runs of covered characters trimmed to the whole tokens inside them, kept when min_tokens or longer."""
    hashed = Hashed.of(text)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], chars.astype(np.int8), [0]))))
    runs = []
    for begin, end in zip(edges[::2], edges[1::2], strict=True):
        first = np.searchsorted(hashed.starts, begin)
        last = np.searchsorted(hashed.ends, end, "right")
        if last - first >= min_tokens:
            runs.append((int(hashed.starts[first]), int(hashed.ends[last - 1])))
    return runs


def our_ranges(build: Path) -> dict[str, list[tuple[int, int]]]:
    """Characters our step marks as repeated: each removed span, and the kept copy it names."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    for span in pq.read_table(build / "stages" / "dedup" / "_substrings").to_pylist():
        ranges.setdefault(span["doc_id"], []).append((span["start"], span["end"]))
        length = span["end"] - span["start"]
        ranges.setdefault(span["kept_in"], []).append((span["kept_start"], span["kept_start"] + length))
    return ranges


def covered_chars(ranges: dict[str, list[tuple[int, int]]]) -> set[tuple[str, int]]:
    return {(doc_id, char) for doc_id, spans in ranges.items() for start, end in spans for char in range(start, end)}


def planted(args: argparse.Namespace, work: Path) -> None:
    rng = random.Random(0)
    pages = [row for row in web_rows(args.data) if Hashed.of(row["text"]).tokens >= 200]
    rng.shuffle(pages)
    hosts, donors = pages[: args.hosts], [row["text"] for row in pages[args.hosts :]]
    lengths = PLANTED_LENGTHS + SHORT_LENGTHS
    rows, copies = plant_spans(hosts, donors, rng, lengths, copies=3)
    build = work / "planted"
    write_stage_output("heuristics", build, rows, parts=4)
    result = child("--stage", str(build), str(args.min_tokens), "on")
    stage = {row["doc_id"]: row for row in pq.read_table(build / "stages" / "dedup").to_pylist()}
    kept = [row for row in rows if stage[row["doc_id"]]["duplicate_of"] is None]
    on_survivors = mark_first(kept, [copy for copy in copies if stage[copy.doc_id]["duplicate_of"] is None])
    removed = pq.read_table(build / "stages" / "dedup" / "_substrings").to_pylist()
    found = score(kept, on_survivors, removed, args.min_tokens)
    planted_chars = sum(copy.end - copy.start for copy in on_survivors if copy.tokens >= args.min_tokens
                        and not copy.first)
    print(f"planted: {len(hosts):,} pages, {len(PLANTED_LENGTHS)} spans of 50-400 tokens and {len(SHORT_LENGTHS)} "
          f"under the threshold, 3 copies each; {len(kept):,} pages survive the clusters")
    print(f"  span recall {found.recall:.4f} of {planted_chars:,} planted characters (non-first copies)")
    print(f"  removed from under-threshold spans: {found.short_removed:,} chars; from first copies: "
          f"{found.firsts_removed:,}; not covered by a {args.min_tokens}-token window another page holds (merged "
          f"gaps): {found.unverified:,}")
    print(f"  all removals: {len(removed):,} spans, {sum(span['bytes'] for span in removed):,} bytes "
          f"(planted and the pages' own repeats); stage {result['seconds']:.1f} s")


def web_sample(args: argparse.Namespace, work: Path) -> None:
    rows = web_rows(args.data)
    megabytes = sum(len(row["text"].encode("utf-8", "surrogatepass")) for row in rows) / 1e6
    runs = {}
    for mode in ("off", "on"):
        build = work / f"web-{mode}"
        write_stage_output("heuristics", build, rows, parts=4)
        runs[mode] = child("--stage", str(build), str(args.min_tokens), mode)
    build = work / "web-on"
    sa = child("--suffix-array", str(build), str(args.min_tokens), str(work / "sa.json"))
    theirs = covered_chars(json.loads((work / "sa.json").read_text()))
    ours = covered_chars(our_ranges(build))
    step = runs["on"]["seconds"] - runs["off"]["seconds"]
    step_mib = max(0.0, runs["on"]["peak_mib"] - runs["off"]["peak_mib"])
    print(f"\nweb sample: {len(rows):,} pages, {megabytes:.1f} MB; in-process runner, one core")
    print(f"  dedup stage, substrings off: {runs['off']['seconds']:.1f} s, peak {runs['off']['peak_mib']:,.0f} MiB")
    print(f"  dedup stage, substrings on:  {runs['on']['seconds']:.1f} s, peak {runs['on']['peak_mib']:,.0f} MiB")
    print(f"  the step: {step:.1f} s = {megabytes / step:.1f} MB/s per core; +{step_mib:,.0f} MiB "
          f"({step_mib * 2**20 / (megabytes * 1e6):.2f} bytes per input byte)")
    print(f"  suffix array (pydivsufsort, survivors' {sa['bytes'] / 1e6:.1f} MB): {sa['seconds']:.1f} s, peak "
          f"{sa['peak_mib']:,.0f} MiB ({sa['peak_mib'] * 2**20 / sa['bytes']:.1f} bytes per input byte)")
    shared = len(theirs & ours)
    print(f"  repeated characters (spans of {args.min_tokens}+ tokens in 2+ surviving pages): suffix array "
          f"{len(theirs):,}, ours {len(ours):,}; ours holds {shared / max(1, len(theirs)):.4f} of the suffix "
          f"array's; {len(ours - theirs):,} of ours are outside it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--min-tokens", type=int, default=50)
    parser.add_argument("--hosts", type=int, default=1500)
    parser.add_argument("--part", choices=["planted", "web", "both"], default="both")
    parser.add_argument("--stage", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--suffix-array", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        stage_child(Path(args.stage[0]), int(args.stage[1]), args.stage[2] == "on")
        return
    if args.suffix_array:
        suffix_array_child(Path(args.suffix_array[0]), int(args.suffix_array[1]), Path(args.suffix_array[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("planted", "both"):
            planted(args, Path(tmp))
        if args.part in ("web", "both"):
            web_sample(args, Path(tmp))


if __name__ == "__main__":
    main()
