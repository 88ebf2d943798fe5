"""Whole pipeline vs datatrove, side by side on the same files, and against the sum of our bare kernels' times.

    .venv/bin/python benchmarks/pipeline_vs_datatrove.py [--size 500] [--peer-python .venv-bench/bin/python]

The same work on both sides, from four JSONL files of real web text (scaled up as in `scale.py`) to packed token
shards: English only at fastText score >= 0.65 -> Gopher repetition, Gopher quality, C4, FineWeb (published
defaults) -> MinHash near-dup removal -> tokenize (BPE, 8k vocabulary trained on the corpus beforehand, not timed)
-> pack. Ours is `factory build` (every stage, Prefect, the background server started before timing; it also
does what datatrove's pipeline does not: text cleaning, PII, exact dedup, signals, quality scoring, the catalog
and report). datatrove 0.10.1 runs its MinHash recipe (signature, buckets, cluster, filter) and
DocumentTokenizer + DocumentTokenizerMerger under LocalPipelineExecutor with 4 tasks on 2 workers. datatrove lives
in its own venv (see `filters_vs_datatrove.py` for how to make `.venv-bench`); this script runs itself there with
`--peer`.

The kernel sum: our bare kernels (reading and cleaning records, PII redaction, language ID, the rules, MinHash
signatures, sentencepiece encoding) on the same documents each would see in the build, one process pinned to one
core; ideal wall on 2 cores is half of it. Prints wall, MB/s and peak RSS of each whole process tree and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS, WORKERS, VOCAB = 4, 2, 8000
EOS = "<|endoftext|>"


# --------------------------------------------------------------------------- datatrove side (runs in .venv-bench)


def train_hf_tokenizer(corpus: Path, out: Path) -> None:
    """A byte-level BPE of VOCAB tokens trained on the corpus's first lines, as datatrove users load one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    def lines():
        with (corpus / "web-0.jsonl").open(encoding="utf-8") as records:
            for number, line in enumerate(records):
                if number >= 3000:
                    return
                yield json.loads(line)["text"]

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(lines(), trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.save(str(out))


def run_datatrove(corpus: Path, work: Path, tokenizer: Path) -> None:
    """datatrove's equivalent pipeline, stage by stage as its MinHash and tokenization examples run it."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer, DocumentTokenizerMerger
    from datatrove.pipeline.writers import JsonlWriter

    minhash = MinhashConfig()
    logs = work / "logs"

    def execute(name: str, pipeline: list, tasks: int) -> None:
        began = time.perf_counter()
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=min(WORKERS, tasks),
                              logging_dir=str(logs / name)).run()
        print(f"datatrove {name}: {time.perf_counter() - began:.1f} s", flush=True)

    execute("filter+signature", [
        JsonlReader(str(corpus), glob_pattern="web-*.jsonl"),
        LanguageFilter(languages=["en"], language_threshold=0.65),
        GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(), FineWebQualityFilter(),
        JsonlWriter(str(work / "filtered")),
        MinhashDedupSignature(output_folder=str(work / "signatures"), config=minhash),
    ], TASKS)
    execute("buckets", [MinhashDedupBuckets(input_folder=str(work / "signatures"),
                                            output_folder=str(work / "buckets"), config=minhash)],
            minhash.num_buckets)
    execute("cluster", [MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"),
                                            config=minhash)], 1)
    execute("dedup+tokenize", [
        JsonlReader(str(work / "filtered")),
        MinhashDedupFilter(input_folder=str(work / "remove")),
        DocumentTokenizer(output_folder=str(work / "tokens"), local_working_dir=str(work / "tokens-tmp"),
                          tokenizer_name_or_path=str(tokenizer), eos_token=EOS),
    ], TASKS)
    execute("pack", [DocumentTokenizerMerger(input_folder=str(work / "tokens"), output_folder=str(work / "packed"),
                                             save_filename="web")], 1)


def peer_main(corpus: Path, work: Path, train_only: bool) -> None:
    """With ``train_only``: its tokenizer, where none is there yet (not timed); else the timed pipeline."""
    from filters_vs_datatrove import install_lid_model

    install_lid_model()
    tokenizer = work / "tokenizer.json"
    if train_only:
        if not tokenizer.exists():
            train_hf_tokenizer(corpus, tokenizer)
        return
    run_datatrove(corpus, work, tokenizer)


# --------------------------------------------------------------------------- our side (runs in .venv)


def timed_tree(command: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak summed RSS of the command's process tree and its output."""
    from scale import run_watched

    wall, peaks, output = run_watched(command)
    return wall, max(peaks.values()), output


def train_our_tokenizer(corpus: Path, out: Path) -> None:
    from datafactory.factory.config import TokenizerConfig
    from datafactory.pipelines.tokenizer import train_sentencepiece

    with (corpus / "web-0.jsonl").open(encoding="utf-8") as records:
        lines = [json.loads(line)["text"] for _, line in zip(range(3000), records, strict=False)]
    train_sentencepiece(lines, out, TokenizerConfig(vocab_size=VOCAB))


def our_config(corpus: Path, tokenizer: Path) -> Path:
    import yaml

    config = corpus / "build.yaml"
    config.write_text(yaml.safe_dump({
        "inputs": [{"path": "web-*.jsonl", "source": "web"}],
        "langid": {"allow": ["en"], "thresholds": {"en": 0.65}},
        "tokenize": {"tokenizer": {"model": str(tokenizer)}},
    }))
    return config


def kernel_seconds(corpus: Path, tokenizer: Path) -> dict[str, float]:
    """CPU seconds of each bare kernel on one core, each on what it would see in the build: reading (JSON, text
    cleaning, record checks), PII redaction, language ID, the rules, MinHash signatures, the default quality model,
    encoding."""
    import sentencepiece as spm
    from timing import pin_to_one_core

    from datafactory.factory.config import DedupConfig, HeuristicsConfig, IngestConfig, InputSpec, LangidConfig
    from datafactory.filters.dedup import MinHasher
    from datafactory.filters.heuristics import HeuristicFilter
    from datafactory.filters.langid import LanguageIdentifier
    from datafactory.filters.pii import PiiRedactor
    from datafactory.filters.quality_default import DEFAULT_MODEL
    from datafactory.filters.quality_train import load_scorer
    from datafactory.pipelines.readers import RecordReader

    pin_to_one_core()
    ingest = IngestConfig()
    identifier, rules = LanguageIdentifier(LangidConfig()), HeuristicFilter(HeuristicsConfig())
    hasher, encoder = MinHasher(DedupConfig()), spm.SentencePieceProcessor(model_file=str(tokenizer))
    redactor, quality = PiiRedactor(ingest.pii), load_scorer(DEFAULT_MODEL)
    identifier.predict(["load the model before timing"])
    quality.score_with_signals(["load the models before timing"], [{}])
    seconds = dict.fromkeys(("read", "pii", "langid", "rules", "minhash", "quality", "encode"), 0.0)

    def timed(name: str, work):
        began = time.process_time()
        result = work()
        seconds[name] += time.process_time() - began
        return result

    for path in sorted(corpus.glob("web-*.jsonl")):
        rows = RecordReader(InputSpec(path=path.name, source="web"), ingest, str(path), path.name).rows()
        while batch := timed("read", lambda rows=rows: [row for _, row in zip(range(2000), rows, strict=False)]):
            texts = timed("pii", lambda batch=batch: [redactor.redact(row["text"]).text for row in batch
                                                      if row["keep"]])
            found = timed("langid", lambda texts=texts: identifier.predict(texts))
            english = [text for text, r in zip(texts, found, strict=True) if r.lang == "en" and r.score >= 0.65]
            measured = timed("rules", lambda english=english: [(t, rules.measurement(t, "en")) for t in english])
            kept = [(text, m.signals) for text, m in measured if rules.judge(m).keep]
            texts = [text for text, _ in kept]
            timed("minhash", lambda texts=texts: hasher.signatures(texts))
            timed("quality", lambda kept=kept, texts=texts: quality.score_with_signals(texts, [s for _, s in kept]))
            timed("encode", lambda texts=texts: encoder.encode(texts))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=float, default=500, help="input size in MB")
    parser.add_argument("--peer-python", type=Path, default=ROOT / ".venv-bench" / "bin" / "python")
    parser.add_argument("--peer", nargs=2, type=Path, metavar=("CORPUS", "WORK"), help=argparse.SUPPRESS)
    parser.add_argument("--peer-train-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-kernels", action="store_true", help="do not measure the kernel sum")
    parser.add_argument("--kernels-only", action="store_true", help="measure the kernel sum only, no builds")
    parser.add_argument("--skip-peer", action="store_true", help="our build and the kernel sum only, no datatrove")
    from workspace import add_workspace_arguments, workspace

    add_workspace_arguments(parser)
    args = parser.parse_args()
    if args.peer:
        peer_main(*args.peer, args.peer_train_only)
        return
    from scale import load_records, write_corpus

    with workspace(args.keep) as root:
        corpus = root / "input"
        megabytes = write_corpus(load_records(args.data), corpus, args.size) / 1e6
        our_tokenizer = root / "tokenizer.model"
        train_our_tokenizer(corpus, our_tokenizer)
        print(f"input: {megabytes:.1f} MB in {TASKS} files; {os.cpu_count()} cores; load {os.getloadavg()}")
        peer_python = None if args.skip_peer else args.peer_python
        our_wall = None if args.kernels_only else compare(root, our_tokenizer, megabytes, peer_python)
        if not args.skip_kernels:
            kernels = kernel_seconds(corpus, our_tokenizer)
            total = sum(kernels.values())
            parts = ", ".join(f"{name} {value:.1f}" for name, value in kernels.items())
            print(f"kernel sum, one core: {total:.1f} s ({parts}); ideal on 2 cores {total / 2:.1f} s")
            if our_wall:
                print(f"build speed / kernel-sum speed on 2 cores: {total / 2 / our_wall:.2f}")


def fresh(build: Path, peer_work: Path) -> None:
    """No earlier run's outputs: our build directory and datatrove's, but for its trained tokenizer."""
    shutil.rmtree(build, ignore_errors=True)
    for path in peer_work.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name != "tokenizer.json":
            path.unlink()


def compare(root: Path, our_tokenizer: Path, megabytes: float, peer_python: Path | None) -> float:
    """Runs our build, then datatrove's pipeline (unless ``peer_python`` is None), on `root/input`; prints the table;
    returns our wall seconds."""
    from scale import stage_seconds

    corpus, work = root / "input", root / "datatrove"
    work.mkdir(exist_ok=True)
    peer = [str(peer_python), __file__, "--peer", str(corpus), str(work)]
    if peer_python:
        subprocess.run([*peer, "--peer-train-only"], check=True)  # datatrove's tokenizer, not timed
    print(subprocess.run([sys.executable, "-m", "datafactory.app.cli", "server", "start"],
                         capture_output=True, text=True).stdout.strip(), flush=True)
    config = our_config(corpus, our_tokenizer)
    fresh(root / "build", work)  # a kept workspace (--keep) would otherwise time skipped stages and tasks
    ours = timed_tree([sys.executable, "-m", "datafactory.app.cli", "build", str(config), "--out", str(root / "build")])
    print(f"ours: {stage_seconds(ours[2])}")
    if not peer_python:
        print(f"| datafactory build | {ours[0]:.1f} s | {megabytes / ours[0]:.2f} MB/s | {ours[1] / 2**30:.2f} GiB |")
        return ours[0]
    theirs = timed_tree(peer)
    print("datatrove: " + "; ".join(line.removeprefix("datatrove ") for line in theirs[2].splitlines()
                                    if line.startswith("datatrove ")))
    print("| pipeline | wall s | MB/s | peak tree RSS GiB |\n| --- | --- | --- | --- |")
    for name, (wall, peak, _) in (("datafactory build", ours), ("datatrove", theirs)):
        print(f"| {name} | {wall:.1f} | {megabytes / wall:.2f} | {peak / 2**30:.2f} |")
    print(f"ours / datatrove speed: {theirs[0] / ours[0]:.2f}x")
    return ours[0]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
