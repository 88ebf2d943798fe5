"""MinHash signature throughput per core (ours vs datatrove, datasketch, rensa) and the dedup stage's peak memory.

    python3 -m venv .venv-bench-dedup && .venv-bench-dedup/bin/pip install -r benchmarks/requirements-dedup-peers.txt
    .venv/bin/python benchmarks/dedup_throughput.py [--data ../shared/data] [--stage-docs 100000,300000]

Signatures: `web_sample.jsonl.gz`, one process, 128 permutations, 5-grams, best of 5 rounds in which ours and the
peers take turns. Ours is the whole step (fold, tokenise, hash shingles, MinHash) in batches of 256, with the numba
kernel when numba is importable and with the numpy fallback. The peers run in the peer venv from this same file
(`--peers`): datatrove's MinhashDedupSignature step (first round only), datasketch `MinHash.bulk` and rensa `RMinHash`
on whitespace 5-gram shingles built in Python, and rensa on precomputed shingles (hashing alone). Stage: the whole
dedup stage (in-process runner, one process) on synthetic ~1 KB documents, 10% near and 5% exact duplicates; wall
time and peak RSS.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import best_of  # benchmarks/ is on sys.path when a benchmark runs as a script

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_PEER = ROOT / ".venv-bench-dedup" / "bin" / "python"
BATCH = 256
NUM_PERM = 128
ROUNDS = 5  # best of: ours and the peers alternate; datatrove (minutes) runs in the first round only


def read_texts(data: Path) -> list[str]:
    with gzip.open(data / "web_sample.jsonl.gz", "rt", encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines if line.strip()]


def whitespace_shingles(text: str) -> list[bytes]:
    tokens = text.split()
    return [" ".join(tokens[i : i + 5]).encode("utf-8") for i in range(max(1, len(tokens) - 4))]


# --------------------------------------------------------------------------- peers (run in the peer venv)


def peers_main(data: Path, with_datatrove: bool) -> None:
    """Times datatrove's signature step, datasketch bulk and rensa once each; prints {name: seconds} as JSON."""
    import numpy as np
    from datasketch import MinHash
    from datatrove.data import Document
    from datatrove.pipeline.dedup import MinhashDedupSignature
    from rensa import RMinHash

    texts = read_texts(data)
    shingled = [whitespace_shingles(text) for text in texts]
    as_str = [[shingle.decode() for shingle in shingles] for shingles in shingled]

    def datatrove() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            step = MinhashDedupSignature(tmp)
            docs = (Document(text=text, id=str(i)) for i, text in enumerate(texts))
            step.run(docs, rank=0, world_size=1)

    def rensa(lists: list[list[str]]) -> None:
        for shingles in lists:
            sketch = RMinHash(num_perm=NUM_PERM, seed=1)
            sketch.update(shingles)
            sketch.digest()

    timings = {"datatrove MinhashDedupSignature": best_of(datatrove, 1)} if with_datatrove else {}
    timings |= {
        "datasketch MinHash.bulk + shingling": best_of(
            lambda: MinHash.bulk([whitespace_shingles(text) for text in texts], num_perm=NUM_PERM), 1
        ),
        "rensa RMinHash + shingling": best_of(
            lambda: rensa([[s.decode() for s in whitespace_shingles(text)] for text in texts]), 1
        ),
        "rensa RMinHash, hashing alone": best_of(lambda: rensa(as_str), 1),
    }
    np.asarray(0)  # numpy is datasketch's; imported here so its import time is not in the first timing
    print(json.dumps(timings))


# --------------------------------------------------------------------------- ours


def ours(texts: list[str]) -> dict[str, float]:
    """Times our step once per variant (the caller interleaves rounds with the peers')."""
    from datafactory.factory.config import DedupConfig
    from datafactory.filters import dedup
    from datafactory.filters.dedup import MinHasher

    hasher = MinHasher(DedupConfig(num_perm=NUM_PERM))
    hasher.signatures(texts[:BATCH])  # tables built, kernel compiled: one-off costs per worker

    def run(compiled: bool) -> None:
        for start in range(0, len(texts), BATCH):
            hasher.signatures(texts[start : start + BATCH], compiled=compiled)

    def shingle_only() -> None:
        for start in range(0, len(texts), BATCH):
            hasher.shingler.hashes(texts[start : start + BATCH])

    timings = {"ours, shingle hashing alone": best_of(shingle_only, 1)}
    if dedup.numba is not None:
        timings["ours, whole step (numba kernel)"] = best_of(lambda: run(True), 1)
    timings["ours, whole step (numpy kernel)"] = best_of(lambda: run(False), 1)
    return timings


# --------------------------------------------------------------------------- the whole stage


def synthetic_rows(count: int, seed: int = 0) -> list[dict]:
    """~1 KB documents of Zipf-distributed words; 10% near duplicates (3% of words changed), 5% exact copies."""
    import numpy as np

    rng = np.random.default_rng(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"  # words without digits: exact keys ignore digit values
    vocabulary = np.array(["".join(letters[i // 26**k % 26] for k in range(4)) for i in range(50_000)])
    ranks = np.minimum(rng.zipf(1.2, size=(count, 150)), len(vocabulary)) - 1
    texts = [" ".join(vocabulary[row]) for row in ranks]
    kinds = rng.random(count)
    for i in range(1, count):
        if kinds[i] < 0.05:
            texts[i] = texts[rng.integers(i)]
        elif kinds[i] < 0.15:
            words = texts[rng.integers(i)].split(" ")
            for position in rng.choice(len(words), size=len(words) * 3 // 100, replace=False):
                words[position] = vocabulary[rng.integers(len(vocabulary))]
            texts[i] = " ".join(words)
    return [
        {"doc_id": f"syn-{i:08d}", "source": "synthetic", "input_file": "synthetic", "location": str(i), "url": None,
         "date": None, "meta": "{}", "text": text, "keep": True, "reason": None, "detail": None}
        for i, text in enumerate(texts)
    ]


def stage_main(count: int, work: Path) -> None:
    """Child-process entry point: writes the synthetic upstream, runs the stage, prints its counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from datafactory.factory.config import parse_config
    from datafactory.factory.markers import write_marker
    from datafactory.factory.records import stage_schema
    from datafactory.pipelines.registry import run_stage_named

    upstream = work / "stages" / "heuristics"
    upstream.mkdir(parents=True)
    rows, parts = synthetic_rows(count), []
    for index in range(8):
        parts.append(upstream / f"part-{index:05d}-of-00008.parquet")
        pq.write_table(pa.Table.from_pylist(rows[index::8], schema=stage_schema(None, [])), parts[-1])
    write_marker(work, upstream, "heuristics", "bench", "bench", {"documents": count}, parts)
    del rows
    runner = {"direct_running_mode": "in_memory"}
    config = parse_config({"inputs": [{"path": "unused", "source": "synthetic"}], "runner": runner})
    start = time.perf_counter()
    result = run_stage_named("dedup", config, work)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB; the runner is in this process
    print(json.dumps({"seconds": seconds, "peak_rss_gib": peak, "counts": result.counts}))


def measure_stage(count: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, __file__, "--stage", str(count), tmp], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER)
    parser.add_argument("--stage-docs", default="100000", help="comma-separated corpus sizes for the stage run")
    parser.add_argument("--peers", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--with-datatrove", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stage", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peers:
        peers_main(args.data, args.with_datatrove)
        return
    sys.path.insert(0, str(ROOT))
    if args.stage:
        stage_main(int(args.stage[0]), Path(args.stage[1]))
        return
    texts = read_texts(args.data)
    megabytes = sum(len(text.encode("utf-8")) for text in texts) / 1e6
    print(f"web sample: {len(texts):,} documents, {megabytes:.1f} MB; {NUM_PERM} permutations, one core\n")
    timings: dict[str, float] = {}
    for round_ in range(ROUNDS):  # ours and the peers take turns, so load from elsewhere hits both alike
        peers = [str(args.peer_python), __file__, "--peers", "--data", str(args.data)]
        done = subprocess.run(peers + ([] if round_ else ["--with-datatrove"]), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(done.stderr[-3000:])
        for name, seconds in (ours(texts) | json.loads(done.stdout.strip().splitlines()[-1])).items():
            timings[name] = min(seconds, timings.get(name, seconds))
    reference = min(seconds for name, seconds in timings.items() if name.startswith("ours, whole step"))
    print(f"{'step':<40}{'docs/s':>10}{'MB/s':>8}{'time vs ours':>14}")
    for name, seconds in timings.items():
        print(f"{name:<40}{len(texts) / seconds:>10,.0f}{megabytes / seconds:>8.1f}{seconds / reference:>13.2f}x")
    print()
    for count in (int(value) for value in args.stage_docs.split(",") if value):
        result = measure_stage(count)
        counts = result["counts"]
        print(
            f"stage on {count:,} synthetic documents: {result['seconds']:.0f} s ({count / result['seconds']:,.0f} "
            f"docs/s), peak RSS {result['peak_rss_gib']:.2f} GiB; kept {counts['kept']:,}, "
            f"removed {counts['dropped']}, {counts['components']['rounds']} rounds"
        )


if __name__ == "__main__":
    main()
