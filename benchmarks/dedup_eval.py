"""Near-duplicate detection quality: pair precision / recall / F1 per edit strength, ours vs datatrove's MinhashDedup.

    python3 -m venv .venv-bench-dedup && .venv-bench-dedup/bin/pip install -r benchmarks/requirements-dedup-peers.txt
    .venv/bin/python benchmarks/dedup_eval.py [--data ../shared/data] [--peer-python .venv-bench-dedup/bin/python]

Originals are English and Chinese documents of `web_sample.jsonl.gz` with no near-duplicate among themselves (true
5-shingle Jaccard < 0.3 to every other). Each original gets one copy, edited at one strength (strengths assigned in
turn): a share of its words (Chinese: characters) substituted, inserted or deleted, its lines shuffled, or navigation
and footer lines added (the same pool for every copy, as on real sites). A pair is right when both documents come from
one original. Ours is the dedup stage itself (defaults, line dedup off); datatrove runs its four MinhashDedup steps
(defaults: 14 x 8 hashes, 5-grams) per language, in the peer venv, from this same file (`--datatrove`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_PEER = ROOT / ".venv-bench-dedup" / "bin" / "python"
PER_LANGUAGE = 700
STRENGTHS = ["edit 1%", "edit 2%", "edit 3%", "edit 4%", "edit 8%", "edit 15%", "shuffle lines", "boilerplate"]
BOILERPLATE = {
    "en": [
        "Skip to main content", "Subscribe to our newsletter for weekly updates", "Share on Facebook | Tweet | Email",
        "Privacy Policy | Terms of Use | Cookie Settings", "© 2024 Example Media Group. All rights reserved.",
        "We use cookies to improve your experience on our website.", "Related articles", "Leave a comment",
    ],
    "zh": [
        "首页 | 新闻 | 财经 | 体育 | 娱乐 | 联系我们", "版权所有 © 2024 示例网络科技有限公司 保留所有权利",
        "免责声明：本文仅代表作者个人观点，与本网站无关。", "关注我们的微信公众号，获取更多精彩内容",
        "本站部分内容来源于网络，如有侵权请联系删除。", "上一篇 下一篇 返回顶部", "热门推荐", "发表评论",
    ],
}


def read_jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


# --------------------------------------------------------------------------- benchmark corpus


def originals(rows: list[dict], lang: str, rng: random.Random) -> list[dict]:
    """Long enough documents of one language, none a near-duplicate (Jaccard >= 0.3) of another."""
    from datafactory.factory.config import DedupConfig
    from datafactory.filters.dedup import MinHasher, band_keys, lsh_params, shingles

    minimum = 150 if lang == "en" else 400
    docs = [row for row in rows if row.get("lang") == lang and len(units_of(row["text"], lang)) >= minimum]
    config = DedupConfig(threshold=0.3)
    bands, rows_per_band = lsh_params(config)
    signatures = MinHasher(config).signatures([doc["text"] for doc in docs])
    sets = [set(shingles(doc["text"], 5, 5)) for doc in docs]
    seen: dict[str, int] = {}
    dropped: set[int] = set()
    for i, signature in enumerate(signatures):
        for key in band_keys(signature, bands, rows_per_band):
            j = seen.setdefault(key, i)
            if j != i and j not in dropped and len(sets[i] & sets[j]) >= 0.3 * len(sets[i] | sets[j]):
                dropped.add(i)
    kept = [doc for i, doc in enumerate(docs) if i not in dropped and sets[i]]
    rng.shuffle(kept)
    return kept[:PER_LANGUAGE]


def units_of(text: str, lang: str) -> list[str]:
    """Words, or the non-space characters of Chinese text."""
    return text.split() if lang == "en" else [ch for ch in text if not ch.isspace()]


def edit_units(text: str, lang: str, rate: float, pool: list[str], rng: random.Random) -> str:
    """Substitute (50%), insert (25%) or delete (25%) rate x units: words, or characters for Chinese."""
    lines = [list(line) if lang == "zh" else line.split(" ") for line in text.split("\n")]
    slots = [(i, j) for i, line in enumerate(lines) for j in range(len(line)) if line[j].strip()]
    for i, j in sorted(rng.sample(slots, max(1, round(rate * len(slots)))), reverse=True):
        action = rng.random()
        if action < 0.5:
            lines[i][j] = rng.choice(pool)
        elif action < 0.75:
            lines[i].insert(j, rng.choice(pool))
        else:
            del lines[i][j]
    return "\n".join(("" if lang == "zh" else " ").join(line) for line in lines)


def edited(text: str, lang: str, strength: str, pool: list[str], rng: random.Random) -> str:
    if strength == "shuffle lines":
        lines = text.split("\n")
        rng.shuffle(lines)
        return "\n".join(lines)
    if strength == "boilerplate":
        lines = rng.sample(BOILERPLATE[lang], 4)
        return "\n".join(lines[:2]) + "\n" + text + "\n" + "\n".join(lines[2:])
    return edit_units(text, lang, float(strength.split()[1].rstrip("%")) / 100, pool, rng)


def build_corpus(rows: list[dict], seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(documents, pairs): every original and its one edited copy, and each pair's strength and true Jaccard."""
    from datafactory.filters.dedup import shingles

    rng = random.Random(seed)
    documents, pairs = [], []
    for lang in ("en", "zh"):
        base = originals(rows, lang, rng)
        pool = sorted({unit for doc in base for unit in units_of(doc["text"], lang)})
        for index, doc in enumerate(base):
            strength = STRENGTHS[index % len(STRENGTHS)]
            copy = edited(doc["text"], lang, strength, pool, rng)
            a, b = set(shingles(doc["text"], 5, 5)), set(shingles(copy, 5, 5))
            original_id, copy_id = f"s{seed}-{lang}-{index:04d}-a", f"s{seed}-{lang}-{index:04d}-b"
            documents.append({"id": original_id, "lang": lang, "text": doc["text"]})
            documents.append({"id": copy_id, "lang": lang, "text": copy})
            jaccard = len(a & b) / len(a | b)
            pairs.append({"lang": lang, "strength": strength, "ids": (original_id, copy_id), "jaccard": jaccard})
    return documents, pairs


# --------------------------------------------------------------------------- the two systems


def run_ours(documents: list[dict], work: Path) -> dict[str, str]:
    """doc id -> cluster id from the dedup stage itself (in-process FnApiRunner)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from datafactory.factory.config import parse_config
    from datafactory.factory.markers import write_marker
    from datafactory.factory.records import stage_schema
    from datafactory.pipelines.registry import run_stage_named

    upstream = work / "stages" / "heuristics"
    upstream.mkdir(parents=True)
    rows = [
        {"doc_id": doc["id"], "source": doc["lang"], "input_file": "eval", "location": str(i), "url": None,
         "date": None, "meta": "{}", "text": doc["text"], "keep": True, "reason": None, "detail": None}
        for i, doc in enumerate(documents)
    ]
    part = upstream / "part-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=stage_schema(None, [])), part)
    write_marker(work, upstream, "heuristics", "eval", "eval", {"documents": len(rows)}, [part])
    settings = {"dedup": {"paragraphs": {"enabled": False}}, "runner": {"direct_running_mode": "in_memory"}}
    config = parse_config({"inputs": [{"path": "unused", "source": "eval"}], **settings})
    run_stage_named("dedup", config, work)
    out = pq.read_table(work / "stages" / "dedup", columns=["doc_id", "minhash_cluster"]).to_pylist()
    return {row["doc_id"]: row["minhash_cluster"] or row["doc_id"] for row in out}


def run_datatrove(documents: list[dict], work: Path, peer: Path) -> dict[str, str]:
    """doc id -> cluster id from datatrove's MinhashDedup steps, run per language in the peer venv."""
    clusters: dict[str, str] = {}
    for lang in ("en", "zh"):
        folder = work / f"datatrove-{lang}"
        (folder / "input").mkdir(parents=True)
        lines = "".join(json.dumps({"id": d["id"], "text": d["text"]}) + "\n" for d in documents if d["lang"] == lang)
        (folder / "input" / "docs.jsonl").write_text(lines, encoding="utf-8")
        done = subprocess.run([str(peer), __file__, "--datatrove", str(folder), lang], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"datatrove failed for {lang}:\n{done.stderr[-3000:]}")
        clusters |= json.loads((folder / "clusters.json").read_text())
    return clusters


def datatrove_main(folder: Path, lang: str) -> None:
    """Peer-venv entry point: signatures, buckets, clusters, filter; writes clusters.json (id -> cluster)."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    config = MinhashConfig()
    language = "eng" if lang == "en" else "zho_Hani"
    signature = MinhashDedupSignature(str(folder / "sigs"), config=config, language=language)
    buckets = MinhashDedupBuckets(str(folder / "sigs"), str(folder / "buckets"), config=config)
    clusters = MinhashDedupCluster(str(folder / "buckets"), str(folder / "remove"), config=config, save_cluster_id=True)
    removed = JsonlWriter(str(folder / "removed"))
    keep = MinhashDedupFilter(str(folder / "remove"), exclusion_writer=removed, load_cluster_ids=True)
    steps = [
        ([JsonlReader(str(folder / "input")), signature], 1),
        ([buckets], config.num_buckets),
        ([clusters], 1),
        ([JsonlReader(str(folder / "input")), keep, JsonlWriter(str(folder / "kept"))], 1),
    ]
    for index, (pipeline, tasks) in enumerate(steps):
        LocalPipelineExecutor(pipeline, tasks=tasks, workers=1, logging_dir=str(folder / f"logs-{index}")).run()
    clusters = {}
    for path in sorted(folder.glob("kept/*.jsonl.gz")) + sorted(folder.glob("removed/*.jsonl.gz")):
        for row in read_jsonl(path):
            cluster = row["metadata"].get("minhash_cluster_id", -1)
            clusters[row["id"]] = row["id"] if cluster == -1 else f"{lang}-cluster-{cluster}"
    (folder / "clusters.json").write_text(json.dumps(clusters))


# --------------------------------------------------------------------------- scoring


def predicted_pairs(clusters: dict[str, str]) -> set[tuple[str, str]]:
    members: dict[str, list[str]] = defaultdict(list)
    for doc_id, cluster in clusters.items():
        members[cluster].append(doc_id)
    return {pair for group in members.values() for pair in combinations(sorted(group), 2)}


def scores(pairs: list[dict], predicted: set[tuple[str, str]]) -> tuple[float, float, float]:
    """Precision over predicted pairs touching these documents, recall over these true pairs, F1."""
    docs = {doc_id for pair in pairs for doc_id in pair["ids"]}
    truth = {tuple(sorted(pair["ids"])) for pair in pairs}
    touching = {pair for pair in predicted if pair[0] in docs or pair[1] in docs}
    found = len(truth & predicted)
    precision = found / len(touching) if touching else 1.0
    recall = found / len(truth) if truth else 0.0
    return precision, recall, 2 * precision * recall / (precision + recall) if precision + recall else 0.0


RECALL_FLOORS = (0.75, 0.85)


def same_origin(pair: tuple[str, str]) -> bool:
    return pair[0][:-2] == pair[1][:-2]


def report(pairs: list[dict], systems: dict[str, set[tuple[str, str]]]) -> None:
    names = list(systems)
    header = f"{'lang':<5}{'edit':<15}{'pairs':>6}{'mean J':>8}" + "".join(f"{name + ' P/R/F1':>26}" for name in names)
    print(header)
    for lang in ("en", "zh"):
        for strength in STRENGTHS:
            chosen = [pair for pair in pairs if pair["lang"] == lang and pair["strength"] == strength]
            mean = sum(pair["jaccard"] for pair in chosen) / len(chosen)
            cells = "".join(f"{' / '.join(f'{v:.3f}' for v in scores(chosen, systems[name])):>26}" for name in names)
            print(f"{lang:<5}{strength:<15}{len(chosen):>6}{mean:>8.3f}{cells}")
    print()
    for name, predicted in systems.items():
        precision = sum(map(same_origin, predicted)) / len(predicted) if predicted else 1.0
        recalls = []
        for floor in RECALL_FLOORS:
            above = [pair for pair in pairs if pair["jaccard"] >= floor]
            found = sum(tuple(sorted(pair["ids"])) in predicted for pair in above)
            recalls.append(f"{found / len(above):.3f} of the {len(above)} pairs with true Jaccard >= {floor:.2f}")
        print(f"{name:<11} precision over all {len(predicted):,} predicted pairs {precision:.3f}; recall "
              + ", ".join(recalls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER)
    parser.add_argument("--seeds", type=int, default=3, help="corpora built (edits drawn) with seeds 0..N-1")
    parser.add_argument("--ours-only", action="store_true", help="skip datatrove (its figures do not change with ours)")
    parser.add_argument("--datatrove", nargs=2, metavar=("FOLDER", "LANG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.datatrove:
        datatrove_main(Path(args.datatrove[0]), args.datatrove[1])
        return
    sys.path.insert(0, str(ROOT))
    from datafactory.factory.config import DedupConfig
    from datafactory.filters.dedup import lsh_params

    rows = read_jsonl(args.data / "web_sample.jsonl.gz")
    pairs: list[dict] = []
    names = ("ours",) if args.ours_only else ("ours", "datatrove")
    systems: dict[str, set[tuple[str, str]]] = {name: set() for name in names}
    seconds = dict.fromkeys(systems, 0.0)
    for seed in range(args.seeds):
        documents, seed_pairs = build_corpus(rows, seed)
        pairs += seed_pairs
        with tempfile.TemporaryDirectory() as tmp:
            for name in systems:
                start = time.perf_counter()
                if name == "ours":
                    clusters = run_ours(documents, Path(tmp) / "ours")
                else:
                    clusters = run_datatrove(documents, Path(tmp), args.peer_python)
                systems[name] |= predicted_pairs(clusters)
                seconds[name] += time.perf_counter() - start
    print(f"{args.seeds} corpora of ~{len(pairs) // args.seeds:,} originals, each with one edited copy; "
          + ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items()) + "\n")
    config = DedupConfig()
    print(f"ours: threshold {config.threshold}, LSH {'x'.join(map(str, lsh_params(config)))}, verify >= "
          f"{config.verify_threshold}")
    report(pairs, systems)


if __name__ == "__main__":
    main()
